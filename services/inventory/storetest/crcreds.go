package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// crView is what Get and SessionState must agree on about a device's
// connection-request credentials.
type crView struct {
	Current, Pending *store.Credentials
	PendingTime      time.Time
	Refused          time.Time
}

func crOf(t *testing.T, s store.Store, tenant, id string) crView {
	t.Helper()
	d := get(t, s, tenant, id, store.ReadOptions{})
	st, err := s.SessionState(ctxT(t), tenant, id)
	if err != nil {
		t.Fatalf("SessionState: %v", err)
	}
	got := crView{d.ConnectionRequestCredentials, d.PendingConnectionRequestCredentials, d.PendingConnectionRequestTime, d.ConnectionRequestRefused}
	fromState := crView{st.ConnectionRequestCredentials, st.PendingConnectionRequestCredentials, st.PendingConnectionRequestTime, st.ConnectionRequestRefused}
	if !reflect.DeepEqual(got, fromState) {
		t.Fatalf("Get says %+v, SessionState %+v", got, fromState)
	}
	return got
}

// testCRCredentials: an operator's connection-request credentials wait as
// pending until a session's diff echoes their time; a refusal is kept
// until credentials change; operator credentials the CPE has replace the
// current ones at once.
func testCRCredentials(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	dev := devID("00AABB", "", "CRP1")
	id := apply(t, s, tenant, inform(dev, base), 1)
	gen := store.Credentials{Username: "fleetacs-gen", Password: "generated-Pw-0123456789abcdef"}

	// A CPE refuses: the refusal is kept through other diffs.
	applyID(t, s, tenant, id, store.Diff{Time: base.Add(time.Second), ConnectionRequestRefused: base.Add(time.Second)}, 1)
	applyID(t, s, tenant, id, inform(dev, base.Add(time.Minute)), 1)
	if got := crOf(t, s, tenant, id); got.Current != nil || !got.Refused.Equal(ms(base.Add(time.Second))) {
		t.Fatalf("after a refusal: %+v", got)
	}
	// Credentials set clear it.
	applyID(t, s, tenant, id, store.Diff{Time: base.Add(2 * time.Minute), ConnectionRequestCredentials: &gen}, 1)
	if got := crOf(t, s, tenant, id); !reflect.DeepEqual(got, crView{Current: &gen}) {
		t.Fatalf("after credentials set: %+v", got)
	}

	// An operator's: pending, the current ones stay (the CPE has them).
	op1 := store.Credentials{Username: "ops", Password: "operator-Pw-1"}
	if err := s.SetConnectionRequestCredentials(ctx, tenant, id, op1, true); err != nil {
		t.Fatal(err)
	}
	got := crOf(t, s, tenant, id)
	if !reflect.DeepEqual(got.Current, &gen) || !reflect.DeepEqual(got.Pending, &op1) || got.PendingTime.IsZero() {
		t.Fatalf("after operator credentials: %+v", got)
	}
	t1 := got.PendingTime
	// Given again at once: a later time, so that a session that set the
	// first ones does not forget the second.
	op2 := store.Credentials{Username: "ops", Password: "operator-Pw-2"}
	if err := s.SetConnectionRequestCredentials(ctx, tenant, id, op2, true); err != nil {
		t.Fatal(err)
	}
	got = crOf(t, s, tenant, id)
	if !reflect.DeepEqual(got.Pending, &op2) || !got.PendingTime.After(t1) {
		t.Fatalf("operator credentials again: %+v (first at %v)", got, t1)
	}
	t2 := got.PendingTime
	// A session set the first ones: they are current, the second still
	// pending.
	applyID(t, s, tenant, id, store.Diff{Time: base.Add(3 * time.Minute), ConnectionRequestCredentials: &op1, ConnectionRequestPendingTime: t1}, 2)
	got = crOf(t, s, tenant, id)
	if !reflect.DeepEqual(got.Current, &op1) || !reflect.DeepEqual(got.Pending, &op2) || !got.PendingTime.Equal(t2) {
		t.Fatalf("after the first ones were set: %+v", got)
	}
	// Then the second: nothing pending; a replay changes nothing.
	d := store.Diff{Time: base.Add(4 * time.Minute), ConnectionRequestCredentials: &op2, ConnectionRequestPendingTime: t2}
	applyID(t, s, tenant, id, d, 3)
	applyID(t, s, tenant, id, d, 3)
	if got := crOf(t, s, tenant, id); !reflect.DeepEqual(got, crView{Current: &op2}) {
		t.Fatalf("after the second were set: %+v", got)
	}

	// Pending ones, a refusal, then credentials the CPE has: current at
	// once, nothing pending, no refusal.
	if err := s.SetConnectionRequestCredentials(ctx, tenant, id, op1, true); err != nil {
		t.Fatal(err)
	}
	applyID(t, s, tenant, id, store.Diff{Time: base.Add(5 * time.Minute), ConnectionRequestRefused: base.Add(5 * time.Minute)}, 4)
	if got := crOf(t, s, tenant, id); got.Pending == nil || got.Refused.IsZero() {
		t.Fatalf("pending and refused: %+v", got)
	}
	own := store.Credentials{Username: "factory", Password: "factory-Pw"}
	if err := s.SetConnectionRequestCredentials(ctx, tenant, id, own, false); err != nil {
		t.Fatal(err)
	}
	if got := crOf(t, s, tenant, id); !reflect.DeepEqual(got, crView{Current: &own}) {
		t.Fatalf("credentials the CPE has: %+v", got)
	}
	// New pending ones clear a refusal too.
	applyID(t, s, tenant, id, store.Diff{Time: base.Add(6 * time.Minute), ConnectionRequestRefused: base.Add(6 * time.Minute)}, 5)
	if err := s.SetConnectionRequestCredentials(ctx, tenant, id, op2, true); err != nil {
		t.Fatal(err)
	}
	if got := crOf(t, s, tenant, id); !got.Refused.IsZero() || !reflect.DeepEqual(got.Pending, &op2) {
		t.Fatalf("pending after a refusal: %+v", got)
	}

	if err := s.SetConnectionRequestCredentials(ctx, tenant, "NOPE-1", op1, true); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown device: %v, want ErrNotFound", err)
	}
	if err := s.SetConnectionRequestCredentials(ctx, newTenant(), id, op1, false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("device of another tenant: %v, want ErrNotFound", err)
	}
	for name, c := range map[string]store.Credentials{"empty user": {Password: "p"}, "empty password": {Username: "u"}, "NUL": {Username: "u", Password: "p\x00"}} {
		if err := s.SetConnectionRequestCredentials(ctx, tenant, id, c, true); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if got := crOf(t, s, tenant, id); !reflect.DeepEqual(got.Pending, &op2) {
		t.Errorf("refused credentials changed the stored ones: %+v", got)
	}
}
