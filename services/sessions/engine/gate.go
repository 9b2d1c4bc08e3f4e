package engine

import (
	"context"
	"runtime"
)

// Large messages.
//
// A boot storm's sessions carry the largest messages a worker decodes:
// GetParameterNames and GetParameterValues responses of tens of kilobytes,
// each costing a few hundred microseconds of CPU to decode, dozens of them
// in flight. Left to the Go scheduler they share the cores evenly with the
// small exchanges of periodic sessions, which then queue behind them: a
// periodic session beside a storm took hundreds of milliseconds instead of
// tens. So the decoding of messages of at least Config.LargeExchangeBytes
// goes through a gate of a few slots (Config.LargeExchangeSlots, by
// default half the cores, at least one): at most that many decode at once,
// the others wait their turn without using a core, and a small message
// never waits. The decoding's cost is proportional to the size, so size is
// the measure.
//
// The gate holds CPU work only: a slot is given back before the exchange
// goes on to anything that waits (the session's lock, the inventory, the
// checkpoint store). Held across those waits, as a first version did, the
// slots made a storm against Redis checkpoints a third slower.

// gate admits the decoding of large messages, slots at a time.
type gate struct {
	minBytes int
	slots    chan struct{}
}

// newGate returns the gate of cfg; nil (everything admitted) when
// LargeExchangeBytes is 0.
func newGate(minBytes, slots int) *gate {
	if minBytes <= 0 {
		return nil
	}
	if slots <= 0 {
		slots = max(1, runtime.GOMAXPROCS(0)/2)
	}
	return &gate{minBytes: minBytes, slots: make(chan struct{}, slots)}
}

// enter waits for a slot when a message of size bytes needs one. It
// returns the function that gives the slot back, or ctx's error when ctx
// ends first.
func (g *gate) enter(ctx context.Context, size int) (leave func(), err error) {
	if g == nil || size < g.minBytes {
		return func() {}, nil
	}
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
