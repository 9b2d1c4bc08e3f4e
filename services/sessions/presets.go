package sessions

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/provisioning"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	provisioningv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

// Presets in sessions (docs/provisioning.md, "Convergence"): at the start
// of every session the preset planner matches the tenant's preset set,
// cached in the worker, against the device, and plans one operation that
// reads what the presets set and then converges it with the fewest
// requests.

// PresetSource reads a tenant's preset set
// (fleetacs.provisioning.v1.PresetsInternalService).
type PresetSource interface {
	// PresetSet returns the tenant's enabled presets and its set
	// revision; unchanged (and no presets) when the revision is known.
	PresetSet(ctx context.Context, tenant string, known uint64) (rev uint64, unchanged bool, presets []*provisioningv1.Preset, err error)
	// DeviceSecrets returns the device's per-device secrets of these
	// names, generated the first time.
	DeviceSecrets(ctx context.Context, tenant, device string, names []string) (map[string]string, error)
}

// GRPCPresets is PresetSource over the inventory's internal API.
type GRPCPresets struct {
	c provisioningv1.PresetsInternalServiceClient
}

// NewGRPCPresets returns the adapter over a connection to the inventory.
func NewGRPCPresets(cc grpc.ClientConnInterface) *GRPCPresets {
	return &GRPCPresets{c: provisioningv1.NewPresetsInternalServiceClient(cc)}
}

// PresetSet implements PresetSource.
func (g *GRPCPresets) PresetSet(ctx context.Context, tenant string, known uint64) (uint64, bool, []*provisioningv1.Preset, error) {
	resp, err := g.c.GetPresetSet(ctx, &provisioningv1.GetPresetSetRequest{Tenant: tenant, KnownSetRevision: known}, treeCallOptions...)
	if err != nil {
		return 0, false, nil, fmt.Errorf("get the preset set of %s: %w", tenant, err)
	}
	return resp.GetSetRevision(), resp.GetUnchanged(), resp.GetPresets(), nil
}

// DeviceSecrets implements PresetSource.
func (g *GRPCPresets) DeviceSecrets(ctx context.Context, tenant, device string, names []string) (map[string]string, error) {
	resp, err := g.c.GetDeviceSecrets(ctx, &provisioningv1.GetDeviceSecretsRequest{Tenant: tenant, DeviceKey: device, Names: names})
	if err != nil {
		return nil, fmt.Errorf("get device secrets: %w", err)
	}
	return resp.GetSecrets(), nil
}

// kindPreset is the preset operation's kind in checkpoints.
const kindPreset = "preset"

// presetParameterKey is the ParameterKey of the SetParameterValues and
// DeleteObject a preset operation sends; AddObject sends
// provisioning.AddKey.
const presetParameterKey = "fleetacs-preset"

// presetMaxAge re-reads a cached set whatever its revision says (see
// Config.PresetsRefresh for how often the revision is checked).
const presetMaxAge = 5 * time.Minute

// tenantSet is a tenant's compiled preset set as a worker caches it.
type tenantSet struct {
	rev              uint64
	fingerprint      string // "s<rev>", provisioning.SetFingerprint
	presets          []*provisioning.Preset
	bodies           map[string][]byte // name -> marshalled preset
	checked, fetched time.Time
}

type presetPlanner struct {
	refresh time.Duration
	src     PresetSource
	// keys seal the per-device secrets an operation keeps (nil: presets
	// that use secrets do not converge).
	keys   *secretbox.Keyring
	inv    engine.Inventory
	logger *slog.Logger
	now    func() time.Time
	// files finds the firmware files presets ask for (nil: a firmware
	// version is only noted); events publishes what became of them
	// (nil: logged only).
	files  FirmwareFiles
	events func(context.Context, *eventsv1.Event)

	mu   sync.Mutex
	sets map[string]*tenantSet
}

var _ engine.Planner = (*presetPlanner)(nil)

