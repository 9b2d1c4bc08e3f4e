package sim

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The simulator's HTTP/1.1 client. net/http's client runs two goroutines
// per connection and picks connections from its pool as it likes; a CPE
// simulator needs the opposite: control over which connection carries
// which POST (a whole session on one keep-alive connection, or every POST
// on a new one), and as little client-side CPU per request as possible,
// because it shares a small machine with the ACS it measures. So it writes
// requests itself and reads responses itself when they are plain
// (httpresp.go), with http.ReadResponse otherwise.

// ConnMode says how a session uses TCP connections and cookies.
type ConnMode string

const (
	// ConnCookie: the session is tracked by the ACS's cookie; each POST
	// takes any idle connection from a shared pool (so one session's POSTs
	// may travel on different connections, as behind an L7 balancer).
	ConnCookie ConnMode = "cookie"
	// ConnKeepAlive: no cookies; the whole session runs on one keep-alive
	// connection, which the ACS must use to tell sessions apart.
	ConnKeepAlive ConnMode = "keepalive"
	// ConnNewConn: no cookies and a new TCP connection for every POST
	// (Connection: close); the ACS can only go by the client address.
	ConnNewConn ConnMode = "newconn"
)

// target is a parsed ACS URL.
type target struct {
	raw        string
	tls        bool
	addr       string // host:port to dial
	host       string // Host header
	requestURI string
}

func parseTarget(raw string) (*target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse ACS URL: %w", err)
	}
	t := &target{raw: raw, host: u.Host, requestURI: u.RequestURI()}
	switch strings.ToLower(u.Scheme) {
	case "http":
	case "https":
		t.tls = true
	default:
		return nil, fmt.Errorf("parse ACS URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("parse ACS URL %q: no host", raw)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if t.tls {
			port = "443"
		}
	}
	t.addr = net.JoinHostPort(u.Hostname(), port)
	return t, nil
}

// resolve returns the target a redirect's Location names.
func (t *target) resolve(loc string) (*target, error) {
	base, err := url.Parse(t.raw)
	if err != nil {
		return nil, fmt.Errorf("follow redirect: %w", err)
	}
	u, err := base.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("follow redirect: %w", err)
	}
	return parseTarget(u.String())
}

// conn is one client connection.
type conn struct {
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	target *target
	// reused reports the connection carried a request before, so a failure
	// before any response byte may be the server having closed it while
	// idle, and the request can be sent again on a new connection.
	reused bool
}

func (c *conn) close() {
	if c != nil && c.nc != nil {
		c.nc.Close()
	}
}

// connPool keeps idle connections to the ACS. It is LIFO: the most recently
// used connection is the most likely to be still open.
type connPool struct {
	mu      sync.Mutex
	idle    []*conn
	maxIdle int
}

func (p *connPool) get(t *target) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.idle) - 1; i >= 0; i-- {
		c := p.idle[i]
		if c.target.addr == t.addr && c.target.tls == t.tls {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			return c
		}
	}
	return nil
}

func (p *connPool) put(c *conn) {
	p.mu.Lock()
	if len(p.idle) < p.maxIdle {
		p.idle = append(p.idle, c)
		c = nil
	}
	p.mu.Unlock()
	c.close()
}

func (p *connPool) closeAll() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// client dials the ACS and exchanges requests.
type client struct {
	cfg    *Config
	pool   connPool
	tlsCfg *tls.Config
}

func newClient(cfg *Config) *client {
	maxIdle := cfg.Concurrency * 2
	if maxIdle < 64 {
		maxIdle = 64
	}
	return &client{
		cfg:    cfg,
		pool:   connPool{maxIdle: maxIdle},
		tlsCfg: &tls.Config{InsecureSkipVerify: cfg.InsecureSkipVerify}, //nolint:gosec // a test tool, opted into by flag
	}
}

// dial opens a connection to t, from localIP when it is not nil.
func (c *client) dial(ctx context.Context, t *target, localIP net.IP) (*conn, error) {
	d := net.Dialer{Timeout: c.cfg.Timeout}
	if localIP != nil {
		d.LocalAddr = &net.TCPAddr{IP: localIP}
	}
	nc, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", t.addr, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if t.tls {
		host, _, _ := net.SplitHostPort(t.addr)
		cfg := c.tlsCfg.Clone()
		cfg.ServerName = host
		tc := tls.Client(nc, cfg)
		hctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", t.addr, err)
		}
		nc = tc
	}
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, 8<<10), bw: bufio.NewWriterSize(nc, 8<<10), target: t}, nil
}

