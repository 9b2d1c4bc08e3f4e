package main

import (
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// The first SIGTERM (or SIGINT) drains: a session whose CPE went quiet
// holds the gateway for its drain grace (ten minutes here). The same signal
// again ends the process at once, by the signal's default action, without
// the rest of the shutdown.
func TestSecondSignalEndsTheDrain(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			p := startChild(t, "", "-log.level=info", "-data-dir=data", "-gateway.auth-anonymous",
				"-gateway.listen-addr=127.0.0.1:0", "-server.http-addr=127.0.0.1:0", "-server.grpc-addr=127.0.0.1:0",
				"-server.internal-grpc-addr=127.0.0.1:0", "-server.api-http-addr=127.0.0.1:0",
				"-gateway.drain-grace=10m", "-server.stop-timeout=20m", "all")
			m := bannerACS.FindStringSubmatch(p.banner(t))
			if m == nil {
				t.Fatalf("banner has no ACS URL:\n%s", p.output())
			}
			// A session opened and left: its CPE sends nothing more.
			if code, _ := postInform(t, m[1], "SIGNAL-"+strings.ToUpper(sig.String()[:3])); code != http.StatusOK {
				t.Fatalf("Inform: HTTP %d", code)
			}
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			// The drain has begun, and holds: the session is still open.
			testenv.WaitFor(t, 30*time.Second, func() error {
				p.alive(t)
				if !strings.Contains(p.output(), `"msg":"draining open sessions","component":"gateway"`) {
					return fmt.Errorf("no drain yet")
				}
				return nil
			})
			if !strings.Contains(p.output(), `"open_sessions":1`) {
				t.Fatalf("the drain does not wait for the open session:\n%s", p.output())
			}
			p.alive(t)
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.done:
			case <-time.After(30 * time.Second):
				t.Fatalf("still running 30s after a second %s:\n%s", sig, p.output())
			}
			var ee *exec.ExitError
			if !errors.As(p.err, &ee) {
				t.Fatalf("exit: %v, want the end by %s", p.err, sig)
			}
			if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != sig {
				t.Fatalf("exit: %v, want the end by %s", p.err, sig)
			}
			if strings.Contains(p.output(), `"msg":"fleetacs stopped"`) {
				t.Fatalf("the process finished its shutdown instead of ending at the second signal:\n%s", p.output())
			}
		})
	}
}
