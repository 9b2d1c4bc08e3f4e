package gateway

import (
	"context"
	crand "crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	grpccodes "google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// How a request was tied to its session (docs/protocol.md §4.1: cookie first, socket
// second; docs/design.md §2 step 4: the client address and the open session record
// last).
const (
	viaCookie  = "cookie"
	viaConn    = "connection"
	viaAddress = "address"
)

// abandonTimeout bounds the advisory Abandon call made on a takeover.
const abandonTimeout = 2 * time.Second

// unavailableRetryAfter is the Retry-After of a 503 caused by a store the
// gateway depends on (credentials, leases): a short outage, not overload.
const unavailableRetryAfter = 10 * time.Second

// serverKind is the kind of the gateway's spans, built once: an option
// made per request is an allocation per request.
var serverKind = trace.WithSpanKind(trace.SpanKindServer)

// request is one CPE POST on its way through the gateway.
type request struct {
	w       http.ResponseWriter
	r       *http.Request
	enc     encoding
	body    []byte
	charset string
	addr    string // "ip:port"
	ip      string
	tls     bool
	tenant  string
	conn    *connState
	// rpc is the local name of the body's RPC element; "" for an empty or
	// unreadable body.
	rpc       string
	inform    *cwmp.Inform
	deviceKey string
	sessionID string
	// start is when the request arrived (while tracing); span is its
	// span once it is known to open or continue a session (sessionSpan).
	start time.Time
	span  trace.Span
}

// sessionSpan starts the span of request q of session sessionID, in the
// session's trace (docs/operations.md, "Traces"): the root of the trace for
// the request that opens the session (first), a child of that root for the
// later ones. The span began when the request arrived; ServeHTTP ends it.
// A line logged before this (the search for the request's session) gave
// the request a span of its own (logContext): that span ends here, and the
// session's links to it.
func (s *Service) sessionSpan(ctx context.Context, q *request, sessionID string, first bool) context.Context {
	if !s.tracing {
		// Nothing recorded: the no-op span ServeHTTP starts costs less
		// than deriving the session's IDs.
		return ctx
	}
	if q.span != nil {
		link := trace.Link{SpanContext: q.span.SpanContext()}
		q.span.End()
		ctx, q.span = telemetry.StartSessionSpan(ctx, s.tracer, "cwmp.request", sessionID, first, q.start, link)
		return ctx
	}
	// An unsampled session's span is decided before any option is built
	// (telemetry.StartSessionSpan).
	ctx, q.span = telemetry.StartSessionSpan(ctx, s.tracer, "cwmp.request", sessionID, first, q.start)
	return ctx
}

// logContext returns ctx with the span whose IDs the lines logged about q
// carry (pkg/telemetry adds trace_id and span_id): the session's when the
// request is known to belong to one (sessionSpan), else a span of the
// request's own, started now (ServeHTTP ends it, or sessionSpan when the
// request turns out to open or continue a session). Without tracing there
// are no IDs.
func (s *Service) logContext(ctx context.Context, q *request) context.Context {
	if !s.tracing || trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	if q.span == nil {
		_, q.span = s.tracer.Start(ctx, "cwmp.request", serverKind, trace.WithTimestamp(q.start))
	}
	return trace.ContextWithSpan(ctx, q.span)
}

func (q *request) logAttrs(extra ...slog.Attr) []slog.Attr {
	attrs := make([]slog.Attr, 0, 5+len(extra))
	attrs = append(attrs, slog.String("remote_addr", q.addr))
	if q.sessionID != "" {
		attrs = append(attrs, slog.String("session_id", q.sessionID))
	}
	if q.deviceKey != "" {
		attrs = append(attrs, slog.String("device_id", q.deviceKey))
	}
	if q.tenant != "" {
		attrs = append(attrs, slog.String("tenant", q.tenant))
	}
	if q.rpc != "" {
		attrs = append(attrs, slog.String("rpc", q.rpc))
	}
	return append(attrs, extra...)
}

// log writes a record about q, building its attributes only when the level
// is enabled (the hot path logs at debug level).
func (s *Service) log(ctx context.Context, level slog.Level, msg string, q *request, extra ...slog.Attr) {
	if !s.logger.Enabled(ctx, level) {
		return
	}
	s.logger.LogAttrs(s.logContext(ctx, q), level, msg, q.logAttrs(extra...)...)
}

// Handler returns the CWMP HTTP handler. Served outside Run (without its
// connection bookkeeping), every request behaves as if it came on a new
// connection, and leases orphaned by store failures are left to expire
// (their background release runs with Run).
func (s *Service) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Service) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if s.cfg.AdminListenAddr == "" {
		switch r.URL.Path {
		case "/healthz":
			s.serveHealthz(w, r)
			return
		case "/readyz":
			s.serveReadyz(w, r)
			return
		}
	}
	if s.files != nil && strings.HasPrefix(r.URL.Path, "/files/") {
		// Downloads of files by CPEs: authorised by their signed URL,
		// bounded by the files service's own limits. While tracing, a
		// span of their own, whose IDs the lines logged about them carry.
		if s.tracing {
			ctx, span := s.tracer.Start(r.Context(), "files.download", serverKind)
			defer span.End()
			r = r.WithContext(ctx)
		}
		s.files.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "CWMP requests are POSTs", http.StatusMethodNotAllowed)
		return
	}
	ctx := r.Context()
	if d := s.cfg.WriteTimeout; d > 0 {
		// What the request waits for (credentials, authentication state,
		// affinity, leases) gets no longer than its answer has to be
		// written: net/http cancels the context only when the client
		// hangs up, and a CPE or an attacker holding its connection open
		// would otherwise keep the handler waiting on a stalled store.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	q := &request{w: w, r: r, tls: r.TLS != nil, conn: connFrom(ctx)}
	if s.tracing {
		q.start = time.Now()
	}
	status := s.serveCWMP(ctx, q)
	span := q.span
	if span == nil {
		// A request that neither opened nor continued a session (an
		// unreadable body, an empty POST outside a session, a refused
		// binding) and logged nothing: a trace of its own.
		ctx, span = s.tracer.Start(ctx, "cwmp.request", serverKind, trace.WithTimestamp(q.start))
	} else if span.SpanContext().IsSampled() {
		// For the metrics' exemplars, which name sampled traces only: an
		// unsampled session's request does without the context.
		ctx = trace.ContextWithSpan(ctx, span)
	}
	defer span.End()
	s.metrics.countRequest(ctx, status)
	if span.IsRecording() {
		span.SetAttributes(
			attribute.Int("http.response.status_code", status),
			attribute.String("cwmp.rpc", q.rpc),
			attribute.String("fleetacs.session_id", q.sessionID),
			attribute.String("fleetacs.device_id", q.deviceKey),
			attribute.String("fleetacs.tenant", q.tenant),
		)
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	}
}

