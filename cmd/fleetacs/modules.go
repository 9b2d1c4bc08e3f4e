package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/authstate"
	"github.com/fleetacs/fleetacs/pkg/lifecycle"
	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/natsembed"
	"github.com/fleetacs/fleetacs/pkg/redisconn"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/telemetry"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"github.com/fleetacs/fleetacs/services/campaigns"
	"github.com/fleetacs/fleetacs/services/files"
	"github.com/fleetacs/fleetacs/services/gateway"
	"github.com/fleetacs/fleetacs/services/inventory"
	"github.com/fleetacs/fleetacs/services/notifier"
	"github.com/fleetacs/fleetacs/services/sessions"
	"github.com/fleetacs/fleetacs/services/tasks"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

// serviceConfigs are the configurations of every service, registered on the
// one flag set whatever the targets, so that help and environment handling
// do not depend on the command line.
type serviceConfigs struct {
	gateway   gateway.Config
	sessions  sessions.Config
	inventory inventory.Config
	notifier  notifier.Config
	// apiHTTP is the public HTTP/JSON listener (apihttp.go).
	apiHTTP apiHTTPConfig
	// tasks and tasksStore are the tasks service's and its store's.
	tasks      tasks.Config
	tasksStore tasks.StoreConfig
	// files and filesStore are the files service's (docs/files.md).
	files      files.Config
	filesStore files.StoreConfig
	// campaigns and campaignsStore are the campaigns service's
	// (docs/campaigns.md).
	campaigns      campaigns.Config
	campaignsStore campaigns.StoreConfig
}

// shared are the parts several modules use; each is built once, by its
// module.
type shared struct {
	// public is the public gRPC server (-server.grpc-addr), behind the
	// authenticator; internal the internal one (-server.internal-grpc-addr),
	// behind the internal credential.
	public, internal *grpcServer
	auth             *apiauth.Authenticator
	// tokens is what the authenticator verifies tokens with: the
	// inventory's store once the inventory module is built, or, in a
	// process serving the tasks API without the inventory, the inventory's
	// internal API.
	tokens tokenStoreRef
	store  affinity.Store
	// authState is the gateways' shared authentication state (nonce
	// counts, failure back-off), on the same Redis as store.
	authState authstate.Store
	// redis is the process's Redis client (-redis.*); nil without
	// -redis.addr, when the affinity store and the notifier's STUN
	// bindings live in this process's memory.
	redis     redis.UniversalClient
	inventory grpc.ClientConnInterface

	// ws-planner: the tasks service's internal API (tasks-client module);
	// nil when no tasks service is reachable from this process. js and
	// busNames are the nats-client module's; nil js: the session workers
	// run without tasks and device events.
	tasks grpc.ClientConnInterface
	// filesInternal is the files service's internal API (files-client
	// module); nil when none is reachable: presets' firmware versions
	// are only noted.
	filesInternal grpc.ClientConnInterface
	// natsURL is the embedded NATS server's client URL, once it is ready;
	// nats the nats-client module's connection, set when it has started.
	natsURL string
	// natsInProcess connects this process's clients to the embedded
	// server without loopback TCP; nil without one.
	natsInProcess nats.Option
	nats          *nats.Conn
	js            jetstream.JetStream
	busNames      natsbus.Names
	// files is the files service when it runs in this process: the
	// gateway serves its /files/ downloads.
	files *files.Service
}

