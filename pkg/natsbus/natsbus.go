// Package natsbus names the NATS JetStream streams and subjects FleetACS's
// services share (docs/tasks.md, docs/events.md), creates the streams, and
// carries trace context in message headers. Every service that publishes or
// reads them goes through it, so that a subject is spelled in one place.
//
// Three streams:
//
//   - the task queue (<prefix>TASKS): one subject per device,
//     <root>-internal.tasks.<tenant>.<device>, each message a
//     tasks.v1.QueuedTask. The tasks service publishes a task when it is
//     created and deletes the message once the task has ended; session
//     workers only read it (a direct get by subject: no consumer).
//     After each message it queues, the tasks service publishes a hint on
//     core NATS, <root>-internal.queued.<tenant>.<device> (no stream, no
//     body), from which session workers keep an index of the devices that
//     have something queued (services/sessions, docs/sessions.md "Tasks").
//   - wake-up requests (<prefix>WAKE): <root>-internal.wake.<tenant>.<device>,
//     each a tasks.v1.WakeRequest, a work queue the notifiers share through
//     one durable consumer.
//   - events (<prefix>EVENTS): <root>.<tenant>.events.<kind>.<device>, each
//     an events.v1.Event. The stream sequence is the event's revision.
//
// The internal subjects live under their own root so that no tenant name
// can make an event subject collide with a queue.
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
)

// Names spells the streams and subjects of one FleetACS install. The zero
// value is not usable: use New. Tests give each install its own root and
// prefix, so that they share a NATS server without seeing each other.
type Names struct {
	root, internal, prefix string
}

// DefaultRoot and DefaultStreamPrefix are the production names.
const (
	DefaultRoot         = "fleetacs"
	DefaultStreamPrefix = "FLEETACS_"
)

// New returns the names under subject root root and stream prefix prefix;
// empty values take the defaults.
func New(root, prefix string) Names {
	if root == "" {
		root = DefaultRoot
	}
	if prefix == "" {
		prefix = DefaultStreamPrefix
	}
	return Names{root: root, internal: root + "-internal", prefix: prefix}
}

// TasksStream, WakeStream and EventsStream are the stream names.
func (n Names) TasksStream() string  { return n.prefix + "TASKS" }
func (n Names) WakeStream() string   { return n.prefix + "WAKE" }
func (n Names) EventsStream() string { return n.prefix + "EVENTS" }

// TaskQueue is the subject of a device's task queue.
func (n Names) TaskQueue(tenant, device string) string {
	return n.internal + ".tasks." + Token(tenant) + "." + Token(device)
}

// TaskQueues is the filter of every device's task queue.
func (n Names) TaskQueues() string { return n.internal + ".tasks.>" }

// TaskHint is the core NATS subject on which the tasks service says that it
// queued a message on TaskQueue(tenant, device).
func (n Names) TaskHint(tenant, device string) string {
	return n.internal + ".queued." + Token(tenant) + "." + Token(device)
}

// TaskHints is the filter of every TaskHint subject.
func (n Names) TaskHints() string { return n.internal + ".queued.>" }

// TaskQueueOfHint returns the task queue subject a TaskHint subject names;
// ok false when hint is not one.
func (n Names) TaskQueueOfHint(hint string) (queue string, ok bool) {
	rest, ok := strings.CutPrefix(hint, n.internal+".queued.")
	if !ok || strings.Count(rest, ".") != 1 {
		return "", false
	}
	return n.internal + ".tasks." + rest, true
}

// Wake is the subject of a device's wake-up requests.
func (n Names) Wake(tenant, device string) string {
	return n.internal + ".wake." + Token(tenant) + "." + Token(device)
}

// Event is the subject of an event: kind is "<category>.<name>" (as
// "task.done" or "device.boot"); device may be empty ("_" in the subject).
func (n Names) Event(tenant, kind, device string) string {
	d := "_"
	if device != "" {
		d = Token(device)
	}
	return n.root + "." + Token(tenant) + ".events." + kind + "." + d
}

// EventFilter is the subject filter of a tenant's events of kind (empty:
// every kind; "task": a category; "task.done": one kind) and of device
// (empty: every device).
func (n Names) EventFilter(tenant, kind, device string) string {
	base := n.root + "." + Token(tenant) + ".events."
	d := "*"
	if device != "" {
		d = Token(device)
	}
	switch strings.Count(kind, ".") {
	case 0:
		if kind == "" {
			if device == "" {
				return base + ">"
			}
			return base + "*.*." + d
		}
		return base + kind + ".*." + d
	default:
		return base + kind + "." + d
	}
}

