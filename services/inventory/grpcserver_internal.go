package inventory

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"github.com/fleetacs/fleetacs/services/inventory/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// internalServer implements InventoryInternalService for session workers,
// gateways and the notifier. Tenants are always explicit here.
type internalServer struct {
	inventoryv1.UnimplementedInventoryInternalServiceServer
	s *Service
}

func internalKey(tenant, key string) error {
	if tenant == "" {
		return invalidField("tenant", "required")
	}
	if key == "" {
		return invalidField("device_key", "required")
	}
	return nil
}

// GetDeviceForSession implements InventoryInternalService.
func (i *internalServer) GetDeviceForSession(ctx context.Context, req *inventoryv1.GetDeviceForSessionRequest) (*inventoryv1.GetDeviceForSessionResponse, error) {
	if err := internalKey(req.GetTenant(), req.GetDeviceKey()); err != nil {
		return nil, err
	}
	if err := i.s.checkReady(); err != nil {
		return nil, err
	}
	if req.GetParameters() == nil {
		return i.sessionState(ctx, req)
	}
	d, err := i.s.store.Get(ctx, req.GetTenant(), req.GetDeviceKey(), readOptions(req.GetParameters()))
	if errors.Is(err, store.ErrNotFound) {
		return &inventoryv1.GetDeviceForSessionResponse{}, nil // a first contact
	}
	if err != nil {
		return nil, i.s.storeError(ctx, "get device for session", req.GetTenant(), req.GetDeviceKey(), err)
	}
	return &inventoryv1.GetDeviceForSessionResponse{
		Device:                              deviceProto(&d),
		ConnectionRequestCredentials:        credentialsProto(d.ConnectionRequestCredentials),
		LastFencingToken:                    d.FencingToken,
		PendingConnectionRequestCredentials: credentialsProto(d.PendingConnectionRequestCredentials),
		PendingConnectionRequestTime:        ts(d.PendingConnectionRequestTime),
		ConnectionRequestRefusedTime:        ts(d.ConnectionRequestRefused),
		PresetsFingerprint:                  d.PresetsFingerprint,
	}, nil
}

// sessionState answers a GetDeviceForSession without a parameter selector,
// the start of most sessions, from store.SessionState: the device carries
// its tenant, id, data_model_root, full_discovery_time and tags, which is
// all a session starts from (see the RPC's documentation).
func (i *internalServer) sessionState(ctx context.Context, req *inventoryv1.GetDeviceForSessionRequest) (*inventoryv1.GetDeviceForSessionResponse, error) {
	st, err := i.s.store.SessionState(ctx, req.GetTenant(), req.GetDeviceKey())
	if errors.Is(err, store.ErrNotFound) {
		return &inventoryv1.GetDeviceForSessionResponse{}, nil // a first contact
	}
	if err != nil {
		return nil, i.s.storeError(ctx, "get device for session", req.GetTenant(), req.GetDeviceKey(), err)
	}
	dev := &inventoryv1.Device{Tenant: req.GetTenant(), Id: req.GetDeviceKey(), DataModelRoot: st.DataModelRoot, Tags: st.Tags}
	if !st.FullDiscovery.IsZero() {
		dev.FullDiscoveryTime = timestamppb.New(st.FullDiscovery)
	}
	return &inventoryv1.GetDeviceForSessionResponse{
		Device:                              dev,
		ConnectionRequestCredentials:        credentialsProto(st.ConnectionRequestCredentials),
		LastFencingToken:                    st.FencingToken,
		PendingConnectionRequestCredentials: credentialsProto(st.PendingConnectionRequestCredentials),
		PendingConnectionRequestTime:        ts(st.PendingConnectionRequestTime),
		ConnectionRequestRefusedTime:        ts(st.ConnectionRequestRefused),
		PresetsFingerprint:                  st.PresetsFingerprint,
	}, nil
}

// RecordSession implements InventoryInternalService.
func (i *internalServer) RecordSession(ctx context.Context, req *inventoryv1.RecordSessionRequest) (*inventoryv1.RecordSessionResponse, error) {
	if err := internalKey(req.GetTenant(), req.GetDeviceKey()); err != nil {
		return nil, err
	}
	if req.GetFencingToken() == 0 {
		return nil, invalidField("fencing_token", "must be greater than zero")
	}
	if req.GetObserveTime() == nil {
		return nil, invalidField("observe_time", "required")
	}
	d, err := diffOf(req)
	if err != nil {
		return nil, err
	}
	if err := i.s.checkReady(); err != nil {
		return nil, err
	}
	created, err := i.s.store.ApplySessionDiff(ctx, req.GetTenant(), req.GetDeviceKey(), d, req.GetFencingToken())
	if err != nil {
		return nil, i.s.storeError(ctx, "record session", req.GetTenant(), req.GetDeviceKey(), err)
	}
	return &inventoryv1.RecordSessionResponse{Created: created}, nil
}

