// Package files is the files service (docs/files.md): it keeps firmware
// images, configuration and vendor files for CPEs to download. It serves
// fleetacs.files.v1.FilesService (upload by gRPC stream, get, list,
// delete), the HTTP PUT upload of the HTTP/JSON API (UploadHandler), and
// the /files/ download endpoint the gateway mounts on its CWMP listener
// (DownloadHandler): GET and HEAD with Range, only for a URL signed for one
// device (SignURL).
//
// Records (name, type, product classes, version, size, SHA-256) are in a
// metadata store (package store: SQLite embedded, MongoDB); bytes in a blob
// store (package blob: a directory embedded, GridFS with MongoDB), never in
// the devices' collections.
package files

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	"github.com/fleetacs/fleetacs/services/files/blob"
	"github.com/fleetacs/fleetacs/services/files/store"
)

// Config is the service's configuration (docs/style.md rule 2): flags
// "files.<name>". The stores' settings are StoreConfig's.
type Config struct {
	// URLKeyFile holds the keys that sign download URLs, one
	// "[ID ]BASE64" line per 32-byte key, the first signing. Empty: the
	// file the caller names as the default (the fleetacs binary:
	// files-url.key in -data-dir, created at first start).
	URLKeyFile string
	// BaseURL is what signed URLs start with: the CWMP listener as CPEs
	// reach it ("http://acs.example.net:7547").
	BaseURL string
	// MaxURLTTL bounds the lifetime of a signed URL.
	MaxURLTTL time.Duration
	// MaxUploadBytes bounds one file.
	MaxUploadBytes int64
	// UploadTimeout bounds one upload, and UploadIdleTimeout the wait for
	// each next part of it.
	UploadTimeout     time.Duration
	UploadIdleTimeout time.Duration
	// ServeMinRate and ServeMaxTime bound one download: it gets 30s plus
	// its length at ServeMinRate bytes/s, at most ServeMaxTime.
	ServeMinRate int64
	ServeMaxTime time.Duration
	// ServeMaxConcurrent bounds the downloads served at once by the
	// process; more are answered 503 with Retry-After.
	ServeMaxConcurrent int
	// DeviceAuth says what a download needs besides its signed URL:
	// DeviceAuthURL nothing, DeviceAuthCredentials the credentials of the
	// device the URL was signed for, checked by the gateway
	// (SetDeviceAuth).
	DeviceAuth string
}

// Values of Config.DeviceAuth.
const (
	DeviceAuthURL         = "url"
	DeviceAuthCredentials = "credentials"
)

// DeviceAuthFunc checks that r comes from deviceKey of tenant with that
// device's own credentials (the gateway's AuthenticateDevice); when it
// returns false it has answered the request.
type DeviceAuthFunc func(w http.ResponseWriter, r *http.Request, tenant, deviceKey string) bool

// DefaultConfig returns the defaults RegisterFlags registers.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("defaults", flag.ContinueOnError))
	return c
}

// RegisterFlags registers the flags, named "files.<name>".
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.URLKeyFile, "files.url-key-file", "", "file of the keys that sign the download URLs of files, one \"[ID ]BASE64\" line per 32-byte key, the first signing (empty: files-url.key in -data-dir, created at first start); every process serving or signing /files/ URLs needs the same file")
	fs.StringVar(&c.BaseURL, "files.base-url", "", "scheme, host and port CPEs reach /files/ at, the start of signed URLs, e.g. http://acs.example.net:7547 (empty: the gateway's -gateway.listen-addr when it runs in the process)")
	fs.DurationVar(&c.MaxURLTTL, "files.max-url-ttl", 30*24*time.Hour, "longest lifetime of a signed download URL")
	fs.Int64Var(&c.MaxUploadBytes, "files.max-upload-bytes", 2<<30, "largest file accepted by an upload")
	fs.DurationVar(&c.UploadTimeout, "files.upload-timeout", 30*time.Minute, "time allowed for one whole upload")
	fs.DurationVar(&c.UploadIdleTimeout, "files.upload-idle-timeout", 30*time.Second, "time allowed between two parts of an upload")
	fs.Int64Var(&c.ServeMinRate, "files.serve-min-rate", 16<<10, "slowest download served, in bytes/s: a download gets 30s plus its length at this rate (at most -files.serve-max-time)")
	fs.DurationVar(&c.ServeMaxTime, "files.serve-max-time", 2*time.Hour, "longest time one download may take")
	fs.IntVar(&c.ServeMaxConcurrent, "files.serve-max-concurrent", 4096, "downloads served at once by the process; more are answered 503 with Retry-After")
	fs.StringVar(&c.DeviceAuth, "files.device-auth", DeviceAuthURL, "what a download needs besides its signed URL: url (nothing) or credentials (the device's own gateway credentials too, which its Download task must then carry as Username and Password)")
}

