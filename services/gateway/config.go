package gateway

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/fleetacs/fleetacs/pkg/authstate"
)

// Config is the gateway service's configuration (docs/style.md rule 2). Defaults live
// in RegisterFlags only; DefaultConfig returns them for code and tests that
// build a Config without a command line.
type Config struct {
	// ListenAddr is the plain-HTTP CWMP listener; empty disables it.
	ListenAddr string
	// TLSListenAddr is the HTTPS CWMP listener; empty disables it.
	TLSListenAddr string
	// TLSCertFile and TLSKeyFile hold the server certificate chain and key
	// (PEM), read when Run starts.
	TLSCertFile string
	TLSKeyFile  string
	// TLSClientCAFile holds the CAs that sign CPE client certificates (PEM).
	TLSClientCAFile string
	// TLSClientAuth is "none", "optional" (verify a certificate when the CPE
	// sends one) or "require".
	TLSClientAuth string
	// TLSClientCertDevices says which devices a client certificate
	// authenticates: "named" (those its common name names, as a derived
	// password's user name must) or "any" (certificates shared by many
	// CPEs).
	TLSClientCertDevices string
	// AdminListenAddr serves /healthz and /readyz on a listener of their
	// own; empty serves them on the CWMP listeners.
	AdminListenAddr string

	// MaxBodyBytes bounds one request body after decompression.
	MaxBodyBytes int64
	// MaxWireBodyBytes bounds one request body as received, before
	// decompression.
	MaxWireBodyBytes int64
	// MaxHeaderBytes bounds the request line and headers.
	MaxHeaderBytes int

	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading one whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds one request from the end of its headers to the end
	// of the response, so it must exceed ExchangeTimeout.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle for this long.
	IdleTimeout time.Duration
	// UnauthenticatedIdleTimeout closes sooner the keep-alive connections
	// that carry no session: a CPE answered with a challenge comes back at
	// once, and idle connections nobody authenticated on only take room.
	UnauthenticatedIdleTimeout time.Duration
	// MaxConnections caps the CPE connections open at once over the HTTP
	// and HTTPS listeners together; 0 sizes the cap from the process's
	// open files limit, keeping headroom for the rest of the process
	// (pkg/connlimit.Budget). A larger value is lowered to that budget.
	MaxConnections int
	// MaxConnectionsPerSource caps those from one IP address (0: no cap);
	// TrustedProxies are exempt.
	MaxConnectionsPerSource int
	// ExchangeTimeout bounds one call to the session worker.
	ExchangeTimeout time.Duration

	// MaxSessions caps the sessions this gateway carries at once; new
	// sessions over it get 503.
	MaxSessions int
	// SessionIdleTimeout is how long a session with no exchange still counts
	// as open (for MaxSessions, draining and its affinity records).
	SessionIdleTimeout time.Duration
	// LeaseTTL is the life of a device lease taken for a new session; the
	// worker renews it.
	LeaseTTL time.Duration
	// DrainGrace is how long Run lets open sessions finish after its
	// context ends; ShutdownTimeout then bounds closing the connections.
	DrainGrace      time.Duration
	ShutdownTimeout time.Duration

	// DefaultTenant is the tenant of CPEs whose Host matches no TenantHosts
	// entry.
	DefaultTenant string
	// TenantHosts maps request host names to tenants: "host=tenant,...".
	TenantHosts string
	// TrustedProxies lists the networks (CIDR, comma-separated) of load
	// balancers whose X-Forwarded-For names the CPE's address.
	TrustedProxies string
	// SessionAddressBinding binds a session to the client address that
	// opened it: a request from another address cannot continue it. Turn
	// it off only when CPEs sit behind proxies or NAT pools that change
	// their address within a session.
	SessionAddressBinding bool
	// ACSHostNames lists further host names (host or host:port) that name
	// this ACS in a Digest absolute uri, besides the request's Host.
	ACSHostNames string

	// AuthSchemes lists the HTTP schemes offered: "digest", "basic" or both,
	// comma-separated.
	AuthSchemes string
	// AuthBasicOverHTTP lets Basic through on plain HTTP (it is refused there
	// by default: the password would cross the network in clear).
	AuthBasicOverHTTP bool
	// AuthAnonymous accepts CPEs that send no credentials at all.
	AuthAnonymous bool
	// AuthRealm is the realm of the challenges.
	AuthRealm string
	// AuthNonceSecret keys Digest nonces; every replica behind one load
	// balancer needs the same value. Empty: a random secret per process.
	AuthNonceSecret string
	// AuthNonceLifetime is how long a Digest nonce stays fresh.
	AuthNonceLifetime time.Duration
	// AuthSharedUsername and AuthSharedPassword are onboarding credentials
	// every CPE without per-device credentials may use.
	AuthSharedUsername string
	AuthSharedPassword string
	// AuthOnboardingSecret derives per-device onboarding passwords:
	// DerivePassword(secret, username).
	AuthOnboardingSecret string
	// AuthSharedScope says which devices the shared onboarding credentials
	// (the shared pair and derived passwords) authenticate: "any" device
	// without credentials of its own, or only "onboarding" ones: devices
	// the inventory does not know yet or registered less than
	// AuthOnboardingWindow ago.
	AuthSharedScope      string
	AuthOnboardingWindow time.Duration
	// Authentication failures and their back-off (pkg/authstate.Policy):
	// failures allowed per (source address, user name), per source address
	// and per user name before back-off starts (0 turns that limit off);
	// the first and longest block; how long failures are remembered; how
	// long a source stays known for a user after it authenticated.
	AuthFailuresPerSourceUser int
	AuthFailuresPerSource     int
	AuthFailuresPerUser       int
	AuthBackoffBase           time.Duration
	AuthBackoffMax            time.Duration
	AuthFailureMemory         time.Duration
	AuthKnownSourceTTL        time.Duration
	// AuthConnFailures closes a connection after this many failed
	// authentications on it.
	AuthConnFailures int

	// AdmissionRate is the steady rate of new sessions per second this
	// gateway admits; 0 turns admission control off.
	AdmissionRate float64
	// AdmissionBurst is the token bucket's capacity.
	AdmissionBurst int
	// AdmissionReservedShare is the part of the bucket only priority Informs
	// may take.
	AdmissionReservedShare float64
	// AdmissionPriorityEvents lists the numeric event codes that make an
	// Inform a priority one, comma-separated.
	AdmissionPriorityEvents string
	// RetryAfterMin and RetryAfterMax bound the jittered Retry-After of 503
	// answers.
	RetryAfterMin time.Duration
	RetryAfterMax time.Duration
}

