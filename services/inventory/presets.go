package inventory

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/provisioning"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	provisioningv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	"github.com/fleetacs/fleetacs/services/inventory/presetstore"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// Presets serves the presets API (docs/provisioning.md) over a preset
// store, beside the device store whose devices dry runs read: the public
// PresetsService and the internal PresetsInternalService that session
// workers read the tenants' sets from.
type Presets struct {
	store presetstore.Store
	// keys seal the per-device secrets at rest; nil: GetDeviceSecrets
	// is refused.
	keys          *secretbox.Keyring
	devices       store.Store
	logger        *slog.Logger
	callerTenants func(context.Context) []string
	now           func() time.Time
	ready         atomic.Bool
	// seeded holds the tenants known to have had a preset set (see
	// ensureDefaults), so that the check costs a read once per tenant
	// and process.
	seeded sync.Map
}

// NewPresets returns the presets API over ps; devices answers dry runs,
// keys seal the per-device secrets (the device store's keyring, loaded
// when that store starts). It does no I/O.
func NewPresets(ps presetstore.Store, devices store.Store, keys *secretbox.Keyring, opts Options) *Presets {
	p := &Presets{store: ps, devices: devices, keys: keys, logger: opts.Logger, callerTenants: opts.CallerTenants, now: opts.Now}
	if p.now == nil {
		p.now = time.Now
	}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	if p.callerTenants == nil {
		p.callerTenants = func(context.Context) []string { return []string{DefaultTenant} }
	}
	return p
}

// RegisterPublic registers PresetsService on a server whose interceptors
// authenticate callers.
func (p *Presets) RegisterPublic(g grpc.ServiceRegistrar) {
	provisioningv1.RegisterPresetsServiceServer(g, &presetsPublic{p: p})
}

// RegisterInternal registers PresetsInternalService on the internal
// server.
func (p *Presets) RegisterInternal(g grpc.ServiceRegistrar) {
	provisioningv1.RegisterPresetsInternalServiceServer(g, &presetsInternal{p: p})
}

// Start loads the keyring (after the device store's start, which creates
// the default key file) and starts the preset store.
func (p *Presets) Start(ctx context.Context) error {
	if p.keys != nil {
		if _, err := p.keys.Load(); err != nil {
			return fmt.Errorf("start presets: %w", err)
		}
	}
	if err := p.store.Start(ctx); err != nil {
		return fmt.Errorf("start preset store: %w", err)
	}
	if p.keys != nil {
		// Key rotation (docs/security.md): secrets sealed under another
		// key than the first are sealed again with it; one under a key
		// the file lacks stops the start, naming it.
		n, err := p.store.ResealSecrets(ctx, p.keys.ActiveID(), func(tenant, device, name string, sv presetstore.Sealed) (presetstore.Sealed, error) {
			clear, err := p.keys.Open(sv.KeyID, sv.Data, secretAAD(tenant, device, name))
			if err != nil {
				return presetstore.Sealed{}, fmt.Errorf("device secret %q of %s/%s under key %q: %w", name, tenant, device, sv.KeyID, err)
			}
			id, sealed, err := p.keys.Seal(clear, secretAAD(tenant, device, name))
			return presetstore.Sealed{KeyID: id, Data: sealed}, err
		})
		if err != nil {
			return errors.Join(fmt.Errorf("start preset store: %w", err), p.store.Close(ctx))
		}
		if n > 0 {
			p.logger.InfoContext(ctx, "device secrets sealed again with the first key", "count", n)
		}
	}
	p.ready.Store(true)
	return nil
}

// DeviceDeleted forgets a deleted device's secrets (Service.OnDelete).
func (p *Presets) DeviceDeleted(ctx context.Context, tenant, id string) error {
	return p.store.DeleteSecrets(ctx, tenant, id)
}

// Close closes the preset store.
func (p *Presets) Close(ctx context.Context) error {
	p.ready.Store(false)
	return p.store.Close(ctx)
}

