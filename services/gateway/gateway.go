// Package gateway is FleetACS's CPE-facing edge: the CWMP endpoint over HTTP
// and HTTPS on :7547 (docs/design.md §1, §2 steps 1-2 and 4-6, §5). For
// each CPE POST it applies size and time limits, removes gzip or deflate
// coding, authenticates the CPE (HTTP Digest, Basic over TLS, or a TLS
// client certificate), admits or sheds new sessions by priority, takes the
// device lease for a new session and forwards the request to a session
// worker through the Forwarder port, then sends the worker's answer back.
//
// The gateway keeps no session state of its own beyond a TCP connection's
// last session and a count of the sessions it carries: a session's next
// request may arrive on another connection or another replica, and is
// routed by its cookie, else by the connection it arrives on, else by the
// CPE's address and the open session record in Affinity (docs/protocol.md
// §4.1, docs/design.md §2 step 4). Whatever routes it, a request continues
// a session only from the client address and as the principal that opened
// it, read from the shared record (binding.go).
//
// Authentication state that must hold across replicas is shared too
// (pkg/authstate): Digest nonce counts, so that a captured Authorization
// header cannot be replayed, and counts of failed authentications per
// address and user name, whose exponential back-off answers password
// guessing with 503 and Retry-After (auth.go). docs/security.md says how
// CPEs authenticate, for operators.
//
// Logs are JSON through the injected log/slog logger with the keys
// device_id, session_id and tenant; trace_id is added from the context by
// the logger's handler (pkg/telemetry). Values from CPEs are attributes,
// never part of a message.
package gateway

