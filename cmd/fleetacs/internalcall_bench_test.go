package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

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
// contexts, which tracing off ignores.
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
			dial, unsampled := a.internalDial()
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
			cpu0 := processCPU(b)
			b.ResetTimer()
			for i := range b.N {
				if _, err := hc.Check(v.ctxs[i%len(v.ctxs)], req); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
