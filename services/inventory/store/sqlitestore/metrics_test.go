package sqlitestore_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
	"github.com/fleetacs/fleetacs/pkg/telemetry/telemetrytest"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/services/inventory/store"
	"github.com/fleetacs/fleetacs/services/inventory/store/sqlitestore"
	"github.com/fleetacs/fleetacs/services/inventory/storetest"
)

// The contract holds with the database calls recorded (telemetry.OpenSQL
// wraps the driver, under the writer's raw statements too), and the calls
// show in the metrics.
func TestContractWithClientMetrics(t *testing.T) {
	metrics, cm := telemetrytest.ClientMetrics(t)
	storetest.Run(t, func(t *testing.T) store.Store { return newStoreWith(t, sqlitestore.Config{Metrics: cm}) })
	for _, op := range []string{"query", "exec", "begin", "commit"} {
		if n, _ := testenv.Metric(t, metrics, "fleetacs_client_request_duration_seconds_count", "system", "sqlite", "operation", op); n == 0 {
			t.Errorf("no sqlite %s recorded", op)
		}
	}
}

// BenchmarkApplySessionDiffClientMetrics is the cost of recording the
// store's database calls (telemetry.OpenSQL) on the writer's path: a
// periodic 10-parameter diff, serially, with the metrics off and on.
func BenchmarkApplySessionDiffClientMetrics(b *testing.B) {
	const devices = 500
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("metrics=%t", on), func(b *testing.B) {
			var cm *telemetry.ClientMetrics
			if on {
				p, err := telemetry.Setup(context.Background(), "bench", func(string) string { return "" })
				if err != nil {
					b.Fatal(err)
				}
				defer p.Shutdown(context.Background())
				if cm, err = telemetry.NewClientMetrics(p.Meter); err != nil {
					b.Fatal(err)
				}
			}
			ctx := context.Background()
			s := sqlitestore.New(sqlitestore.Config{Path: filepath.Join(b.TempDir(), "bench.db"), Metrics: cm})
			if err := s.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer s.Close(ctx)
			at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			for i := range devices {
				d := periodic(i, benchTime(at))
				if _, err := s.ApplySessionDiff(ctx, "default", store.MakeID(*d.DeviceID), d, 1); err != nil {
					b.Fatal(err)
				}
			}
			i := 0
			b.ReportAllocs()
			cpu := startCPU(b)
			for b.Loop() {
				d := periodic(i%devices, benchTime(at))
				if _, err := s.ApplySessionDiff(ctx, "default", store.MakeID(*d.DeviceID), d, 1); err != nil {
					b.Fatal(err)
				}
				i++
			}
			cpu.report(b)
		})
	}
}
