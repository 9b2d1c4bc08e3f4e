// Package gateway is FleetACS's CPE-facing edge: the CWMP endpoint over HTTP
// and HTTPS on :7547. It authenticates CPEs, enforces size and time limits,
// applies admission control and forwards each exchange to a session worker; it
// keeps no session state (DESIGN §1, §2).
//
// This module holds its configuration and constructor; the service body
// arrives with the issue that builds it (see the README's architecture
// section). Nothing here pretends to serve traffic yet.
package gateway

import (
	"flag"
	"fmt"
	"log/slog"
)

// Config is the gateway service's configuration (STYLE rule 2).
type Config struct {
	// ListenAddr is the plain-HTTP CWMP listener.
	ListenAddr string
	// MaxBodyBytes bounds one CWMP request body after decompression.
	MaxBodyBytes int
}

// RegisterFlags registers the service's flags, named "gateway.<name>", with their
// defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ListenAddr, "gateway.listen-addr", ":7547", "plain-HTTP CWMP listen address")
	fs.IntVar(&c.MaxBodyBytes, "gateway.max-body-bytes", 4<<20, "largest CWMP request body accepted, after decompression")
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	if c.ListenAddr == "" {
		return fmt.Errorf("gateway.listen-addr must not be empty")
	}
	if c.MaxBodyBytes <= 0 {
		return fmt.Errorf("gateway.max-body-bytes must be positive, got %d", c.MaxBodyBytes)
	}
	return nil
}

// Service is the gateway service.
type Service struct {
	cfg    Config
	logger *slog.Logger
}

// New builds the service from a validated configuration. It does no I/O.
func New(cfg Config, logger *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Service{cfg: cfg, logger: logger.With("service", "gateway")}, nil
}
