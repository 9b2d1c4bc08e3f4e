// Package storetest is the contract every campaigns store passes
// (store.Store): run it from each implementation's tests.
package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	"github.com/fleetacs/fleetacs/services/campaigns/store"
)

// Run runs the contract on stores made by open (a fresh, started store
// each time).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("CreateGetUpdate", func(t *testing.T) { testCreateGetUpdate(t, open(t)) })
	t.Run("Idempotency", func(t *testing.T) { testIdempotency(t, open(t)) })
	t.Run("ListAndUnsettled", func(t *testing.T) { testList(t, open(t)) })
	t.Run("Devices", func(t *testing.T) { testDevices(t, open(t)) })
	t.Run("Leases", func(t *testing.T) { testLeases(t, open(t)) })
}

// testLeases: one owner at a time per campaign, renewed by its owner,
// taken by another once ended or released, campaigns and tenants apart.
func testLeases(t *testing.T, s store.Store) {
	ctx := t.Context()
	take := func(tenant, id, owner string, now time.Time, want bool) {
		t.Helper()
		got, err := s.Lease(ctx, tenant, id, owner, now, now.Add(10*time.Second))
		if err != nil || got != want {
			t.Fatalf("Lease(%s/%s, %s, %s) = %v, %v; want %v", tenant, id, owner, now.Sub(t0), got, err, want)
		}
	}
	take("t1", "c1", "a", t0, true)
	take("t1", "c1", "a", t0.Add(time.Second), true) // renewed: until t0+11s
	take("t1", "c1", "b", t0.Add(10*time.Second), false)
	take("t1", "c2", "b", t0, true) // another campaign
	take("t2", "c1", "b", t0, true) // another tenant
	take("t1", "c1", "b", t0.Add(11*time.Second), true)
	take("t1", "c1", "a", t0.Add(12*time.Second), false)
	// Release by a non-owner changes nothing; by the owner, frees it.
	if err := s.Release(ctx, "t1", "c1", "a"); err != nil {
		t.Fatal(err)
	}
	take("t1", "c1", "a", t0.Add(12*time.Second), false)
	if err := s.Release(ctx, "t1", "c1", "b"); err != nil {
		t.Fatal(err)
	}
	take("t1", "c1", "a", t0.Add(12*time.Second), true)
}

func record(tenant, id string, at time.Time) store.Record {
	return store.Record{Tenant: tenant, ID: id, State: campaignsv1.CampaignState_CAMPAIGN_STATE_RUNNING, CreateTime: at,
		Campaign: &campaignsv1.Campaign{Id: id, Tenant: tenant, Name: "n-" + id, State: campaignsv1.CampaignState_CAMPAIGN_STATE_RUNNING}}
}

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func testCreateGetUpdate(t *testing.T, s store.Store) {
	ctx := t.Context()
	r := record("t1", "c1", t0)
	r.Run.WaveEnds = []uint64{2, 10}
	got, existing, err := s.Create(ctx, r)
	if err != nil || existing || got.Version != 1 {
		t.Fatalf("create: %v %v %d", err, existing, got.Version)
	}
	if _, err := s.Get(ctx, "t2", "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get in another tenant: %v", err)
	}
	g, err := s.Get(ctx, "t1", "c1")
	if err != nil || !proto.Equal(g.Campaign, r.Campaign) || len(g.Run.WaveEnds) != 2 || !g.CreateTime.Equal(t0) {
		t.Fatalf("get: %v %+v", err, g)
	}
	g.State = campaignsv1.CampaignState_CAMPAIGN_STATE_PAUSED
	g.Campaign.StateDetail = "paused by op"
	g.Run.Planned = 7
	u, err := s.Update(ctx, g)
	if err != nil || u.Version != 2 {
		t.Fatalf("update: %v %d", err, u.Version)
	}
	if _, err := s.Update(ctx, g); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	g2, _ := s.Get(ctx, "t1", "c1")
	if g2.State != campaignsv1.CampaignState_CAMPAIGN_STATE_PAUSED || g2.Run.Planned != 7 || g2.Campaign.GetStateDetail() != "paused by op" || g2.Version != 2 {
		t.Fatalf("after update: %+v", g2)
	}
	missing := record("t1", "nope", t0)
	missing.Version = 1
	if _, err := s.Update(ctx, missing); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of a missing campaign: %v", err)
	}
}

func testIdempotency(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := record("t1", "a", t0)
	a.IdempotencyKey = "k"
	if _, _, err := s.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	b := record("t1", "b", t0.Add(time.Second))
	b.IdempotencyKey = "k"
	got, existing, err := s.Create(ctx, b)
	if err != nil || !existing || got.ID != "a" {
		t.Fatalf("same key: %v %v %q", err, existing, got.ID)
	}
	if _, err := s.Get(ctx, "t1", "b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the repeated create stored a campaign: %v", err)
	}
	c := record("t2", "c", t0)
	c.IdempotencyKey = "k"
	if got, existing, err := s.Create(ctx, c); err != nil || existing || got.ID != "c" {
		t.Fatalf("same key in another tenant: %v %v %q", err, existing, got.ID)
	}
	// Campaigns without a key never collide.
	for _, id := range []string{"x", "y"} {
		if _, existing, err := s.Create(ctx, record("t1", id, t0)); err != nil || existing {
			t.Fatalf("create %s: %v %v", id, err, existing)
		}
	}
}

