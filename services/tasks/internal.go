package tasks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/recordid"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/tasks/store"
)

// internalServer implements TasksInternalService for session workers
// (docs/tasks.md, "Delivery"). Its callers hold the internal credential;
// requests are still checked, since a bad one must not corrupt records.
type internalServer struct {
	tasksv1.UnimplementedTasksInternalServiceServer
	s *Service
}

const maxClaim = 1000

func (s *Service) checkInternal(tenant, device, session string, n int) error {
	switch {
	case !apiauth.ValidTenant(tenant):
		return status.Error(codes.InvalidArgument, "tenant: 1 to 64 characters from [A-Za-z0-9_.-]")
	case checkDeviceID("device_id", device) != nil:
		return status.Error(codes.InvalidArgument, "device_id: not a device key")
	case !validSessionID(session):
		return status.Error(codes.InvalidArgument, "session_id: 1 to 128 printable characters without spaces or ':'")
	case n > maxClaim:
		return status.Error(codes.InvalidArgument, "at most 1000 tasks per call")
	}
	return s.checkReady()
}

// ClaimTasks implements TasksInternalService.
func (i *internalServer) ClaimTasks(ctx context.Context, req *tasksv1.ClaimTasksRequest) (*tasksv1.ClaimTasksResponse, error) {
	s := i.s
	if err := s.checkInternal(req.GetTenant(), req.GetDeviceId(), req.GetSessionId(), len(req.GetTaskIds())); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(req.GetTaskIds()))
	for _, id := range req.GetTaskIds() {
		if recordid.Valid(id) {
			ids = append(ids, id)
		}
	}
	// The records this replica wrote last, else read in one query.
	byID := make(map[string]store.Record, len(ids))
	cached := map[string]bool{}
	var missing []string
	for _, id := range ids {
		if r, ok := s.recent.get(req.GetTenant(), id); ok {
			byID[id], cached[id] = r, true
		} else {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		recs, err := s.store.GetMany(ctx, req.GetTenant(), missing)
		if err != nil {
			return nil, s.statusOf(ctx, "claim tasks", nil, err)
		}
		for _, r := range recs {
			if !cached[r.ID] {
				byID[r.ID] = r
			}
		}
	}
	for id, r := range byID {
		if r.DeviceID != req.GetDeviceId() {
			delete(byID, id)
		}
	}
	if m := req.GetMaxRun(); m > 0 && len(ids) > int(m) {
		// Not all may run: the session takes the first in priority then
		// creation order, not in queue order (docs/tasks.md, "Delivery").
		ids = runOrder(ids, byID)
	}
	out := &tasksv1.ClaimTasksResponse{}
	run := uint32(0)
	seen := map[string]bool{}
	for _, id := range ids {
		r, ok := byID[id]
		if !ok || seen[id] {
			continue
		}
		seen[id] = true
		mayRun := req.GetMaxRun() == 0 || run < req.GetMaxRun()
		how := claimHow{session: req.GetSessionId(), mayRun: mayRun, cached: cached[id], marks: req.GetReportsClaimMarks()}
		ct, err := s.claim(ctx, r, how)
		if errors.Is(err, errDecideOnStored) {
			// See recentCache: a claim that writes nothing decides on the
			// stored record.
			if r, err = s.store.Get(ctx, req.GetTenant(), id); err == nil {
				how.cached = false
				ct, err = s.claim(ctx, r, how)
			} else if isNotFound(err) {
				continue
			}
		}
		if cached[id] && isNotFound(err) {
			// Removed since this replica wrote it.
			s.recent.drop(req.GetTenant(), id)
			continue
		}
		if err != nil {
			return nil, s.statusOf(ctx, "claim tasks", nil, err)
		}
		if a := ct.GetAction(); a == tasksv1.ClaimAction_CLAIM_ACTION_RUN || a == tasksv1.ClaimAction_CLAIM_ACTION_RESUME {
			run++
		}
		out.Tasks = append(out.Tasks, ct)
	}
	return out, nil
}

