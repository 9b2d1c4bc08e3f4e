package apiauth_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
)

// internalServer serves the internal test services with in's options.
func internalServer(t *testing.T, in *apiauth.Internal) (string, *internals) {
	t.Helper()
	if err := in.Load(); err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(in.ServerOptions(), grpc.MaxHeaderListSize(16<<10))...)
	h := &internals{}
	inventoryv1.RegisterInventoryInternalServiceServer(srv, h)
	sessionsv1.RegisterSessionServiceServer(srv, h)
	registerHealth(srv)
	return serve(t, srv), h
}

func newInternal(t *testing.T, cfg apiauth.InternalConfig, listen string) *apiauth.Internal {
	t.Helper()
	in, err := apiauth.NewInternal(cfg, listen, nil)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func tokenFile(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "internal.token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func getCreds(cc *grpc.ClientConn, ctx ...metadata.MD) error {
	c := inventoryv1.NewInventoryInternalServiceClient(cc)
	_, err := c.GetCpeCredentials(metadata.NewOutgoingContext(ctxBG, merge(ctx)), &inventoryv1.GetCpeCredentialsRequest{Tenant: "default", DeviceKey: "d"})
	return err
}

func merge(mds []metadata.MD) metadata.MD { return metadata.Join(mds...) }

func TestInternalSharedToken(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-shared"
	cfg := apiauth.InternalConfig{TokenFile: tokenFile(t, secret)}
	server := newInternal(t, cfg, "127.0.0.1:0")
	addr, h := internalServer(t, server)

	// A client configured the same way (another process of the install).
	client := newInternal(t, cfg, "")
	if err := client.Load(); err != nil {
		t.Fatal(err)
	}
	cc := dial(t, addr, "", client.DialOptions()...)
	if err := getCreds(cc); err != nil {
		t.Fatalf("client with the shared token: %v", err)
	}
	// DialOptionsAdding: the token, and what the function writes from
	// each call's context beside it.
	type callKey struct{}
	adding := dial(t, addr, "", client.DialOptionsAdding(func(ctx context.Context, md map[string]string) {
		if v, ok := ctx.Value(callKey{}).(string); ok {
			md["x-added"] = v
		}
	})...)
	for _, v := range []string{"first", "second"} {
		_, err := inventoryv1.NewInventoryInternalServiceClient(adding).GetCpeCredentials(context.WithValue(ctxBG, callKey{}, v),
			&inventoryv1.GetCpeCredentialsRequest{Tenant: "default", DeviceKey: "d"})
		if got, _ := h.added.Load().(string); err != nil || got != v {
			t.Fatalf("client adding metadata: %v, header %q, want %q", err, got, v)
		}
	}
	h.calls.Store(1)

	// Outsiders: no credential, a forged one, a public admin token.
	outside := dial(t, addr, "", plain())
	wantReason(t, "no internal credential", getCreds(outside), codes.Unauthenticated, "CREDENTIALS_MISSING")
	for name, md := range map[string]metadata.MD{
		"forged":        metadata.Pairs(apiauth.InternalTokenHeader, "0123456789abcdef0123456789abcdef-forged"),
		"prefix":        metadata.Pairs(apiauth.InternalTokenHeader, secret[:len(secret)-1]),
		"twice":         metadata.Pairs(apiauth.InternalTokenHeader, "x", apiauth.InternalTokenHeader, secret),
		"bearer header": metadata.Pairs("authorization", "Bearer "+secret),
	} {
		err := getCreds(outside, md)
		code, _ := reasonOf(err)
		if code != codes.Unauthenticated {
			t.Errorf("%s: %v, want UNAUTHENTICATED", name, err)
		}
	}
	// A direct Exchange with a forged CPE authentication never reaches the
	// worker.
	_, err := sessionsv1.NewSessionServiceClient(outside).Exchange(ctxBG, &sessionsv1.ExchangeRequest{
		DeviceKey: "victim", Auth: &sessionsv1.CpeAuthentication{Method: sessionsv1.CpeAuthMethod_CPE_AUTH_METHOD_DIGEST, Principal: "victim"},
	})
	wantReason(t, "Exchange from outside", err, codes.Unauthenticated, "CREDENTIALS_MISSING")
	if n := h.calls.Load(); n != 1 {
		t.Fatalf("handlers reached %d times, want once (the configured client)", n)
	}
	// Health is open, for probes.
	if _, err := healthpb.NewHealthClient(outside).Check(ctxBG, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health: %v", err)
	}
}

// TestInternalPerProcessToken: without configuration each process makes
// up its own token, so another process (or user) on the host is refused.
func TestInternalPerProcessToken(t *testing.T) {
	server := newInternal(t, apiauth.InternalConfig{}, "127.0.0.1:0")
	addr, _ := internalServer(t, server)
	if got := server.Mode(); got != "per-process token" {
		t.Errorf("Mode %q", got)
	}
	if err := getCreds(dial(t, addr, "", server.DialOptions()...)); err != nil {
		t.Fatalf("the process's own client: %v", err)
	}
	other := newInternal(t, apiauth.InternalConfig{}, "")
	if err := other.Load(); err != nil {
		t.Fatal(err)
	}
	wantReason(t, "another process", getCreds(dial(t, addr, "", other.DialOptions()...)), codes.Unauthenticated, "CREDENTIALS_INVALID")
}

func TestInternalMutualTLS(t *testing.T) {
	ca := newPKI(t)
	srvCert, srvKey := ca.issue(t, "inventory")
	cliCert, cliKey := ca.issue(t, "gateway")
	server := newInternal(t, apiauth.InternalConfig{TLSCertFile: srvCert, TLSKeyFile: srvKey, TLSCAFile: ca.caFile()}, "0.0.0.0:0")
	addr, h := internalServer(t, server)
	client := newInternal(t, apiauth.InternalConfig{TLSCertFile: cliCert, TLSKeyFile: cliKey, TLSCAFile: ca.caFile()}, "")
	if err := client.Load(); err != nil {
		t.Fatal(err)
	}
	if err := getCreds(dial(t, addr, "", client.DialOptions()...)); err != nil {
		t.Fatalf("client with a certificate of the CA: %v", err)
	}
	// Plaintext, TLS without a certificate, a certificate of another CA:
	// the handshake fails, no handler runs.
	other := newPKI(t)
	strangerCert, strangerKey := other.issue(t, "stranger")
	for name, opt := range map[string]grpc.DialOption{
		"plaintext":        plain(),
		"no certificate":   tlsClient(t, ca, "", ""),
		"another CA's":     tlsClient(t, ca, strangerCert, strangerKey),
		"trusts other CAs": tlsClient(t, other, strangerCert, strangerKey),
	} {
		if err := getCreds(dial(t, addr, "", opt)); err == nil {
			t.Errorf("%s: answered", name)
		}
	}
	if n := h.calls.Load(); n != 1 {
		t.Fatalf("handlers reached %d times, want once", n)
	}
}

// TestInternalTLSServerName: with -internal.tls-server-name, a client
// checks that name in the server's certificate instead of the address it
// dials, so that servers reached by address (session workers at their pod
// IP) can share a certificate for one name. Without it, or with another
// name, the handshake fails.
func TestInternalTLSServerName(t *testing.T) {
	ca := newPKI(t)
	srvCert, srvKey := ca.issueFor(t, "worker", nil, []string{"fleetacs-internal"})
	cliCert, cliKey := ca.issueFor(t, "gateway", nil, []string{"fleetacs-internal"})
	server := newInternal(t, apiauth.InternalConfig{TLSCertFile: srvCert, TLSKeyFile: srvKey, TLSCAFile: ca.caFile()}, "0.0.0.0:0")
	addr, h := internalServer(t, server)
	for _, c := range []struct {
		name string
		ok   bool
	}{{"fleetacs-internal", true}, {"", false}, {"fleetacs-other", false}} {
		client := newInternal(t, apiauth.InternalConfig{TLSCertFile: cliCert, TLSKeyFile: cliKey, TLSCAFile: ca.caFile(), TLSServerName: c.name}, "")
		if err := client.Load(); err != nil {
			t.Fatal(err)
		}
		err := getCreds(dial(t, addr, "", client.DialOptions()...))
		if c.ok && err != nil {
			t.Errorf("server name %q: %v", c.name, err)
		}
		if !c.ok && (err == nil || !strings.Contains(err.Error(), "certificate")) {
			t.Errorf("server name %q: err %v, want a certificate error", c.name, err)
		}
	}
	if n := h.calls.Load(); n != 1 {
		t.Fatalf("handlers reached %d times, want once", n)
	}
}

// TestInternalRefusesPublicAPICertificates: where one CA signs both the
// internal certificates and the public API's client certificates, a
// viewer's certificate (urn:fleetacs:api:...) must not open the internal
// services, which hand out device passwords.
func TestInternalRefusesPublicAPICertificates(t *testing.T) {
	ca := newPKI(t)
	srvCert, srvKey := ca.issue(t, "inventory")
	server := newInternal(t, apiauth.InternalConfig{TLSCertFile: srvCert, TLSKeyFile: srvKey, TLSCAFile: ca.caFile()}, "0.0.0.0:0")
	addr, h := internalServer(t, server)
	viewerCert, viewerKey := ca.issue(t, "grafana", "urn:fleetacs:api:viewer:default")
	cc := dial(t, addr, "", tlsClient(t, ca, viewerCert, viewerKey))
	wantReason(t, "public API certificate on the internal listener", getCreds(cc), codes.PermissionDenied, "CREDENTIALS_INVALID")
	if n := h.calls.Load(); n != 0 {
		t.Fatalf("handlers reached %d times", n)
	}
	// Health stays open to it, as to anyone.
	if _, err := healthpb.NewHealthClient(cc).Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health: %v", err)
	}
}

