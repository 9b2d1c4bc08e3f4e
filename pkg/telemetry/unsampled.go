package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
)

// SkipUnsampled wraps the OpenTelemetry gRPC instrumentation h (a client
// handler when client is set, else a server one) so that a call whose
// trace is not sampled costs what the trace context costs and no more: a
// client call made under an unsampled span carries that span's context
// (traceparent, flags 00) without a span of its own, and a server call
// with such a context gets it in its context, again without a span. h
// handles every other call. Starting and ending a span, non-recording as
// it would be, and building its attributes on every call was most of
// what tracing at a 1% sample rate cost (BENCHMARKS.md, issue 11).
//
// It is right when the process's sampler never samples a span whose
// parent is not sampled: the parent-based samplers (their default for
// such a parent) and the trace-ID ratio sampler (the same trace ID, the
// same decision). Providers.GRPCStats applies it only then.
func SkipUnsampled(h stats.Handler, prop propagation.TextMapPropagator, client bool) stats.Handler {
	if client {
		return skipClient{h, prop}
	}
	return skipServer{h, prop}
}

// GRPCStats returns h wrapped by SkipUnsampled, or h itself when the
// process's sampler may sample a span under an unsampled parent
// (OTEL_TRACES_SAMPLER=always_on).
func (p *Providers) GRPCStats(h stats.Handler, client bool) stats.Handler {
	if !p.skipUnsampled {
		return h
	}
	return SkipUnsampled(h, p.Propagator, client)
}

type skippedKey struct{}

func skipped(ctx context.Context) bool {
	_, ok := ctx.Value(skippedKey{}).(struct{})
	return ok
}

type skipClient struct {
	stats.Handler
	prop propagation.TextMapPropagator
}

func (s skipClient) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || sc.IsSampled() {
		return s.Handler.TagRPC(ctx, info)
	}
	return context.WithValue(outgoingTraceContext(ctx, sc, s.prop), skippedKey{}, struct{}{})
}

func (s skipClient) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	if !skipped(ctx) {
		s.Handler.HandleRPC(ctx, rs)
	}
}

type skipServer struct {
	stats.Handler
	prop propagation.TextMapPropagator
}

func (s skipServer) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	remote, ok := incomingUnsampled(ctx, s.prop)
	if !ok {
		return s.Handler.TagRPC(ctx, info)
	}
	return remote
}

// HandleRPC hands h the calls h tagged. A call it skipped has a remote
// span context in its context, which tells it from one h tagged without
// a marker of its own (a context more per call): the instrumentation
// puts a local span, its own, in the context of every call it takes.
func (s skipServer) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	if sc := trace.SpanContextFromContext(ctx); !sc.IsRemote() || sc.IsSampled() {
		s.Handler.HandleRPC(ctx, rs)
	}
}

// outgoingTraceContext returns ctx with the trace context of sc, its
// span, added to the call's metadata (not written into a copy of it:
// copying the metadata on every call was what an unsampled call still
// cost, BENCHMARKS.md, issue 11). With the process's Propagator the
// headers are built without a carrier: the traceparent string is the one
// allocation besides the metadata's own.
func outgoingTraceContext(ctx context.Context, sc trace.SpanContext, prop propagation.TextMapPropagator) context.Context {
	if _, ok := prop.(Propagator); !ok {
		var kv appendCarrier
		prop.Inject(ctx, &kv)
		return metadata.AppendToOutgoingContext(ctx, kv...)
	}
	var kv [6]string
	kv[0], kv[1] = headerTraceparent, FormatTraceparent(sc)
	n := 2
	if ts := sc.TraceState(); ts.Len() > 0 {
		kv[n], kv[n+1] = headerTracestate, ts.String()
		n += 2
	}
	if bg := baggage.FromContext(ctx); bg.Len() > 0 {
		kv[n], kv[n+1] = headerBaggage, bg.String()
		n += 2
	}
	return metadata.AppendToOutgoingContext(ctx, kv[:n]...)
}

// incomingUnsampled returns ctx with the trace context of the call's
// metadata (its remote span context, its baggage), and true, when that
// context is valid and not sampled; else false. With the process's
// Propagator it reads the headers one at a time (incomingValue) and
// parses the traceparent by hand, and it goes no further for a call
// without one or with a sampled one, which the instrumentation reads
// again.
func incomingUnsampled(ctx context.Context, prop propagation.TextMapPropagator) (context.Context, bool) {
	if _, ok := prop.(Propagator); !ok {
		remote := prop.Extract(ctx, incomingCarrier{ctx})
		sc := trace.SpanContextFromContext(remote)
		return remote, sc.IsValid() && !sc.IsSampled()
	}
	tp := incomingValue(ctx, headerTraceparent)
	if tp == "" {
		return ctx, false
	}
	sc, err := ParseTraceparent(tp)
	if err != nil || sc.IsSampled() {
		return ctx, false
	}
	if ts := incomingValue(ctx, headerTracestate); ts != "" {
		sc = sc.WithTraceState(boundTraceState(ts))
	}
	remote := trace.ContextWithRemoteSpanContext(ctx, sc)
	if incomingValue(ctx, headerBaggage) != "" {
		remote = propagation.Baggage{}.Extract(remote, incomingCarrier{ctx})
	}
	return remote, true
}

// incomingValue is the first value of key in the call's incoming
// metadata, "" if none.
func incomingValue(ctx context.Context, key string) string {
	if v := metadata.ValueFromIncomingContext(ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// appendCarrier collects what a propagator injects as the key and value
// pairs of metadata.AppendToOutgoingContext.
type appendCarrier []string

func (c *appendCarrier) Get(string) string { return "" }

func (c *appendCarrier) Set(key, value string) { *c = append(*c, key, value) }

func (c *appendCarrier) Keys() []string {
	keys := make([]string, 0, len(*c)/2)
	for i := 0; i < len(*c); i += 2 {
		keys = append(keys, (*c)[i])
	}
	return keys
}

// incomingCarrier reads a call's incoming metadata as a propagation
// carrier, one key at a time: metadata.FromIncomingContext would copy all
// of it on every call.
type incomingCarrier struct{ ctx context.Context }

func (c incomingCarrier) Get(key string) string { return incomingValue(c.ctx, key) }

func (c incomingCarrier) Set(string, string) {}

func (c incomingCarrier) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}
