package sim

import (
	"compress/gzip"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// testACS is a tiny ACS for the tests: pkg/cwmp's session state machine
// behind an httptest server on 127.0.0.1. It keys sessions the way its
// mode says (cookie, connection, or client IP), optionally demands HTTP
// Digest, sheds Informs with 503, and records everything the CPEs sent.
type testACS struct {
	t   *testing.T
	srv *httptest.Server
	// keyBy is ConnCookie (session cookie), ConnKeepAlive (the TCP
	// connection) or ConnNewConn (the client IP).
	keyBy ConnMode
	// plan returns the ACS requests of a device's n-th session (from 1).
	plan func(inf *cwmp.Inform, n int) []cwmp.Message
	// hold sends InformResponses with HoldRequests=true.
	hold bool
	// user and pass, when user is set, make the ACS demand Digest, or
	// Basic when basic is set.
	user, pass string
	basic      bool
	// unavailable Informs are refused with 503 and Retry-After.
	unavailable int
	retryAfter  string
	// redirect answers the first POST of a session to /acs with a 307 to
	// /acs2 (docs/protocol.md §4.1).
	redirect bool
	// retryInform answers that many Informs with fault 8005.
	retryInform int
	// onInform is called with every accepted Inform.
	onInform func(*cwmp.Inform)
	// files serves GET and PUT below /files/.
	files map[string][]byte

	mu        sync.Mutex
	sessions  map[string]*acsSession
	sessionNo map[string]int // per serial number
	seq       int
	informs   []*cwmp.Inform
	headers   []cwmp.Header // the Inform envelopes' headers
	done      []*cwmp.RequestDone
	cpeReqs   []cwmp.Message
	order     []string // "inform", "done:<method>", "cpe:<method>" in arrival order
	anomalies []*cwmp.Anomaly
	posts     []postInfo
	nonces    map[string]bool
	puts      map[string][]byte
	gets      []string

	conns      atomic.Int64
	challenges atomic.Int64
	shed       atomic.Int64
}

type postInfo struct {
	remote string
	cookie string
	authz  bool
	gzip   bool
	empty  bool
}

func newTestACS(t *testing.T, keyBy ConnMode) *testACS {
	return startTestACS(t, keyBy, false)
}

func startTestACS(t *testing.T, keyBy ConnMode, tls bool) *testACS {
	a := &testACS{t: t, keyBy: keyBy, sessions: map[string]*acsSession{}, sessionNo: map[string]int{},
		nonces: map[string]bool{}, retryAfter: "1", files: map[string][]byte{}, puts: map[string][]byte{}}
	a.srv = httptest.NewUnstartedServer(a)
	a.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			a.conns.Add(1)
		}
	}
	if tls {
		// The test with an untrusted certificate makes the server log
		// handshake errors; they are expected.
		a.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		a.srv.StartTLS()
	} else {
		a.srv.Start()
	}
	t.Cleanup(a.srv.Close)
	return a
}

func (a *testACS) url() string { return a.srv.URL + "/acs" }

