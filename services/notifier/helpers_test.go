package notifier

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"hash"
	"net"
	"net/http"
	"net/netip"
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
	mu      sync.Mutex
	conns   []net.Conn
}

func listenCounting(t *testing.T) *countingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &countingListener{ln: ln}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.accepts.Add(1)
			c.mu.Lock()
			c.conns = append(c.conns, conn)
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, conn := range c.conns {
			conn.Close()
		}
	})
	return c
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
