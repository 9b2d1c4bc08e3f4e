package sessions

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
)

// knownInventory is an in-process Inventory for benchmarks: every device is
// known and discovered, and writes are only counted.
type knownInventory struct {
	mu      sync.Mutex
	records int
}

func (k *knownInventory) GetDeviceForSession(context.Context, DeviceQuery) (DeviceState, error) {
	return DeviceState{Known: true, DataModelRoot: "Device.", FullDiscoveryTime: t0}, nil
}

func (k *knownInventory) RecordSession(context.Context, *Diff) error {
	k.mu.Lock()
	k.records++
	k.mu.Unlock()
	return nil
}

// BenchmarkWorkerInformSession runs a periodic session (Inform, then the
// empty POST) through the SessionService handler in-process, with the
// in-memory affinity store and an in-process inventory. The gateway's lease
// Acquire is part of each iteration, as it is part of each session.
func BenchmarkWorkerInformSession(b *testing.B) {
	mem := affinity.NewMemory(nil)
	inv := &knownInventory{}
	cfg := testConfig()
	w, err := New(cfg, Deps{Inventory: inv, Leases: mem.Leases(), Checkpoints: mem.Checkpoints(), Registry: mem.Registry()})
	if err != nil {
		b.Fatal(err)
	}
	c := newCPE(b, "SN-BENCH", tree300())
	inform := c.informBody("2 PERIODIC")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		sid := "bench-" + strconv.Itoa(i)
		l, err := mem.Leases().Acquire(ctx, testTenant, c.key, sid, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		req := &sessionsv1.ExchangeRequest{SessionId: sid, NewSession: true, Tenant: testTenant, DeviceKey: c.key,
			Lease: &sessionsv1.DeviceLease{FencingToken: l.FencingToken}, Body: inform, RemoteAddr: "203.0.113.7:40001"}
		resp, err := w.Exchange(ctx, req)
		if err != nil || resp.HttpStatus != 200 {
			b.Fatalf("Inform: %v %v", resp, err)
		}
		resp, err = w.Exchange(ctx, &sessionsv1.ExchangeRequest{SessionId: sid, Tenant: testTenant, DeviceKey: c.key, RemoteAddr: "203.0.113.7:40001"})
		if err != nil || resp.HttpStatus != 204 {
			b.Fatalf("empty POST: %v %v", resp, err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "sessions/s")
	if inv.records != b.N {
		b.Fatalf("%d records for %d sessions", inv.records, b.N)
	}
}
