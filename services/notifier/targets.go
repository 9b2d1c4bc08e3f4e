package notifier

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
)

// GRPCTargets reads targets from the inventory's internal API
// (GetConnectionRequestTarget).
type GRPCTargets struct {
	Client inventoryv1.InventoryInternalServiceClient
}

var _ Targets = GRPCTargets{}

// NewGRPCTargets returns Targets over an inventory connection.
func NewGRPCTargets(cc grpc.ClientConnInterface) GRPCTargets {
	return GRPCTargets{Client: inventoryv1.NewInventoryInternalServiceClient(cc)}
}

// Target implements Targets.
func (g GRPCTargets) Target(ctx context.Context, tenant, device string) (Target, error) {
	resp, err := g.Client.GetConnectionRequestTarget(ctx, &inventoryv1.GetConnectionRequestTargetRequest{Tenant: tenant, DeviceKey: device})
	if status.Code(err) == codes.NotFound {
		return Target{}, ErrDeviceNotFound
	}
	if err != nil {
		return Target{}, err
	}
	cr := resp.GetConnectionRequest()
	t := Target{URL: cr.GetUrl(), UDPAddress: cr.GetUdpAddress(), RemoteIP: resp.GetRemoteIp()}
	if lt := resp.GetLastInformTime(); lt != nil {
		t.LastInform = lt.AsTime()
	}
	if c := resp.GetCredentials(); c != nil && (c.GetUsername() != "" || c.GetPassword() != "") {
		t.Username, t.Password, t.HasCredentials = c.GetUsername(), c.GetPassword(), true
	}
	return t, nil
}