func registerServiceFlags(a *app, fs *flag.FlagSet) {
	a.cfg.gateway.RegisterFlags(fs)
	a.cfg.sessions.RegisterFlags(fs)
	a.cfg.inventory.RegisterFlags(fs)
	a.cfg.apiHTTP.RegisterFlags(fs)
	a.cfg.notifier.RegisterFlags(fs)
	a.cfg.tasks.RegisterFlags(fs)
	a.cfg.tasksStore.RegisterFlags(fs)
	a.cfg.files.RegisterFlags(fs)
	a.cfg.filesStore.RegisterFlags(fs)
	a.cfg.campaigns.RegisterFlags(fs)
	a.cfg.campaignsStore.RegisterFlags(fs)
	registerNATSFlags(&a.opts.NATSStreams, fs)
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
		{name: "internal-auth", doc: "the internal credential of the process's internal servers and clients", build: buildInternalAuth},
		{name: "grpc-internal", doc: "the internal gRPC server", deps: []string{"internal-auth"}, build: buildInternalGRPCServer},
		{name: "grpc-public", doc: "the public gRPC server, behind API authentication", build: buildPublicGRPCServer},
		// The HTTP/JSON API goes with the public gRPC server: every target
		// that serves a public API depends on it (apihttp.go).
		{name: "api-http", doc: "the public HTTP/JSON API, forwarding to the public gRPC server", deps: []string{"grpc-public"}, build: buildAPIHTTP},
		{name: "affinity", doc: "session routing, device leases and the notifier's STUN bindings: Redis, or in memory for one process", build: buildAffinity},
		{
			name: "inventory-client", doc: "connection to the inventory's gRPC API",
			deps: []string{"internal-auth"}, after: []string{"inventory"}, build: buildInventoryClient,
		},
		{name: "nats", doc: "embedded NATS server with JetStream", inAll: true, build: buildNATS},
		{
			name: "nats-client", doc: "the process's NATS connection and JetStream streams (-nats.url, or the embedded server)",
			after: []string{"nats"}, build: buildNATSClient,
		},
		{
			name: "tasks-client", doc: "connection to the tasks service's internal gRPC API",
			deps: []string{"internal-auth"}, after: []string{"tasks"}, build: buildTasksClient,
		},
		{
			name: "files-client", doc: "connection to the files service's internal gRPC API (preset firmware)",
			deps: []string{"internal-auth"}, after: []string{"files"}, build: buildFilesClient,
		},
		{
			name: "inventory", target: true, inAll: true, doc: "devices and their parameter trees (SQLite embedded, or MongoDB), gRPC inventory API",
			deps: []string{"grpc-internal", "grpc-public", "api-http"}, build: buildInventory,
			health: []string{"fleetacs.inventory.v1.InventoryService", "fleetacs.inventory.v1.InventoryInternalService"},
		},
		{
			name: "tasks", target: true, inAll: true, doc: "tasks API: queues operations for devices, hands them to session workers, streams events",
			deps: []string{"grpc-internal", "grpc-public", "api-http", "nats-client", "inventory-client"}, build: buildTasks,
			health: []string{"fleetacs.tasks.v1.TasksService", "fleetacs.events.v1.EventsService", "fleetacs.tasks.v1.TasksInternalService"},
		},
		{
			name: "files", target: true, inAll: true, doc: "files API and /files/ downloads for CPEs on the gateway's listener: firmware, configuration and vendor files (SQLite and a directory, or MongoDB with GridFS)",
			deps: []string{"grpc-internal", "grpc-public", "api-http", "inventory-client"}, build: buildFiles,
			health: []string{"fleetacs.files.v1.FilesService", "fleetacs.files.v1.FilesInternalService"},
		},
		{
			name: "campaigns", target: true, inAll: true, doc: "campaigns API and runner: firmware, task or preset campaigns in waves through the tasks service (SQLite embedded, or MongoDB)",
			deps: []string{"grpc-public", "api-http", "inventory-client", "tasks-client", "nats-client"}, after: []string{"files"}, build: buildCampaigns,
			health: []string{"fleetacs.campaigns.v1.CampaignsService"},
		},
		{
			name: "sessions", target: true, inAll: true, doc: "session workers: run CWMP sessions for the gateways",
			deps: []string{"grpc-internal", "affinity", "inventory-client", "tasks-client", "files-client", "nats-client"}, build: buildSessions,
			health: []string{"fleetacs.sessions.v1.SessionService"},
		},
		{
			name: "gateway", target: true, inAll: true, doc: "the CPE-facing CWMP endpoint (HTTP/HTTPS :7547)",
			deps: []string{"grpc-internal", "affinity", "inventory-client"}, after: []string{"sessions", "files"}, build: buildGateway,
			health: []string{"fleetacs.gateway"},
		},
		{
			name: "notifier", target: true, inAll: true, doc: "connection requests to CPEs (HTTP, UDP) and the STUN server, for wake requests from NATS",
			deps: []string{"inventory-client", "nats-client", "affinity"}, build: buildNotifier,
		},
	}
}

