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
func (c InventoryCredentials) CPECredentials(ctx context.Context, tenant, deviceKey string) (DeviceCredentials, error) {
	resp, err := c.Client.GetCpeCredentials(ctx, &inventoryv1.GetCpeCredentialsRequest{Tenant: tenant, DeviceKey: deviceKey})
	if err != nil {
		return DeviceCredentials{}, fmt.Errorf("get CPE credentials of %s/%s: %w", tenant, deviceKey, err)
	}
	d := DeviceCredentials{Known: resp.GetDeviceKnown()}
	if t := resp.GetRegisteredTime(); t != nil {
		d.Registered = t.AsTime()
	}
	if cr := resp.GetCredentials(); cr != nil {
		d.Own = &Credential{Username: cr.GetUsername(), Password: cr.GetPassword()}
	}
	return d, nil
}
