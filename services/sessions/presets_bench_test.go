package sessions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/provisioning"
	pv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

// staticPresets is a PresetSource of a fixed set at revision rev.
type staticPresets struct {
	rev     uint64
	presets []*pv1.Preset
}

func (s *staticPresets) PresetSet(_ context.Context, _ string, known uint64) (uint64, bool, []*pv1.Preset, error) {
	if known == s.rev {
		return s.rev, true, nil, nil
	}
	return s.rev, false, s.presets, nil
}

func (s *staticPresets) DeviceSecrets(context.Context, string, string, []string) (map[string]string, error) {
	return nil, errors.New("no secrets in benchmarks")
}

// twentyPresets is a realistic set: some match every device, some a
// product class, some BOOT sessions only, some a tag.
func twentyPresets() []*pv1.Preset {
	var out []*pv1.Preset
	for i := range 20 {
		p := &pv1.Preset{Name: fmt.Sprintf("p%02d", i), Precedence: int32(i % 5), Desired: &pv1.DesiredState{
			Parameters: []*pv1.ParameterValue{
				{Path: fmt.Sprintf("Device.X_Bench.P%d", i), Value: "v-{{.SerialNumber}}"},
				{Path: fmt.Sprintf("Device.X_Bench.Q%d", i), Value: strconv.Itoa(i), Type: "xsd:unsignedInt"},
			},
			Objects: []*pv1.ObjectInstance{{Table: "Device.NAT.PortMapping.", Keys: []*pv1.ObjectParameter{{Name: "Description", Value: fmt.Sprintf("m%d", i)}}}},
		}, Match: &pv1.PresetMatch{}}
		switch i % 4 {
		case 1:
			p.Match.ProductClass = "Bench*"
		case 2:
			p.Match.Events = []string{"1 BOOT"}
		case 3:
			p.Match.Tags = []string{"t" + strconv.Itoa(i)}
		}
		out = append(out, p)
	}
	return out
}

// convergedInventory is knownInventory whose devices converged to the
// preset set of revision 7.
type convergedInventory struct{ knownInventory }

func (c *convergedInventory) GetDeviceForSession(context.Context, DeviceQuery) (DeviceState, error) {
	return DeviceState{Known: true, DataModelRoot: "Device.", FullDiscoveryTime: t0, PresetsFingerprint: provisioning.Fingerprint(7, nil)}, nil
}

// BenchmarkWorkerInformSessionPresets is BenchmarkWorkerInformSession with
// 20 presets active and a device that converged to them: the periodic
// session must cost about what it costs without presets.
func BenchmarkWorkerInformSessionPresets(b *testing.B) {
	for _, tc := range []struct {
		name    string
		presets PresetSource
	}{{"none", nil}, {"20-converged", &staticPresets{rev: 7, presets: twentyPresets()}}} {
		b.Run(tc.name, func(b *testing.B) {
			mem := affinity.NewMemory(nil)
			inv := &convergedInventory{}
			cfg := testConfig()
			st := mem.Store()
			w, err := New(cfg, Deps{Inventory: inv, Leases: st.Leases, Checkpoints: st.Checkpoints, Registry: st.Registry, Sessions: st.Sessions,
				Presets: tc.presets})
			if err != nil {
				b.Fatal(err)
			}
			c := newCPE(b, "SN-BENCH", tree300())
			inform := c.informBody("2 PERIODIC")
			ctx := context.Background()
			b.ReportAllocs()
			start := time.Now()
			for i := 0; b.Loop(); i++ {
				sid := "bench-" + strconv.Itoa(i)
				l, err := mem.Leases().Acquire(ctx, testTenant, c.key, sid, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				req := &sessionsv1.ExchangeRequest{SessionId: sid, NewSession: true, Tenant: testTenant, DeviceKey: c.key,
					Lease: &sessionsv1.DeviceLease{FencingToken: l.FencingToken}, Body: inform, RemoteAddr: "203.0.113.7:40001"}
				resp, err := w.Exchange(ctx, req)
				if err != nil || resp.HttpStatus != 200 {
					b.Fatalf("Inform: %v %v", resp, err)
				}
				// A converged device: the ACS's answer to the empty POST
				// ends the session (no request).
				resp, err = w.Exchange(ctx, &sessionsv1.ExchangeRequest{SessionId: sid, Tenant: testTenant, DeviceKey: c.key, RemoteAddr: "203.0.113.7:40001"})
				if err != nil || resp.HttpStatus != 204 {
					b.Fatalf("empty POST: %v %v", resp, err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "sessions/s")
		})
	}
}

// BenchmarkPresetPlan measures the planner alone: a converged device
// (the fingerprint check) and one it must match again (a new set).
func BenchmarkPresetPlan(b *testing.B) {
	src := &staticPresets{rev: 7, presets: twentyPresets()}
	p := newPresetPlanner(time.Hour, src, nil, &convergedInventory{}, slog.New(slog.DiscardHandler), nil)
	s := engine.Start{Tenant: testTenant, DeviceKey: "00AABB-BenchBox-SN1", Root: "Device.",
		DeviceID: cwmp.DeviceID{OUI: "00AABB", ProductClass: "BenchBox", SerialNumber: "SN1", Manufacturer: "Acme"},
		Events:   []cwmp.Event{{Code: "2 PERIODIC"}}, Now: t0,
		Params: []cwmp.ParameterValue{{Name: "Device.DeviceInfo.SoftwareVersion", Value: "1.0"}}}
	for _, tc := range []struct {
		name, fingerprint string
		wantOps           int
	}{{"converged", provisioning.Fingerprint(7, nil), 0}, {"match-again", provisioning.Fingerprint(6, nil), 1}} {
		b.Run(tc.name, func(b *testing.B) {
			s.Device = engine.DeviceState{Known: true, DataModelRoot: "Device.", PresetsFingerprint: tc.fingerprint}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				ops, err := p.Plan(ctx, s)
				if err != nil || len(ops) != tc.wantOps {
					b.Fatalf("plan: %v %v", ops, err)
				}
			}
		})
	}
}