// runOrder returns ids sorted as a session runs its tasks: higher
// priority first, then older first, then in the order given. An id without
// a record, or whose record does not decode, sorts as priority 0 (the
// claim skips or fails it anyway).
func runOrder(ids []string, byID map[string]store.Record) []string {
	type key struct {
		id       string
		priority int32
		created  time.Time
	}
	keys := make([]key, len(ids))
	for i, id := range ids {
		keys[i].id = id
		r, ok := byID[id]
		if !ok {
			continue
		}
		keys[i].created = r.CreateTime
		if t, err := decodeTask(r); err == nil {
			keys[i].priority = t.GetOptions().GetPriority()
		}
	}
	slices.SortStableFunc(keys, func(a, b key) int {
		if c := cmp.Compare(b.priority, a.priority); c != 0 {
			return c
		}
		return a.created.Compare(b.created)
	})
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.id
	}
	return out
}

// errDecideOnStored: a claim on a cached record would write nothing (see
// recentCache).
var errDecideOnStored = errors.New("claim decides on the stored record")

// claimHow is what a claim of one task knows of its session.
type claimHow struct {
	session string
	// mayRun: the session runs another task (its bound is not reached).
	mayRun bool
	// cached: the record may come from the recentCache.
	cached bool
	// marks: the worker reports claim marks, so a read-only task may be
	// claimed without a write.
	marks bool
}

// claim decides what session how.session does with one task of its
// device's queue, and records it. With how.cached, a decision that writes
// nothing on the first look at r returns errDecideOnStored instead.
func (s *Service) claim(ctx context.Context, r store.Record, how claimHow) (*tasksv1.ClaimedTask, error) {
	var action tasksv1.ClaimAction
	var previous string
	// unwritten: a read-only task runs without a dispatch write.
	var unwritten bool
	first := true
	t, nr, err := s.change(ctx, r, deleteNow, how.session, func(now time.Time, t *tasksv1.Task, r *store.Record) (write bool, err error) {
		if how.cached && first {
			defer func() {
				// A read-only task may run on a stale cached record: its
				// report's compare-and-swap fails then, and a read run
				// once more harms nothing.
				if err == nil && !write && !unwritten {
					err = errDecideOnStored
				}
			}()
		}
		first = false
		action, previous, unwritten = tasksv1.ClaimAction_CLAIM_ACTION_UNSPECIFIED, "", false
		switch st := t.GetState(); {
		case ended(st):
			action = tasksv1.ClaimAction_CLAIM_ACTION_ENDED
			return false, nil
		case st == tasksv1.TaskState_TASK_STATE_QUEUED:
			if !now.Before(expiryOf(t)) {
				enter(t, tasksv1.TaskState_TASK_STATE_EXPIRED, now, "expired before it reached the CPE")
				action = tasksv1.ClaimAction_CLAIM_ACTION_ENDED
				return true, nil
			}
			if rt := t.GetRetryTime(); rt != nil && now.Before(rt.AsTime()) || !how.mayRun {
				action = tasksv1.ClaimAction_CLAIM_ACTION_SKIP
				return false, nil
			}
			if how.marks && claimsUnwritten(t, *r) {
				// Its report writes the dispatch with the outcome
				// (docs/tasks.md, "Read-only tasks").
				action, unwritten = tasksv1.ClaimAction_CLAIM_ACTION_RUN, true
				return false, nil
			}
			t.Attempts++
			t.RetryTime = nil
			r.DueTime = now.Add(s.cfg.DispatchTimeout)
			if prev := t.GetUnconfirmedSessionId(); prev != "" {
				// An earlier session may have carried it out (docs/tasks.md,
				// "Resume after a dead worker").
				enter(t, tasksv1.TaskState_TASK_STATE_DISPATCHED, now, sessionDetail(how.session, fmt.Sprintf("resumed after session %s (attempt %d)", prev, t.Attempts)))
				action, previous = tasksv1.ClaimAction_CLAIM_ACTION_RESUME, prev
				return true, nil
			}
			enter(t, tasksv1.TaskState_TASK_STATE_DISPATCHED, now, sessionDetail(how.session, fmt.Sprintf("dispatched (attempt %d)", t.Attempts)))
			action = tasksv1.ClaimAction_CLAIM_ACTION_RUN
			return true, nil
		default: // dispatched
			prev := sessionOf(t)
			awaiting := t.GetAwaitDeadline() != nil
			switch {
			case prev == how.session && awaiting:
				action = tasksv1.ClaimAction_CLAIM_ACTION_AWAIT
				return false, nil
			case prev == how.session:
				// A repeated claim of the same session.
				action = tasksv1.ClaimAction_CLAIM_ACTION_RUN
				return false, nil
			case awaiting:
				// A later session of the device takes the wait over: what
				// ends the task arrives in it.
				enter(t, tasksv1.TaskState_TASK_STATE_DISPATCHED, now, sessionDetail(how.session, "awaits what ends the task"))
				action, previous = tasksv1.ClaimAction_CLAIM_ACTION_AWAIT, prev
				return true, nil
			case !how.mayRun:
				action = tasksv1.ClaimAction_CLAIM_ACTION_SKIP
				return false, nil
			case t.GetAttempts() >= maxAttempts(t):
				t.Fault = &tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_ACS,
					FaultString: fmt.Sprintf("session %s ended before reporting, and the task's %d attempts are spent", prev, maxAttempts(t))}
				enter(t, tasksv1.TaskState_TASK_STATE_FAULT, now, t.Fault.FaultString)
				action = tasksv1.ClaimAction_CLAIM_ACTION_ENDED
				return true, nil
			}
			t.Attempts++
			enter(t, tasksv1.TaskState_TASK_STATE_DISPATCHED, now, sessionDetail(how.session, fmt.Sprintf("resumed after session %s (attempt %d)", prev, t.Attempts)))
			r.DueTime = now.Add(s.cfg.DispatchTimeout)
			action, previous = tasksv1.ClaimAction_CLAIM_ACTION_RESUME, prev
			return true, nil
		}
	})
	if err != nil {
		return nil, err
	}
	if action == tasksv1.ClaimAction_CLAIM_ACTION_ENDED && nr.QueueSeq != 0 {
		// The worker found it in the queue: its message outlived the
		// task (a delete that failed), or the task ended just now.
		s.deleteQueued(ctx, nr.Tenant, nr.DeviceID, nr.QueueSeq, deleteNow)
	}
	mark := len(t.GetHistory())
	// The claimed task goes without its history; t is this claim's own
	// (change decoded it and keeps no hold on it), so it is the view.
	t.History = nil
	view := t
	if action == tasksv1.ClaimAction_CLAIM_ACTION_RUN || action == tasksv1.ClaimAction_CLAIM_ACTION_RESUME || action == tasksv1.ClaimAction_CLAIM_ACTION_AWAIT {
		s.claimed.put(how.session, nr)
		if err := openSecrets(s.deps.Secrets, nr.Tenant, nr.ID, nr.Secret, view.GetOperation()); err != nil {
			return nil, err
		}
	}
	ct := &tasksv1.ClaimedTask{Task: view, Action: action, PreviousSessionId: previous}
	if unwritten {
		ct.ClaimMark = uint32(mark)
	}
	return ct, nil
}

