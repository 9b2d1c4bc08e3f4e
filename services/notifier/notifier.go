// Package notifier wakes CPEs up: it takes wake requests from the tasks
// service off NATS (one durable consumer shared by every replica), sends a
// Connection Request to the device (HTTP with Digest authentication, or a
// signed UDP datagram per TR-111, docs/protocol.md §8), and publishes what
// became of it as a connection_request.<status> event. It also runs the
// STUN server through which CPEs behind NAT show their public UDP binding.
// It keeps nothing durable (docs/design.md §1).
//
// A CPE reports its own connection-request address, so every address is
// checked against -notifier.allowed-networks as the socket connects, after
// name resolution (guard.go, docs/security.md "Connection requests").
//
// Logs use the keys tenant, device_id, status, transport and host; never a
// password or a URL (its path may be the CPE's secret).
package notifier

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// Config is the notifier service's configuration (docs/style.md rule 2).
type Config struct {
	// AllowedNetworks lists the CIDRs connection requests may be sent to.
	AllowedNetworks string
	// DeniedNetworks lists CIDRs refused even inside AllowedNetworks.
	DeniedNetworks string
	// AllowLoopback and AllowLinkLocal admit loopback and link-local
	// addresses (never the instance metadata addresses).
	AllowLoopback  bool
	AllowLinkLocal bool
	// AllowBasic answers a Basic challenge (the password then travels in
	// clear over plain HTTP).
	AllowBasic bool

	DialTimeout    time.Duration
	TLSTimeout     time.Duration
	HeaderTimeout  time.Duration
	RequestTimeout time.Duration

	// CoalesceWindow: a request for a device woken less than this ago is
	// answered COALESCED. PerDeviceInterval: the least time between two
	// attempts on one device. Rate and Burst: the global token bucket.
	CoalesceWindow    time.Duration
	PerDeviceInterval time.Duration
	Rate              float64
	Burst             int
	// MaxConcurrent bounds the requests in flight; MaxWakeAge drops older
	// wake requests (FAILED, "stale").
	MaxConcurrent int
	MaxWakeAge    time.Duration
	// ResendAfter: a device that has not informed this long after a
	// connection request was sent gets it again, at most Resends times
	// (0: never). A CPE drops a request that arrives while it is in a
	// session (docs/protocol.md §8.1), and UDP requests may be lost.
	ResendAfter time.Duration
	Resends     int

	// UDPCopies datagrams are sent per UDP request, UDPInterval apart at
	// first, doubling.
	UDPCopies   int
	UDPInterval time.Duration

	// STUNAddr is the STUN server's UDP listen address (empty: none);
	// STUNBindingTTL how long a learnt binding is used; STUNMaxBindings
	// how many are kept.
	STUNAddr        string
	STUNBindingTTL  time.Duration
	STUNMaxBindings int
}

// DefaultAllowedNetworks are the private ranges (RFC 1918, RFC 6598 shared
// address space, IPv6 unique local): loopback is not among them.
const DefaultAllowedNetworks = "10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fc00::/7"

// ConsumerName is the durable consumer the replicas share on the wake
// stream.
const ConsumerName = "notifier"

