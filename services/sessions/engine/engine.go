package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
)

// Deps are the engine's collaborators.
type Deps struct {
	Inventory   Inventory
	Leases      Leases
	Checkpoints Checkpoints
	Registry    Registry
	// Sessions writes a session's checkpoint, affinity record and lease
	// release together (affinity.Store.Sessions).
	Sessions affinity.Sessions
	// Planners make operations of kinds other than the built-in
	// discovery; they plan after it, in this order.
	Planners []Planner
	// Logger defaults to a discarding one.
	Logger *slog.Logger
	// Meter defaults to a no-op provider.
	Meter metric.MeterProvider
	// Now reads the clock; nil means time.Now. Lease renewal, idle expiry
	// and heartbeats follow it.
	Now func() time.Time
	// AdvertiseAddr, when set, gives the address gateways dial in place of
	// Config.AdvertiseAddr, asked once when the engine starts: a process
	// learns the address its gRPC listener is bound to (port 0) only then.
	AdvertiseAddr func() string
	// Watcher, when set, learns how every session ended (device events).
	Watcher Watcher
	// Local says that no other worker can resume this engine's sessions:
	// the affinity store lives in this process alone (fleetacs all
	// without Redis). The engine then keeps each session's state in
	// memory only: its checkpoints carry the lease token and sequence
	// (fencing, the affinity record) but no state, and a session missing
	// from memory is not looked for in the store (docs/sessions.md,
	// "Checkpoints").
	Local bool
	// Secrets seals the secrets an operation keeps in a checkpoint (the
	// connection-request password it sets, crcreds.go); every worker that
	// may resume another's session needs the same keys. Nil: a key of
	// this process alone, which serves Local engines fully and others as
	// far as sessions stay on their worker. Loaded by Start.
	Secrets *secretbox.Keyring
}

// Engine runs a worker's CWMP sessions: the state machine of each, its
// operations, its checkpoints, leases and affinity record, and what it
// records in inventory. Package sessions serves it over gRPC.
type Engine struct {
	cfg     Config
	self    affinity.Worker
	inv     Inventory
	leases  Leases
	cps     Checkpoints
	sess    affinity.Sessions
	reg     Registry
	logger  *slog.Logger
	now     func() time.Time
	metrics *metrics
	table   *table
	bufs    sync.Pool
	budget  *budget
	// discoveries bounds the sessions running a discovery.
	discoveries slots
	// large admits large exchanges (gate.go); nil when off.
	large    *gate
	quirks   atomic.Pointer[Quirks]
	planners []Planner
	byKind   map[string]Planner
	crcreds  *crcredsPlanner
	watcher  Watcher
	// local is Deps.Local.
	local bool

	// draining refuses new and resumed sessions; stopped refuses all.
	draining atomic.Bool
	stopped  atomic.Bool

	advertise func() string
	// lastBeat and registered are touched by Start and then by the
	// goroutine running Run only.
	lastBeat   time.Time
	registered bool
}

// Request is one CPE HTTP request as a gateway forwards it
// (fleetacs.sessions.v1 ExchangeRequest).
type Request struct {
	// SessionID is the session cookie, or a fresh ID for a new session.
	SessionID string
	// NewSession is set when the gateway minted SessionID for this request.
	NewSession bool
	Tenant     string
	// DeviceKey is set with the Inform, and whenever the gateway knows it.
	DeviceKey string
	// Lease is the device lease taken for a new session.
	Lease *Lease
	// Body is the decompressed CWMP body, empty for an empty POST. The
	// engine keeps it (the decoded strings share its memory): the caller
	// must not modify it once Exchange is called.
	Body    []byte
	Charset string
	// RemoteAddr is the CPE's "ip:port".
	RemoteAddr string
	// Auth is how the CPE authenticated this request.
	Auth affinity.Auth
}

// Lease is the device lease a gateway took for a new session.
type Lease struct {
	FencingToken uint64
	// Superseded is the session whose live lease this one took over.
	Superseded string
}

// Reply is the HTTP response for the CPE (fleetacs.sessions.v1
// ExchangeResponse).
type Reply struct {
	// Status is 200 (Body holds an envelope), 204, 400 (the request
	// belongs to no session), 500 (the worker failed) or 503 (try later,
	// RetryAfter).
	Status int
	Body   []byte
	// SessionEnded: the engine ended the session (or never opened one)
	// and removed its lease, checkpoint and record.
	SessionEnded bool
	RetryAfter   time.Duration
	// SetSessionCookie is the cookie to set, on the reply that starts a
	// session.
	SetSessionCookie string

	// What the exchange carried, for its span (docs/operations.md,
	// "Traces"): RPC is the method of the CPE's message ("" for an empty
	// POST or a body that did not decode), FaultCode the CWMP fault code
	// when that message is a fault (0 otherwise), ACSRPC the method of the
	// envelope in Body ("" for none).
	RPC       string
	FaultCode int
	ACSRPC    string
}

// Errors of Exchange: the request was not taken.
var (
	// ErrInvalidRequest: the request breaks the gateway's contract.
	ErrInvalidRequest = errors.New("invalid exchange request")
	// ErrUnavailable: the engine is draining or stopped, or the affinity
	// store cannot be read; another worker may take the request.
	ErrUnavailable = errors.New("session worker unavailable")
	// ErrAtCapacity: the engine holds Config.MaxSessions sessions.
	ErrAtCapacity = errors.New("session worker at capacity")
)

// AbandonReason is why a gateway gave a session up.
type AbandonReason uint8

const (
	// AbandonConnection: the CPE's connection timed out or the response
	// was not delivered.
	AbandonConnection AbandonReason = iota + 1
	// AbandonSuperseded: a new session of the device took the lease over.
	AbandonSuperseded
)

