package tasks

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// A task event whose publish failed (NATS or its events stream out of
// reach for longer than publishData's three tries) is not dropped: it
// waits in the service's redo queue and is published again, in order,
// until the stream takes it (docs/events.md, "Delivery"). While a task has
// an event waiting, its later events queue behind it, so that a watcher
// never sees a task's states out of order. The queue is in memory: what a
// process that dies takes with it is the limit of this repair.

// maxRedoEvents bounds the events waiting to be published again; beyond
// it the oldest is dropped, logged and counted.
const maxRedoEvents = 50_000

// Back-off of the redo loop between failed rounds.
const (
	redoFirstBackoff = 100 * time.Millisecond
	redoMaxBackoff   = 30 * time.Second
)

type redoEvent struct {
	subject, id, taskID, tenant, kind string
	data                              []byte
}

type eventRedo struct {
	mu     sync.Mutex
	queue  []redoEvent
	byTask map[string]int // events waiting per task id
	// n mirrors len(queue), so that a publish with nothing waiting takes
	// no lock.
	n       atomic.Int64
	dropped atomic.Int64
	wake    chan struct{}
}

func newEventRedo() *eventRedo {
	return &eventRedo{byTask: map[string]int{}, wake: make(chan struct{}, 1)}
}

// waiting reports whether taskID has an event waiting.
func (r *eventRedo) waiting(taskID string) bool {
	if r.n.Load() == 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byTask[taskID] > 0
}

// add queues e; it returns the event dropped to make room, if any.
func (r *eventRedo) add(e redoEvent) (dropped redoEvent, ok bool) {
	r.mu.Lock()
	if len(r.queue) >= maxRedoEvents {
		dropped, ok = r.queue[0], true
		r.queue = r.queue[1:]
		r.forget(dropped.taskID)
		r.dropped.Add(1)
	}
	r.queue = append(r.queue, e)
	r.byTask[e.taskID]++
	r.n.Store(int64(len(r.queue)))
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return dropped, ok
}

func (r *eventRedo) forget(taskID string) {
	if r.byTask[taskID]--; r.byTask[taskID] <= 0 {
		delete(r.byTask, taskID)
	}
}

// first returns the oldest event waiting.
func (r *eventRedo) first() (redoEvent, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return redoEvent{}, false
	}
	return r.queue[0], true
}

// published removes e, the oldest event, once the stream took it (unless
// it was dropped meanwhile).
func (r *eventRedo) published(e redoEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) > 0 && r.queue[0].id == e.id && r.queue[0].subject == e.subject {
		r.queue[0] = redoEvent{}
		r.queue = r.queue[1:]
		r.forget(e.taskID)
		r.n.Store(int64(len(r.queue)))
	}
}

// redoLoop publishes the waiting events, oldest first, until ctx ends;
// after a failed publish it waits, doubling the wait up to redoMaxBackoff.
func (s *Service) redoLoop(ctx context.Context) {
	backoff := redoFirstBackoff
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.redo.wake:
		}
		for {
			e, ok := s.redo.first()
			if !ok {
				backoff = redoFirstBackoff
				break
			}
			if err := s.publishOnce(ctx, e.subject, e.id, e.data); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.logger.WarnContext(ctx, "task event still not published; trying again", "task_id", e.taskID, "tenant", e.tenant,
					"kind", e.kind, "waiting", s.redo.n.Load(), "retry_in", backoff, "error", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, redoMaxBackoff)
				continue
			}
			s.redo.published(e)
			backoff = redoFirstBackoff
		}
	}
}
