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

	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// diagSim is one cpesim simulator of a single sleeping device with the
// TR-143 diagnostic objects, next to the others of a test.
type diagSim struct {
	sim *sim.Simulator
	id  string // the device's inventory key

	mu       sync.Mutex
	requests []string // ACS methods the device was sent
}

func startDiagSim(t *testing.T, s *secured, inv inventoryv1.InventoryServiceClient, model sim.DataModel, prefix string, stall bool) *diagSim {
	t.Helper()
	d := &diagSim{}
	sm, err := sim.New(sim.Config{URL: "http://" + s.cwmp + "/", Model: model,
		Devices: 1, Seed: 17, SerialPrefix: prefix, BootStorm: true, Concurrency: 1,
		Timeout: 30 * time.Second, ConnReq: sim.ConnReqPerDevice, TimeScale: 0.01,
		Diagnostics: true, DiagnosticTime: 20 * time.Millisecond, StallDiagnostics: stall,
		OnSession: func(r sim.SessionReport) {
			d.mu.Lock()
			defer d.mu.Unlock()
			d.requests = append(d.requests, r.Requests...)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	d.sim = sm
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := sm.Run(ctx); done <- err }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Errorf("cpesim: %v", err)
		}
	})
	sn := sm.Devices()[0].ID().SerialNumber
	waitFor(t, 30*time.Second, func() error {
		list, err := inv.ListDevices(withToken(ctx10(t), s.admin), &inventoryv1.ListDevicesRequest{Tenant: "default", PageSize: 1000})
		if err != nil {
			return err
		}
		for _, dev := range list.GetDevices() {
			if strings.HasSuffix(dev.GetId(), "-"+sn) && dev.GetConnectionRequest().GetPasswordSet() {
				d.id = dev.GetId()
				return nil
			}
		}
		return fmt.Errorf("device %s is not in inventory with connection-request credentials yet", sn)
	})
	return d
}

func (d *diagSim) methods() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.requests)
}

// param reads a parameter of the simulated device.
func (d *diagSim) param(t *testing.T, name string) string {
	t.Helper()
	p, ok := d.sim.Devices()[0].Param(name)
	if !ok {
		t.Fatalf("the simulated device has no %s", name)
	}
	return p.Value
}

