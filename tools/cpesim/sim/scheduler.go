package sim

import (
	"container/heap"
	"sync"
	"time"
)

// The scheduler decides when each device next needs the simulator's
// attention: a session to deliver pending events (retried no earlier than
// its back-off allows), its periodic inform, or a wakeup that carries out
// deferred work (a transfer, a scheduled inform). Devices wait in a heap
// ordered by that time; one dispatcher goroutine pops them when due and
// hands them to workers. A device is never handed out while a worker holds
// it, so a CPE never runs two sessions at once (docs/protocol.md §4.3 rule 7).
//
// Lock order: a Device's mu may be held when taking the scheduler's mu,
// never the other way round.

// deviceSched is a device's scheduling state, guarded by scheduler.mu.
type deviceSched struct {
	hidx    int // position in the heap, -1 when not queued
	due     time.Time
	running bool
	// wantAt asks for a session no earlier than this (zero: none).
	wantAt time.Time
	// retryAt holds sessions back after a failure (docs/protocol.md §4.4).
	retryAt time.Time
	// periodicAt is the next periodic inform (zero: none).
	periodicAt time.Time
	wakeups    []wakeup
	// failures counts consecutive failed sessions, for the retry wait.
	failures int
}

// wakeup is deferred work. fn runs on a worker with the device's mu held.
type wakeup struct {
	at time.Time
	fn func(now time.Time)
}

type scheduler struct {
	mu      sync.Mutex
	h       devHeap
	running int
	// kick wakes the dispatcher when the heap's head may have changed.
	kick chan struct{}
	// retryDelay is the wait after a device's n-th consecutive failed
	// session; retryAfter is what a 503 asked for (0: nothing).
	retryDelay func(n int, retryAfter time.Duration) time.Duration
}

func newScheduler(retryDelay func(n int, retryAfter time.Duration) time.Duration) *scheduler {
	return &scheduler{kick: make(chan struct{}, 1), retryDelay: retryDelay}
}

func (s *scheduler) signal() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// nextDue computes when a device is due; zero when it has nothing to do.
func (ds *deviceSched) nextDue() time.Time {
	var due time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (due.IsZero() || t.Before(due)) {
			due = t
		}
	}
	// Sessions wait for the back-off; wakeups (deferred work) do not.
	notBefore := func(t time.Time) time.Time {
		if !t.IsZero() && ds.retryAt.After(t) {
			return ds.retryAt
		}
		return t
	}
	earliest(notBefore(ds.wantAt))
	earliest(notBefore(ds.periodicAt))
	for _, w := range ds.wakeups {
		earliest(w.at)
	}
	return due
}

// requeueLocked puts a device that no worker holds where it belongs in the
// heap.
func (s *scheduler) requeueLocked(d *Device) {
	ds := &d.sched
	if ds.running {
		return
	}
	due := ds.nextDue()
	switch {
	case due.IsZero() && ds.hidx >= 0:
		heap.Remove(&s.h, ds.hidx)
	case due.IsZero():
	case ds.hidx >= 0:
		ds.due = due
		heap.Fix(&s.h, ds.hidx)
	default:
		ds.due = due
		heap.Push(&s.h, d)
	}
	if s.h.Len() > 0 && s.h[0] == d {
		s.signal()
	}
}

// wake asks for a session of d no earlier than at (and its back-off).
func (s *scheduler) wake(d *Device, at time.Time) {
	s.mu.Lock()
	ds := &d.sched
	if ds.wantAt.IsZero() || at.Before(ds.wantAt) {
		ds.wantAt = at
	}
	s.requeueLocked(d)
	s.mu.Unlock()
}

// addWakeup schedules deferred work for d.
func (s *scheduler) addWakeup(d *Device, at time.Time, fn func(now time.Time)) {
	s.mu.Lock()
	d.sched.wakeups = append(d.sched.wakeups, wakeup{at: at, fn: fn})
	s.requeueLocked(d)
	s.mu.Unlock()
}

