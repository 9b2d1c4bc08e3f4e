package notifier

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

var testStreams = natsbus.StreamOptions{Replicas: 1, MaxTasksPerDevice: 100, EventsMaxAge: time.Hour, EventsMaxBytes: 64 << 20, WakeMaxAge: time.Minute}

// testStreamsOf connects to the test NATS server and creates streams of
// the test's own, removed when it ends.
func testStreamsOf(ctx context.Context, t *testing.T) (jetstream.JetStream, natsbus.Names) {
	t.Helper()
	nc, js, err := natsbus.Connect(ctx, testenv.NATS(t), t.Name(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	u := testenv.UniqueName(t)
	names := natsbus.New(u, strings.ToUpper(u)+"_")
	if err := natsbus.EnsureStreams(ctx, js, names, testStreams); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range []string{names.TasksStream(), names.WakeStream(), names.EventsStream()} {
			_ = js.DeleteStream(context.Background(), s)
		}
		nc.Close()
	})
	return js, names
}

// TestConsumerEndToEnd runs the service on a real JetStream server: wake
// requests published as the tasks service does come out as
// connection_request events with the request's trace context, and the
// requests are acked.
func TestConsumerEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, names := testStreamsOf(ctx, t)

	cpe := startCPE(t, &digestCPE{user: "u1", pass: "p1", algorithm: "MD5", qop: true})
	targets := &fakeTargets{}
	targets.set("dev-ok", Target{URL: cpe.url, Username: "u1", Password: "p1", HasCredentials: true})
	targets.set("dev-nocreds", Target{URL: cpe.url})
	prop := propagation.TraceContext{}
	s := newService(t, testConfig(), Deps{Targets: targets, JetStream: js, Names: names, Propagator: prop})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	if err := s.Start(runCtx); err != nil {
		t.Fatal(err)
	}
	go func() { done <- s.Run(runCtx) }()

	tid, _ := trace.TraceIDFromHex("0102030405060708090a0b0c0d0e0f10")
	sid, _ := trace.SpanIDFromHex("0102030405060708")
	tctx := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	publish := func(dev string, age time.Duration, tasks ...string) {
		req := &tasksv1.WakeRequest{Tenant: "acme", DeviceId: dev, TaskIds: tasks, RequestTime: timestamppb.New(time.Now().Add(-age))}
		data, _ := proto.Marshal(req)
		m := nats.NewMsg(names.Wake("acme", dev))
		m.Data = data
		natsbus.Inject(tctx, prop, m)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	publish("dev-ok", 0, "T1", "T2")
	publish("dev-nocreds", 0, "T3")
	publish("dev-stale", 5*time.Minute, "T4")
	// Garbage is dropped, not redelivered for ever.
	if _, err := js.Publish(ctx, names.Wake("acme", "junk"), []byte{0xff, 0xff}); err != nil {
		t.Fatal(err)
	}

	events := map[string]*eventsv1.Event{}
	cons, err := js.OrderedConsumer(ctx, names.EventsStream(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{names.EventFilter("acme", "connection_request", "")}})
	if err != nil {
		t.Fatal(err)
	}
	for len(events) < 3 {
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("after %d events: %v", len(events), err)
		}
		var ev eventsv1.Event
		if err := proto.Unmarshal(msg.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		if msg.Headers().Get(jetstream.MsgIDHeader) != ev.GetId() || len(ev.GetId()) != 26 {
			t.Fatalf("Nats-Msg-Id %q, event id %q", msg.Headers().Get(jetstream.MsgIDHeader), ev.GetId())
		}
		if msg.Subject() != names.Event("acme", ev.GetKind(), ev.GetDeviceId()) {
			t.Fatalf("subject %s for kind %s", msg.Subject(), ev.GetKind())
		}
		got := trace.SpanContextFromContext(natsbus.Extract(ctx, prop, msg.Headers()))
		if got.TraceID() != tid {
			t.Fatalf("trace context lost: %v", got)
		}
		events[ev.GetDeviceId()] = &ev
	}
	for dev, want := range map[string]string{"dev-ok": "connection_request.sent", "dev-nocreds": "connection_request.no_credentials", "dev-stale": "connection_request.failed"} {
		ev := events[dev]
		if ev.GetKind() != want || ev.GetConnectionRequest().GetStatus().String() != "WAKE_STATUS_"+strings.ToUpper(strings.TrimPrefix(want, "connection_request.")) {
			t.Fatalf("%s: %v", dev, ev)
		}
	}
	if cr := events["dev-ok"].GetConnectionRequest(); cr.GetTransport() != "http" || len(cr.GetTaskIds()) != 2 || cpe.accepted.Load() != 1 {
		t.Fatalf("dev-ok: %v, CPE accepted %d", cr, cpe.accepted.Load())
	}
	if d := events["dev-stale"].GetConnectionRequest().GetDetail(); !strings.HasPrefix(d, "stale") {
		t.Fatalf("stale detail %q", d)
	}
	// Every wake request was acked (or terminated): the work queue is empty.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := js.Stream(ctx, names.WakeStream())
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d wake requests left in the stream", info.State.Msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestResendWhenNoInform: a device that has not informed ResendAfter
// after its connection request gets it again (Resends times at most); one
// that informed does not.
func TestResendWhenNoInform(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, names := testStreamsOf(ctx, t)
	cpe := startCPE(t, &digestCPE{user: "u1", pass: "p1", algorithm: "MD5", qop: true})
	targets := &fakeTargets{}
	targets.set("quiet", Target{URL: cpe.url, Username: "u1", Password: "p1", HasCredentials: true})
	targets.set("informs", Target{URL: cpe.url, Username: "u1", Password: "p1", HasCredentials: true, LastInform: time.Now().Add(time.Hour)})
	cfg := testConfig()
	cfg.ResendAfter, cfg.Resends = 50*time.Millisecond, 2
	s := newService(t, cfg, Deps{Targets: targets, JetStream: js, Names: names})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	if err := s.Start(runCtx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	for _, dev := range []string{"quiet", "informs"} {
		data, _ := proto.Marshal(&tasksv1.WakeRequest{Tenant: "acme", DeviceId: dev, TaskIds: []string{"T-" + dev}, RequestTime: timestamppb.Now()})
		if _, err := js.Publish(ctx, names.Wake("acme", dev), data); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.OrderedConsumer(ctx, names.EventsStream(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{names.EventFilter("acme", "connection_request", "")}})
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string]int{}
	next := func(wait time.Duration) bool {
		msg, err := cons.Next(jetstream.FetchMaxWait(wait))
		if err != nil {
			return false
		}
		var ev eventsv1.Event
		if err := proto.Unmarshal(msg.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.GetConnectionRequest().GetStatus() == tasksv1.WakeStatus_WAKE_STATUS_SENT {
			sent[ev.GetDeviceId()]++
		}
		return true
	}
	// The quiet device: the request, then two resends.
	for sent["quiet"] < 3 {
		if !next(10 * time.Second) {
			t.Fatalf("events so far %v", sent)
		}
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := s.followUps.Load(); n != 0 {
			return fmt.Errorf("%d follow-ups pending", n)
		}
		return nil
	})
	for next(200 * time.Millisecond) {
	}
	if sent["quiet"] != 3 || sent["informs"] != 1 {
		t.Fatalf("sent %v, want quiet 3 (one request, two resends) and informs 1", sent)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestCoalescedSentOnItsOwn: a wake request that arrives while another to
// the same device is in flight is coalesced with it. Its resend check, run
// while the first is still in flight, looks again later; once the first is
// answered, the second is sent on its own when the device has not informed
// since the second was asked for (the session the first opened started
// before, so it may not have seen the second's task), and not when it has.
// The checks run when the test says (Service.afterFunc), not on a timer.
func TestCoalescedSentOnItsOwn(t *testing.T) {
	cfg := testConfig()
	cfg.ResendAfter, cfg.Resends = time.Hour, 2
	for _, tc := range []struct {
		name string
		// after: the session the first request opened started after the
		// second request was asked for (else between the two).
		after    bool
		wantSent int32
	}{
		{name: "session started before the second request", after: false, wantSent: 2},
		{name: "session started after the second request", after: true, wantSent: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			js, names := testStreamsOf(ctx, t)
			cpe := startCPE(t, &digestCPE{user: "u1", pass: "p1", algorithm: "MD5", qop: true, held: make(chan struct{}, 4), hold: make(chan struct{})})
			targets := &fakeTargets{}
			dev := "dev-" + randomHex(4)
			target := Target{URL: cpe.url, Username: "u1", Password: "p1", HasCredentials: true}
			targets.set(dev, target)
			s := newService(t, cfg, Deps{Targets: targets, JetStream: js, Names: names})
			checks := make(chan func(), 8)
			s.afterFunc = func(_ time.Duration, f func()) { checks <- f }
			check := func(what string) func() {
				t.Helper()
				select {
				case f := <-checks:
					return f
				case <-ctx.Done():
					t.Fatalf("no resend check scheduled %s", what)
					return nil
				}
			}
			runCtx, stop := context.WithCancel(ctx)
			t.Cleanup(stop)
			if err := s.Start(runCtx); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- s.Run(runCtx) }()
			cons, err := js.OrderedConsumer(ctx, names.EventsStream(), jetstream.OrderedConsumerConfig{
				FilterSubjects: []string{names.EventFilter("acme", "connection_request", dev)}})
			if err != nil {
				t.Fatal(err)
			}
			next := func() *eventsv1.ConnectionRequestOutcome {
				t.Helper()
				msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
				if err != nil {
					t.Fatal(err)
				}
				var ev eventsv1.Event
				if err := proto.Unmarshal(msg.Data(), &ev); err != nil {
					t.Fatal(err)
				}
				return ev.GetConnectionRequest()
			}
			wake := func(task string, at time.Time) {
				data, _ := proto.Marshal(&tasksv1.WakeRequest{Tenant: "acme", DeviceId: dev, TaskIds: []string{task}, RequestTime: timestamppb.New(at)})
				if _, err := js.Publish(ctx, names.Wake("acme", dev), data); err != nil {
					t.Fatal(err)
				}
			}

			wake("T1", time.Now())
			select {
			case <-cpe.held: // the first request is in flight
			case <-ctx.Done():
				t.Fatal("the first request never reached the CPE")
			}
			// The device's last session started a minute before the
			// second request, or a minute after.
			second := time.Now()
			target.LastInform = second.Add(-time.Minute)
			if tc.after {
				target.LastInform = second.Add(time.Minute)
			}
			targets.set(dev, target)
			wake("T2", second)
			if cr := next(); cr.GetStatus() != tasksv1.WakeStatus_WAKE_STATUS_COALESCED || cr.GetTaskIds()[0] != "T2" {
				t.Fatalf("second request: %v", cr)
			}
			// Its check, while the first is in flight: if the device has
			// not informed since, it looks again later.
			check("for the coalesced request")()
			var again func()
			if !tc.after {
				again = check("again while the first is in flight")
			}
			close(cpe.hold)
			if cr := next(); cr.GetStatus() != tasksv1.WakeStatus_WAKE_STATUS_SENT || cr.GetTaskIds()[0] != "T1" {
				t.Fatalf("first request: %v", cr)
			}
			first := check("for the first request")
			if !tc.after {
				again()
				cr := next()
				if cr.GetStatus() != tasksv1.WakeStatus_WAKE_STATUS_SENT || cr.GetTaskIds()[0] != "T2" || !strings.HasPrefix(cr.GetDetail(), "sent again") {
					t.Fatalf("second request sent on its own: %v", cr)
				}
				// The session the resend opened.
				target.LastInform = time.Now().Add(time.Minute)
				targets.set(dev, target)
			}
			first() // the device informed since: nothing to add
			select {
			case f := <-checks:
				t.Fatalf("a resend check left over (%p)", f)
			default:
			}
			if n := s.followUps.Load(); n != 0 {
				t.Fatalf("%d resend checks pending", n)
			}
			if n := cpe.accepted.Load(); n != tc.wantSent {
				t.Fatalf("the CPE got %d requests, want %d", n, tc.wantSent)
			}
			stop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFollowUpsBounded: a flood of wake requests (sent or coalesced)
// cannot pile up resend checks: past maxFollowUps pending, no more is
// scheduled.
func TestFollowUpsBounded(t *testing.T) {
	cfg := testConfig()
	cfg.ResendAfter, cfg.Resends = time.Hour, 2
	s := newService(t, cfg, Deps{})
	scheduled := 0
	s.afterFunc = func(time.Duration, func()) { scheduled++ }
	req := &tasksv1.WakeRequest{Tenant: "acme", DeviceId: "d1", TaskIds: []string{"T1"}, RequestTime: timestamppb.Now()}
	s.followUps.Store(maxFollowUps)
	s.followUp(t.Context(), req, time.Now(), 1)
	if scheduled != 0 || s.followUps.Load() != maxFollowUps {
		t.Fatalf("at the bound: %d checks scheduled, %d pending", scheduled, s.followUps.Load())
	}
	s.followUps.Store(maxFollowUps - 1)
	s.followUp(t.Context(), req, time.Now(), 1)
	if scheduled != 1 || s.followUps.Load() != maxFollowUps {
		t.Fatalf("below the bound: %d checks scheduled, %d pending", scheduled, s.followUps.Load())
	}
	// Past the resends, nothing either.
	s.followUps.Store(0)
	s.followUp(t.Context(), req, time.Now(), cfg.Resends+1)
	if scheduled != 1 || s.followUps.Load() != 0 {
		t.Fatalf("past -notifier.resends: %d checks scheduled, %d pending", scheduled, s.followUps.Load())
	}
}
