package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// TestTasksProcessVerifiesInventoryTokens runs the inventory and the tasks
// service as separate processes: the tasks process verifies API tokens
// through the inventory's internal GetToken (docs/security.md, "Processes
// without the inventory"). A token created on the inventory's process
// works on the tasks process's gRPC and HTTP/JSON APIs; a revoked one is
// refused there within -auth.token-cache-ttl; none, garbage and unknown
// tokens are refused; TokenService is the inventory process's alone; and
// GetToken is reachable neither on the public listeners nor without the
// internal credential.
func TestTasksProcessVerifiesInventoryTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run of two processes; make test runs it")
	}
	const cacheTTL = 2 * time.Second
	c := &cluster{t: t, bin: buildFleetacs(t), dir: t.TempDir()}
	t.Cleanup(c.stopAll)

	ns := startPrivateNATS(t, c)

	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }
	invInternal, invPublic, tasksInternal, tasksPublic, tasksHTTP := addr(), addr(), addr(), addr(), addr()
	const internalSecret = "e2e-internal-token-0123456789abcdef0123456789"
	internalToken := filepath.Join(c.dir, "internal.token")
	if err := secretbox.WriteFileExclusive(internalToken, []byte(internalSecret+"\n")); err != nil {
		t.Fatal(err)
	}
	common := []string{"-log.format=json", "-log.level=warn", "-server.http-addr=127.0.0.1:0", "-server.stop-timeout=10s",
		"-internal.token-file=" + internalToken, "-auth.token-cache-ttl=" + cacheTTL.String(),
		// Every refusal below comes from one address: no back-off here
		// (TestTokenGuessingLimited tests it).
		"-auth.failure-burst=1000"}
	inv := c.start("inventory", append(common, "-data-dir="+filepath.Join(c.dir, "inv"),
		"-server.internal-grpc-addr="+invInternal, "-server.grpc-addr="+invPublic, "-server.api-http-addr=127.0.0.1:0",
		"inventory")...)
	tsk := c.start("tasks", append(common, "-data-dir="+filepath.Join(c.dir, "tasks"),
		"-server.internal-grpc-addr="+tasksInternal, "-server.grpc-addr="+tasksPublic, "-server.api-http-addr="+tasksHTTP,
		"-client.inventory-addr="+invInternal, "-nats.url="+ns.URL(), "tasks")...)
	c.awaitUp(t, 60*time.Second, []*proc{inv, tsk}, 30, []string{invPublic, tasksPublic})

	adminToken := func() string {
		b, err := os.ReadFile(filepath.Join(c.dir, "inv", "admin.token"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}()
	internalCtx := func() context.Context {
		return metadata.AppendToOutgoingContext(ctx10(t), apiauth.InternalTokenHeader, internalSecret)
	}
	invInternalAPI := inventoryv1.NewInventoryInternalServiceClient(dialPlain(t, invInternal))
	tokens := authv1.NewTokenServiceClient(dialPlain(t, invPublic))
	tasksAPI := tasksv1.NewTasksServiceClient(dialPlain(t, tasksPublic))

	// A device, as a session worker would record its first contact.
	const device = "00AABB-HGW-TOK1"
	now := time.Now()
	if _, err := invInternalAPI.RecordSession(internalCtx(), &inventoryv1.RecordSessionRequest{
		Tenant: "default", DeviceKey: device, FencingToken: 1, SessionId: "s-tok1", ObserveTime: timestamppb.New(now),
		DeviceId: &inventoryv1.DeviceId{Manufacturer: "Acme", Oui: "00AABB", ProductClass: "HGW", SerialNumber: "TOK1"},
		Inform:   &inventoryv1.InformRecord{Time: timestamppb.New(now), Events: []*inventoryv1.InformEvent{{Code: "0 BOOTSTRAP"}}},
	}); err != nil {
		t.Fatalf("record the device: %v", err)
	}

	// Tokens are created on the inventory's process.
	create := func(role authv1.Role, tenants ...string) (token, id string) {
		resp, err := tokens.CreateToken(withToken(ctx10(t), adminToken), &authv1.CreateTokenRequest{Name: "e2e", Role: role, Tenants: tenants})
		if err != nil {
			t.Fatalf("CreateToken: %v", err)
		}
		return resp.GetSecret(), resp.GetToken().GetId()
	}
	operator, operatorID := create(authv1.Role_ROLE_OPERATOR, "default")
	other, _ := create(authv1.Role_ROLE_OPERATOR, "other")
	viewer, _ := create(authv1.Role_ROLE_VIEWER, "default")

	gpv := func() *tasksv1.CreateTaskRequest {
		return &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: device,
			Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterValues{GetParameterValues: &tasksv1.GetParameterValues{
				Names: []string{"Device.DeviceInfo.SoftwareVersion"}}}}}
	}
	list := func(ctx context.Context) (*tasksv1.ListTasksResponse, error) {
		return tasksAPI.ListTasks(ctx, &tasksv1.ListTasksRequest{Tenant: "default"})
	}

	// The operator's token works on the tasks process, with its role and
	// tenants: the admin's too; the viewer may list but not create; a token
	// of another tenant covers nothing here.
	created, err := tasksAPI.CreateTask(withToken(ctx10(t), operator), gpv())
	if err != nil {
		t.Fatalf("CreateTask with the operator's token: %v", err)
	}
	for name, tok := range map[string]string{"operator": operator, "admin": adminToken, "viewer": viewer} {
		resp, err := list(withToken(ctx10(t), tok))
		if err != nil || len(resp.GetTasks()) != 1 || resp.GetTasks()[0].GetId() != created.GetTask().GetId() {
			t.Fatalf("ListTasks with the %s's token: %v, %v", name, resp, err)
		}
	}
	_, err = tasksAPI.CreateTask(withToken(ctx10(t), viewer), gpv())
	expect(t, "CreateTask with a viewer's token", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
	_, err = list(withToken(ctx10(t), other))
	expect(t, "ListTasks with another tenant's token", err, codes.PermissionDenied, "TENANT_FORBIDDEN")

	// The HTTP/JSON listener in front of the tasks process's gRPC API.
	httpList := func(token string) int {
		req, err := http.NewRequestWithContext(ctx10(t), http.MethodGet, "http://"+tasksHTTP+"/v1/tenants/default/tasks", nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode == http.StatusOK && !strings.Contains(string(body), created.GetTask().GetId()) {
			t.Errorf("HTTP ListTasks does not list task %s: %s", created.GetTask().GetId(), body)
		}
		return resp.StatusCode
	}
	if got := httpList(operator); got != http.StatusOK {
		t.Errorf("HTTP ListTasks with the operator's token: %d", got)
	}

	// No token, garbage, an unknown token and one with a wrong secret.
	_, err = list(ctx10(t))
	expect(t, "ListTasks without a token", err, codes.Unauthenticated, "CREDENTIALS_MISSING")
	unknown, _, _, err := apiauth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret := operator[:len(operator)-1] + map[bool]string{true: "B", false: "A"}[strings.HasSuffix(operator, "A")]
	for name, tok := range map[string]string{"garbage": "not-a-token", "unknown": unknown, "wrong secret": wrongSecret, "too long": strings.Repeat("x", 10_000)} {
		_, err := list(withToken(ctx10(t), tok))
		if c, _ := reason(err); c != codes.Unauthenticated {
			t.Errorf("ListTasks with a %s token: %v, want UNAUTHENTICATED", name, err)
		}
	}
	for name, tok := range map[string]string{"no": "", "garbage": "not-a-token"} {
		if got := httpList(tok); got != http.StatusUnauthorized {
			t.Errorf("HTTP ListTasks with %s token: %d, want 401", name, got)
		}
	}

	// TokenService is served by the inventory's process alone.
	_, err = authv1.NewTokenServiceClient(dialPlain(t, tasksPublic)).ListTokens(withToken(ctx10(t), adminToken), &authv1.ListTokensRequest{})
	if c, _ := reason(err); c != codes.Unimplemented {
		t.Errorf("TokenService on the tasks process: %v, want UNIMPLEMENTED", err)
	}

	// GetToken: never on a public listener, whatever the token; on the
	// internal listener only with the internal credential, and then it
	// hands out the hash, never the token.
	getToken := &inventoryv1.GetTokenRequest{Id: operatorID}
	for _, pub := range []string{invPublic, tasksPublic} {
		_, err := inventoryv1.NewInventoryInternalServiceClient(dialPlain(t, pub)).GetToken(withToken(ctx10(t), adminToken), getToken)
		if c, _ := reason(err); c != codes.Unimplemented && c != codes.PermissionDenied {
			t.Errorf("GetToken on the public listener %s: %v", pub, err)
		}
	}
	_, err = invInternalAPI.GetToken(ctx10(t), getToken)
	expect(t, "GetToken without the internal credential", err, codes.Unauthenticated, "CREDENTIALS_MISSING")
	for name, md := range map[string][]string{
		"forged internal token":   {apiauth.InternalTokenHeader, "0123456789abcdef0123456789abcdef0123456789"},
		"public admin token":      {"authorization", "Bearer " + adminToken},
		"admin token as internal": {apiauth.InternalTokenHeader, adminToken},
	} {
		_, err := invInternalAPI.GetToken(metadata.AppendToOutgoingContext(ctx10(t), md...), getToken)
		if c, _ := reason(err); c != codes.Unauthenticated {
			t.Errorf("GetToken with a %s: %v, want UNAUTHENTICATED", name, err)
		}
	}
	got, err := invInternalAPI.GetToken(internalCtx(), getToken)
	if err != nil {
		t.Fatalf("GetToken with the internal credential: %v", err)
	}
	wire, err := proto.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	secret := operator[strings.LastIndex(operator, "_")+1:]
	if hash := sha256.Sum256([]byte(operator)); string(got.GetToken().GetHash()) != string(hash[:]) || strings.Contains(string(wire), secret) {
		t.Errorf("GetToken = %v: want the token's hash and no secret", got)
	}

	// Revoked on the inventory's process: the tasks process, which cached
	// the record, refuses the token at the latest once the cache's TTL has
	// passed since the revocation; every call that starts later must fail.
	if _, err := list(withToken(ctx10(t), operator)); err != nil {
		t.Fatalf("ListTasks just before the revocation: %v", err)
	}
	revoked := time.Now()
	if _, err := tokens.RevokeToken(withToken(ctx10(t), adminToken), &authv1.RevokeTokenRequest{Id: operatorID}); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	testenv.WaitFor(t, 3*cacheTTL, func() error {
		start := time.Now()
		_, err := list(withToken(ctx10(t), operator))
		if err == nil {
			if start.Sub(revoked) > cacheTTL {
				t.Fatalf("the tasks process accepted the token %s after its revocation (cache TTL %s)", start.Sub(revoked), cacheTTL)
			}
			return fmt.Errorf("token still accepted %s after its revocation", time.Since(revoked))
		}
		expect(t, "ListTasks with a revoked token", err, codes.Unauthenticated, "CREDENTIALS_INVALID")
		return nil
	})
	_, err = tasksAPI.CreateTask(withToken(ctx10(t), operator), gpv())
	expect(t, "CreateTask with a revoked token", err, codes.Unauthenticated, "CREDENTIALS_INVALID")
	if got := httpList(operator); got != http.StatusUnauthorized {
		t.Errorf("HTTP ListTasks with a revoked token: %d, want 401", got)
	}
	// The other tokens still work.
	if _, err := list(withToken(ctx10(t), viewer)); err != nil {
		t.Errorf("ListTasks with the viewer's token after another's revocation: %v", err)
	}
	for _, p := range []*proc{inv, tsk} {
		if err := c.checkAlive(p); err != nil {
			t.Error(err)
		}
	}
}
