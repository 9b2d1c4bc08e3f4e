package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// SessionReport describes one finished session, for Config.OnSession.
type SessionReport struct {
	Device *Device
	// Events are the events the Inform carried.
	Events []cwmp.Event
	// Requests are the methods of the ACS requests answered, in order.
	Requests []string
	// OK reports a session that ended with the ACS's empty response.
	OK bool
	// Kind classifies a failure (see Summary.Errors); "http_503" for a
	// shed session.
	Kind string
	Err  error
	// Exchanges counts the HTTP round trips.
	Exchanges int
}

// maxExchanges bounds one session, against an ACS that never ends it.
const maxExchanges = 10000

// maxRedirects bounds the redirects followed on a session's first POST.
const maxRedirects = 5

// maxRetryRequest bounds how often a request faulted with 8005 (Retry
// request) is sent again, as CPE stacks do (docs/protocol.md §4.3).
const maxRetryRequest = 5

// sessionError is a failed session's classification.
type sessionError struct {
	kind       string
	retryAfter time.Duration // for 503
	err        error
}

func (e *sessionError) Error() string {
	if e.err != nil {
		return e.kind + ": " + e.err.Error()
	}
	return e.kind
}

func (e *sessionError) Unwrap() error { return e.err }

func failf(kind string, format string, args ...any) *sessionError {
	return &sessionError{kind: kind, err: fmt.Errorf(format, args...)}
}

// buffers are a session's reusable byte buffers.
type buffers struct {
	enc  []byte
	body bytes.Buffer
	gz   bytes.Buffer
}

var bufferPool = sync.Pool{New: func() any { return &buffers{enc: make([]byte, 0, 8<<10)} }}

// session is one CWMP session of one device.
type session struct {
	sim *Simulator
	d   *Device
	ctx context.Context
	t   *target
	// cookies set by the ACS during this session (cookie mode), and the
	// Cookie header they make ("" until built).
	cookies    []cookie
	cookieLine string
	// cn is the session's own connection in keep-alive mode.
	cn *conn
	// ns and v are the namespace and version of the session's envelopes
	// once the InformResponse arrived.
	ns string
	v  cwmp.Version
	// held reports that the last ACS envelope carried HoldRequests=true.
	held bool
	// cpeRequestsSent reports the device's own requests went out.
	cpeRequestsSent bool
	// afterEnd: the requests go out after the ACS's empty response;
	// sessionOver: the ACS answered them as if the session had ended.
	afterEnd, sessionOver bool
	bufs                  *buffers
	// active is the connection of the round trip in progress, whose
	// deadline the run's cancellation expires (watchCancel).
	active    atomic.Pointer[conn]
	exchanges int
	redirects int
	idSeq     int
	requests  []string
}

type cookie struct{ name, value string }

// runSession runs one session for d and reports it. The device is held by
// the calling worker.
func (s *Simulator) runSession(ctx context.Context, d *Device, intended time.Time) (report SessionReport) {
	start := time.Now()
	ss := &session{sim: s, d: d, ctx: ctx, t: s.target, bufs: bufferPool.Get().(*buffers)}
	stopWatch := ss.watchCancel()
	defer func() {
		stopWatch()
		bufferPool.Put(ss.bufs)
		ss.finish()
	}()
	s.stats.started.Add(1)
	if intended.IsZero() || intended.After(start) {
		intended = start
	} else if start.Sub(intended) > 10*time.Millisecond {
		s.stats.late.Add(1)
	}

	d.mu.Lock()
	events := append([]cwmp.Event(nil), d.events...)
	inform := &cwmp.Inform{
		DeviceID:      d.id,
		Events:        events,
		MaxEnvelopes:  1,
		CurrentTime:   cwmp.NewDateTime(start),
		RetryCount:    d.retryCount,
		ParameterList: d.informParams(start),
	}
	d.mu.Unlock()
	report = SessionReport{Device: d, Events: events}

	err := ss.run(inform)
	end := time.Now()
	report.Exchanges = ss.exchanges
	report.Requests = ss.requests
	var serr *sessionError
	switch {
	case err == nil:
		report.OK = true
		s.stats.ok.Add(1)
		s.stats.session.record(end.Sub(intended))
		for _, e := range events {
			s.stats.count(s.stats.events, e.Code)
		}
	case errors.As(err, &serr) && serr.kind == "http_503":
		report.Kind, report.Err = serr.kind, err
		s.stats.shed.Add(1)
	case errors.As(err, &serr) && serr.kind == "canceled":
		// The run was stopped under it: not the ACS's failure.
		report.Kind, report.Err = serr.kind, err
		s.stats.canceled.Add(1)
	default:
		report.Kind, report.Err = "protocol", err
		if errors.As(err, &serr) {
			report.Kind = serr.kind
		}
		s.stats.failed.Add(1)
		s.stats.failure(report.Kind, err)
	}
	return report
}

