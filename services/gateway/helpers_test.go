package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/authstate/authstatetest"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testWorker is a tiny session worker built on the real pkg/cwmp codec: it
// answers an Inform with InformResponse, the CPE's empty POST with one
// GetParameterValues, and its response with 204. Like a session worker,
// it keeps its sessions' affinity records in records (when set).
type testWorker struct {
	leases  Leases
	records Affinity

	mu        sync.Mutex
	sessions  map[string]*workerSession
	auth      map[string]Auth // the opening request's, per session
	exchanges []Exchange
	abandons  []Abandonment
	// hold, when set, makes Exchange wait for it to close (after
	// signalling entered), so a test can keep an exchange in flight.
	hold    chan struct{}
	entered chan string
}

type workerSession struct {
	id        string
	ns        string
	deviceKey string
	tenant    string
	step      int
}

func newTestWorker(leases Leases) *testWorker {
	return &testWorker{leases: leases, sessions: map[string]*workerSession{}, auth: map[string]Auth{}}
}

var _ Forwarder = (*testWorker)(nil)

// recordTTL is the life of the test worker's affinity records.
const recordTTL = 2 * time.Minute

func (w *testWorker) Exchange(ctx context.Context, ex *Exchange) (*Reply, error) {
	reply, err := w.exchange(ctx, ex)
	if err != nil || w.records == nil {
		return reply, err
	}
	w.mu.Lock()
	if ex.NewSession {
		w.auth[ex.SessionID] = ex.Auth
	}
	auth := w.auth[ex.SessionID]
	if reply.SessionEnded {
		delete(w.auth, ex.SessionID)
	}
	w.mu.Unlock()
	host, _, _ := net.SplitHostPort(ex.RemoteAddr)
	rec := SessionRecord{SessionID: ex.SessionID, Worker: "w1", ClientIP: host, Tenant: ex.Tenant, DeviceKey: ex.DeviceKey, Auth: auth}
	if reply.SessionEnded {
		err = w.records.Delete(ctx, rec)
	} else {
		err = w.records.Put(ctx, rec, recordTTL)
	}
	if err != nil {
		return nil, fmt.Errorf("test worker: affinity record of %s: %w", ex.SessionID, err)
	}
	return reply, nil
}

