package gateway

import (
	"net/http"
	"strconv"
	"time"
)

// AuthenticateDevice checks that a request for a file under /files/ comes
// from the device deviceKey of tenant (the device a download URL was
// signed for), with the credentials that device uses on this listener
// (docs/files.md, "Who may download"): its own password (Digest, or Basic
// where Basic is allowed), a client certificate naming it, or a password
// derived from the onboarding secret for a user name that names it.
// Credentials shared by many devices, and no credentials on an anonymous
// gateway, vouch for no device: 403. When it returns false it has answered
// the request: 401 with a challenge (no or wrong credentials, or a stale
// nonce), 403, or 503 (a store it needs failed, or the source is blocked
// after repeated failures). Failures count towards the same back-off as
// CWMP requests.
func (s *Service) AuthenticateDevice(w http.ResponseWriter, r *http.Request, tenant, deviceKey string) bool {
	_, ip := clientAddr(r, s.trusted)
	tls := r.TLS != nil
	res, err := s.auth.authenticate(r.Context(), r, authInput{tls: tls, source: ip, tenant: tenant, deviceKey: deviceKey})
	if err != nil {
		s.logger.WarnContext(r.Context(), "file download: authentication store unavailable", "error", err, "device_id", deviceKey)
		w.Header().Set("Retry-After", strconv.Itoa(int(unavailableRetryAfter/time.Second)))
		http.Error(w, "authentication unavailable", http.StatusServiceUnavailable)
		return false
	}
	switch res.verdict {
	case verdictOK:
		a := res.auth
		switch {
		case a.Method == AuthClientCertificate:
			// authenticate checked that the certificate names the
			// device (unless gateway.tls-client-cert-devices=any).
			return true
		case (a.Method == AuthDigest || a.Method == AuthBasic) && (a.Scope == ScopeDevice || usernameNamesDevice(a.Principal, deviceKey, nil)):
			return true
		}
		http.Error(w, "these credentials do not name the device the URL is for", http.StatusForbidden)
		return false
	case verdictBlocked:
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", strconv.FormatInt(int64((res.wait+time.Second-1)/time.Second), 10))
		http.Error(w, "too many failed attempts", http.StatusServiceUnavailable)
		return false
	default:
		s.auth.challenge(w, tls, res.verdict == verdictStale)
		return false
	}
}