func testList(t *testing.T, s store.Store) {
	ctx := t.Context()
	for i := range 5 {
		r := record("t1", fmt.Sprintf("c%d", i), t0.Add(time.Duration(i)*time.Minute))
		if i == 1 {
			r.State = campaignsv1.CampaignState_CAMPAIGN_STATE_COMPLETED
			r.Settled = true
		}
		if _, _, err := s.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Create(ctx, record("t2", "other", t0)); err != nil {
		t.Fatal(err)
	}
	page, err := s.List(ctx, "t1", 0, nil, 2)
	if err != nil || len(page) != 2 || page[0].ID != "c4" || page[1].ID != "c3" {
		t.Fatalf("first page: %v %v", err, ids(page))
	}
	page, err = s.List(ctx, "t1", 0, &store.Cursor{CreateTime: page[1].CreateTime, ID: page[1].ID}, 10)
	if err != nil || len(page) != 3 || page[0].ID != "c2" || page[2].ID != "c0" {
		t.Fatalf("second page: %v %v", err, ids(page))
	}
	done, err := s.List(ctx, "t1", campaignsv1.CampaignState_CAMPAIGN_STATE_COMPLETED, nil, 10)
	if err != nil || len(done) != 1 || done[0].ID != "c1" {
		t.Fatalf("by state: %v %v", err, ids(done))
	}
	un, err := s.Unsettled(ctx)
	if err != nil || len(un) != 5 {
		t.Fatalf("unsettled: %v %v", err, ids(un))
	}
}

func ids(rs []store.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Tenant+"/"+r.ID)
	}
	return out
}

func testDevices(t *testing.T, s store.Store) {
	ctx := t.Context()
	var ds []store.Device
	for i := range 250 {
		ds = append(ds, store.Device{Tenant: "t1", Campaign: "c", DeviceID: fmt.Sprintf("dev-%03d", i), Seq: uint64(i), Wave: -1, Outcome: campaignsv1.Outcome_OUTCOME_PENDING})
	}
	if err := s.AddDevices(ctx, ds[:200]); err != nil {
		t.Fatal(err)
	}
	// A repeated page leaves what is recorded as it is.
	moved := ds[150]
	moved.TaskID, moved.Outcome, moved.UpdateTime = "task-150", campaignsv1.Outcome_OUTCOME_IN_FLIGHT, t0
	if err := s.UpdateDevice(ctx, moved); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDevices(ctx, ds[100:]); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDevices(ctx, []store.Device{{Tenant: "t1", Campaign: "other", DeviceID: "dev-000", Wave: -1, Outcome: campaignsv1.Outcome_OUTCOME_PENDING}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetWave(ctx, "t1", "c", 0, 10, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetWave(ctx, "t1", "c", 10, 250, 1); err != nil {
		t.Fatal(err)
	}
	w0, err := s.Devices(ctx, store.DeviceQuery{Tenant: "t1", Campaign: "c", Wave: 0, AfterSeq: -1, Limit: 100})
	if err != nil || len(w0) != 10 || w0[0].DeviceID != "dev-000" || w0[9].Seq != 9 {
		t.Fatalf("wave 0: %v %d", err, len(w0))
	}
	var all []store.Device
	after := int64(-1)
	for {
		page, err := s.Devices(ctx, store.DeviceQuery{Tenant: "t1", Campaign: "c", Wave: -1, AfterSeq: after, Limit: 64})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = int64(page[len(page)-1].Seq)
	}
	if len(all) != 250 {
		t.Fatalf("paged: %d devices", len(all))
	}
	for i, d := range all {
		if d.Seq != uint64(i) {
			t.Fatalf("device %d has seq %d", i, d.Seq)
		}
	}
	if all[150].TaskID != "task-150" || all[150].Outcome != campaignsv1.Outcome_OUTCOME_IN_FLIGHT || !all[150].UpdateTime.Equal(t0) {
		t.Fatalf("device 150 after a repeated add: %+v", all[150])
	}
	inFlight, err := s.Devices(ctx, store.DeviceQuery{Tenant: "t1", Campaign: "c", Wave: -1, Outcome: campaignsv1.Outcome_OUTCOME_IN_FLIGHT, AfterSeq: -1})
	if err != nil || len(inFlight) != 1 || inFlight[0].DeviceID != "dev-150" {
		t.Fatalf("in flight: %v %v", err, inFlight)
	}
	n, err := s.SetOutcomes(ctx, "t1", "c", campaignsv1.Outcome_OUTCOME_PENDING, campaignsv1.Outcome_OUTCOME_SKIPPED, "aborted")
	if err != nil || n != 249 {
		t.Fatalf("set outcomes: %v %d", err, n)
	}
	counts, err := s.Count(ctx, "t1", "c")
	if err != nil {
		t.Fatal(err)
	}
	if counts[0][campaignsv1.Outcome_OUTCOME_SKIPPED] != 10 || counts[1][campaignsv1.Outcome_OUTCOME_SKIPPED] != 239 || counts[1][campaignsv1.Outcome_OUTCOME_IN_FLIGHT] != 1 || len(counts) != 2 {
		t.Fatalf("counts: %v", counts)
	}
	if err := s.UpdateDevice(ctx, store.Device{Tenant: "t2", Campaign: "c", DeviceID: "dev-000"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of another tenant's device: %v", err)
	}
	other, err := s.Count(ctx, "t1", "other")
	if err != nil || other[-1][campaignsv1.Outcome_OUTCOME_PENDING] != 1 {
		t.Fatalf("other campaign: %v %v", err, other)
	}
}
