package tasks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/deviceid"
	"github.com/fleetacs/fleetacs/pkg/recordid"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/tasks/store"
)

// Limits of a create request (docs/tasks.md, "Validation").
const (
	maxWaitMs          = 300_000
	maxIdempotencyKey  = 128
	maxBatchDevices    = 1000
	maxExpiry          = 366 * 24 * time.Hour
	maxAttemptsLimit   = 100
	maxAwaitSeconds    = 7 * 24 * 3600
	batchParallelism   = 8
	queueFullFaultText = "the device's task queue was full"
)

// tenant resolves the tenant a request names, or the caller's only one.
// The authentication layer has checked that the caller covers a named one.
func (s *Service) tenant(ctx context.Context, named string) (string, error) {
	t := named
	if t == "" {
		ts := s.deps.CallerTenants(ctx)
		if len(ts) != 1 {
			return "", apiError(codes.InvalidArgument, errorsv1.ErrorReason_TENANT_REQUIRED,
				"the request names no tenant and the credentials cover several", nil)
		}
		t = ts[0]
	}
	if !apiauth.ValidTenant(t) {
		return "", invalidField("tenant", "1 to 64 characters from [A-Za-z0-9_.-]")
	}
	return t, nil
}

func checkDeviceID(field, id string) error {
	if id == "" || len(id) > 256 {
		return badField(field, "a device key of 1 to 256 characters")
	}
	if _, _, _, err := deviceid.Parse(id); err != nil {
		return badField(field, "not a device key (OUI-ProductClass-SerialNumber)")
	}
	return nil
}

// checkOptions validates the options of a new task.
func checkOptions(o *tasksv1.TaskOptions, now time.Time) error {
	const f = "options."
	switch {
	case o.GetPriority() < -100 || o.GetPriority() > 100:
		return badField(f+"priority", "-100 to 100")
	case len(o.GetIdempotencyKey()) > maxIdempotencyKey || !printable(o.GetIdempotencyKey()):
		return badField(f+"idempotency_key", "at most 128 printable ASCII characters")
	case o.GetMaxAttempts() > maxAttemptsLimit:
		return badField(f+"max_attempts", fmt.Sprintf("at most %d", maxAttemptsLimit))
	case o.GetAwaitTimeoutSeconds() > maxAwaitSeconds:
		return badField(f+"await_timeout_seconds", fmt.Sprintf("at most %d (7 days)", maxAwaitSeconds))
	}
	if e := o.GetExpireTime(); e != nil {
		if err := e.CheckValid(); err != nil {
			return badField(f+"expire_time", "not a valid timestamp")
		}
		if at := e.AsTime(); !at.After(now) || at.Sub(now) > maxExpiry {
			return badField(f+"expire_time", "must be in the future, at most a year ahead")
		}
	}
	return nil
}

// normalOperation is op as a request's comparison and the record see it:
// output-only fields cleared.
func normalOperation(op *tasksv1.Operation) *tasksv1.Operation {
	c := proto.Clone(op).(*tasksv1.Operation)
	switch k := c.GetKind().(type) {
	case *tasksv1.Operation_Download:
		if k.Download != nil {
			k.Download.PasswordSet = false
		}
	case *tasksv1.Operation_Upload:
		if k.Upload != nil {
			k.Upload.PasswordSet = false
		}
	case *tasksv1.Operation_ScheduleDownload:
		if k.ScheduleDownload != nil {
			k.ScheduleDownload.PasswordSet = false
		}
	}
	return c
}

// newTask is one validated task to create.
type newTask struct {
	tenant, device string
	op             *tasksv1.Operation // normalOperation, passwords in clear
	opts           *tasksv1.TaskOptions
	requester      string
}

