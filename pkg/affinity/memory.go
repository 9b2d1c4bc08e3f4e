package affinity

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// Memory is the in-process affinity store of the embedded default (docs/design.md
// §4): one process needs no cross-process coordination, but runs the same
// code paths against the same contracts as with Redis. Expiry follows the
// injected clock; expired entries are dropped when met and by a sweep at
// most once per TTL, so memory follows the live entries.
//
// Each part has its own mutex and never takes another's: no lock order.
type Memory struct {
	leases      MemoryLeases
	affinity    MemoryAffinity
	checkpoints MemoryCheckpoints
	registry    MemoryRegistry
}

// NewMemory returns an empty in-process store reading time from now
// (time.Now when nil).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	m := &Memory{}
	m.leases = MemoryLeases{now: now, leases: map[deviceRef]memLease{}}
	m.affinity = MemoryAffinity{now: now, bySession: map[string]memRecord{}, byIP: map[string]map[string]struct{}{}}
	m.checkpoints = MemoryCheckpoints{now: now, ckpts: map[sessionRef]memCheckpoint{}, fences: map[deviceRef]memFence{}}
	m.registry = MemoryRegistry{now: now, workers: map[string]Worker{}}
	return m
}

// Leases returns the store's device leases.
func (m *Memory) Leases() *MemoryLeases { return &m.leases }

// Affinity returns the store's session records.
func (m *Memory) Affinity() *MemoryAffinity { return &m.affinity }

// Checkpoints returns the store's session checkpoints.
func (m *Memory) Checkpoints() *MemoryCheckpoints { return &m.checkpoints }

// Registry returns the store's worker registry.
func (m *Memory) Registry() *MemoryRegistry { return &m.registry }

// Store returns every part as the port interfaces.
func (m *Memory) Store() Store {
	return Store{
		Leases: &m.leases, Affinity: &m.affinity, Checkpoints: &m.checkpoints, Registry: &m.registry,
		Sessions: SessionsOf(&m.leases, &m.checkpoints, &m.affinity),
	}
}

type deviceRef struct{ tenant, device string }

type sessionRef struct {
	deviceRef
	session string
}

// MemoryLeases is the in-process Leases.
type MemoryLeases struct {
	now func() time.Time

	mu sync.Mutex
	// lastToken is one counter for all devices: increasing overall means
	// increasing per device, and nothing per device outlives its lease.
	lastToken uint64
	leases    map[deviceRef]memLease
	nextSweep time.Time
}

type memLease struct {
	session string
	token   uint64
	expires time.Time
}

var _ Leases = (*MemoryLeases)(nil)

