package cli

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// fakeTasks records requests and answers from a script.
type fakeTasks struct {
	tasksv1.UnimplementedTasksServiceServer
	eventsv1.UnimplementedEventsServiceServer
	mu      sync.Mutex
	created []*tasksv1.CreateTaskRequest
	// answer is the task CreateTask and GetTask return.
	answer *tasksv1.Task
	// watchFrom records the start revision of every watch.
	watchFrom []uint64
}

func (f *fakeTasks) CreateTask(_ context.Context, req *tasksv1.CreateTaskRequest) (*tasksv1.CreateTaskResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = append(f.created, req)
	t := proto.Clone(f.answer).(*tasksv1.Task)
	t.DeviceId, t.Operation = req.GetDeviceId(), req.GetOperation()
	return &tasksv1.CreateTaskResponse{Task: t}, nil
}

func (f *fakeTasks) GetTask(_ context.Context, req *tasksv1.GetTaskRequest) (*tasksv1.GetTaskResponse, error) {
	if req.GetId() != f.answer.GetId() {
		return nil, status.Error(codes.NotFound, "no such task")
	}
	return &tasksv1.GetTaskResponse{Task: f.answer}, nil
}

// WatchTasks sends two changes and drops the connection, then one more,
// then refuses: fleetctl must resume after the last revision it printed.
func (f *fakeTasks) WatchTasks(req *tasksv1.WatchTasksRequest, ss grpc.ServerStreamingServer[tasksv1.WatchTasksResponse]) error {
	f.mu.Lock()
	f.watchFrom = append(f.watchFrom, req.GetStartRevision())
	n := len(f.watchFrom)
	f.mu.Unlock()
	switch n {
	case 1:
		for _, rev := range []uint64{10, 11} {
			if err := ss.Send(&tasksv1.WatchTasksResponse{Revision: rev, Task: &tasksv1.Task{Id: "T" + string(rune('0'+rev-10)), DeviceId: "dev-1",
				State: tasksv1.TaskState_TASK_STATE_DISPATCHED, Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_Reboot{Reboot: &tasksv1.Reboot{}}}}}); err != nil {
				return err
			}
		}
		return status.Error(codes.Unavailable, "server going away")
	case 2:
		if err := ss.Send(&tasksv1.WatchTasksResponse{Revision: 12, Task: &tasksv1.Task{Id: "T2", DeviceId: "dev-1", State: tasksv1.TaskState_TASK_STATE_DONE}}); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "again")
	}
	return status.Error(codes.PermissionDenied, "stop here")
}

func (f *fakeTasks) WatchEvents(req *eventsv1.WatchEventsRequest, ss grpc.ServerStreamingServer[eventsv1.WatchEventsResponse]) error {
	f.mu.Lock()
	f.watchFrom = append(f.watchFrom, req.GetStartRevision())
	f.mu.Unlock()
	if req.GetStartRevision() > 5 {
		return status.Error(codes.PermissionDenied, "stop here")
	}
	return ss.Send(&eventsv1.WatchEventsResponse{Revision: 5, Event: &eventsv1.Event{Id: "e1", Kind: "device.boot", DeviceId: "dev-1",
		Payload: &eventsv1.Event_Device{Device: &eventsv1.DeviceReport{RemoteIp: "192.0.2.1"}}}})
}

func serveTasks(t *testing.T, f *fakeTasks) {
	t.Helper()
	cleanEnv(t)
	addr := serveWith(t, func(s *grpc.Server) {
		tasksv1.RegisterTasksServiceServer(s, f)
		eventsv1.RegisterEventsServiceServer(s, f)
	})
	t.Setenv(envAddr, addr)
}

func doneTask() *tasksv1.Task {
	return &tasksv1.Task{Id: "01J0000000000000000000TASK", Tenant: "default", State: tasksv1.TaskState_TASK_STATE_DONE, Attempts: 1,
		Result: &tasksv1.TaskResult{Kind: &tasksv1.TaskResult_SetParameterValues{SetParameterValues: &tasksv1.SetParameterValuesResult{Status: 0}}}}
}

