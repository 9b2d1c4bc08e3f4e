// Package sessions runs CWMP sessions: the state machine of pkg/cwmp driven by
// gateway exchanges, with device leases, checkpoints and session routing in
// Redis, tasks from NATS and results recorded in inventory (DESIGN §1, §2).
//
// This module holds its configuration and constructor; the service body
// arrives with the issue that builds it (see the README's architecture
// section). Nothing here pretends to serve traffic yet.
package sessions

import (
	"flag"
	"fmt"
	"log/slog"
)

// Config is the sessions service's configuration (STYLE rule 2).
type Config struct {
	// GRPCAddr is where gateways reach this worker.
	GRPCAddr string
}

// RegisterFlags registers the service's flags, named "sessions.<name>", with their
// defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.GRPCAddr, "sessions.grpc-addr", ":9300", "listen address of the internal gRPC API for gateways")
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	if c.GRPCAddr == "" {
		return fmt.Errorf("sessions.grpc-addr must not be empty")
	}
	return nil
}

// Service is the sessions service.
type Service struct {
	cfg    Config
	logger *slog.Logger
}

// New builds the service from a validated configuration. It does no I/O.
func New(cfg Config, logger *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sessions config: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Service{cfg: cfg, logger: logger.With("service", "sessions")}, nil
}
