package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestSpansAndLogKeys checks that every POST gets a server span, that the
// Forwarder receives the span's context, and that log records carry the
// fixed keys, trace_id included, through the process logger of
// pkg/telemetry.
func TestSpansAndLogKeys(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	logs := &syncBuffer{}
	logger, err := telemetry.NewLogger(logs, "json", "debug")
	if err != nil {
		t.Fatal(err)
	}
	var probe *ctxProbe
	h := startGateway(t, anonymousConfig(), func(d *Deps) {
		d.Logger = logger
		d.TracerProvider = tp
		probe = &ctxProbe{Forwarder: d.Forwarder}
		d.Forwarder = probe
	})
	c := dialCPE(t, h.addr)
	if a := c.post(informBody(t, "SN1", "1 BOOT")); a.StatusCode != http.StatusOK {
		t.Fatalf("Inform: %d", a.StatusCode)
	}

	// The span ends when the handler returns, just after the answer left.
	waitFor(t, "the request's span to end", func() bool { return len(spans.Ended()) > 0 })
	ended := spans.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans, want 1", len(ended))
	}
	sp := ended[0]
	if sp.SpanKind() != trace.SpanKindServer || sp.SpanContext().TraceID() != probe.trace() {
		t.Fatalf("span kind %v, trace %s; forwarder saw trace %s", sp.SpanKind(), sp.SpanContext().TraceID(), probe.trace())
	}
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range sp.Attributes() {
		attrs[kv.Key] = kv.Value
	}
	if attrs["http.response.status_code"].AsInt64() != 200 || attrs["cwmp.rpc"].AsString() != "Inform" ||
		attrs["fleetacs.device_id"].AsString() != testDeviceKey("SN1") || attrs["fleetacs.session_id"].AsString() == "" {
		t.Fatalf("span attributes %v", attrs)
	}

	var found bool
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if rec["msg"] != "session started" {
			continue
		}
		found = true
		if rec["device_id"] != testDeviceKey("SN1") || rec["tenant"] != "default" || rec["session_id"] != attrs["fleetacs.session_id"].AsString() ||
			rec["trace_id"] != sp.SpanContext().TraceID().String() {
			t.Fatalf("log record %v", rec)
		}
	}
	if !found {
		t.Fatalf("no session started record in %s", logs.String())
	}
}

// ctxProbe records the trace of the context the Forwarder receives.
type ctxProbe struct {
	Forwarder
	mu  sync.Mutex
	got trace.TraceID
}

func (p *ctxProbe) Exchange(ctx context.Context, ex *Exchange) (*Reply, error) {
	p.mu.Lock()
	p.got = trace.SpanContextFromContext(ctx).TraceID()
	p.mu.Unlock()
	return p.Forwarder.Exchange(ctx, ex)
}

func (p *ctxProbe) trace() trace.TraceID {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got
}
