package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/connlimit"
	"github.com/fleetacs/fleetacs/pkg/grpcinproc"
	"github.com/fleetacs/fleetacs/pkg/lifecycle"
)

// grpcServer is one gRPC listener of the process with the services served
// on it. A module builds it (newGRPCServer, no I/O) and the services that
// belong on it register through its registrar while they are built; its
// Start binds the listener (a clash names the flag) and serves; its Run
// stops it gracefully when the process stops. A process may have several,
// each built by its own module from its own flag.
//
// Services of this process reach an internal server without leaving the
// process: through the in-process channel, which skips the transport
// (-server.grpc-in-process), or else through the gRPC transport over an
// in-memory pipe, the code path of calls between processes. A public
// server has neither: nothing in the process calls public APIs, and
// whatever is registered on it must pass its interceptors.
type grpcServer struct {
	// setting is the flag that sets addr, without its dash.
	setting string
	addr    string
	// maxConns caps its connections (connlimit): a flood on the gRPC port
	// must not take the descriptors the CWMP and admin listeners need.
	maxConns int
	// perSource caps those from one address, so that one host cannot take
	// them all (before any credential is looked at, a connection is only
	// a connection).
	perSource int
	srv       *grpc.Server
	health    *health.Server
	// public: no in-process paths (see above).
	public bool
	// On an internal server exactly one of inproc and mem is set.
	inproc *grpcinproc.Channel
	mem    *bufconn.Listener
	// forward, on the public server, is the in-memory listener of the
	// HTTP/JSON API's forwarder (apihttp.go), when it runs.
	forward   *bufconn.Listener
	registrar grpc.ServiceRegistrar
	own       *ownAddrs

	// Set by Start.
	ln   net.Listener
	errc chan error
}

var _ lifecycle.Service = (*grpcServer)(nil)

// newGRPCServer builds a gRPC server for the address that the flag setting
// chose, with extra options (credentials, interceptors). It does no I/O.
func (a *app) newGRPCServer(setting, addr string, public bool, extra ...grpc.ServerOption) (*grpcServer, error) {
	shs, err := a.grpcServerStats()
	if err != nil {
		return nil, err
	}
	var sopts []grpc.ServerOption
	for _, sh := range shs {
		sopts = append(sopts, grpc.StatsHandler(sh))
	}
	sopts = append(sopts,
		grpc.MaxRecvMsgSize(64<<20),
		grpc.MaxSendMsgSize(64<<20),
		grpc.StaticStreamWindowSize(grpcStreamWindow),
		grpc.StaticConnWindowSize(grpcConnWindow),
		// Headers beyond this are refused with the call, before any
		// interceptor: a token, trace context and the like take a few
		// hundred bytes (gRPC's own default is 16 MiB).
		grpc.MaxHeaderListSize(maxHeaderList),
		// A connection that has not finished its (TLS and) HTTP/2
		// handshake by then is closed, rather than hold a slot of the
		// connection caps for gRPC's default two minutes.
		grpc.ConnectionTimeout(grpcHandshakeTimeout),
	)
	if n := a.opts.GRPCStreamWorkers; n > 0 {
		// A goroutine per call starts with a small stack and grows it
		// (copying) on every call: 8 to 12% of a worker's or inventory's
		// CPU under load. Reused goroutines keep their stacks.
		sopts = append(sopts, grpc.NumStreamWorkers(uint32(n)))
	}
	sopts = append(sopts, extra...)
	g := &grpcServer{setting: setting, addr: addr, maxConns: a.opts.GRPCMaxConnections, perSource: a.opts.GRPCMaxConnectionsPerSource, public: public, srv: grpc.NewServer(sopts...), health: health.NewServer(), own: &a.own}
	healthpb.RegisterHealthServer(g.srv, g.health)
	// The server as a whole is serving once the process has started.
	g.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	switch {
	case public:
		g.registrar = g.srv
	case a.opts.InProcessGRPC:
		// Calls from this process's own code are internal calls (what the
		// internal credential proves over the network).
		g.inproc = grpcinproc.New(grpcinproc.Options{TracerProvider: a.telemetry.Tracer, Interceptor: apiauth.InProcessInterceptor})
		g.registrar = registrars{g.srv, g.inproc}
	default:
		g.mem = bufconn.Listen(1 << 20)
		g.registrar = g.srv
	}
	a.grpcServers = append(a.grpcServers, g)
	return g, nil
}

