package telemetry

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

const (
	specTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	specSpanID  = "00f067aa0ba902b7"
)

// The traceparent examples of the W3C Trace Context spec and the cases
// its processing model names.
func TestParseTraceparent(t *testing.T) {
	ok := func(flags trace.TraceFlags) *trace.SpanContext {
		tid, _ := trace.TraceIDFromHex(specTraceID)
		sid, _ := trace.SpanIDFromHex(specSpanID)
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true})
		return &sc
	}
	tp := func(version, flags string) string {
		return version + "-" + specTraceID + "-" + specSpanID + "-" + flags
	}
	for _, c := range []struct {
		name, in string
		want     *trace.SpanContext // nil: refused
	}{
		{"spec example, sampled", tp("00", "01"), ok(trace.FlagsSampled)},
		{"spec example, not sampled", tp("00", "00"), ok(0)},
		{"spec example 2", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", func() *trace.SpanContext {
			tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
			sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
			sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
			return &sc
		}()},
		{"random flag (level 2)", tp("00", "03"), ok(trace.FlagsSampled | trace.FlagsRandom)},
		{"reserved flags set to zero", tp("00", "09"), ok(trace.FlagsSampled)},
		{"reserved flags only", tp("00", "fc"), ok(0)},
		{"version ff", tp("ff", "01"), nil},
		{"version 00 with more", tp("00", "01") + "-extra", nil},
		{"version 00 one character more", tp("00", "01") + "0", nil},
		{"future version, as version 00", tp("cc", "01"), ok(trace.FlagsSampled)},
		{"future version with more fields", tp("cc", "01") + "-what-the-future-will-be-like", ok(trace.FlagsSampled)},
		{"future version, more without a dash", tp("cc", "01") + "x", nil},
		{"future version shorter than 55", "cc-" + specTraceID + "-" + specSpanID + "-1", nil},
		{"upper-case version", tp("0A", "01"), nil},
		{"upper-case trace-id", "00-" + strings.ToUpper(specTraceID) + "-" + specSpanID + "-01", nil},
		{"upper-case parent-id", "00-" + specTraceID + "-00F067AA0BA902B7-01", nil},
		{"upper-case flags", tp("00", "0A"), nil},
		{"non-hex flags", tp("00", "0g"), nil},
		{"non-hex version", tp("0x", "00"), nil},
		{"all-zero trace-id", "00-" + strings.Repeat("0", 32) + "-" + specSpanID + "-01", nil},
		{"all-zero parent-id", "00-" + specTraceID + "-" + strings.Repeat("0", 16) + "-01", nil},
		{"trace-id one digit short", "00-" + specTraceID[1:] + "-" + specSpanID + "-01", nil},
		{"parent-id one digit long", "00-" + specTraceID + "-" + specSpanID + "0-01", nil},
		{"dashes moved", "00" + specTraceID + "--" + specSpanID + "-01", nil},
		{"spaces", " " + tp("00", "01")[1:], nil},
		{"empty", "", nil},
		{"garbage", "not a traceparent at all, but long enough to be read as one.", nil},
	} {
		got, err := ParseTraceparent(c.in)
		switch {
		case c.want == nil && err == nil:
			t.Errorf("%s: %q parsed as %v, want it refused", c.name, c.in, got)
		case c.want != nil && err != nil:
			t.Errorf("%s: %q: %v", c.name, c.in, err)
		case c.want != nil && !got.Equal(*c.want):
			t.Errorf("%s: %q parsed as %v, want %v", c.name, c.in, got, *c.want)
		}
	}
}

// What is written is version 00, lowercase, reserved flags zero, and
// reads back as what was written.
func TestFormatTraceparent(t *testing.T) {
	for _, flags := range []trace.TraceFlags{0, trace.FlagsSampled, trace.FlagsRandom, 3, 0xff} {
		tid, _ := trace.TraceIDFromHex(specTraceID)
		sid, _ := trace.SpanIDFromHex(specSpanID)
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags})
		got := FormatTraceparent(sc)
		want := "00-" + specTraceID + "-" + specSpanID + "-0" + string("0123"[flags&3])
		if got != want {
			t.Errorf("flags %02x: %q, want %q", byte(flags), got, want)
		}
		back, err := ParseTraceparent(got)
		if err != nil || back.TraceID() != tid || back.SpanID() != sid || back.TraceFlags() != flags&3 {
			t.Errorf("flags %02x: %q read back as %v, %v", byte(flags), got, back, err)
		}
	}
}

