// Package tasks is the tasks service (docs/design.md §1, §3; docs/tasks.md):
// it owns task records and their history, serves the public
// fleetacs.tasks.v1.TasksService and fleetacs.events.v1.EventsService to
// OSS/BSS, and the internal TasksInternalService through which session
// workers claim tasks and report what became of them.
//
// Every state change of a task is decided here and written with a
// compare-and-swap on the record's version (package store), so that several
// replicas, their sweepers and the session reports never overwrite each
// other. Each change is published as a task.<state> event on NATS JetStream
// (package natsbus); a queued task is a message in its device's queue
// subject, published after the record is stored and deleted once the task
// has ended.
package tasks

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/tasks/store"

	"go.opentelemetry.io/otel/metric"
)

// Config is the tasks service's configuration (docs/style.md rule 2). Flags
// are "tasks.<kebab-name>"; DefaultConfig holds the defaults. The store's
// settings are StoreConfig's.
type Config struct {
	// SecretsKeyFile is the key file that seals the credentials of
	// Download, Upload, ScheduleDownload and ChangeDUState tasks (package
	// secretbox). Empty: the file the caller names as the default (the
	// fleetacs binary: secrets.key in -data-dir, the inventory's default
	// file, created at first start).
	SecretsKeyFile string
	// Retention is how long an ended task is kept.
	Retention time.Duration
	// SweepInterval is how often the sweeper looks for due records, and
	// SweepBatch how many it handles per look.
	SweepInterval time.Duration
	SweepBatch    int
	// DispatchTimeout is how long a dispatched task waits for its
	// session's report before the sweeper takes it back (the session's
	// worker died and the device has not come back).
	DispatchTimeout time.Duration
	// RetryBase and RetryMax bound the exponential back-off between
	// attempts of a task.
	RetryBase time.Duration
	RetryMax  time.Duration
	// MaxWatches bounds the WatchTasks and WatchEvents streams the process
	// serves at once: each holds a consumer on the NATS server.
	MaxWatches int
}

// DefaultConfig returns the defaults RegisterFlags registers.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("defaults", flag.ContinueOnError))
	return c
}

// RegisterFlags registers the service's flags, named "tasks.<name>", with
// their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.SecretsKeyFile, "tasks.secrets-key-file", "", "file of the keys that encrypt the credentials of Download, Upload, ScheduleDownload and ChangeDUState tasks, one \"[ID ]BASE64\" line per 32-byte key, the first encrypting (empty: secrets.key in -data-dir, the inventory's default file, created at first start); every tasks process of an install needs the same file")
	fs.DurationVar(&c.Retention, "tasks.retention", 30*24*time.Hour, "how long ended tasks (done, fault, expired, cancelled) are kept before the sweeper deletes them")
	fs.DurationVar(&c.SweepInterval, "tasks.sweep-interval", 5*time.Second, "how often the sweeper looks for tasks that expired, timed out, lost their session or were never published to their device's queue")
	fs.IntVar(&c.SweepBatch, "tasks.sweep-batch", 500, "tasks the sweeper handles per look")
	fs.IntVar(&c.MaxWatches, "tasks.max-watches", 1024, "WatchTasks and WatchEvents streams served at once (each holds a NATS consumer); more are refused with RESOURCE_EXHAUSTED")
	fs.DurationVar(&c.DispatchTimeout, "tasks.dispatch-timeout", 10*time.Minute, "how long a dispatched task waits for its session's report before it is queued again (or ends with a fault once its attempts are spent)")
	fs.DurationVar(&c.RetryBase, "tasks.retry-base", 30*time.Second, "back-off before a task's second attempt; it doubles with every further attempt, with jitter")
	fs.DurationVar(&c.RetryMax, "tasks.retry-max", time.Hour, "longest back-off between two attempts of a task")
}

// Validate reports every setting that cannot work.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Retention < time.Minute {
		bad("tasks.retention must be at least 1m, got %s", c.Retention)
	}
	if c.SweepInterval < 10*time.Millisecond || c.SweepInterval > 10*time.Minute {
		bad("tasks.sweep-interval must be 10ms to 10m, got %s", c.SweepInterval)
	}
	if c.SweepBatch < 1 || c.SweepBatch > 10_000 {
		bad("tasks.sweep-batch must be 1 to 10000, got %d", c.SweepBatch)
	}
	if c.MaxWatches < 1 {
		bad("tasks.max-watches must be at least 1, got %d", c.MaxWatches)
	}
	if c.DispatchTimeout < time.Second {
		bad("tasks.dispatch-timeout must be at least 1s, got %s", c.DispatchTimeout)
	}
	if c.RetryBase <= 0 || c.RetryMax < c.RetryBase {
		bad("tasks.retry-base must be positive and at most tasks.retry-max, got %s and %s", c.RetryBase, c.RetryMax)
	}
	return errors.Join(errs...)
}

