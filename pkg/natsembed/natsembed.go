// Package natsembed runs a real NATS server with JetStream inside the
// process, for the embedded default (docs/design.md §4): one binary, no external
// broker, the same client code paths as against a NATS cluster.
package natsembed

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Server is an in-process NATS server as a lifecycle service. Set the
// fields, then Run it; Ready is closed once it accepts connections and URL
// is set.
type Server struct {
	// Host and Port to listen on; Port -1 picks a free port.
	Host string
	Port int
	// StoreDir holds the JetStream streams.
	StoreDir string
	// StartTimeout bounds the wait for the server to accept connections.
	StartTimeout time.Duration

	ready chan struct{}
	url   string
	ns    *server.Server
}

// New returns a server that Run will start; it does no I/O.
func New(host string, port int, storeDir string) *Server {
	return &Server{Host: host, Port: port, StoreDir: storeDir, StartTimeout: 30 * time.Second, ready: make(chan struct{})}
}

// Ready is closed once the server accepts connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// URL is the client URL; valid once Ready is closed.
func (s *Server) URL() string { return s.url }

// InProcess is a client option that connects to the server through an
// in-memory pipe rather than loopback TCP: clients in the same process
// skip the kernel (a session worker reads a device's task queue once per
// session). Valid once Ready is closed.
func (s *Server) InProcess() nats.Option { return nats.InProcessServer(s.ns) }

// Run starts the server, serves until ctx ends, then shuts it down.
func (s *Server) Run(ctx context.Context) error {
	// The streams will hold tasks and events about devices: readable by
	// the owner only, also when an older release created the directory
	// more open (NATS's own files inside are then out of others' reach).
	if err := os.MkdirAll(s.StoreDir, 0o700); err != nil {
		return fmt.Errorf("create NATS store dir %s: %w", s.StoreDir, err)
	}
	if err := os.Chmod(s.StoreDir, 0o700); err != nil {
		return fmt.Errorf("restrict NATS store dir %s: %w", s.StoreDir, err)
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "fleetacs-embedded",
		Host:       s.Host,
		Port:       s.Port,
		JetStream:  true,
		StoreDir:   s.StoreDir,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		return fmt.Errorf("configure embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(s.StartTimeout) {
		ns.Shutdown()
		return fmt.Errorf("embedded NATS not ready after %s", s.StartTimeout)
	}
	s.url = ns.ClientURL()
	s.ns = ns
	close(s.ready)
	<-ctx.Done()
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}
