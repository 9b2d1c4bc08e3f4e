package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fleetacs/fleetacs/pkg/connlimit"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// floodConn opens a connection to the CWMP listener from the loopback
// address src, sends one empty POST without credentials and reads the
// answer. It returns the connection, left open and idle, and whether the
// gateway kept it (answered) or closed it on arrival.
func floodConn(t *testing.T, src, addr string) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: acs\r\nContent-Length: 0\r\n\r\n"); err != nil {
		return c, false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection from %s neither answered nor closed", src)
		}
		return c, false
	}
	if !strings.HasPrefix(line, "HTTP/1.1 ") {
		t.Fatalf("answer %q", line)
	}
	_ = c.SetDeadline(time.Time{})
	return c, true
}

// A flood of idle keep-alive connections on the CWMP port, each after one
// empty POST without credentials, in a process that may open 256 files:
// the CWMP caps hold (per source, then in all) and /healthz, /readyz and
// gRPC health still answer, because the caps keep descriptors for the rest
// of the process (issue 8 item 7: 20,500 such connections took CWMP,
// /healthz and gRPC down together).
func TestConnectionFloodLeavesProbesAndGRPC(t *testing.T) {
	const fileLimit, perSource = 256, 100
	cwmpCap := connlimit.Budget(fileLimit)
	p := startChild(t, fmt.Sprintf("ulimit -n %d", fileLimit),
		"-log.level=warn", "-data-dir=data",
		"-gateway.auth-shared-username=cpe", "-gateway.auth-shared-password=secret",
		"-gateway.listen-addr=127.0.0.1:0", "-server.http-addr=127.0.0.1:0", "-server.grpc-addr=127.0.0.1:0", "-server.internal-grpc-addr=127.0.0.1:0",
		// The flood's connections stay for the test.
		"-gateway.unauthenticated-idle-timeout=10m",
		fmt.Sprintf("-gateway.max-connections-per-source=%d", perSource),
		"-gateway.drain-grace=0s", "-sessions.drain-timeout=1ms",
		"all")
	banner := p.banner(t)
	find := func(re string) string {
		m := regexpFind(re, banner)
		if m == "" {
			t.Fatalf("banner lacks %s:\n%s", re, banner)
		}
		return m
	}
	acs := strings.TrimSuffix(strings.TrimPrefix(find(`ACS URL for CPEs \(ManagementServer\.URL\): (http://\S+)`), "http://"), "/")
	health := find(`Health: (http://\S+)/readyz`)
	grpcAddr := find(`fleetctl -addr (\S+) devices list`)

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	flood := func(src string, n int) (kept int) {
		for range n {
			c, ok := floodConn(t, src, acs)
			conns = append(conns, c)
			if ok {
				kept++
			}
		}
		return kept
	}
	if kept := flood("127.0.0.1", perSource+50); kept != perSource {
		t.Fatalf("kept %d connections from one address, want the per-source cap %d", kept, perSource)
	}
	if kept := flood("127.0.0.2", perSource+50); kept != cwmpCap-perSource {
		t.Fatalf("kept %d connections from a second address, want %d up to the cap of %d", kept, cwmpCap-perSource, cwmpCap)
	}
	if kept := flood("127.0.0.3", 10); kept != 0 {
		t.Fatalf("kept %d connections over the cap of %d", kept, cwmpCap)
	}
	p.alive(t)

	// The rest of the process still answers.
	for _, path := range []string{"/healthz", "/readyz"} {
		if err := httpReady(health + path); err != nil {
			t.Fatalf("%s during the flood: %v", path, err)
		}
	}
	if st := grpcHealth(t, grpcAddr, ""); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health during the flood: %s", st)
	}

	// Once the flood goes, CPEs get in again.
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	testenv.WaitFor(t, 30*time.Second, func() error {
		c, ok := floodConn(t, "127.0.0.4", acs)
		defer c.Close()
		if !ok {
			return fmt.Errorf("still refused after the flood closed")
		}
		return nil
	})
}

// grpcConnKept opens a TCP connection to a gRPC listener from the loopback
// address src and reports whether the server kept it: a gRPC server
// writes its HTTP/2 settings at once on a connection it keeps, and closes
// one over its caps without a byte.
func grpcConnKept(t *testing.T, src, addr string) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	_, err = c.Read(b[:])
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection from %s neither served nor closed", src)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, err == nil
}

// One host that opens idle connections to a gRPC listener takes at most
// -server.grpc-max-connections-per-source of them: before any credential
// is looked at, a connection is only a connection, and one host holding
// all -server.grpc-max-connections would lock every operator out of the
// public API (and, on an internal listener that other hosts reach, every
// gateway out of the workers).
func TestGRPCConnectionsCappedPerSource(t *testing.T) {
	const perSource = 64 // the default
	p := startProcess(t, "-log.level=error", "-data-dir="+t.TempDir(), "-gateway.auth-anonymous",
		"-gateway.listen-addr=127.0.0.1:0", "-server.http-addr=127.0.0.1:0", "-server.grpc-addr=127.0.0.1:0", "-server.internal-grpc-addr=127.0.0.1:0", "all")
	var grpcAddr string
	testenv.WaitFor(t, 30*time.Second, func() error {
		p.alive(t)
		if m := bannerFleetctl.FindStringSubmatch(p.stdout.String()); m != nil {
			grpcAddr = m[1]
			return nil
		}
		return fmt.Errorf("no banner yet")
	})
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	kept := 0
	for range perSource + 5 {
		c, ok := grpcConnKept(t, "127.0.0.2", grpcAddr)
		conns = append(conns, c)
		if ok {
			kept++
		}
	}
	if kept != perSource {
		t.Fatalf("the public gRPC listener kept %d idle connections from one address, want %d", kept, perSource)
	}
	if st := grpcHealth(t, grpcAddr, ""); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health from another address: %s", st)
	}
}
