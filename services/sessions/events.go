package sessions

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/natsbus"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

// ackTimeout bounds the wait for a published event's acknowledgement.
const ackTimeout = 30 * time.Second

// NATSEvents publishes the device events of ended sessions to NATS
// JetStream (docs/sessions.md, "Device events"). It is the engine's Watcher:
// called on the session's path, it never waits for NATS. Publishes are
// asynchronous, at most maxInFlight unacknowledged at a time; an event over
// that, or whose publish fails, is counted in
// fleetacs.sessions.events_failed{reason} and waits in a redo queue
// (natsbus.Redo, at most maxRedoEvents) to be published again, a device's
// later events behind it (docs/events.md, "Delivery"). Run publishes them.
type NATSEvents struct {
	js     jetstream.JetStream
	names  natsbus.Names
	prop   propagation.TextMapPropagator
	logger *slog.Logger
	failed metric.Int64Counter
	pub    *natsbus.AsyncPublisher
	redo   *natsbus.Redo
}

// maxRedoEvents bounds the device events waiting to be published again.
const maxRedoEvents = 20_000

var _ engine.Watcher = (*NATSEvents)(nil)

// NewNATSEvents returns the publisher; it does no I/O. prop nil publishes
// without trace context.
func NewNATSEvents(js jetstream.JetStream, names natsbus.Names, prop propagation.TextMapPropagator, maxInFlight int,
	logger *slog.Logger, mp metric.MeterProvider) (*NATSEvents, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	failed, err := mp.Meter("github.com/fleetacs/fleetacs/services/sessions").Int64Counter("fleetacs.sessions.events_failed",
		metric.WithDescription("device events not published, by reason (full, publish, ack)"))
	if err != nil {
		return nil, err
	}
	p := &NATSEvents{js: js, names: names, prop: prop, logger: logger, failed: failed,
		pub: natsbus.NewAsyncPublisher(js, maxInFlight, ackTimeout), redo: natsbus.NewRedo(js, maxRedoEvents, logger)}
	m := mp.Meter("github.com/fleetacs/fleetacs/services/sessions")
	redo, err := m.Int64ObservableGauge("fleetacs.sessions.events.redo",
		metric.WithDescription("Device events whose publish failed, waiting in this worker to be published again."))
	if err != nil {
		return nil, err
	}
	dropped, err := m.Int64ObservableCounter("fleetacs.sessions.events.dropped",
		metric.WithDescription("Device events dropped because too many waited to be published again (lost)."))
	if err != nil {
		return nil, err
	}
	if _, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(redo, p.redo.Len())
		o.ObserveInt64(dropped, p.redo.Dropped())
		return nil
	}, redo, dropped); err != nil {
		return nil, err
	}
	return p, nil
}

// Run publishes again the events whose publish failed until ctx ends.
func (p *NATSEvents) Run(ctx context.Context) { p.redo.Run(ctx) }

// SessionEnded implements engine.Watcher.
func (p *NATSEvents) SessionEnded(ctx context.Context, r engine.SessionReport) {
	for _, ev := range deviceEvents(r) {
		p.publish(ctx, ev)
	}
}

func (p *NATSEvents) publish(ctx context.Context, ev *eventsv1.Event) {
	data, err := proto.Marshal(ev)
	if err != nil {
		p.drop(ctx, ev, "publish", err)
		return
	}
	m := &nats.Msg{Subject: p.names.Event(ev.GetTenant(), ev.GetKind(), ev.GetDeviceId()), Data: data, Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, ev.GetId())
	natsbus.Inject(ctx, p.prop, m)
	key := ev.GetTenant() + "/" + ev.GetDeviceId()
	if p.redo.Waiting(key) {
		// An earlier event of the device waits: this one goes behind it.
		p.redo.Add(key, m)
		return
	}
	err = p.pub.Publish(ctx, m, false, func(err error) {
		if err != nil {
			p.failure(context.WithoutCancel(ctx), ev, "ack", err, key, m)
		}
	})
	switch {
	case errors.Is(err, natsbus.ErrFull):
		p.failure(ctx, ev, "full", nil, key, m)
	case err != nil:
		p.failure(ctx, ev, "publish", err, key, m)
	}
}

// failure counts and logs a failed publish of ev, and queues its message
// m under key to be published again.
func (p *NATSEvents) failure(ctx context.Context, ev *eventsv1.Event, reason string, err error, key string, m *nats.Msg) {
	p.count(ctx, ev, reason, err, "device event not published; it will be published again")
	p.redo.Add(key, m)
}

// drop counts and logs an event that cannot be published at all.
func (p *NATSEvents) drop(ctx context.Context, ev *eventsv1.Event, reason string, err error) {
	p.count(ctx, ev, reason, err, "device event not published")
}

func (p *NATSEvents) count(ctx context.Context, ev *eventsv1.Event, reason string, err error, msg string) {
	p.failed.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
	p.logger.WarnContext(ctx, msg, "reason", reason, "kind", ev.GetKind(), keyDevice, ev.GetDeviceId(),
		"session_id", ev.GetSessionId(), "error", err)
}

