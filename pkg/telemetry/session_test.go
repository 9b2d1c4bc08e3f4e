package telemetry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestSessionTrace checks that the requests of one session share a trace
// whose root is the first request's span, that another session gets
// another trace, and that a ratio sampler decides a session's later
// requests as it decided its first.
func TestSessionTrace(t *testing.T) {
	for _, ratio := range []string{"1", "0.5", "0"} {
		env := map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio}
		sampler, err := newSampler(func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithIDGenerator(idGenerator{}), sdktrace.WithSpanProcessor(rec))
		tr := tp.Tracer("test")
		sampled := map[string]int{}
		for _, sid := range []string{"SESSIONA", "SESSIONB", "SESSIONC", "SESSIOND", "SESSIONE", "SESSIONF"} {
			ctx, opts := SessionSpanContext(context.Background(), sid, true)
			_, first := tr.Start(ctx, "first", opts...)
			first.End()
			for range 3 {
				ctx, opts := SessionSpanContext(context.Background(), sid, false)
				_, later := tr.Start(ctx, "later", opts...)
				later.End()
				if later.SpanContext().IsSampled() != first.SpanContext().IsSampled() {
					t.Errorf("ratio %s, session %s: first request sampled %t, a later one %t", ratio, sid, first.SpanContext().IsSampled(), later.SpanContext().IsSampled())
				}
				if later.SpanContext().TraceID() != first.SpanContext().TraceID() {
					t.Errorf("session %s: later request in trace %s, the first in %s", sid, later.SpanContext().TraceID(), first.SpanContext().TraceID())
				}
			}
			if first.SpanContext().IsSampled() {
				sampled[first.SpanContext().TraceID().String()]++
			}
		}
		switch {
		case ratio == "1" && len(sampled) != 6, ratio == "0" && len(sampled) != 0:
			t.Errorf("ratio %s: %d of 6 sessions sampled", ratio, len(sampled))
		}
		for _, s := range rec.Ended() {
			switch s.Name() {
			case "first":
				if s.Parent().IsValid() {
					t.Errorf("a session's first request span has parent %s", s.Parent().SpanID())
				}
			case "later":
				if !s.Parent().IsRemote() || s.Parent().TraceID() != s.SpanContext().TraceID() {
					t.Errorf("a later request span's parent %v is not its session's root", s.Parent())
				}
			}
		}
	}
	// The first request's span carries the IDs later requests name as parent.
	tp := sdktrace.NewTracerProvider(sdktrace.WithIDGenerator(idGenerator{}))
	ctx, opts := SessionSpanContext(context.Background(), "S1", true)
	_, first := tp.Tracer("test").Start(ctx, "first", opts...)
	ctx, _ = SessionSpanContext(context.Background(), "S1", false)
	parent := trace.SpanContextFromContext(ctx)
	if parent.TraceID() != first.SpanContext().TraceID() || parent.SpanID() != first.SpanContext().SpanID() {
		t.Errorf("later requests' parent %s/%s, the first request's span %s/%s", parent.TraceID(), parent.SpanID(), first.SpanContext().TraceID(), first.SpanContext().SpanID())
	}
	ctx, opts = SessionSpanContext(context.Background(), "S2", true)
	_, other := tp.Tracer("test").Start(ctx, "first", opts...)
	if other.SpanContext().TraceID() == first.SpanContext().TraceID() {
		t.Error("two sessions share a trace")
	}
	// Spans outside sessions get random IDs.
	_, a := tp.Tracer("test").Start(context.Background(), "a")
	_, b := tp.Tracer("test").Start(context.Background(), "b")
	if a.SpanContext().TraceID() == b.SpanContext().TraceID() || !a.SpanContext().IsValid() {
		t.Errorf("spans outside sessions: traces %s and %s", a.SpanContext().TraceID(), b.SpanContext().TraceID())
	}
}

func TestSamplerFromEnv(t *testing.T) {
	for _, tc := range []struct {
		sampler, arg string
		ok           bool
	}{
		{"", "", true}, {"always_on", "", true}, {"always_off", "", true}, {"traceidratio", "0.01", true},
		{"parentbased_traceidratio", "", true}, {"parentbased_always_off", "", true},
		{"traceidratio", "2", false}, {"traceidratio", "lots", false}, {"jaeger_remote", "", false},
	} {
		env := map[string]string{"OTEL_TRACES_SAMPLER": tc.sampler, "OTEL_TRACES_SAMPLER_ARG": tc.arg}
		_, err := newSampler(func(k string) string { return env[k] })
		if (err == nil) != tc.ok {
			t.Errorf("OTEL_TRACES_SAMPLER=%q ARG=%q: error %v, want ok %t", tc.sampler, tc.arg, err, tc.ok)
		}
	}
}

// A session's IDs are the SHA-256 of the domain and its ID, whatever its
// length, and deriving them for a gateway's 32-character session ID
// allocates nothing.
func TestSessionIDsHash(t *testing.T) {
	for _, id := range []string{"", "0123456789abcdef0123456789abcdef", strings.Repeat("x", 500)} {
		sum := sha256.Sum256([]byte("fleetacs-cwmp-session\x00" + id))
		tid, sid := sessionIDs(id)
		if !bytes.Equal(tid[:], sum[:16]) || !bytes.Equal(sid[:], sum[16:24]) {
			t.Errorf("session %q: IDs %s %s, want from %x", id, tid, sid, sum)
		}
	}
	id := "0123456789abcdef0123456789abcdef"
	if n := testing.AllocsPerRun(100, func() { sessionIDs(id) }); n != 0 {
		t.Errorf("sessionIDs: %v allocations", n)
	}
}
