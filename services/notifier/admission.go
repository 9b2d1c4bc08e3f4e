package notifier

import (
	"fmt"
	"sync"
	"time"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// admission decides whether a wake request goes out now: it coalesces
// requests for a device that has one in flight or was woken a moment ago,
// spaces attempts on one device, and holds all of them to a global rate
// (a token bucket). A CPE runs one session at a time and may rate-limit
// connection requests itself (docs/protocol.md §8.1). Its state lives in
// memory: each notifier replica coalesces what it sees.
type admission struct {
	mu        sync.Mutex
	now       func() time.Time
	coalesce  time.Duration
	perDevice time.Duration
	rate      float64
	burst     float64
	tokens    float64
	refilled  time.Time
	devices   map[deviceRef]*deviceState
	swept     time.Time
}

type deviceRef struct{ tenant, device string }

type deviceState struct {
	inFlight    bool
	lastAttempt time.Time
	lastSent    time.Time
}

func newAdmission(now func() time.Time, coalesce, perDevice time.Duration, rate float64, burst int) *admission {
	b := float64(max(burst, 1))
	return &admission{now: now, coalesce: coalesce, perDevice: perDevice, rate: rate, burst: b, tokens: b, devices: map[deviceRef]*deviceState{}}
}

// informedSince reports whether a device whose last Inform is lastInform
// informed at or after t. Stores keep times to the millisecond, so an
// Inform in the same millisecond as t counts: one request too many is
// harmless, one too few leaves a task waiting for the next periodic Inform.
func informedSince(lastInform, t time.Time) bool {
	return !lastInform.IsZero() && !lastInform.Before(t.Truncate(time.Millisecond))
}

// inFlight reports whether a request to the device is in flight.
func (a *admission) inFlight(d deviceRef) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.devices[d]
	return st != nil && st.inFlight
}

// admit returns 0 when the request may go out (the device is then in
// flight until done), else the status that answers it. lastInform is when
// the device's last recorded session started: a device that informed
// since the last request answered it, so the coalescing window and the
// per-device interval no longer hold the next one back (an OSS that sets
// a value and then reads it wakes the device twice in a row).
func (a *admission) admit(d deviceRef, lastInform time.Time) (tasksv1.WakeStatus, string) {
	st, detail, _ := a.admitOrWait(d, lastInform)
	return st, detail
}

// admitOrWait is admit, except that over the global rate it returns how
// long until a token is free (and RATE_LIMITED) instead of only refusing:
// the caller may wait that long and ask again.
func (a *admission) admitOrWait(d deviceRef, lastInform time.Time) (tasksv1.WakeStatus, string, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.sweep(now)
	st := a.devices[d]
	if st != nil && informedSince(lastInform, st.lastAttempt) {
		st.lastSent, st.lastAttempt = time.Time{}, time.Time{}
	}
	if st != nil {
		switch {
		case st.inFlight:
			return tasksv1.WakeStatus_WAKE_STATUS_COALESCED, "a connection request to the device is in flight", 0
		case !st.lastSent.IsZero() && now.Sub(st.lastSent) < a.coalesce:
			return tasksv1.WakeStatus_WAKE_STATUS_COALESCED, fmt.Sprintf("a connection request was sent %s ago", now.Sub(st.lastSent).Round(time.Millisecond)), 0
		case !st.lastAttempt.IsZero() && now.Sub(st.lastAttempt) < a.perDevice:
			return tasksv1.WakeStatus_WAKE_STATUS_RATE_LIMITED, "the device was tried less than -notifier.per-device-interval ago", 0
		}
	}
	if a.rate > 0 {
		if !a.refilled.IsZero() {
			a.tokens = min(a.burst, a.tokens+now.Sub(a.refilled).Seconds()*a.rate)
		}
		a.refilled = now
		if a.tokens < 1 {
			wait := time.Duration((1 - a.tokens) / a.rate * float64(time.Second))
			return tasksv1.WakeStatus_WAKE_STATUS_RATE_LIMITED, "over -notifier.rate", max(wait, time.Millisecond)
		}
		a.tokens--
	}
	if st == nil {
		st = &deviceState{}
		a.devices[d] = st
	}
	st.inFlight = true
	st.lastAttempt = now
	return 0, "", 0
}

// begin marks a follow-up request to the device in flight, unless one
// is: it bypasses coalescing and the limits, which held back others for
// the request it repeats.
func (a *admission) begin(d deviceRef) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.devices[d]
	if st == nil {
		st = &deviceState{}
		a.devices[d] = st
	}
	if st.inFlight {
		return false
	}
	st.inFlight = true
	st.lastAttempt = a.now()
	return true
}

// done ends an admitted request.
func (a *admission) done(d deviceRef, sent bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.devices[d]
	if st == nil {
		return
	}
	st.inFlight = false
	if sent {
		st.lastSent = a.now()
	}
}

// sweep forgets devices whose windows have passed, at most once per
// window, so the map holds only what was woken recently.
func (a *admission) sweep(now time.Time) {
	window := max(a.coalesce, a.perDevice, time.Second)
	if now.Sub(a.swept) < window {
		return
	}
	a.swept = now
	for k, st := range a.devices {
		if !st.inFlight && now.Sub(st.lastAttempt) >= window && now.Sub(st.lastSent) >= window {
			delete(a.devices, k)
		}
	}
}

func (a *admission) size() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.devices)
}