func (p *Presets) checkReady() error {
	if !p.ready.Load() {
		return apiError(codes.Unavailable, errorsv1.ErrorReason_STORE_UNAVAILABLE, "preset store not started", nil)
	}
	return nil
}

func (p *Presets) tenant(ctx context.Context, named string) (string, error) {
	t := named
	if t == "" {
		ts := p.callerTenants(ctx)
		if len(ts) != 1 {
			return "", apiError(codes.InvalidArgument, errorsv1.ErrorReason_TENANT_REQUIRED,
				"the request names no tenant and the credentials cover several", nil)
		}
		t = ts[0]
	}
	if err := store.ValidateTenant(t); err != nil {
		return "", invalidField("tenant", err.Error())
	}
	return t, p.checkReady()
}

// storeError maps a preset store error to a status.
func (p *Presets) storeError(ctx context.Context, action, tenant, name string, err error) error {
	md := map[string]string{"tenant": tenant, "name": name}
	switch {
	case errors.Is(err, presetstore.ErrNotFound):
		return apiError(codes.NotFound, errorsv1.ErrorReason_PRESET_NOT_FOUND, "preset not found", md)
	case errors.Is(err, presetstore.ErrRevisionMismatch):
		return apiError(codes.Aborted, errorsv1.ErrorReason_PRESET_REVISION_MISMATCH, "the preset is not at the expected revision", md)
	case errors.Is(err, presetstore.ErrLimit):
		return apiError(codes.ResourceExhausted, errorsv1.ErrorReason_PRESET_LIMIT,
			fmt.Sprintf("a tenant holds at most %d presets", presetstore.MaxPerTenant), map[string]string{"tenant": tenant})
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	p.logger.ErrorContext(ctx, "preset store call failed", "action", action, "tenant", tenant, "preset", name, "error", err)
	return apiError(codes.Unavailable, errorsv1.ErrorReason_STORE_UNAVAILABLE, "preset store unavailable", nil)
}

// ensureDefaults gives a tenant that never had a preset the default set
// (defaults.go). A tenant that deleted them keeps none: its set revision
// is above 0.
func (p *Presets) ensureDefaults(ctx context.Context, tenant string) error {
	if _, ok := p.seeded.Load(tenant); ok {
		return nil
	}
	rev, err := p.store.SetRevision(ctx, tenant)
	if err != nil {
		return err
	}
	if rev == 0 {
		zero := uint64(0)
		for _, d := range DefaultPresets() {
			body, err := proto.Marshal(d)
			if err != nil {
				return err
			}
			_, err = p.store.Put(ctx, presetstore.Put{Tenant: tenant, Name: d.GetName(), Enabled: d.Enabled == nil || d.GetEnabled(),
				Body: body, Time: p.now(), By: "fleetacs", Expected: &zero})
			if err != nil && !errors.Is(err, presetstore.ErrRevisionMismatch) { // another process seeded it
				return err
			}
		}
		p.logger.InfoContext(ctx, "default presets created", "tenant", tenant)
	}
	p.seeded.Store(tenant, struct{}{})
	return nil
}

// presetOf decodes a record into the API's message.
func presetOf(r presetstore.Record) (*provisioningv1.Preset, error) {
	var m provisioningv1.Preset
	if err := proto.Unmarshal(r.Body, &m); err != nil {
		return nil, fmt.Errorf("preset %s/%s revision %d: %w", r.Tenant, r.Name, r.Revision, err)
	}
	m.Name, m.Tenant, m.Revision, m.UpdatedBy = r.Name, r.Tenant, r.Revision, r.UpdatedBy
	m.UpdateTime = timestamppb.New(r.UpdateTime)
	m.Enabled = proto.Bool(r.Enabled)
	return &m, nil
}

type presetsPublic struct {
	provisioningv1.UnimplementedPresetsServiceServer
	p *Presets
}

// maxPresetBytes bounds a marshalled preset, so that a tenant's whole set
// (presetstore.MaxPerTenant presets) fits the 64 MiB a worker accepts in
// one GetPresetSet.
const maxPresetBytes = 64 << 10

// PutPreset implements PresetsService.
func (s *presetsPublic) PutPreset(ctx context.Context, req *provisioningv1.PutPresetRequest) (*provisioningv1.PutPresetResponse, error) {
	tenant, err := s.p.tenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	in := req.GetPreset()
	if in == nil {
		return nil, invalidField("preset", "required")
	}
	if _, err := provisioning.Compile(in); err != nil {
		var fe *provisioning.FieldError
		if errors.As(err, &fe) {
			return nil, invalidField(fe.Field, fe.Msg)
		}
		return nil, invalidField("preset", err.Error())
	}
	stored := proto.Clone(in).(*provisioningv1.Preset)
	stored.Tenant, stored.Revision, stored.UpdateTime, stored.UpdatedBy = "", 0, nil, ""
	body, err := proto.Marshal(stored)
	if err != nil {
		return nil, invalidField("preset", err.Error())
	}
	if len(body) > maxPresetBytes {
		return nil, invalidField("preset", fmt.Sprintf("larger than %d bytes", maxPresetBytes))
	}
	if err := s.p.ensureDefaults(ctx, tenant); err != nil {
		return nil, s.p.storeError(ctx, "create default presets", tenant, "", err)
	}
	by := "unknown"
	if pr, ok := apiauth.FromContext(ctx); ok {
		by = pr.ID
	}
	rec, err := s.p.store.Put(ctx, presetstore.Put{Tenant: tenant, Name: in.GetName(), Enabled: in.Enabled == nil || in.GetEnabled(),
		Body: body, Time: s.p.now(), By: by, Expected: req.ExpectedRevision})
	if err != nil {
		return nil, s.p.storeError(ctx, "put preset", tenant, in.GetName(), err)
	}
	out, err := presetOf(rec)
	if err != nil {
		return nil, s.p.storeError(ctx, "put preset", tenant, in.GetName(), err)
	}
	s.p.logger.InfoContext(ctx, "preset written", "tenant", tenant, "preset", rec.Name, "revision", rec.Revision, "by", by)
	return &provisioningv1.PutPresetResponse{Preset: out}, nil
}

func validName(field, name string) error {
	if err := provisioning.ValidName(name); err != nil {
		return invalidField(field, err.Error())
	}
	return nil
}

// GetPreset implements PresetsService.
func (s *presetsPublic) GetPreset(ctx context.Context, req *provisioningv1.GetPresetRequest) (*provisioningv1.GetPresetResponse, error) {
	tenant, err := s.p.tenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	if err := validName("name", req.GetName()); err != nil {
		return nil, err
	}
	if err := s.p.ensureDefaults(ctx, tenant); err != nil {
		return nil, s.p.storeError(ctx, "create default presets", tenant, "", err)
	}
	rec, err := s.p.store.Get(ctx, tenant, req.GetName(), req.GetRevision())
	if err != nil {
		return nil, s.p.storeError(ctx, "get preset", tenant, req.GetName(), err)
	}
	out, err := presetOf(rec)
	if err != nil {
		return nil, s.p.storeError(ctx, "get preset", tenant, req.GetName(), err)
	}
	return &provisioningv1.GetPresetResponse{Preset: out}, nil
}

// pageToken binds a page's last name to the tenant, so that a token is
// not replayed against another tenant's list.
func pageToken(tenant, after string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(tenant + "\x00" + after))
}

