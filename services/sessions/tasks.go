package sessions

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

// TaskQueue reads a device's task queue (docs/sessions.md, "Tasks").
type TaskQueue interface {
	// Pending returns the ids of the tasks queued for the device, in queue
	// order, at most max. An empty queue costs at most one read; fresh
	// asks for the read even where the queue keeps an index that says
	// nothing is queued (a session a connection request opened: its task
	// was queued a moment ago).
	Pending(ctx context.Context, tenant, deviceKey string, max int, fresh bool) ([]string, error)
}

// Tasks is what sessions need of the tasks service
// (fleetacs.tasks.v1.TasksInternalService).
type Tasks interface {
	ClaimTasks(ctx context.Context, req *tasksv1.ClaimTasksRequest) (*tasksv1.ClaimTasksResponse, error)
	ReportTasks(ctx context.Context, req *tasksv1.ReportTasksRequest) (*tasksv1.ReportTasksResponse, error)
}

// maxQueueRead bounds the ids one session reads from its device's queue:
// ClaimTasks takes up to 1000, but a session runs at most
// -sessions.max-tasks-per-session, and what it does not run is still there
// next time.
const maxQueueRead = 64

// kindTask is the task operations' kind in checkpoints.
const kindTask = "task"

// taskPlanner runs the tasks of the tasks service in sessions
// (docs/sessions.md, "Tasks"): at the start of a session it reads
// the device's queue and claims what it finds; at the end it reports what
// became of each task it claimed.
//
// It keeps nothing between sessions: a task the CPE accepted and that ends
// in a later session (a Reboot, a Download) stays dispatched in the tasks
// service, which hands it back with CLAIM_ACTION_AWAIT; a report that
// fails (the tasks service down) loses nothing either: the task stays
// dispatched to the session, and the tasks service's sweeper hands it to a
// later session with CLAIM_ACTION_RESUME, whose ParameterKey rule keeps an
// applied SetParameterValues from being sent again.
type taskPlanner struct {
	queue   TaskQueue
	tasks   Tasks
	maxRun  int
	await   time.Duration
	timeout time.Duration
	logger  *slog.Logger
	// keys seal the passwords of the operations in checkpoints (nil:
	// none; they are then kept in memory only).
	keys *secretbox.Keyring
	// failures counts calls that failed, by op (queue, claim, report).
	failures metric.Int64Counter
	// reported counts reports, by outcome.
	reported metric.Int64Counter
}

var (
	_ engine.Planner = (*taskPlanner)(nil)
	_ engine.Leaver  = (*taskPlanner)(nil)
)

func newTaskPlanner(cfg Config, q TaskQueue, t Tasks, keys *secretbox.Keyring, logger *slog.Logger, mp metric.MeterProvider) (*taskPlanner, error) {
	m := mp.Meter("github.com/fleetacs/fleetacs/services/sessions")
	failures, err := m.Int64Counter("fleetacs.sessions.task_failures", metric.WithDescription("calls of the task planner that failed, by op (queue, claim, report)"))
	if err != nil {
		return nil, err
	}
	reported, err := m.Int64Counter("fleetacs.sessions.tasks_reported", metric.WithDescription("task outcomes reported to the tasks service, by outcome"))
	if err != nil {
		return nil, err
	}
	return &taskPlanner{queue: q, tasks: t, maxRun: cfg.MaxTasksPerSession, await: cfg.TaskAwaitTimeout, timeout: cfg.CallTimeout,
		keys: keys, logger: logger, failures: failures, reported: reported}, nil
}

// Kind implements engine.Planner.
func (p *taskPlanner) Kind() string { return kindTask }

// Restore implements engine.Planner.
func (p *taskPlanner) Restore(data []byte) (engine.Operation, error) {
	var o taskOp
	if err := json.Unmarshal(data, &o); err != nil {
		return nil, fmt.Errorf("decode task operation: %w", err)
	}
	if o.ID == "" || o.Kind == "" || o.Stage == "" {
		return nil, fmt.Errorf("decode task operation: id %q, kind %q, stage %q", o.ID, o.Kind, o.Stage)
	}
	o.keys = p.keys
	return &o, nil
}