// Validate reports every setting that cannot work.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			bad("files.base-url %q must be http:// or https:// with a host and no path", c.BaseURL)
		}
	}
	if c.MaxURLTTL < time.Minute {
		bad("files.max-url-ttl must be at least 1m, got %s", c.MaxURLTTL)
	}
	if c.MaxUploadBytes < 1 {
		bad("files.max-upload-bytes must be positive, got %d", c.MaxUploadBytes)
	}
	if c.UploadTimeout < time.Second || c.UploadIdleTimeout < time.Second {
		bad("files.upload-timeout and files.upload-idle-timeout must be at least 1s, got %s and %s", c.UploadTimeout, c.UploadIdleTimeout)
	}
	if c.ServeMinRate < 1 {
		bad("files.serve-min-rate must be positive, got %d", c.ServeMinRate)
	}
	if c.ServeMaxTime < time.Second {
		bad("files.serve-max-time must be at least 1s, got %s", c.ServeMaxTime)
	}
	if c.DeviceAuth != DeviceAuthURL && c.DeviceAuth != DeviceAuthCredentials {
		bad("files.device-auth must be %q or %q, got %q", DeviceAuthURL, DeviceAuthCredentials, c.DeviceAuth)
	}
	if c.ServeMaxConcurrent < 1 {
		bad("files.serve-max-concurrent must be positive, got %d", c.ServeMaxConcurrent)
	}
	return errors.Join(errs...)
}

// Deps are the service's dependencies.
type Deps struct {
	Store store.Store
	Blobs blob.Store
	// URLKeys signs download URLs; Start loads it.
	URLKeys *URLKeys
	// CallerTenants returns the tenants a public call's credentials cover
	// (apiauth.CallerTenants); nil: "default".
	CallerTenants func(context.Context) []string
	// Requester names a public call's principal (File.uploader); nil:
	// empty.
	Requester func(context.Context) string
	// Close runs after the stores are closed (the MongoDB client's
	// disconnect); nil: nothing.
	Close  func() error
	Logger *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// DefaultTenant is the tenant of a single-tenant install.
const DefaultTenant = "default"

// Service is the files service.
type Service struct {
	cfg    Config
	deps   Deps
	meta   store.Store
	blobs  blob.Store
	keys   *URLKeys
	logger *slog.Logger
	now    func() time.Time
	// serving holds a slot per download served (ServeMaxConcurrent).
	serving chan struct{}
	// baseURL starts signed URLs (Config.BaseURL, or SetBaseURL's).
	baseURL atomic.Pointer[string]
	// deviceAuth is SetDeviceAuth's.
	deviceAuth atomic.Pointer[DeviceAuthFunc]
	ready      atomic.Bool
	started    bool
}

// New builds the service. It does no I/O.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("files config: %w", err)
	}
	if deps.Store == nil || deps.Blobs == nil || deps.URLKeys == nil {
		return nil, errors.New("files: Store, Blobs and URLKeys are required")
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
	s := &Service{cfg: cfg, deps: deps, meta: deps.Store, blobs: deps.Blobs, keys: deps.URLKeys,
		logger: deps.Logger, now: deps.Now, serving: make(chan struct{}, cfg.ServeMaxConcurrent)}
	base := strings.TrimSuffix(cfg.BaseURL, "/")
	s.baseURL.Store(&base)
	return s, nil
}

// SetBaseURL sets the start of signed URLs when the configuration left it
// empty (the fleetacs binary: the gateway's address, known once bound).
func (s *Service) SetBaseURL(u string) {
	if s.cfg.BaseURL == "" {
		base := strings.TrimSuffix(u, "/")
		s.baseURL.Store(&base)
	}
}

// SetDeviceAuth sets the check of device credentials that
// files.device-auth=credentials asks for (the gateway's
// AuthenticateDevice, set once the gateway is built).
func (s *Service) SetDeviceAuth(f DeviceAuthFunc) { s.deviceAuth.Store(&f) }

// RegisterPublic registers FilesService on g: a server whose interceptors
// authenticate callers (package apiauth).
func (s *Service) RegisterPublic(g grpc.ServiceRegistrar) {
	filesv1.RegisterFilesServiceServer(g, &publicServer{s: s})
}

// Start loads the URL keys and starts the stores.
func (s *Service) Start(ctx context.Context) error {
	if err := s.keys.Load(); err != nil {
		return fmt.Errorf("start files: %w", err)
	}
	if err := s.meta.Start(ctx); err != nil {
		return fmt.Errorf("start files: %w", err)
	}
	if err := s.blobs.Start(ctx); err != nil {
		_ = s.meta.Close()
		return fmt.Errorf("start files: %w", err)
	}
	s.started = true
	s.ready.Store(true)
	return nil
}

// Run waits for ctx to end, then closes the stores (Start first when it was
// not called).
func (s *Service) Run(ctx context.Context) error {
	if !s.started {
		if err := s.Start(ctx); err != nil {
			return err
		}
	}
	<-ctx.Done()
	s.ready.Store(false)
	err := errors.Join(s.blobs.Close(), s.meta.Close())
	if s.deps.Close != nil {
		err = errors.Join(err, s.deps.Close())
	}
	return err
}

// Ready reports whether the stores are started.
func (s *Service) Ready() bool { return s.ready.Load() }
