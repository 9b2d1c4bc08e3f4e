package sim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// UDP connection requests (TR-111 Annex G, docs/protocol.md §8.2): each
// device listens on its own UDP port and acts on a datagram holding an
// HTTP GET whose query is signed with its connection-request password.
// With a STUN server configured, it also sends Binding Requests from that
// port, so that the ACS learns its binding.

// udpFreshness is how far a request's ts may be from the device's clock.
const udpFreshness = 5 * time.Minute

// udpSeenIDs is how many recent message ids a device remembers to drop
// the copies of one request (and replays).
const udpSeenIDs = 32

type udpConnReq struct {
	sim   *Simulator
	conns []*net.UDPConn
	devs  []*udpDevice
	wg    sync.WaitGroup
	stop  chan struct{}
}

// udpDevice is one device's UDP listener state.
type udpDevice struct {
	d    *Device
	conn *net.UDPConn
	mu   sync.Mutex
	seen []string
	// txid of the last Binding Request sent.
	txid [12]byte
}

func (s *Simulator) startUDPConnReq(ctx context.Context) (*udpConnReq, error) {
	cfg := &s.cfg
	u := &udpConnReq{sim: s, stop: make(chan struct{})}
	var stun *net.UDPAddr
	if cfg.STUNServer != "" {
		var err error
		if stun, err = net.ResolveUDPAddr("udp", cfg.STUNServer); err != nil {
			return nil, err
		}
	}
	for _, d := range s.devices {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(cfg.ConnReqAddr)})
		if err != nil {
			u.close()
			return nil, err
		}
		ud := &udpDevice{d: d, conn: conn}
		u.conns = append(u.conns, conn)
		u.devs = append(u.devs, ud)
		port := conn.LocalAddr().(*net.UDPAddr).Port
		d.setUDPAddr(net.JoinHostPort(cfg.ConnReqHost, strconv.Itoa(port)))
	}
	for _, ud := range u.devs {
		u.wg.Go(func() { u.serve(ud) })
	}
	if stun != nil {
		// The first Binding Requests go out before the first Inform.
		for _, ud := range u.devs {
			ud.bindingRequest(stun)
		}
		u.wg.Go(func() { u.keepAlive(ctx, stun) })
	}
	return u, nil
}

func (d *Device) setUDPAddr(a string) {
	d.mu.Lock()
	d.udpAddr = a
	d.mu.Unlock()
}

// UDPConnectionRequestAddress returns the device's reported UDP address.
func (d *Device) UDPConnectionRequestAddress() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.udpAddr
}

func (u *udpConnReq) close() {
	close(u.stop)
	for _, c := range u.conns {
		c.Close()
	}
	u.wg.Wait()
}

func (u *udpConnReq) keepAlive(ctx context.Context, stun *net.UDPAddr) {
	t := time.NewTicker(u.sim.cfg.STUNInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-u.stop:
			return
		case <-t.C:
			for _, ud := range u.devs {
				ud.bindingRequest(stun)
			}
		}
	}
}

// serve reads the device's datagrams: STUN answers and connection
// requests.
func (u *udpConnReq) serve(ud *udpDevice) {
	buf := make([]byte, 1500)
	for {
		n, _, err := ud.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p := buf[:n]
		if n >= 20 && p[0]&0xC0 == 0 {
			ud.bindingAnswer(p)
			continue
		}
		u.request(ud, p, time.Now())
	}
}

// request handles one UDP connection request.
func (u *udpConnReq) request(ud *udpDevice, p []byte, now time.Time) {
	st := u.sim.stats
	st.crReceived.Add(1)
	user, pass := ud.d.ConnectionRequestCredentials()
	switch ok, dup := ud.check(p, user, pass, now); {
	case dup:
		return
	case !ok:
		st.crRejected.Add(1)
		return
	}
	st.crAccepted.Add(1)
	ud.d.mu.Lock()
	ud.d.addEvent(evConnReq, "")
	ud.d.mu.Unlock()
	u.sim.sched.wake(ud.d, now)
}

