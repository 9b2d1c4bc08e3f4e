package sim

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"strconv"
	"strings"
	"time"
)

// HTTP authentication as a client (CPE to ACS, docs/protocol.md §4.2) and as a server
// (connection requests, docs/protocol.md §8.1): RFC 7616 Digest with MD5, MD5-sess or
// SHA-256, qop=auth (or no qop, RFC 2069 style), and Basic.

// challenge is one WWW-Authenticate challenge.
type challenge struct {
	scheme    string // "digest" or "basic", lower case
	realm     string
	nonce     string
	opaque    string
	algorithm string
	qop       string // "auth" when offered, "" for none
	stale     bool
}

// parseChallenges reads every challenge of the WWW-Authenticate header
// lines. A line may hold several challenges separated by commas, which is
// ambiguous with the commas between parameters: a token followed by a
// space and then a token with "=" starts a new challenge.
func parseChallenges(lines []string) []challenge {
	var out []challenge
	for _, line := range lines {
		s := strings.TrimSpace(line)
		for s != "" {
			sp := strings.IndexAny(s, " \t")
			scheme := s
			rest := ""
			if sp >= 0 {
				scheme, rest = s[:sp], strings.TrimLeft(s[sp:], " \t")
			}
			ch := challenge{scheme: strings.ToLower(strings.TrimRight(scheme, ","))}
			params, remain := splitAuthParams(rest)
			var qops string
			for k, v := range params {
				switch k {
				case "realm":
					ch.realm = v
				case "nonce":
					ch.nonce = v
				case "opaque":
					ch.opaque = v
				case "algorithm":
					ch.algorithm = v
				case "qop":
					qops = v
				case "stale":
					ch.stale = strings.EqualFold(v, "true")
				}
			}
			for _, q := range strings.Split(qops, ",") {
				if strings.EqualFold(strings.TrimSpace(q), "auth") {
					ch.qop = "auth"
				}
			}
			out = append(out, ch)
			s = strings.TrimLeft(remain, " \t,")
		}
	}
	return out
}

// splitAuthParams parses key=value pairs (values quoted or tokens) until
// the input ends or a new challenge starts; it returns the pairs and the
// unparsed rest.
func splitAuthParams(s string) (map[string]string, string) {
	params := map[string]string{}
	for {
		s = strings.TrimLeft(s, " \t,")
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return params, s
		}
		key := strings.TrimSpace(s[:eq])
		if strings.ContainsAny(key, " \t") {
			// "Basic realm=..." after a comma: a new challenge.
			return params, s
		}
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(s); i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
					b.WriteByte(s[i])
					continue
				}
				if s[i] == '"' {
					break
				}
				b.WriteByte(s[i])
			}
			val = b.String()
			if i < len(s) {
				i++
			}
			s = s[i:]
		} else {
			end := strings.IndexAny(s, ", \t")
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
		}
		params[strings.ToLower(key)] = val
	}
}

// pickChallenge prefers Digest (with an algorithm the client supports) to
// Basic; ok is false when there is nothing usable.
func pickChallenge(chs []challenge) (challenge, bool) {
	var basic *challenge
	for i := range chs {
		c := chs[i]
		switch c.scheme {
		case "digest":
			if digestHash(c.algorithm) != nil {
				return c, true
			}
		case "basic":
			if basic == nil {
				basic = &chs[i]
			}
		}
	}
	if basic != nil {
		return *basic, true
	}
	return challenge{}, false
}

// digestHash returns the hash of an algorithm name, nil if unsupported.
func digestHash(alg string) func() hash.Hash {
	switch strings.ToUpper(strings.TrimSuffix(strings.ToUpper(alg), "-SESS")) {
	case "", "MD5":
		return md5.New
	case "SHA-256":
		return sha256.New
	}
	return nil
}

func hexHash(newHash func() hash.Hash, parts ...string) string {
	h := newHash()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{':'})
		}
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// authState answers challenges for one set of credentials and keeps the
// last challenge so later requests authenticate without a new 401.
type authState struct {
	user, pass string
	ch         challenge
	nc         uint32
	cnonce     string
}

// header returns the Authorization header for a request, "" when no
// challenge has been seen.
func (a *authState) header(method, uri string) string {
	switch a.ch.scheme {
	case "basic":
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(a.user+":"+a.pass))
	case "digest":
		return a.digest(method, uri)
	}
	return ""
}

