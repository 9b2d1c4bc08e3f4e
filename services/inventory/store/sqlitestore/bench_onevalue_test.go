package sqlitestore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// BenchmarkApplyOneValueStore is BenchmarkMergeOneValue through the whole
// store: a periodic session's diff (the forced Inform parameters reported
// again unchanged and Device.DeviceInfo.UpTime, which changed) applied to
// devices whose trees hold 1,000 entries, each diff its own transaction
// and commit, as the writer applies a session's diff when nothing else is
// queued. The devices take turns, so that each diff finds its device's
// pages as a fleet's sessions do, not the previous diff's.
func BenchmarkApplyOneValueStore(b *testing.B) {
	const devices = 200
	s := emptyStore(b)
	ctx := context.Background()
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	forced := func(d *store.Diff, uptime int) {
		d.Params = append(d.Params,
			store.SetValue("Device.DeviceInfo.HardwareVersion", "HW1", "xsd:string"),
			store.SetValue("Device.DeviceInfo.ProvisioningCode", "", "xsd:string"),
			store.SetValue("Device.DeviceInfo.SoftwareVersion", "1.0", "xsd:string"),
			store.SetValue("Device.DeviceInfo.UpTime", fmt.Sprint(uptime), "xsd:unsignedInt"),
			store.SetValue("Device.ManagementServer.ConnectionRequestURL", "http://192.0.2.1:7547/", "xsd:string"),
			store.SetValue("Device.ManagementServer.ParameterKey", "", "xsd:string"))
	}
	for i := range devices {
		dev := benchDevice(i)
		d := store.Diff{Time: at, DeviceID: &dev, Inform: &store.Inform{}}
		for n := range 100 {
			for _, p := range []string{"Enable", "Status", "Name", "MACAddress", "MaxBitRate", "DuplexMode",
				"Stats.BytesSent", "Stats.BytesReceived", "Stats.PacketsSent", "Stats.PacketsReceived"} {
				d.Params = append(d.Params, store.SetValue(fmt.Sprintf("Device.Ethernet.Interface.%d.%s", n+1, p), "value", "xsd:string"))
			}
		}
		forced(&d, 0)
		if _, err := s.ApplySessionDiff(ctx, "default", store.MakeID(dev), d, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	cpu := startCPU(b)
	i := 0
	for b.Loop() {
		dev := benchDevice(i % devices)
		d := store.Diff{Time: at.Add(time.Duration(i+1) * time.Second), SessionID: fmt.Sprint(i), DeviceID: &dev, Inform: &store.Inform{}}
		forced(&d, i+1)
		if _, err := s.ApplySessionDiff(ctx, "default", store.MakeID(dev), d, 1); err != nil {
			b.Fatal(err)
		}
		i++
	}
	cpu.report(b)
}
