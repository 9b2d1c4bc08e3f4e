package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/lifecycle"
	"github.com/fleetacs/fleetacs/pkg/natsembed"
	"github.com/fleetacs/fleetacs/pkg/telemetry"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"github.com/fleetacs/fleetacs/services/gateway"
	"github.com/fleetacs/fleetacs/services/inventory"
	"github.com/fleetacs/fleetacs/services/sessions"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
)

// serviceConfigs are the configurations of every service, registered on the
// one flag set whatever the targets, so that help and environment handling
// do not depend on the command line.
type serviceConfigs struct {
	gateway   gateway.Config
	sessions  sessions.Config
	inventory inventory.Config
}

// shared are the parts several modules use; each is built once, by its
// module.
type shared struct {
	// grpc is the process's gRPC server (-server.grpc-addr).
	grpc      *grpcServer
	store     affinity.Store
	inventory grpc.ClientConnInterface
}

func registerServiceFlags(a *app, fs *flag.FlagSet) {
	a.cfg.gateway.RegisterFlags(fs)
	a.cfg.sessions.RegisterFlags(fs)
	a.cfg.inventory.RegisterFlags(fs)
}

// modules lists every module. Targets (inventory, sessions, gateway) may be
// named on the command line; shared parts (the gRPC server, the affinity
// store, the inventory client) come in as dependencies; the embedded NATS
// server comes only with "all", the embedded default. A module starts after
// its deps, and after the modules named in after when they run in the same
// process: the CWMP listener opens only once the session path behind it
// (inventory store, session worker) is ready.
func modules() []*module {
	return []*module{
		{name: "grpc-server", doc: "the process's shared gRPC server", build: buildGRPCServer},
		{name: "affinity", doc: "session routing and device leases: Redis, or in memory for one process", build: buildAffinity},
		{
			name: "inventory-client", doc: "connection to the inventory's gRPC API",
			after: []string{"inventory"}, build: buildInventoryClient,
		},
		{name: "nats", doc: "embedded NATS server with JetStream", inAll: true, build: buildNATS},
		{
			name: "inventory", target: true, inAll: true, doc: "devices and their parameter trees (SQLite embedded, or MongoDB), gRPC inventory API",
			deps: []string{"grpc-server"}, build: buildInventory,
			health: []string{"fleetacs.inventory.v1.InventoryService", "fleetacs.inventory.v1.InventoryInternalService"},
		},
		{
			name: "sessions", target: true, inAll: true, doc: "session workers: run CWMP sessions for the gateways",
			deps: []string{"grpc-server", "affinity", "inventory-client"}, build: buildSessions,
			health: []string{"fleetacs.sessions.v1.SessionService"},
		},
		{
			name: "gateway", target: true, inAll: true, doc: "the CPE-facing CWMP endpoint (HTTP/HTTPS :7547)",
			deps: []string{"grpc-server", "affinity", "inventory-client"}, after: []string{"sessions"}, build: buildGateway,
			health: []string{"fleetacs.gateway"},
		},
	}
}

func buildGRPCServer(a *app) (lifecycle.Service, error) {
	g, err := a.newGRPCServer("server.grpc-addr", a.opts.GRPCAddr)
	if err != nil {
		return nil, err
	}
	a.shared.grpc = g
	return g, nil
}

