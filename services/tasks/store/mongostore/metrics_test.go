package mongostore_test

import (
	"errors"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/telemetry/telemetrytest"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/services/tasks/store"
	"github.com/fleetacs/fleetacs/services/tasks/store/mongostore"
)

// The store records its MongoDB commands when configured to; a record not
// found is no error.
func TestStoreRecordsClientMetrics(t *testing.T) {
	metrics, cm := telemetrytest.ClientMetrics(t)
	s := mongostore.New(mongostore.Config{URI: testenv.MongoURI(t), Database: testenv.MongoDatabase(t), Metrics: cm})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.Create(t.Context(), record("default", "a")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), "default", "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	calls, _ := testenv.Metric(t, metrics, "fleetacs_client_request_duration_seconds_count", "system", "mongodb")
	finds, _ := testenv.Metric(t, metrics, "fleetacs_client_request_duration_seconds_count", "system", "mongodb", "operation", "find")
	errs, _ := testenv.Metric(t, metrics, "fleetacs_client_request_errors_total", "system", "mongodb")
	if calls == 0 || finds == 0 || errs != 0 {
		t.Fatalf("mongodb calls %v, finds %v, errors %v; want calls and finds, no errors", calls, finds, errs)
	}
}