// watchCancel makes the end of the session's context expire the deadline
// of the connection a round trip is using, so that a cancelled run does not
// wait for every session's timeout. A round trip that starts after the
// end sees ctx.Err itself (client.roundTrip). It returns the function that
// stops watching.
func (ss *session) watchCancel() (stop func() bool) {
	return context.AfterFunc(ss.ctx, func() {
		if cn := ss.active.Load(); cn != nil {
			cn.nc.SetDeadline(expiredDeadline)
		}
	})
}

// finish hands the session's keep-alive connection back.
func (ss *session) finish() {
	if ss.cn != nil {
		ss.putIdle(ss.cn)
		ss.cn = nil
	}
}

// run carries out the session: Inform, the CPE's own requests, the empty
// POST, then the ACS's requests until it sends an empty response.
func (ss *session) run(inform *cwmp.Inform) error {
	cfg := ss.sim.cfg
	ver := ss.sim.version
	hdr := cwmp.Header{ID: ss.nextID(), HasID: true}
	if ver >= cwmp.V1_3 {
		hdr.SessionTimeout = cfg.SessionTimeout
	}
	if ver == cwmp.V1_4 {
		hdr.SupportedCWMPVersions = "1.0,1.1,1.2,1.3,1.4"
	}
	env := &cwmp.Envelope{Version: ver, Header: hdr, Body: inform}
	var resp *cwmp.Envelope
	for attempt := 0; ; attempt++ {
		r, err := ss.call(env)
		if err != nil {
			return err
		}
		if r == nil {
			return failf("protocol", "empty response to Inform")
		}
		if f, ok := r.Body.(*cwmp.Fault); ok {
			// 8005 asks the CPE to send the Inform again; any other fault
			// fails the session (docs/protocol.md §4.3).
			if f.Code == cwmp.FaultRetryRequest && attempt < maxRetryRequest {
				ss.sim.stats.retries.Add(1)
				continue
			}
			return &sessionError{kind: "inform_fault_" + strconv.Itoa(int(f.Code)), err: f}
		}
		if _, ok := r.Body.(*cwmp.InformResponse); !ok {
			return failf("protocol", "Inform answered with %s", r.Body.Method())
		}
		resp = r
		break
	}
	ss.negotiate(resp)
	ss.held = resp.Header.HoldRequests
	ss.d.mu.Lock()
	ss.d.informDelivered(inform.Events)
	ss.d.mu.Unlock()

	if !ss.held {
		if err := ss.sendCPERequests(); err != nil {
			return err
		}
	}
	var out []byte // nil: the empty POST
	for {
		if ss.exchanges >= maxExchanges {
			return failf("protocol", "ACS did not end the session after %d exchanges", ss.exchanges)
		}
		r, err := ss.callBody(out)
		if err != nil {
			return err
		}
		if r == nil {
			// The ACS has nothing more. A CPE that was held may still owe
			// its own requests: the empty response ends the ACS's turn, and
			// an ACS that held the CPE keeps the session open for them
			// (pkg/cwmp's Session does), so it sends them now, then a new
			// empty POST. An ACS that meant the session to be over answers
			// them with 204 or a fault, which ends it cleanly.
			if !ss.cpeRequestsSent && ss.owesRequests() {
				more, err := ss.sendCPERequestsAfterEnd()
				if err != nil || !more {
					return err
				}
				out = nil
				continue
			}
			return nil
		}
		ss.held = r.Header.HoldRequests
		if out, err = ss.answer(r); err != nil {
			return err
		}
	}
}

