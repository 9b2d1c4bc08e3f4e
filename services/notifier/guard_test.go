package notifier

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

// TestGuardDeniedAndHostAddresses: -notifier.denied-networks refuses
// addresses inside the allowed networks, loopback included; the host's own
// addresses are refused on every port unless loopback is allowed (a CPE
// simulated on this host); other addresses of the allowed networks pass.
func TestGuardDeniedAndHostAddresses(t *testing.T) {
	allowed, err := parseNetworks(DefaultAllowedNetworks)
	if err != nil {
		t.Fatal(err)
	}
	denied, err := parseNetworks("10.96.0.0/12, 10.244.0.0/16,127.0.0.2/32")
	if err != nil {
		t.Fatal(err)
	}
	host := func() ([]net.Addr, error) {
		return []net.Addr{
			&net.IPNet{IP: net.ParseIP("192.168.7.20"), Mask: net.CIDRMask(24, 32)},
			&net.IPNet{IP: net.ParseIP("fd12::20"), Mask: net.CIDRMask(64, 128)},
		}, nil
	}
	for _, loopback := range []bool{false, true} {
		g := newGuard(allowed, denied, loopback, false, nil)
		g.interfaceAddrs = host
		for addr, want := range map[string]bool{
			"10.96.0.1:443":     false, // a service range
			"10.244.3.7:8080":   false, // a pod range
			"10.1.2.3:7547":     true,  // a CPE network
			"192.168.7.21:7547": true,  // a neighbour of the host
			"192.168.7.20:7547": loopback,
			"192.168.7.20:9090": loopback,
			"[fd12::20]:15000":  loopback,
			"127.0.0.1:7547":    loopback,
			"127.0.0.2:7547":    false, // denied, loopback allowed or not
		} {
			err := g.check(netip.MustParseAddrPort(addr))
			if got := err == nil; got != want {
				t.Errorf("allow-loopback %v: %s: %v, want allowed %v", loopback, addr, err, want)
			}
			if err != nil && !errors.Is(err, ErrAddressRefused) {
				t.Errorf("%s: %v is not ErrAddressRefused", addr, err)
			}
		}
	}
	c := testConfig()
	c.DeniedNetworks = "10.96.0.0/12,bogus"
	if err := c.Validate(); err == nil {
		t.Fatal("a malformed -notifier.denied-networks passed Validate")
	}
}
