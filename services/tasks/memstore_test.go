package tasks

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetacs/fleetacs/services/tasks/store"
)

// memStore is an in-memory store.Store for the service's unit tests until
// the real adapters (sqlitestore) are on main; it keeps the port's
// contract: compare-and-swap on Version, idempotency keys per tenant.
type memStore struct {
	mu   sync.Mutex
	recs map[string]store.Record
}

var _ store.Store = (*memStore)(nil)

func newMemStore() *memStore { return &memStore{recs: map[string]store.Record{}} }

func key(tenant, id string) string { return tenant + "\x00" + id }

func (m *memStore) Start(context.Context) error { return nil }
func (m *memStore) Close() error                { return nil }

func (m *memStore) Create(_ context.Context, r store.Record) (store.Record, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.IdempotencyKey != "" {
		for _, o := range m.recs {
			if o.Tenant == r.Tenant && o.IdempotencyKey == r.IdempotencyKey {
				return o, true, nil
			}
		}
	}
	m.recs[key(r.Tenant, r.ID)] = r
	return r, false, nil
}

func (m *memStore) Get(_ context.Context, tenant, id string) (store.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[key(tenant, id)]
	if !ok {
		return store.Record{}, store.ErrNotFound
	}
	return r, nil
}

func (m *memStore) GetMany(_ context.Context, tenant string, ids []string) ([]store.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Record
	for _, id := range ids {
		if r, ok := m.recs[key(tenant, id)]; ok {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *memStore) List(_ context.Context, q store.Query) ([]store.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Record
	for _, r := range m.recs {
		switch {
		case r.Tenant != q.Tenant, q.DeviceID != "" && r.DeviceID != q.DeviceID,
			len(q.States) > 0 && !slices.Contains(q.States, r.State),
			len(q.Kinds) > 0 && !slices.Contains(q.Kinds, r.Kind),
			!q.CreatedAfter.IsZero() && r.CreateTime.Before(q.CreatedAfter),
			!q.CreatedBefore.IsZero() && !r.CreateTime.Before(q.CreatedBefore):
			continue
		}
		if q.After != nil && !before(r, *q.After) {
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b store.Record) int {
		if c := b.CreateTime.Compare(a.CreateTime); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	limit := q.Limit
	if limit == 0 {
		limit = 100
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// before: r comes after the cursor in newest-first order.
func before(r store.Record, c store.Cursor) bool {
	if !r.CreateTime.Equal(c.CreateTime) {
		return r.CreateTime.Before(c.CreateTime)
	}
	return r.ID < c.ID
}

func (m *memStore) Update(_ context.Context, r store.Record, expect uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.recs[key(r.Tenant, r.ID)]
	if !ok {
		return store.ErrNotFound
	}
	if o.Version != expect || r.Version != expect+1 {
		return store.ErrVersionConflict
	}
	m.recs[key(r.Tenant, r.ID)] = r
	return nil
}

func (m *memStore) Due(_ context.Context, t time.Time, limit int) ([]store.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Record
	for _, r := range m.recs {
		if !r.DueTime.IsZero() && !r.DueTime.After(t) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b store.Record) int { return a.DueTime.Compare(b.DueTime) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (m *memStore) DeleteEnded(_ context.Context, t time.Time, limit int) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k, r := range m.recs {
		if n < limit && r.DueTime.IsZero() && r.UpdateTime.Before(t) {
			delete(m.recs, k)
			n++
		}
	}
	return n, nil
}
