// Package lifecycle runs FleetACS's long-running parts (docs/style.md rule
// 1). Every part is a Service with two phases: Start does what must succeed
// before anything that depends on the part may start (bind its listeners,
// open its store, register with its peers) and returns once the part is
// ready or cannot start; Run serves until its context ends and then stops
// cleanly.
//
// A Group starts its members one at a time in dependency order, each only
// after the ones it depends on have started, so that no listener takes
// traffic that the parts behind it cannot serve yet (a CPE's first Inform
// would get a retry fault). The first member that cannot start ends the
// start with one error naming it. On shutdown the group marks every member
// not ready at once, then stops them in reverse order, so that the parts
// that take traffic (gateways) drain before the parts they depend on
// (session workers, stores) go away, and the admin server with its probes
// stops last. Readiness is reported one way for every member: a member is
// ready from the moment its Start returns until the group begins to stop.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// Service is one long-running part of a process.
type Service interface {
	// Start makes the service ready for the services that depend on it and
	// returns, or returns an error when it cannot start. ctx is the
	// service's context, the same one Run gets: it ends when the service
	// must stop (also while it is starting), so Start may hand it to what
	// it starts. A Start that fails releases what it took.
	Start(ctx context.Context) error
	// Run serves until ctx ends, then stops and returns nil; it returns an
	// error when the service fails while running. It is called only after
	// Start has returned nil.
	Run(ctx context.Context) error
}

// Func adapts a function to a Service that has nothing to do to start: it
// is ready as soon as it is added to a running group.
type Func func(ctx context.Context) error

// Start implements Service.
func (f Func) Start(context.Context) error { return nil }

// Run implements Service.
func (f Func) Run(ctx context.Context) error { return f(ctx) }

// Funcs adapts a pair of functions to a Service. A nil StartFunc starts at
// once; a nil RunFunc waits for the context to end.
type Funcs struct {
	StartFunc func(ctx context.Context) error
	RunFunc   func(ctx context.Context) error
}

// Start implements Service.
func (f Funcs) Start(ctx context.Context) error {
	if f.StartFunc == nil {
		return nil
	}
	return f.StartFunc(ctx)
}

// Run implements Service.
func (f Funcs) Run(ctx context.Context) error {
	if f.RunFunc == nil {
		<-ctx.Done()
		return nil
	}
	return f.RunFunc(ctx)
}

var (
	_ Service = Func(nil)
	_ Service = Funcs{}
)

// GroupOptions configure a Group.
type GroupOptions struct {
	// Logger; nil discards.
	Logger *slog.Logger
	// StopTimeout bounds how long each member may take to stop once its
	// context is cancelled before the group gives up on it and moves on.
	StopTimeout time.Duration
	// Health, when set, gets one component per member, named after it.
	Health *Health
	// OnReady, when set, hears every change of a member's readiness (it
	// runs on the group's goroutine: keep it short).
	OnReady func(member string, ready bool)
	// OnStarted, when set, is called once every member has started: every
	// listener is bound, so it may tell the addresses (a start-up banner).
	OnStarted func()
}

// Group runs services together. The zero value is not usable; use NewGroup.
type Group struct {
	opts    GroupOptions
	logger  *slog.Logger
	members []member
}

type member struct {
	name string
	svc  Service
	deps []string
}

// NewGroup returns an empty group.
func NewGroup(opts GroupOptions) *Group {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Group{opts: opts, logger: logger}
}

// Add appends a service that depends on the members named in deps, which
// must have been added before it: members start in the order added, so
// every dependency has started before its dependents. Add panics on a
// duplicate name or an unknown dependency, which are programming errors.
func (g *Group) Add(name string, s Service, deps ...string) {
	if g.index(name) >= 0 {
		panic(fmt.Sprintf("lifecycle: service %q added twice", name))
	}
	for _, d := range deps {
		if g.index(d) < 0 {
			panic(fmt.Sprintf("lifecycle: service %q depends on %q, which was not added before it", name, d))
		}
	}
	g.members = append(g.members, member{name: name, svc: s, deps: slices.Clone(deps)})
	if g.opts.Health != nil {
		g.opts.Health.Register(name)
	}
}

