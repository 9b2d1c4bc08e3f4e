package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/test/bufconn"

	"github.com/fleetacs/fleetacs/pkg/grpcinproc"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/authstate"
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
	grpcServer   *grpc.Server
	grpcHealth   *health.Server
	grpcListener net.Listener
	// memListener (with -server.grpc-in-process=false only) serves the
	// same gRPC server in memory: clients in this
	// process reach their own process's services through it (same gRPC
	// code paths, no loopback TCP).
	memListener *bufconn.Listener
	// inproc serves the same services to clients of this process without
	// the transport (-server.grpc-in-process); services register on both
	// through registrar.
	inproc    *grpcinproc.Channel
	registrar grpc.ServiceRegistrar
	// ownAddrs are the addresses under which this process's gRPC server
	// is known to the cluster (bound and advertised).
	ownAddrs map[string]bool
	store    affinity.Store
	// authState is the gateways' shared authentication state (nonce
	// counts, failure back-off), on the same Redis as store.
	authState authstate.Store
	inventory grpc.ClientConnInterface
}

// registrars registers every service on several servers: the process's
// gRPC server and its in-process channel.
type registrars []grpc.ServiceRegistrar

func (rs registrars) RegisterService(desc *grpc.ServiceDesc, impl any) {
	for _, r := range rs {
		r.RegisterService(desc, impl)
	}
}

// localConn returns the in-process channel for a gRPC address of this very
// process when services call each other directly, else nil.
func (a *app) localConn(addr string) grpc.ClientConnInterface {
	if a.opts.InProcessGRPC && a.shared.ownAddrs[addr] {
		return a.shared.inproc
	}
	return nil
}

func registerServiceFlags(a *app, fs *flag.FlagSet) {
	a.cfg.gateway.RegisterFlags(fs)
	a.cfg.sessions.RegisterFlags(fs)
	a.cfg.inventory.RegisterFlags(fs)
}

// modules lists every module in start order. Targets (inventory, sessions,
// gateway) may be named on the command line; shared parts (the gRPC server,
// the affinity store, the inventory client) come in as dependencies; the
// embedded NATS server comes only with "all", the embedded default.
func modules() []*module {
	return []*module{
		{name: "grpc-server", doc: "the process's shared gRPC server", build: buildGRPCServer},
		{name: "affinity", doc: "session routing and device leases: Redis, or in memory for one process", build: buildAffinity},
		{name: "inventory-client", doc: "connection to the inventory's gRPC API", build: buildInventoryClient},
		{name: "nats", doc: "embedded NATS server with JetStream", inAll: true, build: buildNATS},
		{
			name: "inventory", target: true, inAll: true, doc: "devices and their parameter trees (SQLite embedded, or MongoDB), gRPC inventory API",
			deps: []string{"grpc-server"}, build: buildInventory,
		},
		{
			name: "sessions", target: true, inAll: true, doc: "session workers: run CWMP sessions for the gateways",
			deps: []string{"grpc-server", "affinity", "inventory-client"}, build: buildSessions,
		},
		{
			name: "gateway", target: true, inAll: true, doc: "the CPE-facing CWMP endpoint (HTTP/HTTPS :7547)",
			deps: []string{"grpc-server", "affinity", "inventory-client"}, build: buildGateway,
		},
	}
}

// grpcAddr is the dialable address of this process's gRPC server.
func (a *app) grpcAddr() string {
	addr := a.shared.grpcListener.Addr().(*net.TCPAddr)
	if addr.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(addr.Port))
	}
	return addr.String()
}

func buildGRPCServer(a *app) (lifecycle.Service, error) {
	ln, err := net.Listen("tcp", a.opts.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("listen gRPC %s: %w", a.opts.GRPCAddr, err)
	}
	sh, err := a.grpcServerStats()
	if err != nil {
		return nil, err
	}
	sopts := []grpc.ServerOption{
		grpc.StatsHandler(sh),
		grpc.MaxRecvMsgSize(64 << 20),
		grpc.MaxSendMsgSize(64 << 20),
		grpc.StaticStreamWindowSize(grpcStreamWindow),
		grpc.StaticConnWindowSize(grpcConnWindow),
	}
	if n := a.opts.GRPCStreamWorkers; n > 0 {
		// A goroutine per call starts with a small stack and grows it
		// (copying) on every call: 8 to 12% of a worker's or inventory's
		// CPU under load. Reused goroutines keep their stacks.
		sopts = append(sopts, grpc.NumStreamWorkers(uint32(n)))
	}
	srv := grpc.NewServer(sopts...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	a.shared.grpcServer, a.shared.grpcHealth, a.shared.grpcListener = srv, hs, ln
	if !a.opts.InProcessGRPC {
		a.shared.memListener = bufconn.Listen(1 << 20)
	}
	a.shared.ownAddrs = map[string]bool{a.grpcAddr(): true, ln.Addr().String(): true}
	a.shared.inproc = grpcinproc.New(grpcinproc.Options{TracerProvider: a.telemetry.Tracer})
	a.shared.registrar = registrars{srv, a.shared.inproc}
	return lifecycle.Func(func(ctx context.Context) error {
		errc := make(chan error, 2)
		go func() { errc <- srv.Serve(ln) }()
		if mem := a.shared.memListener; mem != nil {
			go func() { errc <- srv.Serve(mem) }()
		}
		select {
		case err := <-errc:
			return fmt.Errorf("serve gRPC: %w", err)
		case <-ctx.Done():
		}
		hs.Shutdown()
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			srv.Stop()
		}
		return nil
	}), nil
}

