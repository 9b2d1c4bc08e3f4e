package affinity

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// SessionSave is what a session worker stores after an exchange that leaves
// the session open: the session's checkpoint and, when the worker keeps the
// session's open session record, that record.
type SessionSave struct {
	Checkpoint    Checkpoint
	CheckpointTTL time.Duration
	// Record, when not nil, is stored as Affinity.Put stores it, for
	// RecordTTL.
	Record    *SessionRecord
	RecordTTL time.Duration
}

// SessionEnd is what a session worker removes when a session ends.
type SessionEnd struct {
	Tenant    string
	DeviceKey string
	SessionID string
	// Release frees the device lease if SessionID holds it, as
	// Leases.Release does; a superseded session leaves it to its successor.
	Release bool
	// Record, when not nil, is deleted as Affinity.Delete deletes it.
	Record *SessionRecord
}

// Sessions writes what one exchange of a session changes in the shared
// state, in a single round trip where the backend allows it (a Redis
// pipeline) rather than one per port: a worker pays one network round trip
// per exchange for its checkpoint and its session record together, and one
// at the end of the session for the checkpoint, the lease and the record.
// The operations keep the contracts of the ports they combine.
type Sessions interface {
	// Save saves s.Checkpoint under the fencing rule of Checkpoints
	// (ErrLeaseLost when it is refused) and stores s.Record. The record is
	// stored even when the checkpoint is refused; the caller then ends the
	// session with End, which deletes it.
	Save(ctx context.Context, s SessionSave) error
	// End deletes the session's checkpoint (a missing one is not an
	// error), releases the device lease when e.Release is set and deletes
	// e.Record.
	End(ctx context.Context, e SessionEnd) error
}

// SessionsOf combines separate ports into Sessions, one call per part: for
// the in-process store, where a call costs no round trip. Of Leases and
// Checkpoints it needs only the writes; a may be nil when no Save or End
// carries a record.
func SessionsOf(l leaseReleaser, c checkpointWriter, a Affinity) Sessions {
	return composedSessions{l: l, c: c, a: a}
}

// leaseReleaser is the part of Leases that SessionsOf uses.
type leaseReleaser interface {
	Release(ctx context.Context, tenant, deviceKey, sessionID string) error
}

// checkpointWriter is the part of Checkpoints that SessionsOf uses.
type checkpointWriter interface {
	Save(ctx context.Context, cp Checkpoint, ttl time.Duration) error
	Delete(ctx context.Context, tenant, deviceKey, sessionID string) error
}

type composedSessions struct {
	l leaseReleaser
	c checkpointWriter
	a Affinity
}

func (s composedSessions) Save(ctx context.Context, ss SessionSave) error {
	if err := checkSessionSave(&ss, s.a); err != nil {
		return err
	}
	saveErr := s.c.Save(ctx, ss.Checkpoint, ss.CheckpointTTL)
	if ss.Record == nil {
		return saveErr
	}
	return errors.Join(saveErr, s.a.Put(ctx, *ss.Record, ss.RecordTTL))
}

func (s composedSessions) End(ctx context.Context, e SessionEnd) error {
	if err := checkSessionEnd(&e, s.a); err != nil {
		return err
	}
	errs := []error{s.c.Delete(ctx, e.Tenant, e.DeviceKey, e.SessionID)}
	if e.Release {
		errs = append(errs, s.l.Release(ctx, e.Tenant, e.DeviceKey, e.SessionID))
	}
	if e.Record != nil {
		errs = append(errs, s.a.Delete(ctx, *e.Record))
	}
	return errors.Join(errs...)
}

var errNoAffinity = errors.New("a session record needs an Affinity store")

func checkSessionSave(s *SessionSave, a Affinity) error {
	if err := checkSave(&s.Checkpoint, s.CheckpointTTL); err != nil {
		return err
	}
	if s.Record == nil {
		return nil
	}
	if a == nil {
		return fmt.Errorf("save session %s: %w", s.Checkpoint.SessionID, errNoAffinity)
	}
	if s.Record.SessionID != s.Checkpoint.SessionID {
		return fmt.Errorf("save session %s: record of session %q", s.Checkpoint.SessionID, s.Record.SessionID)
	}
	return checkPut(*s.Record, s.RecordTTL)
}

func checkSessionEnd(e *SessionEnd, a Affinity) error {
	if err := checkLeaseArgs("end session", e.Tenant, e.DeviceKey, e.SessionID, 0, false); err != nil {
		return err
	}
	if e.Record == nil {
		return nil
	}
	if a == nil {
		return fmt.Errorf("end session %s: %w", e.SessionID, errNoAffinity)
	}
	if e.Record.SessionID != e.SessionID {
		return fmt.Errorf("end session %s: record of session %q", e.SessionID, e.Record.SessionID)
	}
	return nil
}
