// Package affinitytest is the conformance suite of package affinity's ports:
// every backend (in-process, Redis, and any decorator wrapping them) must pass
// Run. Expiry is driven by a fake clock that the suite hands to the factory,
// so the suite is deterministic and never sleeps.
package affinitytest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
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

// Start is where the suite's clocks start: whole seconds, so that expiry
// times survive backends that store microseconds.
var Start = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Factory returns a new, empty store whose parts read time from now. Run
// calls it once per subtest; it registers its own cleanup with t.
type Factory func(t *testing.T, now func() time.Time) affinity.Store

// Run runs the conformance suite against the stores newStore makes. The
// subtests run in parallel, each with its own store and clock.
func Run(t *testing.T, newStore Factory) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s affinity.Store, clk *Clock)
	}{
		{"Leases/AcquireFree", testAcquireFree},
		{"Leases/Takeover", testTakeover},
		{"Leases/ReacquireSameSession", testReacquireSameSession},
		{"Leases/Release", testRelease},
		{"Leases/Expiry", testLeaseExpiry},
		{"Leases/Renew", testRenew},
		{"Leases/TokenFloor", testTokenFloor},
		{"Leases/DevicesIndependent", testDevicesIndependent},
		{"Leases/ConcurrentAcquire", testConcurrentAcquire},
		{"Leases/InvalidArguments", testLeaseInvalid},
		{"Affinity/PutLookup", testPutLookup},
		{"Affinity/OpenSessionAt", testOpenSessionAt},
		{"Affinity/Expiry", testRecordExpiry},
		{"Affinity/AddressChange", testAddressChange},
		{"Affinity/Delete", testDeleteRecord},
		{"Affinity/InvalidArguments", testRecordInvalid},
		{"Checkpoints/SaveLoad", testSaveLoad},
		{"Checkpoints/SessionFencing", testSessionFencing},
		{"Checkpoints/DeviceFencing", testDeviceFencing},
		{"Checkpoints/LargeTokens", testLargeTokens},
		{"Checkpoints/Expiry", testCheckpointExpiry},
		{"Checkpoints/InvalidArguments", testCheckpointInvalid},
		{"Checkpoints/Journal", testCheckpointJournal},
		{"Sessions/SaveEnd", testSessionsSaveEnd},
		{"Sessions/Superseded", testSessionsSuperseded},
		{"Sessions/AddressChange", testSessionsAddressChange},
		{"Sessions/InvalidArguments", testSessionsInvalid},
		{"Registry/Liveness", testRegistryLiveness},
		{"Registry/Deregister", testDeregister},
		{"Registry/Rendezvous", testRegistryRendezvous},
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

const (
	tenant = "default"
	device = "00259E-HG8245H-48575443A1B2C3D4"
	ttl    = 30 * time.Second
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func acquire(t *testing.T, l affinity.Leases, tn, dev, sid string, d time.Duration) affinity.Lease {
	t.Helper()
	lease, err := l.Acquire(ctx(t), tn, dev, sid, d)
	if err != nil {
		t.Fatalf("Acquire(%s, %s, %s): %v", tn, dev, sid, err)
	}
	return lease
}

func wantHolder(t *testing.T, l affinity.Leases, tn, dev, sid string, token uint64) {
	t.Helper()
	h, ok, err := l.Holder(ctx(t), tn, dev)
	if err != nil {
		t.Fatalf("Holder: %v", err)
	}
	if sid == "" {
		if ok {
			t.Fatalf("Holder = %+v, want none", h)
		}
		return
	}
	if !ok || h.SessionID != sid || (token != 0 && h.FencingToken != token) {
		t.Fatalf("Holder = %+v, %v; want session %s token %d", h, ok, sid, token)
	}
}

func testAcquireFree(t *testing.T, s affinity.Store, clk *Clock) {
	l := acquire(t, s.Leases, tenant, device, "s1", ttl)
	if l.Superseded != "" || l.FencingToken == 0 || !l.Expires.Equal(clk.Now().Add(ttl)) {
		t.Fatalf("Acquire on a free device = %+v, want no superseded, a token, expiry now+%s", l, ttl)
	}
	h, ok, err := s.Leases.Holder(ctx(t), tenant, device)
	if err != nil || !ok {
		t.Fatalf("Holder = %v, %v", ok, err)
	}
	if want := (affinity.LeaseHolder{SessionID: "s1", FencingToken: l.FencingToken, Expires: l.Expires}); h.SessionID != want.SessionID || h.FencingToken != want.FencingToken || !h.Expires.Equal(want.Expires) {
		t.Fatalf("Holder = %+v, want %+v", h, want)
	}
}

func testTakeover(t *testing.T, s affinity.Store, clk *Clock) {
	a := acquire(t, s.Leases, tenant, device, "s1", ttl)
	clk.Advance(time.Second)
	b := acquire(t, s.Leases, tenant, device, "s2", ttl)
	if b.Superseded != "s1" || b.FencingToken <= a.FencingToken {
		t.Fatalf("takeover = %+v after %+v, want superseded s1 and a greater token", b, a)
	}
	wantHolder(t, s.Leases, tenant, device, "s2", b.FencingToken)
	if err := s.Leases.Renew(ctx(t), tenant, device, "s1", a.FencingToken, ttl); !errors.Is(err, affinity.ErrLeaseLost) {
		t.Fatalf("Renew by the superseded session = %v, want ErrLeaseLost", err)
	}
	if err := s.Leases.Renew(ctx(t), tenant, device, "s2", a.FencingToken, ttl); !errors.Is(err, affinity.ErrLeaseLost) {
		t.Fatalf("Renew by the holder with an old token = %v, want ErrLeaseLost", err)
	}
	if err := s.Leases.Renew(ctx(t), tenant, device, "s2", b.FencingToken, ttl); err != nil {
		t.Fatalf("Renew by the holder = %v", err)
	}
	// A third session supersedes the second, not the first.
	c := acquire(t, s.Leases, tenant, device, "s3", ttl)
	if c.Superseded != "s2" || c.FencingToken <= b.FencingToken {
		t.Fatalf("second takeover = %+v, want superseded s2 and a token above %d", c, b.FencingToken)
	}
}

func testReacquireSameSession(t *testing.T, s affinity.Store, _ *Clock) {
	a := acquire(t, s.Leases, tenant, device, "s1", ttl)
	b := acquire(t, s.Leases, tenant, device, "s1", ttl)
	if b.Superseded != "" || b.FencingToken <= a.FencingToken {
		t.Fatalf("re-acquire by the holder = %+v after %+v, want nothing superseded and a greater token", b, a)
	}
	if err := s.Leases.Renew(ctx(t), tenant, device, "s1", a.FencingToken, ttl); !errors.Is(err, affinity.ErrLeaseLost) {
		t.Fatalf("Renew with the replaced token = %v, want ErrLeaseLost", err)
	}
}

func testRelease(t *testing.T, s affinity.Store, _ *Clock) {
	a := acquire(t, s.Leases, tenant, device, "s1", ttl)
	if err := s.Leases.Release(ctx(t), tenant, device, "other"); err != nil {
		t.Fatalf("Release by a non-holder: %v", err)
	}
	wantHolder(t, s.Leases, tenant, device, "s1", a.FencingToken)
	if err := s.Leases.Renew(ctx(t), tenant, device, "s1", a.FencingToken, ttl); err != nil {
		t.Fatalf("Renew after a non-holder's release: %v", err)
	}
	if err := s.Leases.Release(ctx(t), tenant, device, "s1"); err != nil {
		t.Fatalf("Release by the holder: %v", err)
	}
	wantHolder(t, s.Leases, tenant, device, "", 0)
	if err := s.Leases.Renew(ctx(t), tenant, device, "s1", a.FencingToken, ttl); !errors.Is(err, affinity.ErrLeaseLost) {
		t.Fatalf("Renew after release = %v, want ErrLeaseLost", err)
	}
	if err := s.Leases.Release(ctx(t), tenant, device, "s1"); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	// The counter outlives the lease.
	b := acquire(t, s.Leases, tenant, device, "s2", ttl)
	if b.Superseded != "" || b.FencingToken <= a.FencingToken {
		t.Fatalf("Acquire after release = %+v, want nothing superseded and a token above %d", b, a.FencingToken)
	}
	// A late release by the first session leaves the second's lease alone.
	if err := s.Leases.Release(ctx(t), tenant, device, "s1"); err != nil {
		t.Fatalf("late Release: %v", err)
	}
	wantHolder(t, s.Leases, tenant, device, "s2", b.FencingToken)
}

func testLeaseExpiry(t *testing.T, s affinity.Store, clk *Clock) {
	a := acquire(t, s.Leases, tenant, device, "s1", ttl)
	clk.Advance(ttl - time.Millisecond)
	wantHolder(t, s.Leases, tenant, device, "s1", a.FencingToken)
	clk.Advance(time.Millisecond) // now == expiry: gone
	wantHolder(t, s.Leases, tenant, device, "", 0)
	if err := s.Leases.Renew(ctx(t), tenant, device, "s1", a.FencingToken, ttl); !errors.Is(err, affinity.ErrLeaseLost) {
		t.Fatalf("Renew of an expired lease = %v, want ErrLeaseLost", err)
	}
	b := acquire(t, s.Leases, tenant, device, "s2", ttl)
	if b.Superseded != "" || b.FencingToken <= a.FencingToken {
		t.Fatalf("Acquire after expiry = %+v, want nothing superseded and a token above %d", b, a.FencingToken)
	}
}

func testRenew(t *testing.T, s affinity.Store, clk *Clock) {
	a := acquire(t, s.Leases, tenant, device, "s1", ttl)
	clk.Advance(ttl / 2)
	if err := s.Leases.Renew(ctx(t), tenant, device, "s1", a.FencingToken, ttl); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	h, ok, err := s.Leases.Holder(ctx(t), tenant, device)
	if err != nil || !ok || !h.Expires.Equal(clk.Now().Add(ttl)) || h.FencingToken != a.FencingToken {
		t.Fatalf("Holder after Renew = %+v, %v, %v; want expiry now+ttl and the same token", h, ok, err)
	}
	clk.Advance(ttl * 3 / 4) // past the first expiry, before the renewed one
	wantHolder(t, s.Leases, tenant, device, "s1", a.FencingToken)
	// A renewal with a shorter TTL shortens the lease.
	if err := s.Leases.Renew(ctx(t), tenant, device, "s1", a.FencingToken, time.Second); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	clk.Advance(time.Second)
	wantHolder(t, s.Leases, tenant, device, "", 0)
}

func testTokenFloor(t *testing.T, s affinity.Store, clk *Clock) {
	a := acquire(t, s.Leases, tenant, device, "s1", ttl)
	if floor := uint64(clk.Now().UnixMicro()); a.FencingToken < floor {
		t.Fatalf("token %d below the clock's microseconds %d: a store that lost its counter would reissue old tokens", a.FencingToken, floor)
	}
	clk.Advance(time.Hour)
	b := acquire(t, s.Leases, tenant, device, "s2", ttl)
	if floor := uint64(clk.Now().UnixMicro()); b.FencingToken < floor {
		t.Fatalf("token %d below the clock's microseconds %d", b.FencingToken, floor)
	}
	// Many acquires within one microsecond still get distinct tokens.
	prev := b.FencingToken
	for i := range 5 {
		c := acquire(t, s.Leases, tenant, device, fmt.Sprintf("x%d", i), ttl)
		if c.FencingToken <= prev {
			t.Fatalf("token %d not above %d with the clock stopped", c.FencingToken, prev)
		}
		prev = c.FencingToken
	}
}

func testDevicesIndependent(t *testing.T, s affinity.Store, _ *Clock) {
	// Pairs whose naive "tenant:device" joins would collide.
	keys := [][2]string{{"a:b", "c"}, {"a", "b:c"}, {"t2", device}, {tenant, device}, {tenant, device + "}x"}, {tenant, "{" + device}}
	leases := make([]affinity.Lease, len(keys))
	for i, k := range keys {
		leases[i] = acquire(t, s.Leases, k[0], k[1], fmt.Sprintf("s%d", i), ttl)
		if leases[i].Superseded != "" {
			t.Fatalf("Acquire(%q, %q) superseded %q: devices share a lease", k[0], k[1], leases[i].Superseded)
		}
	}
	for i, k := range keys {
		wantHolder(t, s.Leases, k[0], k[1], fmt.Sprintf("s%d", i), leases[i].FencingToken)
	}
	if err := s.Leases.Release(ctx(t), "a", "b:c", "s1"); err != nil {
		t.Fatal(err)
	}
	wantHolder(t, s.Leases, "a:b", "c", "s0", leases[0].FencingToken)
}

func testConcurrentAcquire(t *testing.T, s affinity.Store, _ *Clock) {
	const goroutines, each = 16, 25
	type result struct {
		sid   string
		lease affinity.Lease
	}
	results := make([][]result, goroutines)
	errs := make(chan error, goroutines)
	c := ctx(t)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				sid := fmt.Sprintf("g%d-%d", g, i)
				l, err := s.Leases.Acquire(c, tenant, device, sid, ttl)
				if err != nil {
					errs <- err
					return
				}
				results[g] = append(results[g], result{sid, l})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent Acquire: %v", err)
	}
	var all []result
	for g := range results {
		for i := 1; i < len(results[g]); i++ {
			if results[g][i].lease.FencingToken <= results[g][i-1].lease.FencingToken {
				t.Fatalf("goroutine %d: token %d after %d", g, results[g][i].lease.FencingToken, results[g][i-1].lease.FencingToken)
			}
		}
		all = append(all, results[g]...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].lease.FencingToken < all[j].lease.FencingToken })
	// Unique tokens, and the takeovers form one chain: each lease superseded
	// exactly the session of the token before it (the leases are
	// linearizable).
	for i := range all {
		want := ""
		if i > 0 {
			want = all[i-1].sid
			if all[i].lease.FencingToken == all[i-1].lease.FencingToken {
				t.Fatalf("token %d issued twice", all[i].lease.FencingToken)
			}
		}
		if all[i].lease.Superseded != want {
			t.Fatalf("lease with token %d superseded %q, want %q", all[i].lease.FencingToken, all[i].lease.Superseded, want)
		}
	}
	last := all[len(all)-1]
	wantHolder(t, s.Leases, tenant, device, last.sid, last.lease.FencingToken)
}

