package sqlitestore

import (
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// TestConfirmedEntriesAreNotRewritten: a periodic Inform that reports the
// same values as the last one writes neither the device's tree nor its
// index rows (the contract suite checks the times readers see; this checks
// that the store got them without writes), and one whose values changed
// writes both.
func TestConfirmedEntriesAreNotRewritten(t *testing.T) {
	s := startStoreWith(t, Config{IndexedParams: []string{"Device.DeviceInfo.*"}})
	const tenant = "default"
	dev := testDevice("P")
	id := store.MakeID(dev)
	periodic := func(at time.Time, uptime string) store.Diff {
		return store.Diff{
			Time: at, SessionID: at.String(), DeviceID: &dev,
			Inform: &store.Inform{Events: []cwmp.Event{{Code: "2 PERIODIC"}}},
			Params: []store.ParamUpdate{
				store.SetValue("Device.DeviceInfo.SoftwareVersion", "1.0", "xsd:string"),
				store.SetValue("Device.DeviceInfo.UpTime", uptime, "xsd:unsignedInt"),
			},
		}
	}
	// tree is the device's tree and delta (treedelta.go).
	tree := func() []byte {
		t.Helper()
		var b, delta []byte
		if err := s.st.r.QueryRowContext(t.Context(), `SELECT t.tree, d.tree_delta FROM devices d
			LEFT JOIN device_trees t ON t.tenant = d.tenant AND t.device_id = d.id WHERE d.tenant = ? AND d.id = ?`,
			tenant, id).Scan(&b, &delta); err != nil {
			t.Fatal(err)
		}
		return append(append(b, 0xff), delta...)
	}
	indexed := func(path string) int64 {
		t.Helper()
		var ms int64
		if err := s.st.r.QueryRowContext(t.Context(), `SELECT updated FROM parameters WHERE tenant = ? AND device_id = ? AND path = ?`,
			tenant, id, path).Scan(&ms); err != nil {
			t.Fatal(err)
		}
		return ms
	}
	t1, t2, t3 := batchBase, batchBase.Add(time.Hour), batchBase.Add(2*time.Hour)
	for i, d := range []store.Diff{periodic(t1, "10"), periodic(t2, "10")} {
		if _, err := s.ApplySessionDiff(t.Context(), tenant, id, d, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	first := tree()
	if got := indexed("Device.DeviceInfo.UpTime"); got != t1.UnixMilli() {
		t.Errorf("unchanged index row rewritten: updated %d, want %d", got, t1.UnixMilli())
	}
	got := mustGet(t, s, tenant, id).Params
	for _, path := range []string{"Device.DeviceInfo.SoftwareVersion", "Device.DeviceInfo.UpTime"} {
		if !got[path].Updated.Equal(t2) {
			t.Errorf("%s read as updated %v, want %v", path, got[path].Updated, t2)
		}
	}
	if _, err := s.ApplySessionDiff(t.Context(), tenant, id, periodic(t3, "7210"), 3); err != nil {
		t.Fatal(err)
	}
	if string(tree()) == string(first) {
		t.Error("a changed value left the tree as it was")
	}
	if got := indexed("Device.DeviceInfo.UpTime"); got != t3.UnixMilli() {
		t.Errorf("changed index row: updated %d, want %d", got, t3.UnixMilli())
	}
	got = mustGet(t, s, tenant, id).Params
	if p := got["Device.DeviceInfo.UpTime"]; p.Value != "7210" || !p.Updated.Equal(t3) {
		t.Errorf("UpTime read as %+v", p)
	}
}

// TestConfirmedValuesSkippedOnlyWhenExact: a diff whose confirmed values
// are those of the device's last committed diff writes no rows; a batch
// that changes a value and sets it back, a deletion in between, or a
// re-created device must still end with the right values.
func TestConfirmedValuesSkippedOnlyWhenExact(t *testing.T) {
	s := startStore(t)
	const tenant = "default"
	dev := testDevice("Q")
	id := store.MakeID(dev)
	at := batchBase
	diff := func(value string) store.Diff {
		at = at.Add(time.Minute)
		return store.Diff{
			Time: at, SessionID: at.String(), DeviceID: &dev,
			Inform: &store.Inform{Events: []cwmp.Event{{Code: "2 PERIODIC"}}},
			Params: []store.ParamUpdate{store.SetValue("Device.A", value, "xsd:string"), store.SetValue("Device.B", "b", "xsd:string")},
		}
	}
	apply := func(d store.Diff) {
		t.Helper()
		if _, err := s.ApplySessionDiff(t.Context(), tenant, id, d, 1); err != nil {
			t.Fatal(err)
		}
	}
	value := func(want string) {
		t.Helper()
		if got := mustGet(t, s, tenant, id).Params["Device.A"]; got.Value != want || !got.Updated.Equal(at) {
			t.Fatalf("Device.A = %q updated %v, want %q updated %v", got.Value, got.Updated, want, at)
		}
	}
	apply(diff("1"))
	apply(diff("1"))
	value("1")

	// One batch: the value changes, then comes back to what the cache
	// holds from before the batch.
	release := hold(t, s)
	first := enqueue(t, s, t.Context(), 0, tenant, id, diff("5"), 1)
	second := enqueue(t, s, t.Context(), 1, tenant, id, diff("1"), 1)
	release()
	for _, r := range []<-chan result{first, second} {
		if res := <-r; res.err != nil {
			t.Fatal(res.err)
		}
	}
	value("1")

	// The entry is deleted by another diff, then confirmed again.
	at = at.Add(time.Minute)
	if _, err := s.ApplySessionDiff(t.Context(), tenant, id, store.Diff{Time: at, DeletePaths: []string{"Device.A"}}, 1); err != nil {
		t.Fatal(err)
	}
	apply(diff("1"))
	value("1")

	// The device is deleted and comes back with the same values.
	if err := s.Delete(t.Context(), tenant, id); err != nil {
		t.Fatal(err)
	}
	apply(diff("1"))
	value("1")
	if len(mustGet(t, s, tenant, id).Params) != 2 {
		t.Fatalf("re-created device: %+v", mustGet(t, s, tenant, id).Params)
	}
}
