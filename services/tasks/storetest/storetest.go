// Package storetest is the contract suite of the task store port
// (services/tasks/store): one body of tests that every store.Store adapter
// runs against its real backend (docs/style.md rule 3). An adapter's test
// calls Run with a function that opens a started store.
//
// open must return an empty store each time: Due and DeleteEnded see every
// tenant, so their subtests count what the whole store holds. (Subtests
// still work in tenants of their own.)
//
// What the suite holds every adapter to, beyond the port's comments:
//   - times read back in UTC, truncated to the millisecond (MongoDB's
//     precision), and a zero DueTime reads back zero;
//   - Body and Secret read back byte for byte, an empty slice as nil;
//   - Update keeps the stored Tenant, ID, DeviceID, CreateTime and
//     IdempotencyKey whatever r holds;
//   - a record or query that breaks the port's rules (Version, empty
//     tenant or id, zero CreateTime or UpdateTime, a number above
//     math.MaxInt64, a negative Query.Limit, a limit of Due or DeleteEnded
//     below 1) is refused with an error that is none of the port's
//     sentinels.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/tasks/store"
)

// Run runs the whole contract suite. open returns a started store and
// registers its own cleanup with t.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"StartIsIdempotent", testStartIdempotent},
		{"CreateAndGet", testCreateAndGet},
		{"CreateRejectsBadRecords", testCreateRejects},
		{"CreateDuplicateID", testCreateDuplicateID},
		{"GetMany", testGetMany},
		{"IdempotencyKey", testIdempotencyKey},
		{"IdempotencyKeyConcurrent", testIdempotencyConcurrent},
		{"TenantIsolation", testTenantIsolation},
		{"BytesRoundTrip", testBytes},
		{"LargeBody", testLargeBody},
		{"TimePrecision", testTimePrecision},
		{"Update", testUpdate},
		{"UpdateKeepsImmutableFields", testUpdateImmutable},
		{"UpdateConflicts", testUpdateConflicts},
		{"UpdateConcurrent", testUpdateConcurrent},
		{"ListFilters", testListFilters},
		{"ListPaging", testListPaging},
		{"ListPagingEqualTimes", testListPagingEqualTimes},
		{"ListLimit", testListLimit},
		{"Due", testDue},
		{"DeleteEnded", testDeleteEnded},
		{"ChangedSince", testChangedSince},
		{"BadLimits", testBadLimits},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

var tenantSeq atomic.Int64

// runID keeps tenants of separate runs against one database apart.
var runID = time.Now().UnixNano() % 1e9

// newTenant returns a tenant no other subtest uses.
func newTenant() string {
	return fmt.Sprintf("t%d-%d", runID, tenantSeq.Add(1))
}

var idSeq atomic.Int64

// newID returns a 26-character id, unique in the test binary, that sorts
// after every id returned before it (as the service's time-ordered ids do).
func newID() string {
	return fmt.Sprintf("01T%09d%014d", runID, idSeq.Add(1))
}

// base has sub-millisecond digits, to check that every adapter keeps the
// same precision.
var base = time.Date(2025, 3, 4, 5, 6, 7, 123_456_789, time.UTC)

