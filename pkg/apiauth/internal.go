package apiauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
)

// Internal calls.
//
// The internal services hand out device secrets and write device state, so
// nothing a public client holds may reach them: they are served on a
// listener of their own (-server.internal-grpc-addr), never on the public
// one, and every call there must carry the internal credential, configured
// in one place per process (InternalConfig, flags "internal.*") and used by
// the internal server and by every client of internal services alike:
//
//   - mutual TLS (-internal.tls-cert-file, -internal.tls-key-file,
//     -internal.tls-ca-file): server and clients present certificates the
//     internal CA signed, and each verifies the other's;
//   - a shared token (-internal.token-file, at least 32 bytes): clients send
//     it as "fleetacs-internal-token" metadata, the server compares hashes
//     in constant time;
//   - or both.
//
// With neither configured, the process makes up a random token at start:
// only its own clients hold it, so a loopback internal listener (the
// default) serves the process itself and nothing else, not even other
// users of the same host. Processes that call each other need a shared
// credential. A non-loopback internal listener without a configured
// credential refuses to start unless -internal.insecure says it may, and
// then every call is accepted and the process logs it loudly.
//
// Calls between services of one process (package grpcinproc) never touch
// a listener and carry no credential.

// InternalTokenHeader is the metadata key of the internal token.
const InternalTokenHeader = "fleetacs-internal-token"

// minInternalToken is the least length of a shared internal token.
const minInternalToken = 32

// InternalConfig is the internal credential of a process: flags
// "internal.<name>".
type InternalConfig struct {
	TokenFile   string
	TLSCertFile string
	TLSKeyFile  string
	TLSCAFile   string
	// TLSServerName, when set, is the name clients expect in the internal
	// servers' certificates instead of the host they dial.
	TLSServerName string
	// Insecure allows a non-loopback internal listener without any
	// credential.
	Insecure bool
}

// RegisterFlags registers the flags with their defaults.
func (c *InternalConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.TokenFile, "internal.token-file", "", "file holding the token (at least 32 bytes) every internal gRPC call carries and every internal server requires; share it between the processes of one install (empty: a random token per process, which only that process's own calls hold)")
	fs.StringVar(&c.TLSCertFile, "internal.tls-cert-file", "", "PEM certificate this process presents on internal gRPC calls, as server and as client (mutual TLS, with -internal.tls-key-file and -internal.tls-ca-file)")
	fs.StringVar(&c.TLSKeyFile, "internal.tls-key-file", "", "PEM private key of -internal.tls-cert-file")
	fs.StringVar(&c.TLSCAFile, "internal.tls-ca-file", "", "PEM CA certificates that sign every process's internal certificate")
	fs.StringVar(&c.TLSServerName, "internal.tls-server-name", "", "name internal clients expect in the servers' certificates (default: the host they dial)")
	fs.BoolVar(&c.Insecure, "internal.insecure", false, "accept every call on a non-loopback internal listener without credentials; anyone who reaches it can read device passwords and write device state (logged loudly)")
}

// Validate reports settings that cannot work.
func (c *InternalConfig) Validate() error {
	var errs []error
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") || (c.TLSCertFile == "") != (c.TLSCAFile == "") {
		errs = append(errs, errors.New("internal.tls-cert-file, internal.tls-key-file and internal.tls-ca-file go together (mutual TLS)"))
	}
	if c.TLSServerName != "" && c.TLSCertFile == "" {
		errs = append(errs, errors.New("internal.tls-server-name needs internal.tls-cert-file"))
	}
	return errors.Join(errs...)
}

// Configured reports whether a shared credential is configured.
func (c *InternalConfig) Configured() bool { return c.TokenFile != "" || c.TLSCertFile != "" }

// Internal is a process's internal credential. NewInternal does no I/O;
// Load reads the files, before the first call is served or made.
type Internal struct {
	cfg    InternalConfig
	logger *slog.Logger
	// listen is the internal listener's address; "" without one.
	listen string

	mu        sync.RWMutex
	loaded    bool
	token     string
	tokenHash [sha256.Size]byte
	server    *tls.Config
	client    *tls.Config
}

