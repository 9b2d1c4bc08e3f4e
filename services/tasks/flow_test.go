package tasks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/recordid"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

func done(id string) *tasksv1.TaskReport {
	return &tasksv1.TaskReport{Id: id, Outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE}
}

func TestClaimReportDone(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	events := h.taskEvents(t)
	task := h.create(t, dev1, spv("Device.X", "1"), nil)
	ids := h.queueIDs(t, "default", dev1)
	c := h.claim(t, "s1", ids...)
	if len(c) != 1 || c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN || c[0].GetTask().GetAttempts() != 1 {
		t.Fatalf("claim %v", c)
	}
	// A repeated claim of the same session runs it still; a report of
	// another session is refused.
	if c := h.claim(t, "s1", ids...); c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN {
		t.Fatalf("repeated claim %v", c)
	}
	if a := h.report(t, "s2", done(task.GetId())); a[0].GetAccepted() {
		t.Fatalf("report of another session accepted: %v", a)
	}
	a := h.report(t, "s1", &tasksv1.TaskReport{Id: task.GetId(), Outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE,
		Result: &tasksv1.TaskResult{Kind: &tasksv1.TaskResult_SetParameterValues{SetParameterValues: &tasksv1.SetParameterValuesResult{Status: 0}}}})
	if !a[0].GetAccepted() || a[0].GetState() != tasksv1.TaskState_TASK_STATE_DONE {
		t.Fatalf("ack %v", a)
	}
	if a := h.report(t, "s1", done(task.GetId())); a[0].GetAccepted() {
		t.Fatalf("report of an ended task accepted: %v", a)
	}
	got := h.get(t, task.GetId())
	if got.GetResult().GetSetParameterValues() == nil || len(got.GetHistory()) != 3 {
		t.Fatalf("task %v", got)
	}
	if q := h.queueIDs(t, "default", dev1); len(q) != 0 {
		t.Fatalf("queue after done: %v", q)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if got := events(task.GetId()); !slices.Equal(got, []string{"task.queued", "task.dispatched", "task.done"}) {
			return fmt.Errorf("events %v", got)
		}
		return nil
	})
}

func TestRetryBackoffAndAttempts(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	task := h.create(t, dev1, reboot(), &tasksv1.TaskOptions{MaxAttempts: 2})
	h.claim(t, "s1", task.GetId())
	retry := &tasksv1.TaskReport{Id: task.GetId(), Outcome: tasksv1.TaskOutcome_TASK_OUTCOME_RETRY}
	if a := h.report(t, "s1", retry); a[0].GetState() != tasksv1.TaskState_TASK_STATE_QUEUED {
		t.Fatalf("ack %v", a)
	}
	got := h.get(t, task.GetId())
	rt := got.GetRetryTime().AsTime()
	// RetryBase is a minute in the harness: 48s to 72s with jitter.
	if d := rt.Sub(h.clock.Now()); d < 48*time.Second || d > 72*time.Second {
		t.Fatalf("retry in %s", d)
	}
	if c := h.claim(t, "s2", task.GetId()); c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_SKIP {
		t.Fatalf("claim before retry_time: %v", c)
	}
	h.clock.Advance(2 * time.Minute)
	// The session ended before the CPE's answer: the CPE may have carried
	// the task out, so the next session resumes it (checks its
	// ParameterKey or events before sending it again).
	if c := h.claim(t, "s3", task.GetId()); c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RESUME ||
		c[0].GetPreviousSessionId() != "s1" || c[0].GetTask().GetAttempts() != 2 {
		t.Fatalf("claim after retry_time: %v", c)
	}
	if a := h.report(t, "s3", retry); a[0].GetState() != tasksv1.TaskState_TASK_STATE_FAULT {
		t.Fatalf("last attempt's retry: %v", a)
	}
	if f := h.get(t, task.GetId()).GetFault(); f.GetSource() != tasksv1.FaultSource_FAULT_SOURCE_ACS {
		t.Fatalf("fault %v", f)
	}
	// CPE faults end a task unless it asks for retries.
	cpe := &tasksv1.TaskFault{Code: 9002, FaultString: "Internal error", Source: tasksv1.FaultSource_FAULT_SOURCE_CPE}
	for _, retryCPE := range []bool{false, true} {
		task := h.create(t, dev1, reboot(), &tasksv1.TaskOptions{RetryCpeFaults: retryCPE})
		h.clock.Advance(time.Hour)
		h.claim(t, "f1", task.GetId())
		a := h.report(t, "f1", &tasksv1.TaskReport{Id: task.GetId(), Outcome: tasksv1.TaskOutcome_TASK_OUTCOME_FAULT, Fault: cpe})
		want := tasksv1.TaskState_TASK_STATE_FAULT
		if retryCPE {
			want = tasksv1.TaskState_TASK_STATE_QUEUED
		}
		if a[0].GetState() != want {
			t.Fatalf("retry_cpe_faults %v: %v", retryCPE, a)
		}
	}
	// RELEASE queues again without counting an attempt.
	rel := h.create(t, dev1, reboot(), nil)
	h.clock.Advance(time.Hour)
	h.claim(t, "r1", rel.GetId())
	h.report(t, "r1", &tasksv1.TaskReport{Id: rel.GetId(), Outcome: tasksv1.TaskOutcome_TASK_OUTCOME_RELEASE})
	if got := h.get(t, rel.GetId()); got.GetState() != tasksv1.TaskState_TASK_STATE_QUEUED || got.GetAttempts() != 0 || got.GetRetryTime() != nil {
		t.Fatalf("released: %v", got)
	}
}

