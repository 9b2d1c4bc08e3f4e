package gateway

import (
	"context"
	"net"
	"testing"

	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// inventoryFake serves GetCpeCredentials from a map keyed "tenant/key".
type inventoryFake struct {
	inventoryv1.UnimplementedInventoryInternalServiceServer
	creds map[string]*inventoryv1.Credentials
}

func (f *inventoryFake) GetCpeCredentials(_ context.Context, req *inventoryv1.GetCpeCredentialsRequest) (*inventoryv1.GetCpeCredentialsResponse, error) {
	return &inventoryv1.GetCpeCredentialsResponse{Credentials: f.creds[req.GetTenant()+"/"+req.GetDeviceKey()]}, nil
}

func TestInventoryCredentials(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	inventoryv1.RegisterInventoryInternalServiceServer(srv, &inventoryFake{creds: map[string]*inventoryv1.Credentials{
		"t1/dev1": {Username: "u1", Password: "p1"},
	}})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := InventoryCredentials{Client: inventoryv1.NewInventoryInternalServiceClient(conn)}
	ctx := context.Background()
	if cr, ok, err := c.CPECredentials(ctx, "t1", "dev1"); err != nil || !ok || cr != (Credential{Username: "u1", Password: "p1"}) {
		t.Fatalf("known device: %+v %v %v", cr, ok, err)
	}
	if _, ok, err := c.CPECredentials(ctx, "t2", "dev1"); err != nil || ok {
		t.Fatalf("other tenant: %v %v", ok, err)
	}
	srv.Stop()
	if _, _, err := c.CPECredentials(ctx, "t1", "dev1"); err == nil {
		t.Fatal("no error with the inventory down")
	}
}
