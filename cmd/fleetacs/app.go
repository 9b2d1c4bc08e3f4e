package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/config"
	"github.com/fleetacs/fleetacs/pkg/lifecycle"
	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// options are the process-wide settings; each service brings its own Config.
type options struct {
	LogFormat        string
	LogLevel         string
	HTTPAddr         string
	GRPCAddr         string
	InternalGRPCAddr string
	DataDir          string
	StopTimeout      time.Duration

	RedisAddr     string
	RedisDB       int
	RedisPassword string
	RedisPrefix   string
	// RedisMode, RedisMaster, RedisUsername and RedisSentinelPassword
	// choose single Redis, Sentinel or Cluster (pkg/redisconn).
	RedisMode             string
	RedisMaster           string
	RedisUsername         string
	RedisSentinelPassword string

	InventoryAddr string
	// TasksAddr is the tasks service's internal gRPC API (ws-planner).
	TasksAddr string
	// FilesAddr is the files service's internal gRPC API (preset
	// firmware).
	FilesAddr string

	NATSURL  string
	NATSPort int
	// NATSStreams size the JetStream streams (-nats.stream-replicas, ...).
	NATSStreams natsbus.StreamOptions

	Pprof              bool
	InProcessGRPC      bool
	GRPCStreamWorkers  int
	GRPCMaxConnections int
	// GRPCMaxConnectionsPerSource caps a gRPC listener's connections
	// from one address.
	GRPCMaxConnectionsPerSource int

	// Auth authenticates public API calls, PublicTLS secures the public
	// listener, Internal is the internal credential of every internal
	// server and client of the process (docs/security.md).
	Auth           apiauth.Config
	PublicTLS      apiauth.PublicTLSConfig
	Internal       apiauth.InternalConfig
	AdminTokenFile string
}