// diffOf converts a RecordSessionRequest.
func diffOf(req *inventoryv1.RecordSessionRequest) (store.Diff, error) {
	d := store.Diff{
		Time:                         req.GetObserveTime().AsTime(),
		SessionID:                    req.GetSessionId(),
		DeviceID:                     cwmpDeviceID(req.GetDeviceId()),
		DeletePaths:                  req.GetRemovedPaths(),
		ConnectionRequestCredentials: credentials(req.GetConnectionRequestCredentials()),
		CPECredentials:               credentials(req.GetCpeCredentials()),
		SessionTakeover:              req.GetSessionTakeover(),
		PresetsFingerprint:           req.PresetsFingerprint,
		AddTags:                      req.GetAddTags(),
		RemoveTags:                   req.GetRemoveTags(),
	}
	if t := req.GetFullDiscoveryTime(); t != nil {
		d.FullDiscovery = t.AsTime()
	}
	if t := req.GetConnectionRequestPendingTime(); t != nil {
		d.ConnectionRequestPendingTime = t.AsTime()
	}
	if t := req.GetConnectionRequestRefusedTime(); t != nil {
		d.ConnectionRequestRefused = t.AsTime()
	}
	if in := req.GetInform(); in != nil {
		d.Inform = &store.Inform{RemoteIP: remoteIP(in.GetRemoteIp())}
		if t := in.GetTime(); t != nil {
			d.Inform.Time = t.AsTime()
		}
		for _, e := range in.GetEvents() {
			d.Inform.Events = append(d.Inform.Events, cwmp.Event{Code: e.GetCode(), CommandKey: e.GetCommandKey()})
		}
	}
	if f := req.GetFields(); f != nil {
		d.Fields = store.Fields{
			DataModelRoot:               f.DataModelRoot,
			SoftwareVersion:             f.SoftwareVersion,
			HardwareVersion:             f.HardwareVersion,
			ProvisioningCode:            f.ProvisioningCode,
			ConnectionRequestURL:        f.ConnectionRequestUrl,
			UDPConnectionRequestAddress: f.UdpConnectionRequestAddress,
			JabberID:                    f.JabberId,
		}
	}
	d.Params = make([]store.ParamUpdate, len(req.GetParameters()))
	for n, p := range req.GetParameters() {
		u := store.ParamUpdate{Path: p.GetPath()}
		if p.Value != nil {
			u.HasValue, u.Value, u.Type = true, p.GetValue(), p.GetType()
		}
		if p.Writable != nil {
			u.Writable = store.TriOf(p.GetWritable())
		}
		if p.Notification != nil {
			if p.GetNotification() > store.MaxNotification {
				return store.Diff{}, invalidField("parameters.notification", "above "+strconv.Itoa(store.MaxNotification))
			}
			u.Notification = store.NotificationOf(int(p.GetNotification()))
		}
		d.Params[n] = u
	}
	return d, nil
}

// GetCpeCredentials implements InventoryInternalService.
func (i *internalServer) GetCpeCredentials(ctx context.Context, req *inventoryv1.GetCpeCredentialsRequest) (*inventoryv1.GetCpeCredentialsResponse, error) {
	if err := internalKey(req.GetTenant(), req.GetDeviceKey()); err != nil {
		return nil, err
	}
	if err := i.s.checkReady(); err != nil {
		return nil, err
	}
	d, err := i.s.store.Get(ctx, req.GetTenant(), req.GetDeviceKey(), store.ReadOptions{})
	if errors.Is(err, store.ErrNotFound) {
		return &inventoryv1.GetCpeCredentialsResponse{}, nil
	}
	if err != nil {
		return nil, i.s.storeError(ctx, "get CPE credentials", req.GetTenant(), req.GetDeviceKey(), err)
	}
	resp := &inventoryv1.GetCpeCredentialsResponse{Credentials: credentialsProto(d.CPECredentials), DeviceKnown: true}
	if !d.Registered.IsZero() {
		resp.RegisteredTime = timestamppb.New(d.Registered)
	}
	return resp, nil
}

