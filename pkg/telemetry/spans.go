package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// SkipUnsampledSpans wraps tp so that a span started under a parent that
// is not sampled, and not recording, is not started at all: Start returns
// the context it was given and the parent's span, which records nothing,
// as the span it would have started would not have. The tracer provider
// of the SDK, even when its sampler drops such a span, draws it a span
// ID, builds its configuration and puts a new non-recording span in a
// new context (BENCHMARKS.md, issue 11: the worker's cwmp.exchange span
// of every unsampled session). What is lost is that span's ID, which no
// exporter ever saw: the lines a service logs under it carry the trace
// ID and the parent's span ID (the caller's span) instead.
//
// A span asked to be a new root (trace.WithNewRoot) is started as usual.
// Like SkipUnsampled, it is right only when the sampler never samples a
// span under an unsampled parent (Providers.SkipsUnsampled); Setup wraps
// the tracer provider with it then.
func SkipUnsampledSpans(tp trace.TracerProvider) trace.TracerProvider {
	return skipTracerProvider{tp: tp}
}

type skipTracerProvider struct {
	embedded.TracerProvider
	tp trace.TracerProvider
}

func (p skipTracerProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return skipTracer{t: p.tp.Tracer(name, opts...)}
}

type skipTracer struct {
	embedded.Tracer
	t trace.Tracer
}

func (t skipTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if sc := parent.SpanContext(); !sc.IsValid() || sc.IsSampled() || parent.IsRecording() {
		return t.t.Start(ctx, name, opts...)
	}
	if len(opts) > 0 {
		if cfg := trace.NewSpanStartConfig(opts...); cfg.NewRoot() {
			return t.t.Start(ctx, name, opts...)
		}
	}
	return ctx, parent
}
