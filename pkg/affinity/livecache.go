package affinity

import (
	"context"
	"slices"
	"sync"
	"time"
)

// LiveCache keeps a Registry's live workers for a short while, so that a
// gateway routing thousands of requests a second reads the registry a few
// times a second, not per request. A worker that died stays routable for at
// most MaxAge longer; the Forwarder's retry on another worker covers that.
type LiveCache struct {
	reg    Registry
	maxAge time.Duration
	now    func() time.Time

	// mu serializes refreshes as well, so a burst of callers after expiry
	// makes one registry read, not one each.
	mu      sync.Mutex
	workers []Worker
	fetched time.Time
	valid   bool
}

// NewLiveCache returns a cache of reg's live workers that re-reads reg when
// its copy is older than maxAge, reading time from now (time.Now when nil).
func NewLiveCache(reg Registry, maxAge time.Duration, now func() time.Time) *LiveCache {
	if now == nil {
		now = time.Now
	}
	return &LiveCache{reg: reg, maxAge: maxAge, now: now}
}

// Live returns the live workers, from the cache when its copy is fresh.
// Workers whose registration lapsed since the read are left out. When the
// registry cannot be read, it returns the last list it read (minus lapsed
// workers) together with the error, so the caller may keep routing.
// The returned slice is the caller's.
func (c *LiveCache) Live(ctx context.Context) ([]Worker, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.valid || now.Sub(c.fetched) >= c.maxAge || now.Before(c.fetched) {
		ws, err := c.reg.Live(ctx)
		if err != nil {
			return c.unexpired(now), err
		}
		c.workers, c.fetched, c.valid = ws, now, true
	}
	return c.unexpired(now), nil
}

// Invalidate makes the next Live read the registry (after a worker was
// found dead, say).
func (c *LiveCache) Invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.valid = false
}

func (c *LiveCache) unexpired(now time.Time) []Worker {
	out := slices.Clone(c.workers)
	return slices.DeleteFunc(out, func(w Worker) bool { return !w.Expires.IsZero() && !now.Before(w.Expires) })
}
