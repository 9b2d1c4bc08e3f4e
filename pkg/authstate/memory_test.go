package authstate_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/authstate"
	"github.com/fleetacs/fleetacs/pkg/authstate/authstatetest"
)

func TestMemoryConformance(t *testing.T) {
	authstatetest.Run(t, func(_ *testing.T, now func() time.Time) authstate.Store {
		return authstate.NewMemory(now, 0)
	})
}

// TestMemoryNonceCap: a full nonce table evicts the oldest count, and then
// refuses every nonce as old as the evicted one that it has no count for:
// eviction must never make a replay possible.
func TestMemoryNonceCap(t *testing.T) {
	clk := authstatetest.NewClock(authstatetest.Start)
	m := authstate.NewMemory(clk.Now, 4)
	ctx := t.Context()
	life := 5 * time.Minute
	exp := func(i int) time.Time { return authstatetest.Start.Add(time.Duration(i)*time.Second + life) }
	for i := range 6 {
		if ok, err := m.Advance(ctx, fmt.Sprint("n", i), 1, exp(i)); err != nil || !ok {
			t.Fatalf("nonce %d: %v %v", i, ok, err)
		}
	}
	if n, _, _ := m.Sizes(); n != 4 {
		t.Fatalf("%d nonce counts held, want the cap of 4", n)
	}
	// n0 and n1 were evicted: a replay of their headers is refused...
	for i := range 2 {
		if ok, _ := m.Advance(ctx, fmt.Sprint("n", i), 1, exp(i)); ok {
			t.Fatalf("replay of evicted nonce %d accepted", i)
		}
	}
	// ...as is a never-used nonce issued before them (its CPE gets a
	// fresh one), while the held ones and newer ones work as usual.
	if ok, _ := m.Advance(ctx, "older", 1, exp(0).Add(-time.Second)); ok {
		t.Fatal("unknown nonce older than an evicted one accepted")
	}
	if ok, _ := m.Advance(ctx, "n5", 1, exp(5)); ok {
		t.Fatal("replay of a held nonce accepted")
	}
	if ok, _ := m.Advance(ctx, "n5", 2, exp(5)); !ok {
		t.Fatal("next count of a held nonce refused")
	}
	if ok, _ := m.Advance(ctx, "new", 1, exp(9)); !ok {
		t.Fatal("new nonce refused")
	}
	// Expired counts make room before anything live is evicted.
	clk.Advance(life + 10*time.Second)
	for i := range 4 {
		if ok, _ := m.Advance(ctx, fmt.Sprint("later", i), 1, clk.Now().Add(life+time.Duration(i))); !ok {
			t.Fatalf("nonce %d after expiry refused", i)
		}
	}
}

// TestMemoryGuardCap: the failure and known-source tables stay within
// their cap however many addresses fail.
func TestMemoryGuardCap(t *testing.T) {
	clk := authstatetest.NewClock(authstatetest.Start)
	m := authstate.NewMemory(clk.Now, 8)
	p := authstate.Policy{
		Pair:     authstate.Limit{Free: 1, Base: time.Second, Max: time.Minute},
		Source:   authstate.Limit{Free: 10, Base: time.Second, Max: time.Minute},
		User:     authstate.Limit{Free: 10, Base: time.Second, Max: time.Minute},
		Forget:   time.Hour,
		KnownFor: time.Hour,
	}
	for i := range 100 {
		a := authstate.Attempt{Source: fmt.Sprint("192.0.2.", i), User: "u"}
		if _, err := m.Fail(t.Context(), p, a); err != nil {
			t.Fatal(err)
		}
		if err := m.Succeed(t.Context(), p, a); err != nil {
			t.Fatal(err)
		}
	}
	if _, c, k := m.Sizes(); c > 8 || k > 8 {
		t.Fatalf("tables hold %d counters and %d known sources, cap 8", c, k)
	}
}
