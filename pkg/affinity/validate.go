package affinity

import (
	"errors"
	"fmt"
	"time"
)

// Argument checks shared by every implementation, so that they refuse the
// same calls with the same errors (the conformance suite checks it).

var (
	errTTL       = errors.New("ttl must be positive")
	errSessionID = errors.New("empty session id")
	errDevice    = errors.New("empty tenant or device key")
	errWorkerID  = errors.New("empty worker id")
	errToken     = errors.New("fencing token must be positive")
)

func checkLeaseArgs(action, tenant, deviceKey, sessionID string, ttl time.Duration, needTTL bool) error {
	switch {
	case tenant == "" || deviceKey == "":
		return fmt.Errorf("%s: %w", action, errDevice)
	case sessionID == "":
		return fmt.Errorf("%s: %w", action, errSessionID)
	case needTTL && ttl <= 0:
		return fmt.Errorf("%s: %w", action, errTTL)
	}
	return nil
}

func checkPut(rec SessionRecord, ttl time.Duration) error {
	switch {
	case rec.SessionID == "":
		return fmt.Errorf("put session record: %w", errSessionID)
	case ttl <= 0:
		return fmt.Errorf("put session record %s: %w", rec.SessionID, errTTL)
	}
	return nil
}

func checkSave(cp *Checkpoint, ttl time.Duration) error {
	if err := checkLeaseArgs("save checkpoint", cp.Tenant, cp.DeviceKey, cp.SessionID, ttl, true); err != nil {
		return err
	}
	if cp.FencingToken == 0 {
		return fmt.Errorf("save checkpoint of session %s: %w", cp.SessionID, errToken)
	}
	if cp.JournalAt < 0 {
		return fmt.Errorf("save checkpoint of session %s: journal offset %d", cp.SessionID, cp.JournalAt)
	}
	return nil
}

func checkRegister(w *Worker, ttl time.Duration) error {
	switch {
	case w.ID == "":
		return fmt.Errorf("register worker: %w", errWorkerID)
	case ttl <= 0:
		return fmt.Errorf("register worker %s: %w", w.ID, errTTL)
	}
	return nil
}

// tokenFloor is the lowest fencing token a lease taken at now may have: the
// wall clock in microseconds. Tokens come from a per-device counter, raised
// to this floor, so they keep growing even when the counter is lost (Redis
// flushed or failed over without it, or the in-process store restarted):
// inventory, which keeps the newest token per device, would otherwise fence
// off every new session of a device until its counter caught up. This holds
// as long as clocks do not step back by more than the time between two
// sessions of a device. Microseconds stay exact in Lua's doubles (below 2^53)
// until the year 2255.
func tokenFloor(now time.Time) uint64 {
	return uint64(max(now.UnixMicro(), 0))
}
