package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// session is one CWMP session held by the engine.
//
// Locking: mu serializes the session's exchanges and guards every field
// below it. The table's mutex is taken after a session's mu, never before
// it (see table), except to lock a session just created and not yet
// visible to anyone else.
type session struct {
	id string

	mu sync.Mutex
	// gone is set, under mu, when the session left the table: a caller that
	// looked the session up and then waited for mu must look again.
	gone bool
	// live is false while a resumed session is still being loaded.
	live bool

	tenant    string
	deviceKey string
	lease     leaseInfo
	cs        *cwmp.Session
	inform    *informInfo
	// queue holds the session's operations; nil until the Inform is
	// accepted.
	queue *queue
	// fenced is set when the device lease is lost (a newer session
	// exists): nothing more is asked and nothing is recorded.
	fenced bool
	// usage is what the session holds against its limits and the budget.
	usage usage
	// discovering is set while the session holds one of the worker's
	// discovery slots (Config.MaxDiscoveries).
	discovering bool
	// leaveLarge gives back the large-exchange slot the session's
	// exchange holds (gate.go); nil when it holds none.
	leaveLarge func()
	// opCtx is the Context handed to the operations, allocated when a
	// session first has one to hand.
	opCtx *Context
	// seq numbers the checkpoints saved (affinity.Checkpoint.Seq).
	seq uint64
	// saved is set once a checkpoint exists in the store.
	saved bool
	// journalLen is the length of the checkpoint's journal in the store;
	// journalFull asks the next save to write the journal whole (a save
	// failed, or the checkpoint came in a format without one);
	// informJournaled is set once the Inform's parameters are in it.
	journalLen      int
	journalFull     bool
	informJournaled bool
	// lastActive is when the last exchange ended; lastRenew when the lease
	// was last renewed (or taken).
	lastActive time.Time
	lastRenew  time.Time

	// rec is the session's affinity record, which the engine keeps for the
	// life of the session (docs/design.md §1: session workers own the
	// records). recordTTL is its life, recordAt when it was last stored
	// (zero: due).
	rec       *affinity.SessionRecord
	recordTTL time.Duration
	recordAt  time.Time
}

// leaseInfo is the session's device lease.
type leaseInfo struct {
	Token      uint64 `json:"token"`
	Superseded string `json:"superseded,omitempty"`
}

// informInfo is what the session keeps of its Inform for the inventory.
type informInfo struct {
	Time       time.Time             `json:"time"`
	RemoteIP   string                `json:"remoteIp,omitempty"`
	DeviceID   cwmp.DeviceID         `json:"deviceId"`
	Events     []cwmp.Event          `json:"events,omitempty"`
	RetryCount uint32                `json:"retryCount,omitempty"`
	Params     []cwmp.ParameterValue `json:"params,omitempty"`
	// Root is the data-model root the session settled on, "" if unknown.
	Root string `json:"root,omitempty"`
	// Completions are what the CPE's requests reported ending (see
	// Watcher).
	Completions []Completion `json:"completions,omitempty"`
}

// context is what the session's operations see of it: the session's own
// Context, refreshed each time (operations keep it no longer than a
// call).
func (s *session) context(now time.Time) *Context {
	if s.opCtx == nil {
		s.opCtx = new(Context)
	}
	c := s.opCtx
	*c = Context{Tenant: s.tenant, DeviceKey: s.deviceKey, Now: now, usage: &s.usage}
	if s.cs != nil {
		c.DeviceID, c.Events, c.Version = s.cs.DeviceID(), s.cs.Events(), s.cs.Version()
	}
	return c
}

// checkpointFormat versions snapshot; a worker refuses other formats
// rather than misread them, except format 1, which it migrates.
//
//   - 1: a "plan" with a discovery and a fenced flag.
//   - 2: the operation queue ("queue"), "fenced" and "usage".
//   - 3: format 2 as a head and a journal (see journal.go): the Inform's
//     parameters and journaled operations' records are in the journal.
//
// Formats 1 and 2 are restored (their journal written whole at the next
// save); format 2 differs from 3 only in where those lists live.
const checkpointFormat = 3

// snapshot is the JSON a checkpoint's Data holds: everything another worker
// needs to continue the session exactly.
type snapshot struct {
	snapshotHead
	CWMP cwmp.State `json:"cwmp"`

	// Plan is format 1's operations: a discovery and the fenced flag.
	Plan *planV1 `json:"plan,omitempty"`
}

