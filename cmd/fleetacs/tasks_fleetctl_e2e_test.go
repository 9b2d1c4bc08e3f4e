package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// ctlResult is what one fleetctl run did.
type ctlResult struct {
	code           int
	stdout, stderr string
}

// ctlTask is fleetctl's JSON of a task (-o json, "fleetctl help tasks").
type ctlTask struct {
	ID       string          `json:"id"`
	Tenant   string          `json:"tenant"`
	DeviceID string          `json:"deviceId"`
	Kind     string          `json:"kind"`
	State    string          `json:"state"`
	Attempts uint32          `json:"attempts"`
	Result   json.RawMessage `json:"result"`
	Fault    *struct {
		Code            uint32 `json:"code"`
		String          string `json:"string"`
		Source          string `json:"source"`
		ParameterFaults []struct {
			Name string `json:"name"`
			Code uint32 `json:"code"`
		} `json:"parameterFaults"`
	} `json:"fault"`
}

func decodeTask(t *testing.T, what, s string) ctlTask {
	t.Helper()
	var task ctlTask
	if err := json.Unmarshal([]byte(s), &task); err != nil {
		t.Fatalf("%s: stdout is no task JSON: %v: %q", what, err, s)
	}
	return task
}

// TestFleetctlTasksAgainstFleet runs the built fleetctl's tasks commands
// against `fleetacs all` and cpesim devices that sleep and listen for
// connection requests: the forms of create (set, get, refresh, a CPE
// fault, queued), list with its filters, cancel, get, and their exit
// statuses (0 when the task ended done, 1 otherwise, 2 on a usage error).
func TestFleetctlTasksAgainstFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fleetctl; make test runs it")
	}
	bin := buildFleetctl(t)
	f := startTaskFleet(t, 3, true)
	dir := t.TempDir()
	env := append(os.Environ(), "FLEETACS_ADDR="+f.public, "FLEETACS_TOKEN="+f.admin)
	start := func(args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = dir, env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &stdout, &stderr
	}
	finish := func(cmd *exec.Cmd, stdout, stderr *bytes.Buffer) ctlResult {
		t.Helper()
		err := cmd.Wait()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("fleetctl %v: %v", cmd.Args[1:], err)
		}
		return ctlResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
	}
	ctl := func(args ...string) ctlResult {
		t.Helper()
		return finish(start(args...))
	}
	ok := func(what string, r ctlResult) {
		t.Helper()
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("%s: exit %d, stderr %q, stdout %q", what, r.code, r.stderr, r.stdout)
		}
	}
	dev0, dev1, dev2 := f.ids[0], f.ids[1], f.ids[2]

	// set, then get of what it set: both done, exit 0.
	r := ctl("tasks", "create", dev0, "set", "Device.ManagementServer.PeriodicInformInterval=777:unsignedInt",
		"--connection-request", "--wait", "10s", "-o", "json")
	ok("create set", r)
	set := decodeTask(t, "create set", r.stdout)
	if set.ID == "" || set.DeviceID != dev0 || set.Tenant != "default" || set.Kind != "set_parameter_values" || set.State != "done" ||
		set.Fault != nil || !strings.Contains(string(set.Result), `"setParameterValues"`) {
		t.Fatalf("create set: %s", r.stdout)
	}
	r = ctl("tasks", "create", dev0, "get", "Device.ManagementServer.PeriodicInformInterval", "Device.DeviceInfo.Manufacturer",
		"--connection-request", "--wait", "10s", "-o", "json")
	ok("create get", r)
	get := decodeTask(t, "create get", r.stdout)
	var gpv struct {
		GetParameterValues struct {
			Values []struct{ Name, Value, Type string } `json:"values"`
		} `json:"getParameterValues"`
	}
	if err := json.Unmarshal(get.Result, &gpv); err != nil {
		t.Fatalf("create get: result %s: %v", get.Result, err)
	}
	values := map[string]string{}
	for _, v := range gpv.GetParameterValues.Values {
		values[v.Name] = v.Value + " " + v.Type
	}
	if get.DeviceID != dev0 || get.Kind != "get_parameter_values" || get.State != "done" || get.Fault != nil ||
		len(values) != 2 || values["Device.ManagementServer.PeriodicInformInterval"] != "777 xsd:unsignedInt" ||
		!strings.HasSuffix(values["Device.DeviceInfo.Manufacturer"], " xsd:string") {
		t.Fatalf("create get: %s", r.stdout)
	}
	// The text form of the same task, by tasks get.
	r = ctl("tasks", "get", get.ID)
	ok("get the get task", r)
	if want := get.ID + " done get_parameter_values " + dev0 + "\n"; !strings.HasPrefix(r.stdout, want) ||
		!strings.Contains(r.stdout, "\n  Device.ManagementServer.PeriodicInformInterval = 777 (xsd:unsignedInt)\n") {
		t.Errorf("tasks get %s: %q, want it to start %q and show the value", get.ID, r.stdout, want)
	}

	// refresh of a subtree: GetParameterNames, then GetParameterValues, in
	// the session after dev1's boot session (whose report comes first).
	waitFor(t, 10*time.Second, func() error {
		if len(f.methods(dev1)) == 0 {
			return fmt.Errorf("no report of %s's boot session yet", dev1)
		}
		return nil
	})
	booted := len(f.methods(dev1))
	r = ctl("tasks", "create", dev1, "refresh", "Device.DeviceInfo.", "--connection-request", "--wait", "10s", "-o", "json")
	ok("create refresh", r)
	refresh := decodeTask(t, "create refresh", r.stdout)
	if refresh.DeviceID != dev1 || refresh.Kind != "refresh" || refresh.State != "done" || refresh.Fault != nil {
		t.Fatalf("create refresh: %s", r.stdout)
	}
	waitFor(t, 10*time.Second, func() error {
		if m := f.methods(dev1)[booted:]; !slices.Contains(m, "GetParameterNames") || !slices.Contains(m, "GetParameterValues") {
			return fmt.Errorf("the CPE was sent %v since its boot, want GetParameterNames and GetParameterValues", m)
		}
		return nil
	})

	// A CPE fault: exit 1, the task and its fault printed.
	r = ctl("tasks", "create", dev1, "set", "Device.DeviceInfo.SoftwareVersion=9.9.9", "--connection-request", "--wait", "10s", "-o", "json")
	faulted := decodeTask(t, "create a faulting set", r.stdout)
	if r.code != 1 || r.stderr != "fleetctl: tasks create: task "+faulted.ID+" is fault after -wait 10s\n" {
		t.Errorf("create a faulting set: exit %d, stderr %q", r.code, r.stderr)
	}
	if faulted.State != "fault" || faulted.Fault == nil || faulted.Fault.Code != 9003 || faulted.Fault.Source != "cpe" ||
		len(faulted.Fault.ParameterFaults) != 1 || faulted.Fault.ParameterFaults[0].Code != 9008 ||
		faulted.Fault.ParameterFaults[0].Name != "Device.DeviceInfo.SoftwareVersion" {
		t.Fatalf("create a faulting set: %s", r.stdout)
	}

	// Tasks queued for a device nobody wakes: created is success without
	// -wait, whatever the state.
	r = ctl("tasks", "create", dev2, "reboot", "-o", "json")
	ok("create reboot", r)
	reboot := decodeTask(t, "create reboot", r.stdout)
	if reboot.State != "queued" || reboot.Kind != "reboot" || reboot.DeviceID != dev2 {
		t.Fatalf("create reboot: %s", r.stdout)
	}
	r = ctl("tasks", "create", dev2, "factory-reset")
	ok("create factory-reset", r)
	resetID, _, _ := strings.Cut(r.stdout, " ")
	if r.stdout != resetID+" queued factory_reset "+dev2+"\n" {
		t.Fatalf("create factory-reset: %q", r.stdout)
	}

	// list, with filters, as JSON (an array, newest first) and as a table.
	listIDs := func(args ...string) []string {
		t.Helper()
		r := ctl(append([]string{"tasks", "list", "-o", "json"}, args...)...)
		ok(fmt.Sprint("list ", args), r)
		var tasks []ctlTask
		if err := json.Unmarshal([]byte(r.stdout), &tasks); err != nil {
			t.Fatalf("list %v: %v: %q", args, err, r.stdout)
		}
		ids := []string{}
		for _, task := range tasks {
			ids = append(ids, task.ID)
		}
		return ids
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"-state", "done"}, []string{refresh.ID, get.ID, set.ID}},
		{[]string{"-device", dev2, "-state", "queued"}, []string{resetID, reboot.ID}},
		{[]string{"-device", dev2, "-kind", "reboot"}, []string{reboot.ID}},
		{[]string{"-kind", "set_parameter_values", "-state", "fault", "-state", "done"}, []string{faulted.ID, set.ID}},
		{[]string{"-device", dev1}, []string{faulted.ID, refresh.ID}},
		{[]string{"-limit", "2"}, []string{resetID, reboot.ID}},
		{[]string{"-device", "no-such-device"}, []string{}},
	} {
		if got := listIDs(c.args...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("list %v: %v, want %v", c.args, got, c.want)
		}
	}
	r = ctl("tasks", "list", "-device", dev1, "-state", "fault")
	ok("list as a table", r)
	if lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n"); len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "ID DEVICE KIND STATE CREATED ATTEMPTS" ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), faulted.ID+" "+dev1+" set_parameter_values fault ") {
		t.Errorf("list as a table:\n%s", r.stdout)
	}

	// cancel: both queued tasks, one JSON object each; then they are
	// cancelled for tasks get (exit 1) and the list.
	r = ctl("tasks", "cancel", reboot.ID, resetID, "-o", "json")
	ok("cancel", r)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("cancel printed %q, want two tasks", r.stdout)
	}
	for i, id := range []string{reboot.ID, resetID} {
		if c := decodeTask(t, "cancel", lines[i]); c.ID != id || c.State != "cancelled" || c.DeviceID != dev2 {
			t.Errorf("cancel: %s, want %s cancelled", lines[i], id)
		}
	}
	r = ctl("tasks", "get", reboot.ID, "-o", "json")
	if c := decodeTask(t, "get a cancelled task", r.stdout); r.code != 1 || c.State != "cancelled" ||
		r.stderr != "fleetctl: tasks get "+reboot.ID+": task is cancelled\n" {
		t.Errorf("get a cancelled task: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if got, want := listIDs("-state", "cancelled"), []string{resetID, reboot.ID}; !reflect.DeepEqual(got, want) {
		t.Errorf("cancelled tasks %v, want %v", got, want)
	}
	// Cancelling again succeeds; a task that ended done is not cancellable.
	ok("cancel again", ctl("tasks", "cancel", reboot.ID))
	r = ctl("tasks", "cancel", set.ID)
	if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "fleetctl: tasks cancel "+set.ID+": ") || !strings.Contains(r.stderr, "TASK_NOT_CANCELLABLE") {
		t.Errorf("cancel a done task: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// A task cancelled while create -wait waits for it: exit 1.
	cmd, stdout, stderr := start("tasks", "create", dev2, "schedule-inform", "60", "--wait", "30s", "-o", "json")
	var waiting string
	waitFor(t, 10*time.Second, func() error {
		list, err := f.tasks.ListTasks(withToken(ctx10(t), f.admin), &tasksv1.ListTasksRequest{Tenant: "default", DeviceId: dev2,
			Kinds: []string{"schedule_inform"}, States: []tasksv1.TaskState{tasksv1.TaskState_TASK_STATE_QUEUED}})
		if err != nil {
			return err
		}
		if len(list.GetTasks()) != 1 {
			return fmt.Errorf("%d queued schedule_inform tasks", len(list.GetTasks()))
		}
		waiting = list.GetTasks()[0].GetId()
		return nil
	})
	ok("cancel the waited-for task", ctl("tasks", "cancel", waiting))
	r = finish(cmd, stdout, stderr)
	if c := decodeTask(t, "create -wait, cancelled", r.stdout); r.code != 1 || c.ID != waiting || c.State != "cancelled" ||
		r.stderr != "fleetctl: tasks create: task "+waiting+" is cancelled after -wait 30s\n" {
		t.Errorf("create -wait, cancelled: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// Usage errors: exit 2, nothing printed, nothing created.
	for _, args := range [][]string{
		{"tasks", "create", dev0, "get"},
		{"tasks", "create", dev0, "refresh", "Device.A.", "Device.B."},
		{"tasks", "create", dev0, "get", "Device.A", "-o", "yaml"},
		{"tasks", "list", "-state", "sleeping"},
		{"tasks", "list", "-o", "text"},
		{"tasks", "cancel"},
	} {
		if r := ctl(args...); r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, "Run 'fleetctl tasks ") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2 and the usage hint", args, r.code, r.stdout, r.stderr)
		}
	}
	if n := len(listIDs("-limit", "1000")); n != 7 {
		t.Errorf("%d tasks, want the 7 created above", n)
	}
}