// RegisterFlags registers the service's flags, named "notifier.<name>", with their
// defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.AllowedNetworks, "notifier.allowed-networks", DefaultAllowedNetworks, "comma-separated CIDRs that connection requests may be sent to (checked on the resolved address; loopback, link-local, metadata, unspecified and multicast addresses, this host's own addresses and this process's listeners are refused whatever it says, unless -notifier.allow-loopback or -notifier.allow-link-local allows them)")
	fs.StringVar(&c.DeniedNetworks, "notifier.denied-networks", "", "comma-separated CIDRs that connection requests are never sent to, even inside -notifier.allowed-networks: the cluster's pod and service ranges, the networks of its databases and brokers")
	fs.BoolVar(&c.AllowLoopback, "notifier.allow-loopback", false, "send connection requests to loopback addresses and to this host's own addresses (simulated CPEs on this host)")
	fs.BoolVar(&c.AllowLinkLocal, "notifier.allow-link-local", false, "send connection requests to link-local addresses (169.254.0.0/16, fe80::/10; never 169.254.169.254 or fd00:ec2::254)")
	fs.BoolVar(&c.AllowBasic, "notifier.allow-basic", false, "answer a CPE's Basic challenge (sends the connection-request password in clear over plain HTTP)")
	fs.DurationVar(&c.DialTimeout, "notifier.dial-timeout", 5*time.Second, "time to connect to a CPE's connection-request listener")
	fs.DurationVar(&c.TLSTimeout, "notifier.tls-timeout", 5*time.Second, "time for the TLS handshake of an https connection request")
	fs.DurationVar(&c.HeaderTimeout, "notifier.header-timeout", 5*time.Second, "time for a CPE to answer a connection request once sent")
	fs.DurationVar(&c.RequestTimeout, "notifier.request-timeout", 15*time.Second, "time for a whole HTTP connection request, challenge and answer included")
	fs.DurationVar(&c.CoalesceWindow, "notifier.coalesce-window", 30*time.Second, "a wake request for a device with a connection request in flight or sent less than this ago is answered coalesced")
	fs.DurationVar(&c.PerDeviceInterval, "notifier.per-device-interval", 5*time.Second, "least time between two connection-request attempts on one device (closer ones are answered rate_limited)")
	fs.Float64Var(&c.Rate, "notifier.rate", 200, "connection requests per second this replica sends at most (0: no limit)")
	fs.IntVar(&c.Burst, "notifier.burst", 400, "connection requests this replica may send at once above -notifier.rate")
	fs.IntVar(&c.MaxConcurrent, "notifier.max-concurrent", 64, "connection requests in flight at once")
	fs.DurationVar(&c.MaxWakeAge, "notifier.max-wake-age", 2*time.Minute, "wake requests older than this are dropped (outcome failed, stale)")
	fs.DurationVar(&c.ResendAfter, "notifier.resend-after", 3*time.Second, "send a connection request again when the device has not informed this long after it was sent (a CPE drops one that arrives during a session); 0: never")
	fs.IntVar(&c.Resends, "notifier.resends", 2, "how many times a connection request is sent again (-notifier.resend-after)")
	fs.IntVar(&c.UDPCopies, "notifier.udp-copies", 3, "datagrams sent per UDP connection request")
	fs.DurationVar(&c.UDPInterval, "notifier.udp-interval", 500*time.Millisecond, "pause after the first UDP datagram, doubling after each")
	fs.StringVar(&c.STUNAddr, "notifier.stun-addr", ":3478", "UDP listen address of the STUN server CPEs behind NAT send binding requests to (empty: none)")
	fs.DurationVar(&c.STUNBindingTTL, "notifier.stun-binding-ttl", 10*time.Minute, "how long a binding learnt by the STUN server is used")
	fs.IntVar(&c.STUNMaxBindings, "notifier.stun-max-bindings", 1_000_000, "bindings the STUN server keeps at most")
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	nets, err := parseNetworks(c.AllowedNetworks)
	if err != nil {
		return fmt.Errorf("notifier.allowed-networks: %w", err)
	}
	if len(nets) == 0 && !c.AllowLoopback && !c.AllowLinkLocal {
		return errors.New("notifier.allowed-networks must not be empty: connection requests need somewhere to go")
	}
	if _, err := parseNetworks(c.DeniedNetworks); err != nil {
		return fmt.Errorf("notifier.denied-networks: %w", err)
	}
	for name, d := range map[string]time.Duration{
		"dial-timeout": c.DialTimeout, "tls-timeout": c.TLSTimeout, "header-timeout": c.HeaderTimeout,
		"request-timeout": c.RequestTimeout, "max-wake-age": c.MaxWakeAge, "udp-interval": c.UDPInterval,
		"stun-binding-ttl": c.STUNBindingTTL,
	} {
		if d <= 0 {
			return fmt.Errorf("notifier.%s must be positive", name)
		}
	}
	switch {
	case c.CoalesceWindow < 0 || c.PerDeviceInterval < 0:
		return errors.New("notifier.coalesce-window and notifier.per-device-interval must not be negative")
	case c.Rate < 0:
		return errors.New("notifier.rate must not be negative")
	case c.Rate > 0 && c.Burst < 1:
		return errors.New("notifier.burst must be at least 1")
	case c.MaxConcurrent < 1 || c.MaxConcurrent > 10000:
		return errors.New("notifier.max-concurrent must be between 1 and 10000")
	case c.UDPCopies < 1 || c.UDPCopies > 10:
		return errors.New("notifier.udp-copies must be between 1 and 10")
	case c.STUNMaxBindings < 1:
		return errors.New("notifier.stun-max-bindings must be at least 1")
	}
	if c.STUNAddr != "" {
		if _, _, err := net.SplitHostPort(c.STUNAddr); err != nil {
			return fmt.Errorf("notifier.stun-addr: %w", err)
		}
	}
	return nil
}

