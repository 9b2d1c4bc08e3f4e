package tasks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// Watches (docs/events.md, "Revisions and resuming") read the events stream through an
// ordered consumer filtered to the tenant's subjects, from start_revision
// (0: only what comes after the call). A revision is the event's stream
// sequence, so a client that resumes from the last one it saw plus one
// misses nothing the stream still holds.

// maxWatchKinds bounds the kinds of one WatchEvents.
const maxWatchKinds = 16

// eventsServer implements EventsService.
type eventsServer struct {
	eventsv1.UnimplementedEventsServiceServer
	s *Service
}

// WatchTasks implements TasksService.
func (p *publicServer) WatchTasks(req *tasksv1.WatchTasksRequest, stream tasksv1.TasksService_WatchTasksServer) error {
	s := p.s
	ctx := stream.Context()
	tenant, err := s.tenant(ctx, req.GetTenant())
	if err != nil {
		return err
	}
	if d := req.GetDeviceId(); d != "" {
		if err := checkDeviceID("device_id", d); err != nil {
			return s.statusOf(ctx, "watch tasks", nil, err)
		}
	}
	if err := s.checkReady(); err != nil {
		return err
	}
	filter := s.names.EventFilter(tenant, "task", req.GetDeviceId())
	return s.watch(ctx, req.GetStartRevision(), []string{filter}, func(rev uint64, ev *eventsv1.Event) error {
		t := ev.GetTask()
		if t == nil || t.GetTenant() != tenant {
			return nil
		}
		return stream.Send(&tasksv1.WatchTasksResponse{Revision: rev, Task: publicTask(t, false)})
	})
}

// WatchEvents implements EventsService.
func (e *eventsServer) WatchEvents(req *eventsv1.WatchEventsRequest, stream eventsv1.EventsService_WatchEventsServer) error {
	s := e.s
	ctx := stream.Context()
	tenant, err := s.tenant(ctx, req.GetTenant())
	if err != nil {
		return err
	}
	if d := req.GetDeviceId(); d != "" {
		if err := checkDeviceID("device_id", d); err != nil {
			return s.statusOf(ctx, "watch events", nil, err)
		}
	}
	kinds := req.GetKinds()
	if len(kinds) > maxWatchKinds {
		return invalidField("kinds", fmt.Sprintf("at most %d kinds", maxWatchKinds))
	}
	for i, k := range kinds {
		if k == "" || !natsbus.ValidKind(k) {
			return invalidField("kinds["+strconv.Itoa(i)+"]", "a kind (\"device.boot\") or category (\"task\") of lower-case letters, digits and '_'")
		}
	}
	if err := s.checkReady(); err != nil {
		return err
	}
	var filters []string
	for _, k := range coveringKinds(kinds) {
		filters = append(filters, s.names.EventFilter(tenant, k, req.GetDeviceId()))
	}
	if len(filters) == 0 {
		filters = []string{s.names.EventFilter(tenant, "", req.GetDeviceId())}
	}
	return s.watch(ctx, req.GetStartRevision(), filters, func(rev uint64, ev *eventsv1.Event) error {
		if ev.GetTenant() != tenant {
			return nil
		}
		return stream.Send(&eventsv1.WatchEventsResponse{Revision: rev, Event: ev})
	})
}

// coveringKinds drops repeated kinds and kinds of a category also asked
// for: a consumer's filter subjects must not overlap.
func coveringKinds(kinds []string) []string {
	var out []string
	for _, k := range kinds {
		cat, _, _ := strings.Cut(k, ".")
		if slices.Contains(out, k) || cat != k && slices.Contains(kinds, cat) {
			continue
		}
		out = append(out, k)
	}
	return out
}

// watch sends the events of filters from revision start (0: new ones) until
// ctx ends or send fails.
func (s *Service) watch(ctx context.Context, start uint64, filters []string, send func(uint64, *eventsv1.Event) error) error {
	select {
	case s.watches <- struct{}{}:
		defer func() { <-s.watches }()
	default:
		return apiError(codes.ResourceExhausted, errorsv1.ErrorReason_RATE_LIMITED,
			fmt.Sprintf("this server already serves %d watches (-tasks.max-watches): retry later or on another replica", cap(s.watches)), nil)
	}
	st, err := s.js.Stream(ctx, s.names.EventsStream())
	if err != nil {
		return s.statusOf(ctx, "watch", nil, fmt.Errorf("look up the events stream: %w: %w", errBus, err))
	}
	if err := compacted(st.CachedInfo(), start); err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverNewPolicy}
	if start > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return s.statusOf(ctx, "watch", nil, fmt.Errorf("create an ordered consumer: %w: %w", errBus, err))
	}
	if start > 0 {
		// The stream may have dropped the start while the consumer was
		// made: it would then begin later, silently.
		info, err := st.Info(ctx)
		if err != nil {
			return s.statusOf(ctx, "watch", nil, fmt.Errorf("read the events stream: %w: %w", errBus, err))
		}
		if err := compacted(info, start); err != nil {
			return err
		}
	}
	it, err := cons.Messages()
	if err != nil {
		return s.statusOf(ctx, "watch", nil, fmt.Errorf("read the events stream: %w: %w", errBus, err))
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return s.statusOf(ctx, "watch", nil, fmt.Errorf("read the events stream: %w: %w", errBus, err))
		}
		md, err := msg.Metadata()
		if err != nil {
			continue
		}
		ev := &eventsv1.Event{}
		if proto.Unmarshal(msg.Data(), ev) != nil {
			continue
		}
		if err := send(md.Sequence.Stream, ev); err != nil {
			return err
		}
	}
}

func compacted(info *jetstream.StreamInfo, start uint64) error {
	if info == nil || start == 0 || start >= info.State.FirstSeq {
		return nil
	}
	first := strconv.FormatUint(info.State.FirstSeq, 10)
	return apiError(codes.OutOfRange, errorsv1.ErrorReason_REVISION_COMPACTED,
		"the event stream no longer holds revision "+strconv.FormatUint(start, 10)+"; it starts at "+first,
		map[string]string{"first_revision": first})
}