func parsePageToken(tenant, tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	t, after, ok := strings.Cut(string(b), "\x00")
	if err != nil || !ok || t != tenant || provisioning.ValidName(after) != nil {
		return "", apiError(codes.InvalidArgument, errorsv1.ErrorReason_INVALID_PAGE_TOKEN, "page_token is not one this list returned", nil)
	}
	return after, nil
}

// ListPresets implements PresetsService.
func (s *presetsPublic) ListPresets(ctx context.Context, req *provisioningv1.ListPresetsRequest) (*provisioningv1.ListPresetsResponse, error) {
	tenant, err := s.p.tenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, invalidField("page_size", "must not be negative")
	case size == 0:
		size = 100
	case size > 1000:
		size = 1000
	}
	after, err := parsePageToken(tenant, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	if err := s.p.ensureDefaults(ctx, tenant); err != nil {
		return nil, s.p.storeError(ctx, "create default presets", tenant, "", err)
	}
	recs, err := s.p.store.List(ctx, tenant, after, size+1)
	if err != nil {
		return nil, s.p.storeError(ctx, "list presets", tenant, "", err)
	}
	out := &provisioningv1.ListPresetsResponse{}
	if len(recs) > size {
		recs = recs[:size]
		out.NextPageToken = pageToken(tenant, recs[size-1].Name)
	}
	for _, r := range recs {
		m, err := presetOf(r)
		if err != nil {
			return nil, s.p.storeError(ctx, "list presets", tenant, r.Name, err)
		}
		out.Presets = append(out.Presets, m)
	}
	return out, nil
}

