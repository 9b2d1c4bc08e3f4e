package sessions

import (
	"context"
	"fmt"
	"sync"

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

	mu     sync.Mutex
	stream jetstream.Stream
}

var _ TaskQueue = (*NATSTaskQueue)(nil)

// NewNATSTaskQueue returns the reader; it does no I/O.
func NewNATSTaskQueue(js jetstream.JetStream, names natsbus.Names) *NATSTaskQueue {
	return &NATSTaskQueue{js: js, names: names}
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

// Pending implements TaskQueue: each direct get asks for the first message
// of the device's subject at or after a sequence, starting at 1 and going
// on after the last one found.
func (q *NATSTaskQueue) Pending(ctx context.Context, tenant, deviceKey string, max int) ([]string, error) {
	s, err := q.handle(ctx)
	if err != nil {
		return nil, err
	}
	subj := q.names.TaskQueue(tenant, deviceKey)
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
	return ids, nil
}