// maxPooledBuffer bounds the reply buffers kept for reuse: the rare huge
// reply should not pin its memory.
const maxPooledBuffer = 64 << 10

// maxRefusals bounds how often one operation may offer a call the session
// refuses within one turn, so that an operation that repeats itself cannot
// loop.
const maxRefusals = 4

// New builds an engine from a validated configuration. It does no I/O.
func New(cfg Config, deps Deps) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sessions config: %w", err)
	}
	if deps.Inventory == nil || deps.Leases == nil || deps.Checkpoints == nil || deps.Registry == nil || deps.Sessions == nil {
		return nil, errors.New("sessions: Inventory, Leases, Checkpoints, Registry and Sessions are required")
	}
	e := &Engine{
		cfg: cfg, inv: deps.Inventory, leases: deps.Leases, cps: deps.Checkpoints, reg: deps.Registry,
		sess: deps.Sessions, logger: deps.Logger, now: deps.Now, table: newTable(), advertise: deps.AdvertiseAddr,
		budget: &budget{limit: int64(cfg.MemoryBudget)}, local: deps.Local, watcher: deps.Watcher,
		large: newGate(cfg.LargeExchangeBytes, cfg.LargeExchangeSlots),
	}
	e.discoveries.limit = int64(cfg.MaxDiscoveries)
	if e.logger == nil {
		e.logger = slog.New(slog.DiscardHandler)
	}
	e.logger = e.logger.With("service", "sessions")
	if e.now == nil {
		e.now = time.Now
	}
	id := cfg.WorkerID
	if id == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("sessions: worker id from host name: %w", err)
		}
		id = host
	}
	e.self = affinity.Worker{ID: id, Addr: cfg.AdvertiseAddr, Capacity: cfg.MaxSessions}
	m, err := newMetrics(deps.Meter, e.table.len, e.budget.used.Load, e.discoveries.used.Load)
	if err != nil {
		return nil, err
	}
	e.metrics = m
	e.bufs.New = func() any { b := make([]byte, 0, 4096); return &b }
	e.quirks.Store(DefaultQuirks())
	discovery := &discoveryPlanner{
		inv: deps.Inventory, batch: cfg.DiscoveryBatchSize, quirks: e.quirks.Load,
		profiles: newProfileCache(deps.Inventory, e.now), logger: e.logger, metrics: m,
	}
	cr, err := newCRCredsPlanner(cfg, deps.Secrets, e.logger)
	if err != nil {
		return nil, err
	}
	e.crcreds = cr
	e.planners = append([]Planner{discovery, cr}, deps.Planners...)
	e.byKind = make(map[string]Planner, len(e.planners))
	for _, p := range e.planners {
		if _, dup := e.byKind[p.Kind()]; dup {
			return nil, fmt.Errorf("sessions: two planners of kind %q", p.Kind())
		}
		e.byKind[p.Kind()] = p
	}
	return e, nil
}

// ID returns the worker's registry ID.
func (e *Engine) ID() string { return e.self.ID }

// Sessions returns the number of sessions the engine holds.
func (e *Engine) Sessions() int { return e.table.len() }

// MemoryUsed returns the bytes the engine's sessions hold, as the budget
// counts them.
func (e *Engine) MemoryUsed() int64 { return e.budget.used.Load() }

// Exchange runs one CPE request in its session and returns the answer.
// CWMP outcomes, faults included, are Replies; an error means the request
// was not taken (ErrInvalidRequest, ErrUnavailable, ErrAtCapacity, or
// ctx's error while a large exchange waited for a slot).
func (e *Engine) Exchange(ctx context.Context, req *Request) (*Reply, error) {
	start := e.now()
	if req.SessionID == "" || req.Tenant == "" {
		return nil, fmt.Errorf("exchange: session_id and tenant are required: %w", ErrInvalidRequest)
	}
	if e.stopped.Load() {
		e.metrics.count(e.metrics.refused, "reason", refusedDraining)
		return nil, fmt.Errorf("session worker is shutting down: %w", ErrUnavailable)
	}
	s, created, err := e.table.acquire(req.SessionID, e.admit)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if !created && (req.Tenant != s.tenant || (req.DeviceKey != "" && req.DeviceKey != s.deviceKey)) {
		// Session IDs are the gateway's, bound to the device it found
		// them for: a request naming another device does not continue
		// this one's session.
		return nil, fmt.Errorf("exchange: session %s is another device's: %w", req.SessionID, ErrInvalidRequest)
	}
	// The slot is taken with the session's lock held, never before
	// (gate.go).
	leave, err := e.large.enter(ctx, len(req.Body))
	if err != nil {
		if created {
			e.table.remove(s)
		}
		return nil, fmt.Errorf("wait for a large-exchange slot: %w", err)
	}
	if leave != nil {
		s.leaveLarge = leave
		defer e.releaseLarge(s)
	}
	env, derr := e.decode(req.Body, req.Charset)
	if env != nil && len(req.Body) > detachThreshold {
		detach(env, e.cfg.MaxInformParameters)
	}
	if created {
		reply, err := e.open(ctx, s, req, env, derr)
		if reply != nil || err != nil {
			return reply, err
		}
	}
	reply, err := e.exchange(ctx, s, req, env, derr, created, false)
	e.metrics.observeExchange(e.now().Sub(start))
	if reply != nil && env != nil && env.Body != nil {
		reply.RPC = env.Body.Method()
		if f, ok := env.Body.(*cwmp.Fault); ok {
			reply.FaultCode = int(f.Code)
		}
	}
	return reply, err
}

// admit decides whether a session the engine does not hold may be added.
func (e *Engine) admit(held int) error {
	if e.draining.Load() {
		e.metrics.count(e.metrics.refused, "reason", refusedDraining)
		return fmt.Errorf("session worker is draining: %w", ErrUnavailable)
	}
	if held >= e.cfg.MaxSessions {
		e.metrics.count(e.metrics.refused, "reason", refusedCapacity)
		return fmt.Errorf("session worker holds %d sessions, its maximum: %w", held, ErrAtCapacity)
	}
	return nil
}

