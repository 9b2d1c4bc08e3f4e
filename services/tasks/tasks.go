// Package tasks owns task records and their history, presets and campaigns,
// and serves the public gRPC tasks API for OSS/BSS (docs/design.md §1, §3).
//
// This module holds its configuration and constructor; the service body
// arrives with the issue that builds it (see the README's architecture
// section). Nothing here pretends to serve traffic yet.
package tasks

import (
	"flag"
	"fmt"
	"log/slog"
)

// Config is the tasks service's configuration (docs/style.md rule 2).
type Config struct {
	// GRPCAddr is where the public tasks API listens.
	GRPCAddr string
}

// RegisterFlags registers the service's flags, named "tasks.<name>", with their
// defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.GRPCAddr, "tasks.grpc-addr", ":9310", "listen address of the public gRPC tasks API")
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	if c.GRPCAddr == "" {
		return fmt.Errorf("tasks.grpc-addr must not be empty")
	}
	return nil
}

// Service is the tasks service.
type Service struct {
	cfg    Config
	logger *slog.Logger
}

// New builds the service from a validated configuration. It does no I/O.
func New(cfg Config, logger *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tasks config: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Service{cfg: cfg, logger: logger.With("service", "tasks")}, nil
}
