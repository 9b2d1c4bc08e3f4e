package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/fleetacs/fleetacs/pkg/authstate"
)

// Abuse tests of CPE authentication (issue 8 item 3).

func wantStale(t *testing.T, what string, a answer) {
	t.Helper()
	if a.StatusCode != http.StatusUnauthorized || !strings.Contains(a.Header.Get("WWW-Authenticate"), "stale=true") {
		t.Fatalf("%s: %d %q, want 401 with stale=true", what, a.StatusCode, a.Header.Get("WWW-Authenticate"))
	}
}

// TestReplayedDigestHeader: a captured Authorization header opens no
// session, not for its device and not for another, and a nonce count
// going backwards is refused.
func TestReplayedDigestHeader(t *testing.T) {
	h := startGateway(t, testConfig(), nil)
	c := dialCPE(t, h.addr)
	d := &digestClient{user: "cpe", pass: "secret"}
	d.learn(t, c.post(informBody(t, "SN1", "2 PERIODIC")))
	captured := d.headerNC("/cwmp", 1)
	if a := c.post(informBody(t, "SN1", "2 PERIODIC"), captured); a.StatusCode != http.StatusOK {
		t.Fatalf("the CPE's own Inform: %d", a.StatusCode)
	}
	// The eavesdropper replays the header, for the device and for others
	// (with the shared credentials, any DeviceId would do).
	for _, serial := range []string{"SN1", "SN2"} {
		wantStale(t, "replayed header for "+serial, dialCPEFrom(t, "127.0.0.2", h.addr).post(informBody(t, serial, "2 PERIODIC"), captured))
	}
	// Counts must increase: 3 then 2 is a replay of something.
	if a := dialCPE(t, h.addr).post(informBody(t, "SN3", "2 PERIODIC"), d.headerNC("/cwmp", 3)); a.StatusCode != http.StatusOK {
		t.Fatalf("nc=3: %d", a.StatusCode)
	}
	wantStale(t, "nc going backwards", dialCPE(t, h.addr).post(informBody(t, "SN3", "2 PERIODIC"), d.headerNC("/cwmp", 2)))
	if n := len(h.worker.seen()); n != 2 {
		t.Fatalf("worker saw %d exchanges, want the two genuine Informs", n)
	}
}

// TestDigestCountRestartsAtOne: real CPEs that reuse a nonce with nc=1 and
// a new cnonce (or that reconnect and start over) get a fresh nonce, and
// get in with it.
func TestDigestCountRestartsAtOne(t *testing.T) {
	h := startGateway(t, testConfig(), nil)
	d := &digestClient{user: "cpe", pass: "secret", cnonce: "aaaa1111"}
	d.learn(t, dialCPE(t, h.addr).post(informBody(t, "SN1", "1 BOOT")))
	if a := dialCPE(t, h.addr).post(informBody(t, "SN1", "1 BOOT"), d.headerNC("/cwmp", 1)); a.StatusCode != http.StatusOK {
		t.Fatalf("first session: %d", a.StatusCode)
	}
	// Next session, same nonce, nc=1 again with a new cnonce.
	d.cnonce = "bbbb2222"
	c := dialCPE(t, h.addr)
	a := c.post(informBody(t, "SN1", "2 PERIODIC"), d.headerNC("/cwmp", 1))
	wantStale(t, "nc=1 again", a)
	d.learn(t, a)
	if a := c.post(informBody(t, "SN1", "2 PERIODIC"), d.header("/cwmp")); a.StatusCode != http.StatusOK {
		t.Fatalf("after the fresh nonce: %d", a.StatusCode)
	}
}