// DefaultConfig returns the defaults RegisterFlags registers.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("defaults", flag.ContinueOnError))
	return c
}

// RegisterFlags registers the service's flags, named "gateway.<name>", with
// their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ListenAddr, "gateway.listen-addr", ":7547", "plain-HTTP CWMP listen address (empty disables it)")
	fs.StringVar(&c.TLSListenAddr, "gateway.tls-listen-addr", "", "HTTPS CWMP listen address (empty disables it)")
	fs.StringVar(&c.TLSCertFile, "gateway.tls-cert-file", "", "PEM certificate chain of the HTTPS listener")
	fs.StringVar(&c.TLSKeyFile, "gateway.tls-key-file", "", "PEM private key of the HTTPS listener")
	fs.StringVar(&c.TLSClientCAFile, "gateway.tls-client-ca-file", "", "PEM CAs that sign CPE client certificates")
	fs.StringVar(&c.TLSClientAuth, "gateway.tls-client-auth", "none", "CPE client certificates: none, optional or require")
	fs.StringVar(&c.TLSClientCertDevices, "gateway.tls-client-cert-devices", certDevicesNamed, "devices a CPE client certificate authenticates: named (those whose SerialNumber, OUI-SerialNumber or device key is the certificate's common name) or any (certificates shared by many CPEs: whoever holds one may pose as any device)")
	fs.StringVar(&c.AdminListenAddr, "gateway.admin-listen-addr", "", "listen address of /healthz and /readyz (empty: served on the CWMP listeners)")

	fs.Int64Var(&c.MaxBodyBytes, "gateway.max-body-bytes", 4<<20, "largest CWMP request body accepted, after decompression")
	fs.Int64Var(&c.MaxWireBodyBytes, "gateway.max-wire-body-bytes", 4<<20, "largest CWMP request body accepted as received, before decompression")
	fs.IntVar(&c.MaxHeaderBytes, "gateway.max-header-bytes", 16<<10, "largest request line and headers accepted")

	fs.DurationVar(&c.ReadHeaderTimeout, "gateway.read-header-timeout", 10*time.Second, "time allowed to read a request's headers")
	fs.DurationVar(&c.ReadTimeout, "gateway.read-timeout", 30*time.Second, "time allowed to read a whole request")
	fs.DurationVar(&c.WriteTimeout, "gateway.write-timeout", 60*time.Second, "time allowed from a request's headers to the end of its response")
	fs.DurationVar(&c.IdleTimeout, "gateway.idle-timeout", 90*time.Second, "keep-alive connections idle this long are closed")
	fs.DurationVar(&c.UnauthenticatedIdleTimeout, "gateway.unauthenticated-idle-timeout", 10*time.Second, "keep-alive connections that carry no authenticated session are closed after this long idle")
	fs.IntVar(&c.MaxConnections, "gateway.max-connections", 0, "CPE connections open at once over the CWMP listeners; more are closed at once (0: what the open files limit allows, keeping a tenth for the rest of the process)")
	fs.IntVar(&c.MaxConnectionsPerSource, "gateway.max-connections-per-source", 256, "CPE connections open at once from one IP address, trusted proxies exempt (0: no cap); raise it for CPEs behind carrier-grade NAT")
	fs.DurationVar(&c.ExchangeTimeout, "gateway.exchange-timeout", 20*time.Second, "time allowed for the session worker to answer one request (below the CPE session timeout of about 30s)")

	fs.IntVar(&c.MaxSessions, "gateway.max-sessions", 10000, "sessions this gateway carries at once; new ones over it get 503")
	fs.DurationVar(&c.SessionIdleTimeout, "gateway.session-idle-timeout", 120*time.Second, "a session with no request for this long no longer counts as open")
	fs.DurationVar(&c.LeaseTTL, "gateway.lease-ttl", 120*time.Second, "life of the device lease taken for a new session (the worker renews it)")
	fs.DurationVar(&c.DrainGrace, "gateway.drain-grace", 30*time.Second, "on shutdown, time open sessions get to finish")
	fs.DurationVar(&c.ShutdownTimeout, "gateway.shutdown-timeout", 5*time.Second, "on shutdown, time allowed to close connections after the drain")

	fs.StringVar(&c.DefaultTenant, "gateway.default-tenant", "default", "tenant of CPEs whose host name matches no gateway.tenant-hosts entry")
	fs.StringVar(&c.TenantHosts, "gateway.tenant-hosts", "", "host names mapped to tenants: host=tenant,...")
	fs.StringVar(&c.TrustedProxies, "gateway.trusted-proxies", "", "CIDRs of load balancers whose X-Forwarded-For names the CPE, comma-separated")
	fs.BoolVar(&c.SessionAddressBinding, "gateway.session-address-binding", true, "bind each session to the client address that opened it; turn off only when CPEs sit behind proxies or NAT pools that change their address within a session")
	fs.StringVar(&c.ACSHostNames, "gateway.acs-host-names", "", "host names (host or host:port) that also name this ACS in a Digest absolute uri, besides the request's Host, comma-separated")

	fs.StringVar(&c.AuthSchemes, "gateway.auth-schemes", "digest", "HTTP authentication schemes offered to CPEs: digest, basic, or both comma-separated")
	fs.BoolVar(&c.AuthBasicOverHTTP, "gateway.auth-basic-over-http", false, "accept Basic authentication over plain HTTP (the password crosses the network in clear)")
	fs.BoolVar(&c.AuthAnonymous, "gateway.auth-anonymous", false, "accept CPEs that send no credentials (insecure)")
	fs.StringVar(&c.AuthRealm, "gateway.auth-realm", "FleetACS", "realm of HTTP authentication challenges")
	fs.StringVar(&c.AuthNonceSecret, "gateway.auth-nonce-secret", "", "key of Digest nonces, the same on every replica (empty: random per process)")
	fs.DurationVar(&c.AuthNonceLifetime, "gateway.auth-nonce-lifetime", 5*time.Minute, "how long a Digest nonce stays fresh")
	fs.StringVar(&c.AuthSharedUsername, "gateway.auth-shared-username", "", "shared onboarding user name for CPEs without per-device credentials")
	fs.StringVar(&c.AuthSharedPassword, "gateway.auth-shared-password", "", "shared onboarding password")
	fs.StringVar(&c.AuthOnboardingSecret, "gateway.auth-onboarding-secret", "", "secret deriving per-device onboarding passwords (hex HMAC-SHA256 of the user name)")
	fs.StringVar(&c.AuthSharedScope, "gateway.auth-shared-scope", "any", "devices the shared and derived onboarding credentials authenticate: any (without credentials of their own) or onboarding (unknown to the inventory, or registered less than gateway.auth-onboarding-window ago)")
	fs.DurationVar(&c.AuthOnboardingWindow, "gateway.auth-onboarding-window", 24*time.Hour, "with gateway.auth-shared-scope=onboarding, how long after its registration a device may still use the onboarding credentials")
	fs.IntVar(&c.AuthFailuresPerSourceUser, "gateway.auth-failures-per-source-user", 5, "failed authentications of one user name from one address before back-off starts (0: no limit)")
	fs.IntVar(&c.AuthFailuresPerSource, "gateway.auth-failures-per-source", 100, "failed authentications from one address, any user name, before back-off starts for user names not known there (0: no limit)")
	fs.IntVar(&c.AuthFailuresPerUser, "gateway.auth-failures-per-user", 20, "failed authentications of one user name, any address, before back-off starts for addresses it is not known at (0: no limit)")
	fs.DurationVar(&c.AuthBackoffBase, "gateway.auth-backoff-base", time.Second, "first block after the failures a limit allows; it doubles with each further failure")
	fs.DurationVar(&c.AuthBackoffMax, "gateway.auth-backoff-max", 15*time.Minute, "longest block after failed authentications")
	fs.DurationVar(&c.AuthFailureMemory, "gateway.auth-failure-memory", time.Hour, "how long failed authentications are remembered after the last one (or the end of its block)")
	fs.DurationVar(&c.AuthKnownSourceTTL, "gateway.auth-known-source-ttl", 7*24*time.Hour, "how long an address a user authenticated from stays exempt from the per-address and per-user limits for that user")
	fs.IntVar(&c.AuthConnFailures, "gateway.auth-conn-failures", 3, "failed authentications after which a connection is closed")

	fs.Float64Var(&c.AdmissionRate, "gateway.admission-rate", 5000, "new sessions per second this replica admits; size it to what the session workers behind it sustain (0 turns admission control off)")
	fs.IntVar(&c.AdmissionBurst, "gateway.admission-burst", 5000, "new sessions admitted at once before the rate applies")
	fs.Float64Var(&c.AdmissionReservedShare, "gateway.admission-reserved-share", 0.25, "share of the admission bucket kept for priority Informs")
	fs.StringVar(&c.AdmissionPriorityEvents, "gateway.admission-priority-events", "0,1,6,7", "numeric Inform event codes admitted with priority")
	fs.DurationVar(&c.RetryAfterMin, "gateway.retry-after-min", 60*time.Second, "smallest Retry-After sent with 503")
	fs.DurationVar(&c.RetryAfterMax, "gateway.retry-after-max", 180*time.Second, "largest Retry-After sent with 503")
}

