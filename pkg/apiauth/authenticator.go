package apiauth

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
)

// Config is the public API authentication's configuration (docs/style.md
// rule 2): flags "auth.<name>".
type Config struct {
	// TokenCacheTTL is how long a token record read from the store is
	// reused; a token revoked by another process is refused at most this
	// much later.
	TokenCacheTTL time.Duration
	// FailureBurst invalid credentials a source may present before it is
	// refused; one more every FailureInterval. 0 turns the limit off.
	FailureBurst    int
	FailureInterval time.Duration
}

// RegisterFlags registers the flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.TokenCacheTTL, "auth.token-cache-ttl", 10*time.Second, "how long a verified API token's record is reused before the store is read again: a token revoked by another process is refused at most this much later (0: read every call)")
	fs.IntVar(&c.FailureBurst, "auth.failure-burst", 10, "invalid API credentials one source address (an IPv6 /64) may present before all its calls are refused (0: no limit)")
	fs.DurationVar(&c.FailureInterval, "auth.failure-interval", 6*time.Second, "after -auth.failure-burst, one more invalid credential is allowed per interval")
}

// Validate reports settings that cannot work.
func (c *Config) Validate() error {
	var errs []error
	if c.TokenCacheTTL < 0 || c.TokenCacheTTL > 10*time.Minute {
		errs = append(errs, fmt.Errorf("auth.token-cache-ttl must be 0 to 10m, got %s", c.TokenCacheTTL))
	}
	if c.FailureBurst < 0 {
		errs = append(errs, fmt.Errorf("auth.failure-burst must not be negative, got %d", c.FailureBurst))
	}
	if c.FailureBurst > 0 && c.FailureInterval <= 0 {
		errs = append(errs, fmt.Errorf("auth.failure-interval must be positive, got %s", c.FailureInterval))
	}
	return errors.Join(errs...)
}

// Options are an Authenticator's dependencies.
type Options struct {
	// Tokens verifies bearer tokens; nil: this process can read no
	// tokens, and every token is refused.
	Tokens TokenReader
	// OpenMethods are full method names ("/pkg.Service/Method") that
	// answer without credentials; HealthMethods is the usual set.
	OpenMethods []string
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// HealthMethods are the gRPC health methods that answer without
// credentials: probes (Kubernetes, load balancers, grpc-health-probe)
// call Check, and they tell nothing but whether a service is serving.
// Watch is not among them: each Watch holds a stream and a goroutine open
// for as long as the caller likes, and gRPC allows any number of streams
// per connection, so an open Watch would let anyone who reaches a
// listener pile them up. Probes do not use it.
var HealthMethods = []string{"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/List"}

// maxCachedTokens bounds the verifier's cache.
const maxCachedTokens = 10_000

// maxSources bounds the failure limiter's table (about 100 bytes each).
const maxSources = 100_000

// maxTokenHeader bounds the authorization header read; longer ones are
// invalid without further work.
const maxTokenHeader = 512

// Authenticator authenticates and authorises calls to public services: the
// server interceptors of the public listener. Create it with
// NewAuthenticator; it does no I/O until a call arrives.
type Authenticator struct {
	verifier *verifier
	limiter  *failureLimiter
	open     map[string]bool
	logger   *slog.Logger
	now      func() time.Time

	roles sync.Map // full method name -> methodRole
}

// methodRole is what the descriptors say of a method.
type methodRole struct {
	role authv1.Role
	// known: the method is in the descriptor registry.
	known bool
}

// NewAuthenticator returns the interceptors' state.
func NewAuthenticator(cfg Config, opts Options) *Authenticator {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{
		verifier: newVerifier(opts.Tokens, cfg.TokenCacheTTL, maxCachedTokens, now),
		limiter:  newFailureLimiter(cfg.FailureBurst, cfg.FailureInterval, maxSources, now),
		open:     map[string]bool{},
		logger:   logger,
		now:      now,
	}
	for _, m := range opts.OpenMethods {
		a.open[m] = true
	}
	return a
}

// Forget makes the next call with this token read its record again: the
// token API calls it when it revokes a token.
func (a *Authenticator) Forget(tokenID string) { a.verifier.forget(tokenID) }

// ServerOptions are the interceptors of a public server, plus an unknown
// service handler so that a method the server does not serve is
// authenticated like any other before it is answered UNIMPLEMENTED (no
// one learns which methods exist without credentials), and a tap that
// refuses hopeless calls before their request is read (InTapHandle).
func (a *Authenticator) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InTapHandle(a.InTapHandle),
		grpc.ChainUnaryInterceptor(a.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(a.StreamServerInterceptor()),
		grpc.UnknownServiceHandler(unknownService),
	}
}