// serveCWMP handles one POST and returns the status it answered with.
func (s *Service) serveCWMP(ctx context.Context, q *request) int {
	q.addr, q.ip = clientAddr(q.r, s.trusted)
	q.tenant = tenantOf(q.r, s.tenantHosts, s.cfg.DefaultTenant)
	enc, err := parseEncoding(q.r.Header)
	if err != nil {
		return s.refuseBody(ctx, q, err)
	}
	q.enc = enc
	if q.body, err = readBody(q.w, q.r, enc, s.cfg.MaxWireBodyBytes, s.cfg.MaxBodyBytes); err != nil {
		return s.refuseBody(ctx, q, err)
	}
	q.charset = charsetOf(q.r.Header.Get("Content-Type"))
	if len(q.body) > 0 {
		q.rpc = rpcName(q.body)
	}
	if q.rpc == "Inform" {
		// An Inform always opens a session, even on a connection or with a
		// cookie of a live one: the CPE gave that one up (docs/protocol.md §4.3 rule
		// 1). A body that does not decode still goes to the worker, which
		// answers the fault.
		if inf, ok := informOf(q.body, q.charset, s.cfg.MaxBodyBytes); ok {
			q.inform = inf
			// An Inform whose DeviceId names no device gets no device
			// key, so no credential lookup or lease under a made-up key
			// ("-"); the worker refuses it with fault 8003
			// (docs/protocol.md §5.3).
			if cwmp.CheckDeviceID(inf.DeviceID) == nil {
				q.deviceKey = s.deviceKey(inf.DeviceID)
			}
		}
		return s.openSession(ctx, q)
	}
	rt, answered := s.findSession(ctx, q)
	if answered != 0 {
		return answered
	}
	if rt.via != "" {
		return s.continueSession(ctx, q, rt.rec, rt.via)
	}
	if len(q.body) == 0 {
		return s.emptyOutsideSession(ctx, q)
	}
	// A message outside a session: the worker answers it (docs/protocol.md
	// §4.3 rule 1), under the same authentication and admission as an
	// Inform.
	return s.openSession(ctx, q)
}