func newPresetPlanner(refresh time.Duration, src PresetSource, keys *secretbox.Keyring, inv engine.Inventory, logger *slog.Logger, now func() time.Time) *presetPlanner {
	if now == nil {
		now = time.Now
	}
	return &presetPlanner{refresh: refresh, src: src, keys: keys, inv: inv, logger: logger, now: now, sets: map[string]*tenantSet{}}
}

// Kind implements engine.Planner.
func (p *presetPlanner) Kind() string { return kindPreset }

// set returns the tenant's set, from the cache while it is fresh.
func (p *presetPlanner) set(ctx context.Context, tenant string) (*tenantSet, error) {
	now := p.now()
	p.mu.Lock()
	cur := p.sets[tenant]
	p.mu.Unlock()
	if cur != nil && now.Sub(cur.checked) < p.refresh {
		return cur, nil
	}
	var known uint64
	if cur != nil && now.Sub(cur.fetched) < presetMaxAge {
		known = cur.rev
	}
	rev, unchanged, presets, err := p.src.PresetSet(ctx, tenant, known)
	if err != nil {
		if cur != nil {
			// A set a little stale beats failing the session.
			p.logger.WarnContext(ctx, "preset set unavailable: using the cached one", "tenant", tenant, "error", err)
			return cur, nil
		}
		return nil, err
	}
	next := &tenantSet{rev: rev, fingerprint: provisioning.SetFingerprint(rev), checked: now, fetched: now}
	if unchanged && cur != nil {
		next.presets, next.bodies, next.fetched = cur.presets, cur.bodies, cur.fetched
	} else {
		next.bodies = make(map[string][]byte, len(presets))
		for _, m := range presets {
			c, err := provisioning.Compile(m)
			if err != nil {
				p.logger.ErrorContext(ctx, "stored preset does not compile: skipped", "tenant", tenant, "preset", m.GetName(), "error", err)
				continue
			}
			body, err := proto.Marshal(m)
			if err != nil {
				return nil, err
			}
			next.presets = append(next.presets, c)
			next.bodies[c.Name] = body
		}
		provisioning.Sort(next.presets)
	}
	p.mu.Lock()
	p.sets[tenant] = next
	p.mu.Unlock()
	return next, nil
}

