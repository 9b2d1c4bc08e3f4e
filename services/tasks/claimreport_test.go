package tasks

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// TestClaimRunsByPriority: when a session may run fewer tasks than its
// device has queued, it takes them in priority then creation order, not in
// queue order (docs/tasks.md, "Delivery"); the others stay queued.
func TestClaimRunsByPriority(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	prio := map[string]int32{}
	var ids []string
	for i, p := range []int32{0, 0, 0, 10, 10, -5} {
		task := h.create(t, dev1, spv("Device.X_T.P", string(rune('a'+i))), &tasksv1.TaskOptions{Priority: p})
		ids = append(ids, task.GetId())
		prio[task.GetId()] = p
		h.clock.Advance(time.Second)
	}
	if got := h.queueIDs(t, "default", dev1); !slices.Equal(got, ids) {
		t.Fatalf("queue order %v, want creation order %v", got, ids)
	}
	resp, err := h.internal.ClaimTasks(t.Context(), &tasksv1.ClaimTasksRequest{Tenant: "default", DeviceId: dev1, SessionId: "s1",
		TaskIds: ids, MaxRun: 3, ReportsClaimMarks: true})
	if err != nil {
		t.Fatalf("ClaimTasks: %v", err)
	}
	var run, skipped []string
	for _, ct := range resp.GetTasks() {
		switch ct.GetAction() {
		case tasksv1.ClaimAction_CLAIM_ACTION_RUN:
			run = append(run, ct.GetTask().GetId())
		case tasksv1.ClaimAction_CLAIM_ACTION_SKIP:
			skipped = append(skipped, ct.GetTask().GetId())
		default:
			t.Fatalf("task %s (priority %d): action %v", ct.GetTask().GetId(), prio[ct.GetTask().GetId()], ct.GetAction())
		}
	}
	// The two of priority 10, older first, then the oldest of priority 0.
	if want := []string{ids[3], ids[4], ids[0]}; !slices.Equal(run, want) {
		t.Fatalf("run %v, want %v", run, want)
	}
	if want := []string{ids[1], ids[2], ids[5]}; !slices.Equal(skipped, want) {
		t.Fatalf("skipped %v, want %v", skipped, want)
	}
	for _, id := range run {
		if st := h.get(t, id).GetState(); st != tasksv1.TaskState_TASK_STATE_DISPATCHED {
			t.Errorf("run task %s is %v", id, st)
		}
	}
	for _, id := range skipped {
		if st := h.get(t, id).GetState(); st != tasksv1.TaskState_TASK_STATE_QUEUED {
			t.Errorf("skipped task %s is %v", id, st)
		}
	}

	// Without a bound every task runs, and the claim keeps the queue's
	// order (the session orders what it runs).
	resp, err = h.internal.ClaimTasks(t.Context(), &tasksv1.ClaimTasksRequest{Tenant: "default", DeviceId: dev1, SessionId: "s1",
		TaskIds: ids, ReportsClaimMarks: true})
	if err != nil {
		t.Fatalf("ClaimTasks: %v", err)
	}
	var order []string
	for _, ct := range resp.GetTasks() {
		if ct.GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN {
			t.Fatalf("unbounded claim: task %s action %v", ct.GetTask().GetId(), ct.GetAction())
		}
		order = append(order, ct.GetTask().GetId())
	}
	if !slices.Equal(order, ids) {
		t.Fatalf("unbounded claim order %v, want %v", order, ids)
	}
}

// TestTaskEventsNameTheirSession: the events of changes a session made (a
// claim's dispatch, a report's outcome) carry its id; a change no session
// made (creation, cancel) carries none.
func TestTaskEventsNameTheirSession(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	var mu sync.Mutex
	sessions := map[string]string{} // task id + kind -> session id
	h.onTaskEvents(t, func(_ *nats.Msg, ev *eventsv1.Event) {
		mu.Lock()
		sessions[ev.GetTask().GetId()+" "+ev.GetKind()] = ev.GetSessionId()
		mu.Unlock()
	})
	run := h.create(t, dev1, spv("Device.X_T.P", "1"), nil)
	h.claim(t, "s1", run.GetId())
	h.report(t, "s1", done(run.GetId()))
	cancelled := h.create(t, dev1, reboot(), nil)
	if _, err := h.public.CancelTask(as(t.Context(), h.operator), &tasksv1.CancelTaskRequest{Id: cancelled.GetId()}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		run.GetId() + " task.queued":          "",
		run.GetId() + " task.dispatched":      "s1",
		run.GetId() + " task.done":            "s1",
		cancelled.GetId() + " task.queued":    "",
		cancelled.GetId() + " task.cancelled": "",
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		_ = h.nc.Flush()
		mu.Lock()
		defer mu.Unlock()
		if !maps.Equal(sessions, want) {
			return fmt.Errorf("events' sessions %v, want %v", sessions, want)
		}
		return nil
	})
}
