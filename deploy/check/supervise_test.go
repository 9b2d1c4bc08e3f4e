package check

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
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
