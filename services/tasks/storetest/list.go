package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/tasks/store"
)

// listAll pages through q with q.Limit records a page and returns the ids
// in order, failing on a repeat, a record of another tenant or a page
// out of order.
func listAll(t *testing.T, s store.Store, q store.Query) []string {
	t.Helper()
	var ids []string
	seen := map[string]bool{}
	var last *store.Record
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("List never ends")
		}
		page, err := s.List(ctxT(t), q)
		if err != nil {
			t.Fatalf("List(%+v): %v", q, err)
		}
		limit := q.Limit
		if limit == 0 {
			limit = 100
		}
		if len(page) > limit {
			t.Fatalf("List returned %d records, limit %d", len(page), limit)
		}
		for i := range page {
			r := &page[i]
			if seen[r.ID] {
				t.Fatalf("List returned %s twice", r.ID)
			}
			if r.Tenant != q.Tenant {
				t.Fatalf("List of tenant %s returned a record of %s", q.Tenant, r.Tenant)
			}
			if last != nil && !newer(last, r) {
				t.Fatalf("List order: %s (%v) before %s (%v)", last.ID, last.CreateTime, r.ID, r.CreateTime)
			}
			seen[r.ID] = true
			ids = append(ids, r.ID)
			last = r
		}
		if len(page) < limit {
			return ids
		}
		q.After = &store.Cursor{CreateTime: last.CreateTime, ID: last.ID}
	}
}

// newer reports whether a lists before b: newest first, then the higher id.
func newer(a, b *store.Record) bool {
	if !a.CreateTime.Equal(b.CreateTime) {
		return a.CreateTime.After(b.CreateTime)
	}
	return a.ID > b.ID
}

// expect returns the ids of recs that match keep, in listing order.
func expect(recs []store.Record, keep func(store.Record) bool) []string {
	var sel []store.Record
	for _, r := range recs {
		if keep(r) {
			sel = append(sel, r)
		}
	}
	slices.SortFunc(sel, func(a, b store.Record) int {
		if newer(&a, &b) {
			return -1
		}
		return 1
	})
	ids := make([]string, len(sel))
	for i, r := range sel {
		ids[i] = r.ID
	}
	return ids
}

func testListFilters(t *testing.T, s store.Store) {
	tenant, other := newTenant(), newTenant()
	devices := []string{"dA", "dB", "dC"}
	kinds := []string{"reboot", "download", "set_parameter_values"}
	var recs []store.Record
	for i := range 30 {
		r := rec(tenant, devices[i%3], base.Add(time.Duration(i%10)*time.Second+time.Duration(i)*time.Microsecond))
		r.Kind = kinds[(i/3)%3]
		r.State = int32(1 + i%4)
		recs = append(recs, create(t, s, r))
	}
	// Another tenant's records match every filter but the tenant.
	for i := range 5 {
		create(t, s, rec(other, "dA", base.Add(time.Duration(i)*time.Second)))
	}
	after, before := base.Add(3*time.Second), base.Add(7*time.Second)
	cases := []struct {
		name string
		q    store.Query
		keep func(store.Record) bool
	}{
		{"all", store.Query{}, func(store.Record) bool { return true }},
		{"device", store.Query{DeviceID: "dB"}, func(r store.Record) bool { return r.DeviceID == "dB" }},
		{"unknown device", store.Query{DeviceID: "dZ"}, func(store.Record) bool { return false }},
		{"one state", store.Query{States: []int32{2}}, func(r store.Record) bool { return r.State == 2 }},
		{"states", store.Query{States: []int32{1, 4}}, func(r store.Record) bool { return r.State == 1 || r.State == 4 }},
		{"kinds", store.Query{Kinds: []string{"download", "reboot"}}, func(r store.Record) bool { return r.Kind != "set_parameter_values" }},
		{"created after (inclusive)", store.Query{CreatedAfter: after}, func(r store.Record) bool { return !r.CreateTime.Before(ms(after)) }},
		{"created before (exclusive)", store.Query{CreatedBefore: before}, func(r store.Record) bool { return r.CreateTime.Before(ms(before)) }},
		{"created range", store.Query{CreatedAfter: after, CreatedBefore: before}, func(r store.Record) bool {
			return !r.CreateTime.Before(ms(after)) && r.CreateTime.Before(ms(before))
		}},
		{"everything", store.Query{DeviceID: "dA", States: []int32{1, 2, 3}, Kinds: []string{"reboot", "download"}, CreatedAfter: base.Add(time.Second)},
			func(r store.Record) bool {
				return r.DeviceID == "dA" && r.State <= 3 && r.Kind != "set_parameter_values" && !r.CreateTime.Before(ms(base.Add(time.Second)))
			}},
	}
	for _, c := range cases {
		for _, limit := range []int{0, 1, 4} {
			q := c.q
			q.Tenant, q.Limit = tenant, limit
			got := listAll(t, s, q)
			if w := expect(recs, c.keep); !slices.Equal(got, w) {
				t.Fatalf("%s, limit %d: got %d records %v, want %d %v", c.name, limit, len(got), got, len(w), w)
			}
		}
	}
	// List returns whole records.
	page, err := s.List(ctxT(t), store.Query{Tenant: tenant, Limit: 1})
	if err != nil || len(page) != 1 {
		t.Fatalf("List: %d, %v", len(page), err)
	}
	w := expect(recs, func(store.Record) bool { return true })[0]
	for _, r := range recs {
		if r.ID == w {
			mustMatch(t, "listed record", page[0], r)
		}
	}
}

