package sessions

import (
	"context"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
)

// maxTreeMessage bounds the inventory messages this adapter sends and
// accepts: whole parameter trees pass gRPC's 4 MiB default (the inventory
// API's doc measures about 110 bytes per parameter).
const maxTreeMessage = 64 << 20

// GRPCInventory is the Inventory port over
// fleetacs.inventory.v1.InventoryInternalService.
type GRPCInventory struct {
	c inventoryv1.InventoryInternalServiceClient
}

var _ Inventory = (*GRPCInventory)(nil)

// NewGRPCInventory returns the adapter over a connection to the inventory
// service (in-process or remote).
func NewGRPCInventory(cc grpc.ClientConnInterface) *GRPCInventory {
	return &GRPCInventory{c: inventoryv1.NewInventoryInternalServiceClient(cc)}
}

var treeCallOptions = []grpc.CallOption{grpc.MaxCallRecvMsgSize(maxTreeMessage), grpc.MaxCallSendMsgSize(maxTreeMessage)}

// GetDeviceForSession implements Inventory.
func (g *GRPCInventory) GetDeviceForSession(ctx context.Context, q DeviceQuery) (DeviceState, error) {
	req := &inventoryv1.GetDeviceForSessionRequest{Tenant: q.Tenant, DeviceKey: q.DeviceKey}
	if q.WithParameters {
		req.Parameters = &inventoryv1.ParameterSelector{PathPrefixes: q.Prefixes}
	}
	resp, err := g.c.GetDeviceForSession(ctx, req, treeCallOptions...)
	if err != nil {
		return DeviceState{}, fmt.Errorf("get device %s for session: %w", q.DeviceKey, err)
	}
	st := DeviceState{LastFencingToken: resp.GetLastFencingToken(), ConnectionRequest: crStateOf(resp), PresetsFingerprint: resp.GetPresetsFingerprint()}
	dev := resp.GetDevice()
	if dev == nil {
		return st, nil
	}
	st.Known = true
	st.DataModelRoot = dev.GetDataModelRoot()
	st.Tags = dev.GetTags()
	if t := dev.GetFullDiscoveryTime(); t != nil {
		st.FullDiscoveryTime = t.AsTime()
	}
	if ps := dev.GetParameters(); len(ps) > 0 {
		st.Parameters = make([]Parameter, len(ps))
		for i, p := range ps {
			st.Parameters[i] = Parameter{
				Path: p.GetPath(), Value: p.GetValue(), Type: p.GetType(), HasValue: p.Value != nil,
				Writable: p.GetWritable(), HasWritable: p.Writable != nil,
			}
		}
	}
	return st, nil
}

// DiscoveryProfile implements Inventory.
func (g *GRPCInventory) DiscoveryProfile(ctx context.Context, c ProductClass) (DiscoveryProfile, error) {
	resp, err := g.c.GetDiscoveryProfile(ctx, &inventoryv1.GetDiscoveryProfileRequest{Tenant: c.Tenant, Oui: c.OUI, ProductClass: c.ProductClass})
	if err != nil {
		return DiscoveryProfile{}, fmt.Errorf("get discovery profile of %s/%s: %w", c.OUI, c.ProductClass, err)
	}
	return profileOf(resp.GetProfile()), nil
}

// RecordDiscovery implements Inventory.
func (g *GRPCInventory) RecordDiscovery(ctx context.Context, c ProductClass, o DiscoveryObservation) error {
	_, err := g.c.RecordDiscovery(ctx, &inventoryv1.RecordDiscoveryRequest{
		Tenant: c.Tenant, Oui: c.OUI, ProductClass: c.ProductClass,
		GpvBatchOk: uint32(max(o.GPVBatchOK, 0)), GpvBatchFailed: uint32(max(o.GPVBatchFailed, 0)), SubtreeGpnFailed: o.SubtreeGPNFailed,
	})
	if err != nil {
		return fmt.Errorf("record discovery of %s/%s: %w", c.OUI, c.ProductClass, err)
	}
	return nil
}

func profileOf(p *inventoryv1.DiscoveryProfile) DiscoveryProfile {
	return DiscoveryProfile{
		GPVBatchOK: int(p.GetGpvBatchOk()), GPVBatchFailed: int(p.GetGpvBatchFailed()), SubtreeGPNFailed: p.GetSubtreeGpnFailed(),
	}
}