// create stores and queues a task, or returns the one its idempotency key
// created (existing true).
func (s *Service) create(ctx context.Context, in newTask) (*tasksv1.Task, bool, error) {
	found, err := s.deps.Devices.Exists(ctx, in.tenant, in.device)
	if err != nil {
		return nil, false, fmt.Errorf("look up device %s: %w: %w", in.device, store.ErrUnavailable, err)
	}
	if !found {
		return nil, false, errDeviceNotFound
	}
	now := s.now()
	id := recordid.New(now)
	op := proto.Clone(in.op).(*tasksv1.Operation)
	setPasswordFlags(op)
	secret, err := sealSecrets(s.deps.Secrets, in.tenant, id, op)
	if err != nil {
		return nil, false, err
	}
	t := &tasksv1.Task{
		Id: id, Tenant: in.tenant, DeviceId: in.device, Operation: op, Options: in.opts,
		Requester: in.requester, CreateTime: timestamppb.New(now), UpdateTime: timestamppb.New(now),
		CommandKey: opKey(op), Version: 1,
	}
	if t.CommandKey == "" {
		t.CommandKey = id
	}
	detail := "created"
	if in.requester != "" {
		detail = "created by " + in.requester
	}
	enter(t, tasksv1.TaskState_TASK_STATE_QUEUED, now, detail)
	if in.opts.GetConnectionRequest() {
		t.Wake = &tasksv1.WakeOutcome{Status: tasksv1.WakeStatus_WAKE_STATUS_PENDING}
	}
	rec := recordOf(t, now)
	rec.Secret = secret
	stored, existing, err := s.store.Create(ctx, rec)
	if err != nil {
		return nil, false, fmt.Errorf("create task: %w", err)
	}
	if existing {
		return s.existing(ctx, in, stored)
	}
	s.publishEvent(ctx, t, "")
	t, err = s.enqueue(ctx, stored)
	return t, false, err
}

// existing answers a create whose idempotency key the tenant already used:
// the same request gets the task, another gets IDEMPOTENCY_CONFLICT. A task
// the queue refused as full is queued again by the same request.
func (s *Service) existing(ctx context.Context, in newTask, r store.Record) (*tasksv1.Task, bool, error) {
	t, err := decodeTask(r)
	if err != nil {
		return nil, false, err
	}
	op := proto.Clone(t.GetOperation()).(*tasksv1.Operation)
	if err := openSecrets(s.deps.Secrets, r.Tenant, r.ID, r.Secret, op); err != nil {
		return nil, false, err
	}
	if r.DeviceID != in.device || !proto.Equal(normalOperation(op), in.op) || !proto.Equal(t.GetOptions(), in.opts) {
		return nil, false, &conflictError{taskID: r.ID}
	}
	if t.GetState() == tasksv1.TaskState_TASK_STATE_FAULT && t.GetFault().GetFaultString() == queueFullFaultText && r.QueueSeq == 0 {
		t, r, err = s.change(ctx, r, deleteNow, "", func(now time.Time, t *tasksv1.Task, r *store.Record) (bool, error) {
			if t.GetState() != tasksv1.TaskState_TASK_STATE_FAULT || t.GetFault().GetFaultString() != queueFullFaultText || r.QueueSeq != 0 {
				return false, nil
			}
			t.Fault = nil
			enter(t, tasksv1.TaskState_TASK_STATE_QUEUED, now, "queued again by a repeated request")
			r.DueTime = now.Add(publishGrace)
			return true, nil
		})
		if err != nil {
			return nil, false, err
		}
		if t.GetState() == tasksv1.TaskState_TASK_STATE_QUEUED && r.QueueSeq == 0 {
			t, err = s.enqueue(ctx, r)
			return t, true, err
		}
	}
	return t, true, nil
}

type conflictError struct{ taskID string }

func (e *conflictError) Error() string { return errIdempotency.Error() + " (task " + e.taskID + ")" }
func (e *conflictError) Unwrap() error { return errIdempotency }

