package sessions

import (
	"context"
	"runtime"
)

// Large exchanges.
//
// A boot storm's sessions carry the largest messages a worker decodes:
// GetParameterNames and GetParameterValues responses of tens of kilobytes,
// each costing a few hundred microseconds of CPU, dozens of them in flight.
// Left to the Go scheduler they share the cores evenly with the small
// exchanges of periodic sessions, which then queue behind them: a periodic
// session beside a storm took hundreds of milliseconds instead of tens.
// So the exchanges whose message is large go through a gate of a few
// slots (by default half the cores, at least one): at most that many are
// handled at once, the others wait their turn without using a core, and a
// small exchange never waits. The cost of a large exchange is roughly
// proportional to its size, so size is the measure; what waits is only
// work the storm brought.

// gate admits large exchanges, slots at a time.
type gate struct {
	minBytes int
	slots    chan struct{}
}

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
