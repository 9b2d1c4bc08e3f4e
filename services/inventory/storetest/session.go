package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/provisioning"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// testSessionState: SessionState agrees with Get after every kind of write,
// and follows refused diffs and deletions.
func testSessionState(t *testing.T, s store.Store) {
	tenant := newTenant()
	dev := devID("00AABB", "R", "SS1")
	id := store.MakeID(dev)
	if _, err := s.SessionState(ctxT(t), tenant, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown device: %v, want ErrNotFound", err)
	}
	if _, err := s.SessionState(ctxT(t), "", id); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("no tenant: %v, want ErrInvalidArgument", err)
	}
	agree := func(what string, want store.SessionState) {
		t.Helper()
		got, err := s.SessionState(ctxT(t), tenant, id)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: session state %+v, want %+v", what, got, want)
		}
		d := get(t, s, tenant, id, store.ReadOptions{})
		fromGet := store.SessionState{DataModelRoot: d.DataModelRoot, FullDiscovery: d.FullDiscovery,
			FencingToken: d.FencingToken, ConnectionRequestCredentials: d.ConnectionRequestCredentials, Tags: d.Tags}
		if !reflect.DeepEqual(got, fromGet) {
			t.Fatalf("%s: session state %+v, Get says %+v", what, got, fromGet)
		}
	}

	t1, t2, t3 := base, base.Add(time.Minute), base.Add(2*time.Minute)
	apply(t, s, tenant, inform(dev, t1, "0 BOOTSTRAP"), 5)
	agree("first contact", store.SessionState{DataModelRoot: "Device.", FencingToken: 5})

	d := inform(dev, t2, "2 PERIODIC")
	d.FullDiscovery = t2
	d.ConnectionRequestCredentials = &store.Credentials{Username: "cr", Password: "secret"}
	applyID(t, s, tenant, id, d, 7)
	want := store.SessionState{DataModelRoot: "Device.", FullDiscovery: ms(t2), FencingToken: 7,
		ConnectionRequestCredentials: &store.Credentials{Username: "cr", Password: "secret"}}
	agree("after a discovery", want)

	// A refused diff changes nothing.
	stale := inform(dev, t3)
	stale.Fields.DataModelRoot = store.Ptr("InternetGatewayDevice.")
	if _, err := s.ApplySessionDiff(ctxT(t), tenant, id, stale, 6); !errors.Is(err, store.ErrStaleFencingToken) {
		t.Fatalf("stale diff: %v", err)
	}
	agree("after a refused diff", want)

	// A diff that sets nothing of it keeps it, but for the token.
	applyID(t, s, tenant, id, store.Diff{Time: t3, AddTags: []string{"x"}}, 8)
	want.FencingToken, want.Tags = 8, []string{"x"}
	agree("after a diff of tags", want)
	if err := s.AddTags(ctxT(t), tenant, id, "a", "z"); err != nil {
		t.Fatal(err)
	}
	want.Tags = []string{"a", "x", "z"}
	agree("after AddTags", want)
	applyID(t, s, tenant, id, store.Diff{Time: t3, AddTags: []string{"m"}, RemoveTags: []string{"z"}}, 9)
	want.FencingToken, want.Tags = 9, []string{"a", "m", "x"}
	agree("after a diff adding and removing tags", want)
	if err := s.RemoveTags(ctxT(t), tenant, id, "a", "m", "x"); err != nil {
		t.Fatal(err)
	}
	want.Tags = nil
	agree("after RemoveTags", want)

	if err := s.Delete(ctxT(t), tenant, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SessionState(ctxT(t), tenant, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted device: %v, want ErrNotFound", err)
	}
	apply(t, s, tenant, inform(dev, t3), 10)
	agree("created again", store.SessionState{DataModelRoot: "Device.", FencingToken: 10})
}

