package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// taskFleet is `fleetacs all` with simulated CPEs that bootstrapped and now
// sleep, listening for connection requests on their own ports: the
// newcomer's setup of the README (make run, cpesim -cr per-device).
type taskFleet struct {
	*secured
	tasks tasksv1.TasksServiceClient
	inv   inventoryv1.InventoryServiceClient
	sim   *sim.Simulator
	ids   []string

	mu       sync.Mutex
	sessions map[string][]simSession // device serial -> its sessions, oldest first
}

// simSession is what cpesim reported of one session of a device.
type simSession struct {
	events   []cwmp.Event // the Inform's events
	requests []string     // the ACS methods it was sent, in order
}

// carries reports whether the session's Inform had the event code with
// the command key.
func (s simSession) carries(code, key string) bool {
	return slices.Contains(s.events, cwmp.Event{Code: code, CommandKey: key})
}

// startTaskFleet starts a taskFleet of devices CPEs; extra flags go to
// fleetacs.
func startTaskFleet(t *testing.T, devices int, allowLoopback bool, extra ...string) *taskFleet {
	t.Helper()
	s := startSecured(t, append([]string{fmt.Sprintf("-notifier.allow-loopback=%v", allowLoopback), "-tasks.sweep-interval=100ms"}, extra...)...)
	f := &taskFleet{secured: s, tasks: tasksv1.NewTasksServiceClient(s.publicConn),
		inv: inventoryv1.NewInventoryServiceClient(s.publicConn), sessions: map[string][]simSession{}}
	sm, err := sim.New(sim.Config{URL: "http://" + s.cwmp + "/", Model: sim.TR181,
		Devices: devices, Seed: 11, SerialPrefix: "TASK", BootStorm: true, Concurrency: devices,
		Timeout: 30 * time.Second, ConnReq: sim.ConnReqPerDevice,
		TimeScale: 0.01, RebootTime: 50 * time.Millisecond, TransferTime: 50 * time.Millisecond,
		OnSession: func(r sim.SessionReport) {
			f.mu.Lock()
			defer f.mu.Unlock()
			sn := r.Device.ID().SerialNumber
			f.sessions[sn] = append(f.sessions[sn], simSession{events: slices.Clone(r.Events), requests: slices.Clone(r.Requests)})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.sim = sm
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := sm.Run(ctx); done <- err }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Errorf("cpesim: %v", err)
		}
	})
	// Every device bootstrapped (and got its connection-request
	// credentials) once the inventory lists them all with credentials.
	waitFor(t, 30*time.Second, func() error {
		list, err := f.inv.ListDevices(withToken(ctx10(t), s.admin), &inventoryv1.ListDevicesRequest{Tenant: "default", PageSize: 1000})
		if err != nil {
			return err
		}
		f.ids = f.ids[:0]
		for _, d := range list.GetDevices() {
			if !d.GetConnectionRequest().GetPasswordSet() {
				return fmt.Errorf("device %s has no connection-request credentials yet", d.GetId())
			}
			f.ids = append(f.ids, d.GetId())
		}
		if len(f.ids) != devices {
			return fmt.Errorf("%d devices of %d in inventory", len(f.ids), devices)
		}
		return nil
	})
	slices.Sort(f.ids)
	return f
}

// waitFor retries check until it succeeds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 20 * time.Millisecond
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// sessionsOf returns the sessions of the device with id that cpesim has
// reported so far, oldest first. cpesim reports a session after its end,
// and a device's next session starts only after that report.
func (f *taskFleet) sessionsOf(id string) []simSession {
	f.mu.Lock()
	defer f.mu.Unlock()
	for sn, s := range f.sessions {
		if strings.HasSuffix(id, "-"+sn) {
			return slices.Clone(s)
		}
	}
	return nil
}

// methods returns the ACS methods the device with id was sent so far.
func (f *taskFleet) methods(id string) []string {
	var m []string
	for _, s := range f.sessionsOf(id) {
		m = append(m, s.requests...)
	}
	return m
}

// waitSession waits until cpesim has reported a session of the device
// with id, at position from or later in its sessions, for which match
// holds, and returns the position of the first such session.
func (f *taskFleet) waitSession(t *testing.T, id string, from int, what string, match func(simSession) bool) int {
	t.Helper()
	at := -1
	waitFor(t, 10*time.Second, func() error {
		ss := f.sessionsOf(id)
		for i := from; i < len(ss); i++ {
			if match(ss[i]) {
				at = i
				return nil
			}
		}
		return fmt.Errorf("cpesim reported no session %s of %s at or after #%d (sessions: %+v)", what, id, from, ss)
	})
	return at
}