// ReportTasks implements TasksInternalService.
func (i *internalServer) ReportTasks(ctx context.Context, req *tasksv1.ReportTasksRequest) (*tasksv1.ReportTasksResponse, error) {
	s := i.s
	if err := s.checkInternal(req.GetTenant(), req.GetDeviceId(), req.GetSessionId(), len(req.GetReports())); err != nil {
		return nil, err
	}
	// The records the session's claim left, else read in one query (a
	// session reports all its tasks at once).
	byID := make(map[string]store.Record, len(req.GetReports()))
	var ids []string
	for _, rep := range req.GetReports() {
		if !recordid.Valid(rep.GetId()) {
			continue
		}
		if r, ok := s.claimed.take(req.GetTenant(), rep.GetId(), req.GetSessionId()); ok {
			byID[r.ID] = r
		} else {
			ids = append(ids, rep.GetId())
		}
	}
	if len(ids) > 0 {
		recs, err := s.store.GetMany(ctx, req.GetTenant(), ids)
		if err != nil {
			return nil, s.statusOf(ctx, "report tasks", nil, err)
		}
		for _, r := range recs {
			byID[r.ID] = r
		}
	}
	out := &tasksv1.ReportTasksResponse{}
	for _, rep := range req.GetReports() {
		r, found := byID[rep.GetId()]
		ack, err := s.report(ctx, req.GetDeviceId(), req.GetSessionId(), rep, r, found)
		if err != nil {
			return nil, s.statusOf(ctx, "report tasks", nil, err)
		}
		out.Acks = append(out.Acks, ack)
	}
	return out, nil
}

