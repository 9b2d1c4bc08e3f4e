// Package presetstoretest is the contract suite of the preset store port
// (services/inventory/presetstore): every adapter runs it against its real
// backend. open returns a started, empty store and registers its cleanup.
package presetstoretest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/inventory/presetstore"
)

// Run runs the suite.
func Run(t *testing.T, open func(t *testing.T) presetstore.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, presetstore.Store)
	}{
		{"PutGetRevisions", testPutGet},
		{"ExpectedRevision", testExpected},
		{"ListPaging", testList},
		{"DeleteForgetsHistory", testDelete},
		{"SetAndSetRevision", testSet},
		{"TenantIsolation", testTenants},
		{"ConcurrentPuts", testConcurrent},
		{"HistoryBound", testHistoryBound},
		{"EnsureSecrets", testEnsureSecrets},
		{"ResealSecrets", testResealSecrets},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			if err := s.Start(t.Context()); err != nil {
				t.Fatalf("second Start: %v", err)
			}
			tc.fn(t, s)
		})
	}
}

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 891_234_567, time.UTC)

func put(t *testing.T, s presetstore.Store, tenant, name string, body string, expected *uint64) presetstore.Record {
	t.Helper()
	r, err := s.Put(t.Context(), presetstore.Put{Tenant: tenant, Name: name, Enabled: true, Body: []byte(body), Time: t0, By: "token:a", Expected: expected})
	if err != nil {
		t.Fatalf("put %s/%s: %v", tenant, name, err)
	}
	return r
}

func ptr(v uint64) *uint64 { return &v }

