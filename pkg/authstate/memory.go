package authstate

import (
	"context"
	"sync"
	"time"
)

// DefaultMemoryEntries is the size of each of Memory's tables when
// NewMemory is given none.
const DefaultMemoryEntries = 1 << 17

// Memory is the in-process Store, for one gateway process (the embedded
// default): the same contracts as Redis without the network. Expiry
// follows the injected clock.
//
// Each table (nonce counts, failure counters, known sources) holds at most
// the configured number of entries; beyond that it evicts the entry closest
// to its expiry:
//   - An evicted nonce count must not let its header be replayed, so the
//     table remembers the latest expiry it evicted and refuses (Advance
//     returns false) any nonce it has no entry for that expires no later:
//     every nonce lives equally long, so those are the nonces issued before
//     the evicted one. A CPE holding one gets a fresh nonce and retries.
//   - An evicted failure counter forgets failures, so an attacker who can
//     spread over more addresses than the table holds within Forget escapes
//     the per-source limit; the per-user limit still counts it. Size the
//     table, or run the Redis store, accordingly.
//   - An evicted known source loses its exemption from the source and user
//     limits until its next success.
//
// One mutex guards everything: authentication happens once per session.
type Memory struct {
	now func() time.Time

	mu         sync.Mutex
	nonces     *expMap[uint64]
	nonceFloor time.Time // latest expiry of an evicted live nonce count
	counters   *expMap[counter]
	known      *expMap[struct{}]
}

type counter struct {
	n       int64
	blocked time.Time
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty store whose tables hold up to maxEntries each
// (DefaultMemoryEntries when maxEntries <= 0), reading time from now
// (time.Now when nil).
func NewMemory(now func() time.Time, maxEntries int) *Memory {
	if now == nil {
		now = time.Now
	}
	if maxEntries <= 0 {
		maxEntries = DefaultMemoryEntries
	}
	return &Memory{
		now:      now,
		nonces:   newExpMap[uint64](maxEntries),
		counters: newExpMap[counter](maxEntries),
		known:    newExpMap[struct{}](maxEntries),
	}
}

// Advance implements NonceCounts.
func (m *Memory) Advance(_ context.Context, nonce string, nc uint64, expires time.Time) (bool, error) {
	if err := checkAdvance(nonce, nc); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if e, ok := m.nonces.get(nonce, now); ok {
		if nc <= e.val {
			return false, nil
		}
		m.nonces.put(nonce, nc, later(e.exp, expires), now)
		return true, nil
	}
	if !expires.After(m.nonceFloor) {
		return false, nil
	}
	if !expires.After(now) {
		// Nothing to remember: the nonce is dead already.
		return true, nil
	}
	if ev := m.nonces.put(nonce, nc, expires, now); ev != nil {
		m.nonceFloor = later(m.nonceFloor, ev.exp)
	}
	return true, nil
}

// Sizes returns the number of entries in each table, for tests and
// operations.
func (m *Memory) Sizes() (nonces, counters, known int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nonces.len(), m.counters.len(), m.known.len()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Check implements Guard.
func (m *Memory) Check(_ context.Context, p Policy, a Attempt) (Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.statusLocked(p, a, m.now()), nil
}

// Fail implements Guard.
func (m *Memory) Fail(_ context.Context, p Policy, a Attempt) (Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for _, k := range guardKeys(p, a) {
		c := counter{}
		if e, ok := m.counters.get(k.key, now); ok {
			c = e.val
		}
		c.n++
		c.blocked = backoff(k.limit, c.n, now)
		m.counters.put(k.key, c, later(now, c.blocked).Add(p.Forget), now)
	}
	return m.statusLocked(p, a, now), nil
}

// Succeed implements Guard.
func (m *Memory) Succeed(_ context.Context, p Policy, a Attempt) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.counters.del(pairKey(a))
	m.known.put(knownKey(a), struct{}{}, now.Add(p.KnownFor), now)
	return nil
}

func (m *Memory) statusLocked(p Policy, a Attempt, now time.Time) Status {
	keys := guardKeys(p, a)
	counters := make([]counter, len(keys))
	for i, k := range keys {
		if e, ok := m.counters.get(k.key, now); ok {
			counters[i] = e.val
		}
	}
	var known time.Time
	if e, ok := m.known.get(knownKey(a), now); ok {
		known = e.exp
	}
	return status(p, keys, counters, known, now)
}

// guardKey is one counter an attempt touches.
type guardKey struct {
	kind  Kind
	key   string
	limit Limit
}

// guardKeys lists the counters of the limits p turns on. The pair comes
// first; Redis names its keys from the same strings.
func guardKeys(p Policy, a Attempt) []guardKey {
	out := make([]guardKey, 0, 3)
	if p.Pair.on() {
		out = append(out, guardKey{KindPair, pairKey(a), p.Pair})
	}
	if p.Source.on() {
		out = append(out, guardKey{KindSource, "s:" + keyHash(a.Source), p.Source})
	}
	if p.User.on() {
		out = append(out, guardKey{KindUser, "u:" + keyHash(a.User), p.User})
	}
	return out
}

func pairKey(a Attempt) string  { return "p:" + keyHash(a.Source, a.User) }
func knownKey(a Attempt) string { return "k:" + keyHash(a.User, a.Source) }
