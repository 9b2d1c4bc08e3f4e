package inventory

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/apiauth/apiauthtest"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"github.com/fleetacs/fleetacs/services/inventory/store/sqlitestore"
)

// tokenServer runs the inventory on a real SQLite store behind a gRPC
// server on a loopback TCP port, and returns the service, its store and a
// connection to its internal API. opts.Tokens is set to the store unless
// noTokens.
func tokenServer(t *testing.T, opts Options, noTokens bool) (*Service, *sqlitestore.Store, *grpc.ClientConn) {
	t.Helper()
	st := sqlitestore.New(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "inventory.db")})
	if !noTokens {
		opts.Tokens = st
	}
	svc := New(st, opts)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	svc.RegisterInternal(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	runCtx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- svc.Run(runCtx) }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cc.Close()
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		stop()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return svc, st, cc
}

// TestTokenClient runs the TokenReader suite on TokenClient against a real
// inventory gRPC server.
func TestTokenClient(t *testing.T) {
	apiauthtest.RunReader(t, func(t *testing.T) (apiauth.TokenStore, apiauth.TokenReader) {
		_, st, cc := tokenServer(t, Options{}, false)
		return st, NewTokenClient(cc)
	})
}

// TestTokenClientVerifies serves the public InventoryService behind an
// authenticator that reads tokens through TokenClient (no cache: TTL 0):
// a token the inventory's store holds authenticates, a revoked one, an
// unknown one and garbage do not.
func TestTokenClientVerifies(t *testing.T) {
	svc, st, cc := tokenServer(t, Options{CallerTenants: apiauth.CallerTenants}, false)
	auth := apiauth.NewAuthenticator(apiauth.Config{}, apiauth.Options{Tokens: NewTokenClient(cc)})
	pub := grpc.NewServer(auth.ServerOptions()...)
	svc.RegisterPublic(pub)
	client := inventoryv1.NewInventoryServiceClient(testenv.GRPCConn(t, pub))
	list := func(token string) error {
		ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token)
		_, err := client.ListDevices(ctx, &inventoryv1.ListDevicesRequest{Tenant: "acme"})
		return err
	}

	token, id, hash, err := apiauth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rec := apiauth.TokenRecord{ID: id, Hash: hash, Name: "t", Role: authv1.Role_ROLE_VIEWER, Tenants: []string{"acme"}, Created: now}
	if err := st.CreateToken(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	if err := list(token); err != nil {
		t.Fatalf("ListDevices with a valid token: %v", err)
	}
	unknown, _, _, err := apiauth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret := token[:len(token)-4] + "AAAA"
	if wrongSecret == token {
		wrongSecret = token[:len(token)-4] + "BBBB"
	}
	for name, tok := range map[string]string{"unknown": unknown, "garbage": "fat_nope", "wrong secret": wrongSecret} {
		if err := list(tok); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("%s token: %v, want UNAUTHENTICATED", name, err)
		}
	}
	if _, err := st.RevokeToken(t.Context(), id, now); err != nil {
		t.Fatal(err)
	}
	if err := list(token); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("revoked token: %v, want UNAUTHENTICATED", err)
	}
}

// TestGetTokenRefuses covers GetToken's bad input, an unknown id and an
// inventory without tokens.
func TestGetTokenRefuses(t *testing.T) {
	_, _, cc := tokenServer(t, Options{}, false)
	c := inventoryv1.NewInventoryInternalServiceClient(cc)
	for _, id := range []string{"", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0", "fat_0123456789abcdef", "0123456789abcdeg"} {
		_, err := c.GetToken(t.Context(), &inventoryv1.GetTokenRequest{Id: id})
		wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
	}
	_, err := c.GetToken(t.Context(), &inventoryv1.GetTokenRequest{Id: "0123456789abcdef"})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_TOKEN_NOT_FOUND)

	// An inventory that keeps no tokens: UNIMPLEMENTED, which the client
	// reports as an error (the call fails UNAVAILABLE), not as an unknown
	// token.
	_, _, none := tokenServer(t, Options{}, true)
	_, err = inventoryv1.NewInventoryInternalServiceClient(none).GetToken(t.Context(), &inventoryv1.GetTokenRequest{Id: "0123456789abcdef"})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("GetToken without tokens: %v, want UNIMPLEMENTED", err)
	}
	if _, err := NewTokenClient(none).GetToken(t.Context(), "0123456789abcdef"); err == nil || errors.Is(err, apiauth.ErrTokenNotFound) {
		t.Fatalf("TokenClient on an inventory without tokens: %v, want an error other than ErrTokenNotFound", err)
	}
}
