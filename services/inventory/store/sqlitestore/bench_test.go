package sqlitestore_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/services/inventory/store"
	"github.com/fleetacs/fleetacs/services/inventory/store/sqlitestore"
)

// benchFleet is the size of the fleet the benchmarks run against: enough
// rows (devices × benchTree) that index use matters.
const (
	benchFleet = 5000
	benchTree  = 40
)

func benchDevice(i int) cwmp.DeviceID {
	return cwmp.DeviceID{Manufacturer: "Acme", OUI: "00AABB", ProductClass: "HGW", SerialNumber: fmt.Sprintf("SN%06d", i)}
}

// periodic is a typical periodic-Inform diff: Inform facts plus 10
// parameter values (forced Inform parameters and a few that changed).
func periodic(i int, at time.Time) store.Diff {
	dev := benchDevice(i)
	d := store.Diff{
		Time:      at,
		SessionID: fmt.Sprint("s-", at.UnixNano()),
		DeviceID:  &dev,
		Inform: &store.Inform{
			RemoteIP: netip.MustParseAddr("192.0.2.1"),
			Events:   []cwmp.Event{{Code: "2 PERIODIC"}},
		},
		Fields: store.Fields{
			SoftwareVersion:      store.Ptr(fmt.Sprintf("1.%d", i%10)),
			ConnectionRequestURL: store.Ptr("http://192.0.2.1:7547/"),
		},
	}
	for p := range 10 {
		d.Params = append(d.Params, store.SetValue(fmt.Sprintf("Device.Bench.P%d", p), fmt.Sprint(at.UnixNano()+int64(p)), "xsd:unsignedInt"))
	}
	return d
}

// emptyStore is a started store with the default configuration and no
// devices.
func emptyStore(b *testing.B) *sqlitestore.Store {
	b.Helper()
	ctx := context.Background()
	s := sqlitestore.New(sqlitestore.Config{Path: filepath.Join(b.TempDir(), "bench.db")})
	if err := s.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close(ctx) })
	return s
}

func benchStore(b *testing.B) *sqlitestore.Store {
	b.Helper()
	ctx := context.Background()
	s := emptyStore(b)
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range benchFleet {
		d := periodic(i, at)
		for p := range benchTree - 10 {
			d.Params = append(d.Params, store.SetValue(fmt.Sprintf("Device.Tree.N%d", p), fmt.Sprint(i*p), "xsd:int"))
		}
		d.Params = append(d.Params, store.SetValue("Device.DeviceInfo.ModelName", fmt.Sprintf("Model-%d", i%50), "xsd:string"))
		if _, err := s.ApplySessionDiff(ctx, "default", store.MakeID(*d.DeviceID), d, 1); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// benchTick orders the times of every diff the benchmarks apply, across
// sub-benchmarks and b.N rounds: the store treats a diff older than the
// device's last one as a replay (apply.go, "Confirmed entries"), and real
// sessions of a device come later and later.
var benchTick atomic.Int64

func benchTime(at time.Time) time.Time {
	return at.Add(time.Duration(benchTick.Add(1)) * time.Millisecond)
}

func BenchmarkApplySessionDiff(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	at := time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)
	b.Run("serial", func(b *testing.B) {
		cpu := startCPU(b)
		i := 0
		for b.Loop() {
			n := i % benchFleet
			d := periodic(n, benchTime(at))
			if _, err := s.ApplySessionDiff(ctx, "default", store.MakeID(*d.DeviceID), d, 1); err != nil {
				b.Fatal(err)
			}
			i++
		}
		cpu.report(b)
	})
	b.Run("parallel", func(b *testing.B) {
		var seq atomic.Int64
		cpu := startCPU(b)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := int(seq.Add(1))
				d := periodic(i%benchFleet, benchTime(at))
				if _, err := s.ApplySessionDiff(ctx, "default", store.MakeID(*d.DeviceID), d, 1); err != nil {
					b.Error(err)
					return
				}
			}
		})
		cpu.report(b)
	})
	// concurrent64 is the session workers' write load: 64 callers (about
	// the sessions one all-in-one process has in flight) each record
	// periodic 10-parameter diffs at once. In changed10 every value is new
	// (the worst case: each update rewrites its entries in the value and
	// number indexes); in changed1 one value is new and nine are reported
	// unchanged, as the Forced Inform parameters of a periodic Inform are.
	for _, v := range []*struct {
		name string
		diff func(i int, at time.Time) store.Diff
		warm bool
	}{{name: "changed10", diff: periodic}, {name: "changed1", diff: steadyPeriodic}} {
		b.Run("concurrent64/"+v.name, func(b *testing.B) {
			const callers = 64
			if !v.warm {
				// Bring every device to the values this variant
				// reports, so what is timed is the steady state.
				warm(b, s, v.diff, at)
				v.warm = true
				b.ResetTimer()
			}
			// RunParallel starts parallelism × GOMAXPROCS goroutines.
			b.SetParallelism((callers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			var seq atomic.Int64
			b.ReportAllocs()
			cpu := startCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(seq.Add(1))
					d := v.diff(i%benchFleet, benchTime(at))
					if _, err := s.ApplySessionDiff(ctx, "default", store.MakeID(*d.DeviceID), d, 1); err != nil {
						b.Error(err)
						return
					}
				}
			})
			cpu.report(b)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "diffs/s")
		})
	}
}

