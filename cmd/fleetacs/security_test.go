package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// The abuse tests of issue 8 item 1, against the listeners of a real
// `fleetacs all`: what an outsider can do with the public and the internal
// gRPC listeners, with no, wrong, revoked, someone else's or too little
// credentials.

// secured is a running `fleetacs all` with its addresses and data.
type secured struct {
	p                        *process
	dir                      string
	public, internal, cwmp   string
	admin                    string
	publicConn, internalConn *grpc.ClientConn
}

func startSecured(t *testing.T, extra ...string) *secured {
	t.Helper()
	s := &secured{dir: t.TempDir()}
	free := func() string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }
	s.public, s.internal, s.cwmp = free(), free(), free()
	args := append([]string{"-log.level=error", "-data-dir=" + s.dir, "-gateway.auth-anonymous",
		"-gateway.listen-addr=" + s.cwmp, "-server.http-addr=127.0.0.1:0",
		"-server.grpc-addr=" + s.public, "-server.internal-grpc-addr=" + s.internal,
		"-auth.failure-burst=1000"}, extra...)
	s.p = startProcess(t, append(args, "all")...)
	testenv.WaitFor(t, 30*time.Second, func() error {
		s.p.alive(t)
		if !strings.Contains(s.p.stdout.String(), "FleetACS is ready") {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	b, err := os.ReadFile(filepath.Join(s.dir, "admin.token"))
	if err != nil {
		t.Fatalf("admin token after the first start: %v", err)
	}
	s.admin = strings.TrimSpace(string(b))
	s.publicConn = dialPlain(t, s.public)
	s.internalConn = dialPlain(t, s.internal)
	return s
}

// stop stops p and waits for it, leaving its exit status for the cleanup
// of startProcess.
func stop(t *testing.T, p *process) {
	t.Helper()
	p.cancel()
	select {
	case code := <-p.exited:
		p.exited <- code
	case <-time.After(60 * time.Second):
		t.Fatal("fleetacs did not stop")
	}
}

func dialPlain(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func ctx10(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func reason(err error) (codes.Code, string) {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), info.GetReason()
		}
	}
	return st.Code(), ""
}

func expect(t *testing.T, what string, err error, code codes.Code, want string) {
	t.Helper()
	if c, r := reason(err); c != code || r != want {
		t.Errorf("%s: %v, want %v %s", what, err, code, want)
	}
}

// bootOne runs one simulated CPE's first session, so that a device exists.
func (s *secured) bootOne(t *testing.T, serial string) string {
	t.Helper()
	sm, err := sim.New(sim.Config{URL: "http://" + s.cwmp + "/", Model: sim.TR181,
		Devices: 1, Seed: 3, SerialPrefix: serial, BootStorm: true, Concurrency: 1, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := sm.Run(ctx10(t))
	if err != nil || sum.SessionsOK != 1 {
		t.Fatalf("simulated CPE: %+v, %v", sum, err)
	}
	list, err := inventoryv1.NewInventoryServiceClient(s.publicConn).ListDevices(withToken(ctx10(t), s.admin),
		&inventoryv1.ListDevicesRequest{Tenant: "default", Filter: &inventoryv1.DeviceFilter{SerialNumber: sm.Devices()[0].ID().SerialNumber}})
	if err != nil || len(list.GetDevices()) != 1 {
		t.Fatalf("the simulated device in inventory: %v, %v", list, err)
	}
	return list.GetDevices()[0].GetId()
}

func TestPublicListenerAbuse(t *testing.T) {
	s := startSecured(t)
	devs := inventoryv1.NewInventoryServiceClient(s.publicConn)
	tokens := authv1.NewTokenServiceClient(s.publicConn)
	list := func(ctx context.Context, tenant string) error {
		_, err := devs.ListDevices(ctx, &inventoryv1.ListDevicesRequest{Tenant: tenant})
		return err
	}

	expect(t, "no token", list(ctx10(t), "default"), codes.Unauthenticated, "CREDENTIALS_MISSING")
	forged, _, _, _ := apiauth.NewToken()
	expect(t, "forged token", list(withToken(ctx10(t), forged), "default"), codes.Unauthenticated, "CREDENTIALS_INVALID")
	expect(t, "garbage token", list(withToken(ctx10(t), "'; DROP TABLE api_tokens; --"), "default"), codes.Unauthenticated, "CREDENTIALS_INVALID")
	if err := list(withToken(ctx10(t), s.admin), "default"); err != nil {
		t.Fatalf("admin token of the first start: %v", err)
	}

	// A viewer of one tenant, made through the token API.
	resp, err := tokens.CreateToken(withToken(ctx10(t), s.admin), &authv1.CreateTokenRequest{
		Name: "abuse test", Role: authv1.Role_ROLE_VIEWER, Tenants: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	viewer := resp.GetSecret()
	if err := list(withToken(ctx10(t), viewer), "default"); err != nil {
		t.Fatalf("viewer listing its tenant: %v", err)
	}
	expect(t, "viewer, another tenant", list(withToken(ctx10(t), viewer), "isp-b"), codes.PermissionDenied, "TENANT_FORBIDDEN")
	_, err = devs.DeleteDevice(withToken(ctx10(t), viewer), &inventoryv1.DeleteDeviceRequest{Tenant: "default", Id: "00D09E-X-1"})
	expect(t, "viewer deleting", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
	_, err = devs.SetCpeCredentials(withToken(ctx10(t), viewer), &inventoryv1.SetCpeCredentialsRequest{Tenant: "default", Id: "x", Username: "u", Password: "p"})
	expect(t, "viewer setting credentials", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
	_, err = tokens.CreateToken(withToken(ctx10(t), viewer), &authv1.CreateTokenRequest{Role: authv1.Role_ROLE_ADMIN, AllTenants: true})
	expect(t, "viewer minting an admin token", err, codes.PermissionDenied, "ROLE_FORBIDDEN")

	// Revoked: refused at once by the process that revoked it.
	if _, err := tokens.RevokeToken(withToken(ctx10(t), s.admin), &authv1.RevokeTokenRequest{Id: resp.GetToken().GetId()}); err != nil {
		t.Fatal(err)
	}
	expect(t, "revoked token", list(withToken(ctx10(t), viewer), "default"), codes.Unauthenticated, "CREDENTIALS_INVALID")

	// Expired.
	resp, err = tokens.CreateToken(withToken(ctx10(t), s.admin), &authv1.CreateTokenRequest{
		Role: authv1.Role_ROLE_VIEWER, Tenants: []string{"default"}, ExpireTime: timestamppb.New(time.Now().Add(1500 * time.Millisecond))})
	if err != nil {
		t.Fatal(err)
	}
	if err := list(withToken(ctx10(t), resp.GetSecret()), "default"); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		if c, _ := reason(list(withToken(ctx10(t), resp.GetSecret()), "default")); c != codes.Unauthenticated {
			return fmt.Errorf("expired token still accepted")
		}
		return nil
	})

	// Internal methods on the public listener, with and without the admin
	// token: never served there.
	cred := inventoryv1.NewInventoryInternalServiceClient(s.publicConn)
	_, err = cred.GetCpeCredentials(ctx10(t), &inventoryv1.GetCpeCredentialsRequest{Tenant: "default", DeviceKey: "x"})
	expect(t, "GetCpeCredentials on the public listener", err, codes.Unauthenticated, "CREDENTIALS_MISSING")
	_, err = cred.GetCpeCredentials(withToken(ctx10(t), s.admin), &inventoryv1.GetCpeCredentialsRequest{Tenant: "default", DeviceKey: "x"})
	expect(t, "GetCpeCredentials on the public listener, admin", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
	_, err = sessionsv1.NewSessionServiceClient(s.publicConn).Exchange(withToken(ctx10(t), s.admin), &sessionsv1.ExchangeRequest{
		DeviceKey: "x", Auth: &sessionsv1.CpeAuthentication{Method: sessionsv1.CpeAuthMethod_CPE_AUTH_METHOD_DIGEST, Principal: "x"}})
	expect(t, "Exchange on the public listener, admin", err, codes.PermissionDenied, "ROLE_FORBIDDEN")

	// Oversized metadata: that call fails, the listener goes on.
	big := metadata.AppendToOutgoingContext(withToken(ctx10(t), s.admin), "x-pad", strings.Repeat("p", 1<<20))
	if err := list(big, "default"); err == nil {
		t.Error("a call with 1 MiB of metadata was answered")
	}
	if err := list(withToken(ctx10(t), s.admin), "default"); err != nil {
		t.Fatalf("after the oversized call: %v", err)
	}

	// An oversized request, even with the admin token: public requests
	// are small, and the public listener reads no more than
	// maxPublicRecvMsg of one (the internal ones carry CPE bodies).
	_, err = devs.ListDevices(withToken(ctx10(t), s.admin), &inventoryv1.ListDevicesRequest{Tenant: "default",
		Filter: &inventoryv1.DeviceFilter{Ids: []string{strings.Repeat("i", maxPublicRecvMsg+1)}}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a request of %d bytes on the public listener: %v, want ResourceExhausted", maxPublicRecvMsg+1, err)
	}
	if err := list(withToken(ctx10(t), s.admin), "default"); err != nil {
		t.Fatalf("after the oversized request: %v", err)
	}
}

func TestInternalListenerAbuse(t *testing.T) {
	s := startSecured(t)
	cred := inventoryv1.NewInventoryInternalServiceClient(s.internalConn)
	get := func(ctx context.Context) error {
		_, err := cred.GetCpeCredentials(ctx, &inventoryv1.GetCpeCredentialsRequest{Tenant: "default", DeviceKey: "00D09E-X-1"})
		return err
	}
	expect(t, "no internal credential", get(ctx10(t)), codes.Unauthenticated, "CREDENTIALS_MISSING")
	for name, md := range map[string][]string{
		"forged internal token":   {apiauth.InternalTokenHeader, "0123456789abcdef0123456789abcdef0123456789"},
		"public admin token":      {"authorization", "Bearer " + s.admin},
		"admin token as internal": {apiauth.InternalTokenHeader, s.admin},
	} {
		err := get(metadata.AppendToOutgoingContext(ctx10(t), md...))
		if c, _ := reason(err); c != codes.Unauthenticated {
			t.Errorf("%s: %v, want UNAUTHENTICATED", name, err)
		}
	}
	// A direct Exchange with a forged CWMP authentication.
	_, err := sessionsv1.NewSessionServiceClient(s.internalConn).Exchange(ctx10(t), &sessionsv1.ExchangeRequest{
		SessionId: "forged", NewSession: true, Tenant: "default", DeviceKey: "00D09E-X-1",
		Auth: &sessionsv1.CpeAuthentication{Method: sessionsv1.CpeAuthMethod_CPE_AUTH_METHOD_DIGEST, Principal: "00D09E-X-1"},
		Body: []byte("<soap:Envelope/>"),
	})
	expect(t, "Exchange with a forged auth field", err, codes.Unauthenticated, "CREDENTIALS_MISSING")
	// RecordSession with a fencing token at the maximum.
	_, err = cred.RecordSession(ctx10(t), &inventoryv1.RecordSessionRequest{Tenant: "default", DeviceKey: "00D09E-X-1", FencingToken: 1<<63 - 1})
	expect(t, "RecordSession from outside", err, codes.Unauthenticated, "CREDENTIALS_MISSING")
	// Oversized metadata.
	if err := get(metadata.AppendToOutgoingContext(ctx10(t), "x-pad", strings.Repeat("p", 1<<20))); err == nil {
		t.Error("a call with 1 MiB of metadata was answered")
	}
	// The files service's internal method signs a download URL for any
	// device (docs/files.md): the internal credential is required, a
	// public admin token is none, and the public listener does not serve
	// it.
	resolve := func(conn *grpc.ClientConn, ctx context.Context) error {
		_, err := filesv1.NewFilesInternalServiceClient(conn).ResolveFile(ctx, &filesv1.ResolveFileRequest{
			Tenant: "default", DeviceId: "00D09E-X-1", FileType: "1 Firmware Upgrade Image", Version: "1.0"})
		return err
	}
	expect(t, "ResolveFile without the internal credential", resolve(s.internalConn, ctx10(t)), codes.Unauthenticated, "CREDENTIALS_MISSING")
	if c, _ := reason(resolve(s.internalConn, withToken(ctx10(t), s.admin))); c != codes.Unauthenticated {
		t.Errorf("ResolveFile with a public admin token on the internal listener: %v", c)
	}
	// (refused before any handler: a method without a role is no public one)
	if c := status.Code(resolve(s.publicConn, withToken(ctx10(t), s.admin))); c != codes.PermissionDenied && c != codes.Unimplemented {
		t.Errorf("ResolveFile on the public listener with an admin token: %v, want PERMISSION_DENIED or UNIMPLEMENTED", c)
	}
	// The public inventory API on the internal listener (the campaigns
	// runner's, docs/campaigns.md) wants the internal credential: a
	// public token is none.
	_, err = inventoryv1.NewInventoryServiceClient(s.internalConn).ListDevices(withToken(ctx10(t), s.admin), &inventoryv1.ListDevicesRequest{})
	if c, _ := reason(err); c != codes.Unauthenticated {
		t.Errorf("public API on the internal listener: %v", err)
	}
}

// TestInternalSharedTokenFile: with -internal.token-file, a client holding
// the file's token is served, and the process's own calls carry it.
func TestInternalSharedTokenFile(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "internal.token")
	const token = "shared-internal-token-0123456789abcdef0123456789"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Through the transport (not in-process), so the process's own
	// internal calls need the token too.
	s := startSecured(t, "-internal.token-file="+tokenFile, "-server.grpc-in-process=false")
	s.bootOne(t, "TOK")
	_, err := inventoryv1.NewInventoryInternalServiceClient(s.internalConn).GetCpeCredentials(
		metadata.AppendToOutgoingContext(ctx10(t), apiauth.InternalTokenHeader, token),
		&inventoryv1.GetCpeCredentialsRequest{Tenant: "default", DeviceKey: "x"})
	if err != nil {
		t.Fatalf("holder of the shared token: %v", err)
	}
}

// TestInternalListenerExposedNeedsCredential: fleetacs does not open an
// internal listener on every interface without a credential, unless told.
func TestInternalListenerExposedNeedsCredential(t *testing.T) {
	var out, errb syncBuffer
	code := run(context.Background(), []string{"-data-dir=" + t.TempDir(), "-server.internal-grpc-addr=:0", "-notifier.stun-addr=127.0.0.1:0", "all"}, &out, &errb, noEnv)
	if code != 2 || !strings.Contains(errb.String(), "-internal.token-file") || !strings.Contains(errb.String(), "-internal.insecure") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	// Told: it starts (and logs loudly).
	startSecured(t, "-server.internal-grpc-addr=0.0.0.0:0", "-internal.insecure")
}

// TestPasswordsNotInDataFiles sets a device's credentials through the
// public API and looks for the password in every file of the data
// directory.
func TestPasswordsNotInDataFiles(t *testing.T) {
	s := startSecured(t)
	id := s.bootOne(t, "SEC")
	const password = "Per-Device-Secret-4242"
	_, err := inventoryv1.NewInventoryServiceClient(s.publicConn).SetCpeCredentials(withToken(ctx10(t), s.admin),
		&inventoryv1.SetCpeCredentialsRequest{Tenant: "default", Id: id, Username: "cpe-sec", Password: password})
	if err != nil {
		t.Fatal(err)
	}
	// The gateway's view: the password, through the internal API.
	got, err := inventoryv1.NewInventoryInternalServiceClient(s.internalConn).GetCpeCredentials(ctx10(t),
		&inventoryv1.GetCpeCredentialsRequest{Tenant: "default", DeviceKey: id})
	if c, _ := reason(err); c != codes.Unauthenticated || got != nil {
		t.Fatalf("internal API from outside: %v, %v", got, err)
	}
	stop(t, s.p)
	found := false
	err = filepath.Walk(s.dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(password)) {
			t.Errorf("%s holds the password in clear", path)
		}
		if name := filepath.Base(path); name == "inventory.db" || name == "secrets.key" || name == "admin.token" {
			found = true
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %o, want 600", path, fi.Mode().Perm())
			}
		}
		return nil
	})
	if err != nil || !found {
		t.Fatalf("walk data dir: %v (files found: %v)", err, found)
	}
}

// TestAdminTokenKeptAcrossRestarts: the first start writes the admin token
// once; a restart neither rewrites the file nor makes another token.
func TestAdminTokenKeptAcrossRestarts(t *testing.T) {
	s := startSecured(t)
	first := s.admin
	stop(t, s.p)
	if !strings.Contains(s.p.stdout.String(), "Admin API token (created now") {
		t.Errorf("first banner does not tell about the token:\n%s", s.p.stdout.String())
	}
	// Stopped, the server takes its address back: fleetctl would send
	// admin.token to whatever listens there next.
	if _, err := os.Stat(filepath.Join(s.dir, "api.addr")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("api.addr after a stop: %v, want it removed", err)
	}
	args := []string{"-log.level=error", "-data-dir=" + s.dir, "-gateway.auth-anonymous", "-gateway.listen-addr=127.0.0.1:0",
		"-server.http-addr=127.0.0.1:0", "-server.grpc-addr=" + s.public, "-server.internal-grpc-addr=127.0.0.1:0", "all"}
	p := startProcess(t, args...)
	testenv.WaitFor(t, 30*time.Second, func() error {
		p.alive(t)
		if !strings.Contains(p.stdout.String(), "FleetACS is ready") {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	b, _ := os.ReadFile(filepath.Join(s.dir, "admin.token"))
	if strings.TrimSpace(string(b)) != first {
		t.Fatal("admin token file rewritten by a restart")
	}
	if strings.Contains(p.stdout.String(), "created now") {
		t.Error("restart says it created the token")
	}
	api, _ := os.ReadFile(filepath.Join(s.dir, "api.addr"))
	if strings.TrimSpace(string(api)) != s.public {
		t.Errorf("api.addr holds %q, want %s", api, s.public)
	}
	cc := dialPlain(t, s.public)
	resp, err := authv1.NewTokenServiceClient(cc).ListTokens(withToken(ctx10(t), first), &authv1.ListTokensRequest{})
	if err != nil || len(resp.GetTokens()) != 1 {
		t.Fatalf("tokens after a restart: %v, %v", resp, err)
	}
}

// TestPublicTLSWithClientCertificates serves the public API over TLS with
// a client CA, as -server.grpc-tls-* configure it.
func TestPublicTLSWithClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := testCA(t)
	caFile := writeCert(t, dir, "ca", ca, nil)
	srvCert, srvKey := issueCert(t, ca, caKey, "server")
	srvFile := writeCert(t, dir, "server", srvCert, srvKey)
	cliCert, cliKey := issueCert(t, ca, caKey, "oss", "urn:fleetacs:api:operator:default")
	writeCert(t, dir, "oss", cliCert, cliKey)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s := startSecured(t, "-server.grpc-tls-cert-file="+srvFile+".pem", "-server.grpc-tls-key-file="+srvFile+"-key.pem",
		"-server.grpc-tls-client-ca-file="+caFile+".pem", "-server.api-http-addr="+httpAddr)

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "oss.pem"), filepath.Join(dir, "oss-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	withCert := dialPlain(t, s.public, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}})))
	_, err = inventoryv1.NewInventoryServiceClient(withCert).AddTags(ctx10(t), &inventoryv1.AddTagsRequest{Tenant: "default", Id: "none", Tags: []string{"x"}})
	expect(t, "operator certificate adding tags to a missing device", err, codes.NotFound, "DEVICE_NOT_FOUND")
	_, err = inventoryv1.NewInventoryServiceClient(withCert).DeleteDevice(ctx10(t), &inventoryv1.DeleteDeviceRequest{Tenant: "default", Id: "none"})
	expect(t, "operator certificate deleting", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
	// Plaintext to the TLS listener fails; api.addr says tls.
	if _, err := inventoryv1.NewInventoryServiceClient(s.publicConn).ListDevices(withToken(ctx10(t), s.admin), &inventoryv1.ListDevicesRequest{}); err == nil {
		t.Error("plaintext call to the TLS listener answered")
	}
	if api, _ := os.ReadFile(filepath.Join(s.dir, "api.addr")); strings.TrimSpace(string(api)) != s.public+" tls" {
		t.Errorf("api.addr holds %q", api)
	}

	// The HTTP API serves TLS with the same certificate and client CA; the
	// client certificate reaches the gRPC server's authentication through
	// the forwarder, and a token still works without one.
	httpsClient := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
	}
	call := func(c *http.Client, method, path, token string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx10(t), method, "https://"+httpAddr+path, strings.NewReader(`{"tags":["x"]}`))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s over TLS: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call(httpsClient(pair), "POST", "/v1/tenants/default/devices/none:addTags", ""); code != http.StatusNotFound || !strings.Contains(body, "DEVICE_NOT_FOUND") {
		t.Errorf("operator certificate adding tags over HTTPS: %d %s", code, body)
	}
	if code, body := call(httpsClient(pair), "DELETE", "/v1/tenants/default/devices/none", ""); code != http.StatusForbidden || !strings.Contains(body, "ROLE_FORBIDDEN") {
		t.Errorf("operator certificate deleting over HTTPS: %d %s", code, body)
	}
	if code, body := call(httpsClient(), "DELETE", "/v1/tenants/default/devices/none", ""); code != http.StatusUnauthorized || !strings.Contains(body, "CREDENTIALS_MISSING") {
		t.Errorf("no certificate, no token over HTTPS: %d %s", code, body)
	}
	if code, body := call(httpsClient(), "DELETE", "/v1/tenants/default/devices/none", s.admin); code != http.StatusNotFound || !strings.Contains(body, "DEVICE_NOT_FOUND") {
		t.Errorf("admin token over HTTPS: %d %s", code, body)
	}
}

// TestInternalMutualTLSInMemory: with mutual TLS as the internal credential
// and in-process calls off, the process's own internal calls go through
// TLS over the in-memory transport, and a CPE session works.
func TestInternalMutualTLSInMemory(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := testCA(t)
	caFile := writeCert(t, dir, "ca", ca, nil)
	cert, key := issueCert(t, ca, caKey, "node")
	certFile := writeCert(t, dir, "node", cert, key)
	s := startSecured(t, "-internal.tls-cert-file="+certFile+".pem", "-internal.tls-key-file="+certFile+"-key.pem",
		"-internal.tls-ca-file="+caFile+".pem", "-server.grpc-in-process=false")
	s.bootOne(t, "MTLS")
	// Plaintext to the internal listener does not get through the handshake.
	_, err := inventoryv1.NewInventoryInternalServiceClient(s.internalConn).GetCpeCredentials(ctx10(t), &inventoryv1.GetCpeCredentialsRequest{Tenant: "default", DeviceKey: "x"})
	if err == nil {
		t.Fatal("plaintext call to the mutual-TLS internal listener answered")
	}
}

func testCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

var certSerial = big.NewInt(100)

func issueCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, uris ...string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	certSerial.Add(certSerial, big.NewInt(1))
	tmpl := &x509.Certificate{SerialNumber: new(big.Int).Set(certSerial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// writeCert writes dir/name.pem (and dir/name-key.pem with a key) and
// returns dir/name.
func writeCert(t *testing.T, dir, name string, c *x509.Certificate, key *ecdsa.PrivateKey) string {
	t.Helper()
	base := filepath.Join(dir, name)
	if err := os.WriteFile(base+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if key != nil {
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(base+"-key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return base
}

// TestTokenGuessingLimited: -auth.failure-burst invalid tokens from one
// address, then every call from it is refused for a while, the admin
// token included.
func TestTokenGuessingLimited(t *testing.T) {
	s := startSecured(t, "-auth.failure-burst=3", "-auth.failure-interval=1m")
	devs := inventoryv1.NewInventoryServiceClient(s.publicConn)
	list := func(token string) error {
		_, err := devs.ListDevices(withToken(ctx10(t), token), &inventoryv1.ListDevicesRequest{Tenant: "default"})
		return err
	}
	for range 3 {
		guess, _, _, _ := apiauth.NewToken()
		expect(t, "guess", list(guess), codes.Unauthenticated, "CREDENTIALS_INVALID")
	}
	guess, _, _, _ := apiauth.NewToken()
	expect(t, "guess beyond the burst", list(guess), codes.ResourceExhausted, "RATE_LIMITED")
	expect(t, "admin token from the same address", list(s.admin), codes.ResourceExhausted, "RATE_LIMITED")
}

// A key file the operator gives that other users may read is warned
// about at start (the inventory's secrets open every device password of a
// backup; the tasks' secrets and the files' URL keys likewise).
func TestSharedSecretsKeyFileWarned(t *testing.T) {
	dir := t.TempDir()
	key, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "secrets.key")
	if err := os.WriteFile(keyFile, secretbox.FormatKeyFile(key), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, "-log.level=warn", "-data-dir="+filepath.Join(dir, "data"), "-gateway.auth-anonymous",
		"-inventory.secrets-key-file="+keyFile, "-tasks.secrets-key-file="+keyFile, "-files.url-key-file="+keyFile,
		"-gateway.listen-addr=127.0.0.1:0", "-server.http-addr=127.0.0.1:0", "-server.grpc-addr=127.0.0.1:0", "-server.internal-grpc-addr=127.0.0.1:0", "all")
	testenv.WaitFor(t, 30*time.Second, func() error {
		p.alive(t)
		if !strings.Contains(p.stdout.String(), "FleetACS is ready") {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	for _, what := range []string{`"secrets key file is open to other users`, "tasks secrets key file is open to other users", "files URL key file is open to other users"} {
		if !strings.Contains(p.stderr.String(), what) {
			t.Fatalf("no warning %q about a key file of mode 0644:\n%s", what, p.stderr.String())
		}
	}
}
