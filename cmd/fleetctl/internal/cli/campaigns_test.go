package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/apiauth/apiauthtest"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	provisioningv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/campaigns"
	"github.com/fleetacs/fleetacs/services/campaigns/store/sqlitestore"
)

// noDevices is an inventory with no device: the CLI tests create
// campaigns, they do not run them (cmd/fleetacs's end-to-end test does).
type noDevices struct {
	inventoryv1.InventoryServiceClient
}

func (noDevices) ListDevices(context.Context, *inventoryv1.ListDevicesRequest, ...grpc.CallOption) (*inventoryv1.ListDevicesResponse, error) {
	return &inventoryv1.ListDevicesResponse{}, nil
}

type noTasks struct{ tasksv1.TasksServiceClient }

// onePreset is the inventory's PresetsService with one preset, "rollout",
// whose match requires a tag.
type onePreset struct {
	provisioningv1.PresetsServiceClient
}

func (onePreset) GetPreset(_ context.Context, req *provisioningv1.GetPresetRequest, _ ...grpc.CallOption) (*provisioningv1.GetPresetResponse, error) {
	if req.GetName() != "rollout" {
		return nil, status.Error(codes.NotFound, "preset not found")
	}
	return &provisioningv1.GetPresetResponse{Preset: &provisioningv1.Preset{Name: "rollout", Match: &provisioningv1.PresetMatch{Tags: []string{"rollout"}}}}, nil
}

// campaignsServer is the real campaigns service (SQLite) behind the real
// authenticator, without its runner.
type campaignsServer struct {
	addr             string
	operator, viewer string
}

