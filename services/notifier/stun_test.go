package notifier

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// bindingRequest builds a Binding Request, RFC 5389 when cookie.
func bindingRequest(cookie bool, user string, connReq, change bool) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b, stunBindingRequest)
	copy(b[4:], randomBytes(16))
	if cookie {
		binary.BigEndian.PutUint32(b[4:], stunMagicCookie)
	}
	add := func(typ uint16, v []byte) {
		b = binary.BigEndian.AppendUint16(b, typ)
		b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	if user != "" {
		add(attrUsername, []byte(user))
	}
	if connReq {
		add(attrConnReqBinding, []byte(connReqBindingValue))
	}
	if change {
		add(attrBindingChange, nil)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-20))
	return b
}

// mappedAddress reads (XOR-)MAPPED-ADDRESS from a Binding Response.
func mappedAddress(t *testing.T, resp []byte, typ uint16) netip.AddrPort {
	t.Helper()
	if len(resp) < 20 || binary.BigEndian.Uint16(resp) != stunBindingResp {
		t.Fatalf("not a binding response: %x", resp)
	}
	for a := resp[20:]; len(a) >= 4; {
		at, l := binary.BigEndian.Uint16(a), int(binary.BigEndian.Uint16(a[2:]))
		v := a[4 : 4+l]
		if at == typ {
			port := binary.BigEndian.Uint16(v[2:])
			ip := append([]byte(nil), v[4:]...)
			if typ == attrXORMappedAddress {
				port ^= uint16(stunMagicCookie >> 16)
				for i := range ip {
					ip[i] ^= resp[4+i%16]
				}
			}
			addr, _ := netip.AddrFromSlice(ip)
			return netip.AddrPortFrom(addr, port)
		}
		a = a[4+(l+3)&^3:]
	}
	t.Fatalf("attribute %x missing", typ)
	return netip.AddrPort{}
}

// TestSTUNLearnsBindingAndWakesOverUDP runs the STUN server on a real
// socket: a CPE's Binding Request teaches it the binding, and the next
// wake goes there over UDP, from the STUN socket.
func TestSTUNLearnsBindingAndWakesOverUDP(t *testing.T) {
	cfg := testConfig()
	cfg.STUNAddr = "127.0.0.1:0"
	targets := &fakeTargets{}
	s := newService(t, cfg, Deps{Targets: targets})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stun := startSTUNOnly(t, s, ctx)

	cpe, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer cpe.Close()
	cpe.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	// Without USERNAME the server asks for it.
	if _, err := cpe.WriteTo(bindingRequest(false, "", true, false), stun); err != nil {
		t.Fatal(err)
	}
	n, _, err := cpe.ReadFrom(buf)
	if err != nil || binary.BigEndian.Uint16(buf) != stunBindingError {
		t.Fatalf("want a 401 binding error: %x %v", buf[:n], err)
	}
	for _, cookie := range []bool{false, true} {
		if _, err := cpe.WriteTo(bindingRequest(cookie, "cr-dev1", true, cookie), stun); err != nil {
			t.Fatal(err)
		}
		n, _, err = cpe.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		local := cpe.LocalAddr().(*net.UDPAddr).AddrPort()
		if got := mappedAddress(t, buf[:n], attrMappedAddress); got != local {
			t.Fatalf("MAPPED-ADDRESS %v, want %v", got, local)
		}
		if cookie {
			if got := mappedAddress(t, buf[:n], attrXORMappedAddress); got != local {
				t.Fatalf("XOR-MAPPED-ADDRESS %v, want %v", got, local)
			}
		}
	}
	// The device reports an HTTP URL too, and informs from 127.0.0.1: the
	// fresh binding wins.
	targets.set("dev1", Target{URL: "http://127.0.0.1:1/", Username: "cr-dev1", Password: "secret", HasCredentials: true, RemoteIP: "127.0.0.1"})
	r := s.wake(ctx, &tasksv1.WakeRequest{Tenant: "t", DeviceId: "dev1"})
	if r.status != tasksv1.WakeStatus_WAKE_STATUS_SENT || r.transport != "udp" {
		t.Fatalf("wake: %v %s %q", r.status, r.transport, r.detail)
	}
	ids := map[string]bool{}
	for range cfg.UDPCopies {
		n, from, err := cpe.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if from.Port() != uint16(stun.(*net.UDPAddr).Port) {
			t.Fatalf("UDP request from %v, not from the STUN socket %v", from, stun)
		}
		msg := string(buf[:n])
		q := checkUDPMessage(t, msg, "cr-dev1", "secret")
		ids[q["id"]] = true
	}
	if len(ids) != 1 {
		t.Fatalf("copies carry ids %v, want one", ids)
	}
	// A binding claimed from another address than the device informs from
	// is not used.
	targets.set("dev2", Target{Username: "cr-dev1", Password: "x", HasCredentials: true, RemoteIP: "192.0.2.1"})
	if r := s.wake(ctx, &tasksv1.WakeRequest{Tenant: "t", DeviceId: "dev2"}); r.status != tasksv1.WakeStatus_WAKE_STATUS_NO_ADDRESS {
		t.Fatalf("binding from a foreign address used: %v %q", r.status, r.detail)
	}
}

