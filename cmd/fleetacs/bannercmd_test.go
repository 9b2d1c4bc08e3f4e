package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The fleetctl command line the banner prints runs as printed, from the
// directory fleetacs was started in, and finds the admin token there
// (issue 8 item 16: the banner's command must work; it once ended in
// "unknown flag -addr").
func TestBannerFleetctlCommandRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fleetctl; make test runs it")
	}
	fleetctl := buildFleetctl(t)
	p := startChild(t, "", "-log.level=warn", "-data-dir=data", "-gateway.auth-anonymous",
		"-gateway.listen-addr=127.0.0.1:0", "-server.http-addr=127.0.0.1:0", "-server.grpc-addr=127.0.0.1:0", "-server.internal-grpc-addr=127.0.0.1:0",
		"-gateway.drain-grace=0s", "-sessions.drain-timeout=1ms", "-server.api-http-addr=127.0.0.1:0", "all")
	banner := p.banner(t)
	m := regexp.MustCompile(`go run ./cmd/fleetctl (.*devices list)\n`).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("banner has no fleetctl command line:\n%s", banner)
	}
	if !strings.Contains(banner, "fleetctl run from this directory uses it") {
		t.Errorf("banner does not say fleetctl finds the admin token from here:\n%s", banner)
	}
	cmd := exec.Command(fleetctl, strings.Fields(m[1])...)
	cmd.Dir = p.cmd.Dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("fleetctl %s: %v\nstdout %q\nstderr %q", m[1], err, stdout.String(), stderr.String())
	}
	if !strings.HasPrefix(stdout.String(), "ID ") {
		t.Fatalf("fleetctl %s printed %q, want the device table", m[1], stdout.String())
	}
}

// buildFleetctl builds cmd/fleetctl and returns the binary's path.
func buildFleetctl(t *testing.T) string {
	return goBuild(t, filepath.Join("..", "fleetctl"), "fleetctl")
}
