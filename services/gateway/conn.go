package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Per-connection bookkeeping and request identity helpers.

// sessionCookie is the cookie that carries the session (docs/protocol.md §4.1: one
// simple cookie, Path=/).
const sessionCookie = "session"

// maxSessionIDLen bounds a session ID taken from a cookie: it is untrusted
// input that ends up in logs and store keys.
const maxSessionIDLen = 128

// validSessionID accepts the characters of the IDs the gateway mints and a
// margin of other cookie-safe ones.
func validSessionID(s string) bool {
	if s == "" || len(s) > maxSessionIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~') {
			return false
		}
	}
	return true
}

// cookieSession returns the session ID of the request's cookie. CPEs
// separate several cookies with ';' or ',' and some quote the value or send
// RFC 2965 attributes ($Version, $Path), so parse leniently.
func cookieSession(h http.Header) string {
	for _, line := range h.Values("Cookie") {
		for line != "" {
			var part string
			if i := strings.IndexAny(line, ";,"); i >= 0 {
				part, line = line[:i], line[i+1:]
			} else {
				part, line = line, ""
			}
			name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), sessionCookie) {
				continue
			}
			val = strings.Trim(strings.TrimSpace(val), `"`)
			if validSessionID(val) {
				return val
			}
		}
	}
	return ""
}

// connState is what the gateway remembers about one TCP connection: the
// session it last carried, for CPEs that send no cookie but keep the
// connection alive (docs/protocol.md §4.1: cookie first, socket second). net/http
// serves one request at a time per HTTP/1.1 connection; the mutex is for
// the race detector's sake and for the close hook.
type connState struct {
	mu  sync.Mutex
	rec SessionRecord // SessionID empty when none
	// refreshed is when rec was last stored in Affinity, to refresh it at
	// most every third of its TTL.
	refreshed time.Time
	// authFailures counts failed authentications on the connection.
	authFailures int
}

// authFailed counts a failed authentication on the connection and returns
// the count.
func (c *connState) authFailed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.authFailures++
	return c.authFailures
}

func (c *connState) get() (SessionRecord, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec, c.refreshed
}

func (c *connState) set(rec SessionRecord, refreshed time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rec, c.refreshed = rec, refreshed
}

func (c *connState) clear(sid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rec.SessionID == sid {
		c.rec, c.refreshed = SessionRecord{}, time.Time{}
	}
}

// inSession reports whether the connection carries an open session, which
// only an authenticated CPE opens.
func (c *connState) inSession() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec.SessionID != ""
}

type connKey struct{}

// withConnState is http.Server.ConnContext.
func withConnState(ctx context.Context, c net.Conn) context.Context {
	st := &connState{}
	if cc := cwmpConnOf(c); cc != nil {
		cc.state.Store(st)
	}
	return context.WithValue(ctx, connKey{}, st)
}

// cwmpListener hands out cwmpConns.
type cwmpListener struct {
	net.Listener
	unauthIdle time.Duration
}

func (l cwmpListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &cwmpConn{Conn: c, unauthIdle: l.unauthIdle}, nil
}

// cwmpConn is a CPE connection whose keep-alive is shortened while it
// carries no session. net/http gives every idle keep-alive connection the
// server's IdleTimeout through SetReadDeadline, right after reporting the
// connection idle (http.Server.ConnState); cwmpConn lowers that deadline
// to unauthIdle when the connection carries no session. The first bytes of
// the next request end the idle time, so that the request's own read
// deadlines pass unchanged.
type cwmpConn struct {
	net.Conn
	unauthIdle time.Duration
	idle       atomic.Bool
	state      atomic.Pointer[connState]
}

func (c *cwmpConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.idle.Store(false)
	}
	return n, err
}

func (c *cwmpConn) SetReadDeadline(t time.Time) error {
	if c.idle.Load() {
		if st := c.state.Load(); st == nil || !st.inSession() {
			if limit := time.Now().Add(c.unauthIdle); t.IsZero() || t.After(limit) {
				t = limit
			}
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// CloseWrite half-closes the connection underneath (see
// connlimit.Conn.CloseWrite): net/http does so to end a connection after
// an error answer.
func (c *cwmpConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// cwmpConnOf finds the cwmpConn under an HTTP or HTTPS connection.
func cwmpConnOf(c net.Conn) *cwmpConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	cc, _ := c.(*cwmpConn)
	return cc
}

// trackIdle is http.Server.ConnState: it tells a cwmpConn when it waits
// for its next request.
func trackIdle(c net.Conn, st http.ConnState) {
	if cc := cwmpConnOf(c); cc != nil && st == http.StateIdle {
		cc.idle.Store(true)
	}
}

func connFrom(ctx context.Context) *connState {
	c, _ := ctx.Value(connKey{}).(*connState)
	if c == nil {
		// A handler served outside Run (httptest without ConnContext):
		// behave as a fresh connection per request.
		c = &connState{}
	}
	return c
}

// clientAddr returns the CPE's "ip:port" and IP. When the TCP peer is a
// trusted proxy, the right-most X-Forwarded-For address that is not itself
// a trusted proxy names the CPE (left-most entries are whatever the client
// claimed).
func clientAddr(r *http.Request, trusted []netip.Prefix) (addr string, ip string) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		return r.RemoteAddr, host
	}
	peer := ap.Addr().Unmap()
	if len(trusted) == 0 || !inPrefixes(peer, trusted) {
		return r.RemoteAddr, peer.String()
	}
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		hops := strings.Split(xff[i], ",")
		for j := len(hops) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[j]))
			if err != nil {
				return r.RemoteAddr, peer.String()
			}
			a = a.Unmap()
			if !inPrefixes(a, trusted) {
				// The proxy does not tell the CPE's port; 0 says so.
				return netip.AddrPortFrom(a, 0).String(), a.String()
			}
		}
	}
	return r.RemoteAddr, peer.String()
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// tenantOf resolves the tenant of a request from its host name.
func tenantOf(r *http.Request, hosts map[string]string, def string) string {
	if len(hosts) == 0 {
		return def
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if t, ok := hosts[strings.ToLower(strings.TrimSuffix(host, "."))]; ok {
		return t
	}
	return def
}
