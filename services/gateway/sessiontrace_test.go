package gateway

import (
	"net/http"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// TestSessionTrace checks that the requests of one session are one trace
// (docs/operations.md, "Traces"): the Inform's span is its root, the next
// request's span its child, and another session is another trace.
func TestSessionTrace(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithIDGenerator(telemetry.IDGenerator()))
	h := startGateway(t, anonymousConfig(), func(d *Deps) { d.TracerProvider = tp })
	c := dialCPE(t, h.addr)
	if a := c.post(informBody(t, "SN1", "1 BOOT")); a.StatusCode != http.StatusOK {
		t.Fatalf("Inform: %d", a.StatusCode)
	}
	if a := c.post(nil); a.StatusCode != http.StatusOK && a.StatusCode != http.StatusNoContent {
		t.Fatalf("empty POST: %d", a.StatusCode)
	}
	c2 := dialCPE(t, h.addr)
	if a := c2.post(informBody(t, "SN2", "1 BOOT")); a.StatusCode != http.StatusOK {
		t.Fatalf("Inform of SN2: %d", a.StatusCode)
	}
	waitFor(t, "three request spans", func() bool { return len(spans.Ended()) == 3 })
	// Spans end just after their answers leave: told apart by attributes.
	var inform, next, other sdktrace.ReadOnlySpan
	for _, sp := range spans.Ended() {
		attrs := map[string]string{}
		for _, kv := range sp.Attributes() {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		switch {
		case attrs["cwmp.rpc"] == "Inform" && attrs["fleetacs.device_id"] == testDeviceKey("SN1"):
			inform = sp
		case attrs["cwmp.rpc"] == "Inform":
			other = sp
		default:
			next = sp
		}
	}
	if inform == nil || next == nil || other == nil {
		t.Fatalf("spans: Inform %v, next %v, other device's Inform %v", inform, next, other)
	}
	if inform.Parent().IsValid() {
		t.Errorf("the Inform's span has parent %s, want none", inform.Parent().SpanID())
	}
	if next.SpanContext().TraceID() != inform.SpanContext().TraceID() || next.Parent().SpanID() != inform.SpanContext().SpanID() {
		t.Errorf("the session's second request: trace %s parent %s; the Inform's span: trace %s span %s",
			next.SpanContext().TraceID(), next.Parent().SpanID(), inform.SpanContext().TraceID(), inform.SpanContext().SpanID())
	}
	if other.SpanContext().TraceID() == inform.SpanContext().TraceID() || other.Parent().IsValid() {
		t.Errorf("another device's session: trace %s parent %v, want a trace of its own", other.SpanContext().TraceID(), other.Parent())
	}
}