func (a *authState) digest(method, uri string) string {
	newHash := digestHash(a.ch.algorithm)
	a.nc++
	if a.cnonce == "" {
		a.cnonce = randomToken(8)
	}
	ha1 := hexHash(newHash, a.user, a.ch.realm, a.pass)
	if strings.HasSuffix(strings.ToUpper(a.ch.algorithm), "-SESS") {
		ha1 = hexHash(newHash, ha1, a.ch.nonce, a.cnonce)
	}
	ha2 := hexHash(newHash, method, uri)
	nc := strconv.FormatUint(uint64(a.nc)|1<<32, 16)[1:] // 8 hex digits
	var resp string
	if a.ch.qop == "auth" {
		resp = hexHash(newHash, ha1, a.ch.nonce, nc, a.cnonce, "auth", ha2)
	} else {
		resp = hexHash(newHash, ha1, a.ch.nonce, ha2)
	}
	var b strings.Builder
	b.Grow(256)
	b.WriteString(`Digest username="`)
	b.WriteString(quoteEscape(a.user))
	b.WriteString(`", realm="`)
	b.WriteString(quoteEscape(a.ch.realm))
	b.WriteString(`", nonce="`)
	b.WriteString(quoteEscape(a.ch.nonce))
	b.WriteString(`", uri="`)
	b.WriteString(quoteEscape(uri))
	b.WriteString(`", response="`)
	b.WriteString(resp)
	b.WriteByte('"')
	if a.ch.algorithm != "" {
		b.WriteString(", algorithm=")
		b.WriteString(a.ch.algorithm)
	}
	if a.ch.opaque != "" {
		b.WriteString(`, opaque="`)
		b.WriteString(quoteEscape(a.ch.opaque))
		b.WriteByte('"')
	}
	if a.ch.qop == "auth" {
		b.WriteString(`, qop=auth, nc=`)
		b.WriteString(nc)
		b.WriteString(`, cnonce="`)
		b.WriteString(a.cnonce)
		b.WriteByte('"')
	}
	return b.String()
}

func quoteEscape(s string) string {
	if !strings.ContainsAny(s, `"\`) {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ---- server side, for connection requests

// digestServer checks Digest credentials with stateless nonces: a nonce is
// its issue time plus an HMAC of it under a per-simulator secret, so no
// nonce table grows with the number of devices and requests.
type digestServer struct {
	realm    string
	secret   []byte
	lifetime time.Duration
}

func newDigestServer(realm string) *digestServer {
	secret := make([]byte, 32)
	rand.Read(secret)
	return &digestServer{realm: realm, secret: secret, lifetime: 5 * time.Minute}
}

func (s *digestServer) nonce(now time.Time) string {
	var raw [8 + 16]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now.UnixNano()))
	m := hmac.New(sha256.New, s.secret)
	m.Write(raw[:8])
	copy(raw[8:], m.Sum(nil))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// nonceFresh reports whether the nonce is one this server issued within
// its lifetime.
func (s *digestServer) nonceFresh(nonce string, now time.Time) bool {
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != 24 {
		return false
	}
	m := hmac.New(sha256.New, s.secret)
	m.Write(raw[:8])
	if !hmac.Equal(raw[8:], m.Sum(nil)[:16]) {
		return false
	}
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(raw[:8])))
	return now.Sub(issued) < s.lifetime && issued.Sub(now) < time.Minute
}

// challengeHeader is the WWW-Authenticate value of a 401.
func (s *digestServer) challengeHeader(now time.Time, stale bool) string {
	h := `Digest realm="` + s.realm + `", qop="auth", algorithm=MD5, nonce="` + s.nonce(now) + `"`
	if stale {
		h += ", stale=true"
	}
	return h
}

// verify checks an Authorization header for method and the credentials.
// stale reports a correct response to an expired nonce.
func (s *digestServer) verify(authz, method, user, pass string, now time.Time) (ok, stale bool) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(authz), " ")
	if !strings.EqualFold(scheme, "Digest") {
		return false, false
	}
	p, _ := splitAuthParams(rest)
	if p["username"] != user || p["realm"] != s.realm {
		return false, false
	}
	newHash := digestHash(p["algorithm"])
	if newHash == nil {
		return false, false
	}
	ha1 := hexHash(newHash, user, s.realm, pass)
	if strings.HasSuffix(strings.ToUpper(p["algorithm"]), "-SESS") {
		ha1 = hexHash(newHash, ha1, p["nonce"], p["cnonce"])
	}
	ha2 := hexHash(newHash, method, p["uri"])
	var want string
	if p["qop"] != "" {
		want = hexHash(newHash, ha1, p["nonce"], p["nc"], p["cnonce"], p["qop"], ha2)
	} else {
		want = hexHash(newHash, ha1, p["nonce"], ha2)
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(p["response"]))) != 1 {
		return false, false
	}
	if !s.nonceFresh(p["nonce"], now) {
		return false, true
	}
	return true, false
}