func (o *options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.LogFormat, "log.format", "json", "log format: json or text")
	fs.StringVar(&o.LogLevel, "log.level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.HTTPAddr, "server.http-addr", ":9100", "admin HTTP listen address: /healthz, /readyz, /metrics")
	fs.StringVar(&o.DataDir, "data-dir", "./data", "directory of the embedded stores (SQLite files, NATS JetStream)")
	fs.StringVar(&o.GRPCAddr, "server.grpc-addr", ":9300", "listen address of the public gRPC API (inventory, API tokens), which answers only callers with credentials; opened by processes that serve it")
	fs.StringVar(&o.InternalGRPCAddr, "server.internal-grpc-addr", "127.0.0.1:9301", "listen address of the internal gRPC services (session workers, the inventory's internal API, health), which answer only callers with the internal credential (-internal.*)")
	fs.StringVar(&o.AdminTokenFile, "auth.admin-token-file", "", "where the inventory writes an admin API token at the first start of an install (when the file is missing and no admin token for all tenants exists); never overwritten (empty: admin.token in -data-dir)")
	o.Auth.RegisterFlags(fs)
	o.PublicTLS.RegisterFlags(fs)
	o.Internal.RegisterFlags(fs)
	fs.DurationVar(&o.StopTimeout, "server.stop-timeout", 45*time.Second, "how long each service may take to stop on shutdown (at least the gateway's drain grace plus its shutdown timeout)")
	fs.BoolVar(&o.Pprof, "server.pprof", false, "serve Go's /debug/pprof/ profiles on the admin listener")
	fs.BoolVar(&o.InProcessGRPC, "server.grpc-in-process", true, "services in this process call each other's gRPC handlers directly, skipping the transport (false: through the gRPC transport in memory, as between processes)")
	fs.IntVar(&o.GRPCMaxConnections, "server.grpc-max-connections", 1024, "connections the gRPC listener holds at once; more are closed at once (services share a few long-lived connections)")
	fs.IntVar(&o.GRPCMaxConnectionsPerSource, "server.grpc-max-connections-per-source", 64, "connections a gRPC listener holds from one address (an IPv6 /64 counting as one), so that one host cannot take all of -server.grpc-max-connections (0: no cap)")
	fs.IntVar(&o.GRPCStreamWorkers, "server.grpc-stream-workers", 256, "goroutines kept to serve gRPC calls, reused so that each call does not grow a fresh stack (calls beyond them get their own; 0: one new goroutine per call)")
	fs.StringVar(&o.RedisAddr, "redis.addr", "", "Redis host:port for session routing, device leases and checkpoints, and the notifier's STUN bindings; with -redis.mode=sentinel the sentinels', with cluster seed nodes, comma-separated (empty: in memory, one process only)")
	fs.StringVar(&o.RedisMode, "redis.mode", "single", "Redis deployment: single (one server), sentinel (master found through the sentinels of -redis.addr) or cluster (Redis Cluster, seeds in -redis.addr)")
	fs.StringVar(&o.RedisMaster, "redis.sentinel-master", "", "name of the master the sentinels monitor (-redis.mode=sentinel)")
	fs.IntVar(&o.RedisDB, "redis.db", 0, "Redis database number (0 with -redis.mode=cluster)")
	fs.StringVar(&o.RedisUsername, "redis.username", "", "Redis ACL user name (empty: the default user)")
	fs.StringVar(&o.RedisPassword, "redis.password", "", "Redis password")
	fs.StringVar(&o.RedisSentinelPassword, "redis.sentinel-password", "", "password of the sentinels, when they require one (-redis.mode=sentinel)")
	fs.StringVar(&o.RedisPrefix, "redis.prefix", "fleetacs", "prefix of every Redis key (several installs can share one Redis)")
	fs.StringVar(&o.InventoryAddr, "client.inventory-addr", "", "host:port of the inventory gRPC API (empty: this process's own, when it runs inventory)")
	fs.StringVar(&o.TasksAddr, "client.tasks-addr", "", "host:port of the tasks service's internal gRPC API (empty: this process's own, when it runs tasks; else session workers run no tasks)")
	fs.StringVar(&o.FilesAddr, "client.files-addr", "", "host:port of the files service's internal gRPC API, where session workers find the firmware files presets ask for (empty: this process's own, when it runs files; else presets' firmware versions are not applied)")
	fs.StringVar(&o.NATSURL, "nats.url", "", "NATS server URL, or comma-separated URLs of several servers of one cluster (empty with target all: an embedded NATS server with JetStream)")
	fs.IntVar(&o.NATSPort, "nats.embedded-port", -1, "client port of the embedded NATS server on 127.0.0.1 (-1: any free port, logged at start)")
}

// module is one target: a service or a shared part that services depend on.
type module struct {
	name string
	doc  string
	// target: a command line may name it; inAll: "all" runs it. Shared
	// parts are neither: services pull them in as dependencies.
	target, inAll bool
	// deps are the modules it needs; after, modules it starts after when
	// they run in the same process.
	deps, after []string
	// health names the gRPC services whose health status follows the
	// module's readiness.
	health []string
	// build returns the service to run; it does no I/O itself.
	build func(a *app) (lifecycle.Service, error)
}

// app is one process being assembled: the settings, the shared parts and
// the modules chosen on the command line.
type app struct {
	opts      options
	logger    *slog.Logger
	telemetry *telemetry.Providers
	// clients records the latency and errors of the calls to Redis, NATS,
	// MongoDB and SQLite (telemetry.ClientMetrics).
	clients *telemetry.ClientMetrics
	health  *lifecycle.Health
	modules map[string]*module
	cfg     serviceConfigs
	shared  shared
	chosen  map[string]bool
	// flagSet names the flags given on the command line or by environment.
	flagSet map[string]bool
	// grpcServers are the process's gRPC servers; own maps the addresses
	// under which they are known to them.
	grpcServers []*grpcServer
	own         ownAddrs
	// listening holds the listeners' addresses the notifier refuses.
	listening listening
	// bound holds the gateway's listeners' addresses once bound, by name
	// ("http", "https"), for the banner.
	bound map[string]net.Addr
	// internal is the internal credential (-internal.*).
	internal *apiauth.Internal
	// adminToken is what the inventory did about the admin token file.
	adminToken adminToken
	// apiAddrFile is what writeAPIAddr wrote, removed again on stop.
	apiAddrFile string
}