// OpenTelemetry's TraceContext propagator and Propagator understand each
// other: what one writes the other reads as the same span context, and
// both write the same headers.
func TestTraceparentInterop(t *testing.T) {
	ts, err := trace.ParseTraceState("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
	if err != nil {
		t.Fatal(err)
	}
	gen := IDGenerator()
	for i := range 200 {
		tid, sid := gen.NewIDs(context.Background())
		cfg := trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(i % 4)}
		if i%3 == 0 {
			cfg.TraceState = ts
		}
		sc := trace.NewSpanContext(cfg)
		ctx := trace.ContextWithSpanContext(context.Background(), sc)

		theirs, ours := propagation.MapCarrier{}, propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(ctx, theirs)
		Propagator{}.Inject(ctx, ours)
		if theirs["traceparent"] != ours["traceparent"] || theirs["tracestate"] != ours["tracestate"] || len(ours) != len(theirs) {
			t.Fatalf("%v: otel wrote %v, Propagator %v", sc, theirs, ours)
		}
		parsed, err := ParseTraceparent(theirs["traceparent"])
		if err != nil {
			t.Fatalf("%q from otel: %v", theirs["traceparent"], err)
		}
		viaOtel := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), ours))
		viaOurs := trace.SpanContextFromContext(Propagator{}.Extract(context.Background(), theirs))
		if !viaOtel.Equal(viaOurs) || !viaOurs.Equal(sc.WithRemote(true)) || !parsed.Equal(sc.WithRemote(true).WithTraceState(trace.TraceState{})) {
			t.Fatalf("%v: otel read %v, Propagator %v, ParseTraceparent %v", sc, viaOtel, viaOurs, parsed)
		}
	}
}

// Baggage passes through Propagator as through OpenTelemetry's.
func TestPropagatorBaggage(t *testing.T) {
	m, err := baggage.NewMember("tenant", "acme")
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(m)
	if err != nil {
		t.Fatal(err)
	}
	carrier := propagation.MapCarrier{}
	Propagator{}.Inject(baggage.ContextWithBaggage(context.Background(), bag), carrier)
	if carrier["baggage"] != "tenant=acme" || carrier["traceparent"] != "" {
		t.Fatalf("wrote %v, want the baggage alone", carrier)
	}
	got := baggage.FromContext(Propagator{}.Extract(context.Background(), carrier))
	if got.Member("tenant").Value() != "acme" {
		t.Fatalf("read baggage %q", got)
	}
	if fields := (Propagator{}).Fields(); strings.Join(fields, ",") != "traceparent,tracestate,baggage" {
		t.Fatalf("Fields %v", fields)
	}
}

// A tracestate is passed on up to 512 characters: beyond, the members
// over 128 characters go first, then members from the end. One that does
// not parse is dropped, and the traceparent stands.
func TestBoundTraceState(t *testing.T) {
	var members []string
	for i := range 30 {
		members = append(members, "k"+string(rune('a'+i%26))+strings.Repeat("x", i/26)+"="+strings.Repeat("v", 20))
	}
	big := "big=" + strings.Repeat("b", 200)
	h := members[0] + "," + big + "," + strings.Join(members[1:], ",")
	got := boundTraceState(h)
	if n := len(got.String()); n > maxTracestate || n == 0 {
		t.Fatalf("bounded to %d characters: %q", n, got)
	}
	if got.Get("big") != "" || got.Get("ka") == "" || got.Get(strings.SplitN(members[len(members)-1], "=", 2)[0]) != "" {
		t.Fatalf("kept %q: want the big member gone first, then the last ones", got)
	}
	short := "a=1,b=2"
	if got := boundTraceState(short); got.String() != short {
		t.Fatalf("%q became %q", short, got)
	}
	for _, bad := range []string{"=nokey", "a=1,a=2", strings.Repeat("a=1,", maxTracestateRead)} {
		if got := boundTraceState(bad); got.Len() != 0 {
			t.Errorf("%q kept as %q", bad, got)
		}
	}
	carrier := propagation.MapCarrier{"traceparent": "00-" + specTraceID + "-" + specSpanID + "-00", "tracestate": "=bad"}
	sc := trace.SpanContextFromContext(Propagator{}.Extract(context.Background(), carrier))
	if !sc.IsValid() || sc.TraceState().Len() != 0 {
		t.Fatalf("invalid tracestate: %v, want the traceparent without it", sc)
	}
}