// testListPaging pages through records created in one millisecond and
// across many, with records inserted between pages: nothing listed at the
// start is missed or repeated.
func testListPaging(t *testing.T, s store.Store) {
	tenant := newTenant()
	var recs []store.Record
	for i := range 47 {
		recs = append(recs, create(t, s, rec(tenant, "d", base.Add(time.Duration(i/5)*time.Millisecond))))
	}
	all := expect(recs, func(store.Record) bool { return true })
	for _, limit := range []int{1, 2, 5, 7, 46, 47, 48} {
		if got := listAll(t, s, store.Query{Tenant: tenant, Limit: limit}); !slices.Equal(got, all) {
			t.Fatalf("limit %d: got %v, want %v", limit, got, all)
		}
	}
	// Records created while a listing runs, newer than its first page, are
	// not part of it and disturb nothing.
	q := store.Query{Tenant: tenant, Limit: 10}
	var got []string
	for {
		page, err := s.List(ctxT(t), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			got = append(got, r.ID)
		}
		if len(page) < q.Limit {
			break
		}
		last := page[len(page)-1]
		q.After = &store.Cursor{CreateTime: last.CreateTime, ID: last.ID}
		create(t, s, rec(tenant, "d", base.Add(time.Hour)))
	}
	if !slices.Equal(got, all) {
		t.Fatalf("listing with inserts: got %v, want %v", got, all)
	}
}

