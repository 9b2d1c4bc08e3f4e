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
	if err != nil {
		t.Fatal(err)
	}
	// The one slot is taken: a large message waits until its context
	// ends, a small one goes through.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := g.enter(ctx, 5000); err == nil {
		t.Fatal("a large message entered a full gate")
	}
	small, err := g.enter(ctx, 99)
	if err != nil {
		t.Fatalf("a small message waited: %v", err)
	}
	small()
	leave()
	again, err := g.enter(t.Context(), 5000)
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

// TestLargeMessageWaitsForGate: while the gate's slots are taken, an
// Inform over the size waits and ends with its deadline (the gRPC edge
// answers DeadlineExceeded, the gateway 503), and is served once a slot is
// free; the slot is free again once the exchange is answered.
func TestLargeMessageWaitsForGate(t *testing.T) {
	v := newEnv(t)
	e := v.engine("w1", nil, func(c *Config) { c.LargeExchangeBytes, c.LargeExchangeSlots = 100, 1 })
	d := v.device("G1")

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
		t.Fatalf("Inform with the gate full: %v, want the deadline", err)
	}
	leave()
	if r := exchange(t, e, req); r.Status != 200 {
		t.Fatalf("Inform after the gate opened: %+v", r)
	}
	if n := len(e.large.slots); n != 0 {
		t.Fatalf("%d slots still taken after the exchange", n)
	}
}
