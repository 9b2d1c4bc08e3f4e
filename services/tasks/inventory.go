package tasks

import (
	"context"
	"time"

	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
)

// InventoryDevices asks the inventory's internal API whether a device
// exists, as session workers do at a session's start: a device without
// parameters costs the inventory one small read.
type InventoryDevices struct {
	Client inventoryv1.InventoryInternalServiceClient
	// Timeout bounds one call; 0 means 5 seconds.
	Timeout time.Duration
}

var _ Devices = InventoryDevices{}

// Exists implements Devices.
func (d InventoryDevices) Exists(ctx context.Context, tenant, deviceID string) (bool, error) {
	timeout := d.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := d.Client.GetDeviceForSession(ctx, &inventoryv1.GetDeviceForSessionRequest{Tenant: tenant, DeviceKey: deviceID})
	if err != nil {
		return false, err
	}
	return resp.GetDevice() != nil, nil
}