func testPutGet(t *testing.T, s presetstore.Store) {
	r1 := put(t, s, "t1", "wifi", "one", nil)
	r2 := put(t, s, "t1", "wifi", "two", nil)
	if r1.Revision != 1 || r2.Revision != 2 {
		t.Fatalf("revisions %d, %d; want 1, 2", r1.Revision, r2.Revision)
	}
	got, err := s.Get(t.Context(), "t1", "wifi", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := presetstore.Record{Tenant: "t1", Name: "wifi", Revision: 2, Enabled: true, Body: []byte("two"),
		UpdateTime: t0.Truncate(time.Millisecond), UpdatedBy: "token:a"}
	if !same(got, want) {
		t.Fatalf("get: %+v, want %+v", got, want)
	}
	old, err := s.Get(t.Context(), "t1", "wifi", 1)
	if err != nil || string(old.Body) != "one" || old.Revision != 1 {
		t.Fatalf("get revision 1: %+v, %v", old, err)
	}
	if _, err := s.Get(t.Context(), "t1", "wifi", 3); !errors.Is(err, presetstore.ErrNotFound) {
		t.Fatalf("get revision 3: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(t.Context(), "t1", "nope", 0); !errors.Is(err, presetstore.ErrNotFound) {
		t.Fatalf("get unknown: %v, want ErrNotFound", err)
	}
}

func same(a, b presetstore.Record) bool {
	return a.Tenant == b.Tenant && a.Name == b.Name && a.Revision == b.Revision && a.Enabled == b.Enabled &&
		bytes.Equal(a.Body, b.Body) && a.UpdateTime.Equal(b.UpdateTime) && a.UpdateTime.Location() == time.UTC && a.UpdatedBy == b.UpdatedBy
}

func testExpected(t *testing.T, s presetstore.Store) {
	ctx := t.Context()
	if _, err := s.Put(ctx, presetstore.Put{Tenant: "t1", Name: "a", Body: []byte("x"), Time: t0, Expected: ptr(1)}); !errors.Is(err, presetstore.ErrRevisionMismatch) {
		t.Fatalf("put of a missing preset expecting 1: %v", err)
	}
	put(t, s, "t1", "a", "x", ptr(0))
	if _, err := s.Put(ctx, presetstore.Put{Tenant: "t1", Name: "a", Body: []byte("y"), Time: t0, Expected: ptr(0)}); !errors.Is(err, presetstore.ErrRevisionMismatch) {
		t.Fatalf("create over an existing preset: %v", err)
	}
	if r := put(t, s, "t1", "a", "y", ptr(1)); r.Revision != 2 {
		t.Fatalf("revision %d", r.Revision)
	}
	if err := s.Delete(ctx, "t1", "a", ptr(1)); !errors.Is(err, presetstore.ErrRevisionMismatch) {
		t.Fatalf("delete expecting an old revision: %v", err)
	}
	if err := s.Delete(ctx, "t1", "a", ptr(2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "t1", "a", ptr(2)); !errors.Is(err, presetstore.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func testList(t *testing.T, s presetstore.Store) {
	for i := range 7 {
		put(t, s, "t1", fmt.Sprintf("p%02d", 6-i), "b", nil)
	}
	var names []string
	after := ""
	for {
		page, err := s.List(t.Context(), "t1", after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 3 {
			t.Fatalf("page of %d", len(page))
		}
		for _, r := range page {
			names = append(names, r.Name)
		}
		if len(page) < 3 {
			break
		}
		after = page[len(page)-1].Name
	}
	if fmt.Sprint(names) != "[p00 p01 p02 p03 p04 p05 p06]" {
		t.Fatalf("listed %v", names)
	}
	if _, err := s.List(t.Context(), "t1", "", 0); err == nil {
		t.Fatal("List with limit 0 succeeded")
	}
}

func testDelete(t *testing.T, s presetstore.Store) {
	put(t, s, "t1", "a", "1", nil)
	put(t, s, "t1", "a", "2", nil)
	if err := s.Delete(t.Context(), "t1", "a", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), "t1", "a", 1); !errors.Is(err, presetstore.ErrNotFound) {
		t.Fatalf("history after delete: %v", err)
	}
	if r := put(t, s, "t1", "a", "3", ptr(0)); r.Revision != 1 {
		t.Fatalf("recreated at revision %d", r.Revision)
	}
	if _, err := s.Get(t.Context(), "t1", "a", 2); !errors.Is(err, presetstore.ErrNotFound) {
		t.Fatalf("old history after recreate: %v", err)
	}
}

func testSet(t *testing.T, s presetstore.Store) {
	ctx := t.Context()
	if rev, err := s.SetRevision(ctx, "t1"); err != nil || rev != 0 {
		t.Fatalf("set revision of an empty tenant: %d, %v", rev, err)
	}
	put(t, s, "t1", "b", "1", nil)
	if _, err := s.Put(ctx, presetstore.Put{Tenant: "t1", Name: "a", Enabled: false, Body: []byte("off"), Time: t0}); err != nil {
		t.Fatal(err)
	}
	put(t, s, "t1", "c", "1", nil)
	rev, recs, err := s.Set(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if rev != 3 || len(recs) != 2 || recs[0].Name != "b" || recs[1].Name != "c" {
		t.Fatalf("set: revision %d, %+v", rev, recs)
	}
	if err := s.Delete(ctx, "t1", "c", nil); err != nil {
		t.Fatal(err)
	}
	if r, err := s.SetRevision(ctx, "t1"); err != nil || r != 4 {
		t.Fatalf("set revision after delete: %d, %v", r, err)
	}
	if err := s.Delete(ctx, "t1", "b", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "t1", "a", nil); err != nil {
		t.Fatal(err)
	}
	// A tenant that deleted every preset is told apart from one that
	// never had any: its set revision stays above 0.
	rev, recs, err = s.Set(ctx, "t1")
	if err != nil || rev != 6 || len(recs) != 0 {
		t.Fatalf("emptied set: %d, %v, %v", rev, recs, err)
	}
}

func testTenants(t *testing.T, s presetstore.Store) {
	put(t, s, "t1", "a", "mine", nil)
	if _, err := s.Get(t.Context(), "t2", "a", 0); !errors.Is(err, presetstore.ErrNotFound) {
		t.Fatalf("other tenant's get: %v", err)
	}
	if err := s.Delete(t.Context(), "t2", "a", nil); !errors.Is(err, presetstore.ErrNotFound) {
		t.Fatalf("other tenant's delete: %v", err)
	}
	if recs, err := s.List(t.Context(), "t2", "", 10); err != nil || len(recs) != 0 {
		t.Fatalf("other tenant's list: %v, %v", recs, err)
	}
	if rev, recs, err := s.Set(t.Context(), "t2"); err != nil || rev != 0 || len(recs) != 0 {
		t.Fatalf("other tenant's set: %d %v %v", rev, recs, err)
	}
	if r := put(t, s, "t2", "a", "theirs", nil); r.Revision != 1 {
		t.Fatalf("other tenant's revision %d", r.Revision)
	}
	if got, err := s.Get(t.Context(), "t1", "a", 0); err != nil || string(got.Body) != "mine" {
		t.Fatalf("t1's preset: %+v, %v", got, err)
	}
}

func testConcurrent(t *testing.T, s presetstore.Store) {
	const n = 8
	var wg sync.WaitGroup
	revs := make([]uint64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			r, err := s.Put(t.Context(), presetstore.Put{Tenant: "t1", Name: "a", Enabled: true, Body: []byte{byte(i)}, Time: t0})
			revs[i], errs[i] = r.Revision, err
		})
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("put %d: %v", i, errs[i])
		}
		if seen[revs[i]] {
			t.Fatalf("revision %d given twice: %v", revs[i], revs)
		}
		seen[revs[i]] = true
	}
	got, err := s.Get(t.Context(), "t1", "a", 0)
	if err != nil || got.Revision != n {
		t.Fatalf("final revision %d, %v", got.Revision, err)
	}
	if rev, err := s.SetRevision(t.Context(), "t1"); err != nil || rev != n {
		t.Fatalf("set revision %d, %v", rev, err)
	}
}

func testHistoryBound(t *testing.T, s presetstore.Store) {
	for range presetstore.MaxHistory + 2 {
		put(t, s, "t1", "a", "b", nil)
	}
	if _, err := s.Get(t.Context(), "t1", "a", 2); !errors.Is(err, presetstore.ErrNotFound) {
		t.Fatalf("revision 2 of %d: %v, want forgotten", presetstore.MaxHistory+2, err)
	}
	if _, err := s.Get(t.Context(), "t1", "a", 3); err != nil {
		t.Fatalf("revision 3 of %d: %v, want kept", presetstore.MaxHistory+2, err)
	}
}

func testEnsureSecrets(t *testing.T, s presetstore.Store) {
	ctx := t.Context()
	a := presetstore.Sealed{KeyID: "k1", Data: []byte("sealed-a")}
	b := presetstore.Sealed{KeyID: "k1", Data: []byte("sealed-b")}
	got, err := s.EnsureSecrets(ctx, "t1", "dev-1", map[string]presetstore.Sealed{"wifi-psk": a})
	if err != nil || got["wifi-psk"].KeyID != "k1" || string(got["wifi-psk"].Data) != "sealed-a" {
		t.Fatalf("first: %v %v", got, err)
	}
	// The device's secret stays: a second proposal does not replace it.
	got, err = s.EnsureSecrets(ctx, "t1", "dev-1", map[string]presetstore.Sealed{"wifi-psk": b, "admin": b})
	if err != nil || string(got["wifi-psk"].Data) != "sealed-a" || string(got["admin"].Data) != "sealed-b" || len(got) != 2 {
		t.Fatalf("second: %v %v", got, err)
	}
	// Other devices and tenants have their own.
	for _, k := range [][2]string{{"t1", "dev-2"}, {"t2", "dev-1"}} {
		got, err = s.EnsureSecrets(ctx, k[0], k[1], map[string]presetstore.Sealed{"wifi-psk": b})
		if err != nil || string(got["wifi-psk"].Data) != "sealed-b" {
			t.Fatalf("%v: %v %v", k, got, err)
		}
	}
	// Concurrent first uses agree on one secret.
	var wg sync.WaitGroup
	vals := make([]string, 8)
	for i := range vals {
		wg.Go(func() {
			got, err := s.EnsureSecrets(ctx, "t1", "dev-3", map[string]presetstore.Sealed{"x": {KeyID: "k", Data: []byte{byte('a' + i)}}})
			if err != nil {
				t.Error(err)
				return
			}
			vals[i] = string(got["x"].Data)
		})
	}
	wg.Wait()
	for _, v := range vals {
		if v != vals[0] {
			t.Fatalf("concurrent first uses disagree: %q", vals)
		}
	}
}

func testResealSecrets(t *testing.T, s presetstore.Store) {
	ctx := t.Context()
	for _, dev := range []string{"a", "b"} {
		if _, err := s.EnsureSecrets(ctx, "t1", dev, map[string]presetstore.Sealed{"psk": {KeyID: "old", Data: []byte("old-" + dev)}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.EnsureSecrets(ctx, "t1", "c", map[string]presetstore.Sealed{"psk": {KeyID: "new", Data: []byte("new-c")}}); err != nil {
		t.Fatal(err)
	}
	var seen []string
	n, err := s.ResealSecrets(ctx, "new", func(tenant, device, name string, sv presetstore.Sealed) (presetstore.Sealed, error) {
		seen = append(seen, tenant+"/"+device+"/"+name+"/"+sv.KeyID+"/"+string(sv.Data))
		return presetstore.Sealed{KeyID: "new", Data: []byte("new-" + device)}, nil
	})
	if err != nil || n != 2 || len(seen) != 2 {
		t.Fatalf("resealed %d (%v), %v", n, seen, err)
	}
	for _, dev := range []string{"a", "b", "c"} {
		got, err := s.EnsureSecrets(ctx, "t1", dev, map[string]presetstore.Sealed{"psk": {KeyID: "x", Data: []byte("x")}})
		if err != nil || got["psk"].KeyID != "new" || string(got["psk"].Data) != "new-"+dev {
			t.Fatalf("device %s after reseal: %v %v", dev, got, err)
		}
	}
	if n, err := s.ResealSecrets(ctx, "new", func(string, string, string, presetstore.Sealed) (presetstore.Sealed, error) {
		return presetstore.Sealed{}, errors.New("nothing to reseal")
	}); err != nil || n != 0 {
		t.Fatalf("second reseal: %d %v", n, err)
	}
	// A deleted device's secrets go; the others stay.
	if err := s.DeleteSecrets(ctx, "t1", "a"); err != nil {
		t.Fatal(err)
	}
	for dev, want := range map[string]string{"a": "fresh", "b": "new-b"} {
		got, err := s.EnsureSecrets(ctx, "t1", dev, map[string]presetstore.Sealed{"psk": {KeyID: "new", Data: []byte("fresh")}})
		if err != nil || string(got["psk"].Data) != want {
			t.Fatalf("device %s after deleting a's secrets: %v %v, want %s", dev, got, err, want)
		}
	}
}
