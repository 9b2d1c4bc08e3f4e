package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/apiauth/apiauthtest"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// httpCall is one request to the HTTP API; it returns the status and the
// decoded JSON body.
func httpCall(t *testing.T, method, url, token string, body io.Reader) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx10(t), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: status %d, body not JSON: %q", method, url, resp.StatusCode, b)
	}
	return resp.StatusCode, m
}

// reasonOfBody is the ErrorInfo reason of a google.rpc.Status body.
func reasonOfBody(m map[string]any) string {
	details, _ := m["details"].([]any)
	for _, d := range details {
		if dm, ok := d.(map[string]any); ok && dm["@type"] == "type.googleapis.com/google.rpc.ErrorInfo" {
			r, _ := dm["reason"].(string)
			return r
		}
	}
	return ""
}

func expectHTTP(t *testing.T, what string, code int, m map[string]any, wantCode int, wantReason string) {
	t.Helper()
	if code != wantCode || reasonOfBody(m) != wantReason {
		t.Errorf("%s: %d %v, want %d %s", what, code, m, wantCode, wantReason)
	}
}

// TestHTTPAPI: the HTTP/JSON listener of a real `fleetacs all` in front of
// the real public gRPC server and its authentication.
func TestHTTPAPI(t *testing.T) {
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s := startSecured(t, "-server.api-http-addr="+httpAddr, "-server.api-http-read-header-timeout=300ms")
	base := "http://" + httpAddr
	dev := s.bootOne(t, "HTTP")

	// A token created over HTTP, then used over HTTP.
	code, m := httpCall(t, "POST", base+"/v1/tokens", s.admin, strings.NewReader(`{"name":"http viewer","role":"ROLE_VIEWER","tenants":["default"]}`))
	if code != http.StatusOK || m["secret"] == nil {
		t.Fatalf("create a token over HTTP: %d %v", code, m)
	}
	viewer := m["secret"].(string)
	code, m = httpCall(t, "GET", base+"/v1/tenants/default/devices/"+url.PathEscape(dev), viewer, nil)
	if device, _ := m["device"].(map[string]any); code != http.StatusOK || device["id"] != dev {
		t.Fatalf("GET the device with a viewer token: %d %v", code, m)
	}

	// Authentication and authorisation, as for gRPC callers.
	code, m = httpCall(t, "GET", base+"/v1/tenants/default/devices/"+url.PathEscape(dev), "", nil)
	expectHTTP(t, "no token", code, m, http.StatusUnauthorized, "CREDENTIALS_MISSING")
	forged, _, _, _ := apiauth.NewToken()
	code, m = httpCall(t, "GET", base+"/v1/tenants/default/devices/"+url.PathEscape(dev), forged, nil)
	expectHTTP(t, "forged token", code, m, http.StatusUnauthorized, "CREDENTIALS_INVALID")
	code, m = httpCall(t, "POST", base+"/v1/tenants/default/tasks", viewer, strings.NewReader(`{"deviceId":"`+dev+`","operation":{"reboot":{}}}`))
	expectHTTP(t, "viewer creating a task", code, m, http.StatusForbidden, "ROLE_FORBIDDEN")
	code, m = httpCall(t, "POST", base+"/v1/tokens", s.admin, strings.NewReader(`{"name":"other","role":"ROLE_OPERATOR","tenants":["other"]}`))
	if code != http.StatusOK {
		t.Fatalf("create a token of another tenant: %d %v", code, m)
	}
	other := m["secret"].(string)
	code, m = httpCall(t, "GET", base+"/v1/tenants/default/devices/"+url.PathEscape(dev), other, nil)
	expectHTTP(t, "another tenant's token", code, m, http.StatusForbidden, "TENANT_FORBIDDEN")
	// Another tenant's operator creating a task (TestTasksHTTPEndToEnd
	// has the rest of the tasks API over HTTP).
	code, m = httpCall(t, "POST", base+"/v1/tenants/default/tasks", other, strings.NewReader(`{"deviceId":"`+dev+`","operation":{"reboot":{}}}`))
	expectHTTP(t, "another tenant's operator creating a task", code, m, http.StatusForbidden, "TENANT_FORBIDDEN")
	code, m = httpCall(t, "GET", base+"/v1/tenants/default/devices/nope", viewer, nil)
	expectHTTP(t, "a missing device", code, m, http.StatusNotFound, "DEVICE_NOT_FOUND")
	code, m = httpCall(t, "POST", base+"/v1/tokens", s.admin, strings.NewReader(`{"name":"x","rolle":"ROLE_VIEWER"}`))
	if code != http.StatusBadRequest {
		t.Errorf("an unknown JSON field: %d %v, want 400", code, m)
	}

	// An oversized body is refused before anything reads it as JSON.
	code, m = httpCall(t, "POST", base+"/v1/tokens", s.admin, bytes.NewReader(bytes.Repeat([]byte(" "), maxPublicRecvMsg+1)))
	if code != http.StatusRequestEntityTooLarge || m["code"] != float64(codes.ResourceExhausted) {
		t.Errorf("oversized body: %d %v, want 413", code, m)
	}

	// The OpenAPI document needs no credentials.
	code, m = httpCall(t, "GET", base+openAPIPath, "", nil)
	paths, _ := m["paths"].(map[string]any)
	for _, p := range []string{"/v1/tenants/{tenant}/tasks", "/v1/tenants/{tenant}/tasks/{id}", "/v1/tenants/{tenant}/tasks/{id}:cancel", "/v1/tenants/{tenant}/devices/{id}"} {
		if code != http.StatusOK || paths[p] == nil {
			t.Errorf("OpenAPI document: %d, no path %s", code, p)
		}
	}

	// A client that never finishes its headers is cut off.
	c, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("slow client still connected after %s", time.Since(start))
	}
	if strings.Contains(string(b), "200 OK") {
		t.Fatalf("slow client answered: %q", b)
	}
}

