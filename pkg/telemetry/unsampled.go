package telemetry

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"
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

// serverCall is what serverStats decided about a call, in its context
// under serverCallKey. A call it skips (under an unsampled remote span)
// is told by its span instead: the serverCall itself, which stands for
// the remote span context as the SDK's non-recording span would
// (skippedCall), so that the call's context costs one allocation and the
// serverCall rather than four (BENCHMARKS.md, issue 11).
type serverCall struct {
	embedded.Span
	method  string
	skipped bool
	// sc is the remote span context of a skipped call; traceparent the
	// header it was read from, when that is what FormatTraceparent writes
	// for sc (a call the skipped one makes in turn sends it as it is,
	// Propagator.Inject), else "".
	sc          trace.SpanContext
	traceparent string
}

type serverCallKey struct{}

// The span of a skipped call: its remote span context, recording
// nothing.
func (c *serverCall) End(...trace.SpanEndOption)              {}
func (c *serverCall) AddEvent(string, ...trace.EventOption)   {}
func (c *serverCall) AddLink(trace.Link)                      {}
func (c *serverCall) IsRecording() bool                       { return false }
func (c *serverCall) RecordError(error, ...trace.EventOption) {}
func (c *serverCall) SpanContext() trace.SpanContext          { return c.sc }
func (c *serverCall) SetStatus(codes.Code, string)            {}
func (c *serverCall) SetName(string)                          {}
func (c *serverCall) SetAttributes(...attribute.KeyValue)     {}
func (c *serverCall) TracerProvider() trace.TracerProvider    { return noop.NewTracerProvider() }

// skippedCall returns the serverCall of a call skipped by tap (ServerTap)
// or by TagRPC: ctx's span, when it is one.
func skippedCall(ctx context.Context) (*serverCall, bool) {
	c, ok := trace.SpanFromContext(ctx).(*serverCall)
	return c, ok && c.skipped
}

// withSkippedCall returns ctx with sc, the unsampled remote span context
// of a call of method read from the traceparent header tp ("" if not
// known), as its span (a serverCall), and bg, the call's baggage headers
// (none: nil).
func withSkippedCall(ctx context.Context, method string, sc trace.SpanContext, tp string, bg []string) context.Context {
	c := &serverCall{method: method, skipped: true, sc: sc}
	if isFormatted(tp, sc) {
		c.traceparent = tp
	}
	ctx = trace.ContextWithSpan(ctx, c)
	if len(bg) > 0 {
		ctx = propagation.Baggage{}.Extract(ctx, valuesCarrier{headerBaggage: bg})
	}
	return ctx
}

// ServerTap returns what an internal server's tap handle calls with each
// call's headers (apiauth.Internal.ServerOptionsTapping): it reads the
// call's trace context from them, as gRPC's transport hands them to the
// tap, with no copy (metadata.FromIncomingContext and
// ValueFromIncomingContext copy what they return, and the latter scans
// every header, case-insensitively, for each absent one), and when that
// context is valid and not sampled puts it in the call's context, which
// GRPCServerStats then skips without reading the metadata again. Nil when
// calls are not skipped (SkipsUnsampled).
func (p *Providers) ServerTap() func(ctx context.Context, method string, md metadata.MD) context.Context {
	if !p.SkipsUnsampled() {
		return nil
	}
	if _, ok := p.Propagator.(Propagator); !ok {
		return nil
	}
	return func(ctx context.Context, method string, md metadata.MD) context.Context {
		if sc, bg, ok := unsampledHeaders(md); ok {
			return withSkippedCall(ctx, method, sc, firstValue(md, headerTraceparent), bg)
		}
		return ctx
	}
}

