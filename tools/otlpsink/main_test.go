package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	collectortracev1 "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

func startSink(t *testing.T, maxBytes int64) *server {
	t.Helper()
	s, err := start(config{grpcAddr: "127.0.0.1:0", httpAddr: "127.0.0.1:0", maxBytes: maxBytes, readTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

// emit makes n spans with the SDK and exports them through exp.
func emit(t *testing.T, exp sdktrace.SpanExporter, n int) {
	t.Helper()
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
	tr := tp.Tracer("otlpsink-test")
	for range n {
		_, sp := tr.Start(context.Background(), "op")
		sp.End()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// The OpenTelemetry SDK's own exporters, as fleetacs uses them, over
// both protocols (and gzip): every span counted.
func TestCountsSDKExports(t *testing.T) {
	s := startSink(t, 8<<20)
	ctx := context.Background()
	ge, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.grpcAddr.String()), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	emit(t, ge, 700)
	he, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(s.httpAddr.String()), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	emit(t, he, 300)
	hz, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(s.httpAddr.String()), otlptracehttp.WithInsecure(),
		otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
	if err != nil {
		t.Fatal(err)
	}
	emit(t, hz, 25)
	if got := s.sink.spans.Load(); got != 1025 {
		t.Fatalf("counted %d spans, want 1025", got)
	}
	resp, err := http.Get("http://" + s.httpAddr.String() + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.HasPrefix(string(body), "spans 1025 requests ") || !strings.Contains(string(body), "refused 0") {
		t.Fatalf("stats %q", body)
	}
}

func exportRequest(spans int) []byte {
	ss := &tracev1.ScopeSpans{}
	for range spans {
		ss.Spans = append(ss.Spans, &tracev1.Span{Name: "op", TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{2}, 8)})
	}
	b, _ := proto.Marshal(&collectortracev1.ExportTraceServiceRequest{
		ResourceSpans: []*tracev1.ResourceSpans{{ScopeSpans: []*tracev1.ScopeSpans{ss}}},
	})
	return b
}

// Bad and oversized requests get a clear status and are not counted.
func TestRefusesBadRequests(t *testing.T) {
	s := startSink(t, 4096)
	url := "http://" + s.httpAddr.String() + "/v1/traces"
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(b)
		_ = zw.Close()
		return buf.Bytes()
	}
	for _, c := range []struct {
		name, method, ct, enc string
		body                  []byte
		want                  int
		wantMsg               string
	}{
		{"fits", "POST", "application/x-protobuf", "", exportRequest(3), 200, ""},
		{"json", "POST", "application/json", "", []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"a"},{"name":"b"}]}]}]}`), 200, ""},
		{"too large", "POST", "application/x-protobuf", "", exportRequest(400), 413, "over 4096 bytes"},
		// Small on the wire, over the limit once inflated.
		{"gzip bomb", "POST", "application/x-protobuf", "gzip", gz(bytes.Repeat([]byte{0}, 1<<20)), 413, "over 4096 bytes"},
		{"bad gzip", "POST", "application/x-protobuf", "gzip", []byte("not gzip"), 400, "gzip"},
		{"not protobuf", "POST", "application/x-protobuf", "", []byte{0xff, 0xff, 0xff}, 400, "not an ExportTraceServiceRequest"},
		{"content type", "POST", "text/plain", "", []byte("x"), 415, "content type"},
		{"encoding", "POST", "application/x-protobuf", "br", []byte("x"), 415, "content encoding"},
		{"method", "GET", "", "", nil, 405, "POST only"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, url, bytes.NewReader(c.body))
			if c.ct != "" {
				req.Header.Set("Content-Type", c.ct)
			}
			if c.enc != "" {
				req.Header.Set("Content-Encoding", c.enc)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.want || !strings.Contains(string(body), c.wantMsg) {
				t.Fatalf("HTTP %d %q, want %d with %q", resp.StatusCode, body, c.want, c.wantMsg)
			}
		})
	}
	if got := s.sink.spans.Load(); got != 5 {
		t.Fatalf("counted %d spans, want 5 (3 + 2 from the accepted requests)", got)
	}
	if got := s.sink.refused.Load(); got != 6 {
		t.Fatalf("refused %d, want 6 (the POSTs refused)", got)
	}
}

// Over gRPC, a message above -max-bytes is refused by the server.
func TestGRPCMessageLimit(t *testing.T) {
	s := startSink(t, 4096)
	exp, err := otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(s.grpcAddr.String()), otlptracegrpc.WithInsecure(),
		otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	_, sp := tp.Tracer("t").Start(context.Background(), strings.Repeat("n", 8000))
	sp.End()
	_ = tp.Shutdown(context.Background())
	if got := s.sink.spans.Load(); got != 0 {
		t.Fatalf("counted %d spans of an oversized export", got)
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-grpc-addr=", "-http-addr="},
		{"-max-bytes=0"},
		{"-read-timeout=-1s"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	c, err := parseFlags(nil, io.Discard)
	if err != nil || c.grpcAddr != "127.0.0.1:4317" || c.httpAddr != "127.0.0.1:4318" {
		t.Fatalf("defaults %+v, %v", c, err)
	}
}