// NewInternal checks cfg for a process whose internal listener is
// listenAddr ("" when it has none): a non-loopback listener needs a
// configured credential or cfg.Insecure.
func NewInternal(cfg InternalConfig, listenAddr string, logger *slog.Logger) (*Internal, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if listenAddr != "" && !cfg.Configured() && !cfg.Insecure && !IsLoopbackListen(listenAddr) {
		return nil, fmt.Errorf("internal listener %s is reachable from other hosts but no internal credential is configured: "+
			"set -internal.token-file (or -internal.tls-cert-file/-key-file/-ca-file), or listen on loopback, "+
			"or accept the risk with -internal.insecure", listenAddr)
	}
	return &Internal{cfg: cfg, logger: logger, listen: listenAddr}, nil
}

// IsLoopbackListen reports whether a listen address binds loopback only
// (":9301" and "0.0.0.0:9301" do not; "localhost:9301" does).
func IsLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Mode says how internal calls are authenticated, for logs and banners.
func (i *Internal) Mode() string {
	switch {
	case i.cfg.TLSCertFile != "" && i.cfg.TokenFile != "":
		return "mutual TLS and shared token"
	case i.cfg.TLSCertFile != "":
		return "mutual TLS"
	case i.cfg.TokenFile != "":
		return "shared token"
	case i.cfg.Insecure:
		return "none (insecure)"
	}
	return "per-process token"
}

// Load reads the credential files (or makes up the per-process token). It
// is idempotent.
func (i *Internal) Load() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.loaded {
		return nil
	}
	switch {
	case i.cfg.TokenFile != "":
		b, err := os.ReadFile(i.cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("read internal token: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if len(tok) < minInternalToken || strings.ContainsAny(tok, "\r\n") {
			return fmt.Errorf("internal token file %s: want one line of at least %d characters (e.g. head -c 32 /dev/urandom | base64)",
				i.cfg.TokenFile, minInternalToken)
		}
		if fi, err := os.Stat(i.cfg.TokenFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			i.logger.Warn("internal token file is readable by other users", "path", i.cfg.TokenFile, "mode", fi.Mode().Perm().String())
		}
		i.token = tok
	case !i.cfg.Insecure && i.cfg.TLSCertFile == "":
		var raw [32]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return fmt.Errorf("generate internal token: %w", err)
		}
		i.token = base64.RawURLEncoding.EncodeToString(raw[:])
	}
	i.tokenHash = sha256.Sum256([]byte(i.token))
	if i.cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(i.cfg.TLSCertFile, i.cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("load internal certificate: %w", err)
		}
		pool, err := loadCAs(i.cfg.TLSCAFile)
		if err != nil {
			return fmt.Errorf("load internal CA: %w", err)
		}
		i.server = &tls.Config{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, NextProtos: []string{"h2"},
		}
		i.client = &tls.Config{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
			RootCAs: pool, ServerName: i.cfg.TLSServerName, NextProtos: []string{"h2"},
		}
	}
	if i.cfg.TokenFile != "" && i.cfg.TLSCertFile == "" && i.listen != "" && !IsLoopbackListen(i.listen) {
		// The token stops callers without it, not eavesdroppers: without
		// TLS it crosses the network in clear, and so do the device
		// passwords the inventory hands the gateways.
		i.logger.Warn("internal gRPC calls cross the network without TLS: whoever can read the traffic gets the internal token and the device passwords it carries; use -internal.tls-cert-file/-key-file/-ca-file beside -internal.token-file unless the network is private",
			"listen", i.listen)
	}
	if i.cfg.Insecure && !i.cfg.Configured() {
		i.logger.Error("INTERNAL gRPC SERVICES ACCEPT CALLS WITHOUT CREDENTIALS (-internal.insecure): whoever reaches the internal listener can read device passwords and rewrite device state")
	}
	i.loaded = true
	return nil
}

