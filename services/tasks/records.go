package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/taskspec"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/tasks/store"
)

// This file holds what every state change shares: decoding and encoding
// records, the compare-and-swap loop, the task.<state> events and the
// queue messages (docs/tasks.md, "Records" and "Delivery").

// Defaults of TaskOptions fields left zero.
const (
	defaultExpiry       = 7 * 24 * time.Hour
	defaultMaxAttempts  = 3
	defaultAwaitTimeout = time.Hour
	// publishGrace is how long a record may stay unpublished before the
	// sweeper publishes it: CreateTask publishes at once, so only a
	// process that died (or lost NATS) in between leaves one behind.
	publishGrace = 30 * time.Second
	// maxConflicts bounds the retries of one change that keeps losing its
	// compare-and-swap.
	maxConflicts = 32
)

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func ended(st tasksv1.TaskState) bool {
	switch st {
	case tasksv1.TaskState_TASK_STATE_DONE, tasksv1.TaskState_TASK_STATE_FAULT,
		tasksv1.TaskState_TASK_STATE_EXPIRED, tasksv1.TaskState_TASK_STATE_CANCELLED:
		return true
	}
	return false
}

// stateName is the lower-case name of a state, as event kinds spell it
// ("task.done"); the names of the known states are spelled once.
func stateName(st tasksv1.TaskState) string {
	if n, ok := stateNames[st]; ok {
		return n
	}
	return spellState(st)
}

func spellState(st tasksv1.TaskState) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "TASK_STATE_"))
}

var stateNames = func() map[tasksv1.TaskState]string {
	m := make(map[tasksv1.TaskState]string, len(tasksv1.TaskState_name))
	for v := range tasksv1.TaskState_name {
		m[tasksv1.TaskState(v)] = spellState(tasksv1.TaskState(v))
	}
	return m
}()

// decodeTask reads a record's task; the record's own fields win over the
// body's copies.
func decodeTask(r store.Record) (*tasksv1.Task, error) {
	t := &tasksv1.Task{}
	if err := proto.Unmarshal(r.Body, t); err != nil {
		return nil, fmt.Errorf("decode task %s: %w", r.ID, err)
	}
	t.Version = r.Version
	t.State = tasksv1.TaskState(r.State)
	return t, nil
}

func encodeTask(t *tasksv1.Task) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(t)
	if err != nil {
		// A Task built by this package always marshals.
		panic(fmt.Sprintf("encode task %s: %v", t.GetId(), err))
	}
	return b
}

func maxAttempts(t *tasksv1.Task) uint32 {
	if n := t.GetOptions().GetMaxAttempts(); n > 0 {
		return n
	}
	return defaultMaxAttempts
}

func expiryOf(t *tasksv1.Task) time.Time {
	if e := t.GetOptions().GetExpireTime(); e != nil {
		return e.AsTime()
	}
	return t.GetCreateTime().AsTime().Add(defaultExpiry)
}

// enter moves t to state st (or records a step within the state) with a
// history entry.
func enter(t *tasksv1.Task, st tasksv1.TaskState, now time.Time, detail string) {
	t.State = st
	t.History = append(t.History, &tasksv1.TaskHistoryEntry{State: st, Time: timestamppb.New(now), Detail: detail})
}

// stateEntry returns the position (from 1) in t's history of the entry
// that entered its current state: later entries of the same state (a
// dispatch resumed) do not move it. With the task id it names the state
// change's event (publishEvent), so that the event published again for a
// task whose record has changed since without a change of state (its
// queue sequence stored, a resumed dispatch) has the id of the first one.
func stateEntry(t *tasksv1.Task) int {
	h := t.GetHistory()
	i := len(h)
	for i > 0 && h[i-1].GetState() == t.GetState() {
		i--
	}
	return i + 1
}

// The session a dispatched task belongs to is written in its history: each
// entry of state dispatched starts with "session <id>: " (sessionDetail),
// so that fencing needs no field beyond the public Task.
func sessionDetail(session, what string) string { return "session " + session + ": " + what }

// sessionOf returns the session t was last dispatched to.
func sessionOf(t *tasksv1.Task) string {
	for i := len(t.GetHistory()) - 1; i >= 0; i-- {
		h := t.GetHistory()[i]
		if h.GetState() != tasksv1.TaskState_TASK_STATE_DISPATCHED {
			continue
		}
		rest, ok := strings.CutPrefix(h.GetDetail(), "session ")
		if !ok {
			return ""
		}
		id, _, _ := strings.Cut(rest, ": ")
		return id
	}
	return ""
}

// validSessionID: what a session id may be, so that it reads back from the
// history unchanged.
func validSessionID(s string) bool {
	return s != "" && len(s) <= 128 && printable(s) && !strings.ContainsAny(s, " :")
}