// ms is how a stored time reads back.
func ms(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// rec returns a valid new record of tenant on device dev.
func rec(tenant, dev string, created time.Time) store.Record {
	return store.Record{
		Tenant:     tenant,
		ID:         newID(),
		DeviceID:   dev,
		State:      1,
		Kind:       "reboot",
		CreateTime: created,
		UpdateTime: created,
		DueTime:    created.Add(time.Hour),
		Version:    1,
		Body:       []byte("body-" + dev),
	}
}

// want is r as a store returns it.
func want(r store.Record) store.Record {
	r.CreateTime, r.UpdateTime, r.DueTime = ms(r.CreateTime), ms(r.UpdateTime), ms(r.DueTime)
	if len(r.Body) == 0 {
		r.Body = nil
	}
	if len(r.Secret) == 0 {
		r.Secret = nil
	}
	return r
}

// diff describes how got differs from want, or is empty.
func diff(got, want store.Record) string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s = %v, want %v", field, g, w)) }
	if got.Tenant != want.Tenant {
		add("Tenant", got.Tenant, want.Tenant)
	}
	if got.ID != want.ID {
		add("ID", got.ID, want.ID)
	}
	if got.DeviceID != want.DeviceID {
		add("DeviceID", got.DeviceID, want.DeviceID)
	}
	if got.State != want.State {
		add("State", got.State, want.State)
	}
	if got.Kind != want.Kind {
		add("Kind", got.Kind, want.Kind)
	}
	if got.IdempotencyKey != want.IdempotencyKey {
		add("IdempotencyKey", got.IdempotencyKey, want.IdempotencyKey)
	}
	for _, f := range []struct {
		name string
		g, w time.Time
	}{{"CreateTime", got.CreateTime, want.CreateTime}, {"UpdateTime", got.UpdateTime, want.UpdateTime}, {"DueTime", got.DueTime, want.DueTime}} {
		if !f.g.Equal(f.w) || f.g.IsZero() != f.w.IsZero() {
			add(f.name, f.g, f.w)
		} else if !f.g.IsZero() && f.g.Location() != time.UTC {
			add(f.name+".Location()", f.g.Location(), time.UTC)
		}
	}
	if got.QueueSeq != want.QueueSeq {
		add("QueueSeq", got.QueueSeq, want.QueueSeq)
	}
	if got.Version != want.Version {
		add("Version", got.Version, want.Version)
	}
	for _, f := range []struct {
		name string
		g, w []byte
	}{{"Body", got.Body, want.Body}, {"Secret", got.Secret, want.Secret}} {
		if !bytes.Equal(f.g, f.w) || (f.g == nil) != (f.w == nil) {
			add(f.name, short(f.g), short(f.w))
		}
	}
	return fmt.Sprint(d)[1 : len(fmt.Sprint(d))-1]
}

func short(b []byte) string {
	if b == nil {
		return "nil"
	}
	if len(b) > 40 {
		return fmt.Sprintf("%q... (%d bytes)", b[:40], len(b))
	}
	return fmt.Sprintf("%q", b)
}

func create(t *testing.T, s store.Store, r store.Record) store.Record {
	t.Helper()
	got, existing, err := s.Create(ctxT(t), r)
	if err != nil {
		t.Fatalf("Create(%s/%s): %v", r.Tenant, r.ID, err)
	}
	if existing {
		t.Fatalf("Create(%s/%s) reported an existing record", r.Tenant, r.ID)
	}
	if d := diff(got, want(r)); d != "" {
		t.Fatalf("Create(%s/%s) returned %s", r.Tenant, r.ID, d)
	}
	return got
}

func get(t *testing.T, s store.Store, tenant, id string) store.Record {
	t.Helper()
	r, err := s.Get(ctxT(t), tenant, id)
	if err != nil {
		t.Fatalf("Get(%s/%s): %v", tenant, id, err)
	}
	return r
}

func mustMatch(t *testing.T, what string, got, w store.Record) {
	t.Helper()
	if d := diff(got, w); d != "" {
		t.Fatalf("%s: %s", what, d)
	}
}

// sentinel reports whether err is one of the port's errors.
func sentinel(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrVersionConflict) || errors.Is(err, store.ErrUnavailable)
}

func testStartIdempotent(t *testing.T, s store.Store) {
	if err := s.Start(ctxT(t)); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	r := rec(newTenant(), "dev", base)
	create(t, s, r)
	mustMatch(t, "Get after a second Start", get(t, s, r.Tenant, r.ID), want(r))
}