func testLeaseInvalid(t *testing.T, s affinity.Store, _ *Clock) {
	for _, c := range []struct {
		name string
		err  error
	}{
		{"zero ttl", func() error { _, err := s.Leases.Acquire(ctx(t), tenant, device, "s1", 0); return err }()},
		{"empty session", func() error { _, err := s.Leases.Acquire(ctx(t), tenant, device, "", ttl); return err }()},
		{"empty device", func() error { _, err := s.Leases.Acquire(ctx(t), tenant, "", "s1", ttl); return err }()},
		{"renew zero ttl", s.Leases.Renew(ctx(t), tenant, device, "s1", 1, 0)},
	} {
		if c.err == nil || errors.Is(c.err, affinity.ErrLeaseLost) {
			t.Errorf("%s: err = %v, want an argument error", c.name, c.err)
		}
	}
	wantHolder(t, s.Leases, tenant, device, "", 0)
}

var sampleRecord = affinity.SessionRecord{
	SessionID: "c2Vzc2lvbi0x",
	Worker:    "worker-7",
	ClientIP:  "192.0.2.10",
	Tenant:    tenant,
	DeviceKey: device,
	Auth:      affinity.Auth{Method: affinity.AuthDigest, Principal: "cpe-user", Scope: affinity.ScopeDevice},
}