func (w *testWorker) exchange(ctx context.Context, ex *Exchange) (*Reply, error) {
	cp := *ex
	cp.Body = bytes.Clone(ex.Body)
	w.mu.Lock()
	w.exchanges = append(w.exchanges, cp)
	hold, entered := w.hold, w.entered
	w.mu.Unlock()
	if hold != nil {
		if entered != nil {
			entered <- ex.SessionID
		}
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if ex.NewSession {
		env, err := cwmp.DecodeWith(ex.Body, cwmp.DecodeOptions{Charset: ex.Charset})
		if err != nil {
			return w.faultLocked(ex, "", cwmp.FaultInvalidArguments)
		}
		if _, ok := env.Body.(*cwmp.Inform); !ok {
			return w.faultLocked(ex, env.Namespace, cwmp.FaultRequestDenied)
		}
		w.sessions[ex.SessionID] = &workerSession{id: ex.SessionID, ns: env.Namespace, deviceKey: ex.DeviceKey, tenant: ex.Tenant}
		return w.replyLocked(env.Namespace, env.Header, &cwmp.InformResponse{MaxEnvelopes: 1}, ex.SessionID)
	}
	sess := w.sessions[ex.SessionID]
	if sess == nil {
		if len(ex.Body) == 0 {
			return &Reply{Status: http.StatusNoContent, SessionEnded: true, Worker: "w1"}, nil
		}
		return w.faultLocked(ex, "", cwmp.FaultRequestDenied)
	}
	switch {
	case len(ex.Body) == 0 && sess.step == 0:
		sess.step = 1
		return w.replyLocked(sess.ns, cwmp.Header{ID: "acs-1", HasID: true},
			&cwmp.GetParameterValues{ParameterNames: []string{"Device.DeviceInfo.UpTime"}}, "")
	case sess.step == 1:
		env, err := cwmp.Decode(ex.Body)
		if err != nil {
			return nil, fmt.Errorf("decode GPV response: %w", err)
		}
		if _, ok := env.Body.(*cwmp.GetParameterValuesResponse); !ok {
			return nil, fmt.Errorf("want GetParameterValuesResponse, got %s", env.Body.Method())
		}
		delete(w.sessions, sess.id)
		if sess.deviceKey != "" && w.leases != nil {
			_ = w.leases.Release(ctx, sess.tenant, sess.deviceKey, sess.id)
		}
		return &Reply{Status: http.StatusNoContent, SessionEnded: true, Worker: "w1"}, nil
	}
	return nil, errors.New("unexpected request in session")
}

func (w *testWorker) replyLocked(ns string, h cwmp.Header, m cwmp.Message, cookie string) (*Reply, error) {
	body, err := cwmp.Encode(&cwmp.Envelope{Namespace: ns, Header: cwmp.Header{ID: h.ID, HasID: h.HasID}, Body: m})
	if err != nil {
		return nil, err
	}
	return &Reply{Status: http.StatusOK, Body: body, SetSessionCookie: cookie, Worker: "w1"}, nil
}

func (w *testWorker) faultLocked(ex *Exchange, ns string, code cwmp.FaultCode) (*Reply, error) {
	if ns == "" {
		ns = cwmp.NS1_0
	}
	body, err := cwmp.Encode(&cwmp.Envelope{Namespace: ns, Body: cwmp.NewFault(code)})
	if err != nil {
		return nil, err
	}
	if ex.DeviceKey != "" && w.leases != nil {
		_ = w.leases.Release(context.Background(), ex.Tenant, ex.DeviceKey, ex.SessionID)
	}
	return &Reply{Status: http.StatusBadRequest, Body: body, SessionEnded: true, Worker: "w1"}, nil
}

func (w *testWorker) Abandon(_ context.Context, ab *Abandonment) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.abandons = append(w.abandons, *ab)
	delete(w.sessions, ab.SessionID)
	return nil
}

func (w *testWorker) seen() []Exchange {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Exchange(nil), w.exchanges...)
}

func (w *testWorker) abandoned() []Abandonment {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Abandonment(nil), w.abandons...)
}

func (w *testWorker) openSessions() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.sessions)
}

// holder returns the session holding the device's lease, if any.
func (h *harness) holder(deviceKey string) (string, bool) {
	h.t.Helper()
	lh, ok, err := h.leases.Holder(context.Background(), "default", deviceKey)
	if err != nil {
		h.t.Fatal(err)
	}
	return lh.SessionID, ok
}

// harness runs a real gateway on loopback ports.
type harness struct {
	t        *testing.T
	svc      *Service
	worker   *testWorker
	clock    *authstatetest.Clock
	leases   *affinity.MemoryLeases
	affinity *affinity.MemoryAffinity
	logs     *syncBuffer
	addr     string
	tlsAddr  string
	admin    string
	cancel   context.CancelFunc
	done     chan error
}

// testConfig is the default configuration on loopback ports, with shared
// onboarding credentials "cpe"/"secret".
func testConfig() Config {
	c := DefaultConfig()
	c.ListenAddr = "127.0.0.1:0"
	c.AuthSharedUsername = "cpe"
	c.AuthSharedPassword = "secret"
	// Tests end with sessions open; only the drain test waits for them.
	c.DrainGrace = 0
	c.RetryAfterMin = 60 * time.Second
	c.RetryAfterMax = 120 * time.Second
	return c
}