func checkUDPMessage(t *testing.T, msg, user, pass string) map[string]string {
	t.Helper()
	if !strings.HasPrefix(msg, "GET http://") || !strings.HasSuffix(msg, "\r\n\r\n") || !strings.Contains(msg, "\r\nHost: ") {
		t.Fatalf("message %q", msg)
	}
	line, _, _ := strings.Cut(msg, "\r\n")
	_, query, _ := strings.Cut(strings.Fields(line)[1], "?")
	q := map[string]string{}
	for _, kv := range strings.Split(query, "&") {
		k, v, _ := strings.Cut(kv, "=")
		q[k] = v
	}
	if q["un"] != user || q["sig"] != UDPSignature(pass, q["ts"], q["id"], q["un"], q["cn"]) {
		t.Fatalf("bad signature or user in %q", msg)
	}
	return q
}

func startSTUNOnly(t *testing.T, s *Service, ctx context.Context) net.Addr {
	t.Helper()
	ua, _ := net.ResolveUDPAddr("udp", s.cfg.STUNAddr)
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.stun = conn
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { defer close(done); s.serveSTUN(conn) }()
	t.Cleanup(func() { conn.Close(); <-done })
	return conn.LocalAddr()
}

// TestSTUNFloodBounded: malformed datagrams are dropped without an
// answer, and a flood of user names fills the table only to its bound.
func TestSTUNFloodBounded(t *testing.T) {
	clk := newClock()
	cfg := testConfig()
	cfg.STUNMaxBindings = 100
	s := newService(t, cfg, Deps{Now: clk.Now})
	src := netip.MustParseAddrPort("192.0.2.7:4000")
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	malformed := [][]byte{
		nil, {0}, make([]byte, 19), make([]byte, 20), // type 0
		append([]byte{0, 1, 0, 4}, make([]byte, 16)...),                                       // length past the end
		append([]byte{0xC0, 1, 0, 0}, make([]byte, 16)...),                                    // top bits set
		append([]byte{0, 1, 0, 8}, append(make([]byte, 16), 0, 6, 0xff, 0xff, 0, 0, 0, 0)...), // attribute past the end
		make([]byte, 2000),
	}
	for i := range 20000 {
		p := malformed[i%len(malformed)]
		if i%len(malformed) == 0 {
			p = randomBytes(20 + i%500)
		}
		if out := s.stunPacket(p, src); out != nil && len(p) < 20 {
			t.Fatalf("answered %x", p)
		}
	}
	for i := range 5000 {
		s.stunPacket(bindingRequest(true, "u"+randomHex(8), true, false), src)
		if i%1000 == 0 {
			clk.Add(2 * time.Second)
		}
	}
	if n := s.bindings.len(); n > 100 {
		t.Fatalf("%d bindings, bound 100", n)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grow := int64(after.HeapAlloc) - int64(before.HeapAlloc); grow > 4<<20 {
		t.Fatalf("heap grew by %d bytes", grow)
	}
	// Expired bindings make room again.
	clk.Add(cfg.STUNBindingTTL + 2*time.Second)
	if !s.bindings.learn("late", src) {
		t.Fatal("expired bindings were not swept")
	}
}

func FuzzParseSTUN(f *testing.F) {
	f.Add(bindingRequest(true, "user", true, true))
	f.Add(bindingRequest(false, "", false, false))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseSTUN(b)
		if err == nil {
			_ = stunResponse(r, netip.MustParseAddrPort("[2001:db8::1]:5"))
		}
	})
}