// deviceEvents returns the events a session's end publishes:
//
//   - device.bootstrap, device.boot, device.value_change (with the Inform's
//     parameters, the forced Inform ones marked ForcedInform:
//     docs/protocol.md §5.3), device.diagnostics_complete, when the session
//     completed and its Inform reached inventory; else the CPE sends its
//     Inform again (docs/protocol.md §4.4) and the events come with that
//     session;
//   - device.transfer_complete for every TransferComplete and
//     AutonomousTransferComplete: acknowledged, the CPE will not repeat them;
//   - session.failed when the session did not complete.
//
// A periodic session that completed publishes nothing. Event ids derive
// from the session ID, so the same session reported twice (a retried end)
// is de-duplicated by the stream (Nats-Msg-Id).
func deviceEvents(r engine.SessionReport) []*eventsv1.Event {
	var out []*eventsv1.Event
	add := func(kind string, t time.Time) *eventsv1.Event {
		ev := &eventsv1.Event{Id: r.SessionID + "-" + strconv.Itoa(len(out)), Tenant: r.Tenant, DeviceId: r.DeviceKey,
			Time: timestamppb.New(t), Kind: kind, SessionId: r.SessionID}
		out = append(out, ev)
		return ev
	}
	if r.Outcome == "completed" && r.Recorded {
		var report *eventsv1.DeviceReport
		deviceReport := func() *eventsv1.DeviceReport {
			if report == nil {
				report = &eventsv1.DeviceReport{RemoteIp: r.Inform.RemoteIP}
				for _, e := range r.Inform.Events {
					report.Events = append(report.Events, &eventsv1.InformEvent{Code: e.Code, CommandKey: e.CommandKey})
				}
				for _, p := range r.Params {
					if p.Name == "Device.DeviceInfo.SoftwareVersion" || p.Name == "InternetGatewayDevice.DeviceInfo.SoftwareVersion" {
						report.SoftwareVersion = p.Value
					}
				}
			}
			return report
		}
		for _, k := range []struct{ code, kind string }{
			{"0 BOOTSTRAP", "device.bootstrap"}, {"1 BOOT", "device.boot"},
			{"4 VALUE CHANGE", "device.value_change"}, {"8 DIAGNOSTICS COMPLETE", "device.diagnostics_complete"},
		} {
			if !hasCode(r.Inform.Events, k.code) {
				continue
			}
			dr := deviceReport()
			if k.kind == "device.value_change" {
				dr = proto.Clone(dr).(*eventsv1.DeviceReport)
				// Every parameter of the Inform, as sent: those that changed
				// and the forced ones every Inform carries, which are
				// marked. A forced parameter may have changed too; the
				// Inform alone does not say (docs/events.md, "Subjects").
				for _, p := range r.Params {
					dr.Values = append(dr.Values, &eventsv1.ChangedValue{Name: p.Name, Value: p.Value, Type: p.Type,
						ForcedInform: forcedInform(p.Name)})
				}
			}
			add(k.kind, r.Inform.Time).Payload = &eventsv1.Event_Device{Device: dr}
		}
	}
	for _, c := range r.Completions {
		autonomous := c.Method == "AutonomousTransferComplete"
		if c.Method != "TransferComplete" && !autonomous {
			continue
		}
		add("device.transfer_complete", r.Now).Payload = &eventsv1.Event_TransferComplete{TransferComplete: &eventsv1.TransferComplete{
			CommandKey: c.CommandKey, FaultCode: c.FaultCode, FaultString: c.FaultString,
			StartTime: timestampOf(c.StartTime), CompleteTime: timestampOf(c.CompleteTime), Autonomous: autonomous}}
	}
	if r.Outcome != "completed" {
		reason, detail := failReason(r.Outcome)
		add("session.failed", r.Now).Payload = &eventsv1.Event_SessionFailed{SessionFailed: &eventsv1.SessionFailed{Reason: reason, Detail: detail}}
	}
	return out
}

// failReason maps the engine's outcome to SessionFailed.reason.
func failReason(outcome string) (reason, detail string) {
	switch outcome {
	case "expired":
		return "expired", "the CPE went quiet past its session timeout"
	case "abandoned":
		return "abandoned", "the gateway gave the session up (connection lost)"
	case "replaced":
		return "replaced", "the CPE started a new session on the same connection"
	case "superseded":
		return "lease_lost", "a newer session of the device took over"
	}
	return "fault", "the worker could not record or answer the session"
}

// hasCode reports whether events hold a standard event code, compared by
// number ("1 BOOT" matches "1 Boot", not "10 AUTONOMOUS ...").
func hasCode(events []cwmp.Event, code string) bool {
	num, _, _ := strings.Cut(code, " ")
	for _, e := range events {
		if n, _, _ := strings.Cut(strings.TrimSpace(e.Code), " "); n == num {
			return true
		}
	}
	return false
}
