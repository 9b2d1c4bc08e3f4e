package sessions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
)

// Start registers the worker in the registry: gateways route sessions to
// it from then on, so the worker is started once it is registered. A worker
// built with Deps.AdvertiseAddr learns the address it registers here.
func (w *Worker) Start(ctx context.Context) error {
	if w.advertise != nil {
		w.self.Addr = w.advertise()
	}
	rctx, cancel := context.WithTimeout(ctx, w.cfg.CallTimeout)
	err := w.reg.Register(rctx, w.self, w.cfg.RegistryTTL)
	cancel()
	if err != nil {
		return fmt.Errorf("register session worker %s: %w", w.self.ID, err)
	}
	w.lastBeat = w.now()
	w.registered = true
	w.logger.InfoContext(ctx, "session worker registered", "worker_id", w.self.ID, "addr", w.self.Addr, "capacity", w.self.Capacity)
	return nil
}

// Run keeps the worker registered, renews the leases of its sessions and
// expires idle ones until ctx ends; then it drains (see drain) and returns.
// It registers the worker first when Start has not been called, and
// returns an error only when that first registration fails.
func (w *Worker) Run(ctx context.Context) error {
	if !w.registered {
		if err := w.Start(ctx); err != nil {
			return err
		}
	}
	t := time.NewTicker(w.tickInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return w.drain(t.C)
		case <-t.C:
			w.tick(ctx)
		}
	}
}

// tickInterval is how often the background work looks at the sessions: a
// fraction of the shortest period it must keep.
func (w *Worker) tickInterval() time.Duration {
	return max(min(time.Second, w.cfg.LeaseTTL/6, w.cfg.RegistryTTL/6), 10*time.Millisecond)
}

// tick does the background work that is due: the registry heartbeat, lease
// renewals (every third of the lease TTL) and idle-session expiry. Only the
// goroutine running Run calls it (tests call it directly instead).
func (w *Worker) tick(ctx context.Context) {
	now := w.now()
	if !w.draining.Load() && now.Sub(w.lastBeat) >= w.cfg.RegistryTTL/3 {
		cctx, cancel := context.WithTimeout(ctx, w.cfg.CallTimeout)
		if err := w.reg.Register(cctx, w.self, w.cfg.RegistryTTL); err != nil {
			w.metrics.count(w.metrics.failures, "op", failRegistry)
			w.logger.WarnContext(ctx, "registry heartbeat failed", "error", err)
		} else {
			w.lastBeat = now
		}
		cancel()
	}
	for _, s := range w.table.all() {
		// A session busy in an exchange is not idle, and its renewal can
		// wait for the next tick.
		if !s.mu.TryLock() {
			continue
		}
		if !s.gone && s.live {
			w.tickSession(ctx, s, now)
		}
		s.mu.Unlock()
	}
}

func (w *Worker) tickSession(ctx context.Context, s *session, now time.Time) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.CallTimeout)
	defer cancel()
	if now.Sub(s.lastActive) >= s.cs.SessionTimeout()+w.cfg.IdleGrace {
		if w.movedOn(cctx, s) {
			// Another worker resumed the session while this one was
			// silent (paused, partitioned): it shares the lease and
			// token, so ending the session here would release the lease
			// under it and write stale results. Forget it instead.
			w.sessionLogger(s).InfoContext(ctx, "idle session continued elsewhere; forgotten")
			w.table.remove(s)
			return
		}
		w.sessionLogger(s).InfoContext(ctx, "idle session expired", "idle", now.Sub(s.lastActive).String())
		s.cs.Expire()
		_ = w.finish(cctx, s, outcomeExpired)
		return
	}
	if now.Sub(s.lastRenew) < w.cfg.LeaseTTL/3 {
		return
	}
	err := w.leases.Renew(cctx, s.tenant, s.deviceKey, s.id, s.lease.Token, w.cfg.LeaseTTL)
	switch {
	case errors.Is(err, ErrLeaseLost):
		s.cs.Expire()
		w.supersede(cctx, s, lostAtRenew)
	case err != nil:
		w.metrics.count(w.metrics.failures, "op", failRenew)
		w.sessionLogger(s).WarnContext(ctx, "cannot renew device lease", "error", err)
	default:
		s.lastRenew = now
	}
}

// drain runs after Run's context ended: the worker leaves the registry and
// refuses new sessions, lets open ones finish for up to DrainTimeout (still
// renewing and expiring them), then hands the rest off: it forgets them but
// leaves their checkpoints and leases, so the worker a gateway tries next
// resumes each one where it stood.
func (w *Worker) drain(ticks <-chan time.Time) error {
	w.draining.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.CallTimeout)
	if err := w.reg.Deregister(ctx, w.self.ID); err != nil {
		w.logger.WarnContext(ctx, "cannot leave the worker registry", "error", err)
	}
	cancel()
	w.logger.Info("session worker draining", "sessions", w.table.len(), "timeout", w.cfg.DrainTimeout.String())

	deadline := time.NewTimer(w.cfg.DrainTimeout)
	defer deadline.Stop()
wait:
	for w.table.len() > 0 {
		select {
		case <-w.table.removed:
		case <-ticks:
			w.tick(context.Background())
		case <-deadline.C:
			break wait
		}
	}
	w.stopped.Store(true)
	handed := 0
	for _, s := range w.table.all() {
		s.mu.Lock()
		if !s.gone {
			w.table.remove(s)
			handed++
		}
		s.mu.Unlock()
	}
	w.logger.Info("session worker stopped", "handed_off", handed)
	return nil
}

// movedOn reports whether the session's checkpoint shows that another
// worker took the session further (a later save) or ended it (no
// checkpoint left). A store error counts as not moved on: expiring is then
// the safe default, as the lease fences whatever follows.
func (w *Worker) movedOn(ctx context.Context, s *session) bool {
	if !s.saved {
		return false
	}
	cp, err := w.cps.Load(ctx, s.tenant, s.deviceKey, s.id)
	switch {
	case errors.Is(err, affinity.ErrNoCheckpoint):
		return true
	case err != nil:
		return false
	}
	return cp.FencingToken > s.lease.Token || (cp.FencingToken == s.lease.Token && cp.Seq > s.seq)
}