func TestTasksCreateSetWait(t *testing.T) {
	f := &fakeTasks{answer: doneTask()}
	serveTasks(t, f)
	r := fleetctl(t, "tasks", "create", "dev-1", "set", "Device.A=300:unsignedInt", "Device.URL=http://acs:7547/", "Device.T=12:00:int",
		"Device.S=a:int:string", "-connection-request", "-wait", "30s", "-priority", "5", "-idempotency-key", "k1", "-attempts", "2", "-o", "json")
	wantOK(t, r)
	req := f.created[0]
	if req.GetWaitMs() != 30000 || !req.GetOptions().GetConnectionRequest() || req.GetOptions().GetPriority() != 5 ||
		req.GetOptions().GetIdempotencyKey() != "k1" || req.GetOptions().GetMaxAttempts() != 2 {
		t.Errorf("request options %v", req)
	}
	want := []*tasksv1.ParameterValue{
		{Name: "Device.A", Value: "300", Type: "xsd:unsignedInt"},
		{Name: "Device.URL", Value: "http://acs:7547/"},
		{Name: "Device.T", Value: "12:00", Type: "xsd:int"},
		{Name: "Device.S", Value: "a:int", Type: "xsd:string"},
	}
	got := req.GetOperation().GetSetParameterValues().GetValues()
	for i := range want {
		if i >= len(got) || !proto.Equal(got[i], want[i]) {
			t.Fatalf("values %v, want %v", got, want)
		}
	}
	var j map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
		t.Fatalf("-o json: %v: %q", err, r.stdout)
	}
	if j["id"] != "01J0000000000000000000TASK" || j["deviceId"] != "dev-1" || j["state"] != "done" || j["kind"] != "set_parameter_values" ||
		j["fault"] != nil || j["result"] == nil {
		t.Errorf("task JSON %s", r.stdout)
	}
}

// -retry-cpe-faults and -await-timeout reach the task's options; an
// -await-timeout that is no whole number of seconds, or too long, is a
// usage error.
func TestTasksCreateRetryAndAwait(t *testing.T) {
	f := &fakeTasks{answer: doneTask()}
	serveTasks(t, f)
	wantOK(t, fleetctl(t, "tasks", "create", "dev-1", "reboot", "-retry-cpe-faults", "-await-timeout", "10m"))
	if o := f.created[0].GetOptions(); !o.GetRetryCpeFaults() || o.GetAwaitTimeoutSeconds() != 600 {
		t.Fatalf("options %v", o)
	}
	for _, bad := range []string{"1500ms", "-1s", "200h"} {
		r := fleetctl(t, "tasks", "create", "dev-1", "reboot", "-await-timeout", bad)
		if r.code != ExitUsage || !strings.Contains(r.stderr, "-await-timeout must be whole seconds") {
			t.Errorf("-await-timeout %s: exit %d, %q", bad, r.code, r.stderr)
		}
	}
	if len(f.created) != 1 {
		t.Fatalf("%d tasks created", len(f.created))
	}
}

func TestTasksExitStatus(t *testing.T) {
	f := &fakeTasks{answer: doneTask()}
	serveTasks(t, f)
	wantOK(t, fleetctl(t, "tasks", "get", "01J0000000000000000000TASK"))

	f.answer = &tasksv1.Task{Id: "01J0000000000000000000TASK", State: tasksv1.TaskState_TASK_STATE_FAULT,
		Fault: &tasksv1.TaskFault{Code: 9002, FaultString: "Internal error", Source: tasksv1.FaultSource_FAULT_SOURCE_CPE}}
	r := fleetctl(t, "tasks", "create", "dev-1", "reboot", "-wait", "1s", "-o", "json")
	wantFailOut(t, r, "fleetctl: tasks create: task 01J0000000000000000000TASK is fault after -wait 1s")
	if !strings.Contains(r.stdout, `"fault":{"code":9002,"string":"Internal error","source":"cpe"}`) {
		t.Errorf("fault JSON %s", r.stdout)
	}
	r = fleetctl(t, "tasks", "get", "01J0000000000000000000TASK")
	wantFailOut(t, r, "fleetctl: tasks get 01J0000000000000000000TASK: task is fault")
	if !strings.Contains(r.stdout, "fault 9002: Internal error") {
		t.Errorf("text %q", r.stdout)
	}
	// Without -wait a created task is success, whatever its state.
	f.answer = &tasksv1.Task{Id: "Q", State: tasksv1.TaskState_TASK_STATE_QUEUED}
	r = fleetctl(t, "tasks", "create", "dev-1", "download", "http://files/fw.bin", "-file-type", "1 Firmware Upgrade Image")
	wantOK(t, r)
	if r.stdout != "Q queued download dev-1\n" {
		t.Errorf("text %q", r.stdout)
	}
	if d := f.created[len(f.created)-1].GetOperation().GetDownload(); d.GetFileType() != "1 Firmware Upgrade Image" || d.GetUrl() != "http://files/fw.bin" {
		t.Errorf("download %v", d)
	}
	// A task not ended when -wait is over.
	wantFailOut(t, fleetctl(t, "tasks", "create", "dev-1", "reboot", "-wait", "10ms"), "fleetctl: tasks create: task Q is queued after -wait 10ms")

	for _, args := range [][]string{
		{"tasks", "create", "dev-1"},
		{"tasks", "create", "dev-1", "explode"},
		{"tasks", "create", "dev-1", "download", "http://x"},
		{"tasks", "create", "dev-1", "reboot", "-file-type", "1 Firmware Upgrade Image"},
		{"tasks", "create", "dev-1", "set", "novalue"},
		{"tasks", "create", "dev-1", "set-attributes", "X=9"},
		{"tasks", "create", "dev-1", "reboot", "-o", "yaml"},
		{"tasks", "get"},
		{"tasks", "list", "-state", "sleeping"},
	} {
		if r := fleetctl(t, args...); r.code != ExitUsage {
			t.Errorf("%v: exit %d, want 2 (%q)", args, r.code, r.stderr)
		}
	}
	if n := len(f.created); n != 3 {
		t.Errorf("%d tasks created, want 3 (usage errors create none)", n)
	}
}