// Keyring returns the keyring of SecretsKeyFile, or of defaultPath
// (created when missing) when it is empty, not yet loaded: Start loads it.
// A file named explicitly must exist, so that a mistyped path is an error
// rather than a new key.
func (c *Config) Keyring(defaultPath string) *secretbox.Keyring {
	if c.SecretsKeyFile != "" {
		return secretbox.File(c.SecretsKeyFile, false)
	}
	return secretbox.File(defaultPath, true)
}

// Devices says whether a device exists: the inventory's internal API
// (InventoryDevices), a fake in unit tests.
type Devices interface {
	// Exists reports whether tenant has the device; an error when the
	// inventory cannot tell.
	Exists(ctx context.Context, tenant, deviceID string) (bool, error)
}

// Deps are the service's dependencies.
type Deps struct {
	Store store.Store
	// NATS and JetStream reach the streams Names spells; the streams must
	// exist (natsbus.EnsureStreams). NATS nil: JetStream's own connection,
	// read when the service starts (the fleetacs binary connects after
	// building its modules).
	NATS      *nats.Conn
	JetStream jetstream.JetStream
	Names     natsbus.Names
	Devices   Devices
	// Secrets seals operation credentials; Start loads it.
	Secrets *secretbox.Keyring
	// CallerTenants returns the tenants the credentials of a public call
	// cover (apiauth.CallerTenants); nil: every caller covers "default".
	CallerTenants func(context.Context) []string
	// Requester names the principal of a public call for Task.requester
	// (apiauth.FromContext(ctx).ID); nil: empty.
	Requester func(context.Context) string
	// Propagator carries trace context in NATS headers; nil: none.
	Propagator propagation.TextMapPropagator
	// Meter receives the task queue's gauges (queuemetrics.go); nil:
	// none.
	Meter  metric.MeterProvider
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// maxRedoEvents bounds the task events waiting to be published again
// (docs/events.md, "Delivery").
const maxRedoEvents = 50_000

// eventsInFlight bounds the task events awaiting the stream's
// acknowledgement; eventAckTimeout bounds each wait.
const (
	eventsInFlight  = 1024
	eventAckTimeout = 30 * time.Second
)

// DefaultTenant is the tenant of a single-tenant install.
const DefaultTenant = "default"

// Service is the tasks service.
type Service struct {
	cfg    Config
	deps   Deps
	store  store.Store
	js     jetstream.JetStream
	names  natsbus.Names
	logger *slog.Logger
	now    func() time.Time
	// watches holds a slot per watch stream served (Config.MaxWatches).
	watches chan struct{}
	// events publishes the task events (records.go, publishEvent).
	events *natsbus.AsyncPublisher
	// claimed keeps claimed records for their session's report.
	claimed *claimCache
	// recent keeps the records this replica wrote last, for claims.
	recent *recentCache
	// deleting holds a slot per queue delete under way in the
	// background, deletes counts them (records.go, deleteQueued).
	deleting chan struct{}
	deletes  sync.WaitGroup
	// pending tells, per device queue, when its background deletes are
	// done (enqueue waits for them before it calls a queue full).
	pending pendingDeletes
	// redo holds the events whose publish failed (docs/events.md,
	// "Delivery").
	redo *natsbus.Redo
	// testBeforeBackgroundDelete, when set (tests), runs before each
	// background delete.
	testBeforeBackgroundDelete func()

	ready   atomic.Bool
	started bool
	// wg counts the background loops Run starts.
	wg sync.WaitGroup
	streamCache
	// wakeCons is the consumer of connection-request outcomes, set by
	// Start.
	wakeCons jetstream.Consumer
	// metricsReg is the queue gauges' callback, unregistered when Run
	// ends; nil without Deps.Meter.
	metricsReg metric.Registration
}

// New builds the service from a configuration and its dependencies. It
// does no I/O: Start starts the store and loads the keyring.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tasks config: %w", err)
	}
	if deps.Store == nil || deps.JetStream == nil || deps.Devices == nil || deps.Secrets == nil {
		return nil, errors.New("tasks: Store, JetStream, Devices and Secrets are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.CallerTenants == nil {
		deps.CallerTenants = func(context.Context) []string { return []string{DefaultTenant} }
	}
	if deps.Requester == nil {
		deps.Requester = func(context.Context) string { return "" }
	}
	s := &Service{cfg: cfg, deps: deps, store: deps.Store, js: deps.JetStream, names: deps.Names,
		logger: deps.Logger, now: deps.Now, watches: make(chan struct{}, cfg.MaxWatches),
		events:  natsbus.NewAsyncPublisher(deps.JetStream, eventsInFlight, eventAckTimeout),
		claimed: newClaimCache(claimCacheSize), recent: newRecentCache(recentCacheBytes),
		deleting: make(chan struct{}, maxDeletesInFlight), redo: natsbus.NewRedo(deps.JetStream, maxRedoEvents, deps.Logger)}
	if deps.Meter != nil {
		reg, err := s.registerQueueMetrics(deps.Meter)
		if err != nil {
			return nil, err
		}
		s.metricsReg = reg
	}
	return s, nil
}

