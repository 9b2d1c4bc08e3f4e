package natsbus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// The asynchronous publisher stores every message in order and reports
// each outcome; with its slots taken it refuses or waits as asked; a
// publish the stream refuses reports the stream's error.
func TestAsyncPublisher(t *testing.T) {
	nc, js, _ := connectTest(t)
	ctx := context.Background()
	u := testenv.UniqueName(t)
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: strings.ToUpper(u), Subjects: []string{u + ".>"}, MaxMsgsPerSubject: 100,
		Discard: jetstream.DiscardNew, DiscardNewPerSubject: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = js.DeleteStream(ctx, strings.ToUpper(u)) }()

	p := natsbus.NewAsyncPublisher(js, 4, 10*time.Second)
	outcomes := make(chan error, 200)
	for i := range 100 {
		m := nats.NewMsg(u + ".a")
		m.Data = []byte{byte(i)}
		if err := p.Publish(ctx, m, true, func(err error) { outcomes <- err }); err != nil {
			t.Fatal(err)
		}
	}
	p.Wait()
	if n := p.InFlight(); n != 0 {
		t.Fatalf("%d in flight after Wait", n)
	}
	for range 100 {
		if err := <-outcomes; err != nil {
			t.Fatal(err)
		}
	}
	for seq := uint64(1); seq <= 100; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil || m.Data[0] != byte(seq-1) {
			t.Fatalf("message %d: %v, %v", seq, m, err)
		}
	}
	// The subject is full: the stream refuses, the outcome says so.
	if err := p.Publish(ctx, nats.NewMsg(u+".a"), true, func(err error) { outcomes <- err }); err != nil {
		t.Fatal(err)
	}
	var apiErr *jetstream.APIError
	if err := <-outcomes; !errors.As(err, &apiErr) {
		t.Fatalf("publish beyond the subject's bound: %v", err)
	}

	// A slot taken by a publish whose acknowledgement never comes (a
	// subscriber that does not answer, in place of a stream): a publish
	// that does not wait is refused, one that waits gives up with its
	// context.
	silent, err := nc.SubscribeSync(u + "-nostream.x")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = silent.Unsubscribe() }()
	slow := natsbus.NewAsyncPublisher(js, 1, time.Hour)
	if err := slow.Publish(ctx, nats.NewMsg(u+"-nostream.x"), false, nil); err != nil {
		t.Fatal(err)
	}
	if err := slow.Publish(ctx, nats.NewMsg(u+"-nostream.x"), false, nil); !errors.Is(err, natsbus.ErrFull) {
		t.Fatalf("publish with no slot free: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := slow.Publish(cctx, nats.NewMsg(u+"-nostream.x"), true, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting publish with its context ended: %v", err)
	}
}

// A publish whose acknowledgement never comes reports
// context.DeadlineExceeded, not before ackTimeout has passed since it was
// published, whether it starts a period of shared expiry or joins one.
func TestAsyncPublisherTimeout(t *testing.T) {
	nc, js, _ := connectTest(t)
	u := testenv.UniqueName(t)
	silent, err := nc.SubscribeSync(u + ".x")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = silent.Unsubscribe() }()
	const ackTimeout = 200 * time.Millisecond
	p := natsbus.NewAsyncPublisher(js, 8, ackTimeout)
	type outcome struct {
		err     error
		elapsed time.Duration
	}
	outcomes := make(chan outcome, 4)
	for range 4 {
		start := time.Now()
		if err := p.Publish(context.Background(), nats.NewMsg(u+".x"), false, func(err error) {
			outcomes <- outcome{err, time.Since(start)}
		}); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		select {
		case o := <-outcomes:
			if !errors.Is(o.err, context.DeadlineExceeded) || o.elapsed < ackTimeout {
				t.Fatalf("outcome %v after %v, want %v after at least %v", o.err, o.elapsed, context.DeadlineExceeded, ackTimeout)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no outcome for a publish never acknowledged")
		}
	}
	p.Wait()
	if n := p.InFlight(); n != 0 {
		t.Fatalf("%d in flight after Wait", n)
	}
}
