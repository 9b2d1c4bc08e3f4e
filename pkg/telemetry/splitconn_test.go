package telemetry

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestSplitConn makes real gRPC calls (loopback TCP) through SplitConn: a
// call under an unsampled span goes through the plain connection and its
// server handler still gets the caller's span context (from the
// traceparent SplitConn adds); a sampled or traceless call goes through
// the traced connection, untouched.
func TestSplitConn(t *testing.T) {
	// The process's Propagator takes the hand-written path; any other
	// propagator goes through a carrier.
	t.Run("Propagator", func(t *testing.T) { testSplitConn(t, Propagator{}) })
	t.Run("otel", func(t *testing.T) {
		testSplitConn(t, propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	})
	// No propagator: the plain connection's per-call credentials write
	// the trace context (AddTraceContext).
	t.Run("credentials", func(t *testing.T) { testSplitConn(t, nil) })
}

// traceCredentials are per-call credentials writing the trace context, as
// apiauth.Internal.DialOptionsAdding(AddTraceContext) does.
type traceCredentials struct{}

func (traceCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	md := map[string]string{"x-token": "t"}
	AddTraceContext(ctx, md)
	return md, nil
}

func (traceCredentials) RequireTransportSecurity() bool { return false }

func testSplitConn(t *testing.T, prop propagation.TextMapPropagator) {
	var mu sync.Mutex
	var seen trace.SpanContext
	var seenBaggage baggage.Baggage
	var traceparents []string
	serverProp := prop
	if serverProp == nil {
		serverProp = Propagator{}
	}
	srv := grpc.NewServer(grpc.StatsHandler(SkipUnsampled(&countingHandler{}, serverProp, false)),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			mu.Lock()
			seen = trace.SpanContextFromContext(ctx)
			seenBaggage = baggage.FromContext(ctx)
			traceparents = append(traceparents, incomingCarrier{ctx}.Get("traceparent"))
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
	var plainCalls, tracedCalls atomic.Int32
	dial := func(n *atomic.Int32, more ...grpc.DialOption) *grpc.ClientConn {
		cc, err := grpc.NewClient(ln.Addr().String(), append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, inv grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				n.Add(1)
				return inv(ctx, method, req, reply, cc, opts...)
			})}, more...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		return cc
	}
	var plainOpts []grpc.DialOption
	if prop == nil {
		plainOpts = append(plainOpts, grpc.WithPerRPCCredentials(traceCredentials{}))
	}
	hc := healthpb.NewHealthClient(SplitConn(dial(&plainCalls, plainOpts...), dial(&tracedCalls), prop))
	call := func(ctx context.Context) (trace.SpanContext, string) {
		t.Helper()
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		return seen, traceparents[len(traceparents)-1]
	}
	span := func(flags trace.TraceFlags) trace.SpanContext {
		return trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
			SpanID:  trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8}, TraceFlags: flags,
		})
	}

	unsampled := span(0)
	got, tp := call(trace.ContextWithSpanContext(context.Background(), unsampled))
	if plainCalls.Load() != 1 || tracedCalls.Load() != 0 {
		t.Fatalf("unsampled call: %d plain, %d traced calls, want 1 plain", plainCalls.Load(), tracedCalls.Load())
	}
	if got.TraceID() != unsampled.TraceID() || got.SpanID() != unsampled.SpanID() || got.IsSampled() || !got.IsRemote() {
		t.Fatalf("server saw %v, want the caller's unsampled span context, remote", got)
	}
	if want := "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-00"; tp != want {
		t.Fatalf("traceparent %q, want %q", tp, want)
	}

	// A tracestate and baggage travel with the traceparent.
	ts, err := trace.ParseTraceState("vendor=abc,other=1")
	if err != nil {
		t.Fatal(err)
	}
	member, err := baggage.NewMember("tenant", "acme")
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(member)
	if err != nil {
		t.Fatal(err)
	}
	ctx := baggage.ContextWithBaggage(trace.ContextWithSpanContext(context.Background(), unsampled.WithTraceState(ts)), bag)
	got, _ = call(ctx)
	mu.Lock()
	gotBaggage := seenBaggage
	mu.Unlock()
	if got.TraceState().String() != "vendor=abc,other=1" || gotBaggage.Member("tenant").Value() != "acme" || got.SpanID() != unsampled.SpanID() {
		t.Fatalf("server saw %v (tracestate %q), baggage %q; want the caller's", got, got.TraceState(), gotBaggage)
	}
	plainCalls.Store(1)

	// Sampled, then traceless: the traced connection, whose
	// instrumentation (absent here) would carry the context.
	for i, ctx := range []context.Context{trace.ContextWithSpanContext(context.Background(), span(trace.FlagsSampled)), context.Background()} {
		_, tp := call(ctx)
		if plainCalls.Load() != 1 || tracedCalls.Load() != int32(i+1) || tp != "" {
			t.Fatalf("call %d: %d plain, %d traced calls, traceparent %q; want it traced and untouched", i, plainCalls.Load(), tracedCalls.Load(), tp)
		}
	}
}
