package notifier

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"strconv"
	"time"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// UDPSignature is the sig of a UDP connection request (docs/protocol.md
// §8.2): the lower-case hex HMAC-SHA1, keyed with the connection-request
// password, of ts, id, un and cn concatenated.
func UDPSignature(password, ts, id, un, cn string) string {
	m := hmac.New(sha1.New, []byte(password))
	m.Write([]byte(ts + id + un + cn))
	return hex.EncodeToString(m.Sum(nil))
}

// UDPMessage is one UDP connection request datagram for the CPE at
// hostport (docs/protocol.md §8.2).
func UDPMessage(hostport string, ts int64, id, un, cn, password string) []byte {
	t := strconv.FormatInt(ts, 10)
	sig := UDPSignature(password, t, id, un, cn)
	q := "ts=" + t + "&id=" + url.QueryEscape(id) + "&un=" + url.QueryEscape(un) + "&cn=" + url.QueryEscape(cn) + "&sig=" + sig
	return []byte("GET http://" + hostport + "?" + q + " HTTP/1.1\r\nHost: " + hostport + "\r\n\r\n")
}

// sendUDP sends a UDP connection request to addr, -notifier.udp-copies
// times with a doubling pause between copies, from the STUN socket when
// there is one: a NAT that filters by address and port admits datagrams
// only from where the CPE's binding requests went.
func (s *Service) sendUDP(ctx context.Context, addr, user, pass string) result {
	const tr = "udp"
	ap, err := s.guard.resolveUDP(ctx, s.resolver, addr)
	if err != nil {
		if errors.Is(err, ErrAddressRefused) {
			return fail(tasksv1.WakeStatus_WAKE_STATUS_ADDRESS_REFUSED, tr, "%s", refusedReason(err))
		}
		return fail(tasksv1.WakeStatus_WAKE_STATUS_FAILED, tr, "%v", err)
	}
	conn := s.stunConn()
	if conn == nil {
		c, err := net.ListenUDP("udp", nil)
		if err != nil {
			return fail(tasksv1.WakeStatus_WAKE_STATUS_FAILED, tr, "open a UDP socket: %v", err)
		}
		defer c.Close()
		conn = c
	}
	id := randomHex(8)
	cn := randomHex(8)
	hostport := net.JoinHostPort(ap.Addr().String(), strconv.Itoa(int(ap.Port())))
	pause := s.cfg.UDPInterval
	sent := 0
	var lastErr error
	for i := 0; i < s.cfg.UDPCopies; i++ {
		if i > 0 {
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				i = s.cfg.UDPCopies
				continue
			case <-t.C:
			}
			pause *= 2
		}
		// Each copy carries the same id, so that the CPE acts once.
		msg := UDPMessage(hostport, s.now().Unix(), id, user, cn, pass)
		if _, err := conn.WriteToUDPAddrPort(msg, ap); err != nil {
			lastErr = err
			continue
		}
		sent++
	}
	if sent == 0 {
		return fail(tasksv1.WakeStatus_WAKE_STATUS_FAILED, tr, "send: %v", lastErr)
	}
	return result{status: tasksv1.WakeStatus_WAKE_STATUS_SENT, transport: tr, detail: strconv.Itoa(sent) + " datagrams sent"}
}
