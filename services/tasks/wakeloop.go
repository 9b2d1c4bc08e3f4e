package tasks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// Connection-request outcomes (docs/tasks.md, "Connection requests"): the notifier
// publishes a connection_request.<status> event naming the tasks that asked
// for it; the replicas of the tasks service share one durable consumer of
// those events and record each outcome in the tasks' wake field.

// wakeConsumer is the durable consumer's name on the events stream.
const wakeConsumer = "tasks_wake_outcomes"

// maxWakeTasks bounds the task ids one outcome may update.
const maxWakeTasks = 1000

func (s *Service) ensureWakeConsumer(ctx context.Context) error {
	c, err := natsbus.EnsureConsumer(ctx, s.js, s.names.EventsStream(), jetstream.ConsumerConfig{
		Durable:       wakeConsumer,
		Description:   "tasks service: connection-request outcomes into Task.wake",
		FilterSubject: s.names.EventFilterAllTenants("connection_request"),
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    10,
		MaxAckPending: 1000,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s on %s: %w", wakeConsumer, s.names.EventsStream(), err)
	}
	s.wakeCons = c
	return nil
}

func (s *Service) wakeLoop(ctx context.Context) {
	for ctx.Err() == nil {
		err := s.consumeWake(ctx)
		if ctx.Err() != nil {
			return
		}
		s.logger.WarnContext(ctx, "connection-request outcomes not consumed; trying again", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (s *Service) consumeWake(ctx context.Context) error {
	it, err := s.wakeCons.Messages(jetstream.PullMaxMessages(100))
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() != nil {
				return nil
			}
			return err
		}
		ev := &eventsv1.Event{}
		cr := (*eventsv1.ConnectionRequestOutcome)(nil)
		if proto.Unmarshal(msg.Data(), ev) == nil {
			cr = ev.GetConnectionRequest()
		}
		if cr == nil || len(cr.GetTaskIds()) == 0 || len(cr.GetTaskIds()) > maxWakeTasks {
			_ = msg.Ack()
			continue
		}
		hctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err = s.recordWake(hctx, ev.GetTenant(), cr.GetTaskIds(), &tasksv1.WakeOutcome{Status: cr.GetStatus(), Detail: cr.GetDetail(), Time: ev.GetTime()})
		cancel()
		if err != nil {
			s.logger.WarnContext(ctx, "connection-request outcome not recorded", "tenant", ev.GetTenant(), "error", err)
			_ = msg.NakWithDelay(5 * time.Second)
			continue
		}
		_ = msg.Ack()
	}
}
