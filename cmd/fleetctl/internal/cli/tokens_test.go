package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/apiauth/apiauthtest"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
)

// authServer is a public listener with the real authenticator and token
// API in front of the fake inventory.
type authServer struct {
	addr  string
	store *apiauthtest.MemoryStore
	inv   *fakeInventory
	admin string
}

func newAuthServer(t *testing.T) *authServer {
	t.Helper()
	s := &authServer{store: apiauthtest.NewMemoryStore(), inv: &fakeInventory{devices: fixtures()}}
	auth := apiauth.NewAuthenticator(apiauth.Config{TokenCacheTTL: time.Second}, apiauth.Options{Tokens: s.store, OpenMethods: apiauth.HealthMethods})
	tokens := apiauth.NewTokenService(s.store, auth, nil, nil)
	s.addr = serveWith(t, func(g *grpc.Server) {
		inventoryv1.RegisterInventoryServiceServer(g, s.inv)
		tokens.Register(g)
	}, auth.ServerOptions()...)
	var err error
	s.admin, _, err = apiauth.IssueToken(t.Context(), s.store, apiauth.TokenRecord{Role: authv1.Role_ROLE_ADMIN, AllTenants: true, Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokensCreateListRevoke(t *testing.T) {
	cleanEnv(t)
	s := newAuthServer(t)
	t.Setenv(envAddr, s.addr)
	t.Setenv(envToken, s.admin)

	r := fleetctl(t, "tokens", "create", "-role", "viewer", "-tenant", "default", "-name", "grafana", "-expires", "90d")
	if r.code != ExitOK {
		t.Fatalf("create: %d %q", r.code, r.stderr)
	}
	secret := strings.TrimSpace(r.stdout)
	id, _, ok := apiauth.ParseToken(secret)
	if !ok || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("create printed %q, want the token alone", r.stdout)
	}
	if !strings.Contains(r.stderr, "created token "+id+": role viewer, tenants default, expires ") || !strings.Contains(r.stderr, "only this once") {
		t.Errorf("stderr %q", r.stderr)
	}

	// The new token works, for what a viewer may do.
	wantOK(t, fleetctl(t, "devices", "list", "-token", secret, "-o", "ids"))
	wantFail(t, fleetctl(t, "tokens", "list", "-token", secret),
		"fleetctl: tokens list: permission denied: role viewer may not call /fleetacs.auth.v1.TokenService/ListTokens (ROLE_FORBIDDEN)")

	r = fleetctl(t, "tokens", "list")
	wantOK(t, r)
	if !strings.Contains(r.stdout, id+"  viewer  default  grafana") || strings.Contains(r.stdout, secret) {
		t.Errorf("list:\n%s", r.stdout)
	}
	r = fleetctl(t, "tokens", "list", "-o", "json")
	wantOK(t, r)
	var listed []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed) != 2 {
		t.Fatalf("list -o json: %v\n%s", err, r.stdout)
	}

	// Revoke by id, or by the whole token pasted.
	r = fleetctl(t, "tokens", "revoke", secret)
	wantOK(t, r)
	if r.stdout != "revoked "+id+"\n" {
		t.Errorf("revoke printed %q", r.stdout)
	}
	wantFail(t, fleetctl(t, "devices", "list", "-token", secret),
		"fleetctl: devices list: credentials rejected (malformed, unknown, revoked or expired): the token from -token; is "+s.addr+" the server that issued it? (CREDENTIALS_INVALID)")
	if r := fleetctl(t, "tokens", "list"); strings.Contains(r.stdout, id) {
		t.Errorf("revoked token listed without -all:\n%s", r.stdout)
	}
	if r := fleetctl(t, "tokens", "list", "-all"); !strings.Contains(r.stdout, id) {
		t.Errorf("revoked token missing with -all:\n%s", r.stdout)
	}
	wantFail(t, fleetctl(t, "tokens", "revoke", "0123456789abcdef"),
		"fleetctl: tokens revoke 0123456789abcdef: no such token among those the credentials may manage (TOKEN_NOT_FOUND)")

	// -o json gives the secret and the record in one object.
	r = fleetctl(t, "tokens", "create", "-role", "operator", "-all-tenants", "-o", "json")
	wantOK(t, r)
	var created struct {
		Secret string         `json:"secret"`
		Token  map[string]any `json:"token"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || created.Token["allTenants"] != true || created.Secret == "" {
		t.Fatalf("create -o json: %v %q", err, r.stdout)
	}
}

func TestTokensUsageErrors(t *testing.T) {
	cleanEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"create"}, `fleetctl: fleetctl tokens create: -role must be viewer, operator or admin, got ""`},
		{[]string{"create", "-role", "root"}, `fleetctl: fleetctl tokens create: -role must be viewer, operator or admin, got "root"`},
		{[]string{"create", "-role", "viewer", "-all-tenants", "-tenant", "a"}, "fleetctl: fleetctl tokens create: -all-tenants and -tenant exclude each other"},
		{[]string{"create", "-role", "viewer", "-expires", "-5m"}, `fleetctl: invalid value "-5m" for flag -expires: want an RFC 3339 time or a positive duration such as 24h or 90d`},
		{[]string{"revoke"}, "fleetctl: fleetctl tokens revoke: want at least one token id"},
	} {
		r := fleetctl(t, append([]string{"tokens"}, tc.args...)...)
		if r.code != ExitUsage || !strings.HasPrefix(r.stderr, tc.want+"\n") {
			t.Errorf("%q: exit %d, stderr %q", tc.args, r.code, r.stderr)
		}
	}
}

func TestDevicesSetCredentials(t *testing.T) {
	cleanEnv(t)
	s := newAuthServer(t)
	t.Setenv(envAddr, s.addr)
	t.Setenv(envToken, s.admin)
	const pw = "s3cret pass"

	r := fleetctlIn(t, pw+"\n", "devices", "set-credentials", "-username", "cpe-4", "A0B1C2-ONT-0004")
	wantOK(t, r)
	if strings.Contains(r.stdout+r.stderr, pw) {
		t.Fatalf("output shows the password: %q %q", r.stdout, r.stderr)
	}
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte("from-file\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantOK(t, fleetctl(t, "devices", "set-credentials", "A0B1C2-ONT-0004", "-username", "cpe-4", "-password-file", file))
	var got []*inventoryv1.SetCpeCredentialsRequest
	for _, c := range s.inv.seen() {
		if req, ok := c.req.(*inventoryv1.SetCpeCredentialsRequest); ok {
			got = append(got, req)
		}
	}
	if len(got) != 2 || got[0].GetPassword() != pw || got[1].GetPassword() != "from-file" || got[0].GetUsername() != "cpe-4" || got[0].GetTenant() != "default" {
		t.Fatalf("server saw %v", got)
	}

	// An operator may not.
	op, _, _ := apiauth.IssueToken(t.Context(), s.store, apiauth.TokenRecord{Role: authv1.Role_ROLE_OPERATOR, AllTenants: true, Created: time.Now()})
	r = fleetctlIn(t, "x", "devices", "set-credentials", "-token", op, "-username", "u", "A0B1C2-ONT-0004")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "ROLE_FORBIDDEN") {
		t.Errorf("operator: %d %q", r.code, r.stderr)
	}
	// Usage errors.
	for args, want := range map[string][]string{
		"no username":    {"devices", "set-credentials", "A0B1C2-ONT-0004"},
		"empty password": {"devices", "set-credentials", "-username", "u", "A0B1C2-ONT-0004"},
	} {
		if r := fleetctl(t, want...); r.code != ExitUsage {
			t.Errorf("%s: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
}

// fleetctlIn runs fleetctl with stdin.
func fleetctlIn(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	var stdout, stderr strings.Builder
	env := &Env{Stdin: strings.NewReader(stdin), Stdout: &stdout, Stderr: &stderr}
	code := run(context.Background(), Root(), args, env)
	return cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// TestLocalDataDir: without -addr or environment, fleetctl uses what
// fleetacs wrote in ./data, and says so when it falls back to the default.
func TestLocalDataDir(t *testing.T) {
	cleanEnv(t)
	s := newAuthServer(t)
	dir := t.TempDir()
	old := localDataDir
	localDataDir = dir
	t.Cleanup(func() { localDataDir = old })

	// Nothing there: the default address, said on stderr.
	r := fleetctl(t, "devices", "list", "-timeout", "2s")
	if !strings.HasPrefix(r.stderr, "fleetctl: no -addr, $FLEETACS_ADDR or "+filepath.Join(dir, "api.addr")+": using localhost:9300\n") {
		t.Errorf("stderr %q", r.stderr)
	}

	if err := os.WriteFile(filepath.Join(dir, "api.addr"), []byte(s.addr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantFail(t, fleetctl(t, "devices", "list"), "fleetctl: devices list: no credentials: give -token or set FLEETACS_TOKEN "+
		"(an admin can create one with \"fleetctl tokens create\"), or run fleetctl in the directory holding data/admin.token, "+
		"which fleetacs writes at its first start (CREDENTIALS_MISSING)")
	if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte(s.admin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantOK(t, fleetctl(t, "devices", "list", "-o", "ids"))
	// Named by -addr or $FLEETACS_ADDR, the same server gets the token
	// too (under any loopback name); another server does not: the token
	// belongs to the server of api.addr.
	_, port, _ := net.SplitHostPort(s.addr)
	wantOK(t, fleetctl(t, "-addr", "localhost:"+port, "devices", "list", "-o", "ids"))
	other := newAuthServer(t)
	t.Setenv(envAddr, other.addr)
	wantFail(t, fleetctl(t, "devices", "list"), "fleetctl: devices list: no credentials: "+filepath.Join(dir, "admin.token")+
		" is not sent to "+other.addr+", only to the server in "+filepath.Join(dir, "api.addr")+" ("+s.addr+"); give -token or set FLEETACS_TOKEN "+
		"(e.g. FLEETACS_TOKEN=$(cat "+filepath.Join(dir, "admin.token")+") when this is its server) (CREDENTIALS_MISSING)")
	t.Setenv(envAddr, "")

	// The environment and the flag come first.
	t.Setenv(envToken, "fat_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	wantFail(t, fleetctl(t, "devices", "list"),
		"fleetctl: devices list: credentials rejected (malformed, unknown, revoked or expired): the token from $FLEETACS_TOKEN; is "+s.addr+" the server that issued it? (CREDENTIALS_INVALID)")
	wantOK(t, fleetctl(t, "devices", "list", "-token", s.admin, "-o", "ids"))
	t.Setenv(envToken, "")
	// A stale token file from an earlier install is named as the culprit.
	if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte("fat_1111111111111111_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = fleetctl(t, "devices", "list")
	if !strings.Contains(r.stderr, "the token from "+filepath.Join(dir, "admin.token")+"; is "+s.addr+" the server that issued it?") {
		t.Errorf("stale token file: %q", r.stderr)
	}
}

// TestUnreadableLocalDataWithAddr: with the server named (-addr), a
// ./data/api.addr fleetctl cannot read is no reason to fail: it is not
// needed. Without -addr it is, and the error says which file.
func TestUnreadableLocalDataWithAddr(t *testing.T) {
	cleanEnv(t)
	s := newAuthServer(t)
	dir := t.TempDir()
	old := localDataDir
	localDataDir = dir
	t.Cleanup(func() { localDataDir = old })
	// A directory where the file should be: unreadable as a file, for
	// root too.
	if err := os.Mkdir(filepath.Join(dir, "api.addr"), 0o700); err != nil {
		t.Fatal(err)
	}
	wantOK(t, fleetctl(t, "devices", "list", "-addr", s.addr, "-token", s.admin, "-o", "ids"))
	r := fleetctl(t, "devices", "list", "-token", s.admin)
	if r.code != ExitFailure || !strings.Contains(r.stderr, filepath.Join(dir, "api.addr")) {
		t.Errorf("unreadable api.addr without -addr: %d %q", r.code, r.stderr)
	}
}

// TestTokensHelpGolden keeps the help of the tokens commands reviewed.
func TestTokensHelpGolden(t *testing.T) {
	helpGolden(t, "TokensHelpGolden", "../../testdata/help-tokens.txt", "tokens", "create", "list", "revoke")
}

// TestTLSMismatch: fleetctl and the server disagree on TLS; the message
// says what to change.
func TestTLSMismatch(t *testing.T) {
	cleanEnv(t)
	plainAddr := serve(t, &fakeInventory{devices: fixtures()})
	r := fleetctl(t, "devices", "list", "-addr", plainAddr, "-tls")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "(the server does not serve TLS: start fleetacs with -server.grpc-tls-cert-file") {
		t.Errorf("TLS to a plaintext server: %d %q", r.code, r.stderr)
	}
	_, cert := selfSigned(t)
	tlsAddr := serve(t, &fakeInventory{devices: fixtures()}, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
	r = fleetctl(t, "devices", "list", "-addr", tlsAddr, "-timeout", "5s")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "(if the server serves TLS, give -tls") {
		t.Errorf("plaintext to a TLS server: %d %q", r.code, r.stderr)
	}
	r = fleetctl(t, "devices", "list", "-addr", tlsAddr, "-tls")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "(give -ca-file with the CA that signed the server's certificate)") {
		t.Errorf("untrusted certificate: %d %q", r.code, r.stderr)
	}
}
