package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/tasks/store"
)

func testUpdate(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	r := create(t, s, rec(tenant, "dev", base))
	up := r
	up.Version = 2
	up.State, up.Kind = 2, "download"
	up.UpdateTime = base.Add(time.Minute + 1500*time.Microsecond)
	up.DueTime = base.Add(2 * time.Hour)
	up.QueueSeq = 77
	up.Body, up.Secret = []byte("dispatched"), []byte("sealed")
	if err := s.Update(ctx, up, 1); err != nil {
		t.Fatalf("Update: %v", err)
	}
	mustMatch(t, "after Update", get(t, s, tenant, r.ID), want(up))

	// Ending a task clears its due time.
	end := want(up)
	end.Version, end.State, end.DueTime, end.Secret = 3, 5, time.Time{}, nil
	if err := s.Update(ctx, end, 2); err != nil {
		t.Fatalf("Update ending the task: %v", err)
	}
	mustMatch(t, "after ending", get(t, s, tenant, r.ID), end)

	// Version must step by one.
	bad := end
	bad.Version = 5
	if err := s.Update(ctx, bad, 3); err == nil || sentinel(err) {
		t.Fatalf("Update with Version expect+2: %v, want a plain error", err)
	}
	mustMatch(t, "after a refused Update", get(t, s, tenant, r.ID), end)

	missing := end
	missing.ID, missing.Version = newID(), 2
	if err := s.Update(ctx, missing, 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Update of a missing record: %v, want ErrNotFound", err)
	}
}

func testUpdateImmutable(t *testing.T, s store.Store) {
	tenant := newTenant()
	r := rec(tenant, "dev", base)
	r.IdempotencyKey = "k1"
	r = create(t, s, r)
	up := r
	up.Version = 2
	up.DeviceID, up.CreateTime, up.IdempotencyKey = "other-device", base.Add(time.Hour), "k2"
	up.State = 2
	if err := s.Update(ctxT(t), up, 1); err != nil {
		t.Fatalf("Update: %v", err)
	}
	w := up
	w.DeviceID, w.CreateTime, w.IdempotencyKey = r.DeviceID, r.CreateTime, r.IdempotencyKey
	mustMatch(t, "Update changed immutable fields", get(t, s, tenant, r.ID), w)
	// The key still finds it; the ignored one was not registered.
	k2 := rec(tenant, "dev", base)
	k2.IdempotencyKey = "k2"
	create(t, s, k2)
	again := rec(tenant, "dev", base)
	again.IdempotencyKey = "k1"
	if got, existing, err := s.Create(ctxT(t), again); err != nil || !existing || got.ID != r.ID {
		t.Fatalf("Create with key k1 after the update: %s existing %v, %v", got.ID, existing, err)
	}
	// Filters see the stored device.
	list, err := s.List(ctxT(t), store.Query{Tenant: tenant, DeviceID: "other-device"})
	if err != nil || len(list) != 0 {
		t.Fatalf("List by the ignored device: %d records, %v", len(list), err)
	}
}

func testUpdateConflicts(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	r := create(t, s, rec(tenant, "dev", base))
	v2 := r
	v2.Version, v2.State = 2, 2
	if err := s.Update(ctx, v2, 1); err != nil {
		t.Fatalf("Update to v2: %v", err)
	}
	stale := r
	stale.Version, stale.State = 2, 7
	if err := s.Update(ctx, stale, 1); !errors.Is(err, store.ErrVersionConflict) {
		t.Fatalf("Update from a stale version: %v, want ErrVersionConflict", err)
	}
	ahead := r
	ahead.Version, ahead.State = 4, 7
	if err := s.Update(ctx, ahead, 3); !errors.Is(err, store.ErrVersionConflict) {
		t.Fatalf("Update from a version not reached: %v, want ErrVersionConflict", err)
	}
	mustMatch(t, "after refused updates", get(t, s, tenant, r.ID), v2)
}

// testUpdateConcurrent has several updaters race on every version of one
// record, as replicas and sweepers do: exactly one wins each round, and
// the record holds the winner's write.
func testUpdateConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	r := create(t, s, rec(tenant, "dev", base))
	const updaters, rounds = 8, 6
	for round := range rounds {
		cur := get(t, s, tenant, r.ID)
		if cur.Version != uint64(round+1) {
			t.Fatalf("round %d: version %d", round, cur.Version)
		}
		errs := make([]error, updaters)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for u := range updaters {
			wg.Go(func() {
				up := cur
				up.Version = cur.Version + 1
				up.State = int32(100*round + u)
				up.Body = []byte(fmt.Sprintf("round %d updater %d", round, u))
				<-start
				errs[u] = s.Update(ctx, up, cur.Version)
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for u, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: updaters %d and %d both won version %d", round, winner, u, cur.Version+1)
			case err == nil:
				winner = u
			case !errors.Is(err, store.ErrVersionConflict):
				t.Fatalf("round %d: updater %d: %v, want nil or ErrVersionConflict", round, u, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no updater won", round)
		}
		got := get(t, s, tenant, r.ID)
		if got.State != int32(100*round+winner) || string(got.Body) != fmt.Sprintf("round %d updater %d", round, winner) {
			t.Fatalf("round %d: record holds state %d body %q, winner was %d", round, got.State, got.Body, winner)
		}
	}
}
