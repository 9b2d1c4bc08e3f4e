// Package authstatetest is the conformance suite of package authstate's
// ports: every backend (in-process, Redis, and any decorator wrapping them)
// must pass Run. Expiry is driven by a fake clock the suite hands to the
// factory, so the suite is deterministic and never sleeps.
package authstatetest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/authstate"
)

// Clock is a fake clock for tests, safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Start is where the suite's clocks start: whole seconds, so that times
// survive backends that store microseconds.
var Start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Factory returns a new, empty store reading time from now. Run calls it
// once per subtest; it registers its own cleanup with t.
type Factory func(t *testing.T, now func() time.Time) authstate.Store

// Run runs the conformance suite against the stores newStore makes. The
// subtests run in parallel, each with its own store and clock.
func Run(t *testing.T, newStore Factory) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s authstate.Store, clk *Clock)
	}{
		{"Nonces/StrictlyIncreasing", testNonceIncreasing},
		{"Nonces/Independent", testNoncesIndependent},
		{"Nonces/Expiry", testNonceExpiry},
		{"Nonces/LongestExpiryKept", testNonceLongestExpiry},
		{"Nonces/Concurrent", testNonceConcurrent},
		{"Nonces/InvalidArguments", testNonceInvalid},
		{"Guard/FreeThenBackoff", testBackoff},
		{"Guard/PairIndependent", testPairsIndependent},
		{"Guard/SourceLimit", testSourceLimit},
		{"Guard/UserLimit", testUserLimit},
		{"Guard/KnownSourceExempt", testKnownSource},
		{"Guard/SucceedKeepsSourceAndUser", testSucceedKeeps},
		{"Guard/Forget", testForget},
		{"Guard/Settled", testSettled},
		{"Guard/LimitsOff", testLimitsOff},
		{"Guard/ConcurrentFailures", testConcurrentFailures},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := NewClock(Start)
			s := newStore(t, clk.Now)
			tc.fn(t, s, clk)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

const nonce = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

func advance(t *testing.T, s authstate.Store, n string, nc uint64, exp time.Time) bool {
	t.Helper()
	ok, err := s.Advance(ctx(t), n, nc, exp)
	if err != nil {
		t.Fatalf("Advance(%s, %d): %v", n, nc, err)
	}
	return ok
}

func testNonceIncreasing(t *testing.T, s authstate.Store, clk *Clock) {
	exp := clk.Now().Add(5 * time.Minute)
	for _, step := range []struct {
		nc   uint64
		want bool
	}{
		{1, true}, {1, false}, {2, true}, {5, true}, {3, false}, {5, false}, {6, true},
		{authstate.MaxNonceCount, true}, {authstate.MaxNonceCount, false},
	} {
		if got := advance(t, s, nonce, step.nc, exp); got != step.want {
			t.Fatalf("Advance(nc=%d) = %v, want %v", step.nc, got, step.want)
		}
	}
}

func testNoncesIndependent(t *testing.T, s authstate.Store, clk *Clock) {
	exp := clk.Now().Add(5 * time.Minute)
	if !advance(t, s, nonce, 7, exp) {
		t.Fatal("first use refused")
	}
	if !advance(t, s, nonce+"B", 1, exp) {
		t.Fatal("another nonce's count depends on the first one's")
	}
}

func testNonceExpiry(t *testing.T, s authstate.Store, clk *Clock) {
	exp := clk.Now().Add(time.Minute)
	if !advance(t, s, nonce, 3, exp) {
		t.Fatal("first use refused")
	}
	clk.Advance(59 * time.Second)
	if advance(t, s, nonce, 3, exp) {
		t.Fatal("count forgotten before its expiry")
	}
	clk.Advance(time.Second)
	// The nonce itself is dead by now (callers never ask); the store need
	// not remember it.
	if !advance(t, s, nonce, 1, clk.Now().Add(time.Minute)) {
		t.Fatal("expired count still remembered")
	}
}

func testNonceLongestExpiry(t *testing.T, s authstate.Store, clk *Clock) {
	// Replicas with different settings may give one nonce different
	// expiries: the record keeps the later one.
	if !advance(t, s, nonce, 1, clk.Now().Add(2*time.Minute)) {
		t.Fatal("first use refused")
	}
	if !advance(t, s, nonce, 2, clk.Now().Add(time.Minute)) {
		t.Fatal("second use refused")
	}
	clk.Advance(90 * time.Second)
	if advance(t, s, nonce, 2, clk.Now().Add(time.Minute)) {
		t.Fatal("count forgotten at the shorter expiry")
	}
}

func testNonceConcurrent(t *testing.T, s authstate.Store, clk *Clock) {
	// One header replayed many times at once: exactly one use wins.
	exp := clk.Now().Add(5 * time.Minute)
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			ok, err := s.Advance(ctx(t), nonce, 1, exp)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d of 16 concurrent uses of one count accepted, want 1", n)
	}
}

