// Package connlimit caps the connections that listeners hold, in all and
// per source address. File descriptors are one budget for the whole
// process: without caps, a flood of idle connections on the CWMP port
// (20,500 keep-alive connections, issue 8 item 7) took every descriptor,
// and the admin probes and the gRPC API went down with it. Each listener
// of a process gets its own Limiter, sized so that together they stay
// below what the process may open (FileLimit, Budget).
//
// A connection over a cap is accepted and closed at once rather than left
// in the kernel's accept queue: the client learns straight away, and the
// queue stays free for the connections that fit.
package connlimit

import (
	"errors"
	"net"
	"net/netip"
	"sync"
)

// Limits are the caps of a Limiter. A zero cap means no cap.
type Limits struct {
	// Max caps the connections open at once over every listener of the
	// Limiter.
	Max int
	// PerSource caps those from one IP address.
	PerSource int
	// IPv6Prefix, when set (1 to 128), counts IPv6 sources against
	// PerSource by that prefix of their address rather than one by one:
	// one host commonly holds a whole /64, and could otherwise open
	// PerSource connections from each of its addresses. Leave it unset
	// where many clients share a prefix (CPE WAN addresses in one /64 of
	// some access networks).
	IPv6Prefix int
	// Exempt, when set, exempts source addresses from PerSource: a load
	// balancer's address carries the connections of many clients.
	Exempt func(netip.Addr) bool
	// OnReject, when set, hears every connection closed for a cap, with
	// the reason: ReasonMax or ReasonPerSource.
	OnReject func(reason string)
}

// Reasons a connection is refused.
const (
	ReasonMax       = "max"
	ReasonPerSource = "per_source"
)

// Limiter counts the connections of one or more listeners against one set
// of caps. It is safe for concurrent use.
type Limiter struct {
	limits Limits

	mu       sync.Mutex
	open     int
	bySource map[netip.Addr]int
}

// New returns a Limiter with the caps l.
func New(l Limits) *Limiter {
	return &Limiter{limits: l, bySource: map[netip.Addr]int{}}
}

// Open returns the number of connections open now.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Listener wraps ln so that its connections count against the caps.
func (l *Limiter) Listener(ln net.Listener) net.Listener {
	return &listener{Listener: ln, l: l}
}

// acquire takes a slot for a connection from src, or says which cap is
// full.
func (l *Limiter) acquire(src netip.Addr, counted bool) (ok bool, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limits.Max > 0 && l.open >= l.limits.Max {
		return false, ReasonMax
	}
	if counted && l.limits.PerSource > 0 && l.bySource[src] >= l.limits.PerSource {
		return false, ReasonPerSource
	}
	l.open++
	if counted {
		l.bySource[src]++
	}
	return true, ""
}

func (l *Limiter) release(src netip.Addr, counted bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if counted {
		if n := l.bySource[src] - 1; n > 0 {
			l.bySource[src] = n
		} else {
			delete(l.bySource, src)
		}
	}
}

type listener struct {
	net.Listener
	l *Limiter
}

// Accept returns the next connection within the caps, closing those over
// them.
func (ln *listener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceOf(c.RemoteAddr())
		counted := src.IsValid() && (ln.l.limits.Exempt == nil || !ln.l.limits.Exempt(src))
		src = ln.l.key(src)
		if ok, reason := ln.l.acquire(src, counted); !ok {
			_ = c.Close()
			if ln.l.limits.OnReject != nil {
				ln.l.limits.OnReject(reason)
			}
			continue
		}
		return &Conn{Conn: c, l: ln.l, src: src, counted: counted}, nil
	}
}

// key is what a source counts as against PerSource: its address, or its
// IPv6Prefix for IPv6.
func (l *Limiter) key(src netip.Addr) netip.Addr {
	if b := l.limits.IPv6Prefix; b > 0 && b < 128 && src.Is6() {
		if p, err := src.Prefix(b); err == nil {
			return p.Addr()
		}
	}
	return src
}

func sourceOf(a net.Addr) netip.Addr {
	if tcp, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(tcp.IP); ok {
			return ip.Unmap()
		}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// Conn is a connection counted against a Limiter's caps until it is
// closed.
type Conn struct {
	net.Conn
	l       *Limiter
	src     netip.Addr
	counted bool
	once    sync.Once
}

// Close closes the connection and frees its slot.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.src, c.counted) })
	return err
}

// CloseWrite shuts down the writing side of the connection when the
// connection underneath can (a TCP connection): net/http half-closes a
// connection it ends after an error answer, so that the client reads the
// answer rather than a reset.
func (c *Conn) CloseWrite() error { return closeWrite(c.Conn) }

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
