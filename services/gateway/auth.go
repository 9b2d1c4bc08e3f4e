package gateway

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fleetacs/fleetacs/pkg/authstate"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// CPE authentication (docs/design.md §2 step 2, §5; docs/protocol.md §4.2;
// the operator's view is in docs/security.md).
//
// Credentials are resolved per device, in this order:
//  1. a TLS client certificate that verified against gateway.tls-client-ca-file
//     and whose common name names the device as a derived password's user
//     name must (4 below), unless gateway.tls-client-cert-devices=any;
//  2. the device's own credentials from the Credentials port (scope device);
//     when the device has them, nothing else is accepted for it, so that
//     provisioning per-device credentials retires the onboarding ones;
//  3. the shared onboarding user name and password (scope shared);
//  4. a password derived from the onboarding secret, DerivePassword(secret,
//     username) (scope shared), with a user name that names the device: its
//     SerialNumber, "<OUI>-<SerialNumber>" or its device key, compared
//     exactly. Binding the user name to the device keeps a CPE that knows
//     its own derived password from posing as another (case folding would
//     let serial "abc" pose as "ABC").
//
// With gateway.auth-shared-scope=onboarding, 3 and 4 authenticate only
// devices the inventory does not know yet or registered less than
// gateway.auth-onboarding-window ago.
//
// Every password check is guarded (AuthGuard): before it, the attempt's
// (source address, user name) pair, source and user name are looked up, and
// a blocked attempt is answered 503 with Retry-After without looking at the
// password; after it, a failure is counted and a success clears the pair.
// A Digest response that verifies must also carry a nonce count greater
// than every one used with its nonce (NonceCounts): a replayed header gets
// 401 stale=true with a fresh nonce, as does a CPE that starts again at
// nc=1, which then simply answers the new challenge.
//
// A session is challenged once: its later requests are accepted on the
// strength of its cookie or connection (AuthSession), bound to the address
// and principal that opened it (binding.go), and need not carry
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
	// onboardingOnly restricts the shared-scope credentials to devices
	// registered less than onboardingWindow ago (or unknown).
	onboardingOnly   bool
	onboardingWindow time.Duration
	// certAnyDevice lets a client certificate authenticate any device,
	// not only the one its common name names.
	certAnyDevice bool
	acsHosts      map[string]bool
	creds         Credentials
	counts        NonceCounts
	guard         AuthGuard
	policy        authstate.Policy
	now           func() time.Time
}

// authInput is what authentication looks at besides the HTTP request.
type authInput struct {
	body []byte
	tls  bool
	// source is the CPE's address, the key of failure back-off.
	source    string
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
	// verdictStale: right credentials on an expired nonce, or a nonce count
	// already used; 401 stale=true.
	verdictStale
	// verdictFailed: wrong credentials; 401.
	verdictFailed
	// verdictBlocked: too many failures; 503 with Retry-After, password
	// unchecked.
	verdictBlocked
)

// authResult is the outcome of authenticate.
type authResult struct {
	auth    Auth
	verdict authVerdict
	// wait and limit say, for verdictBlocked, for how long and by which
	// limit.
	wait  time.Duration
	limit authstate.Kind
}

// authenticate decides whether r may proceed and as whom. An error means a
// store it needs (credentials, nonce counts, failure counts) did not
// answer: the caller answers 503 rather than skipping a check.
func (a *authenticator) authenticate(ctx context.Context, r *http.Request, in authInput) (authResult, error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		p := certPrincipal(r.TLS.VerifiedChains[0][0])
		// A certificate vouches for the device it names: a CPE holding
		// its own must not pose as another (nor get around the other's
		// per-device credentials). A request of a session already open
		// with it (in.principal) had its device checked at the Inform;
		// one that names no device opens nothing a device owns.
		noDevice := in.deviceKey == "" && in.deviceID == nil
		if a.certAnyDevice || in.principal != "" || noDevice || usernameNamesDevice(p, in.deviceKey, in.deviceID) {
			return authResult{auth: Auth{Method: AuthClientCertificate, Principal: p}}, nil
		}
		return authResult{auth: Auth{Method: AuthClientCertificate, Principal: p}, verdict: verdictFailed}, nil
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
		return authResult{auth: Auth{Method: AuthNone}}, nil
	}
	return authResult{verdict: verdictChallenge}, nil
}

// guarded runs check, the password check of an attempt by user, under the
// failure back-off: not at all while the attempt is blocked; a failure is
// counted, a success recorded.
func (a *authenticator) guarded(ctx context.Context, in authInput, user string, check func() (authResult, error)) (authResult, error) {
	at := authstate.Attempt{Source: in.source, User: user}
	st, err := a.guard.Check(ctx, a.policy, at)
	if err != nil {
		return authResult{}, fmt.Errorf("check authentication back-off: %w", err)
	}
	if st.Wait > 0 {
		return authResult{auth: Auth{Principal: user}, verdict: verdictBlocked, wait: st.Wait, limit: st.Limit}, nil
	}
	res, err := check()
	if err != nil {
		return res, err
	}
	switch res.verdict {
	case verdictFailed:
		if st, err := a.guard.Fail(ctx, a.policy, at); err == nil && st.Wait > 0 {
			// Tell the CPE now rather than at its next attempt.
			res.wait, res.limit = st.Wait, st.Limit
		}
		// A failure that could not be recorded still fails; the next
		// attempt's Check meets the same outage and gets a 503.
	case verdictOK:
		if !st.Settled {
			// Best effort: a success not recorded leaves the pair's
			// failures counted a while longer, nothing worse.
			_ = a.guard.Succeed(ctx, a.policy, at)
		}
	}
	return res, nil
}

