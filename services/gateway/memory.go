package gateway

import (
	"context"
	"sync"
	"time"
)

// In-memory adapters of the gateway's ports, for a single process (where no
// other gateway needs to see the records) and for tests.

// MemoryAffinity is an Affinity kept in process memory. Expired records are
// dropped when met and by a sweep at most once per TTL.
type MemoryAffinity struct {
	now func() time.Time

	mu        sync.Mutex
	bySession map[string]affinityEntry
	byIP      map[string]map[string]struct{}
	nextSweep time.Time
}

type affinityEntry struct {
	rec     SessionRecord
	expires time.Time
}

var _ Affinity = (*MemoryAffinity)(nil)

// NewMemoryAffinity returns an empty MemoryAffinity reading time from now
// (time.Now when nil).
func NewMemoryAffinity(now func() time.Time) *MemoryAffinity {
	if now == nil {
		now = time.Now
	}
	return &MemoryAffinity{now: now, bySession: map[string]affinityEntry{}, byIP: map[string]map[string]struct{}{}}
}

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
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if old, ok := a.bySession[rec.SessionID]; ok && old.rec.ClientIP != rec.ClientIP {
		a.unindexLocked(old.rec)
	}
	a.bySession[rec.SessionID] = affinityEntry{rec: rec, expires: now.Add(ttl)}
	if rec.ClientIP != "" {
		set := a.byIP[rec.ClientIP]
		if set == nil {
			set = map[string]struct{}{}
			a.byIP[rec.ClientIP] = set
		}
		set[rec.SessionID] = struct{}{}
	}
	if !now.Before(a.nextSweep) {
		// Sessions whose CPE vanished are never looked up again; sweep them
		// so memory follows the open sessions, not all sessions ever.
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

// MemoryLeases is a Leases kept in process memory, for one process that
// runs both gateway and workers. Fencing tokens continue from the clock's
// nanoseconds, so that they keep growing across restarts (the inventory
// rejects writes with a token older than the newest it recorded) as long as
// the wall clock does not step back.
type MemoryLeases struct {
	now func() time.Time

	mu        sync.Mutex
	lastToken uint64
	leases    map[leaseKey]memLease
}

type leaseKey struct{ tenant, device string }

type memLease struct {
	session string
	token   uint64
	expires time.Time
}

var _ Leases = (*MemoryLeases)(nil)

// NewMemoryLeases returns a MemoryLeases reading time from now (time.Now
// when nil).
func NewMemoryLeases(now func() time.Time) *MemoryLeases {
	if now == nil {
		now = time.Now
	}
	return &MemoryLeases{now: now, leases: map[leaseKey]memLease{}}
}

// Acquire implements Leases.
func (l *MemoryLeases) Acquire(_ context.Context, tenant, deviceKey, sessionID string, ttl time.Duration) (Lease, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	k := leaseKey{tenant, deviceKey}
	var superseded string
	if old, ok := l.leases[k]; ok && old.session != sessionID && now.Before(old.expires) {
		superseded = old.session
	}
	l.lastToken = max(l.lastToken+1, uint64(max(now.UnixNano(), 0)))
	lease := memLease{session: sessionID, token: l.lastToken, expires: now.Add(ttl)}
	l.leases[k] = lease
	return Lease{FencingToken: lease.token, Expires: lease.expires, Superseded: superseded}, nil
}

// Renew extends the lease if sessionID still holds it, reporting whether it
// does (for in-process workers).
func (l *MemoryLeases) Renew(_ context.Context, tenant, deviceKey, sessionID string, ttl time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := leaseKey{tenant, deviceKey}
	old, ok := l.leases[k]
	if !ok || old.session != sessionID {
		return false
	}
	old.expires = l.now().Add(ttl)
	l.leases[k] = old
	return true
}

// Release implements Leases.
func (l *MemoryLeases) Release(_ context.Context, tenant, deviceKey, sessionID string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := leaseKey{tenant, deviceKey}
	if old, ok := l.leases[k]; ok && old.session == sessionID {
		delete(l.leases, k)
	}
	return nil
}

// Holder returns the session holding the device's live lease, if any.
func (l *MemoryLeases) Holder(tenant, deviceKey string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old, ok := l.leases[leaseKey{tenant, deviceKey}]
	if !ok || !l.now().Before(old.expires) {
		return "", false
	}
	return old.session, true
}

// StaticCredentials is a Credentials held in memory, keyed by tenant and
// device key.
type StaticCredentials struct {
	mu    sync.RWMutex
	creds map[leaseKey]Credential
}

var _ Credentials = (*StaticCredentials)(nil)

// NewStaticCredentials returns an empty StaticCredentials.
func NewStaticCredentials() *StaticCredentials {
	return &StaticCredentials{creds: map[leaseKey]Credential{}}
}

// Set records the credentials of a device.
func (s *StaticCredentials) Set(tenant, deviceKey string, c Credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creds[leaseKey{tenant, deviceKey}] = c
}

// CPECredentials implements Credentials.
func (s *StaticCredentials) CPECredentials(_ context.Context, tenant, deviceKey string) (Credential, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.creds[leaseKey{tenant, deviceKey}]
	return c, ok, nil
}
