package sessions

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestGate(t *testing.T) {
	g := newGate(100, 1)
	leave, err := g.enter(t.Context(), 100)
	if err != nil {
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
	small()
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
	if l, err := off.enter(ctx, 1<<20); err != nil {
		t.Errorf("an off gate refused: %v", err)
	} else {
		l()
	}
}

// TestLargeExchangeWaitsForGate: while the worker's large-exchange slots
// are taken, an Inform over the size waits and ends with its deadline
// (DeadlineExceeded, the gateway's 503), and is served once a slot is
// free.
func TestLargeExchangeWaitsForGate(t *testing.T) {
	h := newRedisHarness(t)
	c := newCPE(t, "SN-G1", tree300())
	h.inv.seed(testTenant, c.key, "Device.", t0.Add(-time.Hour))
	w := h.worker("w1", func(cfg *Config) { cfg.LargeExchangeBytes, cfg.LargeExchangeSlots = 100, 1 })

	leave, err := w.large.enter(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	req := h.open(c, "sess-g1", "2 PERIODIC")
	if len(req.Body) < 100 {
		t.Fatalf("Inform of %d bytes is not large", len(req.Body))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := w.client.Exchange(ctx, req); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Inform with the gate full: %v, want DeadlineExceeded", err)
	}
	leave()
	if resp := exchange(t, w.client, req); method(t, resp) != "InformResponse" {
		t.Fatalf("Inform after the gate opened: %+v", resp)
	}
}

type countingInventory struct {
	Inventory
	calls int
}

func (c *countingInventory) RecordSession(context.Context, *Diff) error { c.calls++; return nil }

// TestLargeRecordTakesASlot: a RecordSession of a whole tree waits for a
// slot, unless its exchange holds one; a small one never waits.
func TestLargeRecordTakesASlot(t *testing.T) {
	g := newGate(100, 1)
	inner := &countingInventory{}
	gi := gatedInventory{Inventory: inner, g: g}
	large := &Diff{Parameters: make([]Parameter, largeDiffParameters)}
	small := &Diff{Parameters: make([]Parameter, 3)}

	leave, err := g.enter(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(t.Context())
	cancel()
	if err := gi.RecordSession(done, large); err == nil {
		t.Fatal("a large record went through a full gate")
	}
	if err := gi.RecordSession(done, small); err != nil {
		t.Fatalf("a small record waited: %v", err)
	}
	holding := context.WithValue(done, holdingKey{}, true)
	if err := gi.RecordSession(holding, large); err != nil {
		t.Fatalf("the record of an exchange holding the slot waited: %v", err)
	}
	leave()
	if err := gi.RecordSession(t.Context(), large); err != nil {
		t.Fatal(err)
	}
	if inner.calls != 3 {
		t.Errorf("%d records reached the inventory, want 3", inner.calls)
	}
}
