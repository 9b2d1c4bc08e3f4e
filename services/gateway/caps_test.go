package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// A keep-alive connection that carries no session is closed after
// gateway.unauthenticated-idle-timeout, long before gateway.idle-timeout;
// one that carries a session keeps the full idle timeout (issue 8 item 7).
func TestUnauthenticatedKeepAliveIsShort(t *testing.T) {
	cfg := testConfig()
	cfg.AuthAnonymous = true
	cfg.IdleTimeout = time.Minute
	cfg.UnauthenticatedIdleTimeout = 300 * time.Millisecond
	h := startGateway(t, cfg, nil)

	inSession := dialCPE(t, h.addr)
	if a := inSession.post(informBody(t, "SN-KEEP", "2 PERIODIC")); a.StatusCode != http.StatusOK {
		t.Fatalf("Inform: status %d", a.StatusCode)
	}
	// From another address, so that the gateway cannot take the empty POST
	// for the session's (docs/protocol.md §4.1: the address is the last resort).
	idle := dialCPEFrom(t, "127.0.0.2", h.addr)
	if a := idle.post(nil); a.StatusCode/100 != 2 && a.StatusCode != http.StatusUnauthorized {
		t.Fatalf("empty POST outside a session: status %d", a.StatusCode)
	}

	// The server closes the idle connection that carries no session: the
	// read ends with EOF, well before the minute of gateway.idle-timeout.
	start := time.Now()
	_ = idle.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := idle.br.ReadByte(); !errors.Is(err, io.EOF) {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the connection without a session stayed open 10s: its keep-alive was not shortened")
		}
		t.Fatalf("read on the idle connection: %v, want EOF", err)
	}
	t.Logf("closed after %s idle", time.Since(start).Round(time.Millisecond))

	// The session's connection has been idle at least as long, and still
	// carries its next request.
	if a := inSession.post(nil); a.StatusCode/100 != 2 {
		t.Fatalf("empty POST of the session on its connection: status %d", a.StatusCode)
	}
}

// dialCPEFrom is dialCPE from a given loopback address.
func dialCPEFrom(t *testing.T, src, addr string) *cpeConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &cpeConn{t: t, c: c, br: bufio.NewReader(c)}
}

// The per-source cap counts connections by TCP peer, except from trusted
// proxies, which carry many CPEs (gateway.trusted-proxies).
func TestPerSourceCapExemptsTrustedProxies(t *testing.T) {
	for _, c := range []struct {
		name    string
		trusted string
		kept    int
	}{
		{"untrusted peer", "", 2},
		{"trusted proxy", "127.0.0.0/8", 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := anonymousConfig()
			cfg.MaxConnectionsPerSource = 2
			cfg.TrustedProxies = c.trusted
			h := startGateway(t, cfg, nil)
			kept := 0
			for range 4 {
				conn := dialCPE(t, h.addr)
				_ = conn.c.SetDeadline(time.Now().Add(10 * time.Second))
				req, _ := http.NewRequest(http.MethodPost, "http://acs.example/cwmp", nil)
				if err := req.Write(conn.c); err != nil {
					continue
				}
				if resp, err := http.ReadResponse(conn.br, req); err == nil {
					resp.Body.Close()
					kept++
				}
			}
			if kept != c.kept {
				t.Fatalf("%d of 4 connections from one address answered, want %d", kept, c.kept)
			}
		})
	}
}