// negotiate takes the session's namespace and version from the
// InformResponse (docs/protocol.md §1.2): its namespace, and UseCWMPVersion when the
// ACS sent one.
func (ss *session) negotiate(r *cwmp.Envelope) {
	ss.ns, ss.v = r.Namespace, r.Version
	if u := r.Header.UseCWMPVersion; u != "" {
		if v, err := cwmp.ParseVersion(u); err == nil && v <= ss.sim.version {
			ss.v = v
		}
	}
	if ss.v > ss.sim.version {
		ss.v = ss.sim.version
	}
	// The namespace must be able to carry the version when encoding.
	if nv, ok := cwmp.VersionOfNamespace(ss.ns); !ok || (nv < cwmp.V1_2 && nv != ss.v) || (nv >= cwmp.V1_2 && ss.v < cwmp.V1_2) {
		ss.ns = ss.v.Namespace()
	}
}

func (ss *session) nextID() string {
	ss.idSeq++
	if ss.idSeq < len(sessionIDs) {
		return sessionIDs[ss.idSeq]
	}
	return "cpesim-" + strconv.Itoa(ss.idSeq)
}

// sessionIDs are the first IDs of every session's requests, built once.
var sessionIDs = func() (ids [8]string) {
	for i := range ids {
		ids[i] = "cpesim-" + strconv.Itoa(i)
	}
	return ids
}()

// answer handles one ACS request and returns the encoded envelope to POST.
func (ss *session) answer(req *cwmp.Envelope) ([]byte, error) {
	st := ss.sim.stats
	method := req.Body.Method()
	ss.requests = append(ss.requests, method)
	st.count(st.rpcs, method)
	if gpv, ok := req.Body.(*cwmp.GetParameterValues); ok && ss.sim.cfg.CrashGPVAbove > 0 && len(gpv.ParameterNames) > ss.sim.cfg.CrashGPVAbove {
		return nil, ss.crash(len(gpv.ParameterNames))
	}
	loseAnswer := false
	if h := ss.sim.cfg.OnRequest; h != nil {
		loseAnswer = h(ss.d, req.Body)
	}
	msg := ss.d.handle(req.Body, ss.v, time.Now())
	if loseAnswer {
		if ss.cn != nil {
			ss.cn.close()
			ss.cn = nil
		}
		return nil, failf("answer_lost", "the answer to %s was lost (Config.OnRequest)", method)
	}
	if f, ok := msg.(*cwmp.Fault); ok {
		st.count(st.faults, strconv.Itoa(int(f.Code)))
	}
	out := &cwmp.Envelope{Namespace: ss.ns, Version: ss.v,
		Header: cwmp.Header{ID: req.Header.ID, HasID: req.Header.HasID}, Body: msg}
	b, err := cwmp.AppendEncode(ss.bufs.enc[:0], out)
	if err != nil {
		// An answer the schema refuses (a value the ACS set that the type
		// cannot carry) goes out as an internal error, as a CPE's would.
		st.count(st.errors, "encode_answer")
		st.count(st.faults, strconv.Itoa(int(cwmp.FaultCPEInternalError)))
		out.Body = cwmp.NewFault(cwmp.FaultCPEInternalError)
		if b, err = cwmp.AppendEncode(ss.bufs.enc[:0], out); err != nil {
			return nil, failf("encode", "%w", err)
		}
	}
	ss.bufs.enc = b
	return b, nil
}

// crash is the CWMP client dying on a request it cannot take
// (Config.CrashGPVAbove): the connection goes without an answer, and the
// client starts again as after a boot.
func (ss *session) crash(names int) error {
	if ss.cn != nil {
		ss.cn.close()
		ss.cn = nil
	}
	ss.d.reboot(time.Now(), "", "")
	return failf("crashed", "GetParameterValues of %d names crashed the client (more than %d)", names, ss.sim.cfg.CrashGPVAbove)
}

// owesRequests reports whether the device has requests of its own to send.
func (ss *session) owesRequests() bool {
	d := ss.d
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range d.transfers {
		if t.state == transferDone {
			return true
		}
	}
	return len(d.duResults) > 0
}

