package gateway

import (
	"container/heap"
	"context"
	"log/slog"
	"sync"
	"time"
)

// Orphaned leases. A lease Acquire that fails at the gateway (a timeout
// while Redis stalls) may still be applied by Redis later: its reply was
// lost, not its request. The lease then names a session that never
// started, and would block nothing (the next session takes it over) but
// count a spurious takeover and live until its TTL. The same happens when
// the release of a session that never started fails.
//
// So after such an error the gateway releases the session's own lease
// again and again, with back-off, until the lease's TTL has passed: a
// release is harmless (it frees the lease only if that session holds it),
// and no single answer proves that the acquire will not be applied later,
// since Redis may serve the connections that carried the acquire and the
// release in any order. The takeover counting side is in supersede
// (handler.go): a superseded session without an open session record never
// started, and taking its lease over is not a takeover.
//
// The queue is bounded: beyond orphanQueueMax pending releases, the lease
// is left to expire by its TTL (counted in fleetacs.gateway.leases.orphans
// with outcome "dropped").

const (
	orphanQueueMax = 10000
	// orphanAttemptTimeout bounds one release.
	orphanAttemptTimeout = 2 * time.Second
	orphanBackoffBase    = 250 * time.Millisecond
	orphanBackoffMax     = 10 * time.Second
)

// orphan is a lease to release until deadline.
type orphan struct {
	tenant, deviceKey, sessionID string
	deadline                     time.Time
	next                         time.Time
	delay                        time.Duration
}

// orphanReleaser releases orphaned leases in the background of Run. The
// deadlines follow the injected clock, as the leases' expiry does; the
// pace of the attempts follows the real one.
type orphanReleaser struct {
	leases Leases
	now    func() time.Time
	logger *slog.Logger
	count  func(ctx context.Context, outcome string)
	base   time.Duration

	mu    sync.Mutex
	queue orphanHeap
	wake  chan struct{}
}

func newOrphanReleaser(leases Leases, now func() time.Time, logger *slog.Logger, count func(context.Context, string)) *orphanReleaser {
	return &orphanReleaser{leases: leases, now: now, logger: logger, count: count, base: orphanBackoffBase, wake: make(chan struct{}, 1)}
}

// add queues the release of sessionID's lease of the device until
// deadline, the first attempt at once.
func (o *orphanReleaser) add(ctx context.Context, tenant, deviceKey, sessionID string, deadline time.Time) {
	o.mu.Lock()
	full := len(o.queue) >= orphanQueueMax
	if !full {
		heap.Push(&o.queue, &orphan{tenant: tenant, deviceKey: deviceKey, sessionID: sessionID, deadline: deadline, next: time.Now(), delay: o.base})
	}
	o.mu.Unlock()
	if full {
		o.count(ctx, "dropped")
		return
	}
	o.count(ctx, "queued")
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// pending returns the number of leases waiting for release.
func (o *orphanReleaser) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}

// run releases queued leases until ctx ends.
func (o *orphanReleaser) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		o.mu.Lock()
		var due *orphan
		wait := time.Hour
		if len(o.queue) > 0 {
			if d := time.Until(o.queue[0].next); d <= 0 {
				due = heap.Pop(&o.queue).(*orphan)
			} else {
				wait = d
			}
		}
		o.mu.Unlock()
		if due != nil {
			o.release(ctx, due)
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-o.wake:
		case <-timer.C:
		}
	}
}

// release makes one attempt and requeues the orphan until its deadline.
func (o *orphanReleaser) release(ctx context.Context, x *orphan) {
	actx, cancel := context.WithTimeout(ctx, orphanAttemptTimeout)
	err := o.leases.Release(actx, x.tenant, x.deviceKey, x.sessionID)
	cancel()
	if err != nil && ctx.Err() == nil {
		o.logger.Debug("release of an orphaned lease failed; retrying", "device_id", x.deviceKey, "session_id", x.sessionID, "err", err)
	}
	if !o.now().Before(x.deadline) || ctx.Err() != nil {
		return
	}
	x.next = time.Now().Add(x.delay)
	x.delay = min(2*x.delay, orphanBackoffMax)
	o.mu.Lock()
	heap.Push(&o.queue, x)
	o.mu.Unlock()
}

// orphanHeap orders orphans by their next attempt (container/heap).
type orphanHeap []*orphan

func (h orphanHeap) Len() int           { return len(h) }
func (h orphanHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h orphanHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *orphanHeap) Push(x any)        { *h = append(*h, x.(*orphan)) }

func (h *orphanHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