// openSession handles a request that starts a session: authentication,
// draining, the session cap, admission, the device lease, then the worker.
func (s *Service) openSession(ctx context.Context, q *request) int {
	// The session's ID is drawn now so that what is logged while the
	// request is authenticated and admitted carries the span's IDs; it
	// names the session only once one opens.
	sessionID := crand.Text()
	ctx = s.sessionSpan(ctx, q, sessionID, true)
	// The CPE is done with whatever session its connection carried.
	if old, _ := q.conn.get(); old.SessionID != "" {
		s.sessions.end(old.SessionID)
		q.conn.clear(old.SessionID)
	}
	var events []cwmp.Event
	var deviceID *cwmp.DeviceID
	if q.inform != nil {
		events, deviceID = q.inform.Events, &q.inform.DeviceID
	}
	priority := s.admission.isPriority(events)
	if s.draining.Load() {
		q.w.Header().Set("Connection", "close")
		return s.shed(ctx, q, shedDraining, priority)
	}

	// Authenticate before admission: a 401 round trip costs no token, and
	// requests with forged credentials cannot drain the bucket.
	res, err := s.auth.authenticate(ctx, q.r, authInput{
		body: q.body, tls: q.tls, source: q.ip, tenant: q.tenant, deviceKey: q.deviceKey, deviceID: deviceID,
	})
	if err != nil {
		s.log(ctx, slog.LevelError, "CPE credentials unavailable", q, slog.Any("err", err))
		return s.unavailable(q)
	}
	if res.verdict != verdictOK {
		return s.refuseAuth(ctx, q, res)
	}
	auth := res.auth

	if !s.sessions.reserve() {
		return s.shed(ctx, q, shedMaxSessions, priority)
	}
	if !s.admission.admit(priority) {
		s.sessions.commit("")
		return s.shed(ctx, q, shedRate, priority)
	}

	q.sessionID = sessionID
	var lease *Lease
	if q.deviceKey != "" {
		start := s.now()
		l, err := s.leases.Acquire(ctx, q.tenant, q.deviceKey, q.sessionID, s.cfg.LeaseTTL)
		if err != nil {
			s.sessions.commit("")
			s.log(ctx, slog.LevelError, "device lease unavailable", q, slog.Any("err", err))
			// The store may apply the acquire all the same (orphans.go).
			s.orphans.add(ctx, q.tenant, q.deviceKey, q.sessionID, start.Add(s.cfg.LeaseTTL))
			return s.unavailable(q)
		}
		if l.Superseded != "" && !s.supersede(ctx, q, l.Superseded) {
			l.Superseded = ""
		}
		lease = &l
	}

	reply, err := s.exchange(ctx, &Exchange{
		SessionID: q.sessionID, NewSession: true, Tenant: q.tenant, DeviceKey: q.deviceKey,
		DeviceID: deviceID, Events: events, Lease: lease,
		Body: q.body, Charset: q.charset, RemoteAddr: q.addr, TLS: q.tls, Auth: auth,
	})
	if err != nil {
		s.sessions.commit("")
		s.releaseLease(ctx, q, lease)
		if !errors.Is(err, ErrWorkersBusy) {
			// The worker may have stored the session's record before the
			// call failed; left behind, it would make the address
			// ambiguous for the CPE's next session.
			s.deleteRecord(ctx, q, SessionRecord{SessionID: q.sessionID, ClientIP: q.ip})
		}
		return s.forwardFailed(ctx, q, err, true, priority)
	}
	open := !reply.SessionEnded
	var rec SessionRecord
	if open {
		s.sessions.commit(q.sessionID)
		rec = SessionRecord{SessionID: q.sessionID, Worker: reply.Worker, ClientIP: q.ip, Tenant: q.tenant, DeviceKey: q.deviceKey, Auth: auth}
		// The worker stored the session's affinity record (docs/design.md
		// §1: workers own them).
		q.conn.set(rec, s.now())
		s.metrics.sessions.Add(ctx, 1)
		// The worker owns the session and logs it; the gateway's view is
		// detail.
		s.log(ctx, slog.LevelDebug, "session started", q,
			slog.Any("events", eventCodes(events)), slog.String("auth", auth.Method.String()), slog.String("principal", auth.Principal))
	} else {
		s.sessions.commit("")
		s.releaseLease(ctx, q, lease)
	}
	return s.writeReply(ctx, q, reply, rec, open)
}