// TestUDPMessageKnownAnswer: the datagram byte for byte, with a signature
// computed outside Go (openssl dgst -sha1 -hmac s3cret over
// "1700000000a1b2c3d4cr-user0123abcd": ts, id, un and cn concatenated,
// keyed with the connection-request password, docs/protocol.md §8.2).
func TestUDPMessageKnownAnswer(t *testing.T) {
	const sig = "4c469b7f15610cf5cb587bdb1068347e14b94757"
	want := "GET http://192.0.2.1:7547?ts=1700000000&id=a1b2c3d4&un=cr-user&cn=0123abcd&sig=" + sig + " HTTP/1.1\r\nHost: 192.0.2.1:7547\r\n\r\n"
	if got := string(UDPMessage("192.0.2.1:7547", 1700000000, "a1b2c3d4", "cr-user", "0123abcd", "s3cret")); got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	if got := UDPSignature("s3cret", "1700000000", "a1b2c3d4", "cr-user", "0123abcd"); got != sig {
		t.Fatalf("sig %s", got)
	}
	v6 := string(UDPMessage("[2001:db8::1]:7547", 1, "i", "u", "c", "p"))
	if !strings.HasPrefix(v6, "GET http://[2001:db8::1]:7547?ts=1&") || !strings.Contains(v6, "\r\nHost: [2001:db8::1]:7547\r\n") {
		t.Fatalf("IPv6: %q", v6)
	}
}