// Acquire implements Leases.
func (l *MemoryLeases) Acquire(_ context.Context, tenant, deviceKey, sessionID string, ttl time.Duration) (Lease, error) {
	if err := checkLeaseArgs("acquire lease", tenant, deviceKey, sessionID, ttl, true); err != nil {
		return Lease{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	k := deviceRef{tenant, deviceKey}
	var superseded string
	if old, ok := l.leases[k]; ok && old.session != sessionID && now.Before(old.expires) {
		superseded = old.session
	}
	l.lastToken = max(l.lastToken+1, tokenFloor(now))
	nl := memLease{session: sessionID, token: l.lastToken, expires: now.Add(ttl)}
	l.leases[k] = nl
	if !now.Before(l.nextSweep) {
		for k, v := range l.leases {
			if !now.Before(v.expires) {
				delete(l.leases, k)
			}
		}
		l.nextSweep = now.Add(ttl)
	}
	return Lease{FencingToken: nl.token, Expires: nl.expires, Superseded: superseded}, nil
}

// Renew implements Leases.
func (l *MemoryLeases) Renew(_ context.Context, tenant, deviceKey, sessionID string, token uint64, ttl time.Duration) error {
	if err := checkLeaseArgs("renew lease", tenant, deviceKey, sessionID, ttl, true); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	k := deviceRef{tenant, deviceKey}
	old, ok := l.leases[k]
	if !ok || old.session != sessionID || old.token != token || !now.Before(old.expires) {
		return ErrLeaseLost
	}
	old.expires = now.Add(ttl)
	l.leases[k] = old
	return nil
}

// Release implements Leases.
func (l *MemoryLeases) Release(_ context.Context, tenant, deviceKey, sessionID string) error {
	if err := checkLeaseArgs("release lease", tenant, deviceKey, sessionID, 0, false); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	k := deviceRef{tenant, deviceKey}
	if old, ok := l.leases[k]; ok && old.session == sessionID {
		delete(l.leases, k)
	}
	return nil
}

// Holder implements Leases.
func (l *MemoryLeases) Holder(_ context.Context, tenant, deviceKey string) (LeaseHolder, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old, ok := l.leases[deviceRef{tenant, deviceKey}]
	if !ok || !l.now().Before(old.expires) {
		return LeaseHolder{}, false, nil
	}
	return LeaseHolder{SessionID: old.session, FencingToken: old.token, Expires: old.expires}, true, nil
}

// MemoryAffinity is the in-process Affinity.
type MemoryAffinity struct {
	now func() time.Time

	mu        sync.Mutex
	bySession map[string]memRecord
	byIP      map[string]map[string]struct{}
	nextSweep time.Time
}

type memRecord struct {
	rec     SessionRecord
	expires time.Time
}

var _ Affinity = (*MemoryAffinity)(nil)

// Lookup implements Affinity.
func (a *MemoryAffinity) Lookup(_ context.Context, sessionID string) (SessionRecord, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.bySession[sessionID]
	if !ok {
		return SessionRecord{}, ErrNoRecord
	}
	if !a.now().Before(e.expires) {
		a.removeLocked(e.rec)
		return SessionRecord{}, ErrNoRecord
	}
	return e.rec, nil
}

// OpenSessionAt implements Affinity.
func (a *MemoryAffinity) OpenSessionAt(_ context.Context, ip string) (SessionRecord, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	var found []SessionRecord
	for sid := range a.byIP[ip] {
		e := a.bySession[sid]
		if !now.Before(e.expires) {
			a.removeLocked(e.rec)
			continue
		}
		found = append(found, e.rec)
	}
	switch len(found) {
	case 0:
		return SessionRecord{}, ErrNoRecord
	case 1:
		return found[0], nil
	}
	return SessionRecord{}, ErrAmbiguous
}

// Put implements Affinity.
func (a *MemoryAffinity) Put(_ context.Context, rec SessionRecord, ttl time.Duration) error {
	if err := checkPut(rec, ttl); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if old, ok := a.bySession[rec.SessionID]; ok && old.rec.ClientIP != rec.ClientIP {
		a.unindexLocked(old.rec)
	}
	a.bySession[rec.SessionID] = memRecord{rec: rec, expires: now.Add(ttl)}
	if rec.ClientIP != "" {
		set := a.byIP[rec.ClientIP]
		if set == nil {
			set = map[string]struct{}{}
			a.byIP[rec.ClientIP] = set
		}
		set[rec.SessionID] = struct{}{}
	}
	if !now.Before(a.nextSweep) {
		// Sessions whose CPE vanished are never looked up again.
		for _, e := range a.bySession {
			if !now.Before(e.expires) {
				a.removeLocked(e.rec)
			}
		}
		a.nextSweep = now.Add(ttl)
	}
	return nil
}

// Delete implements Affinity.
func (a *MemoryAffinity) Delete(_ context.Context, rec SessionRecord) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.bySession[rec.SessionID]; ok {
		a.removeLocked(e.rec)
	}
	return nil
}

// Len returns the number of records held, expired or not (for tests).
func (a *MemoryAffinity) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.bySession)
}

func (a *MemoryAffinity) removeLocked(rec SessionRecord) {
	delete(a.bySession, rec.SessionID)
	a.unindexLocked(rec)
}

func (a *MemoryAffinity) unindexLocked(rec SessionRecord) {
	if set := a.byIP[rec.ClientIP]; set != nil {
		delete(set, rec.SessionID)
		if len(set) == 0 {
			delete(a.byIP, rec.ClientIP)
		}
	}
}

// MemoryCheckpoints is the in-process Checkpoints.
type MemoryCheckpoints struct {
	now func() time.Time

	mu        sync.Mutex
	ckpts     map[sessionRef]memCheckpoint
	fences    map[deviceRef]memFence
	nextSweep time.Time
}

