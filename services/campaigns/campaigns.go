// Package campaigns is the FleetACS campaigns service (docs/campaigns.md):
// the CampaignsService API and the runner that applies each campaign to
// the devices its filter selects, wave by wave, through the tasks service.
//
// The runner reads the inventory and creates tasks through their gRPC
// APIs (on the internal listener, or in process), signs firmware URLs
// with the files service, and keeps every campaign's state and each
// device's progress in its store, so that a restarted runner resumes where
// it was; task idempotency keys derived from the campaign and the device
// make sure a device never gets a second task from one campaign.
package campaigns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	provisioningv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/campaigns/store"
)

// DefaultTenant is the tenant of callers whose credentials name none.
const DefaultTenant = "default"

// Config is the service's configuration: flags "campaigns.<name>".
type Config struct {
	// Interval is the runner's period: how often it plans, creates tasks
	// and follows them (it also runs at once after a create, resume or
	// abort).
	Interval time.Duration
	// PageSize is the number of devices read or written at once.
	PageSize int
	// URLTTL is the lifetime of the signed URLs of firmware Downloads.
	URLTTL time.Duration
	// LeaseTTL is how long a runner's lease of a campaign lasts without
	// being renewed (each pass renews it): another replica takes the
	// campaign over that long after its runner died.
	LeaseTTL time.Duration
}

// DefaultConfig returns the defaults RegisterFlags registers.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("defaults", flag.ContinueOnError))
	return c
}

// RegisterFlags registers the flags with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.Interval, "campaigns.interval", 2*time.Second, "period of the campaign runner: planning, task creation, following outcomes")
	fs.IntVar(&c.PageSize, "campaigns.page-size", 500, "devices read from the inventory or the campaign store at once (10 to 1000)")
	fs.DurationVar(&c.URLTTL, "campaigns.url-ttl", 7*24*time.Hour, "lifetime of the signed download URLs of firmware campaigns (at most -files.max-url-ttl)")
	fs.DurationVar(&c.LeaseTTL, "campaigns.lease-ttl", time.Minute, "lifetime of a runner's lease of a campaign, renewed every pass: another replica takes a campaign over this long after its runner stopped renewing (at least 3 times -campaigns.interval)")
}

// Validate reports every setting that cannot work.
func (c *Config) Validate() error {
	var errs []error
	if c.Interval < 10*time.Millisecond || c.Interval > time.Hour {
		errs = append(errs, fmt.Errorf("campaigns.interval must be between 10ms and 1h, got %s", c.Interval))
	}
	if c.PageSize < 10 || c.PageSize > 1000 {
		errs = append(errs, fmt.Errorf("campaigns.page-size must be between 10 and 1000, got %d", c.PageSize))
	}
	if c.LeaseTTL < 3*c.Interval || c.LeaseTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("campaigns.lease-ttl must be between 3 times campaigns.interval (%s) and 24h, got %s", 3*c.Interval, c.LeaseTTL))
	}
	if c.URLTTL < time.Minute {
		errs = append(errs, fmt.Errorf("campaigns.url-ttl must be at least 1m, got %s", c.URLTTL))
	}
	return errors.Join(errs...)
}

// Files is what a firmware campaign needs of the files service
// (services/files.Service has it).
type Files interface {
	Get(ctx context.Context, tenant, id string) (*filesv1.File, error)
	Resolve(ctx context.Context, tenant, productClass, fileType, version string) (*filesv1.File, error)
	HasVersion(ctx context.Context, tenant, fileType, version string) (bool, error)
	SignFileURL(f *filesv1.File, deviceKey string, ttl time.Duration) (string, error)
}

// Publish publishes one event message (NATS JetStream with msgID as
// Nats-Msg-Id).
type Publish func(ctx context.Context, subject, msgID string, data []byte) error

// Deps are the service's collaborators.
type Deps struct {
	Store store.Store
	// Inventory and Tasks are the inventory's and the tasks service's
	// APIs, called as a trusted service (internal listener or in
	// process): requests always name the tenant.
	Inventory inventoryv1.InventoryServiceClient
	Tasks     tasksv1.TasksServiceClient
	// Files signs firmware URLs; nil: firmware campaigns are refused
	// (CAMPAIGN_ACTION_UNAVAILABLE).
	Files Files
	// Presets reads the preset a campaign applies (the inventory's
	// PresetsService, as a trusted service); nil: preset campaigns are
	// refused (CAMPAIGN_ACTION_UNAVAILABLE).
	Presets provisioningv1.PresetsServiceClient
	// Publish and Subject publish campaign events; nil Publish: none.
	Publish Publish
	// Subject is the subject of an event of kind ("campaign.paused")
	// about a campaign (natsbus.Names.Event).
	Subject func(tenant, kind, campaign string) string
	// CallerTenants returns the tenants the credentials of a public call
	// cover (apiauth.CallerTenants); nil: every caller covers "default".
	CallerTenants func(context.Context) []string
	// Requester names the principal of a public call.
	Requester func(context.Context) string
	Logger    *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// RunnerID names this runner in the campaigns' leases; empty: the
	// host name and a random suffix.
	RunnerID string
	// Close releases the store's client when the service stops; nil: none.
	Close func() error
}

// Service is the campaigns service.
type Service struct {
	cfg    Config
	deps   Deps
	store  store.Store
	logger *slog.Logger
	ready  atomic.Bool
	// poke wakes the runner before its next tick.
	poke chan struct{}
	// ticks counts the runner's completed passes (tests wait on it).
	ticks atomic.Uint64
	// owner is the runner's name in leases; leases the campaigns it
	// holds (leaseKey -> struct{}).
	owner  string
	leases sync.Map
}

// New returns a service; it does no I/O.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Inventory == nil || deps.Tasks == nil {
		return nil, errors.New("campaigns: store, inventory and tasks are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.CallerTenants == nil {
		deps.CallerTenants = func(context.Context) []string { return []string{DefaultTenant} }
	}
	if deps.Requester == nil {
		deps.Requester = func(context.Context) string { return "" }
	}
	owner := deps.RunnerID
	if owner == "" {
		host, _ := os.Hostname()
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		owner = host + "-" + hex.EncodeToString(b[:])
	}
	return &Service{cfg: cfg, deps: deps, store: deps.Store, logger: deps.Logger, poke: make(chan struct{}, 1), owner: owner}, nil
}

// RegisterPublic registers CampaignsService on g: a server whose
// interceptors authenticate callers (package apiauth).
func (s *Service) RegisterPublic(g grpc.ServiceRegistrar) {
	campaignsv1.RegisterCampaignsServiceServer(g, &publicServer{s: s})
}

// Start starts the store; calls are answered once it has returned.
func (s *Service) Start(ctx context.Context) error {
	if err := s.store.Start(ctx); err != nil {
		return fmt.Errorf("start campaigns: %w", err)
	}
	s.ready.Store(true)
	return nil
}

// Run runs the runner until ctx ends, then closes the store.
func (s *Service) Run(ctx context.Context) error {
	if !s.ready.Load() {
		if err := s.Start(ctx); err != nil {
			return err
		}
	}
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		s.pass(ctx)
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.releaseAll(rctx)
			cancel()
			s.ready.Store(false)
			err := s.store.Close()
			if s.deps.Close != nil {
				err = errors.Join(err, s.deps.Close())
			}
			return err
		case <-t.C:
		case <-s.poke:
		}
	}
}

// Ready reports whether the store is started.
func (s *Service) Ready() bool { return s.ready.Load() }

// Passes returns how many passes the runner has completed.
func (s *Service) Passes() uint64 { return s.ticks.Load() }

func (s *Service) wake() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}
