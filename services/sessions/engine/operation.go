package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// Operation is one piece of work the ACS does with a CPE, the only way an
// ACS request reaches it: a discovery of the parameter tree today; a task,
// the convergence of a preset or a diagnostic next. It asks for one request
// at a time, and sees the answer to each (or learns that none will come)
// before it is asked for the next, so a request can depend on everything
// the CPE said before it.
//
// An operation is data: the engine checkpoints it as JSON after every
// exchange (its exported fields, under its Planner's kind) and any worker
// restores it with Planner.Restore, so it must hold everything it needs in
// those fields and do no I/O. What needs I/O happens in its Planner: when
// the session starts (Plan) and when it ends (Settle).
type Operation interface {
	// Next returns the operation's next request, or ok false when it has
	// nothing to ask now. It must not change the operation: the engine may
	// ask and then not send (the session's bound, a refusal), and what
	// happened to a call that was sent comes through Answer.
	Next(c *Context) (call Call, ok bool)
	// Answer hands the operation what became of a call it returned from
	// Next: the CPE's response or fault, or why no answer will come.
	Answer(c *Context, a Answer)
	// Observe offers the operation a request the CPE sent on its own
	// (TransferComplete, DUStateChangeComplete, ...), already acknowledged
	// to the CPE. It reports whether the operation took it (the request
	// completes it); the others are not offered a request one took.
	Observe(c *Context, m cwmp.Message) bool
	// Contribute adds what the operation learned about the device to the
	// session's inventory diff. o says how the session ended, so that an
	// operation writes only what that outcome allows (see Outcome).
	Contribute(c *Context, d *DiffBuilder, o Outcome)
}

// Call is a request an operation asks the session to send.
type Call struct {
	// Message is an ACS request (docs/protocol.md §5.1, see cwmp.Request).
	Message cwmp.Message
	// Key is the operation's own handle for the call, handed back with its
	// Answer. No spaces.
	Key string
	// HoldRequests keeps the CPE from sending its own requests while the
	// call is outstanding (cwmp.Request.HoldRequests).
	HoldRequests bool
}

// Answer is what became of a call: exactly one of Response, Fault, NotSent
// and Lost is set.
type Answer struct {
	Call Call
	// Response is the CPE's "...Response".
	Response cwmp.Message
	// Fault is the CPE's fault.
	Fault *cwmp.Fault
	// NotSent is why the session refused to send the call
	// (cwmp.ErrMethodTooNew, cwmp.ErrNotACSRequest). The CPE never saw it.
	NotSent error
	// Lost says why the CPE will not answer in this session (the session
	// expired, the CPE started a new one, ...). The CPE may or may not
	// have carried the call out.
	Lost cwmp.AbandonReason
}

// Outcome is how a session ended, as far as what it may write is
// concerned.
type Outcome uint8

const (
	// Completed: the session ended by the protocol (the ACS's 204), so
	// the CPE counts it as a success and will not send its Inform again.
	// Everything confirmed is written.
	Completed Outcome = iota + 1
	// Incomplete: the session expired idle, was abandoned or replaced by
	// the CPE, or failed. The CPE counts it as failed and repeats its
	// Inform (docs/protocol.md §4.4), so the Inform's parameters are not written;
	// only the Inform's facts (time, events, address) and what an
	// operation changed on the device that no later session would report
	// again (a SetParameterValues the CPE confirmed) are.
	Incomplete
)

// Context is what an operation may read of its session. It is valid for
// the duration of the call it is passed to.
type Context struct {
	Tenant    string
	DeviceKey string
	// DeviceID, Events and Version come from the session's Inform.
	DeviceID cwmp.DeviceID
	Events   []cwmp.Event
	Version  cwmp.Version
	// Now is the engine's clock at the exchange.
	Now time.Time

	usage *usage
}

// HasEvent reports whether the Inform carried the event (matched as
// cwmp.Session.HasEvent does: by number for standard codes).
func (c *Context) HasEvent(code string) bool {
	want := eventNumber(code)
	for _, e := range c.Events {
		if eventNumber(e.Code) == want {
			return true
		}
	}
	return false
}

func eventNumber(code string) string {
	code = strings.TrimSpace(code)
	num, _, _ := strings.Cut(code, " ")
	if num != "" && strings.Trim(num, "0123456789") == "" {
		return num
	}
	return code
}