func loadCAs(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
}

// ServerOptions are the options of the internal server: TLS when
// configured, and a tap and interceptors requiring the token (health
// excepted, for probes). The tap refuses a call without the token as soon
// as its headers arrive, before gRPC reads its request (up to the
// server's receive limit, large on internal servers); the interceptors
// check again, whatever registers the services.
func (i *Internal) ServerOptions() []grpc.ServerOption { return i.ServerOptionsTapping(nil) }

// TapFunc reads what it needs from the headers of a call of method that
// the internal server accepted, as gRPC hands them to the server's tap
// (not copied: it must not change md), and returns the call's context.
type TapFunc func(ctx context.Context, method string, md metadata.MD) context.Context

// ServerOptionsTapping is ServerOptions with read called by the tap, once
// the call's token is checked: gRPC allows a server one tap, and it is
// the one place that reads a call's headers without copying them
// (metadata.FromIncomingContext copies them all; what
// telemetry.Providers.ServerTap is for, BENCHMARKS.md, issue 11). Nil
// reads nothing.
func (i *Internal) ServerOptionsTapping(read TapFunc) []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.InTapHandle(func(ctx context.Context, info *tap.Info) (context.Context, error) {
			if err := i.checkToken(ctx, info.Header.Get(InternalTokenHeader), info.FullMethodName); err != nil {
				return ctx, err
			}
			if read != nil {
				ctx = read(ctx, info.FullMethodName, info.Header)
			}
			return ctx, nil
		}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := i.check(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return handler(withInternal(ctx), req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if err := i.check(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return handler(srv, &internalStream{ServerStream: ss, ctx: withInternal(ss.Context())})
		}),
		grpc.UnknownServiceHandler(unknownService),
	}
	if i.cfg.TLSCertFile != "" {
		opts = append(opts, grpc.Creds(&lazyTLS{get: func() (*tls.Config, error) { return i.tlsConfig(true) }, server: true}))
	}
	return opts
}

// DialOptions are the options of every client of internal services: TLS
// when configured (else plaintext) and the token.
func (i *Internal) DialOptions() []grpc.DialOption { return i.DialOptionsAdding(nil) }

// MetadataFunc writes headers of its own into the metadata of an internal
// call, given the call's context.
type MetadataFunc func(ctx context.Context, md map[string]string)

// DialOptionsAdding is DialOptions with add writing into the map that
// carries the token, the map gRPC asks for on every call anyway: a header
// added there costs no metadata copy in the call's context (what
// telemetry.AddTraceContext is for, BENCHMARKS.md, issue 11).
func (i *Internal) DialOptionsAdding(add MetadataFunc) []grpc.DialOption {
	tc := insecure.NewCredentials()
	if i.cfg.TLSCertFile != "" {
		tc = &lazyTLS{get: func() (*tls.Config, error) { return i.tlsConfig(false) }}
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(tc), grpc.WithPerRPCCredentials(internalToken{i: i, add: add})}
}

func (i *Internal) tlsConfig(server bool) (*tls.Config, error) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	if !i.loaded {
		return nil, errors.New("internal credential not loaded")
	}
	if server {
		return i.server, nil
	}
	return i.client, nil
}

// check reads the token alone from the call's metadata: a copy of all of
// it (metadata.FromIncomingContext) cost an allocation per header per
// call, the trace context's included (BENCHMARKS.md, issue 11).
func (i *Internal) check(ctx context.Context, method string) error {
	return i.checkToken(ctx, metadata.ValueFromIncomingContext(ctx, InternalTokenHeader), method)
}

