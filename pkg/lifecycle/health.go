package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fleetacs/fleetacs/pkg/connlimit"
)

// Health tracks the readiness of a process's components. A process is live
// while it runs; it is ready when every registered component says so. It is
// safe for concurrent use.
type Health struct {
	mu    sync.Mutex
	ready map[string]bool
}

// NewHealth returns a Health with no components (and so ready).
func NewHealth() *Health { return &Health{ready: map[string]bool{}} }

// Register adds a component, not ready until SetReady says otherwise.
func (h *Health) Register(component string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.ready[component]; !ok {
		h.ready[component] = false
	}
}

// SetReady records whether a component is ready to take traffic.
func (h *Health) SetReady(component string, ready bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ready[component] = ready
}

// Ready reports whether every component is ready, and the names of those
// that are not, sorted.
func (h *Health) Ready() (bool, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var not []string
	for c, ok := range h.ready {
		if !ok {
			not = append(not, c)
		}
	}
	sort.Strings(not)
	return len(not) == 0, not
}

// AdminServer serves /healthz, /readyz and any extra handlers (such as
// /metrics) on its own listener. It is added to a Group first so that the
// probes answer while the rest starts (not ready) and while it drains, and
// it stops last.
type AdminServer struct {
	// Addr is the listen address and Setting the flag that chose it (for
	// the error when it cannot be bound).
	Addr    string
	Setting string
	Health  *Health
	// Handlers maps extra paths to handlers, e.g. "/metrics".
	Handlers map[string]http.Handler
	Logger   *slog.Logger
	// MaxConnections caps the connections open at once (default 64):
	// probes and scrapers hold few, and a flood here must not take the
	// descriptors the rest of the process needs.
	MaxConnections int

	ln   net.Listener
	srv  *http.Server
	errc chan error
}

var _ Service = (*AdminServer)(nil)

// DefaultAdminMaxConnections is AdminServer's default connection cap.
const DefaultAdminMaxConnections = 64

// AdminMaxConnectionsPerSource caps an admin listener's connections from
// one address (an IPv6 /64 counting as one): probes and scrapers come
// from a few addresses with a connection or two each, and one host must
// not take every connection and fail the liveness probes, which would have
// the process restarted.
const AdminMaxConnectionsPerSource = 8

// AdminListener caps the connections of an admin listener: maxConns in
// all (DefaultAdminMaxConnections when not positive) and
// AdminMaxConnectionsPerSource from one address.
func AdminListener(ln net.Listener, maxConns int) net.Listener {
	if maxConns <= 0 {
		maxConns = DefaultAdminMaxConnections
	}
	return connlimit.New(connlimit.Limits{Max: maxConns, PerSource: AdminMaxConnectionsPerSource, IPv6Prefix: 64}).Listener(ln)
}

// AdminHTTPServer returns the server of an admin listener serving h, with
// the size and time limits of probes and scrapes; logger, when set, takes
// its errors at debug level.
func AdminHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		// Probes and scrapes send a few hundred bytes (Go's default is
		// 1 MiB).
		MaxHeaderBytes: 16 << 10,
	}
	if logger != nil {
		srv.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelDebug)
	}
	return srv
}

// Handler returns the admin HTTP handler.
func (a *AdminServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		ok, not := a.Health.Ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %s\n", strings.Join(not, ", "))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	for path, h := range a.Handlers {
		mux.Handle(path, h)
	}
	return mux
}

// Start binds the listener and serves on it.
func (a *AdminServer) Start(ctx context.Context) error {
	setting := a.Setting
	if setting == "" {
		setting = "admin address"
	}
	ln, err := Listen(ctx, setting, a.Addr)
	if err != nil {
		return err
	}
	ln = AdminListener(ln, a.MaxConnections)
	a.ln = ln
	a.srv = AdminHTTPServer(a.Handler(), a.Logger)
	a.errc = make(chan error, 1)
	go func() { a.errc <- a.srv.Serve(ln) }()
	return nil
}

// BoundAddr returns the address the server is bound to, once started.
func (a *AdminServer) BoundAddr() net.Addr { return a.ln.Addr() }

// Run implements Service.
func (a *AdminServer) Run(ctx context.Context) error {
	select {
	case err := <-a.errc:
		return fmt.Errorf("serve admin: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down admin server: %w", err)
	}
	if err := <-a.errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve admin: %w", err)
	}
	return nil
}