func (e *Engine) decode(body []byte, charset string) (*cwmp.Envelope, error) {
	if len(body) == 0 {
		return nil, nil
	}
	return cwmp.DecodeWith(body, cwmp.DecodeOptions{Limits: cwmp.Limits{MaxBytes: e.cfg.MaxBodyBytes}, Charset: charset, BodyOwned: true})
}

// open fills a session the table just created: from its checkpoint when the
// gateway says the session exists, else as a new session when the request
// brings a device lease and the memory budget has room for it. A non-nil
// reply or error means the request was answered without a session; the
// session has then left the table.
func (e *Engine) open(ctx context.Context, s *session, req *Request, env *cwmp.Envelope, derr error) (*Reply, error) {
	s.tenant, s.deviceKey = req.Tenant, req.DeviceKey
	s.usage = usage{maxParams: e.cfg.MaxSessionParameters, maxBytes: e.cfg.MaxSessionBytes, budget: e.budget}
	now := e.now()
	if !req.NewSession && req.DeviceKey != "" && !e.local {
		cp, err := e.cps.Load(ctx, req.Tenant, req.DeviceKey, req.SessionID)
		switch {
		case err == nil:
			e.resume(ctx, s, cp)
		case errors.Is(err, affinity.ErrNoCheckpoint):
		default:
			e.drop(s)
			e.metrics.count(e.metrics.failures, "op", failCheckpoint)
			e.logger.ErrorContext(ctx, "cannot load session checkpoint", keySessionID, s.id,
				keyTenant, s.tenant, keyDeviceID, s.deviceKey, "error", err)
			return nil, fmt.Errorf("load session checkpoint: affinity store unavailable: %w", ErrUnavailable)
		}
	}
	if s.live {
		return nil, nil
	}
	if inf, isInform := bodyOf(env).(*cwmp.Inform); isInform && req.Lease == nil {
		e.drop(s)
		if cwmp.CheckDeviceID(inf.DeviceID) != nil {
			// It names no device, so the gateway took no lease for it:
			// the state machine refuses it (fault 8003, docs/protocol.md
			// §5.3).
			return e.outside(env, derr)
		}
		return nil, fmt.Errorf("exchange: an Inform that opens a session needs the device lease: %w", ErrInvalidRequest)
	}
	if req.Lease == nil || req.DeviceKey == "" {
		// No session here and none can start: answer as the protocol does
		// outside a session (a fault to a request, 204 to the rest).
		e.drop(s)
		return e.outside(env, derr)
	}
	s.lease = leaseInfo{Token: req.Lease.FencingToken, Superseded: req.Lease.Superseded}
	if !e.budget.admits(len(req.Body)) {
		return e.shed(ctx, s), nil
	}
	s.cs = cwmp.NewSession(s.id)
	s.lastRenew, s.lastActive = now, now
	s.live = true
	return nil, nil
}

// shed refuses a new session the memory budget has no room for: 503 with
// Retry-After, and the lease the gateway took is released.
func (e *Engine) shed(ctx context.Context, s *session) *Reply {
	e.metrics.count(e.metrics.refused, "reason", refusedMemory)
	e.sessionLogger(s).WarnContext(ctx, "new session shed: the sessions' memory budget is spent",
		"used", e.budget.used.Load(), "budget", e.budget.limit)
	cctx, cancel := e.cleanupContext(ctx)
	defer cancel()
	if err := e.end(cctx, s, true); err != nil {
		e.metrics.count(e.metrics.failures, "op", failRelease)
		e.sessionLogger(s).WarnContext(ctx, "cannot release the device lease of a shed session; it expires by itself", "error", err)
	}
	e.drop(s)
	return &Reply{Status: 503, SessionEnded: true, RetryAfter: retryAfter(s.id)}
}

// resume restores a session from its checkpoint and checks, by renewing
// it, that the session still holds its lease: a session that lost it is
// dropped and the request answered as outside any session.
func (e *Engine) resume(ctx context.Context, s *session, cp affinity.Checkpoint) {
	log := e.sessionLogger(s)
	if err := s.restore(cp, e.byKind); err != nil {
		log.ErrorContext(ctx, "unusable session checkpoint dropped", "error", err)
		e.metrics.count(e.metrics.failures, "op", failCheckpoint)
		e.deleteCheckpoint(ctx, s)
		s.saved = false
		return
	}
	now := e.now()
	err := e.leases.Renew(ctx, s.tenant, s.deviceKey, s.id, s.lease.Token, e.cfg.LeaseTTL)
	switch {
	case errors.Is(err, ErrLeaseLost):
		e.metrics.count(e.metrics.leaseLost, "stage", lostAtResume)
		log.WarnContext(ctx, "session to resume lost its device lease; results dropped")
		e.deleteCheckpoint(ctx, s)
		s.usage.release()
		s.saved, s.cs, s.queue, s.inform = false, nil, nil, nil
		return
	case err != nil:
		// The renewal loop retries; the lease outlives a short outage.
		e.metrics.count(e.metrics.failures, "op", failRenew)
		log.WarnContext(ctx, "cannot renew device lease on resume", "error", err)
	}
	s.lastRenew, s.lastActive = now, now
	s.live = true
	if s.queue.discovery() != nil {
		// The discovery goes on here, whatever this worker runs already.
		e.discoveries.force()
		s.discovering = true
	}
	log.InfoContext(ctx, "session resumed from checkpoint", "seq", s.seq, "phase", s.cs.Phase().String())
}