// fakeTasks is a TasksService that keeps tasks in a map: the unit test of
// the HTTP mapping (TestHTTPTasksMapping) needs no NATS or CPE.
type fakeTasks struct {
	tasksv1.UnimplementedTasksServiceServer
	tasks map[string]*tasksv1.Task
}

func (f *fakeTasks) CreateTask(_ context.Context, req *tasksv1.CreateTaskRequest) (*tasksv1.CreateTaskResponse, error) {
	task := &tasksv1.Task{Id: fmt.Sprintf("01TASK%020d", len(f.tasks)), Tenant: req.GetTenant(), DeviceId: req.GetDeviceId(),
		Operation: req.GetOperation(), Options: req.GetOptions(), State: tasksv1.TaskState_TASK_STATE_QUEUED}
	f.tasks[task.Id] = task
	return &tasksv1.CreateTaskResponse{Task: task}, nil
}

func (f *fakeTasks) GetTask(_ context.Context, req *tasksv1.GetTaskRequest) (*tasksv1.GetTaskResponse, error) {
	task, ok := f.tasks[req.GetId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "no such task")
	}
	return &tasksv1.GetTaskResponse{Task: task}, nil
}

func (f *fakeTasks) WatchTasks(req *tasksv1.WatchTasksRequest, ss grpc.ServerStreamingServer[tasksv1.WatchTasksResponse]) error {
	for rev, id := range []string{"a", "b"} {
		if err := ss.Send(&tasksv1.WatchTasksResponse{Revision: req.GetStartRevision() + uint64(rev), Task: &tasksv1.Task{Id: id}}); err != nil {
			return err
		}
	}
	return nil
}

// TestHTTPTasksMapping: create, get and watch tasks over HTTP through the
// authenticator, against a fake TasksService (a unit test of the mapping;
// TestTasksHTTPEndToEnd runs the real service of `fleetacs all` over
// HTTP).
func TestHTTPTasksMapping(t *testing.T) {
	store := apiauthtest.NewMemoryStore()
	auth := apiauth.NewAuthenticator(apiauth.Config{}, apiauth.Options{Tokens: store})
	srv := grpc.NewServer(auth.ServerOptions()...)
	tasksv1.RegisterTasksServiceServer(srv, &fakeTasks{tasks: map[string]*tasksv1.Task{}})
	mem := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(apiauth.ForwarderListener(mem)) }()
	t.Cleanup(srv.Stop)
	cc := dialPlain(t, "passthrough:///mem", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return mem.DialContext(ctx) }))
	h, err := newAPIHandler(t.Context(), cc, time.Second, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	token := func(role authv1.Role) string {
		tok, _, err := apiauth.IssueToken(t.Context(), store, apiauth.TokenRecord{Role: role, Tenants: []string{"default"}, Created: time.Now(), Creator: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	operator, viewer := token(authv1.Role_ROLE_OPERATOR), token(authv1.Role_ROLE_VIEWER)

	code, m := httpCall(t, "POST", hs.URL+"/v1/tenants/default/tasks", operator, strings.NewReader(
		`{"deviceId":"dev-1","operation":{"setParameterValues":{"values":[{"name":"Device.X","value":"1","type":"xsd:int"}]}},"options":{"priority":5}}`))
	task, _ := m["task"].(map[string]any)
	if code != http.StatusOK || task["state"] != "TASK_STATE_QUEUED" || task["deviceId"] != "dev-1" {
		t.Fatalf("create a task: %d %v", code, m)
	}
	id := task["id"].(string)
	code, m = httpCall(t, "GET", hs.URL+"/v1/tenants/default/tasks/"+id, viewer, nil)
	if got, _ := m["task"].(map[string]any); code != http.StatusOK || got["id"] != id {
		t.Fatalf("get the task: %d %v", code, m)
	}
	code, m = httpCall(t, "POST", hs.URL+"/v1/tenants/default/tasks", viewer, strings.NewReader(`{"deviceId":"dev-1","operation":{"reboot":{}}}`))
	expectHTTP(t, "viewer creating a task", code, m, http.StatusForbidden, "ROLE_FORBIDDEN")
	code, m = httpCall(t, "GET", hs.URL+"/v1/tenants/other/tasks/"+id, viewer, nil)
	expectHTTP(t, "another tenant", code, m, http.StatusForbidden, "TENANT_FORBIDDEN")

	// A watch answers one JSON object per line.
	req, _ := http.NewRequestWithContext(ctx10(t), "GET", hs.URL+"/v1/tenants/default/tasks:watch?startRevision=7", nil)
	req.Header.Set("Authorization", "Bearer "+viewer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if resp.StatusCode != http.StatusOK || len(lines) != 2 || !strings.Contains(lines[0], `"revision":"7"`) || !strings.Contains(lines[1], `"id":"b"`) {
		t.Fatalf("watch: %d %q", resp.StatusCode, b)
	}
}
