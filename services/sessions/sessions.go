// Package sessions is the session worker service (docs/design.md §1, §2
// steps 3-5): it serves fleetacs.sessions.v1.SessionService to the
// gateways and runs the CWMP sessions they forward in a session engine
// (package engine, which holds the design: operations, checkpoints,
// leases, limits; see also docs/sessions.md).
//
// This package is the engine's gRPC edge and nothing more: it turns
// ExchangeRequests into engine.Requests and engine.Replies into
// ExchangeResponses, and the engine's errors into gRPC status codes; and
// it adapts the inventory's gRPC API to the engine's Inventory port. Keeping
// protobuf and gRPC out of the engine keeps the engine testable on plain Go
// values and lets what is sent to the CPE be decided in one place.
package sessions

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

// Config is the worker's configuration: the engine's.
type Config = engine.Config

// DefaultConfig returns the defaults Config.RegisterFlags registers.
func DefaultConfig() Config { return engine.DefaultConfig() }

// The engine's ports and the types they carry, under this package's name
// for the callers that compose the worker.
type (
	Inventory            = engine.Inventory
	Leases               = engine.Leases
	Checkpoints          = engine.Checkpoints
	Registry             = engine.Registry
	DeviceQuery          = engine.DeviceQuery
	DeviceState          = engine.DeviceState
	Parameter            = engine.Parameter
	Diff                 = engine.Diff
	InformRecord         = engine.InformRecord
	DeviceFields         = engine.DeviceFields
	ProductClass         = engine.ProductClass
	DiscoveryProfile     = engine.DiscoveryProfile
	DiscoveryObservation = engine.DiscoveryObservation
	CRState              = engine.CRState
	CRCredentials        = engine.Credentials
)

// ErrLeaseLost means a newer session holds the device (engine.ErrLeaseLost).
var ErrLeaseLost = engine.ErrLeaseLost

// Deps are the worker's collaborators.
type Deps struct {
	Inventory   Inventory
	Leases      Leases
	Checkpoints Checkpoints
	Registry    Registry
	// Sessions writes a session's checkpoint, affinity record and lease
	// release together (affinity.Store.Sessions). Required: the worker
	// owns its sessions' affinity records.
	Sessions affinity.Sessions
	// Logger defaults to a discarding one.
	Logger *slog.Logger
	// Meter defaults to a no-op provider.
	Meter metric.MeterProvider
	// Now reads the clock; nil means time.Now.
	Now func() time.Time
	// AdvertiseAddr, when set, gives the address gateways dial in place of
	// Config.AdvertiseAddr, asked once when the worker starts.
	AdvertiseAddr func() string
	// Local says that no other worker can resume this worker's sessions
	// (engine.Deps.Local): its affinity store lives in this process alone.
	Local bool

	// JetStream and BusNames reach the task queues and the event stream
	// (pkg/natsbus). Without JetStream the worker runs no tasks and
	// publishes no device events.
	JetStream jetstream.JetStream
	BusNames  natsbus.Names
	// Tasks is the tasks service's internal API; without it the worker
	// runs no tasks.
	Tasks Tasks
	// TaskQueue replaces the NATS queue reader (tests).
	TaskQueue TaskQueue
	// Propagator carries trace context into published events; nil: none.
	Propagator propagation.TextMapPropagator
	// TracerProvider makes the span of each CWMP exchange
	// (docs/operations.md, "Traces"); nil: a no-op provider.
	TracerProvider trace.TracerProvider
	// Watcher replaces the NATS event publisher (tests).
	Watcher engine.Watcher
	// Secrets seals the secrets sessions keep in checkpoints
	// (engine.Deps.Secrets).
	Secrets *secretbox.Keyring
	// Presets is where workers read the tenants' preset sets
	// (presets.go); nil: sessions apply no presets.
	Presets PresetSource
	// FirmwareFiles finds the firmware files presets ask for
	// (firmware.go); nil: a preset's firmware version is only noted.
	FirmwareFiles FirmwareFiles
}