func TestAwaitResumeAndTimeout(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	task := h.create(t, dev1, reboot(), &tasksv1.TaskOptions{AwaitTimeoutSeconds: 600})
	h.claim(t, "s1", task.GetId())
	deadline := h.clock.Now().Add(5 * time.Minute)
	h.report(t, "s1", &tasksv1.TaskReport{Id: task.GetId(), Outcome: tasksv1.TaskOutcome_TASK_OUTCOME_AWAIT, AwaitDeadline: timestamppb.New(deadline)})
	if q := h.queueIDs(t, "default", dev1); len(q) != 1 {
		t.Fatalf("an awaiting task keeps its queue message: %v", q)
	}
	c := h.claim(t, "s2", task.GetId())
	if c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_AWAIT || c[0].GetPreviousSessionId() != "s1" || !c[0].GetTask().GetAwaitDeadline().AsTime().Equal(deadline) {
		t.Fatalf("claim in a later session: %v", c)
	}
	// The later session may end it; the first no longer.
	if a := h.report(t, "s1", done(task.GetId())); a[0].GetAccepted() {
		t.Fatal("the earlier session's report was accepted")
	}
	h.clock.Advance(6 * time.Minute)
	if _, err := h.svc.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := h.get(t, task.GetId())
	if got.GetState() != tasksv1.TaskState_TASK_STATE_FAULT || got.GetFault().GetSource() != tasksv1.FaultSource_FAULT_SOURCE_TIMEOUT {
		t.Fatalf("after the deadline: %v", got)
	}
	if q := h.queueIDs(t, "default", dev1); len(q) != 0 {
		t.Fatalf("queue %v", q)
	}

	// A worker that dies: the next session resumes the task.
	lost := h.create(t, dev1, spv("Device.X", "1"), nil)
	h.claim(t, "d1", lost.GetId())
	c = h.claim(t, "d2", lost.GetId())
	if c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RESUME || c[0].GetPreviousSessionId() != "d1" || c[0].GetTask().GetAttempts() != 2 {
		t.Fatalf("resume: %v", c)
	}
	// And with no session at all, the sweeper queues it again after
	// -tasks.dispatch-timeout.
	h.clock.Advance(h.svc.cfg.DispatchTimeout + time.Second)
	if _, err := h.svc.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := h.get(t, lost.GetId()); got.GetState() != tasksv1.TaskState_TASK_STATE_QUEUED || got.GetRetryTime() == nil {
		t.Fatalf("after the dispatch timeout: %v", got)
	}
}

