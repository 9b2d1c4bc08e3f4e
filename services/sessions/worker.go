// Package sessions runs CWMP sessions (DESIGN §1, §2 steps 3-5): a worker
// serves fleetacs.sessions.v1.SessionService to the gateways, feeds each CPE
// request to the pkg/cwmp state machine, learns the device's parameter tree
// when it needs one, checkpoints every exchange to the affinity store so that
// another worker can resume the session, and records what the session learnt
// in inventory as one diff fenced by the device lease's token.
//
// One exchange, in order: decode the body; find the session in memory, else
// resume it from its checkpoint, else start it (an Inform with a device lease)
// or answer as the protocol says outside a session; step the state machine;
// act on what happened (on the Inform, read the device from inventory and
// plan a discovery); then either end the session (record the diff, delete
// the checkpoint, release the lease, answer 204) or save the checkpoint and
// answer. The checkpoint is saved before the answer leaves, so a worker that
// dies after answering has nothing the next worker lacks.
package sessions

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/telemetry"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
)

// Deps are the worker's collaborators.
type Deps struct {
	Inventory   Inventory
	Leases      Leases
	Checkpoints Checkpoints
	Registry    Registry
	// Sessions, when set, writes a session's checkpoint, affinity record
	// and lease release together (affinity.Store.Sessions), and the worker
	// keeps the affinity records of its sessions when gateways ask it to.
	// Nil composes the writes from Leases and Checkpoints, and gateways
	// keep the records.
	Sessions affinity.Sessions
	// Logger defaults to a discarding one.
	Logger *slog.Logger
	// Meter defaults to a no-op provider.
	Meter metric.MeterProvider
	// Now reads the clock; nil means time.Now. Lease renewal, idle expiry
	// and heartbeats follow it.
	Now func() time.Time
}

// Worker is a session worker: the fleetacs.sessions.v1.SessionService
// server and the background work its sessions need.
type Worker struct {
	sessionsv1.UnimplementedSessionServiceServer

	cfg     Config
	self    affinity.Worker
	inv     Inventory
	leases  Leases
	cps     Checkpoints
	sess    affinity.Sessions
	records bool
	reg     Registry
	logger  *slog.Logger
	now     func() time.Time
	metrics *metrics
	table   *table
	bufs    sync.Pool

	// draining refuses new and resumed sessions; stopped refuses all.
	draining atomic.Bool
	stopped  atomic.Bool
	// lastBeat is touched by the goroutine running Run only.
	lastBeat time.Time
}

var _ sessionsv1.SessionServiceServer = (*Worker)(nil)

// maxPooledBuffer bounds the reply buffers kept for reuse: the rare huge
// reply should not pin its memory.
const maxPooledBuffer = 64 << 10

// New builds a worker from a validated configuration. It does no I/O.
func New(cfg Config, deps Deps) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sessions config: %w", err)
	}
	if deps.Inventory == nil || deps.Leases == nil || deps.Checkpoints == nil || deps.Registry == nil {
		return nil, errors.New("sessions: Inventory, Leases, Checkpoints and Registry are required")
	}
	w := &Worker{
		cfg: cfg, inv: deps.Inventory, leases: deps.Leases, cps: deps.Checkpoints, reg: deps.Registry,
		logger: deps.Logger, now: deps.Now, table: newTable(),
		sess: deps.Sessions, records: deps.Sessions != nil,
	}
	if w.sess == nil {
		w.sess = affinity.SessionsOf(deps.Leases, deps.Checkpoints, nil)
	}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	w.logger = w.logger.With("service", "sessions")
	if w.now == nil {
		w.now = time.Now
	}
	id := cfg.WorkerID
	if id == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("sessions: worker id from host name: %w", err)
		}
		id = host
	}
	w.self = affinity.Worker{ID: id, Addr: cfg.AdvertiseAddr, Capacity: cfg.MaxSessions}
	m, err := newMetrics(deps.Meter, w.table.len)
	if err != nil {
		return nil, err
	}
	w.metrics = m
	w.bufs.New = func() any { b := make([]byte, 0, 4096); return &b }
	return w, nil
}

