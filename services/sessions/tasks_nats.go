package sessions

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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

// Pending implements TaskQueue: unless the index says the device has
// nothing queued (and fresh is false), each direct get asks for the first
// message of the device's subject at or after a sequence, starting at 1
// and going on after the last one found.
func (q *NATSTaskQueue) Pending(ctx context.Context, tenant, deviceKey string, max int, fresh bool) ([]string, error) {
	subj := q.names.TaskQueue(tenant, deviceKey)
	var gen uint64
	if q.index != nil {
		g, maybe := q.index.lookup(subj)
		if !maybe && !fresh {
			return nil, nil
		}
		gen = g
	}
	s, err := q.handle(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	seq := uint64(1)
	for len(ids) < max {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if natsbus.IsNotFound(err) {
			break
		}
		if err != nil {
			return ids, fmt.Errorf("read task queue %s: %w", subj, err)
		}
		seq = m.Sequence + 1
		var qt tasksv1.QueuedTask
		if err := proto.Unmarshal(m.Data, &qt); err != nil || qt.GetId() == "" {
			// Not a task: skip it rather than block the queue.
			continue
		}
		ids = append(ids, qt.GetId())
	}
	switch {
	case q.index == nil:
	case len(ids) == 0 && seq == 1:
		q.index.forget(subj, gen)
	case len(ids) > 0 && gen == 0:
		q.index.note(subj)
	}
	return ids, nil
}
