package apiauth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/apiauth/apiauthtest"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
)

// publicEnv is a public listener as fleetacs serves it: the authenticator's
// interceptors, a test inventory, the token API and health, on real TCP.
type publicEnv struct {
	clock  *clock
	store  *apiauthtest.MemoryStore
	auth   *apiauth.Authenticator
	inv    *inventory
	addr   string
	devs   inventoryv1.InventoryServiceClient
	tokens authv1.TokenServiceClient
	admin  string
}

var testAuthConfig = apiauth.Config{TokenCacheTTL: 10 * time.Second, FailureBurst: 5, FailureInterval: 6 * time.Second}

func newPublic(t *testing.T, cfg apiauth.Config, opts ...grpc.ServerOption) *publicEnv {
	t.Helper()
	e := &publicEnv{clock: newClock(), store: apiauthtest.NewMemoryStore(), inv: &inventory{}}
	e.auth = apiauth.NewAuthenticator(cfg, apiauth.Options{Tokens: e.store, OpenMethods: apiauth.HealthMethods, Now: e.clock.Now})
	srv := grpc.NewServer(append(append(e.auth.ServerOptions(), grpc.MaxHeaderListSize(16<<10)), opts...)...)
	inventoryv1.RegisterInventoryServiceServer(srv, e.inv)
	apiauth.NewTokenService(e.store, e.auth, nil, e.clock.Now).Register(srv)
	registerHealth(srv)
	e.addr = serve(t, srv)
	cc := dial(t, e.addr, "", plain())
	e.devs, e.tokens = inventoryv1.NewInventoryServiceClient(cc), authv1.NewTokenServiceClient(cc)
	e.admin = e.token(t, authv1.Role_ROLE_ADMIN)
	return e
}