// outside answers a request that belongs to no session, with a state
// machine that never saw an Inform.
func (e *Engine) outside(env *cwmp.Envelope, derr error) (*Reply, error) {
	out := cwmp.NewSession("").Step(env, derr)
	e.noteAnomalies(nil, out.Notices)
	return e.respond(out, true)
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
func (e *Engine) exchange(ctx context.Context, s *session, req *Request, env *cwmp.Envelope, derr error, created, replay bool) (*Reply, error) {
	e.noteRecord(s, req)
	out := s.cs.Step(env, derr)
	started := false
	for _, n := range out.Notices {
		switch n := n.(type) {
		case *cwmp.SessionStarted:
			if n.Replaced {
				e.finishReplaced(ctx, s)
			}
			if err := e.start(ctx, s, req, n); err != nil {
				return e.failStart(ctx, s, env, err)
			}
			started = true
		case *cwmp.RequestDone:
			e.metrics.rpc(n.Request.Message.Method(), n.Fault)
			e.noteQuirks(ctx, s, n.ID, n.Request, n.Matched, false)
			e.answer(s, n.Request, Answer{Response: n.Response, Fault: n.Fault})
		case *cwmp.RequestRetried:
			// Fault 8005: the session sent the request again; its outcome
			// comes in a later exchange (docs/sessions.md).
			e.noteQuirks(ctx, s, n.ID, n.Request, n.Matched, true)
		case *cwmp.RequestAbandoned:
			e.sessionLogger(s).InfoContext(ctx, "request abandoned", "request_id", n.ID,
				"method", n.Request.Message.Method(), "reason", n.Reason.String())
			e.answer(s, n.Request, Answer{Lost: n.Reason})
		case *cwmp.CPERequest:
			e.observe(ctx, s, n.Message)
		}
	}
	e.noteAnomalies(s, out.Notices)
	if out.Turn {
		// Every answer this request brought is in its operation by now.
		out = e.turn(ctx, s)
	}
	s.lastActive = e.now()

	if out.End {
		outcome := outcomeCompleted
		if s.inform == nil {
			outcome = outcomeRefused
		}
		recordErr := e.finish(ctx, s, outcome)
		if recordErr != nil {
			// Inventory did not take the results (down, or too slow for
			// the exchange's deadline). The CPE must not believe the
			// session succeeded: a 503 with Retry-After makes it retry
			// the session later, re-sending its events (docs/protocol.md
			// §4.4).
			return &Reply{Status: 503, SessionEnded: true, RetryAfter: retryAfter(s.id)}, nil
		}
		return e.respond(out, true)
	}

	reply, err := e.respond(out, false)
	if err != nil {
		e.metrics.count(e.metrics.failures, "op", failEncode)
		e.sessionLogger(s).ErrorContext(ctx, "cannot encode reply; session ended", "error", err)
		_ = e.finish(ctx, s, outcomeFailed)
		return &Reply{Status: 500, SessionEnded: true}, nil
	}
	// The CPU work of the exchange is done: the checkpoint store's
	// round trip waits in no slot (gate.go).
	e.releaseLarge(s)
	if err := e.save(ctx, s); err != nil {
		if errors.Is(err, ErrLeaseLost) {
			if !replay && e.reload(ctx, s) {
				return e.exchange(ctx, s, req, env, derr, created, true)
			}
			e.supersede(ctx, s, lostAtCheckpoint)
			return &Reply{Status: 204, SessionEnded: true}, nil
		}
		// Losing the store degrades resumption, not this session: answer.
		e.metrics.count(e.metrics.failures, "op", failCheckpoint)
		e.sessionLogger(s).WarnContext(ctx, "cannot save session checkpoint", "error", err)
	}
	if started && created {
		reply.SetSessionCookie = s.id
	}
	return reply, nil
}

// answer hands an operation what became of its call req.
func (e *Engine) answer(s *session, req cwmp.Request, a Answer) {
	if s.queue == nil {
		return
	}
	en, key := s.queue.find(req.Key)
	if en == nil {
		return
	}
	a.Call = Call{Message: req.Message, Key: key, HoldRequests: req.HoldRequests}
	en.Op.Answer(s.context(e.now()), a)
}

// observe offers a CPE request to the session's operations in turn, until
// one takes it.
func (e *Engine) observe(ctx context.Context, s *session, m cwmp.Message) {
	if !s.fenced {
		s.noteCompletion(m)
	}
	if s.queue != nil && !s.fenced {
		c := s.context(e.now())
		for _, en := range s.queue.Entries {
			if en.Op.Observe(c, m) {
				return
			}
		}
	}
	if e.logger.Enabled(ctx, slog.LevelDebug) {
		e.sessionLogger(s).DebugContext(ctx, "CPE request answered; no operation took it", "method", m.Method())
	}
}

// turn answers the ACS's turn: the first request an operation of the queue
// asks for, in queue order, or the end of the ACS's part of the session.
func (e *Engine) turn(ctx context.Context, s *session) cwmp.Output {
	if s.queue != nil && len(s.queue.Entries) > 0 && !s.fenced {
		c := s.context(e.now())
		for _, en := range s.queue.Entries {
			for range maxRefusals {
				call, ok := en.Op.Next(c)
				if !ok {
					break
				}
				out, err := s.cs.Send(cwmp.Request{Message: call.Message, Key: requestKey(en, call), HoldRequests: call.HoldRequests})
				if err == nil {
					return out
				}
				e.sessionLogger(s).WarnContext(ctx, "operation asked for a request the session cannot send",
					"operation", en.ID, "kind", en.Kind, "error", err)
				en.Op.Answer(c, Answer{Call: call, NotSent: err})
			}
		}
	}
	out, _ := s.cs.Finish()
	return out
}

// expire ends the state machine of a session ended other than by the
// protocol; an outstanding call's operation learns it is lost.
func (e *Engine) expire(s *session) {
	if s.cs == nil {
		return
	}
	for _, n := range s.cs.Expire() {
		if a, ok := n.(*cwmp.RequestAbandoned); ok {
			e.answer(s, a.Request, Answer{Lost: a.Reason})
		}
	}
}

// noteQuirks counts the quirks of a CPE's answer to request id (a missing
// or foreign cwmp:ID, a fault 8005 that had it sent again) and logs them at
// debug level with the session's device, so that the devices behind
// fleetacs.sessions.answer_quirks can be found.
func (e *Engine) noteQuirks(ctx context.Context, s *session, id string, req cwmp.Request, m cwmp.Matched, retried bool) {
	if !m.ByMethod() && !retried {
		return
	}
	method := req.Message.Method()
	e.metrics.answerQuirks(method, m, retried)
	if e.logger.Enabled(ctx, slog.LevelDebug) {
		e.sessionLogger(s).DebugContext(ctx, "CPE answer taken despite a quirk", "request_id", id, "method", method,
			"missing_id", m.MissingID, "foreign_id", m.ForeignID, "retry_request", retried)
	}
}

func (e *Engine) noteAnomalies(s *session, notices []cwmp.Notice) {
	for _, n := range notices {
		a, ok := n.(*cwmp.Anomaly)
		if !ok {
			continue
		}
		e.metrics.count(e.metrics.anomalies, "kind", a.Kind.String())
		if !e.logger.Enabled(context.Background(), slog.LevelDebug) {
			continue
		}
		log := e.logger
		if s != nil {
			log = e.sessionLogger(s)
		}
		log.Debug("CPE message broke the protocol", "kind", a.Kind.String(), "method", a.Method, "error", a.Err)
	}
}

// respond turns a step's output into the reply: 204 for no envelope; 400
// for a message that cannot belong to any session (no session, unreadable
// body, an Inform naming no device), with the fault, or without a body for
// a response or fault that answers nothing (docs/protocol.md §4.3 rule 1:
// a 204 would tell the CPE its session ended well, and a fault cannot
// answer a response); else 200.
func (e *Engine) respond(out cwmp.Output, ended bool) (*Reply, error) {
	reply := &Reply{SessionEnded: ended}
	if out.Reply == nil {
		reply.Status = 204
		if ended && outsideSession(out.Notices) {
			reply.Status = 400
		}
		return reply, nil
	}
	body, err := e.encode(out.Reply)
	if err != nil {
		return nil, err
	}
	reply.Status, reply.Body, reply.ACSRPC = 200, body, out.Reply.Body.Method()
	if ended && outsideSession(out.Notices) {
		reply.Status = 400
	}
	return reply, nil
}

func outsideSession(notices []cwmp.Notice) bool {
	for _, n := range notices {
		if a, ok := n.(*cwmp.Anomaly); ok && (a.Kind == cwmp.AnomalyNoSession || a.Kind == cwmp.AnomalyDecode || a.Kind == cwmp.AnomalyInvalidInform) {
			return true
		}
	}
	return false
}

// encode encodes env into a pooled scratch buffer and returns an exact-size
// copy: the reply outlives the exchange, the scratch buffer does not.
func (e *Engine) encode(env *cwmp.Envelope) ([]byte, error) {
	bp := e.bufs.Get().(*[]byte)
	b, err := cwmp.AppendEncode((*bp)[:0], env)
	if err != nil {
		e.bufs.Put(bp)
		return nil, fmt.Errorf("encode %s reply: %w", env.Body.Method(), err)
	}
	out := make([]byte, len(b))
	copy(out, b)
	if cap(b) <= maxPooledBuffer {
		*bp = b[:0]
		e.bufs.Put(bp)
	}
	return out, nil
}

// reload handles a checkpoint save refused under the session's own token: a
// later save of the same token means another worker served the session
// while this one held a stale copy (a gateway routed a request to it
// again). reload replaces the copy with the stored state and reports true,
// so the exchange runs again from there; the reply computed from the stale
// copy is never sent. A newer token means a newer session: false.
func (e *Engine) reload(ctx context.Context, s *session) bool {
	if e.local {
		// A local session has no other copy, and its checkpoint no state.
		return false
	}
	cp, err := e.cps.Load(ctx, s.tenant, s.deviceKey, s.id)
	if err != nil || cp.FencingToken != s.lease.Token || cp.Seq <= s.seq {
		return false
	}
	if err := s.restore(cp, e.byKind); err != nil {
		e.sessionLogger(s).ErrorContext(ctx, "unusable session checkpoint", "error", err)
		return false
	}
	e.sessionLogger(s).InfoContext(ctx, "stale session copy replaced by the stored checkpoint", "seq", s.seq)
	return true
}

// noteRecord takes from a request what the session's affinity record
// needs: the client address and the worker may change between exchanges
// (a NAT rebinding, a resume elsewhere), and a change is written at the
// next save. The record lives as long as the engine would let the session
// idle: the CPE's session timeout plus Config.IdleGrace.
func (e *Engine) noteRecord(s *session, req *Request) {
	ttl := s.cs.SessionTimeout() + e.cfg.IdleGrace
	ip := clientIP(req.RemoteAddr)
	if s.rec == nil {
		s.rec = &affinity.SessionRecord{SessionID: s.id, Tenant: s.tenant, DeviceKey: s.deviceKey, Auth: req.Auth}
	}
	if s.rec.ClientIP != ip || s.rec.Worker != e.self.ID || s.recordTTL != ttl {
		s.rec.ClientIP, s.rec.Worker, s.recordTTL = ip, e.self.ID, ttl
		s.recordAt = time.Time{}
	}
}

// save checkpoints the session, fenced by its lease token, and stores its
// affinity record with it when the record is due: when it changed or a
// third of its life has passed.
func (e *Engine) save(ctx context.Context, s *session) error {
	var cp affinity.Checkpoint
	if e.local {
		cp = s.fence()
	} else {
		var err error
		if cp, err = s.checkpoint(); err != nil {
			return err
		}
	}
	ss := affinity.SessionSave{Checkpoint: cp, CheckpointTTL: e.cfg.CheckpointTTL}
	now := e.now()
	if s.recordAt.IsZero() || now.Sub(s.recordAt) >= s.recordTTL/3 {
		rec := *s.rec
		ss.Record, ss.RecordTTL = &rec, s.recordTTL
	}
	err := e.sess.Save(ctx, ss)
	if errors.Is(err, affinity.ErrJournalGap) {
		// The stored journal is not what this copy believes (a save
		// whose outcome was lost): write it whole.
		s.journalFull = true
		if ss.Checkpoint, err = s.checkpoint(); err == nil {
			err = e.sess.Save(ctx, ss)
		}
	}
	if err != nil {
		s.recordAt = time.Time{}
		s.journalFull = true
		return fmt.Errorf("save checkpoint of session %s: %w", s.id, err)
	}
	s.savedAs(&ss.Checkpoint)
	if ss.Record != nil {
		s.recordAt = now
	}
	return nil
}

// end removes what the session left in the affinity store: its checkpoint,
// its record and, unless a newer session holds it, its device lease.
func (e *Engine) end(ctx context.Context, s *session, release bool) error {
	if !s.saved && !release && s.rec == nil {
		return nil
	}
	en := affinity.SessionEnd{Tenant: s.tenant, DeviceKey: s.deviceKey, SessionID: s.id, Release: release}
	if s.rec != nil {
		rec := *s.rec
		en.Record = &rec
	}
	return e.sess.End(ctx, en)
}

// start acts on an accepted Inform: it keeps what the Inform says within
// the session's limits, reads the device from inventory and asks the
// planners for the session's operations.
func (e *Engine) start(ctx context.Context, s *session, req *Request, n *cwmp.SessionStarted) error {
	now := e.now()
	log := lazyLogger{e: e, s: s}
	if l := req.Lease; l != nil && l.FencingToken >= s.lease.Token {
		s.lease = leaseInfo{Token: l.FencingToken, Superseded: l.Superseded}
		s.lastRenew = now
	}
	inf := n.Inform
	s.inform = &informInfo{
		Time: now, RemoteIP: clientIP(req.RemoteAddr), DeviceID: inf.DeviceID,
		Events: inf.Events, RetryCount: inf.RetryCount, Params: e.keepInform(ctx, s, &log, inf.ParameterList),
		Root: rootOf(inf.ParameterList),
	}
	s.fenced, s.queue = false, nil
	// A new Inform (on a cookie that may have had one) starts the
	// journal over.
	s.journalFull = true
	e.releaseDiscovery(s)
	e.metrics.started.Add(ctx, 1)
	e.metrics.informEvents(inf.Events)
	if s.lease.Superseded != "" {
		e.metrics.takeovers.Add(ctx, 1)
		log.InfoContext(ctx, "session took over the device lease of a live session", "superseded_session_id", s.lease.Superseded)
	}

	dev, err := e.inv.GetDeviceForSession(ctx, DeviceQuery{Tenant: s.tenant, DeviceKey: s.deviceKey})
	if err != nil {
		return fmt.Errorf("get device %s for session: %w", s.deviceKey, err)
	}
	if dev.LastFencingToken > s.lease.Token {
		s.fenced = true
		e.metrics.count(e.metrics.leaseLost, "stage", lostAtInform)
		log.WarnContext(ctx, "inventory holds a newer fencing token; session runs without writing",
			"token", s.lease.Token, "last_token", dev.LastFencingToken)
		return nil
	}
	if s.inform.Root == "" {
		s.inform.Root = dev.DataModelRoot
	}
	st := Start{
		Tenant: s.tenant, DeviceKey: s.deviceKey, SessionID: s.id, DeviceID: inf.DeviceID, Events: inf.Events, Params: s.inform.Params,
		Bootstrap: s.cs.HasEvent("0 BOOTSTRAP"), Root: s.inform.Root, Device: dev, Now: now,
	}
	for _, p := range e.planners {
		planned, err := p.Plan(ctx, st)
		if err != nil {
			return fmt.Errorf("plan %s operations of device %s: %w", p.Kind(), s.deviceKey, err)
		}
		if len(planned) == 0 {
			continue
		}
		if s.queue == nil {
			s.queue = &queue{}
		}
		if left := s.queue.add(p.Kind(), planned, e.cfg.MaxOperations); len(left) > 0 {
			log.InfoContext(ctx, "operations left for a later session: the session's bound is reached", "left", len(left))
			e.tellLeft(ctx, st, left)
		}
	}
	e.admitDiscovery(ctx, s, &log)
	return nil
}

// tellLeft tells the planners that implement Leaver which operations the
// session's bound left out. An operation planned earlier may be pushed out
// by a later planner's of higher priority, so left may hold any kind: each
// Leaver picks its own (by type).
func (e *Engine) tellLeft(ctx context.Context, st Start, left []Planned) {
	for _, p := range e.planners {
		if lv, ok := p.(Leaver); ok {
			lv.Left(ctx, st, left)
		}
	}
}

// admitDiscovery gives a session whose queue holds a discovery one of the
// worker's discovery slots, or postpones the discovery when none is free
// (docs/sessions.md, "Discovery under load").
func (e *Engine) admitDiscovery(ctx context.Context, s *session, log *lazyLogger) {
	d := s.queue.discovery()
	if d == nil || s.discovering {
		return
	}
	attempt := returnedAttempt(s.cs.Events())
	if e.discoveries.take(e.discoveries.overdraft(attempt)) {
		s.discovering = true
		// The planner leaves Stored nil for a device the inventory does
		// not know.
		log.InfoContext(ctx, "tree discovery planned", "root", d.Root, "bootstrap", s.cs.HasEvent("0 BOOTSTRAP"),
			"first_contact", d.Stored == nil, "batch", d.Batch, "walk", d.Walk, "postponed_before", attempt)
		return
	}
	// The CPE is asked to come back only where no earlier request of
	// ours is likely still pending: a CPE keeps every ScheduleInform it
	// accepted, so asking again in each session (a connection request's,
	// a periodic one) would multiply its returns. A first contact never
	// had one; a return has just used its own; a boot may have lost them.
	var delay uint32
	if e.cfg.DiscoveryRetry > 0 && (attempt > 0 || d.Stored == nil || s.cs.HasEvent("0 BOOTSTRAP") || s.cs.HasEvent("1 BOOT")) {
		// A device postponed again comes back later each time (up to four
		// times the retry): while a storm lasts, its returns cost the
		// worker sessions that discover nothing.
		delay = scheduleDelay(s.id, e.cfg.DiscoveryRetry*time.Duration(min(attempt+1, 4)))
	}
	d.postpone(delay, attempt+1)
	e.metrics.postponed.Add(ctx, 1)
	log.InfoContext(ctx, "tree discovery postponed: the worker runs its maximum of discoveries",
		"max_discoveries", e.cfg.MaxDiscoveries, "retry_seconds", delay, "postponed_before", attempt)
}

// releaseDiscovery gives the session's discovery slot back.
func (e *Engine) releaseDiscovery(s *session) {
	if s.discovering {
		s.discovering = false
		e.discoveries.give()
	}
}

// keepInform returns the Inform parameters the session keeps: at most
// Config.MaxInformParameters, and what fits the session's limits. What is
// dropped is logged and counted; the copy lets the decoded Inform go.
func (e *Engine) keepInform(ctx context.Context, s *session, log *lazyLogger, params []cwmp.ParameterValue) []cwmp.ParameterValue {
	s.usage.release()
	n := min(len(params), e.cfg.MaxInformParameters)
	for i := range n {
		pv := &params[i]
		if !s.usage.charge(1, ParameterCost(pv.Name, pv.Value, pv.Type)) {
			n = i
			break
		}
	}
	if n == len(params) {
		return params
	}
	e.metrics.truncated.Add(ctx, int64(len(params)-n), attr("what", truncInform))
	log.WarnContext(ctx, "Inform parameters beyond the session's limits dropped", "parameters", len(params), "kept", n)
	return slices.Clone(params[:n])
}

// failStart answers an Inform the engine cannot serve (inventory
// unreachable) with fault 8005, so the CPE retries the session soon and
// nothing it reported is acknowledged unrecorded (docs/protocol.md §4.3
// rule 2).
func (e *Engine) failStart(ctx context.Context, s *session, env *cwmp.Envelope, cause error) (*Reply, error) {
	e.metrics.count(e.metrics.failures, "op", failInventory)
	e.sessionLogger(s).ErrorContext(ctx, "cannot start session; CPE asked to retry", "error", cause)
	reply := s.cs.FaultEnvelope(env, cwmp.FaultRetryRequest)
	e.expire(s)
	s.inform, s.queue = nil, nil // nothing to record, nothing ran
	_ = e.finish(ctx, s, outcomeFailed)
	return e.respond(cwmp.Output{Reply: reply, End: true}, true)
}

// finishReplaced ends the session an Inform replaced in the same
// cwmp.Session (the CPE started over on the same cookie): the CPE
// abandoned it, so it records what an incomplete session records.
func (e *Engine) finishReplaced(ctx context.Context, s *session) {
	recorded := false
	if s.inform != nil && !s.fenced {
		err := e.record(ctx, s, e.diff(s, Incomplete))
		if err != nil {
			e.metrics.count(e.metrics.failures, "op", failRecord)
			e.sessionLogger(s).WarnContext(ctx, "cannot record the results of a replaced session", "error", err)
		}
		recorded = err == nil
	}
	e.settle(ctx, s, Incomplete, s.fenced, recorded)
	e.watch(ctx, s, "replaced", recorded)
	e.metrics.sessionEnded(s.informTime(), e.now(), outcomeAbandoned)
}

// finish ends a session: it records the diff (unless fenced), settles the
// operations, deletes the checkpoint, releases the lease and forgets the
// session. It returns the recording error, other than a lost lease, so
// that the caller can fail the exchange: a CPE told the session succeeded
// would not resend what was lost.
func (e *Engine) finish(ctx context.Context, s *session, outcome string) error {
	log := lazyLogger{e: e, s: s}
	e.expire(s)
	o := Incomplete
	if outcome == outcomeCompleted {
		o = Completed
	}
	var recordErr error
	lost, recorded := s.fenced, false
	if s.inform != nil && !lost {
		d := e.diff(s, o)
		err := e.record(ctx, s, d)
		switch {
		case errors.Is(err, ErrLeaseLost):
			lost = true
			outcome = outcomeSuperseded
			e.metrics.count(e.metrics.leaseLost, "stage", lostAtRecord)
			log.WarnContext(ctx, "inventory refused the session's results: a newer session holds the device; results dropped")
		case err != nil:
			recordErr = err
			outcome = outcomeFailed
			e.metrics.count(e.metrics.failures, "op", failRecord)
			log.ErrorContext(ctx, "cannot record session results", "error", err)
		default:
			recorded = true
			if !d.FullDiscoveryTime.IsZero() {
				e.metrics.discovered.Add(ctx, int64(len(d.Parameters)))
			}
		}
	}
	cctx, cancel := e.cleanupContext(ctx)
	defer cancel()
	e.settle(cctx, s, o, lost, recorded)
	e.watch(cctx, s, outcome, recorded)
	if err := e.end(cctx, s, !lost); err != nil {
		e.metrics.count(e.metrics.failures, "op", failRelease)
		log.WarnContext(ctx, "cannot remove the session's checkpoint, record or device lease; they expire by themselves", "error", err)
	}
	e.drop(s)
	e.metrics.sessionEnded(s.informTime(), e.now(), outcome)
	if e.logger.Enabled(ctx, slog.LevelDebug) {
		log.DebugContext(ctx, "session ended", "outcome", outcome)
	}
	return recordErr
}

// settle hands each planner its operations that ran in the session.
func (e *Engine) settle(ctx context.Context, s *session, o Outcome, superseded, recorded bool) {
	if s.queue == nil || len(s.queue.Entries) == 0 {
		return
	}
	end := End{Tenant: s.tenant, DeviceKey: s.deviceKey, SessionID: s.id, Outcome: o, Superseded: superseded, Recorded: recorded, Now: e.now()}
	if s.inform != nil {
		end.DeviceID = s.inform.DeviceID
	} else if s.cs != nil {
		end.DeviceID = s.cs.DeviceID()
	}
	for kind, ops := range s.queue.byKind() {
		if p := e.byKind[kind]; p != nil {
			p.Settle(ctx, end, ops)
		}
	}
	s.queue = nil
}

// supersede drops a session whose lease a newer session holds: nothing is
// recorded or released, the operations are settled, the checkpoint goes.
func (e *Engine) supersede(ctx context.Context, s *session, stage string) {
	if stage != "" {
		e.metrics.count(e.metrics.leaseLost, "stage", stage)
	}
	e.sessionLogger(s).WarnContext(ctx, "device lease lost: session superseded, results dropped", "stage", stage)
	s.fenced = true
	e.expire(s)
	cctx, cancel := e.cleanupContext(ctx)
	defer cancel()
	e.settle(cctx, s, Incomplete, true, false)
	e.watch(cctx, s, outcomeSuperseded, false)
	if err := e.end(cctx, s, false); err != nil {
		e.metrics.count(e.metrics.failures, "op", failCheckpoint)
		e.sessionLogger(s).WarnContext(ctx, "cannot remove the session's checkpoint or record; they expire by themselves", "error", err)
	}
	e.drop(s)
	e.metrics.sessionEnded(s.informTime(), e.now(), outcomeSuperseded)
}

// informTime is when the session's Inform arrived; zero when it had none.
func (s *session) informTime() time.Time {
	if s.inform == nil {
		return time.Time{}
	}
	return s.inform.Time
}

// drop forgets a session: it leaves the table and gives its memory back to
// the budget. The caller holds s.mu.
func (e *Engine) drop(s *session) {
	if s.gone {
		return
	}
	s.usage.release()
	e.releaseDiscovery(s)
	e.table.remove(s)
}

func (e *Engine) deleteCheckpoint(ctx context.Context, s *session) {
	if err := e.cps.Delete(ctx, s.tenant, s.deviceKey, s.id); err != nil {
		e.metrics.count(e.metrics.failures, "op", failCheckpoint)
		e.sessionLogger(s).WarnContext(ctx, "cannot delete session checkpoint", "error", err)
	}
}

// cleanupContext bounds clean-up calls without inheriting the request's
// cancellation: a gateway that gave up must not leave a lease held.
func (e *Engine) cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), e.cfg.CallTimeout)
}

