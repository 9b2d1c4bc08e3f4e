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

// Recording a first contact is the other large piece of a storm's work:
// its diff carries the whole discovered tree, which the inventory client
// converts, copies and plans (hundreds of microseconds) in the session's
// goroutine, on an exchange whose own message is small (the final empty
// POST). So a RecordSession of at least largeDiffParameters parameters
// takes a slot too, unless its exchange holds one already.

// largeDiffParameters is the size from which a RecordSession is large.
const largeDiffParameters = 200

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
	return g.take(ctx)
}

func (g *gate) take(ctx context.Context) (leave func(), err error) {
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// holdingKey marks the context of an exchange that holds a slot.
type holdingKey struct{}

// gatedInventory takes a slot for large RecordSessions (see above).
type gatedInventory struct {
	Inventory
	g *gate
}

func (gi gatedInventory) RecordSession(ctx context.Context, d *Diff) error {
	if d == nil || len(d.Parameters) < largeDiffParameters || ctx.Value(holdingKey{}) != nil {
		return gi.Inventory.RecordSession(ctx, d)
	}
	leave, err := gi.g.take(ctx)
	if err != nil {
		return err
	}
	defer leave()
	return gi.Inventory.RecordSession(ctx, d)
}