// continueSession forwards a request of an open session.
func (s *Service) continueSession(ctx context.Context, q *request, rec SessionRecord, via string) int {
	q.sessionID = rec.SessionID
	q.deviceKey = rec.DeviceKey
	ctx = s.sessionSpan(ctx, q, rec.SessionID, false)
	if rec.Tenant != "" {
		q.tenant = rec.Tenant
	}
	// findSession checked that q may continue the session (binding.go).
	auth := Auth{Method: AuthSession, Principal: rec.Auth.Principal, Scope: rec.Auth.Scope}
	s.sessions.touch(rec.SessionID)
	reply, err := s.exchange(ctx, &Exchange{
		SessionID: rec.SessionID, Tenant: q.tenant, DeviceKey: rec.DeviceKey,
		Body: q.body, Charset: q.charset, RemoteAddr: q.addr, TLS: q.tls, Auth: auth, Worker: rec.Worker,
	})
	if err != nil {
		return s.forwardFailed(ctx, q, err, false, false)
	}
	open := !reply.SessionEnded
	if open {
		if reply.Worker != "" {
			rec.Worker = reply.Worker
		}
		rec.Tenant, rec.ClientIP = q.tenant, q.ip
		// The worker keeps the session's affinity record up to date.
		q.conn.set(rec, s.now())
	} else {
		s.endSession(ctx, q, rec, false)
	}
	return s.writeReply(ctx, q, reply, rec, open)
}

// endSession forgets a session the worker ended, and its affinity record
// unless the worker removed it.
func (s *Service) endSession(ctx context.Context, q *request, rec SessionRecord, deleteRecord bool) {
	s.sessions.end(rec.SessionID)
	q.conn.clear(rec.SessionID)
	if rec.ClientIP == "" {
		rec.ClientIP = q.ip
	}
	if deleteRecord {
		s.deleteRecord(ctx, q, rec)
	}
	s.log(ctx, slog.LevelDebug, "session ended", q)
}

func (s *Service) deleteRecord(ctx context.Context, q *request, rec SessionRecord) {
	if err := s.affinity.Delete(ctx, rec); err != nil {
		s.log(ctx, slog.LevelWarn, "affinity record not deleted", q, slog.Any("err", err))
	}
}

// supersede handles a new session that took the device lease over from a
// session that still looked live: the CPE abandoned that one. It reports
// whether that was a takeover: a superseded session without an open
// session record never answered an exchange (its lease was orphaned by an
// acquire or release that failed here but reached the store, orphans.go),
// and taking its lease over is not one.
func (s *Service) supersede(ctx context.Context, q *request, old string) bool {
	s.sessions.end(old)
	rec, err := s.affinity.Lookup(ctx, old)
	switch {
	case errors.Is(err, ErrNoRecord):
		s.log(ctx, slog.LevelDebug, "lease of a session that never started taken over", q, slog.String("superseded_session_id", old))
		return false
	case err != nil:
		s.log(ctx, slog.LevelWarn, "affinity lookup failed", q, slog.String("superseded_session_id", old), slog.Any("err", err))
	}
	actx, cancel := context.WithTimeout(ctx, abandonTimeout)
	defer cancel()
	if err := s.fwd.Abandon(actx, &Abandonment{SessionID: old, Tenant: q.tenant, DeviceKey: q.deviceKey, Reason: AbandonSuperseded, Worker: rec.Worker}); err != nil {
		// Advisory: the old worker's writes are fenced off anyway.
		s.log(ctx, slog.LevelDebug, "abandon of superseded session not delivered", q, slog.String("superseded_session_id", old), slog.Any("err", err))
	}
	if rec.SessionID != "" {
		s.deleteRecord(ctx, q, rec)
	}
	s.log(ctx, slog.LevelInfo, "session took over the device lease", q, slog.String("superseded_session_id", old))
	return true
}

func (s *Service) releaseLease(ctx context.Context, q *request, lease *Lease) {
	if lease == nil {
		return
	}
	if err := s.leases.Release(ctx, q.tenant, q.deviceKey, q.sessionID); err != nil {
		s.log(ctx, slog.LevelWarn, "device lease not released; retrying in the background", q, slog.Any("err", err))
		s.orphans.add(ctx, q.tenant, q.deviceKey, q.sessionID, lease.Expires)
	}
}