func (e *Engine) sessionLogger(s *session) *slog.Logger {
	return e.logger.With(keySessionID, s.id, keyTenant, s.tenant, keyDeviceID, s.deviceKey)
}

// lazyLogger builds the session's logger only when a record is written, so
// that a session that logs nothing allocates nothing for logging.
type lazyLogger struct {
	e *Engine
	s *session
	l *slog.Logger
}

func (l *lazyLogger) get() *slog.Logger {
	if l.l == nil {
		l.l = l.e.sessionLogger(l.s)
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

// Abandon ends a session a gateway gave up on: now, rather than at its
// idle timeout. A superseded session writes nothing. Unknown sessions are
// ignored.
func (e *Engine) Abandon(ctx context.Context, sessionID string, reason AbandonReason) {
	s := e.table.lookup(sessionID)
	if s == nil {
		return
	}
	defer s.mu.Unlock()
	if !s.live {
		e.drop(s)
		return
	}
	if reason == AbandonSuperseded {
		e.supersede(ctx, s, "")
	} else {
		_ = e.finish(ctx, s, outcomeAbandoned)
	}
	e.sessionLogger(s).InfoContext(ctx, "session abandoned by the gateway", "superseded", reason == AbandonSuperseded)
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
// (docs/protocol.md §5.3), "" when they name none.
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

// spread returns a delay between 50% and 150% of d, derived from the
// session ID (as retryAfter is), so that the devices of a storm come back
// spread out.
func spread(sessionID string, d time.Duration) time.Duration {
	h := fnv.New32a()
	_, _ = h.Write([]byte(sessionID))
	return d/2 + time.Duration(uint64(h.Sum32())%1001)*d/1000
}

// scheduleDelay is the ScheduleInform DelaySeconds asking the CPE of
// session sessionID to come back after about d: spread, in whole seconds,
// at least 1 (a CPE refuses 0 with 9003).
func scheduleDelay(sessionID string, d time.Duration) uint32 {
	return uint32(max(spread(sessionID, d).Round(time.Second)/time.Second, 1))
}

// retryAfter spreads the retries of sessions the worker turned away (its
// memory budget spent, or inventory unable to take their results) over 30
// to 90 seconds, so that a recovering worker or inventory is not met by
// all of them at once. It is derived from the session id rather than drawn
// at random so that a resumed session answers the same.
func retryAfter(sessionID string) time.Duration {
	h := fnv.New32a()
	_, _ = h.Write([]byte(sessionID))
	return 30*time.Second + time.Duration(h.Sum32()%61)*time.Second
}
