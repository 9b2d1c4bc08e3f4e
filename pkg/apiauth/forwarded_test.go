package apiauth_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
)

// TestForwardedCalls: the forwarded source counts against the failure
// limiter per HTTP caller on a forwarder connection, and the forwarded
// keys mean nothing on a TCP connection (a caller cannot pick its source
// or pass a certificate it does not hold).
func TestForwardedCalls(t *testing.T) {
	e := newPublic(t, testAuthConfig)
	mem := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(e.auth.ServerOptions()...)
	inventoryv1.RegisterInventoryServiceServer(srv, e.inv)
	go func() { _ = srv.Serve(apiauth.ForwarderListener(mem)) }()
	t.Cleanup(srv.Stop)
	fwd := inventoryv1.NewInventoryServiceClient(dial(t, "mem", "", plain(), grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return mem.DialContext(ctx)
	})))
	good := e.token(t, authv1.Role_ROLE_VIEWER, "alpha")
	get := func(c inventoryv1.InventoryServiceClient, tok, source string, kv ...string) error {
		ctx := ctxT(t)
		if tok != "" {
			ctx = bearer(ctx, tok)
		}
		if source != "" {
			kv = append(kv, apiauth.ForwardedSourceKey, source)
		}
		ctx = metadata.AppendToOutgoingContext(ctx, kv...)
		_, err := c.GetDevice(ctx, &inventoryv1.GetDeviceRequest{Tenant: "alpha", Id: "d"})
		return err
	}
	for range testAuthConfig.FailureBurst {
		forged, _, _, _ := apiauth.NewToken()
		wantReason(t, "forwarded guess", get(fwd, forged, "192.0.2.1"), codes.Unauthenticated, "CREDENTIALS_INVALID")
	}
	wantReason(t, "forwarded caller after the burst", get(fwd, good, "192.0.2.1"), codes.ResourceExhausted, "RATE_LIMITED")
	if err := get(fwd, good, "192.0.2.2"); err != nil {
		t.Fatalf("another forwarded caller: %v", err)
	}
	wantReason(t, "forwarded, no credentials", get(fwd, "", "192.0.2.3"), codes.Unauthenticated, "CREDENTIALS_MISSING")
	wantReason(t, "forwarded, garbage certificate", get(fwd, "", "192.0.2.4", apiauth.ForwardedCertKey, "not DER"), codes.Unauthenticated, "CREDENTIALS_INVALID")

	// Over TCP the keys are ignored: the source is the connection's, and a
	// "forwarded certificate" is no credential.
	tcp := inventoryv1.NewInventoryServiceClient(dial(t, e.addr, "127.0.0.5", plain()))
	for range testAuthConfig.FailureBurst {
		forged, _, _, _ := apiauth.NewToken()
		wantReason(t, "tcp guess", get(tcp, forged, "192.0.2.9"), codes.Unauthenticated, "CREDENTIALS_INVALID")
	}
	wantReason(t, "tcp caller claiming another source", get(tcp, good, "192.0.2.10"), codes.ResourceExhausted, "RATE_LIMITED")
	other := inventoryv1.NewInventoryServiceClient(dial(t, e.addr, "127.0.0.6", plain()))
	wantReason(t, "tcp with a forwarded certificate", get(other, "", "", apiauth.ForwardedCertKey, "x"), codes.Unauthenticated, "CREDENTIALS_MISSING")
}
