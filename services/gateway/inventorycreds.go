package gateway

import (
	"context"
	"fmt"

	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"google.golang.org/grpc"
)

// CPECredentialsClient is the part of the inventory's internal API the
// gateway calls (inventoryv1.InventoryInternalServiceClient satisfies it).
type CPECredentialsClient interface {
	GetCpeCredentials(ctx context.Context, in *inventoryv1.GetCpeCredentialsRequest, opts ...grpc.CallOption) (*inventoryv1.GetCpeCredentialsResponse, error)
}

// InventoryCredentials is the Credentials adapter over the inventory's
// GetCpeCredentials: one call per authenticated new session (never per
// request of a session, which its cookie or connection authenticates).
type InventoryCredentials struct {
	Client CPECredentialsClient
}

var _ Credentials = InventoryCredentials{}

// CPECredentials implements Credentials.
func (c InventoryCredentials) CPECredentials(ctx context.Context, tenant, deviceKey string) (Credential, bool, error) {
	resp, err := c.Client.GetCpeCredentials(ctx, &inventoryv1.GetCpeCredentialsRequest{Tenant: tenant, DeviceKey: deviceKey})
	if err != nil {
		return Credential{}, false, fmt.Errorf("get CPE credentials of %s/%s: %w", tenant, deviceKey, err)
	}
	cr := resp.GetCredentials()
	if cr == nil {
		return Credential{}, false, nil
	}
	return Credential{Username: cr.GetUsername(), Password: cr.GetPassword()}, true, nil
}