// ID returns the worker's registry ID.
func (w *Worker) ID() string { return w.self.ID }

// Register adds the SessionService to the process's shared gRPC server.
func (w *Worker) Register(s grpc.ServiceRegistrar) { sessionsv1.RegisterSessionServiceServer(s, w) }

// Sessions returns the number of sessions the worker holds.
func (w *Worker) Sessions() int { return w.table.len() }

// Exchange implements SessionService.Exchange.
func (w *Worker) Exchange(ctx context.Context, req *sessionsv1.ExchangeRequest) (*sessionsv1.ExchangeResponse, error) {
	start := w.now()
	if req.GetSessionId() == "" || req.GetTenant() == "" {
		return nil, status.Error(codes.InvalidArgument, "exchange: session_id and tenant are required")
	}
	if w.stopped.Load() {
		w.metrics.count(w.metrics.refused, "reason", "draining")
		return nil, status.Error(codes.Unavailable, "session worker is shutting down")
	}
	// Decoding needs no lock: do it before waiting for the session.
	env, derr := w.decode(req.Body, req.Charset)

	s, created, err := w.table.acquire(req.SessionId, w.admit)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if created {
		resp, err := w.open(ctx, s, req, env, derr)
		if resp != nil || err != nil {
			return resp, err
		}
	}
	resp, err := w.exchange(ctx, s, req, env, derr, created, false)
	if resp != nil {
		resp.AffinityRecorded = s.recordOK
	}
	w.metrics.observeExchange(w.now().Sub(start))
	return resp, err
}

// admit decides whether a session the worker does not hold may be added.
func (w *Worker) admit(held int) error {
	if w.draining.Load() {
		w.metrics.count(w.metrics.refused, "reason", "draining")
		return status.Error(codes.Unavailable, "session worker is draining")
	}
	if held >= w.cfg.MaxSessions {
		w.metrics.count(w.metrics.refused, "reason", "capacity")
		return status.Errorf(codes.ResourceExhausted, "session worker holds %d sessions, its maximum", held)
	}
	return nil
}

func (w *Worker) decode(body []byte, charset string) (*cwmp.Envelope, error) {
	if len(body) == 0 {
		return nil, nil
	}
	return cwmp.DecodeWith(body, cwmp.DecodeOptions{Limits: cwmp.Limits{MaxBytes: w.cfg.MaxBodyBytes}, Charset: charset})
}

// open fills a session the table just created: from its checkpoint when the
// gateway says the session exists, else as a new session when the request
// brings a device lease. A non-nil response or error means the request was
// answered without a session; the session has then left the table.
func (w *Worker) open(ctx context.Context, s *session, req *sessionsv1.ExchangeRequest, env *cwmp.Envelope, derr error) (*sessionsv1.ExchangeResponse, error) {
	s.tenant, s.deviceKey = req.Tenant, req.DeviceKey
	now := w.now()
	if !req.NewSession && req.DeviceKey != "" {
		cp, err := w.cps.Load(ctx, req.Tenant, req.DeviceKey, req.SessionId)
		switch {
		case err == nil:
			w.resume(ctx, s, cp)
		case errors.Is(err, affinity.ErrNoCheckpoint):
		default:
			w.table.remove(s)
			w.metrics.count(w.metrics.failures, "op", failCheckpoint)
			w.logger.ErrorContext(ctx, "cannot load session checkpoint", telemetry.KeySessionID, s.id,
				telemetry.KeyTenant, s.tenant, telemetry.KeyDeviceID, s.deviceKey, "error", err)
			return nil, status.Error(codes.Unavailable, "load session checkpoint: affinity store unavailable")
		}
	}
	if s.live {
		return nil, nil
	}
	if _, isInform := bodyOf(env).(*cwmp.Inform); isInform && req.Lease == nil {
		w.table.remove(s)
		return nil, status.Error(codes.InvalidArgument, "exchange: an Inform that opens a session needs the device lease")
	}
	if req.Lease == nil || req.DeviceKey == "" {
		// No session here and none can start: answer as the protocol does
		// outside a session (a fault to a request, 204 to the rest).
		w.table.remove(s)
		return w.outside(env, derr)
	}
	s.plan = &plan{}
	s.cs = cwmp.NewSession(s.id)
	s.lease = leaseInfo{Token: req.Lease.FencingToken, Superseded: req.Lease.SupersededSessionId}
	s.lastRenew, s.lastActive = now, now
	s.live = true
	return nil, nil
}

