package sqlitestore

import (
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// TestConfirmedEntriesAreNotRewritten: a periodic Inform that reports the
// same values writes none of their rows (the contract suite checks the
// times readers see; this checks that the store got them without writes).
func TestConfirmedEntriesAreNotRewritten(t *testing.T) {
	s := startStore(t)
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
	t1, t2 := batchBase, batchBase.Add(time.Hour)
	for i, d := range []store.Diff{periodic(t1, "10"), periodic(t2, "3610")} {
		if _, err := s.ApplySessionDiff(t.Context(), tenant, id, d, uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	stored := func(path string) int64 {
		t.Helper()
		var ms int64
		if err := s.st.r.QueryRowContext(t.Context(), `SELECT updated FROM parameters WHERE tenant = ? AND device_id = ? AND path = ?`,
			tenant, id, path).Scan(&ms); err != nil {
			t.Fatal(err)
		}
		return ms
	}
	if got := stored("Device.DeviceInfo.SoftwareVersion"); got != t1.UnixMilli() {
		t.Errorf("unchanged entry rewritten: updated %d, want %d", got, t1.UnixMilli())
	}
	if got := stored("Device.DeviceInfo.UpTime"); got != t2.UnixMilli() {
		t.Errorf("changed entry: updated %d, want %d", got, t2.UnixMilli())
	}
	got := mustGet(t, s, tenant, id).Params
	for _, path := range []string{"Device.DeviceInfo.SoftwareVersion", "Device.DeviceInfo.UpTime"} {
		if !got[path].Updated.Equal(t2) {
			t.Errorf("%s read as updated %v, want %v", path, got[path].Updated, t2)
		}
	}
}
