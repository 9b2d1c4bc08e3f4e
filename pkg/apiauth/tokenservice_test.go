package apiauth_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/apiauth/apiauthtest"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
)

func TestCreateTokenScopes(t *testing.T) {
	e := newPublic(t, testAuthConfig)
	ctx := ctxT(t)
	alphaAdmin := e.token(t, authv1.Role_ROLE_ADMIN, "alpha")
	twoAdmin := e.token(t, authv1.Role_ROLE_ADMIN, "alpha", "beta")

	// The caller's only tenant by default.
	resp, err := e.tokens.CreateToken(bearer(ctx, alphaAdmin), &authv1.CreateTokenRequest{Name: "ci", Role: authv1.Role_ROLE_OPERATOR})
	if err != nil {
		t.Fatal(err)
	}
	tok := resp.GetToken()
	if !slices.Equal(tok.GetTenants(), []string{"alpha"}) || tok.GetAllTenants() || tok.GetRole() != authv1.Role_ROLE_OPERATOR ||
		!strings.HasPrefix(tok.GetCreator(), "token:") || tok.GetName() != "ci" || !strings.Contains(resp.GetSecret(), tok.GetId()) {
		t.Fatalf("created %v", resp)
	}
	// The secret works, and is stored only hashed.
	if _, err := e.get(bearer(ctx, resp.GetSecret()), "alpha"); err != nil {
		t.Fatalf("new token: %v", err)
	}
	rec, err := e.store.GetToken(ctx, tok.GetId())
	if err != nil || strings.Contains(string(rec.Hash[:]), resp.GetSecret()) {
		t.Fatalf("stored %+v, %v", rec, err)
	}
	if _, hash, _ := apiauth.ParseToken(resp.GetSecret()); hash != rec.Hash {
		t.Fatal("stored hash is not the token's SHA-256")
	}

	for name, tc := range map[string]struct {
		caller string
		req    *authv1.CreateTokenRequest
		code   codes.Code
		reason string
	}{
		"beyond own tenants":  {alphaAdmin, &authv1.CreateTokenRequest{Role: authv1.Role_ROLE_VIEWER, Tenants: []string{"beta"}}, codes.PermissionDenied, "TENANT_FORBIDDEN"},
		"all tenants":         {twoAdmin, &authv1.CreateTokenRequest{Role: authv1.Role_ROLE_VIEWER, AllTenants: true}, codes.PermissionDenied, "TENANT_FORBIDDEN"},
		"several, none named": {twoAdmin, &authv1.CreateTokenRequest{Role: authv1.Role_ROLE_VIEWER}, codes.InvalidArgument, "TENANT_REQUIRED"},
		"no role":             {alphaAdmin, &authv1.CreateTokenRequest{}, codes.InvalidArgument, "INVALID_FIELD"},
		"bad tenant":          {e.admin, &authv1.CreateTokenRequest{Role: authv1.Role_ROLE_VIEWER, Tenants: []string{"a b"}}, codes.InvalidArgument, "INVALID_FIELD"},
		"tenants and all":     {e.admin, &authv1.CreateTokenRequest{Role: authv1.Role_ROLE_VIEWER, Tenants: []string{"a"}, AllTenants: true}, codes.InvalidArgument, "INVALID_FIELD"},
		"past expiry": {e.admin, &authv1.CreateTokenRequest{Role: authv1.Role_ROLE_VIEWER, AllTenants: true,
			ExpireTime: timestamppb.New(e.clock.Now().Add(-time.Second))}, codes.InvalidArgument, "INVALID_FIELD"},
		"long name":    {e.admin, &authv1.CreateTokenRequest{Role: authv1.Role_ROLE_VIEWER, AllTenants: true, Name: strings.Repeat("n", 201)}, codes.InvalidArgument, "INVALID_FIELD"},
		"control name": {e.admin, &authv1.CreateTokenRequest{Role: authv1.Role_ROLE_VIEWER, AllTenants: true, Name: "a\nb"}, codes.InvalidArgument, "INVALID_FIELD"},
	} {
		_, err := e.tokens.CreateToken(bearer(ctx, tc.caller), tc.req)
		if code, reason := reasonOf(err); code != tc.code || reason != tc.reason {
			t.Errorf("%s: %v, want %v %s", name, err, tc.code, tc.reason)
		}
	}
	// An admin of all tenants may issue one for all tenants.
	if _, err := e.tokens.CreateToken(bearer(ctx, e.admin), &authv1.CreateTokenRequest{Role: authv1.Role_ROLE_ADMIN, AllTenants: true}); err != nil {
		t.Fatal(err)
	}
}