// resume restores a session from its checkpoint and checks, by renewing
// it, that the session still holds its lease: a session that lost it is
// dropped and the request answered as outside any session.
func (w *Worker) resume(ctx context.Context, s *session, cp affinity.Checkpoint) {
	log := w.sessionLogger(s)
	if err := s.restore(cp); err != nil {
		log.ErrorContext(ctx, "unusable session checkpoint dropped", "error", err)
		w.metrics.count(w.metrics.failures, "op", failCheckpoint)
		w.deleteCheckpoint(ctx, s)
		s.saved = false
		return
	}
	now := w.now()
	err := w.leases.Renew(ctx, s.tenant, s.deviceKey, s.id, s.lease.Token, w.cfg.LeaseTTL)
	switch {
	case errors.Is(err, ErrLeaseLost):
		w.metrics.count(w.metrics.leaseLost, "stage", lostAtResume)
		log.WarnContext(ctx, "session to resume lost its device lease; results dropped")
		w.deleteCheckpoint(ctx, s)
		s.saved, s.cs, s.plan, s.inform = false, nil, nil, nil
		return
	case err != nil:
		// The renewal loop retries; the lease outlives a short outage.
		w.metrics.count(w.metrics.failures, "op", failRenew)
		log.WarnContext(ctx, "cannot renew device lease on resume", "error", err)
	}
	s.lastRenew, s.lastActive = now, now
	s.live = true
	log.InfoContext(ctx, "session resumed from checkpoint", "seq", s.seq, "phase", s.cs.Phase().String())
}

// outside answers a request that belongs to no session, with a state
// machine that never saw an Inform.
func (w *Worker) outside(env *cwmp.Envelope, derr error) (*sessionsv1.ExchangeResponse, error) {
	out := cwmp.NewSession("").Step(env, derr)
	w.noteAnomalies(nil, out.Notices)
	return w.respond(out, true)
}

func bodyOf(env *cwmp.Envelope) cwmp.Message {
	if env == nil {
		return nil
	}
	return env.Body
}