// GetConnectionRequestTarget implements InventoryInternalService.
func (i *internalServer) GetConnectionRequestTarget(ctx context.Context, req *inventoryv1.GetConnectionRequestTargetRequest) (*inventoryv1.GetConnectionRequestTargetResponse, error) {
	if err := internalKey(req.GetTenant(), req.GetDeviceKey()); err != nil {
		return nil, err
	}
	if err := i.s.checkReady(); err != nil {
		return nil, err
	}
	d, err := i.s.store.Get(ctx, req.GetTenant(), req.GetDeviceKey(), store.ReadOptions{})
	if err != nil {
		return nil, i.s.storeError(ctx, "get connection request target", req.GetTenant(), req.GetDeviceKey(), err)
	}
	dp := deviceProto(&d)
	out := &inventoryv1.GetConnectionRequestTargetResponse{
		ConnectionRequest: dp.GetConnectionRequest(),
		Credentials:       credentialsProto(d.ConnectionRequestCredentials),
		RemoteIp:          dp.GetRemoteIp(),
		LastInformTime:    dp.GetLastInformTime(),
	}
	return out, nil
}

// GetDiscoveryProfile implements InventoryInternalService.
func (i *internalServer) GetDiscoveryProfile(ctx context.Context, req *inventoryv1.GetDiscoveryProfileRequest) (*inventoryv1.GetDiscoveryProfileResponse, error) {
	c, err := productClassOf(req.GetTenant(), req.GetOui(), req.GetProductClass())
	if err != nil {
		return nil, err
	}
	if err := i.s.checkReady(); err != nil {
		return nil, err
	}
	p, err := i.s.store.DiscoveryProfile(ctx, c)
	if err != nil {
		return nil, i.s.storeError(ctx, "get discovery profile", c.Tenant, c.OUI+"/"+c.ProductClass, err)
	}
	return &inventoryv1.GetDiscoveryProfileResponse{Profile: discoveryProfileProto(p)}, nil
}

// RecordDiscovery implements InventoryInternalService.
func (i *internalServer) RecordDiscovery(ctx context.Context, req *inventoryv1.RecordDiscoveryRequest) (*inventoryv1.RecordDiscoveryResponse, error) {
	c, err := productClassOf(req.GetTenant(), req.GetOui(), req.GetProductClass())
	if err != nil {
		return nil, err
	}
	for _, n := range []struct {
		field string
		v     uint32
	}{{"gpv_batch_ok", req.GetGpvBatchOk()}, {"gpv_batch_failed", req.GetGpvBatchFailed()}} {
		if n.v > store.MaxBatchSize {
			return nil, invalidField(n.field, "at most "+strconv.Itoa(store.MaxBatchSize))
		}
	}
	if err := i.s.checkReady(); err != nil {
		return nil, err
	}
	o := store.DiscoveryObservation{GPVBatchOK: int(req.GetGpvBatchOk()), GPVBatchFailed: int(req.GetGpvBatchFailed()), SubtreeGPNFailed: req.GetSubtreeGpnFailed()}
	if err := i.s.store.RecordDiscovery(ctx, c, o, i.s.now()); err != nil {
		return nil, i.s.storeError(ctx, "record discovery", c.Tenant, c.OUI+"/"+c.ProductClass, err)
	}
	p, err := i.s.store.DiscoveryProfile(ctx, c)
	if err != nil {
		return nil, i.s.storeError(ctx, "get discovery profile", c.Tenant, c.OUI+"/"+c.ProductClass, err)
	}
	return &inventoryv1.RecordDiscoveryResponse{Profile: discoveryProfileProto(p)}, nil
}

// productClassOf checks a class's key fields, naming the bad one.
func productClassOf(tenant, oui, productClass string) (store.ProductClass, error) {
	c := store.ProductClass{Tenant: tenant, OUI: oui, ProductClass: productClass}
	if err := store.ValidateTenant(tenant); err != nil {
		return c, invalidField("tenant", err.Error())
	}
	n, err := store.NormalizeProductClass(c)
	if err != nil {
		field := "product_class"
		if len(n.OUI) != 6 || strings.Trim(n.OUI, "0123456789ABCDEF") != "" {
			field = "oui"
		}
		return c, invalidField(field, err.Error())
	}
	return n, nil
}

func discoveryProfileProto(p store.DiscoveryProfile) *inventoryv1.DiscoveryProfile {
	return &inventoryv1.DiscoveryProfile{
		GpvBatchOk: uint32(p.GPVBatchOK), GpvBatchFailed: uint32(p.GPVBatchFailed), SubtreeGpnFailed: p.SubtreeGPNFailed,
		UpdateTime: ts(p.Updated),
	}
}
