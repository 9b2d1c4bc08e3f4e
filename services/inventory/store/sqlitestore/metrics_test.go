package sqlitestore_test

import (
	"context"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/services/inventory/store"
	"github.com/fleetacs/fleetacs/services/inventory/store/sqlitestore"
	"github.com/fleetacs/fleetacs/services/inventory/storetest"
)

// The contract holds with the database calls recorded (telemetry.OpenSQL
// wraps the driver, under the writer's raw statements too), and the calls
// show in the metrics.
func TestContractWithClientMetrics(t *testing.T) {
	p, err := telemetry.Setup(context.Background(), "test", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	cm, err := telemetry.NewClientMetrics(p.Meter)
	if err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, func(t *testing.T) store.Store { return newStoreWith(t, sqlitestore.Config{Metrics: cm}) })
	for _, op := range []string{"query", "exec", "begin", "commit"} {
		if n, _ := testenv.Metric(t, p.MetricsHandler, "fleetacs_client_request_duration_seconds_count", "system", "sqlite", "operation", op); n == 0 {
			t.Errorf("no sqlite %s recorded", op)
		}
	}
}