// Plan implements engine.Planner.
func (p *presetPlanner) Plan(ctx context.Context, s engine.Start) ([]engine.Planned, error) {
	set, err := p.set(ctx, s.Tenant)
	if err != nil {
		// Presets unreachable (and none cached): the session goes on
		// without them, rather than every session failing; the next
		// session tries again.
		p.logger.WarnContext(ctx, "preset set unavailable: session without presets", "tenant", s.Tenant, "error", err)
		return nil, nil
	}
	if len(set.presets) == 0 || (s.Root != "Device." && s.Root != "InternetGatewayDevice.") {
		// No presets, or a data model not known yet (a later session
		// knows it): nothing to match.
		return nil, nil
	}
	// A device that converged to this very set with the tags it has costs
	// nothing more: no read, no request (the tags come with the session
	// state). Only a new set, other tags, a boot, a value change the CPE
	// reports or a preset that the session itself opens (its events, its
	// schedule) make the planner look again.
	fingerprint := set.fingerprint
	var buf [8]string // most Informs carry a few events: no allocation
	events := buf[:0]
	for _, e := range s.Events {
		events = append(events, e.Code)
	}
	// A firmware wait recorded with the fingerprint (firmware.go) keeps
	// a converged device quiet until it ends; the end of a preset's
	// Download makes the planner look at once.
	recorded, wait := splitFingerprint(s.Device.PresetsFingerprint)
	transfer := presetTransfer(s.Events)
	if provisioning.IsFingerprint(recorded, fingerprint, s.Device.Tags) && !lookAgain(set.presets, events, s.Now) && transfer == "" &&
		(wait.Until.IsZero() || s.Now.Before(wait.Until)) {
		return nil, nil
	}
	dev := &provisioning.Device{
		Fields: provisioning.Fields{SerialNumber: s.DeviceID.SerialNumber, OUI: s.DeviceID.OUI, ProductClass: s.DeviceID.ProductClass,
			Manufacturer: s.DeviceID.Manufacturer, DeviceID: s.DeviceKey},
		Root:   s.Root,
		Tags:   s.Device.Tags,
		Params: make(map[string]provisioning.Param, len(s.Params)),
	}
	for _, e := range s.Events {
		dev.Events = append(dev.Events, e.Code)
	}
	var paramKey string
	for _, pv := range s.Params {
		dev.Params[pv.Name] = provisioning.Param{Value: pv.Value, Type: pv.Type, HasValue: true, Notification: -1}
		switch {
		case strings.HasSuffix(pv.Name, ".ManagementServer.ParameterKey"):
			paramKey = pv.Value
		case pv.Name == s.Root+"DeviceInfo.SoftwareVersion":
			dev.SoftwareVersion = pv.Value
		}
	}
	// What the Inform and the session state do not tell and the matching
	// needs (parameters of conditions) comes from the inventory, in one
	// read, only when a preset needs it; the read's tags, fresher, are
	// those the presets are matched with (and the fingerprint covers).
	var prefixes []string
	needTags := false
	for _, c := range set.presets {
		needTags = needTags || c.NeedsTags()
		for _, path := range c.ConditionPaths() {
			if _, ok := dev.Params[path]; !ok && !slices.Contains(prefixes, path) {
				prefixes = append(prefixes, path)
			}
		}
	}
	if needTags || len(prefixes) > 0 {
		if len(prefixes) == 0 {
			prefixes = []string{s.Root + "DeviceInfo.SoftwareVersion"} // any one path: the read is for the tags
		}
		st, err := p.inv.GetDeviceForSession(ctx, engine.DeviceQuery{Tenant: s.Tenant, DeviceKey: s.DeviceKey, WithParameters: true, Prefixes: prefixes})
		if err != nil {
			return nil, err
		}
		dev.Tags = st.Tags
		for _, q := range st.Parameters {
			if _, ok := dev.Params[q.Path]; !ok {
				dev.Params[q.Path] = provisioning.Param{Value: q.Value, Type: q.Type, HasValue: q.HasValue, Notification: -1}
			}
		}
	}
	matched, _, unknown := provisioning.Matching(set.presets, dev, s.Now)
	if len(unknown) > 0 {
		// A condition names a parameter neither the Inform nor the
		// inventory holds (yet: a discovery may bring it): the device is
		// not known to have converged, so later sessions match again.
		fingerprint = ""
	}
	if len(matched) == 0 {
		if fingerprint == "" {
			return nil, nil
		}
		// Nothing to do: the operation only records the fingerprint.
		return []engine.Planned{{ID: "preset", Op: &presetOp{Stage: presetDone, Fingerprint: fingerprint, Tags: dev.Tags}}}, nil
	}
	op := &presetOp{Fields: dev.Fields, Root: dev.Root, SoftwareVersion: dev.SoftwareVersion, ParameterKey: paramKey, Tags: dev.Tags, Stage: presetRead, Fingerprint: fingerprint,
		Chained: chained(set.presets, matched, dev, s.Now)}
	for _, c := range matched {
		op.Presets = append(op.Presets, presetRef{Name: c.Name, Revision: c.Revision, Body: set.bodies[c.Name]})
		values, attrs := c.ReadPaths(dev.Root)
		for _, v := range values {
			if !slices.Contains(op.ReadValues, v) {
				op.ReadValues = append(op.ReadValues, v)
			}
		}
		for _, a := range attrs {
			if !slices.Contains(op.ReadAttrs, a) {
				op.ReadAttrs = append(op.ReadAttrs, a)
			}
		}
	}
	op.Known = map[string]provisioning.Param{}
	op.keys = p.keys
	fw, ok := p.firmware(ctx, s, dev, matched, wait, transfer)
	if !ok {
		// The files service could not be asked: no fingerprint, the next
		// session tries again.
		op.Fingerprint = ""
	}
	op.Firmware = fw
	var secrets []string
	for _, c := range matched {
		for _, n := range c.SecretNames() {
			if !slices.Contains(secrets, n) {
				secrets = append(secrets, n)
			}
		}
	}
	if len(secrets) > 0 {
		if err := op.sealSecrets(ctx, p.src, p.keys, s.Tenant, s.DeviceKey, secrets); err != nil {
			// The operation runs without them: presets that use them do
			// not converge, and the next session tries again.
			p.logger.WarnContext(ctx, "per-device secrets unavailable", "tenant", s.Tenant, "device_id", s.DeviceKey, "error", err)
		}
	}
	op.skipEmptyReads()
	if op.Stage == presetWrite {
		op.plan()
	}
	return []engine.Planned{{ID: "preset", Op: op}}, nil
}

