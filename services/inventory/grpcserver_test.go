package inventory

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"github.com/fleetacs/fleetacs/services/inventory/store/sqlitestore"
)

type harness struct {
	svc      *Service
	public   inventoryv1.InventoryServiceClient
	internal inventoryv1.InventoryInternalServiceClient
}

// newHarness serves the service over an in-memory connection, on a real
// SQLite store, and runs it until the test ends.
func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	st := sqlitestore.New(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "inventory.db")})
	svc := New(st, opts)
	srv := grpc.NewServer()
	svc.RegisterPublic(srv)
	svc.RegisterInternal(srv)
	cc := testenv.GRPCConn(t, srv)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		srv.Stop()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !svc.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("store never became ready")
		}
		select {
		case err := <-done:
			t.Fatalf("Run ended early: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	return &harness{svc: svc, public: inventoryv1.NewInventoryServiceClient(cc), internal: inventoryv1.NewInventoryInternalServiceClient(cc)}
}

// wantError checks a status code and catalogue reason.
func wantError(t *testing.T, err error, code codes.Code, reason errorsv1.ErrorReason) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("error = %v, want code %s", err, code)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if info.GetReason() != reason.String() || info.GetDomain() != "fleetacs" {
				t.Fatalf("reason = %s/%s, want fleetacs/%s", info.GetDomain(), info.GetReason(), reason)
			}
			return
		}
	}
	t.Fatalf("error %v carries no ErrorInfo", err)
}

var t0 = time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)

func record(key, serial string, token uint64, at time.Time) *inventoryv1.RecordSessionRequest {
	v := "1.2.3"
	return &inventoryv1.RecordSessionRequest{
		Tenant: "default", DeviceKey: key, FencingToken: token, SessionId: "s-" + serial,
		ObserveTime: timestamppb.New(at),
		DeviceId:    &inventoryv1.DeviceId{Manufacturer: "Acme", Oui: "00AABB", ProductClass: "HGW", SerialNumber: serial},
		Inform: &inventoryv1.InformRecord{Time: timestamppb.New(at), RemoteIp: "192.0.2.7",
			Events: []*inventoryv1.InformEvent{{Code: "0 BOOTSTRAP"}, {Code: "1 BOOT"}}},
		Fields: &inventoryv1.DeviceFields{SoftwareVersion: &v, ConnectionRequestUrl: proto.String("http://192.0.2.7:7547/")},
		Parameters: []*inventoryv1.Parameter{
			{Path: "Device.DeviceInfo.UpTime", Value: proto.String("42"), Type: "xsd:unsignedInt"},
			{Path: "Device.WiFi.SSID.1.SSID", Value: proto.String(" home "), Type: "xsd:string", Writable: proto.Bool(true)},
			{Path: "Device.WiFi.SSID.1.", Writable: proto.Bool(true)},
		},
		ConnectionRequestCredentials: &inventoryv1.Credentials{Username: "cr", Password: "crpw"},
	}
}

