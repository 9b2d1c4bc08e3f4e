// Package notifier sends Connection Requests to CPEs (HTTP Digest, UDP per
// TR-111 Annex G) and delivers northbound events; it keeps nothing durable
// (docs/design.md §1).
//
// This module holds its configuration and constructor; the service body
// arrives with the issue that builds it (see the README's architecture
// section). Nothing here pretends to serve traffic yet.
package notifier

import (
	"flag"
	"fmt"
	"log/slog"
)

// Config is the notifier service's configuration (docs/style.md rule 2).
type Config struct {
	// AllowedNetworks lists the CIDRs connection requests may be sent to.
	AllowedNetworks string
}

// RegisterFlags registers the service's flags, named "notifier.<name>", with their
// defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.AllowedNetworks, "notifier.allowed-networks", "10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,127.0.0.0/8", "comma-separated CIDRs that connection requests may be sent to")
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	if c.AllowedNetworks == "" {
		return fmt.Errorf("notifier.allowed-networks must not be empty: connection requests need somewhere to go")
	}
	return nil
}

// Service is the notifier service.
type Service struct {
	cfg    Config
	logger *slog.Logger
}

// New builds the service from a validated configuration. It does no I/O.
func New(cfg Config, logger *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("notifier config: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Service{cfg: cfg, logger: logger.With("service", "notifier")}, nil
}
