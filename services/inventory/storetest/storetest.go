// Package storetest is the contract suite of the inventory store port: one
// body of tests that every store.Store adapter runs against its real backend
// (docs/style.md rule 3). An adapter's test calls Run with a factory.
//
// Every subtest works in tenants of its own, so a factory may hand out one
// shared store and database; it may also create a fresh one each time.
package storetest

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// Factory returns a started store. It registers its own cleanup with t.
type Factory func(t *testing.T) store.Store

// Run runs the whole contract suite.
func Run(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"StartIsIdempotent", testStartIdempotent},
		{"CreateAndGet", testCreateAndGet},
		{"InformUpdatesDevice", testInformUpdates},
		{"SessionTakeover", testTakeover},
		{"ConnectionRequestCredentials", testCredentials},
		{"SetCPECredentials", testSetCPECredentials},
		{"ConnectionRequestPendingAndRefused", testCRCredentials},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"InvalidArguments", testInvalidArguments},
		{"SpecialDeviceIDs", testSpecialIDs},
		{"ParamsSetAndMerge", testParamsMerge},
		{"ParamsValuesKeptExactly", testValuesExact},
		{"ParamsRereadKeepFreshTimes", testRereadTimes},
		{"SessionState", testSessionState},
		{"PresetsFingerprint", testPresetsFingerprint},
		{"PresetsStaleSession", testPresetsStaleSession},
		{"ParamsDeletePrefix", testDeletePrefix},
		{"ParamsReplaceSubtree", testReplaceSubtree},
		{"ParamsDeleteAll", testDeleteAll},
		{"GetParamPrefix", testGetParamPrefix},
		{"LargeTree", testLargeTree},
		{"Tags", testTags},
		{"TagsInDiff", testTagsInDiff},
		{"Fencing", testFencing},
		{"TenantIsolation", testTenantIsolation},
		{"Filters", testFilters},
		{"FilterCombinations", testFilterCombinations},
		{"Pagination", testPagination},
		{"PaginationWithInserts", testPaginationWithInserts},
		{"PaginationConcurrentInserts", testPaginationConcurrentInserts},
		{"ListWithParams", testListWithParams},
		{"ConcurrentDiffsManyDevices", testConcurrentManyDevices},
		{"ConcurrentDiffsOneDevice", testConcurrentOneDevice},
		{"ConcurrentFencing", testConcurrentFencing},
		{"DiscoveryProfiles", testDiscoveryProfiles},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

var tenantSeq atomic.Int64

// runID keeps tenants of separate runs against one database apart.
var runID = time.Now().UnixNano() % 1e9

// newTenant returns a tenant no other subtest uses.
func newTenant() string {
	return fmt.Sprintf("t%d-%d", runID, tenantSeq.Add(1))
}

// base is a time with sub-millisecond digits, to check that every adapter
// rounds the same way.
var base = time.Date(2025, 3, 4, 5, 6, 7, 123_456_789, time.UTC)

// ms is how a stored time reads back.
func ms(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func devID(oui, productClass, serial string) cwmp.DeviceID {
	return cwmp.DeviceID{Manufacturer: "Acme", OUI: oui, ProductClass: productClass, SerialNumber: serial}
}

func inform(d cwmp.DeviceID, at time.Time, events ...string) store.Diff {
	ev := make([]cwmp.Event, 0, len(events))
	for _, e := range events {
		ev = append(ev, cwmp.Event{Code: e})
	}
	return store.Diff{
		Time:      at,
		SessionID: fmt.Sprintf("s-%d", at.UnixNano()),
		DeviceID:  &d,
		Inform: &store.Inform{
			RemoteIP: netip.MustParseAddr("192.0.2.10"),
			Events:   ev,
		},
		Fields: store.Fields{
			DataModelRoot:        store.Ptr("Device."),
			SoftwareVersion:      store.Ptr("1.0.0"),
			ConnectionRequestURL: store.Ptr("http://192.0.2.10:7547/cr"),
		},
	}
}

func apply(t *testing.T, s store.Store, tenant string, d store.Diff, token uint64) string {
	t.Helper()
	if d.DeviceID == nil {
		t.Fatal("apply helper needs a DeviceID to derive the id")
	}
	id := store.MakeID(*d.DeviceID)
	if _, err := s.ApplySessionDiff(ctxT(t), tenant, id, d, token); err != nil {
		t.Fatalf("ApplySessionDiff(%s, %s): %v", tenant, id, err)
	}
	return id
}

func applyID(t *testing.T, s store.Store, tenant, id string, d store.Diff, token uint64) {
	t.Helper()
	if _, err := s.ApplySessionDiff(ctxT(t), tenant, id, d, token); err != nil {
		t.Fatalf("ApplySessionDiff(%s, %s): %v", tenant, id, err)
	}
}

func get(t *testing.T, s store.Store, tenant, id string, opts store.ReadOptions) store.Device {
	t.Helper()
	d, err := s.Get(ctxT(t), tenant, id, opts)
	if err != nil {
		t.Fatalf("Get(%s, %s): %v", tenant, id, err)
	}
	return d
}

var allParams = store.ReadOptions{Params: true}

// listAll pages through f with the given page size and returns the ids in
// order, failing on duplicates.
func listAll(t *testing.T, s store.Store, f store.Filter, limit int) []string {
	t.Helper()
	var ids []string
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("List never ends")
		}
		p, err := s.List(ctxT(t), f, store.PageRequest{Limit: limit, Cursor: cursor}, store.ReadOptions{})
		if err != nil {
			t.Fatalf("List(%+v): %v", f, err)
		}
		for _, d := range p.Devices {
			if seen[d.ID] {
				t.Fatalf("List returned %s twice", d.ID)
			}
			if d.Tenant != f.Tenant {
				t.Fatalf("List of tenant %s returned device of tenant %s", f.Tenant, d.Tenant)
			}
			seen[d.ID] = true
			ids = append(ids, d.ID)
		}
		if p.Next == "" {
			return ids
		}
		if len(p.Devices) == 0 {
			t.Fatal("List returned an empty page with a next cursor")
		}
		cursor = p.Next
	}
}