// unsampledHeaders reads the trace context of a call's headers md: the
// remote span context of its traceparent and tracestate, and its baggage
// header's values, and reports whether that context is valid and not
// sampled. gRPC's transport gives header names in lower case (HTTP/2
// refuses others), and metadata.New and Pairs write them so: the three
// headers are looked up by their names, with no scan; only when there is
// no "traceparent" are the names compared case-insensitively, in one
// pass, for metadata built by hand. The first traceparent is read, as
// OpenTelemetry's carriers do; several tracestate headers are one list
// (the W3C spec's rule), joined with commas.
func unsampledHeaders(md metadata.MD) (trace.SpanContext, []string, bool) {
	tp, ts, bg := md[headerTraceparent], md[headerTracestate], md[headerBaggage]
	if len(tp) == 0 {
		tp, ts, bg = nil, nil, nil
		for k, v := range md {
			switch {
			case strings.EqualFold(k, headerTraceparent):
				tp = append(tp, v...)
			case strings.EqualFold(k, headerTracestate):
				ts = append(ts, v...)
			case strings.EqualFold(k, headerBaggage):
				bg = append(bg, v...)
			}
		}
		if len(tp) == 0 {
			return trace.SpanContext{}, nil, false
		}
	}
	sc, ok := unsampledValues(tp, ts)
	return sc, bg, ok
}

// unsampledValues parses the first of the traceparent headers tp and, with
// the tracestate headers ts, returns its span context and true when it is
// valid and not sampled.
func unsampledValues(tp, ts []string) (trace.SpanContext, bool) {
	if len(tp) == 0 {
		return trace.SpanContext{}, false
	}
	sc, err := ParseTraceparent(tp[0])
	if err != nil || sc.IsSampled() {
		return trace.SpanContext{}, false
	}
	switch len(ts) {
	case 0:
	case 1:
		sc = sc.WithTraceState(boundTraceState(ts[0]))
	default:
		sc = sc.WithTraceState(boundTraceState(strings.Join(ts, ",")))
	}
	return sc, true
}

// firstValue is the first value of key in md, "" if none (or if md has
// it under another case, which only metadata built by hand has).
func firstValue(md metadata.MD, key string) string {
	if v := md[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// isFormatted reports whether the traceparent tp is what
// FormatTraceparent writes for sc (version 00, sc's flags): the header
// ParseTraceparent read sc from, whose other fields it checked.
func isFormatted(tp string, sc trace.SpanContext) bool {
	f := byte(sc.TraceFlags())
	return len(tp) == traceparentLen && tp[0] == '0' && tp[1] == '0' && tp[53] == hexDigits[f>>4] && tp[54] == hexDigits[f&0xf]
}

// valuesCarrier reads headers of one name, their values joined with
// commas, for propagation.Baggage.
type valuesCarrier map[string][]string

func (c valuesCarrier) Get(key string) string { return strings.Join(c[key], ",") }

func (c valuesCarrier) Set(string, string) {}

func (c valuesCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

func (s *serverStats) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if s.skip {
		if c, ok := skippedCall(ctx); ok && c.method == info.FullMethodName {
			// ServerTap decided.
			return ctx
		}
		if remote, ok := incomingUnsampled(ctx, s.prop, info.FullMethodName); ok {
			return remote
		}
	}
	ctx = s.traced.TagRPC(ctx, info)
	return context.WithValue(ctx, serverCallKey{}, &serverCall{method: info.FullMethodName})
}

func (s *serverStats) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	c, ok := skippedCall(ctx)
	if !ok {
		s.traced.HandleRPC(ctx, rs)
		c, _ = ctx.Value(serverCallKey{}).(*serverCall)
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
// metadata in its context (its remote span context, its baggage), and
// true, when that context is valid and not sampled; else false: for
// servers without ServerTap. With the process's Propagator the remote span
// is the call's serverCall (withSkippedCall), and the headers are read
// one at a time (incomingValue); it goes no further for a call without a
// traceparent or with a sampled one, which the instrumentation reads
// again.
func incomingUnsampled(ctx context.Context, prop propagation.TextMapPropagator, method string) (context.Context, bool) {
	if _, ok := prop.(Propagator); !ok {
		remote := prop.Extract(ctx, incomingCarrier{ctx})
		sc := trace.SpanContextFromContext(remote)
		if !sc.IsValid() || sc.IsSampled() {
			return ctx, false
		}
		return withSkippedCall(remote, method, sc, "", nil), true
	}
	tp := metadata.ValueFromIncomingContext(ctx, headerTraceparent)
	if len(tp) == 0 {
		return ctx, false
	}
	sc, ok := unsampledValues(tp, metadata.ValueFromIncomingContext(ctx, headerTracestate))
	if !ok {
		return ctx, false
	}
	return withSkippedCall(ctx, method, sc, tp[0], metadata.ValueFromIncomingContext(ctx, headerBaggage)), true
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
