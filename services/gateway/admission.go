package gateway

import (
	"strings"
	"sync"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// Admission control for new sessions (docs/design.md §2 step 6).
//
// One token bucket per gateway (gateway.admission-rate and -burst) of which
// a share (gateway.admission-reserved-share) is reserved: priority Informs
// (by default 0 BOOTSTRAP, 1 BOOT, 6 CONNECTION REQUEST, 7 TRANSFER COMPLETE)
// may take any token, the others only tokens above the reserve. During a
// storm of PERIODIC Informs the bucket therefore never runs dry for operator
// work (a connection request) or for devices coming back from a power cut,
// and during a boot storm priority Informs take the whole rate while
// PERIODIC ones wait. Only requests that open a session are subject to it:
// a session that has started is never shed halfway.

// admission is the priority token bucket. A nil *admission admits all.
type admission struct {
	now      func() time.Time
	rate     float64 // tokens per second
	burst    float64
	reserve  float64
	priority map[int]bool

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newAdmission(rate float64, burst int, share float64, priority map[int]bool, now func() time.Time) *admission {
	if rate <= 0 {
		return nil
	}
	b := float64(burst)
	return &admission{now: now, rate: rate, burst: b, reserve: b * share, priority: priority, tokens: b, last: now()}
}

// admit takes a token for a new session, reporting whether it may start.
func (a *admission) admit(priority bool) bool {
	if a == nil {
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if el := now.Sub(a.last); el > 0 {
		a.tokens = min(a.burst, a.tokens+el.Seconds()*a.rate)
		a.last = now
	}
	floor := a.reserve
	if priority {
		floor = 0
	}
	if a.tokens-1 < floor {
		return false
	}
	a.tokens--
	return true
}

// isPriority reports whether an Inform's events make it a priority one.
// Codes match by their numeric prefix ("1 BOOT" -> 1), which survives the
// spelling variants CPEs send (docs/protocol.md §6.1).
func (a *admission) isPriority(events []cwmp.Event) bool {
	if a == nil {
		return false
	}
	for _, e := range events {
		if n, ok := eventNumber(e.Code); ok && a.priority[n] {
			return true
		}
	}
	return false
}

// eventNumber returns the numeric prefix of an event code.
func eventNumber(code string) (int, bool) {
	code = strings.TrimSpace(code)
	n, i := 0, 0
	for ; i < len(code) && code[i] >= '0' && code[i] <= '9'; i++ {
		if n > 1<<20 {
			return 0, false
		}
		n = n*10 + int(code[i]-'0')
	}
	if i == 0 || (i < len(code) && code[i] != ' ') {
		return 0, false
	}
	return n, true
}

// retryAfter picks a jittered Retry-After in whole seconds within
// [min, max], spreading the retries of a shed crowd.
func retryAfter(minD, maxD time.Duration, randN func(int64) int64) int64 {
	lo, hi := int64(minD/time.Second), int64(maxD/time.Second)
	if hi <= lo {
		return lo
	}
	return lo + randN(hi-lo+1)
}
