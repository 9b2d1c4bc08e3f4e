package inventory

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/apiauth/apiauthtest"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	pv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	"github.com/fleetacs/fleetacs/services/inventory/presetstore/sqlitepresets"
	"github.com/fleetacs/fleetacs/services/inventory/store/sqlitestore"
)

type presetsHarness struct {
	public   pv1.PresetsServiceClient
	internal pv1.PresetsInternalServiceClient
	inv      inventoryv1.InventoryInternalServiceClient
	tokens   *apiauthtest.MemoryStore
	// Tokens: admin, operator and viewer of "default"; admin of "other";
	// admin of both.
	admin, operator, viewer, otherAdmin, both string
}

// newPresetsHarness serves the presets API behind the real API
// authentication, on real SQLite stores.
func newPresetsHarness(t *testing.T) *presetsHarness {
	t.Helper()
	dir := t.TempDir()
	devices := sqlitestore.New(sqlitestore.Config{Path: filepath.Join(dir, "inventory.db")})
	svc := New(devices, Options{CallerTenants: apiauth.CallerTenants})
	keys, err := secretbox.New(secretbox.Key{ID: "k1", Secret: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	ps := NewPresets(sqlitepresets.New(filepath.Join(dir, "presets.db")), devices, keys, Options{CallerTenants: apiauth.CallerTenants})
	tokens := apiauthtest.NewMemoryStore()
	auth := apiauth.NewAuthenticator(apiauth.Config{}, apiauth.Options{Tokens: tokens})
	pub := grpc.NewServer(auth.ServerOptions()...)
	ps.RegisterPublic(pub)
	internal := grpc.NewServer()
	ps.RegisterInternal(internal)
	svc.RegisterInternal(internal)
	if err := svc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := ps.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ps.Close(context.Background()); err != nil {
			t.Error(err)
		}
		if err := devices.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	intConn := testenv.GRPCConn(t, internal)
	h := &presetsHarness{public: pv1.NewPresetsServiceClient(testenv.GRPCConn(t, pub)), internal: pv1.NewPresetsInternalServiceClient(intConn),
		inv: inventoryv1.NewInventoryInternalServiceClient(intConn), tokens: tokens}
	tok := func(role authv1.Role, tenants ...string) string {
		s, _, err := apiauth.IssueToken(t.Context(), tokens, apiauth.TokenRecord{Name: "t", Role: role, Tenants: tenants, Creator: "test", Created: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	h.admin, h.operator, h.viewer = tok(authv1.Role_ROLE_ADMIN, "default"), tok(authv1.Role_ROLE_OPERATOR, "default"), tok(authv1.Role_ROLE_VIEWER, "default")
	h.otherAdmin, h.both = tok(authv1.Role_ROLE_ADMIN, "other"), tok(authv1.Role_ROLE_ADMIN, "default", "other")
	return h
}

func as(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func wifi(name string) *pv1.Preset {
	return &pv1.Preset{Name: name, Precedence: 5,
		Match: &pv1.PresetMatch{ProductClass: "HGW"},
		Desired: &pv1.DesiredState{
			Parameters: []*pv1.ParameterValue{{Path: "Device.WiFi.SSID.1.SSID", Value: "net-{{.SerialNumber}}"}},
			Objects: []*pv1.ObjectInstance{{Table: "Device.WiFi.SSID.", Keys: []*pv1.ObjectParameter{{Name: "SSID", Value: "guest"}},
				Values: []*pv1.ObjectParameter{{Name: "KeyPassphrase", Value: `{{secret "guest-psk"}}`}}}},
			FirmwareVersion: "2.0",
		}}
}

func TestPresetsCRUD(t *testing.T) {
	h := newPresetsHarness(t)
	ctx := as(t.Context(), h.admin)

	// A tenant that never had a preset gets the default set.
	list, err := h.public.ListPresets(ctx, &pv1.ListPresetsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetPresets()) != 1 || list.GetPresets()[0].GetName() != DefaultPresetName || list.GetPresets()[0].GetUpdatedBy() != "fleetacs" {
		t.Fatalf("default set %v", list.GetPresets())
	}

	put, err := h.public.PutPreset(ctx, &pv1.PutPresetRequest{Preset: wifi("wifi"), ExpectedRevision: proto.Uint64(0)})
	if err != nil {
		t.Fatal(err)
	}
	if p := put.GetPreset(); p.GetRevision() != 1 || p.GetTenant() != "default" || !p.GetEnabled() || !strings.HasPrefix(p.GetUpdatedBy(), "token:") {
		t.Fatalf("put %v", p)
	}
	p2 := wifi("wifi")
	p2.Precedence = 7
	if _, err := h.public.PutPreset(ctx, &pv1.PutPresetRequest{Preset: p2, ExpectedRevision: proto.Uint64(0)}); status.Code(err) != codes.Aborted {
		t.Fatalf("create over an existing preset: %v", err)
	}
	wantReason(t, mustErr(h.public.PutPreset(ctx, &pv1.PutPresetRequest{Preset: p2, ExpectedRevision: proto.Uint64(3)})),
		codes.Aborted, errorsv1.ErrorReason_PRESET_REVISION_MISMATCH)
	if r, err := h.public.PutPreset(ctx, &pv1.PutPresetRequest{Preset: p2, ExpectedRevision: proto.Uint64(1)}); err != nil || r.GetPreset().GetRevision() != 2 {
		t.Fatalf("second put: %v %v", r, err)
	}
	old, err := h.public.GetPreset(as(t.Context(), h.viewer), &pv1.GetPresetRequest{Name: "wifi", Revision: 1})
	if err != nil || old.GetPreset().GetPrecedence() != 5 {
		t.Fatalf("revision 1: %v %v", old, err)
	}
	cur, err := h.public.GetPreset(as(t.Context(), h.viewer), &pv1.GetPresetRequest{Name: "wifi"})
	if err != nil || cur.GetPreset().GetPrecedence() != 7 || cur.GetPreset().GetRevision() != 2 {
		t.Fatalf("current: %v %v", cur, err)
	}

	// Paging.
	for i := range 3 {
		if _, err := h.public.PutPreset(ctx, &pv1.PutPresetRequest{Preset: &pv1.Preset{Name: fmt.Sprintf("z%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	tok := ""
	for {
		l, err := h.public.ListPresets(ctx, &pv1.ListPresetsRequest{PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range l.GetPresets() {
			names = append(names, p.GetName())
		}
		if tok = l.GetNextPageToken(); tok == "" {
			break
		}
	}
	if fmt.Sprint(names) != "[fleetacs-bootstrap wifi z0 z1 z2]" {
		t.Fatalf("listed %v", names)
	}

	// The internal set: enabled presets, and unchanged on a known revision.
	set, err := h.internal.GetPresetSet(t.Context(), &pv1.GetPresetSetRequest{Tenant: "default"})
	if err != nil || len(set.GetPresets()) != 5 || set.GetSetRevision() == 0 {
		t.Fatalf("set %v %v", set, err)
	}
	same, err := h.internal.GetPresetSet(t.Context(), &pv1.GetPresetSetRequest{Tenant: "default", KnownSetRevision: set.GetSetRevision()})
	if err != nil || !same.GetUnchanged() || len(same.GetPresets()) != 0 {
		t.Fatalf("unchanged set %v %v", same, err)
	}

	if _, err := h.public.DeletePreset(ctx, &pv1.DeletePresetRequest{Name: "wifi", ExpectedRevision: proto.Uint64(1)}); status.Code(err) != codes.Aborted {
		t.Fatalf("delete at the wrong revision: %v", err)
	}
	if _, err := h.public.DeletePreset(ctx, &pv1.DeletePresetRequest{Name: "wifi"}); err != nil {
		t.Fatal(err)
	}
	wantReason(t, mustErr(h.public.GetPreset(ctx, &pv1.GetPresetRequest{Name: "wifi"})), codes.NotFound, errorsv1.ErrorReason_PRESET_NOT_FOUND)
	changed, err := h.internal.GetPresetSet(t.Context(), &pv1.GetPresetSetRequest{Tenant: "default", KnownSetRevision: set.GetSetRevision()})
	if err != nil || changed.GetUnchanged() || len(changed.GetPresets()) != 4 {
		t.Fatalf("set after delete %v %v", changed, err)
	}

	// The default preset is deletable, and does not come back.
	if _, err := h.public.DeletePreset(ctx, &pv1.DeletePresetRequest{Name: DefaultPresetName}); err != nil {
		t.Fatal(err)
	}
	l, err := h.public.ListPresets(ctx, &pv1.ListPresetsRequest{})
	if err != nil || slices.ContainsFunc(l.GetPresets(), func(p *pv1.Preset) bool { return p.GetName() == DefaultPresetName }) {
		t.Fatalf("after deleting the default: %v %v", l, err)
	}
}

func mustErr[T any](_ T, err error) error { return err }

func wantReason(t *testing.T, err error, code codes.Code, reason errorsv1.ErrorReason) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("error %v, want %s", err, code)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == reason.String() {
			return
		}
	}
	t.Fatalf("error %v: want reason %s", err, reason)
}

func TestPresetsBadInputNamesTheField(t *testing.T) {
	h := newPresetsHarness(t)
	ctx := as(t.Context(), h.admin)
	cases := []struct {
		field string
		p     *pv1.Preset
	}{
		{"preset", nil},
		{"preset.name", &pv1.Preset{Name: "Has Space"}},
		{"preset.desired.parameters[0].value", &pv1.Preset{Name: "a", Desired: &pv1.DesiredState{
			Parameters: []*pv1.ParameterValue{{Path: "Device.X", Value: "{{.Nope}}"}}}}},
		{"preset.desired.parameters[0].path", &pv1.Preset{Name: "a", Desired: &pv1.DesiredState{
			Parameters: []*pv1.ParameterValue{{Path: "X.Y", Value: "1"}}}}},
		{"preset.match.schedule.time_zone", &pv1.Preset{Name: "a", Match: &pv1.PresetMatch{Schedule: &pv1.Schedule{Start: "01:00", End: "02:00", TimeZone: "../../etc/passwd"}}}},
		{"preset.desired.objects[0].keys", &pv1.Preset{Name: "a", Desired: &pv1.DesiredState{
			Objects: []*pv1.ObjectInstance{{Table: "Device.WiFi.SSID."}}}}},
	}
	for _, c := range cases {
		_, err := h.public.PutPreset(ctx, &pv1.PutPresetRequest{Preset: c.p})
		st := status.Convert(err)
		var field string
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 {
				field = br.GetFieldViolations()[0].GetField()
			}
		}
		if st.Code() != codes.InvalidArgument || field != c.field {
			t.Errorf("%s: %v (field %q)", c.field, err, field)
		}
	}
	// An oversized preset: many large values, each within its own limit.
	big := &pv1.Preset{Name: "big", Desired: &pv1.DesiredState{}}
	for i := range 100 {
		big.Desired.Parameters = append(big.Desired.Parameters, &pv1.ParameterValue{Path: fmt.Sprintf("Device.X.P%d", i), Value: strings.Repeat("v", 4000)})
	}
	if _, err := h.public.PutPreset(ctx, &pv1.PutPresetRequest{Preset: big}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("oversized preset: %v", err)
	}
	wantReason(t, mustErr(h.public.ListPresets(ctx, &pv1.ListPresetsRequest{PageToken: "garbage"})), codes.InvalidArgument, errorsv1.ErrorReason_INVALID_PAGE_TOKEN)
	wantReason(t, mustErr(h.public.GetPreset(ctx, &pv1.GetPresetRequest{Name: "../x"})), codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
}

func TestPresetsAuthAndTenants(t *testing.T) {
	h := newPresetsHarness(t)
	bg := t.Context()
	if _, err := h.public.PutPreset(as(bg, h.admin), &pv1.PutPresetRequest{Preset: wifi("mine")}); err != nil {
		t.Fatal(err)
	}
	// No credentials, and a bad token.
	wantReason(t, mustErr(h.public.ListPresets(bg, &pv1.ListPresetsRequest{})), codes.Unauthenticated, errorsv1.ErrorReason_CREDENTIALS_MISSING)
	wantReason(t, mustErr(h.public.ListPresets(as(bg, "fat_nope_nope"), &pv1.ListPresetsRequest{})), codes.Unauthenticated, errorsv1.ErrorReason_CREDENTIALS_INVALID)
	// Roles: viewers read, operators dry-run, admins write.
	wantReason(t, mustErr(h.public.PutPreset(as(bg, h.operator), &pv1.PutPresetRequest{Preset: wifi("x")})), codes.PermissionDenied, errorsv1.ErrorReason_ROLE_FORBIDDEN)
	wantReason(t, mustErr(h.public.DeletePreset(as(bg, h.operator), &pv1.DeletePresetRequest{Name: "mine"})), codes.PermissionDenied, errorsv1.ErrorReason_ROLE_FORBIDDEN)
	wantReason(t, mustErr(h.public.DryRunPreset(as(bg, h.viewer), &pv1.DryRunPresetRequest{DeviceId: "d"})), codes.PermissionDenied, errorsv1.ErrorReason_ROLE_FORBIDDEN)
	if _, err := h.public.GetPreset(as(bg, h.viewer), &pv1.GetPresetRequest{Name: "mine"}); err != nil {
		t.Fatalf("viewer get: %v", err)
	}
	// Another tenant's token: naming this tenant is refused; its own
	// tenant does not hold the preset.
	wantReason(t, mustErr(h.public.GetPreset(as(bg, h.otherAdmin), &pv1.GetPresetRequest{Tenant: "default", Name: "mine"})), codes.PermissionDenied, errorsv1.ErrorReason_TENANT_FORBIDDEN)
	wantReason(t, mustErr(h.public.DeletePreset(as(bg, h.otherAdmin), &pv1.DeletePresetRequest{Tenant: "default", Name: "mine"})), codes.PermissionDenied, errorsv1.ErrorReason_TENANT_FORBIDDEN)
	wantReason(t, mustErr(h.public.PutPreset(as(bg, h.otherAdmin), &pv1.PutPresetRequest{Tenant: "default", Preset: wifi("mine")})), codes.PermissionDenied, errorsv1.ErrorReason_TENANT_FORBIDDEN)
	wantReason(t, mustErr(h.public.GetPreset(as(bg, h.otherAdmin), &pv1.GetPresetRequest{Name: "mine"})), codes.NotFound, errorsv1.ErrorReason_PRESET_NOT_FOUND)
	// A page token of one tenant's list is refused on another's.
	l, err := h.public.ListPresets(as(bg, h.admin), &pv1.ListPresetsRequest{PageSize: 1})
	if err != nil || l.GetNextPageToken() == "" {
		t.Fatalf("list: %v %v", l, err)
	}
	wantReason(t, mustErr(h.public.ListPresets(as(bg, h.both), &pv1.ListPresetsRequest{Tenant: "other", PageToken: l.GetNextPageToken()})),
		codes.InvalidArgument, errorsv1.ErrorReason_INVALID_PAGE_TOKEN)
	// Credentials over two tenants must name one.
	wantReason(t, mustErr(h.public.ListPresets(as(bg, h.both), &pv1.ListPresetsRequest{})), codes.InvalidArgument, errorsv1.ErrorReason_TENANT_REQUIRED)
}

func TestPresetsDryRun(t *testing.T) {
	h := newPresetsHarness(t)
	ctx := as(t.Context(), h.admin)
	if _, err := h.inv.RecordSession(t.Context(), record("00AABB-HGW-SN1", "SN1", 1, t0)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.public.PutPreset(ctx, &pv1.PutPresetRequest{Preset: wifi("wifi")}); err != nil {
		t.Fatal(err)
	}
	op := as(t.Context(), h.operator)
	r, err := h.public.DryRunPreset(op, &pv1.DryRunPresetRequest{DeviceId: "00AABB-HGW-SN1", Name: "wifi"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, q := range r.GetRequests() {
		got = append(got, q.GetMethod()+fmt.Sprint(q.GetPaths())+fmt.Sprint(q.GetValues()))
	}
	want := "SetParameterValues[Device.WiFi.SSID.1.SSID][net-SN1] AddObject[Device.WiFi.SSID.][SSID=guest KeyPassphrase=(secret guest-psk)]"
	if strings.Join(got, " ") != want || r.GetConverged() || len(r.GetPresets()) != 1 || !r.GetPresets()[0].GetMatched() {
		t.Fatalf("dry run:\n%s\nwant\n%s\n%v", strings.Join(got, " "), want, r)
	}
	if !slices.ContainsFunc(r.GetNotes(), func(n string) bool { return strings.Contains(n, "firmware needs the files service") }) {
		t.Fatalf("notes %q", r.GetNotes())
	}
	// The whole set: the default preset matches the BOOTSTRAP the device
	// last sent, and sets what the inventory does not know: read first.
	all, err := h.public.DryRunPreset(op, &pv1.DryRunPresetRequest{DeviceId: "00AABB-HGW-SN1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.GetPresets()) != 2 || all.GetRequests()[0].GetMethod() != "GetParameterValues" {
		t.Fatalf("dry run of the set: %v", all)
	}
	// A periodic session: the default preset does not match.
	per, err := h.public.DryRunPreset(op, &pv1.DryRunPresetRequest{DeviceId: "00AABB-HGW-SN1", Events: []string{"2 PERIODIC"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range per.GetPresets() {
		if v.GetName() == DefaultPresetName && v.GetMatched() {
			t.Fatalf("default preset matched a periodic session: %v", per)
		}
	}
	wantReason(t, mustErr(h.public.DryRunPreset(op, &pv1.DryRunPresetRequest{DeviceId: "nope"})), codes.NotFound, errorsv1.ErrorReason_DEVICE_NOT_FOUND)
	wantReason(t, mustErr(h.public.DryRunPreset(op, &pv1.DryRunPresetRequest{DeviceId: "00AABB-HGW-SN1", Name: "nope"})), codes.NotFound, errorsv1.ErrorReason_PRESET_NOT_FOUND)
	// Another tenant's device is not found from there.
	other := as(t.Context(), h.both)
	wantReason(t, mustErr(h.public.DryRunPreset(other, &pv1.DryRunPresetRequest{Tenant: "other", DeviceId: "00AABB-HGW-SN1"})), codes.NotFound, errorsv1.ErrorReason_DEVICE_NOT_FOUND)
}

func TestDeviceSecrets(t *testing.T) {
	h := newPresetsHarness(t)
	ctx := t.Context()
	r, err := h.internal.GetDeviceSecrets(ctx, &pv1.GetDeviceSecretsRequest{Tenant: "default", DeviceKey: "dev-1", Names: []string{"wifi-psk", "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	psk := r.GetSecrets()["wifi-psk"]
	if len(psk) != 26 || r.GetSecrets()["admin"] == psk || len(r.GetSecrets()) != 2 {
		t.Fatalf("secrets %v", r.GetSecrets())
	}
	again, err := h.internal.GetDeviceSecrets(ctx, &pv1.GetDeviceSecretsRequest{Tenant: "default", DeviceKey: "dev-1", Names: []string{"wifi-psk"}})
	if err != nil || again.GetSecrets()["wifi-psk"] != psk {
		t.Fatalf("second read %v %v, want the same secret", again, err)
	}
	other, err := h.internal.GetDeviceSecrets(ctx, &pv1.GetDeviceSecretsRequest{Tenant: "default", DeviceKey: "dev-2", Names: []string{"wifi-psk"}})
	if err != nil || other.GetSecrets()["wifi-psk"] == psk {
		t.Fatalf("another device's secret %v %v", other, err)
	}
	for _, bad := range []*pv1.GetDeviceSecretsRequest{
		{Tenant: "default", DeviceKey: "dev-1"},
		{Tenant: "default", DeviceKey: "dev-1", Names: []string{"Bad Name"}},
		{Tenant: "", DeviceKey: "dev-1", Names: []string{"a"}},
		{Tenant: "default", DeviceKey: "dev-1", Names: make([]string, 33)},
	} {
		if _, err := h.internal.GetDeviceSecrets(ctx, bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%v: %v, want InvalidArgument", bad, err)
		}
	}
}

// TestDeviceSecretsResealedOnRotation: a new first key seals the stored
// secrets again at start; a secret under a key the file lacks stops the
// start.
func TestDeviceSecretsResealedOnRotation(t *testing.T) {
	dir := t.TempDir()
	devices := sqlitestore.New(sqlitestore.Config{Path: filepath.Join(dir, "inventory.db")})
	t.Cleanup(func() { _ = devices.Close(context.Background()) })
	k1 := secretbox.Key{ID: "k1", Secret: bytes.Repeat([]byte{1}, 32)}
	k2 := secretbox.Key{ID: "k2", Secret: bytes.Repeat([]byte{2}, 32)}
	start := func(keys ...secretbox.Key) (*Presets, pv1.PresetsInternalServiceClient, error) {
		ring, err := secretbox.New(keys...)
		if err != nil {
			t.Fatal(err)
		}
		ps := NewPresets(sqlitepresets.New(filepath.Join(dir, "presets.db")), devices, ring, Options{})
		srv := grpc.NewServer()
		ps.RegisterInternal(srv)
		return ps, pv1.NewPresetsInternalServiceClient(testenv.GRPCConn(t, srv)), ps.Start(t.Context())
	}
	ps, cl, err := start(k1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := cl.GetDeviceSecrets(t.Context(), &pv1.GetDeviceSecretsRequest{Tenant: "default", DeviceKey: "d", Names: []string{"psk"}})
	if err != nil {
		t.Fatal(err)
	}
	psk := r.GetSecrets()["psk"]
	if err := ps.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Rotated: k2 first, k1 kept.
	ps, cl, err = start(k2, k1)
	if err != nil {
		t.Fatal(err)
	}
	r, err = cl.GetDeviceSecrets(t.Context(), &pv1.GetDeviceSecretsRequest{Tenant: "default", DeviceKey: "d", Names: []string{"psk"}})
	if err != nil || r.GetSecrets()["psk"] != psk {
		t.Fatalf("after rotation %v %v, want the same secret", r, err)
	}
	if err := ps.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// k1 dropped: the secret is now under k2 and still opens.
	ps, cl, err = start(k2)
	if err != nil {
		t.Fatalf("start with k2 alone after the reseal: %v", err)
	}
	r, err = cl.GetDeviceSecrets(t.Context(), &pv1.GetDeviceSecretsRequest{Tenant: "default", DeviceKey: "d", Names: []string{"psk"}})
	if err != nil || r.GetSecrets()["psk"] != psk {
		t.Fatalf("with k2 alone %v %v", r, err)
	}
	if err := ps.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A file without the key the secrets are under: no start.
	k3 := secretbox.Key{ID: "k3", Secret: bytes.Repeat([]byte{3}, 32)}
	if _, _, err := start(k3); err == nil || !strings.Contains(err.Error(), `"k2"`) {
		t.Fatalf("start without the secrets' key: %v", err)
	}
}

// TestDeleteDeviceDeletesSecrets: DeleteDevice takes the device's preset
// secrets with it: a device of that id registered again gets new ones.
func TestDeleteDeviceDeletesSecrets(t *testing.T) {
	dir := t.TempDir()
	devices := sqlitestore.New(sqlitestore.Config{Path: filepath.Join(dir, "inventory.db")})
	keys, err := secretbox.New(secretbox.Key{ID: "k1", Secret: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	svc := New(devices, Options{})
	ps := NewPresets(sqlitepresets.New(filepath.Join(dir, "presets.db")), devices, keys, Options{})
	svc.OnDelete(ps.DeviceDeleted)
	srv := grpc.NewServer()
	svc.RegisterPublic(srv)
	svc.RegisterInternal(srv)
	ps.RegisterInternal(srv)
	cc := testenv.GRPCConn(t, srv)
	if err := svc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := ps.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ps.Close(context.Background())
		_ = devices.Close(context.Background())
	})
	const id = "00AABB-HGW-SN1"
	if _, err := inventoryv1.NewInventoryInternalServiceClient(cc).RecordSession(t.Context(), record(id, "SN1", 1, t0)); err != nil {
		t.Fatal(err)
	}
	secrets := pv1.NewPresetsInternalServiceClient(cc)
	get := func() string {
		r, err := secrets.GetDeviceSecrets(t.Context(), &pv1.GetDeviceSecretsRequest{Tenant: "default", DeviceKey: id, Names: []string{"psk"}})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetSecrets()["psk"]
	}
	before := get()
	if get() != before {
		t.Fatal("the secret changed without a delete")
	}
	if _, err := inventoryv1.NewInventoryServiceClient(cc).DeleteDevice(t.Context(), &inventoryv1.DeleteDeviceRequest{Tenant: "default", Id: id}); err != nil {
		t.Fatal(err)
	}
	if get() == before {
		t.Fatal("the deleted device's secret survived")
	}
}
