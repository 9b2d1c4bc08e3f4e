package inventory

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
)

// TestConnectionRequestCredentialsFlow: credentials a session set reach
// the notifier; an operator's wait as pending for the next session, which
// echoes their time to have them current; a refusal is told to the next
// session; credentials the CPE has are current at once; the password shows
// in no public answer.
func TestConnectionRequestCredentialsFlow(t *testing.T) {
	h := newHarness(t, Options{})
	ctx := t.Context()
	const key = "00AABB-HGW-CRC"
	state := func() *inventoryv1.GetDeviceForSessionResponse {
		t.Helper()
		st, err := h.internal.GetDeviceForSession(ctx, &inventoryv1.GetDeviceForSessionRequest{Tenant: DefaultTenant, DeviceKey: key})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	target := func() *inventoryv1.Credentials {
		t.Helper()
		tg, err := h.internal.GetConnectionRequestTarget(ctx, &inventoryv1.GetConnectionRequestTargetRequest{Tenant: DefaultTenant, DeviceKey: key})
		if err != nil {
			t.Fatal(err)
		}
		return tg.GetCredentials()
	}
	// A session that the CPE refused.
	req := record(key, "CRC", 1, t0)
	req.ConnectionRequestCredentials = nil
	req.ConnectionRequestRefusedTime = timestamppb.New(t0)
	if _, err := h.internal.RecordSession(ctx, req); err != nil {
		t.Fatal(err)
	}
	if st := state(); !st.GetConnectionRequestRefusedTime().AsTime().Equal(t0) || st.GetConnectionRequestCredentials() != nil {
		t.Fatalf("after a refusal: %v", st)
	}
	// A session that set generated ones.
	req = record(key, "CRC", 2, t0.Add(time.Hour))
	req.ConnectionRequestCredentials = &inventoryv1.Credentials{Username: "fleetacs-x", Password: "generated-pw"}
	if _, err := h.internal.RecordSession(ctx, req); err != nil {
		t.Fatal(err)
	}
	if c := target(); c.GetUsername() != "fleetacs-x" || c.GetPassword() != "generated-pw" || state().GetConnectionRequestRefusedTime() != nil {
		t.Fatalf("notifier's credentials %v", c)
	}

	// An operator's: pending; the notifier keeps the CPE's.
	if _, err := h.public.SetConnectionRequestCredentials(ctx, &inventoryv1.SetConnectionRequestCredentialsRequest{Id: key, Username: "ops", Password: "operator-pw"}); err != nil {
		t.Fatal(err)
	}
	st := state()
	if st.GetPendingConnectionRequestCredentials().GetPassword() != "operator-pw" || st.GetPendingConnectionRequestTime() == nil ||
		target().GetUsername() != "fleetacs-x" {
		t.Fatalf("pending: %v", st)
	}
	d, err := h.public.GetDevice(ctx, &inventoryv1.GetDeviceRequest{Id: key})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := proto.Marshal(d); strings.Contains(string(b), "operator-pw") || strings.Contains(string(b), "generated-pw") {
		t.Fatal("GetDevice shows a password")
	}
	if d.GetDevice().GetConnectionRequest().GetUsername() != "fleetacs-x" || !d.GetDevice().GetConnectionRequest().GetPasswordSet() {
		t.Fatalf("public connection request %v", d.GetDevice().GetConnectionRequest())
	}
	// The next session set them, echoing their time.
	req = record(key, "CRC", 3, t0.Add(2*time.Hour))
	req.ConnectionRequestCredentials = st.GetPendingConnectionRequestCredentials()
	req.ConnectionRequestPendingTime = st.GetPendingConnectionRequestTime()
	if _, err := h.internal.RecordSession(ctx, req); err != nil {
		t.Fatal(err)
	}
	if st := state(); st.GetPendingConnectionRequestCredentials() != nil || target().GetPassword() != "operator-pw" {
		t.Fatalf("after the session set them: %v", st)
	}
	// The same again: the device has them, nothing pending.
	if _, err := h.public.SetConnectionRequestCredentials(ctx, &inventoryv1.SetConnectionRequestCredentialsRequest{Id: key, Username: "ops", Password: "operator-pw"}); err != nil {
		t.Fatal(err)
	}
	if st := state(); st.GetPendingConnectionRequestCredentials() != nil {
		t.Fatalf("credentials the device has are pending: %v", st)
	}
	// Credentials the CPE has already: current at once.
	if _, err := h.public.SetConnectionRequestCredentials(ctx, &inventoryv1.SetConnectionRequestCredentialsRequest{Id: key, Username: "factory", Password: "factory-pw", AlreadySet: true}); err != nil {
		t.Fatal(err)
	}
	if c := target(); c.GetUsername() != "factory" || c.GetPassword() != "factory-pw" || state().GetPendingConnectionRequestCredentials() != nil {
		t.Fatalf("already set: %v", c)
	}

	for _, r := range []*inventoryv1.SetConnectionRequestCredentialsRequest{
		{Id: key, Password: "p"},
		{Id: key, Username: "u"},
		{Id: key, Username: "u", Password: strings.Repeat("p", 257)},
		{Id: key, Username: "u", Password: "p\x00"},
	} {
		_, err := h.public.SetConnectionRequestCredentials(ctx, r)
		wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
	}
	_, err = h.public.SetConnectionRequestCredentials(ctx, &inventoryv1.SetConnectionRequestCredentialsRequest{Id: "00AABB-HGW-NONE", Username: "u", Password: "p"})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_DEVICE_NOT_FOUND)
}