// testPresetsFingerprint: a diff sets the fingerprint, SessionState and Get
// return it, a diff without one keeps it, and operator tag changes forget
// it (docs/provisioning.md).
func testPresetsFingerprint(t *testing.T, s store.Store) {
	tenant := newTenant()
	dev := devID("00AABB", "R", "PF1")
	id := store.MakeID(dev)
	check := func(what, want string) {
		t.Helper()
		st, err := s.SessionState(ctxT(t), tenant, id)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if d := get(t, s, tenant, id, store.ReadOptions{}); st.PresetsFingerprint != want || d.PresetsFingerprint != want {
			t.Fatalf("%s: fingerprint %q (Get %q), want %q", what, st.PresetsFingerprint, d.PresetsFingerprint, want)
		}
	}
	d := inform(dev, base, "0 BOOTSTRAP")
	d.PresetsFingerprint = store.Ptr("s3")
	apply(t, s, tenant, d, 1)
	check("first contact", "s3")
	applyID(t, s, tenant, id, inform(dev, base.Add(time.Minute), "2 PERIODIC"), 2)
	check("a diff without one", "s3")
	d = inform(dev, base.Add(2*time.Minute), "2 PERIODIC")
	d.PresetsFingerprint = store.Ptr("s4")
	applyID(t, s, tenant, id, d, 3)
	check("a new one", "s4")
	if err := s.AddTags(ctxT(t), tenant, id, "vip"); err != nil {
		t.Fatal(err)
	}
	check("after AddTags", "")
	d.PresetsFingerprint = store.Ptr("s5")
	d.Time = base.Add(3 * time.Minute)
	applyID(t, s, tenant, id, d, 4)
	if err := s.RemoveTags(ctxT(t), tenant, id, "vip"); err != nil {
		t.Fatal(err)
	}
	check("after RemoveTags", "")
	bad := inform(dev, base.Add(4*time.Minute))
	bad.PresetsFingerprint = store.Ptr("a\x00b")
	if _, err := s.ApplySessionDiff(ctxT(t), tenant, id, bad, 5); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("fingerprint with NUL: %v", err)
	}
}

// testPresetsStaleSession: the race of a campaign applying a preset
// (docs/campaigns.md, "Applying a preset"). A session starts, AddTags
// gives the device new tags while it runs, and the session ends recording
// the fingerprint of what it matched with, the old tags. The store keeps
// what the session recorded, but SessionState (and Get) return it with the
// new tags, which it does not cover: the next session matches the presets
// again, and its fingerprint covers the tags.
func testPresetsStaleSession(t *testing.T, s store.Store) {
	tenant := newTenant()
	dev := devID("00AABB", "R", "PF2")
	id := store.MakeID(dev)
	state := func(what string, wantTags []string, covered bool) store.SessionState {
		t.Helper()
		st, err := s.SessionState(ctxT(t), tenant, id)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		d := get(t, s, tenant, id, store.ReadOptions{})
		if !reflect.DeepEqual(st.Tags, wantTags) || !reflect.DeepEqual(d.Tags, wantTags) {
			t.Fatalf("%s: tags %q (Get %q), want %q", what, st.Tags, d.Tags, wantTags)
		}
		if d.PresetsFingerprint != st.PresetsFingerprint {
			t.Fatalf("%s: fingerprint %q, Get says %q", what, st.PresetsFingerprint, d.PresetsFingerprint)
		}
		if got := provisioning.FingerprintCovers(st.PresetsFingerprint, st.Tags); got != covered {
			t.Fatalf("%s: fingerprint %q covers tags %q: %v, want %v", what, st.PresetsFingerprint, st.Tags, got, covered)
		}
		return st
	}
	const rev = 7
	d := inform(dev, base, "0 BOOTSTRAP")
	d.AddTags = []string{"lab"}
	d.PresetsFingerprint = store.Ptr(provisioning.Fingerprint(rev, []string{"lab"}))
	apply(t, s, tenant, d, 1)
	state("converged", []string{"lab"}, true)

	// A session starts from the state; tags are added while it runs.
	started := state("session start", []string{"lab"}, true)
	if err := s.AddTags(ctxT(t), tenant, id, "wave-1"); err != nil {
		t.Fatal(err)
	}
	state("after AddTags", []string{"lab", "wave-1"}, false)
	end := inform(dev, base.Add(time.Minute), "2 PERIODIC")
	end.PresetsFingerprint = store.Ptr(provisioning.Fingerprint(rev, started.Tags))
	applyID(t, s, tenant, id, end, 2)
	stale := state("the stale session ended", []string{"lab", "wave-1"}, false)
	if stale.PresetsFingerprint != *end.PresetsFingerprint {
		t.Fatalf("fingerprint %q, want the session's %q", stale.PresetsFingerprint, *end.PresetsFingerprint)
	}

	// The next session matches with the new tags, and its presets add one.
	next := inform(dev, base.Add(2*time.Minute), "2 PERIODIC")
	next.AddTags = []string{"applied"}
	next.PresetsFingerprint = store.Ptr(provisioning.Fingerprint(rev, provisioning.TagsAfter(stale.Tags, next.AddTags, nil)))
	applyID(t, s, tenant, id, next, 3)
	state("the next session ended", []string{"applied", "lab", "wave-1"}, true)

	// The same race with RemoveTags.
	started = state("another session start", []string{"applied", "lab", "wave-1"}, true)
	if err := s.RemoveTags(ctxT(t), tenant, id, "wave-1"); err != nil {
		t.Fatal(err)
	}
	end = inform(dev, base.Add(3*time.Minute), "2 PERIODIC")
	end.PresetsFingerprint = store.Ptr(provisioning.Fingerprint(rev, started.Tags))
	applyID(t, s, tenant, id, end, 4)
	state("a stale session ended after RemoveTags", []string{"applied", "lab"}, false)
}