import (
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/authstate"
	"github.com/fleetacs/fleetacs/pkg/connlimit"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/lifecycle"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Deps are the gateway's collaborators. Only Forwarder is required.
type Deps struct {
	Logger *slog.Logger
	// Forwarder reaches the session workers.
	Forwarder Forwarder
	// Affinity holds open session records and Leases the device leases;
	// default: pkg/affinity's in-memory store (one process). A cluster
	// passes pkg/affinity's Redis store, shared with the workers.
	Affinity Affinity
	Leases   Leases
	// Credentials looks up per-device CPE credentials; nil means only the
	// shared onboarding credentials (or client certificates) authenticate.
	Credentials Credentials
	// NonceCounts and AuthGuard hold the authentication state the replicas
	// share; default: pkg/authstate's in-memory store (one process). A
	// cluster passes pkg/authstate's Redis store.
	NonceCounts NonceCounts
	AuthGuard   AuthGuard
	// TracerProvider and MeterProvider default to no-ops.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// Now is the clock (time.Now by default); RandN returns a uniform
	// random number in [0, n) (math/rand/v2.Int64N by default). Tests
	// inject both.
	Now   func() time.Time
	RandN func(n int64) int64
	// DeviceKey maps an Inform's DeviceId to the canonical device key
	// (default: DeviceKey).
	DeviceKey func(cwmp.DeviceID) string
	// Listening, when set, learns each listener's bound address once Start
	// has opened it: name is "http", "https" or "admin" (tests listen on
	// port 0).
	Listening func(name string, addr net.Addr)
	// Files serves GET and HEAD under /files/ to CPEs on the CWMP
	// listeners (the files service's DownloadHandler, docs/files.md); nil:
	// /files/ is not served.
	Files http.Handler
}

// Service is the gateway service.
type Service struct {
	cfg       Config
	logger    *slog.Logger
	fwd       Forwarder
	affinity  Affinity
	leases    Leases
	tracer    trace.Tracer
	metrics   *metrics
	now       func() time.Time
	randN     func(int64) int64
	deviceKey func(cwmp.DeviceID) string
	listening func(string, net.Addr)
	files     http.Handler

	auth        *authenticator
	authm       *authMetrics
	orphans     *orphanReleaser
	admission   *admission
	sessions    *sessionTable
	tenantHosts map[string]string
	trusted     []netip.Prefix
	// randomNonceSecret records that no nonce secret was configured.
	randomNonceSecret bool

	draining atomic.Bool
	ready    atomic.Bool

	// tracing: spans are recorded somewhere (not a no-op provider), so
	// requests join their session's trace (handler.go sessionSpan).
	tracing bool

	// Set by start, read by run (which runs after it).
	startOnce  sync.Once
	startErr   error
	runOnce    sync.Once
	cancelBase context.CancelFunc
	servers    []server
	admin      *server
	errc       chan error
}

// New builds the service from a configuration and its dependencies. It
// does no I/O: listeners open, and certificate files are read, in Start.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	if deps.Forwarder == nil {
		return nil, errors.New("gateway: no Forwarder")
	}
	s := &Service{
		cfg:       cfg,
		logger:    deps.Logger,
		fwd:       deps.Forwarder,
		affinity:  deps.Affinity,
		leases:    deps.Leases,
		now:       deps.Now,
		randN:     deps.RandN,
		deviceKey: deps.DeviceKey,
		listening: deps.Listening,
		files:     deps.Files,
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	s.logger = s.logger.With("service", "gateway")
	if s.now == nil {
		s.now = time.Now
	}
	if s.randN == nil {
		s.randN = rand.Int64N
	}
	if s.deviceKey == nil {
		s.deviceKey = DeviceKey
	}
	if s.affinity == nil || s.leases == nil {
		mem := affinity.NewMemory(s.now)
		if s.affinity == nil {
			s.affinity = mem.Affinity()
		}
		if s.leases == nil {
			s.leases = mem.Leases()
		}
	}
	tp := deps.TracerProvider
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	_, off := tp.(tracenoop.TracerProvider)
	s.tracing = !off
	s.tracer = tp.Tracer("github.com/fleetacs/fleetacs/services/gateway")
	mp := deps.MeterProvider
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	meter := mp.Meter("github.com/fleetacs/fleetacs/services/gateway")
	m, err := newMetrics(meter)
	if err != nil {
		return nil, fmt.Errorf("gateway metrics: %w", err)
	}
	s.metrics = m
	if s.authm, err = newAuthMetrics(meter); err != nil {
		return nil, fmt.Errorf("gateway metrics: %w", err)
	}
	s.orphans = newOrphanReleaser(s.leases, s.now, s.logger, s.authm.countOrphan)

	// Validate has checked these parse.
	s.tenantHosts, _ = parseTenantHosts(cfg.TenantHosts)
	s.trusted, _ = parsePrefixes(cfg.TrustedProxies)
	priority, _ := parseEventCodes(cfg.AdmissionPriorityEvents)
	digest, basic, _ := parseSchemes(cfg.AuthSchemes)

	secret := []byte(cfg.AuthNonceSecret)
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = crand.Read(secret) // crypto/rand.Read never fails on supported platforms
		s.randomNonceSecret = true
	}
	acsHosts, _ := parseHostNames(cfg.ACSHostNames)
	counts, guard := deps.NonceCounts, deps.AuthGuard
	if counts == nil || guard == nil {
		mem := authstate.NewMemory(s.now, 0)
		if counts == nil {
			counts = mem
		}
		if guard == nil {
			guard = mem
		}
	}
	s.auth = &authenticator{
		digest: digest, basic: basic,
		basicOverHTTP:    cfg.AuthBasicOverHTTP,
		anonymous:        cfg.AuthAnonymous,
		realm:            cfg.AuthRealm,
		nonces:           nonceMinter{secret: secret, realm: cfg.AuthRealm, lifetime: cfg.AuthNonceLifetime},
		sharedUser:       cfg.AuthSharedUsername,
		sharedPass:       cfg.AuthSharedPassword,
		onboardingSecret: cfg.AuthOnboardingSecret,
		onboardingOnly:   cfg.AuthSharedScope == sharedScopeOnboarding,
		onboardingWindow: cfg.AuthOnboardingWindow,
		certAnyDevice:    cfg.TLSClientCertDevices == certDevicesAny,
		acsHosts:         acsHosts,
		creds:            deps.Credentials,
		counts:           counts,
		guard:            guard,
		policy:           cfg.authPolicy(),
		now:              s.now,
	}
	certAuth := cfg.TLSListenAddr != "" && cfg.TLSClientAuth != "none"
	if !cfg.AuthAnonymous && !certAuth && deps.Credentials == nil && cfg.AuthSharedUsername == "" && cfg.AuthOnboardingSecret == "" {
		return nil, errors.New("gateway: no way for CPEs to authenticate: configure Credentials, gateway.auth-shared-username, gateway.auth-onboarding-secret or client certificates (or, insecurely, gateway.auth-anonymous)")
	}
	if s.auth.onboardingOnly && deps.Credentials == nil {
		return nil, errors.New("gateway: gateway.auth-shared-scope=onboarding needs Credentials to tell onboarding devices from the others")
	}
	s.admission = newAdmission(cfg.AdmissionRate, cfg.AdmissionBurst, cfg.AdmissionReservedShare, priority, s.now)
	s.sessions = newSessionTable(cfg.MaxSessions, cfg.SessionIdleTimeout, s.now)
	return s, nil
}

