package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/connlimit"
	"github.com/fleetacs/fleetacs/pkg/lifecycle"
	fleetproto "github.com/fleetacs/fleetacs/proto"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	provisioningv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/files"
)

// apiHTTPConfig is the public HTTP/JSON listener (docs/api-http.md): flags
// "server.api-http-<name>".
type apiHTTPConfig struct {
	Addr              string
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxConnections    int
	MaxPerSource      int
}

func (c *apiHTTPConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "server.api-http-addr", ":9380", "listen address of the public HTTP/JSON API (the public gRPC APIs mapped by grpc-gateway, OpenAPI at /v1/openapi.json), opened by processes that serve the public gRPC API; TLS as -server.grpc-tls-* (empty: no HTTP API)")
	fs.DurationVar(&c.ReadHeaderTimeout, "server.api-http-read-header-timeout", 10*time.Second, "time a client of the HTTP API has to send a request's headers (and finish its TLS handshake)")
	fs.DurationVar(&c.ReadTimeout, "server.api-http-read-timeout", 30*time.Second, "time a client of the HTTP API has to send a request's body")
	fs.DurationVar(&c.WriteTimeout, "server.api-http-write-timeout", 30*time.Second, "time each write of an HTTP API answer may take (a stream of watch results writes many times)")
	fs.DurationVar(&c.IdleTimeout, "server.api-http-idle-timeout", 2*time.Minute, "how long an idle keep-alive connection of the HTTP API stays open")
	fs.IntVar(&c.MaxConnections, "server.api-http-max-connections", 1024, "connections the HTTP API listener holds at once; more are closed at once")
	fs.IntVar(&c.MaxPerSource, "server.api-http-max-connections-per-source", 64, "connections the HTTP API listener holds from one address (an IPv6 /64 counting as one; 0: no cap)")
}

func (c *apiHTTPConfig) Validate() error {
	var errs []error
	for name, d := range map[string]time.Duration{
		"read-header-timeout": c.ReadHeaderTimeout, "read-timeout": c.ReadTimeout,
		"write-timeout": c.WriteTimeout, "idle-timeout": c.IdleTimeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("server.api-http-%s must be positive, got %s", name, d))
		}
	}
	if c.MaxConnections < 1 || c.MaxPerSource < 0 {
		errs = append(errs, errors.New("server.api-http-max-connections must be positive and -per-source not negative"))
	}
	return errors.Join(errs...)
}

// maxAPIHeaderBytes bounds an HTTP request's headers, as maxHeaderList
// bounds a gRPC call's.
const maxAPIHeaderBytes = maxHeaderList

// buildAPIHTTP builds the HTTP/JSON listener. It forwards every request,
// with the caller's Authorization header and nothing else of its headers,
// to the process's public gRPC server over an in-memory connection, so
// that the call passes the same interceptors (apiauth) as a gRPC call
// (docs/api-http.md). It never holds the internal credential.
func buildAPIHTTP(a *app) (lifecycle.Service, error) {
	cfg := a.cfg.apiHTTP
	if cfg.Addr == "" {
		return lifecycle.Funcs{}, nil
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pub := a.shared.public
	pub.forward = bufconn.Listen(1 << 20)
	ptls := apiauth.NewPublicTLS(a.opts.PublicTLS)
	s := &apiHTTP{cfg: cfg, logger: a.logger.With("component", "api-http")}
	var cc *grpc.ClientConn
	return lifecycle.Funcs{
		StartFunc: func(ctx context.Context) error {
			creds := insecure.NewCredentials()
			var serverTLS *tls.Config
			if a.opts.PublicTLS.Enabled() {
				ct, err := ptls.ForwarderClientConfig()
				if err == nil {
					serverTLS, err = ptls.HTTPConfig()
				}
				if err != nil {
					return fmt.Errorf("load the HTTP API's TLS certificate (-server.grpc-tls-*): %w", err)
				}
				creds = credentials.NewTLS(ct)
			}
			var err error
			cc, err = grpc.NewClient("passthrough:///api-http",
				grpc.WithTransportCredentials(creds),
				grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return pub.forward.DialContext(ctx) }),
				grpc.WithAuthority(hostPort(pub.addr, "127.0.0.1")),
				grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(maxPublicRecvMsg)),
			)
			if err != nil {
				return fmt.Errorf("in-memory client of the public gRPC server: %w", err)
			}
			h, err := newAPIHandler(ctx, cc, cfg.ReadTimeout, cfg.WriteTimeout)
			if err != nil {
				return err
			}
			h = h.withUpload(cc, a.cfg.files.MaxUploadBytes, a.cfg.files.UploadIdleTimeout)
			return s.start(ctx, h, serverTLS)
		},
		RunFunc: func(ctx context.Context) error {
			defer func() {
				if cc != nil {
					_ = cc.Close()
				}
			}()
			return s.run(ctx)
		},
	}, nil
}

