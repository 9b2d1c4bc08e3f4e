package sim

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// udpRequest builds a UDP connection request as an ACS sends it
// (docs/protocol.md §8.2).
func udpRequest(hostport string, ts int64, id, user, pass string) []byte {
	t := strconv.FormatInt(ts, 10)
	m := hmac.New(sha1.New, []byte(pass))
	m.Write([]byte(t + id + user + "cn1"))
	sig := hex.EncodeToString(m.Sum(nil))
	return fmt.Appendf(nil, "GET http://%s?ts=%s&id=%s&un=%s&cn=cn1&sig=%s HTTP/1.1\r\nHost: %s\r\n\r\n", hostport, t, id, user, sig, hostport)
}

func TestUDPConnectionRequest(t *testing.T) {
	acs := newTestACS(t, ConnCookie)
	reports := make(chan SessionReport, 8)
	cfg := testConfig(t, acs)
	cfg.ConnReqUDP = true
	cfg.OnSession = func(r SessionReport) { reports <- r }
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cancel, result := runInBackground(s)
	defer cancel()
	if r := waitFor(t, reports); !r.OK {
		t.Fatalf("boot session: %v", r.Err)
	}
	informs, _, _, _ := acs.snapshot()
	p, ok := informParam(informs[0], "Device.ManagementServer.UDPConnectionRequestAddress")
	dev := s.Devices()[0]
	if !ok || p.Value == "" || p.Value != dev.UDPConnectionRequestAddress() {
		t.Fatalf("Inform UDPConnectionRequestAddress %q, device %q", p.Value, dev.UDPConnectionRequestAddress())
	}
	user, pass := dev.ConnectionRequestCredentials()
	ua, err := net.ResolveUDPAddr("udp", p.Value)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := time.Now().Unix()
	// Refused: a forged signature, another user, a stale ts, not a GET.
	forged := udpRequest(p.Value, now, "f1", user, "not-the-password")
	for _, bad := range [][]byte{
		forged,
		udpRequest(p.Value, now, "f2", "someone-else", pass),
		udpRequest(p.Value, now-3600, "f3", user, pass),
		[]byte(strings.Replace(string(udpRequest(p.Value, now, "f4", user, pass)), "GET", "PUT", 1)),
		[]byte("garbage"),
	} {
		if _, err := c.Write(bad); err != nil {
			t.Fatal(err)
		}
	}
	// Accepted: three copies of one request start one session.
	good := udpRequest(p.Value, now, "req-1", user, pass)
	for range 3 {
		if _, err := c.Write(good); err != nil {
			t.Fatal(err)
		}
	}
	r := waitFor(t, reports)
	if !r.OK || len(r.Events) != 1 || r.Events[0].Code != "6 CONNECTION REQUEST" {
		t.Fatalf("CR session: ok %v events %+v", r.OK, r.Events)
	}
	// A replay of the same id later does nothing.
	if _, err := c.Write(good); err != nil {
		t.Fatal(err)
	}
	// Upper-case hex is accepted too (FreeACS sends it).
	upper := strings.Replace(string(udpRequest(p.Value, now, "req-2", user, pass)), "sig=", "sig=", 1)
	i := strings.Index(upper, "sig=") + 4
	upper = upper[:i] + strings.ToUpper(upper[i:i+40]) + upper[i+40:]
	if _, err := c.Write([]byte(upper)); err != nil {
		t.Fatal(err)
	}
	r = waitFor(t, reports)
	if !r.OK || len(r.Events) != 1 || r.Events[0].Code != "6 CONNECTION REQUEST" {
		t.Fatalf("second CR session: ok %v events %+v", r.OK, r.Events)
	}
	cancel()
	sum := waitFor(t, result)
	if sum.ConnReqAccepted != 2 || sum.ConnReqRejected != 5 || sum.SessionsOK != 3 {
		t.Fatalf("summary: accepted %d rejected %d sessions %d", sum.ConnReqAccepted, sum.ConnReqRejected, sum.SessionsOK)
	}
}

// TestSTUNClient: with -stun, a device sends a TR-111 Binding Request with
// its user name from its UDP port and reports the mapped address.
func TestSTUNClient(t *testing.T) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	acs := newTestACS(t, ConnCookie)
	cfg := testConfig(t, acs)
	cfg.ConnReqUDP = true
	cfg.STUNServer = srv.LocalAddr().String()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	srv.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := srv.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	req := buf[:n]
	dev := s.Devices()[0]
	user, _ := dev.ConnectionRequestCredentials()
	if binary.BigEndian.Uint16(req) != 0x0001 || !strings.Contains(string(req), user) || !strings.Contains(string(req), "dslforum.org/TR-111 ") {
		t.Fatalf("binding request %q", req)
	}
	if got := dev.UDPConnectionRequestAddress(); got != from.String() {
		t.Fatalf("sent from %v, reports %q", from, got)
	}
	// Answer with a public binding (XOR-MAPPED-ADDRESS).
	mapped := netip.MustParseAddrPort("203.0.113.9:40001")
	resp := make([]byte, 20, 32)
	binary.BigEndian.PutUint16(resp, 0x0101)
	copy(resp[4:20], req[4:20])
	ip := mapped.Addr().As4()
	for i := range ip {
		ip[i] ^= req[4+i]
	}
	resp = append(resp, 0, 0x20, 0, 8, 0, 1)
	resp = binary.BigEndian.AppendUint16(resp, mapped.Port()^0x2112)
	resp = append(resp, ip[:]...)
	binary.BigEndian.PutUint16(resp[2:], uint16(len(resp)-20))
	// An answer to another transaction is ignored.
	other := append([]byte(nil), resp...)
	other[19] ^= 1
	srv.WriteToUDPAddrPort(other, from)
	srv.WriteToUDPAddrPort(resp, from)
	deadline := time.Now().Add(5 * time.Second)
	for dev.UDPConnectionRequestAddress() != mapped.String() {
		if time.Now().After(deadline) {
			t.Fatalf("UDPConnectionRequestAddress %q, want %v", dev.UDPConnectionRequestAddress(), mapped)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
