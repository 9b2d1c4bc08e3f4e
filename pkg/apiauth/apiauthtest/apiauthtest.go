// Package apiauthtest is the conformance suite of apiauth.TokenStore (Run)
// and of apiauth.TokenReader (RunReader): one body of tests every adapter
// runs against its real backend (docs/style.md rule 3), and an in-memory
// store for units that need a store, which passes both.
package apiauthtest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
)

// Factory returns an empty, started store and registers its cleanup.
type Factory func(t *testing.T) apiauth.TokenStore

// Run runs the suite; every subtest gets a store of its own.
func Run(t *testing.T, newStore Factory) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, apiauth.TokenStore)
	}{
		{"CreateAndGet", testCreateGet},
		{"DuplicateID", testDuplicate},
		{"NotFound", testNotFound},
		{"Revoke", testRevoke},
		{"ListPages", testListPages},
		{"ListByTenant", testListByTenant},
		{"ListActive", testListActive},
		{"Concurrent", testConcurrent},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

// base has sub-millisecond digits: stores keep milliseconds.
var base = time.Date(2026, 5, 6, 7, 8, 9, 123_456_789, time.UTC)

func ms(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Millisecond)
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// record returns a record with id n (16 hex digits) and hash derived from n.
func record(n int, tenants ...string) apiauth.TokenRecord {
	r := apiauth.TokenRecord{
		ID:      fmt.Sprintf("%016x", n),
		Name:    fmt.Sprintf("token %d – für OSS", n),
		Role:    authv1.Role_ROLE_OPERATOR,
		Tenants: tenants,
		Creator: "token:00000000000000ff",
		Created: base,
	}
	for i := range r.Hash {
		r.Hash[i] = byte(n + i)
	}
	if len(tenants) == 0 {
		r.AllTenants = true
	}
	return r
}

func create(t *testing.T, s apiauth.TokenStore, r apiauth.TokenRecord) {
	t.Helper()
	if err := s.CreateToken(ctxT(t), r); err != nil {
		t.Fatalf("CreateToken(%s): %v", r.ID, err)
	}
}

func normal(r apiauth.TokenRecord) apiauth.TokenRecord {
	r.Created, r.Expires, r.Revoked = ms(r.Created), ms(r.Expires), ms(r.Revoked)
	if len(r.Tenants) == 0 {
		r.Tenants = nil
	}
	return r
}

func testCreateGet(t *testing.T, s apiauth.TokenStore) {
	r := record(1, "alpha", "beta")
	r.Expires = base.Add(90 * 24 * time.Hour)
	r.Role = authv1.Role_ROLE_ADMIN
	create(t, s, r)
	got, err := s.GetToken(ctxT(t), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := normal(r); !reflect.DeepEqual(normal(got), want) {
		t.Fatalf("GetToken = %+v\nwant       %+v", got, want)
	}
	all := record(2)
	create(t, s, all)
	got, err = s.GetToken(ctxT(t), all.ID)
	if err != nil || !got.AllTenants || len(got.Tenants) != 0 || !got.Expires.IsZero() || !got.Revoked.IsZero() {
		t.Fatalf("all-tenants token: %+v, %v", got, err)
	}
}

func testDuplicate(t *testing.T, s apiauth.TokenStore) {
	create(t, s, record(1, "alpha"))
	dup := record(1, "beta")
	dup.Hash[0] ^= 0xff
	if err := s.CreateToken(ctxT(t), dup); !errors.Is(err, apiauth.ErrTokenExists) {
		t.Fatalf("duplicate id: %v, want ErrTokenExists", err)
	}
	got, err := s.GetToken(ctxT(t), dup.ID)
	if err != nil || got.Tenants[0] != "alpha" {
		t.Fatalf("the duplicate changed the token: %+v, %v", got, err)
	}
}

func testNotFound(t *testing.T, s apiauth.TokenStore) {
	if _, err := s.GetToken(ctxT(t), "0123456789abcdef"); !errors.Is(err, apiauth.ErrTokenNotFound) {
		t.Fatalf("GetToken of an unknown id: %v", err)
	}
	if _, err := s.RevokeToken(ctxT(t), "0123456789abcdef", base); !errors.Is(err, apiauth.ErrTokenNotFound) {
		t.Fatalf("RevokeToken of an unknown id: %v", err)
	}
}

func testRevoke(t *testing.T, s apiauth.TokenStore) {
	r := record(7, "alpha")
	create(t, s, r)
	at := base.Add(time.Hour)
	got, err := s.RevokeToken(ctxT(t), r.ID, at)
	if err != nil || !got.Revoked.Equal(ms(at)) || got.ID != r.ID || got.Hash != r.Hash {
		t.Fatalf("RevokeToken: %+v, %v", got, err)
	}
	// Revoking again keeps the first time.
	got, err = s.RevokeToken(ctxT(t), r.ID, at.Add(time.Hour))
	if err != nil || !got.Revoked.Equal(ms(at)) {
		t.Fatalf("second RevokeToken: %+v, %v", got, err)
	}
	if got, _ = s.GetToken(ctxT(t), r.ID); !got.Revoked.Equal(ms(at)) || got.Active(at.Add(time.Hour)) {
		t.Fatalf("GetToken after revocation: %+v", got)
	}
}

func ids(recs []apiauth.TokenRecord) []string {
	out := make([]string, len(recs))
	for i := range recs {
		out[i] = recs[i].ID
	}
	return out
}

func list(t *testing.T, s apiauth.TokenStore, q apiauth.TokenQuery) []string {
	t.Helper()
	var out []string
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("ListTokens never ends")
		}
		recs, more, err := s.ListTokens(ctxT(t), q)
		if err != nil {
			t.Fatalf("ListTokens(%+v): %v", q, err)
		}
		if len(recs) > q.Limit {
			t.Fatalf("ListTokens returned %d records, limit %d", len(recs), q.Limit)
		}
		out = append(out, ids(recs)...)
		if !more {
			return out
		}
		if len(recs) == 0 {
			t.Fatal("ListTokens: more with an empty page")
		}
		q.After = recs[len(recs)-1].ID
	}
}

