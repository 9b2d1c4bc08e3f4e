package notifier

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// A STUN server for TR-111 (docs/protocol.md §8.2): CPEs behind NAT send
// Binding Requests from their UDP connection-request port; the answer
// tells them their public binding, and the request tells the ACS where
// to send UDP connection requests. Classic RFC 3489 requests (no magic
// cookie) and RFC 5389 ones are both answered.

const (
	stunHeaderLen      = 20
	stunMagicCookie    = 0x2112A442
	stunMaxPacket      = 576 // RFC 3489's minimum MTU; a Binding Request is far smaller
	stunBindingRequest = 0x0001
	stunBindingResp    = 0x0101
	stunBindingError   = 0x0111

	attrMappedAddress    = 0x0001
	attrUsername         = 0x0006
	attrErrorCode        = 0x0009
	attrXORMappedAddress = 0x0020
	// TR-111 attributes.
	attrConnReqBinding = 0xC001
	attrBindingChange  = 0xC002

	// connReqBindingValue is CONNECTION-REQUEST-BINDING's value.
	connReqBindingValue = "dslforum.org/TR-111 "
	maxSTUNUsername     = 128
)

var errSTUN = errors.New("malformed STUN message")

// stunRequest is what a Binding Request says.
type stunRequest struct {
	// txid is the transaction id; with a magic cookie its first four
	// bytes are the cookie.
	txid          [16]byte
	rfc5389       bool
	username      string
	connReq       bool
	bindingChange bool
}

// parseSTUN parses a Binding Request. Anything else, or anything
// malformed, is an error: the server drops it without an answer.
func parseSTUN(b []byte) (stunRequest, error) {
	var r stunRequest
	if len(b) < stunHeaderLen || len(b) > stunMaxPacket || b[0]&0xC0 != 0 {
		return r, errSTUN
	}
	if binary.BigEndian.Uint16(b[0:2]) != stunBindingRequest {
		return r, errSTUN
	}
	// The length need not be a multiple of 4: see the last attribute
	// below.
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if stunHeaderLen+n != len(b) {
		return r, errSTUN
	}
	copy(r.txid[:], b[4:20])
	r.rfc5389 = binary.BigEndian.Uint32(b[4:8]) == stunMagicCookie
	attrs := b[stunHeaderLen:]
	for count := 0; len(attrs) > 0; count++ {
		if len(attrs) < 4 || count >= 16 {
			return r, errSTUN
		}
		typ := binary.BigEndian.Uint16(attrs[0:2])
		l := int(binary.BigEndian.Uint16(attrs[2:4]))
		padded := (l + 3) &^ 3
		if 4+padded > len(attrs) {
			// Classic STUN knew no padding (RFC 3489 wants USERNAME a
			// multiple of 4 long), and some CPEs send an odd-length last
			// attribute (USERNAME, or CONNECTION-REQUEST-BINDING without
			// its trailing space) unpadded: accepted when it ends the
			// message exactly (docs/protocol.md §8.2).
			if 4+l != len(attrs) {
				return r, errSTUN
			}
			padded = l
		}
		v := attrs[4 : 4+l]
		switch typ {
		case attrUsername:
			if l == 0 || l > maxSTUNUsername || !printable(v) {
				return r, errSTUN
			}
			r.username = string(v)
		case attrConnReqBinding:
			// Some CPEs leave the trailing space out.
			if string(v) != connReqBindingValue && string(v) != connReqBindingValue[:len(connReqBindingValue)-1] {
				return r, errSTUN
			}
			r.connReq = true
		case attrBindingChange:
			r.bindingChange = true
		}
		attrs = attrs[4+padded:]
	}
	return r, nil
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// stunResponse is the Binding Response to r from src: MAPPED-ADDRESS, and
// XOR-MAPPED-ADDRESS for RFC 5389 clients.
func stunResponse(r stunRequest, src netip.AddrPort) []byte {
	out := make([]byte, stunHeaderLen, 64)
	binary.BigEndian.PutUint16(out[0:2], stunBindingResp)
	copy(out[4:20], r.txid[:])
	out = appendAddress(out, attrMappedAddress, src, nil)
	if r.rfc5389 {
		out = appendAddress(out, attrXORMappedAddress, src, r.txid[:])
	}
	binary.BigEndian.PutUint16(out[2:4], uint16(len(out)-stunHeaderLen))
	return out
}

// stunUnauthorized is the 401 error answering a TR-111 request without
// USERNAME: the CPE is to send again with its STUNUsername.
func stunUnauthorized(r stunRequest) []byte {
	const reason = "Unauthorized"
	out := make([]byte, stunHeaderLen, 48)
	binary.BigEndian.PutUint16(out[0:2], stunBindingError)
	copy(out[4:20], r.txid[:])
	l := 4 + len(reason)
	out = binary.BigEndian.AppendUint16(out, attrErrorCode)
	out = binary.BigEndian.AppendUint16(out, uint16(l))
	out = append(out, 0, 0, 4, 1)
	out = append(out, reason...)
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	binary.BigEndian.PutUint16(out[2:4], uint16(len(out)-stunHeaderLen))
	return out
}

func appendAddress(out []byte, typ uint16, ap netip.AddrPort, xor []byte) []byte {
	ip := ap.Addr().Unmap()
	raw := ip.AsSlice()
	family := byte(1)
	if ip.Is6() {
		family = 2
	}
	port := ap.Port()
	if xor != nil {
		port ^= uint16(stunMagicCookie >> 16)
		for i := range raw {
			raw[i] ^= xor[i%len(xor)]
		}
	}
	out = binary.BigEndian.AppendUint16(out, typ)
	out = binary.BigEndian.AppendUint16(out, uint16(4+len(raw)))
	out = append(out, 0, family)
	out = binary.BigEndian.AppendUint16(out, port)
	return append(out, raw...)
}
