package sessions

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/provisioning"
	pv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

// taggedDevice is the inventory's record of one device as far as presets
// go, kept the way the stores keep it: AddTags and RemoveTags clear the
// fingerprint; a session's diff applies its tag changes and records its
// fingerprint, whatever happened since the session started.
type taggedDevice struct {
	knownInventory
	tags        []string
	fingerprint string
	reads       int
}

func (d *taggedDevice) GetDeviceForSession(context.Context, DeviceQuery) (DeviceState, error) {
	d.reads++
	return d.state(), nil
}

func (d *taggedDevice) state() DeviceState {
	return DeviceState{Known: true, DataModelRoot: "Device.", FullDiscoveryTime: t0, PresetsFingerprint: d.fingerprint, Tags: slices.Clone(d.tags)}
}

// addTags is the inventory's AddTags (a campaign's, an operator's).
func (d *taggedDevice) addTags(tags ...string) {
	d.tags, d.fingerprint = provisioning.TagsAfter(d.tags, tags, nil), ""
}

// record applies what the session's operation contributes to the diff.
func (d *taggedDevice) record(op *presetOp) {
	if op.Stage == presetDone && op.Error == "" {
		d.tags = provisioning.TagsAfter(d.tags, op.AddTags, op.RemoveTags)
	}
	if fp, ok := op.recordedFingerprint(); ok {
		d.fingerprint = fp
	}
}

// converged is what a campaign applying a preset checks.
func (d *taggedDevice) converged() bool { return provisioning.FingerprintCovers(d.fingerprint, d.tags) }

// runPresetOp plays the CPE's side of a preset operation: it reports
// values from tree and takes every write; it returns the requests.
func runPresetOp(t *testing.T, op *presetOp, tree map[string]string) []string {
	t.Helper()
	c := &engine.Context{Tenant: testTenant, DeviceKey: "dev-1", Now: t0}
	var methods []string
	for range 20 {
		call, ok := op.Next(c)
		if !ok {
			return methods
		}
		methods = append(methods, call.Message.Method())
		var resp cwmp.Message
		switch m := call.Message.(type) {
		case *cwmp.GetParameterValues:
			r := &cwmp.GetParameterValuesResponse{}
			for _, n := range m.ParameterNames {
				r.ParameterList = append(r.ParameterList, cwmp.ParameterValue{Name: n, Value: tree[n], Type: "xsd:string"})
			}
			resp = r
		case *cwmp.SetParameterValues:
			for _, pv := range m.ParameterList {
				tree[pv.Name] = pv.Value
			}
			resp = &cwmp.SetParameterValuesResponse{}
		default:
			t.Fatalf("unexpected %s", call.Message.Method())
		}
		op.Answer(c, engine.Answer{Call: call, Response: resp})
	}
	t.Fatal("the operation did not end")
	return nil
}