// adminToken is the admin token file of the install, for the banner.
type adminToken struct {
	path    string
	created bool
}

// selected reports whether a module runs in this process.
func (a *app) selected(name string) bool { return a.chosen[name] }

// dataPath is a path under the data directory.
func (a *app) dataPath(name string) string { return filepath.Join(a.opts.DataDir, name) }

// names lists, in start order, the modules for which keep is true.
func names(keep func(*module) bool) []string {
	var out []string
	for _, m := range modules() {
		if keep(m) {
			out = append(out, m.name)
		}
	}
	return out
}

func isTarget(m *module) bool { return m.target }
func isInAll(m *module) bool  { return m.inAll }

func registry() map[string]*module {
	mods := map[string]*module{}
	for _, m := range modules() {
		mods[m.name] = m
	}
	return mods
}

// resolve expands the targets into modules in start order: the targets
// and, transitively, their deps; each module after its deps and after the
// chosen modules it names in after.
func resolve(mods map[string]*module, targets []string) ([]*module, error) {
	unknown := func(name string) error {
		return fmt.Errorf("unknown target %q (targets: all, %s)", name, strings.Join(names(isTarget), ", "))
	}
	chosen := map[string]bool{}
	var need func(name string) error
	need = func(name string) error {
		m, ok := mods[name]
		if !ok {
			return unknown(name)
		}
		if chosen[name] {
			return nil
		}
		chosen[name] = true
		for _, d := range m.deps {
			if err := need(d); err != nil {
				return err
			}
		}
		return nil
	}
	for _, t := range targets {
		list := []string{t}
		if t == "all" {
			list = names(isInAll)
		} else if m, ok := mods[t]; !ok || !m.target {
			return nil, unknown(t)
		}
		for _, n := range list {
			if err := need(n); err != nil {
				return nil, err
			}
		}
	}

	var order []*module
	placed := map[string]bool{}
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		if slices.Contains(path, name) {
			return fmt.Errorf("dependency cycle: %s", strings.Join(append(path, name), " -> "))
		}
		if placed[name] {
			return nil
		}
		m := mods[name]
		for _, d := range m.before() {
			if !chosen[d] {
				continue
			}
			if err := visit(d, append(path, name)); err != nil {
				return err
			}
		}
		placed[name] = true
		order = append(order, m)
		return nil
	}
	// Visit in the module list's order, so that the start order does not
	// depend on how the targets were spelt.
	for _, n := range names(func(m *module) bool { return chosen[m.name] }) {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// before lists the modules that start before this one when chosen.
func (m *module) before() []string { return append(slices.Clone(m.deps), m.after...) }

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "Usage: fleetacs [flags] TARGET...\n\n")
	fmt.Fprintf(w, "Runs FleetACS services in one process. Targets:\n")
	fmt.Fprintf(w, "  %-10s %s\n", "all", "every service, on the embedded default unless flags name external stores")
	mods := registry()
	for _, name := range names(isTarget) {
		fmt.Fprintf(w, "  %-10s %s\n", name, mods[name].doc)
	}
	fmt.Fprintf(w, "\n'fleetacs [flags] healthcheck [live]' asks the admin listener (-server.http-addr) of a process run\n"+
		"with the same flags on this host for /readyz (/healthz) and exits 0 on 200: a container health check.\n")
	fmt.Fprintf(w, "\nEvery flag can also be set by its environment variable: -a.b-c by FLEETACS_A_B_C.\n\nFlags:\n")
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	sort.Strings(names)
	for _, n := range names {
		f := fs.Lookup(n)
		def := ""
		if f.DefValue != "" {
			def = fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintf(w, "  -%s\n      %s%s [%s]\n", f.Name, f.Usage, def, config.EnvName(f.Name))
	}
}