// snapshotHead is what checkpoint encodes of a snapshot with
// encoding/json: all of it but the cwmp state, appended by hand.
type snapshotHead struct {
	Format int         `json:"format"`
	Lease  leaseInfo   `json:"lease"`
	Inform *informInfo `json:"inform,omitempty"`
	Queue  *queue      `json:"queue,omitempty"`
	Fenced bool        `json:"fenced,omitempty"`
	Usage  usage       `json:"usage,omitzero"`
	// Record is the session's affinity record and RecordTTL its life.
	Record    *affinity.SessionRecord `json:"record,omitempty"`
	RecordTTL time.Duration           `json:"recordTTL,omitempty"`
}

// planV1 is the plan of a format-1 checkpoint.
type planV1 struct {
	Fenced    bool            `json:"fenced,omitempty"`
	Discovery json.RawMessage `json:"discovery,omitempty"`
}

// checkpoint returns the session's checkpoint, numbered with the next seq:
// the head, and the journal lines to write at JournalAt (all of them when
// s.journalFull is set, else what this exchange added).
func (s *session) checkpoint() (affinity.Checkpoint, error) {
	head := snapshotHead{
		Format: checkpointFormat, Lease: s.lease, Queue: s.queue, Fenced: s.fenced,
		Record: s.rec, RecordTTL: s.recordTTL,
	}
	if s.inform != nil {
		inf := *s.inform
		inf.Params = nil // in the journal
		head.Inform = &inf
	}
	if s.queue != nil {
		// Without operations the usage is the Inform's, which restore
		// counts again: most checkpoints (periodic sessions) stay short.
		head.Usage = s.usage
	}
	data, err := json.Marshal(head)
	if err == nil {
		// The cwmp state, the largest part (the outstanding request), is
		// written by hand after the rest: encoding/json would reflect over
		// it and re-scan its JSON.
		data = append(data[:len(data)-1], `,"cwmp":`...)
		data, err = s.redacted(s.cs.State()).AppendJSON(data)
		data = append(data, '}')
	}
	if err != nil {
		return affinity.Checkpoint{}, fmt.Errorf("marshal checkpoint of session %s: %w", s.id, err)
	}
	at := s.journalLen
	if s.journalFull {
		at = 0
	}
	return affinity.Checkpoint{
		Tenant: s.tenant, DeviceKey: s.deviceKey, SessionID: s.id,
		FencingToken: s.lease.Token, Seq: s.seq + 1, Data: data,
		Journal: s.appendJournal(nil, s.journalFull), JournalAt: at,
	}, nil
}

// saved notes that cp, from checkpoint or fence, is in the store.
func (s *session) savedAs(cp *affinity.Checkpoint) {
	s.seq, s.saved = cp.Seq, true
	s.journalLen, s.journalFull, s.informJournaled = cp.JournalAt+len(cp.Journal), false, true
}

// fence returns the checkpoint of a local session (Deps.Local), numbered
// with the next seq: the lease token and sequence that fence the session's
// writes, without the state, which no other worker could use.
func (s *session) fence() affinity.Checkpoint {
	return affinity.Checkpoint{
		Tenant: s.tenant, DeviceKey: s.deviceKey, SessionID: s.id,
		FencingToken: s.lease.Token, Seq: s.seq + 1,
	}
}

// errBadCheckpoint marks a checkpoint this worker cannot restore.
var errBadCheckpoint = errors.New("session checkpoint cannot be restored")