// changeFn decides a change of t (r is the record it came from, which it
// may adjust: DueTime, QueueSeq). It returns false to write nothing. It may
// run several times, on fresher records, when a compare-and-swap fails.
type changeFn func(now time.Time, t *tasksv1.Task, r *store.Record) (bool, error)

// change applies fn to the record r with a compare-and-swap, reading the
// record again after each conflict. Once written, a state change is
// published as an event (naming session, the session that saw it, if
// any), and an ended task's queue message is deleted, as del says
// (deleteQueued). It returns the task and record as they stand.
func (s *Service) change(ctx context.Context, r store.Record, del queueDelete, session string, fn changeFn) (*tasksv1.Task, store.Record, error) {
	for attempt := 0; ; attempt++ {
		t, err := decodeTask(r)
		if err != nil {
			return nil, r, err
		}
		before := t.State
		now := s.now()
		nr := r
		write, err := fn(now, t, &nr)
		if err != nil || !write {
			return t, r, err
		}
		nr.Version = r.Version + 1
		nr.UpdateTime = now
		nr.State = int32(t.State)
		if ended(t.State) {
			nr.DueTime = time.Time{}
		}
		t.Version = nr.Version
		t.UpdateTime = timestamppb.New(now)
		nr.Body = encodeTask(t)
		err = s.store.Update(ctx, nr, r.Version)
		if errors.Is(err, store.ErrVersionConflict) && attempt < maxConflicts {
			if r, err = s.store.Get(ctx, r.Tenant, r.ID); err != nil {
				return nil, r, fmt.Errorf("read task %s again: %w", r.ID, err)
			}
			continue
		}
		if err != nil {
			return nil, r, fmt.Errorf("update task %s: %w", r.ID, err)
		}
		if ended(t.State) {
			s.recent.drop(nr.Tenant, nr.ID)
		} else {
			s.recent.put(nr)
		}
		if t.State != before {
			s.publishEvent(ctx, t, session)
		}
		if ended(t.State) && nr.QueueSeq != 0 && !ended(before) {
			s.deleteQueued(ctx, nr.Tenant, nr.DeviceID, nr.QueueSeq, del)
		}
		return t, nr, nil
	}
}

// publishEvent publishes the task.<state> event of t's current version,
// without waiting for the stream's acknowledgement (the record, which holds
// the truth, is already written; the caller's latency, a session's start
// or end, does not include the round trip). At most eventsInFlight await
// theirs; beyond, the caller waits for a slot. An event whose publish
// fails is published again, synchronously, up to three times, then waits
// in the redo queue (natsbus.Redo), as do the task's later events while it
// waits. The event id (and NATS message id) is the task id and the
// position of the state's entry in its history (stateEntry), so that a
// repeated publish is dropped by the stream.
//
// The event carries t without its history (docs/events.md). Rather than
// copy t, the history is set aside while the event is encoded, as
// withoutHistory does, so t must be the caller's own; the encoded event,
// not t, is what a retry publishes, so t may change once this returns.
func (s *Service) publishEvent(ctx context.Context, t *tasksv1.Task, session string) {
	kind := "task." + stateName(t.State)
	id := t.GetId() + "." + strconv.Itoa(stateEntry(t))
	h := t.History
	t.History = nil
	data, err := proto.Marshal(&eventsv1.Event{
		Id: id, Tenant: t.GetTenant(), DeviceId: t.GetDeviceId(),
		Time: t.GetUpdateTime(), Kind: kind, SessionId: session, Payload: &eventsv1.Event_Task{Task: t},
	})
	t.History = h
	subject := s.names.Event(t.GetTenant(), kind, t.GetDeviceId())
	taskID, tenant := t.GetId(), t.GetTenant()
	if err != nil {
		s.logger.ErrorContext(ctx, "task event not published", "task_id", taskID, "tenant", tenant, "kind", kind,
			"error", fmt.Errorf("encode message for %s: %w", subject, err))
		return
	}
	m := s.message(ctx, subject, id, data)
	if s.redo.Waiting(taskID) {
		// An earlier event of the task waits to be published again: this
		// one goes behind it.
		s.redoLater(ctx, taskID, tenant, kind, m, nil)
		return
	}
	err = s.events.Publish(ctx, m, true, func(err error) {
		if err != nil {
			if _, err := s.publishData(context.WithoutCancel(ctx), subject, id, data); err != nil {
				s.redoLater(ctx, taskID, tenant, kind, m, err)
			}
		}
	})
	if err != nil {
		s.redoLater(ctx, taskID, tenant, kind, m, err)
	}
}

