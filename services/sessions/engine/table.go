package engine

import "sync"

// table is the worker's set of sessions, safe for concurrent use.
//
// Lock order: a session's mu, then table.mu. Code holding table.mu never
// waits for a session's mu: lookups release table.mu before locking the
// session they found, then check the session's gone flag, because it may
// have left the table in between. The one exception, locking a session
// under table.mu in acquire, cannot wait: the session is new and no one
// else can see it yet.
type table struct {
	mu sync.Mutex
	m  map[string]*session
	// removed gets a token (without blocking) whenever a session leaves,
	// so that a drain can wait for the table to empty.
	removed chan struct{}
}

func newTable() *table {
	return &table{m: make(map[string]*session), removed: make(chan struct{}, 1)}
}

// acquire returns the session with this id, locked. When there is none,
// admit decides, given the number of sessions held, whether a new one may
// be added; if so, acquire adds an empty session (live false) and returns it
// locked with created true.
func (t *table) acquire(id string, admit func(held int) error) (s *session, created bool, err error) {
	for {
		t.mu.Lock()
		if s = t.m[id]; s != nil {
			t.mu.Unlock()
			s.mu.Lock()
			if s.gone {
				s.mu.Unlock()
				continue
			}
			return s, false, nil
		}
		if err := admit(len(t.m)); err != nil {
			t.mu.Unlock()
			return nil, false, err
		}
		s = &session{id: id}
		s.mu.Lock()
		t.m[id] = s
		t.mu.Unlock()
		return s, true, nil
	}
}

// lookup returns the session with this id locked, or nil.
func (t *table) lookup(id string) *session {
	for {
		t.mu.Lock()
		s := t.m[id]
		t.mu.Unlock()
		if s == nil {
			return nil
		}
		s.mu.Lock()
		if !s.gone {
			return s
		}
		s.mu.Unlock()
	}
}

// remove takes s out of the table; the caller holds s.mu.
func (t *table) remove(s *session) {
	s.gone = true
	t.mu.Lock()
	if t.m[s.id] == s {
		delete(t.m, s.id)
	}
	t.mu.Unlock()
	select {
	case t.removed <- struct{}{}:
	default:
	}
}

// all returns the sessions held now, unlocked.
func (t *table) all() []*session {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*session, 0, len(t.m))
	for _, s := range t.m {
		out = append(out, s)
	}
	return out
}

// len returns the number of sessions held.
func (t *table) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
