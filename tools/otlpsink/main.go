// Command otlpsink is an OpenTelemetry trace receiver that keeps nothing:
// it accepts OTLP trace exports over gRPC (the collector's TraceService)
// and over HTTP (POST /v1/traces, protobuf or JSON, gzip or not), counts
// the spans, and prints the counts when it ends (SIGINT or SIGTERM). GET
// /stats on the HTTP listener prints them too. It stands in for an
// OpenTelemetry Collector where there is none, for benchmarks of the
// tracing overhead (scripts/bench-tracing.sh).
//
//	otlpsink -grpc-addr 127.0.0.1:4317 -http-addr 127.0.0.1:4318
//
// Every read has a limit: -max-bytes on a request (after gzip too), and
// the HTTP server's header, read and idle timeouts; a gRPC connection
// must finish its handshake in -read-timeout and is closed when idle.
package main

import (
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	collectortracev1 "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// sink counts what it is sent.
type sink struct {
	collectortracev1.UnimplementedTraceServiceServer
	spans, requests, refused atomic.Int64
	maxBytes                 int64
}

func (s *sink) add(req *collectortracev1.ExportTraceServiceRequest) {
	var n int64
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += int64(len(ss.GetSpans()))
		}
	}
	s.spans.Add(n)
	s.requests.Add(1)
}

// Export implements the collector's TraceService.
func (s *sink) Export(_ context.Context, req *collectortracev1.ExportTraceServiceRequest) (*collectortracev1.ExportTraceServiceResponse, error) {
	s.add(req)
	return &collectortracev1.ExportTraceServiceResponse{}, nil
}

func (s *sink) stats() string {
	return fmt.Sprintf("spans %d requests %d refused %d", s.spans.Load(), s.requests.Load(), s.refused.Load())
}

// ServeHTTP serves POST /v1/traces (OTLP/HTTP) and GET /stats.
func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/stats":
		if r.Method != http.MethodGet {
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		fmt.Fprintln(w, s.stats())
		return
	case "/v1/traces":
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	status, err := s.exportHTTP(w, r)
	if err != nil {
		s.refused.Add(1)
		http.Error(w, err.Error(), status)
	}
}

func (s *sink) exportHTTP(w http.ResponseWriter, r *http.Request) (int, error) {
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	ct = strings.TrimSpace(strings.ToLower(ct))
	var unmarshal func([]byte, proto.Message) error
	switch ct {
	case "application/x-protobuf":
		unmarshal = proto.Unmarshal
	case "application/json":
		unmarshal = protojson.Unmarshal
	default:
		return http.StatusUnsupportedMediaType, fmt.Errorf("content type %q: want application/x-protobuf or application/json", ct)
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, s.maxBytes)
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return http.StatusBadRequest, fmt.Errorf("gzip: %v", err)
		}
		defer zr.Close()
		body = zr
	default:
		return http.StatusUnsupportedMediaType, fmt.Errorf("content encoding %q: want gzip or none", enc)
	}
	// The limit holds after decompression too: one byte more than it
	// tells a body that is too large.
	data, err := io.ReadAll(io.LimitReader(body, s.maxBytes+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || int64(len(data)) > s.maxBytes:
		return http.StatusRequestEntityTooLarge, fmt.Errorf("request over %d bytes", s.maxBytes)
	case err != nil:
		return http.StatusBadRequest, fmt.Errorf("read request: %v", err)
	}
	var req collectortracev1.ExportTraceServiceRequest
	if err := unmarshal(data, &req); err != nil {
		return http.StatusBadRequest, fmt.Errorf("not an ExportTraceServiceRequest: %v", err)
	}
	s.add(&req)
	out, err := proto.Marshal(&collectortracev1.ExportTraceServiceResponse{})
	if ct == "application/json" {
		out, err = protojson.Marshal(&collectortracev1.ExportTraceServiceResponse{})
	}
	if err != nil {
		return http.StatusInternalServerError, err
	}
	w.Header().Set("Content-Type", ct)
	_, _ = w.Write(out)
	return 0, nil
}

// config is the command line.
type config struct {
	grpcAddr, httpAddr string
	maxBytes           int64
	readTimeout        time.Duration
}

func parseFlags(args []string, out io.Writer) (config, error) {
	fs := flag.NewFlagSet("otlpsink", flag.ContinueOnError)
	fs.SetOutput(out)
	var c config
	fs.StringVar(&c.grpcAddr, "grpc-addr", "127.0.0.1:4317", "OTLP/gRPC listen address (empty: none)")
	fs.StringVar(&c.httpAddr, "http-addr", "127.0.0.1:4318", "OTLP/HTTP listen address, POST /v1/traces and GET /stats (empty: none)")
	fs.Int64Var(&c.maxBytes, "max-bytes", 8<<20, "largest export request taken, in bytes (after gzip)")
	fs.DurationVar(&c.readTimeout, "read-timeout", 10*time.Second, "time to read a request's headers and body, and a gRPC connection's handshake")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.grpcAddr == "" && c.httpAddr == "":
		return c, errors.New("-grpc-addr and -http-addr are both empty: nothing to listen on")
	case c.maxBytes <= 0 || c.readTimeout <= 0:
		return c, errors.New("-max-bytes and -read-timeout must be positive")
	}
	return c, nil
}

// server is a running sink.
type server struct {
	sink               *sink
	grpcAddr, httpAddr net.Addr
	grpc               *grpc.Server
	http               *http.Server
	errs               chan error
}

func start(c config) (*server, error) {
	s := &server{sink: &sink{maxBytes: c.maxBytes}, errs: make(chan error, 2)}
	if c.grpcAddr != "" {
		ln, err := net.Listen("tcp", c.grpcAddr)
		if err != nil {
			return nil, err
		}
		s.grpc = grpc.NewServer(
			grpc.MaxRecvMsgSize(int(min(c.maxBytes, 1<<30))),
			grpc.ConnectionTimeout(c.readTimeout),
			grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute}),
		)
		collectortracev1.RegisterTraceServiceServer(s.grpc, s.sink)
		s.grpcAddr = ln.Addr()
		go func() { s.errs <- s.grpc.Serve(ln) }()
	}
	if c.httpAddr != "" {
		ln, err := net.Listen("tcp", c.httpAddr)
		if err != nil {
			s.stop()
			return nil, err
		}
		s.http = &http.Server{
			Handler: s.sink, ReadHeaderTimeout: c.readTimeout, ReadTimeout: c.readTimeout,
			WriteTimeout: c.readTimeout, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		}
		s.httpAddr = ln.Addr()
		go func() { s.errs <- s.http.Serve(ln) }()
	}
	return s, nil
}

func (s *server) stop() {
	if s.grpc != nil {
		s.grpc.Stop()
	}
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.http.Shutdown(ctx)
	}
}

func main() {
	c, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		log.Fatalf("otlpsink: %v", err)
	}
	s, err := start(c)
	if err != nil {
		log.Fatalf("otlpsink: %v", err)
	}
	log.Printf("otlpsink: OTLP/gRPC on %v, OTLP/HTTP on %v", s.grpcAddr, s.httpAddr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
	case err := <-s.errs:
		log.Printf("otlpsink: %v", err)
	}
	s.stop()
	fmt.Println(s.sink.stats())
}