type memCheckpoint struct {
	token, seq uint64
	data       []byte
	journal    []byte
	expires    time.Time
}

// memFence is the highest token that saved a checkpoint of a device, kept
// as long as the longest-lived checkpoint saved under it.
type memFence struct {
	token   uint64
	expires time.Time
}

var _ Checkpoints = (*MemoryCheckpoints)(nil)

// Save implements Checkpoints.
func (c *MemoryCheckpoints) Save(_ context.Context, cp Checkpoint, ttl time.Duration) error {
	if err := checkSave(&cp, ttl); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	dk := deviceRef{cp.Tenant, cp.DeviceKey}
	sk := sessionRef{dk, cp.SessionID}
	f, fok := c.fences[dk]
	fok = fok && now.Before(f.expires)
	if fok && f.token > cp.FencingToken {
		return ErrLeaseLost
	}
	old, live := c.ckpts[sk]
	live = live && now.Before(old.expires)
	if live {
		if old.token > cp.FencingToken || (old.token == cp.FencingToken && old.seq > cp.Seq) {
			return ErrLeaseLost
		}
	}
	var journal []byte
	if cp.JournalAt > 0 {
		if !live || cp.JournalAt > len(old.journal) {
			return ErrJournalGap
		}
		// Load hands out copies: the stored journal is the store's alone.
		journal = append(old.journal[:cp.JournalAt], cp.Journal...)
	} else {
		journal = bytes.Clone(cp.Journal)
	}
	expires := now.Add(ttl)
	c.ckpts[sk] = memCheckpoint{token: cp.FencingToken, seq: cp.Seq, data: bytes.Clone(cp.Data), journal: journal, expires: expires}
	if !fok {
		f = memFence{}
	}
	c.fences[dk] = memFence{token: max(f.token, cp.FencingToken), expires: latest(f.expires, expires)}
	if !now.Before(c.nextSweep) {
		for k, v := range c.ckpts {
			if !now.Before(v.expires) {
				delete(c.ckpts, k)
			}
		}
		for k, v := range c.fences {
			if !now.Before(v.expires) {
				delete(c.fences, k)
			}
		}
		c.nextSweep = now.Add(ttl)
	}
	return nil
}

// Load implements Checkpoints.
func (c *MemoryCheckpoints) Load(_ context.Context, tenant, deviceKey, sessionID string) (Checkpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sk := sessionRef{deviceRef{tenant, deviceKey}, sessionID}
	v, ok := c.ckpts[sk]
	if !ok || !c.now().Before(v.expires) {
		return Checkpoint{}, ErrNoCheckpoint
	}
	return Checkpoint{
		Tenant: tenant, DeviceKey: deviceKey, SessionID: sessionID,
		FencingToken: v.token, Seq: v.seq, Data: bytes.Clone(v.data), Journal: bytes.Clone(v.journal), Expires: v.expires,
	}, nil
}

// Delete implements Checkpoints.
func (c *MemoryCheckpoints) Delete(_ context.Context, tenant, deviceKey, sessionID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.ckpts, sessionRef{deviceRef{tenant, deviceKey}, sessionID})
	return nil
}

// MemoryRegistry is the in-process Registry.
type MemoryRegistry struct {
	now func() time.Time

	mu      sync.Mutex
	workers map[string]Worker // Expires set
}

var _ Registry = (*MemoryRegistry)(nil)

// Register implements Registry.
func (r *MemoryRegistry) Register(_ context.Context, w Worker, ttl time.Duration) error {
	if err := checkRegister(&w, ttl); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	w.Expires = now.Add(ttl)
	r.workers[w.ID] = w
	for id, v := range r.workers {
		if !now.Before(v.Expires) {
			delete(r.workers, id)
		}
	}
	return nil
}

// Deregister implements Registry.
func (r *MemoryRegistry) Deregister(_ context.Context, workerID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.workers, workerID)
	return nil
}

// Live implements Registry.
func (r *MemoryRegistry) Live(_ context.Context) ([]Worker, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	out := make([]Worker, 0, len(r.workers))
	for _, w := range r.workers {
		if now.Before(w.Expires) {
			out = append(out, w)
		}
	}
	slices.SortFunc(out, func(a, b Worker) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