// report applies one report to the task's record r (found false: no such
// task in the tenant); a stale r is read again by change.
func (s *Service) report(ctx context.Context, device, session string, rep *tasksv1.TaskReport, r store.Record, found bool) (*tasksv1.ReportTaskAck, error) {
	ack := &tasksv1.ReportTaskAck{Id: rep.GetId()}
	if !found || r.DeviceID != device {
		return ack, nil
	}
	if d := rep.GetAwaitDeadline(); d != nil && d.CheckValid() != nil {
		return nil, status.Error(codes.InvalidArgument, "await_deadline: not a valid timestamp")
	}
	detail := truncate(rep.GetDetail(), 1024)
	// The queue delete of a task this report ends need not hold the
	// session up (deleteQueued).
	t, nr, err := s.change(ctx, r, deleteInBackground, session, func(now time.Time, t *tasksv1.Task, r *store.Record) (bool, error) {
		ack.Accepted = false
		switch {
		case t.GetState() == tasksv1.TaskState_TASK_STATE_DISPATCHED && sessionOf(t) == session:
		case claimedUnwritten(t, *r, rep):
			if rep.GetOutcome() == tasksv1.TaskOutcome_TASK_OUTCOME_RELEASE {
				ack.Accepted = true
				return false, nil // still queued, as it was
			}
			// The dispatch its claim did not write, then the outcome.
			t.Attempts++
			t.RetryTime = nil
			enter(t, tasksv1.TaskState_TASK_STATE_DISPATCHED, now, sessionDetail(session, fmt.Sprintf("dispatched (attempt %d)", t.Attempts)))
		default:
			return false, nil
		}
		ack.Accepted = true
		say := func(def string) string {
			if detail != "" {
				return detail
			}
			return def
		}
		switch rep.GetOutcome() {
		case tasksv1.TaskOutcome_TASK_OUTCOME_DONE:
			t.Result, t.Fault, t.AwaitDeadline = rep.GetResult(), nil, nil
			enter(t, tasksv1.TaskState_TASK_STATE_DONE, now, say("done"))
		case tasksv1.TaskOutcome_TASK_OUTCOME_FAULT:
			f := rep.GetFault()
			if f == nil {
				f = &tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_ACS, FaultString: "fault without details"}
			}
			t.AwaitDeadline = nil
			if f.GetSource() == tasksv1.FaultSource_FAULT_SOURCE_CPE && t.GetOptions().GetRetryCpeFaults() && t.GetAttempts() < maxAttempts(t) {
				s.requeue(t, r, now, false, fmt.Sprintf("CPE fault %d: %s", f.GetCode(), truncate(f.GetFaultString(), 256)))
				break
			}
			t.Fault = f
			enter(t, tasksv1.TaskState_TASK_STATE_FAULT, now, say(fmt.Sprintf("fault %d: %s", f.GetCode(), truncate(f.GetFaultString(), 256))))
		case tasksv1.TaskOutcome_TASK_OUTCOME_AWAIT:
			deadline := now.Add(awaitTimeout(t))
			if d := rep.GetAwaitDeadline(); d != nil && d.AsTime().After(now) && d.AsTime().Before(deadline) {
				deadline = d.AsTime()
			}
			t.AwaitDeadline = timestamppb.New(deadline)
			r.DueTime = deadline
			enter(t, tasksv1.TaskState_TASK_STATE_DISPATCHED, now, sessionDetail(session, say("accepted by the CPE; awaits what ends it until "+deadline.UTC().Format(time.RFC3339))))
		case tasksv1.TaskOutcome_TASK_OUTCOME_RETRY:
			if t.GetAttempts() >= maxAttempts(t) {
				t.AwaitDeadline = nil
				t.Fault = &tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_ACS,
					FaultString: fmt.Sprintf("%s; the task's %d attempts are spent", say("session ended before the answer"), maxAttempts(t))}
				enter(t, tasksv1.TaskState_TASK_STATE_FAULT, now, t.Fault.FaultString)
				break
			}
			s.requeue(t, r, now, true, say("session ended before the answer"))
		case tasksv1.TaskOutcome_TASK_OUTCOME_RELEASE:
			if t.Attempts > 0 {
				t.Attempts--
			}
			t.AwaitDeadline, t.RetryTime = nil, nil
			enter(t, tasksv1.TaskState_TASK_STATE_QUEUED, now, say("released unsent by session "+session))
			r.DueTime = expiryOf(t)
		default:
			return false, status.Error(codes.InvalidArgument, "outcome: unspecified")
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if !ack.Accepted && rep.GetClaimMark() != 0 && ended(t.GetState()) {
		// A read claimed without a write on a record this replica's cache
		// held stale: the task ended elsewhere (recentCache). Forget the
		// stale record, and remove the queue message that still led a
		// session to it (its delete failed where the task ended), so that
		// the device's next session does not run the read again.
		s.recent.drop(nr.Tenant, nr.ID)
		if nr.QueueSeq != 0 {
			s.deleteQueued(ctx, nr.Tenant, nr.DeviceID, nr.QueueSeq, deleteInBackground)
		}
	}
	ack.State = t.GetState()
	return ack, nil
}

// claimedUnwritten reports whether rep is of a read-only task claimed
// without a write and unchanged in state since (docs/tasks.md, "Read-only
// tasks"): still queued with the history the claim saw. Every change of
// state since (a cancel, an expiry, another session's report) added an
// entry, and the report is refused like that of a task no longer the
// session's; writes that add none (the sweeper's: a queue sequence, a due
// time) leave the claim standing.
func claimedUnwritten(t *tasksv1.Task, r store.Record, rep *tasksv1.TaskReport) bool {
	return t.GetState() == tasksv1.TaskState_TASK_STATE_QUEUED && claimsUnwritten(t, r) &&
		rep.GetClaimMark() != 0 && int(rep.GetClaimMark()) == len(t.GetHistory())
}

// claimsUnwritten reports whether a queued task is claimed without a
// write (docs/tasks.md, "Read-only tasks"): a read-only operation that no
// earlier session left unconfirmed, and that asked for no connection
// request. A task that did is claimed the usual way, so that a worker that
// dies with it leaves it dispatched, and the sweeper queues it again after
// the dispatch timeout and wakes the device once more: its caller asked
// for it now, not at the device's next periodic session.
func claimsUnwritten(t *tasksv1.Task, r store.Record) bool {
	return readOnly(r.Kind) && t.GetUnconfirmedSessionId() == "" && !t.GetOptions().GetConnectionRequest()
}

func awaitTimeout(t *tasksv1.Task) time.Duration {
	if n := t.GetOptions().GetAwaitTimeoutSeconds(); n > 0 {
		return time.Duration(n) * time.Second
	}
	return defaultAwaitTimeout
}

// requeue puts a dispatched task back in the queue after a transient
// failure, not to be dispatched again before its back-off has passed.
// unconfirmed: the session ended without the CPE's answer, so the CPE may
// have carried the task out; the next session resumes it. A read carried
// out changes nothing on the CPE, so a read-only task is never left
// unconfirmed: it simply runs again (and stays claimable without a write,
// docs/tasks.md, "Read-only tasks").
func (s *Service) requeue(t *tasksv1.Task, r *store.Record, now time.Time, unconfirmed bool, why string) {
	if prev := sessionOf(t); unconfirmed && prev != "" && !readOnly(r.Kind) {
		t.UnconfirmedSessionId = prev
	}
	at := now.Add(s.backoff(t.GetAttempts()))
	t.AwaitDeadline = nil
	t.RetryTime = timestamppb.New(at)
	enter(t, tasksv1.TaskState_TASK_STATE_QUEUED, now, why+": retry at "+at.UTC().Format(time.RFC3339))
	r.DueTime = expiryOf(t)
	if t.GetOptions().GetConnectionRequest() && at.Before(r.DueTime) {
		// The sweeper wakes the device again once the back-off is over.
		r.DueTime = at
	}
}

// backoff is the wait before the attempt after attempts: RetryBase doubled
// per earlier attempt, at most RetryMax, with up to a fifth of jitter either
// way so that the tasks of many devices failing together spread out.
func (s *Service) backoff(attempts uint32) time.Duration {
	d := s.cfg.RetryBase
	for i := uint32(1); i < attempts && d < s.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.RetryMax)
	jitter := time.Duration(rand.Int64N(int64(d)/5+1)) * 2
	return d - d/5 + jitter
}
