package engine

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
//
// Recording a first contact is the other large piece of a storm's work:
// its diff carries the whole discovered tree, which the inventory client
// converts, copies and plans (hundreds of microseconds) in the session's
// goroutine, on an exchange whose own message is small (the final empty
// POST). So a RecordSession of at least largeDiffParameters parameters
// takes a slot too, unless its session holds one already (session.leaveLarge).
//
// A slot holds CPU work, not waits on other servers: an exchange gives its
// slot back before it saves its checkpoint (with Redis, a round trip that
// made a storm a third slower while it held the slot). A large diff's
// RecordSession keeps its slot: the conversion and planning of the tree
// are most of its cost when the inventory runs in the process.
//
// A slot is only ever taken by a goroutine that holds its session's lock,
// and a slot holder waits for no other lock: so the two cannot wait on
// each other. (Taking the slot before the session's lock let an exchange
// hold a slot while waiting for its session, whose holder waited for a
// slot to record: two requests on one cookie stalled every large
// exchange of the worker until their deadlines.)

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
// returns the function that gives the slot back (nil when none was
// taken), or ctx's error when ctx ends first.
func (g *gate) enter(ctx context.Context, size int) (leave func(), err error) {
	if g == nil || size < g.minBytes {
		return nil, nil
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

// releaseLarge gives back the slot s's exchange holds, if any. The
// caller holds s.mu.
func (e *Engine) releaseLarge(s *session) {
	if s.leaveLarge != nil {
		s.leaveLarge()
		s.leaveLarge = nil
	}
}

// record runs the RecordSession of s's diff d, in a slot when d is large
// and s holds none. The caller holds s.mu.
func (e *Engine) record(ctx context.Context, s *session, d *Diff) error {
	if e.large != nil && s.leaveLarge == nil && len(d.Parameters) >= largeDiffParameters {
		leave, err := e.large.take(ctx)
		if err != nil {
			return err
		}
		defer leave()
	}
	return e.inv.RecordSession(ctx, d)
}
