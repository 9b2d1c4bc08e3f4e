package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/lifecycle"
	"github.com/fleetacs/fleetacs/pkg/natsbus"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"github.com/fleetacs/fleetacs/services/tasks"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// natsOptions size the JetStream streams the nats-client module creates
// (natsbus.StreamOptions); their defaults are natsbus.DefaultStreamOptions.
func registerNATSFlags(o *natsbus.StreamOptions, fs *flag.FlagSet) {
	d := natsbus.DefaultStreamOptions
	fs.IntVar(&o.Replicas, "nats.stream-replicas", d.Replicas, "replicas of each JetStream stream (tasks, wake-ups, events): 1 on one server, 3 in a cluster")
	fs.Int64Var(&o.MaxTasksPerDevice, "nats.max-tasks-per-device", d.MaxTasksPerDevice, "queued tasks one device may hold; CreateTask beyond it fails with QUEUE_FULL")
	fs.DurationVar(&o.EventsMaxAge, "nats.events-max-age", d.EventsMaxAge, "how long the event stream keeps events: WatchTasks and WatchEvents resume from as far back")
	fs.Int64Var(&o.EventsMaxBytes, "nats.events-max-bytes", d.EventsMaxBytes, "bytes the event stream keeps at most; the oldest events go first")
	fs.DurationVar(&o.WakeMaxAge, "nats.wake-max-age", d.WakeMaxAge, "how long a connection-request request waits for a notifier before it is dropped")
}

func validateNATS(o natsbus.StreamOptions) error {
	var errs []error
	if o.Replicas < 1 || o.Replicas > 5 {
		errs = append(errs, fmt.Errorf("nats.stream-replicas must be 1 to 5, got %d", o.Replicas))
	}
	if o.MaxTasksPerDevice < 1 {
		errs = append(errs, fmt.Errorf("nats.max-tasks-per-device must be positive, got %d", o.MaxTasksPerDevice))
	}
	if o.EventsMaxAge < time.Minute || o.EventsMaxBytes < 1<<20 || o.WakeMaxAge < time.Second {
		errs = append(errs, fmt.Errorf("nats.events-max-age must be at least 1m, nats.events-max-bytes 1 MiB and nats.wake-max-age 1s"))
	}
	return errors.Join(errs...)
}

// busConn is the process's JetStream client. The nats-client module builds
// it without I/O and connects it when it starts, before any module that
// depends on it starts; until then its methods must not be called.
type busConn struct {
	jetstream.JetStream
	clients *telemetry.ClientMetrics
}

// ClientMetrics gives natsbus.MetricsOf the process's client metrics,
// for the acknowledgement waits of natsbus.AsyncPublisher.
func (b *busConn) ClientMetrics() *telemetry.ClientMetrics { return b.clients }

// buildNATSClient connects the process to NATS (-nats.url, or the embedded
// server of "all") and creates or updates the streams. Without either, it
// leaves a.shared.js nil: session workers then run without tasks and device
// events, and the tasks module refuses to start.
func buildNATSClient(a *app) (lifecycle.Service, error) {
	a.shared.busNames = natsbus.New("", "")
	if a.opts.NATSURL == "" && !a.selected("nats") {
		a.logger.Warn("no -nats.url and no embedded NATS in this process: no tasks and no device events here")
		return lifecycle.Funcs{}, nil
	}
	if err := validateNATS(a.opts.NATSStreams); err != nil {
		return nil, err
	}
	bc := &busConn{clients: a.clients}
	a.shared.js = bc
	return lifecycle.Funcs{
		StartFunc: func(ctx context.Context) error {
			url := a.opts.NATSURL
			var extra []nats.Option
			if url == "" {
				url = a.shared.natsURL
				if a.shared.natsInProcess != nil {
					extra = append(extra, a.shared.natsInProcess)
				}
			}
			nc, js, err := natsbus.Connect(ctx, url, "fleetacs", 10*time.Second, extra...)
			if err != nil {
				return fmt.Errorf("%w (-nats.url)", err)
			}
			ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := natsbus.EnsureStreams(ectx, js, a.shared.busNames, a.opts.NATSStreams); err != nil {
				nc.Close()
				return err
			}
			bc.JetStream = natsbus.Instrument(js, a.clients)
			a.shared.nats = nc
			return nil
		},
		RunFunc: func(ctx context.Context) error {
			<-ctx.Done()
			// Modules that publish stop before this one (they depend on
			// it): what they published is flushed, then the connection
			// closes.
			if nc := bc.Conn(); nc != nil {
				_ = nc.FlushTimeout(2 * time.Second)
				nc.Close()
			}
			return nil
		},
	}, nil
}

// buildTasks serves the tasks API on the public server and the claims of
// session workers on the internal one, over the task store and NATS.
func buildTasks(a *app) (lifecycle.Service, error) {
	if a.shared.js == nil {
		return nil, errors.New("the tasks service needs NATS with JetStream: set -nats.url (or run target all, which embeds one)")
	}
	scfg := a.cfg.tasksStore
	scfg.Metrics = a.clients
	if scfg.Store == tasks.StoreSQLite && !a.flagSet["tasks.sqlite-path"] {
		scfg.SQLitePath = a.dataPath("tasks.db")
	}
	st, err := scfg.Open()
	if err != nil {
		return nil, fmt.Errorf("tasks store config: %w", err)
	}
	if scfg.Store == tasks.StoreMongoDB && a.cfg.tasks.SecretsKeyFile == "" {
		return nil, errors.New("tasks.secrets-key-file is required with tasks.store=mongodb: every tasks process on the database needs the same keys")
	}
	cfg := a.cfg.tasks
	svc, err := tasks.New(cfg, tasks.Deps{
		Store:         st,
		JetStream:     a.shared.js,
		Names:         a.shared.busNames,
		Devices:       tasks.InventoryDevices{Client: inventoryv1.NewInventoryInternalServiceClient(a.shared.inventory)},
		Secrets:       cfg.Keyring(a.dataPath("secrets.key")),
		CallerTenants: apiauth.CallerTenants,
		// A public call's principal; the runner of a campaign names it
		// on the internal listener (docs/campaigns.md).
		Requester:  apiauth.Requester,
		Propagator: a.telemetry.Propagator,
		Meter:      a.telemetry.Meter,
		Logger:     a.logger.With("component", "tasks"),
	})
	if err != nil {
		return nil, err
	}
	svc.RegisterPublic(a.shared.public.registrar)
	svc.RegisterInternal(a.shared.internal.registrar)
	// The campaigns runner creates and follows tasks through the public
	// API, as a trusted service (docs/campaigns.md).
	svc.RegisterPublic(a.shared.internal.registrar)
	a.tokensFromInventory()
	return a.keyedService("tasks secrets key file", cfg.SecretsKeyFile, svc.Start, svc.Run), nil
}