// Plan implements engine.Planner. A queue or tasks service that cannot be
// reached costs the session its tasks, not its start: the tasks stay
// queued (or dispatched, see taskPlanner) for a later session.
func (p *taskPlanner) Plan(ctx context.Context, s engine.Start) ([]engine.Planned, error) {
	ids, err := p.queue.Pending(ctx, s.Tenant, s.DeviceKey, maxQueueRead, connectionRequested(s.Events))
	if err != nil {
		p.fail(ctx, "queue", s, err)
		return nil, nil
	}
	if len(ids) == 0 {
		return nil, nil
	}
	resp, err := p.tasks.ClaimTasks(ctx, &tasksv1.ClaimTasksRequest{
		Tenant: s.Tenant, DeviceId: s.DeviceKey, SessionId: s.SessionID, TaskIds: ids, MaxRun: uint32(max(p.maxRun, 0)),
		ReportsClaimMarks: true,
	})
	if err != nil {
		p.fail(ctx, "claim", s, err)
		return nil, nil
	}
	paramKey := informParameterKey(s.Params)
	var planned []engine.Planned
	for _, ct := range resp.GetTasks() {
		t := ct.GetTask()
		op, err := p.operation(ct, s, paramKey)
		if err != nil {
			p.logger.WarnContext(ctx, "claimed task cannot run", "task_id", t.GetId(), keyDevice, s.DeviceKey, "error", err)
			continue
		}
		if op == nil {
			continue
		}
		op.Mark = ct.GetClaimMark()
		planned = append(planned, engine.Planned{ID: t.GetId(), Priority: int(t.GetOptions().GetPriority()), Created: t.GetCreateTime().AsTime(), Op: op})
	}
	return planned, nil
}

const keyDevice = "device_id"

func (p *taskPlanner) fail(ctx context.Context, op string, s engine.Start, err error) {
	p.failures.Add(ctx, 1, metric.WithAttributes(attribute.String("op", op)))
	p.logger.WarnContext(ctx, "session runs without its tasks", "op", op, keyDevice, s.DeviceKey, "tenant", s.Tenant, "error", err)
}

// operation makes the operation of a claimed task; nil when the session
// has nothing to do with it.
func (p *taskPlanner) operation(ct *tasksv1.ClaimedTask, s engine.Start, paramKey string) (*taskOp, error) {
	t := ct.GetTask()
	switch ct.GetAction() {
	case tasksv1.ClaimAction_CLAIM_ACTION_RUN:
		return p.runnable(t, s.Root)
	case tasksv1.ClaimAction_CLAIM_ACTION_RESUME:
		op, err := p.runnable(t, s.Root)
		if err != nil || op.Stage != stagePending {
			return op, err
		}
		switch op.Kind {
		case kindSPV, kindAddObject, kindDeleteObject:
			// The CPE sets its ParameterKey with the change, atomically
			// (docs/protocol.md): seeing the task's key, the change was
			// applied by the session that died.
			if paramKey != "" && paramKey == op.Key {
				op.confirmedByKey()
			}
		case kindDiagnostic:
			op.resumeDiagnostic(paramKey)
		default:
			if completed(op, s) {
				op.done(nil)
			} else if isTransfer(op.Kind) && hasEvent(s.Events, "M "+transferMethod(op.Kind), op.Key) {
				// The CPE took the request; its TransferComplete comes in this
				// session: wait for it rather than send it again.
				op.Stage = stageWaiting
			}
		}
		return op, nil
	case tasksv1.ClaimAction_CLAIM_ACTION_AWAIT:
		op, err := newTaskOp(t, stageWaiting, p.await, p.keys)
		if err != nil {
			return nil, err
		}
		if op.Kind == kindDiagnostic {
			op.awaitDiagnostic(s)
			return op, nil
		}
		op.Spec, op.spec = nil, nil
		if completed(op, s) {
			op.done(nil)
		}
		return op, nil
	}
	// SKIP, ENDED: nothing to do here.
	return nil, nil
}

