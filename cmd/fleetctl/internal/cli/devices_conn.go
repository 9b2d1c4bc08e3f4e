package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Connection defaults. The address and token come from the environment when
// their flags are absent, so that scripts set them once; they are resolved at
// run time rather than used as flag defaults, which would print a token in
// -h output and make the help text depend on the caller's environment.
const (
	defaultAddr    = "localhost:9300"
	envAddr        = "FLEETACS_ADDR"
	envToken       = "FLEETACS_TOKEN"
	defaultTimeout = 10 * time.Second
)

// connFlags are the gRPC connection flags every command of an API group
// (devices, later tasks) takes. They live on the leaves rather than on the
// root so that they can be given where scripts naturally put them, after the
// command words.
type connFlags struct {
	addr    string
	token   string
	tls     autoBool
	caFile  string
	timeout time.Duration
}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "", "`host:port` of the FleetACS gRPC API (default: $"+envAddr+", else "+defaultAddr+")")
	fs.StringVar(&c.token, "token", "", "bearer `token` sent as \"authorization: Bearer ...\" with every call\n"+
		"(default: $"+envToken+", which keeps it out of the process list)")
	fs.Var(&c.tls, "tls", "use TLS (default: plaintext for a loopback -addr, TLS for any other;\n"+
		"-tls=false forces plaintext)")
	fs.StringVar(&c.caFile, "ca-file", "", "PEM `file` of the CAs that sign the server's certificate\n"+
		"(implies -tls; default: the system's roots)")
	fs.DurationVar(&c.timeout, "timeout", defaultTimeout, "deadline of each call to the server")
}

// conn is a resolved connection: the address it names in messages and the
// deadline of each call.
type conn struct {
	addr    string
	timeout time.Duration
	cc      *grpc.ClientConn
}

// dial checks the flags and creates the client. Like grpc.NewClient it does
// not connect: the first call does, under that call's deadline.
func (c *connFlags) dial() (*conn, error) {
	if c.timeout <= 0 {
		return nil, Usagef("-timeout must be positive, got %s", c.timeout)
	}
	addr := c.addr
	if addr == "" {
		addr = strings.TrimSpace(os.Getenv(envAddr))
	}
	if addr == "" {
		addr = defaultAddr
	}
	token := c.token
	if token == "" {
		token = os.Getenv(envToken)
	}
	// A token read from a file or a here-doc often ends in a newline, which
	// gRPC would refuse as a metadata value.
	token = strings.TrimSpace(token)

	useTLS := !isLoopback(addr)
	if c.tls.set {
		useTLS = c.tls.v
	}
	if c.caFile != "" {
		if c.tls.set && !c.tls.v {
			return nil, Usagef("-ca-file needs TLS, but -tls=false was given")
		}
		useTLS = true
	}

	tc := insecure.NewCredentials()
	if useTLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.caFile != "" {
			pem, err := os.ReadFile(c.caFile)
			if err != nil {
				return nil, fmt.Errorf("read CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("read CA file %s: no PEM certificate in it", c.caFile)
			}
			cfg.RootCAs = pool
		}
		tc = credentials.NewTLS(cfg)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(tc),
		grpc.WithUserAgent("fleetctl"),
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return &conn{addr: addr, timeout: c.timeout, cc: cc}, nil
}

// call runs one RPC under its own deadline.
func call[Req, Resp any](ctx context.Context, c *conn, rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := rpc(ctx, req)
	if err != nil {
		return resp, c.rpcError(err)
	}
	return resp, nil
}

// isLoopback reports whether a gRPC target names this machine: plaintext is
// the default only there, so that a bearer token never crosses a network in
// clear unless the operator says -tls=false.
func isLoopback(target string) bool {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	for _, scheme := range []string{"dns:///", "passthrough:///"} {
		target = strings.TrimPrefix(target, scheme)
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		host = target
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// bearer sends a token as "authorization: Bearer ..." metadata.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false because dial already decided: TLS
// unless the target is loopback or the operator chose plaintext.
func (bearer) RequireTransportSecurity() bool { return false }

// autoBool is a boolean flag that remembers whether it was given, so that
// its default can depend on other flags.
type autoBool struct{ set, v bool }

func (b *autoBool) String() string {
	if b == nil || !b.set {
		return ""
	}
	return strconv.FormatBool(b.v)
}

func (b *autoBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("want true or false")
	}
	b.set, b.v = true, v
	return nil
}

func (b *autoBool) IsBoolFlag() bool { return true }