// buildInternalAuth loads the internal credential when the process
// starts, before any internal server or client needs it.
func buildInternalAuth(a *app) (lifecycle.Service, error) {
	return lifecycle.Funcs{StartFunc: func(context.Context) error {
		if err := a.internal.Load(); err != nil {
			return err
		}
		a.logger.Info("internal gRPC calls authenticated", "mode", a.internal.Mode())
		return nil
	}}, nil
}

// internalServerOptions are the internal server's credential options, its
// tap reading each accepted call's trace context while tracing skips
// unsampled calls (telemetry.Providers.ServerTap).
func (a *app) internalServerOptions() []grpc.ServerOption {
	return a.internal.ServerOptionsTapping(a.telemetry.ServerTap())
}

func buildInternalGRPCServer(a *app) (lifecycle.Service, error) {
	g, err := a.newGRPCServer("server.internal-grpc-addr", a.opts.InternalGRPCAddr, false, a.internalServerOptions()...)
	if err != nil {
		return nil, err
	}
	a.shared.internal = g
	return g, nil
}

func buildPublicGRPCServer(a *app) (lifecycle.Service, error) {
	a.shared.auth = apiauth.NewAuthenticator(a.opts.Auth, apiauth.Options{
		Tokens: &a.shared.tokens, OpenMethods: apiauth.HealthMethods, Logger: a.logger.With("component", "apiauth"),
	})
	ptls := apiauth.NewPublicTLS(a.opts.PublicTLS)
	opts := append(a.shared.auth.ServerOptions(), ptls.ServerOptions()...)
	opts = append(opts, grpc.MaxRecvMsgSize(maxPublicRecvMsg))
	g, err := a.newGRPCServer("server.grpc-addr", a.opts.GRPCAddr, true, opts...)
	if err != nil {
		return nil, err
	}
	a.shared.public = g
	if !a.opts.PublicTLS.Enabled() {
		return g, nil
	}
	// The certificate is read before the listener opens, so that a bad
	// file stops the start rather than every handshake.
	return lifecycle.Funcs{
		StartFunc: func(ctx context.Context) error {
			if err := ptls.Load(); err != nil {
				return fmt.Errorf("load the public gRPC TLS certificate (-server.grpc-tls-*): %w", err)
			}
			return g.Start(ctx)
		},
		RunFunc: g.Run,
	}, nil
}

// tokenStoreRef lets the authenticator, built before the modules that
// provide tokens, verify them with whichever does: the inventory's store
// when the inventory runs in the process, else the inventory's internal
// API (inventory.TokenClient) when a public API is served without it
// (docs/security.md, "Processes without the inventory"). Unset: every token
// is refused as unknown.
type tokenStoreRef struct {
	mu sync.RWMutex
	ts apiauth.TokenReader
}

var _ apiauth.TokenReader = (*tokenStoreRef)(nil)

func (r *tokenStoreRef) set(ts apiauth.TokenReader) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ts = ts
}

func (r *tokenStoreRef) GetToken(ctx context.Context, id string) (apiauth.TokenRecord, error) {
	r.mu.RLock()
	ts := r.ts
	r.mu.RUnlock()
	if ts == nil {
		return apiauth.TokenRecord{}, apiauth.ErrTokenNotFound
	}
	return ts.GetToken(ctx, id)
}

func buildAffinity(a *app) (lifecycle.Service, error) {
	if a.opts.RedisAddr == "" {
		if a.selected("gateway") != a.selected("sessions") {
			return nil, errors.New("gateway and sessions in different processes share session routing and device leases through Redis: set -redis.addr")
		}
		a.shared.store = affinity.NewMemory(nil).Store()
		a.shared.authState = authstate.NewMemory(nil, 0)
		return lifecycle.Funcs{}, nil
	}
	if strings.ContainsAny(a.opts.RedisPrefix, "{}") {
		return nil, fmt.Errorf("redis.prefix must not contain '{' or '}', which would change the Redis Cluster hash slots of its keys: %q", a.opts.RedisPrefix)
	}
	rcfg := a.redisConfig()
	rcfg.Metrics = a.clients
	client, err := redisconn.New(rcfg)
	if err != nil {
		return nil, err
	}
	a.shared.redis = client
	a.shared.store = affinity.NewRedis(client, a.opts.RedisPrefix, nil).Store()
	a.shared.authState = authstate.NewRedis(client, a.opts.RedisPrefix, nil)
	return lifecycle.Funcs{
		// Started once Redis answers: what depends on it fails clearly
		// here rather than on its first session.
		StartFunc: func(ctx context.Context) error {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := client.Ping(pctx).Err(); err != nil {
				_ = client.Close()
				return fmt.Errorf("reach %s (-redis.*): %w", rcfg.Describe(), err)
			}
			return nil
		},
		RunFunc: closeAtEnd(client.Close),
	}, nil
}