// InTapHandle refuses, as soon as a call's headers arrive, the calls that
// cannot succeed: those without any credential and those from a source
// the failure limiter blocks. gRPC reads a unary call's whole request
// (up to the server's receive limit) before any interceptor runs, so
// without it anyone who reaches the listener could make the server
// buffer and decode large messages for calls that are refused anyway.
// It does no I/O (it runs on the connection's reader): a credential that
// is present is verified by the interceptors, which count its failures.
func (a *Authenticator) InTapHandle(ctx context.Context, info *tap.Info) (context.Context, error) {
	if a.open[info.FullMethodName] {
		return ctx, nil
	}
	cs := sourceOfCall(ctx, info.Header)
	if cs.limited {
		if wait, blocked := a.limiter.blocked(cs.src); blocked {
			return ctx, errRateLimited(wait)
		}
	}
	if len(info.Header.Get("authorization")) > 0 || cs.cert != nil {
		return ctx, nil
	}
	return ctx, errMissing()
}

func unknownService(any, grpc.ServerStream) error {
	return errUnimplemented()
}

// UnaryServerInterceptor authenticates, checks the method's role and the
// request's tenant, and passes the Principal in the context.
func (a *Authenticator) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if a.open[info.FullMethod] {
			return handler(ctx, req)
		}
		p, err := a.authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		if err := checkTenant(p, req); err != nil {
			return nil, err
		}
		return handler(WithPrincipal(ctx, p), req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streams: the
// tenant of every message received is checked.
func (a *Authenticator) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if a.open[info.FullMethod] {
			return handler(srv, ss)
		}
		p, err := a.authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &principalStream{ServerStream: ss, ctx: WithPrincipal(ss.Context(), p), p: p})
	}
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
	p   Principal
}

func (s *principalStream) Context() context.Context { return s.ctx }

func (s *principalStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return checkTenant(s.p, m)
}

// tenantRequest is every public request that names a tenant.
type tenantRequest interface{ GetTenant() string }

func checkTenant(p Principal, req any) error {
	if r, ok := req.(tenantRequest); ok {
		if t := r.GetTenant(); t != "" && !p.Covers(t) {
			return errTenant(t)
		}
	}
	return nil
}

// authorize authenticates the caller and checks its role for method.
func (a *Authenticator) authorize(ctx context.Context, method string) (Principal, error) {
	p, err := a.authenticate(ctx)
	if err != nil {
		return Principal{}, err
	}
	mr := a.methodRole(method)
	switch {
	case !mr.known:
		// Not a method of any API this binary knows: the server has no
		// handler for it and answers UNIMPLEMENTED, now that the caller
		// is known.
		return p, nil
	case mr.role == authv1.Role_ROLE_UNSPECIFIED:
		// An internal method, or a public one without its role: never
		// on this listener.
		a.logger.WarnContext(ctx, "call to a method without a required role refused", "method", method, "principal", p.ID)
		return Principal{}, errRole(method, p.Role)
	case p.Role < mr.role:
		return Principal{}, errRole(method, p.Role)
	}
	return p, nil
}