func put(t *testing.T, a affinity.Affinity, rec affinity.SessionRecord, d time.Duration) {
	t.Helper()
	if err := a.Put(ctx(t), rec, d); err != nil {
		t.Fatalf("Put(%s): %v", rec.SessionID, err)
	}
}

func wantLookup(t *testing.T, a affinity.Affinity, sid string, want *affinity.SessionRecord) {
	t.Helper()
	got, err := a.Lookup(ctx(t), sid)
	if want == nil {
		if !errors.Is(err, affinity.ErrNoRecord) {
			t.Fatalf("Lookup(%s) = %+v, %v; want ErrNoRecord", sid, got, err)
		}
		return
	}
	if err != nil || got != *want {
		t.Fatalf("Lookup(%s) = %+v, %v; want %+v", sid, got, err, *want)
	}
}

func wantOpenAt(t *testing.T, a affinity.Affinity, ip string, want *affinity.SessionRecord, wantErr error) {
	t.Helper()
	got, err := a.OpenSessionAt(ctx(t), ip)
	if wantErr != nil {
		if !errors.Is(err, wantErr) {
			t.Fatalf("OpenSessionAt(%s) = %+v, %v; want %v", ip, got, err, wantErr)
		}
		return
	}
	if err != nil || got != *want {
		t.Fatalf("OpenSessionAt(%s) = %+v, %v; want %+v", ip, got, err, *want)
	}
}

func testPutLookup(t *testing.T, s affinity.Store, _ *Clock) {
	wantLookup(t, s.Affinity, sampleRecord.SessionID, nil)
	put(t, s.Affinity, sampleRecord, ttl)
	wantLookup(t, s.Affinity, sampleRecord.SessionID, &sampleRecord)
	// Put replaces the record (the worker changed after a resume).
	moved := sampleRecord
	moved.Worker = "worker-9"
	put(t, s.Affinity, moved, ttl)
	wantLookup(t, s.Affinity, sampleRecord.SessionID, &moved)
	wantOpenAt(t, s.Affinity, sampleRecord.ClientIP, &moved, nil)
	// A record without an address is found by id only.
	bare := affinity.SessionRecord{SessionID: "bare"}
	put(t, s.Affinity, bare, ttl)
	wantLookup(t, s.Affinity, "bare", &bare)
	wantOpenAt(t, s.Affinity, "", nil, affinity.ErrNoRecord)
}

func testOpenSessionAt(t *testing.T, s affinity.Store, _ *Clock) {
	const ip = "198.51.100.7"
	wantOpenAt(t, s.Affinity, ip, nil, affinity.ErrNoRecord)
	r1 := affinity.SessionRecord{SessionID: "s1", Worker: "w1", ClientIP: ip, Tenant: tenant, DeviceKey: "d1"}
	r2 := affinity.SessionRecord{SessionID: "s2", Worker: "w2", ClientIP: ip, Tenant: tenant, DeviceKey: "d2"}
	other := affinity.SessionRecord{SessionID: "s3", ClientIP: "2001:db8::1", Tenant: tenant, DeviceKey: "d3"}
	put(t, s.Affinity, r1, ttl)
	put(t, s.Affinity, other, ttl)
	wantOpenAt(t, s.Affinity, ip, &r1, nil)
	wantOpenAt(t, s.Affinity, other.ClientIP, &other, nil)
	put(t, s.Affinity, r2, ttl)
	wantOpenAt(t, s.Affinity, ip, nil, affinity.ErrAmbiguous)
	put(t, s.Affinity, r1, ttl) // a refresh does not make it less ambiguous
	wantOpenAt(t, s.Affinity, ip, nil, affinity.ErrAmbiguous)
	if err := s.Affinity.Delete(ctx(t), r1); err != nil {
		t.Fatal(err)
	}
	wantOpenAt(t, s.Affinity, ip, &r2, nil)
	wantOpenAt(t, s.Affinity, "203.0.113.1", nil, affinity.ErrNoRecord)
}