// Ready reports whether the gateway takes new sessions: it has started and
// is not draining.
func (s *Service) Ready() bool { return s.ready.Load() && !s.draining.Load() }

// Start reads the TLS files, binds the listeners and serves on them: once
// it returns, CPEs are answered. A listener that cannot be bound ends the
// start with an error naming its flag (pkg/lifecycle.Listen) and closes
// the ones already bound. Start may be called once; Run calls it when the
// caller has not.
func (s *Service) Start(ctx context.Context) error {
	err := errors.New("gateway: Start called twice")
	s.startOnce.Do(func() {
		err = s.start(ctx)
		s.startErr = err
	})
	return err
}

// Run serves CPEs until ctx ends, then drains: it reports not ready,
// refuses new sessions with 503, lets open sessions finish for up to
// gateway.drain-grace, then closes the connections within
// gateway.shutdown-timeout. It starts the service first when Start has not
// been called. It returns nil after a clean stop and an error when it
// cannot start or a listener fails. Run may be called once.
func (s *Service) Run(ctx context.Context) error {
	s.startOnce.Do(func() { s.startErr = s.start(ctx) })
	if s.startErr != nil {
		return s.startErr
	}
	err := errors.New("gateway: Run called twice")
	s.runOnce.Do(func() { err = s.run(ctx) })
	return err
}

type server struct {
	name string
	srv  *http.Server
	ln   net.Listener
}

func (s *Service) start(ctx context.Context) error {
	if s.cfg.AuthAnonymous {
		s.logger.Warn("CPE AUTHENTICATION IS OFF: gateway.auth-anonymous accepts any CPE without credentials; never run this way on a network you do not control")
	}
	if s.randomNonceSecret {
		s.logger.Info("no gateway.auth-nonce-secret: Digest nonces use a random key of this process, so CPEs challenged by one replica fail at another")
	}

	// Requests keep running through the drain: their context is not the
	// service's context but one cancelled only when the drain gives up.
	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	s.cancelBase = cancelBase

	var servers []server
	fail := func(err error) error {
		for _, sv := range servers {
			_ = sv.ln.Close()
		}
		s.cancelBase()
		return err
	}
	cwmpHandler := s.Handler()
	limiter := s.connLimiter()
	limited := func(ln net.Listener) net.Listener {
		return cwmpListener{Listener: limiter.Listener(ln), unauthIdle: s.cfg.UnauthenticatedIdleTimeout}
	}
	if s.cfg.ListenAddr != "" {
		ln, err := lifecycle.Listen(ctx, "gateway.listen-addr", s.cfg.ListenAddr)
		if err != nil {
			return fail(err)
		}
		servers = append(servers, server{"http", s.httpServer(baseCtx, cwmpHandler, nil), limited(ln)})
	}
	if s.cfg.TLSListenAddr != "" {
		tc, err := s.tlsConfig()
		if err != nil {
			return fail(err)
		}
		ln, err := lifecycle.Listen(ctx, "gateway.tls-listen-addr", s.cfg.TLSListenAddr)
		if err != nil {
			return fail(err)
		}
		servers = append(servers, server{"https", s.httpServer(baseCtx, cwmpHandler, tc), tls.NewListener(limited(ln), tc)})
	}
	if s.cfg.AdminListenAddr != "" {
		ln, err := lifecycle.Listen(ctx, "gateway.admin-listen-addr", s.cfg.AdminListenAddr)
		if err != nil {
			return fail(err)
		}
		// Probes have a small cap of their own, so that a flood there
		// cannot take the descriptors CPE connections need, nor the other
		// way round.
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", s.serveHealthz)
		mux.HandleFunc("/readyz", s.serveReadyz)
		s.admin = &server{"admin", lifecycle.AdminHTTPServer(mux, s.logger), lifecycle.AdminListener(ln, 0)}
	}
	s.servers = servers

	s.errc = make(chan error, len(servers)+1)
	serve := func(sv server) {
		s.logger.Info("listening", "listener", sv.name, "addr", sv.ln.Addr().String())
		if s.listening != nil {
			s.listening(sv.name, sv.ln.Addr())
		}
		go func() {
			if err := sv.srv.Serve(sv.ln); !errors.Is(err, http.ErrServerClosed) {
				s.errc <- fmt.Errorf("serve %s: %w", sv.name, err)
			}
		}()
	}
	if s.admin != nil {
		serve(*s.admin)
	}
	for _, sv := range servers {
		serve(sv)
	}
	s.ready.Store(true)
	return nil
}