// Validate reports every setting that cannot work.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.ListenAddr == "" && c.TLSListenAddr == "" {
		bad("gateway.listen-addr and gateway.tls-listen-addr are both empty: nothing to serve")
	}
	if c.TLSListenAddr != "" && (c.TLSCertFile == "" || c.TLSKeyFile == "") {
		bad("gateway.tls-listen-addr needs gateway.tls-cert-file and gateway.tls-key-file")
	}
	switch c.TLSClientAuth {
	case "none":
	case "optional", "require":
		if c.TLSClientCAFile == "" {
			bad("gateway.tls-client-auth=%s needs gateway.tls-client-ca-file", c.TLSClientAuth)
		}
	default:
		bad("gateway.tls-client-auth must be none, optional or require, got %q", c.TLSClientAuth)
	}
	if c.TLSClientCertDevices != certDevicesNamed && c.TLSClientCertDevices != certDevicesAny {
		bad("gateway.tls-client-cert-devices must be %s or %s, got %q", certDevicesNamed, certDevicesAny, c.TLSClientCertDevices)
	}
	if c.MaxBodyBytes <= 0 {
		bad("gateway.max-body-bytes must be positive, got %d", c.MaxBodyBytes)
	}
	if c.MaxWireBodyBytes <= 0 {
		bad("gateway.max-wire-body-bytes must be positive, got %d", c.MaxWireBodyBytes)
	}
	if c.MaxHeaderBytes <= 0 {
		bad("gateway.max-header-bytes must be positive, got %d", c.MaxHeaderBytes)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"read-header-timeout", c.ReadHeaderTimeout}, {"read-timeout", c.ReadTimeout},
		{"write-timeout", c.WriteTimeout}, {"idle-timeout", c.IdleTimeout},
		{"unauthenticated-idle-timeout", c.UnauthenticatedIdleTimeout},
		{"exchange-timeout", c.ExchangeTimeout}, {"session-idle-timeout", c.SessionIdleTimeout},
		{"lease-ttl", c.LeaseTTL}, {"shutdown-timeout", c.ShutdownTimeout},
		{"auth-nonce-lifetime", c.AuthNonceLifetime}, {"auth-onboarding-window", c.AuthOnboardingWindow},
		{"auth-failure-memory", c.AuthFailureMemory}, {"auth-known-source-ttl", c.AuthKnownSourceTTL},
	} {
		if d.v <= 0 {
			bad("gateway.%s must be positive, got %s", d.name, d.v)
		}
	}
	if c.DrainGrace < 0 {
		bad("gateway.drain-grace must not be negative, got %s", c.DrainGrace)
	}
	if c.WriteTimeout > 0 && c.ExchangeTimeout >= c.WriteTimeout {
		bad("gateway.exchange-timeout (%s) must be shorter than gateway.write-timeout (%s)", c.ExchangeTimeout, c.WriteTimeout)
	}
	if c.MaxConnections < 0 {
		bad("gateway.max-connections must not be negative, got %d", c.MaxConnections)
	}
	if c.MaxConnectionsPerSource < 0 {
		bad("gateway.max-connections-per-source must not be negative, got %d", c.MaxConnectionsPerSource)
	}
	if c.MaxSessions <= 0 {
		bad("gateway.max-sessions must be positive, got %d", c.MaxSessions)
	}
	if c.DefaultTenant == "" {
		bad("gateway.default-tenant must not be empty")
	}
	if _, err := parseTenantHosts(c.TenantHosts); err != nil {
		bad("gateway.tenant-hosts: %w", err)
	}
	if _, err := parsePrefixes(c.TrustedProxies); err != nil {
		bad("gateway.trusted-proxies: %w", err)
	}
	_, basic, err := parseSchemes(c.AuthSchemes)
	if err != nil {
		bad("gateway.auth-schemes: %w", err)
	}
	if c.AuthBasicOverHTTP && !basic && err == nil {
		bad("gateway.auth-basic-over-http is set but gateway.auth-schemes does not offer basic")
	}
	if c.AuthRealm == "" || strings.ContainsAny(c.AuthRealm, "\"\\\r\n") {
		bad("gateway.auth-realm must be non-empty and free of quotes, backslashes and line breaks")
	}
	if (c.AuthSharedUsername == "") != (c.AuthSharedPassword == "") {
		bad("gateway.auth-shared-username and gateway.auth-shared-password go together")
	}
	if c.AuthSharedScope != sharedScopeAny && c.AuthSharedScope != sharedScopeOnboarding {
		bad("gateway.auth-shared-scope must be %s or %s, got %q", sharedScopeAny, sharedScopeOnboarding, c.AuthSharedScope)
	}
	if c.AuthFailuresPerSourceUser < 0 || c.AuthFailuresPerSource < 0 || c.AuthFailuresPerUser < 0 {
		bad("gateway.auth-failures-per-source-user, -per-source and -per-user must not be negative")
	}
	if c.AuthBackoffBase <= 0 || c.AuthBackoffMax < c.AuthBackoffBase || c.AuthBackoffMax > 24*time.Hour {
		bad("gateway.auth-backoff-base (%s) must be positive and at most gateway.auth-backoff-max (%s), itself at most 24h", c.AuthBackoffBase, c.AuthBackoffMax)
	}
	if c.AuthConnFailures < 1 {
		bad("gateway.auth-conn-failures must be at least 1, got %d", c.AuthConnFailures)
	}
	if _, err := parseHostNames(c.ACSHostNames); err != nil {
		bad("gateway.acs-host-names: %w", err)
	}
	if c.AdmissionRate < 0 {
		bad("gateway.admission-rate must not be negative, got %g", c.AdmissionRate)
	}
	if c.AdmissionRate > 0 && c.AdmissionBurst < 1 {
		bad("gateway.admission-burst must be at least 1, got %d", c.AdmissionBurst)
	}
	if c.AdmissionReservedShare < 0 || c.AdmissionReservedShare >= 1 {
		bad("gateway.admission-reserved-share must be in [0, 1), got %g", c.AdmissionReservedShare)
	}
	if _, err := parseEventCodes(c.AdmissionPriorityEvents); err != nil {
		bad("gateway.admission-priority-events: %w", err)
	}
	if c.RetryAfterMin < time.Second || c.RetryAfterMax < c.RetryAfterMin {
		bad("gateway.retry-after-min (%s) must be at least 1s and at most gateway.retry-after-max (%s)", c.RetryAfterMin, c.RetryAfterMax)
	}
	return errors.Join(errs...)
}