// sendCPERequests sends the device's TransferComplete and
// DUStateChangeComplete requests (docs/protocol.md §4.3 step 3), each until the ACS
// acknowledges it. A fault other than 8005 leaves the request for a later
// session.
func (ss *session) sendCPERequests() error {
	ss.cpeRequestsSent = true
	d := ss.d
	for {
		d.mu.Lock()
		var t *transfer
		for _, x := range d.transfers {
			if x.state == transferDone {
				t = x
				break
			}
		}
		var du *duChange
		if t == nil && len(d.duResults) > 0 {
			du = d.duResults[0]
		}
		d.mu.Unlock()
		var msg cwmp.Message
		switch {
		case t != nil:
			msg = &cwmp.TransferComplete{CommandKey: t.key, FaultStruct: t.fault,
				StartTime: cwmp.NewDateTime(t.start), CompleteTime: cwmp.NewDateTime(t.complete)}
		case du != nil && ss.v >= cwmp.V1_2:
			msg = &cwmp.DUStateChangeComplete{Results: du.results, CommandKey: du.key}
		default:
			return nil
		}
		acked, err := ss.cpeRequest(msg)
		if err != nil || !acked {
			return err
		}
		d.mu.Lock()
		if t != nil {
			d.transfers = removeTransfer(d.transfers, t)
			d.removeEvent(t.mEvent(), t.key)
			if !d.hasDoneTransfer() {
				d.removeEvent(evTransferComplete, "")
			}
		} else {
			d.duResults = d.duResults[1:]
			d.removeEvent(evMChangeDUState, du.key)
			if len(d.duResults) == 0 {
				d.removeEvent(evDUChange, "")
			}
		}
		d.mu.Unlock()
	}
}

// sendCPERequestsAfterEnd sends the owed requests after the ACS's empty
// response. more is false when the ACS answered them as if the session
// were over.
func (ss *session) sendCPERequestsAfterEnd() (more bool, err error) {
	ss.afterEnd = true
	if err := ss.sendCPERequests(); err != nil {
		return false, err
	}
	return !ss.sessionOver, nil
}

// cpeRequest sends one request of the device and waits for its response.
func (ss *session) cpeRequest(msg cwmp.Message) (acked bool, err error) {
	env := &cwmp.Envelope{Namespace: ss.ns, Version: ss.v, Header: cwmp.Header{ID: ss.nextID(), HasID: true}, Body: msg}
	for attempt := 0; ; attempt++ {
		r, err := ss.call(env)
		if err != nil {
			return false, err
		}
		if r == nil {
			if ss.afterEnd {
				ss.sessionOver = true
				return false, nil
			}
			return false, failf("protocol", "empty response to %s", msg.Method())
		}
		if f, ok := r.Body.(*cwmp.Fault); ok {
			if f.Code == cwmp.FaultRetryRequest && attempt < maxRetryRequest {
				ss.sim.stats.retries.Add(1)
				continue
			}
			ss.sessionOver = ss.afterEnd
			return false, nil
		}
		if r.Body.Method() != msg.Method()+"Response" {
			return false, failf("protocol", "%s answered with %s", msg.Method(), r.Body.Method())
		}
		return true, nil
	}
}

func removeTransfer(list []*transfer, t *transfer) []*transfer {
	for i, x := range list {
		if x == t {
			return append(list[:i], list[i+1:]...)
		}
	}
	return list
}

func (d *Device) hasDoneTransfer() bool {
	for _, t := range d.transfers {
		if t.state == transferDone {
			return true
		}
	}
	return false
}

// call POSTs an envelope (nil: the empty POST) and returns the ACS's
// envelope, nil for an empty response (204, or 200 with no body).
func (ss *session) call(env *cwmp.Envelope) (*cwmp.Envelope, error) {
	b, err := cwmp.AppendEncode(ss.bufs.enc[:0], env)
	if err != nil {
		return nil, failf("encode", "%w", err)
	}
	ss.bufs.enc = b
	return ss.callBody(b)
}