// The hot paths allocate what they must and no more: parsing nothing,
// formatting the string, an unsampled call's metadata the string and
// gRPC's own, its server side the value copy gRPC makes and the remote
// span in the context.
func TestTraceparentAllocs(t *testing.T) {
	h := "00-" + specTraceID + "-" + specSpanID + "-00"
	sc, err := ParseTraceparent(h)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseTraceparent(h) }); n != 0 {
		t.Errorf("ParseTraceparent: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = FormatTraceparent(sc) }); n != 1 {
		t.Errorf("FormatTraceparent: %v allocations, want 1", n)
	}
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	// The string, and AppendToOutgoingContext's two slices and context.
	if n := testing.AllocsPerRun(100, func() { _ = outgoingTraceContext(ctx, sc, Propagator{}) }); n > 5 {
		t.Errorf("outgoingTraceContext: %v allocations, want at most 5", n)
	}
	in := metadata.NewIncomingContext(context.Background(), metadata.Pairs("traceparent", h, ":authority", "x", "content-type", "application/grpc"))
	// gRPC's copy of the value; the span and the context that holds it.
	// gRPC's copy of the value; the call's serverCall (its span) and the
	// context that holds it.
	if n := testing.AllocsPerRun(100, func() { _, _ = incomingUnsampled(in, Propagator{}, "/m") }); n > 3 {
		t.Errorf("incomingUnsampled: %v allocations, want at most 3", n)
	}
	remote, ok := incomingUnsampled(in, Propagator{}, "/m")
	if got := trace.SpanContextFromContext(remote); !ok || !got.Equal(sc) {
		t.Fatalf("incomingUnsampled: %v %v, want %v", got, ok, sc)
	}
	// The tap reads the headers gRPC hands it, without a copy: the
	// serverCall and its context.
	md, _ := metadata.FromIncomingContext(in)
	tap := (&Providers{Propagator: Propagator{}, Tracing: true, skipUnsampled: true}).ServerTap()
	if n := testing.AllocsPerRun(100, func() { _ = tap(context.Background(), "/m", md) }); n > 2 {
		t.Errorf("ServerTap: %v allocations, want at most 2", n)
	}
}

// Under an unsampled parent the wrapped tracer starts nothing and hands
// back the parent; under a sampled one, no parent, or asked for a new
// root, it starts a span as the SDK does.
func TestSkipUnsampledSpans(t *testing.T) {
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	t.Cleanup(func() { _ = sdk.Shutdown(context.Background()) })
	tracer := SkipUnsampledSpans(sdk, nil).Tracer("test")
	tid, _ := trace.TraceIDFromHex(specTraceID)
	sid, _ := trace.SpanIDFromHex(specSpanID)
	unsampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), unsampled)

	got, span := tracer.Start(ctx, "child")
	if got != ctx || !span.SpanContext().Equal(unsampled) || span.IsRecording() {
		t.Fatalf("unsampled parent: span %v recording %v, want the parent's", span.SpanContext(), span.IsRecording())
	}
	span.End()
	if n := testing.AllocsPerRun(100, func() { _, s := tracer.Start(ctx, "child"); s.End() }); n != 0 {
		t.Errorf("span under an unsampled parent: %v allocations", n)
	}
	// The SDK, as the wrapper would have it: same trace, a new span ID.
	_, span = sdk.Tracer("test").Start(ctx, "child")
	if span.SpanContext().TraceID() != tid || span.SpanContext().SpanID() == sid || span.IsRecording() {
		t.Fatalf("SDK under an unsampled parent: %v", span.SpanContext())
	}

	_, root := tracer.Start(ctx, "root", trace.WithNewRoot())
	if root.SpanContext().TraceID() == tid || !root.IsRecording() {
		t.Fatalf("new root: %v recording %v, want a sampled span of a new trace", root.SpanContext(), root.IsRecording())
	}
	root.End()
	sampled := trace.ContextWithRemoteSpanContext(context.Background(), unsampled.WithTraceFlags(trace.FlagsSampled))
	_, child := tracer.Start(sampled, "child")
	if child.SpanContext().TraceID() != tid || child.SpanContext().SpanID() == sid || !child.IsRecording() {
		t.Fatalf("sampled parent: %v recording %v, want a recorded child", child.SpanContext(), child.IsRecording())
	}
	child.End()
	_, orphan := tracer.Start(context.Background(), "orphan")
	if !orphan.SpanContext().IsValid() || !orphan.IsRecording() {
		t.Fatalf("no parent: %v", orphan.SpanContext())
	}
	orphan.End()
}

