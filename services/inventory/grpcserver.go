package inventory

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/apierror"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// This file is the gRPC edge of the inventory: store sentinels become status
// codes and reasons of the catalogue (proto/errors.md) here and nowhere
// else, and store types become messages.

// apiError and invalidField build the catalogue's errors.
var (
	apiError     = apierror.New
	invalidField = apierror.InvalidField
)

// storeError maps an error of the store on device (tenant, id) to a status.
// Unexpected errors are logged here, with what was being done, and shown to
// the caller without internals.
func (s *Service) storeError(ctx context.Context, action, tenant, id string, err error) error {
	md := map[string]string{"tenant": tenant, "device_id": id}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return apiError(codes.NotFound, errorsv1.ErrorReason_DEVICE_NOT_FOUND, "device not found", md)
	case errors.Is(err, store.ErrStaleFencingToken):
		return apiError(codes.FailedPrecondition, errorsv1.ErrorReason_LEASE_LOST,
			"a newer session holds the device lease", map[string]string{"device_id": id})
	case errors.Is(err, store.ErrInvalidArgument):
		return apiError(codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD, err.Error(), nil)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	s.logger.ErrorContext(ctx, "inventory store call failed", "action", action, "tenant", tenant, "device_id", id, "error", err)
	return apiError(codes.Unavailable, errorsv1.ErrorReason_STORE_UNAVAILABLE, "device store unavailable", nil)
}

func (s *Service) checkReady() error {
	if !s.ready.Load() {
		return apiError(codes.Unavailable, errorsv1.ErrorReason_STORE_UNAVAILABLE, errNotReady.Error(), nil)
	}
	return nil
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// deviceProto converts a device; passwords are never part of it.
func deviceProto(d *store.Device) *inventoryv1.Device {
	out := &inventoryv1.Device{
		Tenant: d.Tenant,
		Id:     d.ID,
		DeviceId: &inventoryv1.DeviceId{Manufacturer: d.DeviceID.Manufacturer, Oui: d.DeviceID.OUI,
			ProductClass: d.DeviceID.ProductClass, SerialNumber: d.DeviceID.SerialNumber},
		DataModelRoot:    d.DataModelRoot,
		SoftwareVersion:  d.SoftwareVersion,
		HardwareVersion:  d.HardwareVersion,
		ProvisioningCode: d.ProvisioningCode,
		ConnectionRequest: &inventoryv1.ConnectionRequest{Url: d.ConnectionRequest.URL,
			UdpAddress: d.ConnectionRequest.UDPAddress, JabberId: d.ConnectionRequest.JabberID},
		Tags:                    d.Tags,
		RegisteredTime:          ts(d.Registered),
		LastInformTime:          ts(d.LastInform),
		LastBootTime:            ts(d.LastBoot),
		LastBootstrapTime:       ts(d.LastBootstrap),
		SessionTakeoverCount:    d.TakeoverCount,
		LastSessionTakeoverTime: ts(d.LastTakeover),
		FullDiscoveryTime:       ts(d.FullDiscovery),
		UpdateTime:              ts(d.Updated),
		PresetsFingerprint:      d.PresetsFingerprint,
	}
	if d.RemoteIP.IsValid() {
		out.RemoteIp = d.RemoteIP.String()
	}
	if c := d.ConnectionRequestCredentials; c != nil {
		out.ConnectionRequest.Username = c.Username
		out.ConnectionRequest.PasswordSet = c.Password != ""
	}
	for _, e := range d.LastEvents {
		out.LastInformEvents = append(out.LastInformEvents, &inventoryv1.InformEvent{Code: e.Code, CommandKey: e.CommandKey})
	}
	if len(d.Params) > 0 {
		paths := make([]string, 0, len(d.Params))
		for p := range d.Params {
			paths = append(paths, p)
		}
		slices.Sort(paths)
		// One allocation for every message; their optional fields point
		// into the device, which the response outlives in no case that
		// matters: the response is marshalled before the handler returns.
		ps := make([]inventoryv1.Parameter, len(paths))
		out.Parameters = make([]*inventoryv1.Parameter, len(paths))
		for i, path := range paths {
			p := d.Params[path]
			m := &ps[i]
			m.Path, m.Type, m.UpdateTime = path, p.Type, ts(p.Updated)
			if p.HasValue {
				v := p.Value
				m.Value = &v
			}
			if b, known := p.Writable.Bool(); known {
				m.Writable = &b
			}
			if n, known := p.Notification.Value(); known {
				u := uint32(n)
				m.Notification = &u
			}
			out.Parameters[i] = m
		}
	}
	return out
}

// readOptions converts a selector: nil asks for no parameters, an empty one
// for the whole tree.
func readOptions(sel *inventoryv1.ParameterSelector) store.ReadOptions {
	if sel == nil {
		return store.ReadOptions{}
	}
	return store.ReadOptions{Params: true, ParamPrefixes: sel.GetPathPrefixes()}
}

func credentials(c *inventoryv1.Credentials) *store.Credentials {
	if c == nil {
		return nil
	}
	return &store.Credentials{Username: c.GetUsername(), Password: c.GetPassword()}
}

func credentialsProto(c *store.Credentials) *inventoryv1.Credentials {
	if c == nil {
		return nil
	}
	return &inventoryv1.Credentials{Username: c.Username, Password: c.Password}
}

// remoteIP parses the Inform's source address. An unparsable one is dropped
// rather than failing a whole session write over a display field.
func remoteIP(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a
}

func cwmpDeviceID(d *inventoryv1.DeviceId) *cwmp.DeviceID {
	if d == nil {
		return nil
	}
	return &cwmp.DeviceID{Manufacturer: d.GetManufacturer(), OUI: d.GetOui(), ProductClass: d.GetProductClass(),
		SerialNumber: d.GetSerialNumber()}
}