func testCreateAndGet(t *testing.T, s store.Store) {
	tenant := newTenant()
	r := rec(tenant, "ACME-R-0001", base)
	r.State, r.Kind, r.QueueSeq = 3, "set_parameter_values", 0
	r.Secret = []byte{0, 1, 2, 0xff}
	create(t, s, r)
	mustMatch(t, "Get", get(t, s, tenant, r.ID), want(r))

	// A record with every optional field empty: no due time, no key,
	// no secret, an empty body.
	bare := store.Record{Tenant: tenant, ID: newID(), CreateTime: base, UpdateTime: base, Version: 1}
	create(t, s, bare)
	mustMatch(t, "Get of a bare record", get(t, s, tenant, bare.ID), want(bare))

	// Large numbers survive.
	big := rec(tenant, "dev", base)
	big.QueueSeq, big.State = 1<<62+5, 1<<30
	create(t, s, big)
	mustMatch(t, "Get of large numbers", get(t, s, tenant, big.ID), want(big))

	if _, err := s.Get(ctxT(t), tenant, newID()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of a missing id: %v, want ErrNotFound", err)
	}
}

func testCreateRejects(t *testing.T, s store.Store) {
	tenant := newTenant()
	for name, mutate := range map[string]func(*store.Record){
		"version 0":          func(r *store.Record) { r.Version = 0 },
		"version 2":          func(r *store.Record) { r.Version = 2 },
		"empty tenant":       func(r *store.Record) { r.Tenant = "" },
		"empty id":           func(r *store.Record) { r.ID = "" },
		"zero create time":   func(r *store.Record) { r.CreateTime = time.Time{} },
		"zero update time":   func(r *store.Record) { r.UpdateTime = time.Time{} },
		"queue seq too high": func(r *store.Record) { r.QueueSeq = 1 << 63 },
	} {
		r := rec(tenant, "dev", base)
		mutate(&r)
		_, _, err := s.Create(ctxT(t), r)
		if err == nil || sentinel(err) {
			t.Errorf("Create with %s: %v, want a plain error", name, err)
		}
		if r.Tenant != "" && r.ID != "" {
			if _, err := s.Get(ctxT(t), r.Tenant, r.ID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("record refused (%s) was stored: %v", name, err)
			}
		}
	}
}

func testCreateDuplicateID(t *testing.T, s store.Store) {
	tenant := newTenant()
	r := rec(tenant, "dev", base)
	create(t, s, r)
	again := r
	again.DeviceID, again.Body = "other", []byte("other")
	if _, existing, err := s.Create(ctxT(t), again); err == nil || existing {
		t.Fatalf("Create of an existing id without a key: existing %v, err %v; want an error", existing, err)
	}
	mustMatch(t, "Get after a refused duplicate", get(t, s, tenant, r.ID), want(r))
}

func testGetMany(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant, other := newTenant(), newTenant()
	byID := map[string]store.Record{}
	var ids []string
	for i := range 5 {
		r := create(t, s, rec(tenant, fmt.Sprintf("d%d", i), base.Add(time.Duration(i)*time.Second)))
		byID[r.ID] = r
		ids = append(ids, r.ID)
	}
	foreign := create(t, s, rec(other, "d", base))
	ask := []string{ids[3], newID(), ids[0], foreign.ID, ids[3], ids[4]}
	got, err := s.GetMany(ctx, tenant, ask)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	seen := map[string]bool{}
	for _, r := range got {
		w, ok := byID[r.ID]
		if !ok || seen[r.ID] {
			t.Fatalf("GetMany returned %s/%s (unexpected or twice)", r.Tenant, r.ID)
		}
		seen[r.ID] = true
		mustMatch(t, "GetMany record", r, w)
	}
	if len(seen) != 3 {
		t.Fatalf("GetMany returned %d records, want 3 (ids %s, %s, %s)", len(seen), ids[0], ids[3], ids[4])
	}
	if got, err := s.GetMany(ctx, tenant, nil); err != nil || len(got) != 0 {
		t.Fatalf("GetMany of no ids: %d records, %v", len(got), err)
	}
	// Many ids at once (a session claims all its device's tasks).
	many := make([]string, 0, 1200)
	for range 1200 {
		many = append(many, newID())
	}
	many = append(many, ids[1])
	if got, err := s.GetMany(ctx, tenant, many); err != nil || len(got) != 1 || got[0].ID != ids[1] {
		t.Fatalf("GetMany of 1201 ids: %d records, %v", len(got), err)
	}
}