func buildAffinity(a *app) (lifecycle.Service, error) {
	if a.opts.RedisAddr == "" {
		if a.selected("gateway") != a.selected("sessions") {
			return nil, errors.New("gateway and sessions in different processes share session routing and device leases through Redis: set -redis.addr")
		}
		a.shared.store = affinity.NewMemory(nil).Store()
		return lifecycle.Funcs{}, nil
	}
	client := redis.NewClient(&redis.Options{
		Addr:         a.opts.RedisAddr,
		DB:           a.opts.RedisDB,
		Password:     a.opts.RedisPassword,
		DialTimeout:  2 * time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
		PoolSize:     256,
		// RESP2: the affinity store uses no RESP3 feature, and RESP3 makes
		// the client look for push notifications around every reply.
		Protocol: 2,
	})
	a.shared.store = affinity.NewRedis(client, a.opts.RedisPrefix, nil).Store()
	return lifecycle.Funcs{
		// Started once Redis answers: what depends on it fails clearly
		// here rather than on its first session.
		StartFunc: func(ctx context.Context) error {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := client.Ping(pctx).Err(); err != nil {
				_ = client.Close()
				return fmt.Errorf("reach Redis at %s (-redis.addr): %w", a.opts.RedisAddr, err)
			}
			return nil
		},
		RunFunc: closeAtEnd(client.Close),
	}, nil
}

func buildInventoryClient(a *app) (lifecycle.Service, error) {
	dial := append(a.dialOptions(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
	)
	if a.telemetry.Tracing {
		dial = append(dial, grpc.WithStatsHandler(otelgrpc.NewClientHandler(a.otelgrpcOptions()...)))
	}
	addr := a.opts.InventoryAddr
	if addr == "" {
		if !a.selected("inventory") {
			return nil, errors.New("inventory does not run in this process: set -client.inventory-addr")
		}
		cc, closer, err := a.shared.grpc.conn(dial)
		if err != nil {
			return nil, err
		}
		a.shared.inventory = cc
		return lifecycle.Func(closeAtEnd(closer)), nil
	}
	conn, err := grpc.NewClient(addr, append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return nil, fmt.Errorf("inventory client for %s: %w", addr, err)
	}
	a.shared.inventory = conn
	return lifecycle.Func(closeAtEnd(conn.Close)), nil
}

func buildNATS(a *app) (lifecycle.Service, error) {
	if a.opts.NATSURL != "" {
		return lifecycle.Funcs{}, nil
	}
	s := natsembed.New("127.0.0.1", a.opts.NATSPort, a.dataPath("nats"))
	done := make(chan error, 1)
	return lifecycle.Funcs{
		StartFunc: func(ctx context.Context) error {
			go func() { done <- s.Run(ctx) }()
			select {
			case <-s.Ready():
				a.logger.Info("embedded NATS with JetStream ready", "url", s.URL())
				return nil
			case err := <-done:
				return err
			}
		},
		RunFunc: func(context.Context) error { return <-done },
	}, nil
}

func buildInventory(a *app) (lifecycle.Service, error) {
	cfg := a.cfg.inventory
	if cfg.Store == inventory.StoreSQLite && !a.flagSet["inventory.sqlite-path"] {
		cfg.SQLitePath = a.dataPath("inventory.db")
	}
	st, err := cfg.NewStore()
	if err != nil {
		return nil, fmt.Errorf("inventory config: %w", err)
	}
	// Calls that arrive before the store has started are answered
	// UNAVAILABLE, and the module's gRPC health says NOT_SERVING until it
	// has started.
	svc := inventory.New(st, inventory.Options{Logger: a.logger.With("component", "inventory")})
	svc.Register(a.shared.grpc.registrar)
	return svc, nil
}

func buildSessions(a *app) (lifecycle.Service, error) {
	cfg := a.cfg.sessions
	srv := a.shared.grpc
	var advertise func() string
	if cfg.AdvertiseAddr == "" {
		// The address the server is bound to, known once it has started;
		// until then, the one it is configured with.
		cfg.AdvertiseAddr = hostPort(a.opts.GRPCAddr, "127.0.0.1")
		advertise = srv.dialAddr
	} else {
		a.own.add(srv, cfg.AdvertiseAddr)
	}
	w, err := sessions.New(cfg, sessions.Deps{
		Inventory:     sessions.NewGRPCInventory(a.shared.inventory),
		Leases:        a.shared.store.Leases,
		Checkpoints:   a.shared.store.Checkpoints,
		Registry:      a.shared.store.Registry,
		Sessions:      a.shared.store.Sessions,
		Logger:        a.logger.With("component", "sessions"),
		Meter:         a.telemetry.Meter,
		AdvertiseAddr: advertise,
	})
	if err != nil {
		return nil, err
	}
	w.Register(srv.registrar)
	return w, nil
}

func buildGateway(a *app) (lifecycle.Service, error) {
	fwd := gateway.NewGRPCForwarder(
		affinity.NewLiveCache(a.shared.store.Registry, time.Second, nil),
		gateway.GRPCForwarderOptions{
			TracerProvider: a.tracerProvider(), Propagator: a.telemetry.Propagator,
			DialOptions: a.dialOptions(),
			LocalConn:   a.localConn,
		},
	)
	g, err := gateway.New(a.cfg.gateway, gateway.Deps{
		Logger:         a.logger.With("component", "gateway"),
		Forwarder:      fwd,
		Affinity:       a.shared.store.Affinity,
		Leases:         a.shared.store.Leases,
		Credentials:    gateway.InventoryCredentials{Client: inventoryv1.NewInventoryInternalServiceClient(a.shared.inventory)},
		TracerProvider: a.telemetry.Tracer,
		MeterProvider:  a.telemetry.Meter,
		Listening:      func(name string, addr net.Addr) { a.bound[name] = addr },
	})
	if err != nil {
		return nil, err
	}
	return lifecycle.Funcs{
		StartFunc: g.Start,
		RunFunc: func(ctx context.Context) error {
			defer fwd.Close()
			return g.Run(ctx)
		},
	}, nil
}

// grpcServerStats instruments the process's gRPC server: with the
// OpenTelemetry gRPC instrumentation (a span per call, the caller's trace
// context, RPC metrics) when spans are exported, else with the call
// duration histogram alone (telemetry.GRPCServerMetrics says why).
func (a *app) grpcServerStats() (stats.Handler, error) {
	if a.telemetry.Tracing {
		return otelgrpc.NewServerHandler(a.otelgrpcOptions()...), nil
	}
	return telemetry.NewGRPCServerMetrics(a.telemetry.Meter)
}

// otelgrpcOptions feed the process's providers to the OpenTelemetry gRPC
// instrumentation, installed while tracing is on.
func (a *app) otelgrpcOptions() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithTracerProvider(a.telemetry.Tracer),
		otelgrpc.WithMeterProvider(a.telemetry.Meter),
		otelgrpc.WithPropagators(a.telemetry.Propagator),
	}
}