// testListPagingEqualTimes has every record in one millisecond: the id
// orders them, and a cursor between equal times loses nothing.
func testListPagingEqualTimes(t *testing.T, s store.Store) {
	tenant := newTenant()
	var recs []store.Record
	for i := range 25 {
		// Sub-millisecond differences vanish in the store.
		recs = append(recs, create(t, s, rec(tenant, "d", base.Add(time.Duration(i)*time.Microsecond))))
	}
	all := expect(recs, func(store.Record) bool { return true })
	for _, limit := range []int{1, 3, 24, 25} {
		if got := listAll(t, s, store.Query{Tenant: tenant, Limit: limit}); !slices.Equal(got, all) {
			t.Fatalf("limit %d: got %v, want %v", limit, got, all)
		}
	}
	// A cursor whose time has sub-millisecond digits means the stored
	// millisecond.
	mid := recs[12]
	page, err := s.List(ctxT(t), store.Query{Tenant: tenant, After: &store.Cursor{CreateTime: base.Add(500 * time.Microsecond), ID: mid.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 12 || page[0].ID != recs[11].ID {
		t.Fatalf("after %s: %d records, want the 12 older ids", mid.ID, len(page))
	}
}

func testListLimit(t *testing.T, s store.Store) {
	tenant := newTenant()
	for i := range 105 {
		create(t, s, rec(tenant, fmt.Sprintf("d%d", i%2), base.Add(time.Duration(i)*time.Millisecond)))
	}
	page, err := s.List(ctxT(t), store.Query{Tenant: tenant})
	if err != nil || len(page) != 100 {
		t.Fatalf("List without a limit: %d records, %v; want 100", len(page), err)
	}
	page, err = s.List(ctxT(t), store.Query{Tenant: tenant, Limit: 1000})
	if err != nil || len(page) != 105 {
		t.Fatalf("List with limit 1000: %d records, %v; want 105", len(page), err)
	}
	if _, err := s.List(ctxT(t), store.Query{Tenant: tenant, Limit: -1}); err == nil || sentinel(err) {
		t.Fatalf("List with a negative limit: %v, want a plain error", err)
	}
	if _, err := s.List(ctxT(t), store.Query{}); err == nil || sentinel(err) {
		t.Fatalf("List without a tenant: %v, want a plain error", err)
	}
}

// dueBase is far from every other subtest's due times: Due sees all
// tenants.
var dueBase = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(runID) * time.Millisecond)

func testDue(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a, b := newTenant(), newTenant()
	var recs []store.Record
	for i := range 12 {
		tenant := a
		if i%2 == 1 {
			tenant = b
		}
		r := rec(tenant, "d", base)
		// Due times out of creation order, some in one millisecond.
		r.DueTime = dueBase.Add(time.Duration((i*7)%12)*time.Second + time.Duration(i)*time.Microsecond)
		recs = append(recs, create(t, s, r))
	}
	ended := rec(a, "d", base)
	ended.DueTime = time.Time{}
	create(t, s, ended)

	mine := func(got []store.Record) []store.Record {
		var out []store.Record
		for _, r := range got {
			if (r.Tenant == a || r.Tenant == b) && r.CreateTime.Equal(ms(base)) {
				out = append(out, r)
			}
		}
		return out
	}
	check := func(at time.Time, limit, want int) []store.Record {
		t.Helper()
		got, err := s.Due(ctx, at, limit)
		if err != nil {
			t.Fatalf("Due(%v, %d): %v", at, limit, err)
		}
		if len(got) > limit {
			t.Fatalf("Due(%v, %d) returned %d records", at, limit, len(got))
		}
		for i := 1; i < len(got); i++ {
			if got[i].DueTime.Before(got[i-1].DueTime) {
				t.Fatalf("Due order: %v before %v", got[i-1].DueTime, got[i].DueTime)
			}
		}
		for _, r := range got {
			if r.DueTime.IsZero() || r.DueTime.After(ms(at)) {
				t.Fatalf("Due(%v) returned a record due %v", at, r.DueTime)
			}
		}
		m := mine(got)
		if len(m) != want {
			t.Fatalf("Due(%v, %d): %d of this test's records, want %d", at, limit, len(m), want)
		}
		return m
	}
	check(dueBase.Add(-time.Millisecond), 100, 0)
	// Inclusive: the record due exactly at t is due.
	got := check(dueBase.Add(5*time.Second+3*time.Millisecond), 100, 6)
	for _, r := range got {
		for _, w := range recs {
			if w.ID == r.ID && w.Tenant == r.Tenant {
				mustMatch(t, "due record", r, w)
			}
		}
	}
	// Limit takes the oldest due first, across tenants.
	got = check(dueBase.Add(time.Hour), 3, 3)
	if !got[0].DueTime.Equal(ms(dueBase)) || got[2].DueTime.After(ms(dueBase.Add(2*time.Second+time.Millisecond))) {
		t.Fatalf("Due with limit 3 did not return the three oldest: %v %v %v", got[0].DueTime, got[1].DueTime, got[2].DueTime)
	}
	tenants := map[string]bool{}
	for _, r := range check(dueBase.Add(time.Hour), 100, 12) {
		tenants[r.Tenant] = true
	}
	if len(tenants) != 2 {
		t.Fatalf("Due returned records of %d tenants, want 2", len(tenants))
	}
	// Clearing the due time takes a record out.
	first := got[0]
	first.Version, first.DueTime = 2, time.Time{}
	if err := s.Update(ctx, first, 1); err != nil {
		t.Fatal(err)
	}
	check(dueBase.Add(time.Hour), 100, 11)
}

func testDeleteEnded(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant, other := newTenant(), newTenant()
	// Retention horizon far in the past, so that no other subtest's ended
	// record (all updated around base) is old enough.
	old := time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(runID) * time.Millisecond)
	var endedOld []store.Record
	for i := range 7 {
		tn := tenant
		if i%2 == 1 {
			tn = other
		}
		r := rec(tn, "d", old)
		r.UpdateTime = old.Add(time.Duration(i) * time.Second)
		r.DueTime = time.Time{}
		endedOld = append(endedOld, create(t, s, r))
	}
	// Ended but updated at the horizon (not before it), still running
	// (due) with an old update time, and ended recently: all kept.
	atHorizon := rec(tenant, "d", old)
	atHorizon.UpdateTime, atHorizon.DueTime = old.Add(time.Minute), time.Time{}
	create(t, s, atHorizon)
	running := rec(tenant, "d", old)
	create(t, s, running)
	recent := rec(tenant, "d", base)
	recent.DueTime = time.Time{}
	create(t, s, recent)

	horizon := old.Add(time.Minute + 900*time.Microsecond) // same millisecond as atHorizon
	n, err := s.DeleteEnded(ctx, horizon, 3)
	if err != nil || n != 3 {
		t.Fatalf("DeleteEnded(limit 3): %d, %v; want 3", n, err)
	}
	n, err = s.DeleteEnded(ctx, horizon, 100)
	if err != nil || n != 4 {
		t.Fatalf("DeleteEnded(limit 100): %d, %v; want the 4 left", n, err)
	}
	for _, r := range endedOld {
		if _, err := s.Get(ctx, r.Tenant, r.ID); err == nil {
			t.Fatalf("ended record %s/%s survived DeleteEnded", r.Tenant, r.ID)
		}
	}
	for _, r := range []store.Record{atHorizon, running, recent} {
		get(t, s, r.Tenant, r.ID)
	}
	if n, err := s.DeleteEnded(ctx, horizon, 100); err != nil || n != 0 {
		t.Fatalf("DeleteEnded again: %d, %v; want 0", n, err)
	}
	// A deleted record's idempotency key is free again.
	k := rec(tenant, "d", old)
	k.IdempotencyKey, k.DueTime = "reused", time.Time{}
	create(t, s, k)
	if n, err := s.DeleteEnded(ctx, old.Add(time.Millisecond), 100); err != nil || n != 1 {
		t.Fatalf("DeleteEnded of the keyed record: %d, %v", n, err)
	}
	k2 := rec(tenant, "d", base)
	k2.IdempotencyKey = "reused"
	create(t, s, k2)
}

func testBadLimits(t *testing.T, s store.Store) {
	for _, limit := range []int{0, -1} {
		if _, err := s.Due(ctxT(t), base, limit); err == nil || sentinel(err) {
			t.Errorf("Due with limit %d: %v, want a plain error", limit, err)
		}
		if _, err := s.DeleteEnded(ctxT(t), base, limit); err == nil || sentinel(err) {
			t.Errorf("DeleteEnded with limit %d: %v, want a plain error", limit, err)
		}
		if _, err := s.ChangedSince(ctxT(t), base, limit); err == nil || sentinel(err) {
			t.Errorf("ChangedSince with limit %d: %v, want a plain error", limit, err)
		}
	}
}

func testChangedSince(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a, b := newTenant(), newTenant()
	// Update times far from every other test's (and run's, by runID).
	since := time.Date(2101, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(runID) * time.Millisecond)
	at := func(tenant string, updated time.Time, running bool) store.Record {
		r := rec(tenant, "d", base)
		r.UpdateTime = updated
		if !running {
			r.DueTime = time.Time{}
		}
		return create(t, s, r)
	}
	before := at(a, since.Add(-time.Second), true)
	onTime := at(a, since, true)
	endedAfter := at(b, since.Add(time.Second), false)
	at(b, since.Add(-time.Millisecond), false)
	check := func(want ...store.Record) {
		t.Helper()
		got, err := s.ChangedSince(ctx, since, 1000)
		if err != nil {
			t.Fatal(err)
		}
		mine := map[string]store.Record{}
		for _, r := range got {
			if r.Tenant == a || r.Tenant == b {
				mine[r.ID] = r
			}
		}
		if len(mine) != len(want) {
			t.Fatalf("ChangedSince: %d of this test's records, want %d", len(mine), len(want))
		}
		for _, w := range want {
			r, ok := mine[w.ID]
			if !ok {
				t.Fatalf("ChangedSince misses %s (updated %v, due %v)", w.ID, w.UpdateTime, w.DueTime)
			}
			mustMatch(t, "changed record", r, w)
		}
	}
	// Inclusive, across tenants, running and ended alike.
	check(onTime, endedAfter)
	// An update brings a record in (here, as it ends).
	before.Version, before.UpdateTime, before.DueTime = 2, since.Add(2*time.Second), time.Time{}
	if err := s.Update(ctx, before, 1); err != nil {
		t.Fatal(err)
	}
	check(onTime, endedAfter, before)
	if got, err := s.ChangedSince(ctx, since, 1); err != nil || len(got) != 1 {
		t.Fatalf("ChangedSince with limit 1: %d records, %v", len(got), err)
	}
}
