package main

import (
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

	"github.com/fleetacs/fleetacs/pkg/config"
	"github.com/fleetacs/fleetacs/pkg/lifecycle"
	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// options are the process-wide settings; each service brings its own Config.
type options struct {
	LogFormat   string
	LogLevel    string
	HTTPAddr    string
	GRPCAddr    string
	DataDir     string
	StopTimeout time.Duration

	RedisAddr     string
	RedisDB       int
	RedisPassword string
	RedisPrefix   string

	InventoryAddr string

	NATSURL  string
	NATSPort int

	Pprof             bool
	InProcessGRPC     bool
	GRPCStreamWorkers int
}

func (o *options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.LogFormat, "log.format", "json", "log format: json or text")
	fs.StringVar(&o.LogLevel, "log.level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.HTTPAddr, "server.http-addr", ":9100", "admin HTTP listen address: /healthz, /readyz, /metrics")
	fs.StringVar(&o.DataDir, "data-dir", "./data", "directory of the embedded stores (SQLite files, NATS JetStream)")
	fs.StringVar(&o.GRPCAddr, "server.grpc-addr", ":9300", "listen address of the process's gRPC server (internal and public APIs)")
	fs.DurationVar(&o.StopTimeout, "server.stop-timeout", 45*time.Second, "how long each service may take to stop on shutdown (at least the gateway's drain grace plus its shutdown timeout)")
	fs.BoolVar(&o.Pprof, "server.pprof", false, "serve Go's /debug/pprof/ profiles on the admin listener")
	fs.BoolVar(&o.InProcessGRPC, "server.grpc-in-process", true, "services in this process call each other's gRPC handlers directly, skipping the transport (false: through the gRPC transport in memory, as between processes)")
	fs.IntVar(&o.GRPCStreamWorkers, "server.grpc-stream-workers", 256, "goroutines kept to serve gRPC calls, reused so that each call does not grow a fresh stack (calls beyond them get their own; 0: one new goroutine per call)")
	fs.StringVar(&o.RedisAddr, "redis.addr", "", "Redis host:port for session routing, device leases and checkpoints (empty: in memory, one process only)")
	fs.IntVar(&o.RedisDB, "redis.db", 0, "Redis database number")
	fs.StringVar(&o.RedisPassword, "redis.password", "", "Redis password")
	fs.StringVar(&o.RedisPrefix, "redis.prefix", "fleetacs", "prefix of every Redis key (several installs can share one Redis)")
	fs.StringVar(&o.InventoryAddr, "client.inventory-addr", "", "host:port of the inventory gRPC API (empty: this process's own, when it runs inventory)")
	fs.StringVar(&o.NATSURL, "nats.url", "", "NATS server URL (empty with target all: an embedded NATS server with JetStream)")
	fs.IntVar(&o.NATSPort, "nats.embedded-port", -1, "client port of the embedded NATS server on 127.0.0.1 (-1: any free port, logged at start)")
}

// module is one target: a service or a shared part that services depend on.
type module struct {
	name string
	doc  string
	// target: a command line may name it; inAll: "all" runs it. Shared
	// parts are neither: services pull them in as dependencies.
	target, inAll bool
	deps          []string
	// build returns the service to run; it does no I/O itself.
	build func(a *app) (lifecycle.Service, error)
}

// app is one process being assembled: the settings, the shared parts and
// the modules chosen on the command line.
type app struct {
	opts      options
	logger    *slog.Logger
	telemetry *telemetry.Providers
	health    *lifecycle.Health
	modules   map[string]*module
	cfg       serviceConfigs
	shared    shared
	chosen    map[string]bool
	// flagSet names the flags given on the command line or by environment.
	flagSet map[string]bool
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

// resolve expands the targets into modules in dependency order.
func resolve(mods map[string]*module, targets []string) ([]*module, error) {
	var order []*module
	seen := map[string]bool{}
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		m, ok := mods[name]
		if !ok {
			return fmt.Errorf("unknown target %q (targets: all, %s)", name, strings.Join(names(isTarget), ", "))
		}
		if slices.Contains(path, name) {
			return fmt.Errorf("dependency cycle: %s", strings.Join(append(path, name), " -> "))
		}
		if seen[name] {
			return nil
		}
		for _, d := range m.deps {
			if err := visit(d, append(path, name)); err != nil {
				return err
			}
		}
		seen[name] = true
		order = append(order, m)
		return nil
	}
	for _, t := range targets {
		chosen := []string{t}
		if t == "all" {
			chosen = names(isInAll)
		} else if m, ok := mods[t]; ok && !m.target {
			return nil, fmt.Errorf("unknown target %q (targets: all, %s)", t, strings.Join(names(isTarget), ", "))
		}
		for _, n := range chosen {
			if err := visit(n, nil); err != nil {
				return nil, err
			}
		}
	}
	return order, nil
}

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "Usage: fleetacs [flags] TARGET...\n\n")
	fmt.Fprintf(w, "Runs FleetACS services in one process. Targets:\n")
	fmt.Fprintf(w, "  %-10s %s\n", "all", "every service, on the embedded default unless flags name external stores")
	mods := registry()
	for _, name := range names(isTarget) {
		fmt.Fprintf(w, "  %-10s %s\n", name, mods[name].doc)
	}
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
		fmt.Fprintf(stderr, "fleetacs: %v\n\n", err)
		usage(fs, stderr)
		return 2
	}
	if err := config.ApplyEnv(fs, lookupEnv); err != nil {
		fmt.Fprintf(stderr, "fleetacs: %v\n", err)
		return 2
	}
	a.flagSet = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { a.flagSet[f.Name] = true })
	targets := fs.Args()
	if len(targets) == 0 {
		fmt.Fprintf(stderr, "fleetacs: name at least one target\n\n")
		usage(fs, stderr)
		return 2
	}
	order, err := resolve(a.modules, targets)
	if err != nil {
		fmt.Fprintf(stderr, "fleetacs: %v\n", err)
		return 2
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
	tp, err := telemetry.Setup(ctx, "fleetacs", os.Getenv)
	if err != nil {
		logger.Error("set up telemetry", "err", err)
		return 1
	}
	a.telemetry = tp
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx)
	}()

	group := lifecycle.NewGroup(logger, a.opts.StopTimeout)
	// The admin server starts first and stops last, so probes answer
	// while the rest drains.
	handlers := map[string]http.Handler{"/metrics": tp.MetricsHandler}
	if a.opts.Pprof {
		handlers["/debug/pprof/"] = http.HandlerFunc(pprof.Index)
		handlers["/debug/pprof/profile"] = http.HandlerFunc(pprof.Profile)
		handlers["/debug/pprof/trace"] = http.HandlerFunc(pprof.Trace)
		handlers["/debug/pprof/symbol"] = http.HandlerFunc(pprof.Symbol)
	}
	group.Add("admin", &lifecycle.AdminServer{Addr: a.opts.HTTPAddr, Health: a.health, Logger: logger, Handlers: handlers})
	for _, m := range order {
		svc, err := m.build(a)
		if err != nil {
			logger.Error("configure service", "component", m.name, "err", err)
			return 1
		}
		group.Add(m.name, svc)
	}
	names := make([]string, len(order))
	for i, m := range order {
		names[i] = m.name
	}
	logger.Info("fleetacs starting", "targets", strings.Join(targets, ","), "services", strings.Join(names, ","))
	if a.selected("gateway") {
		banner(stdout, a)
	}
	if err := group.Run(ctx); err != nil {
		logger.Error("fleetacs stopped with an error", "err", err)
		return 1
	}
	logger.Info("fleetacs stopped")
	return 0
}