func testRecordExpiry(t *testing.T, s affinity.Store, clk *Clock) {
	const ip = "198.51.100.8"
	short := affinity.SessionRecord{SessionID: "short", ClientIP: ip, Tenant: tenant, DeviceKey: "d1"}
	long := affinity.SessionRecord{SessionID: "long", ClientIP: ip, Tenant: tenant, DeviceKey: "d2"}
	put(t, s.Affinity, short, 10*time.Second)
	put(t, s.Affinity, long, time.Minute)
	wantOpenAt(t, s.Affinity, ip, nil, affinity.ErrAmbiguous)
	clk.Advance(10*time.Second - time.Millisecond)
	wantLookup(t, s.Affinity, "short", &short)
	clk.Advance(time.Millisecond)
	wantLookup(t, s.Affinity, "short", nil)
	wantOpenAt(t, s.Affinity, ip, &long, nil)
	// Refreshing extends the record.
	clk.Advance(50 * time.Second)
	put(t, s.Affinity, long, time.Minute)
	clk.Advance(30 * time.Second) // 80 s after the first Put
	wantLookup(t, s.Affinity, "long", &long)
	clk.Advance(30 * time.Second)
	wantLookup(t, s.Affinity, "long", nil)
	wantOpenAt(t, s.Affinity, ip, nil, affinity.ErrNoRecord)
	// An expired session's id can be used again.
	put(t, s.Affinity, short, ttl)
	wantOpenAt(t, s.Affinity, ip, &short, nil)
}

func testAddressChange(t *testing.T, s affinity.Store, _ *Clock) {
	r := affinity.SessionRecord{SessionID: "s1", ClientIP: "192.0.2.1", Tenant: tenant, DeviceKey: device}
	put(t, s.Affinity, r, ttl)
	r.ClientIP = "192.0.2.2"
	put(t, s.Affinity, r, ttl)
	wantOpenAt(t, s.Affinity, "192.0.2.1", nil, affinity.ErrNoRecord)
	wantOpenAt(t, s.Affinity, "192.0.2.2", &r, nil)
	// A neighbour at the old address is now alone there.
	n := affinity.SessionRecord{SessionID: "s2", ClientIP: "192.0.2.1", Tenant: tenant, DeviceKey: "d2"}
	put(t, s.Affinity, n, ttl)
	wantOpenAt(t, s.Affinity, "192.0.2.1", &n, nil)
}

func testDeleteRecord(t *testing.T, s affinity.Store, _ *Clock) {
	if err := s.Affinity.Delete(ctx(t), affinity.SessionRecord{SessionID: "missing", ClientIP: "192.0.2.1"}); err != nil {
		t.Fatalf("Delete of a missing record: %v", err)
	}
	put(t, s.Affinity, sampleRecord, ttl)
	// Delete with only the id still drops the address index entry.
	if err := s.Affinity.Delete(ctx(t), affinity.SessionRecord{SessionID: sampleRecord.SessionID}); err != nil {
		t.Fatal(err)
	}
	wantLookup(t, s.Affinity, sampleRecord.SessionID, nil)
	wantOpenAt(t, s.Affinity, sampleRecord.ClientIP, nil, affinity.ErrNoRecord)
	put(t, s.Affinity, sampleRecord, ttl)
	if err := s.Affinity.Delete(ctx(t), sampleRecord); err != nil {
		t.Fatal(err)
	}
	wantLookup(t, s.Affinity, sampleRecord.SessionID, nil)
	wantOpenAt(t, s.Affinity, sampleRecord.ClientIP, nil, affinity.ErrNoRecord)
}

func testRecordInvalid(t *testing.T, s affinity.Store, _ *Clock) {
	if err := s.Affinity.Put(ctx(t), sampleRecord, 0); err == nil {
		t.Error("Put with a zero TTL succeeded")
	}
	if err := s.Affinity.Put(ctx(t), affinity.SessionRecord{ClientIP: "192.0.2.1"}, ttl); err == nil {
		t.Error("Put without a session id succeeded")
	}
	wantLookup(t, s.Affinity, sampleRecord.SessionID, nil)
	wantOpenAt(t, s.Affinity, "192.0.2.1", nil, affinity.ErrNoRecord)
}

func save(s affinity.Store, t *testing.T, sid string, token, seq uint64, data string) error {
	return s.Checkpoints.Save(ctx(t), affinity.Checkpoint{
		Tenant: tenant, DeviceKey: device, SessionID: sid, FencingToken: token, Seq: seq, Data: []byte(data),
	}, ttl)
}

func wantCheckpoint(t *testing.T, s affinity.Store, sid string, token, seq uint64, data string) {
	t.Helper()
	cp, err := s.Checkpoints.Load(ctx(t), tenant, device, sid)
	if err != nil {
		t.Fatalf("Load(%s): %v", sid, err)
	}
	if cp.Tenant != tenant || cp.DeviceKey != device || cp.SessionID != sid || cp.FencingToken != token || cp.Seq != seq || string(cp.Data) != data {
		t.Fatalf("Load(%s) = %+v (data %q), want token %d seq %d data %q", sid, cp, cp.Data, token, seq, data)
	}
}