// checkToken checks a call: its peer's certificate, when it has one, and
// vals, the values of its internal token header.
func (i *Internal) checkToken(ctx context.Context, vals []string, method string) error {
	for _, m := range HealthMethods {
		if method == m {
			return nil
		}
	}
	i.mu.RLock()
	loaded, noToken, want := i.loaded, i.token == "", i.tokenHash
	i.mu.RUnlock()
	if pr, ok := peer.FromContext(ctx); ok {
		if tlsInfo, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(tlsInfo.State.PeerCertificates) > 0 &&
			namesAPIPrincipal(tlsInfo.State.PeerCertificates[0]) {
			// A public API client's certificate, signed by the internal
			// CA because one CA serves both: it is no internal
			// credential, or a viewer's certificate would read device
			// passwords.
			return apiError(codes.PermissionDenied, errorsv1.ErrorReason_CREDENTIALS_INVALID,
				"a public API client certificate (urn:fleetacs:api:...) is not an internal credential: give internal services certificates of their own, best from a CA of their own", nil)
		}
	}
	switch {
	case !loaded:
		return status.Error(codes.Unavailable, "internal credential not loaded yet")
	case noToken:
		// Mutual TLS alone (checked in the handshake), or insecure.
		return nil
	}
	if len(vals) == 0 {
		return apiError(codes.Unauthenticated, errorsv1.ErrorReason_CREDENTIALS_MISSING, "internal call without the internal credential: caller and server need the same -internal.token-file (or certificates of one CA, -internal.tls-*)", nil)
	}
	got := sha256.Sum256([]byte(vals[0]))
	if len(vals) != 1 || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return apiError(codes.Unauthenticated, errorsv1.ErrorReason_CREDENTIALS_INVALID, "internal credential invalid: caller and server need the same -internal.token-file", nil)
	}
	return nil
}

// namesAPIPrincipal reports whether a certificate names a public API
// principal (certPrincipal).
func namesAPIPrincipal(c *x509.Certificate) bool {
	for _, u := range c.URIs {
		if strings.HasPrefix(u.String(), certURNPrefix) {
			return true
		}
	}
	return false
}

// internalToken sends the internal token with every call, and what add
// writes (nil: nothing).
type internalToken struct {
	i   *Internal
	add MetadataFunc
}

func (t internalToken) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	t.i.mu.RLock()
	token, loaded := t.i.token, t.i.loaded
	t.i.mu.RUnlock()
	if !loaded {
		return nil, errors.New("internal credential not loaded")
	}
	var md map[string]string
	if token != "" {
		md = map[string]string{InternalTokenHeader: token}
	}
	if t.add != nil {
		if md == nil {
			md = map[string]string{}
		}
		t.add(ctx, md)
	}
	return md, nil
}

// RequireTransportSecurity is false: the token also protects loopback
// listeners without TLS.
func (internalToken) RequireTransportSecurity() bool { return false }

// lazyTLS is TLS transport credentials whose configuration is loaded after
// the server or client that uses them was built (constructors do no I/O).
type lazyTLS struct {
	get    func() (*tls.Config, error)
	server bool
}

func (l *lazyTLS) creds() (credentials.TransportCredentials, error) {
	cfg, err := l.get()
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}

func (l *lazyTLS) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cfg, err := l.get()
	if err != nil {
		return nil, nil, err
	}
	// gRPC's TLS credentials verify the server's certificate for the host
	// dialled (the authority) whatever the configuration's ServerName says;
	// -internal.tls-server-name replaces it, so that servers dialled by
	// address (session workers at their pod IP) present one shared name.
	if cfg.ServerName != "" {
		authority = cfg.ServerName
	}
	return credentials.NewTLS(cfg).ClientHandshake(ctx, authority, conn)
}

func (l *lazyTLS) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c, err := l.creds()
	if err != nil {
		return nil, nil, err
	}
	return c.ServerHandshake(conn)
}

func (l *lazyTLS) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2"}
}

func (l *lazyTLS) Clone() credentials.TransportCredentials {
	return &lazyTLS{get: l.get, server: l.server}
}

// OverrideServerName is deprecated in gRPC and unused by it.
func (l *lazyTLS) OverrideServerName(string) error { return nil }