func TestInternalSessionFlow(t *testing.T) {
	h := newHarness(t, Options{})
	ctx := t.Context()
	const key = "00AABB-HGW-S1"

	got, err := h.internal.GetDeviceForSession(ctx, &inventoryv1.GetDeviceForSessionRequest{Tenant: "default", DeviceKey: key})
	if err != nil || got.GetDevice() != nil || got.GetLastFencingToken() != 0 {
		t.Fatalf("unknown device: %v, %v", got, err)
	}
	resp, err := h.internal.RecordSession(ctx, record(key, "S1", 5, t0))
	if err != nil || !resp.GetCreated() {
		t.Fatalf("first RecordSession: %v, %v", resp, err)
	}
	resp, err = h.internal.RecordSession(ctx, record(key, "S1", 5, t0))
	if err != nil || resp.GetCreated() {
		t.Fatalf("repeated RecordSession: %v, %v", resp, err)
	}

	// Without a selector: the session's start state only.
	got, err = h.internal.GetDeviceForSession(ctx, &inventoryv1.GetDeviceForSessionRequest{Tenant: "default", DeviceKey: key})
	if err != nil {
		t.Fatal(err)
	}
	want := &inventoryv1.GetDeviceForSessionResponse{
		Device:                       &inventoryv1.Device{Tenant: "default", Id: key},
		ConnectionRequestCredentials: &inventoryv1.Credentials{Username: "cr", Password: "crpw"},
		LastFencingToken:             5,
	}
	if !proto.Equal(got, want) {
		t.Fatalf("session start state:\n got  %v\n want %v", got, want)
	}
	// With tags: the session start state carries them (the presets
	// fingerprint is checked against them, docs/provisioning.md).
	if _, err := h.public.AddTags(ctx, &inventoryv1.AddTagsRequest{Tenant: "default", Id: key, Tags: []string{"zeta", "alpha"}}); err != nil {
		t.Fatal(err)
	}
	got, err = h.internal.GetDeviceForSession(ctx, &inventoryv1.GetDeviceForSessionRequest{Tenant: "default", DeviceKey: key})
	if err != nil || !slices.Equal(got.GetDevice().GetTags(), []string{"alpha", "zeta"}) {
		t.Fatalf("session start state with tags: %v, %v", got, err)
	}
	if _, err := h.public.RemoveTags(ctx, &inventoryv1.RemoveTagsRequest{Tenant: "default", Id: key, Tags: []string{"zeta", "alpha"}}); err != nil {
		t.Fatal(err)
	}

	got, err = h.internal.GetDeviceForSession(ctx, &inventoryv1.GetDeviceForSessionRequest{Tenant: "default", DeviceKey: key,
		Parameters: &inventoryv1.ParameterSelector{PathPrefixes: []string{"Device.WiFi."}}})
	if err != nil {
		t.Fatal(err)
	}
	dev := got.GetDevice()
	if got.GetLastFencingToken() != 5 || dev.GetSoftwareVersion() != "1.2.3" || dev.GetRemoteIp() != "192.0.2.7" ||
		!dev.GetLastBootstrapTime().AsTime().Equal(t0) || dev.GetConnectionRequest().GetUsername() != "cr" ||
		!dev.GetConnectionRequest().GetPasswordSet() || got.GetConnectionRequestCredentials().GetPassword() != "crpw" {
		t.Fatalf("device for session: %v", got)
	}
	if len(dev.GetParameters()) != 2 || dev.GetParameters()[0].GetPath() != "Device.WiFi.SSID.1." ||
		dev.GetParameters()[0].Value != nil || dev.GetParameters()[1].GetValue() != " home " || !dev.GetParameters()[1].GetWritable() {
		t.Fatalf("parameters: %v", dev.GetParameters())
	}

	// A later write of the session without DeviceId or Inform; a removed
	// object; an attribute only.
	_, err = h.internal.RecordSession(ctx, &inventoryv1.RecordSessionRequest{
		Tenant: "default", DeviceKey: key, FencingToken: 5, ObserveTime: timestamppb.New(t0.Add(time.Second)),
		RemovedPaths:      []string{"Device.WiFi.SSID.1."},
		Parameters:        []*inventoryv1.Parameter{{Path: "Device.DeviceInfo.UpTime", Notification: proto.Uint32(2)}},
		FullDiscoveryTime: timestamppb.New(t0),
		CpeCredentials:    &inventoryv1.Credentials{Username: "acs", Password: "per-device"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err = h.internal.GetDeviceForSession(ctx, &inventoryv1.GetDeviceForSessionRequest{Tenant: "default", DeviceKey: key,
		Parameters: &inventoryv1.ParameterSelector{}})
	if err != nil {
		t.Fatal(err)
	}
	ps := got.GetDevice().GetParameters()
	if len(ps) != 1 || ps[0].GetValue() != "42" || ps[0].GetNotification() != 2 || !got.GetDevice().GetFullDiscoveryTime().AsTime().Equal(t0) {
		t.Fatalf("after removal: %v", got.GetDevice())
	}

	// A lost lease.
	_, err = h.internal.RecordSession(ctx, record(key, "S1", 4, t0))
	wantError(t, err, codes.FailedPrecondition, errorsv1.ErrorReason_LEASE_LOST)

	cpe, err := h.internal.GetCpeCredentials(ctx, &inventoryv1.GetCpeCredentialsRequest{Tenant: "default", DeviceKey: key})
	if err != nil || cpe.GetCredentials().GetPassword() != "per-device" || !cpe.GetDeviceKnown() || cpe.GetRegisteredTime() == nil {
		t.Fatalf("CPE credentials: %v, %v", cpe, err)
	}
	cpe, err = h.internal.GetCpeCredentials(ctx, &inventoryv1.GetCpeCredentialsRequest{Tenant: "default", DeviceKey: "00AABB-HGW-NEW"})
	if err != nil || cpe.GetCredentials() != nil || cpe.GetDeviceKnown() || cpe.GetRegisteredTime() != nil {
		t.Fatalf("unknown device's CPE credentials: %v, %v", cpe, err)
	}
	target, err := h.internal.GetConnectionRequestTarget(ctx, &inventoryv1.GetConnectionRequestTargetRequest{Tenant: "default", DeviceKey: key})
	if err != nil || target.GetConnectionRequest().GetUrl() != "http://192.0.2.7:7547/" || target.GetCredentials().GetUsername() != "cr" ||
		target.GetRemoteIp() != "192.0.2.7" || !target.GetLastInformTime().AsTime().Equal(t0) {
		t.Fatalf("connection request target: %v, %v", target, err)
	}
	_, err = h.internal.GetConnectionRequestTarget(ctx, &inventoryv1.GetConnectionRequestTargetRequest{Tenant: "default", DeviceKey: "00AABB-HGW-NEW"})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_DEVICE_NOT_FOUND)
}

func TestInternalRejects(t *testing.T) {
	h := newHarness(t, Options{})
	ctx := t.Context()
	bad := map[string]*inventoryv1.RecordSessionRequest{}
	r := record("00AABB-HGW-S1", "S1", 0, t0)
	bad["zero token"] = r
	r = record("00AABB-HGW-S1", "S1", 1, t0)
	r.ObserveTime = nil
	bad["no observe time"] = r
	r = record("00AABB-HGW-S1", "S1", 1, t0)
	r.Tenant = ""
	bad["no tenant"] = r
	r = record("00AABB-HGW-OTHER", "S1", 1, t0)
	bad["key not from DeviceId"] = r
	r = record("00AABB-HGW-S1", "S1", 1, t0)
	r.Parameters[0].Path = "Device..X"
	bad["bad path"] = r
	for name, req := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := h.internal.RecordSession(ctx, req)
			wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
		})
	}
	// A first write without DeviceId cannot create the device.
	r = record("00AABB-HGW-S1", "S1", 1, t0)
	r.DeviceId = nil
	_, err := h.internal.RecordSession(ctx, r)
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_DEVICE_NOT_FOUND)
}