// token issues a token straight into the store; no tenants: all tenants.
func (e *publicEnv) token(t *testing.T, role authv1.Role, tenants ...string) string {
	t.Helper()
	tok, _, err := apiauth.IssueToken(t.Context(), e.store, apiauth.TokenRecord{
		Role: role, Tenants: tenants, AllTenants: len(tenants) == 0, Created: e.clock.Now(), Creator: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *publicEnv) get(ctx context.Context, tenant string) (*inventoryv1.Device, error) {
	resp, err := e.devs.GetDevice(ctx, &inventoryv1.GetDeviceRequest{Tenant: tenant, Id: "dev-1"})
	return resp.GetDevice(), err
}

func TestNoCredentials(t *testing.T) {
	e := newPublic(t, testAuthConfig)
	_, err := e.get(ctxT(t), "default")
	wantReason(t, "GetDevice without a token", err, codes.Unauthenticated, "CREDENTIALS_MISSING")
	_, err = e.tokens.ListTokens(ctxT(t), &authv1.ListTokensRequest{})
	wantReason(t, "ListTokens without a token", err, codes.Unauthenticated, "CREDENTIALS_MISSING")
	if n := e.inv.calls.Load(); n != 0 {
		t.Fatalf("handler reached %d times", n)
	}
	// Health stays open, for probes.
	cc := dial(t, e.addr, "", plain())
	if _, err := healthpb.NewHealthClient(cc).Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health without credentials: %v", err)
	}
	// A method no service serves: authentication first, then UNIMPLEMENTED.
	err = cc.Invoke(ctxT(t), "/fleetacs.nope.v1.Hidden/Probe", &inventoryv1.GetDeviceRequest{}, &inventoryv1.GetDeviceResponse{})
	wantReason(t, "unknown method without a token", err, codes.Unauthenticated, "CREDENTIALS_MISSING")
	err = cc.Invoke(bearer(ctxT(t), e.admin), "/fleetacs.nope.v1.Hidden/Probe", &inventoryv1.GetDeviceRequest{}, &inventoryv1.GetDeviceResponse{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("unknown method with a token: %v, want Unimplemented", err)
	}
}

func TestValidToken(t *testing.T) {
	e := newPublic(t, testAuthConfig)
	viewer := e.token(t, authv1.Role_ROLE_VIEWER, "alpha")
	d, err := e.get(bearer(ctxT(t), viewer), "alpha")
	if err != nil {
		t.Fatal(err)
	}
	id, _, _ := apiauth.ParseToken(viewer)
	if d.GetId() != "token:"+id || d.GetTenant() != "alpha" {
		t.Fatalf("handler saw %+v", d)
	}
	// No tenant named: the caller's only one.
	if d, err = e.get(bearer(ctxT(t), viewer), ""); err != nil || d.GetTenant() != "alpha" {
		t.Fatalf("empty tenant: %v, %v", d, err)
	}
	// The scheme is case-insensitive, as HTTP's.
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "bearer "+viewer)
	if _, err := e.get(ctx, "alpha"); err != nil {
		t.Fatalf("lower-case scheme: %v", err)
	}
}

func TestInvalidTokens(t *testing.T) {
	e := newPublic(t, apiauth.Config{TokenCacheTTL: 10 * time.Second}) // no failure limit here
	good := e.token(t, authv1.Role_ROLE_ADMIN)
	forged, _, _, _ := apiauth.NewToken() // well formed, never stored
	// Same id, another secret.
	sameID := good[:len(good)-5] + "AAAAA"
	if sameID == good {
		sameID = good[:len(good)-5] + "BBBBB"
	}
	for name, md := range map[string][]string{
		"forged":          {"authorization", "Bearer " + forged},
		"same id":         {"authorization", "Bearer " + sameID},
		"malformed":       {"authorization", "Bearer not-a-token"},
		"basic":           {"authorization", "Basic " + good},
		"no scheme":       {"authorization", good},
		"two headers":     {"authorization", "Bearer " + good, "authorization", "Bearer " + good},
		"long":            {"authorization", "Bearer " + strings.Repeat("x", 4000)},
		"truncated":       {"authorization", "Bearer " + good[:len(good)-1]},
		"trailing junk":   {"authorization", "Bearer " + good + "x"},
		"internal header": {apiauth.InternalTokenHeader, good},
	} {
		ctx := metadata.AppendToOutgoingContext(ctxT(t), md...)
		_, err := e.get(ctx, "default")
		code, reason := reasonOf(err)
		want := "CREDENTIALS_INVALID"
		if name == "internal header" {
			want = "CREDENTIALS_MISSING"
		}
		if code != codes.Unauthenticated || reason != want {
			t.Errorf("%s: %v, want UNAUTHENTICATED %s", name, err, want)
		}
	}
	if n := e.inv.calls.Load(); n != 0 {
		t.Fatalf("handler reached %d times", n)
	}
}

func TestRevokedAndExpired(t *testing.T) {
	e := newPublic(t, testAuthConfig)
	ctx := ctxT(t)
	resp, err := e.tokens.CreateToken(bearer(ctx, e.admin), &authv1.CreateTokenRequest{
		Name: "oss", Role: authv1.Role_ROLE_VIEWER, Tenants: []string{"alpha"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tok := resp.GetSecret()
	if _, err := e.get(bearer(ctx, tok), "alpha"); err != nil {
		t.Fatalf("new token: %v", err)
	}
	// Revoked through the API of this process: refused at once, though
	// its record is cached.
	if _, err := e.tokens.RevokeToken(bearer(ctx, e.admin), &authv1.RevokeTokenRequest{Id: resp.GetToken().GetId()}); err != nil {
		t.Fatal(err)
	}
	_, err = e.get(bearer(ctx, tok), "alpha")
	wantReason(t, "revoked token", err, codes.Unauthenticated, "CREDENTIALS_INVALID")

	// Revoked by another process (straight in the store): refused once
	// the cached record is older than the cache TTL.
	other := e.token(t, authv1.Role_ROLE_VIEWER, "alpha")
	if _, err := e.get(bearer(ctx, other), "alpha"); err != nil {
		t.Fatal(err)
	}
	id, _, _ := apiauth.ParseToken(other)
	if _, err := e.store.RevokeToken(ctx, id, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.get(bearer(ctx, other), "alpha"); err != nil {
		t.Fatalf("within the cache TTL: %v (the cache is what bounds store reads)", err)
	}
	e.clock.Advance(testAuthConfig.TokenCacheTTL)
	_, err = e.get(bearer(ctx, other), "alpha")
	wantReason(t, "revoked elsewhere, after the TTL", err, codes.Unauthenticated, "CREDENTIALS_INVALID")

	// Expired: refused from the expiry on, cache or not.
	resp, err = e.tokens.CreateToken(bearer(ctx, e.admin), &authv1.CreateTokenRequest{
		Role: authv1.Role_ROLE_VIEWER, Tenants: []string{"alpha"}, ExpireTime: timestamppb.New(e.clock.Now().Add(time.Minute)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.get(bearer(ctx, resp.GetSecret()), "alpha"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	_, err = e.get(bearer(ctx, resp.GetSecret()), "alpha")
	wantReason(t, "expired token", err, codes.Unauthenticated, "CREDENTIALS_INVALID")
}

func TestCacheSavesStoreReads(t *testing.T) {
	e := newPublic(t, testAuthConfig)
	tok := e.token(t, authv1.Role_ROLE_VIEWER, "alpha")
	before := e.store.Gets()
	for range 20 {
		if _, err := e.get(bearer(ctxT(t), tok), "alpha"); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.store.Gets() - before; n != 1 {
		t.Fatalf("%d store reads for 20 calls within the TTL, want 1", n)
	}
	// A store that fails is not mistaken for a bad token.
	e.clock.Advance(time.Hour)
	e.store.SetErr(errors.New("connection refused"))
	_, err := e.get(bearer(ctxT(t), tok), "alpha")
	wantReason(t, "store down", err, codes.Unavailable, "STORE_UNAVAILABLE")
}

func TestTenantsAndRoles(t *testing.T) {
	e := newPublic(t, testAuthConfig)
	ctx := ctxT(t)
	viewer := e.token(t, authv1.Role_ROLE_VIEWER, "alpha")
	operator := e.token(t, authv1.Role_ROLE_OPERATOR, "alpha", "beta")
	_, err := e.get(bearer(ctx, viewer), "beta")
	wantReason(t, "another tenant's device", err, codes.PermissionDenied, "TENANT_FORBIDDEN")

	_, err = e.devs.AddTags(bearer(ctx, viewer), &inventoryv1.AddTagsRequest{Tenant: "alpha", Id: "d", Tags: []string{"x"}})
	wantReason(t, "viewer adding tags", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
	info := errorInfo(err)
	if info.GetMetadata()["role"] != "viewer" || info.GetMetadata()["method"] != "/fleetacs.inventory.v1.InventoryService/AddTags" {
		t.Errorf("ROLE_FORBIDDEN metadata %v", info.GetMetadata())
	}
	if _, err := e.devs.AddTags(bearer(ctx, operator), &inventoryv1.AddTagsRequest{Tenant: "beta", Id: "d"}); err != nil {
		t.Errorf("operator adding tags: %v", err)
	}
	_, err = e.devs.DeleteDevice(bearer(ctx, operator), &inventoryv1.DeleteDeviceRequest{Tenant: "alpha", Id: "d"})
	wantReason(t, "operator deleting", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
	_, err = e.devs.AddTags(bearer(ctx, operator), &inventoryv1.AddTagsRequest{Tenant: "gamma", Id: "d"})
	wantReason(t, "operator in another tenant", err, codes.PermissionDenied, "TENANT_FORBIDDEN")
	if _, err := e.devs.DeleteDevice(bearer(ctx, e.admin), &inventoryv1.DeleteDeviceRequest{Tenant: "gamma", Id: "d"}); err != nil {
		t.Errorf("admin of all tenants deleting: %v", err)
	}
	// Several tenants and none named: the handler sees no single tenant.
	if d, err := e.get(bearer(ctx, operator), ""); err != nil || d.GetTenant() != "" {
		t.Errorf("operator of two tenants naming none: %v, %v", d, err)
	}
	_, err = e.tokens.ListTokens(bearer(ctx, operator), &authv1.ListTokensRequest{})
	wantReason(t, "operator listing tokens", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
}

func errorInfo(err error) *errdetails.ErrorInfo {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// TestInternalMethodsOnPublicListener calls internal methods on a public
// listener, even with an admin token: they are not served there, and
// their lack of a role refuses them before any handler could run.
func TestInternalMethodsOnPublicListener(t *testing.T) {
	e := newPublic(t, testAuthConfig)
	cc := dial(t, e.addr, "", plain())
	creds := inventoryv1.NewInventoryInternalServiceClient(cc)
	_, err := creds.GetCpeCredentials(ctxT(t), &inventoryv1.GetCpeCredentialsRequest{Tenant: "default", DeviceKey: "d"})
	wantReason(t, "internal method without a token", err, codes.Unauthenticated, "CREDENTIALS_MISSING")
	_, err = creds.GetCpeCredentials(bearer(ctxT(t), e.admin), &inventoryv1.GetCpeCredentialsRequest{Tenant: "default", DeviceKey: "d"})
	wantReason(t, "internal method with an admin token", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
	_, err = sessionsv1.NewSessionServiceClient(cc).Exchange(bearer(ctxT(t), e.admin), &sessionsv1.ExchangeRequest{
		Auth: &sessionsv1.CpeAuthentication{Method: sessionsv1.CpeAuthMethod_CPE_AUTH_METHOD_DIGEST, Principal: "forged"},
	})
	wantReason(t, "Exchange with a forged auth field", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
	// The same holds when such a service is (wrongly) registered on a
	// public server: the role check refuses it.
	srv := grpc.NewServer(e.auth.ServerOptions()...)
	in := &internals{}
	inventoryv1.RegisterInventoryInternalServiceServer(srv, in)
	cc2 := dial(t, serve(t, srv), "", plain())
	_, err = inventoryv1.NewInventoryInternalServiceClient(cc2).GetCpeCredentials(bearer(ctxT(t), e.admin), &inventoryv1.GetCpeCredentialsRequest{})
	wantReason(t, "internal service registered on a public server", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
	if in.calls.Load() != 0 {
		t.Fatal("internal handler reached through the public interceptors")
	}
}

// TestBruteForce presents invalid tokens from one address until it is
// refused, valid token included, while another address goes on.
func TestBruteForce(t *testing.T) {
	e := newPublic(t, testAuthConfig)
	good := e.token(t, authv1.Role_ROLE_VIEWER, "alpha")
	attacker := inventoryv1.NewInventoryServiceClient(dial(t, e.addr, "127.0.0.2", plain()))
	other := inventoryv1.NewInventoryServiceClient(dial(t, e.addr, "127.0.0.3", plain()))
	get := func(c inventoryv1.InventoryServiceClient, tok string) error {
		_, err := c.GetDevice(bearer(ctxT(t), tok), &inventoryv1.GetDeviceRequest{Tenant: "alpha", Id: "d"})
		return err
	}
	for i := range testAuthConfig.FailureBurst {
		forged, _, _, _ := apiauth.NewToken()
		wantReason(t, "guess "+string(rune('1'+i)), get(attacker, forged), codes.Unauthenticated, "CREDENTIALS_INVALID")
	}
	forged, _, _, _ := apiauth.NewToken()
	err := get(attacker, forged)
	wantReason(t, "guess after the burst", err, codes.ResourceExhausted, "RATE_LIMITED")
	var retry *errdetails.RetryInfo
	for _, d := range status.Convert(err).Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 || retry.GetRetryDelay().AsDuration() > testAuthConfig.FailureInterval {
		t.Fatalf("RetryInfo %v, want a delay up to %s", retry, testAuthConfig.FailureInterval)
	}
	wantReason(t, "valid token from the blocked address", get(attacker, good), codes.ResourceExhausted, "RATE_LIMITED")
	if err := get(other, good); err != nil {
		t.Fatalf("another address: %v", err)
	}
	// One more guess per interval.
	e.clock.Advance(testAuthConfig.FailureInterval)
	if err := get(attacker, good); err != nil {
		t.Fatalf("after one interval: %v", err)
	}
	wantReason(t, "guess after one interval", get(attacker, forged), codes.Unauthenticated, "CREDENTIALS_INVALID")
	wantReason(t, "second guess in the interval", get(attacker, forged), codes.ResourceExhausted, "RATE_LIMITED")
}

// TestOversizedMetadata sends headers far beyond the server's limit: the
// call fails, the server and other calls do not.
func TestOversizedMetadata(t *testing.T) {
	e := newPublic(t, testAuthConfig)
	viewer := e.token(t, authv1.Role_ROLE_VIEWER, "alpha")
	ctx := metadata.AppendToOutgoingContext(bearer(ctxT(t), viewer), "x-junk", strings.Repeat("j", 1<<20))
	if _, err := e.get(ctx, "alpha"); err == nil {
		t.Fatal("a call with 1 MiB of metadata was answered")
	}
	if n := e.inv.calls.Load(); n != 0 {
		t.Fatalf("handler reached %d times", n)
	}
	if _, err := e.get(bearer(ctxT(t), viewer), "alpha"); err != nil {
		t.Fatalf("a normal call after it: %v", err)
	}
}

// TestStreamTenantEveryMessage checks tenants on each message of a stream.
func TestStreamTenantEveryMessage(t *testing.T) {
	e := newPublic(t, testAuthConfig)
	received := make(chan string, 4)
	srv := grpc.NewServer(e.auth.ServerOptions()...)
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "test.Stream", HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{StreamName: "Echo", ClientStreams: true, ServerStreams: true,
			Handler: func(_ any, ss grpc.ServerStream) error {
				if _, ok := apiauth.FromContext(ss.Context()); !ok {
					return errors.New("no principal in the stream's context")
				}
				for {
					var m inventoryv1.GetDeviceRequest
					if err := ss.RecvMsg(&m); err != nil {
						return err
					}
					received <- m.GetTenant()
					if err := ss.SendMsg(&inventoryv1.GetDeviceResponse{}); err != nil {
						return err
					}
				}
			}}},
	}, struct{}{})
	cc := dial(t, serve(t, srv), "", plain())
	viewer := e.token(t, authv1.Role_ROLE_VIEWER, "alpha")
	st, err := cc.NewStream(bearer(ctxT(t), viewer), &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/test.Stream/Echo")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(&inventoryv1.GetDeviceRequest{Tenant: "alpha"}); err != nil {
		t.Fatal(err)
	}
	if err := st.RecvMsg(&inventoryv1.GetDeviceResponse{}); err != nil {
		t.Fatalf("first message: %v", err)
	}
	if err := st.SendMsg(&inventoryv1.GetDeviceRequest{Tenant: "beta"}); err != nil {
		t.Fatal(err)
	}
	err = st.RecvMsg(&inventoryv1.GetDeviceResponse{})
	wantReason(t, "second message in another tenant", err, codes.PermissionDenied, "TENANT_FORBIDDEN")
	if got := <-received; got != "alpha" || len(received) != 0 {
		t.Fatalf("handler received %q and %d more", got, len(received))
	}
}

func TestRequiredRole(t *testing.T) {
	for m, want := range map[string]authv1.Role{
		"/fleetacs.inventory.v1.InventoryService/GetDevice":                 authv1.Role_ROLE_VIEWER,
		"/fleetacs.auth.v1.TokenService/CreateToken":                        authv1.Role_ROLE_ADMIN,
		"/fleetacs.inventory.v1.InventoryInternalService/GetCpeCredentials": authv1.Role_ROLE_UNSPECIFIED,
		"/nope.Service/Method":                                              authv1.Role_ROLE_UNSPECIFIED,
		"garbage":                                                           authv1.Role_ROLE_UNSPECIFIED,
	} {
		if got := apiauth.RequiredRole(m); got != want {
			t.Errorf("RequiredRole(%s) = %v, want %v", m, got, want)
		}
	}
}