func testSaveLoad(t *testing.T, s affinity.Store, clk *Clock) {
	if _, err := s.Checkpoints.Load(ctx(t), tenant, device, "s1"); !errors.Is(err, affinity.ErrNoCheckpoint) {
		t.Fatalf("Load of a missing checkpoint = %v, want ErrNoCheckpoint", err)
	}
	data := []byte("state\x00with\xffbinary")
	cp := affinity.Checkpoint{Tenant: tenant, DeviceKey: device, SessionID: "s1", FencingToken: 7, Seq: 1, Data: data}
	if err := s.Checkpoints.Save(ctx(t), cp, ttl); err != nil {
		t.Fatal(err)
	}
	data[0] = 'X' // the store kept its own copy
	got, err := s.Checkpoints.Load(ctx(t), tenant, device, "s1")
	if err != nil || string(got.Data) != "state\x00with\xffbinary" || got.FencingToken != 7 || got.Seq != 1 || !got.Expires.Equal(clk.Now().Add(ttl)) {
		t.Fatalf("Load = %+v, %v", got, err)
	}
	got.Data[0] = 'Y' // and hands out copies
	wantCheckpoint(t, s, "s1", 7, 1, "state\x00with\xffbinary")
	// Empty data is a checkpoint too.
	if err := save(s, t, "s2", 7, 0, ""); err != nil {
		t.Fatal(err)
	}
	wantCheckpoint(t, s, "s2", 7, 0, "")
	if err := s.Checkpoints.Delete(ctx(t), tenant, device, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Checkpoints.Load(ctx(t), tenant, device, "s1"); !errors.Is(err, affinity.ErrNoCheckpoint) {
		t.Fatalf("Load after Delete = %v, want ErrNoCheckpoint", err)
	}
	if err := s.Checkpoints.Delete(ctx(t), tenant, device, "s1"); err != nil {
		t.Fatalf("Delete of a missing checkpoint: %v", err)
	}
	// Checkpoints of other devices are separate.
	if _, err := s.Checkpoints.Load(ctx(t), tenant, "other", "s2"); !errors.Is(err, affinity.ErrNoCheckpoint) {
		t.Fatalf("Load under another device = %v, want ErrNoCheckpoint", err)
	}
}

func testSessionFencing(t *testing.T, s affinity.Store, _ *Clock) {
	steps := []struct {
		token, seq uint64
		ok         bool
	}{
		{10, 2, true},
		{10, 1, false}, // a paused worker's older exchange
		{10, 2, true},  // a retried save
		{10, 3, true},
		{9, 9, false}, // an older token, whatever its seq
		{11, 0, true}, // a newer token resets the seq order
		{10, 4, false},
	}
	for i, st := range steps {
		data := fmt.Sprintf("step %d", i)
		err := save(s, t, "s1", st.token, st.seq, data)
		if st.ok && err != nil {
			t.Fatalf("step %d: Save(token %d, seq %d) = %v, want success", i, st.token, st.seq, err)
		}
		if !st.ok && !errors.Is(err, affinity.ErrLeaseLost) {
			t.Fatalf("step %d: Save(token %d, seq %d) = %v, want ErrLeaseLost", i, st.token, st.seq, err)
		}
	}
	wantCheckpoint(t, s, "s1", 11, 0, "step 5")
}

func testDeviceFencing(t *testing.T, s affinity.Store, _ *Clock) {
	a := acquire(t, s.Leases, tenant, device, "old", ttl)
	if err := save(s, t, "old", a.FencingToken, 1, "old 1"); err != nil {
		t.Fatal(err)
	}
	b := acquire(t, s.Leases, tenant, device, "new", ttl)
	// Until the new session saves, the old one may still save its own.
	if err := save(s, t, "old", a.FencingToken, 2, "old 2"); err != nil {
		t.Fatalf("Save by the superseded session before the new one saved: %v", err)
	}
	if err := save(s, t, "new", b.FencingToken, 1, "new 1"); err != nil {
		t.Fatal(err)
	}
	if err := save(s, t, "old", a.FencingToken, 3, "old 3"); !errors.Is(err, affinity.ErrLeaseLost) {
		t.Fatalf("Save by the superseded session = %v, want ErrLeaseLost", err)
	}
	wantCheckpoint(t, s, "old", a.FencingToken, 2, "old 2")
	// Deleting the new checkpoint does not lift the fence.
	if err := s.Checkpoints.Delete(ctx(t), tenant, device, "new"); err != nil {
		t.Fatal(err)
	}
	if err := save(s, t, "old", a.FencingToken, 4, "old 4"); !errors.Is(err, affinity.ErrLeaseLost) {
		t.Fatalf("Save by the superseded session after the new checkpoint's delete = %v, want ErrLeaseLost", err)
	}
	// Other devices are not fenced.
	err := s.Checkpoints.Save(ctx(t), affinity.Checkpoint{Tenant: tenant, DeviceKey: "other", SessionID: "old", FencingToken: 1, Data: []byte("x")}, ttl)
	if err != nil {
		t.Fatalf("Save on another device: %v", err)
	}
}

func testLargeTokens(t *testing.T, s affinity.Store, _ *Clock) {
	// Tokens past 2^53 (beyond a double's exact integers) and of different
	// decimal lengths must still compare exactly.
	big := uint64(1) << 60
	if err := save(s, t, "s1", big+1, 0, "a"); err != nil {
		t.Fatal(err)
	}
	if err := save(s, t, "s2", big, 0, "b"); !errors.Is(err, affinity.ErrLeaseLost) {
		t.Fatalf("Save with token 2^60 after 2^60+1 = %v, want ErrLeaseLost", err)
	}
	if err := save(s, t, "s1", big+1, math.MaxUint64, "c"); err != nil {
		t.Fatal(err)
	}
	if err := save(s, t, "s1", big+1, math.MaxUint64-1, "d"); !errors.Is(err, affinity.ErrLeaseLost) {
		t.Fatalf("Save with a seq one below the stored = %v, want ErrLeaseLost", err)
	}
	if err := save(s, t, "s3", math.MaxUint64, 0, "e"); err != nil {
		t.Fatal(err)
	}
	wantCheckpoint(t, s, "s1", big+1, math.MaxUint64, "c")
	wantCheckpoint(t, s, "s3", math.MaxUint64, 0, "e")
	// 9 < 10 although "9" > "10" as strings.
	dev := affinity.Checkpoint{Tenant: tenant, DeviceKey: "d2", SessionID: "s1", FencingToken: 10}
	if err := s.Checkpoints.Save(ctx(t), dev, ttl); err != nil {
		t.Fatal(err)
	}
	dev.FencingToken, dev.SessionID = 9, "s0"
	if err := s.Checkpoints.Save(ctx(t), dev, ttl); !errors.Is(err, affinity.ErrLeaseLost) {
		t.Fatalf("Save with token 9 after 10 = %v, want ErrLeaseLost", err)
	}
}

func testCheckpointExpiry(t *testing.T, s affinity.Store, clk *Clock) {
	if err := save(s, t, "s1", 5, 1, "a"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(ttl - time.Millisecond)
	wantCheckpoint(t, s, "s1", 5, 1, "a")
	if err := save(s, t, "s0", 4, 1, "stale"); !errors.Is(err, affinity.ErrLeaseLost) {
		t.Fatalf("Save with an older token while the fence lives = %v, want ErrLeaseLost", err)
	}
	clk.Advance(time.Millisecond)
	if _, err := s.Checkpoints.Load(ctx(t), tenant, device, "s1"); !errors.Is(err, affinity.ErrNoCheckpoint) {
		t.Fatalf("Load after expiry = %v, want ErrNoCheckpoint", err)
	}
	// The fence lives as long as the longest-lived checkpoint saved under
	// it; after that a save with any token succeeds, and the session's own
	// expired checkpoint no longer orders seqs.
	if err := save(s, t, "s1", 5, 0, "b"); err != nil {
		t.Fatalf("Save after everything expired: %v", err)
	}
	wantCheckpoint(t, s, "s1", 5, 0, "b")
	// A longer-lived save keeps the fence past a shorter one's expiry.
	err := s.Checkpoints.Save(ctx(t), affinity.Checkpoint{Tenant: tenant, DeviceKey: device, SessionID: "s2", FencingToken: 6, Data: []byte("c")}, 3*ttl)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * ttl)
	if err := save(s, t, "s3", 5, 0, "d"); !errors.Is(err, affinity.ErrLeaseLost) {
		t.Fatalf("Save with an older token after a shorter checkpoint expired = %v, want ErrLeaseLost", err)
	}
}

func testCheckpointInvalid(t *testing.T, s affinity.Store, _ *Clock) {
	for name, c := range map[string]affinity.Checkpoint{
		"zero token":    {Tenant: tenant, DeviceKey: device, SessionID: "s1"},
		"empty session": {Tenant: tenant, DeviceKey: device, FencingToken: 1},
		"empty device":  {Tenant: tenant, SessionID: "s1", FencingToken: 1},
	} {
		if err := s.Checkpoints.Save(ctx(t), c, ttl); err == nil || errors.Is(err, affinity.ErrLeaseLost) {
			t.Errorf("%s: Save = %v, want an argument error", name, err)
		}
	}
	if err := save(s, t, "s1", 1, 0, "x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoints.Save(ctx(t), affinity.Checkpoint{Tenant: tenant, DeviceKey: device, SessionID: "s1", FencingToken: 1}, 0); err == nil {
		t.Error("Save with a zero TTL succeeded")
	}
}

func sessionSave(sid string, token, seq uint64, data string, rec *affinity.SessionRecord) affinity.SessionSave {
	return affinity.SessionSave{
		Checkpoint:    affinity.Checkpoint{Tenant: tenant, DeviceKey: device, SessionID: sid, FencingToken: token, Seq: seq, Data: []byte(data)},
		CheckpointTTL: ttl, Record: rec, RecordTTL: ttl,
	}
}

func wantNoCheckpoint(t *testing.T, s affinity.Store, sid string) {
	t.Helper()
	if cp, err := s.Checkpoints.Load(ctx(t), tenant, device, sid); !errors.Is(err, affinity.ErrNoCheckpoint) {
		t.Fatalf("Load(%s) = %+v, %v; want ErrNoCheckpoint", sid, cp, err)
	}
}

// testSessionsSaveEnd: a save stores the checkpoint and the record as the
// separate ports would; the end removes both and releases the lease.
func testSessionsSaveEnd(t *testing.T, s affinity.Store, clk *Clock) {
	rec := sampleRecord
	l := acquire(t, s.Leases, tenant, device, rec.SessionID, ttl)
	if err := s.Sessions.Save(ctx(t), sessionSave(rec.SessionID, l.FencingToken, 1, "one", &rec)); err != nil {
		t.Fatalf("Save: %v", err)
	}
	wantCheckpoint(t, s, rec.SessionID, l.FencingToken, 1, "one")
	wantLookup(t, s.Affinity, rec.SessionID, &rec)
	wantOpenAt(t, s.Affinity, rec.ClientIP, &rec, nil)
	// A save without a record leaves the stored one alone.
	if err := s.Sessions.Save(ctx(t), sessionSave(rec.SessionID, l.FencingToken, 2, "two", nil)); err != nil {
		t.Fatalf("Save without a record: %v", err)
	}
	wantCheckpoint(t, s, rec.SessionID, l.FencingToken, 2, "two")
	wantLookup(t, s.Affinity, rec.SessionID, &rec)
	// The record lives for its own TTL, refreshed by each save carrying it.
	clk.Advance(ttl / 2)
	renew(t, s.Leases, rec.SessionID, l.FencingToken)
	if err := s.Sessions.Save(ctx(t), sessionSave(rec.SessionID, l.FencingToken, 3, "three", &rec)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(ttl/2 + time.Second)
	wantLookup(t, s.Affinity, rec.SessionID, &rec)
	wantHolder(t, s.Leases, tenant, device, rec.SessionID, l.FencingToken)

	end := affinity.SessionEnd{Tenant: tenant, DeviceKey: device, SessionID: rec.SessionID, Release: true, Record: &rec}
	if err := s.Sessions.End(ctx(t), end); err != nil {
		t.Fatalf("End: %v", err)
	}
	wantNoCheckpoint(t, s, rec.SessionID)
	wantLookup(t, s.Affinity, rec.SessionID, nil)
	wantOpenAt(t, s.Affinity, rec.ClientIP, nil, affinity.ErrNoRecord)
	wantHolder(t, s.Leases, tenant, device, "", 0)
	// Ending again, with nothing left, is not an error.
	if err := s.Sessions.End(ctx(t), end); err != nil {
		t.Fatalf("second End: %v", err)
	}
}

func renew(t *testing.T, l affinity.Leases, sid string, token uint64) {
	t.Helper()
	if err := l.Renew(ctx(t), tenant, device, sid, token, ttl); err != nil {
		t.Fatalf("Renew(%s): %v", sid, err)
	}
}

// testSessionsSuperseded: a superseded session's save is fenced off (its
// record is stored all the same); its end without release leaves the
// successor's lease and removes only its own record and checkpoint.
func testSessionsSuperseded(t *testing.T, s affinity.Store, _ *Clock) {
	oldRec := affinity.SessionRecord{SessionID: "old", Worker: "w1", ClientIP: "192.0.2.20", Tenant: tenant, DeviceKey: device}
	newRec := affinity.SessionRecord{SessionID: "new", Worker: "w2", ClientIP: "192.0.2.20", Tenant: tenant, DeviceKey: device}
	a := acquire(t, s.Leases, tenant, device, "old", ttl)
	if err := s.Sessions.Save(ctx(t), sessionSave("old", a.FencingToken, 1, "old 1", &oldRec)); err != nil {
		t.Fatal(err)
	}
	b := acquire(t, s.Leases, tenant, device, "new", ttl)
	if err := s.Sessions.Save(ctx(t), sessionSave("new", b.FencingToken, 1, "new 1", &newRec)); err != nil {
		t.Fatal(err)
	}
	err := s.Sessions.Save(ctx(t), sessionSave("old", a.FencingToken, 2, "old 2", &oldRec))
	if !errors.Is(err, affinity.ErrLeaseLost) {
		t.Fatalf("Save by the superseded session = %v, want ErrLeaseLost", err)
	}
	wantCheckpoint(t, s, "old", a.FencingToken, 1, "old 1")
	// A release by the old session must not free the new one's lease.
	end := affinity.SessionEnd{Tenant: tenant, DeviceKey: device, SessionID: "old", Release: true, Record: &oldRec}
	if err := s.Sessions.End(ctx(t), end); err != nil {
		t.Fatal(err)
	}
	wantNoCheckpoint(t, s, "old")
	wantLookup(t, s.Affinity, "old", nil)
	wantHolder(t, s.Leases, tenant, device, "new", b.FencingToken)
	wantOpenAt(t, s.Affinity, newRec.ClientIP, &newRec, nil)
	wantCheckpoint(t, s, "new", b.FencingToken, 1, "new 1")
	// An end without release keeps the lease even for its holder.
	end = affinity.SessionEnd{Tenant: tenant, DeviceKey: device, SessionID: "new", Record: &newRec}
	if err := s.Sessions.End(ctx(t), end); err != nil {
		t.Fatal(err)
	}
	wantNoCheckpoint(t, s, "new")
	wantHolder(t, s.Leases, tenant, device, "new", b.FencingToken)
	wantOpenAt(t, s.Affinity, newRec.ClientIP, nil, affinity.ErrNoRecord)
}

// testSessionsAddressChange: a record saved from a new address leaves the
// old address's index; an end with only the session id cleans both.
func testSessionsAddressChange(t *testing.T, s affinity.Store, _ *Clock) {
	rec := affinity.SessionRecord{SessionID: "s1", ClientIP: "192.0.2.1", Tenant: tenant, DeviceKey: device}
	l := acquire(t, s.Leases, tenant, device, "s1", ttl)
	if err := s.Sessions.Save(ctx(t), sessionSave("s1", l.FencingToken, 1, "x", &rec)); err != nil {
		t.Fatal(err)
	}
	rec.ClientIP = "192.0.2.2"
	if err := s.Sessions.Save(ctx(t), sessionSave("s1", l.FencingToken, 2, "y", &rec)); err != nil {
		t.Fatal(err)
	}
	wantOpenAt(t, s.Affinity, "192.0.2.1", nil, affinity.ErrNoRecord)
	wantOpenAt(t, s.Affinity, "192.0.2.2", &rec, nil)
	end := affinity.SessionEnd{Tenant: tenant, DeviceKey: device, SessionID: "s1", Release: true, Record: &affinity.SessionRecord{SessionID: "s1", ClientIP: "192.0.2.1"}}
	if err := s.Sessions.End(ctx(t), end); err != nil {
		t.Fatal(err)
	}
	wantLookup(t, s.Affinity, "s1", nil)
	wantOpenAt(t, s.Affinity, "192.0.2.2", nil, affinity.ErrNoRecord)
}

func testSessionsInvalid(t *testing.T, s affinity.Store, _ *Clock) {
	rec := sampleRecord
	bad := map[string]affinity.SessionSave{}
	ss := sessionSave(rec.SessionID, 5, 1, "x", &rec)
	ss.CheckpointTTL = 0
	bad["zero checkpoint TTL"] = ss
	ss = sessionSave(rec.SessionID, 5, 1, "x", &rec)
	ss.RecordTTL = 0
	bad["zero record TTL"] = ss
	ss = sessionSave(rec.SessionID, 0, 1, "x", &rec)
	bad["zero token"] = ss
	other := rec
	other.SessionID = "another"
	bad["record of another session"] = sessionSave(rec.SessionID, 5, 1, "x", &other)
	for name, ss := range bad {
		if err := s.Sessions.Save(ctx(t), ss); err == nil {
			t.Errorf("Save with %s succeeded", name)
		}
	}
	wantNoCheckpoint(t, s, rec.SessionID)
	wantLookup(t, s.Affinity, rec.SessionID, nil)
	ends := map[string]affinity.SessionEnd{
		"no device":                 {Tenant: tenant, SessionID: "s"},
		"no session":                {Tenant: tenant, DeviceKey: device},
		"record of another session": {Tenant: tenant, DeviceKey: device, SessionID: "s", Record: &other},
	}
	for name, e := range ends {
		if err := s.Sessions.End(ctx(t), e); err == nil {
			t.Errorf("End with %s succeeded", name)
		}
	}
}

func live(t *testing.T, r affinity.Registry) []affinity.Worker {
	t.Helper()
	ws, err := r.Live(ctx(t))
	if err != nil {
		t.Fatalf("Live: %v", err)
	}
	return ws
}

func ids(ws []affinity.Worker) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.ID
	}
	return out
}

