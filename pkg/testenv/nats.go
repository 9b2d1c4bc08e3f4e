package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

var natsServer struct {
	once sync.Once
	url  string
	err  error
}

// NATS returns the URL of a NATS server with JetStream: $FLEETACS_TEST_NATS_URL
// when set, else a nats-server running inside this test binary on a free
// port, with its JetStream store in a temporary directory. The server is
// shared by every test in the binary: name streams, consumers and subjects
// with UniqueName so that tests do not see each other's messages.
func NATS(t testing.TB) string {
	t.Helper()
	requireMain(t)
	if url := os.Getenv(EnvNATSURL); url != "" {
		return url
	}
	natsServer.once.Do(func() { natsServer.url, natsServer.err = startNATS() })
	if natsServer.err != nil {
		t.Fatalf("testenv: %v", natsServer.err)
	}
	return natsServer.url
}

func startNATS() (string, error) {
	root, err := tempRoot()
	if err != nil {
		return "", fmt.Errorf("start nats-server: %w", err)
	}
	dir := filepath.Join(root, "nats")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("start nats-server: %w", err)
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "fleetacs-testenv",
		Host:       "127.0.0.1",
		// The server binds port 0 itself: no window for another process
		// to take the port.
		Port:               server.RANDOM_PORT,
		JetStream:          true,
		StoreDir:           dir,
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  1 << 30,
		NoLog:              true,
		NoSigs:             true,
	})
	if err != nil {
		return "", fmt.Errorf("start nats-server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return "", fmt.Errorf("start nats-server: not ready for connections after 30s")
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		return "", fmt.Errorf("start nats-server: JetStream did not start")
	}
	onStop(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s.ClientURL(), nil
}