// redoLater queues the event m of task taskID in the redo queue
// (docs/events.md, "Delivery"); err is why its publish failed (nil: it
// queues behind an earlier event of its task).
func (s *Service) redoLater(ctx context.Context, taskID, tenant, kind string, m *nats.Msg, err error) {
	if err != nil {
		s.logger.WarnContext(ctx, "task event not published; it will be published again", "task_id", taskID, "tenant", tenant, "kind", kind, "error", err)
	}
	s.redo.Add(taskID, m) // logs what it drops
}

// message is data as a NATS message to subject, with msgID for
// de-duplication and the trace context.
func (s *Service) message(ctx context.Context, subject, msgID string, data []byte) *nats.Msg {
	msg := nats.NewMsg(subject)
	msg.Data = data
	if msgID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	natsbus.Inject(ctx, s.deps.Propagator, msg)
	return msg
}

// publish publishes m to subject on JetStream with msgID for
// de-duplication and the trace context, trying three times.
func (s *Service) publish(ctx context.Context, subject, msgID string, m proto.Message) error {
	_, err := s.publishAck(ctx, subject, msgID, m)
	return err
}

func (s *Service) publishAck(ctx context.Context, subject, msgID string, m proto.Message) (*jetstream.PubAck, error) {
	data, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode message for %s: %w", subject, err)
	}
	return s.publishData(ctx, subject, msgID, data)
}

// publishData publishes the encoded message data as publish does.
func (s *Service) publishData(ctx context.Context, subject, msgID string, data []byte) (*jetstream.PubAck, error) {
	var lastErr error
	for attempt := range 3 {
		msg := s.message(ctx, subject, msgID, data)
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		ack, err := s.js.PublishMsg(pctx, msg)
		cancel()
		if err == nil {
			return ack, nil
		}
		if isQueueFull(err) {
			return nil, errQueueFull
		}
		lastErr = err
		if attempt < 2 {
			time.Sleep(time.Duration(50<<attempt) * time.Millisecond)
		}
	}
	return nil, fmt.Errorf("publish to %s: %w: %w", subject, errBus, lastErr)
}

// isQueueFull reports the stream's refusal of a message beyond a device's
// queue bound (MaxMsgsPerSubject with DiscardNewPerSubject).
func isQueueFull(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return strings.Contains(apiErr.Description, "maximum messages per subject")
	}
	return strings.Contains(err.Error(), "maximum messages per subject")
}

// queueStream returns the task queue's stream, looked up once.
func (s *Service) queueStream(ctx context.Context) (jetstream.Stream, error) {
	s.streamMu.Lock()
	defer s.streamMu.Unlock()
	if s.tasksStream != nil {
		return s.tasksStream, nil
	}
	st, err := s.js.Stream(ctx, s.names.TasksStream())
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w: %w", s.names.TasksStream(), errBus, err)
	}
	s.tasksStream = st
	return st, nil
}

// deleteQueued removes a task's message from its device's queue. A
// message already gone is fine; a failure is logged (a worker that still
// finds it is told the task ended, and ClaimTasks deletes it again).
//
// With deleteInBackground (a session's report) the delete runs off the
// caller's path: it is the queue's acknowledgement of a task whose outcome
// is already stored (docs/tasks.md, "Delivery"), and the session has no
// reason to wait for the stream's answer. At most maxDeletesInFlight run
// at once; beyond that the caller deletes itself, so a stream slower than
// the sessions slows them rather than piling up goroutines. Run waits for
// the deletes under way before it returns, and a create that finds the
// device's queue full waits for that queue's (enqueue). Everywhere else (a cancel, a
// claim that finds the task ended, the sweeper) the delete is done when
// the call returns, so that a task created right after a cancel finds the
// room the cancelled one left in a full queue.
func (s *Service) deleteQueued(ctx context.Context, tenant, device string, seq uint64, del queueDelete) {
	ctx = context.WithoutCancel(ctx)
	if del != deleteInBackground {
		s.deleteQueuedNow(ctx, seq)
		return
	}
	select {
	case s.deleting <- struct{}{}:
		subject := s.names.TaskQueue(tenant, device)
		s.deletes.Add(1)
		s.pending.add(subject)
		go func() {
			defer func() {
				s.pending.done(subject)
				<-s.deleting
				s.deletes.Done()
			}()
			if h := s.testBeforeBackgroundDelete; h != nil {
				h()
			}
			s.deleteQueuedNow(ctx, seq)
		}()
	default:
		s.deleteQueuedNow(ctx, seq)
	}
}