// EventFilterAllTenants is the subject filter of every tenant's events of
// kind (a category such as "connection_request", or one kind), for the
// services that consume events of all tenants.
func (n Names) EventFilterAllTenants(kind string) string {
	if strings.Contains(kind, ".") {
		return n.root + ".*.events." + kind + ".*"
	}
	return n.root + ".*.events." + kind + ".*.*"
}

// ValidKind reports whether kind may name events in a filter: "" or one
// or two tokens of lower-case letters, digits and '_'.
func ValidKind(kind string) bool {
	if kind == "" {
		return true
	}
	parts := strings.Split(kind, ".")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if p == "" {
			return false
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Token makes s one subject token: '.', '*', '>', '%', white space, control
// and non-ASCII bytes become %XX. Tenants and device keys (pkg/deviceid)
// come out unchanged but for a tenant's dots; the mapping is one to one.
func Token(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if escapeByte(s[i]) {
			clean = false
			break
		}
	}
	if clean && s != "" {
		return s
	}
	if s == "" {
		return "%"
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if escapeByte(c) {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func escapeByte(c byte) bool {
	return c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>'
}

// StreamOptions size the streams.
type StreamOptions struct {
	// Replicas of each stream (1 on a single server; 3 in a cluster).
	Replicas int
	// MaxTasksPerDevice bounds a device's queue; a task beyond it is
	// refused (QUEUE_FULL).
	MaxTasksPerDevice int64
	// EventsMaxAge and EventsMaxBytes bound the event stream: WatchEvents
	// and WatchTasks can resume from as far back as it holds.
	EventsMaxAge   time.Duration
	EventsMaxBytes int64
	// WakeMaxAge drops wake-up requests no notifier took in time.
	WakeMaxAge time.Duration
}

// DefaultStreamOptions are the defaults of the flags that set them.
var DefaultStreamOptions = StreamOptions{
	Replicas: 1, MaxTasksPerDevice: 1000,
	EventsMaxAge: 7 * 24 * time.Hour, EventsMaxBytes: 1 << 30, WakeMaxAge: 5 * time.Minute,
}

// StreamConfigs returns the configurations of the three streams.
//
// The task and event streams answer direct gets, and with more than one
// replica every replica answers them, the leader or not: a session
// worker's read of a device's queue goes on while a stream elects a new
// leader after losing a node (a read through the leader would go
// unanswered until the session's exchange deadline). The price: a
// follower a few milliseconds behind its leader can answer that a queue
// is empty just after a task was queued (docs/operations.md, "NATS").
func (n Names) StreamConfigs(o StreamOptions) []jetstream.StreamConfig {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	return []jetstream.StreamConfig{
		{
			Name: n.TasksStream(), Description: "FleetACS per-device task queues",
			Subjects: []string{n.internal + ".tasks.>"}, Retention: jetstream.LimitsPolicy,
			MaxMsgsPerSubject: o.MaxTasksPerDevice, Discard: jetstream.DiscardNew, DiscardNewPerSubject: true,
			Storage: jetstream.FileStorage, Replicas: o.Replicas, AllowDirect: true,
			Duplicates: 2 * time.Minute,
		},
		{
			Name: n.WakeStream(), Description: "FleetACS connection-request requests",
			Subjects: []string{n.internal + ".wake.>"}, Retention: jetstream.WorkQueuePolicy,
			MaxAge: o.WakeMaxAge, Storage: jetstream.FileStorage, Replicas: o.Replicas,
		},
		{
			Name: n.EventsStream(), Description: "FleetACS northbound events",
			Subjects: []string{n.root + ".*.events.>"}, Retention: jetstream.LimitsPolicy,
			MaxAge: o.EventsMaxAge, MaxBytes: o.EventsMaxBytes, Discard: jetstream.DiscardOld,
			Storage: jetstream.FileStorage, Replicas: o.Replicas, AllowDirect: true,
			Duplicates: EventsDuplicateWindow,
		},
	}
}

// EventsDuplicateWindow is how long the events stream remembers an event's
// id (its Nats-Msg-Id) to drop a repeat.
const EventsDuplicateWindow = 2 * time.Minute

// EnsureStreams creates the streams, or updates them to o. In a cluster a
// request can go unanswered (several processes creating the same stream at
// once, a meta leader election after a node was lost): each attempt has
// its own time limit, and a failed one is retried until ctx ends.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, n Names, o StreamOptions) error {
	for _, cfg := range n.StreamConfigs(o) {
		if err := ensureStream(ctx, js, cfg); err != nil {
			return fmt.Errorf("create NATS stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// ensureAttempt bounds one stream or consumer creation or update.
const ensureAttempt = 5 * time.Second

// ensureStream creates cfg, updates the stream when it differs from cfg, and
// leaves it alone otherwise. Every process runs this at start, and most
// starts find the stream as they want it: an update the server does not
// need still rewrites the stream's store while other processes create
// consumers on it, which nats-server does not serialise (a data race
// there, seen under -race), and in a cluster it costs a meta-layer round.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	return retryAPI(ctx, func(actx context.Context) error {
		s, err := js.Stream(actx, cfg.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			_, err = js.CreateStream(actx, cfg)
		case err != nil:
		case !covers(s.CachedInfo().Config, cfg):
			_, err = js.UpdateStream(actx, cfg)
		}
		return err
	})
}

// EnsureConsumer creates the durable consumer cfg on stream, or updates it,
// asking again as EnsureStreams does: in a cluster the request can go
// unanswered while a node is lost and the stream or the meta layer elects
// a leader. It returns when the consumer exists or ctx ends.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	var c jetstream.Consumer
	err := retryAPI(ctx, func(actx context.Context) (err error) {
		c, err = js.Consumer(actx, stream, cfg.Durable)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			c, err = js.CreateConsumer(actx, stream, cfg)
		case err != nil:
		case !covers(c.CachedInfo().Config, cfg):
			c, err = js.UpdateConsumer(actx, stream, cfg)
		}
		return err
	})
	return c, err
}

// covers reports whether the configuration a server holds (have) already
// is want: every field want sets has the same value in have. A field want
// leaves zero is the server's to fill with its default (MaxMsgs -1, a
// duplicates window of two minutes, its own metadata keys), so it is not
// compared; the cost is that returning a field to zero in the code does
// not reach a stream created before, which an operator changes by hand.
func covers[T any](have, want T) bool {
	hv, wv := reflect.ValueOf(have), reflect.ValueOf(want)
	for i := range wv.NumField() {
		f := wv.Field(i)
		if f.IsZero() {
			continue
		}
		if !reflect.DeepEqual(f.Interface(), hv.Field(i).Interface()) {
			return false
		}
	}
	return true
}

// retryAPI runs a JetStream API request, each attempt within ensureAttempt,
// until it succeeds or ctx ends. A configuration the server refuses will
// not change by asking again, but a refusal can also come from a race:
// another process's creation of the same stream in flight makes the
// subjects "overlap". Three refusals in a row are final. No answer and
// "temporarily unavailable" (503, a leader election) are retried until
// ctx ends.
func retryAPI(ctx context.Context, req func(actx context.Context) error) error {
	delay := 100 * time.Millisecond
	refused := 0
	for {
		actx, cancel := context.WithTimeout(ctx, ensureAttempt)
		err := req(actx)
		cancel()
		if err == nil {
			return nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code != 503 {
			if refused++; refused == 3 {
				return err
			}
		} else {
			refused = 0
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), err)
		case <-timer.C:
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// Connect connects to NATS at url as name, waiting up to timeout for the
// first connection, and reconnects for ever after. Every read has a time
// limit: the client's request and flush timeouts.
// Extra options follow the defaults (natsembed.Server.InProcess, say).
func Connect(ctx context.Context, url, name string, timeout time.Duration, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	opts := append([]nats.Option{
		nats.Name(name),
		nats.Timeout(timeout),
		nats.RetryOnFailedConnect(false),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.PingInterval(20 * time.Second),
	}, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("JetStream at %s: %w", url, err)
	}
	if err := ctx.Err(); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// HeaderCarrier adapts nats.Header for OpenTelemetry propagation, so that
// trace context travels with a message.
type HeaderCarrier nats.Header

var _ propagation.TextMapCarrier = HeaderCarrier(nil)

// Get returns the header's first value.
func (h HeaderCarrier) Get(key string) string { return nats.Header(h).Get(key) }

// Set sets the header.
func (h HeaderCarrier) Set(key, value string) { nats.Header(h).Set(key, value) }

// Keys lists the headers.
func (h HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes ctx's trace context into a message's headers (creating
// them); p nil does nothing.
func Inject(ctx context.Context, p propagation.TextMapPropagator, m *nats.Msg) {
	if p == nil {
		return
	}
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	p.Inject(ctx, HeaderCarrier(m.Header))
}

// Extract returns ctx with the trace context of headers; p nil returns ctx.
func Extract(ctx context.Context, p propagation.TextMapPropagator, h nats.Header) context.Context {
	if p == nil || h == nil {
		return ctx
	}
	return p.Extract(ctx, HeaderCarrier(h))
}

// IsNotFound reports whether err says a direct get found no message.
func IsNotFound(err error) bool { return errors.Is(err, jetstream.ErrMsgNotFound) }