func TestPublicAPI(t *testing.T) {
	h := newHarness(t, Options{})
	ctx := t.Context()
	var keys []string
	for i := range 7 {
		serial := string(rune('A' + i))
		key := "00AABB-HGW-" + serial
		keys = append(keys, key)
		if _, err := h.internal.RecordSession(ctx, record(key, serial, 1, t0)); err != nil {
			t.Fatal(err)
		}
	}
	// Empty tenant: the caller's only one.
	d, err := h.public.GetDevice(ctx, &inventoryv1.GetDeviceRequest{Id: keys[0]})
	if err != nil || d.GetDevice().GetId() != keys[0] || d.GetDevice().GetParameters() != nil {
		t.Fatalf("GetDevice: %v, %v", d, err)
	}
	_, err = h.public.GetDevice(ctx, &inventoryv1.GetDeviceRequest{Tenant: "other", Id: keys[0]})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_DEVICE_NOT_FOUND)
	_, err = h.public.GetDevice(ctx, &inventoryv1.GetDeviceRequest{})
	wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)

	// Tags.
	tags, err := h.public.AddTags(ctx, &inventoryv1.AddTagsRequest{Id: keys[1], Tags: []string{"b", "a:1"}})
	if err != nil || !slices.Equal(tags.GetTags(), []string{"a:1", "b"}) {
		t.Fatalf("AddTags: %v, %v", tags, err)
	}
	_, err = h.public.AddTags(ctx, &inventoryv1.AddTagsRequest{Id: keys[1], Tags: []string{"no spaces"}})
	wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_TAG)
	rm, err := h.public.RemoveTags(ctx, &inventoryv1.RemoveTagsRequest{Id: keys[1], Tags: []string{"b", "absent"}})
	if err != nil || !slices.Equal(rm.GetTags(), []string{"a:1"}) {
		t.Fatalf("RemoveTags: %v, %v", rm, err)
	}

	// Paging, with a filter and parameters.
	req := &inventoryv1.ListDevicesRequest{PageSize: 3,
		Filter: &inventoryv1.DeviceFilter{Oui: "00aabb", ParameterConditions: []*inventoryv1.ParameterCondition{
			{Path: "Device.DeviceInfo.UpTime", Operator: inventoryv1.ConditionOperator_CONDITION_OPERATOR_GT, Value: "41"}}},
		Parameters: &inventoryv1.ParameterSelector{PathPrefixes: []string{"Device.DeviceInfo."}}}
	var listed []string
	for {
		page, err := h.public.ListDevices(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range page.GetDevices() {
			listed = append(listed, d.GetId())
			if len(d.GetParameters()) != 1 {
				t.Fatalf("listed parameters: %v", d.GetParameters())
			}
		}
		if page.GetNextPageToken() == "" {
			break
		}
		req.PageToken = page.GetNextPageToken()
	}
	if !slices.Equal(listed, keys) {
		t.Fatalf("listed %q, want %q", listed, keys)
	}
	// A token from one listing does not page another.
	first, err := h.public.ListDevices(ctx, &inventoryv1.ListDevicesRequest{PageSize: 2})
	if err != nil || first.GetNextPageToken() == "" {
		t.Fatalf("first page: %v, %v", first, err)
	}
	_, err = h.public.ListDevices(ctx, &inventoryv1.ListDevicesRequest{PageSize: 2, PageToken: first.GetNextPageToken(),
		Filter: &inventoryv1.DeviceFilter{Tags: []string{"a:1"}}})
	wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_PAGE_TOKEN)
	_, err = h.public.ListDevices(ctx, &inventoryv1.ListDevicesRequest{PageToken: "garbage"})
	wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_PAGE_TOKEN)
	_, err = h.public.ListDevices(ctx, &inventoryv1.ListDevicesRequest{Filter: &inventoryv1.DeviceFilter{
		ParameterConditions: []*inventoryv1.ParameterCondition{{Path: "Device.X"}}}})
	wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FILTER)
	_, err = h.public.ListDevices(ctx, &inventoryv1.ListDevicesRequest{Filter: &inventoryv1.DeviceFilter{
		ParameterConditions: []*inventoryv1.ParameterCondition{{Path: "Device..X", Operator: inventoryv1.ConditionOperator_CONDITION_OPERATOR_EXISTS}}}})
	wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FILTER)

	// Deletion, and a repeated one.
	if _, err := h.public.DeleteDevice(ctx, &inventoryv1.DeleteDeviceRequest{Id: keys[0]}); err != nil {
		t.Fatal(err)
	}
	_, err = h.public.DeleteDevice(ctx, &inventoryv1.DeleteDeviceRequest{Id: keys[0]})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_DEVICE_NOT_FOUND)
}