// callBody POSTs an encoded envelope (nil: the empty POST).
func (ss *session) callBody(body []byte) (*cwmp.Envelope, error) {
	resp, err := ss.post(body)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.status == http.StatusNoContent:
		return nil, nil
	case resp.status == http.StatusServiceUnavailable:
		return nil, &sessionError{kind: "http_503", retryAfter: resp.retryAfter}
	case resp.status != http.StatusOK:
		return nil, &sessionError{kind: "http_" + strconv.Itoa(resp.status), err: fmt.Errorf("ACS answered HTTP %d", resp.status)}
	}
	if len(bytes.TrimSpace(resp.body)) == 0 {
		return nil, nil
	}
	out, err := ss.sim.irs.decode(resp.body, contentCharset(resp.header.Get("Content-Type")))
	if err != nil {
		return nil, failf("decode", "decode ACS message: %w", err)
	}
	if out.Body == nil {
		return nil, nil
	}
	return out, nil
}

// post sends one body and returns the response, answering 401 challenges
// and following redirects of the first POST.
func (ss *session) post(body []byte) (*response, error) {
	cfg := ss.sim.cfg
	st := ss.sim.stats
	d := ss.d
	answered := false
	for {
		req := request{target: ss.t, body: body, close: cfg.ConnMode == ConnNewConn}
		if cfg.Gzip && len(body) > 0 {
			if err := gzipBody(&ss.bufs.gz, body); err != nil {
				return nil, failf("encode", "%w", err)
			}
			req.body, req.gzip = ss.bufs.gz.Bytes(), true
		}
		if cfg.ConnMode == ConnCookie && len(ss.cookies) > 0 {
			req.cookie = ss.cookieHeader()
		}
		if d.auth != nil {
			req.authorization = d.auth.header(http.MethodPost, ss.t.requestURI)
		}
		resp, err := ss.exchange(&req)
		if err != nil {
			return nil, err
		}
		ss.exchanges++
		st.httpStatus(resp.status)
		if cfg.ConnMode == ConnCookie {
			ss.storeCookies(resp.header)
		}
		switch {
		case resp.status == http.StatusUnauthorized:
			if answered {
				return nil, failf("auth", "ACS refused the credentials of %s", d.acsUser)
			}
			ch, ok := pickChallenge(parseChallenges(resp.header.Values("WWW-Authenticate")))
			if !ok {
				return nil, failf("auth", "401 without a usable challenge")
			}
			if d.acsUser == "" {
				return nil, failf("auth", "401 but the device has no credentials (set Username)")
			}
			st.authChallenges.Add(1)
			d.auth = &authState{user: d.acsUser, pass: d.acsPass, ch: ch}
			answered = true
			continue
		case resp.status >= 300 && resp.status < 400 && resp.status != http.StatusNotModified:
			loc := resp.header.Get("Location")
			if loc == "" || ss.ns != "" || ss.redirects >= maxRedirects {
				return resp, nil
			}
			t, err := ss.t.resolve(loc)
			if err != nil {
				return nil, failf("protocol", "%w", err)
			}
			// The redirect holds for this session only (docs/protocol.md §4.1).
			ss.t = t
			ss.redirects++
			st.redirects.Add(1)
			continue
		case resp.status == http.StatusServiceUnavailable && resp.retryAfter > 0:
			st.retryAfterWait.Add(int64(resp.retryAfter))
		}
		return resp, nil
	}
}

// exchange runs one HTTP round trip on the connection the mode calls for.
func (ss *session) exchange(req *request) (*response, error) {
	st := ss.sim.stats
	for attempt := 0; ; attempt++ {
		cn, err := ss.acquireConn(attempt > 0)
		if err != nil {
			return nil, ss.classify(err)
		}
		start := time.Now()
		ss.active.Store(cn)
		resp, err := ss.sim.client.roundTrip(ss.ctx, cn, req, &ss.bufs.body)
		ss.active.Store(nil)
		if err != nil {
			cn.close()
			if ss.cn == cn {
				ss.cn = nil
			}
			if errors.Is(err, errNoResponse) && attempt == 0 && ss.ctx.Err() == nil {
				continue // a stale keep-alive connection: once more on a new one
			}
			return nil, ss.classify(err)
		}
		st.exchange.record(time.Since(start))
		cn.reused = true
		ss.afterExchange(cn, resp.close)
		return resp, nil
	}
}