// exchange steps a live session with one CPE request; s.mu is held.
//
// replay is set when the exchange runs again on state reloaded from the
// checkpoint (see reload); it runs again at most once.
func (w *Worker) exchange(ctx context.Context, s *session, req *sessionsv1.ExchangeRequest, env *cwmp.Envelope, derr error, created, replay bool) (*sessionsv1.ExchangeResponse, error) {
	w.noteRecord(s, req)
	out := s.cs.Step(env, derr)
	started := false
	for _, n := range out.Notices {
		switch n := n.(type) {
		case *cwmp.SessionStarted:
			if n.Replaced {
				w.finishReplaced(ctx, s)
			}
			if err := w.start(ctx, s, req, n); err != nil {
				return w.failStart(ctx, s, env, err)
			}
			started = true
		case *cwmp.RequestDone:
			s.plan.apply(n)
		case *cwmp.CPERequest:
			// Extension point: TransferComplete, DUStateChangeComplete and
			// the like complete tasks, which the tasks issue wires to NATS.
			if w.logger.Enabled(ctx, slog.LevelDebug) {
				w.sessionLogger(s).DebugContext(ctx, "CPE request answered", "method", n.Message.Method())
			}
		case *cwmp.RequestAbandoned:
			w.sessionLogger(s).InfoContext(ctx, "request abandoned", "request_id", n.ID,
				"method", n.Request.Message.Method(), "reason", n.Reason.String())
		}
	}
	w.noteAnomalies(s, out.Notices)
	if out.Turn {
		out = w.turn(ctx, s)
	}
	s.lastActive = w.now()

	if out.End {
		outcome := outcomeCompleted
		if s.inform == nil {
			outcome = outcomeRefused
		}
		recordErr := w.finish(ctx, s, outcome)
		if recordErr != nil {
			// Inventory did not take the results (down, or too slow for
			// the exchange's deadline). The CPE must not believe the
			// session succeeded: a 503 with Retry-After makes it retry
			// the session later, re-sending its events (notes §4.4).
			return &sessionsv1.ExchangeResponse{HttpStatus: 503, SessionEnded: true, RetryAfter: durationpb.New(recordRetryAfter(s.id))}, nil
		}
		return w.respond(out, true)
	}

	resp, err := w.respond(out, false)
	if err != nil {
		w.metrics.count(w.metrics.failures, "op", failEncode)
		w.sessionLogger(s).ErrorContext(ctx, "cannot encode reply; session ended", "error", err)
		s.cs.Expire()
		_ = w.finish(ctx, s, outcomeFailed)
		return &sessionsv1.ExchangeResponse{HttpStatus: 500, SessionEnded: true}, nil
	}
	if err := w.save(ctx, s); err != nil {
		if errors.Is(err, ErrLeaseLost) {
			if !replay && w.reload(ctx, s) {
				return w.exchange(ctx, s, req, env, derr, created, true)
			}
			w.supersede(ctx, s, lostAtCheckpoint)
			return &sessionsv1.ExchangeResponse{HttpStatus: 204, SessionEnded: true}, nil
		}
		// Losing the store degrades resumption, not this session: answer.
		w.metrics.count(w.metrics.failures, "op", failCheckpoint)
		w.sessionLogger(s).WarnContext(ctx, "cannot save session checkpoint", "error", err)
	}
	if started && created {
		resp.SetSessionCookie = s.id
	}
	return resp, nil
}

// turn answers the ACS's turn: the plan's next request, or the end of the
// ACS's part of the session. The plan has seen every answer by now.
func (w *Worker) turn(ctx context.Context, s *session) cwmp.Output {
	if req, ok := s.plan.NextRequest(s.cs); ok {
		out, err := s.cs.Send(req)
		if err == nil {
			return out
		}
		// The plan asks only for what every CWMP version defines: a
		// refusal is a bug, and the session ends rather than loop.
		w.sessionLogger(s).ErrorContext(ctx, "session planned a request it cannot send", "error", err)
	}
	out, _ := s.cs.Finish()
	return out
}

func (w *Worker) noteAnomalies(s *session, notices []cwmp.Notice) {
	for _, n := range notices {
		a, ok := n.(*cwmp.Anomaly)
		if !ok {
			continue
		}
		w.metrics.count(w.metrics.anomalies, "kind", a.Kind.String())
		if !w.logger.Enabled(context.Background(), slog.LevelDebug) {
			continue
		}
		log := w.logger
		if s != nil {
			log = w.sessionLogger(s)
		}
		log.Debug("CPE message broke the protocol", "kind", a.Kind.String(), "method", a.Method, "error", a.Err)
	}
}

// respond turns a step's output into the gateway's answer (sessions.v1
// ExchangeResponse): 204 for no reply; 400 for a fault to a message that
// cannot belong to any session (no session, unreadable body); else 200.
func (w *Worker) respond(out cwmp.Output, ended bool) (*sessionsv1.ExchangeResponse, error) {
	resp := &sessionsv1.ExchangeResponse{SessionEnded: ended}
	if out.Reply == nil {
		resp.HttpStatus = 204
		return resp, nil
	}
	body, err := w.encode(out.Reply)
	if err != nil {
		return nil, err
	}
	resp.HttpStatus, resp.Body = 200, body
	if ended && outsideSession(out.Notices) {
		resp.HttpStatus = 400
	}
	return resp, nil
}

func outsideSession(notices []cwmp.Notice) bool {
	for _, n := range notices {
		if a, ok := n.(*cwmp.Anomaly); ok && (a.Kind == cwmp.AnomalyNoSession || a.Kind == cwmp.AnomalyDecode) {
			return true
		}
	}
	return false
}