// TestReplayAtAnotherReplica: nonce counts are shared through Redis, so a
// header used at one replica is a replay at the other.
func TestReplayAtAnotherReplica(t *testing.T) {
	g1, g2 := redisReplicas(t, testConfig(), nil)
	d := &digestClient{user: "cpe", pass: "secret"}
	d.learn(t, dialCPE(t, g1.addr).post(informBody(t, "SN1", "2 PERIODIC")))
	captured := d.headerNC("/cwmp", 1)
	if a := dialCPE(t, g1.addr).post(informBody(t, "SN1", "2 PERIODIC"), captured); a.StatusCode != http.StatusOK {
		t.Fatalf("Inform at the first replica: %d", a.StatusCode)
	}
	wantStale(t, "replay at the second replica", dialCPEFrom(t, "127.0.0.2", g2.addr).post(informBody(t, "SN2", "2 PERIODIC"), captured))
	// The nonce itself is good at the second replica (one secret).
	if a := dialCPE(t, g2.addr).post(informBody(t, "SN2", "2 PERIODIC"), d.headerNC("/cwmp", 2)); a.StatusCode != http.StatusOK {
		t.Fatalf("next count at the second replica: %d", a.StatusCode)
	}
}

// guessOnce makes one password guess for user against SN1's Inform, on a
// fresh connection from the address from, and returns the answer.
func guessOnce(h *harness, from, user, pass string) answer {
	h.t.Helper()
	c := dialCPEFrom(h.t, from, h.addr)
	a := c.post(informBody(h.t, "SN1", "2 PERIODIC"))
	if a.StatusCode != http.StatusUnauthorized {
		return a
	}
	d := &digestClient{user: user, pass: pass}
	d.learn(h.t, a)
	return c.post(informBody(h.t, "SN1", "2 PERIODIC"), d.header("/cwmp"))
}

func TestPasswordGuessingBacksOff(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	h := startGateway(t, testConfig(), withMetrics(reader))
	// One connection, guessing as fast as it can: it is closed after
	// gateway.auth-conn-failures (3) failures.
	c := dialCPE(t, h.addr)
	d := &digestClient{user: "cpe", pass: "guess"}
	d.learn(t, c.post(informBody(t, "SN1", "2 PERIODIC")))
	for i := 1; i <= 3; i++ {
		a := c.post(informBody(t, "SN1", "2 PERIODIC"), d.header("/cwmp"))
		if a.StatusCode != http.StatusUnauthorized || a.Close != (i == 3) {
			t.Fatalf("guess %d: %d (close %v)", i, a.StatusCode, a.Close)
		}
	}
	// Three more: five failures of (address, user) are free, the sixth
	// starts the back-off.
	for i := 4; i <= 6; i++ {
		if a := guessOnce(h, "127.0.0.1", "cpe", "guess"); a.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, a.StatusCode)
		}
	}
	// ...and the next attempts wait, answered 503 without a look at the
	// password: even the right one is refused until the block ends.
	for _, pass := range []string{"guess", "secret"} {
		a := guessOnce(h, "127.0.0.1", "cpe", pass)
		if a.StatusCode != http.StatusServiceUnavailable || a.Header.Get("Retry-After") != "1" || !a.Close {
			t.Fatalf("blocked attempt with %q: %d Retry-After %q close %v, want 503, 1, close", pass, a.StatusCode, a.Header.Get("Retry-After"), a.Close)
		}
	}
	if got := counterValue(t, reader, "fleetacs.gateway.auth.blocked", attribute.String("limit", "source_user")); got != 2 {
		t.Fatalf("auth.blocked{limit=source_user} = %d, want 2", got)
	}
	// The block doubles with each failure after it.
	h.clock.Advance(time.Second)
	if a := guessOnce(h, "127.0.0.1", "cpe", "guess"); a.StatusCode != http.StatusUnauthorized {
		t.Fatalf("guess after the block: %d", a.StatusCode)
	}
	if a := guessOnce(h, "127.0.0.1", "cpe", "secret"); a.StatusCode != http.StatusServiceUnavailable || a.Header.Get("Retry-After") != "2" {
		t.Fatalf("second block: %d Retry-After %q, want 503 and 2", a.StatusCode, a.Header.Get("Retry-After"))
	}
	// Another address is not blocked by this pair.
	if a := guessOnce(h, "127.0.0.2", "cpe", "secret"); a.StatusCode != http.StatusOK {
		t.Fatalf("the right password from another address: %d", a.StatusCode)
	}
	// The CPE whose password was fixed gets in once the block ends.
	h.clock.Advance(2 * time.Second)
	if a := guessOnce(h, "127.0.0.1", "cpe", "secret"); a.StatusCode != http.StatusOK {
		t.Fatalf("the right password after the block: %d", a.StatusCode)
	}
	if n := len(h.worker.seen()); n != 2 {
		t.Fatalf("worker saw %d exchanges, want the two genuine sessions", n)
	}
}