// chained reports whether the tags the matched presets add or remove make
// the set match the device otherwise: the presets that then match are
// not applied in this session, so its fingerprint must not cover the tags
// after its changes (the next session matches again, with them).
func chained(set, matched []*provisioning.Preset, dev *provisioning.Device, now time.Time) bool {
	add, remove := provisioning.TagChanges(matched, dev.Tags)
	if len(add) == 0 && len(remove) == 0 {
		return false
	}
	after := *dev
	after.Tags = provisioning.TagsAfter(dev.Tags, add, remove)
	again, _, _ := provisioning.Matching(set, &after, now)
	return !slices.EqualFunc(again, matched, func(a, b *provisioning.Preset) bool { return a == b })
}

// presetTransfer returns the CommandKey of a preset's Download whose end
// the Inform reports ("M Download"), "" when none.
func presetTransfer(events []cwmp.Event) string {
	for _, e := range events {
		if e.Code == "M Download" && strings.HasPrefix(e.CommandKey, firmwareKeyPrefix) {
			return e.CommandKey
		}
	}
	return ""
}

// firmware decides the session's firmware step (docs/provisioning.md,
// "Firmware"): nil when the presets ask for no version, or no files
// service is there (the plan notes it). ok false: the files service
// failed, the session records no fingerprint.
func (p *presetPlanner) firmware(ctx context.Context, s engine.Start, dev *provisioning.Device, matched []*provisioning.Preset,
	wait firmwareWait, transfer string) (*firmwareStep, bool) {
	var c *provisioning.Preset
	for _, m := range matched {
		if m.Firmware != "" {
			c = m
			break
		}
	}
	if c == nil || p.files == nil {
		return nil, true
	}
	fw := &firmwareStep{Preset: c.Name, Revision: c.Revision, Version: c.Firmware}
	if c.Firmware == dev.SoftwareVersion {
		if wait.Attempt > 0 || transfer != "" {
			fw.Event, fw.Detail = "upgraded", fmt.Sprintf("the device reports %s", c.Firmware)
		}
		return fw, true
	}
	n := wait.Attempt
	switch {
	case transfer != "":
		// The end of a Download, and still another version: the
		// transfer or the upgrade failed (the TransferComplete's fault,
		// if any, is added when it arrives).
		fw.Wait = firmwareWait{Until: s.Now.Add(firmwareBackoffAfter(max(n, 1))), Attempt: n}
		fw.Event = "failed"
		fw.Detail = fmt.Sprintf("after the Download the device reports %q; next attempt after %s", dev.SoftwareVersion, fw.Wait.Until.Format(time.RFC3339))
		return fw, true
	case s.Now.Before(wait.Until):
		fw.Wait = wait
		fw.Detail = fmt.Sprintf("attempt %d: waiting until %s", n, wait.Until.Format(time.RFC3339))
		return fw, true
	}
	n++
	found, url, size, err := p.files.ResolveFile(ctx, s.Tenant, s.DeviceKey, s.DeviceID.ProductClass, firmwareFileType, c.Firmware)
	if err != nil {
		p.logger.WarnContext(ctx, "preset firmware: files service unavailable", "tenant", s.Tenant, "device_id", s.DeviceKey, "preset", c.Name, "error", err)
		fw.Detail = "files service unavailable"
		return fw, false
	}
	if !found {
		fw.Wait = firmwareWait{Until: s.Now.Add(firmwareBackoffAfter(n)), Attempt: n}
		fw.Event = "no_file"
		fw.Detail = fmt.Sprintf("no file of type %q and version %q for product class %q; next look after %s",
			firmwareFileType, c.Firmware, s.DeviceID.ProductClass, fw.Wait.Until.Format(time.RFC3339))
		return fw, true
	}
	fw.URL, fw.Size = url, size
	fw.Wait.Attempt = n
	return fw, true
}