// Target is how to wake one device: what GetConnectionRequestTarget
// returns.
type Target struct {
	URL, UDPAddress    string
	Username, Password string
	// HasCredentials is false when FleetACS holds no connection-request
	// credentials for the device.
	HasCredentials bool
	// RemoteIP is the source address of the device's last Inform.
	RemoteIP string
	// LastInform is when the device's last recorded session started
	// (zero if never): a device that informed after the last connection
	// request answered it, so a new one is not coalesced with it.
	LastInform time.Time
}

// ErrDeviceNotFound is returned by Targets for an unknown device.
var ErrDeviceNotFound = errors.New("device not found")

// Targets looks devices up (the inventory's internal API in production).
type Targets interface {
	Target(ctx context.Context, tenant, device string) (Target, error)
}

// Deps are the service's collaborators. Targets is required; JetStream and
// Names are required by Start and Run (the consumer).
type Deps struct {
	Logger    *slog.Logger
	Targets   Targets
	JetStream jetstream.JetStream
	Names     natsbus.Names
	// Propagator carries trace context from wake requests to events.
	Propagator    propagation.TextMapPropagator
	MeterProvider metric.MeterProvider
	// TracerProvider makes a span per wake request, a child of the span
	// that queued it (docs/operations.md, "Traces"); nil: a no-op one.
	TracerProvider trace.TracerProvider
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OwnAddrs lists the process's listening addresses, refused as
	// targets.
	OwnAddrs func() []netip.AddrPort
	// Resolver resolves CPE host names (default: the system's).
	Resolver *net.Resolver
	// Bindings shares the STUN bindings with the other replicas
	// (RedisBindings); nil: this process's table only, which serves only
	// when one notifier runs (docs/protocol.md §8.2).
	Bindings BindingStore
}

// Service is the notifier service.
type Service struct {
	cfg      Config
	logger   *slog.Logger
	targets  Targets
	js       jetstream.JetStream
	names    natsbus.Names
	prop     propagation.TextMapPropagator
	now      func() time.Time
	resolver *net.Resolver
	guard    *guard
	adm      *admission
	bindings *bindings
	metrics  *metrics

	tracer trace.Tracer

	mu       sync.Mutex
	stun     *net.UDPConn
	consumer jetstream.Consumer
	// followUps counts the resend checks pending (bounded by
	// maxFollowUps).
	followUps atomic.Int64
	// afterFunc runs a resend check after a delay (time.AfterFunc; tests
	// set theirs to run the checks when they choose).
	afterFunc func(time.Duration, func())
	// runCtx is Run's context: resends planned for later stop with it.
	runCtx context.Context
}

// maxFollowUps bounds the resend checks pending at once: at the default
// rate, three seconds of requests.
const maxFollowUps = 10000

// New builds the service from a validated configuration. It does no I/O.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("notifier config: %w", err)
	}
	if deps.Targets == nil {
		return nil, errors.New("notifier: no Targets")
	}
	s := &Service{
		cfg: cfg, logger: deps.Logger, targets: deps.Targets, js: deps.JetStream, names: deps.Names,
		prop: deps.Propagator, now: deps.Now, resolver: deps.Resolver,
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	s.logger = s.logger.With("service", "notifier")
	tp := deps.TracerProvider
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	s.tracer = tp.Tracer("github.com/fleetacs/fleetacs/services/notifier")
	if s.now == nil {
		s.now = time.Now
	}
	s.afterFunc = func(d time.Duration, f func()) { time.AfterFunc(d, f) }
	nets, _ := parseNetworks(cfg.AllowedNetworks) // Validate parsed them
	denied, _ := parseNetworks(cfg.DeniedNetworks)
	s.guard = newGuard(nets, denied, cfg.AllowLoopback, cfg.AllowLinkLocal, deps.OwnAddrs)
	s.adm = newAdmission(s.now, cfg.CoalesceWindow, cfg.PerDeviceInterval, cfg.Rate, cfg.Burst)
	mp := deps.MeterProvider
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	m, err := newMetrics(mp.Meter("github.com/fleetacs/fleetacs/services/notifier"))
	if err != nil {
		return nil, fmt.Errorf("notifier metrics: %w", err)
	}
	s.metrics = m
	s.bindings = newBindings(cfg.STUNMaxBindings, cfg.STUNBindingTTL, s.now, deps.Bindings, m.bindingFailed)
	return s, nil
}