// RegisterPublic registers TasksService and EventsService on g: a server
// whose interceptors authenticate callers (package apiauth).
func (s *Service) RegisterPublic(g grpc.ServiceRegistrar) {
	tasksv1.RegisterTasksServiceServer(g, &publicServer{s: s})
	eventsv1.RegisterEventsServiceServer(g, &eventsServer{s: s})
}

// RegisterInternal registers TasksInternalService on g: the internal
// listener, never a public one (claimed tasks carry credentials in clear).
func (s *Service) RegisterInternal(g grpc.ServiceRegistrar) {
	tasksv1.RegisterTasksInternalServiceServer(g, &internalServer{s: s})
}

// Start loads the keyring, starts the store and creates the consumer of
// connection-request outcomes; calls are answered once it has returned.
func (s *Service) Start(ctx context.Context) error {
	if s.deps.NATS == nil {
		s.deps.NATS = s.js.Conn()
	}
	if _, err := s.deps.Secrets.Load(); err != nil {
		return fmt.Errorf("start tasks: %w", err)
	}
	if err := s.store.Start(ctx); err != nil {
		return fmt.Errorf("start tasks: %w", err)
	}
	if err := s.ensureWakeConsumer(ctx); err != nil {
		_ = s.store.Close()
		return fmt.Errorf("start tasks: %w", err)
	}
	s.republishRecent(ctx)
	s.started = true
	s.ready.Store(true)
	s.logger.InfoContext(ctx, "tasks store started")
	return nil
}

// eventRepairWindow: at start, the current event of every task changed
// within it is published again, for the events a replica that died took
// with it (docs/events.md, "Delivery"). It is the events stream's
// duplicate window, so that an event the stream already holds is dropped
// as a repeat and no consumer sees one twice.
const eventRepairWindow = natsbus.EventsDuplicateWindow

// maxEventRepair bounds the events published again at start.
const maxEventRepair = 50_000

// republishRecent publishes again the current event of each task changed
// within eventRepairWindow, before the replica serves: the publisher keeps
// its messages in order, so what the replica publishes later comes after.
func (s *Service) republishRecent(ctx context.Context) {
	recs, err := s.store.ChangedSince(ctx, s.now().Add(-eventRepairWindow), maxEventRepair)
	if err != nil {
		s.logger.WarnContext(ctx, "task events of the last minutes not published again; those a replica that died took with it are lost", "error", err)
		return
	}
	for _, r := range recs {
		t, err := decodeTask(r)
		if err != nil {
			s.logger.WarnContext(ctx, "task record not decoded; its event is not published again", "task_id", r.ID, "tenant", r.Tenant, "error", err)
			continue
		}
		s.publishEvent(ctx, t, "")
	}
	if len(recs) > 0 {
		s.logger.InfoContext(ctx, "task events of the last minutes published again; the stream drops those it holds", "events", len(recs),
			"window", eventRepairWindow, "truncated", len(recs) == maxEventRepair)
	}
}

// Run runs the sweeper and the consumer of connection-request outcomes
// until ctx ends, then closes the store (Start first when it was not
// called). In-flight calls are drained by the gRPC server, which stops
// before Run's context ends in the process's shutdown order.
func (s *Service) Run(ctx context.Context) error {
	if !s.started {
		if err := s.Start(ctx); err != nil {
			return err
		}
	}
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.sweepLoop(ctx) }()
	go func() { defer s.wg.Done(); s.wakeLoop(ctx) }()
	go func() { defer s.wg.Done(); s.redo.Run(ctx) }()
	<-ctx.Done()
	s.wg.Wait()
	s.events.Wait()
	s.deletes.Wait()
	s.ready.Store(false)
	if s.metricsReg != nil {
		_ = s.metricsReg.Unregister()
	}
	if err := s.store.Close(); err != nil {
		return fmt.Errorf("stop tasks: %w", err)
	}
	return nil
}

// Ready reports whether the store is started, for readiness probes.
func (s *Service) Ready() bool { return s.ready.Load() }
