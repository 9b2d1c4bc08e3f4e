package tasks

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/recordid"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

func TestAuthAndTenants(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := t.Context()
	req := &tasksv1.CreateTaskRequest{DeviceId: dev1, Operation: reboot()}

	_, err := h.public.CreateTask(ctx, req)
	wantError(t, err, codes.Unauthenticated, errorsv1.ErrorReason_CREDENTIALS_MISSING)
	_, err = h.public.CreateTask(as(ctx, "fa_bogus"), req)
	wantError(t, err, codes.Unauthenticated, errorsv1.ErrorReason_CREDENTIALS_INVALID)
	_, err = h.public.CreateTask(as(ctx, h.viewer), req)
	wantError(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ROLE_FORBIDDEN)
	_, err = h.public.CreateTask(as(ctx, h.other), &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: dev1, Operation: reboot()})
	wantError(t, err, codes.PermissionDenied, errorsv1.ErrorReason_TENANT_FORBIDDEN)

	task := h.create(t, dev1, reboot(), nil)
	if task.GetTenant() != "default" || task.GetRequester() == "" || !strings.HasPrefix(task.GetRequester(), "token:") {
		t.Fatalf("task %v", task)
	}
	// The other tenant's operator neither sees nor cancels it.
	_, err = h.public.GetTask(as(ctx, h.other), &tasksv1.GetTaskRequest{Id: task.GetId()})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_TASK_NOT_FOUND)
	_, err = h.public.GetTask(as(ctx, h.other), &tasksv1.GetTaskRequest{Tenant: "default", Id: task.GetId()})
	wantError(t, err, codes.PermissionDenied, errorsv1.ErrorReason_TENANT_FORBIDDEN)
	_, err = h.public.CancelTask(as(ctx, h.other), &tasksv1.CancelTaskRequest{Id: task.GetId()})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_TASK_NOT_FOUND)
	list, err := h.public.ListTasks(as(ctx, h.other), &tasksv1.ListTasksRequest{})
	if err != nil || len(list.GetTasks()) != 0 {
		t.Fatalf("other tenant lists %v, %v", list, err)
	}
	// Nor watches it: its watch of the whole stream shows its own task
	// only.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w, err := h.events.WatchEvents(as(wctx, h.other), &eventsv1.WatchEventsRequest{StartRevision: 1})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := h.public.WatchTasks(as(wctx, h.other), &tasksv1.WatchTasksRequest{Tenant: "default"})
	if err == nil {
		_, err = ws.Recv()
	}
	wantError(t, err, codes.PermissionDenied, errorsv1.ErrorReason_TENANT_FORBIDDEN)
	resp, err := h.public.CreateTask(as(ctx, h.other), &tasksv1.CreateTaskRequest{DeviceId: dev1, Operation: reboot()})
	if err != nil || resp.GetTask().GetTenant() != "other" {
		t.Fatalf("other tenant's task: %v, %v", resp, err)
	}
	ev, err := w.Recv()
	if err != nil || ev.GetEvent().GetTask().GetId() != resp.GetTask().GetId() {
		t.Fatalf("other tenant's watch got %v, %v; want its own task first", ev, err)
	}
	// A viewer cannot cancel.
	_, err = h.public.CancelTask(as(ctx, h.viewer), &tasksv1.CancelTaskRequest{Id: task.GetId()})
	wantError(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ROLE_FORBIDDEN)
}

