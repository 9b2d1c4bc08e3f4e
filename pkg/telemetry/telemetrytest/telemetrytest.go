// Package telemetrytest gives tests a telemetry pipeline of their own.
package telemetrytest

import (
	"context"
	"net/http"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// ClientMetrics sets up telemetry for this test alone (shut down when it
// ends) and returns its /metrics handler with the dependency-client
// metrics (docs/operations.md, "Metrics") registered on it.
func ClientMetrics(t testing.TB) (http.Handler, *telemetry.ClientMetrics) {
	t.Helper()
	p, err := telemetry.Setup(context.Background(), "test", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	cm, err := telemetry.NewClientMetrics(p.Meter)
	if err != nil {
		t.Fatal(err)
	}
	return p.MetricsHandler, cm
}