// startGateway runs a gateway until the test ends. edit may change the
// dependencies before New.
func startGateway(t *testing.T, cfg Config, edit func(*Deps)) *harness {
	t.Helper()
	h := &harness{t: t, clock: authstatetest.NewClock(authstatetest.Start), logs: &syncBuffer{}, done: make(chan error, 1)}
	mem := affinity.NewMemory(h.clock.Now)
	h.leases, h.affinity = mem.Leases(), mem.Affinity()
	h.worker = newTestWorker(h.leases)
	h.worker.records = h.affinity
	listening := make(chan struct{}, 3)
	var mu sync.Mutex
	deps := Deps{
		Logger:    slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Forwarder: h.worker,
		Affinity:  h.affinity,
		Leases:    h.leases,
		Now:       h.clock.Now,
		RandN:     func(n int64) int64 { return n / 2 },
		Listening: func(name string, a net.Addr) {
			mu.Lock()
			defer mu.Unlock()
			switch name {
			case "http":
				h.addr = a.String()
			case "https":
				h.tlsAddr = a.String()
			case "admin":
				h.admin = a.String()
			}
			listening <- struct{}{}
		},
	}
	if edit != nil {
		edit(&deps)
	}
	if w, ok := deps.Forwarder.(*testWorker); ok {
		h.worker = w
	}
	svc, err := New(cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.svc = svc
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- svc.Run(ctx) }()
	want := 0
	for _, a := range []string{cfg.ListenAddr, cfg.TLSListenAddr, cfg.AdminListenAddr} {
		if a != "" {
			want++
		}
	}
	for range want {
		select {
		case <-listening:
		case err := <-h.done:
			t.Fatalf("Run returned before listening: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("gateway did not start listening")
		}
	}
	t.Cleanup(func() { h.stop() })
	// Listening comes before Run declares the service ready: a test that
	// later waits for "not ready" (draining) must not see the start.
	waitFor(t, "ready", svc.Ready)
	return h
}

// stop cancels Run and waits for it, once.
func (h *harness) stop() error {
	h.t.Helper()
	if h.cancel == nil {
		return nil
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		return err
	case <-time.After(30 * time.Second):
		h.t.Fatal("Run did not return")
		return nil
	}
}

// waitFor polls cond until it holds or five seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// cpeConn is one TCP connection of a simulated CPE, on which requests are
// written and answers read in order, so tests control exactly which
// connection carries which request.
type cpeConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialCPE(t *testing.T, addr string) *cpeConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &cpeConn{t: t, c: c, br: bufio.NewReader(c)}
}

// answer is a read response with its body.
type answer struct {
	*http.Response
	body []byte
}

// post writes one POST with the given headers ("Name: value" strings) and
// body and reads the answer. A nil body is sent with Content-Length: 0.
func (c *cpeConn) post(body []byte, headers ...string) answer {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://acs.example/cwmp", bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	return c.do(req)
}

func (c *cpeConn) do(req *http.Request) answer {
	c.t.Helper()
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := req.Write(c.c); err != nil {
		c.t.Fatalf("write request: %v", err)
	}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read response body: %v", err)
	}
	_ = resp.Body.Close()
	return answer{resp, b}
}

// informBody encodes an Inform of a test device with the given events.
func informBody(t testing.TB, serial string, events ...string) []byte {
	t.Helper()
	inf := &cwmp.Inform{
		DeviceID:     cwmp.DeviceID{Manufacturer: "Acme", OUI: "00D09E", ProductClass: "Router", SerialNumber: serial},
		MaxEnvelopes: 1,
		CurrentTime:  "2026-03-01T12:00:00Z",
		ParameterList: []cwmp.ParameterValue{
			{Name: "Device.ManagementServer.ConnectionRequestURL", Value: "http://192.0.2.1:7547/cr", Type: "xsd:string"},
		},
	}
	for _, e := range events {
		inf.Events = append(inf.Events, cwmp.Event{Code: e})
	}
	b, err := cwmp.Encode(&cwmp.Envelope{Namespace: cwmp.NS1_0, Header: cwmp.Header{ID: "inform-1", HasID: true}, Body: inf})
	if err != nil {
		t.Fatalf("encode Inform: %v", err)
	}
	return b
}

