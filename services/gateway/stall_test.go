package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A body that stops arriving is answered 408 when gateway.read-timeout
// runs out, and the connection closed, never 200 with an empty body
// (issue 8 item 9); the worker never sees it.
func TestStalledBodyGets408(t *testing.T) {
	cfg := anonymousConfig()
	cfg.ReadTimeout = 300 * time.Millisecond
	h := startGateway(t, cfg, nil)
	body := informBody(t, "SN-STALL")
	for _, c := range []struct {
		name string
		send func(c net.Conn) error
	}{
		{"stops half-way", func(c net.Conn) error {
			_, err := c.Write(body[:len(body)/2])
			return err
		}},
		{"trickles", func(c net.Conn) error {
			// A byte every 50ms: the whole body would take minutes.
			for i := range 40 {
				if _, err := c.Write(body[i : i+1]); err != nil {
					return nil // the gateway gave up and closed: fine
				}
				time.Sleep(50 * time.Millisecond)
			}
			return nil
		}},
		{"chunked, stops", func(c net.Conn) error {
			_, err := fmt.Fprintf(c, "%x\r\n%s\r\n", 64, body[:64])
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			framing := fmt.Sprintf("Content-Length: %d", len(body))
			if strings.HasPrefix(c.name, "chunked") {
				framing = "Transfer-Encoding: chunked"
			}
			if _, err := fmt.Fprintf(conn, "POST /cwmp HTTP/1.1\r\nHost: acs\r\nContent-Type: text/xml\r\n%s\r\n\r\n", framing); err != nil {
				t.Fatal(err)
			}
			sent := make(chan error, 1)
			go func() { sent <- c.send(conn) }()
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer to the stalled body: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("stalled body answered %d, want 408", resp.StatusCode)
			}
			if !resp.Close {
				t.Error("408 without Connection: close")
			}
			if _, err := br.ReadByte(); err == nil {
				t.Error("connection still open after the 408")
			}
			if err := <-sent; err != nil {
				t.Fatalf("send: %v", err)
			}
		})
	}
	if n := len(h.worker.seen()); n != 0 {
		t.Fatalf("worker saw %d exchanges", n)
	}
}
