package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// BenchmarkInternalCall measures one internal gRPC call over loopback
// (client and server in this process, the internal token checked) as the
// processes wire it (app.tracedConn, app.grpcServerStats,
// app.internalServerOptions), with tracing
// off and with tracing on at a 1% ratio under an unsampled span: the 99%
// case, which is what tracing costs every call (issue 11). ns/op is the
// latency of one call at a time; cpu-ns/op the CPU time of the process
// (client and server) per call.
//
// The "unsampled" variant makes every call under the same span, so its
// traceparent is indexed in the connection's HPACK table once and sent as
// an index afterwards; "unsampled-per-call" gives each call a span of its
// own, as the processes see it (each CWMP request has its gateway span,
// so a connection rarely carries one traceparent twice): the header is
// then a new literal each call, Huffman-coded, added to both ends'
// dynamic tables and evicting older entries. "off" gets the same
// contexts, which tracing off ignores. hdr-B/op is the HPACK bytes of a
// call's request headers; indexed/op the headers sent as an index,
// lit-tp/op as a literal for the traceparent, lit-other/op as a literal
// for any other (the headers every call repeats, sent again once a new
// value has evicted them from the table: headerCount). The /deadline
// variants give each call a deadline, so a grpc-timeout header too.
func BenchmarkInternalCall(b *testing.B) {
	_, endpoint := startOTLPReceiver(b)
	tokenFile := filepath.Join(b.TempDir(), "internal.token")
	if err := os.WriteFile(tokenFile, []byte("0123456789abcdef0123456789abcdef-bench\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	unsampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}}))
	// perCall: contexts under distinct unsampled spans (distinct trace IDs
	// too), built before the measurement and used in turn; 4,096 of them,
	// far more than a 4 KiB HPACK table holds.
	perCall := make([]context.Context, 4096)
	for i := range perCall {
		perCall[i] = trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{1, 2, byte(i >> 8), byte(i)}, SpanID: trace.SpanID{4, 5, byte(i >> 8), byte(i)}}))
	}
	// withDeadline: the same with a deadline each, as the processes'
	// calls have (the gateway's exchange timeout, passed on): gRPC then
	// sends grpc-timeout, in microseconds below 100 s: a new value on every
	// call in both variants (20 s, -gateway.exchange-timeout's default).
	withDeadline := make([]context.Context, len(perCall))
	for i, ctx := range perCall {
		var cancel context.CancelFunc
		withDeadline[i], cancel = context.WithTimeout(ctx, 20*time.Second)
		b.Cleanup(cancel)
	}
	on := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true",
		"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}
	off := map[string]string{"OTEL_TRACES_EXPORTER": "none"}
	for _, v := range []struct {
		name string
		env  map[string]string
		ctxs []context.Context
	}{
		{"tracing=off", off, perCall},
		{"tracing=1%/unsampled", on, []context.Context{unsampled}},
		{"tracing=1%/unsampled-per-call", on, perCall},
		{"tracing=off/deadline", off, withDeadline},
		{"tracing=1%/unsampled-per-call/deadline", on, withDeadline},
	} {
		b.Run(v.name, func(b *testing.B) {
			p, err := telemetry.Setup(context.Background(), "bench", func(k string) string { return v.env[k] })
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
			in, err := apiauth.NewInternal(apiauth.InternalConfig{TokenFile: tokenFile}, "127.0.0.1:0", nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := in.Load(); err != nil {
				b.Fatal(err)
			}
			a := &app{telemetry: p, internal: in}
			sh, err := a.grpcServerStats()
			if err != nil {
				b.Fatal(err)
			}
			opts := a.internalServerOptions()
			for _, h := range sh {
				opts = append(opts, grpc.StatsHandler(h))
			}
			srv := grpc.NewServer(opts...)
			healthpb.RegisterHealthServer(srv, health.NewServer())
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = srv.Serve(ln) }()
			b.Cleanup(srv.Stop)
			counts := &headerCount{}
			dial, unsampled := a.internalDial(grpc.WithContextDialer(counts.dialer()))
			cc, closer, err := a.tracedConn(dial, unsampled, dialTo(ln.Addr().String()))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = closer() })
			hc := healthpb.NewHealthClient(cc)
			req := &healthpb.HealthCheckRequest{}
			if _, err := hc.Check(v.ctxs[0], req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			blocks0, bytes0, indexed0, lit0 := counts.snapshot()
			cpu0 := processCPU(b)
			b.ResetTimer()
			for i := range b.N {
				if _, err := hc.Check(v.ctxs[i%len(v.ctxs)], req); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
			reportHeaders(b, counts, blocks0, bytes0, indexed0, lit0)
		})
	}
}

// reportHeaders reports what hc counted since the counts given, per
// request header block (one per call).
func reportHeaders(b *testing.B, hc *headerCount, blocks0, bytes0, indexed0 int, lit0 map[string]int) {
	blocks, bytes, indexed, lit := hc.snapshot()
	n := blocks - blocks0
	if n < b.N {
		b.Fatalf("%d request header blocks read for %d calls", n, b.N)
	}
	var tp, other int
	for k, v := range lit {
		if k == "traceparent" {
			tp += v - lit0[k]
		} else {
			other += v - lit0[k]
		}
	}
	b.ReportMetric(float64(bytes-bytes0)/float64(n), "hdr-B/op")
	b.ReportMetric(float64(indexed-indexed0)/float64(n), "indexed/op")
	b.ReportMetric(float64(tp)/float64(n), "lit-tp/op")
	b.ReportMetric(float64(other)/float64(n), "lit-other/op")
}
