package gateway

import (
	"context"
	"net"
	"testing"
	"time"

	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// inventoryFake serves GetCpeCredentials from a map keyed "tenant/key".
type inventoryFake struct {
	inventoryv1.UnimplementedInventoryInternalServiceServer
	devices map[string]*inventoryv1.GetCpeCredentialsResponse
}

func (f *inventoryFake) GetCpeCredentials(_ context.Context, req *inventoryv1.GetCpeCredentialsRequest) (*inventoryv1.GetCpeCredentialsResponse, error) {
	if d, ok := f.devices[req.GetTenant()+"/"+req.GetDeviceKey()]; ok {
		return d, nil
	}
	return &inventoryv1.GetCpeCredentialsResponse{}, nil
}

func TestInventoryCredentials(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	registered := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	inventoryv1.RegisterInventoryInternalServiceServer(srv, &inventoryFake{devices: map[string]*inventoryv1.GetCpeCredentialsResponse{
		"t1/dev1": {Credentials: &inventoryv1.Credentials{Username: "u1", Password: "p1"}, DeviceKnown: true, RegisteredTime: timestamppb.New(registered)},
		"t1/dev2": {DeviceKnown: true, RegisteredTime: timestamppb.New(registered)},
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
	if d, err := c.CPECredentials(ctx, "t1", "dev1"); err != nil || d.Own == nil || *d.Own != (Credential{Username: "u1", Password: "p1"}) ||
		!d.Known || !d.Registered.Equal(registered) {
		t.Fatalf("device with credentials: %+v %v", d, err)
	}
	if d, err := c.CPECredentials(ctx, "t1", "dev2"); err != nil || d.Own != nil || !d.Known || !d.Registered.Equal(registered) {
		t.Fatalf("known device without credentials: %+v %v", d, err)
	}
	if d, err := c.CPECredentials(ctx, "t2", "dev1"); err != nil || d.Own != nil || d.Known || !d.Registered.IsZero() {
		t.Fatalf("other tenant: %+v %v", d, err)
	}
	srv.Stop()
	if _, err := c.CPECredentials(ctx, "t1", "dev1"); err == nil {
		t.Fatal("no error with the inventory down")
	}
}