// Start binds the listener and serves on it (and in memory).
func (g *grpcServer) Start(ctx context.Context) error {
	ln, err := lifecycle.Listen(ctx, g.setting, g.addr)
	if err != nil {
		return err
	}
	g.ln = connlimit.New(connlimit.Limits{Max: g.maxConns, PerSource: g.perSource, IPv6Prefix: 64}).Listener(ln)
	g.own.add(g, g.dialAddr(), ln.Addr().String())
	g.errc = make(chan error, 3)
	go func() { g.errc <- g.srv.Serve(g.ln) }()
	if g.mem != nil {
		go func() { g.errc <- g.srv.Serve(g.mem) }()
	}
	if g.forward != nil {
		go func() { g.errc <- g.srv.Serve(apiauth.ForwarderListener(g.forward)) }()
	}
	return nil
}

// Run stops the server when ctx ends: health NOT_SERVING, then a graceful
// stop that gives in-flight calls ten seconds.
func (g *grpcServer) Run(ctx context.Context) error {
	select {
	case err := <-g.errc:
		return fmt.Errorf("serve gRPC on %s: %w", g.ln.Addr(), err)
	case <-ctx.Done():
	}
	g.health.Shutdown()
	done := make(chan struct{})
	go func() { g.srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		g.srv.Stop()
	}
	return nil
}

// dialAddr is the address others dial to reach this server once it is
// bound: its bound address, with 127.0.0.1 for an unspecified host.
func (g *grpcServer) dialAddr() string {
	addr := g.ln.Addr().(*net.TCPAddr)
	if addr.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(addr.Port))
	}
	return addr.String()
}

// conn returns a client of this very (internal) server for the services of
// this process, and what closes it; dial carries the internal credential
// (its transport credentials and token). It does no I/O.
func (g *grpcServer) conn(dial []grpc.DialOption) (grpc.ClientConnInterface, func() error, error) {
	if g.inproc != nil {
		return g.inproc, nil, nil
	}
	if g.mem == nil {
		return nil, nil, fmt.Errorf("the gRPC server of -%s serves no calls from inside the process", g.setting)
	}
	dial = append(dial,
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return g.mem.DialContext(ctx) }),
		// The name a TLS client checks the server's certificate against:
		// the host it is configured to listen on.
		grpc.WithAuthority(hostPort(g.addr, "127.0.0.1")),
	)
	cc, err := grpc.NewClient("passthrough:///"+g.setting, dial...)
	if err != nil {
		return nil, nil, fmt.Errorf("in-memory client of the gRPC server of -%s: %w", g.setting, err)
	}
	return cc, cc.Close, nil
}

// grpcHandshakeTimeout bounds a new connection's handshake.
const grpcHandshakeTimeout = 10 * time.Second

// maxHeaderList bounds the headers of a call on every gRPC server.
const maxHeaderList = 16 << 10

// maxPublicRecvMsg bounds a request on the public listener. Internal
// servers take up to 64 MiB (CPE bodies, an Inform's parameters, a
// session's diff); public requests (a device, a filter of at most 1,000
// ids, a token) are far smaller, and gRPC reads a unary request before
// any interceptor has looked at the caller's credentials.
const maxPublicRecvMsg = 4 << 20

// ownAddrs maps the addresses under which this process's gRPC servers are
// known (bound, advertised) to the server, so that the process's clients
// reach its own services in memory. Servers add their bound addresses as
// they start, while other services may already dial.
type ownAddrs struct {
	mu    sync.Mutex
	addrs map[string]*grpcServer
}

func (o *ownAddrs) add(g *grpcServer, addrs ...string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.addrs == nil {
		o.addrs = map[string]*grpcServer{}
	}
	for _, a := range addrs {
		o.addrs[a] = g
	}
}

// list returns the addresses.
func (o *ownAddrs) list() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]string, 0, len(o.addrs))
	for a := range o.addrs {
		out = append(out, a)
	}
	return out
}

// lookup returns the server of this process known under addr, or nil.
func (o *ownAddrs) lookup(addr string) *grpcServer {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.addrs[addr]
}

// registrars registers every service on several servers: a gRPC server and
// its in-process channel.
type registrars []grpc.ServiceRegistrar

func (rs registrars) RegisterService(desc *grpc.ServiceDesc, impl any) {
	for _, r := range rs {
		r.RegisterService(desc, impl)
	}
}

// localConn returns the in-process channel for a gRPC address of this very
// process when services call each other directly, else nil.
func (a *app) localConn(addr string) grpc.ClientConnInterface {
	if g := a.own.lookup(addr); g != nil && g.inproc != nil {
		return g.inproc
	}
	return nil
}

// dialer connects to this process's own gRPC servers in memory and to
// everything else over TCP.
func (a *app) dialer() grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		if g := a.own.lookup(addr); g != nil && g.mem != nil {
			return g.mem.DialContext(ctx)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	})
}
