package sessions

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// session is one CWMP session held by the worker.
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
	plan      *plan
	inform    *informInfo
	// seq numbers the checkpoints saved (affinity.Checkpoint.Seq).
	seq uint64
	// saved is set once a checkpoint exists in the store.
	saved bool
	// lastActive is when the last exchange ended; lastRenew when the lease
	// was last renewed (or taken).
	lastActive time.Time
	lastRenew  time.Time

	// rec is the session's affinity record, kept by the worker once a
	// gateway asked (ExchangeRequest.affinity_record_ttl); nil otherwise.
	// recordTTL is its life, recordAt when it was last stored (zero: due).
	rec       *affinity.SessionRecord
	recordTTL time.Duration
	recordAt  time.Time
	// recordAsked is set when the current exchange asked for the record,
	// recordOK once the exchange stored or removed it.
	recordAsked bool
	recordOK    bool
}

// leaseInfo is the session's device lease (sessions.v1 DeviceLease).
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
}

// checkpointFormat versions snapshot; a worker refuses other formats
// rather than misread them.
const checkpointFormat = 1

// snapshot is the JSON a checkpoint's Data holds: everything another worker
// needs to continue the session exactly.
type snapshot struct {
	Format int         `json:"format"`
	Lease  leaseInfo   `json:"lease"`
	Inform *informInfo `json:"inform,omitempty"`
	Plan   *plan       `json:"plan"`
	CWMP   cwmp.State  `json:"cwmp"`
	// Record is the session's affinity record and RecordTTL its life, when
	// the worker keeps it: a worker resuming the session keeps it on.
	Record    *affinity.SessionRecord `json:"record,omitempty"`
	RecordTTL time.Duration           `json:"recordTTL,omitempty"`
}

// checkpoint returns the session's checkpoint, numbered with the next seq.
func (s *session) checkpoint() (affinity.Checkpoint, error) {
	data, err := json.Marshal(snapshot{
		Format: checkpointFormat, Lease: s.lease, Inform: s.inform, Plan: s.plan, CWMP: s.cs.State(),
		Record: s.rec, RecordTTL: s.recordTTL,
	})
	if err != nil {
		return affinity.Checkpoint{}, fmt.Errorf("marshal checkpoint of session %s: %w", s.id, err)
	}
	return affinity.Checkpoint{
		Tenant: s.tenant, DeviceKey: s.deviceKey, SessionID: s.id,
		FencingToken: s.lease.Token, Seq: s.seq + 1, Data: data,
	}, nil
}

// restore fills a loading session from its checkpoint.
func (s *session) restore(cp affinity.Checkpoint) error {
	var snap snapshot
	if err := json.Unmarshal(cp.Data, &snap); err != nil {
		return fmt.Errorf("decode checkpoint of session %s: %w", s.id, err)
	}
	if snap.Format != checkpointFormat {
		return fmt.Errorf("decode checkpoint of session %s: format %d, want %d", s.id, snap.Format, checkpointFormat)
	}
	if snap.Plan == nil {
		snap.Plan = &plan{}
	}
	cs, err := cwmp.RestoreSession(snap.CWMP)
	if err != nil {
		return fmt.Errorf("restore session %s: %w", s.id, err)
	}
	if snap.Lease.Token != cp.FencingToken {
		return fmt.Errorf("restore session %s: checkpoint token %d, snapshot token %d", s.id, cp.FencingToken, snap.Lease.Token)
	}
	s.tenant, s.deviceKey = cp.Tenant, cp.DeviceKey
	s.lease, s.inform, s.plan, s.cs = snap.Lease, snap.Inform, snap.Plan, cs
	// The record names the worker that saved it; noteRecord re-points it.
	s.rec, s.recordTTL, s.recordAt = snap.Record, snap.RecordTTL, time.Time{}
	// A restored session saves in a new epoch (the high 32 bits of Seq), so
	// that its saves order after anything a stale copy of the session on
	// another worker still saves at the old epoch: the store accepts equal
	// (token, seq) pairs, and two copies counting on from one checkpoint
	// would otherwise overwrite each other.
	s.seq, s.saved = (cp.Seq>>32+1)<<32, true
	return nil
}