func gpvResponseBody(t testing.TB) []byte {
	t.Helper()
	b, err := cwmp.Encode(&cwmp.Envelope{Namespace: cwmp.NS1_0, Header: cwmp.Header{ID: "acs-1", HasID: true},
		Body: &cwmp.GetParameterValuesResponse{ParameterList: []cwmp.ParameterValue{{Name: "Device.DeviceInfo.UpTime", Value: "42", Type: "xsd:unsignedInt"}}}})
	if err != nil {
		t.Fatalf("encode GetParameterValuesResponse: %v", err)
	}
	return b
}

// testDeviceKey is the device key of informBody's device.
func testDeviceKey(serial string) string {
	return DeviceKey(cwmp.DeviceID{OUI: "00D09E", ProductClass: "Router", SerialNumber: serial})
}

// digestClient answers Digest challenges the way a CPE stack does.
type digestClient struct {
	user, pass string
	nc         int
	realm      string
	nonce      string
	// cnonce defaults to a fixed value.
	cnonce string
}

// learn reads the Digest challenge of a 401.
func (d *digestClient) learn(t *testing.T, a answer) {
	t.Helper()
	for _, v := range a.Header.Values("WWW-Authenticate") {
		if !strings.HasPrefix(v, "Digest ") {
			continue
		}
		d.realm = challengeParam(v, "realm")
		d.nonce = challengeParam(v, "nonce")
		d.nc = 0
		return
	}
	t.Fatalf("no Digest challenge in %q", a.Header.Values("WWW-Authenticate"))
}

func challengeParam(h, key string) string {
	i := strings.Index(h, key+`="`)
	if i < 0 {
		return ""
	}
	rest := h[i+len(key)+2:]
	return rest[:strings.IndexByte(rest, '"')]
}

// header returns the Authorization header for a POST to uri, with the next
// nonce count.
func (d *digestClient) header(uri string) string {
	d.nc++
	return d.headerNC(uri, d.nc)
}

// headerNC returns the Authorization header for a POST to uri with nonce
// count n.
func (d *digestClient) headerNC(uri string, n int) string {
	nc := fmt.Sprintf("%08x", n)
	cnonce := d.cnonce
	if cnonce == "" {
		cnonce = "0a4f113b"
	}
	hash := func(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }
	ha1 := hash(d.user + ":" + d.realm + ":" + d.pass)
	ha2 := hash("POST:" + uri)
	resp := hash(ha1 + ":" + d.nonce + ":" + nc + ":" + cnonce + ":auth:" + ha2)
	return fmt.Sprintf(`Authorization: Digest username="%s", realm="%s", nonce="%s", uri="%s", algorithm=MD5, qop=auth, nc=%s, cnonce="%s", response="%s"`,
		d.user, d.realm, d.nonce, uri, nc, cnonce, resp)
}

// cookieOf returns the session cookie an answer sets.
func cookieOf(a answer) string {
	for _, c := range a.Cookies() {
		if c.Name == "session" {
			return c.Value
		}
	}
	return ""
}

// openSession runs the Digest handshake on a fresh connection and returns
// the connection that carried the successful Inform and its answer.
func (h *harness) openSession(serial string, events ...string) (*cpeConn, answer) {
	h.t.Helper()
	c := dialCPE(h.t, h.addr)
	first := c.post(informBody(h.t, serial, events...))
	if first.StatusCode != http.StatusUnauthorized {
		h.t.Fatalf("first Inform: status %d, want 401", first.StatusCode)
	}
	d := &digestClient{user: "cpe", pass: "secret"}
	d.learn(h.t, first)
	a := c.post(informBody(h.t, serial, events...), d.header("/cwmp"))
	return c, a
}

// countingAffinity counts the gateway's own writes of records.
type countingAffinity struct {
	Affinity
	puts, deletes atomic.Int32
}

func (a *countingAffinity) Put(ctx context.Context, rec SessionRecord, ttl time.Duration) error {
	a.puts.Add(1)
	return a.Affinity.Put(ctx, rec, ttl)
}

func (a *countingAffinity) Delete(ctx context.Context, rec SessionRecord) error {
	a.deletes.Add(1)
	return a.Affinity.Delete(ctx, rec)
}