// exchange calls the worker within the exchange timeout.
func (s *Service) exchange(ctx context.Context, ex *Exchange) (*Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ExchangeTimeout)
	defer cancel()
	reply, err := s.fwd.Exchange(ctx, ex)
	if err == nil && reply == nil {
		err = errors.New("no reply")
	}
	if err != nil {
		return nil, err
	}
	// Only a 200 with a body leaves the session open (sessions.v1
	// ExchangeResponse); an empty 200 is sent as 204, which ends it.
	if reply.Status == http.StatusOK && len(reply.Body) == 0 {
		reply.Status = http.StatusNoContent
	}
	if reply.Status != http.StatusOK {
		reply.SessionEnded = true
	}
	return reply, nil
}

// writeReply sends the worker's answer. open says whether the session goes
// on after it; a reply that cannot be delivered then abandons it.
func (s *Service) writeReply(ctx context.Context, q *request, reply *Reply, rec SessionRecord, open bool) int {
	h := q.w.Header()
	if c := reply.SetSessionCookie; c != "" {
		if validSessionID(c) {
			h.Set("Set-Cookie", sessionCookie+"="+c+"; Path=/")
		} else {
			s.log(ctx, slog.LevelError, "worker asked for a session cookie with unsafe characters; not set", q)
		}
	}
	status := reply.Status
	switch status {
	case http.StatusOK, http.StatusBadRequest, http.StatusInternalServerError:
		if len(reply.Body) == 0 {
			h.Set("Content-Length", "0")
			q.w.WriteHeader(status)
			break
		}
		body := compress(q.enc, reply.Body)
		h.Set("Content-Type", `text/xml; charset="utf-8"`)
		if q.enc != encIdentity {
			h.Set("Content-Encoding", q.enc.String())
		}
		h.Set("Content-Length", strconv.Itoa(len(body)))
		q.w.WriteHeader(status)
		_, _ = q.w.Write(body)
	case http.StatusNoContent:
		q.w.WriteHeader(status)
	case http.StatusServiceUnavailable:
		secs := int64((reply.RetryAfter + time.Second - 1) / time.Second)
		if secs <= 0 {
			secs = s.jitteredRetryAfter()
		}
		retryLater(q, secs)
	default:
		s.log(ctx, slog.LevelError, "worker answered with a status outside the contract; sending 500", q, slog.Int("status", status))
		status = http.StatusInternalServerError
		h.Set("Content-Length", "0")
		q.w.WriteHeader(status)
	}
	if err := http.NewResponseController(q.w).Flush(); err != nil && open {
		// The CPE may never see the ACS request this reply carried.
		s.endSession(ctx, q, rec, true)
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonTimeout)
		defer cancel()
		if err := s.fwd.Abandon(actx, &Abandonment{SessionID: rec.SessionID, Tenant: q.tenant, DeviceKey: rec.DeviceKey, Reason: AbandonResponseNotDelivered, Worker: rec.Worker}); err != nil {
			s.log(ctx, slog.LevelDebug, "abandon of undelivered session not delivered", q, slog.Any("err", err))
		}
	}
	s.log(ctx, slog.LevelDebug, "cwmp exchange", q, slog.Int("status", status))
	return status
}

// refuseBody answers a body the gateway will not forward.
func (s *Service) refuseBody(ctx context.Context, q *request, err error) int {
	var be *bodyError
	if !errors.As(err, &be) {
		// The connection failed while reading; nobody is listening. Close
		// it: returning would make net/http answer 200.
		s.log(ctx, slog.LevelDebug, "request body not read", q, slog.Any("err", err))
		if c, _, herr := http.NewResponseController(q.w).Hijack(); herr == nil {
			_ = c.Close()
		}
		return 0
	}
	s.log(ctx, slog.LevelInfo, "request body refused", q, slog.Int("status", be.status), slog.String("reason", be.Error()))
	// The rest of an oversize body is not worth reading.
	q.w.Header().Set("Connection", "close")
	q.w.Header().Set("Content-Length", "0")
	q.w.WriteHeader(be.status)
	return be.status
}