func testNonceInvalid(t *testing.T, s authstate.Store, clk *Clock) {
	exp := clk.Now().Add(time.Minute)
	for _, c := range []struct {
		nonce string
		nc    uint64
	}{{"", 1}, {nonce, 0}, {nonce, authstate.MaxNonceCount + 1}} {
		if _, err := s.Advance(ctx(t), c.nonce, c.nc, exp); err == nil {
			t.Errorf("Advance(%q, %d) accepted", c.nonce, c.nc)
		}
	}
}

// policy limits the pair only, unless a test turns more on.
func policy() authstate.Policy {
	return authstate.Policy{
		Pair:     authstate.Limit{Free: 3, Base: time.Second, Max: 8 * time.Second},
		Forget:   time.Hour,
		KnownFor: 24 * time.Hour,
	}
}

var (
	attacker = authstate.Attempt{Source: "192.0.2.66", User: "victim"}
	device   = authstate.Attempt{Source: "198.51.100.7", User: "victim"}
)

func check(t *testing.T, s authstate.Store, p authstate.Policy, a authstate.Attempt) authstate.Status {
	t.Helper()
	st, err := s.Check(ctx(t), p, a)
	if err != nil {
		t.Fatalf("Check(%+v): %v", a, err)
	}
	return st
}

func fail(t *testing.T, s authstate.Store, p authstate.Policy, a authstate.Attempt) authstate.Status {
	t.Helper()
	st, err := s.Fail(ctx(t), p, a)
	if err != nil {
		t.Fatalf("Fail(%+v): %v", a, err)
	}
	return st
}

func succeed(t *testing.T, s authstate.Store, p authstate.Policy, a authstate.Attempt) {
	t.Helper()
	if err := s.Succeed(ctx(t), p, a); err != nil {
		t.Fatalf("Succeed(%+v): %v", a, err)
	}
}

func wantWait(t *testing.T, what string, st authstate.Status, wait time.Duration, kind authstate.Kind) {
	t.Helper()
	if st.Wait != wait || (wait > 0 && st.Limit != kind) {
		t.Fatalf("%s: status %+v, want wait %s by %s", what, st, wait, kind)
	}
}

func testBackoff(t *testing.T, s authstate.Store, clk *Clock) {
	p := policy()
	for range 3 {
		wantWait(t, "free failure", fail(t, s, p, attacker), 0, 0)
		wantWait(t, "check after free failure", check(t, s, p, attacker), 0, 0)
	}
	// Beyond the free ones: 1s, 2s, 4s, 8s, then capped at 8s.
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		wantWait(t, "failure", fail(t, s, p, attacker), want, authstate.KindPair)
		wantWait(t, "check", check(t, s, p, attacker), want, authstate.KindPair)
		clk.Advance(want / 2)
		wantWait(t, "check half-way", check(t, s, p, attacker), want/2, authstate.KindPair)
		clk.Advance(want / 2)
		wantWait(t, "check at the end of the block", check(t, s, p, attacker), 0, 0)
	}
}

func testPairsIndependent(t *testing.T, s authstate.Store, _ *Clock) {
	p := policy()
	for range 5 {
		fail(t, s, p, attacker)
	}
	if st := check(t, s, p, attacker); st.Wait == 0 {
		t.Fatal("attacker not blocked")
	}
	// The pair limit alone blocks neither the user elsewhere nor the
	// address for other users.
	wantWait(t, "same user, other source", check(t, s, p, device), 0, 0)
	wantWait(t, "same source, other user", check(t, s, p, authstate.Attempt{Source: attacker.Source, User: "other"}), 0, 0)
}

func testSourceLimit(t *testing.T, s authstate.Store, _ *Clock) {
	p := policy()
	p.Source = authstate.Limit{Free: 4, Base: 10 * time.Second, Max: time.Minute}
	// One address, a new user name each time: the pair limit never
	// triggers, the source limit does.
	for i := range 4 {
		wantWait(t, "free source failure", fail(t, s, p, authstate.Attempt{Source: attacker.Source, User: string(rune('a' + i))}), 0, 0)
	}
	st := fail(t, s, p, authstate.Attempt{Source: attacker.Source, User: "e"})
	wantWait(t, "fifth user from one source", st, 10*time.Second, authstate.KindSource)
	wantWait(t, "any user from the source", check(t, s, p, authstate.Attempt{Source: attacker.Source, User: "z"}), 10*time.Second, authstate.KindSource)
	wantWait(t, "another source", check(t, s, p, device), 0, 0)
}

func testUserLimit(t *testing.T, s authstate.Store, _ *Clock) {
	p := policy()
	p.User = authstate.Limit{Free: 2, Base: 5 * time.Second, Max: time.Minute}
	for i := range 2 {
		fail(t, s, p, authstate.Attempt{Source: "192.0.2." + string(rune('1'+i)), User: "victim"})
	}
	st := fail(t, s, p, authstate.Attempt{Source: "192.0.2.9", User: "victim"})
	wantWait(t, "third source for one user", st, 5*time.Second, authstate.KindUser)
	wantWait(t, "the user from a fresh source", check(t, s, p, device), 5*time.Second, authstate.KindUser)
	wantWait(t, "another user", check(t, s, p, authstate.Attempt{Source: device.Source, User: "other"}), 0, 0)
}

