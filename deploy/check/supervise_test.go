package check

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// maxRestarts bounds how often a supervised process is started again.
const maxRestarts = 5

// supervised runs a process as an orchestrator does (Kubernetes'
// restartPolicy Always, compose's restart: unless-stopped): started again
// after it exits, up to maxRestarts times, until its context ends. A
// process that keeps exiting is given up, and the test sees it.
type supervised struct {
	name     string
	bin      string
	args     []string
	env      []string
	dir      string
	log      string
	done     chan struct{} // closed once supervision ends
	mu       sync.Mutex
	restarts int
	gaveUp   bool
}

func supervise(ctx context.Context, t *testing.T, name, bin string, args, env []string, dir, log string) *supervised {
	t.Helper()
	s := &supervised{name: name, bin: bin, args: args, env: env, dir: dir, log: log, done: make(chan struct{})}
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		defer f.Close()
		for {
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, f, f
			err := cmd.Run()
			if ctx.Err() != nil {
				return
			}
			s.mu.Lock()
			if s.restarts >= maxRestarts {
				s.gaveUp = true
				s.mu.Unlock()
				return
			}
			s.restarts++
			s.mu.Unlock()
			fmt.Fprintf(f, "--- %s exited (%v); started again\n", name, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return s
}

// failed says whether the process was given up.
func (s *supervised) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gaveUp {
		return fmt.Errorf("%s exited %d times", s.name, s.restarts+1)
	}
	return nil
}

// tail returns the last n lines of the process's log.
func (s *supervised) tail(n int) string {
	data, _ := os.ReadFile(s.log)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// restartCount is how often the process was started again.
func (s *supervised) restartCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// listenPort returns a port free on 127.0.0.1 for network ("tcp" or
// "udp"), below the kernel's ephemeral range: the processes a test starts
// open many outgoing connections (to Redis, NATS, the database, each
// other), whose local ports come from that range and could take a port
// handed out there before its server binds it. TCP ports come from
// testenv.FreePort, which picks them the same way.
func listenPort(t *testing.T, network string) int {
	t.Helper()
	low := 32768
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 12000 {
				low = n
			}
		}
	}
	if network == "tcp" {
		return testenv.FreePort(t)
	}
	for range 200 {
		p := 10000 + rand.IntN(low-10000)
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		if c, err := net.ListenPacket("udp", addr); err == nil {
			c.Close()
			return p
		}
	}
	t.Fatalf("no free %s port found below %d", network, low)
	return 0
}
