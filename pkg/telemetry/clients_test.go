package telemetry

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newTestClientMetrics(t *testing.T) (*Providers, *ClientMetrics) {
	t.Helper()
	p, err := Setup(context.Background(), "test", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	cm, err := NewClientMetrics(p.Meter)
	if err != nil {
		t.Fatal(err)
	}
	return p, cm
}

// Labels stay in the fixed sets; cancellation is no error; nil records
// nothing.
func TestClientMetricsBoundedLabels(t *testing.T) {
	p, cm := newTestClientMetrics(t)
	ctx := context.Background()
	cm.Observe(ctx, SystemSQLite, "query", time.Millisecond, nil)
	cm.Observe(ctx, SystemSQLite, "DROP TABLE devices; --", time.Millisecond, errors.New("boom"))
	cm.Observe(ctx, SystemSQLite, "exec", time.Millisecond, context.Canceled)
	cm.Observe(ctx, SystemSQLite, "exec", time.Millisecond, context.DeadlineExceeded)
	var nilMetrics *ClientMetrics
	nilMetrics.Observe(ctx, SystemSQLite, "query", time.Second, nil)
	if nilMetrics.MongoMonitor() != nil {
		t.Fatal("nil metrics gave a monitor")
	}
	get := func(name, op string) float64 {
		v, _ := testenv.Metric(t, p.MetricsHandler, name, "system", "sqlite", "operation", op)
		return v
	}
	if n := get("fleetacs_client_request_duration_seconds_count", "query"); n != 1 {
		t.Errorf("query count %v, want 1", n)
	}
	if n := get("fleetacs_client_request_errors_total", "other"); n != 1 {
		t.Errorf("unknown operation: %v errors under other, want 1", n)
	}
	if _, ok := testenv.Metric(t, p.MetricsHandler, "fleetacs_client_request_duration_seconds_count", "operation", "DROP TABLE devices; --"); ok {
		t.Error("an unknown operation became a label value")
	}
	if n := get("fleetacs_client_request_errors_total", "exec"); n != 1 {
		t.Errorf("exec errors %v, want 1 (deadline counts, cancellation does not)", n)
	}
}

// The MongoDB monitor records commands by name and counts a command the
// server refuses.
func TestMongoMonitorRecordsCommands(t *testing.T) {
	p, cm := newTestClientMetrics(t)
	uri, dbName := testenv.MongoURI(t), testenv.MongoDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetMonitor(cm.MongoMonitor()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	coll := client.Database(dbName).Collection("c")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}}); err != nil {
		t.Fatal(err)
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "missing"}}).Err(); !errors.Is(err, mongo.ErrNoDocuments) {
		t.Fatalf("find missing: %v", err)
	}
	if err := client.Database(dbName).RunCommand(ctx, bson.D{{Key: "noSuchCommand", Value: 1}}).Err(); err == nil {
		t.Fatal("unknown command accepted")
	}
	// The server answers that the collection does not exist: no failure.
	if cur, err := client.Database(dbName).Collection("nosuch").Indexes().List(ctx); err == nil {
		_ = cur.Close(ctx)
	}
	get := func(name, op string) float64 {
		v, _ := testenv.Metric(t, p.MetricsHandler, name, "system", "mongodb", "operation", op)
		return v
	}
	if get("fleetacs_client_request_duration_seconds_count", "insert") < 1 || get("fleetacs_client_request_duration_seconds_count", "find") < 1 {
		t.Fatalf("insert %v find %v", get("fleetacs_client_request_duration_seconds_count", "insert"), get("fleetacs_client_request_duration_seconds_count", "find"))
	}
	if n := get("fleetacs_client_request_errors_total", "find"); n != 0 {
		t.Errorf("not found counted as %v errors", n)
	}
	if get("fleetacs_client_request_duration_seconds_count", "listIndexes") != 1 || get("fleetacs_client_request_errors_total", "listIndexes") != 0 {
		t.Errorf("listIndexes of a missing collection: %v calls, %v errors, want 1 and 0",
			get("fleetacs_client_request_duration_seconds_count", "listIndexes"), get("fleetacs_client_request_errors_total", "listIndexes"))
	}
	if n := get("fleetacs_client_request_errors_total", "other"); n != 1 {
		t.Errorf("refused command: %v errors under other, want 1", n)
	}
}

// Recording a call allocates nothing.
func TestClientMetricsObserveAllocates(t *testing.T) {
	_, cm := newTestClientMetrics(t)
	ctx := context.Background()
	cm.Observe(ctx, SystemSQLite, "exec", time.Millisecond, nil)
	if n := testing.AllocsPerRun(100, func() { cm.Observe(ctx, SystemSQLite, "exec", time.Millisecond, nil) }); n != 0 {
		t.Errorf("Observe allocates %v times per call", n)
	}
}
