package notifier

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"strings"
)

// HTTP authentication as the client of a CPE's connection-request
// listener (docs/protocol.md §8.1): RFC 7616 Digest (MD5, SHA-256 and their
// -sess variants; qop=auth, auth-int when only it is offered, or no qop
// as in RFC 2069) and, when policy allows it, Basic.

// authChallenge is one WWW-Authenticate challenge.
type authChallenge struct {
	scheme    string // lower case
	realm     string
	nonce     string
	opaque    string
	algorithm string
	qopAuth   bool // "auth" was among the offered qop values
	// qopAuthInt: "auth-int" was; answered only when "auth" was not.
	qopAuthInt bool
	// stale is stale=true: the nonce had expired, the credentials were
	// right (RFC 7616 §3.3).
	stale bool
}

// maxChallengeBytes bounds the WWW-Authenticate text considered: a real
// challenge is a few hundred bytes.
const maxChallengeBytes = 4 << 10

// parseChallenges reads the challenges of WWW-Authenticate header values.
// One value may hold several challenges: a token followed by white space
// and then name=value starts a new one.
func parseChallenges(values []string) []authChallenge {
	var out []authChallenge
	total := 0
	for _, v := range values {
		total += len(v)
		if total > maxChallengeBytes {
			break
		}
		s := strings.TrimSpace(v)
		for s != "" && len(out) < 8 {
			scheme, rest, _ := strings.Cut(s, " ")
			scheme = strings.TrimRight(scheme, ",")
			if scheme == "" {
				s = strings.TrimLeft(s, " \t,")
				continue
			}
			c := authChallenge{scheme: strings.ToLower(scheme)}
			params, remain := authParams(rest)
			c.realm, c.nonce, c.opaque, c.algorithm = params["realm"], params["nonce"], params["opaque"], params["algorithm"]
			c.stale = strings.EqualFold(params["stale"], "true")
			for _, q := range strings.Split(params["qop"], ",") {
				switch strings.ToLower(strings.TrimSpace(q)) {
				case "auth":
					c.qopAuth = true
				case "auth-int":
					c.qopAuthInt = true
				}
			}
			out = append(out, c)
			if len(remain) >= len(s) {
				break
			}
			s = strings.TrimLeft(remain, " \t,")
		}
	}
	return out
}

// authParams reads name=value pairs (quoted strings or tokens) until the
// text ends or a new challenge starts, and returns the rest.
func authParams(s string) (map[string]string, string) {
	p := map[string]string{}
	for {
		s = strings.TrimLeft(s, " \t,")
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsAny(strings.TrimSpace(s[:eq]), " \t,") {
			return p, s
		}
		name := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
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
		if len(p) < 32 {
			p[name] = val
		}
	}
}

// digestAlgorithm returns the hash of a Digest algorithm and whether it is
// a -sess variant; nil for an algorithm not supported.
func digestAlgorithm(alg string) (func() hash.Hash, bool) {
	a := strings.ToUpper(alg)
	sess := strings.HasSuffix(a, "-SESS")
	switch strings.TrimSuffix(a, "-SESS") {
	case "", "MD5":
		return md5.New, sess
	case "SHA-256":
		return sha256.New, sess
	}
	return nil, false
}

// pickChallenge chooses what to answer: Digest with SHA-256 over Digest
// with MD5, and Basic only when allowBasic. ok is false when nothing
// offered is acceptable.
func pickChallenge(chs []authChallenge, allowBasic bool) (authChallenge, bool) {
	var best *authChallenge
	rank := func(c authChallenge) int {
		if c.scheme == "digest" {
			h, _ := digestAlgorithm(c.algorithm)
			if h == nil {
				return 0
			}
			if strings.HasPrefix(strings.ToUpper(c.algorithm), "SHA-256") {
				return 3
			}
			return 2
		}
		if c.scheme == "basic" && allowBasic {
			return 1
		}
		return 0
	}
	for i := range chs {
		if r := rank(chs[i]); r > 0 && (best == nil || r > rank(*best)) {
			best = &chs[i]
		}
	}
	if best == nil {
		return authChallenge{}, false
	}
	return *best, true
}

func hexDigest(newHash func() hash.Hash, parts ...string) string {
	h := newHash()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{':'})
		}
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// authorization returns the Authorization header answering c for a GET of
// uri. c must come from pickChallenge.
func authorization(c authChallenge, user, pass, method, uri string) string {
	if c.scheme == "basic" {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	newHash, sess := digestAlgorithm(c.algorithm)
	cnonce := randomHex(12)
	ha1 := hexDigest(newHash, user, c.realm, pass)
	if sess {
		ha1 = hexDigest(newHash, ha1, c.nonce, cnonce)
	}
	ha2 := hexDigest(newHash, method, uri)
	// A CPE that offers qop but not "auth" wants "auth-int", whose A2 also
	// holds the hash of the request's body, empty for a connection
	// request (RFC 7616 §3.4.3, docs/protocol.md §8.1); without qop the
	// answer is RFC 2069's.
	qop := ""
	switch {
	case c.qopAuth:
		qop = "auth"
	case c.qopAuthInt:
		qop = "auth-int"
		ha2 = hexDigest(newHash, method, uri, hexDigest(newHash, ""))
	}
	const nc = "00000001"
	var response string
	if qop != "" {
		response = hexDigest(newHash, ha1, c.nonce, nc, cnonce, qop, ha2)
	} else {
		response = hexDigest(newHash, ha1, c.nonce, ha2)
	}
	var b strings.Builder
	b.WriteString(`Digest username="` + quoted(user) + `", realm="` + quoted(c.realm) + `", nonce="` + quoted(c.nonce) +
		`", uri="` + quoted(uri) + `", response="` + response + `"`)
	if c.algorithm != "" {
		b.WriteString(", algorithm=" + c.algorithm)
	}
	if c.opaque != "" {
		b.WriteString(`, opaque="` + quoted(c.opaque) + `"`)
	}
	switch {
	case qop != "":
		b.WriteString(`, qop=` + qop + `, nc=` + nc + `, cnonce="` + cnonce + `"`)
	case sess:
		// RFC 2617 has no qop-less -sess answer, but its A1 holds the
		// cnonce: without it the CPE could not check the response.
		b.WriteString(`, cnonce="` + cnonce + `"`)
	}
	return b.String()
}

func quoted(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", "", "\n", "").Replace(s)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