// acquireConn returns the connection for the next POST: the session's own
// in keep-alive mode, a pooled one in cookie mode, a new one in newconn
// mode. fresh forbids reusing an idle connection.
func (ss *session) acquireConn(fresh bool) (*conn, error) {
	c := ss.sim.client
	mode := ss.sim.cfg.ConnMode
	if mode == ConnKeepAlive && ss.cn != nil && !fresh {
		if ss.cn.target.addr == ss.t.addr && ss.cn.target.tls == ss.t.tls {
			return ss.cn, nil
		}
		// Redirected to another server: this connection cannot follow.
		ss.putIdle(ss.cn)
		ss.cn = nil
	}
	var cn *conn
	if mode != ConnNewConn && !fresh {
		if ss.d.srcIP != nil {
			cn, ss.d.idle = ss.d.idle, nil
			if cn != nil && cn.target.addr != ss.t.addr {
				cn.close()
				cn = nil
			}
		} else {
			cn = c.pool.get(ss.t)
		}
	}
	if cn == nil {
		var err error
		cn, err = c.dial(ss.ctx, ss.t, ss.d.srcIP)
		if err != nil {
			return nil, err
		}
	}
	if mode == ConnKeepAlive {
		ss.cn = cn
	}
	return cn, nil
}

// afterExchange keeps or closes a connection after a round trip: closed
// when the server or the mode says so, kept by the session in keep-alive
// mode, back to the idle pool otherwise.
func (ss *session) afterExchange(cn *conn, mustClose bool) {
	mode := ss.sim.cfg.ConnMode
	if mustClose || mode == ConnNewConn {
		cn.close()
		if ss.cn == cn {
			ss.cn = nil
		}
		return
	}
	if mode == ConnKeepAlive {
		return
	}
	ss.putIdle(cn)
}

// putIdle makes a connection available to later POSTs and sessions.
func (ss *session) putIdle(cn *conn) {
	if ss.d.srcIP != nil {
		// A connection from the device's own address serves only it.
		if ss.d.idle != nil {
			ss.d.idle.close()
		}
		ss.d.idle = cn
		return
	}
	ss.sim.client.pool.put(cn)
}

// cookieHeader returns the Cookie header of the session's cookies, built
// once for each change of them.
func (ss *session) cookieHeader() string {
	if ss.cookieLine != "" {
		return ss.cookieLine
	}
	if len(ss.cookies) == 1 {
		ss.cookieLine = ss.cookies[0].name + "=" + ss.cookies[0].value
		return ss.cookieLine
	}
	var b strings.Builder
	for i, c := range ss.cookies {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(c.name)
		b.WriteByte('=')
		b.WriteString(c.value)
	}
	ss.cookieLine = b.String()
	return ss.cookieLine
}

func (ss *session) storeCookies(h respHeader) {
	for _, f := range h {
		if !strings.EqualFold(f.name, "Set-Cookie") {
			continue
		}
		name, value, expired, ok := parseSetCookie(f.value, time.Now())
		if !ok {
			continue
		}
		found := false
		for i := range ss.cookies {
			if ss.cookies[i].name == name {
				found = true
				if expired {
					ss.cookies = append(ss.cookies[:i], ss.cookies[i+1:]...)
				} else {
					ss.cookies[i].value = value
				}
				break
			}
		}
		if !found && !expired {
			ss.cookies = append(ss.cookies, cookie{name, value})
		}
		ss.cookieLine = ""
	}
}

// classify turns a transport error into a session error kind. Any error
// once the run's context ended is a cancellation: ending the context
// expires the connection's deadline, which looks like a timeout.
func (ss *session) classify(err error) error {
	if ss.ctx.Err() != nil {
		return &sessionError{kind: "canceled", err: err}
	}
	return classifyNetErr(err)
}

// classifyNetErr turns a transport error into a session error kind.
func classifyNetErr(err error) error {
	var serr *sessionError
	if errors.As(err, &serr) {
		return err
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &sessionError{kind: "canceled", err: err}
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &sessionError{kind: "timeout", err: err}
	case strings.HasPrefix(err.Error(), "dial "):
		return &sessionError{kind: "connect", err: err}
	}
	return &sessionError{kind: "io", err: err}
}