func (s *Service) run(ctx context.Context) error {
	defer s.cancelBase()
	// Leases orphaned by store failures are released in the background
	// while the gateway serves and drains (orphans.go).
	octx, stopOrphans := context.WithCancel(context.WithoutCancel(ctx))
	orphansDone := make(chan struct{})
	go func() {
		defer close(orphansDone)
		s.orphans.run(octx)
	}()
	defer func() { stopOrphans(); <-orphansDone }()
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-s.errc:
		s.logger.Error("listener failed", "err", runErr)
	}

	s.draining.Store(true)
	if runErr == nil {
		n, _ := s.sessions.count()
		s.logger.Info("draining open sessions", "open_sessions", n, "grace", s.cfg.DrainGrace.String())
		s.drain()
	}

	var errs []error
	if runErr != nil {
		errs = append(errs, runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, sv := range s.servers {
		wg.Go(func() {
			if err := sv.srv.Shutdown(sctx); err != nil {
				// Connections still busy at the deadline are cut.
				_ = sv.srv.Close()
				s.logger.Warn("connections closed at the shutdown deadline", "listener", sv.name)
			}
		})
	}
	wg.Wait()
	s.cancelBase()
	if s.admin != nil {
		if err := s.admin.srv.Shutdown(sctx); err != nil {
			_ = s.admin.srv.Close()
		}
	}
	s.logger.Info("gateway stopped")
	return errors.Join(errs...)
}

// connLimiter returns the caps of the CWMP listeners (both count against
// one budget: file descriptors are the process's). A cap above what the
// open files limit allows is lowered to it.
func (s *Service) connLimiter() *connlimit.Limiter {
	maxConns := s.cfg.MaxConnections
	if limit, err := connlimit.FileLimit(); err != nil {
		s.logger.Warn("open files limit unknown; CWMP connections capped by gateway.max-connections only", "err", err)
	} else if budget := connlimit.Budget(limit); maxConns == 0 || maxConns > budget {
		if maxConns > budget {
			s.logger.Warn("gateway.max-connections above what the open files limit allows; lowered", "max_connections", maxConns, "open_files_limit", limit, "cap", budget)
		}
		maxConns = budget
	}
	s.logger.Info("CWMP connection caps", "max_connections", maxConns, "per_source", s.cfg.MaxConnectionsPerSource)
	l := connlimit.New(connlimit.Limits{
		Max:       maxConns,
		PerSource: s.cfg.MaxConnectionsPerSource,
		Exempt:    func(a netip.Addr) bool { return inPrefixes(a, s.trusted) },
		OnReject:  func(reason string) { s.metrics.countRefusedConn(reason) },
	})
	s.metrics.conns.Store(l)
	return l
}

// drain waits until no session is open here or the grace period ends.
func (s *Service) drain() {
	deadline := time.NewTimer(s.cfg.DrainGrace)
	defer deadline.Stop()
	// Idle sessions age out by the table's clock; look again now and then
	// even when nothing ends.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		n, changed := s.sessions.count()
		if n == 0 {
			s.logger.Info("drained: no open sessions")
			return
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-deadline.C:
			s.logger.Warn("drain grace over with sessions still open", "open_sessions", n)
			return
		}
	}
}

func (s *Service) httpServer(base context.Context, h http.Handler, tc *tls.Config) *http.Server {
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tc,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
		ConnContext:       withConnState,
		ConnState:         trackIdle,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug),
		// HTTP/1.1 only: CPEs speak it, and a session's keep-alive
		// connection is the routing key of cookie-less CPEs.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	return srv
}

