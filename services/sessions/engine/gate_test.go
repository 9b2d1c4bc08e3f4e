package engine

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestGate(t *testing.T) {
	g := newGate(100, 1)
	leave, err := g.enter(t.Context(), 100)
	if err != nil || leave == nil {
		t.Fatal(err)
	}
	// The one slot is taken: a large message waits until its context
	// ends, a small one goes through.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := g.enter(ctx, 5000); err == nil {
		t.Fatal("a large exchange entered a full gate")
	}
	small, err := g.enter(ctx, 99)
	if err != nil {
		t.Fatalf("a small exchange waited: %v", err)
	}
	if small != nil {
		t.Fatal("a small exchange took a slot")
	}
	leave()
	again, err := g.enter(ctx, 5000)
	if err != nil {
		// ctx is done: entering may pick either ready case, so retry
		// with a live context to check the slot is free.
		again, err = g.enter(t.Context(), 5000)
	}
	if err != nil {
		t.Fatalf("the slot was not given back: %v", err)
	}
	again()
	if newGate(0, 4) != nil {
		t.Error("0 bytes did not turn the gate off")
	}
	if g := newGate(1, 0); cap(g.slots) < 1 {
		t.Errorf("default slots %d", cap(g.slots))
	}
	var off *gate
	if l, err := off.enter(ctx, 1<<20); err != nil || l != nil {
		t.Errorf("an off gate refused or took a slot: %v", err)
	}
}

// TestLargeExchangeWaitsForGate: while the worker's large-exchange slots
// are taken, an Inform over the size waits and ends with its deadline
// (DeadlineExceeded, the gateway's 503), leaving no session behind, and
// is served once a slot is free.
func TestLargeExchangeWaitsForGate(t *testing.T) {
	v := newEnv(t)
	e := v.engine("w1", nil, func(c *Config) { c.LargeExchangeBytes, c.LargeExchangeSlots = 100, 1 })
	d := v.device("SN-G1")
	leave, err := e.large.enter(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	req := d.open("sess-g1", "2 PERIODIC")
	if len(req.Body) < 100 {
		t.Fatalf("Inform of %d bytes is not large", len(req.Body))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := e.Exchange(ctx, req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Inform with the gate full: %v, want DeadlineExceeded", err)
	}
	if n := e.Sessions(); n != 0 {
		t.Fatalf("a refused Inform left %d sessions", n)
	}
	leave()
	if got := methodOf(t, exchange(t, e, req)); got != "InformResponse" {
		t.Fatalf("Inform after the gate opened: %s", got)
	}
}

type countingInventory struct {
	Inventory
	calls int
}

func (c *countingInventory) RecordSession(context.Context, *Diff) error { c.calls++; return nil }

// TestLargeRecordTakesASlot: a RecordSession of a whole tree waits for a
// slot, unless its session's exchange holds one; a small one never waits.
func TestLargeRecordTakesASlot(t *testing.T) {
	inner := &countingInventory{}
	e := &Engine{inv: inner, large: newGate(100, 1)}
	s := &session{}
	large := &Diff{Parameters: make([]Parameter, largeDiffParameters)}
	small := &Diff{Parameters: make([]Parameter, 3)}

	leave, err := e.large.enter(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(t.Context())
	cancel()
	if err := e.record(done, s, large); err == nil {
		t.Fatal("a large record went through a full gate")
	}
	if err := e.record(done, s, small); err != nil {
		t.Fatalf("a small record waited: %v", err)
	}
	s.leaveLarge = func() {}
	if err := e.record(done, s, large); err != nil {
		t.Fatalf("the record of an exchange holding the slot waited: %v", err)
	}
	s.leaveLarge = nil
	leave()
	if err := e.record(t.Context(), s, large); err != nil {
		t.Fatal(err)
	}
	if inner.calls != 3 {
		t.Errorf("%d records reached the inventory, want 3", inner.calls)
	}
}
