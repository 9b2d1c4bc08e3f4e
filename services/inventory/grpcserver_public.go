package inventory

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// publicServer implements the public InventoryService. Authentication and
// role checks belong to the interceptors in front of it; it resolves the
// tenant a request names, or the caller's only one.
type publicServer struct {
	inventoryv1.UnimplementedInventoryServiceServer
	s *Service
}

func (p *publicServer) tenant(ctx context.Context, named string) (string, error) {
	if named != "" {
		return named, nil
	}
	if ts := p.s.callerTenants(ctx); len(ts) == 1 {
		return ts[0], nil
	}
	return "", apiError(codes.InvalidArgument, errorsv1.ErrorReason_TENANT_REQUIRED,
		"the request names no tenant and the credentials cover several", nil)
}

func (p *publicServer) key(ctx context.Context, tenant, id string) (string, error) {
	t, err := p.tenant(ctx, tenant)
	if err != nil {
		return "", err
	}
	if err := store.ValidateTenant(t); err != nil {
		return "", invalidField("tenant", err.Error())
	}
	if err := store.ValidateID(id); err != nil {
		return "", invalidField("id", err.Error())
	}
	return t, p.s.checkReady()
}

// GetDevice implements InventoryService.
func (p *publicServer) GetDevice(ctx context.Context, req *inventoryv1.GetDeviceRequest) (*inventoryv1.GetDeviceResponse, error) {
	tenant, err := p.key(ctx, req.GetTenant(), req.GetId())
	if err != nil {
		return nil, err
	}
	d, err := p.s.store.Get(ctx, tenant, req.GetId(), readOptions(req.GetParameters()))
	if err != nil {
		return nil, p.s.storeError(ctx, "get device", tenant, req.GetId(), err)
	}
	return &inventoryv1.GetDeviceResponse{Device: deviceProto(&d)}, nil
}

// ListDevices implements InventoryService.
func (p *publicServer) ListDevices(ctx context.Context, req *inventoryv1.ListDevicesRequest) (*inventoryv1.ListDevicesResponse, error) {
	tenant, err := p.tenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	if err := store.ValidateTenant(tenant); err != nil {
		return nil, invalidField("tenant", err.Error())
	}
	f, err := filterOf(tenant, req.GetFilter())
	if err != nil {
		return nil, err
	}
	if req.GetPageSize() < 0 {
		return nil, invalidField("page_size", "must not be negative")
	}
	bind := requestHash(req)
	cursor, err := decodePageToken(req.GetPageToken(), bind)
	if err != nil {
		return nil, err
	}
	if err := p.s.checkReady(); err != nil {
		return nil, err
	}
	page, err := p.s.store.List(ctx, f, store.PageRequest{Limit: int(req.GetPageSize()), Cursor: cursor}, readOptions(req.GetParameters()))
	if errors.Is(err, store.ErrInvalidArgument) {
		return nil, apiError(codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FILTER, err.Error(), nil)
	}
	if err != nil {
		return nil, p.s.storeError(ctx, "list devices", tenant, "", err)
	}
	out := &inventoryv1.ListDevicesResponse{Devices: make([]*inventoryv1.Device, len(page.Devices))}
	for n := range page.Devices {
		out.Devices[n] = deviceProto(&page.Devices[n])
	}
	if page.Next != "" {
		out.NextPageToken = encodePageToken(page.Next, bind)
	}
	return out, nil
}