func testListPages(t *testing.T, s apiauth.TokenStore) {
	var want []string
	// Created out of order: listings are ordered by id.
	for _, n := range []int{5, 3, 9, 1, 7, 2, 8, 4, 6} {
		create(t, s, record(n, "alpha"))
	}
	for n := 1; n <= 9; n++ {
		want = append(want, fmt.Sprintf("%016x", n))
	}
	for _, limit := range []int{1, 2, 4, 9, 100} {
		if got := list(t, s, apiauth.TokenQuery{Limit: limit}); !slices.Equal(got, want) {
			t.Errorf("limit %d: %q, want %q", limit, got, want)
		}
	}
	recs, more, err := s.ListTokens(ctxT(t), apiauth.TokenQuery{Limit: 9})
	if err != nil || len(recs) != 9 || more {
		t.Errorf("an exact last page: %d records, more %v, %v", len(recs), more, err)
	}
	got, _, _ := s.ListTokens(ctxT(t), apiauth.TokenQuery{Limit: 1, After: want[4]})
	if !slices.Equal(ids(got), want[5:6]) || normal(got[0]).Name != record(6).Name {
		t.Errorf("after %s: %+v", want[4], got)
	}
}

func testListByTenant(t *testing.T, s apiauth.TokenStore) {
	create(t, s, record(1, "alpha"))
	create(t, s, record(2, "alpha", "beta"))
	create(t, s, record(3, "beta"))
	create(t, s, record(4)) // all tenants
	create(t, s, record(5, "gamma"))
	for tenant, want := range map[string][]int{
		"alpha": {1, 2, 4}, "beta": {2, 3, 4}, "gamma": {4, 5}, "delta": {4},
	} {
		var wantIDs []string
		for _, n := range want {
			wantIDs = append(wantIDs, fmt.Sprintf("%016x", n))
		}
		for _, limit := range []int{1, 3, 100} {
			if got := list(t, s, apiauth.TokenQuery{Tenant: tenant, Limit: limit}); !slices.Equal(got, wantIDs) {
				t.Errorf("tenant %s, limit %d: %q, want %q", tenant, limit, got, wantIDs)
			}
		}
	}
}

func testListActive(t *testing.T, s apiauth.TokenStore) {
	now := base.Add(24 * time.Hour)
	live := record(1, "alpha")
	expired := record(2, "alpha")
	expired.Expires = now
	future := record(3, "alpha")
	future.Expires = now.Add(time.Millisecond)
	revoked := record(4, "alpha")
	for _, r := range []apiauth.TokenRecord{live, expired, future, revoked} {
		create(t, s, r)
	}
	if _, err := s.RevokeToken(ctxT(t), revoked.ID, base); err != nil {
		t.Fatal(err)
	}
	want := []string{live.ID, future.ID}
	for _, q := range []apiauth.TokenQuery{{ActiveAt: now, Limit: 10}, {ActiveAt: now, Limit: 1}, {ActiveAt: now, Tenant: "alpha", Limit: 1}} {
		if got := list(t, s, q); !slices.Equal(got, want) {
			t.Errorf("%+v: %q, want %q", q, got, want)
		}
	}
	if got := list(t, s, apiauth.TokenQuery{Limit: 10}); len(got) != 4 {
		t.Errorf("without ActiveAt: %q, want all four", got)
	}
}

func testConcurrent(t *testing.T, s apiauth.TokenStore) {
	create(t, s, record(1, "alpha"))
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 20 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs <- s.CreateToken(ctxT(t), record(100+i, "alpha"))
		}()
		go func() {
			defer wg.Done()
			_, err := s.RevokeToken(ctxT(t), record(1).ID, base.Add(time.Duration(i)*time.Second))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := list(t, s, apiauth.TokenQuery{Limit: 1000}); len(got) != 21 {
		t.Fatalf("%d tokens after concurrent creation, want 21", len(got))
	}
}