// TestDiagnosticsEndToEnd runs diagnostics through the tasks API on
// `fleetacs all` and sleeping cpesim devices: a connection request wakes
// the device, the session sets the test, the device runs it after the
// session and informs 8 DIAGNOSTICS COMPLETE, and that session reads the
// results, which the task returns typed and the inventory holds.
func TestDiagnosticsEndToEnd(t *testing.T) {
	s := startSecured(t, "-notifier.allow-loopback=true", "-tasks.sweep-interval=100ms")
	tasks := tasksv1.NewTasksServiceClient(s.publicConn)
	inv := inventoryv1.NewInventoryServiceClient(s.publicConn)
	tr181 := startDiagSim(t, s, inv, sim.TR181, "DGA", false)
	tr098 := startDiagSim(t, s, inv, sim.TR098, "DGB", false)
	stalled := startDiagSim(t, s, inv, sim.TR181, "DGC", true)
	admin := func() context.Context { return withToken(ctx10(t), s.admin) }
	run := func(t *testing.T, id string, d *tasksv1.Diagnostic, opts *tasksv1.TaskOptions) *tasksv1.Task {
		t.Helper()
		if opts == nil {
			opts = &tasksv1.TaskOptions{}
		}
		opts.ConnectionRequest = true
		ctx, cancel := context.WithTimeout(withToken(t.Context(), s.admin), 30*time.Second)
		defer cancel()
		resp, err := tasks.CreateTask(ctx, &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: id,
			Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_Diagnostic{Diagnostic: d}}, Options: opts, WaitMs: 20000})
		if err != nil {
			t.Fatalf("create task: %v", err)
		}
		return resp.GetTask()
	}

	t.Run("ping on a sleeping TR-181 device", func(t *testing.T) {
		before := len(tr181.methods()) // the bootstrap's
		task := run(t, tr181.id, &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_IpPing{IpPing: &tasksv1.IPPingTest{
			Host: "example.com", Repetitions: 4, TimeoutMs: 2000}}}, nil)
		wantState(t, task, tasksv1.TaskState_TASK_STATE_DONE)
		const obj = "Device.IP.Diagnostics.IPPing."
		res := task.GetResult().GetDiagnostic()
		p := res.GetIpPing()
		if res.GetObject() != obj || res.GetState() != "Complete" || p.GetSuccessCount() != 4 || p.GetFailureCount() != 0 ||
			p.GetMinimumResponseTimeUs() == 0 || p.GetMinimumResponseTimeUs() > p.GetAverageResponseTimeUs() ||
			p.GetAverageResponseTimeUs() > p.GetMaximumResponseTimeUs() {
			t.Fatalf("result %v", res)
		}
		// What the task returns is what the device measured.
		if got := fmt.Sprint(p.GetAverageResponseTimeUs()); got != tr181.param(t, obj+"AverageResponseTimeDetailed") {
			t.Errorf("average %s us, the device says %s", got, tr181.param(t, obj+"AverageResponseTimeDetailed"))
		}
		// The device reports its session once it has ended, which may be
		// after the task did.
		waitFor(t, 10*time.Second, func() error {
			if got := tr181.methods()[before:]; !slices.Equal(got, []string{"SetParameterValues", "GetParameterValues"}) {
				return fmt.Errorf("the device was sent %v", got)
			}
			return nil
		})
		if q := param(t, inv, admin(), tr181.id, obj+"SuccessCount"); q == nil || q.GetValue() != "4" {
			t.Errorf("inventory's %sSuccessCount: %v", obj, q)
		}
		if !strings.Contains(fmt.Sprint(task.GetHistory()), "8 DIAGNOSTICS COMPLETE") {
			t.Errorf("history %v", task.GetHistory())
		}
	})

	t.Run("download throughput", func(t *testing.T) {
		task := run(t, tr181.id, &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_Download{Download: &tasksv1.ThroughputTest{
			Url: "http://speed.example/10MB.bin"}}}, nil)
		wantState(t, task, tasksv1.TaskState_TASK_STATE_DONE)
		dl := task.GetResult().GetDiagnostic().GetDownload()
		if dl.GetTestBytes() == 0 || dl.GetThroughputBps() == 0 || !dl.GetBomTime().AsTime().Before(dl.GetEomTime().AsTime()) {
			t.Fatalf("download %v", dl)
		}
	})

	t.Run("traceroute on a TR-098 device", func(t *testing.T) {
		task := run(t, tr098.id, &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_TraceRoute{TraceRoute: &tasksv1.TraceRouteTest{
			Host: "example.net", Tries: 2}}}, nil)
		wantState(t, task, tasksv1.TaskState_TASK_STATE_DONE)
		res := task.GetResult().GetDiagnostic()
		hops := res.GetTraceRoute().GetHops()
		if res.GetObject() != "InternetGatewayDevice.TraceRouteDiagnostics." || len(hops) < 3 ||
			hops[len(hops)-1].GetHost() != "example.net" || len(hops[0].GetRttMs()) != 2 {
			t.Fatalf("result %v", res)
		}
	})

	t.Run("a test that fails on the device ends in fault", func(t *testing.T) {
		task := run(t, tr181.id, &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_IpPing{IpPing: &tasksv1.IPPingTest{Host: "nowhere.invalid"}}}, nil)
		wantState(t, task, tasksv1.TaskState_TASK_STATE_FAULT)
		if f := task.GetFault(); f.GetSource() != tasksv1.FaultSource_FAULT_SOURCE_DIAGNOSTIC || f.GetFaultString() != "Error_CannotResolveHostName" {
			t.Fatalf("fault %v", f)
		}
	})

	t.Run("a device that never completes ends in fault at the timeout", func(t *testing.T) {
		task := run(t, stalled.id, &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_IpPing{IpPing: &tasksv1.IPPingTest{Host: "example.com"}}},
			&tasksv1.TaskOptions{AwaitTimeoutSeconds: 1})
		wantState(t, task, tasksv1.TaskState_TASK_STATE_FAULT)
		if f := task.GetFault(); f.GetSource() != tasksv1.FaultSource_FAULT_SOURCE_TIMEOUT {
			t.Fatalf("fault %v", f)
		}
		if got := stalled.param(t, "Device.IP.Diagnostics.IPPing.DiagnosticsState"); got != "Requested" {
			t.Errorf("the stalled device's state %q", got)
		}
	})

	t.Run("bad inputs are refused with the field", func(t *testing.T) {
		_, err := tasks.CreateTask(admin(), &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: tr181.id,
			Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_Diagnostic{Diagnostic: &tasksv1.Diagnostic{
				Test: &tasksv1.Diagnostic_IpPing{IpPing: &tasksv1.IPPingTest{Host: "example.com", Repetitions: 100000}}}}}})
		expect(t, "repetitions", err, codes.InvalidArgument, "INVALID_FIELD")
		if err == nil || !strings.Contains(err.Error(), "operation.diagnostic.ip_ping.repetitions") {
			t.Errorf("error %v does not name the field", err)
		}
	})
}