// encode encodes env into a pooled scratch buffer and returns an exact-size
// copy: the gRPC response outlives the handler, the scratch buffer does not.
func (w *Worker) encode(env *cwmp.Envelope) ([]byte, error) {
	bp := w.bufs.Get().(*[]byte)
	b, err := cwmp.AppendEncode((*bp)[:0], env)
	if err != nil {
		w.bufs.Put(bp)
		return nil, fmt.Errorf("encode %s reply: %w", env.Body.Method(), err)
	}
	out := make([]byte, len(b))
	copy(out, b)
	if cap(b) <= maxPooledBuffer {
		*bp = b[:0]
		w.bufs.Put(bp)
	}
	return out, nil
}

// reload handles a checkpoint save refused under the session's own token: a
// later save of the same token means another worker served the session
// while this one held a stale copy (a gateway routed a request to it
// again). reload replaces the copy with the stored state and reports true,
// so the exchange runs again from there; the reply computed from the stale
// copy is never sent. A newer token means a newer session: false.
func (w *Worker) reload(ctx context.Context, s *session) bool {
	cp, err := w.cps.Load(ctx, s.tenant, s.deviceKey, s.id)
	if err != nil || cp.FencingToken != s.lease.Token || cp.Seq <= s.seq {
		return false
	}
	if err := s.restore(cp); err != nil {
		w.sessionLogger(s).ErrorContext(ctx, "unusable session checkpoint", "error", err)
		return false
	}
	w.sessionLogger(s).InfoContext(ctx, "stale session copy replaced by the stored checkpoint", "seq", s.seq)
	return true
}

// noteRecord takes from a request what the session's affinity record
// needs, when the gateway asks the worker to keep the record (and this
// worker can): the client address and the worker may change between
// exchanges (a NAT rebinding, a resume elsewhere), and a change is written
// at the next save.
func (w *Worker) noteRecord(s *session, req *sessionsv1.ExchangeRequest) {
	s.recordAsked, s.recordOK = false, false
	ttl := req.GetAffinityRecordTtl().AsDuration()
	if !w.records || ttl <= 0 {
		return
	}
	s.recordAsked = true
	ip := clientIP(req.GetRemoteAddr())
	if s.rec == nil {
		s.rec = &affinity.SessionRecord{
			SessionID: s.id, Tenant: s.tenant, DeviceKey: s.deviceKey,
			Auth: affinity.Auth{
				Method:    affinity.AuthMethod(req.GetAuth().GetMethod()),
				Principal: req.GetAuth().GetPrincipal(),
				Scope:     affinity.CredentialScope(req.GetAuth().GetScope()),
			},
		}
	}
	if s.rec.ClientIP != ip || s.rec.Worker != w.self.ID || s.recordTTL != ttl {
		s.rec.ClientIP, s.rec.Worker, s.recordTTL = ip, w.self.ID, ttl
		s.recordAt = time.Time{}
	}
}

// save checkpoints the session, fenced by its lease token, and stores its
// affinity record with it when the record is due: when it changed or a
// third of its life has passed.
func (w *Worker) save(ctx context.Context, s *session) error {
	cp, err := s.checkpoint()
	if err != nil {
		return err
	}
	ss := affinity.SessionSave{Checkpoint: cp, CheckpointTTL: w.cfg.CheckpointTTL}
	now := w.now()
	if s.recordAsked && (s.recordAt.IsZero() || now.Sub(s.recordAt) >= s.recordTTL/3) {
		rec := *s.rec
		ss.Record, ss.RecordTTL = &rec, s.recordTTL
	}
	if err := w.sess.Save(ctx, ss); err != nil {
		s.recordAt = time.Time{}
		return fmt.Errorf("save checkpoint of session %s: %w", s.id, err)
	}
	s.seq, s.saved = cp.Seq, true
	if ss.Record != nil {
		s.recordAt = now
	}
	s.recordOK = s.recordAsked
	return nil
}