func newCampaignsServer(t *testing.T) *campaignsServer {
	t.Helper()
	svc, err := campaigns.New(campaigns.DefaultConfig(), campaigns.Deps{
		Store:     sqlitestore.New(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "campaigns.db")}),
		Inventory: noDevices{}, Tasks: noTasks{}, Presets: onePreset{}, CallerTenants: apiauth.CallerTenants,
		Requester: func(ctx context.Context) string { p, _ := apiauth.FromContext(ctx); return p.ID },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	store := apiauthtest.NewMemoryStore()
	auth := apiauth.NewAuthenticator(apiauth.Config{}, apiauth.Options{Tokens: store})
	s := &campaignsServer{addr: serveWith(t, func(g *grpc.Server) { svc.RegisterPublic(g) }, auth.ServerOptions()...)}
	issue := func(role authv1.Role) string {
		tok, _, err := apiauth.IssueToken(t.Context(), store, apiauth.TokenRecord{Role: role, Tenants: []string{"default"}, Created: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	s.operator, s.viewer = issue(authv1.Role_ROLE_OPERATOR), issue(authv1.Role_ROLE_VIEWER)
	return s
}

func TestCampaignsCreateFromFileAndFlags(t *testing.T) {
	cleanEnv(t)
	s := newCampaignsServer(t)
	t.Setenv(envAddr, s.addr)
	t.Setenv(envToken, s.operator)
	spec := filepath.Join(t.TempDir(), "reboot.yaml")
	if err := os.WriteFile(spec, []byte(`
name: nightly reboot
spec:
  filter: {productClass: HGW, tags: [lab]}
  operation: {reboot: {commandKey: nightly}}
  waves: [{count: "10"}, {percent: 100}]
  windows: [{start: "01:00", end: "05:00", timeZone: Europe/Paris}]
  maxInFlight: 50
  stopRule: {maxFailureRatio: 0.1}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	// Flags override the file's fields.
	r := fleetctl(t, "campaigns", "create", "-f", spec, "-max-in-flight", "20", "-wave", "5", "-wave", "50%", "-wave", "100%", "-o", "json")
	wantOK(t, r)
	var out struct {
		Campaign json.RawMessage `json:"campaign"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	c := &campaignsv1.Campaign{}
	if err := protojson.Unmarshal(out.Campaign, c); err != nil {
		t.Fatal(err)
	}
	sp := c.GetSpec()
	if c.GetName() != "nightly reboot" || sp.GetOperation().GetReboot().GetCommandKey() != "nightly" || sp.GetMaxInFlight() != 20 ||
		len(sp.GetWaves()) != 3 || sp.GetWaves()[0].GetCount() != 5 || sp.GetWaves()[1].GetPercent() != 50 ||
		sp.GetFilter().GetProductClass() != "HGW" || sp.GetWindows()[0].GetTimeZone() != "Europe/Paris" || sp.GetStopRule().GetMaxFailureRatio() != 0.1 ||
		c.GetState() != campaignsv1.CampaignState_CAMPAIGN_STATE_RUNNING {
		t.Fatalf("created %v", c)
	}
	id := c.GetId()
	r = fleetctl(t, "campaigns", "pause", id)
	wantOK(t, r)
	if !strings.Contains(r.stdout, "State:    paused") && !strings.Contains(r.stdout, "paused") {
		t.Fatalf("pause: %s", r.stdout)
	}
	r = fleetctl(t, "campaigns", "get", id, "-failed", "10")
	wantOK(t, r)
	for _, want := range []string{"nightly reboot", "task reboot", "paused", "Totals:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("get: %q missing in\n%s", want, r.stdout)
		}
	}
	t.Setenv(envToken, s.viewer)
	r = fleetctl(t, "campaigns", "list", "-state", "paused")
	wantOK(t, r)
	if !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "task reboot") {
		t.Fatalf("list: %s", r.stdout)
	}
	wantFail(t, fleetctl(t, "campaigns", "abort", id), "fleetctl: campaigns abort "+id+": permission denied: role viewer may not call /fleetacs.campaigns.v1.CampaignsService/AbortCampaign (ROLE_FORBIDDEN)")
	t.Setenv(envToken, s.operator)
	wantOK(t, fleetctl(t, "campaigns", "resume", id))
	r = fleetctl(t, "campaigns", "abort", id, "-o", "json")
	wantOK(t, r)
	if !strings.Contains(r.stdout, `"CAMPAIGN_STATE_ABORTED"`) {
		t.Fatalf("abort: %s", r.stdout)
	}
	r = fleetctl(t, "campaigns", "list", "-o", "json")
	wantOK(t, r)
	var list []json.RawMessage
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 {
		t.Fatalf("list json: %v %s", err, r.stdout)
	}
}

func TestCampaignsCreateErrors(t *testing.T) {
	cleanEnv(t)
	s := newCampaignsServer(t)
	t.Setenv(envAddr, s.addr)
	t.Setenv(envToken, s.operator)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: x\nspec: {operation: {reboot: {}}, maxInFlite: 3}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := fleetctl(t, "campaigns", "create", "-f", bad)
	if r.code != ExitFailure || !strings.Contains(r.stderr, "maxInFlite") {
		t.Errorf("misspelt field: %d %q", r.code, r.stderr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-firmware-version", "2.0"}, "-name is required"},
		{[]string{"-name", "x"}, "an action is required"},
		{[]string{"-name", "x", "-firmware-version", "2.0", "-wave", "ten"}, `-wave "ten"`},
		{[]string{"-name", "x", "-firmware-version", "2.0", "-window", "0100"}, `-window "0100"`},
		{[]string{"-name", "x", "-firmware-version", "2.0", "-firmware-file", "f"}, "exclude each other"},
		{[]string{"-name", "x", "-firmware-version", "2.0", "-preset", "rollout"}, "exclude each other"},
		{[]string{"-name", "x", "-firmware-version", "2.0", "-o", "yaml"}, "unknown output format"},
	} {
		r := fleetctl(t, append([]string{"campaigns", "create"}, c.args...)...)
		if r.code == ExitOK || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: %d %q, want %q", c.args, r.code, r.stderr, c.want)
		}
	}
	// The server's refusals name the field or the reason.
	r = fleetctl(t, "campaigns", "create", "-name", "x", "-firmware-version", "2.0", "-wave", "150%")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "spec.waves[0].percent") {
		t.Errorf("bad percent: %q", r.stderr)
	}
	r = fleetctl(t, "campaigns", "create", "-name", "x", "-firmware-version", "2.0")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "CAMPAIGN_ACTION_UNAVAILABLE") {
		t.Errorf("firmware without a files service: %q", r.stderr)
	}
	r = fleetctl(t, "campaigns", "create", "-name", "x", "-preset", "nope")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "CAMPAIGN_ACTION_UNAVAILABLE") || !strings.Contains(r.stderr, "no preset of this name") {
		t.Errorf("unknown preset: %q", r.stderr)
	}
	r = fleetctl(t, "campaigns", "create", "-name", "roll", "-preset", "rollout", "-wave", "50%", "-o", "json")
	if r.code != ExitOK || !strings.Contains(r.stdout, `"preset"`) || !strings.Contains(r.stdout, `"rollout"`) {
		t.Errorf("preset campaign: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = fleetctl(t, "campaigns", "get", "c0123456789abcdef0123")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "CAMPAIGN_NOT_FOUND") {
		t.Errorf("unknown campaign: %q", r.stderr)
	}
}

func TestCampaignsHelpGolden(t *testing.T) {
	helpGolden(t, "CampaignsHelpGolden", "../../testdata/help-campaigns.txt", "campaigns", "create", "list", "get", "pause", "resume", "abort")
}
