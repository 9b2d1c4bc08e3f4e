package gateway

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// CPE authentication (DESIGN §2 step 2, §5; notes §4.2).
//
// Credentials are resolved per device, in this order:
//  1. a TLS client certificate that verified against gateway.tls-client-ca-file;
//  2. the device's own credentials from the Credentials port (scope device);
//     when the device has them, nothing else is accepted for it, so that
//     provisioning per-device credentials retires the onboarding ones;
//  3. the shared onboarding user name and password (scope shared);
//  4. a password derived from the onboarding secret, DerivePassword(secret,
//     username) (scope shared), with a user name that names the device: its
//     SerialNumber, "<OUI>-<SerialNumber>" or its device key, compared
//     without regard to case. Binding the user name to the device keeps a
//     CPE that knows its own derived password from posing as another.
//
// A session is challenged once: its later requests are accepted on the
// strength of its cookie or connection (AuthSession) and need not carry
// Authorization, though CPEs that send it on every request are welcome.

type authenticator struct {
	digest, basic    bool
	basicOverHTTP    bool
	anonymous        bool
	realm            string
	nonces           nonceMinter
	sharedUser       string
	sharedPass       string
	onboardingSecret string
	creds            Credentials
	now              func() time.Time
}

// authInput is what authentication looks at besides the HTTP request.
type authInput struct {
	body      []byte
	tls       bool
	tenant    string
	deviceKey string
	// deviceID is the Inform's, when the request carries one.
	deviceID *cwmp.DeviceID
	// principal, when set, is the user name the request's session started
	// with: the credentials must be that user's.
	principal string
}

type authVerdict int

const (
	// verdictOK: authenticated (or anonymous where allowed).
	verdictOK authVerdict = iota
	// verdictChallenge: no usable credentials; answer 401.
	verdictChallenge
	// verdictStale: right credentials on an expired nonce; 401 stale=true.
	verdictStale
	// verdictFailed: wrong credentials; 401.
	verdictFailed
)

// authenticate decides whether r may proceed and as whom.
func (a *authenticator) authenticate(ctx context.Context, r *http.Request, in authInput) (Auth, authVerdict, error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		return Auth{Method: AuthClientCertificate, Principal: certPrincipal(r.TLS.VerifiedChains[0][0])}, verdictOK, nil
	}
	h := r.Header.Get("Authorization")
	switch scheme, _, _ := strings.Cut(strings.TrimSpace(h), " "); {
	case a.digest && strings.EqualFold(scheme, "Digest"):
		return a.checkDigest(ctx, r, h, in)
	case a.basic && strings.EqualFold(scheme, "Basic") && (in.tls || a.basicOverHTTP):
		return a.checkBasic(ctx, h, in)
	}
	// No credentials this server accepts on this connection (Basic over
	// plain HTTP lands here too and gets a Digest challenge).
	if a.anonymous {
		return Auth{Method: AuthNone}, verdictOK, nil
	}
	return Auth{}, verdictChallenge, nil
}

func (a *authenticator) checkDigest(ctx context.Context, r *http.Request, h string, in authInput) (Auth, authVerdict, error) {
	p, err := parseDigest(h)
	if err != nil || p.userhash || p.realm != a.realm || !digestURIMatches(p.uri, r.URL, r.RequestURI) {
		return Auth{Principal: p.username}, verdictFailed, nil
	}
	cands, err := a.candidates(ctx, p.username, in)
	if err != nil {
		return Auth{}, verdictFailed, err
	}
	for _, c := range cands {
		if !verifyDigest(p, c.password, r.Method, in.body) {
			continue
		}
		auth := Auth{Method: AuthDigest, Principal: p.username, Scope: c.scope}
		if a.nonces.check(p.nonce, a.now()) != nonceFresh {
			// The password was right: ask for a retry with a new nonce
			// rather than reporting a wrong password (RFC 7616 stale).
			return auth, verdictStale, nil
		}
		return auth, verdictOK, nil
	}
	return Auth{Principal: p.username}, verdictFailed, nil
}

func (a *authenticator) checkBasic(ctx context.Context, h string, in authInput) (Auth, authVerdict, error) {
	user, pass, ok := parseBasic(h)
	if !ok {
		return Auth{}, verdictFailed, nil
	}
	cands, err := a.candidates(ctx, user, in)
	if err != nil {
		return Auth{}, verdictFailed, err
	}
	for _, c := range cands {
		if equalSecret(c.password, pass) {
			return Auth{Method: AuthBasic, Principal: user, Scope: c.scope}, verdictOK, nil
		}
	}
	return Auth{Principal: user}, verdictFailed, nil
}

type candidate struct {
	password string
	scope    CredentialScope
}

// candidates returns the passwords username may authenticate with for the
// device of in, most specific first.
func (a *authenticator) candidates(ctx context.Context, username string, in authInput) ([]candidate, error) {
	if in.principal != "" && username != in.principal {
		return nil, nil
	}
	if a.creds != nil && in.deviceKey != "" {
		c, ok, err := a.creds.CPECredentials(ctx, in.tenant, in.deviceKey)
		if err != nil {
			return nil, fmt.Errorf("look up CPE credentials: %w", err)
		}
		if ok {
			if c.Username != username {
				return nil, nil
			}
			return []candidate{{c.Password, ScopeDevice}}, nil
		}
	}
	var out []candidate
	if a.sharedUser != "" && username == a.sharedUser {
		out = append(out, candidate{a.sharedPass, ScopeShared})
	}
	if a.onboardingSecret != "" && (in.principal != "" || usernameNamesDevice(username, in.deviceKey, in.deviceID)) {
		out = append(out, candidate{DerivePassword(a.onboardingSecret, username), ScopeShared})
	}
	return out, nil
}

// usernameNamesDevice reports whether a derived-password user name belongs
// to the device: its serial number, "<OUI>-<serial>" or its device key.
func usernameNamesDevice(username, deviceKey string, id *cwmp.DeviceID) bool {
	if username == "" {
		return false
	}
	if deviceKey != "" && strings.EqualFold(username, deviceKey) {
		return true
	}
	if id == nil {
		return false
	}
	serial := strings.TrimSpace(id.SerialNumber)
	if serial == "" {
		return false
	}
	return strings.EqualFold(username, serial) ||
		strings.EqualFold(username, strings.TrimSpace(id.OUI)+"-"+serial)
}

// challenge writes the 401 answer with the schemes this connection offers.
func (a *authenticator) challenge(w http.ResponseWriter, tls, stale bool) {
	h := w.Header()
	if a.digest {
		v := `Digest realm="` + a.realm + `", qop="auth", algorithm=MD5, nonce="` + a.nonces.mint(a.now()) + `"`
		if stale {
			v += ", stale=true"
		}
		h.Add("WWW-Authenticate", v)
	}
	if a.basic && (tls || a.basicOverHTTP) {
		h.Add("WWW-Authenticate", `Basic realm="`+a.realm+`"`)
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusUnauthorized)
}

// certPrincipal names a CPE by its client certificate: the subject's common
// name, or the whole subject when it has none.
func certPrincipal(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}