func TestTenantRequired(t *testing.T) {
	h := newHarness(t, Options{CallerTenants: func(context.Context) []string { return []string{"a", "b"} }})
	_, err := h.public.GetDevice(t.Context(), &inventoryv1.GetDeviceRequest{Id: "00AABB-X"})
	wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_TENANT_REQUIRED)
	_, err = h.public.GetDevice(t.Context(), &inventoryv1.GetDeviceRequest{Tenant: "a", Id: "00AABB-X"})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_DEVICE_NOT_FOUND)
}

func TestNotReady(t *testing.T) {
	st := sqlitestore.New(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "x.db")})
	svc := New(st, Options{})
	srv := &internalServer{s: svc}
	_, err := srv.GetDeviceForSession(t.Context(), &inventoryv1.GetDeviceForSessionRequest{Tenant: "default", DeviceKey: "X-1"})
	wantError(t, err, codes.Unavailable, errorsv1.ErrorReason_STORE_UNAVAILABLE)
}

// TestSetCpeCredentials sets a device's credentials through the public API:
// the gateway reads them through the internal one, no public method shows
// the password.
func TestSetCpeCredentials(t *testing.T) {
	h := newHarness(t, Options{})
	ctx := t.Context()
	const key = "00AABB-HGW-CRED"
	if _, err := h.internal.RecordSession(ctx, record(key, "CRED", 1, t0)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.public.SetCpeCredentials(ctx, &inventoryv1.SetCpeCredentialsRequest{Id: key, Username: "cpe-1", Password: "per-device-pw"}); err != nil {
		t.Fatal(err)
	}
	got, err := h.internal.GetCpeCredentials(ctx, &inventoryv1.GetCpeCredentialsRequest{Tenant: DefaultTenant, DeviceKey: key})
	if err != nil || got.GetCredentials().GetUsername() != "cpe-1" || got.GetCredentials().GetPassword() != "per-device-pw" {
		t.Fatalf("GetCpeCredentials: %v, %v", got, err)
	}
	d, err := h.public.GetDevice(ctx, &inventoryv1.GetDeviceRequest{Id: key, Parameters: &inventoryv1.ParameterSelector{}})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := proto.Marshal(d); strings.Contains(string(b), "per-device-pw") {
		t.Fatal("GetDevice shows the password")
	}
	for _, req := range []*inventoryv1.SetCpeCredentialsRequest{
		{Id: key, Password: "p"},
		{Id: key, Username: "u"},
		{Id: key, Username: "u", Password: strings.Repeat("p", 257)},
	} {
		_, err := h.public.SetCpeCredentials(ctx, req)
		wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
	}
	_, err = h.public.SetCpeCredentials(ctx, &inventoryv1.SetCpeCredentialsRequest{Id: "00AABB-HGW-NONE", Username: "u", Password: "p"})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_DEVICE_NOT_FOUND)
}

