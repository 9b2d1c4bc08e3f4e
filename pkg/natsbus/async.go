package natsbus

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// ErrFull is AsyncPublisher.Publish's refusal when as many messages as it
// allows await their acknowledgement and the caller does not wait.
var ErrFull = errors.New("too many NATS publishes awaiting their acknowledgement")

// AsyncPublisher publishes to JetStream without waiting for each
// acknowledgement, so that many publishes share the client's writes and a
// caller's latency does not include the stream's round trip. At most
// maxInFlight messages await their acknowledgement; a goroutine per message
// waits for it, at least ackTimeout and at most an eighth more, and reports
// the outcome.
//
// Messages published from one AsyncPublisher reach the stream in the order
// they were published, unless one fails and the caller publishes it again.
type AsyncPublisher struct {
	js         jetstream.JetStream
	slots      chan struct{}
	ackTimeout time.Duration
	wg         sync.WaitGroup

	// The messages published within one period (an eighth of
	// ackTimeout) share the channel that ends their wait: one timer
	// closes it ackTimeout and a period after the period began. A timer
	// per message cost half of its waiting goroutine's CPU (a task
	// publishes two events, a session one). Each message so waits at
	// least ackTimeout and at most ackTimeout and a period.
	mu        sync.Mutex
	expiry    chan struct{}
	periodEnd time.Time
}

// expiryPeriods is the number of periods in ackTimeout.
const expiryPeriods = 8

// expiryFor returns the channel that closes once a message published at
// now has waited long enough for its acknowledgement.
func (p *AsyncPublisher) expiryFor(now time.Time) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.expiry == nil || !now.Before(p.periodEnd) {
		period := max(p.ackTimeout/expiryPeriods, time.Nanosecond)
		ch := make(chan struct{})
		time.AfterFunc(p.ackTimeout+period, func() { close(ch) })
		p.expiry, p.periodEnd = ch, now.Add(period)
	}
	return p.expiry
}

// NewAsyncPublisher returns a publisher on js; it does no I/O.
func NewAsyncPublisher(js jetstream.JetStream, maxInFlight int, ackTimeout time.Duration) *AsyncPublisher {
	return &AsyncPublisher{js: js, slots: make(chan struct{}, max(maxInFlight, 1)), ackTimeout: ackTimeout}
}

// Publish publishes m. When every slot is taken it waits for one (until
// ctx ends) if wait is set, else it fails with ErrFull. done, if not nil,
// is called once, from another goroutine, with the acknowledgement's
// error, nil when the stream stored the message; when Publish returns an
// error, done is not called.
func (p *AsyncPublisher) Publish(ctx context.Context, m *nats.Msg, wait bool, done func(error)) error {
	if wait {
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	} else {
		select {
		case p.slots <- struct{}{}:
		default:
			return ErrFull
		}
	}
	metrics, start := MetricsOf(p.js), time.Now()
	f, err := p.js.PublishMsgAsync(m)
	if err != nil {
		<-p.slots
		metrics.Since(ctx, telemetry.SystemNATS, "ack_wait", start, err)
		return err
	}
	expiry := p.expiryFor(start)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		var err error
		select {
		case <-f.Ok():
		case err = <-f.Err():
		case <-expiry:
			err = context.DeadlineExceeded
		}
		metrics.Since(context.Background(), telemetry.SystemNATS, "ack_wait", start, err)
		<-p.slots
		if done != nil {
			done(err)
		}
	}()
	return nil
}

// InFlight returns the number of messages awaiting their acknowledgement.
func (p *AsyncPublisher) InFlight() int { return len(p.slots) }

// Wait waits until every message published so far has its outcome
// reported.
func (p *AsyncPublisher) Wait() { p.wg.Wait() }
