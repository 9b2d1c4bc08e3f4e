package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// runAll runs fn(0..n-1) in goroutines and fails with the errors they
// return.
func runAll(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = fn(i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// testConcurrentManyDevices runs sessions of many devices side by side,
// each a sequence of periodic Informs with 10 parameters under a growing
// token, the way session workers write.
func testConcurrentManyDevices(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	const workers, devices, sessions = 8, 6, 4
	runAll(t, workers, func(w int) error {
		for dv := range devices {
			dev := devID("00AABB", "R", fmt.Sprintf("W%d-D%d", w, dv))
			id := store.MakeID(dev)
			for sn := 1; sn <= sessions; sn++ {
				d := inform(dev, base.Add(time.Duration(sn)*time.Minute), "2 PERIODIC")
				for p := range 10 {
					d.Params = append(d.Params, store.SetValue(fmt.Sprintf("Device.P%d", p), fmt.Sprintf("s%d", sn), "xsd:string"))
				}
				d.AddTags = []string{fmt.Sprintf("s%d", sn)}
				if _, err := s.ApplySessionDiff(ctx, tenant, id, d, uint64(sn)); err != nil {
					return fmt.Errorf("device %s session %d: %w", id, sn, err)
				}
			}
		}
		return nil
	})
	ids := listAll(t, s, store.Filter{Tenant: tenant, Tags: []string{"s1", "s4"}, Params: []store.ParamCondition{
		{Path: "Device.P9", Op: store.OpEq, Value: fmt.Sprintf("s%d", sessions)}}}, 7)
	if len(ids) != workers*devices {
		t.Fatalf("%d devices complete, want %d", len(ids), workers*devices)
	}
	for _, id := range ids[:3] {
		d := get(t, s, tenant, id, allParams)
		if len(d.Params) != 10 || d.FencingToken != sessions || !d.LastInform.Equal(ms(base.Add(sessions*time.Minute))) {
			t.Fatalf("device %s: %+v", id, d)
		}
	}
}

// testConcurrentOneDevice has many writers of one lease hit one device at
// once: nothing they write may be lost.
func testConcurrentOneDevice(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	id := apply(t, s, tenant, inform(devID("00AABB", "R", "HOT"), base), 1)
	const writers, rounds = 12, 8
	runAll(t, writers, func(w int) error {
		for r := range rounds {
			d := store.Diff{
				Time:    base.Add(time.Second),
				Params:  []store.ParamUpdate{store.SetValue(fmt.Sprintf("Device.W%d.R%d", w, r), "x", "")},
				AddTags: []string{fmt.Sprintf("w%d-r%d", w, r)},
			}
			if r > 0 {
				// Add and remove together take the compare-and-set
				// path where a backend has one.
				d.RemoveTags = []string{fmt.Sprintf("w%d-r%d", w, r-1)}
			}
			if _, err := s.ApplySessionDiff(ctx, tenant, id, d, 1); err != nil {
				return err
			}
			if r%3 == 0 {
				if err := s.AddTags(ctx, tenant, id, fmt.Sprintf("ops-%d", w)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	got := get(t, s, tenant, id, allParams)
	if len(got.Params) != writers*rounds {
		t.Fatalf("%d parameters, want %d: concurrent diffs lost updates", len(got.Params), writers*rounds)
	}
	var want []string
	for w := range writers {
		want = append(want, fmt.Sprintf("w%d-r%d", w, rounds-1), fmt.Sprintf("ops-%d", w))
	}
	slices.Sort(want)
	if !slices.Equal(got.Tags, want) {
		t.Fatalf("tags = %q\n want %q", got.Tags, want)
	}
}

// testConcurrentFencing races writers holding successive leases on one
// device: every diff is either applied whole or rejected as stale, the
// newest lease always wins, and what was rejected left no trace.
func testConcurrentFencing(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	id := apply(t, s, tenant, inform(devID("00AABB", "R", "FENCE"), base), 1)
	const n = 40
	tokens := make([]uint64, n)
	for i := range tokens {
		tokens[i] = uint64(i + 2)
	}
	rand.New(rand.NewPCG(3, 4)).Shuffle(n, func(i, j int) { tokens[i], tokens[j] = tokens[j], tokens[i] })
	accepted := make([]bool, n)
	runAll(t, n, func(i int) error {
		tok := tokens[i]
		_, err := s.ApplySessionDiff(ctx, tenant, id, store.Diff{
			Time: base.Add(time.Duration(tok) * time.Second),
			Params: []store.ParamUpdate{
				store.SetValue("Device.Last", fmt.Sprint(tok), ""),
				store.SetValue(fmt.Sprintf("Device.T%d", tok), "x", ""),
			},
		}, tok)
		switch {
		case err == nil:
			accepted[i] = true
		case !errors.Is(err, store.ErrStaleFencingToken):
			return fmt.Errorf("token %d: %w", tok, err)
		}
		return nil
	})
	got := get(t, s, tenant, id, allParams)
	top := uint64(n + 1)
	if got.FencingToken != top || got.Params["Device.Last"].Value != fmt.Sprint(top) {
		t.Fatalf("final token %d, Device.Last %q; want %d", got.FencingToken, got.Params["Device.Last"].Value, top)
	}
	for i, tok := range tokens {
		_, present := got.Params[fmt.Sprintf("Device.T%d", tok)]
		if present != accepted[i] {
			t.Fatalf("token %d: accepted %v but its parameter present %v", tok, accepted[i], present)
		}
		if tok == top && !accepted[i] {
			t.Fatalf("the newest lease %d was rejected", tok)
		}
	}
}