// apiHTTP is the listener and its server.
type apiHTTP struct {
	cfg    apiHTTPConfig
	logger *slog.Logger
	srv    *http.Server
	ln     net.Listener
	errc   chan error
}

func (s *apiHTTP) start(ctx context.Context, h http.Handler, serverTLS *tls.Config) error {
	ln, err := lifecycle.Listen(ctx, "server.api-http-addr", s.cfg.Addr)
	if err != nil {
		return err
	}
	ln = connlimit.New(connlimit.Limits{Max: s.cfg.MaxConnections, PerSource: s.cfg.MaxPerSource, IPv6Prefix: 64}).Listener(ln)
	if serverTLS != nil {
		ln = tls.NewListener(ln, serverTLS)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		// No ReadTimeout or WriteTimeout for the whole request: a
		// CreateTask that waits, or a watch, lasts minutes. The handler
		// bounds reading the body and each write instead (apiHandler).
		IdleTimeout:    s.cfg.IdleTimeout,
		MaxHeaderBytes: maxAPIHeaderBytes,
		ErrorLog:       slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
		BaseContext:    func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	s.errc = make(chan error, 1)
	go func() { s.errc <- s.srv.Serve(ln) }()
	s.logger.Info("HTTP/JSON API listening", "addr", ln.Addr().String(), "tls", serverTLS != nil)
	return nil
}

// run stops the server when ctx ends: open requests (watches included,
// whose gRPC streams end as the gRPC server stops) get ten seconds.
func (s *apiHTTP) run(ctx context.Context) error {
	select {
	case err := <-s.errc:
		return fmt.Errorf("serve the HTTP API on %s: %w", s.ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		_ = s.srv.Close()
	}
	return nil
}

// apiHandler serves /v1/openapi.json and hands everything else to
// grpc-gateway, after reading the body within its limits.
type apiHandler struct {
	mux *runtime.ServeMux
	// upload serves PUT /v1/files/{name}.
	upload              http.Handler
	readTimeout, wrTime time.Duration
}

// openAPIPath is where the OpenAPI document is served. It needs no
// credentials: it describes the API every install has, and is published
// with the source (proto/gen/openapi).
const openAPIPath = "/v1/openapi.json"

func newAPIHandler(ctx context.Context, cc *grpc.ClientConn, readTimeout, writeTimeout time.Duration) (*apiHandler, error) {
	mux := runtime.NewServeMux(
		// Of the request's headers only Authorization is forwarded
		// (grpc-gateway always forwards it); no Grpc-Metadata-*, so that a
		// caller cannot set the metadata the forwarder vouches for.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithOutgoingTrailerMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithMetadata(forwardedMetadata),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{Marshaler: &runtime.JSONPb{
			// Unknown fields are refused, not dropped: a misspelt option
			// must not silently do nothing.
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}}),
	)
	for name, reg := range map[string]func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		"tasks":     tasksv1.RegisterTasksServiceHandler,
		"events":    eventsv1.RegisterEventsServiceHandler,
		"inventory": inventoryv1.RegisterInventoryServiceHandler,
		"tokens":    authv1.RegisterTokenServiceHandler,
		"files":     filesv1.RegisterFilesServiceHandler,
		"presets":   provisioningv1.RegisterPresetsServiceHandler,
		"campaigns": campaignsv1.RegisterCampaignsServiceHandler,
	} {
		if err := reg(ctx, mux, cc); err != nil {
			return nil, fmt.Errorf("register the %s HTTP handlers: %w", name, err)
		}
	}
	return &apiHandler{mux: mux, readTimeout: readTimeout, wrTime: writeTimeout}, nil
}