// end removes what the session left in the affinity store: its checkpoint,
// its record and, unless a newer session holds it, its device lease.
func (w *Worker) end(ctx context.Context, s *session, release bool) error {
	if !s.saved && !release && s.rec == nil {
		return nil
	}
	e := affinity.SessionEnd{Tenant: s.tenant, DeviceKey: s.deviceKey, SessionID: s.id, Release: release}
	if s.rec != nil {
		rec := *s.rec
		e.Record = &rec
	}
	if err := w.sess.End(ctx, e); err != nil {
		return err
	}
	s.recordOK = s.recordAsked
	return nil
}

// start acts on an accepted Inform: it records what the Inform says, reads
// the device from inventory and plans a discovery when the device needs
// one.
func (w *Worker) start(ctx context.Context, s *session, req *sessionsv1.ExchangeRequest, n *cwmp.SessionStarted) error {
	now := w.now()
	log := lazyLogger{w: w, s: s}
	if l := req.Lease; l != nil && l.FencingToken >= s.lease.Token {
		s.lease = leaseInfo{Token: l.FencingToken, Superseded: l.SupersededSessionId}
		s.lastRenew = now
	}
	inf := n.Inform
	s.inform = &informInfo{
		Time: now, RemoteIP: clientIP(req.RemoteAddr), DeviceID: inf.DeviceID,
		Events: inf.Events, RetryCount: inf.RetryCount, Params: inf.ParameterList,
		Root: rootOf(inf.ParameterList),
	}
	s.plan.Fenced, s.plan.Discovery = false, nil
	w.metrics.started.Add(ctx, 1)
	if s.lease.Superseded != "" {
		w.metrics.takeovers.Add(ctx, 1)
		log.InfoContext(ctx, "session took over the device lease of a live session", "superseded_session_id", s.lease.Superseded)
	}

	bootstrap := s.cs.HasEvent("0 BOOTSTRAP")
	q := DeviceQuery{Tenant: s.tenant, DeviceKey: s.deviceKey}
	if bootstrap {
		q.WithParameters = true
		if s.inform.Root != "" {
			q.Prefixes = []string{s.inform.Root}
		}
	}
	dev, err := w.inv.GetDeviceForSession(ctx, q)
	if err != nil {
		return fmt.Errorf("get device %s for session: %w", s.deviceKey, err)
	}
	if dev.LastFencingToken > s.lease.Token {
		s.plan.Fenced = true
		w.metrics.count(w.metrics.leaseLost, "stage", lostAtInform)
		log.WarnContext(ctx, "inventory holds a newer fencing token; session runs without writing",
			"token", s.lease.Token, "last_token", dev.LastFencingToken)
		return nil
	}
	if s.inform.Root == "" {
		s.inform.Root = dev.DataModelRoot
	}
	if !bootstrap && dev.Known && !dev.FullDiscoveryTime.IsZero() {
		return nil
	}
	if dev.Known && !q.WithParameters {
		q.WithParameters = true
		if s.inform.Root != "" {
			q.Prefixes = []string{s.inform.Root}
		}
		if dev, err = w.inv.GetDeviceForSession(ctx, q); err != nil {
			return fmt.Errorf("get parameters of device %s: %w", s.deviceKey, err)
		}
	}
	roots := []string{s.inform.Root}
	if s.inform.Root == "" {
		// The Inform named no parameter and the inventory knows no root:
		// try both (notes §13, output 7: never GPN "").
		roots = []string{"Device.", "InternetGatewayDevice."}
	}
	var stored []string
	if dev.Known {
		stored = make([]string, len(dev.Parameters))
		for i, p := range dev.Parameters {
			stored[i] = p.Path
		}
	}
	s.plan.Discovery = newDiscovery(roots, stored, w.cfg.DiscoveryBatchSize)
	log.InfoContext(ctx, "tree discovery planned", "root", roots[0], "bootstrap", bootstrap, "first_contact", !dev.Known)
	return nil
}

// failStart answers an Inform the worker cannot serve (inventory
// unreachable) with fault 8005, so the CPE retries the session soon and
// nothing it reported is acknowledged unrecorded (notes §4.3 rule 2).
func (w *Worker) failStart(ctx context.Context, s *session, env *cwmp.Envelope, cause error) (*sessionsv1.ExchangeResponse, error) {
	w.metrics.count(w.metrics.failures, "op", failInventory)
	w.sessionLogger(s).ErrorContext(ctx, "cannot start session; CPE asked to retry", "error", cause)
	reply := s.cs.FaultEnvelope(env, cwmp.FaultRetryRequest)
	s.cs.Expire()
	s.inform = nil // nothing to record
	_ = w.finish(ctx, s, outcomeFailed)
	return w.respond(cwmp.Output{Reply: reply, End: true}, true)
}

// finishReplaced records the results of the session an Inform replaced in
// the same cwmp.Session (the CPE started over on the same cookie).
func (w *Worker) finishReplaced(ctx context.Context, s *session) {
	if s.inform == nil || s.plan.Fenced {
		return
	}
	if err := w.inv.RecordSession(ctx, w.diff(s)); err != nil {
		w.metrics.count(w.metrics.failures, "op", failRecord)
		w.sessionLogger(s).WarnContext(ctx, "cannot record the results of a replaced session", "error", err)
	}
	w.metrics.count(w.metrics.ended, "outcome", outcomeCompleted)
}

// finish ends a session: it records the diff (unless fenced), deletes the
// checkpoint, releases the lease and forgets the session. It returns the
// recording error, other than a lost lease, so that the caller can fail
// the exchange: a CPE told the session succeeded would not resend what was
// lost.
func (w *Worker) finish(ctx context.Context, s *session, outcome string) error {
	log := lazyLogger{w: w, s: s}
	var recordErr error
	lost := s.plan != nil && s.plan.Fenced
	if s.inform != nil && !lost {
		d := w.diff(s)
		err := w.inv.RecordSession(ctx, d)
		switch {
		case errors.Is(err, ErrLeaseLost):
			lost = true
			outcome = outcomeSuperseded
			w.metrics.count(w.metrics.leaseLost, "stage", lostAtRecord)
			log.WarnContext(ctx, "inventory refused the session's results: a newer session holds the device; results dropped")
		case err != nil:
			recordErr = err
			outcome = outcomeFailed
			w.metrics.count(w.metrics.failures, "op", failRecord)
			log.ErrorContext(ctx, "cannot record session results", "error", err)
		default:
			if !d.FullDiscoveryTime.IsZero() {
				w.metrics.discovered.Add(ctx, int64(len(d.Parameters)))
			}
		}
	}
	cctx, cancel := w.cleanupContext(ctx)
	defer cancel()
	if err := w.end(cctx, s, !lost); err != nil {
		w.metrics.count(w.metrics.failures, "op", failRelease)
		log.WarnContext(ctx, "cannot remove the session's checkpoint, record or device lease; they expire by themselves", "error", err)
	}
	w.table.remove(s)
	w.metrics.count(w.metrics.ended, "outcome", outcome)
	if w.logger.Enabled(ctx, slog.LevelDebug) {
		log.DebugContext(ctx, "session ended", "outcome", outcome)
	}
	return recordErr
}

// supersede drops a session whose lease a newer session holds: nothing is
// recorded or released, the checkpoint goes.
func (w *Worker) supersede(ctx context.Context, s *session, stage string) {
	if stage != "" {
		w.metrics.count(w.metrics.leaseLost, "stage", stage)
	}
	w.sessionLogger(s).WarnContext(ctx, "device lease lost: session superseded, results dropped", "stage", stage)
	if s.plan != nil {
		s.plan.Fenced = true
	}
	cctx, cancel := w.cleanupContext(ctx)
	defer cancel()
	if err := w.end(cctx, s, false); err != nil {
		w.metrics.count(w.metrics.failures, "op", failCheckpoint)
		w.sessionLogger(s).WarnContext(ctx, "cannot remove the session's checkpoint or record; they expire by themselves", "error", err)
	}
	w.table.remove(s)
	w.metrics.count(w.metrics.ended, "outcome", outcomeSuperseded)
}