// FuzzParseTraceparent checks ParseTraceparent on any input against
// OpenTelemetry's TraceContext propagator: whatever it accepts is
// accepted as the same span context, and ParseTraceparent accepts
// nothing more but a version 00 header with reserved flags (zeroed
// here, refused there). What is accepted is written back as version 00
// and reads back the same.
func FuzzParseTraceparent(f *testing.F) {
	for _, s := range []string{
		"00-" + specTraceID + "-" + specSpanID + "-01",
		"00-" + specTraceID + "-" + specSpanID + "-00",
		"00-" + specTraceID + "-" + specSpanID + "-09",
		"cc-" + specTraceID + "-" + specSpanID + "-01-what-the-future-will-be-like",
		"ff-" + specTraceID + "-" + specSpanID + "-01",
		"00-" + strings.Repeat("0", 32) + "-" + specSpanID + "-01",
		"00-" + specTraceID + "-" + strings.ToUpper(specSpanID) + "-01",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		got, err := ParseTraceparent(h)
		theirs := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": h}))
		switch {
		case theirs.IsValid() && err != nil:
			t.Fatalf("%q: otel read %v, ParseTraceparent: %v", h, theirs, err)
		case theirs.IsValid() && !got.Equal(theirs):
			t.Fatalf("%q: otel read %v, ParseTraceparent %v", h, theirs, got)
		case !theirs.IsValid() && err == nil:
			var flags [1]byte
			if !strings.HasPrefix(h, "00-") || len(h) != traceparentLen || !decodeHex(flags[:], h[53:]) || flags[0]&^3 == 0 {
				t.Fatalf("%q: otel refused it, ParseTraceparent read %v", h, got)
			}
		}
		if err != nil {
			return
		}
		if !got.IsValid() || !got.IsRemote() || got.TraceFlags()&^3 != 0 {
			t.Fatalf("%q: read as %v", h, got)
		}
		out := FormatTraceparent(got)
		back, err := ParseTraceparent(out)
		if err != nil || !back.Equal(got) || out != strings.ToLower(out) || len(out) != traceparentLen {
			t.Fatalf("%q: written as %q, read back as %v, %v", h, out, back, err)
		}
	})
}

// With the process's sampler, the spans of a session's requests that the
// sampler drops are decided before the SDK: what Start returns is what
// the SDK would have (the same trace, the first request's derived span
// ID, the same flags, not recording), and the spans it keeps are the
// SDK's own.
func TestSkipUnsampledSpansSessions(t *testing.T) {
	env := map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}
	sampler, err := newSampler(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithIDGenerator(IDGenerator()))
	t.Cleanup(func() { _ = sdk.Shutdown(context.Background()) })
	plain, wrapped := sdk.Tracer("t"), SkipUnsampledSpans(sdk, sampler).Tracer("t")
	var kept, dropped int
	for i := range 200 {
		id := FormatTraceparent(trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{byte(i), byte(i >> 8), 1}, SpanID: trace.SpanID{1}}))
		for _, first := range []bool{true, false} {
			ctx, opts := SessionSpanContext(context.Background(), id, first)
			opts = append(opts, trace.WithSpanKind(trace.SpanKindServer))
			_, want := plain.Start(ctx, "cwmp.request", opts...)
			gctx, got := wrapped.Start(ctx, "cwmp.request", opts...)
			w, g := want.SpanContext(), got.SpanContext()
			if w.TraceID() != g.TraceID() || w.TraceFlags() != g.TraceFlags() || want.IsRecording() != got.IsRecording() ||
				(first && w.SpanID() != g.SpanID()) || !g.SpanID().IsValid() || g.IsRemote() || !trace.SpanContextFromContext(gctx).Equal(g) {
				t.Fatalf("session %s, first %v: SDK %v (recording %v), wrapped %v (recording %v)", id, first, w, want.IsRecording(), g, got.IsRecording())
			}
			if got.IsRecording() {
				kept++
			} else {
				dropped++
				if n := testing.AllocsPerRun(10, func() { wrapped.Start(ctx, "cwmp.request", opts...) }); n > 3 {
					t.Errorf("dropped request span: %v allocations", n)
				}
			}
			recording := want.IsRecording()
			want.End()
			got.End()
			// StartSessionSpan, with the wrapped tracer (which decides
			// before building options) and with the SDK's: the same.
			for _, tr := range []trace.Tracer{wrapped, plain} {
				sctx, s := StartSessionSpan(context.Background(), tr, "cwmp.request", id, first, time.Now())
				g := s.SpanContext()
				if w.TraceID() != g.TraceID() || w.TraceFlags() != g.TraceFlags() || recording != s.IsRecording() ||
					(first && w.SpanID() != g.SpanID()) || !g.SpanID().IsValid() || g.IsRemote() || !trace.SpanContextFromContext(sctx).Equal(g) {
					t.Fatalf("StartSessionSpan, session %s, first %v: SDK %v (recording %v), got %v (recording %v)", id, first, w, recording, g, s.IsRecording())
				}
				s.End()
			}
			if !recording {
				if n := testing.AllocsPerRun(10, func() {
					StartSessionSpan(context.Background(), wrapped, "cwmp.request", id, first, time.Time{})
				}); n > 2 {
					t.Errorf("StartSessionSpan, dropped request span: %v allocations, want at most 2", n)
				}
			}
		}
	}
	if kept == 0 || dropped == 0 {
		t.Fatalf("%d kept, %d dropped: want both", kept, dropped)
	}
	// A link to a request span started earlier (the gateway's, when it
	// logged before it knew the session) goes with a kept span.
	link := trace.Link{SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{9}, SpanID: trace.SpanID{9}})}
	always := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithIDGenerator(IDGenerator()))
	t.Cleanup(func() { _ = always.Shutdown(context.Background()) })
	_, s := StartSessionSpan(context.Background(), SkipUnsampledSpans(always, sdktrace.AlwaysSample()).Tracer("t"), "cwmp.request", "S", true, time.Now(), link)
	if ro, ok := s.(sdktrace.ReadOnlySpan); !ok || len(ro.Links()) != 1 || !ro.Links()[0].SpanContext.Equal(link.SpanContext) || ro.SpanKind() != trace.SpanKindServer {
		t.Errorf("kept span: %v, want a server span with the link", s)
	}
}

