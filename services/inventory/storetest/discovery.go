package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// Discovery profiles: the largest OK wins, the smallest failure above it is
// reported, the whole-tree flag sticks, and the merge is idempotent and
// commutative, per tenant and normalised class.
func testDiscoveryProfiles(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	class := store.ProductClass{Tenant: tenant, OUI: "a00001", ProductClass: " OT2800 "}
	get := func(c store.ProductClass) store.DiscoveryProfile {
		t.Helper()
		p, err := s.DiscoveryProfile(ctx, c)
		if err != nil {
			t.Fatalf("read profile %+v: %v", c, err)
		}
		return p
	}
	record := func(c store.ProductClass, o store.DiscoveryObservation, at time.Time) {
		t.Helper()
		if err := s.RecordDiscovery(ctx, c, o, at); err != nil {
			t.Fatalf("record %+v: %v", o, err)
		}
	}
	if p := get(class); p != (store.DiscoveryProfile{}) {
		t.Fatalf("profile of an unknown class %+v", p)
	}

	steps := []struct {
		obs  store.DiscoveryObservation
		want store.DiscoveryProfile
	}{
		{store.DiscoveryObservation{GPVBatchFailed: 100}, store.DiscoveryProfile{GPVBatchFailed: 100}},
		{store.DiscoveryObservation{GPVBatchFailed: 50}, store.DiscoveryProfile{GPVBatchFailed: 50}},
		{store.DiscoveryObservation{GPVBatchOK: 25}, store.DiscoveryProfile{GPVBatchOK: 25, GPVBatchFailed: 50}},
		// A failure at a size known to work is not the size's fault.
		{store.DiscoveryObservation{GPVBatchFailed: 12}, store.DiscoveryProfile{GPVBatchOK: 25, GPVBatchFailed: 50}},
		// Once 50 worked, the next failure above it is 100.
		{store.DiscoveryObservation{GPVBatchOK: 50}, store.DiscoveryProfile{GPVBatchOK: 50, GPVBatchFailed: 100}},
		{store.DiscoveryObservation{SubtreeGPNFailed: true}, store.DiscoveryProfile{GPVBatchOK: 50, GPVBatchFailed: 100, SubtreeGPNFailed: true}},
		// Idempotent, and nothing unsets the flag or lowers the OK.
		{store.DiscoveryObservation{GPVBatchOK: 50}, store.DiscoveryProfile{GPVBatchOK: 50, GPVBatchFailed: 100, SubtreeGPNFailed: true}},
		{store.DiscoveryObservation{GPVBatchOK: 10}, store.DiscoveryProfile{GPVBatchOK: 50, GPVBatchFailed: 100, SubtreeGPNFailed: true}},
	}
	var last time.Time
	for i, st := range steps {
		at := base.Add(time.Duration(i) * time.Minute)
		if i == len(steps)-1 {
			at = base // an older observation keeps the newer time
		} else {
			last = at
		}
		record(class, st.obs, at)
		got := get(class)
		if !got.Updated.Equal(ms(last)) {
			t.Fatalf("step %d: updated %v, want %v", i, got.Updated, ms(last))
		}
		got.Updated = time.Time{}
		if got != st.want {
			t.Fatalf("step %d (%+v): profile %+v, want %+v", i, st.obs, got, st.want)
		}
	}

	// The class is normalised: upper-case OUI, trimmed product class. An
	// empty product class, another tenant, another class: profiles apart.
	same := store.ProductClass{Tenant: tenant, OUI: "A00001", ProductClass: "OT2800"}
	if got := get(same); got.GPVBatchOK != 50 {
		t.Fatalf("normalised class reads %+v", got)
	}
	for _, other := range []store.ProductClass{
		{Tenant: tenant, OUI: "A00001"},
		{Tenant: tenant, OUI: "A00002", ProductClass: "OT2800"},
		{Tenant: newTenant(), OUI: "A00001", ProductClass: "OT2800"},
	} {
		if got := get(other); got != (store.DiscoveryProfile{}) {
			t.Fatalf("class %+v sees %+v", other, got)
		}
	}

	// Commutative: the same observations in two orders, and at once.
	obs := []store.DiscoveryObservation{{GPVBatchFailed: 64}, {GPVBatchOK: 16}, {GPVBatchFailed: 32}, {GPVBatchOK: 8, GPVBatchFailed: 12}, {SubtreeGPNFailed: true}}
	want := store.DiscoveryProfile{GPVBatchOK: 16, GPVBatchFailed: 32, SubtreeGPNFailed: true}
	a := store.ProductClass{Tenant: tenant, OUI: "0A0B0C", ProductClass: "fwd"}
	b := store.ProductClass{Tenant: tenant, OUI: "0A0B0C", ProductClass: "rev"}
	c := store.ProductClass{Tenant: tenant, OUI: "0A0B0C", ProductClass: "par"}
	var wg sync.WaitGroup
	for i := range obs {
		record(a, obs[i], base)
		record(b, obs[len(obs)-1-i], base)
		wg.Go(func() {
			if err := s.RecordDiscovery(ctx, c, obs[i], base); err != nil {
				t.Errorf("concurrent record: %v", err)
			}
		})
	}
	wg.Wait()
	for _, k := range []store.ProductClass{a, b, c} {
		got := get(k)
		got.Updated = time.Time{}
		if got != want {
			t.Fatalf("class %s: profile %+v, want %+v", k.ProductClass, got, want)
		}
	}

	// Bad keys and sizes are refused and write nothing.
	for _, bad := range []struct {
		c store.ProductClass
		o store.DiscoveryObservation
	}{
		{store.ProductClass{Tenant: tenant, OUI: "XYZ123"}, store.DiscoveryObservation{GPVBatchOK: 1}},
		{store.ProductClass{Tenant: tenant, OUI: "A0000"}, store.DiscoveryObservation{GPVBatchOK: 1}},
		{store.ProductClass{Tenant: "", OUI: "A00001"}, store.DiscoveryObservation{GPVBatchOK: 1}},
		{store.ProductClass{Tenant: tenant, OUI: "A00001", ProductClass: "x\x00y"}, store.DiscoveryObservation{GPVBatchOK: 1}},
		{store.ProductClass{Tenant: tenant, OUI: "A00003"}, store.DiscoveryObservation{GPVBatchFailed: -1}},
		{store.ProductClass{Tenant: tenant, OUI: "A00003"}, store.DiscoveryObservation{GPVBatchOK: store.MaxBatchSize + 1}},
	} {
		if err := s.RecordDiscovery(ctx, bad.c, bad.o, base); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("record %+v %+v: %v", bad.c, bad.o, err)
		}
	}
	if got := get(store.ProductClass{Tenant: tenant, OUI: "A00003"}); got != (store.DiscoveryProfile{}) {
		t.Fatalf("refused record wrote %+v", got)
	}
}