func testIdempotencyKey(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant, other := newTenant(), newTenant()
	first := rec(tenant, "d1", base)
	first.IdempotencyKey = "order-42"
	create(t, s, first)

	second := rec(tenant, "d2", base.Add(time.Second))
	second.IdempotencyKey = "order-42"
	got, existing, err := s.Create(ctx, second)
	if err != nil || !existing {
		t.Fatalf("Create with a used key: existing %v, err %v", existing, err)
	}
	mustMatch(t, "Create with a used key returns the first record", got, want(first))
	if _, err := s.Get(ctx, tenant, second.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the second record was stored: %v", err)
	}

	// The key is per tenant.
	elsewhere := rec(other, "d1", base)
	elsewhere.IdempotencyKey = "order-42"
	create(t, s, elsewhere)

	// Records without a key never collide with each other.
	for range 3 {
		create(t, s, rec(tenant, "d3", base))
	}
	// A key that looks like another record's id is only a key.
	odd := rec(tenant, "d4", base)
	odd.IdempotencyKey = first.ID
	create(t, s, odd)

	// The key survives updates and keeps working after them.
	up := want(first)
	up.State, up.Version, up.UpdateTime = 4, 2, ms(base.Add(time.Minute))
	if err := s.Update(ctx, up, 1); err != nil {
		t.Fatalf("Update: %v", err)
	}
	got, existing, err = s.Create(ctx, second)
	if err != nil || !existing || got.Version != 2 || got.ID != first.ID {
		t.Fatalf("Create with a used key after an update: %s v%d existing %v, err %v", got.ID, got.Version, existing, err)
	}
}

func testIdempotencyConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	const n = 16
	type result struct {
		r        store.Record
		existing bool
		err      error
	}
	results := make([]result, n)
	start := make(chan struct{})
	done := make(chan struct{})
	for i := range n {
		go func() {
			defer func() { done <- struct{}{} }()
			r := rec(tenant, fmt.Sprintf("d%d", i), base)
			r.IdempotencyKey = "same"
			<-start
			got, existing, err := s.Create(ctx, r)
			results[i] = result{got, existing, err}
		}()
	}
	close(start)
	for range n {
		<-done
	}
	var winner string
	created := 0
	for i, res := range results {
		if res.err != nil {
			t.Fatalf("creator %d: %v", i, res.err)
		}
		if !res.existing {
			created++
		}
		if winner == "" {
			winner = res.r.ID
		} else if res.r.ID != winner {
			t.Fatalf("creators saw records %s and %s for one key", winner, res.r.ID)
		}
	}
	if created != 1 {
		t.Fatalf("%d creators created a record, want exactly 1", created)
	}
	all, err := s.List(ctx, store.Query{Tenant: tenant})
	if err != nil || len(all) != 1 || all[0].ID != winner {
		t.Fatalf("tenant holds %d records (%v), want only %s", len(all), err, winner)
	}
}

func testTenantIsolation(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a, b := newTenant(), newTenant()
	r := create(t, s, rec(a, "dev", base))
	if _, err := s.Get(ctx, b, r.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get from another tenant: %v, want ErrNotFound", err)
	}
	if got, err := s.GetMany(ctx, b, []string{r.ID}); err != nil || len(got) != 0 {
		t.Fatalf("GetMany from another tenant: %d records, %v", len(got), err)
	}
	if got, err := s.List(ctx, store.Query{Tenant: b}); err != nil || len(got) != 0 {
		t.Fatalf("List of another tenant: %d records, %v", len(got), err)
	}
	up := r
	up.Tenant, up.Version, up.State = b, 2, 9
	if err := s.Update(ctx, up, 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Update from another tenant: %v, want ErrNotFound", err)
	}
	// The same id in two tenants is two records.
	twin := rec(b, "other", base)
	twin.ID = r.ID
	create(t, s, twin)
	mustMatch(t, "tenant a's record", get(t, s, a, r.ID), r)
	mustMatch(t, "tenant b's record", get(t, s, b, r.ID), want(twin))
}