// redisConfig is the Redis client of -redis.*.
func (a *app) redisConfig() redisconn.Config {
	return redisconn.Config{
		Mode:             a.opts.RedisMode,
		Addrs:            redisconn.ParseAddrs(a.opts.RedisAddr),
		MasterName:       a.opts.RedisMaster,
		DB:               a.opts.RedisDB,
		Username:         a.opts.RedisUsername,
		Password:         a.opts.RedisPassword,
		SentinelPassword: a.opts.RedisSentinelPassword,
		PoolSize:         256,
	}
}

// internalClient is a connection to a service's internal API: in process
// when the service (target name) runs here, else at addr, its
// -client.<name>-addr.
type internalClient struct {
	name, addr string
	// dst receives the connection.
	dst *grpc.ClientConnInterface
	// dial are options added to the internal credential's.
	dial []grpc.DialOption
	// absent is called when the service is neither here nor at an
	// address: it warns, and the process runs without the client, or it
	// returns the error that stops the process.
	absent func() error
	// ready, when set, starts the connection to addr once the service
	// there serves.
	ready func(ctx context.Context, conn grpc.ClientConnInterface) error
}

// buildClient connects c and returns what closes the connection at the
// end.
func (a *app) buildClient(c internalClient) (lifecycle.Service, error) {
	dial, unsampled := a.internalDial(c.dial...)
	if c.addr == "" {
		if !a.selected(c.name) {
			if err := c.absent(); err != nil {
				return nil, err
			}
			return lifecycle.Funcs{}, nil
		}
		cc, closer, err := a.tracedConn(dial, unsampled, a.shared.internal.conn)
		if err != nil {
			return nil, err
		}
		*c.dst = cc
		return lifecycle.Func(closeAtEnd(closer)), nil
	}
	conn, closer, err := a.tracedConn(dial, unsampled, dialTo(c.addr))
	if err != nil {
		return nil, fmt.Errorf("%s client for %s: %w", c.name, c.addr, err)
	}
	*c.dst = conn
	if c.ready == nil {
		return lifecycle.Func(closeAtEnd(closer)), nil
	}
	return lifecycle.Funcs{
		StartFunc: func(ctx context.Context) error { return c.ready(ctx, conn) },
		RunFunc:   closeAtEnd(closer),
	}, nil
}

// buildInventoryClient connects to the inventory's internal API: in
// process when the inventory runs here, else at -client.inventory-addr
// (required then).
func buildInventoryClient(a *app) (lifecycle.Service, error) {
	addr := a.opts.InventoryAddr
	return a.buildClient(internalClient{
		name: "inventory", addr: addr, dst: &a.shared.inventory,
		dial: []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20))},
		absent: func() error {
			return errors.New("inventory does not run in this process: set -client.inventory-addr")
		},
		// Started once the inventory serves: a worker registers, and a
		// gateway opens its CWMP listener, only when the sessions they
		// take can reach the inventory (in the meantime gateways answer
		// 503 with Retry-After, having no worker to send a session to).
		ready: func(ctx context.Context, conn grpc.ClientConnInterface) error {
			return waitServing(ctx, a.logger, conn, inventoryInternalService, "-client.inventory-addr="+addr)
		},
	})
}

// dialTo connects to addr over the network.
func dialTo(addr string) func([]grpc.DialOption) (grpc.ClientConnInterface, func() error, error) {
	return func(dial []grpc.DialOption) (grpc.ClientConnInterface, func() error, error) {
		conn, err := grpc.NewClient(addr, dial...)
		if err != nil {
			return nil, nil, err
		}
		return conn, conn.Close, nil
	}
}