// setPeriodic sets d's next periodic inform (zero: none).
func (s *scheduler) setPeriodic(d *Device, at time.Time) {
	s.mu.Lock()
	d.sched.periodicAt = at
	s.requeueLocked(d)
	s.mu.Unlock()
}

// popDue takes the first device due at or before now. It returns the
// device, or the time the head is due (zero when the heap is empty).
func (s *scheduler) popDue(now time.Time) (*Device, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h.Len() == 0 {
		return nil, time.Time{}
	}
	d := s.h[0]
	if d.sched.due.After(now) {
		return nil, d.sched.due
	}
	heap.Pop(&s.h)
	d.sched.running = true
	s.running++
	return d, time.Time{}
}

// dueAt returns the time the device was due when popped. The device is
// held by the caller, so due does not change under it.
func (ds *deviceSched) dueAt() time.Time { return ds.due }

// take claims what is due for a device a worker now holds: the wakeups to
// run, whether its periodic inform fired (and when it was due), and
// whether a session may start now (back-off over).
func (s *scheduler) take(d *Device, now time.Time) (due []wakeup, periodic bool, firedAt time.Time, mayRun bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ds := &d.sched
	kept := ds.wakeups[:0]
	for _, w := range ds.wakeups {
		if !w.at.After(now) {
			due = append(due, w)
		} else {
			kept = append(kept, w)
		}
	}
	ds.wakeups = kept
	mayRun = !ds.retryAt.After(now)
	if mayRun && !ds.periodicAt.IsZero() && !ds.periodicAt.After(now) {
		periodic, firedAt = true, ds.periodicAt
		ds.periodicAt = time.Time{}
	}
	if mayRun && !ds.wantAt.IsZero() && !ds.wantAt.After(now) {
		ds.wantAt = time.Time{}
	}
	return due, periodic, firedAt, mayRun
}

// releaseInfo is what a worker reports when it hands a device back.
type releaseInfo struct {
	// pending: events wait for a session, wanted at wantAt.
	pending bool
	wantAt  time.Time
	// ok: a session succeeded, ending any back-off. failed: a session
	// failed; retryAfter is the 503's Retry-After, if any.
	ok, failed bool
	retryAfter time.Duration
	// periodicAt sets the next periodic inform (zero: unchanged).
	periodicAt time.Time
}

// release hands a device back after a worker is done with it.
func (s *scheduler) release(d *Device, r releaseInfo) {
	now := time.Now()
	s.mu.Lock()
	ds := &d.sched
	ds.running = false
	s.running--
	switch {
	case r.ok:
		ds.failures = 0
		ds.retryAt = time.Time{}
	case r.failed:
		ds.failures++
		ds.retryAt = now.Add(s.retryDelay(ds.failures, r.retryAfter))
	}
	if r.pending && (ds.wantAt.IsZero() || r.wantAt.Before(ds.wantAt)) {
		ds.wantAt = r.wantAt
	}
	if !r.periodicAt.IsZero() {
		ds.periodicAt = r.periodicAt
	}
	s.requeueLocked(d)
	s.mu.Unlock()
	s.signal()
}

// idle reports that no device is queued or held: nothing more will happen
// unless something from outside (a connection request) wakes a device.
func (s *scheduler) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.h.Len() == 0 && s.running == 0
}

// devHeap orders devices by due time.
type devHeap []*Device

func (h devHeap) Len() int           { return len(h) }
func (h devHeap) Less(i, j int) bool { return h[i].sched.due.Before(h[j].sched.due) }
func (h devHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].sched.hidx = i
	h[j].sched.hidx = j
}
func (h *devHeap) Push(x any) {
	d := x.(*Device)
	d.sched.hidx = len(*h)
	*h = append(*h, d)
}
func (h *devHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	d.sched.hidx = -1
	return d
}