func (a *authenticator) checkDigest(ctx context.Context, r *http.Request, h string, in authInput) (authResult, error) {
	p, perr := parseDigest(h)
	return a.guarded(ctx, in, p.username, func() (authResult, error) {
		failed := authResult{auth: Auth{Principal: p.username}, verdict: verdictFailed}
		if perr != nil || p.userhash || p.realm != a.realm || !digestURIMatches(p.uri, r, a.acsHosts) {
			return failed, nil
		}
		cands, err := a.candidates(ctx, p.username, in)
		if err != nil {
			return authResult{}, err
		}
		for _, c := range cands {
			if !verifyDigest(p, c.password, r.Method, in.body) {
				continue
			}
			res := authResult{auth: Auth{Method: AuthDigest, Principal: p.username, Scope: c.scope}}
			state, expires := a.nonces.check(p.nonce, a.now())
			if state != nonceFresh {
				// The password was right: ask for a retry with a new
				// nonce rather than reporting a wrong password (RFC 7616
				// stale).
				res.verdict = verdictStale
				return res, nil
			}
			nc, ok := nonceCount(p)
			if !ok {
				return failed, nil
			}
			advanced, err := a.counts.Advance(ctx, p.nonce, nc, expires)
			if err != nil {
				return authResult{}, fmt.Errorf("track Digest nonce count: %w", err)
			}
			if !advanced {
				// A count already used: a replayed header, or a CPE that
				// starts again at nc=1 on a nonce it used before. Either
				// way a fresh nonce is the answer; only the CPE can
				// answer it.
				res.verdict = verdictStale
			}
			return res, nil
		}
		return failed, nil
	})
}

func (a *authenticator) checkBasic(ctx context.Context, h string, in authInput) (authResult, error) {
	user, pass, ok := parseBasic(h)
	return a.guarded(ctx, in, user, func() (authResult, error) {
		failed := authResult{auth: Auth{Principal: user}, verdict: verdictFailed}
		if !ok {
			return failed, nil
		}
		cands, err := a.candidates(ctx, user, in)
		if err != nil {
			return authResult{}, err
		}
		for _, c := range cands {
			if equalSecret(c.password, pass) {
				return authResult{auth: Auth{Method: AuthBasic, Principal: user, Scope: c.scope}}, nil
			}
		}
		return failed, nil
	})
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
		dc, err := a.creds.CPECredentials(ctx, in.tenant, in.deviceKey)
		if err != nil {
			return nil, fmt.Errorf("look up CPE credentials: %w", err)
		}
		if c := dc.Own; c != nil {
			if c.Username != username {
				return nil, nil
			}
			return []candidate{{c.Password, ScopeDevice}}, nil
		}
		if a.onboardingOnly && dc.Known && !a.now().Before(dc.Registered.Add(a.onboardingWindow)) {
			// Past onboarding: the device should have credentials of
			// its own by now, and the shared ones no longer vouch for
			// it.
			return nil, nil
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
// to the device: exactly its serial number, "<OUI>-<serial>" or its device
// key.
func usernameNamesDevice(username, deviceKey string, id *cwmp.DeviceID) bool {
	if username == "" {
		return false
	}
	if deviceKey != "" && username == deviceKey {
		return true
	}
	if id == nil {
		return false
	}
	serial := strings.TrimSpace(id.SerialNumber)
	if serial == "" {
		return false
	}
	return username == serial || username == strings.TrimSpace(id.OUI)+"-"+serial
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

// credsKind is what credentials a request presents.
type credsKind int

const (
	credsNone credsKind = iota
	// credsCert: a verified TLS client certificate.
	credsCert
	// credsHeader: a Digest or Basic Authorization header.
	credsHeader
	// credsMalformed: an Authorization header of those schemes that does
	// not parse; it names nobody.
	credsMalformed
)

// presentedPrincipal returns who the request's credentials claim to be,
// without checking them: the verified client certificate's principal, else
// the user name of a Digest or Basic Authorization header, whether or not
// this server accepts the scheme.
func presentedPrincipal(r *http.Request) (string, credsKind) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		return certPrincipal(r.TLS.VerifiedChains[0][0]), credsCert
	}
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	scheme, _, _ := strings.Cut(h, " ")
	switch {
	case strings.EqualFold(scheme, "Digest"):
		p, err := parseDigest(h)
		if err != nil {
			return "", credsMalformed
		}
		return p.username, credsHeader
	case strings.EqualFold(scheme, "Basic"):
		user, _, ok := parseBasic(h)
		if !ok {
			return "", credsMalformed
		}
		return user, credsHeader
	}
	// None, or a scheme CPEs do not use (Bearer...): no CPE credentials.
	return "", credsNone
}

// certPrincipal names a CPE by its client certificate: the subject's common
// name, or the whole subject when it has none.
func certPrincipal(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}