// TestFailuresCannotLockOutADevice: an attacker failing with a device's
// user name from other addresses blocks the name for unknown addresses,
// never where the device authenticates from.
func TestFailuresCannotLockOutADevice(t *testing.T) {
	cfg := testConfig()
	cfg.AuthFailuresPerSourceUser = 0 // the per-user limit alone
	cfg.AuthFailuresPerUser = 3
	h := startGateway(t, cfg, func(d *Deps) { d.Credentials = perDeviceCredentials() })
	if _, _, a := h.openSessionAs("127.0.0.1", "SN1", "sn1-user", "sn1-pass"); a.StatusCode != http.StatusOK {
		t.Fatalf("the device's first session: %d", a.StatusCode)
	}
	for _, from := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		if a := guessOnce(h, from, "sn1-user", "guess"); a.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess from %s: %d", from, a.StatusCode)
		}
	}
	// The user name is blocked for a new address, even with the right
	// password...
	if a := guessOnce(h, "127.0.0.6", "sn1-user", "sn1-pass"); a.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("the user from a new address: %d, want 503", a.StatusCode)
	}
	// ...but the device gets in where it authenticated before.
	if a := guessOnce(h, "127.0.0.1", "sn1-user", "sn1-pass"); a.StatusCode != http.StatusOK {
		t.Fatalf("the device at its known address: %d, want 200", a.StatusCode)
	}
}

// TestBackoffSharedAcrossReplicas: failures at one replica count at the
// other.
func TestBackoffSharedAcrossReplicas(t *testing.T) {
	g1, g2 := redisReplicas(t, testConfig(), nil)
	for i := range 6 {
		g := g1
		if i%2 == 1 {
			g = g2
		}
		if a := guessOnce(g, "127.0.0.1", "cpe", "guess"); a.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, a.StatusCode)
		}
	}
	for _, g := range []*harness{g1, g2} {
		if a := guessOnce(g, "127.0.0.1", "cpe", "secret"); a.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("after six failures spread over replicas: %d, want 503", a.StatusCode)
		}
	}
}