// runnable makes the operation of a task to send; root is the device's
// data-model root, which a refresh of no path reads.
func (p *taskPlanner) runnable(t *tasksv1.Task, root string) (*taskOp, error) {
	op, err := newTaskOp(t, stagePending, p.await, p.keys)
	if err != nil {
		return nil, err
	}
	if op.Stage == stageNames && op.Path == "" {
		if root == "" {
			op.fail(&tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_ACS, FaultString: "refresh of the root: the device's data-model root is not known yet"})
			return op, nil
		}
		op.Path = root
	}
	if op.Kind == kindDiagnostic && op.Stage == stagePending {
		op.startDiagnostic(root)
	}
	if op.Stage == stagePending {
		m, err := op.request()
		if err != nil {
			// An operation kind this worker does not know (a newer API).
			op.fail(&tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_ACS,
				FaultString: fmt.Sprintf("this worker cannot send %s operations", op.Kind)})
			return op, nil
		}
		// A request the codec refuses (a value that does not fit its
		// type, an overlong key) would fail the session when it is sent:
		// it fails the task now instead.
		if _, err := cwmp.Encode(&cwmp.Envelope{Version: cwmp.MaxVersion, Body: m}); err != nil {
			op.fail(&tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_ACS, FaultString: "the request is not valid CWMP: " + err.Error()})
		}
	}
	return op, nil
}

// confirmedByKey ends a resumed SetParameterValues, AddObject or
// DeleteObject that the Inform's ParameterKey shows applied.
func (o *taskOp) confirmedByKey() {
	spec := o.operation()
	switch o.Kind {
	case kindSPV:
		o.Learned, o.Confirmed = spvParameters(spec.GetSetParameterValues()), true
		o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_SetParameterValues{SetParameterValues: &tasksv1.SetParameterValuesResult{ConfirmedByParameterKey: true}}})
	case kindAddObject:
		// The instance number is lost with the session that died; the
		// object appears in inventory at the next discovery or refresh.
		o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_AddObject{AddObject: &tasksv1.AddObjectResult{}}})
		o.Detail = "confirmed by the CPE's ParameterKey; instance number unknown"
	case kindDeleteObject:
		o.Removed, o.Confirmed = spec.GetDeleteObject().GetObjectName(), true
		o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_DeleteObject{DeleteObject: &tasksv1.DeleteObjectResult{}}})
	}
	if o.Detail == "" {
		o.Detail = "confirmed by the CPE's ParameterKey"
	}
	o.Spec, o.spec = nil, nil
}

// completed reports whether the session's Inform shows that an accepted
// Reboot, FactoryReset or ScheduleInform has happened.
func completed(o *taskOp, s engine.Start) bool {
	switch o.Kind {
	case kindReboot:
		return hasEvent(s.Events, "M Reboot", o.Key)
	case kindFactoryReset:
		return s.Bootstrap
	case kindScheduleInform:
		return hasEvent(s.Events, "M ScheduleInform", o.Key)
	}
	return false
}

func transferMethod(kind string) string {
	switch kind {
	case kindDownload:
		return "Download"
	case kindUpload:
		return "Upload"
	}
	return "ScheduleDownload"
}

// connectionRequested reports whether the Inform carried
// "6 CONNECTION REQUEST" (events arrive normalised by pkg/cwmp).
func connectionRequested(events []cwmp.Event) bool {
	for _, e := range events {
		if e.Code == "6 CONNECTION REQUEST" {
			return true
		}
	}
	return false
}

// hasEvent reports whether events hold code (an "M" event, matched
// exactly) with CommandKey key.
func hasEvent(events []cwmp.Event, code, key string) bool {
	for _, e := range events {
		if e.Code == code && e.CommandKey == key {
			return true
		}
	}
	return false
}

// informParameterKey returns the ParameterKey the Inform carried, "" when
// none.
func informParameterKey(params []cwmp.ParameterValue) string {
	for _, p := range params {
		if p.Name == "Device.ManagementServer.ParameterKey" || p.Name == "InternetGatewayDevice.ManagementServer.ParameterKey" {
			return p.Value
		}
	}
	return ""
}

