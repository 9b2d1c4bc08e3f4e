package apiauthtest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
)

// MemoryStore is an apiauth.TokenStore in memory, for unit tests that need
// a store; it passes Run. Its calls count GetToken reads, so that tests see
// what the verifier's cache saves.
type MemoryStore struct {
	mu     sync.Mutex
	tokens map[string]apiauth.TokenRecord
	gets   int
	// Err, when set, fails every call, as an unreachable store does.
	err error
}

var _ apiauth.TokenStore = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore { return &MemoryStore{tokens: map[string]apiauth.TokenRecord{}} }

// SetErr makes every call fail with err (nil: succeed again).
func (m *MemoryStore) SetErr(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
}

// Gets is the number of GetToken calls so far.
func (m *MemoryStore) Gets() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gets
}

func trunc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Millisecond)
}

func clone(r apiauth.TokenRecord) apiauth.TokenRecord {
	r.Tenants = slices.Clone(r.Tenants)
	r.Created, r.Expires, r.Revoked = trunc(r.Created), trunc(r.Expires), trunc(r.Revoked)
	return r
}

// CreateToken implements apiauth.TokenStore.
func (m *MemoryStore) CreateToken(_ context.Context, r apiauth.TokenRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	if _, ok := m.tokens[r.ID]; ok {
		return fmt.Errorf("create token %s: %w", r.ID, apiauth.ErrTokenExists)
	}
	m.tokens[r.ID] = clone(r)
	return nil
}

// GetToken implements apiauth.TokenStore.
func (m *MemoryStore) GetToken(_ context.Context, id string) (apiauth.TokenRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets++
	if m.err != nil {
		return apiauth.TokenRecord{}, m.err
	}
	r, ok := m.tokens[id]
	if !ok {
		return apiauth.TokenRecord{}, fmt.Errorf("get token %s: %w", id, apiauth.ErrTokenNotFound)
	}
	return clone(r), nil
}

// ListTokens implements apiauth.TokenStore.
func (m *MemoryStore) ListTokens(_ context.Context, q apiauth.TokenQuery) ([]apiauth.TokenRecord, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, false, m.err
	}
	var out []apiauth.TokenRecord
	for _, r := range m.tokens {
		switch {
		case r.ID <= q.After:
		case q.Tenant != "" && !r.AllTenants && !slices.Contains(r.Tenants, q.Tenant):
		case !q.ActiveAt.IsZero() && !r.Active(q.ActiveAt):
		default:
			out = append(out, clone(r))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if len(out) > q.Limit {
		return out[:q.Limit], true, nil
	}
	return out, false, nil
}

// RevokeToken implements apiauth.TokenStore.
func (m *MemoryStore) RevokeToken(_ context.Context, id string, at time.Time) (apiauth.TokenRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return apiauth.TokenRecord{}, m.err
	}
	r, ok := m.tokens[id]
	if !ok {
		return apiauth.TokenRecord{}, fmt.Errorf("revoke token %s: %w", id, apiauth.ErrTokenNotFound)
	}
	if r.Revoked.IsZero() {
		r.Revoked = trunc(at)
		m.tokens[id] = r
	}
	return clone(r), nil
}