// internalDial returns the options of a connection to an internal
// service (transport, internal credential, then extra), and those of the
// connection tracedConn and the gateway's forwarder add for calls under
// unsampled spans: the same, with the trace context written beside the
// token in each call's credentials (telemetry.AddTraceContext).
func (a *app) internalDial(extra ...grpc.DialOption) (dial, unsampled []grpc.DialOption) {
	dial = append(append(a.dialOptions(), a.internal.DialOptions()...), extra...)
	unsampled = append(append(a.dialOptions(), a.internal.DialOptionsAdding(telemetry.AddTraceContext)...), extra...)
	return dial, unsampled
}

// tracedConn connects with connect and dial, adding the OpenTelemetry
// gRPC instrumentation while tracing is on. When the sampler lets calls
// under unsampled spans skip it (telemetry.Providers.SkipsUnsampled),
// those calls get a second connection, dialled with unsampled, without
// any stats handler (telemetry.SplitConn): the instrumentation's mere
// presence costs each call copies of its metadata and records of its
// messages. unsampled's per-call credentials carry the trace context.
func (a *app) tracedConn(dial, unsampled []grpc.DialOption, connect func([]grpc.DialOption) (grpc.ClientConnInterface, func() error, error)) (grpc.ClientConnInterface, func() error, error) {
	if !a.telemetry.Tracing {
		return connect(dial)
	}
	traced := append(append([]grpc.DialOption(nil), dial...),
		grpc.WithStatsHandler(a.telemetry.GRPCStats(otelgrpc.NewClientHandler(a.otelgrpcOptions()...), true)))
	cc, closer, err := connect(traced)
	if err != nil || !a.telemetry.SkipsUnsampled() {
		return cc, closer, err
	}
	plain, plainCloser, err := connect(unsampled)
	if err != nil {
		if closer != nil {
			_ = closer()
		}
		return nil, nil, err
	}
	return telemetry.SplitConn(plain, cc, nil), func() error {
		var errs []error
		for _, c := range []func() error{closer, plainCloser} {
			if c != nil {
				errs = append(errs, c())
			}
		}
		return errors.Join(errs...)
	}, nil
}

// inventoryInternalService is the gRPC service sessions and gateways call
// in the inventory.
const inventoryInternalService = "fleetacs.inventory.v1.InventoryInternalService"

