package sessions

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// NATSTaskQueue is the TaskQueue port over the device task queues of NATS
// JetStream (pkg/natsbus): direct gets by subject, no consumer, so that a
// device with nothing queued costs one request that finds nothing.
type NATSTaskQueue struct {
	js    jetstream.JetStream
	names natsbus.Names

	// index, when set, spares the sessions of devices with nothing queued
	// their read (taskindex.go).
	index *taskIndex

	mu     sync.Mutex
	stream jetstream.Stream

	// prop reads the trace context the tasks service wrote into each
	// queue message (the span of the API call that created the task);
	// nil: none.
	prop propagation.TextMapPropagator
}

// link adds to the span in ctx (the CWMP exchange that reads the queue) a
// link to the span that queued task id, named in the message's headers
// (docs/operations.md, "Traces").
func (q *NATSTaskQueue) link(ctx context.Context, h nats.Header, id string) {
	span := trace.SpanFromContext(ctx)
	if q.prop == nil || len(h) == 0 || !span.IsRecording() {
		return
	}
	sc := trace.SpanContextFromContext(natsbus.Extract(context.Background(), q.prop, h))
	if sc.IsValid() {
		span.AddLink(trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("fleetacs.task_id", id)}})
	}
}

var _ TaskQueue = (*NATSTaskQueue)(nil)

// NewNATSTaskQueue returns the reader; it does no I/O. With resync > 0 it
// keeps an index of the devices with something queued, rebuilt every
// resync, which Run maintains (until Run runs, every device is read).
func NewNATSTaskQueue(js jetstream.JetStream, names natsbus.Names, resync time.Duration, logger *slog.Logger) *NATSTaskQueue {
	q := &NATSTaskQueue{js: js, names: names}
	if resync > 0 {
		if logger == nil {
			logger = slog.New(slog.DiscardHandler)
		}
		q.index = newTaskIndex(js.Conn, names, q.handle, resync, logger)
	}
	return q
}

// Run maintains the queue's index until ctx ends; without an index it
// returns at once.
func (q *NATSTaskQueue) Run(ctx context.Context) {
	if q.index != nil {
		q.index.run(ctx)
	}
}

// handle returns the task stream's handle, looked up once (js.Stream asks
// the server for the stream's info).
func (q *NATSTaskQueue) handle(ctx context.Context) (jetstream.Stream, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stream != nil {
		return q.stream, nil
	}
	s, err := q.js.Stream(ctx, q.names.TasksStream())
	if err != nil {
		return nil, fmt.Errorf("look up NATS stream %s: %w", q.names.TasksStream(), err)
	}
	q.stream = s
	return s, nil
}

// Pending implements TaskQueue. A device the index says has nothing
// queued costs nothing (unless fresh); one whose messages the index all
// knows costs a direct get of each by its sequence; otherwise each direct
// get asks for the first message of the device's subject at or after a
// sequence, starting at 1 and going on after the last one found, and the
// index learns what the read found.
func (q *NATSTaskQueue) Pending(ctx context.Context, tenant, deviceKey string, max int, fresh bool) ([]string, error) {
	subj := q.names.TaskQueue(tenant, deviceKey)
	var view indexView
	if q.index != nil {
		view = q.index.lookup(subj)
		if !view.maybe && !fresh {
			return nil, nil
		}
	}
	s, err := q.handle(ctx)
	if err != nil {
		return nil, err
	}
	if view.complete && !fresh {
		return q.bySequence(ctx, s, subj, view.seqs, max)
	}
	var ids []string
	var seqs []uint64
	seq := uint64(1)
	all := false
	for len(ids) < max {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if natsbus.IsNotFound(err) {
			all = true
			break
		}
		if err != nil {
			return ids, fmt.Errorf("read task queue %s: %w", subj, err)
		}
		seq = m.Sequence + 1
		seqs = append(seqs, m.Sequence)
		if id, ok := queuedTaskID(m.Data); ok {
			ids = append(ids, id)
			q.link(ctx, m.Header, id)
		}
	}
	if q.index != nil {
		q.index.learned(subj, view.gen, seqs, all)
	}
	return ids, nil
}

// bySequence reads the device's messages at seqs, all of them as far as
// the index knows; those deleted since (their tasks ended) leave the index.
func (q *NATSTaskQueue) bySequence(ctx context.Context, s jetstream.Stream, subj string, seqs []uint64, max int) ([]string, error) {
	var ids []string
	var gone []uint64
	for _, seq := range seqs {
		if len(ids) >= max {
			break
		}
		m, err := s.GetMsg(ctx, seq)
		if natsbus.IsNotFound(err) || err == nil && m.Subject != subj {
			gone = append(gone, seq)
			continue
		}
		if err != nil {
			return ids, fmt.Errorf("read task queue %s at %d: %w", subj, seq, err)
		}
		if id, ok := queuedTaskID(m.Data); ok {
			ids = append(ids, id)
			q.link(ctx, m.Header, id)
		}
	}
	q.index.gone(subj, gone)
	return ids, nil
}

// queuedTaskID returns the task id of a queue message; ok false for a
// body that is not a task, which is skipped rather than block the queue.
func queuedTaskID(data []byte) (string, bool) {
	var qt tasksv1.QueuedTask
	if err := proto.Unmarshal(data, &qt); err != nil || qt.GetId() == "" {
		return "", false
	}
	return qt.GetId(), true
}
