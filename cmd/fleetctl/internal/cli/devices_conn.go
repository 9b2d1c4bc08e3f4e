package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
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
//
// Then fleetctl looks in ./data, the data directory of a `make run` started
// in the same directory: fleetacs writes the address of its public API to
// data/api.addr at every start and an admin token to data/admin.token at
// the first one, so a newcomer's fleetctl talks to the server it just
// started, with credentials, and not to whatever answers on the default
// port. Only then comes localhost:9300, announced on stderr.
const (
	defaultAddr    = "localhost:9300"
	envAddr        = "FLEETACS_ADDR"
	envToken       = "FLEETACS_TOKEN"
	defaultTimeout = 10 * time.Second
	// maxLocalFile bounds what is read of ./data/api.addr and admin.token.
	maxLocalFile = 4 << 10
)

// localDataDir is where fleetctl looks for api.addr and admin.token;
// tests point it elsewhere.
var localDataDir = "data"

// connFlags are the gRPC connection flags every command of an API group
// (devices, tokens, later tasks) takes. They live on the leaves rather than
// on the root so that they can be given where scripts naturally put them,
// after the command words.
type connFlags struct {
	addr     string
	token    string
	tls      autoBool
	caFile   string
	certFile string
	keyFile  string
	timeout  time.Duration
}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "", "`host:port` of the FleetACS gRPC API (default: $"+envAddr+", else the address in\n"+
		"./data/api.addr that fleetacs writes, else "+defaultAddr+")")
	fs.StringVar(&c.token, "token", "", "bearer `token` sent as \"authorization: Bearer ...\" with every call\n"+
		"(default: $"+envToken+", which keeps it out of the process list, else ./data/admin.token,\n"+
		"sent only to the server of ./data/api.addr)")
	fs.Var(&c.tls, "tls", "use TLS (default: as ./data/api.addr says, else plaintext for a loopback -addr\n"+
		"and TLS for any other; -tls=false forces plaintext)")
	fs.StringVar(&c.caFile, "ca-file", "", "PEM `file` of the CAs that sign the server's certificate\n"+
		"(implies -tls; default: the system's roots)")
	fs.StringVar(&c.certFile, "cert-file", "", "PEM client certificate `file` for a server with mutual TLS, used instead of a token\n"+
		"(implies -tls; with -key-file)")
	fs.StringVar(&c.keyFile, "key-file", "", "PEM private key `file` of -cert-file")
	fs.DurationVar(&c.timeout, "timeout", defaultTimeout, "deadline of each call to the server")
}

// conn is a resolved connection: the address it names in messages, where
// the token came from, and the deadline of each call.
type conn struct {
	addr      string
	tokenFrom string
	// tokenNotSent says why ./data/admin.token was left out, if it was.
	tokenNotSent string
	// clientCert: a client certificate is presented.
	clientCert bool
	useTLS     bool
	timeout    time.Duration
	cc         *grpc.ClientConn
}

// localPath is a file of the local data directory as messages show it.
func localPath(name string) string {
	p := filepath.Join(localDataDir, name)
	if !filepath.IsAbs(p) {
		p = "./" + p
	}
	return p
}

// readLocal reads a small file of the local data directory; "" when absent.
func readLocal(name string) (string, error) {
	path := localPath(name)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxLocalFile))
	if err != nil {
		return "", err // an *fs.PathError: it names the file
	}
	return strings.TrimSpace(string(b)), nil
}

// dial checks the flags and creates the client. Like grpc.NewClient it does
// not connect: the first call does, under that call's deadline. It tells
// stderr when it falls back to the default address.
func (c *connFlags) dial(env *Env) (*conn, error) {
	if c.timeout <= 0 {
		return nil, Usagef("-timeout must be positive, got %s", c.timeout)
	}
	if (c.certFile == "") != (c.keyFile == "") {
		return nil, Usagef("-cert-file and -key-file go together")
	}
	addr := c.addr
	if addr == "" {
		addr = strings.TrimSpace(os.Getenv(envAddr))
	}
	// "host:port", then "tls" when the server serves TLS.
	local, err := readLocal("api.addr")
	if err != nil {
		if addr == "" {
			return nil, err
		}
		// Named elsewhere, the server does not need this file.
		local = ""
	}
	var localAddr string
	var fileTLS *bool
	if fields := strings.Fields(local); len(fields) > 0 {
		localAddr = fields[0]
		if addr == "" {
			addr = localAddr
			useTLS := len(fields) > 1 && fields[1] == "tls"
			fileTLS = &useTLS
		}
	}
	if addr == "" {
		addr = defaultAddr
		fmt.Fprintf(env.Stderr, "fleetctl: no -addr, $%s or %s: using %s\n", envAddr, localPath("api.addr"), addr)
	}
	token, tokenFrom := c.token, "-token"
	if token == "" {
		token, tokenFrom = os.Getenv(envToken), "$"+envToken
	}
	var tokenNotSent string
	if strings.TrimSpace(token) == "" {
		// The admin token of ./data is the credential of the server that
		// wrote ./data/api.addr beside it: it is not sent to any other
		// (-addr naming a production server from a directory where
		// `make run` left its token, someone else's server on the
		// default port), which would hand it to that server's operator.
		if localAddr != "" && sameServer(addr, localAddr) {
			local, err := readLocal("admin.token")
			if err != nil {
				return nil, err
			}
			token, tokenFrom = local, localPath("admin.token")
		} else if _, err := os.Stat(localPath("admin.token")); err == nil {
			tokenNotSent = fmt.Sprintf("%s is not sent to %s, only to the server in %s", localPath("admin.token"), addr, localPath("api.addr"))
			if localAddr != "" {
				tokenNotSent += " (" + localAddr + ")"
			}
		}
	}
	// A token read from a file or a here-doc often ends in a newline, which
	// gRPC would refuse as a metadata value.
	token = strings.TrimSpace(token)
	if token == "" {
		tokenFrom = ""
	}

	useTLS := !isLoopback(addr)
	if fileTLS != nil {
		useTLS = *fileTLS
	}
	if c.tls.set {
		useTLS = c.tls.v
	}
	if c.caFile != "" || c.certFile != "" {
		if c.tls.set && !c.tls.v {
			return nil, Usagef("-ca-file and -cert-file need TLS, but -tls=false was given")
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
		if c.certFile != "" {
			cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
			if err != nil {
				return nil, fmt.Errorf("read client certificate: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
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
	return &conn{addr: addr, tokenFrom: tokenFrom, tokenNotSent: tokenNotSent, clientCert: c.certFile != "", useTLS: useTLS, timeout: c.timeout, cc: cc}, nil
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

// sameServer reports whether two gRPC targets name the same server: the
// same port, and the same host or loopback both.
func sameServer(a, b string) bool {
	ha, pa, erra := net.SplitHostPort(a)
	hb, pb, errb := net.SplitHostPort(b)
	if erra != nil || errb != nil {
		return a == b
	}
	if pa != pb {
		return false
	}
	return strings.EqualFold(strings.TrimSuffix(ha, "."), strings.TrimSuffix(hb, ".")) || (isLoopback(a) && isLoopback(b))
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
