package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/fleetacs/fleetacs/services/inventory/store"
)

func addDevices(t *testing.T, s store.Store, tenant, prefix string, n int) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for i := range n {
		d := inform(devID("00AABB", "R", fmt.Sprintf("%s%03d", prefix, i)), base)
		d.AddTags = []string{"paged"}
		ids = append(ids, apply(t, s, tenant, d, 1))
	}
	slices.Sort(ids)
	return ids
}

func testPagination(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	all := addDevices(t, s, tenant, "P", 25)
	addDevices(t, s, newTenant(), "P", 5) // same ids elsewhere

	for _, limit := range []int{1, 7, 24, 25, 26, 0, store.MaxPageSize + 1} {
		if got := listAll(t, s, store.Filter{Tenant: tenant}, limit); !slices.Equal(got, all) {
			t.Fatalf("limit %d: got %q, want %q", limit, got, all)
		}
	}
	// Page shapes for limit 7: 7, 7, 7, 4 and no empty trailing page.
	var sizes []int
	cursor := ""
	for {
		p, err := s.List(ctx, store.Filter{Tenant: tenant}, store.PageRequest{Limit: 7, Cursor: cursor}, store.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(p.Devices))
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	if !slices.Equal(sizes, []int{7, 7, 7, 4}) {
		t.Fatalf("page sizes = %v", sizes)
	}
	// Paging a filtered set.
	tagged := all[3:17]
	for _, id := range tagged {
		if err := s.AddTags(ctx, tenant, id, "sub"); err != nil {
			t.Fatal(err)
		}
	}
	if got := listAll(t, s, store.Filter{Tenant: tenant, Tags: []string{"paged", "sub"}}, 4); !slices.Equal(got, tagged) {
		t.Fatalf("filtered paging: got %q, want %q", got, tagged)
	}
	// A cursor taken under one filter resumes by id under any other.
	p, err := s.List(ctx, store.Filter{Tenant: tenant}, store.PageRequest{Limit: 5}, store.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := s.List(ctx, store.Filter{Tenant: tenant, Tags: []string{"sub"}}, store.PageRequest{Limit: 100, Cursor: p.Next}, store.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p2.Devices) != 12 || p2.Devices[0].ID != all[5] {
		t.Fatalf("resumed filtered page: %d devices starting %v", len(p2.Devices), p2.Devices)
	}
}

func testPaginationWithInserts(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	original := addDevices(t, s, tenant, "M", 20) // ids 00AABB-R-M000..M019
	seen := map[string]int{}
	var order []string
	cursor := ""
	for page := 0; ; page++ {
		p, err := s.List(ctx, store.Filter{Tenant: tenant}, store.PageRequest{Limit: 5, Cursor: cursor}, store.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range p.Devices {
			seen[d.ID]++
			order = append(order, d.ID)
		}
		if page == 1 {
			// Between pages: devices sorting before the cursor, after
			// it, and a deletion of one not yet seen.
			addDevices(t, s, tenant, "A", 3) // 00AABB-R-A...: before
			addDevices(t, s, tenant, "Z", 3) // 00AABB-R-Z...: after
			if err := s.Delete(ctx, tenant, original[15]); err != nil {
				t.Fatal(err)
			}
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	for id, n := range seen {
		if n > 1 {
			t.Fatalf("%s listed %d times", id, n)
		}
	}
	for i, id := range original {
		if i != 15 && seen[id] != 1 {
			t.Fatalf("existing device %s missed", id)
		}
	}
	if seen[original[15]] != 0 {
		t.Fatalf("device deleted before its page was listed")
	}
	if !slices.IsSorted(order) {
		t.Fatalf("pages out of order: %q", order)
	}
	for i := range 3 {
		if seen[fmt.Sprintf("00AABB-R-Z%03d", i)] != 1 || seen[fmt.Sprintf("00AABB-R-A%03d", i)] != 0 {
			t.Fatalf("inserted devices: keyset paging should show those after the cursor only: %v", seen)
		}
	}
}

func testPaginationConcurrentInserts(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	original := addDevices(t, s, tenant, "C", 30)
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i >= 60 {
				return
			}
			// Interleave ids with the existing ones: C000a sorts
			// between C000 and C001.
			d := inform(devID("00AABB", "R", fmt.Sprintf("C%03da%d", i%30, i)), base)
			if _, err := s.ApplySessionDiff(context.WithoutCancel(ctx), tenant, store.MakeID(*d.DeviceID), d, 1); err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
		}
	})
	var got []string
	seen := map[string]bool{}
	cursor := ""
	for {
		p, err := s.List(ctx, store.Filter{Tenant: tenant}, store.PageRequest{Limit: 3, Cursor: cursor}, store.ReadOptions{})
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatal(err)
		}
		for _, d := range p.Devices {
			if seen[d.ID] {
				close(stop)
				wg.Wait()
				t.Fatalf("%s listed twice", d.ID)
			}
			seen[d.ID] = true
			got = append(got, d.ID)
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("concurrent insert: %v", err)
	default:
	}
	for _, id := range original {
		if !seen[id] {
			t.Fatalf("existing device %s missed while others were inserted", id)
		}
	}
	if !slices.IsSorted(got) {
		t.Fatalf("pages out of order")
	}
}

func testListWithParams(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	for i := range 4 {
		d := inform(devID("00AABB", "R", fmt.Sprintf("L%d", i)), base)
		d.AddTags = []string{fmt.Sprintf("t%d", i), "all"}
		d.Params = []store.ParamUpdate{
			store.SetValue("Device.A.V", fmt.Sprint(i), "xsd:int"),
			store.SetValue("Device.B.V", "b", "xsd:string"),
		}
		apply(t, s, tenant, d, 1)
	}
	p, err := s.List(ctx, store.Filter{Tenant: tenant}, store.PageRequest{Limit: 3}, store.ReadOptions{ParamPrefixes: []string{"Device.A."}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Devices) != 3 || p.Next == "" {
		t.Fatalf("page = %d devices, next %q", len(p.Devices), p.Next)
	}
	for i, d := range p.Devices {
		if len(d.Params) != 1 || d.Params["Device.A.V"].Value != fmt.Sprint(i) || !slices.Equal(d.Tags, []string{"all", fmt.Sprintf("t%d", i)}) {
			t.Fatalf("device %d: params %v tags %v", i, d.Params, d.Tags)
		}
	}
	p, err = s.List(ctx, store.Filter{Tenant: tenant}, store.PageRequest{}, store.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range p.Devices {
		if d.Params != nil || len(d.Tags) != 2 || d.LastInform.IsZero() {
			t.Fatalf("List without params: %+v", d)
		}
	}
	p, err = s.List(ctx, store.Filter{Tenant: tenant}, store.PageRequest{}, allParams)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range p.Devices {
		if len(d.Params) != 2 {
			t.Fatalf("List with all params: %v", d.Params)
		}
	}
}