// authenticate finds the caller's credentials: a bearer token, else a
// verified client certificate.
func (a *Authenticator) authenticate(ctx context.Context) (Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	cs := sourceOfCall(ctx, md)
	if cs.limited {
		if wait, blocked := a.limiter.blocked(cs.src); blocked {
			return Principal{}, errRateLimited(wait)
		}
	}
	fail := func() (Principal, error) {
		if cs.limited {
			a.limiter.fail(cs.src)
		}
		return Principal{}, errInvalid()
	}

	if vals := md.Get("authorization"); len(vals) > 0 {
		if len(vals) > 1 || len(vals[0]) > maxTokenHeader {
			return fail()
		}
		scheme, token, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
		if !ok || !strings.EqualFold(scheme, "bearer") {
			return fail()
		}
		p, err := a.verifier.verify(ctx, strings.TrimSpace(token))
		switch {
		case errors.Is(err, errBadToken):
			return fail()
		case err != nil:
			a.logger.ErrorContext(ctx, "token verification failed", "error", err)
			return Principal{}, errUnavailable()
		}
		return p, nil
	}
	if cs.cert != nil {
		p, err := certPrincipal(cs.cert)
		if err != nil {
			a.logger.WarnContext(ctx, "client certificate refused", "error", err, "forwarded", cs.forwarded)
			return fail()
		}
		return p, nil
	}
	return Principal{}, errMissing()
}

// methodRole reads a method's required_role from the descriptors, once
// per known method. Unknown names are looked up every time: a caller
// makes them up at will, and caching them would let any credential grow
// the cache without bound.
func (a *Authenticator) methodRole(method string) methodRole {
	if v, ok := a.roles.Load(method); ok {
		return v.(methodRole)
	}
	mr := lookupRole(method)
	if mr.known {
		a.roles.Store(method, mr)
	}
	return mr
}

// lookupRole finds "/pkg.Service/Method" in the registry of linked protos.
func lookupRole(method string) methodRole {
	svc, name, ok := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	if !ok {
		return methodRole{}
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return methodRole{}
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return methodRole{}
	}
	md := sd.Methods().ByName(protoreflect.Name(name))
	if md == nil {
		return methodRole{}
	}
	role, _ := proto.GetExtension(md.Options(), authv1.E_RequiredRole).(authv1.Role)
	return methodRole{role: role, known: true}
}

// RequiredRole returns a method's required_role; ROLE_UNSPECIFIED when it
// declares none or is unknown. Tests use it to check that every method a
// public server registers declares one.
func RequiredRole(method string) authv1.Role { return lookupRole(method).role }

// Client certificates.
//
// On a public listener with a client CA (-server.grpc-tls-client-ca-file),
// a client may authenticate with a certificate that CA signed instead of a
// token. The certificate names its principal in URI subject alternative
// names of the form
//
//	urn:fleetacs:api:<role>:<tenant>
//
// one per tenant, all with the same role; "*" as the tenant covers every
// tenant. For example, with OpenSSL:
//
//	subjectAltName = URI:urn:fleetacs:api:operator:default
//
// A certificate of that CA without such names is refused: the CA may sign
// certificates for other purposes. There is no revocation list: give such
// certificates short lives.
const certURNPrefix = "urn:fleetacs:api:"

func certPrincipal(cert *x509.Certificate) (Principal, error) {
	p := Principal{ID: "cert:" + cert.Subject.String()}
	for _, u := range cert.URIs {
		s := u.String()
		rest, ok := strings.CutPrefix(s, certURNPrefix)
		if !ok {
			continue
		}
		roleName, tenant, ok := strings.Cut(rest, ":")
		role, okRole := ParseRole(roleName)
		if !ok || !okRole || (tenant != "*" && !ValidTenant(tenant)) {
			return Principal{}, fmt.Errorf("certificate %q: malformed name %q", p.ID, s)
		}
		if p.Role != authv1.Role_ROLE_UNSPECIFIED && p.Role != role {
			return Principal{}, fmt.Errorf("certificate %q names several roles", p.ID)
		}
		p.Role = role
		if tenant == "*" {
			p.AllTenants = true
		} else {
			p.Tenants = append(p.Tenants, tenant)
		}
	}
	if p.Role == authv1.Role_ROLE_UNSPECIFIED {
		return Principal{}, fmt.Errorf("certificate %q names no %s principal", p.ID, certURNPrefix)
	}
	if p.AllTenants {
		p.Tenants = nil
	}
	slices.Sort(p.Tenants)
	p.Tenants = slices.Compact(p.Tenants)
	return p, nil
}