// Discovery profiles over the internal API: recorded observations merge,
// with the service's clock, and bad keys or sizes name their field.
func TestInternalDiscoveryProfiles(t *testing.T) {
	at := t0.Add(time.Hour)
	h := newHarness(t, Options{Now: func() time.Time { return at }})
	ctx := t.Context()
	got, err := h.internal.GetDiscoveryProfile(ctx, &inventoryv1.GetDiscoveryProfileRequest{Tenant: "default", Oui: "a00001", ProductClass: "OT2800"})
	if err != nil || got.GetProfile().GetGpvBatchOk() != 0 || got.GetProfile().GetUpdateTime() != nil {
		t.Fatalf("unknown class: %v %v", got, err)
	}
	for _, obs := range []*inventoryv1.RecordDiscoveryRequest{
		{GpvBatchFailed: 100}, {GpvBatchFailed: 50}, {GpvBatchOk: 25}, {SubtreeGpnFailed: true},
	} {
		obs.Tenant, obs.Oui, obs.ProductClass = "default", "A00001", "OT2800"
		if _, err := h.internal.RecordDiscovery(ctx, obs); err != nil {
			t.Fatal(err)
		}
	}
	got, err = h.internal.GetDiscoveryProfile(ctx, &inventoryv1.GetDiscoveryProfileRequest{Tenant: "default", Oui: "a00001", ProductClass: "OT2800"})
	p := got.GetProfile()
	if err != nil || p.GetGpvBatchOk() != 25 || p.GetGpvBatchFailed() != 50 || !p.GetSubtreeGpnFailed() || !p.GetUpdateTime().AsTime().Equal(at) {
		t.Fatalf("profile %v, %v", p, err)
	}

	for field, req := range map[string]*inventoryv1.RecordDiscoveryRequest{
		"tenant":           {Oui: "A00001"},
		"oui":              {Tenant: "default", Oui: "A0001"},
		"product_class":    {Tenant: "default", Oui: "A00001", ProductClass: "a\x01b"},
		"gpv_batch_failed": {Tenant: "default", Oui: "A00001", GpvBatchFailed: 1 << 20},
	} {
		_, err := h.internal.RecordDiscovery(ctx, req)
		wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
		st, _ := status.FromError(err)
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && br.GetFieldViolations()[0].GetField() != field {
				t.Errorf("%s: violation names %s", field, br.GetFieldViolations()[0].GetField())
			}
		}
	}
}