// run creates a task on device id with a connection request and waits for
// it to end.
func (f *taskFleet) run(t *testing.T, id string, op *tasksv1.Operation) *tasksv1.Task {
	t.Helper()
	resp, err := f.tasks.CreateTask(withToken(ctx10(t), f.admin), &tasksv1.CreateTaskRequest{
		Tenant: "default", DeviceId: id, Operation: op,
		Options: &tasksv1.TaskOptions{ConnectionRequest: true}, WaitMs: 8000,
	})
	if err != nil {
		t.Fatalf("create task: %v", err)
	}
	return resp.GetTask()
}

func wantState(t *testing.T, task *tasksv1.Task, want tasksv1.TaskState) {
	t.Helper()
	if task.GetState() != want {
		t.Fatalf("task %s (%T): state %v, want %v; fault %v; wake %v; history %v", task.GetId(), task.GetOperation().GetKind(),
			task.GetState(), want, task.GetFault(), task.GetWake(), task.GetHistory())
	}
}

func param(t *testing.T, inv inventoryv1.InventoryServiceClient, ctx context.Context, id, path string) *inventoryv1.Parameter {
	t.Helper()
	got, err := inv.GetDevice(ctx, &inventoryv1.GetDeviceRequest{Tenant: "default", Id: id,
		Parameters: &inventoryv1.ParameterSelector{PathPrefixes: []string{path}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range got.GetDevice().GetParameters() {
		if p.GetPath() == path {
			return p
		}
	}
	return nil
}

// queueCancelled queues a ScheduleInform on device id, without waking it,
// and cancels it; it returns the task as the cancel left it.
func (f *taskFleet) queueCancelled(t *testing.T, id string) *tasksv1.Task {
	t.Helper()
	ctx := withToken(ctx10(t), f.admin)
	created, err := f.tasks.CreateTask(ctx, &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: id,
		Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_ScheduleInform{ScheduleInform: &tasksv1.ScheduleInform{DelaySeconds: 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.tasks.CancelTask(ctx, &tasksv1.CancelTaskRequest{Tenant: "default", Id: created.GetTask().GetId()})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetTask()
}

// historySession returns the session a dispatched history entry names
// ("session <id>: ..."), or "" when it names none.
func historySession(e *tasksv1.TaskHistoryEntry) string {
	rest, ok := strings.CutPrefix(e.GetDetail(), "session ")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, ": ")
	return id
}

// stateName is a task state as the docs spell it: "queued", "done".
func stateName(st tasksv1.TaskState) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "TASK_STATE_"))
}

// TestTasksEndToEnd drives every kind of outcome the tasks API promises
// through `fleetacs all` and cpesim devices asleep between sessions.
func TestTasksEndToEnd(t *testing.T) {
	f := startTaskFleet(t, 5, true)
	admin := func() context.Context { return withToken(ctx10(t), f.admin) }

	t.Run("set with connection request", func(t *testing.T) {
		id := f.ids[0]
		task := f.run(t, id, &tasksv1.Operation{Kind: &tasksv1.Operation_SetParameterValues{SetParameterValues: &tasksv1.SetParameterValues{
			Values: []*tasksv1.ParameterValue{{Name: "Device.ManagementServer.PeriodicInformInterval", Value: "1234", Type: "xsd:unsignedInt"}},
		}}})
		wantState(t, task, tasksv1.TaskState_TASK_STATE_DONE)
		// The notifier's outcome reaches the task as an event, which may
		// arrive after the session the request opened has ended the task.
		waitFor(t, 10*time.Second, func() error {
			got, err := f.tasks.GetTask(admin(), &tasksv1.GetTaskRequest{Tenant: "default", Id: task.GetId()})
			if err != nil {
				return err
			}
			if w := got.GetTask().GetWake(); w.GetStatus() != tasksv1.WakeStatus_WAKE_STATUS_SENT {
				return fmt.Errorf("wake %v, want sent", w)
			}
			return nil
		})
		if p := param(t, f.inv, admin(), id, "Device.ManagementServer.PeriodicInformInterval"); p.GetValue() != "1234" {
			t.Fatalf("inventory has %v after the set", p)
		}
	})

	t.Run("get returns typed values", func(t *testing.T) {
		task := f.run(t, f.ids[1], &tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterValues{GetParameterValues: &tasksv1.GetParameterValues{
			Names: []string{"Device.DeviceInfo.UpTime", "Device.DeviceInfo.SoftwareVersion"},
		}}})
		wantState(t, task, tasksv1.TaskState_TASK_STATE_DONE)
		types := map[string]string{}
		for _, v := range task.GetResult().GetGetParameterValues().GetValues() {
			types[v.GetName()] = v.GetType()
		}
		if types["Device.DeviceInfo.UpTime"] != "xsd:unsignedInt" || types["Device.DeviceInfo.SoftwareVersion"] != "xsd:string" {
			t.Fatalf("typed values %v", task.GetResult())
		}
	})

	t.Run("CPE fault recorded with its code", func(t *testing.T) {
		task := f.run(t, f.ids[1], &tasksv1.Operation{Kind: &tasksv1.Operation_SetParameterValues{SetParameterValues: &tasksv1.SetParameterValues{
			Values: []*tasksv1.ParameterValue{{Name: "Device.DeviceInfo.SoftwareVersion", Value: "9.9.9"}},
		}}})
		wantState(t, task, tasksv1.TaskState_TASK_STATE_FAULT)
		fault := task.GetFault()
		if fault.GetCode() != 9003 || fault.GetSource() != tasksv1.FaultSource_FAULT_SOURCE_CPE || len(fault.GetParameterFaults()) != 1 ||
			fault.GetParameterFaults()[0].GetCode() != 9008 {
			t.Fatalf("fault %v, want 9003 from the CPE with 9008 for the parameter", fault)
		}
	})

	t.Run("add object returns the instance", func(t *testing.T) {
		id := f.ids[2]
		task := f.run(t, id, &tasksv1.Operation{Kind: &tasksv1.Operation_AddObject{AddObject: &tasksv1.AddObject{ObjectName: "Device.NAT.PortMapping."}}})
		wantState(t, task, tasksv1.TaskState_TASK_STATE_DONE)
		n := task.GetResult().GetAddObject().GetInstanceNumber()
		if n == 0 {
			t.Fatalf("result %v", task.GetResult())
		}
		path := fmt.Sprintf("Device.NAT.PortMapping.%d.", n)
		if p := param(t, f.inv, admin(), id, path); p == nil {
			t.Fatalf("inventory lacks %s after the AddObject", path)
		}
	})

	t.Run("reboot ends done after the M Reboot boot", func(t *testing.T) {
		id := f.ids[3]
		boots := watchKinds(t, f.secured, "device.boot")
		task := f.run(t, id, &tasksv1.Operation{Kind: &tasksv1.Operation_Reboot{Reboot: &tasksv1.Reboot{}}})
		wantState(t, task, tasksv1.TaskState_TASK_STATE_DONE)
		key := task.GetCommandKey()
		if key == "" {
			t.Fatalf("task %v has no command key", task)
		}
		// The CPE: one session was sent the Reboot, and the next one is
		// the boot, whose Inform carries 1 BOOT and M Reboot with the
		// task's key.
		sent := f.waitSession(t, id, 0, "sent a Reboot", func(s simSession) bool { return slices.Contains(s.requests, "Reboot") })
		booted := f.waitSession(t, id, sent+1, "with 1 BOOT and M Reboot "+key, func(s simSession) bool {
			return s.carries("1 BOOT", "") && s.carries("M Reboot", key)
		})
		if ss := f.sessionsOf(id); booted != sent+1 || slices.Contains(ss[booted].requests, "Reboot") {
			t.Fatalf("the Reboot was sent in session #%d, the M Reboot boot is #%d: %+v", sent, booted, ss)
		}
		// The ACS names that boot session in its device.boot event.
		var bootSession string
		waitFor(t, 10*time.Second, func() error {
			for _, e := range eventsOf(boots, "device.boot", id) {
				for _, ie := range e.GetDevice().GetEvents() {
					if ie.GetCode() == "M Reboot" && ie.GetCommandKey() == key {
						bootSession = e.GetSessionId()
						return nil
					}
				}
			}
			return fmt.Errorf("no device.boot event of %s with M Reboot %q", id, key)
		})
		// The task was dispatched in the Reboot's session, stayed
		// dispatched after the RebootResponse (the session's AWAIT report
		// writes a second entry in that session), was taken over by the
		// boot session, and ended done only there (docs/tasks.md).
		got, err := f.tasks.GetTask(admin(), &tasksv1.GetTaskRequest{Tenant: "default", Id: task.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		h := got.GetTask().GetHistory()
		var steps []string
		for _, e := range h {
			step := stateName(e.GetState())
			if e.GetState() == tasksv1.TaskState_TASK_STATE_DISPATCHED {
				step += " in " + historySession(e)
			}
			steps = append(steps, step)
		}
		rebootSession := historySession(h[min(1, len(h)-1)])
		want := []string{"queued", "dispatched in " + rebootSession, "dispatched in " + rebootSession, "dispatched in " + bootSession, "done"}
		if bootSession == "" || rebootSession == bootSession || !slices.Equal(steps, want) {
			t.Fatalf("history %v\nsteps %q, want %q (boot session %q)", h, steps, want, bootSession)
		}
	})

	t.Run("download ends with its TransferComplete", func(t *testing.T) {
		task := f.run(t, f.ids[4], &tasksv1.Operation{Kind: &tasksv1.Operation_Download{Download: &tasksv1.Download{
			FileType: "1 Firmware Upgrade Image", Url: "http://127.0.0.1:1/fw-2.0.0.bin", FileSize: 1000,
		}}})
		wantState(t, task, tasksv1.TaskState_TASK_STATE_DONE)
		if task.GetResult().GetTransfer().GetCompleteTime() == nil {
			t.Fatalf("transfer result %v", task.GetResult())
		}
	})

	t.Run("a read without connection request ends in one write", func(t *testing.T) {
		// Queued while the device sleeps; the session another task's
		// connection request opens runs it too. Its claim writes nothing
		// (docs/tasks.md, "Read-only tasks"): the record goes from queued
		// to done in one write whose history still shows the dispatch.
		id := f.ids[2]
		read, err := f.tasks.CreateTask(admin(), &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: id,
			Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterValues{GetParameterValues: &tasksv1.GetParameterValues{
				Names: []string{"Device.DeviceInfo.UpTime"}}}}})
		if err != nil {
			t.Fatal(err)
		}
		wantState(t, read.GetTask(), tasksv1.TaskState_TASK_STATE_QUEUED)
		wantState(t, f.run(t, id, &tasksv1.Operation{Kind: &tasksv1.Operation_GetRpcMethods{GetRpcMethods: &tasksv1.GetRPCMethods{}}}),
			tasksv1.TaskState_TASK_STATE_DONE)
		waitFor(t, 10*time.Second, func() error {
			got, err := f.tasks.GetTask(admin(), &tasksv1.GetTaskRequest{Tenant: "default", Id: read.GetTask().GetId()})
			if err != nil {
				return err
			}
			task := got.GetTask()
			if task.GetState() != tasksv1.TaskState_TASK_STATE_DONE {
				return fmt.Errorf("read task %v", task.GetState())
			}
			var states []tasksv1.TaskState
			for _, h := range task.GetHistory() {
				states = append(states, h.GetState())
			}
			if !slices.Equal(states, []tasksv1.TaskState{tasksv1.TaskState_TASK_STATE_QUEUED, tasksv1.TaskState_TASK_STATE_DISPATCHED, tasksv1.TaskState_TASK_STATE_DONE}) ||
				task.GetVersion() != read.GetTask().GetVersion()+1 || task.GetAttempts() != 1 || len(task.GetResult().GetGetParameterValues().GetValues()) != 1 {
				t.Fatalf("read task %v", task)
			}
			return nil
		})
	})

	t.Run("expired and cancelled tasks never reach the CPE", func(t *testing.T) {
		id := f.ids[0]
		expiring, err := f.tasks.CreateTask(admin(), &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: id,
			Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_FactoryReset{FactoryReset: &tasksv1.FactoryReset{}}},
			Options:   &tasksv1.TaskOptions{ExpireTime: timestamppb.New(time.Now().Add(300 * time.Millisecond))}})
		if err != nil {
			t.Fatal(err)
		}
		f.queueCancelled(t, id)
		waitFor(t, 10*time.Second, func() error {
			got, err := f.tasks.GetTask(admin(), &tasksv1.GetTaskRequest{Tenant: "default", Id: expiring.GetTask().GetId()})
			if err != nil {
				return err
			}
			if got.GetTask().GetState() != tasksv1.TaskState_TASK_STATE_EXPIRED {
				return fmt.Errorf("state %v", got.GetTask().GetState())
			}
			return nil
		})
		// A session now (woken by another task) must carry neither. The
		// task ends within that session, before cpesim reports it: wait
		// for cpesim's report of the session that was sent the
		// GetRPCMethods (every earlier session of the device is reported
		// before it), then look at what every session was sent.
		mark := len(f.sessionsOf(id))
		wantState(t, f.run(t, id, &tasksv1.Operation{Kind: &tasksv1.Operation_GetRpcMethods{GetRpcMethods: &tasksv1.GetRPCMethods{}}}),
			tasksv1.TaskState_TASK_STATE_DONE)
		f.waitSession(t, id, mark, "sent GetRPCMethods", func(s simSession) bool { return slices.Contains(s.requests, "GetRPCMethods") })
		for _, m := range f.methods(id) {
			if m == "FactoryReset" || m == "ScheduleInform" {
				t.Fatalf("the CPE was sent %s: %v", m, f.methods(id))
			}
		}
	})

	t.Run("WatchTasks resumed after a disconnect misses no change", func(t *testing.T) {
		// A watch of the device sees a set queued, and disconnects. While
		// no one watches, a Reboot wakes the device: its session runs the
		// set and the Reboot, the boot session ends the Reboot; a third
		// task is queued and cancelled. The watch resumed from the last
		// revision seen plus one gets each of these state changes once,
		// in order, up to a task queued after all of them.
		id := f.ids[4]
		wctx, disconnect := context.WithCancel(withToken(ctx10(t), f.admin))
		w, err := f.tasks.WatchTasks(wctx, &tasksv1.WatchTasksRequest{Tenant: "default", StartRevision: 1, DeviceId: id})
		if err != nil {
			t.Fatal(err)
		}
		set, err := f.tasks.CreateTask(admin(), &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: id,
			Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_SetParameterValues{SetParameterValues: &tasksv1.SetParameterValues{
				Values: []*tasksv1.ParameterValue{{Name: "Device.ManagementServer.PeriodicInformInterval", Value: "1300", Type: "xsd:unsignedInt"}},
			}}}})
		if err != nil {
			t.Fatal(err)
		}
		var seen uint64
		for {
			c, err := w.Recv()
			if err != nil {
				t.Fatalf("watch before the disconnect: %v", err)
			}
			seen = c.GetRevision()
			if c.GetTask().GetId() == set.GetTask().GetId() {
				wantState(t, c.GetTask(), tasksv1.TaskState_TASK_STATE_QUEUED)
				break
			}
		}
		// Whatever the stream still delivers is unprocessed: the resumed
		// watch owes it.
		disconnect()
		for {
			if _, err := w.Recv(); err != nil {
				break
			}
		}

		reboot := f.run(t, id, &tasksv1.Operation{Kind: &tasksv1.Operation_Reboot{Reboot: &tasksv1.Reboot{}}})
		wantState(t, reboot, tasksv1.TaskState_TASK_STATE_DONE)
		cancelled := f.queueCancelled(t, id)
		// Every change of each task is in its history: each change of
		// state is one change the watch owes (the set's queued was seen).
		want := map[string][]string{}
		for _, tk := range []*tasksv1.Task{set.GetTask(), reboot, cancelled} {
			got, err := f.tasks.GetTask(admin(), &tasksv1.GetTaskRequest{Tenant: "default", Id: tk.GetId()})
			if err != nil {
				t.Fatal(err)
			}
			var states []string
			for _, h := range got.GetTask().GetHistory() {
				if n := stateName(h.GetState()); len(states) == 0 || states[len(states)-1] != n {
					states = append(states, n)
				}
			}
			want[tk.GetId()] = states
		}
		want[set.GetTask().GetId()] = want[set.GetTask().GetId()][1:]
		for tk, states := range map[string][]string{
			set.GetTask().GetId(): {"dispatched", "done"}, reboot.GetId(): {"queued", "dispatched", "done"},
			cancelled.GetId(): {"queued", "cancelled"},
		} {
			if !slices.Equal(want[tk], states) {
				t.Fatalf("task %s went through %q, want %q", tk, want[tk], states)
			}
		}
		// A task queued after all of them marks the end of what is owed:
		// a task's events are published in order.
		last, err := f.tasks.CreateTask(admin(), &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: id,
			Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_GetRpcMethods{GetRpcMethods: &tasksv1.GetRPCMethods{}}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = f.tasks.CancelTask(withToken(context.Background(), f.admin), &tasksv1.CancelTaskRequest{Tenant: "default", Id: last.GetTask().GetId()})
		})

		w, err = f.tasks.WatchTasks(withToken(ctx10(t), f.admin), &tasksv1.WatchTasksRequest{Tenant: "default", StartRevision: seen + 1, DeviceId: id})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]string{}
		versions := map[string]uint64{}
		rev := seen
		complete := func() bool {
			for tk, states := range want {
				if len(got[tk]) < len(states) {
					return false
				}
			}
			return len(got[last.GetTask().GetId()]) > 0
		}
		for !complete() {
			c, err := w.Recv()
			if err != nil {
				t.Fatalf("resumed watch, having received %v of %v: %v", got, want, err)
			}
			tk := c.GetTask()
			if c.GetRevision() <= rev || tk.GetVersion() <= versions[tk.GetId()] {
				t.Fatalf("change of %s %s at revision %d version %d, after revision %d and version %d of the task",
					tk.GetId(), stateName(tk.GetState()), c.GetRevision(), tk.GetVersion(), rev, versions[tk.GetId()])
			}
			rev, versions[tk.GetId()] = c.GetRevision(), tk.GetVersion()
			got[tk.GetId()] = append(got[tk.GetId()], stateName(tk.GetState()))
		}
		for tk, states := range want {
			if !slices.Equal(got[tk], states) {
				t.Fatalf("resumed watch: task %s changed %q, want %q (all: %v)", tk, got[tk], states, got)
			}
		}
		if len(got) != len(want)+1 || !slices.Equal(got[last.GetTask().GetId()], []string{"queued"}) {
			t.Fatalf("resumed watch: %v, want only %v and %s queued", got, want, last.GetTask().GetId())
		}
	})

	t.Run("refused callers", func(t *testing.T) {
		op := &tasksv1.Operation{Kind: &tasksv1.Operation_Reboot{Reboot: &tasksv1.Reboot{}}}
		_, err := f.tasks.CreateTask(ctx10(t), &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: f.ids[0], Operation: op})
		expect(t, "no credentials", err, codes.Unauthenticated, "CREDENTIALS_MISSING")
		tokens := authv1.NewTokenServiceClient(f.publicConn)
		mint := func(role authv1.Role, tenant string) string {
			resp, err := tokens.CreateToken(admin(), &authv1.CreateTokenRequest{Name: "e2e", Role: role, Tenants: []string{tenant}})
			if err != nil {
				t.Fatal(err)
			}
			return resp.GetSecret()
		}
		viewer := mint(authv1.Role_ROLE_VIEWER, "default")
		_, err = f.tasks.CreateTask(withToken(ctx10(t), viewer), &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: f.ids[0], Operation: op})
		expect(t, "viewer creating a task", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
		other := mint(authv1.Role_ROLE_OPERATOR, "other")
		_, err = f.tasks.CreateTask(withToken(ctx10(t), other), &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: f.ids[0], Operation: op})
		expect(t, "another tenant's token", err, codes.PermissionDenied, "TENANT_FORBIDDEN")
		list, err := f.tasks.ListTasks(withToken(ctx10(t), other), &tasksv1.ListTasksRequest{Tenant: "other"})
		if err != nil || len(list.GetTasks()) != 0 {
			t.Fatalf("another tenant lists %v, %v", list.GetTasks(), err)
		}
	})
}

// TestConnectionRequestToRefusedAddress: without loopback among the CPE
// networks, a task's connection request to a device listening on
// 127.0.0.1 is refused without a connection, and the task says so, still
// queued.
func TestConnectionRequestToRefusedAddress(t *testing.T) {
	f := startTaskFleet(t, 1, false)
	task := f.run(t, f.ids[0], &tasksv1.Operation{Kind: &tasksv1.Operation_Reboot{Reboot: &tasksv1.Reboot{}}})
	wantState(t, task, tasksv1.TaskState_TASK_STATE_QUEUED)
	if w := task.GetWake().GetStatus(); w != tasksv1.WakeStatus_WAKE_STATUS_ADDRESS_REFUSED {
		t.Fatalf("wake %v, want address refused", task.GetWake())
	}
	if m := f.methods(f.ids[0]); slices.Contains(m, "Reboot") {
		t.Fatalf("the CPE was sent a Reboot: %v", m)
	}
}