// TestSweeperExpiryReplicas: two replicas sweep the same expired tasks at
// once; each task expires once, and no claim reaches it.
func TestSweeperExpiryReplicas(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	events := h.taskEvents(t)
	var ids []string
	for range 10 {
		ids = append(ids, h.create(t, dev1, reboot(), &tasksv1.TaskOptions{ExpireTime: timestamppb.New(h.clock.Now().Add(time.Minute))}).GetId())
	}
	second, err := New(h.svc.cfg, h.svc.deps)
	if err != nil {
		t.Fatal(err)
	}
	second.ready.Store(true)
	h.clock.Advance(2 * time.Minute)
	var wg sync.WaitGroup
	for _, s := range []*Service{h.svc, second, h.svc, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Sweep(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		got := h.get(t, id)
		n := 0
		for _, e := range got.GetHistory() {
			if e.GetState() == tasksv1.TaskState_TASK_STATE_EXPIRED {
				n++
			}
		}
		if got.GetState() != tasksv1.TaskState_TASK_STATE_EXPIRED || n != 1 {
			t.Fatalf("task %s: %v with %d expired entries", id, got.GetState(), n)
		}
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		for _, id := range ids {
			if got := events(id); !slices.Equal(got, []string{"task.queued", "task.expired"}) {
				return fmt.Errorf("events of %s: %v", id, got)
			}
		}
		return nil
	})
	if q := h.queueIDs(t, "default", dev1); len(q) != 0 {
		t.Fatalf("queue %v", q)
	}
	for _, c := range h.claim(t, "late", ids...) {
		if c.GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_ENDED {
			t.Fatalf("claim of an expired task: %v", c)
		}
	}
	// A queued task whose expiry passes before the sweeper looks is
	// expired by the claim itself.
	late := h.create(t, dev1, reboot(), &tasksv1.TaskOptions{ExpireTime: timestamppb.New(h.clock.Now().Add(time.Minute))})
	h.clock.Advance(2 * time.Minute)
	if c := h.claim(t, "late2", late.GetId()); c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_ENDED || c[0].GetTask().GetState() != tasksv1.TaskState_TASK_STATE_EXPIRED {
		t.Fatalf("claim past expiry: %v", c)
	}
	// Ended tasks go after -tasks.retention.
	h.clock.Advance(h.svc.cfg.Retention + time.Hour)
	if _, err := h.svc.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err = h.public.GetTask(as(t.Context(), h.viewer), &tasksv1.GetTaskRequest{Id: ids[0]})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_TASK_NOT_FOUND)
}