// TestInternalPlaintextTokenWarns: a shared token on a listener other
// hosts reach, without TLS, is said to cross the network in clear (with
// the device passwords of the internal API); on loopback, or with TLS, it
// is not.
func TestInternalPlaintextTokenWarns(t *testing.T) {
	ca := newPKI(t)
	cert, key := ca.issue(t, "node")
	tok := tokenFile(t, "0123456789abcdef0123456789abcdef-shared")
	for _, tc := range []struct {
		name   string
		cfg    apiauth.InternalConfig
		listen string
		warn   bool
	}{
		{"token, all interfaces", apiauth.InternalConfig{TokenFile: tok}, ":9301", true},
		{"token, loopback", apiauth.InternalConfig{TokenFile: tok}, "127.0.0.1:9301", false},
		{"token and TLS", apiauth.InternalConfig{TokenFile: tok, TLSCertFile: cert, TLSKeyFile: key, TLSCAFile: ca.caFile()}, ":9301", false},
		{"client only", apiauth.InternalConfig{TokenFile: tok}, "", false},
	} {
		var logs strings.Builder
		in, err := apiauth.NewInternal(tc.cfg, tc.listen, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if err := in.Load(); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(logs.String(), "without TLS"); got != tc.warn {
			t.Errorf("%s: warned %v, want %v:\n%s", tc.name, got, tc.warn, logs.String())
		}
	}
}

func TestInternalListenerNeedsCredential(t *testing.T) {
	for _, addr := range []string{":9301", "0.0.0.0:9301", "[::]:9301", "192.0.2.1:9301", "example.com:9301"} {
		_, err := apiauth.NewInternal(apiauth.InternalConfig{}, addr, nil)
		if err == nil || !strings.Contains(err.Error(), "-internal.insecure") {
			t.Errorf("%s without credentials: %v, want a refusal naming the flags", addr, err)
		}
		if _, err := apiauth.NewInternal(apiauth.InternalConfig{Insecure: true}, addr, nil); err != nil {
			t.Errorf("%s with -internal.insecure: %v", addr, err)
		}
		if _, err := apiauth.NewInternal(apiauth.InternalConfig{TokenFile: "/x"}, addr, nil); err != nil {
			t.Errorf("%s with a token file: %v", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:9301", "[::1]:9301", "localhost:9301", ""} {
		if _, err := apiauth.NewInternal(apiauth.InternalConfig{}, addr, nil); err != nil {
			t.Errorf("%q: %v", addr, err)
		}
	}
	if _, err := apiauth.NewInternal(apiauth.InternalConfig{TLSCertFile: "c"}, "", nil); err == nil {
		t.Error("a certificate without key and CA accepted")
	}
}

func TestInternalTokenFileChecks(t *testing.T) {
	for name, content := range map[string]string{"short": "too-short", "two lines": strings.Repeat("a", 40) + "\n" + strings.Repeat("b", 40)} {
		in := newInternal(t, apiauth.InternalConfig{TokenFile: tokenFile(t, content)}, "")
		if err := in.Load(); err == nil {
			t.Errorf("%s token accepted", name)
		}
	}
	in := newInternal(t, apiauth.InternalConfig{TokenFile: filepath.Join(t.TempDir(), "missing")}, "")
	if err := in.Load(); err == nil {
		t.Error("missing token file accepted")
	}
}

// TestInternalInsecure accepts anything, as asked.
func TestInternalInsecure(t *testing.T) {
	in := newInternal(t, apiauth.InternalConfig{Insecure: true}, "0.0.0.0:0")
	addr, _ := internalServer(t, in)
	if err := getCreds(dial(t, addr, "", plain())); err != nil {
		t.Fatalf("insecure internal listener: %v", err)
	}
}

// TestInternalServerOptionsTapping: the read function sees the headers of
// the calls the token admits, and only those, and the context it returns
// is the call's.
func TestInternalServerOptionsTapping(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-tapped"
	cfg := apiauth.InternalConfig{TokenFile: tokenFile(t, secret)}
	server := newInternal(t, cfg, "127.0.0.1:0")
	if err := server.Load(); err != nil {
		t.Fatal(err)
	}
	type tapKey struct{}
	var read atomic.Int32
	var seen atomic.Value
	srv := grpc.NewServer(append(server.ServerOptionsTapping(func(ctx context.Context, method string, md metadata.MD) context.Context {
		read.Add(1)
		return context.WithValue(ctx, tapKey{}, method+" "+strings.Join(md["x-probe"], ","))
	}), grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		v, _ := ctx.Value(tapKey{}).(string)
		seen.Store(v)
		return h(ctx, req)
	}))...)
	inventoryv1.RegisterInventoryInternalServiceServer(srv, &internals{})
	addr := serve(t, srv)

	client := newInternal(t, cfg, "")
	if err := client.Load(); err != nil {
		t.Fatal(err)
	}
	if err := getCreds(dial(t, addr, "", client.DialOptions()...), metadata.Pairs("x-probe", "p")); err != nil {
		t.Fatal(err)
	}
	if got, want := seen.Load(), "/fleetacs.inventory.v1.InventoryInternalService/GetCpeCredentials p"; got != want || read.Load() != 1 {
		t.Errorf("handler's context has %q (%d reads), want %q", got, read.Load(), want)
	}
	wantReason(t, "no internal credential", getCreds(dial(t, addr, "", plain()), metadata.Pairs("x-probe", "q")), codes.Unauthenticated, "CREDENTIALS_MISSING")
	if read.Load() != 1 {
		t.Errorf("the tap read %d calls, want 1: a refused call's headers are not read", read.Load())
	}
}
