package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// TestCampaignsAbuse: the campaigns API of a real `fleetacs all`, over
// gRPC and HTTP/JSON, against callers without credentials, with the wrong
// role, of another tenant, repeating a request, or sending oversized or
// invalid input; and the inventory and tasks APIs the campaigns runner
// calls on the internal listener refuse callers without the internal
// credential.
func TestCampaignsAbuse(t *testing.T) {
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s := startSecured(t, "-server.api-http-addr="+httpAddr)
	cc := campaignsv1.NewCampaignsServiceClient(s.publicConn)
	tokens := authv1.NewTokenServiceClient(s.publicConn)
	token := func(role authv1.Role, tenants ...string) string {
		resp, err := tokens.CreateToken(withToken(ctx10(t), s.admin), &authv1.CreateTokenRequest{Name: "campaigns abuse", Role: role, Tenants: tenants})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetSecret()
	}
	viewer, operatorB := token(authv1.Role_ROLE_VIEWER, "default"), token(authv1.Role_ROLE_OPERATOR, "isp-b")
	reboot := &campaignsv1.CampaignSpec{Action: &campaignsv1.CampaignSpec_Operation{Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_Reboot{Reboot: &tasksv1.Reboot{}}}}}
	req := &campaignsv1.CreateCampaignRequest{Tenant: "default", Name: "reboot all", Spec: reboot, IdempotencyKey: "abuse-1"}

	_, err := cc.CreateCampaign(ctx10(t), req)
	expect(t, "create without a token", err, codes.Unauthenticated, "CREDENTIALS_MISSING")
	_, err = cc.ListCampaigns(ctx10(t), &campaignsv1.ListCampaignsRequest{Tenant: "default"})
	expect(t, "list without a token", err, codes.Unauthenticated, "CREDENTIALS_MISSING")
	_, err = cc.CreateCampaign(withToken(ctx10(t), viewer), req)
	expect(t, "viewer creating", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
	_, err = cc.CreateCampaign(withToken(ctx10(t), operatorB), req)
	expect(t, "operator of isp-b creating in default", err, codes.PermissionDenied, "TENANT_FORBIDDEN")

	created, err := cc.CreateCampaign(withToken(ctx10(t), s.admin), req)
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetCampaign().GetId()
	if created.GetCampaign().GetCreator() == "" {
		t.Errorf("campaign without its creator: %v", created.GetCampaign())
	}
	// Replay: the same request with its key is the same campaign; another
	// request with the key is refused.
	again, err := cc.CreateCampaign(withToken(ctx10(t), s.admin), req)
	if err != nil || !again.GetExisting() || again.GetCampaign().GetId() != id {
		t.Fatalf("replayed create: %v %v", err, again)
	}
	other := &campaignsv1.CreateCampaignRequest{Tenant: "default", Name: "other", Spec: reboot, IdempotencyKey: "abuse-1"}
	_, err = cc.CreateCampaign(withToken(ctx10(t), s.admin), other)
	expect(t, "another request with the key", err, codes.AlreadyExists, "IDEMPOTENCY_CONFLICT")

	if _, err := cc.GetCampaign(withToken(ctx10(t), viewer), &campaignsv1.GetCampaignRequest{Tenant: "default", Id: id}); err != nil {
		t.Fatalf("viewer reading: %v", err)
	}
	_, err = cc.PauseCampaign(withToken(ctx10(t), viewer), &campaignsv1.PauseCampaignRequest{Tenant: "default", Id: id})
	expect(t, "viewer pausing", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
	_, err = cc.AbortCampaign(withToken(ctx10(t), viewer), &campaignsv1.AbortCampaignRequest{Tenant: "default", Id: id})
	expect(t, "viewer aborting", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
	_, err = cc.GetCampaign(withToken(ctx10(t), operatorB), &campaignsv1.GetCampaignRequest{Tenant: "default", Id: id})
	expect(t, "isp-b reading default's", err, codes.PermissionDenied, "TENANT_FORBIDDEN")
	_, err = cc.AbortCampaign(withToken(ctx10(t), operatorB), &campaignsv1.AbortCampaignRequest{Tenant: "isp-b", Id: id})
	expect(t, "isp-b aborting default's under its own tenant", err, codes.NotFound, "CAMPAIGN_NOT_FOUND")
	_, err = cc.GetCampaign(withToken(ctx10(t), operatorB), &campaignsv1.GetCampaignRequest{Id: id})
	expect(t, "isp-b's default tenant", err, codes.NotFound, "CAMPAIGN_NOT_FOUND")
	if got, err := cc.GetCampaign(withToken(ctx10(t), s.admin), &campaignsv1.GetCampaignRequest{Tenant: "default", Id: id}); err != nil ||
		got.GetCampaign().GetState() == campaignsv1.CampaignState_CAMPAIGN_STATE_ABORTED {
		t.Fatalf("after the refused calls: %v %v", err, got.GetCampaign().GetState())
	}

	// Oversized and invalid input.
	big := &campaignsv1.CreateCampaignRequest{Tenant: "default", Name: strings.Repeat("n", 5<<20), Spec: reboot}
	_, err = cc.CreateCampaign(withToken(ctx10(t), s.admin), big)
	if c, _ := reason(err); c != codes.ResourceExhausted {
		t.Errorf("5 MiB request: %v", err)
	}
	long := &campaignsv1.CreateCampaignRequest{Tenant: "default", Name: strings.Repeat("n", 200), Spec: reboot}
	_, err = cc.CreateCampaign(withToken(ctx10(t), s.admin), long)
	expect(t, "200-byte name", err, codes.InvalidArgument, "INVALID_FIELD")
	badFilter := &campaignsv1.CreateCampaignRequest{Tenant: "default", Name: "x", Spec: &campaignsv1.CampaignSpec{Action: reboot.Action,
		Filter: &inventoryv1.DeviceFilter{ParameterConditions: []*inventoryv1.ParameterCondition{{Path: "Device.X"}}}}}
	_, err = cc.CreateCampaign(withToken(ctx10(t), s.admin), badFilter)
	expect(t, "filter the inventory refuses", err, codes.InvalidArgument, "INVALID_FIELD")
	preset := &campaignsv1.CreateCampaignRequest{Tenant: "default", Name: "x", Spec: &campaignsv1.CampaignSpec{
		Action: &campaignsv1.CampaignSpec_Preset{Preset: &campaignsv1.PresetAction{Name: "bootstrap"}}}}
	_, err = cc.CreateCampaign(withToken(ctx10(t), s.admin), preset)
	expect(t, "preset campaign", err, codes.FailedPrecondition, "CAMPAIGN_ACTION_UNAVAILABLE")
	_, err = cc.GetCampaign(withToken(ctx10(t), s.admin), &campaignsv1.GetCampaignRequest{Tenant: "default", Id: strings.Repeat("c", 10_000)})
	expect(t, "absurd id", err, codes.NotFound, "CAMPAIGN_NOT_FOUND")

	// The same over HTTP/JSON.
	base := "http://" + httpAddr + "/v1/tenants/default/campaigns"
	// Created paused: with no device it would otherwise complete at once.
	body := `{"name":"http reboot","spec":{"operation":{"reboot":{}},"maxInFlight":5},"startPaused":true}`
	code, m := httpCall(t, "POST", base, "", strings.NewReader(body))
	expectHTTP(t, "HTTP create without a token", code, m, http.StatusUnauthorized, "CREDENTIALS_MISSING")
	code, m = httpCall(t, "POST", base, viewer, strings.NewReader(body))
	expectHTTP(t, "HTTP create as a viewer", code, m, http.StatusForbidden, "ROLE_FORBIDDEN")
	code, m = httpCall(t, "POST", base, s.admin, strings.NewReader(`{"name":"x","spec":{"operation":{"reboot":{}},"maxInFlite":5}}`))
	if code != http.StatusBadRequest {
		t.Errorf("HTTP create with a misspelt field: %d %v", code, m)
	}
	code, m = httpCall(t, "POST", base, s.admin, strings.NewReader(body))
	if code != http.StatusOK {
		t.Fatalf("HTTP create: %d %v", code, m)
	}
	hid, _ := m["campaign"].(map[string]any)["id"].(string)
	code, m = httpCall(t, "POST", base+"/"+hid+":pause", s.admin, strings.NewReader("{}"))
	if c, _ := m["campaign"].(map[string]any); code != http.StatusOK || c["state"] != "CAMPAIGN_STATE_PAUSED" {
		t.Errorf("HTTP pause: %d %v", code, m)
	}
	code, m = httpCall(t, "GET", base+"?state=CAMPAIGN_STATE_PAUSED", viewer, nil)
	if list, _ := m["campaigns"].([]any); code != http.StatusOK || len(list) != 1 {
		t.Errorf("HTTP list of paused campaigns: %d %v", code, m)
	}
	code, m = httpCall(t, "GET", "http://"+httpAddr+"/v1/tenants/isp-b/campaigns/"+hid, operatorB, nil)
	expectHTTP(t, "HTTP get from another tenant", code, m, http.StatusNotFound, "CAMPAIGN_NOT_FOUND")

	// The runner's inventory and tasks calls go to the internal listener,
	// which wants the internal credential, whatever public token is shown.
	inv := inventoryv1.NewInventoryServiceClient(s.internalConn)
	_, err = inv.ListDevices(ctx10(t), &inventoryv1.ListDevicesRequest{Tenant: "default"})
	if c, _ := reason(err); c != codes.Unauthenticated {
		t.Errorf("internal ListDevices without the internal credential: %v", err)
	}
	_, err = tasksv1.NewTasksServiceClient(s.internalConn).CreateTask(withToken(ctx10(t), s.admin), &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: "00D09E-X-1",
		Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_Reboot{Reboot: &tasksv1.Reboot{}}}})
	if c, _ := reason(err); c != codes.Unauthenticated {
		t.Errorf("internal CreateTask with the admin's public token: %v", err)
	}
}