func testKnownSource(t *testing.T, s authstate.Store, clk *Clock) {
	p := policy()
	p.User = authstate.Limit{Free: 1, Base: time.Hour, Max: 2 * time.Hour}
	p.Source = authstate.Limit{Free: 1, Base: time.Hour, Max: 2 * time.Hour}
	p.KnownFor = 10 * time.Minute
	succeed(t, s, p, device)
	// Attackers elsewhere block the user name...
	for i := range 5 {
		fail(t, s, p, authstate.Attempt{Source: "192.0.2." + string(rune('1'+i)), User: device.User})
	}
	if st := check(t, s, p, authstate.Attempt{Source: "192.0.2.200", User: device.User}); st.Limit != authstate.KindUser {
		t.Fatalf("user not blocked for a fresh source: %+v", st)
	}
	// ...but not where the CPE authenticated from.
	wantWait(t, "known source under a user block", check(t, s, p, device), 0, 0)
	// Other users failing from the device's address (its NAT) block the
	// address for unknown users, not for the known one.
	for _, u := range []string{"x", "y", "z"} {
		fail(t, s, p, authstate.Attempt{Source: device.Source, User: u})
	}
	if st := check(t, s, p, authstate.Attempt{Source: device.Source, User: "new"}); st.Limit != authstate.KindSource {
		t.Fatalf("source not blocked for an unknown user: %+v", st)
	}
	wantWait(t, "known source under a source block", check(t, s, p, device), 0, 0)
	// The pair limit still applies to a known source.
	for range 4 {
		fail(t, s, p, device)
	}
	if st := check(t, s, p, device); st.Limit != authstate.KindPair {
		t.Fatalf("pair limit not applied to a known source: %+v", st)
	}
	// The exemption lapses KnownFor after the last success.
	clk.Advance(p.KnownFor + time.Second)
	if st := check(t, s, p, device); st.Wait == 0 || st.Limit == authstate.KindPair {
		t.Fatalf("lapsed known source still exempt: %+v", st)
	}
}

func testSucceedKeeps(t *testing.T, s authstate.Store, _ *Clock) {
	p := policy()
	p.Source = authstate.Limit{Free: 2, Base: time.Minute, Max: time.Hour}
	for range 5 {
		fail(t, s, p, attacker)
	}
	// The attacker logs in with an account of its own from the same
	// address: its other failures stay counted.
	own := authstate.Attempt{Source: attacker.Source, User: "attacker-own"}
	succeed(t, s, p, own)
	if st := check(t, s, p, attacker); st.Wait == 0 {
		t.Fatalf("a success of another user cleared the attacker's block: %+v", st)
	}
	// A success of the pair itself clears the pair (the CPE's password
	// was fixed) and makes the source known for the user.
	succeed(t, s, p, attacker)
	wantWait(t, "after the pair's success", check(t, s, p, attacker), 0, 0)
}

func testForget(t *testing.T, s authstate.Store, clk *Clock) {
	p := policy()
	for range 3 {
		fail(t, s, p, attacker)
	}
	clk.Advance(p.Forget)
	// The three failures are forgotten: three more are free again.
	for range 3 {
		wantWait(t, "failure after forgetting", fail(t, s, p, attacker), 0, 0)
	}
	wantWait(t, "next failure", fail(t, s, p, attacker), time.Second, authstate.KindPair)
	// A block is remembered for Forget after it ends, not after it began.
	for range 3 {
		fail(t, s, p, attacker)
	}
	clk.Advance(8*time.Second + p.Forget - time.Second)
	wantWait(t, "failure within Forget of the block's end", fail(t, s, p, attacker), 8*time.Second, authstate.KindPair)
}

func testSettled(t *testing.T, s authstate.Store, clk *Clock) {
	p := policy()
	if check(t, s, p, device).Settled {
		t.Fatal("settled before any success")
	}
	succeed(t, s, p, device)
	if !check(t, s, p, device).Settled {
		t.Fatal("not settled right after a success")
	}
	clk.Advance(p.KnownFor/2 + time.Second)
	if check(t, s, p, device).Settled {
		t.Fatal("still settled past half the mark's life: the mark would lapse unrefreshed")
	}
	succeed(t, s, p, device)
	fail(t, s, p, device)
	if check(t, s, p, device).Settled {
		t.Fatal("settled with a failure of the pair on record")
	}
}

func testLimitsOff(t *testing.T, s authstate.Store, _ *Clock) {
	p := authstate.Policy{Forget: time.Hour, KnownFor: time.Hour}
	for range 50 {
		wantWait(t, "failure with every limit off", fail(t, s, p, attacker), 0, 0)
	}
	wantWait(t, "check with every limit off", check(t, s, p, attacker), 0, 0)
}

func testConcurrentFailures(t *testing.T, s authstate.Store, _ *Clock) {
	// Failures at many replicas at once are all counted.
	p := policy()
	p.Pair = authstate.Limit{Free: 20, Base: time.Second, Max: time.Hour}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := s.Fail(ctx(t), p, attacker); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	wantWait(t, "the 21st failure", fail(t, s, p, attacker), time.Second, authstate.KindPair)
}
