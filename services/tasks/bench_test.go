package tasks

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// BenchmarkClaimReport measures the tasks service's part of delivering one
// task (issue 9's figure, scripts/bench-task-delivery.sh): a session's
// claim and its report of the task done, called on the internal server
// as the in-process channel calls it, over the SQLite store and a real
// NATS JetStream (the claim's and report's writes, both task events, the
// delete of the queue message). The tasks are created before the timer
// starts.
func BenchmarkClaimReport(b *testing.B) {
	h := newHarness(b, harnessOpts{maxPerDevice: int64(b.N) + 1})
	ctx := as(context.Background(), h.operator)
	ids := make([]string, 0, b.N)
	for range b.N {
		resp, err := h.public.CreateTask(ctx, &tasksv1.CreateTaskRequest{DeviceId: dev1,
			Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterValues{GetParameterValues: &tasksv1.GetParameterValues{
				Names: []string{"Device.DeviceInfo.UpTime"}}}}})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, resp.GetTask().GetId())
	}
	srv := &internalServer{s: h.svc}
	result := &tasksv1.TaskResult{Kind: &tasksv1.TaskResult_GetParameterValues{GetParameterValues: &tasksv1.GetParameterValuesResult{}}}
	var next atomic.Int64
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	// Sessions run side by side, as a worker's do, so that the store's
	// writer batches their writes.
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			id, session := ids[i], fmt.Sprintf("bench-%d", i)
			c, err := srv.ClaimTasks(context.Background(), &tasksv1.ClaimTasksRequest{Tenant: "default", DeviceId: dev1, SessionId: session, TaskIds: []string{id},
				ReportsClaimMarks: true})
			if err != nil || len(c.GetTasks()) != 1 || c.GetTasks()[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN {
				b.Errorf("claim %v: %v", c, err)
				return
			}
			r, err := srv.ReportTasks(context.Background(), &tasksv1.ReportTasksRequest{Tenant: "default", DeviceId: dev1, SessionId: session,
				Reports: []*tasksv1.TaskReport{{Id: id, ClaimMark: c.GetTasks()[0].GetClaimMark(), Outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE, Result: result}}})
			if err != nil || !r.GetAcks()[0].GetAccepted() {
				b.Errorf("report %v: %v", r, err)
				return
			}
		}
	})
	h.svc.events.Wait()
	b.StopTimer()
	// The process's CPU time (the NATS server runs in another): what the
	// wall time per op hides on a shared machine.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