// BenchmarkUnsampledCallContext measures what an unsampled internal gRPC
// call costs for its trace context on both sides, without the transport:
// the client adding it to the outgoing metadata (SplitConn), the server
// reading it from metadata like that of a real call (SkipUnsampled),
// with OpenTelemetry's composite propagator through carriers and with
// Propagator.
func BenchmarkUnsampledCallContext(b *testing.B) {
	tid, _ := trace.TraceIDFromHex(specTraceID)
	sid, _ := trace.SpanIDFromHex(specSpanID)
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	md := metadata.Pairs(":authority", "127.0.0.1:9000", "content-type", "application/grpc", "user-agent", "grpc-go/1.85.0",
		"fleetacs-internal-token", "x", "traceparent", FormatTraceparent(sc))
	in := metadata.NewIncomingContext(context.Background(), md)
	for _, c := range []struct {
		name string
		prop propagation.TextMapPropagator
	}{
		{"otel", propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})},
		{"Propagator", Propagator{}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = outgoingTraceContext(ctx, sc, c.prop)
				if _, ok := incomingUnsampled(in, c.prop, "/m"); !ok {
					b.Fatal("not read as unsampled")
				}
			}
		})
	}
	// The server side as the processes' internal servers read it: the
	// tap, from the headers gRPC hands it.
	tap := (&Providers{Propagator: Propagator{}, Tracing: true, skipUnsampled: true}).ServerTap()
	b.Run("tap", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := skippedCall(tap(context.Background(), "/m", md)); !ok {
				b.Fatal("not read as unsampled")
			}
		}
	})
}

// A line logged inside a span SkipUnsampledSpans did not start, under an
// unsampled parent read from a traceparent (the session worker's
// cwmp.exchange of an unsampled session), still carries the trace ID, and
// the parent's span ID.
func TestSkippedSpanLogsCarryTrace(t *testing.T) {
	var buf strings.Builder
	log, err := NewLogger(&buf, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}
	sampler, err := newSampler(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler))
	t.Cleanup(func() { _ = sdk.Shutdown(context.Background()) })
	ctx := Propagator{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": "00-" + specTraceID + "-" + specSpanID + "-00"})
	ctx, span := SkipUnsampledSpans(sdk, sampler).Tracer("worker").Start(ctx, "cwmp.exchange")
	log.InfoContext(ctx, "exchange")
	span.End()
	var rec map[string]any
	if err := json.Unmarshal([]byte(buf.String()), &rec); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	if rec[KeyTraceID] != specTraceID || rec[KeySpanID] != specSpanID {
		t.Fatalf("record %v, want trace %s span %s", rec, specTraceID, specSpanID)
	}
}
