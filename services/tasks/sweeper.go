package tasks

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/recordid"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/tasks/store"
)

// The sweeper (docs/tasks.md, "Sweeper") looks at records whose DueTime has
// passed: queued tasks past their expiry, dispatched ones past their await
// deadline or without a report for -tasks.dispatch-timeout, and records
// never published to their device's queue; and it deletes ended tasks past
// -tasks.retention. Every replica runs one: each change is a
// compare-and-swap, so two sweepers never apply one change twice.

func (s *Service) sweepLoop(ctx context.Context) {
	tick := time.NewTicker(s.cfg.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "task sweep failed", "error", err)
		}
	}
}

// Sweep handles one batch of due records and deletes one batch of ended
// records past retention; it returns how many records it changed or
// deleted.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	now := s.now()
	due, err := s.store.Due(ctx, now, s.cfg.SweepBatch)
	if err != nil {
		return 0, fmt.Errorf("list due tasks: %w", err)
	}
	n := 0
	for _, r := range due {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		changed, err := s.sweepOne(ctx, r)
		if err != nil {
			s.logger.WarnContext(ctx, "due task not handled", "task_id", r.ID, "tenant", r.Tenant, "error", err)
			continue
		}
		if changed {
			n++
		}
	}
	deleted, err := s.store.DeleteEnded(ctx, now.Add(-s.cfg.Retention), s.cfg.SweepBatch)
	if err != nil {
		return n, fmt.Errorf("delete ended tasks: %w", err)
	}
	return n + deleted, nil
}

func (s *Service) sweepOne(ctx context.Context, r store.Record) (bool, error) {
	unpublished, rewake := false, false
	t, nr, err := s.change(ctx, r, deleteNow, "", func(now time.Time, t *tasksv1.Task, r *store.Record) (bool, error) {
		unpublished, rewake = false, false
		if r.DueTime.IsZero() || now.Before(r.DueTime) {
			return false, nil // changed since it was listed
		}
		switch t.GetState() {
		case tasksv1.TaskState_TASK_STATE_QUEUED:
			if !now.Before(expiryOf(t)) {
				enter(t, tasksv1.TaskState_TASK_STATE_EXPIRED, now, "expired before it reached the CPE")
				return true, nil
			}
			if r.QueueSeq == 0 {
				unpublished = true
				return false, nil
			}
			// Published: a task that asked for a connection request and
			// waited out a retry's back-off wakes its device again (its
			// failed session may have been the one the last request
			// opened); then nothing is due before the expiry.
			if rt := t.GetRetryTime(); rt != nil && !now.Before(rt.AsTime()) && t.GetOptions().GetConnectionRequest() {
				rewake = true
				t.Wake = &tasksv1.WakeOutcome{Status: tasksv1.WakeStatus_WAKE_STATUS_PENDING}
			}
			r.DueTime = expiryOf(t)
			return true, nil
		case tasksv1.TaskState_TASK_STATE_DISPATCHED:
			if d := t.GetAwaitDeadline(); d != nil {
				t.Fault = &tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_TIMEOUT,
					FaultString: "what ends the task did not arrive by " + d.AsTime().UTC().Format(time.RFC3339)}
				enter(t, tasksv1.TaskState_TASK_STATE_FAULT, now, t.Fault.FaultString)
				return true, nil
			}
			prev := sessionOf(t)
			if t.GetAttempts() >= maxAttempts(t) {
				t.Fault = &tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_ACS,
					FaultString: fmt.Sprintf("session %s never reported, and the task's %d attempts are spent", prev, maxAttempts(t))}
				enter(t, tasksv1.TaskState_TASK_STATE_FAULT, now, t.Fault.FaultString)
				return true, nil
			}
			s.requeue(t, r, now, true, fmt.Sprintf("session %s never reported", prev))
			return true, nil
		}
		// Ended: nothing is due.
		r.DueTime = time.Time{}
		return true, nil
	})
	if err != nil {
		return false, err
	}
	if rewake && t.GetState() == tasksv1.TaskState_TASK_STATE_QUEUED {
		s.wake(ctx, t, nr)
	}
	if unpublished && t.GetState() == tasksv1.TaskState_TASK_STATE_QUEUED && nr.QueueSeq == 0 {
		if _, err := s.enqueue(ctx, nr); err != nil && err != errQueueFull {
			return false, err
		}
		return true, nil
	}
	return nr.Version != r.Version, nil
}

// recordWake stores the outcome of a connection request in the tasks that
// asked for it.
func (s *Service) recordWake(ctx context.Context, tenant string, ids []string, w *tasksv1.WakeOutcome) error {
	for _, id := range ids {
		if !recordid.Valid(id) {
			continue
		}
		r, err := s.store.Get(ctx, tenant, id)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if _, _, err := s.change(ctx, r, deleteNow, "", func(_ time.Time, t *tasksv1.Task, _ *store.Record) (bool, error) {
			if t.GetWake() == nil {
				return false, nil // it asked for none
			}
			if cur := t.GetWake(); cur.GetStatus() == w.GetStatus() && cur.GetDetail() == w.GetDetail() {
				return false, nil
			}
			t.Wake = &tasksv1.WakeOutcome{Status: w.GetStatus(), Detail: truncate(w.GetDetail(), 512), Time: w.GetTime()}
			if t.Wake.Time == nil {
				t.Wake.Time = timestamppb.New(s.now())
			}
			return true, nil
		}); err != nil {
			return err
		}
	}
	return nil
}