// cpuMeter reports the process's CPU time per operation of b.
type cpuMeter struct{ start time.Duration }

func startCPU(b *testing.B) *cpuMeter {
	b.Helper()
	return &cpuMeter{start: processCPU()}
}

func (m *cpuMeter) report(b *testing.B) {
	b.ReportMetric(float64((processCPU()-m.start).Microseconds())/float64(b.N), "cpu-µs/op")
}

// warm applies diff to every device of the fleet once, from 64 goroutines.
func warm(b *testing.B, s *sqlitestore.Store, diff func(int, time.Time) store.Diff, at time.Time) {
	b.Helper()
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 64 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < benchFleet; i = int(next.Add(1)) - 1 {
				d := diff(i, benchTime(at))
				if _, err := s.ApplySessionDiff(context.Background(), "default", store.MakeID(*d.DeviceID), d, 1); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// steadyPeriodic is periodic with only Device.Bench.P0 changing; the other
// nine values stay what the previous session reported.
func steadyPeriodic(i int, at time.Time) store.Diff {
	d := periodic(i, at)
	for p := 1; p < len(d.Params); p++ {
		d.Params[p].Value = fmt.Sprint(i*10 + p)
	}
	return d
}

// BenchmarkGet reads devices the way a session starts: the device row and
// its tags, no parameters (GetDeviceForSession), and for comparison with a
// 41-entry tree.
func BenchmarkGet(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	ids := make([]string, benchFleet)
	for i := range ids {
		ids[i] = store.MakeID(benchDevice(i))
	}
	for _, c := range []struct {
		name string
		opts store.ReadOptions
	}{{"no-params", store.ReadOptions{}}, {"params", store.ReadOptions{Params: true}}} {
		b.Run(c.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			cpu := startCPU(b)
			i := 0
			for b.Loop() {
				if _, err := s.Get(ctx, "default", ids[i%benchFleet], c.opts); err != nil {
					b.Fatal(err)
				}
				i++
			}
			cpu.report(b)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "gets/s")
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			var seq atomic.Int64
			b.ReportAllocs()
			cpu := startCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Get(ctx, "default", ids[int(seq.Add(1))%benchFleet], c.opts); err != nil {
						b.Error(err)
						return
					}
				}
			})
			cpu.report(b)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "gets/s")
		})
	}
}

func BenchmarkListParamCondition(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	cases := []struct {
		name string
		f    store.Filter
		want int
	}{
		// 1 device in 50 has each model: 100 devices, one page.
		{"eq-2pct", store.Filter{Tenant: "default", Params: []store.ParamCondition{
			{Path: "Device.DeviceInfo.ModelName", Op: store.OpEq, Value: "Model-7"}}}, 100},
		// One device.
		{"eq-one", store.Filter{Tenant: "default", Params: []store.ParamCondition{
			{Path: "Device.Tree.N29", Op: store.OpEq, Value: fmt.Sprint(4321 * 29)}}}, 1},
		// Numeric range matching 10 devices.
		{"lt-number", store.Filter{Tenant: "default", Params: []store.ParamCondition{
			{Path: "Device.Tree.N3", Op: store.OpLt, Value: "30"}}}, 10},
		// Half the fleet matches: the first page of 100 is what is paid.
		{"prefix-half", store.Filter{Tenant: "default", SoftwareVersion: store.Ptr("1.3"), Params: []store.ParamCondition{
			{Path: "Device.DeviceInfo.ModelName", Op: store.OpPrefix, Value: "Model-"}}}, 100},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				p, err := s.List(ctx, c.f, store.PageRequest{Limit: 100}, store.ReadOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if len(p.Devices) != c.want {
					b.Fatalf("%d devices, want %d", len(p.Devices), c.want)
				}
			}
		})
	}
}
