// Package telemetry wires FleetACS's logs, traces and metrics the same way in
// every service: JSON logs through log/slog with fixed keys (device_id,
// session_id, task_id, tenant, trace_id, span_id), OpenTelemetry traces
// exported over OTLP when the standard OTEL_* variables ask for it (no-op
// otherwise), and OpenTelemetry metrics exposed for Prometheus on the admin
// server's /metrics, with the Go runtime's and the process's, and the
// latency and errors of the calls to the dependencies (ClientMetrics).
//
// Nothing here sets OpenTelemetry's global providers: callers receive them
// and inject them, so tests and several services in one process stay apart.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Fixed log attribute keys (docs/style.md rule 5).
const (
	KeyDeviceID  = "device_id"
	KeySessionID = "session_id"
	KeyTaskID    = "task_id"
	KeyTenant    = "tenant"
	KeyTraceID   = "trace_id"
	KeySpanID    = "span_id"
)

// NewLogger returns a slog logger writing format ("json" or "text") at level
// ("debug", "info", "warn", "error"), adding trace_id and span_id from the
// context of every record that carries a sampled or unsampled span.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch strings.ToLower(format) {
	case "json", "":
		h = slog.NewJSONHandler(w, opts)
	case "text", "logfmt":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("log format %q: want json or text", format)
	}
	return slog.New(traceHandler{h}), nil
}

// traceHandler adds the trace and span IDs of the record's context.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		r.AddAttrs(slog.String(KeyTraceID, sc.TraceID().String()))
		if sc.HasSpanID() {
			r.AddAttrs(slog.String(KeySpanID, sc.SpanID().String()))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}

// Providers are the OpenTelemetry providers of one process.
type Providers struct {
	// Tracing is set when spans are exported; Tracer is a no-op otherwise.
	Tracing    bool
	Tracer     trace.TracerProvider
	Meter      metric.MeterProvider
	Propagator propagation.TextMapPropagator
	// MetricsHandler serves the Prometheus exposition of Meter's metrics.
	MetricsHandler http.Handler
	shutdown       []func(context.Context) error
	// skipUnsampled: the sampler never samples a span under an unsampled
	// parent (GRPCStats).
	skipUnsampled bool
}

// Shutdown flushes and stops the exporters.
func (p *Providers) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range p.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}

// Setup builds the providers for a process named service. Traces are
// exported over OTLP only when OTEL_TRACES_EXPORTER is "otlp" or an
// OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set (protocol from
// OTEL_EXPORTER_OTLP_PROTOCOL: grpc, the default, or http/protobuf; the
// exporters read the other standard variables themselves, the SDK the
// batcher's OTEL_BSP_*, and newSampler OTEL_TRACES_SAMPLER(_ARG));
// otherwise tracing is a no-op. OTEL_SERVICE_NAME replaces service. getenv is injected for tests; pass os.Getenv.
func Setup(ctx context.Context, service string, getenv func(string) string) (*Providers, error) {
	p := &Providers{Propagator: Propagator{}}
	if name := getenv("OTEL_SERVICE_NAME"); name != "" {
		// The standard override, so that each process of a deployment
		// names itself in its spans (docs/operations.md, "Traces").
		service = name
	}
	res := resource.NewSchemaless(semconv.ServiceName(service))

	exporter := strings.ToLower(getenv("OTEL_TRACES_EXPORTER"))
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") + getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	if exporter == "otlp" || (exporter == "" && endpoint != "") {
		sampler, err := newSampler(getenv)
		if err != nil {
			return nil, err
		}
		var exp sdktrace.SpanExporter
		switch proto := getenv("OTEL_EXPORTER_OTLP_PROTOCOL"); proto {
		case "", "grpc":
			exp, err = otlptracegrpc.New(ctx)
		case "http/protobuf":
			exp, err = otlptracehttp.New(ctx)
		default:
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: want grpc or http/protobuf", proto)
		}
		if err != nil {
			return nil, fmt.Errorf("create OTLP trace exporter: %w", err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res),
			sdktrace.WithSampler(sampler), sdktrace.WithIDGenerator(idGenerator{}))
		p.Tracer, p.Tracing = tp, true
		p.skipUnsampled = getenv("OTEL_TRACES_SAMPLER") != "always_on"
		if p.skipUnsampled {
			// No span under an unsampled parent, and no SDK span
			// for one the sampler drops (SkipUnsampledSpans).
			p.Tracer = SkipUnsampledSpans(tp, sampler)
		}
		p.shutdown = append(p.shutdown, tp.Shutdown)
	} else {
		p.Tracer = noop.NewTracerProvider()
	}

	reg := prometheus.NewRegistry()
	// The Go runtime's and the process's own metrics (go_goroutines,
	// go_memstats_*, go_gc_duration_seconds, process_cpu_seconds_total,
	// process_resident_memory_bytes, ...), beside the services'.
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promExp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("create Prometheus metric exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(promExp), sdkmetric.WithResource(res))
	p.Meter = mp
	p.shutdown = append(p.shutdown, mp.Shutdown)
	p.MetricsHandler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return p, nil
}
