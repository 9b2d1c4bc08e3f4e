package storetest

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/inventory/store"
)

func tagsOf(t *testing.T, s store.Store, tenant, id string) []string {
	t.Helper()
	return get(t, s, tenant, id, store.ReadOptions{}).Tags
}

func testTags(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	id := apply(t, s, tenant, inform(devID("00AABB", "R", "S1"), base), 1)
	if got := tagsOf(t, s, tenant, id); got != nil {
		t.Fatalf("new device has tags %q", got)
	}
	if err := s.AddTags(ctx, tenant, id, "b", "a", "b", "with:colon", "x/y-z.1"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddTags(ctx, tenant, id, "a", "c"); err != nil {
		t.Fatal(err)
	}
	if got, want := tagsOf(t, s, tenant, id), []string{"a", "b", "c", "with:colon", "x/y-z.1"}; !slices.Equal(got, want) {
		t.Fatalf("tags = %q, want %q", got, want)
	}
	if err := s.RemoveTags(ctx, tenant, id, "b", "absent", "x/y-z.1"); err != nil {
		t.Fatal(err)
	}
	if got, want := tagsOf(t, s, tenant, id), []string{"a", "c", "with:colon"}; !slices.Equal(got, want) {
		t.Fatalf("tags = %q, want %q", got, want)
	}
	if err := s.AddTags(ctx, tenant, id); err != nil {
		t.Fatalf("AddTags with no tags: %v", err)
	}
	if err := s.RemoveTags(ctx, tenant, id, "a", "c", "with:colon"); err != nil {
		t.Fatal(err)
	}
	if got := tagsOf(t, s, tenant, id); len(got) != 0 {
		t.Fatalf("tags = %q, want none", got)
	}
	// Operator tags are not fenced: they work whatever token the device has.
	applyID(t, s, tenant, id, store.Diff{Time: base}, 100)
	if err := s.AddTags(ctx, tenant, id, "ops"); err != nil {
		t.Fatal(err)
	}
	if got := tagsOf(t, s, tenant, id); !slices.Equal(got, []string{"ops"}) {
		t.Fatalf("tags = %q", got)
	}
}

func testTagsInDiff(t *testing.T, s store.Store) {
	tenant := newTenant()
	d := inform(devID("00AABB", "R", "S1"), base)
	d.AddTags = []string{"new", "wifi"}
	d.RemoveTags = []string{"never-there"} // add and remove on a new device
	id := apply(t, s, tenant, d, 1)
	if got := tagsOf(t, s, tenant, id); !slices.Equal(got, []string{"new", "wifi"}) {
		t.Fatalf("tags = %q", got)
	}
	applyID(t, s, tenant, id, store.Diff{Time: base, AddTags: []string{"fw-2", "wifi"}, RemoveTags: []string{"new"}}, 1)
	if got := tagsOf(t, s, tenant, id); !slices.Equal(got, []string{"fw-2", "wifi"}) {
		t.Fatalf("tags = %q", got)
	}
	applyID(t, s, tenant, id, store.Diff{Time: base, RemoveTags: []string{"wifi"}}, 1)
	applyID(t, s, tenant, id, store.Diff{Time: base, AddTags: []string{"a"}}, 1)
	if got := tagsOf(t, s, tenant, id); !slices.Equal(got, []string{"a", "fw-2"}) {
		t.Fatalf("tags = %q", got)
	}
	// Remove-only on a new device leaves it without tags, and a later
	// add-and-remove still works on it.
	d2 := inform(devID("00AABB", "R", "S2"), base)
	d2.RemoveTags = []string{"x"}
	id2 := apply(t, s, tenant, d2, 1)
	applyID(t, s, tenant, id2, store.Diff{Time: base, AddTags: []string{"y"}, RemoveTags: []string{"x"}}, 1)
	if got := tagsOf(t, s, tenant, id2); !slices.Equal(got, []string{"y"}) {
		t.Fatalf("tags = %q", got)
	}
}

func testFencing(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	d := inform(devID("00AABB", "R", "S1"), base)
	d.Params = []store.ParamUpdate{store.SetValue("Device.A", "five", "")}
	d.AddTags = []string{"t5"}
	id := apply(t, s, tenant, d, 5)
	before := get(t, s, tenant, id, allParams)
	if before.FencingToken != 5 {
		t.Fatalf("fencing token = %d, want 5", before.FencingToken)
	}

	// A worker that lost its lease (token 4) writes nothing at all.
	stale := inform(devID("00AABB", "R", "S1"), base.Add(time.Hour), "1 BOOT")
	stale.Fields.SoftwareVersion = store.Ptr("stale")
	stale.Params = []store.ParamUpdate{store.SetValue("Device.A", "four", ""), store.SetValue("Device.B", "4", "")}
	stale.DeletePaths = []string{""}
	stale.SessionTakeover = true
	stale.FullDiscovery = base.Add(time.Hour)
	stale.AddTags = []string{"t4"}
	stale.RemoveTags = []string{"t5"}
	stale.ConnectionRequestCredentials = &store.Credentials{Username: "u", Password: "p"}
	stale.CPECredentials = &store.Credentials{Username: "u", Password: "p"}
	for _, diff := range []store.Diff{stale, {Time: base.Add(time.Hour), Params: stale.Params}, {Time: base, AddTags: []string{"t4"}}} {
		_, err := s.ApplySessionDiff(ctx, tenant, id, diff, 4)
		if !errors.Is(err, store.ErrStaleFencingToken) {
			t.Fatalf("stale diff: %v, want ErrStaleFencingToken", err)
		}
	}
	if after := get(t, s, tenant, id, allParams); !reflect.DeepEqual(after, before) {
		t.Fatalf("a stale diff changed the device:\n before %+v\n after  %+v", before, after)
	}

	// The same token is the same lease: a session may write several diffs.
	applyID(t, s, tenant, id, store.Diff{Time: base, Params: []store.ParamUpdate{store.SetValue("Device.A", "five again", "")}}, 5)
	// A newer lease takes over, and then the old one is fenced off too.
	applyID(t, s, tenant, id, store.Diff{Time: base, Params: []store.ParamUpdate{store.SetValue("Device.A", "six", "")}}, 6)
	if _, err := s.ApplySessionDiff(ctx, tenant, id, store.Diff{Time: base,
		Params: []store.ParamUpdate{store.SetValue("Device.A", "late five", "")}}, 5); !errors.Is(err, store.ErrStaleFencingToken) {
		t.Fatalf("token 5 after 6: %v", err)
	}
	got := get(t, s, tenant, id, allParams)
	if got.FencingToken != 6 || got.Params["Device.A"].Value != "six" {
		t.Fatalf("after takeover: token %d, Device.A %+v", got.FencingToken, got.Params["Device.A"])
	}
	// Tokens are per device: another device starts from scratch.
	apply(t, s, tenant, inform(devID("00AABB", "R", "S2"), base), 1)
	// Operator actions are not fenced.
	if err := s.RemoveTags(ctx, tenant, id, "t5"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, tenant, id); err != nil {
		t.Fatal(err)
	}
}

func testTenantIsolation(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	a, b := newTenant(), newTenant()
	da := inform(devID("00AABB", "R", "S1"), base)
	da.Params = []store.ParamUpdate{store.SetValue("Device.Owner", "A", "")}
	da.AddTags = []string{"shared-tag"}
	id := apply(t, s, a, da, 10)
	onlyA := apply(t, s, a, inform(devID("00AABB", "R", "ONLY-A"), base), 1)

	if _, err := s.Get(ctx, b, id, store.ReadOptions{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("tenant B sees A's device: %v", err)
	}
	if err := s.AddTags(ctx, b, id, "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("tenant B tags A's device: %v", err)
	}
	if err := s.Delete(ctx, b, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("tenant B deletes A's device: %v", err)
	}
	if _, err := s.ApplySessionDiff(ctx, b, id, store.Diff{Time: base, Params: da.Params}, 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("tenant B writes to A's device: %v", err)
	}
	for _, f := range []store.Filter{
		{Tenant: b},
		{Tenant: b, Tags: []string{"shared-tag"}},
		{Tenant: b, SerialNumber: store.Ptr("S1")},
		{Tenant: b, Params: []store.ParamCondition{{Path: "Device.Owner", Op: store.OpExists}}},
	} {
		if ids := listAll(t, s, f, 10); len(ids) != 0 {
			t.Fatalf("tenant B lists %v with %+v", ids, f)
		}
	}

	// The same id in tenant B is another device, fenced on its own.
	db := inform(devID("00AABB", "R", "S1"), base.Add(time.Hour))
	db.Params = []store.ParamUpdate{store.SetValue("Device.Owner", "B", "")}
	apply(t, s, b, db, 1)
	ga, gb := get(t, s, a, id, allParams), get(t, s, b, id, allParams)
	if ga.Params["Device.Owner"].Value != "A" || gb.Params["Device.Owner"].Value != "B" ||
		ga.FencingToken != 10 || gb.FencingToken != 1 || len(gb.Tags) != 0 || !ga.Registered.Equal(ms(base)) {
		t.Fatalf("tenants mixed:\n A %+v\n B %+v", ga, gb)
	}
	if ids := listAll(t, s, store.Filter{Tenant: b}, 10); !slices.Equal(ids, []string{id}) {
		t.Fatalf("tenant B lists %v", ids)
	}
	if err := s.Delete(ctx, b, id); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, s, store.Filter{Tenant: a}, 10); !slices.Equal(got, slices.Sorted(slices.Values([]string{id, onlyA}))) {
		t.Fatalf("tenant A after B's delete: %v", got)
	}
	if p := get(t, s, a, id, allParams).Params; !maps.Equal(p, ga.Params) {
		t.Fatalf("tenant A's tree changed: %v", p)
	}
}
