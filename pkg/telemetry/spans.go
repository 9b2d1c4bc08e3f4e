package telemetry

import (
	"context"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// SkipUnsampledSpans wraps tp, whose sampler is sampler, so that spans
// the sampler drops cost less to start:
//
//   - a span under a parent that is not sampled, and not recording, is
//     not started at all: Start returns the context it was given and the
//     parent's span, which records nothing, as the span it would have
//     started would not have (the worker's cwmp.exchange span of every
//     unsampled session). What is lost is that span's ID, which no
//     exporter ever saw: the lines a service logs under it carry the
//     trace ID and the parent's span ID (the caller's span) instead;
//   - the root span of a session's first request (SessionSpanContext)
//     and a span under a sampled remote parent (a session's later
//     request, whose parent says sampled so that the sampler decides
//     again) are decided by sampler first; when it drops them, Start
//     puts in the context the non-recording span the SDK would have
//     started, with the same IDs and flags, without the SDK's
//     configuration, sampling and span building a second time.
//
// Everything else, and every span sampler keeps, goes to tp. The SDK,
// even for a span its sampler drops, builds a configuration, draws IDs
// and a span (BENCHMARKS.md, issue 11: about 30 allocations of an
// unsampled session were those).
//
// A span asked to be a new root (trace.WithNewRoot) is never skipped.
// Like SkipUnsampled, it is right only when the sampler never samples a
// span under an unsampled parent (Providers.SkipsUnsampled), and sampler
// must decide on the trace ID alone, as the samplers newSampler builds
// do, so that tp's decision repeats it; Setup wraps the tracer provider
// with it then. sampler nil skips the first kind only.
func SkipUnsampledSpans(tp trace.TracerProvider, sampler sdktrace.Sampler) trace.TracerProvider {
	return skipTracerProvider{tp: tp, sampler: sampler}
}

type skipTracerProvider struct {
	embedded.TracerProvider
	tp      trace.TracerProvider
	sampler sdktrace.Sampler
}

func (p skipTracerProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return skipTracer{t: p.tp.Tracer(name, opts...), sampler: p.sampler}
}

type skipTracer struct {
	embedded.Tracer
	t       trace.Tracer
	sampler sdktrace.Sampler
}

func (t skipTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	psc := parent.SpanContext()
	if parent.IsRecording() || (psc.IsValid() && !psc.IsRemote() && psc.IsSampled()) {
		return t.t.Start(ctx, name, opts...)
	}
	if psc.IsValid() && !psc.IsSampled() && len(opts) == 0 {
		return ctx, parent
	}
	if t.sampler == nil && !psc.IsValid() {
		return t.t.Start(ctx, name, opts...)
	}
	cfg := trace.NewSpanStartConfig(opts...)
	var scc trace.SpanContextConfig
	switch {
	case psc.IsValid() && !psc.IsSampled() && !cfg.NewRoot():
		return ctx, parent
	case t.sampler == nil:
		return t.t.Start(ctx, name, opts...)
	case cfg.NewRoot() && !psc.IsValid():
		// The first request of a session: the IDs idGenerator gives
		// the root.
		ids, ok := ctx.Value(rootIDsKey{}).(rootIDs)
		if !ok {
			return t.t.Start(ctx, name, opts...)
		}
		scc.TraceID, scc.SpanID = ids.trace, ids.span
	case !cfg.NewRoot() && psc.IsValid() && psc.IsRemote() && psc.IsSampled():
		scc.TraceID, scc.SpanID, scc.TraceFlags = psc.TraceID(), newSpanID(), psc.TraceFlags()&^trace.FlagsSampled
	default:
		return t.t.Start(ctx, name, opts...)
	}
	res := t.sampler.ShouldSample(sdktrace.SamplingParameters{
		ParentContext: ctx, TraceID: scc.TraceID, Name: name,
		Kind: cfg.SpanKind(), Attributes: cfg.Attributes(), Links: cfg.Links(),
	})
	if res.Decision != sdktrace.Drop {
		return t.t.Start(ctx, name, opts...)
	}
	scc.TraceState = res.Tracestate
	ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(scc))
	return ctx, trace.SpanFromContext(ctx)
}