// TestPerDeviceCredentialsRetireSharedEverywhere: once a device has
// credentials of its own, the shared and derived ones are refused for it
// on every path: a new session, a session routed by address (one opened
// with the shared credentials before the device got its own), and a
// session's cookie.
func TestPerDeviceCredentialsRetireSharedEverywhere(t *testing.T) {
	cfg := testConfig()
	cfg.AuthOnboardingSecret = "factory-secret"
	creds := NewStaticCredentials()
	h := startGateway(t, cfg, func(d *Deps) { d.Credentials = creds })
	// SN1 onboards with the shared credentials; its session stays open.
	c, _, first := h.openSessionAs("127.0.0.1", "SN1", "cpe", "secret")
	if first.StatusCode != http.StatusOK {
		t.Fatalf("onboarding session: %d", first.StatusCode)
	}
	_ = c.c.Close()
	// Meanwhile the operator gives SN1 credentials of its own.
	creds.Set("default", testDeviceKey("SN1"), Credential{Username: "sn1-user", Password: "sn1-pass"})
	// The open session routed by address: the shared credentials no
	// longer vouch for SN1.
	if a := dialCPE(t, h.addr).post(nil, h.challengeFor("cpe", "secret").header("/cwmp")); a.StatusCode != http.StatusUnauthorized {
		t.Fatalf("address-routed request with shared credentials after per-device ones: %d, want 401", a.StatusCode)
	}
	// New sessions: shared and derived credentials refused, own accepted.
	for _, d := range []*digestClient{h.challengeFor("cpe", "secret"), h.challengeFor("SN1", DerivePassword("factory-secret", "SN1"))} {
		if a := dialCPE(t, h.addr).post(informBody(t, "SN1", "2 PERIODIC"), d.header("/cwmp")); a.StatusCode != http.StatusUnauthorized {
			t.Fatalf("new session with %s's credentials: %d, want 401", d.user, a.StatusCode)
		}
	}
	_, _, own := h.openSessionAs("127.0.0.1", "SN1", "sn1-user", "sn1-pass")
	if own.StatusCode != http.StatusOK {
		t.Fatalf("own credentials: %d", own.StatusCode)
	}
	// That session's cookie with the shared credentials.
	wantRefused(t, "cookie with shared credentials", dialCPE(t, h.addr).post(nil, "Cookie: session="+cookieOf(own), h.challengeFor("cpe", "secret").header("/cwmp")))
	if n := len(h.worker.seen()); n != 2 {
		t.Fatalf("worker saw %d exchanges, want the two Informs", n)
	}
}

func TestSharedCredentialsOnboardingOnly(t *testing.T) {
	cfg := testConfig()
	cfg.AuthOnboardingSecret = "factory-secret"
	cfg.AuthSharedScope = "onboarding"
	cfg.AuthOnboardingWindow = 24 * time.Hour
	creds := NewStaticCredentials()
	h := startGateway(t, cfg, func(d *Deps) { d.Credentials = creds })
	now := h.clock.Now()
	creds.Register("default", testDeviceKey("SN1"), now.Add(-time.Hour))    // onboarding
	creds.Register("default", testDeviceKey("SN2"), now.Add(-48*time.Hour)) // known for long
	for _, tc := range []struct {
		serial, user, pass string
		want               int
	}{
		{"SN1", "cpe", "secret", http.StatusOK},
		{"SN3", "cpe", "secret", http.StatusOK}, // not known yet
		{"SN2", "cpe", "secret", http.StatusUnauthorized},
		{"SN2", "SN2", DerivePassword("factory-secret", "SN2"), http.StatusUnauthorized},
		{"SN1", "SN1", DerivePassword("factory-secret", "SN1"), http.StatusOK},
	} {
		if _, _, a := h.openSessionAs("127.0.0.1", tc.serial, tc.user, tc.pass); a.StatusCode != tc.want {
			t.Fatalf("%s with %s's credentials: %d, want %d", tc.serial, tc.user, a.StatusCode, tc.want)
		}
	}
	// The window closes for SN1 too.
	h.clock.Advance(24 * time.Hour)
	if _, _, a := h.openSessionAs("127.0.0.1", "SN1", "cpe", "secret"); a.StatusCode != http.StatusUnauthorized {
		t.Fatalf("SN1 after its onboarding window: %d, want 401", a.StatusCode)
	}
	if _, err := New(cfg, Deps{Forwarder: newTestWorker(nil)}); err == nil || !strings.Contains(err.Error(), "auth-shared-scope=onboarding") {
		t.Fatalf("onboarding scope without Credentials: %v", err)
	}
}