// TestPresetStaleSessionRace: the race of a campaign applying a preset
// (docs/campaigns.md, "Applying a preset"). A session starts and matches
// the presets with the device's tags; the campaign adds the preset's tag
// while it runs; the session ends and records its fingerprint. The device
// must not count as converged (the preset was never applied), and its
// next session, periodic as it may be, must match again and apply it; the
// one after costs nothing.
func TestPresetStaleSessionRace(t *testing.T) {
	src := &staticPresets{rev: 7, presets: []*pv1.Preset{{Name: "wave", Revision: 1, Match: &pv1.PresetMatch{Tags: []string{"wave-1"}},
		Desired: &pv1.DesiredState{Parameters: []*pv1.ParameterValue{{Path: "Device.X_Test.Mode", Value: "new"}}, AddTags: []string{"wave-done"}}}}}
	dev := &taggedDevice{tags: []string{"lab"}}
	dev.fingerprint = provisioning.Fingerprint(7, dev.tags) // converged before the campaign
	p := newPresetPlanner(time.Hour, src, nil, dev, slog.New(slog.DiscardHandler), nil)
	tree := map[string]string{"Device.X_Test.Mode": "old"}
	start := func(events ...string) engine.Start {
		s := engine.Start{Tenant: testTenant, DeviceKey: "dev-1", Root: "Device.", DeviceID: cwmp.DeviceID{SerialNumber: "S", ProductClass: "HGW"},
			Device: dev.state(), Now: t0}
		for _, e := range events {
			s.Events = append(s.Events, cwmp.Event{Code: e})
		}
		return s
	}
	plan := func(s engine.Start) *presetOp {
		t.Helper()
		planned, err := p.Plan(t.Context(), s)
		if err != nil {
			t.Fatal(err)
		}
		if len(planned) != 1 {
			return nil
		}
		return planned[0].Op.(*presetOp)
	}
	if !dev.converged() || plan(start("2 PERIODIC")) != nil {
		t.Fatal("a converged device's periodic session is not free")
	}

	// A boot session starts and matches with the tags it reads: nothing.
	op := plan(start("1 BOOT"))
	if op == nil || len(op.Presets) != 0 {
		t.Fatalf("boot session planned %+v", op)
	}
	// The campaign tags the device while the session runs; it ends.
	dev.addTags("wave-1")
	if dev.converged() {
		t.Fatal("converged right after AddTags")
	}
	if m := runPresetOp(t, op, tree); len(m) != 0 {
		t.Fatalf("the stale session sent %v", m)
	}
	dev.record(op)
	if dev.fingerprint == "" || dev.converged() {
		t.Fatalf("after the stale session: fingerprint %q, tags %q, converged %v (the preset was not applied)", dev.fingerprint, dev.tags, dev.converged())
	}
	if tree["Device.X_Test.Mode"] != "old" {
		t.Fatal("the preset was applied")
	}

	// The next session, a periodic one, matches again and applies it.
	op = plan(start("2 PERIODIC"))
	if op == nil || len(op.Presets) != 1 || op.Presets[0].Name != "wave" {
		t.Fatalf("the next session planned %+v, want the preset", op)
	}
	if m := runPresetOp(t, op, tree); !slices.Equal(m, []string{"GetParameterValues", "SetParameterValues"}) {
		t.Fatalf("the next session sent %v", m)
	}
	dev.record(op)
	if tree["Device.X_Test.Mode"] != "new" || !dev.converged() || !slices.Equal(dev.tags, []string{"lab", "wave-1", "wave-done"}) {
		t.Fatalf("after the next session: value %q, tags %q, fingerprint %q, converged %v", tree["Device.X_Test.Mode"], dev.tags, dev.fingerprint, dev.converged())
	}

	// And the one after is free: no operation, no inventory read.
	reads := dev.reads
	if op := plan(start("2 PERIODIC")); op != nil || dev.reads != reads {
		t.Fatalf("converged device: planned %+v, %d reads", op, dev.reads-reads)
	}
}

// TestPresetChainedTags: a preset that adds a tag another preset requires
// converges the device in two sessions: the first applies the first
// preset and records a fingerprint of the tags it matched with, which the
// device's new tags do not have; the second applies the other preset.
func TestPresetChainedTags(t *testing.T) {
	src := &staticPresets{rev: 3, presets: []*pv1.Preset{
		{Name: "onboard", Revision: 1, Match: &pv1.PresetMatch{}, Desired: &pv1.DesiredState{AddTags: []string{"onboarded"}}},
		{Name: "service", Revision: 1, Match: &pv1.PresetMatch{Tags: []string{"onboarded"}},
			Desired: &pv1.DesiredState{Parameters: []*pv1.ParameterValue{{Path: "Device.X_Test.Service", Value: "on"}}}},
	}}
	dev := &taggedDevice{}
	p := newPresetPlanner(time.Hour, src, nil, dev, slog.New(slog.DiscardHandler), nil)
	tree := map[string]string{"Device.X_Test.Service": "off"}
	session := func() *presetOp {
		t.Helper()
		s := engine.Start{Tenant: testTenant, DeviceKey: "dev-1", Root: "Device.", Device: dev.state(), Now: t0,
			Events: []cwmp.Event{{Code: "2 PERIODIC"}}}
		planned, err := p.Plan(t.Context(), s)
		if err != nil {
			t.Fatal(err)
		}
		if len(planned) == 0 {
			return nil
		}
		op := planned[0].Op.(*presetOp)
		runPresetOp(t, op, tree)
		dev.record(op)
		return op
	}
	if op := session(); op == nil || !op.Chained || !slices.Equal(dev.tags, []string{"onboarded"}) || dev.converged() {
		t.Fatalf("first session: %+v, tags %q, converged %v", op, dev.tags, dev.converged())
	}
	if op := session(); op == nil || op.Chained || tree["Device.X_Test.Service"] != "on" || !dev.converged() {
		t.Fatalf("second session: %+v, value %q, converged %v", op, tree["Device.X_Test.Service"], dev.converged())
	}
	if op := session(); op != nil {
		t.Fatalf("third session planned %+v", op)
	}
}