// tlsConfig reads the certificate files (I/O, so at Start).
func (s *Service) tlsConfig() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s: %w", s.cfg.TLSCertFile, err)
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
	}
	if s.cfg.TLSClientAuth != "none" {
		pem, err := os.ReadFile(s.cfg.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read client CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read client CA file %s: no PEM certificate in it", s.cfg.TLSClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		if s.cfg.TLSClientAuth == "require" {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return tc, nil
}

func (s *Service) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Service) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.Ready() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// metrics are the gateway's OpenTelemetry instruments, with their
// attribute sets built once so that counting does not allocate.
type metrics struct {
	shed         metric.Int64Counter
	authFailures metric.Int64Counter
	sessions     metric.Int64Counter
	requests     metric.Int64Counter
	refusedConns metric.Int64Counter
	// conns counts the open CWMP connections once the listeners are up.
	conns atomic.Pointer[connlimit.Limiter]

	shedSets    map[string][2]metric.AddOption // reason -> [normal, priority]
	refusedSets map[string]metric.AddOption
}

func newMetrics(m metric.Meter) (*metrics, error) {
	out := &metrics{}
	var err error
	if out.shed, err = m.Int64Counter("fleetacs.gateway.sessions.shed",
		metric.WithDescription("New CPE sessions refused with 503, by reason and priority"), metric.WithUnit("{session}")); err != nil {
		return nil, err
	}
	if out.authFailures, err = m.Int64Counter("fleetacs.gateway.auth.failures",
		metric.WithDescription("CPE requests with wrong credentials"), metric.WithUnit("{request}")); err != nil {
		return nil, err
	}
	if out.sessions, err = m.Int64Counter("fleetacs.gateway.sessions.started",
		metric.WithDescription("CPE sessions a worker accepted through this gateway"), metric.WithUnit("{session}")); err != nil {
		return nil, err
	}
	if out.requests, err = m.Int64Counter("fleetacs.gateway.requests",
		metric.WithDescription("CPE HTTP requests answered, by status class"), metric.WithUnit("{request}")); err != nil {
		return nil, err
	}
	if out.refusedConns, err = m.Int64Counter("fleetacs.gateway.connections.refused",
		metric.WithDescription("CPE connections closed on arrival because a connection cap was full, by cap"), metric.WithUnit("{connection}")); err != nil {
		return nil, err
	}
	if _, err = m.Int64ObservableGauge("fleetacs.gateway.connections.open",
		metric.WithDescription("CPE connections open on the CWMP listeners"), metric.WithUnit("{connection}"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			if l := out.conns.Load(); l != nil {
				o.Observe(int64(l.Open()))
			}
			return nil
		})); err != nil {
		return nil, err
	}
	out.refusedSets = map[string]metric.AddOption{}
	for _, reason := range []string{connlimit.ReasonMax, connlimit.ReasonPerSource} {
		out.refusedSets[reason] = metric.WithAttributeSet(attribute.NewSet(attribute.String("cap", reason)))
	}
	out.shedSets = map[string][2]metric.AddOption{}
	for _, reason := range []string{shedRate, shedMaxSessions, shedDraining, shedWorkersBusy} {
		out.shedSets[reason] = [2]metric.AddOption{
			metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", reason), attribute.Bool("priority", false))),
			metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", reason), attribute.Bool("priority", true))),
		}
	}
	return out, nil
}

// Shed reasons (the "reason" attribute of fleetacs.gateway.sessions.shed).
const (
	shedRate        = "rate"
	shedMaxSessions = "max_sessions"
	shedDraining    = "draining"
	shedWorkersBusy = "workers_busy"
)

var statusClassSets = func() [6]metric.AddOption {
	var out [6]metric.AddOption
	for i, c := range []string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"} {
		out[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("status_class", c)))
	}
	return out
}()

func (m *metrics) countShed(ctx context.Context, reason string, priority bool) {
	i := 0
	if priority {
		i = 1
	}
	m.shed.Add(ctx, 1, m.shedSets[reason][i])
}

func (m *metrics) countRefusedConn(reason string) {
	m.refusedConns.Add(context.Background(), 1, m.refusedSets[reason])
}

func (m *metrics) countRequest(ctx context.Context, status int) {
	c := status / 100
	if c < 1 || c > 5 {
		c = 0
	}
	m.requests.Add(ctx, 1, statusClassSets[c])
}
