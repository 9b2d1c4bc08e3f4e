package telemetry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// System is a dependency FleetACS talks to as a client.
type System uint8

// The dependencies whose calls ClientMetrics records; their names are the
// "system" label.
const (
	SystemRedis System = iota
	SystemNATS
	SystemMongoDB
	SystemSQLite
	numSystems
)

var systemNames = [numSystems]string{"redis", "nats", "mongodb", "sqlite"}

func (s System) String() string {
	if s < numSystems {
		return systemNames[s]
	}
	return "unknown"
}

// OpOther is the operation label of any operation not in a system's fixed
// set, so that the label set stays bounded whatever the callers send.
const OpOther = "other"

// clientOps are the operation labels of each system (docs/operations.md,
// "Metrics"); any other operation counts as OpOther.
var clientOps = [numSystems][]string{
	// go-redis command names (lower case) FleetACS sends, and "pipeline"
	// for a pipeline or transaction as a whole.
	SystemRedis: {"get", "set", "del", "exists", "getdel", "hget", "hmget", "hgetall", "hset", "hdel",
		"zadd", "zrem", "zrangebyscore", "zremrangebyscore", "pttl", "pexpire", "expire",
		"evalsha", "eval", "script", "ping", "hello", "auth", "select", "cluster", "pipeline"},
	// The JetStream calls natsbus instruments.
	SystemNATS: {"publish", "ack_wait", "direct_get", "stream_info", "delete_msg"},
	// MongoDB command names (the command document's first key).
	SystemMongoDB: {"find", "getMore", "insert", "update", "delete", "findAndModify", "aggregate",
		"count", "distinct", "createIndexes", "listIndexes", "dropIndexes", "killCursors",
		"bulkWrite", "commitTransaction", "abortTransaction", "endSessions", "ping", "hello",
		"isMaster", "listCollections", "create", "drop"},
	// The database/sql calls of the embedded stores.
	SystemSQLite: {"query", "exec", "begin", "commit"},
}

// ClientMetrics records the latency and the errors of FleetACS's calls to
// its dependencies as a client: the histogram
// fleetacs_client_request_duration_seconds and the counter
// fleetacs_client_request_errors_total, both labelled by system and
// operation from fixed sets. A nil *ClientMetrics records nothing.
type ClientMetrics struct {
	duration metric.Float64Histogram
	errs     metric.Int64Counter
	// sets holds the options of one attribute set per system and
	// operation, built once: read-only after NewClientMetrics, so Observe
	// takes no lock and allocates nothing for the labels (the option
	// slices are passed as they are, not built per call).
	sets  [numSystems]map[string]clientSet
	other [numSystems]clientSet
}

type clientSet struct {
	rec []metric.RecordOption
	add []metric.AddOption
}

// NewClientMetrics returns the instruments on mp.
func NewClientMetrics(mp metric.MeterProvider) (*ClientMetrics, error) {
	m := mp.Meter("github.com/fleetacs/fleetacs/pkg/telemetry")
	d, err := m.Float64Histogram("fleetacs.client.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of FleetACS's calls to Redis, NATS, MongoDB and SQLite, by system and operation."),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
	if err != nil {
		return nil, fmt.Errorf("client metrics: %w", err)
	}
	e, err := m.Int64Counter("fleetacs.client.request.errors",
		metric.WithDescription("Failed calls to Redis, NATS, MongoDB and SQLite, by system and operation (not found and canceled calls aside)."))
	if err != nil {
		return nil, fmt.Errorf("client metrics: %w", err)
	}
	c := &ClientMetrics{duration: d, errs: e}
	for s := range numSystems {
		set := func(op string) clientSet {
			o := metric.WithAttributeSet(attribute.NewSet(attribute.String("system", systemNames[s]), attribute.String("operation", op)))
			return clientSet{rec: []metric.RecordOption{o}, add: []metric.AddOption{o}}
		}
		c.sets[s] = make(map[string]clientSet, len(clientOps[s]))
		for _, op := range clientOps[s] {
			c.sets[s][op] = set(op)
		}
		c.other[s] = set(OpOther)
	}
	return c, nil
}

// Observe records one call of op on sys that took d. err counts as an
// error unless it is nil or the caller's cancellation: callers pass nil for
// a result their system reports as an error but that is an answer (not
// found, Redis's nil reply).
func (c *ClientMetrics) Observe(ctx context.Context, sys System, op string, d time.Duration, err error) {
	if c == nil || sys >= numSystems {
		return
	}
	set, ok := c.sets[sys][op]
	if !ok {
		set = c.other[sys]
	}
	c.duration.Record(ctx, d.Seconds(), set.rec...)
	if err != nil && !errors.Is(err, context.Canceled) {
		c.errs.Add(ctx, 1, set.add...)
	}
}

// Since records one call of op on sys that started at start (Observe).
func (c *ClientMetrics) Since(ctx context.Context, sys System, op string, start time.Time, err error) {
	if c == nil {
		return
	}
	c.Observe(ctx, sys, op, time.Since(start), err)
}