func filterOf(tenant string, f *inventoryv1.DeviceFilter) (store.Filter, error) {
	out := store.Filter{Tenant: tenant}
	if f == nil {
		return out, nil
	}
	if len(f.GetIds()) > store.MaxFilterIDs || len(f.GetParameterConditions()) > store.MaxFilterConditions {
		return store.Filter{}, apiError(codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FILTER,
			"a filter names at most 1000 ids and 16 parameter conditions", nil)
	}
	for _, t := range f.GetTags() {
		if err := store.ValidateTag(t); err != nil {
			return store.Filter{}, apiError(codes.InvalidArgument, errorsv1.ErrorReason_INVALID_TAG, err.Error(), map[string]string{"tag": t})
		}
	}
	opt := func(s string) *string {
		if s == "" {
			return nil // empty string fields are ignored
		}
		return &s
	}
	out.IDs = f.GetIds()
	out.Manufacturer, out.OUI, out.ProductClass = opt(f.GetManufacturer()), opt(f.GetOui()), opt(f.GetProductClass())
	out.SerialNumber, out.SoftwareVersion, out.HardwareVersion = opt(f.GetSerialNumber()), opt(f.GetSoftwareVersion()), opt(f.GetHardwareVersion())
	out.Tags = f.GetTags()
	if t := f.GetLastInformAfter(); t != nil {
		out.InformedSince = t.AsTime()
	}
	if t := f.GetLastInformBefore(); t != nil {
		out.InformedBefore = t.AsTime()
	}
	ops := map[inventoryv1.ConditionOperator]store.Op{
		inventoryv1.ConditionOperator_CONDITION_OPERATOR_EQ:         store.OpEq,
		inventoryv1.ConditionOperator_CONDITION_OPERATOR_NE:         store.OpNe,
		inventoryv1.ConditionOperator_CONDITION_OPERATOR_LT:         store.OpLt,
		inventoryv1.ConditionOperator_CONDITION_OPERATOR_GT:         store.OpGt,
		inventoryv1.ConditionOperator_CONDITION_OPERATOR_EXISTS:     store.OpExists,
		inventoryv1.ConditionOperator_CONDITION_OPERATOR_NOT_EXISTS: store.OpNotExists,
		inventoryv1.ConditionOperator_CONDITION_OPERATOR_PREFIX:     store.OpPrefix,
	}
	for _, c := range f.GetParameterConditions() {
		op, ok := ops[c.GetOperator()]
		if !ok {
			return store.Filter{}, apiError(codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FILTER,
				"parameter condition on "+c.GetPath()+": operator "+c.GetOperator().String(), nil)
		}
		out.Params = append(out.Params, store.ParamCondition{Path: c.GetPath(), Op: op, Value: c.GetValue()})
	}
	return out, nil
}

// Page tokens carry the store's cursor and a hash of the request fields
// that select the devices, so that a token is refused with a request it did
// not come from (INVALID_PAGE_TOKEN) instead of paging another listing.
const tokenHashLen = 12

func requestHash(req *inventoryv1.ListDevicesRequest) []byte {
	r := &inventoryv1.ListDevicesRequest{Tenant: req.GetTenant(), Filter: req.GetFilter(), Parameters: req.GetParameters()}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	sum := sha256.Sum256(b)
	return sum[:tokenHashLen]
}

func encodePageToken(cursor string, bind []byte) string {
	return base64.RawURLEncoding.EncodeToString(append(append([]byte(nil), bind...), cursor...))
}

func decodePageToken(token string, bind []byte) (string, error) {
	if token == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) <= tokenHashLen || string(b[:tokenHashLen]) != string(bind) {
		return "", apiError(codes.InvalidArgument, errorsv1.ErrorReason_INVALID_PAGE_TOKEN,
			"page token is malformed or belongs to another request", nil)
	}
	return string(b[tokenHashLen:]), nil
}

// AddTags implements InventoryService.
func (p *publicServer) AddTags(ctx context.Context, req *inventoryv1.AddTagsRequest) (*inventoryv1.AddTagsResponse, error) {
	tags, err := p.changeTags(ctx, req.GetTenant(), req.GetId(), req.GetTags(), true)
	if err != nil {
		return nil, err
	}
	return &inventoryv1.AddTagsResponse{Tags: tags}, nil
}

// RemoveTags implements InventoryService.
func (p *publicServer) RemoveTags(ctx context.Context, req *inventoryv1.RemoveTagsRequest) (*inventoryv1.RemoveTagsResponse, error) {
	tags, err := p.changeTags(ctx, req.GetTenant(), req.GetId(), req.GetTags(), false)
	if err != nil {
		return nil, err
	}
	return &inventoryv1.RemoveTagsResponse{Tags: tags}, nil
}