// request is one POST.
type request struct {
	// target names the URL; the connection may have been dialed for
	// another path on the same host (a redirect).
	target        *target
	body          []byte // encoded envelope; empty for the empty POST
	gzip          bool   // body is gzip-compressed
	cookie        string // Cookie header value
	authorization string
	close         bool // ask the server to close the connection
}

// response is what came back. body aliases the session's buffer.
type response struct {
	status     int
	header     respHeader
	fields     [4]hdrField // room for header, sparing an allocation
	body       []byte
	close      bool
	retryAfter time.Duration
}

// errNoResponse marks a failure before any byte of a response arrived on a
// reused connection: the request may be sent again on a new one.
var errNoResponse = errors.New("connection closed before the response")

// expiredDeadline is a deadline in the past: it ends a connection's
// pending I/O at once.
var expiredDeadline = time.Unix(1, 0)

// roundTrip writes req on c and reads the response into buf. The caller
// owns c afterwards (to keep or close). A cancelled run must not wait for
// the timeout of every session in flight: the caller arranges for ctx's
// end to expire cn's deadline (session.watchCancel, one registration per
// session rather than per round trip); roundTrip expires it itself when
// ctx ended before it set the deadline.
func (c *client) roundTrip(ctx context.Context, cn *conn, req *request, buf *bytes.Buffer) (*response, error) {
	deadline := time.Now().Add(c.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	cn.nc.SetDeadline(deadline)
	if ctx.Err() != nil {
		cn.nc.SetDeadline(expiredDeadline)
	}

	w := cn.bw
	w.WriteString("POST ")
	w.WriteString(req.target.requestURI)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(req.target.host)
	w.WriteString("\r\nUser-Agent: fleetacs-cpesim\r\nContent-Length: ")
	w.Write(strconv.AppendInt(w.AvailableBuffer(), int64(len(req.body)), 10))
	if len(req.body) > 0 {
		w.WriteString("\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nSOAPAction: \"\"")
		if req.gzip {
			w.WriteString("\r\nContent-Encoding: gzip")
		}
	}
	if req.cookie != "" {
		w.WriteString("\r\nCookie: ")
		w.WriteString(req.cookie)
	}
	if req.authorization != "" {
		w.WriteString("\r\nAuthorization: ")
		w.WriteString(req.authorization)
	}
	if req.close {
		w.WriteString("\r\nConnection: close")
	}
	w.WriteString("\r\n\r\n")
	w.Write(req.body)
	if err := w.Flush(); err != nil {
		if cn.reused {
			return nil, errNoResponse
		}
		return nil, fmt.Errorf("write request: %w", err)
	}
	if cn.reused {
		if _, err := cn.br.Peek(1); err != nil {
			return nil, errNoResponse
		}
	}
	resp, err := readResponse(cn.br, buf)
	if err != nil {
		return nil, err
	}
	switch ce := resp.header.Get("Content-Encoding"); strings.ToLower(ce) {
	case "", "identity":
	case "gzip", "x-gzip":
		if resp.body, err = inflate(resp.body, true); err != nil {
			return nil, fmt.Errorf("decompress gzip response: %w", err)
		}
	case "deflate":
		if resp.body, err = inflate(resp.body, false); err != nil {
			return nil, fmt.Errorf("decompress deflate response: %w", err)
		}
	default:
		return nil, fmt.Errorf("read response: unsupported Content-Encoding %q", ce)
	}
	if ra := resp.header.Get("Retry-After"); ra != "" {
		resp.retryAfter = parseRetryAfter(ra, time.Now())
	}
	return resp, nil
}

func inflate(b []byte, gz bool) ([]byte, error) {
	var r io.Reader
	if gz {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		r = zr
	} else {
		r = flate.NewReader(bytes.NewReader(b))
	}
	out, err := io.ReadAll(io.LimitReader(r, maxResponseBody+1))
	if err == nil && len(out) > maxResponseBody {
		err = errResponseTooLarge
	}
	return out, err
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP
// date. Unreadable values give 0 (the caller's retry policy applies).
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// gzipBody compresses an envelope for a request with Content-Encoding:
// gzip (docs/protocol.md §4.1, HTTP compression).
func gzipBody(dst *bytes.Buffer, body []byte) error {
	dst.Reset()
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(dst)
	if _, err := zw.Write(body); err != nil {
		return fmt.Errorf("gzip request body: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("gzip request body: %w", err)
	}
	return nil
}

var gzipWriters = sync.Pool{New: func() any { zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed); return zw }}
