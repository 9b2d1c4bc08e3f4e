package gateway

import (
	"crypto/hmac"
	"crypto/md5"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fleetacs/fleetacs/pkg/authstate"
)

// HTTP Digest (RFC 7616 with MD5, the RFC 2617 subset CPEs implement) and
// Basic, on the ACS side.
//
// Nonces carry their issue time and an HMAC of it under the nonce secret, so
// any replica sharing the secret can check them without state: a CPE that
// reconnects after the 401 (most do, docs/protocol.md §4.2), or lands on
// another replica, still authenticates. What a stateless nonce cannot stop
// is a replay of a captured Authorization header, so the nonce counts
// (nc) are tracked in the NonceCounts store shared by the replicas: a
// header authenticates only with a count greater than every one used with
// its nonce before (auth.go).
//
// Nonces are deliberately not bound to the client address: the count
// tracking already makes a captured header useless, and CPEs behind
// carrier-grade NAT pools that change address between connections would
// fail the handshake they reconnect for. The session, not the nonce, is
// bound to the address (binding.go).

// A nonce is base64url of: issue time (8 bytes, Unix nanoseconds), 8
// random bytes, and a 16-byte HMAC-SHA256 of both under the nonce secret.
const (
	nonceHeadSize = 16
	nonceMACSize  = 16
)

// nonceSkew is how far in the future another replica's clock may have put
// a nonce's issue time; nonce counts are kept that much longer than the
// nonce lifetime.
const nonceSkew = time.Minute

// nonceMinter issues and checks Digest nonces.
type nonceMinter struct {
	secret   []byte
	realm    string
	lifetime time.Duration
}

// mac authenticates a nonce's issue time and random part (head).
func (n *nonceMinter) mac(head []byte) []byte {
	m := hmac.New(sha256.New, n.secret)
	m.Write([]byte("fleetacs digest nonce\x00"))
	m.Write([]byte(n.realm))
	m.Write([]byte{0})
	m.Write(head)
	return m.Sum(nil)[:nonceMACSize]
}

// mint returns a nonce issued at now: the issue time, random bytes that
// make every nonce unique (its count is tracked per nonce, and two CPEs
// challenged within one clock tick must not share one) and a MAC of both.
func (n *nonceMinter) mint(now time.Time) string {
	var raw [nonceHeadSize + nonceMACSize]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now.UnixNano()))
	_, _ = crand.Read(raw[8:nonceHeadSize]) // crypto/rand.Read never fails on supported platforms
	copy(raw[nonceHeadSize:], n.mac(raw[:nonceHeadSize]))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

type nonceState int

const (
	nonceInvalid nonceState = iota
	nonceFresh
	nonceStale
)

// check tells a nonce this realm issued and that is still fresh from a stale
// one and from one it never issued. For a fresh nonce it also returns until
// when its count must be remembered: past that, every replica finds it
// stale.
func (n *nonceMinter) check(nonce string, now time.Time) (nonceState, time.Time) {
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != nonceHeadSize+nonceMACSize {
		return nonceInvalid, time.Time{}
	}
	issued := binary.BigEndian.Uint64(raw[:8])
	if !hmac.Equal(raw[nonceHeadSize:], n.mac(raw[:nonceHeadSize])) {
		return nonceInvalid, time.Time{}
	}
	at := time.Unix(0, int64(issued))
	age := now.Sub(at)
	switch {
	case age < -nonceSkew: // issued in the future: another replica's clock, within reason
		return nonceInvalid, time.Time{}
	case age > n.lifetime:
		return nonceStale, time.Time{}
	}
	return nonceFresh, at.Add(n.lifetime + nonceSkew)
}

// nonceCount reads the nc of p as the count to track. Credentials without
// qop (RFC 2069) carry none: their nonce is good for one request, count 1.
func nonceCount(p digestParams) (uint64, bool) {
	if p.qop == "" {
		return 1, true
	}
	if p.nc == "" || len(p.nc) > 16 {
		return 0, false
	}
	nc, err := strconv.ParseUint(p.nc, 16, 64)
	if err != nil || nc == 0 || nc > authstate.MaxNonceCount {
		return 0, false
	}
	return nc, true
}

// digestParams is a parsed Digest Authorization header.
type digestParams struct {
	username, realm, nonce, uri, response string
	algorithm, qop, nc, cnonce, opaque    string
	userhash                              bool
}

var errNotDigest = errors.New("not a Digest authorization")

// parseDigest reads the credentials of an Authorization: Digest header. It
// accepts quoted and unquoted values, any order, and spaces around '=' and
// ',', because CPE stacks differ on all of these.
func parseDigest(h string) (digestParams, error) {
	var p digestParams
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	if !strings.EqualFold(scheme, "Digest") {
		return p, errNotDigest
	}
	for s := rest; ; {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			break
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return p, errors.New("digest parameter without '='")
		}
		key := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val string
		if strings.HasPrefix(s, `"`) {
			i, escaped := 1, false
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
					escaped = true
				}
			}
			if i >= len(s) {
				return p, errors.New("unterminated quoted digest parameter")
			}
			val, s = s[1:i], s[i+1:]
			if escaped {
				val = unescapeQuoted(val)
			}
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			val, s = strings.TrimSpace(s[:end]), s[end:]
		}
		switch key {
		case "username":
			p.username = val
		case "username*":
			// RFC 7616 extended notation: UTF-8''percent-encoded.
			if i := strings.Index(val, "''"); i >= 0 {
				if u, err := url.PathUnescape(val[i+2:]); err == nil {
					p.username = u
				}
			}
		case "realm":
			p.realm = val
		case "nonce":
			p.nonce = val
		case "uri":
			p.uri = val
		case "response":
			p.response = strings.ToLower(val)
		case "algorithm":
			p.algorithm = val
		case "qop":
			p.qop = strings.ToLower(val)
		case "nc":
			p.nc = val
		case "cnonce":
			p.cnonce = val
		case "opaque":
			p.opaque = val
		case "userhash":
			p.userhash = strings.EqualFold(val, "true")
		}
	}
	if p.username == "" || p.nonce == "" || p.response == "" || p.uri == "" {
		return p, errors.New("digest authorization lacks username, nonce, uri or response")
	}
	return p, nil
}