func (g *Group) index(name string) int {
	return slices.IndexFunc(g.members, func(m member) bool { return m.name == name })
}

// StartError reports a member that could not start.
type StartError struct {
	Service string
	Err     error
}

func (e *StartError) Error() string { return fmt.Sprintf("start %s: %v", e.Service, e.Err) }
func (e *StartError) Unwrap() error { return e.Err }

// ErrStopTimeout reports a service that did not stop within the group's
// stop timeout.
var ErrStopTimeout = errors.New("service did not stop in time")

// running is a started member.
type running struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed
}

// Run starts the members in order and blocks until ctx ends or a member's
// Run returns (with or without an error). It then marks every member not
// ready, stops the started members one at a time in reverse order, each
// with its own cancellation, and returns the error that ended the group (a
// *StartError when a member could not start), joined with the errors of
// members that failed while stopping and with stop timeouts. A shutdown
// asked for (ctx ended) while a member is starting interrupts that start
// and is not an error.
func (g *Group) Run(ctx context.Context) error {
	exited := make(chan *running, len(g.members))
	var started []*running
	var first error
	var ended *running // the member whose return ended the group
	for _, m := range g.members {
		if ctx.Err() != nil {
			break
		}
		mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		// A shutdown asked for during the start interrupts it.
		stopWatching := context.AfterFunc(ctx, cancel)
		g.logger.Debug("service starting", "component", m.name, "after", m.deps)
		err := m.svc.Start(mctx)
		stopWatching()
		if err != nil {
			cancel()
			if ctx.Err() == nil {
				first = &StartError{Service: m.name, Err: err}
				g.logger.Error("service could not start", "component", m.name, "err", err)
			}
			break
		}
		r := &running{name: m.name, cancel: cancel, done: make(chan struct{})}
		started = append(started, r)
		go func() {
			r.err = m.svc.Run(mctx)
			close(r.done)
			exited <- r
		}()
		g.setReady(m.name, true)
		g.logger.Info("service started", "component", m.name)
	}

	if first == nil && ctx.Err() == nil {
		if g.opts.OnStarted != nil {
			g.opts.OnStarted()
		}
		select {
		case <-ctx.Done():
		case r := <-exited:
			ended = r
			if r.err != nil {
				first = fmt.Errorf("%s: %w", r.name, r.err)
				g.logger.Error("service failed", "component", r.name, "err", r.err)
			} else {
				g.logger.Info("service returned", "component", r.name)
			}
		}
	}

	// Not ready first, all at once: load balancers and probes learn of the
	// shutdown before anything stops taking traffic.
	for _, r := range started {
		g.setReady(r.name, false)
	}
	var errs []error
	if first != nil {
		errs = append(errs, first)
	}
	for i := len(started) - 1; i >= 0; i-- {
		r := started[i]
		r.cancel()
		timer := time.NewTimer(g.opts.StopTimeout)
		select {
		case <-r.done:
			timer.Stop()
			// The member that ended the group has had its error reported.
			if r.err != nil && r != ended {
				errs = append(errs, fmt.Errorf("%s: %w", r.name, r.err))
			}
			g.logger.Info("service stopped", "component", r.name)
		case <-timer.C:
			errs = append(errs, fmt.Errorf("%s: %w after %s", r.name, ErrStopTimeout, g.opts.StopTimeout))
			g.logger.Error("service did not stop in time", "component", r.name)
		}
	}
	return errors.Join(errs...)
}

func (g *Group) setReady(name string, ready bool) {
	if g.opts.Health != nil {
		g.opts.Health.SetReady(name, ready)
	}
	if g.opts.OnReady != nil {
		g.opts.OnReady(name, ready)
	}
}