func register(t *testing.T, r affinity.Registry, w affinity.Worker, d time.Duration) {
	t.Helper()
	if err := r.Register(ctx(t), w, d); err != nil {
		t.Fatalf("Register(%s): %v", w.ID, err)
	}
}

func testRegistryLiveness(t *testing.T, s affinity.Store, clk *Clock) {
	if ws := live(t, s.Registry); len(ws) != 0 {
		t.Fatalf("Live on an empty registry = %v", ws)
	}
	const hb = 15 * time.Second
	register(t, s.Registry, affinity.Worker{ID: "w2", Addr: "10.0.0.2:9090", Capacity: 500}, hb)
	register(t, s.Registry, affinity.Worker{ID: "w1", Addr: "10.0.0.1:9090", Capacity: 1000}, hb)
	clk.Advance(5 * time.Second)
	register(t, s.Registry, affinity.Worker{ID: "w3", Addr: "10.0.0.3:9090"}, hb)
	ws := live(t, s.Registry)
	want := []affinity.Worker{
		{ID: "w1", Addr: "10.0.0.1:9090", Capacity: 1000, Expires: Start.Add(hb)},
		{ID: "w2", Addr: "10.0.0.2:9090", Capacity: 500, Expires: Start.Add(hb)},
		{ID: "w3", Addr: "10.0.0.3:9090", Expires: Start.Add(5*time.Second + hb)},
	}
	if len(ws) != len(want) {
		t.Fatalf("Live = %+v, want %+v", ws, want)
	}
	for i := range want {
		if ws[i].ID != want[i].ID || ws[i].Addr != want[i].Addr || ws[i].Capacity != want[i].Capacity || !ws[i].Expires.Equal(want[i].Expires) {
			t.Fatalf("Live[%d] = %+v, want %+v", i, ws[i], want[i])
		}
	}
	// w1 heartbeats (with a new address); w2 does not and lapses.
	clk.Advance(5 * time.Second)
	register(t, s.Registry, affinity.Worker{ID: "w1", Addr: "10.0.0.11:9090", Capacity: 1000}, hb)
	clk.Advance(5 * time.Second) // w2's registration ends now
	ws = live(t, s.Registry)
	if got := fmt.Sprint(ids(ws)); got != "[w1 w3]" || ws[0].Addr != "10.0.0.11:9090" {
		t.Fatalf("Live after w2 lapsed = %+v, want w1 (new address) and w3", ws)
	}
	clk.Advance(5 * time.Second)
	if got := fmt.Sprint(ids(live(t, s.Registry))); got != "[w1]" {
		t.Fatalf("Live = %s, want [w1]", got)
	}
	// A lapsed worker that heartbeats again is back.
	register(t, s.Registry, affinity.Worker{ID: "w2", Addr: "10.0.0.2:9090"}, hb)
	if got := fmt.Sprint(ids(live(t, s.Registry))); got != "[w1 w2]" {
		t.Fatalf("Live = %s, want [w1 w2]", got)
	}
	if err := s.Registry.Register(ctx(t), affinity.Worker{Addr: "x"}, hb); err == nil {
		t.Error("Register without an id succeeded")
	}
	if err := s.Registry.Register(ctx(t), affinity.Worker{ID: "w9"}, 0); err == nil {
		t.Error("Register with a zero TTL succeeded")
	}
}