func (w *Worker) deleteCheckpoint(ctx context.Context, s *session) {
	if err := w.cps.Delete(ctx, s.tenant, s.deviceKey, s.id); err != nil {
		w.metrics.count(w.metrics.failures, "op", failCheckpoint)
		w.sessionLogger(s).WarnContext(ctx, "cannot delete session checkpoint", "error", err)
	}
}

// cleanupContext bounds clean-up calls without inheriting the request's
// cancellation: a gateway that gave up must not leave a lease held.
func (w *Worker) cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), w.cfg.CallTimeout)
}

func (w *Worker) sessionLogger(s *session) *slog.Logger {
	return w.logger.With(telemetry.KeySessionID, s.id, telemetry.KeyTenant, s.tenant, telemetry.KeyDeviceID, s.deviceKey)
}

// lazyLogger builds the session's logger only when a record is written, so
// that a session that logs nothing allocates nothing for logging.
type lazyLogger struct {
	w *Worker
	s *session
	l *slog.Logger
}

func (l *lazyLogger) get() *slog.Logger {
	if l.l == nil {
		l.l = l.w.sessionLogger(l.s)
	}
	return l.l
}

func (l *lazyLogger) WarnContext(ctx context.Context, msg string, args ...any) {
	l.get().WarnContext(ctx, msg, args...)
}

func (l *lazyLogger) ErrorContext(ctx context.Context, msg string, args ...any) {
	l.get().ErrorContext(ctx, msg, args...)
}

func (l *lazyLogger) InfoContext(ctx context.Context, msg string, args ...any) {
	l.get().InfoContext(ctx, msg, args...)
}

func (l *lazyLogger) DebugContext(ctx context.Context, msg string, args ...any) {
	l.get().DebugContext(ctx, msg, args...)
}

// Abandon implements SessionService.Abandon.
func (w *Worker) Abandon(ctx context.Context, req *sessionsv1.AbandonRequest) (*sessionsv1.AbandonResponse, error) {
	if req.GetSessionId() == "" {
		return nil, status.Error(codes.InvalidArgument, "abandon: session_id is required")
	}
	s := w.table.lookup(req.SessionId)
	if s == nil {
		return &sessionsv1.AbandonResponse{}, nil
	}
	defer s.mu.Unlock()
	if !s.live {
		w.table.remove(s)
		return &sessionsv1.AbandonResponse{}, nil
	}
	s.cs.Expire()
	if req.Reason == sessionsv1.AbandonReason_ABANDON_REASON_SUPERSEDED {
		w.supersede(ctx, s, "")
	} else {
		_ = w.finish(ctx, s, outcomeAbandoned)
	}
	w.sessionLogger(s).InfoContext(ctx, "session abandoned by the gateway", "reason", req.Reason.String())
	return &sessionsv1.AbandonResponse{}, nil
}

// clientIP is the address part of a CPE's "ip:port", as the gateway indexes
// open sessions by it and as inventory records it: IPv4-mapped IPv6
// addresses unmapped.
func clientIP(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap.Addr().Unmap().String()
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// rootOf returns the data-model root the Inform's parameter names use
// (notes §5.3), "" when they name none.
func rootOf(params []cwmp.ParameterValue) string {
	for _, p := range params {
		switch {
		case strings.HasPrefix(p.Name, "InternetGatewayDevice."):
			return "InternetGatewayDevice."
		case strings.HasPrefix(p.Name, "Device."):
			return "Device."
		}
	}
	return ""
}

// recordRetryAfter spreads the retries of sessions whose results inventory
// could not take over 30 to 90 seconds, so that a recovering inventory is
// not met by all of them at once. It is derived from the session id rather
// than drawn at random so that a resumed session answers the same.
func recordRetryAfter(sessionID string) time.Duration {
	h := fnv.New32a()
	_, _ = h.Write([]byte(sessionID))
	return 30*time.Second + time.Duration(h.Sum32()%61)*time.Second
}
