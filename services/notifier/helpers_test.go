package notifier

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fakeTargets is the inventory in unit tests.
type fakeTargets struct {
	mu sync.Mutex
	m  map[string]Target
}

func (f *fakeTargets) set(device string, t Target) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]Target{}
	}
	f.m[device] = t
}

func (f *fakeTargets) Target(_ context.Context, _, device string) (Target, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.m[device]
	if !ok {
		return Target{}, ErrDeviceNotFound
	}
	return t, nil
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testConfig() Config {
	var c Config
	fs := newFlagSet()
	c.RegisterFlags(fs)
	c.STUNAddr = ""
	c.AllowLoopback = true
	c.RequestTimeout = 2 * time.Second
	c.HeaderTimeout = time.Second
	c.UDPInterval = 5 * time.Millisecond
	return c
}

func newService(t *testing.T, cfg Config, deps Deps) *Service {
	t.Helper()
	if deps.Targets == nil {
		deps.Targets = &fakeTargets{}
	}
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// digestCPE is a CPE's connection-request listener checking Digest (or
// Basic) credentials, written for the tests from RFC 7616.
type digestCPE struct {
	user, pass string
	algorithm  string // "MD5" or "SHA-256"
	qop        bool
	basicOnly  bool
	// closeAfter401 answers the challenge with Connection: close.
	closeAfter401 bool
	// held, when set, receives a value for every accepted request, which
	// is then answered only once hold is closed (a request in flight).
	held     chan struct{}
	hold     chan struct{}
	accepted atomic.Int32
	conns    atomic.Int32
	srv      *http.Server
	url      string
}

func startCPE(t *testing.T, c *digestCPE) *digestCPE {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.srv = &http.Server{Handler: c, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			c.conns.Add(1)
		}
	}}
	go c.srv.Serve(ln)
	t.Cleanup(func() { c.srv.Close() })
	c.url = "http://" + ln.Addr().String() + "/cr/" + randomHex(4)
	return c
}

func (c *digestCPE) challenge(w http.ResponseWriter) {
	if c.basicOnly {
		w.Header().Set("WWW-Authenticate", `Basic realm="cpe"`)
	} else {
		q := ""
		if c.qop {
			q = `, qop="auth,auth-int"`
		}
		w.Header().Set("WWW-Authenticate", `Digest realm="cpe", nonce="`+randomHex(8)+`", algorithm=`+c.algorithm+q+`, opaque="xyz"`)
	}
	if c.closeAfter401 {
		w.Header().Set("Connection", "close")
	}
	w.WriteHeader(http.StatusUnauthorized)
}

func (c *digestCPE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	authz := r.Header.Get("Authorization")
	if authz == "" || !c.verify(r.Method, authz) {
		c.challenge(w)
		return
	}
	c.accepted.Add(1)
	if c.held != nil {
		c.held <- struct{}{}
		select {
		case <-c.hold:
		case <-r.Context().Done():
		}
	}
	w.WriteHeader(http.StatusOK)
}

func (c *digestCPE) verify(method, authz string) bool {
	if c.basicOnly {
		u, p, ok := (&http.Request{Header: http.Header{"Authorization": {authz}}}).BasicAuth()
		return ok && u == c.user && p == c.pass
	}
	scheme, rest, _ := strings.Cut(authz, " ")
	if scheme != "Digest" {
		return false
	}
	p, _ := authParams(rest)
	var h func() hash.Hash = md5.New
	if c.algorithm == "SHA-256" {
		h = sha256.New
	}
	sum := func(s string) string { x := h(); x.Write([]byte(s)); return hex.EncodeToString(x.Sum(nil)) }
	ha1 := sum(c.user + ":cpe:" + c.pass)
	ha2 := sum(method + ":" + p["uri"])
	want := sum(ha1 + ":" + p["nonce"] + ":" + ha2)
	if c.qop {
		if p["qop"] != "auth" {
			return false
		}
		want = sum(ha1 + ":" + p["nonce"] + ":" + p["nc"] + ":" + p["cnonce"] + ":auth:" + ha2)
	}
	return p["username"] == c.user && p["response"] == want && p["opaque"] == "xyz"
}

// countingListener counts the connections it accepts and never answers.
type countingListener struct {
	ln      net.Listener
	accepts atomic.Int32
}

func listenCounting(t *testing.T) *countingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &countingListener{ln: ln}
	acceptAll(t, ln, &c.accepts, nil)
	return c
}

// acceptAll accepts ln's connections until the test ends, counting them in
// accepted and handing each to handle on its own goroutine (nil: none, the
// connection is held open unanswered); the cleanup closes ln and every
// connection.
func acceptAll(t *testing.T, ln net.Listener, accepted *atomic.Int32, handle func(net.Conn)) {
	var (
		mu   sync.Mutex
		open []net.Conn
	)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			open = append(open, conn)
			mu.Unlock()
			if handle != nil {
				go handle(conn)
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range open {
			conn.Close()
		}
	})
}

