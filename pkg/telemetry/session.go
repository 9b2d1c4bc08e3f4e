package telemetry

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// One trace per CWMP session (docs/operations.md, "Traces"): a session's
// trace ID and the span ID of its first request's span are derived from
// the session ID, so that every request of the session, whichever gateway
// replica takes it, joins the trace without anything stored. The first
// request's span is the trace's root (idGenerator gives it the derived
// IDs); each later request's span is its child.

// sessionDomain separates the hash of a session ID from any other.
const sessionDomain = "fleetacs-cwmp-session\x00"

// sessionIDs derives the trace and root span IDs of a session. The hash
// does not reveal the session ID, which is the CPE's session cookie.
func sessionIDs(sessionID string) (trace.TraceID, trace.SpanID) {
	// Hashed from a buffer on the stack for the usual session ID (the
	// gateway's are 32 characters): no allocation per request.
	var buf [96]byte
	sum := sha256.Sum256(append(append(buf[:0], sessionDomain...), sessionID...))
	var tid trace.TraceID
	var sid trace.SpanID
	copy(tid[:], sum[:16])
	copy(sid[:], sum[16:24])
	if !tid.IsValid() {
		tid[0] = 1
	}
	if !sid.IsValid() {
		sid[0] = 1
	}
	return tid, sid
}

type rootIDsKey struct{}

type rootIDs struct {
	trace trace.TraceID
	span  trace.SpanID
}

// SessionSpanContext returns ctx ready for the span of a request of the
// CWMP session sessionID, and the options to start that span with: the
// first request's span (first) becomes the root of the session's trace,
// a later request's span its child.
func SessionSpanContext(ctx context.Context, sessionID string, first bool) (context.Context, []trace.SpanStartOption) {
	tid, sid := sessionIDs(sessionID)
	if first {
		return context.WithValue(ctx, rootIDsKey{}, rootIDs{tid, sid}), []trace.SpanStartOption{trace.WithNewRoot()}
	}
	// Marked sampled: the sampler (newSampler) decides again on the trace
	// ID and so repeats the first request's decision.
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
	return trace.ContextWithRemoteSpanContext(ctx, parent), nil
}

// idGenerator gives a root span the IDs SessionSpanContext put in its
// context, and random IDs otherwise.
type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if ids, ok := ctx.Value(rootIDsKey{}).(rootIDs); ok {
		return ids.trace, ids.span
	}
	var tid trace.TraceID
	for !tid.IsValid() {
		binary.NativeEndian.PutUint64(tid[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(tid[8:], rand.Uint64())
	}
	return tid, newSpanID()
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }

func newSpanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}

// newSampler is the sampler OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
// name (the standard values; default parentbased_always_on). A parent-based
// sampler decides a span with a sampled remote parent with its root sampler
// again rather than always sampling it: the root samplers decide on the
// trace ID alone, so the decision is the one the trace's root got, and a
// session's later requests (SessionSpanContext) follow its first.
func newSampler(getenv func(string) string) (sdktrace.Sampler, error) {
	ratio := func() (float64, error) {
		arg := getenv("OTEL_TRACES_SAMPLER_ARG")
		if arg == "" {
			return 1, nil
		}
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG %q: want a ratio between 0 and 1", arg)
		}
		return f, nil
	}
	parentBased := func(root sdktrace.Sampler) sdktrace.Sampler {
		return sdktrace.ParentBased(root, sdktrace.WithRemoteParentSampled(root))
	}
	switch name := getenv("OTEL_TRACES_SAMPLER"); name {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil
		}
		return parentBased(sdktrace.TraceIDRatioBased(r)), nil
	case "", "parentbased_always_on":
		return parentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return parentBased(sdktrace.NeverSample()), nil
	default:
		return nil, fmt.Errorf("OTEL_TRACES_SAMPLER %q: want always_on, always_off, traceidratio or parentbased_ one of those", name)
	}
}

// IDGenerator is the ID generator of the tracer provider Setup builds,
// for tests that build their own provider and want sessions' traces.
func IDGenerator() sdktrace.IDGenerator { return idGenerator{} }

// StartSessionSpan starts with t the span, of kind server, named name, of
// a request of the CWMP session sessionID, as SessionSpanContext places
// it (the trace's root for the session's first request, a child of the
// root for a later one), beginning at start and linked to links. When t
// is a tracer of SkipUnsampledSpans with its sampler and ctx holds no
// span, the sampler decides first, on the session's trace ID as it would
// for the span (the samplers newSampler builds decide a span under a
// sampled remote parent as one without a parent); if it drops the span,
// ctx gets the SDK's non-recording span (the same IDs and flags) without
// the span options, the root's IDs in the context or the parent built
// for the SDK: an unsampled session's request costs its span context and
// the context holding it (BENCHMARKS.md, issue 11).
func StartSessionSpan(ctx context.Context, t trace.Tracer, name, sessionID string, first bool, start time.Time, links ...trace.Link) (context.Context, trace.Span) {
	if st, ok := t.(skipTracer); ok && st.sampler != nil && !trace.SpanContextFromContext(ctx).IsValid() {
		tid, sid := sessionIDs(sessionID)
		res := st.sampler.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: tid, Name: name, Kind: trace.SpanKindServer, Links: links})
		if res.Decision == sdktrace.Drop {
			if !first {
				sid = newSpanID()
			}
			ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceState: res.Tracestate}))
			return ctx, trace.SpanFromContext(ctx)
		}
	}
	ctx, opts := SessionSpanContext(ctx, sessionID, first)
	opts = append(opts, sessionKind, trace.WithTimestamp(start))
	if len(links) > 0 {
		opts = append(opts, trace.WithLinks(links...))
	}
	return t.Start(ctx, name, opts...)
}

// sessionKind is the kind of a session's request spans, built once.
var sessionKind = trace.WithSpanKind(trace.SpanKindServer)