func TestParseSetValue(t *testing.T) {
	for in, want := range map[string]*tasksv1.ParameterValue{
		"A=1":                 {Name: "A", Value: "1"},
		"A=1:boolean":         {Name: "A", Value: "1", Type: "xsd:boolean"},
		"A=x:xsd:dateTime":    {Name: "A", Value: "x", Type: "xsd:dateTime"},
		"A=aa:bb:cc:dd:ee:ff": {Name: "A", Value: "aa:bb:cc:dd:ee:ff"},
		"A=":                  {Name: "A"},
		"A==b:string":         {Name: "A", Value: "=b", Type: "xsd:string"},
		"A=v:INT":             {Name: "A", Value: "v:INT"},
	} {
		got, err := parseSetValue(in)
		if err != nil || !proto.Equal(got, want) {
			t.Errorf("parseSetValue(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseSetValue("=1"); err == nil {
		t.Error("parseSetValue(=1) accepted an empty name")
	}
}

func TestTasksWatchResumes(t *testing.T) {
	f := &fakeTasks{answer: doneTask()}
	serveTasks(t, f)
	r := fleetctl(t, "tasks", "watch", "-from", "10", "-o", "json")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "tasks watch: permission denied") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], `{"revision":10,"task":{"id":"T0"`) || !strings.Contains(lines[2], `"state":"done"`) {
		t.Errorf("output:\n%s", r.stdout)
	}
	if len(f.watchFrom) != 3 || f.watchFrom[0] != 10 || f.watchFrom[1] != 12 || f.watchFrom[2] != 13 {
		t.Errorf("watch start revisions %v, want [10 12 13]", f.watchFrom)
	}
}

func TestEventsWatch(t *testing.T) {
	f := &fakeTasks{answer: doneTask()}
	serveTasks(t, f)
	r := fleetctl(t, "events", "watch", "-kind", "device")
	if r.code != ExitFailure || !strings.HasPrefix(r.stdout, "5 - device.boot dev-1\n") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if len(f.watchFrom) != 2 || f.watchFrom[1] != 6 {
		t.Errorf("watch start revisions %v, want [0 6]", f.watchFrom)
	}
}

// TestTasksHelpGolden keeps the help of the tasks and events commands in
// one reviewed file.
func TestTasksHelpGolden(t *testing.T) {
	helpGolden(t, "TasksHelpGolden", "../../testdata/help-tasks.txt", "tasks", "create", "get", "list", "cancel", "watch")
}

// wantFailOut is wantFail for commands that print the task before failing.
func wantFailOut(t *testing.T, r cliResult, want string) {
	t.Helper()
	if r.code != ExitFailure || r.stderr != want+"\n" || r.stdout == "" {
		t.Errorf("exit %d, stderr %q, stdout %q; want 1, %q and the task", r.code, r.stderr, r.stdout, want)
	}
}

func TestEventsHelpGolden(t *testing.T) {
	helpGolden(t, "EventsHelpGolden", "../../testdata/help-events.txt", "events", "watch")
}