func (c *countingListener) port() string {
	_, p, _ := net.SplitHostPort(c.ln.Addr().String())
	return p
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func newFlagSet() *flag.FlagSet { return flag.NewFlagSet("test", flag.ContinueOnError) }

type netipAddrPort = netip.AddrPort

func isRefusedErr(err error) bool { return errors.Is(err, ErrAddressRefused) }

// rawCPE is a connection-request listener that answers with bytes the
// test writes itself, as a CPE's small HTTP server does (HTTP/1.0, no
// Content-Length, closing without an answer). It records every request.
type rawCPE struct {
	// answer returns what to write to the n-th request (from 0), and
	// whether to close the connection afterwards; "" closes it without
	// an answer, "RST" resets it.
	answer func(n int, req *http.Request) (string, bool)

	ln    net.Listener
	conns atomic.Int32
	mu    sync.Mutex
	reqs  []*http.Request
}

// startRawCPE listens on network's loopback ("tcp4" or "tcp6").
func startRawCPE(t *testing.T, network string, answer func(int, *http.Request) (string, bool)) *rawCPE {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "tcp6" {
		addr = "[::1]:0"
	}
	ln, err := net.Listen(network, addr)
	if err != nil && network == "tcp6" {
		// A machine without IPv6 has no ::1; 127.0.0.1 is a must.
		t.Skipf("no %s loopback: %v", network, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	c := &rawCPE{answer: answer, ln: ln}
	acceptAll(t, ln, &c.conns, c.serve)
	return c
}

func (c *rawCPE) serve(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		req.Body = io.NopCloser(bytes.NewReader(body))
		c.mu.Lock()
		n := len(c.reqs)
		c.reqs = append(c.reqs, req)
		c.mu.Unlock()
		out, closeAfter := c.answer(n, req)
		if out == "RST" {
			conn.(*net.TCPConn).SetLinger(0) // the close resets the connection
			return
		}
		if out == "" {
			return
		}
		if _, err := io.WriteString(conn, out); err != nil || closeAfter {
			return
		}
	}
}

// requests returns the requests received so far.
func (c *rawCPE) requests() []*http.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*http.Request(nil), c.reqs...)
}

// hostport is the listener's address as a URL writes it.
func (c *rawCPE) hostport() string { return c.ln.Addr().String() }

// digestCheck records what a scripted CPE's checkDigest last complained
// of; the CPE's goroutine sets it, the test reads it once the request is
// over.
type digestCheck struct {
	mu  sync.Mutex
	err error
}

// check runs checkDigest and records its complaint; it reports whether
// the header was right.
func (d *digestCheck) check(authz string, ch map[string]string, user, pass string, req *http.Request) bool {
	err := checkDigest(authz, ch, user, pass, req.Method, req.RequestURI)
	if err != nil {
		d.mu.Lock()
		d.err = err
		d.mu.Unlock()
	}
	return err == nil
}

func (d *digestCheck) last() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// checkDigest verifies a Digest Authorization header against the
// challenge parameters ch (realm, nonce, algorithm, the qop to be
// answered, opaque),
// computed here from RFC 7616 §3.4.1 and RFC 2069, independently of
// authorization().
func checkDigest(authz string, ch map[string]string, user, pass, method, requestURI string) error {
	scheme, rest, _ := strings.Cut(authz, " ")
	if scheme != "Digest" {
		return fmt.Errorf("scheme %q", scheme)
	}
	p, _ := authParams(rest)
	alg := strings.ToUpper(ch["algorithm"])
	if p["algorithm"] != ch["algorithm"] {
		return fmt.Errorf("algorithm %q, challenge said %q", p["algorithm"], ch["algorithm"])
	}
	var h func() hash.Hash = md5.New
	if strings.HasPrefix(alg, "SHA-256") {
		h = sha256.New
	}
	sum := func(s string) string { x := h(); x.Write([]byte(s)); return hex.EncodeToString(x.Sum(nil)) }
	if p["username"] != user || p["realm"] != ch["realm"] || p["nonce"] != ch["nonce"] || p["opaque"] != ch["opaque"] {
		return fmt.Errorf("echoed %q, challenge %q", p, ch)
	}
	if p["uri"] != requestURI {
		return fmt.Errorf("uri=%q, request-URI %q", p["uri"], requestURI)
	}
	ha1 := sum(user + ":" + ch["realm"] + ":" + pass)
	if strings.HasSuffix(alg, "-SESS") {
		if p["cnonce"] == "" {
			return errors.New("-sess without cnonce")
		}
		ha1 = sum(ha1 + ":" + ch["nonce"] + ":" + p["cnonce"])
	}
	ha2 := sum(method + ":" + requestURI)
	if ch["qop"] == "auth-int" {
		ha2 = sum(method + ":" + requestURI + ":" + sum("")) // an empty body
	}
	var want string
	if ch["qop"] != "" {
		if p["qop"] != ch["qop"] || len(p["nc"]) != 8 || p["cnonce"] == "" {
			return fmt.Errorf("qop %q offered: got qop=%q nc=%q cnonce=%q", ch["qop"], p["qop"], p["nc"], p["cnonce"])
		}
		if !regexp.MustCompile(`(^|, )qop=`+ch["qop"]+`(,|$)`).MatchString(rest) || !regexp.MustCompile(`(^|, )nc=[0-9a-f]{8}(,|$)`).MatchString(rest) {
			return fmt.Errorf("qop and nc are tokens, unquoted (RFC 7616 §3.4): %s", rest)
		}
		want = sum(ha1 + ":" + ch["nonce"] + ":" + p["nc"] + ":" + p["cnonce"] + ":" + ch["qop"] + ":" + ha2)
	} else {
		if _, ok := p["qop"]; ok {
			return errors.New("qop sent though none was offered")
		}
		if _, ok := p["nc"]; ok {
			return errors.New("nc sent though no qop was offered")
		}
		want = sum(ha1 + ":" + ch["nonce"] + ":" + ha2)
	}
	if p["response"] != want {
		return fmt.Errorf("response %q, want %q", p["response"], want)
	}
	return nil
}

// answer401 is a raw 401 with the given WWW-Authenticate values.
func answer401(keepAlive bool, challenges ...string) string {
	var b strings.Builder
	b.WriteString("HTTP/1.1 401 Unauthorized\r\n")
	for _, c := range challenges {
		b.WriteString("WWW-Authenticate: " + c + "\r\n")
	}
	if !keepAlive {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.String()
}
