package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/authstate"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// Abuse tests of session binding (issue 8 item 2): a session continues only
// from the address and as the principal that opened it.

func wantRefused(t *testing.T, what string, a answer) {
	t.Helper()
	if a.StatusCode != http.StatusForbidden || !a.Close {
		t.Fatalf("%s: %d (close %v), want 403 and the connection closed", what, a.StatusCode, a.Close)
	}
}

func perDeviceCredentials() *StaticCredentials {
	creds := NewStaticCredentials()
	creds.Set("default", testDeviceKey("SN1"), Credential{Username: "sn1-user", Password: "sn1-pass"})
	creds.Set("default", testDeviceKey("SN2"), Credential{Username: "sn2-user", Password: "sn2-pass"})
	return creds
}

func TestStolenCookieFromAnotherAddress(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	h := startGateway(t, testConfig(), withMetrics(reader))
	_, _, first := h.openSessionAs("127.0.0.1", "SN1", "cpe", "secret")
	sid := cookieOf(first)
	if first.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("Inform: %d, cookie %q", first.StatusCode, sid)
	}
	// Someone elsewhere with the cookie and nothing else: neither the empty
	// POST nor a forged response (which would write SN1's inventory) gets
	// through.
	wantRefused(t, "stolen cookie, empty POST", dialCPEFrom(t, "127.0.0.2", h.addr).post(nil, "Cookie: session="+sid))
	wantRefused(t, "stolen cookie, forged response", dialCPEFrom(t, "127.0.0.2", h.addr).post(gpvResponseBody(t), "Cookie: session="+sid))
	if n := len(h.worker.seen()); n != 1 {
		t.Fatalf("worker saw %d exchanges, want the Inform only", n)
	}
	if got := counterValue(t, reader, "fleetacs.gateway.sessions.binding_refused", attribute.String("reason", "address")); got != 2 {
		t.Fatalf("binding_refused{reason=address} = %d, want 2", got)
	}
	if !strings.Contains(h.logs.String(), "request refused: its session is bound to another client") {
		t.Fatal("refusal not logged")
	}
	// The CPE itself carries on, on new connections with its cookie.
	runSession(t, func(body []byte) answer {
		return dialCPEFrom(t, "127.0.0.1", h.addr).post(body, "Cookie: session="+sid)
	})
	checkOneSession(t, h)
}

func TestStolenCookieWithOtherCredentials(t *testing.T) {
	h := startGateway(t, testConfig(), func(d *Deps) { d.Credentials = perDeviceCredentials() })
	c, _, first := h.openSessionAs("127.0.0.1", "SN1", "sn1-user", "sn1-pass")
	sid := cookieOf(first)
	if first.StatusCode != http.StatusOK {
		t.Fatalf("Inform: %d", first.StatusCode)
	}
	// SN2 (at SN1's own NAT address, or elsewhere) presents SN1's cookie
	// with credentials that are valid, but not the session's principal's:
	// its own, or the shared onboarding ones.
	for _, d := range []*digestClient{h.challengeFor("sn2-user", "sn2-pass"), h.challengeFor("cpe", "secret")} {
		for _, from := range []string{"127.0.0.1", "127.0.0.2"} {
			a := dialCPEFrom(t, from, h.addr).post(gpvResponseBody(t), "Cookie: session="+sid, d.header("/cwmp"))
			wantRefused(t, "cookie of SN1 with "+d.user+"'s credentials from "+from, a)
		}
	}
	// Basic credentials count too, even where Basic is not accepted.
	wantRefused(t, "cookie with Basic credentials of another user",
		dialCPE(t, h.addr).post(nil, "Cookie: session="+sid, basicHeader("sn2-user", "sn2-pass")))
	// On the session's own connection, without a cookie, as well.
	wantRefused(t, "session's connection with another principal", c.post(nil, h.challengeFor("sn2-user", "sn2-pass").header("/cwmp")))
	if n := len(h.worker.seen()); n != 1 {
		t.Fatalf("worker saw %d exchanges, want the Inform only", n)
	}
	// The session's principal, sending its credentials with every request,
	// carries on.
	d1 := h.challengeFor("sn1-user", "sn1-pass")
	runSession(t, func(body []byte) answer {
		return dialCPE(t, h.addr).post(body, "Cookie: session="+sid, d1.header("/cwmp"))
	})
	checkOneSession(t, h)
}

