package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

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
			FencingToken: d.FencingToken, ConnectionRequestCredentials: d.ConnectionRequestCredentials}
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
	want.FencingToken = 8
	agree("after a diff of tags", want)

	if err := s.Delete(ctxT(t), tenant, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SessionState(ctxT(t), tenant, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted device: %v, want ErrNotFound", err)
	}
	apply(t, s, tenant, inform(dev, t3), 9)
	agree("created again", store.SessionState{DataModelRoot: "Device.", FencingToken: 9})
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