// The gRPC flow-control windows of every connection between services:
// static, so that the transport does not estimate the bandwidth-delay
// product with a PING (and its ack) after the data of nearly every call,
// which between services making small calls doubled the packets each call
// sends. Windows are allowances, not buffers: a stream may have 1 MiB in
// flight, a connection 16 MiB.
const (
	grpcStreamWindow = 1 << 20
	grpcConnWindow   = 16 << 20
)

// dialOptions are the transport options of every connection this process
// makes to another service.
func (a *app) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		a.dialer(),
		grpc.WithStaticStreamWindowSize(grpcStreamWindow),
		grpc.WithStaticConnWindowSize(grpcConnWindow),
	}
}

// tracerProvider is the tracer of gRPC clients: nil while tracing is off,
// so that they carry no instrumentation whose spans nobody exports.
func (a *app) tracerProvider() trace.TracerProvider {
	if !a.telemetry.Tracing {
		return nil
	}
	return a.telemetry.Tracer
}

// closeAtEnd is the run function of a shared resource that only needs
// closing: it waits for its context to end, then calls closer (if any).
func closeAtEnd(closer func() error) func(context.Context) error {
	return func(ctx context.Context) error {
		<-ctx.Done()
		if closer != nil {
			return closer()
		}
		return nil
	}
}