// Values of TLSClientCertDevices.
const (
	certDevicesNamed = "named"
	certDevicesAny   = "any"
)

// Values of AuthSharedScope.
const (
	sharedScopeAny        = "any"
	sharedScopeOnboarding = "onboarding"
)

// authPolicy is the failure back-off the configuration asks for.
func (c *Config) authPolicy() authstate.Policy {
	limit := func(free int) authstate.Limit {
		return authstate.Limit{Free: free, Base: c.AuthBackoffBase, Max: c.AuthBackoffMax}
	}
	return authstate.Policy{
		Pair:     limit(c.AuthFailuresPerSourceUser),
		Source:   limit(c.AuthFailuresPerSource),
		User:     limit(c.AuthFailuresPerUser),
		Forget:   c.AuthFailureMemory,
		KnownFor: c.AuthKnownSourceTTL,
	}
}

// parseHostNames reads ACSHostNames into the set digestURIMatches looks
// names up in: "name" for an entry without a port (any port), else
// "name:port", names in lower case without a trailing dot.
func parseHostNames(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.ContainsAny(f, "/@ ") {
			return nil, fmt.Errorf("%q is not a host name or host:port", f)
		}
		name, port, err := net.SplitHostPort(f)
		if err != nil {
			name, port = f, ""
		}
		name = strings.ToLower(strings.TrimSuffix(strings.Trim(name, "[]"), "."))
		if name == "" {
			return nil, fmt.Errorf("%q has no host name", f)
		}
		if port == "" {
			out[name] = true
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%q has an invalid port", f)
		}
		out[net.JoinHostPort(name, port)] = true
	}
	return out, nil
}