func testDeregister(t *testing.T, s affinity.Store, _ *Clock) {
	for _, id := range []string{"a", "b", "c"} {
		register(t, s.Registry, affinity.Worker{ID: id, Addr: id + ":1"}, time.Minute)
	}
	if err := s.Registry.Deregister(ctx(t), "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Registry.Deregister(ctx(t), "missing"); err != nil {
		t.Fatalf("Deregister of a missing worker: %v", err)
	}
	if got := fmt.Sprint(ids(live(t, s.Registry))); got != "[a c]" {
		t.Fatalf("Live after Deregister(b) = %s, want [a c]", got)
	}
}

// testRegistryRendezvous routes keys over the registry's live workers, as a
// gateway does: even spread, and only a departed worker's keys move.
func testRegistryRendezvous(t *testing.T, s affinity.Store, clk *Clock) {
	for i := range 5 {
		register(t, s.Registry, affinity.Worker{ID: fmt.Sprintf("sessions-%d", i), Addr: fmt.Sprintf("10.1.0.%d:9090", i)}, time.Minute)
	}
	// Kept alive by heartbeats, except sessions-3, which dies.
	clk.Advance(50 * time.Second)
	for i := range 5 {
		if i != 3 {
			register(t, s.Registry, affinity.Worker{ID: fmt.Sprintf("sessions-%d", i), Addr: fmt.Sprintf("10.1.0.%d:9090", i)}, time.Minute)
		}
	}
	before := live(t, s.Registry)
	if len(before) != 5 {
		t.Fatalf("Live = %v, want 5 workers", ids(before))
	}
	const keys = 10000
	owner := make([]string, keys)
	count := map[string]int{}
	for k := range keys {
		owner[k] = affinity.Rendezvous(fmt.Sprintf("default/DEV-%06d", k), before).ID
		count[owner[k]]++
	}
	for id, n := range count {
		if even := keys / 5; n < even*85/100 || n > even*115/100 {
			t.Errorf("worker %s owns %d of %d keys, want %d ± 15%%", id, n, keys, even)
		}
	}
	clk.Advance(10 * time.Second) // sessions-3's registration lapses
	after := live(t, s.Registry)
	if len(after) != 4 {
		t.Fatalf("Live = %v, want 4 workers", ids(after))
	}
	moved := 0
	for k := range keys {
		now := affinity.Rendezvous(fmt.Sprintf("default/DEV-%06d", k), after).ID
		if owner[k] == "sessions-3" {
			moved++
			if now == "sessions-3" {
				t.Fatalf("key %d still routed to the dead worker", k)
			}
		} else if now != owner[k] {
			t.Fatalf("key %d moved from %s to %s though its worker is alive", k, owner[k], now)
		}
	}
	if moved != count["sessions-3"] {
		t.Fatalf("%d keys moved, want the dead worker's %d", moved, count["sessions-3"])
	}
}

