package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// SplitConn returns a client connection that sends a call made under an
// unsampled span through plain, a connection to the same target with no
// stats handler, carrying that span's context (traceparent, flags 00) in
// its metadata, and every other call through traced, the connection with
// the OpenTelemetry instrumentation. A stats handler on a connection,
// however little it does with a call (SkipUnsampled), has gRPC copy the
// call's metadata and record its headers, payloads and trailers for it:
// with tracing at a 1% sample rate that was most of what the remaining
// 99% of calls paid (BENCHMARKS.md, issue 11).
//
// With prop nil, plain carries each call's trace context itself: its
// per-call credentials write it (AddTraceContext, through
// apiauth.Internal.DialOptionsAdding) into the map that already carries
// the internal token, which saves the call a copy of its outgoing
// metadata in a new context (four allocations).
//
// Like SkipUnsampled, it is right only when the process's sampler never
// samples a span whose parent is not sampled (Providers.SkipsUnsampled).
// Neither connection is closed by it.
func SplitConn(plain, traced grpc.ClientConnInterface, prop propagation.TextMapPropagator) grpc.ClientConnInterface {
	return splitConn{plain: plain, traced: traced, prop: prop}
}

// AddTraceContext writes the trace context of ctx's span (when valid) and
// its baggage (when any) into md, as the process's Propagator writes them:
// the per-call metadata of a SplitConn's plain connection.
func AddTraceContext(ctx context.Context, md map[string]string) {
	Propagator{}.Inject(ctx, propagation.MapCarrier(md))
}

type splitConn struct {
	plain, traced grpc.ClientConnInterface
	prop          propagation.TextMapPropagator
}

// unsampled returns ctx with its span's context added to the outgoing
// metadata, and true, when that span is valid and not sampled.
func (c splitConn) unsampled(ctx context.Context) (context.Context, bool) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || sc.IsSampled() {
		return ctx, false
	}
	if c.prop == nil {
		return ctx, true
	}
	return outgoingTraceContext(ctx, sc, c.prop), true
}

func (c splitConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if uctx, ok := c.unsampled(ctx); ok {
		return c.plain.Invoke(uctx, method, args, reply, opts...)
	}
	return c.traced.Invoke(ctx, method, args, reply, opts...)
}

func (c splitConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if uctx, ok := c.unsampled(ctx); ok {
		return c.plain.NewStream(uctx, desc, method, opts...)
	}
	return c.traced.NewStream(ctx, desc, method, opts...)
}

// SkipsUnsampled reports whether the process's sampler never samples a
// span under an unsampled parent while spans are exported: then calls
// under unsampled spans may go around the instrumentation (SkipUnsampled,
// SplitConn).
func (p *Providers) SkipsUnsampled() bool { return p.Tracing && p.skipUnsampled }