// check validates a UDP connection request: an HTTP GET whose un is the
// device's user, whose sig is the HMAC-SHA1 of ts, id, un and cn under its
// password, whose ts is fresh and whose id is new. dup reports a valid
// copy of a request already acted on.
func (ud *udpDevice) check(p []byte, user, pass string, now time.Time) (ok, dup bool) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(p)))
	if err != nil || req.Method != http.MethodGet {
		return false, false
	}
	q := req.URL.Query()
	ts, id, un, cn, sig := q.Get("ts"), q.Get("id"), q.Get("un"), q.Get("cn"), q.Get("sig")
	if ts == "" || id == "" || cn == "" || len(sig) != 40 || un != user {
		return false, false
	}
	m := hmac.New(sha1.New, []byte(pass))
	m.Write([]byte(ts + id + un + cn))
	got, err := hex.DecodeString(sig) // either case
	if err != nil || !hmac.Equal(got, m.Sum(nil)) {
		return false, false
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false, false
	}
	if d := now.Sub(time.Unix(secs, 0)); d > udpFreshness || d < -udpFreshness {
		return false, false
	}
	ud.mu.Lock()
	defer ud.mu.Unlock()
	for _, s := range ud.seen {
		if s == id {
			return false, true
		}
	}
	if len(ud.seen) == udpSeenIDs {
		ud.seen = ud.seen[1:]
	}
	ud.seen = append(ud.seen, id)
	return true, false
}

// bindingRequest sends an RFC 5389 Binding Request with the TR-111
// CONNECTION-REQUEST-BINDING attribute and the device's STUN user name.
func (ud *udpDevice) bindingRequest(stun *net.UDPAddr) {
	user, _ := ud.d.ConnectionRequestCredentials()
	b := make([]byte, 20, 80)
	binary.BigEndian.PutUint16(b, 0x0001)
	binary.BigEndian.PutUint32(b[4:], 0x2112A442)
	ud.mu.Lock()
	_, _ = rand.Read(ud.txid[:])
	copy(b[8:], ud.txid[:])
	ud.mu.Unlock()
	attr := func(typ uint16, v []byte) {
		b = binary.BigEndian.AppendUint16(b, typ)
		b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	attr(0x0006, []byte(user))
	attr(0xC001, []byte("dslforum.org/TR-111 "))
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-20))
	_, _ = ud.conn.WriteToUDP(b, stun)
}

// bindingAnswer takes the mapped address of a Binding Response to the
// last request as the device's UDPConnectionRequestAddress.
func (ud *udpDevice) bindingAnswer(p []byte) {
	if binary.BigEndian.Uint16(p) != 0x0101 || int(binary.BigEndian.Uint16(p[2:]))+20 != len(p) {
		return
	}
	ud.mu.Lock()
	match := bytes.Equal(p[8:20], ud.txid[:])
	ud.mu.Unlock()
	if !match {
		return
	}
	var mapped netip.AddrPort
	for a := p[20:]; len(a) >= 4; {
		typ, l := binary.BigEndian.Uint16(a), int(binary.BigEndian.Uint16(a[2:]))
		if 4+l > len(a) || l < 8 {
			if 4+l > len(a) {
				return
			}
			a = a[4+(l+3)&^3:]
			continue
		}
		v := a[4 : 4+l]
		port := binary.BigEndian.Uint16(v[2:])
		ip := append([]byte(nil), v[4:]...)
		if typ == 0x0020 {
			port ^= 0x2112
			for i := range ip {
				ip[i] ^= p[4+i]
			}
		}
		if typ == 0x0020 || (typ == 0x0001 && !mapped.IsValid()) {
			if addr, ok := netip.AddrFromSlice(ip); ok {
				mapped = netip.AddrPortFrom(addr.Unmap(), port)
			}
		}
		if 4+(l+3)&^3 > len(a) {
			break
		}
		a = a[4+(l+3)&^3:]
	}
	if mapped.IsValid() {
		ud.d.setUDPAddr(mapped.String())
	}
}