// TestUDPRequestToReportedAddress: a UDP connection request to the
// UDPConnectionRequestAddress a CPE reported (IPv4, IPv6 in brackets,
// white space around it), the configured number of copies, each checked
// with an HMAC-SHA1 computed here.
func TestUDPRequestToReportedAddress(t *testing.T) {
	for _, c := range []struct{ network, ip, format string }{
		{"udp4", "127.0.0.1", "%s"},
		{"udp6", "::1", "%s"},
		{"udp4", "127.0.0.1", " %s \r\n"},
	} {
		t.Run(fmt.Sprintf("%s %q", c.network, c.format), func(t *testing.T) {
			cpe, err := net.ListenUDP(c.network, &net.UDPAddr{IP: net.ParseIP(c.ip)})
			if err != nil && c.network == "udp6" {
				// A machine without IPv6 has no ::1; 127.0.0.1 is a must.
				t.Skipf("no %s loopback: %v", c.network, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer cpe.Close()
			cpe.SetDeadline(time.Now().Add(5 * time.Second))
			addr := cpe.LocalAddr().(*net.UDPAddr).AddrPort().String()
			clk := newClock()
			cfg := testConfig()
			cfg.UDPCopies = 3
			s := newService(t, cfg, Deps{Now: clk.Now})
			r := s.sendUDP(context.Background(), fmt.Sprintf(c.format, addr), "cr-user", "pw")
			if r.status != tasksv1.WakeStatus_WAKE_STATUS_SENT || r.transport != "udp" {
				t.Fatalf("%q: %v %q", addr, r.status, r.detail)
			}
			var id string
			buf := make([]byte, 1500)
			for i := range cfg.UDPCopies {
				n, err := cpe.Read(buf)
				if err != nil {
					t.Fatalf("copy %d: %v", i, err)
				}
				msg := string(buf[:n])
				line, rest, _ := strings.Cut(msg, "\r\n")
				f := strings.Fields(line)
				if len(f) != 3 || f[0] != "GET" || f[2] != "HTTP/1.1" || rest != "Host: "+addr+"\r\n\r\n" {
					t.Fatalf("message %q", msg)
				}
				base, query, _ := strings.Cut(f[1], "?")
				if base != "http://"+addr {
					t.Fatalf("request target %q", f[1])
				}
				var names []string
				q := map[string]string{}
				for _, kv := range strings.Split(query, "&") {
					k, v, _ := strings.Cut(kv, "=")
					names = append(names, k)
					q[k] = v
				}
				if strings.Join(names, ",") != "ts,id,un,cn,sig" || q["un"] != "cr-user" || q["ts"] != strconv.FormatInt(clk.Now().Unix(), 10) {
					t.Fatalf("query %q", query)
				}
				m := hmac.New(sha1.New, []byte("pw"))
				io.WriteString(m, q["ts"]+q["id"]+q["un"]+q["cn"])
				if q["sig"] != hex.EncodeToString(m.Sum(nil)) {
					t.Fatalf("sig %s", q["sig"])
				}
				if id == "" {
					id = q["id"]
				} else if q["id"] != id {
					t.Fatalf("copy %d has id %s, the first %s", i, q["id"], id)
				}
			}
		})
	}
}

// stunMessage builds a Binding Request from raw attributes (type, value,
// padding bytes written after the value).
type rawAttr struct {
	typ uint16
	val []byte
	pad []byte
}

func stunMessage(cookie bool, attrs ...rawAttr) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b, stunBindingRequest)
	copy(b[4:], randomBytes(16))
	if cookie {
		binary.BigEndian.PutUint32(b[4:], stunMagicCookie)
	}
	for _, a := range attrs {
		b = binary.BigEndian.AppendUint16(b, a.typ)
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.val)))
		b = append(b, a.val...)
		b = append(b, a.pad...)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-20))
	return b
}

// TestParseSTUNForms: Binding Requests as TR-111 CPEs send them.
func TestParseSTUNForms(t *testing.T) {
	user7 := rawAttr{0x0006, []byte("cr-dev7"), []byte{0}} // odd length, padded
	crb := rawAttr{0xC001, []byte("dslforum.org/TR-111 "), nil}
	crbNoSpace := rawAttr{0xC001, []byte("dslforum.org/TR-111"), []byte{0}}
	change := rawAttr{0xC002, nil, nil}
	integrity := rawAttr{0x0008, randomBytes(20), nil} // MESSAGE-INTEGRITY: not checked
	fingerprint := rawAttr{0x8028, randomBytes(4), nil}
	for _, c := range []struct {
		name          string
		msg           []byte
		rfc5389       bool
		user          string
		connReq, bchg bool
	}{
		{"rfc3489", stunMessage(false, user7, crb), false, "cr-dev7", true, false},
		{"rfc5389", stunMessage(true, user7, crb), true, "cr-dev7", true, false},
		{"binding-change", stunMessage(true, crb, change, user7), true, "cr-dev7", true, true},
		{"no-trailing-space", stunMessage(false, crbNoSpace, user7), false, "cr-dev7", true, false},
		{"message-integrity-and-fingerprint", stunMessage(true, user7, crb, integrity, fingerprint), true, "cr-dev7", true, false},
		{"non-zero-padding", stunMessage(true, rawAttr{0x0006, []byte("dev-1"), []byte{0xff, 0xff, 0xff}}, crb), true, "dev-1", true, false},
		{"unknown-attributes", stunMessage(false, rawAttr{0x0003, []byte{0, 0, 0, 6}, nil}, rawAttr{0x8022, []byte("cpe-stun 1.0"), nil}, user7, crb), false, "cr-dev7", true, false},
		{"plain-binding-request", stunMessage(false), false, "", false, false},
		// Classic STUN had no padding (RFC 3489 wants USERNAME a multiple
		// of 4 long): a last attribute of odd length may come unpadded.
		{"unpadded-last-username", stunMessage(false, crb, rawAttr{0x0006, []byte("cr-dev7"), nil}), false, "cr-dev7", true, false},
		{"unpadded-last-binding", stunMessage(false, user7, rawAttr{0xC001, []byte("dslforum.org/TR-111"), nil}), false, "cr-dev7", true, false},
	} {
		r, err := parseSTUN(c.msg)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if r.rfc5389 != c.rfc5389 || r.username != c.user || r.connReq != c.connReq || r.bindingChange != c.bchg {
			t.Errorf("%s: %+v", c.name, r)
		}
		if !bytes.Equal(r.txid[:], c.msg[4:20]) {
			t.Errorf("%s: transaction id", c.name)
		}
	}
}