// enqueue publishes a queued record's message to its device's queue and
// stores its sequence; then the wake-up request when the task asks for one.
// A queue that is full ends the task (nothing is left queued or orphaned)
// and returns errQueueFull; other failures leave the record to the
// sweeper, which publishes it later.
func (s *Service) enqueue(ctx context.Context, r store.Record) (*tasksv1.Task, error) {
	t, err := decodeTask(r)
	if err != nil {
		return nil, err
	}
	qt := &tasksv1.QueuedTask{Id: t.GetId(), Priority: t.GetOptions().GetPriority(), CreateTime: t.GetCreateTime()}
	subject := s.names.TaskQueue(r.Tenant, r.DeviceID)
	ack, perr := s.publishAck(ctx, subject, r.ID, qt)
	if errors.Is(perr, errQueueFull) && s.pending.wait(ctx, subject) {
		// The queue is full of tasks that have ended but whose messages'
		// deletes were still under way (deleteQueued): there is room now.
		ack, perr = s.publishAck(ctx, subject, r.ID, qt)
	}
	if errors.Is(perr, errQueueFull) {
		t, _, err = s.change(ctx, r, deleteNow, "", func(now time.Time, t *tasksv1.Task, r *store.Record) (bool, error) {
			if t.GetState() != tasksv1.TaskState_TASK_STATE_QUEUED || r.QueueSeq != 0 {
				return false, nil
			}
			t.Fault = &tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_ACS, FaultString: queueFullFaultText}
			enter(t, tasksv1.TaskState_TASK_STATE_FAULT, now, queueFullFaultText)
			return true, nil
		})
		if err != nil {
			return nil, err
		}
		return t, errQueueFull
	}
	if perr != nil {
		s.logger.WarnContext(ctx, "task stored but not yet queued; the sweeper will queue it", "task_id", r.ID, "tenant", r.Tenant, "error", perr)
		return t, nil
	}
	seq := ack.Sequence
	s.hintQueued(ctx, r.Tenant, r.DeviceID, seq)
	t, r, err = s.change(ctx, r, deleteNow, "", func(now time.Time, t *tasksv1.Task, r *store.Record) (bool, error) {
		if r.QueueSeq != 0 {
			return false, nil
		}
		r.QueueSeq = seq
		if t.GetState() == tasksv1.TaskState_TASK_STATE_QUEUED {
			r.DueTime = expiryOf(t)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if r.QueueSeq != seq || ended(t.GetState()) {
		// Another replica's publish won, or the task ended meanwhile:
		// the message published here must not stay behind.
		s.deleteQueued(ctx, r.Tenant, r.DeviceID, seq, deleteNow)
		return t, nil
	}
	if t.GetOptions().GetConnectionRequest() && t.GetState() == tasksv1.TaskState_TASK_STATE_QUEUED {
		s.wake(ctx, t, r)
	}
	return t, nil
}

// hintQueued tells the session workers' task indexes that the device's
// queue holds a message at stream sequence seq (pkg/natsbus TaskHint; the
// body is the sequence in decimal). It is sent only after the
// stream acknowledged the message, so that a worker that hears it finds the
// message; a hint lost on the way delays the task to the device's first
// session after the workers' next resynchronisation, and a session opened by
// a connection request reads the queue whatever its index says
// (docs/sessions.md, "Tasks").
func (s *Service) hintQueued(ctx context.Context, tenant, device string, seq uint64) {
	if err := s.js.Conn().Publish(s.names.TaskHint(tenant, device), strconv.AppendUint(nil, seq, 10)); err != nil {
		s.logger.WarnContext(ctx, "task queue hint not published", "tenant", tenant, "device_id", device, "error", err)
	}
}

// wake asks the notifier for a connection request to t's device. A failure
// is recorded as the task's wake outcome.
func (s *Service) wake(ctx context.Context, t *tasksv1.Task, r store.Record) {
	req := &tasksv1.WakeRequest{Tenant: t.GetTenant(), DeviceId: t.GetDeviceId(), TaskIds: []string{t.GetId()}, RequestTime: timestamppb.New(s.now())}
	err := s.publish(ctx, s.names.Wake(t.GetTenant(), t.GetDeviceId()), fmt.Sprintf("wake.%s.%d", t.GetId(), t.GetAttempts()), req)
	if err == nil {
		return
	}
	s.logger.WarnContext(ctx, "wake-up request not published", "task_id", t.GetId(), "tenant", t.GetTenant(), "error", err)
	_, _, _ = s.change(ctx, r, deleteNow, "", func(now time.Time, t *tasksv1.Task, _ *store.Record) (bool, error) {
		if t.GetWake().GetStatus() != tasksv1.WakeStatus_WAKE_STATUS_PENDING {
			return false, nil
		}
		t.Wake = &tasksv1.WakeOutcome{Status: tasksv1.WakeStatus_WAKE_STATUS_FAILED, Detail: "the request could not be passed to the notifier", Time: timestamppb.New(now)}
		return true, nil
	})
}

// publicTask is t as the public API shows it: no credentials (they are
// never in a record's body), history only when asked for.
func publicTask(t *tasksv1.Task, history bool) *tasksv1.Task {
	if t == nil {
		return nil
	}
	if !history && len(t.History) > 0 {
		t = withoutHistory(t)
	}
	return t
}

// withoutHistory returns a copy of t without its history, which it does
// not copy: a task's history is most of its size. It sets t.History aside
// while it copies, so t must be the caller's own (every caller decodes or
// builds the task it passes), never one other goroutines read.
func withoutHistory(t *tasksv1.Task) *tasksv1.Task {
	h := t.History
	t.History = nil
	c := proto.Clone(t).(*tasksv1.Task)
	t.History = h
	return c
}

// CreateTask implements TasksService.
func (p *publicServer) CreateTask(ctx context.Context, req *tasksv1.CreateTaskRequest) (*tasksv1.CreateTaskResponse, error) {
	s := p.s
	tenant, err := s.tenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	if req.GetWaitMs() > maxWaitMs {
		return nil, invalidField("wait_ms", "at most 300000")
	}
	in, err := s.newTaskInput(ctx, tenant, req.GetOperation(), req.GetOptions())
	if err == nil {
		err = checkDeviceID("device_id", req.GetDeviceId())
	}
	if err != nil {
		return nil, s.statusOf(ctx, "create task", nil, err)
	}
	in.device = req.GetDeviceId()
	if err := s.checkReady(); err != nil {
		return nil, err
	}
	var w *waiter
	if req.GetWaitMs() > 0 {
		// Subscribed before the task exists, so that no event of it is
		// missed.
		if w, err = s.subscribeDevice(tenant, in.device); err != nil {
			return nil, s.statusOf(ctx, "create task", nil, err)
		}
		defer w.close()
	}
	t, existing, err := s.create(ctx, in)
	if err != nil {
		md := map[string]string{"tenant": tenant, "device_id": in.device, "idempotency_key": in.opts.GetIdempotencyKey()}
		var ce *conflictError
		if errors.As(err, &ce) {
			md["task_id"] = ce.taskID
		}
		return nil, s.statusOf(ctx, "create task", md, err)
	}
	if w != nil && !ended(t.GetState()) {
		t = s.wait(ctx, w, t, time.Duration(req.GetWaitMs())*time.Millisecond)
	}
	return &tasksv1.CreateTaskResponse{Task: publicTask(t, true), Existing: existing}, nil
}

// newTaskInput validates the parts of a create request every device
// shares.
func (s *Service) newTaskInput(ctx context.Context, tenant string, op *tasksv1.Operation, opts *tasksv1.TaskOptions) (newTask, error) {
	if opts == nil {
		opts = &tasksv1.TaskOptions{}
	}
	if err := validateOperation(op); err != nil {
		return newTask{}, err
	}
	if err := checkOptions(opts, s.now()); err != nil {
		return newTask{}, err
	}
	if opts.GetAwaitTimeoutSeconds() != 0 && !awaits(kindOf(op)) {
		return newTask{}, badField("options.await_timeout_seconds", "only for operations that end in a later session")
	}
	return newTask{tenant: tenant, op: normalOperation(op), opts: proto.Clone(opts).(*tasksv1.TaskOptions),
		requester: s.deps.Requester(ctx)}, nil
}

// CreateTasks implements TasksService.
func (p *publicServer) CreateTasks(ctx context.Context, req *tasksv1.CreateTasksRequest) (*tasksv1.CreateTasksResponse, error) {
	s := p.s
	tenant, err := s.tenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	ids := req.GetDeviceIds()
	if len(ids) == 0 || len(ids) > maxBatchDevices {
		return nil, invalidField("device_ids", "1 to 1000 device keys")
	}
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			return nil, invalidField("device_ids", "device "+sorted[i]+" is named twice")
		}
	}
	base, err := s.newTaskInput(ctx, tenant, req.GetOperation(), req.GetOptions())
	if err != nil {
		return nil, s.statusOf(ctx, "create tasks", nil, err)
	}
	if err := s.checkReady(); err != nil {
		return nil, err
	}
	out := &tasksv1.CreateTasksResponse{Results: make([]*tasksv1.CreateTasksResult, len(ids))}
	sem := make(chan struct{}, batchParallelism)
	var wg sync.WaitGroup
	for i, id := range ids {
		res := &tasksv1.CreateTasksResult{DeviceId: id}
		out.Results[i] = res
		if err := checkDeviceID(fmt.Sprintf("device_ids[%d]", i), id); err != nil {
			st := status.Convert(s.statusOf(ctx, "create tasks", nil, err))
			res.ErrorCode, res.ErrorMessage = int32(st.Code()), st.Message()
			continue
		}
		in := base
		in.device = id
		in.opts = proto.Clone(base.opts).(*tasksv1.TaskOptions)
		if k := in.opts.GetIdempotencyKey(); k != "" {
			in.opts.IdempotencyKey = k + ":" + id
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			t, _, err := s.create(ctx, in)
			if err != nil {
				md := map[string]string{"tenant": tenant, "device_id": id, "idempotency_key": in.opts.GetIdempotencyKey()}
				st := status.Convert(s.statusOf(ctx, "create tasks", md, err))
				res.ErrorCode, res.ErrorMessage = int32(st.Code()), st.Message()
				return
			}
			res.Task = publicTask(t, false)
		}()
	}
	wg.Wait()
	return out, nil
}
