// Package storetest is the contract every files metadata store passes
// (package store): sqlitestore and mongostore run it against SQLite and a
// MongoDB-wire server (FerretDB in tests).
package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/files/store"
)

// Open returns a started, empty store of the test's own.
type Open func(t *testing.T) store.Store

var base = time.Date(2026, 3, 4, 5, 6, 7, 891_234_567, time.UTC)

func rec(tenant, id, name string, at time.Time) store.Record {
	return store.Record{Tenant: tenant, ID: id, Name: name, FileType: "1 Firmware Upgrade Image",
		Version: "1.0", Size: 10, SHA256: "ab", CreateTime: at, Uploader: "token:t"}
}

// Run runs the contract.
func Run(t *testing.T, open Open) {
	t.Run("CreateGetRoundTrip", func(t *testing.T) {
		s := open(t)
		r := store.Record{Tenant: "acme", ID: "01ABC", Name: "fw-1.2.bin", FileType: "1 Firmware Upgrade Image",
			ProductClasses: []string{"HGW", "ONT"}, OUI: "00D09E", Version: "1.2", Size: 1 << 40,
			SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", CreateTime: base, Uploader: "token:abc"}
		if err := s.Create(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(t.Context(), "acme", "01ABC")
		if err != nil {
			t.Fatal(err)
		}
		want := r
		want.CreateTime = store.Truncate(base)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Get = %+v\nwant %+v", got, want)
		}
		if got.CreateTime.Location() != time.UTC {
			t.Fatalf("time not in UTC: %v", got.CreateTime.Location())
		}
		r2 := rec("acme", "01ABD", "other", base)
		if err := s.Create(t.Context(), r2); err != nil {
			t.Fatal(err)
		}
		got2, err := s.Get(t.Context(), "acme", "01ABD")
		if err != nil {
			t.Fatal(err)
		}
		if got2.ProductClasses != nil {
			t.Fatalf("empty product classes came back %#v, want nil", got2.ProductClasses)
		}
	})
	t.Run("TenantIsolationAndNotFound", func(t *testing.T) {
		s := open(t)
		if err := s.Create(t.Context(), rec("a", "1", "n", base)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(t.Context(), "b", "1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get of another tenant: %v, want ErrNotFound", err)
		}
		if err := s.Delete(t.Context(), "b", "1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Delete of another tenant: %v, want ErrNotFound", err)
		}
		got, err := s.List(t.Context(), store.Query{Tenant: "b"})
		if err != nil || len(got) != 0 {
			t.Fatalf("List of another tenant: %v, %v", got, err)
		}
		// The same name in another tenant is another file.
		if err := s.Create(t.Context(), rec("b", "1", "n", base)); err != nil {
			t.Fatalf("same name and id in another tenant: %v", err)
		}
	})
	t.Run("NameAndIDUnique", func(t *testing.T) {
		s := open(t)
		if err := s.Create(t.Context(), rec("a", "1", "n", base)); err != nil {
			t.Fatal(err)
		}
		if err := s.Create(t.Context(), rec("a", "2", "n", base)); !errors.Is(err, store.ErrNameExists) {
			t.Fatalf("duplicate name: %v, want ErrNameExists", err)
		}
		if err := s.Create(t.Context(), rec("a", "1", "m", base)); !errors.Is(err, store.ErrNameExists) {
			t.Fatalf("duplicate id: %v, want ErrNameExists", err)
		}
		// Concurrent creates of one name: exactly one wins.
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() { errs[i] = s.Create(t.Context(), rec("a", fmt.Sprintf("c%d", i), "race", base)) })
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, store.ErrNameExists):
				t.Fatalf("concurrent create: %v", err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d concurrent creates of one name succeeded, want 1", ok)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		s := open(t)
		if err := s.Create(t.Context(), rec("a", "1", "n", base)); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(t.Context(), "a", "1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(t.Context(), "a", "1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get after Delete: %v", err)
		}
		if err := s.Delete(t.Context(), "a", "1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second Delete: %v", err)
		}
		// The name is free again.
		if err := s.Create(t.Context(), rec("a", "2", "n", base)); err != nil {
			t.Fatalf("create after delete: %v", err)
		}
	})
	t.Run("ListFiltersAndPages", func(t *testing.T) {
		s := open(t)
		mk := func(id, name, typ, version string, pcs []string, at time.Duration) {
			r := rec("a", id, name, base.Add(at))
			r.FileType, r.Version, r.ProductClasses = typ, version, pcs
			if err := s.Create(t.Context(), r); err != nil {
				t.Fatal(err)
			}
		}
		fw := "1 Firmware Upgrade Image"
		cfg := "3 Vendor Configuration File"
		mk("1", "fw-hgw-1", fw, "1", []string{"HGW"}, 0)
		mk("2", "fw-hgw-2", fw, "2", []string{"HGW", "ONT"}, time.Second)
		mk("3", "fw-any-2", fw, "2", nil, 2*time.Second)
		mk("4", "cfg-ont", cfg, "", []string{"ONT"}, 3*time.Second)
		mk("5", "fw-ont-2", fw, "2", []string{"ONT"}, 3*time.Second) // same time as 4: id breaks the tie
		mk("6", "fw-hgwx-2", fw, "2", []string{"HGWX"}, 4*time.Second)
		ids := func(q store.Query) []string {
			t.Helper()
			q.Tenant = "a"
			rs, err := s.List(t.Context(), q)
			if err != nil {
				t.Fatal(err)
			}
			out := []string{}
			for _, r := range rs {
				out = append(out, r.ID)
			}
			return out
		}
		check := func(name string, q store.Query, want ...string) {
			t.Helper()
			if want == nil {
				want = []string{}
			}
			if got := ids(q); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: %v, want %v", name, got, want)
			}
		}
		check("all", store.Query{}, "6", "5", "4", "3", "2", "1")
		check("type", store.Query{FileType: cfg}, "4")
		check("version", store.Query{Version: "2"}, "6", "5", "3", "2")
		check("product class (with any)", store.Query{ProductClass: "HGW"}, "3", "2", "1")
		check("product class and version", store.Query{ProductClass: "ONT", Version: "2", FileType: fw}, "5", "3", "2")
		check("name", store.Query{Name: "fw-any-2"}, "3")
		check("limit", store.Query{Limit: 2}, "6", "5")
		check("after", store.Query{Limit: 2, After: &store.Cursor{CreateTime: base.Add(3 * time.Second), ID: "5"}}, "4", "3")
		check("after, filtered", store.Query{Version: "2", After: &store.Cursor{CreateTime: base.Add(2 * time.Second), ID: "3"}}, "2")
		check("no match", store.Query{ProductClass: "nope", FileType: cfg})
	})
}