// usageError reports a mistake on the command line in one line, and
// where help is: the flag list would push the error off the screen.
func usageError(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "fleetacs: %s\nRun 'fleetacs -help' for the targets and flags.\n", msg)
	return 2
}

// run is the whole command; main only adds signals and the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	a := &app{modules: registry(), health: lifecycle.NewHealth()}
	fs := flag.NewFlagSet("fleetacs", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	a.opts.RegisterFlags(fs)
	registerServiceFlags(a, fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(fs, stdout)
			return 0
		}
		return usageError(stderr, err.Error())
	}
	if err := config.ApplyEnv(fs, lookupEnv); err != nil {
		fmt.Fprintf(stderr, "fleetacs: %v\n", err)
		return 2
	}
	a.flagSet = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { a.flagSet[f.Name] = true })
	targets := fs.Args()
	if len(targets) > 0 && targets[0] == "healthcheck" {
		return healthcheck(ctx, a.opts.HTTPAddr, targets[1:], stderr)
	}
	if len(targets) == 0 {
		return usageError(stderr, "name at least one target: all, "+strings.Join(names(isTarget), ", "))
	}
	order, err := resolve(a.modules, targets)
	if err != nil {
		return usageError(stderr, err.Error())
	}
	a.chosen = map[string]bool{}
	for _, m := range order {
		a.chosen[m.name] = true
	}

	logger, err := telemetry.NewLogger(stderr, a.opts.LogFormat, a.opts.LogLevel)
	if err != nil {
		fmt.Fprintf(stderr, "fleetacs: %v\n", err)
		return 2
	}
	a.logger = logger
	if err := errors.Join(a.opts.Auth.Validate(), a.opts.PublicTLS.Validate()); err != nil {
		fmt.Fprintf(stderr, "fleetacs: %v\n", err)
		return 2
	}
	// Every process has an internal listener: it refuses to open one that
	// other hosts reach without a credential (apiauth, "Internal calls").
	if a.internal, err = apiauth.NewInternal(a.opts.Internal, a.opts.InternalGRPCAddr, logger.With("component", "apiauth")); err != nil {
		fmt.Fprintf(stderr, "fleetacs: %v\n", err)
		return 2
	}
	tp, err := telemetry.Setup(ctx, "fleetacs", os.Getenv)
	if err != nil {
		logger.Error("set up telemetry", "err", err)
		return 1
	}
	a.telemetry = tp
	if a.clients, err = telemetry.NewClientMetrics(tp.Meter); err != nil {
		logger.Error("set up telemetry", "err", err)
		return 1
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx)
	}()

	// The admin server starts first and stops last, so that probes answer
	// while the rest starts (not ready) and drains.
	handlers := map[string]http.Handler{"/metrics": tp.MetricsHandler}
	if a.opts.Pprof {
		handlers["/debug/pprof/"] = http.HandlerFunc(pprof.Index)
		handlers["/debug/pprof/profile"] = http.HandlerFunc(pprof.Profile)
		handlers["/debug/pprof/trace"] = http.HandlerFunc(pprof.Trace)
		handlers["/debug/pprof/symbol"] = http.HandlerFunc(pprof.Symbol)
	}
	admin := &lifecycle.AdminServer{Addr: a.opts.HTTPAddr, Setting: "server.http-addr", Health: a.health, Logger: logger, Handlers: handlers}
	a.bound = map[string]net.Addr{}
	group := lifecycle.NewGroup(lifecycle.GroupOptions{
		Logger:      logger,
		StopTimeout: a.opts.StopTimeout,
		Health:      a.health,
		OnReady:     a.setServing,
		OnStarted: func() {
			for _, g := range a.grpcServers {
				g.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			}
			a.writeAPIAddr()
			if addr := admin.BoundAddr(); addr != nil {
				a.listening.add(addr)
			}
			banner(stdout, a, admin.BoundAddr())
			logger.Info("fleetacs started")
		},
	})
	group.Add("admin", admin)
	for _, m := range order {
		svc, err := m.build(a)
		if err != nil {
			logger.Error("configure service", "component", m.name, "err", err)
			fmt.Fprintf(stderr, "fleetacs: configure %s: %v\n", m.name, err)
			return 1
		}
		var deps []string
		for _, d := range m.before() {
			if a.chosen[d] {
				deps = append(deps, d)
			}
		}
		group.Add(m.name, svc, deps...)
	}
	names := make([]string, len(order))
	for i, m := range order {
		names[i] = m.name
	}
	logger.Info("fleetacs starting", "targets", strings.Join(targets, ","), "services", strings.Join(names, ","))
	err = group.Run(ctx)
	a.removeAPIAddr()
	if err != nil {
		logger.Error("fleetacs stopped with an error", "err", err)
		// One line a person reads first, whatever the log format.
		fmt.Fprintf(stderr, "fleetacs: %v\n", err)
		return 1
	}
	logger.Info("fleetacs stopped")
	return 0
}

