package natsbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/telemetry"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// connectTest connects to the test server as the test, closing the
// connection when it ends, and returns names unique to the test; streams
// it creates under them are deleted at the end.
func connectTest(t *testing.T) (*nats.Conn, jetstream.JetStream, natsbus.Names) {
	t.Helper()
	nc, js, err := natsbus.Connect(t.Context(), testenv.NATS(t), t.Name(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	u := testenv.UniqueName(t)
	n := natsbus.New(u, strings.ToUpper(u)+"_")
	t.Cleanup(func() {
		for _, s := range []string{n.TasksStream(), n.WakeStream(), n.EventsStream()} {
			_ = js.DeleteStream(context.Background(), s)
		}
		nc.Close()
	})
	return nc, js, n
}

func TestToken(t *testing.T) {
	for in, want := range map[string]string{
		"default":              "default",
		"isp.eu":               "isp%2Eeu",
		"00259E-HG8245-ABC%2D": "00259E-HG8245-ABC%2D",
		"a b*c>":               "a%20b%2Ac%3E",
		"":                     "%",
	} {
		if got := natsbus.Token(in); got != want {
			t.Errorf("Token(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSubjects(t *testing.T) {
	n := natsbus.New("", "")
	tests := []struct{ got, want string }{
		{n.TaskQueue("isp.eu", "OUI-SN"), "fleetacs-internal.tasks.isp%2Eeu.OUI-SN"},
		{n.Wake("default", "OUI-SN"), "fleetacs-internal.wake.default.OUI-SN"},
		{n.Event("default", "task.done", "OUI-SN"), "fleetacs.default.events.task.done.OUI-SN"},
		{n.Event("default", "session.failed", ""), "fleetacs.default.events.session.failed._"},
		{n.EventFilter("default", "", ""), "fleetacs.default.events.>"},
		{n.EventFilter("default", "", "D"), "fleetacs.default.events.*.*.D"},
		{n.EventFilter("default", "task", ""), "fleetacs.default.events.task.*.*"},
		{n.EventFilter("default", "device.boot", "D"), "fleetacs.default.events.device.boot.D"},
		{n.EventsStream(), "FLEETACS_EVENTS"},
		{n.EventFilterAllTenants("connection_request"), "fleetacs.*.events.connection_request.*.*"},
		{n.EventFilterAllTenants("task.done"), "fleetacs.*.events.task.done.*"},
		{n.TaskHint("isp.eu", "OUI-SN"), "fleetacs-internal.queued.isp%2Eeu.OUI-SN"},
		{n.TaskHints(), "fleetacs-internal.queued.>"},
		{n.TaskQueues(), "fleetacs-internal.tasks.>"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	for hint, want := range map[string]string{
		n.TaskHint("isp.eu", "OUI-SN"):        n.TaskQueue("isp.eu", "OUI-SN"),
		"fleetacs-internal.queued.x":          "",
		"fleetacs-internal.queued.a.b.c":      "",
		"fleetacs-internal.tasks.a.b":         "",
		"other-internal.queued.default.OUI-S": "",
	} {
		if got, ok := n.TaskQueueOfHint(hint); got != want || ok != (want != "") {
			t.Errorf("TaskQueueOfHint(%q) = %q, %v; want %q", hint, got, ok, want)
		}
	}
	for kind, ok := range map[string]bool{"": true, "task": true, "device.value_change": true, "a.b.c": false, "Task": false, "task.": false, "t>": false} {
		if natsbus.ValidKind(kind) != ok {
			t.Errorf("ValidKind(%q) = %v", kind, !ok)
		}
	}
}

// TestEnsureStreams creates the streams on a real JetStream server twice
// (the second time an update) and checks a tenant named like an internal
// subject cannot reach a queue.
func TestEnsureStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, js, n := connectTest(t)
	for range 2 {
		if err := natsbus.EnsureStreams(ctx, js, n, TestStreamOptions); err != nil {
			t.Fatal(err)
		}
	}
	ack, err := js.Publish(ctx, n.TaskQueue("tasks", "D1"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Stream != n.TasksStream() {
		t.Fatalf("queue message stored in %s", ack.Stream)
	}
	ack, err = js.Publish(ctx, n.Event("tasks", "task.done", "D1"), []byte("y"))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Stream != n.EventsStream() {
		t.Fatalf("event stored in %s", ack.Stream)
	}
	s, err := js.Stream(ctx, n.TasksStream())
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, 1, jetstreamNext(n.TaskQueue("tasks", "D1")))
	if err != nil || string(m.Data) != "x" {
		t.Fatalf("direct get by subject: %v %v", m, err)
	}
	if _, err := s.GetMsg(ctx, 1, jetstreamNext(n.TaskQueue("tasks", "D2"))); !natsbus.IsNotFound(err) {
		t.Fatalf("empty queue: err %v, want not found", err)
	}
}

// TestEnsureStreamsUpdatesOnlyChanges: a start that finds the streams as it
// wants them sends no update (an update rewrites a stream's store while
// other processes create consumers on it), and a start with a changed
// option updates that stream. The API requests are watched on the wire:
// requests from one connection reach a subscriber in order, so the first
// update seen must be the one the changed option caused.
func TestEnsureStreamsUpdatesOnlyChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	nc, js, n := connectTest(t)
	updates, err := nc.SubscribeSync("$JS.API.STREAM.UPDATE.*")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	o := TestStreamOptions
	for range 2 {
		if err := natsbus.EnsureStreams(ctx, js, n, o); err != nil {
			t.Fatal(err)
		}
	}
	o.EventsMaxAge += time.Hour
	if err := natsbus.EnsureStreams(ctx, js, n, o); err != nil {
		t.Fatal(err)
	}
	m, err := updates.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no update after the events stream's age changed: %v", err)
	}
	var req struct {
		MaxAge time.Duration `json:"max_age"`
	}
	if err := json.Unmarshal(m.Data, &req); err != nil {
		t.Fatal(err)
	}
	if m.Subject != "$JS.API.STREAM.UPDATE."+n.EventsStream() || req.MaxAge != o.EventsMaxAge {
		t.Fatalf("first update: %s with max age %v, want %s with %v (an unchanged start updated a stream)",
			m.Subject, req.MaxAge, n.EventsStream(), o.EventsMaxAge)
	}
	// The subscription shares the connection that sent the requests: once a
	// round trip is done every request sent before it is queued here.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := updates.Pending(); n != 0 {
		t.Fatalf("%d more updates after the change", n)
	}
	s, err := js.Stream(ctx, n.EventsStream())
	if err != nil || s.CachedInfo().Config.MaxAge != o.EventsMaxAge {
		t.Fatalf("events stream after the update: %v", err)
	}
}

// The trace context travels in a message's headers over a real NATS
// connection, written and read by the process's propagator
// (telemetry.Propagator) or OpenTelemetry's, in any combination:
// sampled or not, with a tracestate.
func TestTraceContextTravels(t *testing.T) {
	nc, err := nats.Connect(testenv.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync("trace.travels")
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("0102030405060708090a0b0c0d0e0f10")
	sid, _ := trace.SpanIDFromHex("0102030405060708")
	ts, err := trace.ParseTraceState("vendor=x")
	if err != nil {
		t.Fatal(err)
	}
	props := map[string]propagation.TextMapPropagator{
		"fleetacs": telemetry.Propagator{},
		"otel":     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	for wname, w := range props {
		for rname, r := range props {
			for _, flags := range []trace.TraceFlags{0, trace.FlagsSampled} {
				sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags, TraceState: ts})
				m := &nats.Msg{Subject: "trace.travels", Data: []byte("x")}
				natsbus.Inject(trace.ContextWithSpanContext(context.Background(), sc), w, m)
				if err := nc.PublishMsg(m); err != nil {
					t.Fatal(err)
				}
				in, err := sub.NextMsg(5 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				got := trace.SpanContextFromContext(natsbus.Extract(context.Background(), r, in.Header))
				if !got.Equal(sc.WithRemote(true)) {
					t.Fatalf("written by %s, read by %s: %v, want %v", wname, rname, got, sc)
				}
			}
		}
	}
	// Without a valid traceparent, nothing is read.
	h := nats.Header{}
	h.Set("traceparent", "00-00000000000000000000000000000000-0102030405060708-01")
	if got := trace.SpanContextFromContext(natsbus.Extract(context.Background(), telemetry.Propagator{}, h)); got.IsValid() {
		t.Fatalf("all-zero trace ID read as %v", got)
	}
}

func jetstreamNext(subject string) jetstream.GetMsgOpt { return jetstream.WithGetMsgSubject(subject) }

// TestStreamOptions fit the test server's JetStream limits.
var TestStreamOptions = natsbus.StreamOptions{Replicas: 1, MaxTasksPerDevice: 100, EventsMaxAge: time.Hour, EventsMaxBytes: 64 << 20, WakeMaxAge: time.Minute}

// TestStreamConfigsReplicas: every stream takes the replicas asked for;
// the task stream answers direct gets at every replica count (its readers
// must go on during a leader election).
func TestStreamConfigsReplicas(t *testing.T) {
	n := natsbus.New("", "")
	for _, r := range []int{1, 3, 5} {
		o := natsbus.DefaultStreamOptions
		o.Replicas = r
		for _, cfg := range n.StreamConfigs(o) {
			if cfg.Replicas != r {
				t.Errorf("R%d: stream %s has %d replicas", r, cfg.Name, cfg.Replicas)
			}
			if cfg.Name == n.TasksStream() && !cfg.AllowDirect {
				t.Errorf("R%d: stream %s does not answer direct gets", r, cfg.Name)
			}
		}
	}
}

// TestEnsureStreamsRefused: a configuration the server refuses (three
// replicas on one server) fails after a few attempts with the server's
// reason, rather than being retried until the caller's deadline.
func TestEnsureStreamsRefused(t *testing.T) {
	_, js, n := connectTest(t)
	o := natsbus.DefaultStreamOptions
	o.Replicas = 3
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := natsbus.EnsureStreams(ctx, js, n, o)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "replicas") {
		t.Fatalf("EnsureStreams of R3 on one server: %v (deadline passed: %v)", err, ctx.Err())
	}
}

// EnsureConsumer creates a durable consumer, updates it when asked again,
// and gives up on a request the server refuses (here: no such stream)
// before its context ends.
func TestEnsureConsumer(t *testing.T) {
	_, js, names := connectTest(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := natsbus.EnsureStreams(ctx, js, names, natsbus.StreamOptions{Replicas: 1, MaxTasksPerDevice: 10, EventsMaxAge: time.Hour, EventsMaxBytes: 1 << 20, WakeMaxAge: time.Minute}); err != nil {
		t.Fatal(err)
	}
	cfg := jetstream.ConsumerConfig{Durable: "c1", AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 5}
	c, err := natsbus.EnsureConsumer(ctx, js, names.WakeStream(), cfg)
	if err != nil || c.CachedInfo().Config.MaxDeliver != 5 {
		t.Fatalf("EnsureConsumer: %v", err)
	}
	cfg.MaxDeliver = 7
	if c, err = natsbus.EnsureConsumer(ctx, js, names.WakeStream(), cfg); err != nil || c.CachedInfo().Config.MaxDeliver != 7 {
		t.Fatalf("EnsureConsumer again: %v", err)
	}
	_, err = natsbus.EnsureConsumer(ctx, js, names.WakeStream()+"_MISSING", cfg)
	if !errors.Is(err, jetstream.ErrStreamNotFound) || ctx.Err() != nil {
		t.Fatalf("EnsureConsumer on a missing stream: %v (deadline passed: %v)", err, ctx.Err())
	}
}
