package tasks

import (
	"sync"

	"github.com/fleetacs/fleetacs/services/tasks/store"
)

// claimCacheSize bounds the records a replica keeps between a session's
// ClaimTasks and its ReportTasks: about the tasks in flight in the
// sessions of a busy replica. A record is a few hundred bytes to a few
// kilobytes, so the cache stays under ten megabytes.
const claimCacheSize = 4096

// claimCache keeps the record each claim left a task in, for the claiming
// session's report, which then reads nothing from the store for it
// (docs/tasks.md, "Delivery"). The key includes the session: the record
// says the task is dispatched to that session.
//
// A cached record can be stale: the sweeper, a cancellation or a later
// session of the device (on any replica) may have changed the task since.
// That is safe because report acts on a record only through change. A
// record dispatched to the reporting session makes report write, and the
// write is a compare-and-swap on Version, which fails on a stale record;
// change then reads the record again and decides on that. Every change
// after the claim moves the task away from the session, and versions only
// grow, so a stale record never makes report skip a write it owes.
//
// Records not taken (a session that never reports) are evicted in the
// order they were put once the cache is full.
type claimCache struct {
	mu    sync.Mutex
	recs  map[claimKey]store.Record
	order []claimKey // a ring of the keys in the order put
	next  int
}

type claimKey struct{ tenant, id, session string }

func newClaimCache(size int) *claimCache {
	return &claimCache{recs: make(map[claimKey]store.Record, size), order: make([]claimKey, size)}
}

// put keeps r for session's report, evicting the oldest key once full.
func (c *claimCache) put(session string, r store.Record) {
	k := claimKey{r.Tenant, r.ID, session}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.recs[k]; !ok {
		// The slot's earlier key may be taken already, or put again since
		// (then it goes early, which costs one store read).
		delete(c.recs, c.order[c.next])
		c.order[c.next] = k
		c.next = (c.next + 1) % len(c.order)
	}
	c.recs[k] = r
}

// take removes and returns the record kept for session's report of task
// id.
func (c *claimCache) take(tenant, id, session string) (store.Record, bool) {
	k := claimKey{tenant, id, session}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.recs[k]
	if ok {
		delete(c.recs, k)
	}
	return r, ok
}
