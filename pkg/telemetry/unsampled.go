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
	return &serverStats{traced: h, prop: prop, skip: true}
}

// GRPCServerStats returns the one stats handler of a gRPC server while
// tracing is on: m's call durations and the OpenTelemetry instrumentation
// traced, calls under an unsampled span going around traced as
// SkipUnsampled has them when the sampler allows (GRPCStats). One handler
// rather than two: gRPC hands every event of every call (its headers,
// each message, its end) to each handler in turn, and the handler that
// skips a call would look up in the call's context, at each event, what
// it decided at the start.
func (p *Providers) GRPCServerStats(traced stats.Handler, m *GRPCServerMetrics) stats.Handler {
	return &serverStats{m: m, traced: traced, prop: p.Propagator, skip: p.skipUnsampled}
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

// serverStats is a server's stats handler: the instrumentation traced,
// which a call under an unsampled remote span skips when skip is set (it
// then gets that span context in its context, and no span), and the call
// duration metrics m (nil: none).
type serverStats struct {
	m      *GRPCServerMetrics
	traced stats.Handler
	prop   propagation.TextMapPropagator
	skip   bool
}

// serverCall is what serverStats decided about a call, in its context.
type serverCall struct {
	method  string
	skipped bool
}

type serverCallKey struct{}

func (s *serverStats) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	c := &serverCall{method: info.FullMethodName}
	if s.skip {
		if remote, ok := incomingUnsampled(ctx, s.prop); ok {
			ctx, c.skipped = remote, true
		}
	}
	if !c.skipped {
		ctx = s.traced.TagRPC(ctx, info)
	}
	return context.WithValue(ctx, serverCallKey{}, c)
}

func (s *serverStats) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	c, _ := ctx.Value(serverCallKey{}).(*serverCall)
	if c == nil || !c.skipped {
		s.traced.HandleRPC(ctx, rs)
	}
	if end, ok := rs.(*stats.End); ok && !end.Client && s.m != nil && c != nil {
		s.m.record(ctx, c.method, end)
	}
}

func (s *serverStats) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	return s.traced.TagConn(ctx, info)
}

func (s *serverStats) HandleConn(ctx context.Context, cs stats.ConnStats) {
	s.traced.HandleConn(ctx, cs)
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
