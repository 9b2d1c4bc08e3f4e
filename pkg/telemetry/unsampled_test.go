package telemetry

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/baggage"
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
	"google.golang.org/grpc/tap"

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
// as those it hands the instrumentation, which sees only the latter; a
// skipped call's handler gets the remote span context and baggage,
// whether the handler read them itself or the server's tap did
// (ServerTap).
func TestGRPCServerStats(t *testing.T) {
	for _, tapped := range []bool{false, true} {
		t.Run(fmt.Sprintf("tap=%v", tapped), func(t *testing.T) { testGRPCServerStats(t, tapped) })
	}
}

func testGRPCServerStats(t *testing.T, tapped bool) {
	reader := sdkmetric.NewManualReader()
	m, err := NewGRPCServerMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	sh := &countingHandler{}
	p := &Providers{Tracing: true, Propagator: Propagator{}, skipUnsampled: true}
	type seen struct {
		sc     trace.SpanContext
		member string
	}
	var got []seen
	var mu sync.Mutex
	opts := []grpc.ServerOption{grpc.StatsHandler(p.GRPCServerStats(sh, m)),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			mu.Lock()
			got = append(got, seen{trace.SpanContextFromContext(ctx), baggage.FromContext(ctx).Member("k").Value()})
			mu.Unlock()
			return h(ctx, req)
		})}
	if tapped {
		read := p.ServerTap()
		opts = append(opts, grpc.InTapHandle(func(ctx context.Context, info *tap.Info) (context.Context, error) {
			return read(ctx, info.FullMethodName, info.Header), nil
		}))
	}
	srv := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	hc := healthpb.NewHealthClient(testenv.GRPCConn(t, srv))
	const tp = "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-00"
	unsampled := metadata.Pairs("traceparent", tp)
	withState := metadata.Pairs("traceparent", tp, "tracestate", "a=1", "tracestate", "b=2", "baggage", "k=v")
	sampled := metadata.Pairs("traceparent", "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01")
	for _, md := range []metadata.MD{unsampled, withState, sampled, nil} {
		if _, err := hc.Check(metadata.NewOutgoingContext(context.Background(), md), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if sh.tags.Load() != 2 {
		t.Errorf("the instrumentation tagged %d calls, want 2 (sampled and traceless)", sh.tags.Load())
	}
	want, err := ParseTraceparent(tp)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := trace.ParseTraceState("a=1,b=2")
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(got) != 4 || !got[0].sc.Equal(want) || got[0].member != "" ||
		!got[1].sc.Equal(want.WithTraceState(ts)) || got[1].member != "v" {
		t.Errorf("skipped calls' contexts: %+v, want %v, then with tracestate %v and baggage k=v", got, want, ts)
	}
	mu.Unlock()
	// The server records a call's end after it has sent the status the
	// client returns on: the last call's record may follow the client's
	// return.
	testenv.WaitFor(t, 10*time.Second, func() error {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			return err
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
			return fmt.Errorf("%d calls recorded, want all 4", n)
		}
		return nil
	})
}