// DeletePreset implements PresetsService.
func (s *presetsPublic) DeletePreset(ctx context.Context, req *provisioningv1.DeletePresetRequest) (*provisioningv1.DeletePresetResponse, error) {
	tenant, err := s.p.tenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	if err := validName("name", req.GetName()); err != nil {
		return nil, err
	}
	if err := s.p.ensureDefaults(ctx, tenant); err != nil {
		return nil, s.p.storeError(ctx, "create default presets", tenant, "", err)
	}
	if err := s.p.store.Delete(ctx, tenant, req.GetName(), req.ExpectedRevision); err != nil {
		return nil, s.p.storeError(ctx, "delete preset", tenant, req.GetName(), err)
	}
	s.p.logger.InfoContext(ctx, "preset deleted", "tenant", tenant, "preset", req.GetName())
	return &provisioningv1.DeletePresetResponse{}, nil
}

// DryRunPreset implements PresetsService: the plan against what the
// inventory holds of the device.
func (s *presetsPublic) DryRunPreset(ctx context.Context, req *provisioningv1.DryRunPresetRequest) (*provisioningv1.DryRunPresetResponse, error) {
	tenant, err := s.p.tenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	if err := store.ValidateID(req.GetDeviceId()); err != nil {
		return nil, invalidField("device_id", err.Error())
	}
	if req.GetName() != "" {
		if err := validName("name", req.GetName()); err != nil {
			return nil, err
		}
	}
	if len(req.GetEvents()) > provisioning.MaxEvents {
		return nil, invalidField("events", fmt.Sprintf("at most %d", provisioning.MaxEvents))
	}
	for i, e := range req.GetEvents() {
		if e == "" || len(e) > 64 {
			return nil, invalidField(fmt.Sprintf("events[%d]", i), "want 1 to 64 bytes")
		}
	}
	if err := s.p.ensureDefaults(ctx, tenant); err != nil {
		return nil, s.p.storeError(ctx, "create default presets", tenant, "", err)
	}
	var recs []presetstore.Record
	if req.GetName() != "" {
		r, err := s.p.store.Get(ctx, tenant, req.GetName(), 0)
		if err != nil {
			return nil, s.p.storeError(ctx, "get preset", tenant, req.GetName(), err)
		}
		r.Enabled = true // a dry run of one preset tries it even when disabled
		recs = []presetstore.Record{r}
	} else if _, recs, err = s.p.store.Set(ctx, tenant); err != nil {
		return nil, s.p.storeError(ctx, "read the preset set", tenant, "", err)
	}
	set, err := compileRecords(recs)
	if err != nil {
		return nil, s.p.storeError(ctx, "compile presets", tenant, "", err)
	}
	d, err := s.p.devices.Get(ctx, tenant, req.GetDeviceId(), store.ReadOptions{Params: true})
	if errors.Is(err, store.ErrNotFound) {
		return nil, apiError(codes.NotFound, errorsv1.ErrorReason_DEVICE_NOT_FOUND, "device not found",
			map[string]string{"tenant": tenant, "device_id": req.GetDeviceId()})
	}
	if err != nil {
		return nil, s.p.storeError(ctx, "get device", tenant, req.GetDeviceId(), err)
	}
	dev := DeviceView(&d)
	if len(req.GetEvents()) > 0 {
		dev.Events = req.GetEvents()
	}
	matched, verdicts, unknown := provisioning.Matching(set, dev, s.p.now())
	plan, err := provisioning.Converge(matched, dev, provisioning.Options{Tenant: tenant})
	if err != nil {
		return nil, invalidField("name", err.Error())
	}
	out := &provisioningv1.DryRunPresetResponse{Converged: plan.Converged() && len(unknown) == 0, Notes: plan.Notes}
	if len(unknown) > 0 {
		out.Requests = append(out.Requests, &provisioningv1.PlannedRequest{Method: "GetParameterValues", Paths: unknown,
			Reason: "preset conditions name parameters the inventory does not hold"})
	}
	for _, v := range verdicts {
		out.Presets = append(out.Presets, &provisioningv1.PresetVerdict{Name: v.Name, Revision: v.Revision, Matched: v.Matched, Reason: v.Reason})
	}
	for _, r := range plan.Requests {
		values := r.Values
		for _, a := range r.Attributes {
			v := a.Path + ":"
			if a.Notification >= 0 {
				v += fmt.Sprintf(" notification=%d", a.Notification)
			}
			if a.SetAccessList {
				v += fmt.Sprintf(" access_list=%q", a.AccessList)
			}
			values = append(values, v)
		}
		out.Requests = append(out.Requests, &provisioningv1.PlannedRequest{Method: r.Method, Paths: r.Paths, Values: values, Reason: r.Reason})
	}
	for _, t := range plan.AddTags {
		out.Notes = append(out.Notes, "adds tag "+t)
	}
	for _, t := range plan.RemoveTags {
		out.Notes = append(out.Notes, "removes tag "+t)
	}
	return out, nil
}