// pendingDeletes counts the background deletes under way per device
// queue (its subject), so that a create that finds the queue full can tell
// whether room is on its way: the bound counts a message until its delete
// is answered.
type pendingDeletes struct {
	mu sync.Mutex
	m  map[string]*pendingQueue
}

type pendingQueue struct {
	n       int
	waiters int
	// idle is closed when n falls to 0.
	idle chan struct{}
}

func (p *pendingDeletes) add(subject string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]*pendingQueue{}
	}
	q := p.m[subject]
	if q == nil {
		q = &pendingQueue{idle: make(chan struct{})}
		p.m[subject] = q
	}
	q.n++
}

func (p *pendingDeletes) done(subject string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.m[subject]
	if q.n--; q.n == 0 {
		close(q.idle)
		delete(p.m, subject)
	}
}

// wait returns once subject has no background delete under way (at once
// when it had none), or ctx ends; it reports whether it had some and they
// are done.
func (p *pendingDeletes) wait(ctx context.Context, subject string) bool {
	p.mu.Lock()
	q := p.m[subject]
	if q == nil {
		p.mu.Unlock()
		return false
	}
	q.waiters++
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		q.waiters--
		p.mu.Unlock()
	}()
	select {
	case <-q.idle:
		return true
	case <-ctx.Done():
		return false
	}
}

// waiting is how many calls of wait are waiting on subject (tests).
func (p *pendingDeletes) waiting(subject string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if q := p.m[subject]; q != nil {
		return q.waiters
	}
	return 0
}

// queueDelete says how change deletes the queue message of a task it
// ends (deleteQueued).
type queueDelete int

const (
	// deleteNow: before change returns.
	deleteNow queueDelete = iota
	// deleteInBackground: off the caller's path, for a session's report.
	deleteInBackground
)

// maxDeletesInFlight bounds the queue deletes deleteQueued runs in the
// background.
const maxDeletesInFlight = 256

// deleteQueuedNow deletes the message at seq and returns once the stream
// has answered (or 5 seconds have passed).
func (s *Service) deleteQueuedNow(ctx context.Context, seq uint64) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.queueStream(dctx)
	if err == nil {
		err = st.DeleteMsg(dctx, seq)
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		s.logger.WarnContext(ctx, "queue message not deleted", "seq", seq, "error", err)
	}
}

// sealSecrets seals the passwords of op (cleared from it) for the record of
// task id; nil when it holds none.
func sealSecrets(k *secretbox.Keyring, tenant, id string, op *tasksv1.Operation) ([]byte, error) {
	fields := taskspec.Passwords(op)
	vals := make([]string, len(fields))
	any := false
	for i, p := range fields {
		vals[i] = *p
		any = any || *p != ""
		*p = ""
	}
	if !any {
		return nil, nil
	}
	plain, err := json.Marshal(vals)
	if err != nil {
		return nil, fmt.Errorf("encode credentials of task %s: %w", id, err)
	}
	keyID, sealed, err := k.Seal(plain, secretbox.AAD("task", tenant, id))
	if err != nil {
		return nil, fmt.Errorf("seal credentials of task %s: %w", id, err)
	}
	return append(append([]byte{byte(len(keyID))}, keyID...), sealed...), nil
}

// openSecrets puts the passwords sealed in secret back into op.
func openSecrets(k *secretbox.Keyring, tenant, id string, secret []byte, op *tasksv1.Operation) error {
	if len(secret) == 0 {
		return nil
	}
	n := int(secret[0])
	if len(secret) < 1+n {
		return fmt.Errorf("open credentials of task %s: truncated", id)
	}
	plain, err := k.Open(string(secret[1:1+n]), secret[1+n:], secretbox.AAD("task", tenant, id))
	if err != nil {
		return fmt.Errorf("open credentials of task %s: %w", id, err)
	}
	var vals []string
	if err := json.Unmarshal(plain, &vals); err != nil {
		return fmt.Errorf("decode credentials of task %s: %w", id, err)
	}
	for i, p := range taskspec.Passwords(op) {
		if i < len(vals) {
			*p = vals[i]
		}
	}
	return nil
}

// streamCache holds the queue stream's handle.
type streamCache struct {
	streamMu    sync.Mutex
	tasksStream jetstream.Stream
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// recordOf is the record of a new task t, unpublished.
func recordOf(t *tasksv1.Task, now time.Time) store.Record {
	return store.Record{
		Tenant: t.GetTenant(), ID: t.GetId(), DeviceID: t.GetDeviceId(), State: int32(t.GetState()), Kind: kindOf(t.GetOperation()),
		IdempotencyKey: t.GetOptions().GetIdempotencyKey(), CreateTime: now, UpdateTime: now,
		DueTime: now.Add(publishGrace), Version: 1, Body: encodeTask(t),
	}
}