// TestConnectionBindingBehindProxy: behind a load balancer the TCP
// connection is the proxy's and may carry several CPEs' requests; the
// connection's session is only for the address that opened it.
func TestConnectionBindingBehindProxy(t *testing.T) {
	cfg := testConfig()
	cfg.TrustedProxies = "127.0.0.1/32"
	h := startGateway(t, cfg, nil)
	proxy := dialCPE(t, h.addr)
	cpeA, cpeB := "X-Forwarded-For: 192.0.2.10", "X-Forwarded-For: 192.0.2.20"
	first := proxy.post(informBody(t, "SN1", "2 PERIODIC"), cpeA)
	d := &digestClient{user: "cpe", pass: "secret"}
	d.learn(t, first)
	ok := proxy.post(informBody(t, "SN1", "2 PERIODIC"), cpeA, d.header("/cwmp"))
	sid := cookieOf(ok)
	if ok.StatusCode != http.StatusOK {
		t.Fatalf("Inform: %d", ok.StatusCode)
	}
	// CPE B's request on the same pooled connection, without cookie or
	// credentials: outside any session, so challenged, not A's session.
	if a := proxy.post(nil, cpeB); a.StatusCode != http.StatusUnauthorized {
		t.Fatalf("another CPE on the session's connection: %d, want 401", a.StatusCode)
	}
	// A goes on on that connection...
	if a := proxy.post(nil, cpeA); !gpvStep(t, a) {
		t.Fatalf("A's empty POST: %d", a.StatusCode)
	}
	// ...B with A's cookie is refused...
	wantRefused(t, "A's cookie from B's address", dialCPE(t, h.addr).post(gpvResponseBody(t), cpeB, "Cookie: session="+sid))
	// ...and A ends its session through another proxy connection.
	if a := dialCPE(t, h.addr).post(gpvResponseBody(t), cpeA, "Cookie: session="+sid); a.StatusCode != http.StatusNoContent {
		t.Fatalf("A's response: %d", a.StatusCode)
	}
	checkOneSession(t, h)
}

func TestAddressRoutingNeedsSessionPrincipal(t *testing.T) {
	h := startGateway(t, testConfig(), func(d *Deps) { d.Credentials = perDeviceCredentials() })
	c, _, first := h.openSessionAs("127.0.0.1", "SN1", "sn1-user", "sn1-pass")
	if first.StatusCode != http.StatusOK {
		t.Fatalf("Inform: %d", first.StatusCode)
	}
	_ = c.c.Close()
	// SN2 behind the same address, no cookie, new connection, its own
	// valid credentials: not SN1's session, so an empty POST outside any
	// session, answered 204 once authenticated.
	d2 := h.challengeFor("sn2-user", "sn2-pass")
	if a := dialCPE(t, h.addr).post(nil, d2.header("/cwmp")); a.StatusCode != http.StatusNoContent {
		t.Fatalf("SN2's empty POST at SN1's address: %d, want 204", a.StatusCode)
	}
	// The session's own principal is routed to it by address.
	d1 := h.challengeFor("sn1-user", "sn1-pass")
	runSession(t, func(body []byte) answer { return dialCPE(t, h.addr).post(body, d1.header("/cwmp")) })
	checkOneSession(t, h)
}

func TestAnonymousSessionBinding(t *testing.T) {
	h := startGateway(t, anonymousConfig(), nil)
	first := dialCPEFrom(t, "127.0.0.1", h.addr).post(informBody(t, "SN1", "2 PERIODIC"))
	sid := cookieOf(first)
	if first.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("anonymous Inform: %d", first.StatusCode)
	}
	wantRefused(t, "anonymous session's cookie from another address", dialCPEFrom(t, "127.0.0.2", h.addr).post(nil, "Cookie: session="+sid))
	wantRefused(t, "anonymous session's cookie with someone's credentials",
		dialCPEFrom(t, "127.0.0.1", h.addr).post(nil, "Cookie: session="+sid, basicHeader("someone", "x")))
	runSession(t, func(body []byte) answer {
		return dialCPEFrom(t, "127.0.0.1", h.addr).post(body, "Cookie: session="+sid)
	})
	checkOneSession(t, h)
}

