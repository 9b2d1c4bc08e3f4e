package notifier

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// maxBody is how much of a CPE's answer is read: a connection-request
// listener answers with an empty body or a short page.
const maxBody = 4 << 10

// result is what became of one connection request.
type result struct {
	status    tasksv1.WakeStatus
	detail    string
	transport string
}

func fail(status tasksv1.WakeStatus, transport, format string, args ...any) result {
	return result{status: status, transport: transport, detail: fmt.Sprintf(format, args...)}
}

// sendHTTP sends an HTTP connection request (docs/protocol.md §8.1): a GET
// of the URL as the CPE reported it; on 401 the challenge is answered on
// the same connection when the CPE keeps it open. No redirect is
// followed, only a 401's body is read and no more than maxBody of it, and
// every connection passes the guard.
func (s *Service) sendHTTP(ctx context.Context, rawURL, user, pass string) result {
	const tr = "http"
	// Some CPEs report the URL with white space around it (a trailing
	// space or line end): it is no part of the URL, which is otherwise
	// used exactly as reported (docs/protocol.md §8.1). Left in, a
	// trailing space would be sent as "%20" at the end of the path.
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return fail(tasksv1.WakeStatus_WAKE_STATUS_NO_ADDRESS, tr, "connection request URL is not an http(s) URL")
	}
	u.User = nil // never sent: the credentials are the inventory's
	u.Fragment = ""
	if ip, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil {
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		ap, perr := netip.ParseAddrPort(net.JoinHostPort(ip.String(), port))
		if perr != nil {
			return fail(tasksv1.WakeStatus_WAKE_STATUS_NO_ADDRESS, tr, "connection request URL has a bad port")
		}
		if err := s.guard.check(ap); err != nil {
			return fail(tasksv1.WakeStatus_WAKE_STATUS_ADDRESS_REFUSED, tr, "%v", err)
		}
	}
	cfg := s.cfg
	dialer := s.guard.dialer(cfg.DialTimeout)
	if s.resolver != nil {
		dialer.Resolver = s.resolver
	}
	transport := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    cfg.TLSTimeout,
		ResponseHeaderTimeout:  cfg.HeaderTimeout,
		MaxResponseHeaderBytes: 16 << 10,
		DisableCompression:     true,
		MaxIdleConnsPerHost:    1,
		MaxConnsPerHost:        2,
		ForceAttemptHTTP2:      false,
	}
	// One transport per request: the 401 and the authenticated GET share a
	// connection, and nothing stays open afterwards.
	defer transport.CloseIdleConnections()
	client := &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	defer cancel()

	code, hdr, err := s.get(ctx, client, u, "")
	if err != nil {
		return s.httpError(err)
	}
	if code != http.StatusUnauthorized {
		return httpStatus(code, false)
	}
	ch, ok := pickChallenge(parseChallenges(hdr.Values("WWW-Authenticate")), cfg.AllowBasic)
	if !ok {
		return fail(tasksv1.WakeStatus_WAKE_STATUS_AUTH_FAILED, tr, "the CPE offered no authentication scheme allowed here (Digest MD5 or SHA-256; Basic with -notifier.allow-basic)")
	}
	code, hdr, err = s.authGet(ctx, client, u, authorization(ch, user, pass, http.MethodGet, u.RequestURI()))
	if err == nil && code == http.StatusUnauthorized {
		// A second 401 with stale=true says the credentials were right
		// and the nonce had expired: its new challenge is answered once,
		// and a second stale 401 is a failure (docs/protocol.md §8.1).
		ch, ok := pickChallenge(parseChallenges(hdr.Values("WWW-Authenticate")), cfg.AllowBasic)
		if ok && ch.stale && ch.scheme == "digest" {
			code, _, err = s.authGet(ctx, client, u, authorization(ch, user, pass, http.MethodGet, u.RequestURI()))
		}
	}
	if err != nil {
		return s.httpError(err)
	}
	return httpStatus(code, true)
}