func TestCreateQueuesSealsAndWakes(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := t.Context()
	events := h.taskEvents(t)
	hints, err := h.nc.SubscribeSync(h.names.TaskHints())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hints.Unsubscribe() }()
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	op := &tasksv1.Operation{Kind: &tasksv1.Operation_Download{Download: &tasksv1.Download{
		FileType: "1 Firmware Upgrade Image", Url: "https://files.example/fw.bin", Username: "u", Password: "s3cret-pw"}}}
	task := h.create(t, dev1, op, &tasksv1.TaskOptions{ConnectionRequest: true, Priority: 5})
	if len(task.GetId()) != 26 || !recordid.Valid(task.GetId()) || task.GetCommandKey() != task.GetId() || task.GetState() != tasksv1.TaskState_TASK_STATE_QUEUED {
		t.Fatalf("created %v", task)
	}
	if d := task.GetOperation().GetDownload(); d.GetPassword() != "" || !d.GetPasswordSet() || d.GetUsername() != "u" {
		t.Fatalf("download as returned: %v", d)
	}
	if w := task.GetWake().GetStatus(); w != tasksv1.WakeStatus_WAKE_STATUS_PENDING {
		t.Fatalf("wake %v", w)
	}
	r, err := h.st.Get(ctx, "default", task.GetId())
	if err != nil || r.QueueSeq == 0 || len(r.Secret) == 0 || strings.Contains(string(r.Body), "s3cret-pw") || strings.Contains(string(r.Secret), "s3cret-pw") {
		t.Fatalf("record %+v, %v", r, err)
	}
	if got := h.queueIDs(t, "default", dev1); !slices.Equal(got, []string{task.GetId()}) {
		t.Fatalf("queue %v", got)
	}
	// The hint to the workers' task indexes (docs/sessions.md, "Tasks").
	if m, err := hints.NextMsg(5 * time.Second); err != nil || m.Subject != h.names.TaskHint("default", dev1) || string(m.Data) != strconv.FormatUint(r.QueueSeq, 10) {
		t.Fatalf("hint %v, %v", m, err)
	}
	// The wake-up request.
	ws, err := h.js.Stream(ctx, h.names.WakeStream())
	if err != nil {
		t.Fatal(err)
	}
	m, err := ws.GetLastMsgForSubject(ctx, h.names.Wake("default", dev1))
	if err != nil {
		t.Fatal(err)
	}
	wr := &tasksv1.WakeRequest{}
	if err := proto.Unmarshal(m.Data, wr); err != nil || !slices.Equal(wr.GetTaskIds(), []string{task.GetId()}) {
		t.Fatalf("wake request %v, %v", wr, err)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if got := events(task.GetId()); !slices.Equal(got, []string{"task.queued"}) {
			return fmt.Errorf("events %v", got)
		}
		return nil
	})
	// The worker gets the password in clear.
	c := h.claim(t, "s1", task.GetId())
	if len(c) != 1 || c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN || c[0].GetTask().GetOperation().GetDownload().GetPassword() != "s3cret-pw" {
		t.Fatalf("claim %v", c)
	}
	if h.get(t, task.GetId()).GetOperation().GetDownload().GetPassword() != "" {
		t.Fatal("GetTask shows the password")
	}
}