// Charge accounts for params parameters of bytes bytes that an operation
// keeps to record at the end of the session, against the session's limits
// (Config.MaxSessionParameters, MaxSessionBytes; see ParameterCost). It
// reports false, and charges nothing, when they would be exceeded: the
// operation must then keep no more (and say so in what it records).
func (c *Context) Charge(params, bytes int) bool {
	if c.usage == nil {
		return true
	}
	return c.usage.charge(params, bytes)
}

// ParameterCost estimates the memory a session holds for one parameter it
// keeps to record: its strings plus about 96 bytes of headers and
// bookkeeping (slice, index and checkpoint entries).
func ParameterCost(name, value, typ string) int { return len(name) + len(value) + len(typ) + 96 }

// Planner makes the operations of one kind and keeps what outlives a
// session: it decides at the start of each session what its kind has to
// do, and stores the outcome at its end. Planners may do I/O; operations
// may not.
//
// Across sessions, an operation lives in its planner's store, not in the
// engine: a task waiting for its TransferComplete is a task record in the
// dispatched state, which the tasks planner turns into an operation again
// in the session that carries the TransferComplete, where Observe completes
// it. Within one session, the engine checkpoints the operations with the
// session, so that another worker resumes them.
type Planner interface {
	// Kind names the operations the planner makes; checkpoints record it
	// so that Restore is asked for them.
	Kind() string
	// Plan returns the operations to run in a session whose Inform was
	// just accepted. An error fails the start of the session: the CPE is
	// asked to retry (fault 8005).
	Plan(ctx context.Context, s Start) ([]Planned, error)
	// Restore rebuilds one of the planner's operations from its
	// checkpointed JSON.
	Restore(data []byte) (Operation, error)
	// Settle is told, once per session, how the session ended and hands
	// back the planner's operations that ran in it, in queue order, to
	// store what must outlive the session (a task's result, what the
	// discovery learned about the product class). Operations the
	// session's bound left out are not among them: they were never
	// started, and stay wherever the planner keeps them.
	Settle(ctx context.Context, e End, ops []Operation)
}

// Leaver is a Planner that wants to know which planned operations the
// session's bound (Config.MaxOperations) left out: they never start, and
// are not among those Settle gets. left may hold other planners'
// operations: a Leaver picks its own by type.
type Leaver interface {
	Left(ctx context.Context, s Start, left []Planned)
}

// Planned is an operation a planner wants run, with its place in the
// session's queue.
type Planned struct {
	// ID names the operation within the session (a task ID); empty lets
	// the engine number it. No spaces.
	ID string
	// Priority orders the queue: higher first; then Created, older first.
	Priority int
	Created  time.Time
	Op       Operation
}

// Start is what a planner learns when a session starts.
type Start struct {
	Tenant    string
	DeviceKey string
	SessionID string
	DeviceID  cwmp.DeviceID
	Events    []cwmp.Event
	// Params are the Inform's parameters the session keeps (a task
	// resumed after a dead worker reads the ParameterKey among them).
	// Shared: do not modify.
	Params []cwmp.ParameterValue
	// Bootstrap is set when the Inform carried 0 BOOTSTRAP.
	Bootstrap bool
	// Root is the data-model root the Inform's parameters name, else the
	// inventory's, "" when neither knows.
	Root string
	// Device is what the inventory knew of the device, without
	// parameters.
	Device DeviceState
	// Now is the engine's clock.
	Now time.Time
}

// End is what a planner learns when a session ends.
type End struct {
	Tenant    string
	DeviceKey string
	SessionID string
	DeviceID  cwmp.DeviceID
	Outcome   Outcome
	// Superseded is set when a newer session of the device took the lease
	// over: nothing of this session reached the inventory.
	Superseded bool
	// Recorded is set when the session's diff reached the inventory.
	Recorded bool
	Now      time.Time
}

// queue is a session's operations in the order they run: priority, then
// creation, then the order planners gave them. It is checkpointed with the
// session.
type queue struct {
	Entries []*entry `json:"entries,omitempty"`
	// Seq numbers the operations the engine names.
	Seq int `json:"seq,omitempty"`
}