// withUpload adds the streaming PUT upload of files (docs/files.md), which
// bypasses the body buffering below: a firmware image is far larger than
// any other request.
func (h *apiHandler) withUpload(cc *grpc.ClientConn, maxBytes int64, idle time.Duration) *apiHandler {
	h.upload = files.UploadHandler(filesv1.NewFilesServiceClient(cc), files.UploadHandlerOptions{
		Metadata: func(r *http.Request) metadata.MD { return forwardedMetadata(r.Context(), r) },
		MaxBytes: maxBytes, IdleTimeout: idle,
	})
	return h
}

// forwardedMetadata is what the forwarder vouches for (apiauth,
// "Calls forwarded by the HTTP/JSON API"): the caller's address and its
// verified client certificate.
func forwardedMetadata(_ context.Context, r *http.Request) metadata.MD {
	md := metadata.MD{}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		md.Set(apiauth.ForwardedSourceKey, host)
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		md.Set(apiauth.ForwardedCertKey, string(r.TLS.VerifiedChains[0][0].Raw))
	}
	return md
}

func (h *apiHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	dw := &deadlineWriter{ResponseWriter: w, rc: rc, timeout: h.wrTime}
	// Whatever the handler leaves buffered is written after it returns.
	defer func() { _ = rc.SetWriteDeadline(time.Now().Add(h.wrTime)) }()
	if h.upload != nil && r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, files.UploadPath) {
		_ = rc.SetWriteDeadline(time.Time{})
		h.upload.ServeHTTP(dw, r)
		return
	}
	if r.URL.Path == openAPIPath {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeStatus(dw, http.StatusMethodNotAllowed, status.New(codes.Unimplemented, "method not allowed"))
			return
		}
		dw.Header().Set("Content-Type", "application/json")
		_, _ = dw.Write(fleetproto.OpenAPI)
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		// The body is read here, within the limits of the public gRPC
		// listener (maxPublicRecvMsg) and the read timeout; then the
		// connection's read deadline is lifted, because net/http cancels
		// the request when a read fails, and a CreateTask that waits for
		// its task reads nothing more for minutes.
		_ = rc.SetReadDeadline(time.Now().Add(h.readTimeout))
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPublicRecvMsg))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeStatus(dw, http.StatusRequestEntityTooLarge, status.Newf(codes.ResourceExhausted, "request body larger than %d bytes", maxPublicRecvMsg))
				return
			}
			writeStatus(dw, http.StatusRequestTimeout, status.New(codes.InvalidArgument, "request body not received in time"))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	_ = rc.SetReadDeadline(time.Time{})
	h.mux.ServeHTTP(dw, r)
}

// writeStatus answers with a google.rpc.Status body, as grpc-gateway does
// for errors of the gRPC call.
func writeStatus(w http.ResponseWriter, code int, st *status.Status) {
	b, err := protojson.Marshal(st.Proto())
	if err != nil {
		b = []byte(`{"code":13,"message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Connection", "close")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// deadlineWriter gives each write of an answer its own deadline: a stream
// of watch results may last hours, but no single write may stall on a
// client that stopped reading.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (d *deadlineWriter) Write(b []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.ResponseWriter.Write(b)
}

// Flush is what grpc-gateway calls after each message of a stream.
func (d *deadlineWriter) Flush() {
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	_ = d.rc.Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }
