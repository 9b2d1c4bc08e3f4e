package gateway

import (
	"sync"
	"time"
)

// sessionTable counts the sessions this gateway carries, for the
// gateway.max-sessions cap and for draining. A session counts from the
// request that opens it (a reserved slot while the worker answers) until the
// worker ends it or no request of it arrived here for the idle timeout (the
// CPE vanished, or carries on through another replica).
type sessionTable struct {
	now  func() time.Time
	idle time.Duration
	max  int

	mu        sync.Mutex
	open      map[string]time.Time // session ID -> last request
	pending   int
	changed   chan struct{}
	watched   bool // someone holds changed: replace it on the next decrease
	nextSweep time.Time
}

func newSessionTable(maxSessions int, idle time.Duration, now func() time.Time) *sessionTable {
	return &sessionTable{now: now, idle: idle, max: maxSessions, open: map[string]time.Time{}, changed: make(chan struct{})}
}

// reserve takes a slot for a new session, reporting false at the cap.
func (t *sessionTable) reserve() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.open)+t.pending >= t.max {
		now := t.now()
		// Sweeping is O(open sessions), so do it only at the cap and at
		// most once a second.
		if now.Before(t.nextSweep) {
			return false
		}
		t.sweepLocked(now)
		t.nextSweep = now.Add(time.Second)
		if len(t.open)+t.pending >= t.max {
			return false
		}
	}
	t.pending++
	return true
}

// commit turns a reserved slot into the open session sid (empty: the
// session did not start, and the slot is freed).
func (t *sessionTable) commit(sid string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending--
	if sid != "" {
		t.open[sid] = t.now()
	} else {
		t.notifyLocked()
	}
}

// touch records a request of an open session, counting it here if it
// started elsewhere.
func (t *sessionTable) touch(sid string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.open[sid] = t.now()
}

// end forgets a session.
func (t *sessionTable) end(sid string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.open[sid]; ok {
		delete(t.open, sid)
		t.notifyLocked()
	}
}

// count returns the sessions counted now (after dropping idle ones) and a
// channel closed at the next decrease.
func (t *sessionTable) count() (int, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweepLocked(t.now())
	t.watched = true
	return len(t.open) + t.pending, t.changed
}

func (t *sessionTable) sweepLocked(now time.Time) {
	removed := false
	for sid, last := range t.open {
		if now.Sub(last) >= t.idle {
			delete(t.open, sid)
			removed = true
		}
	}
	if removed {
		t.notifyLocked()
	}
}

func (t *sessionTable) notifyLocked() {
	if !t.watched {
		return // nobody waits (only a drain does): spare the allocation
	}
	close(t.changed)
	t.changed = make(chan struct{})
	t.watched = false
}
