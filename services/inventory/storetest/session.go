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
