package tasks

import (
	"sync"

	"github.com/fleetacs/fleetacs/services/tasks/store"
)

// recentCacheBytes bounds what a replica keeps of the records it wrote
// last: about 40,000 queued GetParameterValues tasks (a record of a queued
// task is 300 to 400 bytes), so that a bulk creation is still in the cache
// when the devices' sessions claim it.
const recentCacheBytes = 16 << 20

// recentCache keeps the record a replica's last write of each task left
// (creation, queueing, any change but an end), so that ClaimTasks reads
// nothing from the store for a task this replica queued (docs/tasks.md,
// "Delivery").
//
// A cached record can be stale: another replica, or this one's sweeper
// racing the claim, may have changed the task since. A claim therefore
// acts on a cached record only through a write: the write is a
// compare-and-swap on Version, which fails on a stale record and makes
// change read the record again. A claim that would decide without writing
// (skip the task, find it ended, run it again in the same session) reads
// the record from the store first and decides on that (see claim),
// except the claim of a read-only task, which runs on the cached record
// (docs/tasks.md, "Read-only tasks"): if the record was stale, the
// report's compare-and-swap finds the task ended, the report is refused,
// and it drops the record from the cache and deletes the task's queue
// message; the read itself ran once for nothing.
//
// Records go in the order they were put once their bytes pass the bound;
// a record larger than a sixteenth of it is not kept.
type recentCache struct {
	mu    sync.Mutex
	max   int
	bytes int
	recs  map[recentKey]recentEntry
	// order holds the keys in the order put, from head; an entry whose
	// put number is not the key's current one was replaced or taken.
	order []recentSlot
	head  int
	puts  uint64
}

type recentKey struct{ tenant, id string }

type recentEntry struct {
	rec store.Record
	put uint64
}

type recentSlot struct {
	key recentKey
	put uint64
}

func newRecentCache(maxBytes int) *recentCache {
	return &recentCache{max: maxBytes, recs: map[recentKey]recentEntry{}}
}

// size is what a record counts for in the bound: its variable parts and
// a fixed overhead for the map entry and the slot.
func size(r *store.Record) int {
	return len(r.Tenant) + len(r.ID) + len(r.DeviceID) + len(r.Kind) + len(r.IdempotencyKey) + len(r.Body) + len(r.Secret) + 256
}

// put keeps r as the task's latest record, replacing an older one (a
// record of a later version, put first by a concurrent write, stays).
func (c *recentCache) put(r store.Record) {
	k := recentKey{r.Tenant, r.ID}
	n := size(&r)
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.recs[k]
	if ok && e.rec.Version > r.Version {
		return
	}
	if n > c.max/16 {
		c.dropLocked(k)
		return
	}
	if ok {
		// Replaced in place: a delete and an insert per write would
		// cost two more map operations and leave the map's tables
		// tombstones, which lengthen later probes.
		c.bytes -= size(&e.rec)
	}
	c.puts++
	c.recs[k] = recentEntry{rec: r, put: c.puts}
	c.order = append(c.order, recentSlot{k, c.puts})
	c.bytes += n
	for c.bytes > c.max && c.head < len(c.order) {
		s := c.order[c.head]
		c.order[c.head] = recentSlot{}
		c.head++
		if e, ok := c.recs[s.key]; ok && e.put == s.put {
			delete(c.recs, s.key)
			c.bytes -= size(&e.rec)
		}
	}
	if live := len(c.order) - c.head; live > 2*len(c.recs)+1024 {
		// Most slots are spent (replaced or dropped): keep the others, in
		// order.
		kept := c.order[:0]
		for _, s := range c.order[c.head:] {
			if e, ok := c.recs[s.key]; ok && e.put == s.put {
				kept = append(kept, s)
			}
		}
		clear(c.order[len(kept):])
		c.order, c.head = kept, 0
	} else if c.head > 1024 && c.head > live {
		// The slots before head are spent.
		n := copy(c.order, c.order[c.head:])
		clear(c.order[n:])
		c.order, c.head = c.order[:n], 0
	}
}

// drop forgets the task (it ended).
func (c *recentCache) drop(tenant, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(recentKey{tenant, id})
}

func (c *recentCache) dropLocked(k recentKey) {
	if e, ok := c.recs[k]; ok {
		delete(c.recs, k)
		c.bytes -= size(&e.rec)
	}
}

// get returns the latest record kept of task id.
func (c *recentCache) get(tenant, id string) (store.Record, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.recs[recentKey{tenant, id}]
	return e.rec, ok
}
