package tasks

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/tasks/store"
)

func gpv(names ...string) *tasksv1.Operation {
	return &tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterValues{GetParameterValues: &tasksv1.GetParameterValues{Names: names}}}
}

// claimedAt is a report of outcome for task id claimed with mark m.
func claimedAt(id string, m uint32, outcome tasksv1.TaskOutcome) *tasksv1.TaskReport {
	return &tasksv1.TaskReport{Id: id, ClaimMark: m, Outcome: outcome}
}

// TestReadOnlyClaimWritesNothing: a read-only task is claimed without a
// write and without a task.dispatched event; its report writes the
// dispatch and the outcome at once, and only while the task is at the
// version the claim gave (docs/tasks.md, "Read-only tasks").
func TestReadOnlyClaimWritesNothing(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	events := h.taskEvents(t)
	task := h.create(t, dev1, gpv("Device.DeviceInfo.UpTime"), nil)
	ids := h.queueIDs(t, "default", dev1)

	c := h.claim(t, "s1", ids...)
	if len(c) != 1 || c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN ||
		c[0].GetTask().GetState() != tasksv1.TaskState_TASK_STATE_QUEUED || c[0].GetTask().GetVersion() != task.GetVersion() {
		t.Fatalf("claim %v", c)
	}
	if got := h.get(t, task.GetId()); got.GetVersion() != task.GetVersion() || got.GetState() != tasksv1.TaskState_TASK_STATE_QUEUED || got.GetAttempts() != 0 {
		t.Fatalf("record after the claim: %v", got)
	}
	// A second session of the device (another replica's, a connection
	// request's) runs it too; the first report wins, the other is refused.
	if c2 := h.claim(t, "s2", ids...); c2[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN {
		t.Fatalf("second claim %v", c2)
	}
	m := c[0].GetClaimMark()
	if m != 1 {
		t.Fatalf("claim mark %d, want 1 (the creation's history entry)", m)
	}
	// A write that changes no state leaves the claim standing (the
	// sweeper's, storing a queue sequence or a due time; here a field
	// such a write may set).
	r, err := h.svc.store.Get(t.Context(), "default", task.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.svc.change(t.Context(), r, deleteNow, "", func(now time.Time, t *tasksv1.Task, _ *store.Record) (bool, error) {
		t.Wake = &tasksv1.WakeOutcome{Status: tasksv1.WakeStatus_WAKE_STATUS_SENT, Detail: "HTTP 200", Time: timestamppb.New(now)}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	v := task.GetVersion() + 1
	a := h.report(t, "s2", &tasksv1.TaskReport{Id: task.GetId(), ClaimMark: m, Outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE,
		Result: &tasksv1.TaskResult{Kind: &tasksv1.TaskResult_GetParameterValues{GetParameterValues: &tasksv1.GetParameterValuesResult{}}}})
	if !a[0].GetAccepted() || a[0].GetState() != tasksv1.TaskState_TASK_STATE_DONE {
		t.Fatalf("ack %v", a)
	}
	if a := h.report(t, "s1", claimedAt(task.GetId(), m, tasksv1.TaskOutcome_TASK_OUTCOME_DONE)); a[0].GetAccepted() {
		t.Fatalf("report of the losing session accepted: %v", a)
	}
	got := h.get(t, task.GetId())
	var states []string
	for _, e := range got.GetHistory() {
		states = append(states, stateName(e.GetState()))
	}
	if !slices.Equal(states, []string{"queued", "dispatched", "done"}) || got.GetAttempts() != 1 || got.GetVersion() != v+1 ||
		!strings.HasPrefix(got.GetHistory()[1].GetDetail(), "session s2: dispatched (attempt 1)") || got.GetResult().GetGetParameterValues() == nil {
		t.Fatalf("task %v", got)
	}
	if q := h.queueIDs(t, "default", dev1); len(q) != 0 {
		t.Fatalf("queue after done: %v", q)
	}
	// Events of one publisher arrive in order: once task.done is in, a
	// task.dispatched would have been too.
	testenv.WaitFor(t, 5*time.Second, func() error {
		if got := events(task.GetId()); !slices.Equal(got, []string{"task.queued", "task.done"}) {
			return fmt.Errorf("events %v", got)
		}
		return nil
	})
}

// TestReadOnlyReports: what each outcome of a read-only task claimed
// without a write does, and the reports refused.
func TestReadOnlyReports(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	claimOne := func(session string) (*tasksv1.Task, uint32) {
		t.Helper()
		task := h.create(t, dev1, gpv("Device.X"), &tasksv1.TaskOptions{MaxAttempts: 2})
		c := h.claim(t, session, task.GetId())
		if len(c) != 1 || c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN {
			t.Fatalf("claim %v", c)
		}
		return task, c[0].GetClaimMark()
	}
	state := func(id string) (tasksv1.TaskState, uint32, uint64) {
		got := h.get(t, id)
		return got.GetState(), got.GetAttempts(), got.GetVersion()
	}

	t.Run("release writes nothing", func(t *testing.T) {
		task, m := claimOne("r1")
		if a := h.report(t, "r1", claimedAt(task.GetId(), m, tasksv1.TaskOutcome_TASK_OUTCOME_RELEASE)); !a[0].GetAccepted() ||
			a[0].GetState() != tasksv1.TaskState_TASK_STATE_QUEUED {
			t.Fatalf("ack %v", a)
		}
		if st, n, ver := state(task.GetId()); st != tasksv1.TaskState_TASK_STATE_QUEUED || n != 0 || ver != task.GetVersion() {
			t.Fatalf("released: %v attempts %d version %d", st, n, ver)
		}
	})
	t.Run("retry counts an attempt", func(t *testing.T) {
		task, m := claimOne("t1")
		if a := h.report(t, "t1", claimedAt(task.GetId(), m, tasksv1.TaskOutcome_TASK_OUTCOME_RETRY)); !a[0].GetAccepted() ||
			a[0].GetState() != tasksv1.TaskState_TASK_STATE_QUEUED {
			t.Fatalf("ack %v", a)
		}
		got := h.get(t, task.GetId())
		if got.GetAttempts() != 1 || got.GetRetryTime() == nil {
			t.Fatalf("retried: %v", got)
		}
		if got.GetUnconfirmedSessionId() != "" {
			t.Fatalf("a read left unconfirmed: %v", got)
		}
		// The second attempt is claimed without a write too; its retry
		// spends the last: the task ends.
		h.clock.Advance(time.Hour)
		c := h.claim(t, "t2", task.GetId())
		if c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN || c[0].GetClaimMark() == 0 {
			t.Fatalf("claim after the back-off %v", c)
		}
		if a := h.report(t, "t2", claimedAt(task.GetId(), c[0].GetClaimMark(), tasksv1.TaskOutcome_TASK_OUTCOME_RETRY)); a[0].GetState() != tasksv1.TaskState_TASK_STATE_FAULT {
			t.Fatalf("last attempt's retry: %v", a)
		}
	})
	t.Run("CPE fault ends it", func(t *testing.T) {
		task, m := claimOne("f1")
		rep := claimedAt(task.GetId(), m, tasksv1.TaskOutcome_TASK_OUTCOME_FAULT)
		rep.Fault = &tasksv1.TaskFault{Code: 9005, FaultString: "Invalid parameter name", Source: tasksv1.FaultSource_FAULT_SOURCE_CPE}
		if a := h.report(t, "f1", rep); !a[0].GetAccepted() || a[0].GetState() != tasksv1.TaskState_TASK_STATE_FAULT {
			t.Fatalf("ack %v", a)
		}
		if got := h.get(t, task.GetId()); got.GetFault().GetCode() != 9005 || got.GetAttempts() != 1 {
			t.Fatalf("faulted: %v", got)
		}
	})
	t.Run("refused", func(t *testing.T) {
		// No version (a worker older than unwritten claims), a wrong one,
		// another device's report: the task stays queued as it was.
		task, m := claimOne("x1")
		for _, rep := range []*tasksv1.TaskReport{
			done(task.GetId()),
			claimedAt(task.GetId(), m+1, tasksv1.TaskOutcome_TASK_OUTCOME_DONE),
		} {
			if a := h.report(t, "x1", rep); a[0].GetAccepted() {
				t.Fatalf("report %v accepted: %v", rep, a)
			}
		}
		if st, n, ver := state(task.GetId()); st != tasksv1.TaskState_TASK_STATE_QUEUED || n != 0 || ver != task.GetVersion() {
			t.Fatalf("after refused reports: %v attempts %d version %d", st, n, ver)
		}
		// Cancelled between the claim and the report: the report is
		// refused and the task stays cancelled.
		if _, err := h.public.CancelTask(as(t.Context(), h.operator), &tasksv1.CancelTaskRequest{Id: task.GetId()}); err != nil {
			t.Fatal(err)
		}
		if a := h.report(t, "x1", claimedAt(task.GetId(), m, tasksv1.TaskOutcome_TASK_OUTCOME_DONE)); a[0].GetAccepted() {
			t.Fatalf("report of a cancelled task accepted: %v", a)
		}
		if st, _, _ := state(task.GetId()); st != tasksv1.TaskState_TASK_STATE_CANCELLED {
			t.Fatalf("cancelled task now %v", st)
		}
	})
	// A writing operation, and a read that asked for a connection
	// request (its worker's death must leave it dispatched, for the
	// sweeper to queue again and wake the device), are dispatched by
	// their claim.
	for name, c := range map[string]struct {
		op   *tasksv1.Operation
		opts *tasksv1.TaskOptions
	}{
		"set":                         {spv("Device.X", "1"), nil},
		"get with connection request": {gpv("Device.X"), &tasksv1.TaskOptions{ConnectionRequest: true}},
	} {
		t.Run(name+" is dispatched", func(t *testing.T) {
			task := h.create(t, dev1, c.op, c.opts)
			cl := h.claim(t, "w-"+task.GetId(), task.GetId())
			if cl[0].GetTask().GetState() != tasksv1.TaskState_TASK_STATE_DISPATCHED || cl[0].GetClaimMark() != 0 {
				t.Fatalf("claim %v", cl)
			}
			if st, _, _ := state(task.GetId()); st != tasksv1.TaskState_TASK_STATE_DISPATCHED {
				t.Fatalf("record after the claim %v", st)
			}
		})
	}
}

// TestReadOnlyClaimOnAStaleRecord: a read claimed without a write on a
// record the replica's cache holds stale (the task ended on another
// replica, whose queue delete failed) runs, and its refused report
// forgets the stale record and removes the queue message, so that the
// device's sessions do not run the read again and again.
func TestReadOnlyClaimOnAStaleRecord(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	task := h.create(t, dev1, gpv("Device.X"), nil)
	// Another replica ends it: the store changes, this replica's cache
	// and the queue do not.
	r, err := h.svc.store.Get(t.Context(), "default", task.GetId())
	if err != nil {
		t.Fatal(err)
	}
	other, err := decodeTask(r)
	if err != nil {
		t.Fatal(err)
	}
	now := h.clock.Now()
	enter(other, tasksv1.TaskState_TASK_STATE_CANCELLED, now, "cancelled on another replica")
	nr := r
	nr.Version, nr.UpdateTime, nr.State, nr.DueTime = r.Version+1, now, int32(other.GetState()), time.Time{}
	other.Version = nr.Version
	nr.Body = encodeTask(other)
	if err := h.svc.store.Update(t.Context(), nr, r.Version); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.svc.recent.get("default", task.GetId()); !ok {
		t.Fatal("the test needs the record in the cache")
	}
	c := h.claim(t, "s1", task.GetId())
	if len(c) != 1 || c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN || c[0].GetClaimMark() == 0 {
		t.Fatalf("claim on the stale record %v", c)
	}
	if a := h.report(t, "s1", claimedAt(task.GetId(), c[0].GetClaimMark(), tasksv1.TaskOutcome_TASK_OUTCOME_DONE)); a[0].GetAccepted() ||
		a[0].GetState() != tasksv1.TaskState_TASK_STATE_CANCELLED {
		t.Fatalf("report on a task ended elsewhere: %v", a)
	}
	if _, ok := h.svc.recent.get("default", task.GetId()); ok {
		t.Fatal("the stale record is still in the cache")
	}
	if q := h.queueIDs(t, "default", dev1); len(q) != 0 {
		t.Fatalf("queue after the refused report: %v", q)
	}
}

// TestReadOnlyClaimOfAnOlderWorker: a worker that does not report claim
// marks (a release before them, during a rolling upgrade) gets its
// read-only tasks dispatched by the claim, as before, and its report
// without a mark is accepted.
func TestReadOnlyClaimOfAnOlderWorker(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	task := h.create(t, dev1, gpv("Device.X"), nil)
	resp, err := h.internal.ClaimTasks(t.Context(), &tasksv1.ClaimTasksRequest{Tenant: "default", DeviceId: dev1, SessionId: "old", TaskIds: []string{task.GetId()}})
	if err != nil {
		t.Fatal(err)
	}
	if c := resp.GetTasks(); len(c) != 1 || c[0].GetTask().GetState() != tasksv1.TaskState_TASK_STATE_DISPATCHED || c[0].GetClaimMark() != 0 {
		t.Fatalf("claim %v", c)
	}
	if a := h.report(t, "old", done(task.GetId())); !a[0].GetAccepted() || a[0].GetState() != tasksv1.TaskState_TASK_STATE_DONE {
		t.Fatalf("ack %v", a)
	}
}

// TestReadOnlyKinds: the operations whose claim writes nothing are
// exactly those that only read the CPE; a new operation is not read-only
// until it is added here and to readOnly.
func TestReadOnlyKinds(t *testing.T) {
	want := map[string]bool{"get_rpc_methods": true, "get_parameter_names": true, "get_parameter_values": true,
		"get_parameter_attributes": true, "get_queued_transfers": true, "get_all_queued_transfers": true, "refresh": true}
	fields := (&tasksv1.Operation{}).ProtoReflect().Descriptor().Oneofs().ByName("kind").Fields()
	seen := 0
	for i := range fields.Len() {
		name := string(fields.Get(i).Name())
		if readOnly(name) != want[name] {
			t.Errorf("readOnly(%q) = %v", name, readOnly(name))
		}
		if want[name] {
			seen++
		}
	}
	if seen != len(want) {
		t.Errorf("%d of the %d read-only kinds are Operation fields", seen, len(want))
	}
}
