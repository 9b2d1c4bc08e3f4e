package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// taskOf is the "task" object of a CreateTask, GetTask or CancelTask
// answer over HTTP.
func taskOf(m map[string]any) map[string]any {
	task, _ := m["task"].(map[string]any)
	return task
}

// listIDs are the ids a ListTasks over HTTP answers, in its order.
func listIDs(t *testing.T, what, url, token string) []string {
	t.Helper()
	code, m := httpCall(t, "GET", url, token, nil)
	if code != http.StatusOK {
		t.Fatalf("%s: %d %v", what, code, m)
	}
	items, _ := m["tasks"].([]any)
	ids := []string{}
	for _, it := range items {
		task, _ := it.(map[string]any)
		id, _ := task["id"].(string)
		ids = append(ids, id)
	}
	return ids
}

// TestTasksHTTPEndToEnd drives the real tasks service of `fleetacs all`
// over the HTTP/JSON API (docs/api-http.md), with the request bodies of
// the README's curl examples, against cpesim devices that sleep and
// listen for connection requests.
func TestTasksHTTPEndToEnd(t *testing.T) {
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	f := startTaskFleet(t, 2, true, "-server.api-http-addr="+httpAddr)
	base := "http://" + httpAddr + "/v1/tenants/"
	awake, asleep := f.ids[0], f.ids[1]
	post := func(token, path, body string) (int, map[string]any) {
		t.Helper()
		return httpCall(t, "POST", base+path, token, strings.NewReader(body))
	}
	get := func(token, path string) (int, map[string]any) {
		t.Helper()
		return httpCall(t, "GET", base+path, token, nil)
	}

	// The README's set, then its get of the value set: both run now, in
	// the session the connection request opens, and answer the ended task.
	code, m := post(f.admin, "default/tasks", `{"deviceId": "`+awake+`",
  "operation": {"setParameterValues": {"values": [{"name": "Device.ManagementServer.PeriodicInformInterval", "value": "4321", "type": "xsd:unsignedInt"}]}},
  "options": {"connectionRequest": true}, "waitMs": 8000}`)
	set := taskOf(m)
	if code != http.StatusOK || set["state"] != "TASK_STATE_DONE" || set["deviceId"] != awake || set["tenant"] != "default" || set["fault"] != nil {
		t.Fatalf("set over HTTP: %d %v", code, m)
	}
	if r, _ := set["result"].(map[string]any); r == nil || r["setParameterValues"] == nil {
		t.Fatalf("set result: %v", set["result"])
	}
	code, m = post(f.admin, "default/tasks", `{"deviceId": "`+awake+`",
  "operation": {"getParameterValues": {"names": ["Device.ManagementServer.PeriodicInformInterval"]}}, "options": {"connectionRequest": true}, "waitMs": 8000}`)
	read := taskOf(m)
	if code != http.StatusOK || read["state"] != "TASK_STATE_DONE" {
		t.Fatalf("get over HTTP: %d %v", code, m)
	}
	wantValues := []any{map[string]any{"name": "Device.ManagementServer.PeriodicInformInterval", "value": "4321", "type": "xsd:unsignedInt"}}
	readResult, _ := read["result"].(map[string]any)
	gpv, _ := readResult["getParameterValues"].(map[string]any)
	if !reflect.DeepEqual(gpv["values"], wantValues) {
		t.Fatalf("get result %v, want values %v", read["result"], wantValues)
	}
	setID, readID := set["id"].(string), read["id"].(string)

	// Read back, by a viewer.
	code, m = httpCall(t, "POST", "http://"+httpAddr+"/v1/tokens", f.admin, strings.NewReader(`{"name":"http viewer","role":"ROLE_VIEWER","tenants":["default"]}`))
	if code != http.StatusOK {
		t.Fatalf("create a viewer token: %d %v", code, m)
	}
	viewer := m["secret"].(string)
	code, m = get(viewer, "default/tasks/"+readID)
	if got := taskOf(m); code != http.StatusOK || got["id"] != readID || got["state"] != "TASK_STATE_DONE" || !reflect.DeepEqual(got["result"], read["result"]) {
		t.Fatalf("GET the get task: %d %v", code, m)
	}

	// A task queued for a device nobody wakes stays queued.
	code, m = post(f.admin, "default/tasks", `{"deviceId": "`+asleep+`", "operation": {"reboot": {}}}`)
	queued := taskOf(m)
	if code != http.StatusOK || queued["state"] != "TASK_STATE_QUEUED" || queued["deviceId"] != asleep {
		t.Fatalf("queue a reboot: %d %v", code, m)
	}
	queuedID := queued["id"].(string)

	// Lists, with the filters of ListTasksRequest as query parameters.
	ids := listIDs(t, "list the awake device's tasks", base+"default/tasks?deviceId="+url.QueryEscape(awake), viewer)
	if !reflect.DeepEqual(ids, []string{readID, setID}) {
		t.Errorf("the awake device's tasks %v, want %v (newest first)", ids, []string{readID, setID})
	}
	ids = listIDs(t, "list by kind", base+"default/tasks?kinds=get_parameter_values&kinds=reboot", viewer)
	if !reflect.DeepEqual(ids, []string{queuedID, readID}) {
		t.Errorf("get and reboot tasks %v, want %v", ids, []string{queuedID, readID})
	}
	ids = listIDs(t, "list by state", base+"default/tasks?states=TASK_STATE_QUEUED", viewer)
	if !reflect.DeepEqual(ids, []string{queuedID}) {
		t.Errorf("queued tasks %v, want %v", ids, []string{queuedID})
	}

	// Refused callers.
	reboot := `{"deviceId": "` + asleep + `", "operation": {"reboot": {}}}`
	code, m = post("", "default/tasks", reboot)
	expectHTTP(t, "no token creating", code, m, http.StatusUnauthorized, "CREDENTIALS_MISSING")
	code, m = get("", "default/tasks/"+queuedID)
	expectHTTP(t, "no token reading", code, m, http.StatusUnauthorized, "CREDENTIALS_MISSING")
	code, m = post(viewer, "default/tasks", reboot)
	expectHTTP(t, "viewer creating", code, m, http.StatusForbidden, "ROLE_FORBIDDEN")
	code, m = post(viewer, "default/tasks/"+queuedID+":cancel", `{}`)
	expectHTTP(t, "viewer cancelling", code, m, http.StatusForbidden, "ROLE_FORBIDDEN")

	// An operator of another tenant is refused on this tenant's path
	// (403 TENANT_FORBIDDEN, before the task is looked up); on its own
	// tenant's path the task is not found (404 TASK_NOT_FOUND). Either way
	// the answer for the queued task is the answer for a task that does
	// not exist: nothing tells it the task exists.
	code, m = httpCall(t, "POST", "http://"+httpAddr+"/v1/tokens", f.admin, strings.NewReader(`{"name":"other","role":"ROLE_OPERATOR","tenants":["other"]}`))
	if code != http.StatusOK {
		t.Fatalf("create a token of another tenant: %d %v", code, m)
	}
	other := m["secret"].(string)
	const missing = "01JZZZZZZZZZZZZZZZZZZZZZZZ"
	for _, c := range []struct {
		what, method, path, body string
		code                     int
		reason                   string
	}{
		{"read", "GET", "default/tasks/%s", "", http.StatusForbidden, "TENANT_FORBIDDEN"},
		{"cancel", "POST", "default/tasks/%s:cancel", "{}", http.StatusForbidden, "TENANT_FORBIDDEN"},
		{"read in its own tenant", "GET", "other/tasks/%s", "", http.StatusNotFound, "TASK_NOT_FOUND"},
		{"cancel in its own tenant", "POST", "other/tasks/%s:cancel", "{}", http.StatusNotFound, "TASK_NOT_FOUND"},
	} {
		call := func(id string) (int, map[string]any) {
			var body io.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			}
			return httpCall(t, c.method, base+fmt.Sprintf(c.path, id), other, body)
		}
		code, m := call(queuedID)
		expectHTTP(t, "another tenant's operator: "+c.what, code, m, c.code, c.reason)
		mcode, mm := call(missing)
		expectHTTP(t, "another tenant's operator: "+c.what+" (missing task)", mcode, mm, c.code, c.reason)
		// Byte for byte the same answer, but for the id the caller sent.
		if a, b := strings.ReplaceAll(fmt.Sprint(m), queuedID, missing), fmt.Sprint(mm); a != b {
			t.Errorf("another tenant's operator: %s: the answer for the task\n%s\ndiffers from the one for no task\n%s", c.what, a, b)
		}
	}
	code, m = post(other, "default/tasks", reboot)
	expectHTTP(t, "another tenant's operator creating", code, m, http.StatusForbidden, "TENANT_FORBIDDEN")
	if ids := listIDs(t, "another tenant lists", base+"other/tasks", other); len(ids) != 0 {
		t.Errorf("another tenant lists %v", ids)
	}
	code, m = get(other, "default/tasks")
	expectHTTP(t, "another tenant's operator listing", code, m, http.StatusForbidden, "TENANT_FORBIDDEN")

	// None of that touched the task; its operator cancels it.
	code, m = get(viewer, "default/tasks/"+queuedID)
	if got := taskOf(m); code != http.StatusOK || got["state"] != "TASK_STATE_QUEUED" || got["version"] != queued["version"] {
		t.Fatalf("the queued task after the refusals: %d %v (created as %v)", code, m, queued)
	}
	code, m = post(f.admin, "default/tasks/"+queuedID+":cancel", `{}`)
	if got := taskOf(m); code != http.StatusOK || got["id"] != queuedID || got["state"] != "TASK_STATE_CANCELLED" {
		t.Fatalf("cancel the queued task: %d %v", code, m)
	}
	code, m = get(viewer, "default/tasks/"+queuedID)
	if got := taskOf(m); code != http.StatusOK || got["state"] != "TASK_STATE_CANCELLED" {
		t.Fatalf("GET the cancelled task: %d %v", code, m)
	}
	ids = listIDs(t, "list cancelled", base+"default/tasks?states=TASK_STATE_CANCELLED&deviceId="+url.QueryEscape(asleep), viewer)
	if !reflect.DeepEqual(ids, []string{queuedID}) {
		t.Errorf("cancelled tasks %v, want %v", ids, []string{queuedID})
	}
}