// StatusName is the event kind suffix of a status: "sent", "no_credentials".
func StatusName(st tasksv1.WakeStatus) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "WAKE_STATUS_"))
}

// wake handles one wake request and returns its outcome.
func (s *Service) wake(ctx context.Context, req *tasksv1.WakeRequest) result {
	if rt := req.GetRequestTime(); rt != nil && s.now().Sub(rt.AsTime()) > s.cfg.MaxWakeAge {
		return fail(tasksv1.WakeStatus_WAKE_STATUS_FAILED, "", "stale: asked %s ago, over -notifier.max-wake-age", s.now().Sub(rt.AsTime()).Round(time.Second))
	}
	ref := deviceRef{req.GetTenant(), req.GetDeviceId()}
	if s.adm.inFlight(ref) {
		return result{status: tasksv1.WakeStatus_WAKE_STATUS_COALESCED, detail: "a connection request to the device is in flight"}
	}
	t, err := s.targets.Target(ctx, ref.tenant, ref.device)
	if errors.Is(err, ErrDeviceNotFound) {
		return fail(tasksv1.WakeStatus_WAKE_STATUS_NO_ADDRESS, "", "device not found")
	}
	if err != nil {
		return fail(tasksv1.WakeStatus_WAKE_STATUS_FAILED, "", "look the device up: %v", err)
	}
	// Over the global rate a request waits for its turn (the wake stream
	// holds the others meanwhile), as long as it stays within
	// -notifier.max-wake-age: shedding it would leave its task to the
	// device's next periodic Inform.
	for {
		st, detail, wait := s.adm.admitOrWait(ref, t.LastInform)
		if st == 0 {
			break
		}
		if wait == 0 || !s.mayWait(req, wait) {
			return result{status: st, detail: detail}
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fail(tasksv1.WakeStatus_WAKE_STATUS_RATE_LIMITED, "", "over -notifier.rate until the notifier stopped")
		case <-timer.C:
		}
	}
	r := s.send(ctx, t)
	s.adm.done(ref, r.status == tasksv1.WakeStatus_WAKE_STATUS_SENT)
	return r
}

// mayWait reports whether a request may still wait d for its turn without
// outliving -notifier.max-wake-age.
func (s *Service) mayWait(req *tasksv1.WakeRequest, d time.Duration) bool {
	rt := req.GetRequestTime()
	if rt == nil {
		return d <= s.cfg.MaxWakeAge
	}
	return s.now().Add(d).Sub(rt.AsTime()) <= s.cfg.MaxWakeAge
}

// send sends the request the way the device offers: UDP to a fresh STUN
// binding (the device is behind NAT), else HTTP to its
// ConnectionRequestURL, else UDP to its UDPConnectionRequestAddress.
func (s *Service) send(ctx context.Context, t Target) result {
	if !t.HasCredentials {
		return fail(tasksv1.WakeStatus_WAKE_STATUS_NO_CREDENTIALS, "", "no connection-request credentials are held for the device")
	}
	if ap, ok := s.learnt(ctx, t); ok {
		return s.sendUDP(ctx, ap.String(), t.Username, t.Password)
	}
	switch {
	case t.URL != "":
		return s.sendHTTP(ctx, t.URL, t.Username, t.Password)
	case t.UDPAddress != "":
		return s.sendUDP(ctx, t.UDPAddress, t.Username, t.Password)
	}
	return fail(tasksv1.WakeStatus_WAKE_STATUS_NO_ADDRESS, "", "the device reported no connection-request URL or UDP address")
}

// learnt returns the device's STUN binding when it is fresh and was
// learnt from the address the device informs from: anyone may send a
// Binding Request naming any user, but only the device's own network can
// send it from there. The STUN user name is the connection-request user
// name (docs/protocol.md §8.2).
func (s *Service) learnt(ctx context.Context, t Target) (netip.AddrPort, bool) {
	if t.Username == "" {
		return netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(t.RemoteIP)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return s.bindings.lookup(ctx, t.Username, ip)
}

func (s *Service) stunConn() *net.UDPConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stun
}

// Wake handles one wake request outside the consumer (the same checks,
// limits and transports) and returns its outcome; nothing is published.
func (s *Service) Wake(ctx context.Context, req *tasksv1.WakeRequest) (status tasksv1.WakeStatus, transport, detail string) {
	r := s.wake(ctx, req)
	return r.status, r.transport, r.detail
}