func TestCreateValidation(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := as(t.Context(), h.operator)
	past := timestamppb.New(h.clock.Now().Add(-time.Minute))
	long := strings.Repeat("a", 300)
	bad := map[string]*tasksv1.CreateTaskRequest{
		"no operation":   {DeviceId: dev1, Operation: &tasksv1.Operation{}},
		"no device":      {Operation: reboot()},
		"bad device":     {DeviceId: "not a key", Operation: reboot()},
		"wait too long":  {DeviceId: dev1, Operation: reboot(), WaitMs: 300_001},
		"priority":       {DeviceId: dev1, Operation: reboot(), Options: &tasksv1.TaskOptions{Priority: 101}},
		"expire in past": {DeviceId: dev1, Operation: reboot(), Options: &tasksv1.TaskOptions{ExpireTime: past}},
		"key too long":   {DeviceId: dev1, Operation: reboot(), Options: &tasksv1.TaskOptions{IdempotencyKey: long}},
		"key not ascii":  {DeviceId: dev1, Operation: reboot(), Options: &tasksv1.TaskOptions{IdempotencyKey: "ключ"}},
		"long name":      {DeviceId: dev1, Operation: spv("Device."+long, "x")},
		"object path":    {DeviceId: dev1, Operation: spv("Device.WiFi.", "x")},
		"empty spv":      {DeviceId: dev1, Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_SetParameterValues{SetParameterValues: &tasksv1.SetParameterValues{}}}},
		"too many names": {DeviceId: dev1, Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterValues{GetParameterValues: &tasksv1.GetParameterValues{Names: make([]string, 1001)}}}},
		"vendor name":    {DeviceId: dev1, Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_VendorMethod{VendorMethod: &tasksv1.VendorMethod{Method: "1bad"}}}},
		"vendor xml":     {DeviceId: dev1, Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_VendorMethod{VendorMethod: &tasksv1.VendorMethod{Method: "X_Get", ArgumentsXml: "<a><b></a>"}}}},
		"vendor doctype": {DeviceId: dev1, Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_VendorMethod{VendorMethod: &tasksv1.VendorMethod{Method: "X_Get", ArgumentsXml: "<!DOCTYPE x>"}}}},
		// A name the session worker would not send (docs/protocol.md §5.1).
		"vendor not X_<VENDOR>_<Name>": {DeviceId: dev1, Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_VendorMethod{VendorMethod: &tasksv1.VendorMethod{Method: "GetLog"}}}},
		"vendor response name":         {DeviceId: dev1, Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_VendorMethod{VendorMethod: &tasksv1.VendorMethod{Method: "X_ACME_GetResponse"}}}},
		"command key":                  {DeviceId: dev1, Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_Reboot{Reboot: &tasksv1.Reboot{CommandKey: strings.Repeat("k", 33)}}}},
		"download url":                 {DeviceId: dev1, Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_Download{Download: &tasksv1.Download{FileType: "1 Firmware Upgrade Image", Url: "nope"}}}},
		"await on spv":                 {DeviceId: dev1, Operation: spv("Device.X", "1"), Options: &tasksv1.TaskOptions{AwaitTimeoutSeconds: 10}},
	}
	for name, req := range bad {
		_, err := h.public.CreateTask(ctx, req)
		wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
		_ = name
	}
	_, err := h.public.CreateTask(ctx, &tasksv1.CreateTaskRequest{DeviceId: "00AABB-HGW-NOPE", Operation: reboot()})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_DEVICE_NOT_FOUND)
	ok := &tasksv1.Operation{Kind: &tasksv1.Operation_VendorMethod{VendorMethod: &tasksv1.VendorMethod{Method: "X_0090D0_GetLog", ArgumentsXml: "<Level>3</Level><Tail/>"}}}
	if _, err := h.public.CreateTask(ctx, &tasksv1.CreateTaskRequest{DeviceId: dev1, Operation: ok}); err != nil {
		t.Fatalf("well-formed vendor method refused: %v", err)
	}
	if got := h.queueIDs(t, "default", dev1); len(got) != 1 {
		t.Fatalf("refused requests left %d queue messages", len(got)-1)
	}
}

