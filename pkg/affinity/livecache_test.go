package affinity_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/affinity/affinitytest"
)

// countingRegistry counts Live calls and can be made to fail.
type countingRegistry struct {
	affinity.Registry
	calls int
	fail  error
}

func (r *countingRegistry) Live(ctx context.Context) ([]affinity.Worker, error) {
	r.calls++
	if r.fail != nil {
		return nil, r.fail
	}
	return r.Registry.Live(ctx)
}

func TestLiveCache(t *testing.T) {
	ctx := t.Context()
	clk := affinitytest.NewClock(affinitytest.Start)
	reg := &countingRegistry{Registry: affinity.NewMemory(clk.Now).Registry()}
	if err := reg.Register(ctx, affinity.Worker{ID: "w1", Addr: "a:1"}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c := affinity.NewLiveCache(reg, time.Second, clk.Now)
	live := func() string {
		t.Helper()
		ws, err := c.Live(ctx)
		if err != nil {
			t.Fatalf("Live: %v", err)
		}
		return fmt.Sprint(len(ws))
	}
	if got := live(); got != "1" || reg.calls != 1 {
		t.Fatalf("first Live = %s workers after %d reads", got, reg.calls)
	}
	if err := reg.Register(ctx, affinity.Worker{ID: "w2", Addr: "a:2"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	clk.Advance(999 * time.Millisecond)
	if got := live(); got != "1" || reg.calls != 1 {
		t.Fatalf("Live within maxAge = %s workers after %d reads, want the cached 1 after 1", got, reg.calls)
	}
	clk.Advance(time.Millisecond)
	if got := live(); got != "2" || reg.calls != 2 {
		t.Fatalf("Live after maxAge = %s workers after %d reads, want 2 after 2", got, reg.calls)
	}
	c.Invalidate()
	live()
	if reg.calls != 3 {
		t.Fatalf("Live after Invalidate made %d reads in all, want 3", reg.calls)
	}

	// The registry fails: the last list comes back with the error, minus
	// workers whose registration lapsed meanwhile.
	reg.fail = errors.New("redis down")
	clk.Advance(9 * time.Second) // w1 lapses
	ws, err := c.Live(ctx)
	if err == nil || len(ws) != 1 || ws[0].ID != "w2" {
		t.Fatalf("Live with the registry down = %+v, %v; want [w2] and the error", ws, err)
	}
	// The caller owns the slice.
	ws[0].ID = "changed"
	if ws, _ := c.Live(ctx); ws[0].ID != "w2" {
		t.Fatalf("cached list changed through a returned slice: %+v", ws)
	}
}