// parseSchemes reads AuthSchemes.
func parseSchemes(s string) (digest, basic bool, err error) {
	for _, f := range strings.Split(s, ",") {
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "digest":
			digest = true
		case "basic":
			basic = true
		case "":
		default:
			return false, false, fmt.Errorf("unknown scheme %q (want digest or basic)", strings.TrimSpace(f))
		}
	}
	if !digest && !basic {
		return false, false, errors.New("no scheme listed")
	}
	return digest, basic, nil
}

// parseTenantHosts reads "host=tenant,..." into a map keyed by lower-case
// host name.
func parseTenantHosts(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		host, tenant, ok := strings.Cut(f, "=")
		host, tenant = strings.ToLower(strings.TrimSpace(host)), strings.TrimSpace(tenant)
		if !ok || host == "" || tenant == "" {
			return nil, fmt.Errorf("entry %q is not host=tenant", f)
		}
		out[host] = tenant
	}
	return out, nil
}

// parsePrefixes reads a comma-separated CIDR list; a bare address counts as
// a single-host prefix.
func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("parse address %q: %w", f, err)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("parse prefix %q: %w", f, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// parseEventCodes reads a comma-separated list of numeric event codes.
func parseEventCodes(s string) (map[int]bool, error) {
	out := map[int]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("event code %q is not a non-negative number", f)
		}
		out[n] = true
	}
	return out, nil
}