// TestUnpublishedRecordIsQueued: a record stored by a process that died
// before publishing it is queued by the sweeper.
func TestUnpublishedRecordIsQueued(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	now := h.clock.Now()
	task := &tasksv1.Task{Id: recordid.New(now), Tenant: "default", DeviceId: dev1, Operation: reboot(), Options: &tasksv1.TaskOptions{},
		CreateTime: timestamppb.New(now), CommandKey: "k"}
	enter(task, tasksv1.TaskState_TASK_STATE_QUEUED, now, "created")
	rec := recordOf(task, now)
	if _, _, err := h.st.Create(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	if q := h.queueIDs(t, "default", dev1); len(q) != 0 {
		t.Fatalf("published before its grace: %v", q)
	}
	h.clock.Advance(publishGrace + time.Second)
	if _, err := h.svc.Sweep(t.Context()); err != nil {
		t.Fatal(err)
	}
	if q := h.queueIDs(t, "default", dev1); !slices.Equal(q, []string{task.GetId()}) {
		t.Fatalf("queue %v", q)
	}
	r, err := h.st.Get(t.Context(), "default", task.GetId())
	if err != nil || r.QueueSeq == 0 || !r.DueTime.Equal(expiryOf(task)) {
		t.Fatalf("record %+v, %v", r, err)
	}
}

func TestWatchResumeMissesNothing(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	tctx, tcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer tcancel()
	ctx := as(tctx, h.viewer)
	wctx, cancel := context.WithCancel(ctx)
	// A watch from 0 sees only what follows its start, which the client
	// cannot observe: start from the stream's next revision instead.
	es, err := h.js.Stream(ctx, h.names.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	w, err := h.public.WatchTasks(wctx, &tasksv1.WatchTasksRequest{StartRevision: es.CachedInfo().State.LastSeq + 1})
	if err != nil {
		t.Fatal(err)
	}
	a := h.create(t, dev1, reboot(), nil)
	first, err := w.Recv()
	if err != nil || first.GetTask().GetId() != a.GetId() || first.GetRevision() == 0 {
		t.Fatalf("first change %v, %v", first, err)
	}
	cancel()
	// Changes while no one watches.
	b := h.create(t, dev2, reboot(), nil)
	if _, err := h.public.CancelTask(as(t.Context(), h.operator), &tasksv1.CancelTaskRequest{Id: a.GetId()}); err != nil {
		t.Fatal(err)
	}
	c := h.create(t, dev1, reboot(), nil)
	w, err = h.public.WatchTasks(ctx, &tasksv1.WatchTasksRequest{StartRevision: first.GetRevision() + 1})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{b.GetId() + " queued", a.GetId() + " cancelled", c.GetId() + " queued"}
	last := first.GetRevision()
	for i, wnt := range want {
		got, err := w.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if s := got.GetTask().GetId() + " " + stateName(got.GetTask().GetState()); s != wnt || got.GetRevision() <= last {
			t.Fatalf("change %d: %s at %d, want %s after %d", i, s, got.GetRevision(), wnt, last)
		}
		last = got.GetRevision()
	}
	// Per device.
	dw, err := h.public.WatchTasks(ctx, &tasksv1.WatchTasksRequest{StartRevision: 1, DeviceId: dev2})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := dw.Recv(); err != nil || got.GetTask().GetId() != b.GetId() {
		t.Fatalf("device watch: %v, %v", got, err)
	}
	// Events of other kinds and the compacted start.
	ew, err := h.events.WatchEvents(ctx, &eventsv1.WatchEventsRequest{StartRevision: 1, Kinds: []string{"task.cancelled", "task"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ew.Recv(); err != nil || got.GetEvent().GetKind() != "task.queued" {
		t.Fatalf("events watch: %v, %v", got, err)
	}
	st, err := h.js.Stream(t.Context(), h.names.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(t.Context(), jetstream.WithPurgeSequence(last)); err != nil {
		t.Fatal(err)
	}
	cw, err := h.public.WatchTasks(ctx, &tasksv1.WatchTasksRequest{StartRevision: 1})
	if err == nil {
		_, err = cw.Recv()
	}
	info := wantError(t, err, codes.OutOfRange, errorsv1.ErrorReason_REVISION_COMPACTED)
	if info.GetMetadata()["first_revision"] != fmt.Sprint(last) {
		t.Fatalf("metadata %v, want first_revision %d", info.GetMetadata(), last)
	}
	_, err = h.events.WatchEvents(ctx, &eventsv1.WatchEventsRequest{Kinds: []string{"Task>"}})
	if err == nil {
		var ew eventsv1.EventsService_WatchEventsClient
		ew, err = h.events.WatchEvents(ctx, &eventsv1.WatchEventsRequest{Kinds: []string{"Task>"}})
		if err == nil {
			_, err = ew.Recv()
		}
	}
	wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
}

func TestWaitingCreate(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := as(t.Context(), h.operator)
	type result struct {
		resp *tasksv1.CreateTaskResponse
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := h.public.CreateTask(ctx, &tasksv1.CreateTaskRequest{DeviceId: dev1, Operation: reboot(), WaitMs: 20_000})
		res <- result{resp, err}
	}()
	var ids []string
	testenv.WaitFor(t, 10*time.Second, func() error {
		if ids = h.queueIDs(t, "default", dev1); len(ids) == 0 {
			return fmt.Errorf("no task queued yet")
		}
		return nil
	})
	h.claim(t, "s1", ids...)
	h.report(t, "s1", done(ids[0]))
	start := time.Now()
	r := <-res
	if r.err != nil || r.resp.GetTask().GetState() != tasksv1.TaskState_TASK_STATE_DONE {
		t.Fatalf("waiting create: %v, %v", r.resp, r.err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("answered %s after the task ended", time.Since(start))
	}

	// A connection request that cannot reach the device answers a
	// waiting call at once, the task still queued; the outcome is
	// recorded in the task.
	go func() {
		resp, err := h.public.CreateTask(ctx, &tasksv1.CreateTaskRequest{DeviceId: dev2, Operation: reboot(), WaitMs: 60_000,
			Options: &tasksv1.TaskOptions{ConnectionRequest: true}})
		res <- result{resp, err}
	}()
	var wr *tasksv1.WakeRequest
	testenv.WaitFor(t, 10*time.Second, func() error {
		ids = h.queueIDs(t, "default", dev2)
		if len(ids) == 0 {
			return fmt.Errorf("no task queued yet")
		}
		wr = &tasksv1.WakeRequest{TaskIds: ids}
		return nil
	})
	ev := &eventsv1.Event{Id: "cr-1", Tenant: "default", DeviceId: dev2, Kind: "connection_request.no_credentials", Time: timestamppb.Now(),
		Payload: &eventsv1.Event_ConnectionRequest{ConnectionRequest: &eventsv1.ConnectionRequestOutcome{
			Status: tasksv1.WakeStatus_WAKE_STATUS_NO_CREDENTIALS, Detail: "none provisioned", TaskIds: wr.GetTaskIds()}}}
	if err := h.svc.publish(t.Context(), h.names.Event("default", ev.GetKind(), dev2), ev.GetId(), ev); err != nil {
		t.Fatal(err)
	}
	r = <-res
	if r.err != nil || r.resp.GetTask().GetState() != tasksv1.TaskState_TASK_STATE_QUEUED || r.resp.GetTask().GetWake().GetStatus() != tasksv1.WakeStatus_WAKE_STATUS_NO_CREDENTIALS {
		t.Fatalf("waiting create with a hopeless wake: %v, %v", r.resp, r.err)
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		if w := h.get(t, ids[0]).GetWake(); w.GetStatus() != tasksv1.WakeStatus_WAKE_STATUS_NO_CREDENTIALS || w.GetDetail() != "none provisioned" {
			return fmt.Errorf("wake %v", w)
		}
		return nil
	})
}

func TestListPages(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := as(t.Context(), h.viewer)
	var want []string
	for range 5 {
		want = append(want, h.create(t, dev1, reboot(), nil).GetId())
		h.clock.Advance(time.Millisecond)
	}
	h.create(t, dev2, spv("Device.X", "1"), nil)
	slices.Reverse(want)
	var got []string
	req := &tasksv1.ListTasksRequest{DeviceId: dev1, PageSize: 2, Kinds: []string{"reboot"}}
	for {
		resp, err := h.public.ListTasks(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range resp.GetTasks() {
			got = append(got, task.GetId())
			if len(task.GetHistory()) != 0 {
				t.Fatal("history without with_history")
			}
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if !slices.Equal(got, want) {
		t.Fatalf("pages %v, want %v", got, want)
	}
	_, err := h.public.ListTasks(ctx, &tasksv1.ListTasksRequest{DeviceId: dev2, PageSize: 2, Kinds: []string{"reboot"}, PageToken: req.GetPageToken()})
	wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_PAGE_TOKEN)
	_, err = h.public.ListTasks(ctx, &tasksv1.ListTasksRequest{PageToken: "garbage"})
	wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_PAGE_TOKEN)
	_, err = h.public.ListTasks(ctx, &tasksv1.ListTasksRequest{Kinds: []string{"format_disk"}})
	wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
}

// TestRetryWakesTheDeviceAgain: a task that asked for a connection request
// and whose session ended before the answer wakes its device again once
// its back-off is over, rather than wait for the next periodic Inform.
func TestRetryWakesTheDeviceAgain(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := context.Background()
	task := h.create(t, dev1, reboot(), &tasksv1.TaskOptions{ConnectionRequest: true})
	ws, err := h.js.Stream(ctx, h.names.WakeStream())
	if err != nil {
		t.Fatal(err)
	}
	wakes := func() uint64 {
		t.Helper()
		info, err := ws.Info(ctx, jetstream.WithSubjectFilter(h.names.Wake("default", dev1)))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects[h.names.Wake("default", dev1)]
	}
	if n := wakes(); n != 1 {
		t.Fatalf("%d wake requests after the create", n)
	}
	h.claim(t, "s1", task.GetId())
	h.report(t, "s1", &tasksv1.TaskReport{Id: task.GetId(), Outcome: tasksv1.TaskOutcome_TASK_OUTCOME_RETRY})
	if _, err := h.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n := wakes(); n != 1 {
		t.Fatalf("%d wake requests before the back-off is over", n)
	}
	h.clock.Advance(2 * time.Minute)
	if _, err := h.svc.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if n := wakes(); n != 2 {
		t.Fatalf("%d wake requests after the back-off, want 2", n)
	}
	if w := h.get(t, task.GetId()).GetWake().GetStatus(); w != tasksv1.WakeStatus_WAKE_STATUS_PENDING {
		t.Fatalf("wake %v, want pending", w)
	}
}

// TestWatchesBounded: a caller cannot hold NATS consumers without bound:
// past -tasks.max-watches a watch is refused with RESOURCE_EXHAUSTED, and
// a watch that ends gives its slot back.
func TestWatchesBounded(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *Config) { c.MaxWatches = 1 }})
	tctx, tcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer tcancel()
	ctx := as(tctx, h.viewer)
	es, err := h.js.Stream(ctx, h.names.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	w, err := h.public.WatchTasks(wctx, &tasksv1.WatchTasksRequest{StartRevision: es.CachedInfo().State.LastSeq + 1})
	if err != nil {
		t.Fatal(err)
	}
	a := h.create(t, dev1, reboot(), nil)
	// The first watch runs (it holds the one slot) once it sends.
	if got, err := w.Recv(); err != nil || got.GetTask().GetId() != a.GetId() {
		t.Fatalf("first watch: %v, %v", got, err)
	}
	second, err := h.public.WatchTasks(ctx, &tasksv1.WatchTasksRequest{})
	if err == nil {
		_, err = second.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second watch: %v, want RESOURCE_EXHAUSTED", err)
	}
	cancel()
	testenv.WaitFor(t, 10*time.Second, func() error {
		third, err := h.public.WatchTasks(ctx, &tasksv1.WatchTasksRequest{StartRevision: 1})
		if err == nil {
			_, err = third.Recv()
		}
		return err
	})
}

// TestEventsAndClaimsCarryNoHistory: the task.<state> events and a claimed
// task carry the task without its history, which publishEvent and claim
// set aside rather than copy the task; the record keeps every entry, and
// each event is the task as of its version.
func TestEventsAndClaimsCarryNoHistory(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	var mu sync.Mutex
	var evs []*eventsv1.Event
	h.onTaskEvents(t, func(m *nats.Msg, ev *eventsv1.Event) {
		if id := m.Header.Get(jetstream.MsgIDHeader); id != ev.GetId() {
			t.Errorf("message id %q, event id %q", id, ev.GetId())
		}
		mu.Lock()
		evs = append(evs, ev)
		mu.Unlock()
	})
	task := h.create(t, dev1, spv("Device.X", "1"), nil)
	c := h.claim(t, "s1", h.queueIDs(t, "default", dev1)...)
	if len(c) != 1 || len(c[0].GetTask().GetHistory()) != 0 || c[0].GetTask().GetState() != tasksv1.TaskState_TASK_STATE_DISPATCHED ||
		c[0].GetTask().GetOperation().GetSetParameterValues() == nil {
		t.Fatalf("claim %v", c)
	}
	if a := h.report(t, "s1", done(task.GetId())); !a[0].GetAccepted() {
		t.Fatalf("ack %v", a)
	}
	if got := h.get(t, task.GetId()).GetHistory(); len(got) != 3 || got[1].GetState() != tasksv1.TaskState_TASK_STATE_DISPATCHED {
		t.Fatalf("history %v", got)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		_ = h.nc.Flush()
		mu.Lock()
		defer mu.Unlock()
		if len(evs) < 3 {
			return fmt.Errorf("%d events", len(evs))
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for i, want := range []tasksv1.TaskState{tasksv1.TaskState_TASK_STATE_QUEUED, tasksv1.TaskState_TASK_STATE_DISPATCHED, tasksv1.TaskState_TASK_STATE_DONE} {
		ev := evs[i]
		et := ev.GetTask()
		if ev.GetKind() != "task."+stateName(want) || et.GetState() != want || len(et.GetHistory()) != 0 ||
			ev.GetId() != fmt.Sprintf("%s.%d", task.GetId(), i+1) || !ev.GetTime().AsTime().Equal(et.GetUpdateTime().AsTime()) ||
			et.GetOperation().GetSetParameterValues() == nil {
			t.Fatalf("event %d: %v", i, ev)
		}
	}
	if stateName(tasksv1.TaskState(99)) != "99" || stateName(tasksv1.TaskState_TASK_STATE_DONE) != "done" {
		t.Fatalf("state names %q %q", stateName(tasksv1.TaskState(99)), stateName(tasksv1.TaskState_TASK_STATE_DONE))
	}
}

// TestQueueDeleteOffThePath: an ended task's queue message is deleted in
// the background; with every background slot taken, the call that ended
// the task deletes it before returning, so a slow stream slows callers
// rather than piling up deletes.
func TestQueueDeleteOffThePath(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	run := func(session string) string {
		task := h.create(t, dev1, spv("Device.X", session), nil)
		ids := h.queueIDs(t, "default", dev1)
		if c := h.claim(t, session, ids...); len(c) != 1 || c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN {
			t.Fatalf("claim %v", c)
		}
		if a := h.report(t, session, done(task.GetId())); !a[0].GetAccepted() {
			t.Fatalf("ack %v", a)
		}
		return task.GetId()
	}
	// In the background: the queue is empty once the deletes under way
	// have been answered (queueIDs waits for them).
	run("s1")
	if q := h.queueIDs(t, "default", dev1); len(q) != 0 {
		t.Fatalf("queue after done: %v", q)
	}
	// Every slot taken: the report deletes before it returns, so the
	// queue is empty without waiting for anything.
	for range maxDeletesInFlight {
		h.svc.deleting <- struct{}{}
	}
	t.Cleanup(func() {
		for range maxDeletesInFlight {
			<-h.svc.deleting
		}
	})
	run("s2")
	s, err := h.js.Stream(t.Context(), h.names.TasksStream())
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.GetMsg(t.Context(), 1, jetstream.WithGetMsgSubject(h.names.TaskQueue("default", dev1))); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("queue message left after a report with every background slot taken: %v %v", m, err)
	}
}