// waitServing waits until the gRPC health of service at conn says
// SERVING, or ctx ends. It says every ten seconds what it is waiting for.
func waitServing(ctx context.Context, logger *slog.Logger, conn grpc.ClientConnInterface, service, where string) error {
	health := healthpb.NewHealthClient(conn)
	delay := 50 * time.Millisecond
	var lastSaid time.Time
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := health.Check(cctx, &healthpb.HealthCheckRequest{Service: service})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("wait for %s at %s: %w", service, where, ctx.Err())
		}
		if time.Since(lastSaid) >= 10*time.Second {
			lastSaid = time.Now()
			if err == nil {
				err = fmt.Errorf("health %s", resp.GetStatus())
			}
			logger.Warn("waiting for a service this process needs", "service", service, "at", where, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s at %s: %w", service, where, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
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
				a.shared.natsURL = s.URL()
				a.shared.natsInProcess = s.InProcess()
				if u, err := url.Parse(s.URL()); err == nil {
					if ap, err := netip.ParseAddrPort(u.Host); err == nil {
						a.listening.addAddrPort(ap)
					}
				}
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
	cfg.Metrics = a.clients
	st, err := cfg.NewStore()
	if err != nil {
		return nil, fmt.Errorf("inventory config: %w", err)
	}
	tokens, ok := st.(apiauth.TokenStore)
	if !ok {
		return nil, fmt.Errorf("inventory store %T keeps no API tokens", st)
	}
	// Calls that arrive before the store has started are answered
	// UNAVAILABLE, and the module's gRPC health says NOT_SERVING until it
	// has started. Processes without the inventory verify tokens through
	// its internal API (GetToken); TokenService is served here alone.
	svc := inventory.New(st, inventory.Options{Logger: a.logger.With("component", "inventory"), CallerTenants: apiauth.CallerTenants, Tokens: tokens})
	svc.RegisterPublic(a.shared.public.registrar)
	svc.RegisterInternal(a.shared.internal.registrar)
	// The campaigns runner reads devices through the public API's
	// ListDevices, as a trusted service (docs/campaigns.md).
	svc.RegisterPublic(a.shared.internal.registrar)
	// Presets (docs/provisioning.md) live beside the devices.
	pst, err := cfg.NewPresetStore()
	if err != nil {
		return nil, fmt.Errorf("inventory config: %w", err)
	}
	presets := inventory.NewPresets(pst, st, cfg.Keyring(), inventory.Options{Logger: a.logger.With("component", "presets"), CallerTenants: apiauth.CallerTenants})
	presets.RegisterPublic(a.shared.public.registrar)
	presets.RegisterInternal(a.shared.internal.registrar)
	// Campaigns that apply a preset read it as a trusted service
	// (docs/campaigns.md).
	presets.RegisterPublic(a.shared.internal.registrar)
	svc.OnDelete(presets.DeviceDeleted)
	a.shared.tokens.set(tokens)
	apiauth.NewTokenService(tokens, a.shared.auth, a.logger.With("component", "apiauth"), nil).Register(a.shared.public.registrar)
	tokenFile := a.opts.AdminTokenFile
	if tokenFile == "" {
		tokenFile = a.dataPath("admin.token")
	}
	return lifecycle.Funcs{
		// The first start of an install gives its operator a credential
		// (docs/security.md): the store must be up to hold it.
		StartFunc: func(ctx context.Context) error {
			if err := svc.Start(ctx); err != nil {
				return err
			}
			if err := presets.Start(ctx); err != nil {
				return err
			}
			if cfg.SecretsKeyFile != "" {
				warnIfShared(a.logger, "secrets key file", cfg.SecretsKeyFile)
			}
			created, err := apiauth.EnsureAdminToken(ctx, tokens, tokenFile, time.Now())
			if err != nil {
				return err
			}
			a.adminToken = adminToken{path: tokenFile, created: created}
			if created {
				a.logger.Info("admin API token written", "path", tokenFile)
			}
			return nil
		},
		RunFunc: func(ctx context.Context) error {
			err := svc.Run(ctx)
			return errors.Join(err, presets.Close(context.WithoutCancel(ctx)))
		},
	}, nil
}

// tokensFromInventory makes a process without the inventory verify API
// tokens, which are the inventory's, through its internal API
// (docs/security.md, "Processes without the inventory"); TokenService
// stays with the inventory's process.
func (a *app) tokensFromInventory() {
	if !a.selected("inventory") {
		a.shared.tokens.set(inventory.NewTokenClient(a.shared.inventory))
	}
}

// keyedService is a service that starts with start and runs run, and
// warns at its start when the key file the operator gave (keyFile, what
// in words) is open to other users (warnIfShared).
func (a *app) keyedService(what, keyFile string, start, run func(context.Context) error) lifecycle.Service {
	return lifecycle.Funcs{
		StartFunc: func(ctx context.Context) error {
			if keyFile != "" {
				warnIfShared(a.logger, what, keyFile)
			}
			return start(ctx)
		},
		RunFunc: run,
	}
}

// warnIfShared warns when a file holding a secret the operator provided
// is readable or writable by users other than its owner: whoever reads
// the secrets key file reads every device password of a database backup.
// The files fleetacs makes itself are created 0600.
func warnIfShared(logger *slog.Logger, what, path string) {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return
	}
	logger.Warn(what+" is open to other users than its owner: chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
}

// buildTasksClient connects to the tasks service's internal API
// (ws-planner): in process when the tasks target runs here, else at
// -client.tasks-addr. With neither, session workers run no tasks (logged).
func buildTasksClient(a *app) (lifecycle.Service, error) {
	return a.buildClient(internalClient{
		name: "tasks", addr: a.opts.TasksAddr, dst: &a.shared.tasks,
		absent: func() error {
			a.logger.Warn("no tasks service in this process and no -client.tasks-addr: session workers run no tasks")
			return nil
		},
	})
}

// firmwarePort adapts the files client, nil when there is none.
func firmwarePort(cc grpc.ClientConnInterface) sessions.FirmwareFiles {
	if cc == nil {
		return nil
	}
	return sessions.NewGRPCFirmwareFiles(cc)
}

// buildFilesClient connects to the files service's internal API, for the
// firmware versions of presets (docs/provisioning.md, "Firmware"): in
// process when the files target runs here, else at -client.files-addr.
// With neither, sessions only note a preset's firmware version.
func buildFilesClient(a *app) (lifecycle.Service, error) {
	return a.buildClient(internalClient{
		name: "files", addr: a.opts.FilesAddr, dst: &a.shared.filesInternal,
		absent: func() error {
			if a.selected("sessions") {
				a.logger.Warn("no files service in this process and no -client.files-addr: presets' firmware versions are not applied")
			}
			return nil
		},
	})
}

// tasksPort adapts the tasks client, nil when there is none.
func tasksPort(cc grpc.ClientConnInterface) sessions.Tasks {
	if cc == nil {
		return nil
	}
	return sessions.NewGRPCTasks(cc)
}

func buildSessions(a *app) (lifecycle.Service, error) {
	cfg := a.cfg.sessions
	srv := a.shared.internal
	var advertise func() string
	// A host alone (the pod's IP) takes the internal server's port.
	if err := cfg.JoinAdvertiseHost(a.opts.InternalGRPCAddr); err != nil {
		return nil, err
	}
	if cfg.AdvertiseAddr == "" {
		// The address the server is bound to, known once it has started;
		// until then, the one it is configured with.
		cfg.AdvertiseAddr = hostPort(a.opts.InternalGRPCAddr, "127.0.0.1")
		advertise = srv.dialAddr
	} else {
		a.own.add(srv, cfg.AdvertiseAddr)
	}
	// The keys that seal what sessions checkpoint (docs/sessions.md,
	// "Connection-request credentials"): the configured file, else the
	// inventory's when it runs here.
	var secrets *secretbox.Keyring
	switch {
	case cfg.SecretsKeyFile != "":
		secrets = secretbox.File(cfg.SecretsKeyFile, false)
	case a.selected("inventory"):
		inv := a.cfg.inventory
		if inv.Store == inventory.StoreSQLite && !a.flagSet["inventory.sqlite-path"] {
			inv.SQLitePath = a.dataPath("inventory.db")
		}
		secrets = inv.Keyring()
	}
	w, err := sessions.New(cfg, sessions.Deps{
		Inventory:     sessions.NewGRPCInventory(a.shared.inventory),
		Presets:       sessions.NewGRPCPresets(a.shared.inventory),
		FirmwareFiles: firmwarePort(a.shared.filesInternal),
		Leases:        a.shared.store.Leases,
		Checkpoints:   a.shared.store.Checkpoints,
		Registry:      a.shared.store.Registry,
		Sessions:      a.shared.store.Sessions,
		Logger:        a.logger.With("component", "sessions"),
		Meter:         a.telemetry.Meter,
		AdvertiseAddr: advertise,
		// Without Redis the affinity store is this process's: no other
		// worker can resume a session, so its state stays in memory.
		Local: a.opts.RedisAddr == "",
		// ws-planner: tasks and device events (docs/sessions.md, "Tasks").
		JetStream: a.shared.js, BusNames: a.shared.busNames, Tasks: tasksPort(a.shared.tasks),
		Propagator: a.telemetry.Propagator, TracerProvider: a.telemetry.Tracer,
		// Connection-request credentials (docs/sessions.md).
		Secrets: secrets,
	})
	if err != nil {
		return nil, err
	}
	w.Register(srv.registrar)
	return w, nil
}

func buildGateway(a *app) (lifecycle.Service, error) {
	dial, unsampled := a.internalDial()
	fwd := gateway.NewGRPCForwarder(
		affinity.NewLiveCache(a.shared.store.Registry, time.Second, nil),
		gateway.GRPCForwarderOptions{
			TracerProvider: a.tracerProvider(), Propagator: a.telemetry.Propagator, WrapStats: a.telemetry.GRPCStats,
			SplitUnsampled:       a.telemetry.SkipsUnsampled(),
			DialOptions:          dial,
			UnsampledDialOptions: unsampled,
			LocalConn:            a.localConn,
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
		TracerProvider: a.telemetry.Tracer,
		MeterProvider:  a.telemetry.Meter,
		Listening: func(name string, addr net.Addr) {
			a.bound[name] = addr
			a.listening.add(addr)
			if name == "http" && a.shared.files != nil {
				a.shared.files.SetBaseURL("http://" + hostPort(addr.String(), "127.0.0.1"))
			}
		},
		Files: filesHandler(a.shared.files),
	})
	if err != nil {
		return nil, err
	}
	if a.shared.files != nil {
		// -files.device-auth=credentials: downloads checked against the
		// device's own gateway credentials (docs/files.md).
		a.shared.files.SetDeviceAuth(g.AuthenticateDevice)
	}
	return lifecycle.Funcs{
		StartFunc: g.Start,
		RunFunc: func(ctx context.Context) error {
			defer fwd.Close()
			return g.Run(ctx)
		},
	}, nil
}

// grpcServerStats instruments the process's gRPC server: always the call
// duration histogram of its own (telemetry.GRPCServerMetrics says why),
// and the OpenTelemetry gRPC instrumentation (a span per sampled call, the
// caller's trace context: telemetry.SkipUnsampled) when spans are
// exported.
func (a *app) grpcServerStats() ([]stats.Handler, error) {
	m, err := telemetry.NewGRPCServerMetrics(a.telemetry.Meter)
	if err != nil {
		return nil, err
	}
	if a.telemetry.Tracing {
		return []stats.Handler{a.telemetry.GRPCServerStats(otelgrpc.NewServerHandler(a.otelgrpcOptions()...), m)}, nil
	}
	return []stats.Handler{m}, nil
}

// otelgrpcOptions feed the process's tracer and propagator to the
// OpenTelemetry gRPC instrumentation, installed while tracing is on, and
// no meter: its own RPC metrics built an attribute set on every call of
// every client and server (the servers' rpc.server.call.duration comes
// from telemetry.GRPCServerMetrics, with or without tracing), which was
// most of what tracing at a 1% sample rate cost (BENCHMARKS.md, issue 11).
func (a *app) otelgrpcOptions() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithTracerProvider(a.telemetry.Tracer),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
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

// buildNotifier checks the notifier's settings now and builds it when it
// starts, once NATS is connected.
func buildNotifier(a *app) (lifecycle.Service, error) {
	cfg := a.cfg.notifier
	if a.shared.js == nil {
		return nil, errors.New("the notifier needs NATS with JetStream: set -nats.url (or run target all, which embeds one)")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("notifier config: %w", err)
	}
	// With Redis the replicas share the STUN bindings (docs/protocol.md
	// §8.2); without it this process's table is all there is.
	var bindings notifier.BindingStore
	if a.shared.redis != nil {
		bindings = notifier.NewRedisBindings(a.shared.redis, a.opts.RedisPrefix)
	}
	var svc *notifier.Service
	return lifecycle.Funcs{
		StartFunc: func(ctx context.Context) error {
			var err error
			svc, err = notifier.New(cfg, notifier.Deps{
				Logger:        a.logger.With("component", "notifier"),
				Targets:       notifier.NewGRPCTargets(a.shared.inventory),
				JetStream:     a.shared.js,
				Names:         a.shared.busNames,
				Propagator:    a.telemetry.Propagator,
				MeterProvider: a.telemetry.Meter,
				OwnAddrs:      a.listenAddrs,
				Bindings:      bindings,
				// A span per wake request (docs/operations.md, "Traces").
				TracerProvider: a.telemetry.Tracer,
			})
			if err != nil {
				return err
			}
			return svc.Start(ctx)
		},
		RunFunc: func(ctx context.Context) error { return svc.Run(ctx) },
	}, nil
}

// listenAddrs lists the addresses the process listens on, which the
// notifier refuses as CPE addresses.
func (a *app) listenAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range a.own.list() {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out = append(out, ap)
		}
	}
	a.listening.mu.Lock()
	defer a.listening.mu.Unlock()
	return append(out, a.listening.addrs...)
}

// listening records the listeners the gRPC servers do not know of (the
// gateway's, the admin server's) as they bind.
type listening struct {
	mu    sync.Mutex
	addrs []netip.AddrPort
}

func (l *listening) add(addr net.Addr) {
	if ap, err := netip.ParseAddrPort(addr.String()); err == nil {
		l.addAddrPort(ap)
	}
}

func (l *listening) addAddrPort(ap netip.AddrPort) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addrs = append(l.addrs, ap)
}
