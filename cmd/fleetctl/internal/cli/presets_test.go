package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
)

// fakePresets records requests; it keeps presets by name.
type fakePresets struct {
	pv1.UnimplementedPresetsServiceServer
	mu      sync.Mutex
	puts    []*pv1.PutPresetRequest
	presets map[string]*pv1.Preset
	dry     *pv1.DryRunPresetRequest
}

func (f *fakePresets) PutPreset(_ context.Context, req *pv1.PutPresetRequest) (*pv1.PutPresetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.puts = append(f.puts, req)
	p := proto.Clone(req.GetPreset()).(*pv1.Preset)
	if old := f.presets[p.GetName()]; old != nil {
		p.Revision = old.GetRevision() + 1
	} else {
		p.Revision = 1
	}
	f.presets[p.GetName()] = p
	return &pv1.PutPresetResponse{Preset: p}, nil
}

func (f *fakePresets) GetPreset(_ context.Context, req *pv1.GetPresetRequest) (*pv1.GetPresetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.presets[req.GetName()]
	if p == nil {
		return nil, status.Error(codes.NotFound, "preset not found")
	}
	return &pv1.GetPresetResponse{Preset: p}, nil
}

func (f *fakePresets) ListPresets(context.Context, *pv1.ListPresetsRequest) (*pv1.ListPresetsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &pv1.ListPresetsResponse{}
	for _, n := range []string{"a", "wifi"} {
		if p := f.presets[n]; p != nil {
			out.Presets = append(out.Presets, p)
		}
	}
	return out, nil
}

func (f *fakePresets) DeletePreset(_ context.Context, req *pv1.DeletePresetRequest) (*pv1.DeletePresetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.presets[req.GetName()] == nil {
		return nil, status.Error(codes.NotFound, "preset not found")
	}
	delete(f.presets, req.GetName())
	return &pv1.DeletePresetResponse{}, nil
}

func (f *fakePresets) DryRunPreset(_ context.Context, req *pv1.DryRunPresetRequest) (*pv1.DryRunPresetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dry = req
	if req.GetName() == "" {
		return &pv1.DryRunPresetResponse{Converged: true, Presets: []*pv1.PresetVerdict{{Name: "wifi", Revision: 1, Matched: true}}}, nil
	}
	return &pv1.DryRunPresetResponse{Presets: []*pv1.PresetVerdict{{Name: "wifi", Revision: 1, Matched: true}},
		Requests: []*pv1.PlannedRequest{{Method: "SetParameterValues", Paths: []string{"Device.X"}, Values: []string{"1"}, Reason: "preset wifi"}}}, nil
}

func servePresets(t *testing.T) *fakePresets {
	t.Helper()
	cleanEnv(t)
	f := &fakePresets{presets: map[string]*pv1.Preset{}}
	t.Setenv(envAddr, serveWith(t, func(s *grpc.Server) { pv1.RegisterPresetsServiceServer(s, f) }))
	return f
}

const wifiYAML = `
- name: wifi
  precedence: 10
  match:
    product_class: "HG*"
    events: ["0 BOOTSTRAP"]
  desired:
    parameters:
      - path: Device.WiFi.SSID.1.SSID
        value: "home-{{.SerialNumber}}"
    attributes:
      - path: Device.DeviceInfo.SoftwareVersion
        notification: NOTIFICATION_ACTIVE
- name: a
  enabled: false
`