// RecordSession implements Inventory. A FAILED_PRECONDITION carrying the
// LEASE_LOST reason becomes ErrLeaseLost.
func (g *GRPCInventory) RecordSession(ctx context.Context, d *Diff) error {
	_, err := g.c.RecordSession(ctx, recordRequest(d), treeCallOptions...)
	if err == nil {
		return nil
	}
	if isLeaseLost(err) {
		return fmt.Errorf("record session %s of device %s: %w", d.SessionID, d.DeviceKey, ErrLeaseLost)
	}
	return fmt.Errorf("record session %s of device %s: %w", d.SessionID, d.DeviceKey, err)
}

// isLeaseLost tells the inventory's fencing refusal by its ErrorInfo reason,
// as the error catalogue asks clients to (proto/errors.md).
func isLeaseLost(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == errorsv1.ErrorReason_LEASE_LOST.String() {
			return true
		}
	}
	return false
}

func recordRequest(d *Diff) *inventoryv1.RecordSessionRequest {
	req := &inventoryv1.RecordSessionRequest{
		Tenant: d.Tenant, DeviceKey: d.DeviceKey, FencingToken: d.FencingToken, SessionId: d.SessionID,
		ObserveTime:     timestamppb.New(d.ObserveTime),
		DeviceId:        deviceIDProto(d.DeviceID),
		RemovedPaths:    d.RemovedPaths,
		SessionTakeover: d.SessionTakeover,
		Fields: &inventoryv1.DeviceFields{
			DataModelRoot: d.Fields.DataModelRoot, SoftwareVersion: d.Fields.SoftwareVersion,
			HardwareVersion: d.Fields.HardwareVersion, ProvisioningCode: d.Fields.ProvisioningCode,
			ConnectionRequestUrl:        d.Fields.ConnectionRequestURL,
			UdpConnectionRequestAddress: d.Fields.UDPConnectionRequestAddress,
			JabberId:                    d.Fields.JabberID,
		},
	}
	if inf := d.Inform; inf != nil {
		rec := &inventoryv1.InformRecord{Time: timestamppb.New(inf.Time), RemoteIp: inf.RemoteIP, RetryCount: inf.RetryCount}
		rec.Events = make([]*inventoryv1.InformEvent, len(inf.Events))
		for i, e := range inf.Events {
			rec.Events[i] = &inventoryv1.InformEvent{Code: e.Code, CommandKey: e.CommandKey}
		}
		req.Inform = rec
	}
	if !d.FullDiscoveryTime.IsZero() {
		req.FullDiscoveryTime = timestamppb.New(d.FullDiscoveryTime)
	}
	req.PresetsFingerprint = d.PresetsFingerprint
	req.AddTags, req.RemoveTags = d.AddTags, d.RemoveTags
	if cr := d.ConnectionRequest; cr != nil {
		if c := cr.Set; c != nil {
			req.ConnectionRequestCredentials = &inventoryv1.Credentials{Username: c.Username, Password: c.Password}
			if !cr.PendingTime.IsZero() {
				req.ConnectionRequestPendingTime = timestamppb.New(cr.PendingTime)
			}
		}
		if !cr.RefusedTime.IsZero() {
			req.ConnectionRequestRefusedTime = timestamppb.New(cr.RefusedTime)
		}
	}
	// One allocation for all parameters, and their optional fields point
	// into the diff, which outlives the call.
	ps := make([]inventoryv1.Parameter, len(d.Parameters))
	req.Parameters = make([]*inventoryv1.Parameter, len(d.Parameters))
	for i := range d.Parameters {
		p := &d.Parameters[i]
		ps[i].Path, ps[i].Type = p.Path, p.Type
		if p.HasValue {
			ps[i].Value = &p.Value
		}
		if p.HasWritable {
			ps[i].Writable = &p.Writable
		}
		req.Parameters[i] = &ps[i]
	}
	return req
}

func deviceIDProto(id cwmp.DeviceID) *inventoryv1.DeviceId {
	return &inventoryv1.DeviceId{Manufacturer: id.Manufacturer, Oui: id.OUI, ProductClass: id.ProductClass, SerialNumber: id.SerialNumber}
}

// crStateOf reads the connection-request credentials of a
// GetDeviceForSession response.
func crStateOf(resp *inventoryv1.GetDeviceForSessionResponse) CRState {
	var st CRState
	if c := resp.GetConnectionRequestCredentials(); c != nil {
		st.Current = &CRCredentials{Username: c.GetUsername(), Password: c.GetPassword()}
	}
	if c := resp.GetPendingConnectionRequestCredentials(); c != nil {
		st.Pending = &CRCredentials{Username: c.GetUsername(), Password: c.GetPassword()}
		if t := resp.GetPendingConnectionRequestTime(); t != nil {
			st.PendingTime = t.AsTime()
		}
	}
	if t := resp.GetConnectionRequestRefusedTime(); t != nil {
		st.RefusedTime = t.AsTime()
	}
	return st
}
