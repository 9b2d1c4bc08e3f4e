package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
)

// Session binding: a session continues only for the client that opened it.
//
// A request that is not an Inform is tied to its session by its cookie,
// else by the connection it arrives on, else by the CPE's address and the
// open session record (docs/protocol.md §4.1, docs/design.md §2 step 4).
// Whatever ties it, the request must match what the session's record says
// opened the session:
//
//   - the client address (after trusted-proxy handling), unless
//     gateway.session-address-binding is off because CPEs sit behind
//     proxies or NAT pools that change their address within a session;
//   - the principal: a request that presents credentials (an Authorization
//     header or a client certificate) must present the session's
//     principal, and a session opened with a client certificate needs that
//     certificate on every request.
//
// The record comes from the shared Affinity store, so the binding holds
// whichever replica the request reaches; only on the session's own
// connection does the gateway use the copy it keeps, which is the same
// record. When the store does not answer, a cookie request is refused
// (503) rather than let through unchecked.
//
// The credentials of a cookie or connection request are compared, not
// verified: the cookie, on the session's address, already stands for them,
// and what the comparison catches is another CPE's credentials. A request
// routed by address alone has no such token, so its credentials are
// verified in full (password, nonce count, back-off) as at the start of a
// session.
//
// A cookie whose session is bound elsewhere gets 403 and the connection is
// closed: the CPE ends its session and starts a new one with an Inform. A
// connection whose session belongs to another address (a proxy's pooled
// connection) is not this request's session, and routing goes on by
// address.

// Why a request may not continue a session.
const (
	bindAddress   = "address"
	bindPrincipal = "principal"
)

// route is how a request reaches its session.
type route struct {
	rec SessionRecord
	via string
}

// bindingRefusal says why q may not continue the session of rec, or "".
func (s *Service) bindingRefusal(q *request, rec SessionRecord) string {
	if s.cfg.SessionAddressBinding && rec.ClientIP != q.ip {
		return bindAddress
	}
	principal, kind := presentedPrincipal(q.r)
	if rec.Auth.Method == AuthClientCertificate && kind != credsCert {
		return bindPrincipal
	}
	switch kind {
	case credsNone:
		return ""
	case credsMalformed:
		return bindPrincipal
	}
	if principal != rec.Auth.Principal {
		return bindPrincipal
	}
	return ""
}

// findSession ties a non-Inform request to its open session. It returns
// the route (via empty when the request belongs to no session it may
// continue), or the status it answered the request with when it did
// (binding refused, store down, authentication refused).
func (s *Service) findSession(ctx context.Context, q *request) (route, int) {
	connRec, _ := q.conn.get()
	if sid := cookieSession(q.r.Header); sid != "" {
		rec := connRec
		if rec.SessionID != sid {
			var err error
			rec, err = s.affinity.Lookup(ctx, sid)
			switch {
			case errors.Is(err, ErrNoRecord):
				// No open session of that name (it ended, or never
				// was): the cookie proves nothing.
				rec = SessionRecord{}
			case err != nil:
				s.log(ctx, slog.LevelWarn, "affinity lookup failed; cannot check the session's binding", q, slog.String("cookie_session_id", sid), slog.Any("err", err))
				return route{}, s.unavailable(q)
			}
		}
		if rec.SessionID != "" {
			if why := s.bindingRefusal(q, rec); why != "" {
				return route{}, s.refuseBinding(ctx, q, rec, why)
			}
			return route{rec, viaCookie}, 0
		}
	}
	if connRec.SessionID != "" {
		switch s.bindingRefusal(q, connRec) {
		case "":
			return route{connRec, viaConn}, 0
		case bindPrincipal:
			return route{}, s.refuseBinding(ctx, q, connRec, bindPrincipal)
		}
	}
	return s.sessionAtAddress(ctx, q)
}