// Left implements engine.Leaver: tasks the session's bound left out are
// released at once, so that they are queued again without counting an
// attempt.
func (p *taskPlanner) Left(ctx context.Context, s engine.Start, left []engine.Planned) {
	var reports []*tasksv1.TaskReport
	for _, l := range left {
		if o, ok := l.Op.(*taskOp); ok && (o.Stage == stagePending || o.Stage == stageNames) {
			reports = append(reports, &tasksv1.TaskReport{Id: o.ID, ClaimMark: o.Mark, Outcome: tasksv1.TaskOutcome_TASK_OUTCOME_RELEASE,
				Detail: "the session ran its maximum of operations"})
		}
	}
	p.report(ctx, s.Tenant, s.DeviceKey, s.SessionID, reports)
}

// Settle implements engine.Planner: one report per task that ran. It
// comes after the session's diff was recorded; a task whose results did
// not reach inventory is retried, so that what it read or changed is not
// reported done and missing from inventory.
func (p *taskPlanner) Settle(ctx context.Context, e engine.End, ops []engine.Operation) {
	var reports []*tasksv1.TaskReport
	for _, op := range ops {
		o, ok := op.(*taskOp)
		if !ok {
			continue
		}
		if r := o.report(e); r != nil {
			reports = append(reports, r)
		}
	}
	p.report(ctx, e.Tenant, e.DeviceKey, e.SessionID, reports)
}

// report reports what became of one task, nil when there is nothing to
// say (a task still waiting for its completion).
func (o *taskOp) report(e engine.End) *tasksv1.TaskReport {
	r := &tasksv1.TaskReport{Id: o.ID, ClaimMark: o.Mark, Detail: o.Detail}
	switch o.Stage {
	case stagePending:
		r.Outcome, r.Detail = tasksv1.TaskOutcome_TASK_OUTCOME_RELEASE, "the session ended before the task's turn"
	case stageNames, stageValues, stageRetry:
		r.Outcome = tasksv1.TaskOutcome_TASK_OUTCOME_RETRY
		if r.Detail == "" {
			r.Detail = "the session ended before the task was done"
		}
	case stageDone:
		if o.contributes() && !e.Recorded {
			r.Outcome, r.Detail = tasksv1.TaskOutcome_TASK_OUTCOME_RETRY, "the session's results did not reach inventory"
			break
		}
		r.Outcome = tasksv1.TaskOutcome_TASK_OUTCOME_DONE
		r.Result = &tasksv1.TaskResult{}
		if len(o.Result) > 0 {
			if err := proto.Unmarshal(o.Result, r.Result); err != nil {
				r.Result = &tasksv1.TaskResult{}
			}
		}
	case stageFault:
		r.Outcome = tasksv1.TaskOutcome_TASK_OUTCOME_FAULT
		r.Fault = &tasksv1.TaskFault{}
		_ = proto.Unmarshal(o.Fault, r.Fault)
	case stageAwait:
		r.Outcome = tasksv1.TaskOutcome_TASK_OUTCOME_AWAIT
		r.AwaitDeadline = timestamppb.New(e.Now.Add(time.Duration(o.AwaitSeconds) * time.Second))
		r.Detail = "the CPE accepted it; waiting for what ends it"
	default:
		return nil
	}
	return r
}

// report sends reports. A failure is logged and counted, and loses
// nothing: the tasks stay dispatched to the session in the tasks service,
// whose sweeper gives them to a later session (CLAIM_ACTION_RESUME).
func (p *taskPlanner) report(ctx context.Context, tenant, deviceKey, sessionID string, reports []*tasksv1.TaskReport) {
	if len(reports) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	defer cancel()
	resp, err := p.tasks.ReportTasks(ctx, &tasksv1.ReportTasksRequest{Tenant: tenant, DeviceId: deviceKey, SessionId: sessionID, Reports: reports})
	if err != nil {
		p.failures.Add(ctx, 1, metric.WithAttributes(attribute.String("op", "report")))
		p.logger.WarnContext(ctx, "cannot report tasks; they stay dispatched for the tasks service to resume",
			keyDevice, deviceKey, "session_id", sessionID, "tasks", len(reports), "error", err)
		return
	}
	for _, r := range reports {
		p.reported.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", r.GetOutcome().String())))
	}
	for _, ack := range resp.GetAcks() {
		if !ack.GetAccepted() {
			p.logger.InfoContext(ctx, "task report refused: the task is no longer this session's", "task_id", ack.GetId(),
				keyDevice, deviceKey, "session_id", sessionID)
		}
	}
}
