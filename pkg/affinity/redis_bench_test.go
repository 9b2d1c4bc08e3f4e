package affinity_test

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
)

// The Redis benchmarks measure one operation at a time against the real
// server (one round trip each, see the package doc) and report the median
// and 99th percentile latency besides the mean: run
//
//	go test -run '^$' -bench Redis -benchtime 5000x ./affinity/
func benchLatency(b *testing.B, op func(i int) error) {
	b.Helper()
	lat := make([]time.Duration, 0, 1<<14)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		if err := op(i); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

func BenchmarkRedis(b *testing.B) {
	const devices = 1000
	ttl := time.Minute
	data := make([]byte, 1024)
	setup := func(b *testing.B) (*affinity.Redis, affinity.Store) {
		r, _ := newRedis(b, time.Now)
		return r, r.Store()
	}
	dev := func(i int) string { return fmt.Sprintf("00259E-HG8245H-%08d", i%devices) }
	ctx := b.Context()

	b.Run("Acquire", func(b *testing.B) {
		_, s := setup(b)
		benchLatency(b, func(i int) error {
			_, err := s.Leases.Acquire(ctx, "default", dev(i), fmt.Sprintf("s%d", i), ttl)
			return err
		})
	})
	b.Run("Renew", func(b *testing.B) {
		_, s := setup(b)
		l, err := s.Leases.Acquire(ctx, "default", dev(0), "s", ttl)
		if err != nil {
			b.Fatal(err)
		}
		benchLatency(b, func(int) error { return s.Leases.Renew(ctx, "default", dev(0), "s", l.FencingToken, ttl) })
	})
	b.Run("Release", func(b *testing.B) {
		_, s := setup(b)
		benchLatency(b, func(i int) error { return s.Leases.Release(ctx, "default", dev(i), "s") })
	})
	rec := func(i int) affinity.SessionRecord {
		j := i % devices
		return affinity.SessionRecord{
			SessionID: fmt.Sprintf("c2Vzc2lvbi0%08d", j), Worker: "sessions-3", ClientIP: fmt.Sprintf("10.0.%d.%d", j/256, j%256),
			Tenant: "default", DeviceKey: dev(i), Auth: affinity.Auth{Method: affinity.AuthDigest, Principal: "cpe", Scope: affinity.ScopeDevice},
		}
	}
	b.Run("Put", func(b *testing.B) {
		_, s := setup(b)
		benchLatency(b, func(i int) error { return s.Affinity.Put(ctx, rec(i), ttl) })
	})
	b.Run("Lookup", func(b *testing.B) {
		_, s := setup(b)
		for i := range devices {
			if err := s.Affinity.Put(ctx, rec(i), ttl); err != nil {
				b.Fatal(err)
			}
		}
		benchLatency(b, func(i int) error { _, err := s.Affinity.Lookup(ctx, rec(i).SessionID); return err })
	})
	b.Run("OpenSessionAt", func(b *testing.B) {
		_, s := setup(b)
		for i := range devices {
			if err := s.Affinity.Put(ctx, rec(i), ttl); err != nil {
				b.Fatal(err)
			}
		}
		benchLatency(b, func(i int) error { _, err := s.Affinity.OpenSessionAt(ctx, rec(i).ClientIP); return err })
	})
	b.Run("Save1KiB", func(b *testing.B) {
		_, s := setup(b)
		benchLatency(b, func(i int) error {
			return s.Checkpoints.Save(ctx, affinity.Checkpoint{Tenant: "default", DeviceKey: dev(i), SessionID: "s", FencingToken: 1, Seq: uint64(i), Data: data}, ttl)
		})
	})
	b.Run("Load1KiB", func(b *testing.B) {
		_, s := setup(b)
		if err := s.Checkpoints.Save(ctx, affinity.Checkpoint{Tenant: "default", DeviceKey: dev(0), SessionID: "s", FencingToken: 1, Data: data}, ttl); err != nil {
			b.Fatal(err)
		}
		benchLatency(b, func(int) error { _, err := s.Checkpoints.Load(ctx, "default", dev(0), "s"); return err })
	})
	b.Run("Live5", func(b *testing.B) {
		_, s := setup(b)
		for i := range 5 {
			if err := s.Registry.Register(ctx, affinity.Worker{ID: fmt.Sprintf("sessions-%d", i), Addr: "10.0.0.1:9090", Capacity: 1000}, ttl); err != nil {
				b.Fatal(err)
			}
		}
		benchLatency(b, func(int) error { _, err := s.Registry.Live(ctx); return err })
	})
	b.Run("AcquireParallel", func(b *testing.B) {
		_, s := setup(b)
		b.ReportAllocs()
		var seq int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := int(atomicAdd(&seq))
				if _, err := s.Leases.Acquire(ctx, "default", dev(i), fmt.Sprintf("s%d", i), ttl); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func atomicAdd(p *int64) int64 { return atomic.AddInt64(p, 1) }