// lookAgain reports whether a session must match the presets again even
// though the device converged to the set: a boot or factory reset (the
// CPE may have lost its configuration), a value change it reports, or a
// preset the session opens.
func lookAgain(set []*provisioning.Preset, events []string, now time.Time) bool {
	for _, e := range events {
		switch provisioning.EventNumber(e) {
		case "0", "1", "4":
			return true
		}
	}
	for _, p := range set {
		if p.SessionOpen(events, now) {
			return true
		}
	}
	return false
}

// Restore implements engine.Planner.
func (p *presetPlanner) Restore(data []byte) (engine.Operation, error) {
	var op presetOp
	if err := json.Unmarshal(data, &op); err != nil {
		return nil, err
	}
	op.keys = p.keys
	return &op, nil
}

// Settle implements engine.Planner: it logs what the operations did.
func (p *presetPlanner) Settle(ctx context.Context, e engine.End, ops []engine.Operation) {
	for _, o := range ops {
		op, ok := o.(*presetOp)
		if !ok {
			continue
		}
		names := make([]string, len(op.Presets))
		for i, r := range op.Presets {
			names[i] = fmt.Sprintf("%s@%d", r.Name, r.Revision)
		}
		attrs := []any{"tenant", e.Tenant, "device_id", e.DeviceKey, "session_id", e.SessionID, "presets", strings.Join(names, ","),
			"requests", op.Sent}
		if len(op.Notes) > 0 {
			attrs = append(attrs, "notes", strings.Join(op.Notes, "; "))
		}
		if f := op.Firmware; f != nil && f.Event != "" && op.Stage == presetDone && e.Recorded {
			p.firmwareEvent(ctx, e, f)
		}
		switch {
		case op.Error != "":
			p.logger.WarnContext(ctx, "presets not converged", append(attrs, "error", op.Error)...)
		case op.Stage != presetDone:
			p.logger.InfoContext(ctx, "presets not converged: session ended first", attrs...)
		case op.Sent > 0 || len(op.Notes) > 0:
			p.logger.InfoContext(ctx, "presets converged", attrs...)
		}
	}
}

// firmwareEvent publishes and logs what a session did about a preset's
// firmware.
func (p *presetPlanner) firmwareEvent(ctx context.Context, e engine.End, f *firmwareStep) {
	level := slog.LevelInfo
	if f.Event == "no_file" || f.Event == "failed" {
		level = slog.LevelWarn
	}
	p.logger.Log(ctx, level, "preset firmware "+f.Event, "tenant", e.Tenant, "device_id", e.DeviceKey, "session_id", e.SessionID,
		"preset", f.Preset, "revision", f.Revision, "version", f.Version, "detail", f.Detail)
	if p.events == nil {
		return
	}
	pf := &eventsv1.PresetFirmware{Preset: f.Preset, Revision: f.Revision, Version: f.Version, Status: f.Event, Detail: f.Detail,
		CommandKey: firmwareCommandKey(f.Preset, f.Revision)}
	if !f.Wait.Until.IsZero() {
		pf.RetryTime = timestamppb.New(f.Wait.Until)
	}
	p.events(ctx, &eventsv1.Event{Id: e.SessionID + "-fw", Tenant: e.Tenant, DeviceId: e.DeviceKey, Time: timestamppb.New(p.now()),
		Kind: "preset.firmware_" + f.Event, SessionId: e.SessionID, Payload: &eventsv1.Event_PresetFirmware{PresetFirmware: pf}})
}
