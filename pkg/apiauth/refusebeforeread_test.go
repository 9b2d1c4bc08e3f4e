package apiauth_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
)

// refusedBeforeRequest opens a call of a unary method and sends its
// headers but never its request message, then reads the answer: a server
// that refuses the call on its headers answers at once; one that reads the
// request first (up to its receive limit, before any interceptor runs)
// waits for it until the deadline.
func refusedBeforeRequest(t *testing.T, ctx context.Context, cc *grpc.ClientConn, method string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method)
	if err != nil {
		return err
	}
	return st.RecvMsg(&inventoryv1.GetDeviceResponse{})
}

// TestPublicRefusesBeforeReadingRequest: a call without credentials, or
// from a source the failure limiter blocks, is refused on its headers,
// so that no one without a credential makes the server read and decode
// a request (docs/security.md, "Guessing tokens").
func TestPublicRefusesBeforeReadingRequest(t *testing.T) {
	e := newPublic(t, testAuthConfig)
	cc := dial(t, e.addr, "127.0.0.2", plain())
	const get = "/fleetacs.inventory.v1.InventoryService/GetDevice"
	wantReason(t, "call without credentials, request unsent",
		refusedBeforeRequest(t, ctxBG, cc, get), codes.Unauthenticated, "CREDENTIALS_MISSING")

	devs := inventoryv1.NewInventoryServiceClient(cc)
	for range testAuthConfig.FailureBurst {
		forged, _, _, _ := apiauth.NewToken()
		_, err := devs.GetDevice(bearer(ctxT(t), forged), &inventoryv1.GetDeviceRequest{Tenant: "alpha", Id: "d"})
		wantReason(t, "guess", err, codes.Unauthenticated, "CREDENTIALS_INVALID")
	}
	good := e.token(t, authv1.Role_ROLE_VIEWER, "alpha")
	wantReason(t, "call from a blocked source, request unsent",
		refusedBeforeRequest(t, bearer(ctxBG, good), cc, get), codes.ResourceExhausted, "RATE_LIMITED")
	if n := e.inv.calls.Load(); n != 0 {
		t.Fatalf("handler reached %d times", n)
	}
}

// TestInternalRefusesBeforeReadingRequest: an internal call without the
// internal token is refused on its headers, before its request is read.
func TestInternalRefusesBeforeReadingRequest(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef-shared"
	in := newInternal(t, apiauth.InternalConfig{TokenFile: tokenFile(t, secret)}, "127.0.0.1:0")
	addr, h := internalServer(t, in)
	cc := dial(t, addr, "", plain())
	const method = "/fleetacs.inventory.v1.InventoryInternalService/GetCpeCredentials"
	wantReason(t, "internal call without the token, request unsent",
		refusedBeforeRequest(t, ctxBG, cc, method), codes.Unauthenticated, "CREDENTIALS_MISSING")
	wrong := metadata.AppendToOutgoingContext(ctxBG, apiauth.InternalTokenHeader, "0123456789abcdef0123456789abcdef-wrong")
	wantReason(t, "internal call with a wrong token, request unsent",
		refusedBeforeRequest(t, wrong, cc, method), codes.Unauthenticated, "CREDENTIALS_INVALID")
	if n := h.calls.Load(); n != 0 {
		t.Fatalf("handler reached %d times", n)
	}
}

// TestHealthWatchNeedsCredentials: health Check answers anyone (probes),
// but Watch, a stream held open as long as the caller likes, does not:
// without credentials, anyone who reaches a listener could open any
// number of them.
func TestHealthWatchNeedsCredentials(t *testing.T) {
	e := newPublic(t, testAuthConfig)
	watch := func(cc *grpc.ClientConn, ctx context.Context) error {
		st, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}
	cc := dial(t, e.addr, "", plain())
	if _, err := healthpb.NewHealthClient(cc).Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("public health Check without credentials: %v", err)
	}
	wantReason(t, "public health Watch without credentials", watch(cc, ctxT(t)), codes.Unauthenticated, "CREDENTIALS_MISSING")

	const secret = "0123456789abcdef0123456789abcdef-shared"
	in := newInternal(t, apiauth.InternalConfig{TokenFile: tokenFile(t, secret)}, "127.0.0.1:0")
	addr, _ := internalServer(t, in)
	icc := dial(t, addr, "", plain())
	if _, err := healthpb.NewHealthClient(icc).Check(ctxT(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("internal health Check without the token: %v", err)
	}
	wantReason(t, "internal health Watch without the token", watch(icc, ctxT(t)), codes.Unauthenticated, "CREDENTIALS_MISSING")
	if err := watch(icc, metadata.AppendToOutgoingContext(ctxT(t), apiauth.InternalTokenHeader, secret)); err != nil {
		t.Fatalf("internal health Watch with the token: %v", err)
	}
}