// unescapeQuoted removes the backslashes of a quoted-string's content.
func unescapeQuoted(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

func md5Hex(parts ...string) string {
	// One stack buffer instead of a Write per part: each would allocate.
	var stack [256]byte
	buf := stack[:0]
	for i, s := range parts {
		if i > 0 {
			buf = append(buf, ':')
		}
		buf = append(buf, s...)
	}
	sum := md5.Sum(buf)
	return hex.EncodeToString(sum[:])
}

// digestResponse computes the expected response for p, given the password,
// the request method and, for qop=auth-int, the body. ok is false for an
// algorithm or qop this server does not implement.
func digestResponse(p digestParams, password, method string, body []byte) (string, bool) {
	ha1 := md5Hex(p.username, p.realm, password)
	switch strings.ToUpper(p.algorithm) {
	case "", "MD5":
	case "MD5-SESS":
		ha1 = md5Hex(ha1, p.nonce, p.cnonce)
	default:
		return "", false
	}
	var ha2 string
	switch p.qop {
	case "", "auth":
		ha2 = md5Hex(method, p.uri)
	case "auth-int":
		sum := md5.Sum(body)
		ha2 = md5Hex(method, p.uri, hex.EncodeToString(sum[:]))
	default:
		return "", false
	}
	if p.qop == "" {
		// RFC 2069 compatibility: old stacks that ignore qop.
		return md5Hex(ha1, p.nonce, ha2), true
	}
	return md5Hex(ha1, p.nonce, p.nc, p.cnonce, p.qop, ha2), true
}

// digestURIMatches reports whether the uri of the credentials names the
// requested resource. CPEs send the path, the path with query, or the
// absolute URL. An absolute URL must name this ACS: the request's Host (or,
// with its port, the host of an absolute request line, which Go puts in
// r.Host) or one of acsHosts; otherwise a response computed for another
// server, whose operator may have captured it, would be accepted here.
// Paths and queries must match.
func digestURIMatches(uri string, r *http.Request, acsHosts map[string]bool) bool {
	u, err := url.Parse(uri)
	if err != nil || u.User != nil || u.Fragment != "" {
		return false
	}
	if u.Scheme != "" || u.Host != "" {
		if !strings.EqualFold(u.Scheme, "http") && !strings.EqualFold(u.Scheme, "https") {
			return false
		}
		if !sameHost(u, r, acsHosts) {
			return false
		}
	} else if uri == r.RequestURI {
		return true
	}
	req := r.URL
	path := u.Path
	if path == "" {
		path = "/"
	}
	want := req.Path
	if want == "" {
		want = "/"
	}
	return path == want && u.RawQuery == req.RawQuery
}

// sameHost reports whether the absolute URL u names the host the request
// was sent to, or a configured ACS host name. Names compare without regard
// to case and to a trailing dot; ports compare with the scheme's default
// filled in.
func sameHost(u *url.URL, r *http.Request, acsHosts map[string]bool) bool {
	name, port := hostPort(u.Host, u.Scheme)
	if name == "" {
		return false
	}
	defScheme := "http"
	if r.TLS != nil {
		defScheme = "https"
	}
	if rn, rp := hostPort(r.Host, defScheme); rn == name && rp == port {
		return true
	}
	return acsHosts[name] || acsHosts[net.JoinHostPort(name, port)]
}

// hostPort splits a URL or Host header host into a normalised name and a
// port, the scheme's default when absent.
func hostPort(hostport, scheme string) (string, string) {
	name, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		name, port = h, p
	}
	name = strings.ToLower(strings.TrimSuffix(strings.Trim(name, "[]"), "."))
	if port == "" {
		port = "80"
		if strings.EqualFold(scheme, "https") {
			port = "443"
		}
	}
	return name, port
}

// verifyDigest checks the credentials p against password for a request.
func verifyDigest(p digestParams, password, method string, body []byte) bool {
	want, ok := digestResponse(p, password, method, body)
	if !ok {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(p.response)) == 1
}

// parseBasic reads the credentials of an Authorization: Basic header.
func parseBasic(h string) (user, pass string, ok bool) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", false
	}
	user, pass, ok = strings.Cut(string(raw), ":")
	return user, pass, ok
}

// equalSecret compares two secrets in constant time (for equal lengths).
func equalSecret(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// DerivePassword returns the onboarding password of a CPE user name under a
// shared onboarding secret: the lower-case hex HMAC-SHA256 of the user name
// keyed by the secret (64 characters, within ManagementServer.Password's 256).
// Factories and provisioning tools compute it the same way to give every CPE
// its own password without a per-device database; the gateway accepts it
// only with a user name that names the device (see auth.go).
func DerivePassword(secret, username string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(username))
	return hex.EncodeToString(m.Sum(nil))
}