// TestTokenAPIRefusesLesserRoles: below admin, a credential can neither
// mint a token (not even one of its own role and tenant, which would
// outlive its revocation) nor revoke one, whatever the request asks.
func TestTokenAPIRefusesLesserRoles(t *testing.T) {
	e := newPublic(t, testAuthConfig)
	ctx := ctxT(t)
	operator := e.token(t, authv1.Role_ROLE_OPERATOR, "alpha")
	viewer := e.token(t, authv1.Role_ROLE_VIEWER)
	victim := e.token(t, authv1.Role_ROLE_VIEWER, "alpha")
	victimID, _, _ := apiauth.ParseToken(victim)
	count := func() int {
		recs, _, err := e.store.ListTokens(ctx, apiauth.TokenQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		return len(recs)
	}
	before := count()
	for _, caller := range []string{operator, viewer} {
		for _, role := range []authv1.Role{authv1.Role_ROLE_ADMIN, authv1.Role_ROLE_OPERATOR, authv1.Role_ROLE_VIEWER} {
			_, err := e.tokens.CreateToken(bearer(ctx, caller), &authv1.CreateTokenRequest{Role: role, Tenants: []string{"alpha"}})
			wantReason(t, "create "+apiauth.RoleName(role)+" below admin", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
		}
		_, err := e.tokens.RevokeToken(bearer(ctx, caller), &authv1.RevokeTokenRequest{Id: victimID})
		wantReason(t, "revoke below admin", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
	}
	if n := count(); n != before {
		t.Fatalf("%d tokens after refused calls, want %d", n, before)
	}
	if _, err := e.get(bearer(ctx, victim), "alpha"); err != nil {
		t.Fatalf("the token others tried to revoke: %v", err)
	}
}

func TestListAndRevokeTokenScopes(t *testing.T) {
	e := newPublic(t, testAuthConfig)
	ctx := ctxT(t)
	alphaAdmin := e.token(t, authv1.Role_ROLE_ADMIN, "alpha")
	alphaViewer := e.token(t, authv1.Role_ROLE_VIEWER, "alpha")
	betaViewer := e.token(t, authv1.Role_ROLE_VIEWER, "beta")
	both := e.token(t, authv1.Role_ROLE_VIEWER, "alpha", "beta")
	id := func(tok string) string { i, _, _ := apiauth.ParseToken(tok); return i }

	list := func(caller string, req *authv1.ListTokensRequest) []string {
		t.Helper()
		var out []string
		for {
			resp, err := e.tokens.ListTokens(bearer(ctx, caller), req)
			if err != nil {
				t.Fatalf("ListTokens: %v", err)
			}
			for _, tk := range resp.GetTokens() {
				out = append(out, tk.GetId())
			}
			if resp.GetNextPageToken() == "" {
				slices.Sort(out)
				return out
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}
	sorted := func(ids ...string) []string { slices.Sort(ids); return ids }

	// alpha's admin sees alpha's tokens only, on any page size.
	want := sorted(id(alphaAdmin), id(alphaViewer))
	for _, size := range []int32{0, 1, 2} {
		if got := list(alphaAdmin, &authv1.ListTokensRequest{PageSize: size}); !slices.Equal(got, want) {
			t.Errorf("page size %d: %q, want %q", size, got, want)
		}
	}
	if got := list(e.admin, &authv1.ListTokensRequest{Tenant: "beta"}); !slices.Equal(got, sorted(id(e.admin), id(betaViewer), id(both))) {
		t.Errorf("all-tenant admin listing beta: %q", got)
	}
	_, err := e.tokens.ListTokens(bearer(ctx, alphaAdmin), &authv1.ListTokensRequest{Tenant: "beta"})
	wantReason(t, "listing another tenant", err, codes.PermissionDenied, "TENANT_FORBIDDEN")
	_, err = e.tokens.ListTokens(bearer(ctx, e.admin), &authv1.ListTokensRequest{PageToken: "%%%"})
	wantReason(t, "junk page token", err, codes.InvalidArgument, "INVALID_PAGE_TOKEN")

	// Revocation within scope only; others' tokens look absent.
	for _, other := range []string{betaViewer, both, e.admin} {
		_, err := e.tokens.RevokeToken(bearer(ctx, alphaAdmin), &authv1.RevokeTokenRequest{Id: id(other)})
		wantReason(t, "revoking beyond scope", err, codes.NotFound, "TOKEN_NOT_FOUND")
	}
	_, err = e.tokens.RevokeToken(bearer(ctx, alphaAdmin), &authv1.RevokeTokenRequest{Id: "0000000000000000"})
	wantReason(t, "revoking an unknown id", err, codes.NotFound, "TOKEN_NOT_FOUND")
	_, err = e.tokens.RevokeToken(bearer(ctx, alphaAdmin), &authv1.RevokeTokenRequest{Id: "nope"})
	wantReason(t, "revoking a malformed id", err, codes.InvalidArgument, "INVALID_FIELD")
	resp, err := e.tokens.RevokeToken(bearer(ctx, alphaAdmin), &authv1.RevokeTokenRequest{Id: id(alphaViewer)})
	if err != nil || resp.GetToken().GetRevokeTime() == nil {
		t.Fatalf("revoke: %v, %v", resp, err)
	}
	// Revoked tokens leave the default listing, not the full one.
	if got := list(alphaAdmin, &authv1.ListTokensRequest{}); !slices.Equal(got, []string{id(alphaAdmin)}) {
		t.Errorf("after revocation: %q", got)
	}
	if got := list(alphaAdmin, &authv1.ListTokensRequest{ShowInactive: true}); !slices.Equal(got, want) {
		t.Errorf("with inactive: %q", got)
	}
	// An admin may revoke its own token, and is refused from then on.
	if _, err := e.tokens.RevokeToken(bearer(ctx, alphaAdmin), &authv1.RevokeTokenRequest{Id: id(alphaAdmin)}); err != nil {
		t.Fatal(err)
	}
	_, err = e.tokens.ListTokens(bearer(ctx, alphaAdmin), &authv1.ListTokensRequest{})
	wantReason(t, "after revoking itself", err, codes.Unauthenticated, "CREDENTIALS_INVALID")
}

func TestEnsureAdminToken(t *testing.T) {
	store := apiauthtest.NewMemoryStore()
	path := filepath.Join(t.TempDir(), "data", "admin.token")
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	created, err := apiauth.EnsureAdminToken(ctxT(t), store, path, now)
	if err != nil || !created {
		t.Fatalf("first start: %v, %v", created, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("admin token file mode %o, want 600", fi.Mode().Perm())
	}
	token := strings.TrimSpace(string(b))
	id, hash, ok := apiauth.ParseToken(token)
	if !ok || !strings.HasSuffix(string(b), "\n") {
		t.Fatalf("file holds %q", b)
	}
	rec, err := store.GetToken(ctxT(t), id)
	if err != nil || rec.Hash != hash || rec.Role != authv1.Role_ROLE_ADMIN || !rec.AllTenants || rec.Creator != apiauth.BootstrapCreator {
		t.Fatalf("stored %+v, %v", rec, err)
	}
	// Later starts never touch the file, whatever it holds.
	for _, content := range []string{string(b), "edited by hand\n"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		created, err := apiauth.EnsureAdminToken(ctxT(t), store, path, now)
		if err != nil || created {
			t.Fatalf("later start: %v, %v", created, err)
		}
		if got, _ := os.ReadFile(path); string(got) != content {
			t.Fatalf("file rewritten: %q", got)
		}
	}
	if recs, _, _ := store.ListTokens(ctxT(t), apiauth.TokenQuery{Limit: 10}); len(recs) != 1 {
		t.Fatalf("%d tokens, want only the first", len(recs))
	}
	// Deleted after use: not made again while the admin token is active.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if created, err := apiauth.EnsureAdminToken(ctxT(t), store, path, now); err != nil || created {
		t.Fatalf("file deleted, admin token active: %v, %v", created, err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("file recreated")
	}
	// Every admin token for all tenants revoked: the next start recovers.
	if _, err := store.RevokeToken(ctxT(t), id, now); err != nil {
		t.Fatal(err)
	}
	if created, err := apiauth.EnsureAdminToken(ctxT(t), store, path, now); err != nil || !created {
		t.Fatalf("no admin token left: %v, %v", created, err)
	}
}
