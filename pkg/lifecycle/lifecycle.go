// Package lifecycle runs FleetACS's long-running parts (STYLE rule 1): every
// service is a Run(ctx) error that serves until its context ends and then
// stops cleanly; a Group starts them in order and stops them in reverse
// order, so that the parts that take traffic (gateways) drain before the
// parts they depend on (session workers, stores) go away, and the admin
// server with its probes stops last.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Service is one long-running part of a process.
type Service interface {
	// Run serves until ctx ends, then stops and returns nil; it returns an
	// error when it cannot start or fails while running.
	Run(ctx context.Context) error
}

// Func adapts a function to Service.
type Func func(ctx context.Context) error

// Run implements Service.
func (f Func) Run(ctx context.Context) error { return f(ctx) }

// Named is a service with the name used in logs and errors.
type Named struct {
	Name    string
	Service Service
}

// Group runs services together. The zero value is not usable; use NewGroup.
type Group struct {
	logger      *slog.Logger
	stopTimeout time.Duration
	members     []Named
}

// NewGroup returns an empty group. stopTimeout bounds how long each member
// may take to stop once its context is cancelled before the group gives up
// on it and moves on.
func NewGroup(logger *slog.Logger, stopTimeout time.Duration) *Group {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Group{logger: logger, stopTimeout: stopTimeout}
}

// Add appends a service; services start in the order added.
func (g *Group) Add(name string, s Service) {
	g.members = append(g.members, Named{Name: name, Service: s})
}

// ErrStopTimeout reports a service that did not stop within the group's
// stop timeout.
var ErrStopTimeout = errors.New("service did not stop in time")

// Run starts every member and blocks until ctx ends or a member returns
// (with or without an error). It then stops the members one at a time in
// reverse order of addition, each with its own cancellation, and returns the
// first error seen (the one that ended the group, if any), joined with stop
// timeouts.
func (g *Group) Run(ctx context.Context) error {
	type result struct {
		idx int
		err error
	}
	n := len(g.members)
	cancels := make([]context.CancelFunc, n)
	done := make([]chan struct{}, n)
	results := make(chan result, n)
	for i, m := range g.members {
		mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		cancels[i] = cancel
		done[i] = make(chan struct{})
		go func(i int, m Named) {
			defer close(done[i])
			err := m.Service.Run(mctx)
			results <- result{i, err}
		}(i, m)
		g.logger.Info("service started", "component", m.Name)
	}

	var first error
	exited := make([]bool, n)
	select {
	case <-ctx.Done():
	case r := <-results:
		exited[r.idx] = true
		if r.err != nil {
			first = fmt.Errorf("%s: %w", g.members[r.idx].Name, r.err)
			g.logger.Error("service failed", "component", g.members[r.idx].Name, "err", r.err)
		} else {
			g.logger.Info("service returned", "component", g.members[r.idx].Name)
		}
	}

	var errs []error
	if first != nil {
		errs = append(errs, first)
	}
	for i := n - 1; i >= 0; i-- {
		cancels[i]()
		if exited[i] {
			continue
		}
		timer := time.NewTimer(g.stopTimeout)
		select {
		case <-done[i]:
			timer.Stop()
			g.logger.Info("service stopped", "component", g.members[i].Name)
		case <-timer.C:
			errs = append(errs, fmt.Errorf("%s: %w after %s", g.members[i].Name, ErrStopTimeout, g.stopTimeout))
			g.logger.Error("service did not stop in time", "component", g.members[i].Name)
		}
	}
	// Collect the errors of members that failed while stopping.
	for {
		select {
		case r := <-results:
			if r.err != nil && !exited[r.idx] {
				errs = append(errs, fmt.Errorf("%s: %w", g.members[r.idx].Name, r.err))
			}
			exited[r.idx] = true
			continue
		default:
		}
		break
	}
	return errors.Join(errs...)
}
