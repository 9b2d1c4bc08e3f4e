package gateway

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"time"
)

// HTTP Digest (RFC 7616 with MD5, the RFC 2617 subset CPEs implement) and
// Basic, on the ACS side.
//
// Nonces carry their issue time and an HMAC of it under the nonce secret, so
// any replica sharing the secret can check them without state: a CPE that
// reconnects after the 401 (most do, notes §4.2), or lands on another
// replica, still authenticates. The price of statelessness is that a
// captured Authorization header can be replayed until its nonce goes stale
// (gateway.auth-nonce-lifetime); with qop=auth the replay is tied to the
// request URI only, so keep the lifetime short and use TLS where that
// matters.

const nonceMACSize = 16

// nonceMinter issues and checks Digest nonces.
type nonceMinter struct {
	secret   []byte
	realm    string
	lifetime time.Duration
}

func (n *nonceMinter) mac(issued uint64) []byte {
	m := hmac.New(sha256.New, n.secret)
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], issued)
	m.Write([]byte("fleetacs digest nonce\x00"))
	m.Write([]byte(n.realm))
	m.Write([]byte{0})
	m.Write(ts[:])
	return m.Sum(nil)[:nonceMACSize]
}

// mint returns a nonce issued at now.
func (n *nonceMinter) mint(now time.Time) string {
	issued := uint64(now.UnixNano())
	var raw [8 + nonceMACSize]byte
	binary.BigEndian.PutUint64(raw[:8], issued)
	copy(raw[8:], n.mac(issued))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

type nonceState int

const (
	nonceInvalid nonceState = iota
	nonceFresh
	nonceStale
)

// check tells a nonce this realm issued and that is still fresh from a stale
// one and from one it never issued.
func (n *nonceMinter) check(nonce string, now time.Time) nonceState {
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != 8+nonceMACSize {
		return nonceInvalid
	}
	issued := binary.BigEndian.Uint64(raw[:8])
	if !hmac.Equal(raw[8:], n.mac(issued)) {
		return nonceInvalid
	}
	age := now.Sub(time.Unix(0, int64(issued)))
	switch {
	case age < -time.Minute: // issued in the future: another replica's clock, within reason
		return nonceInvalid
	case age > n.lifetime:
		return nonceStale
	}
	return nonceFresh
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
// absolute URL, so compare paths and queries only.
func digestURIMatches(uri string, req *url.URL, requestURI string) bool {
	if uri == requestURI {
		return true
	}
	u, err := url.Parse(uri)
	if err != nil {
		return false
	}
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
