package gateway

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// logRecords returns the JSON log records whose msg is msg.
func logRecords(t *testing.T, logs string, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// Lines logged about a request that never reaches a session (a body
// refused before anything else is known, an authentication failure) carry
// the trace and span IDs of the request's span, like a session's lines.
func TestRejectedRequestLogsCarrySpan(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithIDGenerator(telemetry.IDGenerator()))
	logs := &syncBuffer{}
	logger, err := telemetry.NewLogger(logs, "json", "debug")
	if err != nil {
		t.Fatal(err)
	}
	h := startGateway(t, testConfig(), func(d *Deps) {
		d.Logger = logger
		d.TracerProvider = tp
	})
	// Refused before its body is read: no session, no device.
	if a := dialCPE(t, h.addr).post([]byte("x"), "Content-Encoding: br"); a.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("br body: %d, want 415", a.StatusCode)
	}
	waitFor(t, "the refused request's span", func() bool { return len(spans.Ended()) == 1 })
	refused := spans.Ended()[0]
	recs := logRecords(t, logs.String(), "request body refused")
	if len(recs) != 1 {
		t.Fatalf("%d request body refused records in %s", len(recs), logs.String())
	}
	if recs[0]["trace_id"] != refused.SpanContext().TraceID().String() || recs[0]["span_id"] != refused.SpanContext().SpanID().String() {
		t.Fatalf("record %v; the request's span: trace %s span %s", recs[0], refused.SpanContext().TraceID(), refused.SpanContext().SpanID())
	}

	// A wrong password: refused after the session's span began.
	c := dialCPE(t, h.addr)
	wrong := &digestClient{user: "cpe", pass: "guess"}
	wrong.learn(t, c.post(informBody(t, "SN1", "2 PERIODIC")))
	if a := c.post(informBody(t, "SN1", "2 PERIODIC"), wrong.header("/cwmp")); a.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", a.StatusCode)
	}
	waitFor(t, "the two Informs' spans", func() bool { return len(spans.Ended()) == 3 })
	failed := spans.Ended()[2]
	recs = logRecords(t, logs.String(), "CPE authentication failed")
	if len(recs) != 1 {
		t.Fatalf("%d authentication failed records in %s", len(recs), logs.String())
	}
	if recs[0]["trace_id"] != failed.SpanContext().TraceID().String() || recs[0]["span_id"] != failed.SpanContext().SpanID().String() {
		t.Fatalf("record %v; the request's span: trace %s span %s", recs[0], failed.SpanContext().TraceID(), failed.SpanContext().SpanID())
	}
	// Every line written inside a request carries both IDs.
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		if _, inRequest := rec["remote_addr"]; inRequest && (rec["trace_id"] == nil || rec["span_id"] == nil) {
			t.Errorf("request record without trace_id or span_id: %v", rec)
		}
	}
}