// banner tells a person at the terminal how to point a CPE at this process.
func banner(w io.Writer, a *app) {
	g := a.cfg.gateway
	fmt.Fprintln(w, "FleetACS is starting.")
	if g.ListenAddr != "" {
		fmt.Fprintf(w, "  ACS URL for CPEs (ManagementServer.URL): http://%s/\n", hostPort(g.ListenAddr))
	}
	if g.TLSListenAddr != "" {
		fmt.Fprintf(w, "  ACS URL over TLS:                        https://%s/\n", hostPort(g.TLSListenAddr))
	}
	switch {
	case g.AuthAnonymous:
		fmt.Fprintln(w, "  CPE authentication: OFF. Any CPE is accepted without credentials (-gateway.auth-anonymous); never do this on a network you do not control.")
	case g.AuthSharedUsername != "":
		fmt.Fprintf(w, "  CPE authentication: shared user %q (-gateway.auth-shared-username/-password) or per-device credentials\n", g.AuthSharedUsername)
	default:
		fmt.Fprintln(w, "  CPE authentication: per-device credentials from inventory, derived onboarding passwords or client certificates")
	}
	fmt.Fprintf(w, "  Health: http://%s/readyz   Metrics: http://%s/metrics\n", hostPort(a.opts.HTTPAddr), hostPort(a.opts.HTTPAddr))
	fmt.Fprintln(w, "  Simulated CPEs: go run ./tools/cpesim -h   Devices: go run ./cmd/fleetctl devices list")
}

// hostPort turns a listen address into one a person can use on this host.
func hostPort(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
