package telemetry

import (
	"context"
	"errors"
	"strings"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The W3C Trace Context headers (https://www.w3.org/TR/trace-context/),
// written and read by hand: every internal gRPC call and NATS message of
// a session carries them, sampled or not, and the OpenTelemetry
// propagator built each header from several strings and read it through
// a carrier that copied values, which was most of what tracing at a 1%
// sample rate still cost (BENCHMARKS.md, issue 11).
const (
	headerTraceparent = "traceparent"
	headerTracestate  = "tracestate"
	headerBaggage     = "baggage"

	// traceparentLen is the length of a version 00 traceparent:
	// "00-" 32 hex "-" 16 hex "-" 2 hex.
	traceparentLen = 55
	// maxTracestate is the longest tracestate passed on: the spec asks
	// vendors to propagate at least 512 characters and says what to drop
	// beyond them (boundTraceState).
	maxTracestate = 512
	// maxTracestateMember: members longer than this go first when a
	// tracestate is too long.
	maxTracestateMember = 128
	// maxTracestateRead bounds the header read at all: 32 members (the
	// spec's limit) of the longest key and value.
	maxTracestateRead = 32 * (256 + 1 + 256 + 1)
)

// Why a traceparent was refused: the caller starts a new trace, as the
// spec says.
var (
	errTraceparentFormat  = errors.New("traceparent: not version-traceid-parentid-flags of lowercase hex")
	errTraceparentVersion = errors.New("traceparent: version ff is invalid")
	errTraceparentZero    = errors.New("traceparent: all-zero trace-id or parent-id")
)

// hexVal maps a lowercase hexadecimal digit to its value and any other
// byte (upper-case A-F included: the spec allows lowercase only) to 0xff.
var hexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c - 'a' + 10)
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// decodeHex decodes the len(dst)*2 hex digits of s into dst and reports
// whether they all were lowercase hex digits.
func decodeHex(dst []byte, s string) bool {
	var bad byte
	for i := range dst {
		hi, lo := hexVal[s[2*i]], hexVal[s[2*i+1]]
		dst[i] = hi<<4 | lo
		bad |= hi | lo
	}
	return bad&0xf0 == 0
}

// ParseTraceparent reads a traceparent header as the W3C Trace Context
// spec says a receiver does: the version is two lowercase hex digits
// other than ff; version 00 is exactly 55 characters; a higher version
// is read as far as version 00 goes, its 55 characters being followed by
// nothing or by "-" (what comes after is not interpreted); trace-id and
// parent-id are lowercase hex and not all zeros. Of the flags, sampled
// and random are kept and the others, reserved, set to zero (the spec has
// vendors zero them; OpenTelemetry's propagator instead refuses a version
// 00 header with a reserved bit set). The result is a remote span context
// without a tracestate. It allocates nothing.
func ParseTraceparent(h string) (trace.SpanContext, error) {
	if len(h) < traceparentLen || h[2] != '-' || h[35] != '-' || h[52] != '-' {
		return trace.SpanContext{}, errTraceparentFormat
	}
	var ver [1]byte
	if !decodeHex(ver[:], h[:2]) {
		return trace.SpanContext{}, errTraceparentFormat
	}
	switch {
	case ver[0] == 0xff:
		return trace.SpanContext{}, errTraceparentVersion
	case ver[0] == 0 && len(h) != traceparentLen:
		return trace.SpanContext{}, errTraceparentFormat
	case len(h) > traceparentLen && h[traceparentLen] != '-':
		return trace.SpanContext{}, errTraceparentFormat
	}
	cfg := trace.SpanContextConfig{Remote: true}
	var flags [1]byte
	if !decodeHex(cfg.TraceID[:], h[3:35]) || !decodeHex(cfg.SpanID[:], h[36:52]) || !decodeHex(flags[:], h[53:55]) {
		return trace.SpanContext{}, errTraceparentFormat
	}
	if !cfg.TraceID.IsValid() || !cfg.SpanID.IsValid() {
		return trace.SpanContext{}, errTraceparentZero
	}
	cfg.TraceFlags = trace.TraceFlags(flags[0]) & (trace.FlagsSampled | trace.FlagsRandom)
	return trace.NewSpanContext(cfg), nil
}

// AppendTraceparent appends sc's traceparent, version 00, to dst: the
// sampled and random flags, the reserved ones zero. sc must be valid.
func AppendTraceparent(dst []byte, sc trace.SpanContext) []byte {
	tid, sid := sc.TraceID(), sc.SpanID()
	flags := byte(sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom))
	dst = append(dst, '0', '0', '-')
	for _, b := range tid {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	dst = append(dst, '-')
	for _, b := range sid {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return append(dst, '-', hexDigits[flags>>4], hexDigits[flags&0xf])
}

// FormatTraceparent returns sc's traceparent (AppendTraceparent): one
// allocation, the string.
func FormatTraceparent(sc trace.SpanContext) string {
	var buf [traceparentLen]byte
	return string(AppendTraceparent(buf[:0], sc))
}

// boundTraceState parses a received tracestate header and keeps at most
// maxTracestate characters of it, dropping first the members longer than
// maxTracestateMember and then members from the end, as the spec says. A
// header that does not parse, or longer than any valid one, is dropped:
// the traceparent stands without it.
func boundTraceState(h string) trace.TraceState {
	if h == "" || len(h) > maxTracestateRead {
		return trace.TraceState{}
	}
	ts, err := trace.ParseTraceState(h)
	if err != nil {
		return trace.TraceState{}
	}
	if len(ts.String()) <= maxTracestate {
		return ts
	}
	type member struct{ k, v string }
	var members []member
	ts.Walk(func(k, v string) bool {
		if len(k)+1+len(v) <= maxTracestateMember {
			members = append(members, member{k, v})
		}
		return true
	})
	var b strings.Builder
	for _, m := range members {
		n := len(m.k) + 1 + len(m.v)
		if b.Len() > 0 {
			n++
		}
		if b.Len()+n > maxTracestate {
			break
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m.k)
		b.WriteByte('=')
		b.WriteString(m.v)
	}
	out, err := trace.ParseTraceState(b.String())
	if err != nil {
		return trace.TraceState{}
	}
	return out
}

// Propagator is the propagation.TextMapPropagator of every FleetACS
// process (Providers.Propagator): the W3C traceparent and tracestate,
// through ParseTraceparent and AppendTraceparent, and the W3C baggage
// header through OpenTelemetry's propagator when there is baggage
// (FleetACS sets none; a caller's passes through). The gRPC paths of
// unsampled calls (SplitConn, SkipUnsampled) and natsbus use it without
// a carrier's copies.
type Propagator struct{}

var _ propagation.TextMapPropagator = Propagator{}

// Inject writes ctx's span context (when valid) and baggage (when any).
// Under the remote span of a call that was skipped (SkipUnsampled,
// Providers.ServerTap), the traceparent is the header that call came
// with, not formatted again.
func (Propagator) Inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	span := trace.SpanFromContext(ctx)
	if sc := span.SpanContext(); sc.IsValid() {
		tp := ""
		if c, ok := span.(*serverCall); ok {
			tp = c.traceparent
		}
		if tp == "" {
			tp = FormatTraceparent(sc)
		}
		carrier.Set(headerTraceparent, tp)
		if sc.TraceState().Len() > 0 {
			carrier.Set(headerTracestate, sc.TraceState().String())
		}
	}
	if baggage.FromContext(ctx).Len() > 0 {
		propagation.Baggage{}.Inject(ctx, carrier)
	}
}

// Extract returns ctx with the remote span context of the carrier's
// traceparent and tracestate, if it has a valid traceparent, and its
// baggage, if any.
func (Propagator) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	if sc, ok := extractSpanContext(carrier.Get(headerTraceparent), carrier.Get); ok {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	return propagation.Baggage{}.Extract(ctx, carrier)
}

// Fields lists the headers Propagator writes.
func (Propagator) Fields() []string {
	return []string{headerTraceparent, headerTracestate, headerBaggage}
}

// extractSpanContext parses traceparent and, when it is valid, the
// tracestate get returns.
func extractSpanContext(traceparent string, get func(string) string) (trace.SpanContext, bool) {
	if traceparent == "" {
		return trace.SpanContext{}, false
	}
	sc, err := ParseTraceparent(traceparent)
	if err != nil {
		return trace.SpanContext{}, false
	}
	if ts := get(headerTracestate); ts != "" {
		sc = sc.WithTraceState(boundTraceState(ts))
	}
	return sc, true
}
