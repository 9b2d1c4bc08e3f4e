package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

func TestLoggerAddsTraceID(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("0102030405060708090a0b0c0d0e0f10")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{1}})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	log.InfoContext(ctx, "session started", KeyDeviceID, "00259E-HG8245-4857544312345678")
	log.Debug("dropped below level")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("one JSON record expected, got %q: %v", buf.String(), err)
	}
	if rec[KeyTraceID] != "0102030405060708090a0b0c0d0e0f10" || rec[KeySpanID] != "0100000000000000" || rec[KeyDeviceID] != "00259E-HG8245-4857544312345678" || rec["msg"] != "session started" {
		t.Fatalf("record %v", rec)
	}
}

func TestLoggerRejectsBadSettings(t *testing.T) {
	if _, err := NewLogger(io.Discard, "xml", "info"); err == nil {
		t.Fatal("format xml accepted")
	}
	if _, err := NewLogger(io.Discard, "json", "loud"); err == nil {
		t.Fatal("level loud accepted")
	}
}

func TestSetupDefaultsToNoopTracesAndServesMetrics(t *testing.T) {
	p, err := Setup(context.Background(), "gateway", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	if _, ok := p.Tracer.(noop.TracerProvider); !ok || p.Tracing {
		t.Fatalf("tracer provider %T (tracing %t), want no-op without OTEL_* settings", p.Tracer, p.Tracing)
	}
	c, err := p.Meter.Meter("test").Int64Counter("fleetacs_test_events")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 3)
	rr := httptest.NewRecorder()
	p.MetricsHandler.ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rr.Body.String(), "fleetacs_test_events_total") {
		t.Fatalf("metrics exposition lacks the counter:\n%s", rr.Body.String())
	}
	// The Go runtime's and the process's metrics are there too.
	for _, want := range []string{"\ngo_goroutines ", "\ngo_memstats_heap_alloc_bytes ", "\nprocess_resident_memory_bytes ", "\nprocess_cpu_seconds_total "} {
		if !strings.Contains(rr.Body.String(), want) {
			t.Errorf("metrics exposition lacks %q", strings.TrimSpace(want))
		}
	}
}

func TestSetupRejectsUnknownProtocol(t *testing.T) {
	env := map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}
	if _, err := Setup(context.Background(), "x", func(k string) string { return env[k] }); err == nil {
		t.Fatal("unknown protocol accepted")
	}
}
