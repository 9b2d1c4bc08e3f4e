package telemetry

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"

	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// countingHandler stands in for the OpenTelemetry gRPC instrumentation:
// it counts the calls it is given.
type countingHandler struct {
	tags, handled atomic.Int32
}

func (h *countingHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	h.tags.Add(1)
	return ctx
}
func (h *countingHandler) HandleRPC(context.Context, stats.RPCStats) { h.handled.Add(1) }
func (h *countingHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (h *countingHandler) HandleConn(context.Context, stats.ConnStats) {}

// TestSkipUnsampled makes real gRPC calls (loopback TCP) through a client
// and a server wrapped by SkipUnsampled: a call under an unsampled span
// reaches neither instrumentation yet carries the trace context to the
// server's handler; a sampled or traceless one goes to both.
func TestSkipUnsampled(t *testing.T) {
	t.Run("Propagator", func(t *testing.T) { testSkipUnsampled(t, Propagator{}) })
	t.Run("otel", func(t *testing.T) { testSkipUnsampled(t, propagation.TraceContext{}) })
}

func testSkipUnsampled(t *testing.T, prop propagation.TextMapPropagator) {
	ch, sh := &countingHandler{}, &countingHandler{}
	var mu sync.Mutex
	var seen trace.SpanContext
	srv := grpc.NewServer(grpc.StatsHandler(SkipUnsampled(sh, prop, false)),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			mu.Lock()
			seen = trace.SpanContextFromContext(ctx)
			mu.Unlock()
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(SkipUnsampled(ch, prop, true)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	hc := healthpb.NewHealthClient(cc)
	call := func(ctx context.Context) trace.SpanContext {
		t.Helper()
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
	span := func(flags trace.TraceFlags) trace.SpanContext {
		return trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
			SpanID:  trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: flags,
		})
	}

	unsampled := span(0)
	got := call(trace.ContextWithSpanContext(context.Background(), unsampled))
	if ch.tags.Load() != 0 || ch.handled.Load() != 0 || sh.tags.Load() != 0 || sh.handled.Load() != 0 {
		t.Fatalf("unsampled call reached the instrumentation: client %d/%d, server %d/%d",
			ch.tags.Load(), ch.handled.Load(), sh.tags.Load(), sh.handled.Load())
	}
	if got.TraceID() != unsampled.TraceID() || got.SpanID() != unsampled.SpanID() || got.IsSampled() || !got.IsRemote() {
		t.Fatalf("server saw %v, want the caller's unsampled span context, remote", got)
	}

	// Sampled: both sides' instrumentation (the stand-in does not inject,
	// so the server sees no trace context and hands the call on too).
	call(trace.ContextWithSpanContext(context.Background(), span(trace.FlagsSampled)))
	if ch.tags.Load() != 1 || ch.handled.Load() == 0 || sh.tags.Load() != 1 || sh.handled.Load() == 0 {
		t.Fatalf("sampled call: client %d/%d, server %d/%d, want both instrumented",
			ch.tags.Load(), ch.handled.Load(), sh.tags.Load(), sh.handled.Load())
	}
	// No trace at all: instrumented (the instrumentation starts a root).
	call(context.Background())
	if ch.tags.Load() != 2 || sh.tags.Load() != 2 {
		t.Fatalf("traceless call: client %d, server %d tags, want 2 each", ch.tags.Load(), sh.tags.Load())
	}
}

// GRPCStats skips unsampled calls for every sampler that never samples
// under an unsampled parent, and not for always_on.
func TestGRPCStatsBySampler(t *testing.T) {
	inner := &countingHandler{}
	for sampler, wrapped := range map[string]bool{
		"": true, "parentbased_traceidratio": true, "traceidratio": true, "parentbased_always_on": true, "always_on": false,
	} {
		env := map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_SAMPLER": sampler}
		p, err := Setup(context.Background(), "x", func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		_, isInner := p.GRPCStats(inner, true).(*countingHandler)
		if isInner == wrapped {
			t.Errorf("sampler %q: wrapped %v, want %v", sampler, !isInner, wrapped)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = p.Shutdown(ctx)
	}
	// Tracing off: nothing to wrap around.
	p, err := Setup(context.Background(), "x", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.GRPCStats(inner, false).(*countingHandler); !ok {
		t.Error("tracing off: handler wrapped")
	}
}

// TestGRPCServerStats: the one server handler records every call's
// duration, the calls it skips (under an unsampled remote span) as well
// as those it hands the instrumentation, which sees only the latter.
func TestGRPCServerStats(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	m, err := NewGRPCServerMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	sh := &countingHandler{}
	p := &Providers{Propagator: Propagator{}, skipUnsampled: true}
	srv := grpc.NewServer(grpc.StatsHandler(p.GRPCServerStats(sh, m)))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	hc := healthpb.NewHealthClient(testenv.GRPCConn(t, srv))
	unsampled := metadata.Pairs("traceparent", "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-00")
	sampled := metadata.Pairs("traceparent", "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01")
	for _, md := range []metadata.MD{unsampled, unsampled, sampled, nil} {
		if _, err := hc.Check(metadata.NewOutgoingContext(context.Background(), md), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if sh.tags.Load() != 2 {
		t.Errorf("the instrumentation tagged %d calls, want 2 (sampled and traceless)", sh.tags.Load())
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if mt.Name != "rpc.server.call.duration" {
				continue
			}
			for _, dp := range mt.Data.(metricdata.Histogram[float64]).DataPoints {
				if method, _ := dp.Attributes.Value("rpc.method"); method.AsString() == "grpc.health.v1.Health/Check" {
					n += dp.Count
				}
			}
		}
	}
	if n != 4 {
		t.Errorf("%d calls recorded, want all 4", n)
	}
}