func TestClientCertificateSessionBinding(t *testing.T) {
	f := writeTLSFiles(t)
	cfg := f.config()
	cfg.AuthSchemes = "digest,basic"
	h := startGateway(t, cfg, nil)
	first := dialTLS(t, h.tlsAddr, f, true).post(informBody(t, "SN1", "2 PERIODIC"))
	sid := cookieOf(first)
	if first.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("Inform with a client certificate: %d", first.StatusCode)
	}
	cookie := "Cookie: session=" + sid
	wantRefused(t, "certificate session continued without the certificate", dialTLS(t, h.tlsAddr, f, false).post(nil, cookie))
	wantRefused(t, "certificate session continued without it, with the shared credentials",
		dialTLS(t, h.tlsAddr, f, false).post(nil, cookie, basicHeader("cpe", "secret")))
	wantRefused(t, "certificate session continued with another CPE's certificate", dialTLSWith(t, h.tlsAddr, f, &f.client2).post(nil, cookie))
	runSession(t, func(body []byte) answer { return dialTLS(t, h.tlsAddr, f, true).post(body, cookie) })
	checkOneSession(t, h)
}

func TestSessionAddressBindingOff(t *testing.T) {
	// Declared: CPEs sit behind proxies that change their address within
	// a session. The address no longer binds; the principal still does.
	cfg := testConfig()
	cfg.SessionAddressBinding = false
	h := startGateway(t, cfg, func(d *Deps) { d.Credentials = perDeviceCredentials() })
	_, _, first := h.openSessionAs("127.0.0.1", "SN1", "sn1-user", "sn1-pass")
	sid := cookieOf(first)
	wantRefused(t, "another principal with the cookie", dialCPEFrom(t, "127.0.0.2", h.addr).post(nil, "Cookie: session="+sid,
		h.challengeFor("sn2-user", "sn2-pass").header("/cwmp")))
	runSession(t, func(body []byte) answer {
		return dialCPEFrom(t, "127.0.0.2", h.addr).post(body, "Cookie: session="+sid)
	})
	checkOneSession(t, h)
}

// failingLookups is an Affinity whose lookups fail once down is set.
type failingLookups struct {
	Affinity
	down atomic.Bool
}

func (f *failingLookups) Lookup(ctx context.Context, sid string) (SessionRecord, error) {
	if f.down.Load() {
		return SessionRecord{}, errors.New("redis: connection refused")
	}
	return f.Affinity.Lookup(ctx, sid)
}

// TestCookieBindingStoreDown: without the session record nothing says whom
// the session belongs to; the request waits (503) rather than passing
// unchecked.
func TestCookieBindingStoreDown(t *testing.T) {
	fl := &failingLookups{}
	h := startGateway(t, testConfig(), func(d *Deps) { fl.Affinity = d.Affinity; d.Affinity = fl })
	_, _, first := h.openSessionAs("127.0.0.1", "SN1", "cpe", "secret")
	fl.down.Store(true)
	a := dialCPEFrom(t, "127.0.0.2", h.addr).post(gpvResponseBody(t), "Cookie: session="+cookieOf(first))
	if a.StatusCode != http.StatusServiceUnavailable || a.Header.Get("Retry-After") == "" {
		t.Fatalf("cookie with the session store down: %d %q, want 503 with Retry-After", a.StatusCode, a.Header.Get("Retry-After"))
	}
	if n := len(h.worker.seen()); n != 1 {
		t.Fatalf("worker saw %d exchanges, want the Inform only", n)
	}
}