func TestPresetsApplyYAMLAndJSON(t *testing.T) {
	f := servePresets(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(path, []byte(wifiYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	r := fleetctl(t, "presets", "apply", path)
	wantOK(t, r)
	if r.stdout != "wifi revision 1\na revision 1\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	p := f.puts[0].GetPreset()
	if p.GetName() != "wifi" || p.GetPrecedence() != 10 || p.GetMatch().GetProductClass() != "HG*" || p.GetMatch().GetEvents()[0] != "0 BOOTSTRAP" ||
		p.GetDesired().GetParameters()[0].GetValue() != "home-{{.SerialNumber}}" ||
		p.GetDesired().GetAttributes()[0].GetNotification() != pv1.Notification_NOTIFICATION_ACTIVE || f.puts[1].GetPreset().GetEnabled() {
		t.Errorf("put %v", f.puts)
	}
	// JSON, one preset, with an expected revision.
	jpath := filepath.Join(dir, "p.json")
	if err := os.WriteFile(jpath, []byte(`{"name":"wifi","precedence":3}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r = fleetctl(t, "presets", "apply", jpath, "-expect-revision", "1", "-o", "json")
	wantOK(t, r)
	if last := f.puts[len(f.puts)-1]; last.ExpectedRevision == nil || *last.ExpectedRevision != 1 || last.GetPreset().GetPrecedence() != 3 {
		t.Errorf("put %v", last)
	}
	var j map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil || j["name"] != "wifi" || j["revision"] != "2" {
		t.Errorf("-o json %q (%v)", r.stdout, err)
	}
	// Bad files are usage errors, and nothing is sent.
	n := len(f.puts)
	for i, body := range []string{"name: [", "- 1\n- 2\n", "name: x\nbogus_field: 1\n", "42"} {
		bad := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(bad, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if r := fleetctl(t, "presets", "apply", bad); r.code != ExitUsage {
			t.Errorf("bad file %d: exit %d (%q)", i, r.code, r.stderr)
		}
	}
	if r := fleetctl(t, "presets", "apply", path, "-expect-revision", "0"); r.code != ExitUsage {
		t.Errorf("-expect-revision with two presets: exit %d", r.code)
	}
	if len(f.puts) != n {
		t.Errorf("usage errors sent %d puts", len(f.puts)-n)
	}
}

func TestPresetsListGetDeleteDryRun(t *testing.T) {
	f := servePresets(t)
	f.presets["wifi"] = &pv1.Preset{Name: "wifi", Revision: 4, Enabled: proto.Bool(true), Precedence: 2}
	r := fleetctl(t, "presets", "list")
	wantOK(t, r)
	if !strings.Contains(r.stdout, "NAME") || !strings.Contains(r.stdout, "wifi  4         true") {
		t.Errorf("list %q", r.stdout)
	}
	r = fleetctl(t, "presets", "list", "-o", "json")
	wantOK(t, r)
	var arr []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &arr); err != nil || len(arr) != 1 || arr[0]["name"] != "wifi" {
		t.Errorf("list json %q (%v)", r.stdout, err)
	}
	r = fleetctl(t, "presets", "get", "wifi")
	wantOK(t, r)
	if !strings.Contains(r.stdout, `"revision": "4"`) {
		t.Errorf("get %q", r.stdout)
	}
	// Dry run of one preset: not converged, exit 1.
	r = fleetctl(t, "presets", "dry-run", "wifi", "dev-1", "-event", "2 PERIODIC")
	if r.code != ExitFailure || !strings.Contains(r.stdout, "1. SetParameterValues Device.X") || f.dry.GetName() != "wifi" ||
		f.dry.GetDeviceId() != "dev-1" || f.dry.GetEvents()[0] != "2 PERIODIC" {
		t.Errorf("dry-run: exit %d %q %v", r.code, r.stdout, f.dry)
	}
	r = fleetctl(t, "presets", "dry-run", "--all", "dev-1")
	wantOK(t, r)
	if f.dry.GetName() != "" || !strings.Contains(r.stdout, "converged") {
		t.Errorf("dry-run --all %q %v", r.stdout, f.dry)
	}
	if r := fleetctl(t, "presets", "dry-run", "dev-1"); r.code != ExitUsage {
		t.Errorf("dry-run without a preset: exit %d", r.code)
	}
	wantOK(t, fleetctl(t, "presets", "delete", "wifi"))
	if r := fleetctl(t, "presets", "get", "wifi"); r.code != ExitFailure || !strings.Contains(r.stderr, "not found") {
		t.Errorf("get after delete: %d %q", r.code, r.stderr)
	}
}

func TestPresetsHelpGolden(t *testing.T) {
	helpGolden(t, "PresetsHelpGolden", "../../testdata/help-presets.txt", "presets", "apply", "list", "get", "delete", "dry-run")
}