// sessionAtAddress finds the one session open from the request's address
// for CPEs that send no cookie and open a new connection per request. An
// address alone does not prove who is speaking (CPEs share NAT addresses):
// the request must carry the session's principal's credentials, verified
// in full. A request without credentials, or with another principal's, is
// outside any session (and is challenged there).
func (s *Service) sessionAtAddress(ctx context.Context, q *request) (route, int) {
	rec, err := s.affinity.OpenSessionAt(ctx, q.ip)
	switch {
	case err == nil:
	case errors.Is(err, ErrNoRecord):
		return route{}, 0
	case errors.Is(err, ErrAmbiguous):
		s.log(ctx, slog.LevelDebug, "several sessions open from the address; not guessing", q)
		return route{}, 0
	default:
		s.log(ctx, slog.LevelWarn, "affinity lookup by address failed", q, slog.Any("err", err))
		return route{}, 0
	}
	principal, kind := presentedPrincipal(q.r)
	if kind == credsNone {
		if s.cfg.AuthAnonymous && rec.Auth.Method == AuthNone {
			// Anonymous mode: the address is all there is.
			return route{rec, viaAddress}, 0
		}
		return route{}, 0
	}
	if kind == credsMalformed || principal != rec.Auth.Principal || (rec.Auth.Method == AuthClientCertificate) != (kind == credsCert) {
		return route{}, 0
	}
	tenant := rec.Tenant
	if tenant == "" {
		tenant = q.tenant
	}
	res, err := s.auth.authenticate(ctx, q.r, authInput{
		body: q.body, tls: q.tls, source: q.ip, tenant: tenant, deviceKey: rec.DeviceKey, principal: rec.Auth.Principal,
	})
	if err != nil {
		s.log(ctx, slog.LevelError, "CPE credentials unavailable", q, slog.Any("err", err))
		return route{}, s.unavailable(q)
	}
	if res.verdict == verdictOK && res.auth.Method == AuthNone && rec.Auth.Method != AuthNone {
		// Anonymous mode accepts the request (its credentials are of a
		// scheme not offered here), but it must not pass for the
		// authenticated CPE that opened the session.
		res.verdict = verdictChallenge
	}
	if res.verdict != verdictOK {
		return route{}, s.refuseAuth(ctx, q, res)
	}
	return route{rec, viaAddress}, 0
}

// refuseBinding answers 403 to a request whose session is bound to another
// client, and closes the connection.
func (s *Service) refuseBinding(ctx context.Context, q *request, rec SessionRecord, why string) int {
	s.authm.countBindingRefused(ctx, why)
	q.sessionID, q.deviceKey = rec.SessionID, rec.DeviceKey
	s.log(ctx, slog.LevelWarn, "request refused: its session is bound to another client", q,
		slog.String("reason", why), slog.String("bound_ip", rec.ClientIP), slog.String("principal", rec.Auth.Principal))
	h := q.w.Header()
	h.Set("Connection", "close")
	h.Set("Content-Length", "0")
	q.w.WriteHeader(http.StatusForbidden)
	return http.StatusForbidden
}

// emptyOutsideSession answers an empty POST that belongs to no session:
// some CPEs send one after their session ended, and some stacks send one
// first to get their Digest challenge (docs/protocol.md §4.1). Whatever
// else is open from the address, it is challenged when credentials are
// required and the request carries none, and answered 204 once it carries
// some.
//
// Those credentials are not checked: an empty POST names no device, so
// per-device credentials could not be checked at all, and the 204 opens
// nothing and tells nothing. Checking the shared ones alone would only
// offer one more place to guess passwords.
func (s *Service) emptyOutsideSession(ctx context.Context, q *request) int {
	if _, kind := presentedPrincipal(q.r); kind == credsNone && !s.cfg.AuthAnonymous {
		s.log(ctx, slog.LevelDebug, "empty POST outside any session; challenging", q)
		s.auth.challenge(q.w, q.tls, false)
		return http.StatusUnauthorized
	}
	q.w.Header().Set("Content-Length", "0")
	q.w.WriteHeader(http.StatusNoContent)
	return http.StatusNoContent
}
