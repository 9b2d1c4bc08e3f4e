package apiauth_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
)

// TestRequesterOnBehalfOf: a trusted service on the internal listener
// names what it acts for (a campaign's runner creating tasks); on the
// public listener the header changes nothing, the credential's principal
// is the requester.
func TestRequesterOnBehalfOf(t *testing.T) {
	server := newInternal(t, apiauth.InternalConfig{}, "127.0.0.1:0")
	if err := server.Load(); err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(server.ServerOptions()...)
	inventoryv1.RegisterInventoryServiceServer(srv, &inventory{})
	cc := dial(t, serve(t, srv), "", server.DialOptions()...)
	internal := inventoryv1.NewInventoryServiceClient(cc)
	requester := func(c inventoryv1.InventoryServiceClient, md ...string) string {
		t.Helper()
		ctx := ctxT(t)
		if len(md) > 0 {
			ctx = metadata.AppendToOutgoingContext(ctx, md...)
		}
		resp, err := c.GetDevice(ctx, &inventoryv1.GetDeviceRequest{Tenant: "default", Id: "d"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetDevice().GetId()
	}
	resp, err := internal.GetDevice(apiauth.OnBehalfOf(ctxT(t), "campaign:c-1"), &inventoryv1.GetDeviceRequest{Tenant: "default", Id: "d"})
	if err != nil || resp.GetDevice().GetId() != "campaign:c-1" {
		t.Fatalf("internal call on behalf of a campaign: %v, %v", resp, err)
	}
	if got := requester(internal); got != "" {
		t.Fatalf("internal call naming nobody: requester %q", got)
	}
	// (gRPC itself refuses control characters in a header.)
	if got := requester(internal, apiauth.OnBehalfOfHeader, strings.Repeat("x", 201)); got != "" {
		t.Errorf("201 bytes: requester %q, want none", got)
	}
	if got := requester(internal, apiauth.OnBehalfOfHeader, "a", apiauth.OnBehalfOfHeader, "b"); got != "" {
		t.Errorf("two values: requester %q, want none", got)
	}

	// Public: the header is the caller's claim, never believed.
	e := newPublic(t, testAuthConfig)
	op := e.token(t, authv1.Role_ROLE_OPERATOR)
	id, _, _ := apiauth.ParseToken(op)
	ctx := apiauth.OnBehalfOf(bearer(ctxT(t), op), "campaign:forged")
	d, err := e.get(ctx, "default")
	if err != nil || d.GetId() != "token:"+id {
		t.Fatalf("public call claiming a campaign: %v, %v", d, err)
	}
}
