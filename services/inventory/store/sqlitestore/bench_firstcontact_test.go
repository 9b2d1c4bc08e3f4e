package sqlitestore_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// firstContactTree are the paths of a TR-181 tree the size cpesim's
// default device reports in a bootstrap discovery (638 entries):
// objects with their writable attribute, parameters with values.
var firstContactTree = func() []store.ParamUpdate {
	var out []store.ParamUpdate
	add := func(path, value, typ string) {
		out = append(out, store.SetValue(path, value, typ), store.SetWritable(path, true))
	}
	for _, p := range []string{"Manufacturer", "ModelName", "Description", "SerialNumber", "HardwareVersion", "SoftwareVersion", "UpTime"} {
		add("Device.DeviceInfo."+p, "value-"+p, "xsd:string")
	}
	for i := range 8 {
		obj := fmt.Sprintf("Device.Ethernet.Interface.%d.", i+1)
		out = append(out, store.SetWritable(obj, false))
		for _, p := range []string{"Enable", "Status", "Name", "MACAddress", "MaxBitRate", "DuplexMode"} {
			add(obj+p, "v", "xsd:string")
		}
		for _, p := range []string{"BytesSent", "BytesReceived", "PacketsSent", "PacketsReceived", "ErrorsSent", "ErrorsReceived"} {
			add(obj+"Stats."+p, fmt.Sprint(i*1000), "xsd:unsignedLong")
		}
	}
	for i := range 31 {
		obj := fmt.Sprintf("Device.WiFi.AccessPoint.%d.", i+1)
		out = append(out, store.SetWritable(obj, false))
		for _, p := range []string{"Enable", "Status", "SSIDReference", "SSIDAdvertisementEnabled", "WMMEnable",
			"Security.ModeEnabled", "Security.KeyPassphrase", "Security.RekeyingInterval", "AssociatedDeviceNumberOfEntries",
			"MaxAssociatedDevices", "IsolationEnable", "MACAddressControlEnabled", "UAPSDEnable", "WPS.Enable", "WPS.ConfigMethodsEnabled"} {
			add(obj+p, "value", "xsd:string")
		}
		add(obj+"Stats.Retrans", "17", "xsd:unsignedInt")
	}
	return out
}()

// BenchmarkFirstContact applies bootstrap diffs of new devices, each with
// a whole discovered tree, from 64 callers: the store's share of a
// first-contact storm.
func BenchmarkFirstContact(b *testing.B) {
	ctx := context.Background()
	s := emptyStore(b)
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const callers = 64
	b.SetParallelism((callers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	var seq atomic.Int64
	b.ReportAllocs()
	cpu := startCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			dev := cwmp.DeviceID{Manufacturer: "Acme", OUI: "00AABB", ProductClass: "HGW", SerialNumber: fmt.Sprintf("FC%08d", seq.Add(1))}
			d := store.Diff{
				Time: at, SessionID: dev.SerialNumber, DeviceID: &dev,
				Inform: &store.Inform{Events: []cwmp.Event{{Code: "0 BOOTSTRAP"}, {Code: "1 BOOT"}}},
				Fields: store.Fields{SoftwareVersion: store.Ptr("1.0")},
				Params: firstContactTree,
			}
			if _, err := s.ApplySessionDiff(ctx, "default", store.MakeID(dev), d, 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
	cpu.report(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "diffs/s")
}

// BenchmarkPeriodicLargeTree is the periodic load of devices whose trees
// are the size of firstContactTree: every diff reports 10 values that
// changed, so each rewrites its device's tree (the worst case of trees;
// BenchmarkApplySessionDiff has 41-entry trees).
func BenchmarkPeriodicLargeTree(b *testing.B) {
	ctx := context.Background()
	s := emptyStore(b)
	const fleet = 2000
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	dev := func(i int) cwmp.DeviceID {
		return cwmp.DeviceID{Manufacturer: "Acme", OUI: "00AABB", ProductClass: "HGW", SerialNumber: fmt.Sprintf("PL%08d", i)}
	}
	for i := range fleet {
		d := dev(i)
		if _, err := s.ApplySessionDiff(ctx, "default", store.MakeID(d), store.Diff{Time: at, DeviceID: &d,
			Inform: &store.Inform{}, Params: firstContactTree}, 1); err != nil {
			b.Fatal(err)
		}
	}
	const callers = 64
	b.SetParallelism((callers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1)
			d := dev(int(n % fleet))
			diff := store.Diff{Time: benchTime(at), DeviceID: &d, Inform: &store.Inform{Events: []cwmp.Event{{Code: "2 PERIODIC"}}}}
			for p := range 10 {
				diff.Params = append(diff.Params, store.SetValue(fmt.Sprintf("Device.Ethernet.Interface.1.Stats.%s", []string{
					"BytesSent", "BytesReceived", "PacketsSent", "PacketsReceived", "ErrorsSent"}[p%5])+fmt.Sprint(p/5),
					fmt.Sprint(n), "xsd:unsignedLong"))
			}
			if _, err := s.ApplySessionDiff(ctx, "default", store.MakeID(d), diff, 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
	cpu.report(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "diffs/s")
}
