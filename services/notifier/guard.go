package notifier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrAddressRefused is returned when a connection request would go to an
// address outside the allowed networks, or to one of the addresses that
// are refused whatever the networks say (docs/security.md, "Connection
// requests").
var ErrAddressRefused = errors.New("address refused")

// metadataAddrs are the cloud instance-metadata services: never a CPE.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"),
	netip.MustParseAddr("fd00:ec2::254"),
}

var (
	linkLocal4 = netip.MustParsePrefix("169.254.0.0/16")
	linkLocal6 = netip.MustParsePrefix("fe80::/10")
)

// guard decides which addresses connection requests may reach. A CPE
// reports its own ConnectionRequestURL and UDPConnectionRequestAddress,
// so without it anyone who can run a session could make the ACS send
// requests into its own network. The decision is taken on the resolved
// address, as the socket connects (dialer Control), so that a host name
// that resolves differently the second time cannot escape it.
type guard struct {
	allowed []netip.Prefix
	// denied are refused even inside allowed, loopback and link-local
	// included: the cluster's own ranges.
	denied         []netip.Prefix
	allowLoopback  bool
	allowLinkLocal bool
	// own returns the process's own listening addresses.
	own func() []netip.AddrPort
	// interfaceAddrs lists the host's addresses (net.InterfaceAddrs;
	// tests set theirs).
	interfaceAddrs func() ([]net.Addr, error)

	mu        sync.Mutex
	localIPs  map[netip.Addr]bool
	localRead time.Time
}

func newGuard(allowed, denied []netip.Prefix, allowLoopback, allowLinkLocal bool, own func() []netip.AddrPort) *guard {
	return &guard{allowed: allowed, denied: denied, allowLoopback: allowLoopback, allowLinkLocal: allowLinkLocal, own: own,
		interfaceAddrs: net.InterfaceAddrs}
}

// parseNetworks parses a comma-separated CIDR list.
func parseNetworks(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("network %q: %w", f, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// check reports why ap may not be reached, or nil.
func (g *guard) check(ap netip.AddrPort) error {
	ip := ap.Addr().Unmap()
	if ap.Port() == 0 {
		return fmt.Errorf("%w: port 0", ErrAddressRefused)
	}
	switch {
	case !ip.IsValid():
		return fmt.Errorf("%w: no address", ErrAddressRefused)
	case ip.IsUnspecified():
		return fmt.Errorf("%w: unspecified address", ErrAddressRefused)
	case ip.IsMulticast(), ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%w: multicast or broadcast address", ErrAddressRefused)
	case ip.IsLoopback() && !g.allowLoopback:
		return fmt.Errorf("%w: loopback (-notifier.allow-loopback)", ErrAddressRefused)
	}
	for _, p := range g.denied {
		if p.Contains(ip) {
			return fmt.Errorf("%w: inside -notifier.denied-networks", ErrAddressRefused)
		}
	}
	for _, m := range metadataAddrs {
		if ip == m {
			return fmt.Errorf("%w: instance metadata address", ErrAddressRefused)
		}
	}
	if (linkLocal4.Contains(ip) || linkLocal6.Contains(ip)) && !g.allowLinkLocal {
		return fmt.Errorf("%w: link-local (-notifier.allow-link-local)", ErrAddressRefused)
	}
	in := false
	for _, p := range g.allowed {
		if p.Contains(ip) {
			in = true
			break
		}
	}
	// Loopback and link-local, once allowed by their own flag, need no
	// entry in the allowed networks.
	if !in && !(ip.IsLoopback() && g.allowLoopback) && !((linkLocal4.Contains(ip) || linkLocal6.Contains(ip)) && g.allowLinkLocal) {
		return fmt.Errorf("%w: outside -notifier.allowed-networks", ErrAddressRefused)
	}
	if g.isOwn(netip.AddrPortFrom(ip, ap.Port())) {
		return fmt.Errorf("%w: one of this process's own listeners", ErrAddressRefused)
	}
	// Every port of the host's own addresses (a pod's sidecars, the
	// node's agents) is no CPE either; a CPE simulated on this host is
	// reached as loopback is.
	if !ip.IsLoopback() && !g.allowLoopback && g.isLocalIP(ip) {
		return fmt.Errorf("%w: an address of this host (-notifier.allow-loopback)", ErrAddressRefused)
	}
	return nil
}

// isOwn reports whether ap is one of the process's listeners: the same
// address and port, or the same port on any of the host's addresses when
// the listener is bound to all of them.
func (g *guard) isOwn(ap netip.AddrPort) bool {
	if g.own == nil {
		return false
	}
	for _, l := range g.own() {
		if l.Port() != ap.Port() {
			continue
		}
		la := l.Addr().Unmap()
		if la == ap.Addr() {
			return true
		}
		if la.IsUnspecified() && (ap.Addr().IsLoopback() || g.isLocalIP(ap.Addr())) {
			return true
		}
	}
	return false
}

// isLocalIP reports whether ip is one of the host's interface addresses,
// read at most every ten seconds.
func (g *guard) isLocalIP(ip netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.localIPs == nil || time.Since(g.localRead) > 10*time.Second {
		g.localIPs = map[netip.Addr]bool{}
		g.localRead = time.Now()
		if addrs, err := g.interfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					if ip, ok := netip.AddrFromSlice(n.IP); ok {
						g.localIPs[ip.Unmap()] = true
					}
				}
			}
		}
	}
	return g.localIPs[ip]
}

// control is a net.Dialer Control function: it runs after name
// resolution, before the socket connects, with the address about to be
// dialled.
func (g *guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s is not an address", ErrAddressRefused, network)
	}
	return g.check(ap)
}

// dialer returns a dialer whose every connection passes the guard.
func (g *guard) dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, Control: g.control, KeepAlive: -1}
}

// resolveUDP resolves a UDP host:port (the port defaults to 80, docs/protocol.md
// §8.2) and checks every address it gets: the first allowed one is
// returned.
func (g *guard) resolveUDP(ctx context.Context, resolver *net.Resolver, hostport string) (netip.AddrPort, error) {
	// White space around the address, which some CPEs report, is no part
	// of it (docs/protocol.md §8.2).
	hostport = strings.TrimSpace(hostport)
	host, port, err := splitHostPortDefault(hostport, "80")
	if err != nil {
		return netip.AddrPort{}, err
	}
	pn, err := net.LookupPort("udp", port)
	if err != nil || pn <= 0 || pn > 65535 {
		return netip.AddrPort{}, fmt.Errorf("UDP address %q: bad port", hostport)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		if resolver == nil {
			resolver = net.DefaultResolver
		}
		ips, err = resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("resolve %q: %w", host, err)
		}
	}
	var first error
	for _, ip := range ips {
		ap := netip.AddrPortFrom(ip.Unmap(), uint16(pn))
		err := g.check(ap)
		if err == nil {
			return ap, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = fmt.Errorf("%w: %q resolves to nothing", ErrAddressRefused, host)
	}
	return netip.AddrPort{}, first
}

// splitHostPortDefault splits host[:port], "[v6]:port" or "[v6]".
func splitHostPortDefault(s, defPort string) (host, port string, err error) {
	if s == "" {
		return "", "", errors.New("empty address")
	}
	if h, p, err := net.SplitHostPort(s); err == nil {
		return h, p, nil
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return s[1 : len(s)-1], defPort, nil
	}
	if strings.Count(s, ":") == 0 {
		return s, defPort, nil
	}
	return "", "", fmt.Errorf("address %q is not host:port", s)
}