func (a *testACS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/files/") {
		a.serveFile(w, r)
		return
	}
	var rd io.Reader = r.Body
	gz := r.Header.Get("Content-Encoding") == "gzip"
	if gz {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rd = zr
	}
	body, err := io.ReadAll(rd)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	cookie := ""
	if c, err := r.Cookie("session"); err == nil {
		cookie = c.Value
	}
	a.posts = append(a.posts, postInfo{remote: r.RemoteAddr, cookie: cookie, authz: r.Header.Get("Authorization") != "", gzip: gz, empty: len(body) == 0})
	if a.user != "" && !a.authorized(r) {
		a.challenges.Add(1)
		if a.basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="testacs"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		nonce := strconv.Itoa(len(a.nonces) + 1)
		a.nonces[nonce] = true
		w.Header().Set("WWW-Authenticate", `Digest realm="testacs", qop="auth", nonce="`+nonce+`", opaque="op"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var env *cwmp.Envelope
	var derr error
	if len(body) > 0 {
		env, derr = cwmp.Decode(body)
	}
	inform, isInform := (*cwmp.Inform)(nil), false
	if env != nil {
		inform, isInform = env.Body.(*cwmp.Inform)
	}
	if a.redirect && r.URL.Path == "/acs" {
		w.Header().Set("Location", "/acs2")
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	if isInform && a.retryInform > 0 {
		a.retryInform--
		out, _ := cwmp.Encode(&cwmp.Envelope{Namespace: env.Namespace, Version: env.Version, Header: env.Header,
			Body: cwmp.NewFault(cwmp.FaultRetryRequest)})
		w.Write(out)
		return
	}
	if isInform && a.unavailable > 0 {
		a.unavailable--
		a.shed.Add(1)
		a.informs = append(a.informs, inform)
		a.headers = append(a.headers, env.Header)
		w.Header().Set("Retry-After", a.retryAfter)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var key string
	switch a.keyBy {
	case ConnCookie:
		key = cookie
		if isInform || key == "" {
			a.seq++
			key = "s" + strconv.Itoa(a.seq)
			http.SetCookie(w, &http.Cookie{Name: "session", Value: key, Path: "/"})
		}
	case ConnKeepAlive:
		key = r.RemoteAddr
	default:
		key, _, _ = net.SplitHostPort(r.RemoteAddr)
	}
	as := a.sessions[key]
	if as == nil || isInform {
		as = &acsSession{Session: cwmp.NewSession("acs" + strconv.Itoa(len(a.sessions)+1)), src: &acsSource{acs: a}}
		as.SetHoldDecider(as.src)
		a.sessions[key] = as
	}
	s := as.Session
	out := s.Step(env, derr)
	for _, n := range out.Notices {
		switch n := n.(type) {
		case *cwmp.SessionStarted:
			a.informs = append(a.informs, n.Inform)
			a.headers = append(a.headers, env.Header)
			a.order = append(a.order, "inform")
			a.sessionNo[n.Inform.DeviceID.SerialNumber]++
			if a.onInform != nil {
				a.onInform(n.Inform)
			}
		case *cwmp.CPERequest:
			a.cpeReqs = append(a.cpeReqs, n.Message)
			a.order = append(a.order, "cpe:"+n.Message.Method())
		case *cwmp.RequestDone:
			a.done = append(a.done, n)
			a.order = append(a.order, "done:"+n.Request.Message.Method())
		case *cwmp.Anomaly:
			a.anomalies = append(a.anomalies, n)
		}
	}
	if out.Turn {
		out = as.src.turn(s)
	}
	if out.End {
		delete(a.sessions, key)
	}
	if out.Reply == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	b, err := cwmp.Encode(out.Reply)
	if err != nil {
		a.t.Errorf("test ACS: encode %s: %v", out.Reply.Body.Method(), err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	w.Write(b)
}

func (a *testACS) serveFile(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		a.gets = append(a.gets, r.URL.Path)
		b, ok := a.files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	case http.MethodPut:
		b, _ := io.ReadAll(r.Body)
		a.puts[r.URL.Path] = b
		w.WriteHeader(http.StatusCreated)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// authorized checks Digest credentials with its own RFC 2617 arithmetic,
// independent of the simulator's.
func (a *testACS) authorized(r *http.Request) bool {
	if a.basic {
		u, p, ok := r.BasicAuth()
		return ok && u == a.user && p == a.pass
	}
	h := r.Header.Get("Authorization")
	rest, ok := strings.CutPrefix(h, "Digest ")
	if !ok {
		return false
	}
	p := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		p[k] = strings.Trim(v, `"`)
	}
	if p["username"] != a.user || !a.nonces[p["nonce"]] || p["opaque"] != "op" {
		return false
	}
	md := func(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }
	ha1 := md(a.user + ":testacs:" + a.pass)
	ha2 := md(r.Method + ":" + p["uri"])
	want := md(ha1 + ":" + p["nonce"] + ":" + p["nc"] + ":" + p["cnonce"] + ":" + p["qop"] + ":" + ha2)
	return p["response"] == want && p["uri"] == r.URL.RequestURI()
}

// acsSession is a session of the test ACS with its planned requests.
type acsSession struct {
	*cwmp.Session
	src *acsSource
}

// acsSource hands out a session's planned requests.
type acsSource struct {
	acs     *testACS
	planned bool
	reqs    []cwmp.Message
}

// turn answers the ACS's turn of sess: its next planned request, or the
// end of its part.
func (s *acsSource) turn(sess *cwmp.Session) cwmp.Output {
	if req, ok := s.next(sess); ok {
		if out, err := sess.Send(req); err == nil {
			return out
		}
	}
	out, _ := sess.Finish()
	return out
}

func (s *acsSource) next(sess *cwmp.Session) (cwmp.Request, bool) {
	if !s.planned {
		s.planned = true
		if s.acs.plan != nil {
			sn := sess.DeviceID().SerialNumber
			inf := &cwmp.Inform{DeviceID: sess.DeviceID(), Events: sess.Events()}
			s.reqs = s.acs.plan(inf, s.acs.sessionNo[sn])
		}
	}
	if len(s.reqs) == 0 {
		return cwmp.Request{}, false
	}
	m := s.reqs[0]
	s.reqs = s.reqs[1:]
	return cwmp.Request{Message: m, HoldRequests: s.acs.hold}, true
}

func (s *acsSource) HoldRequests(*cwmp.Session) bool { return s.acs.hold }

// snapshot copies what the ACS recorded.
func (a *testACS) snapshot() (informs []*cwmp.Inform, done []*cwmp.RequestDone, cpe []cwmp.Message, posts []postInfo) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*cwmp.Inform(nil), a.informs...), append([]*cwmp.RequestDone(nil), a.done...),
		append([]cwmp.Message(nil), a.cpeReqs...), append([]postInfo(nil), a.posts...)
}

// eventCodes renders an Inform's events as "0 BOOTSTRAP,1 BOOT,M Reboot/key".
func eventCodes(inf *cwmp.Inform) string {
	var parts []string
	for _, e := range inf.Events {
		s := e.Code
		if e.CommandKey != "" {
			s += "/" + e.CommandKey
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

// informParam returns the value of a parameter of an Inform.
func informParam(inf *cwmp.Inform, name string) (cwmp.ParameterValue, bool) {
	for _, p := range inf.ParameterList {
		if p.Name == name {
			return p, true
		}
	}
	return cwmp.ParameterValue{}, false
}

// describe renders a RequestDone as "<method> -> <response method>" or
// "<method> -> Fault <code> [name:code ...]".
func describe(d *cwmp.RequestDone) string {
	m := d.Request.Message.Method()
	if d.Fault != nil {
		s := fmt.Sprintf("%s -> Fault %d", m, d.Fault.Code)
		for _, f := range d.Fault.SetParameterValuesFaults {
			s += fmt.Sprintf(" %s:%d", f.ParameterName, f.FaultCode)
		}
		return s
	}
	return m + " -> " + d.Response.Method()
}