// refuseAuth answers a request authentication did not let through: 401
// with a challenge, or 503 with Retry-After while failures block the
// attempt. The connection is closed once it has carried
// gateway.auth-conn-failures failures, so that guessing costs a TCP (and
// TLS) handshake per few attempts.
func (s *Service) refuseAuth(ctx context.Context, q *request, res authResult) int {
	principal := slog.String("principal", clipPrincipal(res.auth.Principal))
	switch res.verdict {
	case verdictBlocked:
		s.authm.countBlocked(ctx, res.limit)
		s.log(ctx, slog.LevelDebug, "CPE authentication blocked after repeated failures", q,
			principal, slog.String("limit", res.limit.String()), slog.Duration("retry_after", res.wait))
		q.w.Header().Set("Connection", "close")
		return retryLater(q, int64((res.wait+time.Second-1)/time.Second))
	case verdictFailed:
		s.metrics.authFailures.Add(ctx, 1)
		s.log(ctx, slog.LevelWarn, "CPE authentication failed", q, principal)
		if q.conn.authFailed() >= s.cfg.AuthConnFailures || res.wait > 0 {
			q.w.Header().Set("Connection", "close")
		}
	case verdictStale:
		s.log(ctx, slog.LevelDebug, "stale Digest nonce or nonce count; challenging again", q, principal)
	}
	s.auth.challenge(q.w, q.tls, res.verdict == verdictStale)
	return http.StatusUnauthorized
}

// maxLoggedPrincipal bounds the part of a refused attempt's user name that
// is logged: the name is anyone's to choose, up to the header limit, and
// ManagementServer.Username holds at most 256 characters.
const maxLoggedPrincipal = 256

// clipPrincipal returns what is logged of a user name no one vouched for.
func clipPrincipal(p string) string {
	if len(p) <= maxLoggedPrincipal {
		return p
	}
	return strings.ToValidUTF8(p[:maxLoggedPrincipal], "")
}

// shed answers a new session with 503 and a jittered Retry-After.
func (s *Service) shed(ctx context.Context, q *request, reason string, priority bool) int {
	s.metrics.countShed(ctx, reason, priority)
	s.log(ctx, slog.LevelDebug, "new session shed", q, slog.String("reason", reason), slog.Bool("priority", priority))
	return retryLater(q, s.jitteredRetryAfter())
}

// unavailable answers 503 when a store the gateway needs did not answer.
func (s *Service) unavailable(q *request) int {
	return retryLater(q, int64(unavailableRetryAfter/time.Second))
}

// jitteredRetryAfter picks a Retry-After within the configured bounds.
func (s *Service) jitteredRetryAfter() int64 {
	return retryAfter(s.cfg.RetryAfterMin, s.cfg.RetryAfterMax, s.randN)
}

// retryLater answers 503 with an empty body and Retry-After secs.
func retryLater(q *request, secs int64) int {
	h := q.w.Header()
	h.Set("Retry-After", strconv.FormatInt(secs, 10))
	h.Set("Content-Length", "0")
	q.w.WriteHeader(http.StatusServiceUnavailable)
	return http.StatusServiceUnavailable
}

// forwardFailed answers a request the worker did not take.
func (s *Service) forwardFailed(ctx context.Context, q *request, err error, newSession, priority bool) int {
	if errors.Is(err, ErrWorkersBusy) {
		if newSession {
			return s.shed(ctx, q, shedWorkersBusy, priority)
		}
		s.log(ctx, slog.LevelWarn, "no session worker has room for an open session", q)
		return s.unavailable(q)
	}
	if ctx.Err() != nil && q.r.Context().Err() != nil {
		s.log(ctx, slog.LevelDebug, "CPE went away during the exchange", q, slog.Any("err", err))
		return 0
	}
	if transientForwardError(err) {
		// Overload or an outage the CPE can wait out (a worker too slow
		// to answer within gateway.exchange-timeout, none reachable): a
		// 503 with Retry-After makes it back off and retry the session,
		// re-sending its events (docs/protocol.md §4.4), instead of counting a
		// server error.
		s.log(ctx, slog.LevelWarn, "no session worker answered in time; asking the CPE to retry", q, slog.Any("err", err))
		return retryLater(q, s.jitteredRetryAfter())
	}
	s.log(ctx, slog.LevelError, "session worker did not answer", q, slog.Any("err", err))
	q.w.Header().Set("Content-Length", "0")
	q.w.WriteHeader(http.StatusInternalServerError)
	return http.StatusInternalServerError
}

// transientForwardError reports a forwarding failure that says nothing
// about the request itself: a deadline, every worker unavailable, or no
// worker registered at all.
func transientForwardError(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNoWorkers) {
		return true
	}
	switch grpcstatus.Code(err) {
	case grpccodes.DeadlineExceeded, grpccodes.Unavailable:
		return true
	}
	return false
}

func eventCodes(events []cwmp.Event) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Code
	}
	return out
}
