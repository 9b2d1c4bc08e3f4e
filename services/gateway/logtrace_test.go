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

// A line logged while the gateway searches for a request's session gives
// the request a span of its own; when the request then opens a session,
// that span ends and the session's request span links to it, so the line
// leads to the session.
func TestSearchLogLinksToSessionSpan(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans), sdktrace.WithIDGenerator(telemetry.IDGenerator()))
	logs := &syncBuffer{}
	logger, err := telemetry.NewLogger(logs, "json", "debug")
	if err != nil {
		t.Fatal(err)
	}
	h := startGateway(t, anonymousConfig(), func(d *Deps) {
		d.Logger = logger
		d.TracerProvider = tp
	})
	// Two sessions open from the one loopback address: a request without
	// a cookie on a new connection cannot be tied to either.
	for _, sn := range []string{"SN1", "SN2"} {
		if a := dialCPE(t, h.addr).post(informBody(t, sn, "2 PERIODIC")); a.StatusCode != http.StatusOK {
			t.Fatalf("Inform of %s: %d", sn, a.StatusCode)
		}
	}
	waitFor(t, "the Informs' spans", func() bool { return len(spans.Ended()) == 2 })
	dialCPE(t, h.addr).post(gpvResponseBody(t))
	waitFor(t, "the search's span and the request's", func() bool { return len(spans.Ended()) == 4 })
	recs := logRecords(t, logs.String(), "several sessions open from the address; not guessing")
	if len(recs) != 1 {
		t.Fatalf("%d ambiguity records in %s", len(recs), logs.String())
	}
	ended := spans.Ended()[2:]
	var search, request sdktrace.ReadOnlySpan
	for _, sp := range ended {
		if sp.SpanContext().SpanID().String() == recs[0]["span_id"] {
			search = sp
		} else {
			request = sp
		}
	}
	if search == nil || recs[0]["trace_id"] != search.SpanContext().TraceID().String() {
		t.Fatalf("record %v matches no ended span", recs[0])
	}
	links := request.Links()
	if len(links) != 1 || links[0].SpanContext.SpanID() != search.SpanContext().SpanID() {
		t.Fatalf("the request's session span links %v, want the search's span %s", links, search.SpanContext().SpanID())
	}
}