func TestIdempotency(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := as(t.Context(), h.operator)
	opts := &tasksv1.TaskOptions{IdempotencyKey: "order-42"}
	first, err := h.public.CreateTask(ctx, &tasksv1.CreateTaskRequest{DeviceId: dev1, Operation: spv("Device.X", "1"), Options: opts})
	if err != nil || first.GetExisting() {
		t.Fatalf("first: %v, %v", first, err)
	}
	again, err := h.public.CreateTask(ctx, &tasksv1.CreateTaskRequest{DeviceId: dev1, Operation: spv("Device.X", "1"), Options: opts})
	if err != nil || !again.GetExisting() || again.GetTask().GetId() != first.GetTask().GetId() {
		t.Fatalf("repeat: %v, %v", again, err)
	}
	_, err = h.public.CreateTask(ctx, &tasksv1.CreateTaskRequest{DeviceId: dev1, Operation: spv("Device.X", "2"), Options: opts})
	info := wantError(t, err, codes.AlreadyExists, errorsv1.ErrorReason_IDEMPOTENCY_CONFLICT)
	if info.GetMetadata()["task_id"] != first.GetTask().GetId() || info.GetMetadata()["idempotency_key"] != "order-42" {
		t.Fatalf("metadata %v", info.GetMetadata())
	}
	_, err = h.public.CreateTask(ctx, &tasksv1.CreateTaskRequest{DeviceId: dev2, Operation: spv("Device.X", "1"), Options: opts})
	wantError(t, err, codes.AlreadyExists, errorsv1.ErrorReason_IDEMPOTENCY_CONFLICT)
	if got := h.queueIDs(t, "default", dev1); len(got) != 1 {
		t.Fatalf("queue %v", got)
	}
	// Another tenant's key space is its own.
	if _, err := h.public.CreateTask(as(t.Context(), h.other), &tasksv1.CreateTaskRequest{DeviceId: dev1, Operation: spv("Device.X", "2"), Options: opts}); err != nil {
		t.Fatalf("other tenant, same key: %v", err)
	}
	// A batch appends the device to the key.
	batch, err := h.public.CreateTasks(ctx, &tasksv1.CreateTasksRequest{DeviceIds: []string{dev1, dev2, "00AABB-HGW-NOPE", "bad key"}, Operation: reboot(), Options: &tasksv1.TaskOptions{IdempotencyKey: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	res := batch.GetResults()
	if res[0].GetTask() == nil || res[1].GetTask() == nil || res[2].GetErrorCode() != int32(codes.NotFound) || res[3].GetErrorCode() != int32(codes.InvalidArgument) {
		t.Fatalf("batch %v", res)
	}
	if k := res[1].GetTask().GetOptions().GetIdempotencyKey(); k != "b:"+dev2 {
		t.Fatalf("batch key %q", k)
	}
	_, err = h.public.CreateTasks(ctx, &tasksv1.CreateTasksRequest{DeviceIds: []string{dev1, dev1}, Operation: reboot()})
	wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
}

func TestQueueFull(t *testing.T) {
	h := newHarness(t, harnessOpts{maxPerDevice: 2})
	ctx := as(t.Context(), h.operator)
	a := h.create(t, dev1, reboot(), nil)
	h.create(t, dev1, reboot(), nil)
	req := &tasksv1.CreateTaskRequest{DeviceId: dev1, Operation: reboot(), Options: &tasksv1.TaskOptions{IdempotencyKey: "k"}}
	_, err := h.public.CreateTask(ctx, req)
	wantError(t, err, codes.ResourceExhausted, errorsv1.ErrorReason_QUEUE_FULL)
	// Nothing is left half-made: the refused task has ended (it will
	// never run) and no queue message of it exists.
	list, err := h.public.ListTasks(as(t.Context(), h.viewer), &tasksv1.ListTasksRequest{States: []tasksv1.TaskState{tasksv1.TaskState_TASK_STATE_FAULT}})
	if err != nil || len(list.GetTasks()) != 1 || list.GetTasks()[0].GetFault().GetSource() != tasksv1.FaultSource_FAULT_SOURCE_ACS {
		t.Fatalf("refused task: %v, %v", list, err)
	}
	if got := h.queueIDs(t, "default", dev1); len(got) != 2 {
		t.Fatalf("queue %v", got)
	}
	if _, err := h.public.CancelTask(ctx, &tasksv1.CancelTaskRequest{Id: a.GetId()}); err != nil {
		t.Fatal(err)
	}
	// The same request again, with room in the queue, queues that task.
	again, err := h.public.CreateTask(ctx, req)
	if err != nil || !again.GetExisting() || again.GetTask().GetState() != tasksv1.TaskState_TASK_STATE_QUEUED || again.GetTask().GetFault() != nil {
		t.Fatalf("retry: %v, %v", again, err)
	}
	if got := h.queueIDs(t, "default", dev1); len(got) != 2 || got[1] != again.GetTask().GetId() {
		t.Fatalf("queue %v", got)
	}
}

func TestCancel(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := as(t.Context(), h.operator)
	events := h.taskEvents(t)
	task := h.create(t, dev1, reboot(), nil)
	resp, err := h.public.CancelTask(ctx, &tasksv1.CancelTaskRequest{Id: task.GetId()})
	if err != nil || resp.GetTask().GetState() != tasksv1.TaskState_TASK_STATE_CANCELLED {
		t.Fatalf("cancel: %v, %v", resp, err)
	}
	if _, err := h.public.CancelTask(ctx, &tasksv1.CancelTaskRequest{Id: task.GetId()}); err != nil {
		t.Fatalf("cancel again: %v", err)
	}
	if got := h.queueIDs(t, "default", dev1); len(got) != 0 {
		t.Fatalf("queue %v", got)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if got := events(task.GetId()); !slices.Equal(got, []string{"task.queued", "task.cancelled"}) {
			return fmt.Errorf("events %v", got)
		}
		return nil
	})
	d := h.create(t, dev1, reboot(), nil)
	h.claim(t, "s1", d.GetId())
	_, err = h.public.CancelTask(ctx, &tasksv1.CancelTaskRequest{Id: d.GetId()})
	info := wantError(t, err, codes.FailedPrecondition, errorsv1.ErrorReason_TASK_NOT_CANCELLABLE)
	if info.GetMetadata()["task_id"] != d.GetId() || info.GetMetadata()["state"] != "TASK_STATE_DISPATCHED" {
		t.Fatalf("metadata %v", info.GetMetadata())
	}
	_, err = h.public.CancelTask(ctx, &tasksv1.CancelTaskRequest{Id: "01ARZ3NDEKTSV4RRFFQ69G5FAV"})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_TASK_NOT_FOUND)
}

// TestCancelClaimRace: a cancel and a claim of the same queued task, at
// once: exactly one wins.
func TestCancelClaimRace(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := as(t.Context(), h.operator)
	for i := range 20 {
		task := h.create(t, dev1, reboot(), nil)
		var wg sync.WaitGroup
		var cancelErr error
		var claimed []*tasksv1.ClaimedTask
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, cancelErr = h.public.CancelTask(ctx, &tasksv1.CancelTaskRequest{Id: task.GetId()})
		}()
		go func() {
			defer wg.Done()
			resp, err := h.internal.ClaimTasks(t.Context(), &tasksv1.ClaimTasksRequest{Tenant: "default", DeviceId: dev1, SessionId: fmt.Sprintf("s%d", i), TaskIds: []string{task.GetId()}})
			if err != nil {
				t.Error(err)
				return
			}
			claimed = resp.GetTasks()
		}()
		wg.Wait()
		if len(claimed) != 1 {
			t.Fatalf("claimed %v", claimed)
		}
		ran := claimed[0].GetAction() == tasksv1.ClaimAction_CLAIM_ACTION_RUN
		switch {
		case cancelErr == nil && !ran:
			if claimed[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_ENDED {
				t.Fatalf("cancel won but claim said %v", claimed[0].GetAction())
			}
		case cancelErr != nil && ran:
			wantError(t, cancelErr, codes.FailedPrecondition, errorsv1.ErrorReason_TASK_NOT_CANCELLABLE)
		default:
			t.Fatalf("cancel err %v and claim action %v: not exactly one winner", cancelErr, claimed[0].GetAction())
		}
		want := tasksv1.TaskState_TASK_STATE_CANCELLED
		if ran {
			want = tasksv1.TaskState_TASK_STATE_DISPATCHED
		}
		if st := h.get(t, task.GetId()).GetState(); st != want {
			t.Fatalf("state %v, want %v", st, want)
		}
	}
}

// TestQueueFullWaitsForReportDeletes: a queue full only of messages whose
// tasks a report has ended, their deletes still under way in the
// background, is not full to a create: it waits for the deletes.
func TestQueueFullWaitsForReportDeletes(t *testing.T) {
	h := newHarness(t, harnessOpts{maxPerDevice: 1})
	ctx := as(t.Context(), h.operator)
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // before the harness's, which waits for the deletes
	h.svc.testBeforeBackgroundDelete = func() { <-release }
	a := h.create(t, dev1, reboot(), nil)
	if c := h.claim(t, "s1", a.GetId()); len(c) != 1 || c[0].GetAction() != tasksv1.ClaimAction_CLAIM_ACTION_RUN {
		t.Fatalf("claim %v", c)
	}
	if acks := h.report(t, "s1", done(a.GetId())); !acks[0].GetAccepted() {
		t.Fatalf("ack %v", acks)
	}
	type result struct {
		resp *tasksv1.CreateTaskResponse
		err  error
	}
	created := make(chan result, 1)
	go func() {
		resp, err := h.public.CreateTask(ctx, &tasksv1.CreateTaskRequest{DeviceId: dev1, Operation: reboot()})
		created <- result{resp, err}
	}()
	// The create must find the queue full (the delete is held) and wait.
	subject := h.names.TaskQueue("default", dev1)
	for h.svc.pending.waiting(subject) == 0 {
		select {
		case r := <-created:
			t.Fatalf("create returned while the ended task's delete was held: %v, %v", r.resp, r.err)
		case <-time.After(time.Millisecond):
		}
	}
	releaseOnce()
	r := <-created
	if r.err != nil || r.resp.GetTask().GetState() != tasksv1.TaskState_TASK_STATE_QUEUED {
		t.Fatalf("create after the delete: %v, %v", r.resp, r.err)
	}
	if got := h.queueIDs(t, "default", dev1); len(got) != 1 || got[0] != r.resp.GetTask().GetId() {
		t.Fatalf("queue %v", got)
	}
}
