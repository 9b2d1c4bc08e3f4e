package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
)

// Start reads the quirks file and registers the worker in the registry:
// gateways route sessions to it from then on, so the worker is started
// once it is registered, with its quirks in place. An engine built with
// Deps.AdvertiseAddr learns the address it registers here. It fails when
// the quirks file cannot be used or the registration fails.
func (e *Engine) Start(ctx context.Context) error {
	if path := e.cfg.QuirksFile; path != "" {
		q, err := LoadQuirks(path)
		if err != nil {
			return fmt.Errorf("start session worker %s: %w", e.self.ID, err)
		}
		e.quirks.Store(q)
		e.logger.InfoContext(ctx, "quirks profiles loaded", "file", path, "profiles", len(q.Profiles))
	}
	if err := e.crcreds.start(ctx); err != nil {
		return fmt.Errorf("start session worker %s: %w", e.self.ID, err)
	}
	if e.advertise != nil {
		e.self.Addr = e.advertise()
	}
	rctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	err := e.reg.Register(rctx, e.self, e.cfg.RegistryTTL)
	cancel()
	if err != nil {
		return fmt.Errorf("register session worker %s: %w", e.self.ID, err)
	}
	e.lastBeat = e.now()
	e.registered = true
	e.logger.InfoContext(ctx, "session worker registered", "worker_id", e.self.ID, "addr", e.self.Addr, "capacity", e.self.Capacity)
	return nil
}

// Run keeps the worker registered, renews the leases of its sessions and
// expires idle ones until ctx ends; then it drains (see drain) and returns.
// It starts the worker first when Start has not been called, and returns
// an error only when that fails.
func (e *Engine) Run(ctx context.Context) error {
	if !e.registered {
		if err := e.Start(ctx); err != nil {
			return err
		}
	}
	t := time.NewTicker(e.tickInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return e.drain(t.C)
		case <-t.C:
			e.Tick(ctx)
		}
	}
}

// tickInterval is how often the background work looks at the sessions: a
// fraction of the shortest period it must keep.
func (e *Engine) tickInterval() time.Duration {
	return max(min(time.Second, e.cfg.LeaseTTL/6, e.cfg.RegistryTTL/6), 10*time.Millisecond)
}

// Tick does the background work that is due: the registry heartbeat, lease
// renewals (every third of the lease TTL) and idle-session expiry. Run
// calls it; a test that does not start Run calls it instead, from one
// goroutine.
func (e *Engine) Tick(ctx context.Context) {
	now := e.now()
	if !e.draining.Load() && now.Sub(e.lastBeat) >= e.cfg.RegistryTTL/3 {
		cctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
		if err := e.reg.Register(cctx, e.self, e.cfg.RegistryTTL); err != nil {
			e.metrics.count(e.metrics.failures, "op", failRegistry)
			e.logger.WarnContext(ctx, "registry heartbeat failed", "error", err)
		} else {
			e.lastBeat = now
		}
		cancel()
	}
	for _, s := range e.table.all() {
		// A session busy in an exchange is not idle, and its renewal can
		// wait for the next tick.
		if !s.mu.TryLock() {
			continue
		}
		if !s.gone && s.live {
			e.tickSession(ctx, s, now)
		}
		s.mu.Unlock()
	}
}

func (e *Engine) tickSession(ctx context.Context, s *session, now time.Time) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.CallTimeout)
	defer cancel()
	if now.Sub(s.lastActive) >= s.cs.SessionTimeout()+e.cfg.IdleGrace {
		if e.movedOn(cctx, s) {
			// Another worker resumed the session while this one was
			// silent (paused, partitioned): it shares the lease and
			// token, so ending the session here would release the lease
			// under it and write stale results. Forget it instead.
			e.sessionLogger(s).InfoContext(ctx, "idle session continued elsewhere; forgotten")
			e.drop(s)
			return
		}
		e.sessionLogger(s).InfoContext(ctx, "idle session expired", "idle", now.Sub(s.lastActive).String())
		_ = e.finish(cctx, s, outcomeExpired)
		return
	}
	if now.Sub(s.lastRenew) < e.cfg.LeaseTTL/3 {
		return
	}
	err := e.leases.Renew(cctx, s.tenant, s.deviceKey, s.id, s.lease.Token, e.cfg.LeaseTTL)
	switch {
	case errors.Is(err, ErrLeaseLost):
		e.supersede(cctx, s, lostAtRenew)
	case err != nil:
		e.metrics.count(e.metrics.failures, "op", failRenew)
		e.sessionLogger(s).WarnContext(ctx, "cannot renew device lease", "error", err)
	default:
		s.lastRenew = now
	}
}

// DrainIdle is how long every session left on a draining worker must have
// been silent for the drain to end before DrainTimeout. Their CPEs are then
// gone or slow, and waiting on would only delay the stop: a CPE that comes
// back is resumed from the checkpoint by the worker its gateway tries next,
// as after the timeout (docs/operations.md, "Stopping a process").
const DrainIdle = 5 * time.Second

// drain runs after Run's context ended: the worker leaves the registry and
// refuses new sessions, lets open ones finish for up to DrainTimeout (still
// renewing and expiring them) or until all left have been silent for
// DrainIdle, then hands the rest off: it forgets them but leaves their
// checkpoints and leases, so the worker a gateway tries next resumes each
// one where it stood.
func (e *Engine) drain(ticks <-chan time.Time) error {
	e.draining.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.CallTimeout)
	if err := e.reg.Deregister(ctx, e.self.ID); err != nil {
		e.logger.WarnContext(ctx, "cannot leave the worker registry", "error", err)
	}
	cancel()
	e.logger.Info("session worker draining", "sessions", e.table.len(), "timeout", e.cfg.DrainTimeout.String())

	deadline := time.NewTimer(e.cfg.DrainTimeout)
	defer deadline.Stop()
wait:
	for e.table.len() > 0 && !e.allIdle(e.now()) {
		select {
		case <-e.table.removed:
		case <-ticks:
			e.Tick(context.Background())
		case <-deadline.C:
			break wait
		}
	}
	e.stopped.Store(true)
	handed := 0
	for _, s := range e.table.all() {
		s.mu.Lock()
		if !s.gone {
			e.drop(s)
			handed++
		}
		s.mu.Unlock()
	}
	e.logger.Info("session worker stopped", "handed_off", handed)
	return nil
}

// allIdle reports whether every session held has been silent for
// DrainIdle at now: none is in an exchange (its lock held) or still
// opening.
func (e *Engine) allIdle(now time.Time) bool {
	for _, s := range e.table.all() {
		if !s.mu.TryLock() {
			return false
		}
		idle := s.gone || (s.live && now.Sub(s.lastActive) >= DrainIdle)
		s.mu.Unlock()
		if !idle {
			return false
		}
	}
	return true
}

// movedOn reports whether the session's checkpoint shows that another
// worker took the session further (a later save) or ended it (no
// checkpoint left). A store error counts as not moved on: expiring is then
// the safe default, as the lease fences whatever follows.
func (e *Engine) movedOn(ctx context.Context, s *session) bool {
	if !s.saved {
		return false
	}
	cp, err := e.cps.Load(ctx, s.tenant, s.deviceKey, s.id)
	switch {
	case errors.Is(err, affinity.ErrNoCheckpoint):
		return true
	case err != nil:
		return false
	}
	return cp.FencingToken > s.lease.Token || (cp.FencingToken == s.lease.Token && cp.Seq > s.seq)
}