func (p *publicServer) changeTags(ctx context.Context, tenant, id string, tags []string, add bool) ([]string, error) {
	tenant, err := p.key(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	for _, t := range tags {
		if err := store.ValidateTag(t); err != nil {
			return nil, apiError(codes.InvalidArgument, errorsv1.ErrorReason_INVALID_TAG, err.Error(), map[string]string{"tag": t})
		}
	}
	action := "add tags"
	change := p.s.store.AddTags
	if !add {
		action, change = "remove tags", p.s.store.RemoveTags
	}
	if err := change(ctx, tenant, id, tags...); err != nil {
		return nil, p.s.storeError(ctx, action, tenant, id, err)
	}
	// The resulting tags are read back: a concurrent change may show, which
	// is what the device has now anyway.
	d, err := p.s.store.Get(ctx, tenant, id, store.ReadOptions{})
	if err != nil {
		return nil, p.s.storeError(ctx, action, tenant, id, err)
	}
	if d.Tags == nil {
		d.Tags = []string{}
	}
	return d.Tags, nil
}

// DeleteDevice implements InventoryService.
func (p *publicServer) DeleteDevice(ctx context.Context, req *inventoryv1.DeleteDeviceRequest) (*inventoryv1.DeleteDeviceResponse, error) {
	tenant, err := p.key(ctx, req.GetTenant(), req.GetId())
	if err != nil {
		return nil, err
	}
	if err := p.s.store.Delete(ctx, tenant, req.GetId()); err != nil {
		return nil, p.s.storeError(ctx, "delete device", tenant, req.GetId(), err)
	}
	if p.s.deleted != nil {
		if err := p.s.deleted(ctx, tenant, req.GetId()); err != nil {
			// The device is gone; a retry finds no device and stops at
			// DEVICE_NOT_FOUND, so say what was left behind.
			p.s.logger.ErrorContext(ctx, "device deleted, its preset secrets not", "tenant", tenant, "device_id", req.GetId(), "error", err)
		}
	}
	return &inventoryv1.DeleteDeviceResponse{}, nil
}

// SetCpeCredentials implements InventoryService. The password is never
// logged nor returned.
func (p *publicServer) SetCpeCredentials(ctx context.Context, req *inventoryv1.SetCpeCredentialsRequest) (*inventoryv1.SetCpeCredentialsResponse, error) {
	tenant, err := p.key(ctx, req.GetTenant(), req.GetId())
	if err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, v string }{{"username", req.GetUsername()}, {"password", req.GetPassword()}} {
		if f.v == "" || len(f.v) > store.MaxCredentialLength {
			return nil, invalidField(f.name, fmt.Sprintf("want 1 to %d bytes", store.MaxCredentialLength))
		}
	}
	c := store.Credentials{Username: req.GetUsername(), Password: req.GetPassword()}
	if err := p.s.store.SetCPECredentials(ctx, tenant, req.GetId(), c); err != nil {
		return nil, p.s.storeError(ctx, "set CPE credentials", tenant, req.GetId(), err)
	}
	caller, _ := apiauth.FromContext(ctx)
	p.s.logger.InfoContext(ctx, "per-device CPE credentials set", "tenant", tenant, "device_id", req.GetId(), "principal", caller.ID)
	return &inventoryv1.SetCpeCredentialsResponse{}, nil
}

// SetConnectionRequestCredentials implements InventoryService. The
// password is never logged nor returned. Credentials the device already
// has are stored as its own rather than pending: no session sets them
// again.
func (p *publicServer) SetConnectionRequestCredentials(ctx context.Context, req *inventoryv1.SetConnectionRequestCredentialsRequest) (*inventoryv1.SetConnectionRequestCredentialsResponse, error) {
	tenant, err := p.key(ctx, req.GetTenant(), req.GetId())
	if err != nil {
		return nil, err
	}
	for _, f := range []struct{ name, v string }{{"username", req.GetUsername()}, {"password", req.GetPassword()}} {
		if f.v == "" || len(f.v) > store.MaxCredentialLength {
			return nil, invalidField(f.name, fmt.Sprintf("want 1 to %d bytes", store.MaxCredentialLength))
		}
	}
	c := store.Credentials{Username: req.GetUsername(), Password: req.GetPassword()}
	pending := !req.GetAlreadySet()
	if pending {
		st, err := p.s.store.SessionState(ctx, tenant, req.GetId())
		if err != nil {
			return nil, p.s.storeError(ctx, "set connection-request credentials", tenant, req.GetId(), err)
		}
		if cur := st.ConnectionRequestCredentials; cur != nil && *cur == c {
			pending = false
		}
	}
	if err := p.s.store.SetConnectionRequestCredentials(ctx, tenant, req.GetId(), c, pending); err != nil {
		return nil, p.s.storeError(ctx, "set connection-request credentials", tenant, req.GetId(), err)
	}
	caller, _ := apiauth.FromContext(ctx)
	p.s.logger.InfoContext(ctx, "connection-request credentials set", "tenant", tenant, "device_id", req.GetId(),
		"principal", caller.ID, "pending", pending)
	return &inventoryv1.SetConnectionRequestCredentialsResponse{}, nil
}