// compileRecords decodes and compiles stored presets.
func compileRecords(recs []presetstore.Record) ([]*provisioning.Preset, error) {
	out := make([]*provisioning.Preset, 0, len(recs))
	for _, r := range recs {
		m, err := presetOf(r)
		if err != nil {
			return nil, err
		}
		c, err := provisioning.Compile(m)
		if err != nil {
			return nil, fmt.Errorf("stored preset %s revision %d: %w", r.Name, r.Revision, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// DeviceView is what planning knows of a stored device.
func DeviceView(d *store.Device) *provisioning.Device {
	v := &provisioning.Device{
		Fields: provisioning.Fields{SerialNumber: d.DeviceID.SerialNumber, OUI: d.DeviceID.OUI, ProductClass: d.DeviceID.ProductClass,
			Manufacturer: d.DeviceID.Manufacturer, DeviceID: d.ID},
		Root: d.DataModelRoot, Tags: d.Tags, SoftwareVersion: d.SoftwareVersion,
		Params: make(map[string]provisioning.Param, len(d.Params)),
	}
	for _, e := range d.LastEvents {
		v.Events = append(v.Events, e.Code)
	}
	for path, p := range d.Params {
		n, ok := p.Notification.Value()
		if !ok {
			n = -1
		}
		v.Params[path] = provisioning.Param{Value: p.Value, Type: p.Type, HasValue: p.HasValue, Notification: n}
	}
	return v
}

type presetsInternal struct {
	provisioningv1.UnimplementedPresetsInternalServiceServer
	p *Presets
}

// GetPresetSet implements PresetsInternalService.
func (s *presetsInternal) GetPresetSet(ctx context.Context, req *provisioningv1.GetPresetSetRequest) (*provisioningv1.GetPresetSetResponse, error) {
	tenant := req.GetTenant()
	if err := store.ValidateTenant(tenant); err != nil {
		return nil, invalidField("tenant", err.Error())
	}
	if err := s.p.checkReady(); err != nil {
		return nil, err
	}
	if err := s.p.ensureDefaults(ctx, tenant); err != nil {
		return nil, s.p.storeError(ctx, "create default presets", tenant, "", err)
	}
	if known := req.GetKnownSetRevision(); known != 0 {
		rev, err := s.p.store.SetRevision(ctx, tenant)
		if err != nil {
			return nil, s.p.storeError(ctx, "read the preset set revision", tenant, "", err)
		}
		if rev == known {
			return &provisioningv1.GetPresetSetResponse{SetRevision: rev, Unchanged: true}, nil
		}
	}
	rev, recs, err := s.p.store.Set(ctx, tenant)
	if err != nil {
		return nil, s.p.storeError(ctx, "read the preset set", tenant, "", err)
	}
	out := &provisioningv1.GetPresetSetResponse{SetRevision: rev}
	for _, r := range recs {
		m, err := presetOf(r)
		if err != nil {
			return nil, s.p.storeError(ctx, "read the preset set", tenant, r.Name, err)
		}
		out.Presets = append(out.Presets, m)
	}
	return out, nil
}

// maxSecretNames bounds one GetDeviceSecrets.
const maxSecretNames = 32

func secretAAD(tenant, device, name string) []byte {
	return secretbox.AAD("fleetacs.presets.secret", tenant, device, name)
}

// GetDeviceSecrets implements PresetsInternalService: missing secrets are
// 26 random characters of [A-Z2-7] (130 bits), sealed before they are
// stored.
func (s *presetsInternal) GetDeviceSecrets(ctx context.Context, req *provisioningv1.GetDeviceSecretsRequest) (*provisioningv1.GetDeviceSecretsResponse, error) {
	tenant, device := req.GetTenant(), req.GetDeviceKey()
	if err := internalKey(tenant, device); err != nil {
		return nil, err
	}
	if len(req.GetNames()) == 0 || len(req.GetNames()) > maxSecretNames {
		return nil, invalidField("names", fmt.Sprintf("want 1 to %d names", maxSecretNames))
	}
	if s.p.keys == nil {
		return nil, apiError(codes.FailedPrecondition, errorsv1.ErrorReason_INTERNAL_ERROR, "no keyring to seal device secrets", nil)
	}
	if err := s.p.checkReady(); err != nil {
		return nil, err
	}
	want := make(map[string]presetstore.Sealed, len(req.GetNames()))
	for i, name := range req.GetNames() {
		if err := provisioning.ValidName(name); err != nil {
			return nil, invalidField(fmt.Sprintf("names[%d]", i), err.Error())
		}
		id, sealed, err := s.p.keys.Seal([]byte(rand.Text()), secretAAD(tenant, device, name))
		if err != nil {
			return nil, s.p.storeError(ctx, "seal a device secret", tenant, name, err)
		}
		want[name] = presetstore.Sealed{KeyID: id, Data: sealed}
	}
	got, err := s.p.store.EnsureSecrets(ctx, tenant, device, want)
	if err != nil {
		return nil, s.p.storeError(ctx, "ensure device secrets", tenant, "", err)
	}
	out := &provisioningv1.GetDeviceSecretsResponse{Secrets: make(map[string]string, len(got))}
	for name, sv := range got {
		v, err := s.p.keys.Open(sv.KeyID, sv.Data, secretAAD(tenant, device, name))
		if err != nil {
			return nil, s.p.storeError(ctx, "open a device secret", tenant, name, err)
		}
		out.Secrets[name] = string(v)
	}
	return out, nil
}
