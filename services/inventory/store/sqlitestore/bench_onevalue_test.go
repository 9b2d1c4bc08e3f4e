package sqlitestore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/inventory/store"
	"github.com/fleetacs/fleetacs/services/inventory/store/sqlitestore"
)

// BenchmarkApplyOneValueStore is BenchmarkMergeOneValue through the whole
// store: a periodic session's diff (the forced Inform parameters reported
// again unchanged and Device.DeviceInfo.UpTime, which changed) applied to
// devices whose trees hold 1,000 entries, each diff its own transaction
// and commit, as the writer applies a session's diff when nothing else is
// queued. The devices take turns, so that each diff finds its device's
// pages as a fleet's sessions do, not the previous diff's.
func BenchmarkApplyOneValueStore(b *testing.B) {
	s := oneValueStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	cpu := startCPU(b)
	i := 0
	for b.Loop() {
		dev := benchDevice(i % oneValueDevices)
		d := store.Diff{Time: oneValueAt.Add(time.Duration(i+1) * time.Second), SessionID: fmt.Sprint(i), DeviceID: &dev, Inform: &store.Inform{}}
		oneValueForced(&d, i+1)
		if _, err := s.ApplySessionDiff(ctx, "default", store.MakeID(dev), d, 1); err != nil {
			b.Fatal(err)
		}
		i++
	}
	cpu.report(b)
}

// BenchmarkGetAfterOneValue reads, with all its parameters, a device of
// BenchmarkApplyOneValueStore after a periodic session's diff: what a
// read costs where the store keeps that diff beside the tree.
func BenchmarkGetAfterOneValue(b *testing.B) {
	s := oneValueStore(b)
	ctx := context.Background()
	dev := benchDevice(0)
	d := store.Diff{Time: oneValueAt.Add(time.Second), SessionID: "s", DeviceID: &dev, Inform: &store.Inform{}}
	oneValueForced(&d, 1)
	if _, err := s.ApplySessionDiff(ctx, "default", store.MakeID(dev), d, 1); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := s.Get(ctx, "default", store.MakeID(dev), store.ReadOptions{Params: true})
		if err != nil || len(got.Params) != 1006 {
			b.Fatalf("%d parameters, %v", len(got.Params), err)
		}
	}
}

const oneValueDevices = 200

var oneValueAt = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// oneValueForced appends the forced Inform parameters of a periodic
// session, UpTime at uptime.
func oneValueForced(d *store.Diff, uptime int) {
	d.Params = append(d.Params,
		store.SetValue("Device.DeviceInfo.HardwareVersion", "HW1", "xsd:string"),
		store.SetValue("Device.DeviceInfo.ProvisioningCode", "", "xsd:string"),
		store.SetValue("Device.DeviceInfo.SoftwareVersion", "1.0", "xsd:string"),
		store.SetValue("Device.DeviceInfo.UpTime", fmt.Sprint(uptime), "xsd:unsignedInt"),
		store.SetValue("Device.ManagementServer.ConnectionRequestURL", "http://192.0.2.1:7547/", "xsd:string"),
		store.SetValue("Device.ManagementServer.ParameterKey", "", "xsd:string"))
}

// oneValueStore is a store of oneValueDevices devices whose trees hold
// 1,000 entries and the forced Inform parameters.
func oneValueStore(b *testing.B) *sqlitestore.Store {
	b.Helper()
	s := emptyStore(b)
	for i := range oneValueDevices {
		dev := benchDevice(i)
		d := store.Diff{Time: oneValueAt, DeviceID: &dev, Inform: &store.Inform{}}
		for n := range 100 {
			for _, p := range []string{"Enable", "Status", "Name", "MACAddress", "MaxBitRate", "DuplexMode",
				"Stats.BytesSent", "Stats.BytesReceived", "Stats.PacketsSent", "Stats.PacketsReceived"} {
				d.Params = append(d.Params, store.SetValue(fmt.Sprintf("Device.Ethernet.Interface.%d.%s", n+1, p), "value", "xsd:string"))
			}
		}
		oneValueForced(&d, 0)
		if _, err := s.ApplySessionDiff(context.Background(), "default", store.MakeID(dev), d, 1); err != nil {
			b.Fatal(err)
		}
	}
	return s
}