func TestDigestAbsoluteURI(t *testing.T) {
	cfg := testConfig()
	cfg.ACSHostNames = "acs.isp.example, 192.0.2.1:7547"
	cfg.AuthFailuresPerSourceUser = 0 // the refusals below are not guesses
	h := startGateway(t, cfg, nil)
	// cpeConn.post sends Host: acs.example and the request line /cwmp.
	for _, tc := range []struct {
		uri  string
		want int
	}{
		{"/cwmp", http.StatusOK},
		{"http://acs.example/cwmp", http.StatusOK},
		{"http://ACS.Example.:80/cwmp", http.StatusOK},
		{"http://acs.isp.example:7547/cwmp", http.StatusOK},
		{"http://192.0.2.1:7547/cwmp", http.StatusOK},
		{"http://evil.example/cwmp", http.StatusUnauthorized},
		{"http://acs.example:8080/cwmp", http.StatusUnauthorized},
		{"https://acs.example/cwmp", http.StatusUnauthorized}, // port 443 is not the request's 80
		{"http://192.0.2.1:80/cwmp", http.StatusUnauthorized},
		{"http://acs.example/other", http.StatusUnauthorized},
		{"http://user@acs.example/cwmp", http.StatusUnauthorized},
		{"ftp://acs.example/cwmp", http.StatusUnauthorized},
	} {
		d := h.challengeFor("cpe", "secret")
		if a := dialCPE(t, h.addr).post(informBody(t, "SN1", "2 PERIODIC"), d.header(tc.uri)); a.StatusCode != tc.want {
			t.Errorf("Digest uri %q: %d, want %d", tc.uri, a.StatusCode, tc.want)
		}
	}
}

// failingAuthState is a NonceCounts and AuthGuard that are down.
type failingAuthState struct{}

var errAuthStateDown = errors.New("redis: i/o timeout")

func (failingAuthState) Advance(context.Context, string, uint64, time.Time) (bool, error) {
	return false, errAuthStateDown
}

func (failingAuthState) Check(context.Context, authstate.Policy, authstate.Attempt) (authstate.Status, error) {
	return authstate.Status{}, errAuthStateDown
}

func (failingAuthState) Fail(context.Context, authstate.Policy, authstate.Attempt) (authstate.Status, error) {
	return authstate.Status{}, errAuthStateDown
}

func (failingAuthState) Succeed(context.Context, authstate.Policy, authstate.Attempt) error {
	return errAuthStateDown
}

// TestAuthStateDown: with the shared authentication state unreachable,
// credentials are not accepted unchecked: the CPE is asked to come back.
func TestAuthStateDown(t *testing.T) {
	for name, edit := range map[string]func(*Deps){
		"nonce counts": func(d *Deps) { d.NonceCounts = failingAuthState{} },
		"back-off":     func(d *Deps) { d.AuthGuard = failingAuthState{} },
	} {
		t.Run(name, func(t *testing.T) {
			h := startGateway(t, testConfig(), edit)
			_, _, a := h.openSessionAs("127.0.0.1", "SN1", "cpe", "secret")
			if a.StatusCode != http.StatusServiceUnavailable || a.Header.Get("Retry-After") == "" {
				t.Fatalf("Inform with %s down: %d %q, want 503 with Retry-After", name, a.StatusCode, a.Header.Get("Retry-After"))
			}
			if n := len(h.worker.seen()); n != 0 {
				t.Fatalf("worker saw %d exchanges", n)
			}
		})
	}
}

// TestFailedUserNameClippedInLogs: the user name of a failed attempt is
// the attacker's to choose, up to the header limit; the warning it causes
// carries a bounded part of it.
func TestFailedUserNameClippedInLogs(t *testing.T) {
	h := startGateway(t, testConfig(), nil)
	long := strings.Repeat("x", 8<<10)
	if a := guessOnce(h, "127.0.0.1", long, "guess"); a.StatusCode != http.StatusUnauthorized {
		t.Fatalf("guess with a long user name: %d", a.StatusCode)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "CPE authentication failed") {
		t.Fatal("the failure was not logged")
	}
	if strings.Contains(logs, strings.Repeat("x", maxLoggedPrincipal+1)) {
		t.Fatalf("logs carry more than %d bytes of the user name", maxLoggedPrincipal)
	}
	if !strings.Contains(logs, strings.Repeat("x", maxLoggedPrincipal)) {
		t.Fatal("logs lost the user name's start")
	}
}
