package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// TestAllInOneRunsTasks: `fleetacs all` serves the tasks API on its public
// listener; a task created there reaches a simulated CPE in its next
// session, and a CreateTask that waits answers with the task done.
func TestAllInOneRunsTasks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	a := startAllInOne(t, dir)
	simulate := func(known bool) {
		t.Helper()
		cfg := sim.Config{URL: a.url(), Model: sim.TR181, Devices: 1, Seed: 3, SerialPrefix: "TSK", Known: known, BootStorm: !known, Concurrency: 1, Timeout: 30 * time.Second}
		if known {
			cfg.Duration = time.Second
		}
		s, err := sim.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Run(ctx); err != nil {
			t.Fatal(err)
		}
	}
	simulate(false)
	inv, authCtx := a.inventory(t)
	list, err := inv.ListDevices(authCtx, &inventoryv1.ListDevicesRequest{Tenant: "default"})
	if err != nil || len(list.GetDevices()) != 1 {
		t.Fatalf("devices %v, %v", list, err)
	}
	device := list.GetDevices()[0].GetId()

	token, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	tc := tasksv1.NewTasksServiceClient(dialPlain(t, fmt.Sprintf("127.0.0.1:%d", a.grpcAddr)))
	if _, err := tc.ListTasks(ctx, &tasksv1.ListTasksRequest{}); err == nil {
		t.Fatal("ListTasks without credentials answered")
	}
	type result struct {
		resp *tasksv1.CreateTaskResponse
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := tc.CreateTask(withToken(ctx, strings.TrimSpace(string(token))), &tasksv1.CreateTaskRequest{
			Tenant: "default", DeviceId: device, WaitMs: 60_000,
			Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterValues{GetParameterValues: &tasksv1.GetParameterValues{
				Names: []string{"Device.DeviceInfo.SoftwareVersion"}}}},
		})
		res <- result{resp, err}
	}()
	// The device's next sessions run it.
	deadline := time.After(60 * time.Second)
	for {
		select {
		case r := <-res:
			if r.err != nil || r.resp.GetTask().GetState() != tasksv1.TaskState_TASK_STATE_DONE ||
				len(r.resp.GetTask().GetResult().GetGetParameterValues().GetValues()) != 1 {
				t.Fatalf("task: %v, %v\nfleetacs:\n%s", r.resp, r.err, a.stderr.String())
			}
			a.stopClean(t)
			return
		case <-deadline:
			t.Fatalf("the task did not end\nfleetacs:\n%s", a.stderr.String())
		default:
		}
		simulate(true)
	}
}
