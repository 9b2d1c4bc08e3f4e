package sessions

import (
	"bytes"
	"context"
	"runtime"
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

func (k *knownInventory) DiscoveryProfile(context.Context, ProductClass) (DiscoveryProfile, error) {
	return DiscoveryProfile{}, nil
}

func (k *knownInventory) RecordDiscovery(context.Context, ProductClass, DiscoveryObservation) error {
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
	st := mem.Store()
	w, err := New(cfg, Deps{Inventory: inv, Leases: st.Leases, Checkpoints: st.Checkpoints, Registry: st.Registry, Sessions: st.Sessions})
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

// BenchmarkOpenSessionsMemory measures what 1,000 open sessions cost the
// worker and its in-memory affinity store: each iteration opens 1,000
// sessions of distinct devices (Inform answered, session left open) and the
// heap growth after a collection is reported per 1,000 sessions.
func BenchmarkOpenSessionsMemory(b *testing.B) {
	const open = 1000
	ctx := context.Background()
	var perK float64
	for b.Loop() {
		b.StopTimer()
		mem := affinity.NewMemory(nil)
		cfg := testConfig()
		cfg.MaxSessions = 2 * open
		st := mem.Store()
		w, err := New(cfg, Deps{Inventory: &knownInventory{}, Leases: st.Leases, Checkpoints: st.Checkpoints, Registry: st.Registry, Sessions: st.Sessions})
		if err != nil {
			b.Fatal(err)
		}
		cpes := make([]*cpe, open)
		informs := make([][]byte, open)
		for i := range cpes {
			cpes[i] = newCPE(b, "SN-MEM-"+strconv.Itoa(i), tree300())
			informs[i] = cpes[i].informBody("2 PERIODIC")
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		for i, c := range cpes {
			sid := "mem-" + strconv.Itoa(i)
			l, err := mem.Leases().Acquire(ctx, testTenant, c.key, sid, time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			resp, err := w.Exchange(ctx, &sessionsv1.ExchangeRequest{SessionId: sid, NewSession: true, Tenant: testTenant, DeviceKey: c.key,
				Lease: &sessionsv1.DeviceLease{FencingToken: l.FencingToken}, Body: informs[i], RemoteAddr: "203.0.113.7:40001"})
			if err != nil || resp.HttpStatus != 200 {
				b.Fatalf("Inform: %v %v", resp, err)
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		if w.Sessions() != open {
			b.Fatalf("%d sessions open, want %d", w.Sessions(), open)
		}
		perK = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (open / 1000)
		runtime.KeepAlive(w)
		runtime.KeepAlive(cpes)
		runtime.KeepAlive(informs)
		b.StartTimer()
	}
	b.ReportMetric(perK/(1<<20), "MiB/1k-sessions")
}

// BenchmarkHeavyInformMemory measures what an open session whose Inform
// carries 30,000 parameters (3.7 MB, under the 4 MB body limit) costs
// the worker and its in-memory affinity store once the Inform is answered:
// the heap growth after a collection, per session, over 20 of them.
func BenchmarkHeavyInformMemory(b *testing.B) {
	const open = 20
	ctx := context.Background()
	c := newCPE(b, "SN-HEAVY", tree300())
	body := c.heavyInform(30000, 8, "2 PERIODIC")
	if len(body) > DefaultConfig().MaxBodyBytes {
		b.Fatalf("Inform of %d bytes", len(body))
	}
	var perSession float64
	for b.Loop() {
		b.StopTimer()
		mem := affinity.NewMemory(nil)
		st := mem.Store()
		w, err := New(testConfig(), Deps{Inventory: &knownInventory{}, Leases: st.Leases, Checkpoints: st.Checkpoints, Registry: st.Registry, Sessions: st.Sessions})
		if err != nil {
			b.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		for i := range open {
			sid := "heavy-" + strconv.Itoa(i)
			key := c.key + strconv.Itoa(i)
			l, err := mem.Leases().Acquire(ctx, testTenant, key, sid, time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			resp, err := w.Exchange(ctx, &sessionsv1.ExchangeRequest{SessionId: sid, NewSession: true, Tenant: testTenant, DeviceKey: key,
				Lease: &sessionsv1.DeviceLease{FencingToken: l.FencingToken}, Body: body, RemoteAddr: "203.0.113.7:40001"})
			if err != nil || resp.HttpStatus != 200 {
				b.Fatalf("Inform: %v %v", resp, err)
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perSession = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / open
		runtime.KeepAlive(w)
		b.StartTimer()
	}
	b.ReportMetric(perSession/(1<<20), "MiB/heavy-session")
}

// firstContactInventory is an in-process Inventory for benchmarks where
// every device is new: each session discovers its tree.
type firstContactInventory struct{ knownInventory }

func (*firstContactInventory) GetDeviceForSession(context.Context, DeviceQuery) (DeviceState, error) {
	return DeviceState{}, nil
}

// BenchmarkFirstContact640 runs a BOOTSTRAP session of a new device with a
// 640-parameter TR-181 tree, as cpesim -boot-storm does, through the
// SessionService handler in-process: Inform, empty POST, GetParameterNames,
// seven GetParameterValues of at most 100 names, the end. The CPE's
// answers are encoded once and reused, so the figures are the worker's.
// "local" keeps the session in memory (Deps.Local, fleetacs all without
// Redis); "store" checkpoints it into the in-memory store as it would
// into Redis; "redis" into a real Redis (pkg/testenv). Leases come from
// the in-memory store in all three.
func BenchmarkFirstContact640(b *testing.B) {
	for _, name := range []string{"local", "store", "redis"} {
		b.Run(name, func(b *testing.B) {
			local := name == "local"
			mem := affinity.NewMemory(nil)
			st := mem.Store()
			if name == "redis" {
				st = newRedisHarness(b).store
			}
			inv := &firstContactInventory{}
			w, err := New(testConfig(), Deps{Inventory: inv, Leases: st.Leases, Checkpoints: st.Checkpoints, Registry: st.Registry,
				Sessions: st.Sessions, Local: local})
			if err != nil {
				b.Fatal(err)
			}
			benchFirstContacts(b, w, mem, newCPE(b, "SN-FC", treeHosts(126)), true)
			if inv.records != b.N {
				b.Fatalf("%d records for %d sessions", inv.records, b.N)
			}
		})
	}
}

// benchFirstContacts runs b.N first contacts of c through w; with cached,
// the CPE's answers come from a cache, so that their encoding is not
// measured.
func benchFirstContacts(b *testing.B, w *Worker, mem *affinity.Memory, c *cpe, cached bool) {
	inform := c.informBody("0 BOOTSTRAP", "1 BOOT")
	answers := map[string][]byte{}
	ctx := context.Background()
	b.ReportAllocs()
	exchanges := 0
	for i := 0; b.Loop(); i++ {
		sid := "fc-" + strconv.Itoa(i)
		l, err := mem.Leases().Acquire(ctx, testTenant, c.key, sid, time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := w.Exchange(ctx, &sessionsv1.ExchangeRequest{SessionId: sid, NewSession: true, Tenant: testTenant, DeviceKey: c.key,
			Lease: &sessionsv1.DeviceLease{FencingToken: l.FencingToken}, Body: inform, RemoteAddr: "203.0.113.7:40001"})
		if err != nil || resp.HttpStatus != 200 {
			b.Fatalf("Inform: %v %v", resp, err)
		}
		var body []byte
		for {
			resp, err = w.Exchange(ctx, &sessionsv1.ExchangeRequest{SessionId: sid, Tenant: testTenant, DeviceKey: c.key, Body: body, RemoteAddr: "203.0.113.7:40001"})
			exchanges++
			if err != nil {
				b.Fatal(err)
			}
			if resp.HttpStatus != 200 {
				break
			}
			if !cached {
				body = c.answer(resp.Body)
				continue
			}
			// Request IDs name the session: the cache keys on the rest.
			key := string(bytes.ReplaceAll(resp.Body, []byte(sid), []byte("{sid}")))
			a, ok := answers[key]
			if !ok {
				a = bytes.ReplaceAll(c.answer(resp.Body), []byte(sid), []byte("{sid}"))
				answers[key] = a
			}
			body = bytes.ReplaceAll(a, []byte("{sid}"), []byte(sid))
		}
	}
	b.ReportMetric(float64(exchanges+b.N)/float64(b.N), "exchanges/op")
}

// BenchmarkWorkerFirstContact runs a BOOTSTRAP session of a new device
// through the SessionService handler in-process: Inform, empty POST,
// GetParameterNames of a 300-parameter tree, three GetParameterValues of
// 100 names, the end; with the in-memory affinity store and inventory.
func BenchmarkWorkerFirstContact(b *testing.B) {
	mem := affinity.NewMemory(nil)
	st := mem.Store()
	inv := &firstContactInventory{}
	w, err := New(testConfig(), Deps{Inventory: inv, Leases: st.Leases, Checkpoints: st.Checkpoints, Registry: st.Registry, Sessions: st.Sessions})
	if err != nil {
		b.Fatal(err)
	}
	benchFirstContacts(b, w, mem, newCPE(b, "SN-FC", tree300()), false)
	if inv.records != b.N {
		b.Fatalf("%d records for %d sessions", inv.records, b.N)
	}
}
