package apiauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
)

// clock is a test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// serve runs srv on a real TCP listener on 127.0.0.1 until the test ends
// and returns its address.
func serve(t *testing.T, srv *grpc.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return ln.Addr().String()
}

// dial connects to addr from the local address from (e.g. "127.0.0.2"; ""
// for any).
func dial(t *testing.T, addr, from string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	d := net.Dialer{}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	opts = append([]grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", a)
	})}, opts...)
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func plain() grpc.DialOption { return grpc.WithTransportCredentials(insecure.NewCredentials()) }

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// bearer adds a token to a call's context.
func bearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// reasonOf returns the status code and catalogue reason of err.
func reasonOf(err error) (codes.Code, string) {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), info.GetReason()
		}
	}
	return st.Code(), ""
}

func wantReason(t *testing.T, what string, err error, code codes.Code, reason string) {
	t.Helper()
	gotCode, gotReason := reasonOf(err)
	if gotCode != code || gotReason != reason {
		t.Fatalf("%s: %v (code %v, reason %q), want %v %s", what, err, gotCode, gotReason, code, reason)
	}
}

// inventory answers the public API as far as the tests need: GetDevice
// echoes the tenant the caller resolved and who the caller is.
type inventory struct {
	inventoryv1.UnimplementedInventoryServiceServer
	calls atomic.Int64
}

func (s *inventory) GetDevice(ctx context.Context, req *inventoryv1.GetDeviceRequest) (*inventoryv1.GetDeviceResponse, error) {
	s.calls.Add(1)
	tenant := req.GetTenant()
	if tenant == "" {
		if ts := apiauth.CallerTenants(ctx); len(ts) == 1 {
			tenant = ts[0]
		}
	}
	return &inventoryv1.GetDeviceResponse{Device: &inventoryv1.Device{Tenant: tenant, Id: apiauth.Requester(ctx)}}, nil
}

func (s *inventory) AddTags(context.Context, *inventoryv1.AddTagsRequest) (*inventoryv1.AddTagsResponse, error) {
	s.calls.Add(1)
	return &inventoryv1.AddTagsResponse{}, nil
}

func (s *inventory) DeleteDevice(context.Context, *inventoryv1.DeleteDeviceRequest) (*inventoryv1.DeleteDeviceResponse, error) {
	s.calls.Add(1)
	return &inventoryv1.DeleteDeviceResponse{}, nil
}

// internals answers the internal services and counts the calls that got
// through.
type internals struct {
	inventoryv1.UnimplementedInventoryInternalServiceServer
	sessionsv1.UnimplementedSessionServiceServer
	calls atomic.Int64
	// added is the x-added header of the last GetCpeCredentials call.
	added atomic.Value
}

func (s *internals) GetCpeCredentials(ctx context.Context, _ *inventoryv1.GetCpeCredentialsRequest) (*inventoryv1.GetCpeCredentialsResponse, error) {
	s.calls.Add(1)
	s.added.Store(strings.Join(metadata.ValueFromIncomingContext(ctx, "x-added"), ","))
	return &inventoryv1.GetCpeCredentialsResponse{Credentials: &inventoryv1.Credentials{Username: "u", Password: "secret"}}, nil
}

func (s *internals) Exchange(context.Context, *sessionsv1.ExchangeRequest) (*sessionsv1.ExchangeResponse, error) {
	s.calls.Add(1)
	return &sessionsv1.ExchangeResponse{HttpStatus: 200}, nil
}

func registerHealth(srv *grpc.Server) {
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
}

// pki is a test CA and what it signs.
type pki struct {
	dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	next int64
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{dir: t.TempDir(), ca: ca, key: key, next: 2}
	writePEM(t, filepath.Join(p.dir, "ca.pem"), "CERTIFICATE", der)
	return p
}

func (p *pki) caFile() string { return filepath.Join(p.dir, "ca.pem") }

// issue signs a certificate for cn, valid for 127.0.0.1 and localhost as a
// server and as a client, with the given URI names; it returns the
// certificate and key files.
func (p *pki) issue(t *testing.T, cn string, uris ...string) (certFile, keyFile string) {
	t.Helper()
	return p.issueFor(t, cn, []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}, uris...)
}

// issueFor is issue for the given addresses and DNS names only.
func (p *pki) issueFor(t *testing.T, cn string, ips []net.IP, dns []string, uris ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.next), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: ips, DNSNames: dns,
	}
	p.next++
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, cn+".pem"), filepath.Join(p.dir, cn+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsClient returns TLS client credentials trusting p's CA, presenting
// cert/key when given.
func tlsClient(t *testing.T, p *pki, certFile, keyFile string) grpc.DialOption {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg))
}

// ctxBG is the context of calls that fail fast or answer at once.
var ctxBG = context.Background()