func buildAffinity(a *app) (lifecycle.Service, error) {
	if a.opts.RedisAddr == "" {
		if a.selected("gateway") != a.selected("sessions") {
			return nil, errors.New("gateway and sessions in different processes share session routing and device leases through Redis: set -redis.addr")
		}
		a.shared.store = affinity.NewMemory(nil).Store()
		a.shared.authState = authstate.NewMemory(nil, 0)
		return waitService(nil), nil
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
	a.shared.authState = authstate.NewRedis(client, a.opts.RedisPrefix, nil)
	return waitService(client.Close), nil
}

func buildInventoryClient(a *app) (lifecycle.Service, error) {
	addr := a.opts.InventoryAddr
	if addr == "" {
		if !a.selected("inventory") {
			return nil, errors.New("inventory does not run in this process: set -client.inventory-addr")
		}
		addr = a.grpcAddr()
	}
	if cc := a.localConn(addr); cc != nil {
		a.shared.inventory = cc
		return waitService(nil), nil
	}
	dial := append(a.dialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
	)
	if a.telemetry.Tracing {
		dial = append(dial, grpc.WithStatsHandler(otelgrpc.NewClientHandler(a.otelgrpcOptions()...)))
	}
	conn, err := grpc.NewClient(addr, dial...)
	if err != nil {
		return nil, fmt.Errorf("inventory client for %s: %w", addr, err)
	}
	a.shared.inventory = conn
	return waitService(conn.Close), nil
}

func buildNATS(a *app) (lifecycle.Service, error) {
	if a.opts.NATSURL != "" {
		return waitService(nil), nil
	}
	s := natsembed.New("127.0.0.1", a.opts.NATSPort, a.dataPath("nats"))
	return lifecycle.Func(func(ctx context.Context) error {
		go func() {
			select {
			case <-s.Ready():
				a.logger.Info("embedded NATS with JetStream ready", "url", s.URL())
			case <-ctx.Done():
			}
		}()
		return s.Run(ctx)
	}), nil
}

func buildInventory(a *app) (lifecycle.Service, error) {
	cfg := a.cfg.inventory
	if cfg.Store == inventory.StoreSQLite && !a.flagSet["inventory.sqlite-path"] {
		cfg.SQLitePath = a.dataPath("inventory.db")
	}
	if cfg.Store == inventory.StoreSQLite {
		if err := os.MkdirAll(filepath.Dir(cfg.SQLitePath), 0o750); err != nil {
			return nil, fmt.Errorf("create inventory directory: %w", err)
		}
	}
	st, err := cfg.NewStore()
	if err != nil {
		return nil, fmt.Errorf("inventory config: %w", err)
	}
	// The process is not ready, and the inventory's gRPC services not
	// serving, until the store has started: sessions that arrived earlier
	// would be answered with a retry fault.
	a.health.Register("inventory")
	health := a.shared.grpcHealth
	setServing := func(ready bool) {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if ready {
			st = healthpb.HealthCheckResponse_SERVING
		}
		for _, name := range []string{"fleetacs.inventory.v1.InventoryService", "fleetacs.inventory.v1.InventoryInternalService"} {
			health.SetServingStatus(name, st)
		}
		a.health.SetReady("inventory", ready)
	}
	setServing(false)
	svc := inventory.New(st, inventory.Options{Logger: a.logger.With("component", "inventory"), OnReady: setServing})
	svc.Register(a.shared.registrar)
	return svc, nil
}

func buildSessions(a *app) (lifecycle.Service, error) {
	cfg := a.cfg.sessions
	if cfg.AdvertiseAddr == "" {
		cfg.AdvertiseAddr = a.grpcAddr()
	}
	a.shared.ownAddrs[cfg.AdvertiseAddr] = true
	w, err := sessions.New(cfg, sessions.Deps{
		Inventory:   sessions.NewGRPCInventory(a.shared.inventory),
		Leases:      a.shared.store.Leases,
		Checkpoints: a.shared.store.Checkpoints,
		Registry:    a.shared.store.Registry,
		Sessions:    a.shared.store.Sessions,
		Logger:      a.logger.With("component", "sessions"),
		Meter:       a.telemetry.Meter,
	})
	if err != nil {
		return nil, err
	}
	w.Register(a.shared.registrar)
	a.shared.grpcHealth.SetServingStatus("fleetacs.sessions.v1.SessionService", healthpb.HealthCheckResponse_SERVING)
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
		NonceCounts:    a.shared.authState,
		AuthGuard:      a.shared.authState,
		Health:         a.health,
		TracerProvider: a.telemetry.Tracer,
		MeterProvider:  a.telemetry.Meter,
	})
	if err != nil {
		return nil, err
	}
	a.shared.grpcHealth.SetServingStatus("fleetacs.gateway", healthpb.HealthCheckResponse_SERVING)
	return lifecycle.Func(func(ctx context.Context) error {
		defer fwd.Close()
		return g.Run(ctx)
	}), nil
}

// dialer connects to this process's own gRPC server in memory and to
// everything else over TCP.
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

func (a *app) dialer() grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		if a.shared.memListener != nil && a.shared.ownAddrs[addr] {
			return a.shared.memListener.DialContext(ctx)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	})
}

// waitService waits for its context to end, then runs closer (if any): the
// lifecycle of a shared resource that only needs closing.
func waitService(closer func() error) lifecycle.Service {
	return lifecycle.Func(func(ctx context.Context) error {
		<-ctx.Done()
		if closer != nil {
			return closer()
		}
		return nil
	})
}