func testBytes(t *testing.T, s store.Store) {
	tenant := newTenant()
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for name, c := range map[string]struct{ body, secret []byte }{
		"every byte value":    {all, all[:32]},
		"nil":                 {nil, nil},
		"empty reads as nil":  {[]byte{}, []byte{}},
		"zero bytes":          {[]byte{0, 0, 0}, []byte{0}},
		"invalid utf-8":       {[]byte{0xc3, 0x28, 0xa0, 0xa1}, []byte{0xfe, 0xff}},
		"text with a quote":   {[]byte(`{"$set": 1}'`), []byte("x")},
		"body without secret": {[]byte("b"), nil},
	} {
		r := rec(tenant, "dev", base)
		r.Body, r.Secret = c.body, c.secret
		create(t, s, r)
		mustMatch(t, name, get(t, s, tenant, r.ID), want(r))
		// An update may add, change and drop a secret.
		up := want(r)
		up.Version, up.Body, up.Secret = 2, c.secret, c.body
		if err := s.Update(ctxT(t), up, 1); err != nil {
			t.Fatalf("%s: Update: %v", name, err)
		}
		mustMatch(t, name+" after Update", get(t, s, tenant, r.ID), want(up))
	}
}

func testLargeBody(t *testing.T, s store.Store) {
	tenant := newTenant()
	r := rec(tenant, "dev", base)
	r.Body = make([]byte, 1<<20)
	for i := range r.Body {
		r.Body[i] = byte(i * 7 >> 3)
	}
	r.Secret = bytes.Repeat([]byte{0xa5}, 4096)
	create(t, s, r)
	mustMatch(t, "1 MiB body", get(t, s, tenant, r.ID), want(r))
	up := want(r)
	up.Version = 2
	up.Body = append(bytes.Clone(r.Body), 1, 2, 3)
	if err := s.Update(ctxT(t), up, 1); err != nil {
		t.Fatalf("Update of a 1 MiB body: %v", err)
	}
	got, err := s.GetMany(ctxT(t), tenant, []string{r.ID})
	if err != nil || len(got) != 1 {
		t.Fatalf("GetMany: %d, %v", len(got), err)
	}
	mustMatch(t, "1 MiB body after Update", got[0], want(up))
}

func testTimePrecision(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	r := rec(tenant, "dev", base)
	r.UpdateTime = base.Add(999_999 * time.Nanosecond) // the same millisecond
	r.DueTime = time.Date(2025, 3, 4, 5, 6, 7, 1_999_999, time.FixedZone("X", 3600))
	create(t, s, r)
	got := get(t, s, tenant, r.ID)
	mustMatch(t, "times", got, want(r))
	if !got.CreateTime.Equal(time.Date(2025, 3, 4, 5, 6, 7, 123_000_000, time.UTC)) {
		t.Fatalf("CreateTime %v: want it truncated to the millisecond", got.CreateTime)
	}
	// A time before 1970 and one far ahead keep their millisecond too.
	old := rec(tenant, "dev", time.Date(1969, 12, 31, 23, 59, 59, 500_400_000, time.UTC))
	old.DueTime = time.Date(2999, 1, 1, 0, 0, 0, 7_000_000, time.UTC)
	create(t, s, old)
	mustMatch(t, "old and far times", get(t, s, tenant, old.ID), want(old))

	// Filters and cursors compare at the stored precision: a bound with
	// sub-millisecond digits in the record's millisecond.
	list, err := s.List(ctx, store.Query{Tenant: tenant, CreatedAfter: base, CreatedBefore: base.Add(time.Millisecond)})
	if err != nil || len(list) != 1 || list[0].ID != r.ID {
		t.Fatalf("List in the record's millisecond: %d records, %v", len(list), err)
	}
	due, err := s.Due(ctx, r.DueTime, 1000)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range due {
		found = found || d.Tenant == tenant && d.ID == r.ID
	}
	if !found {
		t.Fatalf("Due at the record's own due time (sub-millisecond) misses it")
	}
}
