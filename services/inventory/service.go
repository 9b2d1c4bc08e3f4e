package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// Service is the inventory service: the public InventoryService and the
// InventoryInternalService over one store, registered on separate servers.
type Service struct {
	store  store.Store
	logger *slog.Logger
	// callerTenants returns the tenants the caller's credentials cover,
	// for requests that name none.
	callerTenants func(context.Context) []string
	// tokens answers InventoryInternalService.GetToken; nil: unimplemented.
	tokens apiauth.TokenReader
	ready  atomic.Bool
	now    func() time.Time
	// started is set by Start and read by Run, which runs after it.
	started bool
	// deleted is told of every device DeleteDevice removed (the presets'
	// device secrets go with it); nil: nobody.
	deleted func(ctx context.Context, tenant, id string) error
}

// Options are the Service's optional dependencies.
type Options struct {
	// Logger; nil discards.
	Logger *slog.Logger
	// CallerTenants returns the tenants the credentials of a public API
	// call cover (set by the authentication layer). Nil means a
	// single-tenant install: every caller covers "default" (docs/design.md §3).
	CallerTenants func(context.Context) []string
	// Now stamps what the service records itself (discovery profiles);
	// nil means time.Now.
	Now func() time.Time
	// Tokens are the API tokens InventoryInternalService.GetToken reads
	// (the store's, docs/security.md "Processes without the inventory");
	// nil: GetToken answers UNIMPLEMENTED.
	Tokens apiauth.TokenReader
}

// DefaultTenant is the tenant of a single-tenant install.
const DefaultTenant = "default"

// New returns the service over st. It does no I/O: Run starts the store.
func New(st store.Store, opts Options) *Service {
	s := &Service{store: st, logger: opts.Logger, callerTenants: opts.CallerTenants, now: opts.Now, tokens: opts.Tokens}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.callerTenants == nil {
		s.callerTenants = func(context.Context) []string { return []string{DefaultTenant} }
	}
	return s
}

// RegisterPublic registers the public InventoryService on g: a server
// whose interceptors authenticate callers (package apiauth). Calls made
// before Run has started the store fail with UNAVAILABLE.
func (s *Service) RegisterPublic(g grpc.ServiceRegistrar) {
	inventoryv1.RegisterInventoryServiceServer(g, &publicServer{s: s})
}

// RegisterInternal registers InventoryInternalService on g: the internal
// listener, or the in-process channel, never a public listener (it hands
// out device passwords).
func (s *Service) RegisterInternal(g grpc.ServiceRegistrar) {
	inventoryv1.RegisterInventoryInternalServiceServer(g, &internalServer{s: s})
}

// Start starts the store (connecting and migrating): the service is
// started, and its calls answered, once the store is.
func (s *Service) Start(ctx context.Context) error {
	if err := s.store.Start(ctx); err != nil {
		return fmt.Errorf("start inventory: %w", err)
	}
	s.started = true
	s.ready.Store(true)
	s.logger.InfoContext(ctx, "inventory store started")
	return nil
}

// Run serves until ctx ends, then closes the store; it starts the store
// first when Start has not been called. In-flight calls are drained by the
// gRPC server, which stops before Run's context ends in the process's
// shutdown order.
func (s *Service) Run(ctx context.Context) error {
	if !s.started {
		if err := s.Start(ctx); err != nil {
			return err
		}
	}
	<-ctx.Done()
	s.ready.Store(false)
	if err := s.store.Close(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("stop inventory: %w", err)
	}
	return nil
}

// OnDelete registers what must go with a deleted device (the presets'
// secrets, presets.go). Call it before serving.
func (s *Service) OnDelete(f func(ctx context.Context, tenant, id string) error) { s.deleted = f }

// Ready reports whether the store is started, for readiness probes.
func (s *Service) Ready() bool { return s.ready.Load() }

var errNotReady = errors.New("inventory store not started")