// unsampledHeaders reads the headers as gRPC hands them to the tap (lower
// case) and, for metadata built by hand, in any case; it refuses what
// ParseTraceparent refuses and sampled contexts, takes the first of
// several traceparents and joins several tracestates.
func TestUnsampledHeaders(t *testing.T) {
	const (
		tid = "0af7651916cd43dd8448eb211c80319c"
		sid = "b7ad6b7169203331"
		tp  = "00-" + tid + "-" + sid + "-00"
	)
	traceID, _ := trace.TraceIDFromHex(tid)
	spanID, _ := trace.SpanIDFromHex(sid)
	want := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, Remote: true})
	other := "00-" + tid + "-00f067aa0ba902b7-00"
	for _, c := range []struct {
		name  string
		md    metadata.MD
		ok    bool
		state string
		bg    []string
	}{
		{"none", metadata.MD{":authority": {"x"}, "content-type": {"application/grpc"}}, false, "", nil},
		{"unsampled", metadata.MD{"traceparent": {tp}, "content-type": {"application/grpc"}}, true, "", nil},
		{"sampled", metadata.MD{"traceparent": {"00-" + tid + "-" + sid + "-01"}}, false, "", nil},
		{"empty", metadata.MD{"traceparent": {""}}, false, "", nil},
		{"no values", metadata.MD{"traceparent": {}}, false, "", nil},
		{"upper-case hex", metadata.MD{"traceparent": {"00-0AF7651916CD43DD8448EB211C80319C-" + sid + "-00"}}, false, "", nil},
		{"short", metadata.MD{"traceparent": {tp[:54]}}, false, "", nil},
		{"version ff", metadata.MD{"traceparent": {"ff" + tp[2:]}}, false, "", nil},
		{"zero trace ID", metadata.MD{"traceparent": {"00-00000000000000000000000000000000-" + sid + "-00"}}, false, "", nil},
		{"version 00 with more", metadata.MD{"traceparent": {tp + "-x"}}, false, "", nil},
		{"two traceparents: the first", metadata.MD{"traceparent": {tp, other}}, true, "", nil},
		{"a bad first traceparent", metadata.MD{"traceparent": {"x", tp}}, false, "", nil},
		{"tracestate", metadata.MD{"traceparent": {tp}, "tracestate": {"a=1,b=2"}}, true, "a=1,b=2", nil},
		{"two tracestates: one list", metadata.MD{"traceparent": {tp}, "tracestate": {"a=1", "b=2"}}, true, "a=1,b=2", nil},
		{"a bad tracestate: dropped", metadata.MD{"traceparent": {tp}, "tracestate": {"=="}}, true, "", nil},
		{"baggage", metadata.MD{"traceparent": {tp}, "baggage": {"k=v"}}, true, "", []string{"k=v"}},
		{"upper-case names", metadata.MD{"Traceparent": {tp}, "TraceState": {"a=1"}, "BAGGAGE": {"k=v"}}, true, "a=1", []string{"k=v"}},
		{"upper and lower case names: one header", metadata.MD{"TRACEPARENT": {tp}, "tracestate": {"a=1"}}, true, "a=1", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			sc, bg, ok := unsampledHeaders(c.md)
			if ok != c.ok {
				t.Fatalf("ok %v, want %v (%v)", ok, c.ok, sc)
			}
			if !ok {
				if sc.IsValid() || bg != nil {
					t.Errorf("refused, but returned %v %v", sc, bg)
				}
				return
			}
			if !sc.WithTraceState(trace.TraceState{}).Equal(want) || sc.TraceState().String() != c.state {
				t.Errorf("span context %v tracestate %q, want %v %q", sc, sc.TraceState().String(), want, c.state)
			}
			if fmt.Sprint(bg) != fmt.Sprint(c.bg) {
				t.Errorf("baggage %q, want %q", bg, c.bg)
			}
		})
	}
}

// A call made under a skipped call's remote span sends on the traceparent
// that call came with when it is in the form FormatTraceparent writes
// (no string built), and writes it anew otherwise (a later version, a
// reserved flag, which the spec has forwarded as version 00 with those
// flags zero).
func TestSkippedCallTraceparentPassedOn(t *testing.T) {
	const ids = "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"
	tap := (&Providers{Tracing: true, Propagator: Propagator{}, skipUnsampled: true}).ServerTap()
	for _, c := range []struct{ in, out string }{
		{"00-" + ids + "-00", "00-" + ids + "-00"},
		{"00-" + ids + "-02", "00-" + ids + "-02"},
		{"00-" + ids + "-04", "00-" + ids + "-00"},
		{"01-" + ids + "-00-more", "00-" + ids + "-00"},
	} {
		ctx := tap(context.Background(), "/m", metadata.MD{"traceparent": {c.in}, "tracestate": {"a=1"}})
		if _, ok := skippedCall(ctx); !ok {
			t.Fatalf("%s: not skipped", c.in)
		}
		md := map[string]string{}
		AddTraceContext(ctx, md)
		if md["traceparent"] != c.out || md["tracestate"] != "a=1" {
			t.Errorf("%s: sent on as %q", c.in, md)
		}
	}
	ctx := tap(context.Background(), "/m", metadata.MD{"traceparent": {"00-" + ids + "-00"}})
	md := map[string]string{}
	if n := testing.AllocsPerRun(100, func() { AddTraceContext(ctx, md) }); n != 0 {
		t.Errorf("AddTraceContext under a skipped call: %v allocations, want 0", n)
	}
}
