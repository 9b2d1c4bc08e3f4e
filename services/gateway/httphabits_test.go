package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// TestInformHTTPHabits sends an Inform the way the HTTP stacks of real CPEs
// write it, byte for byte on the wire (docs/protocol.md §13 input 8): HTTP/1.0
// without keep-alive, no Content-Type, SOAP 1.2's Content-Type, SOAPAction
// empty, quoted or missing, Expect: 100-continue, and chunked bodies with
// chunk extensions and trailers, a UTF-16 body. Each gets its InformResponse.
func TestInformHTTPHabits(t *testing.T) {
	h := startGateway(t, anonymousConfig(), nil)
	for i, c := range []struct {
		name        string
		proto       string
		headers     string
		chunked     bool
		continue100 bool
		utf16       bool
	}{
		{name: "HTTP/1.0, no Content-Type, no SOAPAction", proto: "HTTP/1.0"},
		{name: "HTTP/1.0 keep-alive", proto: "HTTP/1.0", headers: "Connection: Keep-Alive\r\n"},
		{name: "SOAP 1.2 media type", headers: "Content-Type: application/soap+xml; charset=utf-8; action=\"\"\r\n"},
		{name: "text/xml without charset, empty SOAPAction", headers: "Content-Type: text/xml\r\nSOAPAction:\r\n"},
		{name: "quoted charset and SOAPAction", headers: "Content-Type: text/xml; charset=\"UTF-8\"\r\nSOAPAction: \"urn:dslforum-org:cwmp-1-0#Inform\"\r\n"},
		{name: "lower-case header names", headers: "content-type: TEXT/XML; Charset=utf-8\r\nsoapaction: Inform\r\n"},
		{name: "Expect 100-continue", headers: "Content-Type: text/xml\r\nExpect: 100-continue\r\n", continue100: true},
		{name: "chunked with extensions and trailers", headers: "Content-Type: text/xml\r\nTrailer: X-Checksum\r\n", chunked: true},
		{name: "UTF-16LE body with its byte order mark", headers: "Content-Type: text/xml; charset=utf-8\r\n", utf16: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := informBody(t, fmt.Sprintf("SN-HABIT-%d", i), "2 PERIODIC")
			if c.utf16 {
				le := []byte{0xFF, 0xFE}
				for _, u := range utf16.Encode([]rune(string(body))) {
					le = append(le, byte(u), byte(u>>8))
				}
				body = le
			}
			conn, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(conn)
			proto := c.proto
			if proto == "" {
				proto = "HTTP/1.1"
			}
			framing := fmt.Sprintf("Content-Length: %d\r\n", len(body))
			if c.chunked {
				framing = "Transfer-Encoding: chunked\r\n"
			}
			fmt.Fprintf(conn, "POST /cwmp %s\r\nHost: acs.example:7547\r\nUser-Agent: cpe\r\n%s%s\r\n", proto, c.headers, framing)
			if c.continue100 {
				// A CPE that waits for 100 Continue before its body.
				line, err := br.ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
					t.Fatalf("interim answer %q, %v; want 100 Continue", line, err)
				}
				if blank, _ := br.ReadString('\n'); blank != "\r\n" {
					t.Fatalf("100 Continue followed by %q", blank)
				}
			}
			if c.chunked {
				half := len(body) / 2
				fmt.Fprintf(conn, "%x;name=value\r\n%s\r\n%X\r\n%s\r\n0\r\nX-Checksum: 1234\r\n\r\n", half, body[:half], len(body)-half, body[half:])
			} else {
				conn.Write(body)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("read answer: %v", err)
			}
			defer resp.Body.Close()
			var sb strings.Builder
			_, _ = bufio.NewReader(resp.Body).WriteTo(&sb)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("answered %d: %s", resp.StatusCode, sb.String())
			}
			env, err := cwmp.Decode([]byte(sb.String()))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := env.Body.(*cwmp.InformResponse); !ok {
				t.Fatalf("answered %s", env.Body.Method())
			}
			if c.proto == "HTTP/1.0" && c.headers == "" && !resp.Close {
				t.Error("HTTP/1.0 without keep-alive: the answer does not close the connection")
			}
		})
	}
}
