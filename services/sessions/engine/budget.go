package engine

import "sync/atomic"

// Bounding the work one session can cause (docs/sessions.md, "Limits").
//
// What a session holds beyond a few kilobytes is what it will record: the
// Inform's parameters and what its operations learned (a discovered tree).
// Each session charges that, parameter by parameter, to its usage, bounded
// by Config.MaxSessionParameters and MaxSessionBytes; the Inform alone by
// MaxInformParameters. The worker adds up its sessions' bytes in a budget
// (Config.MemoryBudget): a new session whose Inform would take the total
// past it is shed with 503 and Retry-After, so that a flood of heavy
// sessions slows down instead of taking the process down, while light
// sessions, which cost little, still fit. Sessions already running are
// never cut short by the budget, only by their own limits.

// usage is what one session holds. Its fields are checkpointed, so that a
// resumed session goes on from the same count.
type usage struct {
	Params int `json:"params,omitempty"`
	Bytes  int `json:"bytes,omitempty"`

	maxParams, maxBytes int
	budget              *budget
}

// charge adds params parameters of bytes bytes, unless that goes past the
// session's limits.
func (u *usage) charge(params, bytes int) bool {
	if (u.maxParams > 0 && u.Params+params > u.maxParams) || (u.maxBytes > 0 && u.Bytes+bytes > u.maxBytes) {
		return false
	}
	u.Params += params
	u.Bytes += bytes
	u.budget.add(bytes)
	return true
}

// release gives the session's bytes back to the budget.
func (u *usage) release() {
	u.budget.add(-u.Bytes)
	u.Params, u.Bytes = 0, 0
}

// budget is the bytes all of a worker's sessions hold.
type budget struct {
	limit int64
	used  atomic.Int64
}

func (b *budget) add(n int) {
	if b != nil && n != 0 {
		b.used.Add(int64(n))
	}
}

// admits reports whether a new session expected to hold n bytes fits.
func (b *budget) admits(n int) bool {
	return b == nil || b.limit <= 0 || b.used.Load()+int64(n) <= b.limit
}

// slots bounds how many sessions of a worker run a tree discovery at once
// (Config.MaxDiscoveries). A session takes a slot when its discovery is
// planned and gives it back when it leaves the worker (Engine.drop), so
// that no way out of a session leaks one.
type slots struct {
	limit int64 // 0: no bound
	used  atomic.Int64
}

// take takes a slot if one is free, counting extra more slots than the
// limit (see overdraft).
func (s *slots) take(extra int64) bool {
	for {
		n := s.used.Load()
		if s.limit > 0 && n >= s.limit+extra {
			return false
		}
		if s.used.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// overdraft is how many slots over the limit a device whose discovery was
// postponed attempt times may take: an eighth of the limit for each
// postponement, at most half of it (and at least one slot once postponed).
// Newcomers never go over the limit, so the devices that waited longest
// get ahead of a storm's first contacts, and none is postponed forever
// while new ones keep coming; the bound stays within 1.5 times the limit.
func (s *slots) overdraft(attempt int) int64 {
	if attempt <= 0 || s.limit <= 0 {
		return 0
	}
	return max(s.limit*int64(min(attempt, 4))/8, 1)
}

// force takes a slot whether or not one is free: a session resumed from
// another worker continues its discovery.
func (s *slots) force() { s.used.Add(1) }

func (s *slots) give() { s.used.Add(-1) }