// redisReplicas starts two gateways sharing one Redis (affinity records,
// leases, nonce counts, failure counts), one nonce secret and one worker.
func redisReplicas(t *testing.T, cfg Config, edit func(*Deps)) (*harness, *harness) {
	t.Helper()
	addr, db := testenv.RedisDB(t)
	client := redis.NewClient(&redis.Options{Addr: addr, DB: db, DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { _ = client.Close() })
	prefix := "fleetacs:" + testenv.UniqueName(t) + ":"
	worker := newTestWorker(nil)
	cfg.AuthNonceSecret = "the same on every replica"
	mk := func(d *Deps) {
		r := affinity.NewRedis(client, prefix, d.Now)
		d.Affinity, d.Leases = r.Affinity(), r.Leases()
		// The worker alone keeps the session records, in the shared
		// store, as session workers do.
		worker.records = d.Affinity
		st := authstate.NewRedis(client, prefix, d.Now)
		d.NonceCounts, d.AuthGuard = st, st
		d.Forwarder = worker
		if edit != nil {
			edit(d)
		}
	}
	return startGateway(t, cfg, mk), startGateway(t, cfg, mk)
}

// TestBindingAcrossReplicas: a session continued on another replica is
// bound by the shared record, which that replica never had in memory.
func TestBindingAcrossReplicas(t *testing.T) {
	g1, g2 := redisReplicas(t, testConfig(), nil)
	_, _, first := g1.openSessionAs("127.0.0.1", "SN1", "cpe", "secret")
	sid := cookieOf(first)
	if first.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("Inform at the first replica: %d", first.StatusCode)
	}
	cookie := "Cookie: session=" + sid
	wantRefused(t, "cookie from another address at the other replica", dialCPEFrom(t, "127.0.0.2", g2.addr).post(gpvResponseBody(t), cookie))
	runSession(t, func(body []byte) answer { return dialCPEFrom(t, "127.0.0.1", g2.addr).post(body, cookie) })
	seen := g1.worker.seen()
	if len(seen) != 3 || seen[1].SessionID != sid || seen[2].SessionID != sid || seen[2].DeviceKey != testDeviceKey("SN1") {
		t.Fatalf("exchanges %+v", seen)
	}
	if _, err := g2.svc.affinity.Lookup(context.Background(), sid); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("record after the session ended at the second replica: %v", err)
	}
}

func TestEmptyPOSTOutsideSessionChallenged(t *testing.T) {
	h := startGateway(t, testConfig(), func(d *Deps) { d.Credentials = perDeviceCredentials() })
	// Nothing open: challenged first (some stacks get their Digest
	// challenge this way), then 204 with valid credentials; a wrong
	// password is refused.
	a := dialCPE(t, h.addr).post(nil)
	if a.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(a.Header.Get("WWW-Authenticate"), "Digest ") {
		t.Fatalf("empty POST without credentials: %d %q, want a Digest challenge", a.StatusCode, a.Header.Get("WWW-Authenticate"))
	}
	d := &digestClient{user: "cpe", pass: "secret"}
	d.learn(t, a)
	if a := dialCPE(t, h.addr).post(nil, d.header("/cwmp")); a.StatusCode != http.StatusNoContent {
		t.Fatalf("empty POST with valid credentials: %d, want 204", a.StatusCode)
	}
	// Per-device credentials cannot be checked without a DeviceId: they
	// get the same 204, which opens nothing and says nothing (and so is no
	// password oracle either).
	if a := dialCPE(t, h.addr).post(nil, h.challengeFor("sn2-user", "sn2-pass").header("/cwmp")); a.StatusCode != http.StatusNoContent {
		t.Fatalf("empty POST with per-device credentials: %d, want 204", a.StatusCode)
	}
	// Another session open from the same address changes nothing.
	_, _, first := h.openSessionAs("127.0.0.1", "SN1", "sn1-user", "sn1-pass")
	sid := cookieOf(first)
	a = dialCPE(t, h.addr).post(nil)
	if a.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(a.Header.Get("WWW-Authenticate"), "Digest ") {
		t.Fatalf("empty POST without credentials beside an open session: %d", a.StatusCode)
	}
	d.learn(t, a)
	if a := dialCPE(t, h.addr).post(nil, d.header("/cwmp")); a.StatusCode != http.StatusNoContent {
		t.Fatalf("empty POST with other valid credentials beside an open session: %d, want 204", a.StatusCode)
	}
	// SN1 finishes; a stray empty POST with its old cookie is outside any
	// session: challenged, then 204.
	runSession(t, func(body []byte) answer { return dialCPE(t, h.addr).post(body, "Cookie: session="+sid) })
	a = dialCPE(t, h.addr).post(nil, "Cookie: session="+sid)
	if a.StatusCode != http.StatusUnauthorized {
		t.Fatalf("stray empty POST after the session: %d, want 401", a.StatusCode)
	}
	d1 := &digestClient{user: "sn1-user", pass: "sn1-pass"}
	d1.learn(t, a)
	if a := dialCPE(t, h.addr).post(nil, "Cookie: session="+sid, d1.header("/cwmp")); a.StatusCode != http.StatusNoContent {
		t.Fatalf("stray empty POST with credentials: %d, want 204", a.StatusCode)
	}
	checkOneSession(t, h)
}
