package sessions

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

// natsEnv is a test's own streams on the shared test NATS server, and a
// count of the direct gets made on its task stream.
type natsEnv struct {
	js         jetstream.JetStream
	names      natsbus.Names
	directGets atomic.Int64
}

func newNATSEnv(t *testing.T) *natsEnv {
	t.Helper()
	url := testenv.NATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	u := testenv.UniqueName(t)
	v := &natsEnv{js: js, names: natsbus.New(u, strings.ToUpper(u)+"_")}
	ctx := context.Background()
	if err := natsbus.EnsureStreams(ctx, js, v.names, natsbus.StreamOptions{Replicas: 1, MaxTasksPerDevice: 100,
		EventsMaxAge: time.Hour, EventsMaxBytes: 64 << 20, WakeMaxAge: time.Minute}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range []string{v.names.TasksStream(), v.names.WakeStream(), v.names.EventsStream()} {
			_ = js.DeleteStream(context.Background(), s)
		}
	})
	// Core NATS hands every request to every subscriber of its subject:
	// a subscriber of the stream's direct-get subject sees each get the
	// workers make.
	sub, err := nc.Subscribe("$JS.API.DIRECT.GET."+v.names.TasksStream(), func(*nats.Msg) { v.directGets.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *natsEnv) enqueue(t *testing.T, tenant, device, id string) uint64 {
	t.Helper()
	b, err := proto.Marshal(&tasksv1.QueuedTask{Id: id, CreateTime: timestamppb.New(t0)})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := v.js.Publish(context.Background(), v.names.TaskQueue(tenant, device), b)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// gets waits until n direct gets were seen (the subscriber runs on its own
// goroutine), then checks no more arrive before a flush round trip.
func (v *natsEnv) gets(t *testing.T, nc *nats.Conn, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for v.directGets.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := v.directGets.Load(); got != want {
		t.Fatalf("%d direct gets, want %d", got, want)
	}
}

// The NATS queue reader returns a device's task ids in queue order, only
// its own, bounded; an empty queue costs one direct get; the stream's
// handle is looked up once.
func TestNATSTaskQueue(t *testing.T) {
	v := newNATSEnv(t)
	nc := v.js.Conn()
	for _, id := range []string{"a1", "a2", "a3"} {
		v.enqueue(t, "t.one", "D1", id)
		v.enqueue(t, "t.one", "D2", "other-"+id)
	}
	// A body that is not a QueuedTask is skipped, not fatal.
	if _, err := v.js.Publish(context.Background(), v.names.TaskQueue("t.one", "D1"), []byte{0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	v.enqueue(t, "t.one", "D1", "a4")
	q := NewNATSTaskQueue(v.js, v.names, 0, nil)
	ctx := context.Background()
	ids, err := q.Pending(ctx, "t.one", "D1", 64, false)
	if err != nil || strings.Join(ids, ",") != "a1,a2,a3,a4" {
		t.Fatalf("Pending = %v, %v", ids, err)
	}
	v.gets(t, nc, 6) // five messages and the not-found
	ids, err = q.Pending(ctx, "t.one", "D1", 2, false)
	if err != nil || strings.Join(ids, ",") != "a1,a2" {
		t.Fatalf("bounded Pending = %v, %v", ids, err)
	}
	v.gets(t, nc, 8)
	ids, err = q.Pending(ctx, "t.one", "nobody", 64, false)
	if err != nil || len(ids) != 0 {
		t.Fatalf("empty Pending = %v, %v", ids, err)
	}
	v.gets(t, nc, 9)
}

// A periodic session of a device with nothing queued, on a real NATS
// queue: one direct get, no claim, no event published.
func TestPeriodicSessionOneDirectGet(t *testing.T) {
	v := newNATSEnv(t)
	env := newTaskEnv(t, nil)
	w, err := New(testConfig(), Deps{
		Inventory: env.inv, Leases: env.store.Leases, Checkpoints: env.store.Checkpoints, Registry: env.store.Registry, Sessions: env.store.Sessions,
		Now: env.clock.Now, JetStream: v.js, BusNames: v.names, Tasks: env.tasks,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := env.cpe(answers)
	c.inform(w.e, periodic)
	c.run(w.e)
	v.gets(t, v.js.Conn(), 1)
	if len(env.tasks.claims) != 0 || len(c.sent) != 0 {
		t.Fatalf("%d claims, sent %v", len(env.tasks.claims), c.methods())
	}
	info, err := v.js.Stream(context.Background(), v.names.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 0 {
		t.Fatalf("a periodic session published %d events", n)
	}

	// With a task queued, the same worker claims and runs it.
	v.enqueue(t, testTenant, c.key, "t1")
	env.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, gpv("Device.X.A"))
	c.inform(w.e, periodic)
	c.run(w.e)
	if r := env.tasks.report(t, "t1"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
		t.Fatalf("report %v", r)
	}
	if got := env.tasks.claims[0].GetTaskIds(); len(got) != 1 || got[0] != "t1" {
		t.Fatalf("claimed %v", got)
	}
}

// Device events reach the event stream with their id as Nats-Msg-Id and
// the trace context in their headers.
func TestNATSEventsPublished(t *testing.T) {
	v := newNATSEnv(t)
	reader := sdkmetric.NewManualReader()
	p, err := NewNATSEvents(v.js, v.names, propagation.TraceContext{}, 8, nil, sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	r := engine.SessionReport{
		Tenant: "t.one", DeviceKey: "D1", SessionID: "s1", Outcome: "completed", Recorded: true, Now: t0,
		Inform: engine.InformRecord{Time: t0, RemoteIP: "192.0.2.1", Events: []cwmp.Event{{Code: "1 BOOT"}, {Code: "4 VALUE CHANGE"}, {Code: "7 TRANSFER COMPLETE"}}},
		Params: []cwmp.ParameterValue{{Name: "Device.DeviceInfo.SoftwareVersion", Value: "2.0", Type: "xsd:string"}},
		Completions: []engine.Completion{{Method: "TransferComplete", CommandKey: "k1", FaultCode: 9010, FaultString: "no"},
			{Method: "DUStateChangeComplete", CommandKey: "k2"}},
	}
	p.SessionEnded(ctx, r)
	p.SessionEnded(ctx, r) // the same session again: de-duplicated
	stream, err := v.js.Stream(context.Background(), v.names.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	// Every publish has its outcome.
	p.pub.Wait()
	if n := p.pub.InFlight(); n != 0 {
		t.Fatalf("%d events still in flight", n)
	}
	want := map[string]string{"device.boot": "", "device.value_change": "", "device.transfer_complete": ""}
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := stream.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatalf("event %d: %v", seq, err)
		}
		var ev eventsv1.Event
		if err := proto.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(jetstream.MsgIDHeader) != ev.GetId() || !strings.HasPrefix(m.Header.Get("traceparent"), "00-01") {
			t.Errorf("headers %v for event %s", m.Header, ev.GetId())
		}
		if m.Subject != v.names.Event("t.one", ev.GetKind(), "D1") {
			t.Errorf("subject %s for %s", m.Subject, ev.GetKind())
		}
		switch ev.GetKind() {
		case "device.value_change":
			// SoftwareVersion is a forced Inform parameter: marked so.
			if vals := ev.GetDevice().GetValues(); len(vals) != 1 || vals[0].GetValue() != "2.0" || !vals[0].GetForcedInform() {
				t.Errorf("values %v", vals)
			}
		case "device.boot":
			if ev.GetDevice().GetSoftwareVersion() != "2.0" || len(ev.GetDevice().GetEvents()) != 3 {
				t.Errorf("report %v", ev.GetDevice())
			}
		case "device.transfer_complete":
			if tc := ev.GetTransferComplete(); tc.GetCommandKey() != "k1" || tc.GetFaultCode() != 9010 {
				t.Errorf("transfer %v", tc)
			}
		}
		delete(want, ev.GetKind())
	}
	if len(want) != 0 {
		t.Fatalf("missing %v", want)
	}
	info, err := stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("%d events stored: the repeat was not de-duplicated", info.State.Msgs)
	}
}

// Which events a session's end publishes.
func TestDeviceEvents(t *testing.T) {
	kinds := func(r engine.SessionReport) string {
		var out []string
		for _, ev := range deviceEvents(r) {
			out = append(out, ev.GetKind())
		}
		return strings.Join(out, ",")
	}
	ev := func(codes ...string) []cwmp.Event {
		var out []cwmp.Event
		for _, c := range codes {
			out = append(out, cwmp.Event{Code: c})
		}
		return out
	}
	base := engine.SessionReport{Tenant: "t", DeviceKey: "D", SessionID: "s", Outcome: "completed", Recorded: true}
	for _, tt := range []struct {
		name   string
		mutate func(*engine.SessionReport)
		want   string
	}{
		{"periodic", func(r *engine.SessionReport) { r.Inform.Events = ev("2 PERIODIC") }, ""},
		{"bootstrap", func(r *engine.SessionReport) { r.Inform.Events = ev("0 BOOTSTRAP", "1 BOOT") }, "device.bootstrap,device.boot"},
		{"not 10 as 1", func(r *engine.SessionReport) { r.Inform.Events = ev("10 AUTONOMOUS TRANSFER COMPLETE") }, ""},
		{"diagnostics", func(r *engine.SessionReport) { r.Inform.Events = ev("8 DIAGNOSTICS COMPLETE") }, "device.diagnostics_complete"},
		{"not recorded", func(r *engine.SessionReport) { r.Inform.Events = ev("1 BOOT"); r.Recorded = false }, ""},
		{"failed", func(r *engine.SessionReport) {
			r.Inform.Events = ev("1 BOOT")
			r.Outcome = "expired"
			r.Recorded = true
		}, "session.failed"},
		{"autonomous transfer in a failed session", func(r *engine.SessionReport) {
			r.Outcome = "abandoned"
			r.Completions = []engine.Completion{{Method: "AutonomousTransferComplete"}}
		}, "device.transfer_complete,session.failed"},
	} {
		r := base
		tt.mutate(&r)
		if got := kinds(r); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
	r := base
	r.Outcome = "superseded"
	if f := deviceEvents(r)[0].GetSessionFailed(); f.GetReason() != "lease_lost" {
		t.Errorf("superseded: %v", f)
	}
}

// A value_change event carries every parameter of the Inform and marks
// ForcedInform exactly on the forced Inform parameters (docs/protocol.md
// §5.3), the changed one and a vendor one unmarked; the other events of
// the Inform carry no values.
func TestDeviceEventsForcedInform(t *testing.T) {
	params := []cwmp.ParameterValue{
		{Name: "Device.DeviceInfo.HardwareVersion", Value: "hw1", Type: "xsd:string"},
		{Name: "Device.DeviceInfo.SoftwareVersion", Value: "2.0", Type: "xsd:string"},
		{Name: "Device.ManagementServer.ParameterKey", Value: "k", Type: "xsd:string"},
		{Name: "Device.ManagementServer.ConnectionRequestURL", Value: "http://192.0.2.1:7547/cr", Type: "xsd:string"},
		{Name: "Device.WiFi.SSID.1.SSID", Value: "home", Type: "xsd:string"}, // changed
		{Name: "Device.X_0000C5_Temperature", Value: "41", Type: "xsd:int"},
	}
	forced := map[string]bool{
		"Device.DeviceInfo.HardwareVersion": true, "Device.DeviceInfo.SoftwareVersion": true,
		"Device.ManagementServer.ParameterKey": true, "Device.ManagementServer.ConnectionRequestURL": true,
	}
	r := engine.SessionReport{Tenant: "t", DeviceKey: "D", SessionID: "s", Outcome: "completed", Recorded: true, Now: t0,
		Inform: engine.InformRecord{Time: t0, Events: []cwmp.Event{{Code: "1 BOOT"}, {Code: "4 VALUE CHANGE"}}}, Params: params}
	evs := deviceEvents(r)
	if len(evs) != 2 || evs[0].GetKind() != "device.boot" || evs[1].GetKind() != "device.value_change" {
		t.Fatalf("events %v", evs)
	}
	if vals := evs[0].GetDevice().GetValues(); len(vals) != 0 {
		t.Errorf("device.boot carries values %v", vals)
	}
	vals := evs[1].GetDevice().GetValues()
	if len(vals) != len(params) {
		t.Fatalf("%d values, want %d", len(vals), len(params))
	}
	for i, v := range vals {
		p := params[i]
		if v.GetName() != p.Name || v.GetValue() != p.Value || v.GetType() != p.Type {
			t.Errorf("value %d: %v, want %v", i, v, p)
		}
		if v.GetForcedInform() != forced[p.Name] {
			t.Errorf("%s: forced_inform %t, want %t", p.Name, v.GetForcedInform(), forced[p.Name])
		}
	}

	// The same for an InternetGatewayDevice, whose WAN address is forced
	// under any instance numbers.
	r.Params = []cwmp.ParameterValue{
		{Name: "InternetGatewayDevice.DeviceSummary", Value: "InternetGatewayDevice:1.4[](Baseline:1)"},
		{Name: "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.12.WANPPPConnection.3.ExternalIPAddress", Value: "198.51.100.7"},
		{Name: "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.12.WANPPPConnection.3.Username", Value: "u"},
	}
	vals = deviceEvents(r)[1].GetDevice().GetValues()
	if len(vals) != 3 || !vals[0].GetForcedInform() || !vals[1].GetForcedInform() || vals[2].GetForcedInform() {
		t.Errorf("InternetGatewayDevice values %v", vals)
	}
}

// stuckJS is a JetStream whose async publishes are never acknowledged.
type stuckJS struct {
	jetstream.JetStream
	published atomic.Int64
}

type stuckFuture struct{ m *nats.Msg }

func (f stuckFuture) Ok() <-chan *jetstream.PubAck { return nil }
func (f stuckFuture) Err() <-chan error            { return nil }
func (f stuckFuture) Msg() *nats.Msg               { return f.m }

func (s *stuckJS) PublishMsgAsync(m *nats.Msg, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	s.published.Add(1)
	return stuckFuture{m}, nil
}

// A NATS that does not acknowledge never holds a session: beyond
// -sessions.events-max-in-flight, an event is counted and waits in the redo
// queue, and the device's later events wait behind it without a publish of
// their own.
func TestNATSEventsBoundedInFlight(t *testing.T) {
	js := &stuckJS{}
	reader := sdkmetric.NewManualReader()
	p, err := NewNATSEvents(js, natsbus.New("", ""), nil, 2, nil, sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	r := engine.SessionReport{Tenant: "t", DeviceKey: "D", SessionID: "s", Outcome: "expired"}
	for range 5 {
		p.SessionEnded(context.Background(), r)
	}
	if got := js.published.Load(); got != 2 {
		t.Fatalf("%d published, want 2 in flight", got)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var dropped int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "fleetacs.sessions.events_failed" {
				for _, dp := range sum.DataPoints {
					if v, _ := dp.Attributes.Value("reason"); v.AsString() == "full" {
						dropped += dp.Value
					}
				}
			}
		}
	}
	if dropped != 1 {
		t.Fatalf("%d failed as full, want 1", dropped)
	}
	if n := p.redo.Len(); n != 3 || !p.redo.Waiting("t/D") {
		t.Fatalf("%d events waiting, want 3", n)
	}
	if got := js.published.Load(); got != 2 {
		t.Fatalf("%d published after the redo queue took the rest, want 2", got)
	}
}

// Device events a session publishes while the events stream is out of
// reach wait, and reach the stream, each once, when it is back.
func TestNATSEventsRepublished(t *testing.T) {
	v := newNATSEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := v.js.DeleteStream(ctx, v.names.EventsStream()); err != nil {
		t.Fatal(err)
	}
	p, err := NewNATSEvents(v.js, v.names, nil, 8, nil, sdkmetric.NewMeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	go func() { defer close(ran); p.Run(ctx) }()
	defer func() { cancel(); <-ran }()
	r := engine.SessionReport{
		Tenant: "t", DeviceKey: "D1", SessionID: "s1", Outcome: "completed", Recorded: true, Now: t0,
		Inform: engine.InformRecord{Time: t0, Events: []cwmp.Event{{Code: "1 BOOT"}, {Code: "4 VALUE CHANGE"}}},
	}
	p.SessionEnded(ctx, r)
	waiting := func(want int64) func() error {
		return func() error {
			if n := p.redo.Len(); n != want {
				return fmt.Errorf("%d events waiting, want %d", n, want)
			}
			return nil
		}
	}
	testenv.WaitFor(t, 10*time.Second, waiting(2))
	if err := natsbus.EnsureStreams(ctx, v.js, v.names, natsbus.StreamOptions{Replicas: 1, MaxTasksPerDevice: 100,
		EventsMaxAge: time.Hour, EventsMaxBytes: 64 << 20, WakeMaxAge: time.Minute}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, waiting(0))
	stream, err := v.js.Stream(ctx, v.names.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.State.Msgs != 2 {
		t.Fatalf("events stream: %v, %v", info, err)
	}
	kinds := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var ev eventsv1.Event
		if err := proto.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		kinds[ev.GetKind()] = true
	}
	if !kinds["device.boot"] || !kinds["device.value_change"] {
		t.Fatalf("kinds %v", kinds)
	}
}
