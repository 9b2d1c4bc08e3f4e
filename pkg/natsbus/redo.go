package natsbus

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Redo keeps the messages whose publish failed and publishes them again,
// oldest first, until the stream takes them (docs/events.md, "Delivery").
// Each message has a key (a task, a device): while a key has a message
// waiting, its caller queues that key's later messages behind it
// (Waiting, then Add) rather than publish them, so that a consumer sees
// one key's messages in order. The messages wait in memory, at most max;
// beyond, the oldest is dropped.
//
// A message is published again as it was given, headers included: its
// Nats-Msg-Id makes a repeat of one the stream did take (an acknowledgement
// lost) a duplicate the stream drops within its duplicate window.
type Redo struct {
	js     jetstream.JetStream
	max    int
	logger *slog.Logger

	mu    sync.Mutex
	queue []redoEntry
	byKey map[string]int // messages waiting per key
	// n mirrors len(queue), so that Waiting with nothing waiting takes no
	// lock.
	n       atomic.Int64
	dropped atomic.Int64
	wake    chan struct{}
}

type redoEntry struct {
	key string
	msg *nats.Msg
}

// Back-off of Run between failed publishes, and the wait for each.
const (
	redoFirstBackoff = 100 * time.Millisecond
	redoMaxBackoff   = 30 * time.Second
	redoAckTimeout   = 5 * time.Second
)

// NewRedo returns an empty Redo that keeps at most max messages; Run
// publishes them. logger nil logs nothing.
func NewRedo(js jetstream.JetStream, max int, logger *slog.Logger) *Redo {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Redo{js: js, max: max, logger: logger, byKey: map[string]int{}, wake: make(chan struct{}, 1)}
}

// Waiting reports whether key has a message waiting.
func (r *Redo) Waiting(key string) bool {
	if r.n.Load() == 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byKey[key] > 0
}

// Len returns the number of messages waiting.
func (r *Redo) Len() int64 { return r.n.Load() }

// Dropped returns the number of messages dropped over the bound so far.
func (r *Redo) Dropped() int64 { return r.dropped.Load() }

// Add queues m under key; when the queue was full it drops the oldest
// message to make room, logs it, and returns it and true. It never waits
// for NATS.
func (r *Redo) Add(key string, m *nats.Msg) (dropped *nats.Msg, ok bool) {
	r.mu.Lock()
	if len(r.queue) >= r.max && len(r.queue) > 0 {
		d := r.queue[0]
		r.queue[0] = redoEntry{}
		r.queue = r.queue[1:]
		r.forget(d.key)
		r.dropped.Add(1)
		dropped, ok = d.msg, true
	}
	r.queue = append(r.queue, redoEntry{key: key, msg: m})
	r.byKey[key]++
	r.n.Store(int64(len(r.queue)))
	r.mu.Unlock()
	if ok {
		r.logger.Error("message lost: too many wait to be published to NATS", "subject", dropped.Subject,
			"msg_id", dropped.Header.Get(jetstream.MsgIDHeader), "limit", r.max)
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return dropped, ok
}

func (r *Redo) forget(key string) {
	if r.byKey[key]--; r.byKey[key] <= 0 {
		delete(r.byKey, key)
	}
}

func (r *Redo) first() (redoEntry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return redoEntry{}, false
	}
	return r.queue[0], true
}

// published removes e once the stream took it, unless it was dropped
// meanwhile (it is then no longer first).
func (r *Redo) published(e redoEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) > 0 && r.queue[0].msg == e.msg {
		r.queue[0] = redoEntry{}
		r.queue = r.queue[1:]
		r.forget(e.key)
		r.n.Store(int64(len(r.queue)))
	}
}

// Run publishes the waiting messages, oldest first, until ctx ends, and
// logs how many it leaves unpublished. After a failed publish it waits
// before the next try, from 100 ms doubling to 30 s; a success resets the
// wait.
func (r *Redo) Run(ctx context.Context) {
	defer func() {
		if n := r.n.Load(); n > 0 {
			r.logger.Error("messages never published to NATS: their publisher stopped with them waiting", "messages", n)
		}
	}()
	backoff := redoFirstBackoff
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		for {
			e, ok := r.first()
			if !ok {
				break
			}
			pctx, cancel := context.WithTimeout(ctx, redoAckTimeout)
			_, err := r.js.PublishMsg(pctx, e.msg)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.logger.WarnContext(ctx, "message still not published to NATS; trying again", "subject", e.msg.Subject,
					"key", e.key, "waiting", r.n.Load(), "retry_in", backoff, "error", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, redoMaxBackoff)
				continue
			}
			r.published(e)
			backoff = redoFirstBackoff
		}
	}
}