// restore fills a loading session from its checkpoint, with the
// planners that restore its operations. A checkpoint of format 1 is
// migrated; any other format, or an operation of a kind no planner here
// makes, is refused with errBadCheckpoint.
func (s *session) restore(cp affinity.Checkpoint, planners map[string]Planner) error {
	var snap snapshot
	if err := json.Unmarshal(cp.Data, &snap); err != nil {
		return fmt.Errorf("decode checkpoint of session %s: %w", s.id, errors.Join(err, errBadCheckpoint))
	}
	full := false
	switch snap.Format {
	case checkpointFormat, 2:
		full = snap.Format != checkpointFormat
	case 1:
		migrateV1(&snap)
		full = true
	default:
		return fmt.Errorf("decode checkpoint of session %s: format %d, want %d: %w", s.id, snap.Format, checkpointFormat, errBadCheckpoint)
	}
	if snap.Queue != nil {
		if err := snap.Queue.restore(planners); err != nil {
			return fmt.Errorf("restore session %s: %w", s.id, errors.Join(err, errBadCheckpoint))
		}
	}
	if len(cp.Journal) > 0 {
		replay := session{id: s.id, inform: snap.Inform, queue: snap.Queue}
		if err := replay.replayJournal(cp.Journal); err != nil {
			return fmt.Errorf("restore session %s: %w", s.id, errors.Join(err, errBadCheckpoint))
		}
	}
	if snap.Format != 1 && snap.Queue == nil {
		snap.Usage = informUsage(snap.Inform)
	}
	if err := rebuildSecrets(&snap.CWMP, snap.Queue, &Context{Tenant: cp.Tenant, DeviceKey: cp.DeviceKey}); err != nil {
		return fmt.Errorf("restore session %s: %w", s.id, errors.Join(err, errBadCheckpoint))
	}
	cs, err := cwmp.RestoreSession(snap.CWMP)
	if err != nil {
		return fmt.Errorf("restore session %s: %w", s.id, errors.Join(err, errBadCheckpoint))
	}
	if cs.Phase() == cwmp.PhaseACSTurn {
		// Workers resolve the turn before they save.
		return fmt.Errorf("restore session %s: checkpoint taken during the ACS's turn: %w", s.id, errBadCheckpoint)
	}
	if snap.Lease.Token != cp.FencingToken {
		return fmt.Errorf("restore session %s: checkpoint token %d, snapshot token %d: %w", s.id, cp.FencingToken, snap.Lease.Token, errBadCheckpoint)
	}
	s.tenant, s.deviceKey = cp.Tenant, cp.DeviceKey
	s.lease, s.inform, s.queue, s.fenced, s.cs = snap.Lease, snap.Inform, snap.Queue, snap.Fenced, cs
	s.usage.release()
	s.usage.Params, s.usage.Bytes = snap.Usage.Params, snap.Usage.Bytes
	s.usage.budget.add(s.usage.Bytes)
	// The record names the worker that saved it; noteRecord re-points it.
	s.rec, s.recordTTL, s.recordAt = snap.Record, snap.RecordTTL, time.Time{}
	// A restored session saves in a new epoch (the high 32 bits of Seq), so
	// that its saves order after anything a stale copy of the session on
	// another worker still saves at the old epoch: the store accepts equal
	// (token, seq) pairs, and two copies counting on from one checkpoint
	// would otherwise overwrite each other.
	s.seq, s.saved = (cp.Seq>>32+1)<<32, true
	s.journalLen, s.journalFull, s.informJournaled = len(cp.Journal), full, true
	return nil
}

// migrateV1 turns a format-1 snapshot into the current one: its plan's
// discovery becomes the queue's discovery operation (its JSON did not
// change), the outstanding request's key gains the operation's ID, and the
// usage is estimated from what the session holds.
func migrateV1(snap *snapshot) {
	snap.Format = checkpointFormat
	p := snap.Plan
	snap.Plan = nil
	snap.Usage = informUsage(snap.Inform)
	if p == nil {
		return
	}
	snap.Fenced = p.Fenced
	if len(p.Discovery) == 0 || string(p.Discovery) == "null" {
		return
	}
	var nodes struct {
		Nodes []node `json:"nodes"`
	}
	if json.Unmarshal(p.Discovery, &nodes) == nil {
		for _, n := range nodes.Nodes {
			snap.Usage.Params++
			snap.Usage.Bytes += ParameterCost(n.Name, n.Value, n.Type)
		}
	}
	var created int64
	if snap.Inform != nil {
		created = snap.Inform.Time.UnixNano()
	}
	snap.Queue = &queue{Entries: []*entry{{ID: discoveryID, Kind: kindDiscovery, Created: created, state: p.Discovery}}}
	if o := snap.CWMP.Outstanding; o != nil && (strings.HasPrefix(o.Request.Key, keyGPN+" ") || strings.HasPrefix(o.Request.Key, keyGPV+" ")) {
		o.Request.Key = discoveryID + " " + o.Request.Key
	}
}

// informUsage is what the Inform's parameters a session kept count for.
func informUsage(inf *informInfo) usage {
	var u usage
	if inf != nil {
		for _, pv := range inf.Params {
			u.Params++
			u.Bytes += ParameterCost(pv.Name, pv.Value, pv.Type)
		}
	}
	return u
}
