package tasks

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// A waiting CreateTask follows its device's events (docs/tasks.md,
// "Waiting"): the task's end, or a connection request that cannot reach the
// device, answers the call. Events come through a plain NATS subscription
// (JetStream delivers every stored message to subscribers of its subject
// too); the store is read again now and then in case an event was dropped.

// waitEventBuffer bounds the events a waiting call buffers; beyond it NATS
// drops them for this subscriber, and the store's polling covers the gap.
const waitEventBuffer = 256

type waiter struct {
	sub *nats.Subscription
	ch  chan *nats.Msg
}

func (s *Service) subscribeDevice(tenant, device string) (*waiter, error) {
	w := &waiter{ch: make(chan *nats.Msg, waitEventBuffer)}
	sub, err := s.deps.NATS.ChanSubscribe(s.names.EventFilter(tenant, "", device), w.ch)
	if err != nil {
		return nil, fmt.Errorf("subscribe to events of device %s: %w: %w", device, errBus, err)
	}
	_ = sub.SetPendingLimits(waitEventBuffer, 64<<20)
	w.sub = sub
	return w, nil
}

func (w *waiter) close() { _ = w.sub.Unsubscribe() }

// permanentWake are the wake outcomes after which waiting for the device is
// pointless: no connection request will reach it.
func permanentWake(st tasksv1.WakeStatus) bool {
	switch st {
	case tasksv1.WakeStatus_WAKE_STATUS_NO_CREDENTIALS, tasksv1.WakeStatus_WAKE_STATUS_NO_ADDRESS,
		tasksv1.WakeStatus_WAKE_STATUS_ADDRESS_REFUSED:
		return true
	}
	return false
}

// wait returns t once it has ended, its connection request failed for
// good, or d has passed (or the call ended), as the store then holds it.
func (s *Service) wait(ctx context.Context, w *waiter, t *tasksv1.Task, d time.Duration) *tasksv1.Task {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	pollEvery := 500 * time.Millisecond
	poll := time.NewTimer(pollEvery)
	defer poll.Stop()
	reread := func() *tasksv1.Task {
		r, err := s.store.Get(context.WithoutCancel(ctx), t.GetTenant(), t.GetId())
		if err != nil {
			return t
		}
		if nt, err := decodeTask(r); err == nil {
			return nt
		}
		return t
	}
	for {
		select {
		case <-ctx.Done():
			return t
		case <-deadline.C:
			return reread()
		case <-poll.C:
			t = reread()
			if ended(t.GetState()) || permanentWake(t.GetWake().GetStatus()) {
				return t
			}
			pollEvery = min(2*pollEvery, 5*time.Second)
			poll.Reset(pollEvery)
		case m := <-w.ch:
			ev := &eventsv1.Event{}
			if proto.Unmarshal(m.Data, ev) != nil {
				continue
			}
			if et := ev.GetTask(); et.GetId() == t.GetId() && ended(et.GetState()) {
				return reread()
			}
			if cr := ev.GetConnectionRequest(); cr != nil && slices.Contains(cr.GetTaskIds(), t.GetId()) && permanentWake(cr.GetStatus()) {
				nt := reread()
				if !permanentWake(nt.GetWake().GetStatus()) {
					// The outcome is not recorded yet: show it anyway.
					nt = proto.Clone(nt).(*tasksv1.Task)
					nt.Wake = &tasksv1.WakeOutcome{Status: cr.GetStatus(), Detail: cr.GetDetail(), Time: ev.GetTime()}
				}
				return nt
			}
		}
	}
}
