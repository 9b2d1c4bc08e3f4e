package connlimit

import (
	"bufio"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// server accepts through a Limiter's listener, greets every connection it
// keeps and holds it until the test ends.
type server struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func serve(t *testing.T, l *Limiter) *server {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: l.Listener(raw)}
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			_, _ = c.Write([]byte("ok\n"))
		}
	}()
	t.Cleanup(func() {
		s.ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.conns {
			c.Close()
		}
	})
	return s
}

// closeFirst closes the first connection the server kept.
func (s *server) closeFirst() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[0].Close()
	s.conns = s.conns[1:]
}

// dial connects from the loopback address src and reports whether the
// server kept the connection (greeted it) or closed it.
func dial(t *testing.T, s *server, src string) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err == nil && line == "ok\n" {
		return c, true
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection from %s neither kept nor closed", src)
	}
	return c, false
}

func TestCapsPerSourceAndInAll(t *testing.T) {
	var mu sync.Mutex
	rejected := map[string]int{}
	l := New(Limits{Max: 5, PerSource: 3, OnReject: func(r string) { mu.Lock(); rejected[r]++; mu.Unlock() }})
	s := serve(t, l)
	for i := range 3 {
		if _, ok := dial(t, s, "127.0.0.1"); !ok {
			t.Fatalf("connection %d from 127.0.0.1 refused under the per-source cap", i+1)
		}
	}
	if _, ok := dial(t, s, "127.0.0.1"); ok {
		t.Fatal("a fourth connection from 127.0.0.1 was kept: the per-source cap is 3")
	}
	for i := range 2 {
		if _, ok := dial(t, s, "127.0.0.2"); !ok {
			t.Fatalf("connection %d from 127.0.0.2 refused under both caps", i+1)
		}
	}
	if _, ok := dial(t, s, "127.0.0.3"); ok {
		t.Fatal("a sixth connection was kept: the cap is 5")
	}
	if n := l.Open(); n != 5 {
		t.Fatalf("Open() = %d, want 5", n)
	}
	// A closed connection frees its slot.
	s.closeFirst()
	if _, ok := dial(t, s, "127.0.0.3"); !ok {
		t.Fatal("no room after a connection closed")
	}
	mu.Lock()
	defer mu.Unlock()
	if rejected[ReasonPerSource] != 1 || rejected[ReasonMax] != 1 {
		t.Fatalf("rejections %v, want one of each", rejected)
	}
}

func TestExemptSourcesHaveNoPerSourceCap(t *testing.T) {
	proxy := netip.MustParseAddr("127.0.0.9")
	l := New(Limits{Max: 4, PerSource: 1, Exempt: func(a netip.Addr) bool { return a == proxy }})
	s := serve(t, l)
	for i := range 4 {
		if _, ok := dial(t, s, "127.0.0.9"); !ok {
			t.Fatalf("connection %d from the exempt proxy refused", i+1)
		}
	}
	if _, ok := dial(t, s, "127.0.0.9"); ok {
		t.Fatal("the exempt proxy passed the overall cap")
	}
}

func TestBudgetKeepsHeadroom(t *testing.T) {
	for _, c := range []struct {
		limit uint64
		want  int
	}{
		{256, 128}, {4096, 2048}, {20000, 17952}, {1 << 20, 943719},
	} {
		if got := Budget(c.limit); got != c.want {
			t.Errorf("Budget(%d) = %d, want %d", c.limit, got, c.want)
		}
	}
}

// With IPv6Prefix, IPv6 sources count by prefix: a host holding a /64
// cannot open PerSource connections from each of its addresses. IPv4 and
// limiters without it count addresses.
func TestIPv6SourcesByPrefix(t *testing.T) {
	take := func(l *Limiter, addr string) bool {
		ok, _ := l.acquire(l.key(netip.MustParseAddr(addr)), true)
		return ok
	}
	l := New(Limits{PerSource: 2, IPv6Prefix: 64})
	for _, a := range []string{"2001:db8::1", "2001:db8::2"} {
		if !take(l, a) {
			t.Fatalf("%s refused under the cap of its /64", a)
		}
	}
	if take(l, "2001:db8::ffff:3") {
		t.Fatal("a third connection from one /64 was kept: the per-source cap is 2")
	}
	for _, a := range []string{"2001:db8:0:1::1", "192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		if !take(l, a) {
			t.Fatalf("%s refused: another /64, or IPv4 counted by address", a)
		}
	}
	byAddr := New(Limits{PerSource: 2})
	for _, a := range []string{"2001:db8::1", "2001:db8::2", "2001:db8::3"} {
		if !take(byAddr, a) {
			t.Fatalf("%s refused without IPv6Prefix", a)
		}
	}
}
