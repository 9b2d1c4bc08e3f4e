package apiauth

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// failureLimiter bounds how many invalid credentials one source may present:
// a token bucket per source of burst failures, refilled by one every
// interval. A source whose bucket is empty is refused outright, valid
// credentials included, until the next refill: guessing tokens from one
// address then runs at 1/interval. IPv6 sources are grouped by /64, the
// block one subscriber usually holds.
//
// The table holds at most maxSources sources. When full it drops the
// sources whose buckets have refilled (they hold no information), then
// arbitrary ones down to three quarters: an attacker with that many
// addresses is not stopped by a per-source limit anyway.
type failureLimiter struct {
	burst      float64
	interval   time.Duration
	maxSources int
	now        func() time.Time

	mu      sync.Mutex // leaf lock
	sources map[netip.Prefix]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newFailureLimiter(burst int, interval time.Duration, maxSources int, now func() time.Time) *failureLimiter {
	return &failureLimiter{burst: float64(burst), interval: interval, maxSources: maxSources, now: now,
		sources: make(map[netip.Prefix]*bucket)}
}

// sourceOf groups an address: the address itself for IPv4, its /64 for
// IPv6; ok is false for a source without an IP (in memory, a Unix socket),
// which is not limited.
func sourceOf(addr net.Addr) (netip.Prefix, bool) {
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case nil:
		return netip.Prefix{}, false
	default:
		ap, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return netip.Prefix{}, false
		}
		ip = ap.Addr()
	}
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, err := ip.Prefix(bits)
	return p, err == nil
}

// refill brings b up to now; callers hold mu.
func (l *failureLimiter) refill(b *bucket, now time.Time) {
	if l.interval <= 0 {
		b.tokens = l.burst
	} else if elapsed := now.Sub(b.at); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+float64(elapsed)/float64(l.interval))
	}
	b.at = now
}

// blocked reports whether src may not try now, and how long it must wait.
func (l *failureLimiter) blocked(src netip.Prefix) (time.Duration, bool) {
	if l.burst <= 0 {
		return 0, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.sources[src]
	if b == nil {
		return 0, false
	}
	l.refill(b, l.now())
	if b.tokens >= 1 {
		return 0, false
	}
	return time.Duration((1 - b.tokens) * float64(l.interval)), true
}

// fail records an invalid credential from src.
func (l *failureLimiter) fail(src netip.Prefix) {
	if l.burst <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.sources[src]
	if b == nil {
		if len(l.sources) >= l.maxSources {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.sources[src] = b
	}
	l.refill(b, now)
	b.tokens = max(0, b.tokens-1)
}

// prune makes room, down to at most three quarters of the table so that
// its cost is shared by many insertions; callers hold mu.
func (l *failureLimiter) prune(now time.Time) {
	for src, b := range l.sources {
		l.refill(b, now)
		if b.tokens >= l.burst {
			delete(l.sources, src)
		}
	}
	for src := range l.sources {
		if len(l.sources) <= l.maxSources*3/4 {
			return
		}
		delete(l.sources, src)
	}
}