// Worker is a session worker: the fleetacs.sessions.v1.SessionService
// server in front of a session engine.
type Worker struct {
	sessionsv1.UnimplementedSessionServiceServer

	e      *engine.Engine
	tracer trace.Tracer
	// queue is the NATS task queue whose index Run maintains; nil when
	// the worker reads another queue, or none.
	queue *NATSTaskQueue
	// events is the NATS event publisher whose redo queue Run publishes;
	// nil when the worker has another watcher.
	events *NATSEvents
}

var _ sessionsv1.SessionServiceServer = (*Worker)(nil)

// New builds a worker from a validated configuration. It does no I/O.
func New(cfg Config, deps Deps) (*Worker, error) {
	logger, meter := deps.Logger, deps.Meter
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if meter == nil {
		meter = noop.NewMeterProvider()
	}
	var planners []engine.Planner
	queue := deps.TaskQueue
	var natsQueue *NATSTaskQueue
	if queue == nil && deps.JetStream != nil {
		nq := NewNATSTaskQueue(deps.JetStream, deps.BusNames, cfg.TaskIndexResync, logger.With("service", "sessions"))
		nq.prop = deps.Propagator
		queue, natsQueue = nq, nq
	}
	watcher := deps.Watcher
	var events func(context.Context, *eventsv1.Event)
	var natsEvents *NATSEvents
	if watcher == nil && deps.JetStream != nil {
		ev, err := NewNATSEvents(deps.JetStream, deps.BusNames, deps.Propagator, cfg.EventsMaxInFlight, logger.With("service", "sessions"), meter)
		if err != nil {
			return nil, err
		}
		watcher, events, natsEvents = ev, ev.publish, ev
	}
	if deps.Presets != nil {
		pp := newPresetPlanner(cfg.PresetsRefresh, deps.Presets, deps.Secrets, deps.Inventory, logger.With("service", "sessions"), deps.Now)
		pp.files, pp.events = deps.FirmwareFiles, events
		planners = append(planners, pp)
	}
	if queue != nil && deps.Tasks != nil {
		tp, err := newTaskPlanner(cfg, queue, deps.Tasks, deps.Secrets, logger.With("service", "sessions"), meter)
		if err != nil {
			return nil, err
		}
		planners = append(planners, tp)
	}
	e, err := engine.New(cfg, engine.Deps{
		Inventory: deps.Inventory, Leases: deps.Leases, Checkpoints: deps.Checkpoints, Registry: deps.Registry,
		Sessions: deps.Sessions, Logger: deps.Logger, Meter: deps.Meter, Now: deps.Now, AdvertiseAddr: deps.AdvertiseAddr,
		Local: deps.Local, Planners: planners, Watcher: watcher, Secrets: deps.Secrets,
	})
	if err != nil {
		return nil, err
	}
	tp := deps.TracerProvider
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	return &Worker{e: e, tracer: tp.Tracer("github.com/fleetacs/fleetacs/services/sessions"), queue: natsQueue, events: natsEvents}, nil
}

// ID returns the worker's registry ID.
func (w *Worker) ID() string { return w.e.ID() }

// Register adds the SessionService to the process's shared gRPC server.
func (w *Worker) Register(s grpc.ServiceRegistrar) { sessionsv1.RegisterSessionServiceServer(s, w) }

// Sessions returns the number of sessions the worker holds.
func (w *Worker) Sessions() int { return w.e.Sessions() }

// Start reads the quirks file and registers the worker
// (engine.Engine.Start).
func (w *Worker) Start(ctx context.Context) error { return w.e.Start(ctx) }

// Run runs the engine's background work until ctx ends, then drains it
// (engine.Engine.Run).
func (w *Worker) Run(ctx context.Context) error {
	ictx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if w.queue != nil {
		wg.Go(func() { w.queue.Run(ictx) })
	}
	if w.events != nil {
		wg.Go(func() { w.events.Run(ictx) })
	}
	err := w.e.Run(ctx)
	stop()
	wg.Wait()
	return err
}
