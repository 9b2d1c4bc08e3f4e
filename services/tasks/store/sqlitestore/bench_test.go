package sqlitestore_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/tasks/store"
)

// benchBody is the size of a typical encoded task with a short history.
var benchBody = make([]byte, 600)

func benchRecord(i int64) store.Record {
	r := record(fmt.Sprintf("01BENCH%019d", i))
	r.DeviceID = fmt.Sprintf("dev-%d", i%1000)
	r.Body = benchBody
	return r
}

// benchCallers is how many goroutines per GOMAXPROCS the write benchmarks
// run: the tasks service writes from many RPC handlers and session reports
// at once, not from one goroutine per core.
const benchCallers = 16

// BenchmarkCreate inserts records from parallel callers, as CreateTask
// calls arrive.
func BenchmarkCreate(b *testing.B) {
	s := open(b)
	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(benchCallers)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := s.Create(b.Context(), benchRecord(seq.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkUpdate moves records one version on, each caller its own record,
// as session reports do.
func BenchmarkUpdate(b *testing.B) {
	s := open(b)
	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(benchCallers)
	b.RunParallel(func(pb *testing.PB) {
		r := benchRecord(seq.Add(1))
		if _, _, err := s.Create(b.Context(), r); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			r.Version++
			r.UpdateTime = r.UpdateTime.Add(time.Millisecond)
			if err := s.Update(b.Context(), r, r.Version-1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGet reads records by id from parallel callers.
func BenchmarkGet(b *testing.B) {
	s := open(b)
	const n = 1000
	for i := range int64(n) {
		if _, _, err := s.Create(b.Context(), benchRecord(i)); err != nil {
			b.Fatal(err)
		}
	}
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := benchRecord(seq.Add(1) % n)
			if _, err := s.Get(b.Context(), r.Tenant, r.ID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGetMany reads a session's records in one call, as ClaimTasks and
// ReportTasks do: one id (a task per session, the common case) and four.
func BenchmarkGetMany(b *testing.B) {
	s := open(b)
	const n = 1000
	for i := range int64(n) {
		if _, _, err := s.Create(b.Context(), benchRecord(i)); err != nil {
			b.Fatal(err)
		}
	}
	for _, k := range []int64{1, 4} {
		b.Run(fmt.Sprintf("ids=%d", k), func(b *testing.B) {
			var seq atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ids := make([]string, k)
				for pb.Next() {
					base := seq.Add(k)
					for j := range k {
						ids[j] = benchRecord((base + j) % n).ID
					}
					recs, err := s.GetMany(b.Context(), "default", ids)
					if err != nil || len(recs) != int(k) {
						b.Errorf("GetMany: %d records, %v", len(recs), err)
						return
					}
				}
			})
		})
	}
}
