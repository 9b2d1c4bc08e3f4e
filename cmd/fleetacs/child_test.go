package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// asFleetacs makes the test binary run as fleetacs (TestMain).
const asFleetacs = "FLEETACS_TEST_RUN_AS_FLEETACS"

// child is fleetacs in a process of its own: the test binary itself,
// without building anything.
type child struct {
	cmd  *exec.Cmd
	out  string // stdout and stderr
	done chan struct{}
	err  error
}

// startChild runs fleetacs with args; prefix, when set, is a shell
// command line run before it (such as "ulimit -n 256"). The process is
// stopped at the end of the test.
func startChild(t *testing.T, prefix string, args ...string) *child {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := append([]string{self}, args...)
	if prefix != "" {
		argv = append([]string{"/bin/sh", "-c", prefix + ` && exec "$0" "$@"`}, argv...)
	}
	c := &child{out: filepath.Join(t.TempDir(), "fleetacs.log"), done: make(chan struct{})}
	f, err := os.Create(c.out)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(argv[0], argv[1:]...)
	// The STUN server's and the HTTP/JSON API's default ports would be
	// shared by every test, and by whatever else runs on the machine; a
	// flag the test gives wins over these (pkg/config).
	c.cmd.Env = append(os.Environ(), asFleetacs+"=1", "FLEETACS_NOTIFIER_STUN_ADDR=127.0.0.1:0", "FLEETACS_SERVER_API_HTTP_ADDR=127.0.0.1:0")
	c.cmd.Stdout, c.cmd.Stderr = f, f
	c.cmd.Dir = t.TempDir()
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start fleetacs: %v", err)
	}
	go func() { c.err = c.cmd.Wait(); f.Close(); close(c.done) }()
	t.Cleanup(func() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

// output is what the process wrote so far.
func (c *child) output() string {
	b, _ := os.ReadFile(c.out)
	return string(b)
}

// alive fails the test when the process has exited.
func (c *child) alive(t *testing.T) {
	t.Helper()
	select {
	case <-c.done:
		t.Fatalf("fleetacs exited (%v):\n%s", c.err, c.output())
	default:
	}
}

// banner waits for the start-up banner and returns it.
func (c *child) banner(t *testing.T) string {
	t.Helper()
	var out string
	testenv.WaitFor(t, 60*time.Second, func() error {
		c.alive(t)
		out = c.output()
		if !strings.Contains(out, "FleetACS is ready.") {
			return fmt.Errorf("no banner yet")
		}
		return nil
	})
	return out
}
