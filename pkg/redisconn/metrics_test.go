package redisconn

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/fleetacs/fleetacs/pkg/telemetry/telemetrytest"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The client records each command's latency, a pipeline as one call, and
// counts errors but not Redis's nil reply.
func TestMetricsHookRecordsCommands(t *testing.T) {
	addr, db := testenv.RedisDB(t)
	metrics, cm := telemetrytest.ClientMetrics(t)
	c, err := New(Config{Addrs: []string{addr}, DB: db, Metrics: cm})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, "missing").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("get missing: %v", err)
	}
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, "k")
		p.Del(ctx, "k")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A command the server refuses: an error of its own.
	if err := c.Do(ctx, "nosuchcommand").Err(); err == nil {
		t.Fatal("unknown command accepted")
	}
	h := metrics
	count := func(op string) float64 {
		v, _ := testenv.Metric(t, h, "fleetacs_client_request_duration_seconds_count", "system", "redis", "operation", op)
		return v
	}
	errs := func(op string) float64 {
		v, _ := testenv.Metric(t, h, "fleetacs_client_request_errors_total", "system", "redis", "operation", op)
		return v
	}
	if count("set") < 1 || count("get") < 1 || count("pipeline") < 1 || count("other") < 1 {
		t.Fatalf("counts set %v get %v pipeline %v other %v", count("set"), count("get"), count("pipeline"), count("other"))
	}
	if errs("get") != 0 || errs("set") != 0 || errs("pipeline") != 0 {
		t.Fatalf("errors counted for a nil reply or a success: get %v set %v pipeline %v", errs("get"), errs("set"), errs("pipeline"))
	}
	if errs("other") != 1 {
		t.Fatalf("refused command: %v errors, want 1", errs("other"))
	}
	// A closed client: every command fails.
	_ = c.Close()
	_ = c.Set(ctx, "k", "v", 0).Err()
	if errs("set") != 1 {
		t.Fatalf("set on a closed client: %v errors, want 1", errs("set"))
	}
}
