package engine

import (
	"flag"
	"strings"
	"testing"
)

// The pod's IP comes in as a bare host (Helm passes $(POD_IP)); the
// worker joins it with the internal server's port, with brackets for
// IPv6, so that gateways can dial what it registers.
func TestJoinAdvertiseHost(t *testing.T) {
	for _, c := range []struct {
		addr, host, listen string
		want               string
		err                string
	}{
		{host: "10.1.2.3", listen: ":9301", want: "10.1.2.3:9301"},
		{host: "fd00:10:244::1a", listen: ":9301", want: "[fd00:10:244::1a]:9301"},
		{host: "2001:db8::5", listen: "[::]:9301", want: "[2001:db8::5]:9301"},
		{host: "::ffff:10.0.0.1", listen: "0.0.0.0:9301", want: "[::ffff:10.0.0.1]:9301"},
		{host: "worker-0.sessions", listen: ":9301", want: "worker-0.sessions:9301"},
		{addr: "w:1", listen: ":9301", want: "w:1"},
		{listen: ":9301", want: ""},
		{addr: "w:1", host: "10.0.0.1", listen: ":9301", err: "not both"},
		{host: "[fd00::1]", listen: ":9301", err: "without brackets"},
		{host: "fd00::1:9301", listen: ":9301", want: "[fd00::1:9301]:9301"},
		{host: "10.0.0.1:9301", listen: ":9301", err: "must be an IPv6 address"},
		{host: "10.0.0.1", listen: ":0", err: "fixed port"},
		{host: "10.0.0.1", listen: "nonsense", err: "fixed port"},
	} {
		cfg := Config{AdvertiseAddr: c.addr, AdvertiseHost: c.host}
		err := cfg.JoinAdvertiseHost(c.listen)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("host %q addr %q listen %q: error %v, want one with %q", c.host, c.addr, c.listen, err, c.err)
			}
			continue
		}
		if err != nil || cfg.AdvertiseAddr != c.want {
			t.Errorf("host %q addr %q listen %q: %q, %v; want %q", c.host, c.addr, c.listen, cfg.AdvertiseAddr, err, c.want)
		}
	}
}

// The registered flag is the one the Helm chart sets
// (FLEETACS_SESSIONS_ADVERTISE_HOST), and it parses as a bare host.
func TestAdvertiseHostFlag(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-sessions.advertise-host=fd00::7"}); err != nil {
		t.Fatal(err)
	}
	if err := c.JoinAdvertiseHost(":9301"); err != nil || c.AdvertiseAddr != "[fd00::7]:9301" {
		t.Fatalf("advertise %q, %v; want [fd00::7]:9301", c.AdvertiseAddr, err)
	}
}