// authGet sends the authenticated GET. Many CPEs close the connection
// after the 401 (docs/protocol.md §8.1): the transport itself sends the
// request again on a new connection when the one it reused fails, and
// authGet tries once more only when the request reached no CPE at all (a
// failed dial). A request the CPE received on a new connection and left
// unanswered is not sent again: some CPEs close the connection and start
// their session, and a copy would only meet a busy CPE or a used nonce.
func (s *Service) authGet(ctx context.Context, client *http.Client, u *url.URL, authz string) (int, http.Header, error) {
	var wrote atomic.Bool
	tctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			wrote.Store(true)
		}
	}})
	code, hdr, err := s.get(tctx, client, u, authz)
	if err != nil && !wrote.Load() && ctx.Err() == nil && !errors.Is(err, ErrAddressRefused) {
		code, hdr, err = s.get(ctx, client, u, authz)
	}
	return code, hdr, err
}

// get sends one GET. Only a 401's body is read, at most maxBody of it, so
// that the answer to the challenge may reuse the connection; any other
// answer's status is the outcome, and its body is not waited for (a CPE
// may send the headers and stall, docs/security.md "Connection
// requests").
func (s *Service) get(ctx context.Context, client *http.Client, u *url.URL, authz string) (int, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("User-Agent", "FleetACS")
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header, nil
}

func httpStatus(code int, authenticated bool) result {
	const tr = "http"
	switch {
	case code >= 200 && code < 300:
		return result{status: tasksv1.WakeStatus_WAKE_STATUS_SENT, transport: tr, detail: fmt.Sprintf("HTTP %d", code)}
	case code == http.StatusUnauthorized && authenticated, code == http.StatusForbidden:
		return fail(tasksv1.WakeStatus_WAKE_STATUS_AUTH_FAILED, tr, "the CPE refused the credentials (HTTP %d)", code)
	case code == http.StatusServiceUnavailable:
		return fail(tasksv1.WakeStatus_WAKE_STATUS_FAILED, tr, "the CPE is busy or offline (HTTP 503)")
	case code >= 300 && code < 400:
		return fail(tasksv1.WakeStatus_WAKE_STATUS_FAILED, tr, "the CPE answered a redirect (HTTP %d), not followed", code)
	}
	return fail(tasksv1.WakeStatus_WAKE_STATUS_FAILED, tr, "the CPE answered HTTP %d", code)
}

// httpError turns a client error into an outcome whose detail holds no
// URL (a URL's path may be the CPE's secret).
func (s *Service) httpError(err error) result {
	const tr = "http"
	if errors.Is(err, ErrAddressRefused) {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fail(tasksv1.WakeStatus_WAKE_STATUS_ADDRESS_REFUSED, tr, "%s", refusedReason(err))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return fail(tasksv1.WakeStatus_WAKE_STATUS_FAILED, tr, "no answer within -notifier.request-timeout")
	}
	// A CPE that closes the connection without answering (some then start
	// their session all the same, docs/protocol.md §8.1).
	var opErr *net.OpError
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		if errors.As(err, &opErr) && opErr.Err != nil {
			err = opErr.Err // without the addresses
		}
		return fail(tasksv1.WakeStatus_WAKE_STATUS_FAILED, tr, "the CPE closed the connection without answering (%v)", err)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fail(tasksv1.WakeStatus_WAKE_STATUS_FAILED, tr, "resolve the CPE's host: %s", dnsErr.Err)
	}
	if errors.As(err, &opErr) && opErr.Err != nil {
		return fail(tasksv1.WakeStatus_WAKE_STATUS_FAILED, tr, "%s: %s", opErr.Op, opErr.Err.Error())
	}
	return fail(tasksv1.WakeStatus_WAKE_STATUS_FAILED, tr, "%v", err)
}

// refusedReason keeps the guard's reason and drops the dial details.
func refusedReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ErrAddressRefused.Error()); i >= 0 {
		return msg[i:]
	}
	return ErrAddressRefused.Error()
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