// entry is one operation in the queue.
type entry struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Priority int    `json:"priority,omitempty"`
	// Created is Planned.Created in Unix nanoseconds (a number costs a
	// checkpoint less than a time).
	Created int64 `json:"created,omitempty"`
	// Op is the operation, marshalled as its own JSON (its concrete type
	// is known then); decoding leaves that JSON in state until restore
	// hands it to the kind's planner.
	Op Operation `json:"state"`

	state json.RawMessage
}

// entryJSON is the decoded form of an entry.
type entryJSON struct {
	ID       string          `json:"id"`
	Kind     string          `json:"kind"`
	Priority int             `json:"priority,omitempty"`
	Created  int64           `json:"created,omitempty"`
	State    json.RawMessage `json:"state"`
}

// UnmarshalJSON implements json.Unmarshaler: the operation stays JSON
// until restore.
func (e *entry) UnmarshalJSON(data []byte) error {
	var j entryJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*e = entry{ID: j.ID, Kind: j.Kind, Priority: j.Priority, Created: j.Created, state: j.State}
	return nil
}

// errBadQueue marks a checkpointed queue the engine cannot restore.
var errBadQueue = errors.New("operation queue cannot be restored")

// add queues planned operations of kind, keeping the queue ordered and at
// most max long (0: no bound); it returns the ones it left out.
func (q *queue) add(kind string, planned []Planned, max int) (left []Planned) {
	for _, p := range planned {
		id := p.ID
		if id == "" {
			q.Seq++
			id = kind + "-" + strconv.Itoa(q.Seq)
		}
		var created int64
		if !p.Created.IsZero() {
			created = p.Created.UnixNano()
		}
		q.Entries = append(q.Entries, &entry{ID: id, Kind: kind, Priority: p.Priority, Created: created, Op: p.Op})
	}
	slices.SortStableFunc(q.Entries, func(a, b *entry) int {
		if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
			return c
		}
		return cmp.Compare(a.Created, b.Created)
	})
	if max > 0 && len(q.Entries) > max {
		for _, e := range q.Entries[max:] {
			left = append(left, Planned{ID: e.ID, Priority: e.Priority, Created: time.Unix(0, e.Created).UTC(), Op: e.Op})
		}
		clear(q.Entries[max:])
		q.Entries = q.Entries[:max]
	}
	return left
}

// find returns the entry whose ID starts a request key ("<id> <call key>")
// and the call key.
func (q *queue) find(reqKey string) (*entry, string) {
	id, key, _ := strings.Cut(reqKey, " ")
	for _, e := range q.Entries {
		if e.ID == id {
			return e, key
		}
	}
	return nil, ""
}

// requestKey is the cwmp.Request.Key of an entry's call.
func requestKey(e *entry, c Call) string { return e.ID + " " + c.Key }

// restore rebuilds every entry's operation with the planner of its kind.
func (q *queue) restore(planners map[string]Planner) error {
	for _, e := range q.Entries {
		p := planners[e.Kind]
		if p == nil {
			return fmt.Errorf("restore operation %s: unknown kind %q: %w", e.ID, e.Kind, errBadQueue)
		}
		op, err := p.Restore(e.state)
		if err != nil {
			return fmt.Errorf("restore %s operation %s: %w", e.Kind, e.ID, errors.Join(err, errBadQueue))
		}
		e.Op, e.state = op, nil
	}
	return nil
}

// discovery returns the queue's discovery while it still has names or
// values to fetch; nil when there is none.
func (q *queue) discovery() *discovery {
	if q == nil {
		return nil
	}
	for _, e := range q.Entries {
		if d, ok := e.Op.(*discovery); ok && (d.Stage == stageNames || d.Stage == stageValues) {
			return d
		}
	}
	return nil
}

// byKind groups the queue's operations by kind, in queue order.
func (q *queue) byKind() map[string][]Operation {
	out := make(map[string][]Operation)
	for _, e := range q.Entries {
		out[e.Kind] = append(out[e.Kind], e.Op)
	}
	return out
}

// Log keys (docs/style.md rule 5): the values of pkg/telemetry's Key
// constants, which the engine does not import, since that package brings
// the OTLP gRPC exporter with it (a test keeps them equal).
const (
	keyDeviceID  = "device_id"
	keySessionID = "session_id"
	keyTenant    = "tenant"
)