// setServing makes the gRPC health of a module's services follow its
// readiness, on every gRPC server of the process.
func (a *app) setServing(module string, ready bool) {
	m, ok := a.modules[module]
	if !ok {
		return
	}
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ready {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, g := range a.grpcServers {
		for _, name := range m.health {
			g.health.SetServingStatus(name, st)
		}
	}
}

// banner tells a person at the terminal, once every listener is bound, how
// to point a CPE and fleetctl at this process: the addresses are the bound
// ones. It is written in one piece.
func banner(out io.Writer, a *app, adminAddr net.Addr) {
	var w bytes.Buffer
	defer func() { _, _ = out.Write(w.Bytes()) }()
	fmt.Fprintln(&w, "FleetACS is ready.")
	if addr, ok := a.bound["http"]; ok {
		fmt.Fprintf(&w, "  ACS URL for CPEs (ManagementServer.URL): %s\n", acsURL("http", addr))
	}
	if addr, ok := a.bound["https"]; ok {
		fmt.Fprintf(&w, "  ACS URL over TLS:                        %s\n", acsURL("https", addr))
	}
	if a.selected("gateway") {
		g := a.cfg.gateway
		switch {
		case g.AuthAnonymous:
			fmt.Fprintln(&w, "  CPE authentication: OFF. Any CPE is accepted without credentials (-gateway.auth-anonymous); never do this on a network you do not control.")
		case g.AuthSharedUsername != "":
			fmt.Fprintf(&w, "  CPE authentication: shared user %q (-gateway.auth-shared-username/-password) or per-device credentials\n", g.AuthSharedUsername)
		default:
			fmt.Fprintln(&w, "  CPE authentication: per-device credentials from inventory, derived onboarding passwords or client certificates")
		}
	}
	admin := hostPort(adminAddr.String(), "localhost")
	fmt.Fprintf(&w, "  Health: http://%s/readyz   Metrics: http://%s/metrics\n", admin, admin)
	if g := a.shared.public; g != nil {
		tls := ""
		if a.opts.PublicTLS.Enabled() {
			tls = " -tls"
		}
		fmt.Fprintf(&w, "  gRPC API: %s   Devices: go run ./cmd/fleetctl -addr %s%s devices list\n", g.dialAddr(), g.dialAddr(), tls)
		if t := a.adminToken; t.path != "" {
			what := "Admin API token"
			if t.created {
				what = "Admin API token (created now, readable by you only)"
			}
			fmt.Fprintf(&w, "  %s: %s\n", what, t.path)
			cwd, _ := os.Getwd()
			fmt.Fprintln(&w, "    "+adminTokenHint(cwd, a.opts.DataDir, t.path))
			fmt.Fprintln(&w, "    then create tokens for people and systems: fleetctl tokens create -role viewer -tenant default -name NAME")
		}
	}
	if addr, ok := a.bound["http"]; ok {
		fmt.Fprintf(&w, "  Simulated CPEs: go run ./tools/cpesim -url %s -devices 10\n", hostURL("http", hostPort(addr.String(), "127.0.0.1")))
	}
}

// adminTokenHint tells how fleetctl gets the admin token at tokenPath:
// by itself when run from the directory whose ./data is the data
// directory (where it reads data/api.addr and data/admin.token), else
// through $FLEETACS_TOKEN.
func adminTokenHint(cwd, dataDir, tokenPath string) string {
	data, err1 := filepath.Abs(dataDir)
	tok, err2 := filepath.Abs(tokenPath)
	// "Elsewhere" needs the absolute path.
	export := "export FLEETACS_TOKEN=$(cat " + tok + ")"
	if err1 != nil || err2 != nil || filepath.Base(data) != "data" || tok != filepath.Join(data, "admin.token") {
		return "fleetctl does not find it by itself: " + export
	}
	if dir := filepath.Dir(data); dir != filepath.Clean(cwd) {
		return "fleetctl run from " + dir + " uses it; elsewhere: " + export
	}
	return "fleetctl run from this directory uses it; elsewhere: " + export
}

// writeAPIAddr tells fleetctl runs in the working directory where this
// process serves the public API: data/api.addr holds its address, and
// "tls" when it serves TLS (cmd/fleetctl reads it). Only a process serving
// the public API writes it; a failure is logged, not fatal.
func (a *app) writeAPIAddr() {
	g := a.shared.public
	if g == nil {
		return
	}
	line := g.dialAddr()
	if a.opts.PublicTLS.Enabled() {
		line += " tls"
	}
	path := a.dataPath("api.addr")
	err := os.MkdirAll(a.opts.DataDir, 0o700)
	if err == nil {
		err = os.WriteFile(path, []byte(line+"\n"), 0o600)
	}
	if err != nil {
		a.logger.Warn("write the public API address for fleetctl", "path", path, "err", err)
		return
	}
	a.apiAddrFile = line + "\n"
}

// removeAPIAddr removes data/api.addr when the process stops, if it still
// holds what writeAPIAddr wrote: fleetctl sends data/admin.token to the
// address in it, and a stale one would send it to whatever listens there
// next (another user's process on the same loopback port).
func (a *app) removeAPIAddr() {
	if a.apiAddrFile == "" {
		return
	}
	path := a.dataPath("api.addr")
	if b, err := os.ReadFile(path); err == nil && string(b) == a.apiAddrFile {
		if err := os.Remove(path); err != nil {
			a.logger.Warn("remove the public API address for fleetctl", "path", path, "err", err)
		}
	}
}

// acsURL is the URL of a CWMP listener as a CPE would use it. A listener
// on every interface is reachable under any of the host's addresses: the
// URL names one a CPE on the network can use, when the host has one.
func acsURL(scheme string, addr net.Addr) string {
	local := hostURL(scheme, hostPort(addr.String(), "localhost"))
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return local
	}
	if ip := externalIP(); ip != "" {
		return fmt.Sprintf("%s (all interfaces; from this host: %s)", hostURL(scheme, net.JoinHostPort(ip, fmt.Sprint(tcp.Port))), local)
	}
	return local + " (all interfaces: from a CPE, use this host's address)"
}

func hostURL(scheme, hostport string) string { return scheme + "://" + hostport + "/" }

// externalIP returns an IPv4 address of this host that is not loopback,
// or "".
func externalIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

// hostPort turns a listen address into one a person or a client can use
// on this host: an empty or unspecified host becomes host.
func hostPort(listen, host string) string {
	h, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if h != "" && h != "0.0.0.0" && h != "::" {
		host = h
	}
	return net.JoinHostPort(host, port)
}