// The journal grows by appends at the offset the saver names; a retried
// save writes the same bytes again; an offset past the journal's end is a
// gap; a fenced save leaves it alone; Delete and expiry take it away.
func testCheckpointJournal(t *testing.T, s affinity.Store, clk *Clock) {
	saveJ := func(sid string, token, seq uint64, data, journal string, at int) error {
		return s.Checkpoints.Save(ctx(t), affinity.Checkpoint{
			Tenant: tenant, DeviceKey: device, SessionID: sid, FencingToken: token, Seq: seq,
			Data: []byte(data), Journal: []byte(journal), JournalAt: at,
		}, ttl)
	}
	wantJ := func(sid, data, journal string) {
		t.Helper()
		cp, err := s.Checkpoints.Load(ctx(t), tenant, device, sid)
		if err != nil || string(cp.Data) != data || string(cp.Journal) != journal {
			t.Fatalf("Load(%s) = data %q journal %q, %v; want %q, %q", sid, cp.Data, cp.Journal, err, data, journal)
		}
	}
	if err := saveJ("j1", 5, 1, "h1", "abc\n", 3); !errors.Is(err, affinity.ErrJournalGap) {
		t.Fatalf("append to no checkpoint = %v, want ErrJournalGap", err)
	}
	steps := []struct {
		seq     uint64
		journal string
		at      int
		want    string
	}{
		{1, "abc\n", 0, "abc\n"},
		{2, "", 4, "abc\n"},                         // nothing new
		{3, "de\x00\xff\n", 4, "abc\nde\x00\xff\n"}, // binary
		{3, "de\x00\xff\n", 4, "abc\nde\x00\xff\n"}, // a retried save
		{4, "XY", 2, "abXY"},                        // rewritten from byte 2 on
		{5, "new", 0, "new"},                        // replaced
		{6, "", 0, ""},                              // emptied
	}
	for i, st := range steps {
		data := fmt.Sprintf("head %d", i)
		if err := saveJ("j1", 5, st.seq, data, st.journal, st.at); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		wantJ("j1", data, st.want)
	}
	if err := saveJ("j1", 5, 7, "h", "abc", 0); err != nil {
		t.Fatal(err)
	}
	if err := saveJ("j1", 5, 8, "gap", "x", 4); !errors.Is(err, affinity.ErrJournalGap) {
		t.Fatalf("append past the end = %v, want ErrJournalGap", err)
	}
	if err := saveJ("j1", 5, 6, "stale", "zzz", 0); !errors.Is(err, affinity.ErrLeaseLost) {
		t.Fatalf("stale save = %v, want ErrLeaseLost", err)
	}
	wantJ("j1", "h", "abc")
	if err := s.Checkpoints.Delete(ctx(t), tenant, device, "j1"); err != nil {
		t.Fatal(err)
	}
	if err := saveJ("j1", 5, 9, "after", "", 0); err != nil {
		t.Fatal(err)
	}
	wantJ("j1", "after", "")
	// Ending the session takes the journal with the checkpoint.
	if err := saveJ("j2", 5, 1, "h", "journal", 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Sessions.End(ctx(t), affinity.SessionEnd{Tenant: tenant, DeviceKey: device, SessionID: "j2"}); err != nil {
		t.Fatal(err)
	}
	if err := saveJ("j2", 5, 2, "h", "", 0); err != nil {
		t.Fatal(err)
	}
	wantJ("j2", "h", "")
	// An expired checkpoint has no journal to append to.
	if err := saveJ("j3", 5, 1, "h", "abc", 0); err != nil {
		t.Fatal(err)
	}
	clk.Advance(ttl)
	if err := saveJ("j3", 5, 2, "h", "d", 3); !errors.Is(err, affinity.ErrJournalGap) {
		t.Fatalf("append to an expired checkpoint = %v, want ErrJournalGap", err)
	}
}
