package apiauth

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestSourceOf(t *testing.T) {
	for addr, want := range map[net.Addr]string{
		&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}:                 "192.0.2.7/32",
		&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}:          "192.0.2.7/32",
		&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa::1"), Port: 1}:      "2001:db8:1:2::/64",
		&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff:ffff::9"), Port: 1}: "2001:db8:1:2::/64",
	} {
		got, ok := sourceOf(addr)
		if !ok || got.String() != want {
			t.Errorf("sourceOf(%v) = %v, %v; want %s", addr, got, ok, want)
		}
	}
	if _, ok := sourceOf(&net.UnixAddr{Name: "/x", Net: "unix"}); ok {
		t.Error("a Unix socket address is limited")
	}
}

func TestLimiterTableBounded(t *testing.T) {
	now := time.Unix(0, 0)
	l := newFailureLimiter(2, time.Second, 100, func() time.Time { return now })
	for i := range 1000 {
		l.fail(netip.MustParsePrefix(fmt.Sprintf("10.0.%d.%d/32", i/256, i%256)))
		if len(l.sources) > 100 {
			t.Fatalf("%d sources in a table of 100", len(l.sources))
		}
	}
	// A blocked source stays blocked while it keeps failing.
	src := netip.MustParsePrefix("192.0.2.1/32")
	l.fail(src)
	l.fail(src)
	if _, blocked := l.blocked(src); !blocked {
		t.Fatal("not blocked after the burst")
	}
	now = now.Add(time.Second)
	if _, blocked := l.blocked(src); blocked {
		t.Fatal("still blocked after an interval")
	}
}