// TestSTUNBindingFollowsNATPort: when the CPE's NAT maps its
// connection-request port anew, the next Binding Request (with
// BINDING-CHANGE, or a plain keep-alive) teaches the new port, and the
// next wake goes there. A request with MESSAGE-INTEGRITY is answered and
// learnt like any other (the STUN password is not held, so it is not
// checked).
func TestSTUNBindingFollowsNATPort(t *testing.T) {
	s := newService(t, testConfig(), Deps{})
	user := rawAttr{0x0006, []byte("cr-dev1"), []byte{0}}
	crb := rawAttr{0xC001, []byte(connReqBindingValue), nil}
	ip := netip.MustParseAddr("192.0.2.9")
	for i, c := range []struct {
		port  uint16
		attrs []rawAttr
	}{
		{4000, []rawAttr{user, crb}},
		{4000, []rawAttr{user, crb}},
		{4711, []rawAttr{user, crb, {0xC002, nil, nil}}},
		{5000, []rawAttr{crb, user}},
		{5001, []rawAttr{user, crb, {0x0008, randomBytes(20), nil}}},
	} {
		src := netip.AddrPortFrom(ip, c.port)
		msg := stunMessage(i%2 == 0, c.attrs...)
		resp := s.stunPacket(msg, src)
		if got := mappedAddress(t, resp, attrMappedAddress); got != src {
			t.Fatalf("request %d: MAPPED-ADDRESS %v, want %v", i, got, src)
		}
		if !bytes.Equal(resp[4:20], msg[4:20]) {
			t.Fatalf("request %d: transaction id not echoed", i)
		}
		if got, ok := s.bindings.lookup(context.Background(), "cr-dev1", ip); !ok || got != src {
			t.Fatalf("request %d: binding %v %v, want %v", i, got, ok, src)
		}
	}
}

// TestUDPDefaultPort: a UDPConnectionRequestAddress without a port means
// port 80 (docs/protocol.md §8.2), shown by the guard, which refuses this
// process's own listeners there (no test binds port 80).
func TestUDPDefaultPort(t *testing.T) {
	own := []netipAddrPort{netip.MustParseAddrPort("127.0.0.1:80"), netip.MustParseAddrPort("[::1]:80")}
	s := newService(t, testConfig(), Deps{OwnAddrs: func() []netipAddrPort { return own }})
	for _, a := range []string{"127.0.0.1", "[::1]", "localhost", "127.0.0.1:80"} {
		r := s.sendUDP(context.Background(), a, "u", "p")
		if r.status != tasksv1.WakeStatus_WAKE_STATUS_ADDRESS_REFUSED || !strings.Contains(r.detail, "own listeners") {
			t.Errorf("%s: %v %q, want refused as port 80", a, r.status, r.detail)
		}
	}
}
