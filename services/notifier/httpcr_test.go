package notifier

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

func sendTo(t *testing.T, s *Service, url, user, pass string) result {
	t.Helper()
	return s.sendHTTP(context.Background(), url, user, pass)
}

func TestHTTPDigest(t *testing.T) {
	for _, c := range []struct {
		name      string
		alg       string
		qop, shut bool
	}{
		{"md5-qop", "MD5", true, false},
		{"md5-rfc2069", "MD5", false, false},
		{"sha256-qop", "SHA-256", true, false},
		{"close-after-401", "MD5", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cpe := startCPE(t, &digestCPE{algorithm: c.alg, qop: c.qop, closeAfter401: c.shut, user: "cr-user", pass: `p"a:ss`})
			s := newService(t, testConfig(), Deps{})
			r := sendTo(t, s, cpe.url, cpe.user, cpe.pass)
			if r.status != tasksv1.WakeStatus_WAKE_STATUS_SENT || cpe.accepted.Load() != 1 {
				t.Fatalf("got %v %q, accepted %d", r.status, r.detail, cpe.accepted.Load())
			}
			if want := int32(1); !cpe.closeAfter401 && cpe.conns.Load() != want {
				t.Fatalf("%d connections, want the challenge answered on the same one", cpe.conns.Load())
			}
			r = sendTo(t, s, cpe.url, cpe.user, "wrong")
			if r.status != tasksv1.WakeStatus_WAKE_STATUS_AUTH_FAILED {
				t.Fatalf("wrong password: %v %q", r.status, r.detail)
			}
		})
	}
}

func TestHTTPBasicOnlyWhenAllowed(t *testing.T) {
	cpe := startCPE(t, &digestCPE{user: "u", pass: "p", basicOnly: true})
	s := newService(t, testConfig(), Deps{})
	if r := sendTo(t, s, cpe.url, "u", "p"); r.status != tasksv1.WakeStatus_WAKE_STATUS_AUTH_FAILED || cpe.accepted.Load() != 0 {
		t.Fatalf("Basic without -notifier.allow-basic: %v %q", r.status, r.detail)
	}
	cfg := testConfig()
	cfg.AllowBasic = true
	s = newService(t, cfg, Deps{})
	if r := sendTo(t, s, cpe.url, "u", "p"); r.status != tasksv1.WakeStatus_WAKE_STATUS_SENT {
		t.Fatalf("Basic allowed: %v %q", r.status, r.detail)
	}
}

// TestHTTPRefusedAddresses: nothing outside the allowed networks is
// dialled, whether the URL names the address or a host name that
// resolves to it.
func TestHTTPRefusedAddresses(t *testing.T) {
	ln := listenCounting(t)
	cfg := testConfig()
	cfg.AllowLoopback = false
	s := newService(t, cfg, Deps{})
	for _, u := range []string{
		"http://127.0.0.1:" + ln.port() + "/",
		"http://localhost:" + ln.port() + "/", // resolved, then refused at dial time
		"http://[::ffff:127.0.0.1]:" + ln.port() + "/",
		"http://169.254.169.254/latest/meta-data/",
		"http://[fe80::1]:7547/",
		"http://0.0.0.0:" + ln.port() + "/",
		"http://224.0.0.1:7547/",
		"http://8.8.8.8:7547/", // public, outside the default networks
	} {
		r := sendTo(t, s, u, "u", "p")
		if r.status != tasksv1.WakeStatus_WAKE_STATUS_ADDRESS_REFUSED {
			t.Errorf("%s: %v %q, want address_refused", u, r.status, r.detail)
		}
		if strings.Contains(r.detail, u) {
			t.Errorf("%s: the detail %q holds the URL", u, r.detail)
		}
	}
	if n := ln.accepts.Load(); n != 0 {
		t.Fatalf("%d connections made to a refused address", n)
	}
	// The metadata address stays refused with link-local allowed.
	cfg.AllowLinkLocal = true
	s = newService(t, cfg, Deps{})
	if r := sendTo(t, s, "http://169.254.169.254/", "u", "p"); r.status != tasksv1.WakeStatus_WAKE_STATUS_ADDRESS_REFUSED {
		t.Fatalf("metadata address with link-local allowed: %v", r.status)
	}
	for _, a := range []string{"169.254.169.254:80", "[fd00:ec2::254]:80"} {
		if err := s.guard.control("tcp4", a, nil); !isRefusedErr(err) {
			t.Fatalf("dial %s: %v", a, err)
		}
	}
}

// TestHTTPOwnListenerRefused: the process's own listeners are no CPE,
// even with loopback allowed.
func TestHTTPOwnListenerRefused(t *testing.T) {
	ln := listenCounting(t)
	own := ln.ln.Addr().(*net.TCPAddr).AddrPort()
	s := newService(t, testConfig(), Deps{OwnAddrs: func() []netipAddrPort { return []netipAddrPort{own} }})
	if r := sendTo(t, s, "http://localhost:"+ln.port()+"/", "u", "p"); r.status != tasksv1.WakeStatus_WAKE_STATUS_ADDRESS_REFUSED {
		t.Fatalf("own listener: %v %q", r.status, r.detail)
	}
	if ln.accepts.Load() != 0 {
		t.Fatal("connected to the process's own listener")
	}
}

func TestHTTPSlowCPEFailsWithinTimeout(t *testing.T) {
	ln := listenCounting(t) // accepts, never answers
	cfg := testConfig()
	cfg.RequestTimeout = 300 * time.Millisecond
	cfg.HeaderTimeout = 200 * time.Millisecond
	s := newService(t, cfg, Deps{})
	start := time.Now()
	r := sendTo(t, s, "http://127.0.0.1:"+ln.port()+"/", "u", "p")
	if r.status != tasksv1.WakeStatus_WAKE_STATUS_FAILED {
		t.Fatalf("got %v %q", r.status, r.detail)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	if ln.accepts.Load() != 1 {
		t.Fatalf("%d connections", ln.accepts.Load())
	}
}

// TestHTTPBodiesAreBounded: an endless body is not read to its end.
func TestHTTPBodiesAreBounded(t *testing.T) {
	for _, code := range []int{http.StatusOK, http.StatusUnauthorized} {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Digest realm="x", nonce="n", qop="auth"`)
			}
			w.WriteHeader(code)
			chunk := make([]byte, 32<<10)
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		})}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln)
		s := newService(t, testConfig(), Deps{})
		start := time.Now()
		r := sendTo(t, s, "http://"+ln.Addr().String()+"/", "u", "p")
		srv.Close()
		want := tasksv1.WakeStatus_WAKE_STATUS_SENT
		if code == http.StatusUnauthorized {
			want = tasksv1.WakeStatus_WAKE_STATUS_AUTH_FAILED
		}
		if r.status != want || time.Since(start) > time.Second {
			t.Fatalf("HTTP %d with an endless body: %v %q after %v", code, r.status, r.detail, time.Since(start))
		}
	}
}

func TestHTTPRedirectNotFollowed(t *testing.T) {
	target := listenCounting(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:"+target.port()+"/", http.StatusFound)
	})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	defer srv.Close()
	s := newService(t, testConfig(), Deps{})
	if r := sendTo(t, s, "http://"+ln.Addr().String()+"/", "u", "p"); r.status != tasksv1.WakeStatus_WAKE_STATUS_FAILED {
		t.Fatalf("redirect: %v %q", r.status, r.detail)
	}
	if target.accepts.Load() != 0 {
		t.Fatal("redirect followed")
	}
}

func TestWakeNoCredentialsNoAddress(t *testing.T) {
	cpe := startCPE(t, &digestCPE{user: "u", pass: "p", algorithm: "MD5", qop: true})
	targets := &fakeTargets{}
	targets.set("nocreds", Target{URL: cpe.url})
	targets.set("noaddr", Target{Username: "u", Password: "p", HasCredentials: true})
	s := newService(t, testConfig(), Deps{Targets: targets})
	for dev, want := range map[string]tasksv1.WakeStatus{
		"nocreds": tasksv1.WakeStatus_WAKE_STATUS_NO_CREDENTIALS,
		"noaddr":  tasksv1.WakeStatus_WAKE_STATUS_NO_ADDRESS,
		"unknown": tasksv1.WakeStatus_WAKE_STATUS_NO_ADDRESS,
	} {
		if r := s.wake(context.Background(), &tasksv1.WakeRequest{Tenant: "t", DeviceId: dev}); r.status != want {
			t.Errorf("%s: %v %q, want %v", dev, r.status, r.detail, want)
		}
	}
	if cpe.conns.Load() != 0 {
		t.Fatal("a request without credentials reached the CPE (no anonymous attempt)")
	}
}

func TestParseChallenges(t *testing.T) {
	chs := parseChallenges([]string{`Basic realm="b", Digest realm="d, x", nonce="n\"1", qop="auth-int, auth", algorithm=SHA-256`, `Digest realm="e", algorithm=SHA-512-256, nonce=z`})
	if len(chs) != 3 || chs[0].scheme != "basic" || chs[1].realm != "d, x" || chs[1].nonce != `n"1` || !chs[1].qopAuth || chs[2].algorithm != "SHA-512-256" {
		t.Fatalf("%+v", chs)
	}
	c, ok := pickChallenge(chs, false)
	if !ok || c.realm != "d, x" {
		t.Fatalf("picked %+v", c)
	}
	if _, ok := pickChallenge(chs[2:], false); ok {
		t.Fatal("an unsupported algorithm was picked")
	}
	// Hostile input: no panic, bounded work.
	parseChallenges([]string{strings.Repeat(`Digest a=", `, 10000)})
	parseChallenges([]string{"", ",,,", "Digest", `Digest realm="unterminated`})
}

// challengedCPE answers the first request with a 401 carrying
// challenges, and any later one with 200 when checkDigest accepts its
// Authorization against want (the challenge that should have been
// picked), else 401 again; the digestCheck it returns holds checkDigest's last complaint.
func challengedCPE(t *testing.T, want map[string]string, user, pass string, challenges ...string) (*rawCPE, *digestCheck) {
	t.Helper()
	verr := &digestCheck{}
	cpe := startRawCPE(t, "tcp4", func(n int, req *http.Request) (string, bool) {
		authz := req.Header.Get("Authorization")
		if authz == "" || !verr.check(authz, want, user, pass, req) {
			return answer401(true, challenges...), false
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false
	})
	return cpe, verr
}

// TestHTTPDigestChallengeForms: the Digest challenges real CPEs send, each
// answered as RFC 7616 (qop=auth) or RFC 2069 (no qop) says, checked by an
// independent computation (checkDigest).
func TestHTTPDigestChallengeForms(t *testing.T) {
	const user, pass = "cr-user", `pa:ss"w`
	for _, c := range []struct {
		name       string
		challenges []string
		want       map[string]string // the challenge to be answered
		allowBasic bool
	}{
		{"qop-auth", []string{`Digest realm="cpe", nonce="n1", qop="auth"`},
			map[string]string{"realm": "cpe", "nonce": "n1", "qop": "auth"}, false},
		{"no-qop-rfc2069", []string{`Digest realm="cpe", nonce="n2"`},
			map[string]string{"realm": "cpe", "nonce": "n2"}, false},
		{"qop-auth-and-auth-int", []string{`Digest realm="cpe", nonce="n3", qop="auth,auth-int", algorithm=MD5`},
			map[string]string{"realm": "cpe", "nonce": "n3", "qop": "auth", "algorithm": "MD5"}, false},
		{"qop-auth-int-first-with-space", []string{`Digest realm="cpe", nonce="n3b", qop="auth-int, auth"`},
			map[string]string{"realm": "cpe", "nonce": "n3b", "qop": "auth"}, false},
		{"qop-auth-int-only", []string{`Digest realm="cpe", nonce="n3c", qop="auth-int"`},
			map[string]string{"realm": "cpe", "nonce": "n3c", "qop": "auth-int"}, false},
		{"md5-sess", []string{`Digest realm="cpe", nonce="n4", qop="auth", algorithm=MD5-sess, opaque="o4"`},
			map[string]string{"realm": "cpe", "nonce": "n4", "qop": "auth", "algorithm": "MD5-sess", "opaque": "o4"}, false},
		// RFC 2617 gives -sess no qop-less form, yet its A1 holds the
		// cnonce: the CPE can only check an answer that sends it.
		{"md5-sess-no-qop", []string{`Digest realm="cpe", nonce="n4b", algorithm=MD5-sess`},
			map[string]string{"realm": "cpe", "nonce": "n4b", "algorithm": "MD5-sess"}, false},
		{"quoted-algorithm", []string{`Digest realm="cpe", nonce="n5", algorithm="MD5", qop="auth"`},
			map[string]string{"realm": "cpe", "nonce": "n5", "qop": "auth", "algorithm": "MD5"}, false},
		{"all-unquoted", []string{`Digest realm=cpe,nonce=n6,qop=auth,opaque=o6`},
			map[string]string{"realm": "cpe", "nonce": "n6", "qop": "auth", "opaque": "o6"}, false},
		{"extra-parameters", []string{`Digest realm="cpe", domain="/ /cr", nonce="n7", stale=FALSE, charset=UTF-8, userhash=false, x-vendor="a, b=c", qop="auth", opaque="o7"`},
			map[string]string{"realm": "cpe", "nonce": "n7", "qop": "auth", "opaque": "o7"}, false},
		{"realm-with-spaces-and-commas", []string{`Digest realm="Home Gateway, Model 7 \"x\"", nonce="n8", qop="auth"`},
			map[string]string{"realm": `Home Gateway, Model 7 "x"`, "nonce": "n8", "qop": "auth"}, false},
		{"lower-case-scheme-and-names", []string{`digest REALM="cpe", Nonce="n9", QOP="auth"`},
			map[string]string{"realm": "cpe", "nonce": "n9", "qop": "auth"}, false},
		// Several WWW-Authenticate headers: Digest is answered, and still
		// preferred to Basic when -notifier.allow-basic permits Basic (the
		// flag allows Basic, it does not prefer it).
		{"basic-and-digest-headers", []string{`Basic realm="cpe"`, `Digest realm="cpe", nonce="n10", qop="auth"`},
			map[string]string{"realm": "cpe", "nonce": "n10", "qop": "auth"}, false},
		{"basic-and-digest-headers-basic-allowed", []string{`Basic realm="cpe"`, `Digest realm="cpe", nonce="n11", qop="auth"`},
			map[string]string{"realm": "cpe", "nonce": "n11", "qop": "auth"}, true},
		{"digest-and-basic-one-header", []string{`Digest realm="cpe", nonce="n12", qop="auth", Basic realm="cpe"`},
			map[string]string{"realm": "cpe", "nonce": "n12", "qop": "auth"}, true},
		{"sha256-and-md5", []string{`Digest realm="cpe", nonce="n13", qop="auth", algorithm=MD5`, `Digest realm="cpe", nonce="n13", qop="auth", algorithm=SHA-256`},
			map[string]string{"realm": "cpe", "nonce": "n13", "qop": "auth", "algorithm": "SHA-256"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cpe, verr := challengedCPE(t, c.want, user, pass, c.challenges...)
			cfg := testConfig()
			cfg.AllowBasic = c.allowBasic
			s := newService(t, cfg, Deps{})
			r := sendTo(t, s, "http://"+cpe.hostport()+"/cr/tok?x=1", user, pass)
			if r.status != tasksv1.WakeStatus_WAKE_STATUS_SENT {
				t.Fatalf("%v %q; the CPE's check: %v", r.status, r.detail, verr.last())
			}
			if n := len(cpe.requests()); n != 2 {
				t.Fatalf("%d requests, want the challenge and its answer", n)
			}
		})
	}
}

// TestHTTPStaleNonce: a second 401 with stale=true says the credentials
// were right and the nonce had expired (RFC 7616 §3.3): the new challenge
// is answered once; a CPE that answers stale=true for ever ends as an
// authentication failure, not a loop.
func TestHTTPStaleNonce(t *testing.T) {
	const user, pass = "u", "p"
	for _, forever := range []bool{false, true} {
		cpe := startRawCPE(t, "tcp4", func(n int, req *http.Request) (string, bool) {
			nonce := "old"
			if n >= 2 {
				nonce = "new"
			}
			authz := req.Header.Get("Authorization")
			ch := map[string]string{"realm": "cpe", "nonce": nonce, "qop": "auth"}
			if authz != "" && !forever && n >= 2 && checkDigest(authz, ch, user, pass, req.Method, req.RequestURI) == nil {
				return "HTTP/1.1 204 No Content\r\n\r\n", false
			}
			if authz == "" {
				return answer401(true, `Digest realm="cpe", nonce="old", qop="auth"`), false
			}
			// The answer to "old" came: the CPE says it is stale.
			return answer401(true, `Digest realm="cpe", nonce="new", qop="auth", stale=true`), false
		})
		s := newService(t, testConfig(), Deps{})
		r := sendTo(t, s, "http://"+cpe.hostport()+"/", user, pass)
		n := len(cpe.requests())
		if !forever && (r.status != tasksv1.WakeStatus_WAKE_STATUS_SENT || n != 3) {
			t.Fatalf("stale once: %v %q after %d requests, want sent after 3", r.status, r.detail, n)
		}
		if forever && (r.status != tasksv1.WakeStatus_WAKE_STATUS_AUTH_FAILED || n != 3) {
			t.Fatalf("stale for ever: %v %q after %d requests, want auth_failed after 3", r.status, r.detail, n)
		}
	}
}

// TestHTTPWrongCredentialsNoLoop: a second 401 without stale=true is wrong
// credentials, said so after exactly two requests.
func TestHTTPWrongCredentialsNoLoop(t *testing.T) {
	cpe := startRawCPE(t, "tcp4", func(int, *http.Request) (string, bool) {
		return answer401(true, `Digest realm="cpe", nonce="`+randomHex(4)+`", qop="auth"`), false
	})
	s := newService(t, testConfig(), Deps{})
	r := sendTo(t, s, "http://"+cpe.hostport()+"/", "u", "wrong")
	if r.status != tasksv1.WakeStatus_WAKE_STATUS_AUTH_FAILED || !strings.Contains(r.detail, "refused the credentials") {
		t.Fatalf("%v %q", r.status, r.detail)
	}
	if n := len(cpe.requests()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

// TestHTTPStatusOutcomes: 200 and 204 are success, with or without a
// challenge first; other answers are failures that say what came.
func TestHTTPStatusOutcomes(t *testing.T) {
	for _, c := range []struct {
		status string
		want   tasksv1.WakeStatus
		detail string
	}{
		{"200 OK", tasksv1.WakeStatus_WAKE_STATUS_SENT, "HTTP 200"},
		{"204 No Content", tasksv1.WakeStatus_WAKE_STATUS_SENT, "HTTP 204"},
		{"503 Service Unavailable", tasksv1.WakeStatus_WAKE_STATUS_FAILED, "busy"},
		{"500 Internal Server Error", tasksv1.WakeStatus_WAKE_STATUS_FAILED, "HTTP 500"},
		{"404 Not Found", tasksv1.WakeStatus_WAKE_STATUS_FAILED, "HTTP 404"},
		{"403 Forbidden", tasksv1.WakeStatus_WAKE_STATUS_AUTH_FAILED, "HTTP 403"},
	} {
		for _, challenged := range []bool{false, true} {
			cpe := startRawCPE(t, "tcp4", func(n int, req *http.Request) (string, bool) {
				if challenged && req.Header.Get("Authorization") == "" {
					return answer401(true, `Digest realm="cpe", nonce="n"`), false
				}
				return "HTTP/1.1 " + c.status + "\r\nContent-Length: 0\r\n\r\n", false
			})
			s := newService(t, testConfig(), Deps{})
			r := sendTo(t, s, "http://"+cpe.hostport()+"/", "u", "p")
			if r.status != c.want || !strings.Contains(r.detail, c.detail) {
				t.Errorf("%s (challenged %v): %v %q", c.status, challenged, r.status, r.detail)
			}
		}
	}
}

// TestHTTPClosedWithoutAnswer: a CPE that closes the connection without
// answering, at once or after the challenge (some start their session
// anyway), is a failure that says so, within the request timeout and
// after a bounded number of requests.
func TestHTTPClosedWithoutAnswer(t *testing.T) {
	for _, c := range []struct {
		name      string
		challenge bool // the first request is answered with a 401
		keepAlive bool // which leaves the connection open
		// authed is how many authenticated requests the CPE gets: on a
		// reused connection the transport tries once more on a new one;
		// a request received on a new connection is not sent again.
		authed int
	}{
		{"first-request", false, true, 0},
		{"after-401-keep-alive", true, true, 2},
		{"after-401-connection-close", true, false, 1},
		{"reset", false, true, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			cpe := startRawCPE(t, "tcp4", func(n int, req *http.Request) (string, bool) {
				if req.Header.Get("Authorization") == "" && c.challenge {
					return answer401(c.keepAlive, `Digest realm="cpe", nonce="n", qop="auth"`), !c.keepAlive
				}
				if c.name == "reset" {
					return "RST", true
				}
				return "", true
			})
			s := newService(t, testConfig(), Deps{})
			r := sendTo(t, s, "http://"+cpe.hostport()+"/", "u", "p")
			if r.status != tasksv1.WakeStatus_WAKE_STATUS_FAILED || !strings.Contains(r.detail, "closed the connection without answering") || strings.Contains(r.detail, "127.0.0.1") {
				t.Errorf("%v %q", r.status, r.detail)
			}
			authed := 0
			for _, req := range cpe.requests() {
				if req.Header.Get("Authorization") != "" {
					authed++
				}
			}
			if authed != c.authed {
				t.Fatalf("%d authenticated requests, want %d", authed, c.authed)
			}
		})
	}
}

// TestHTTP10NoContentLength: HTTP/1.0 answers without Content-Length (the
// body ends when the CPE closes) work for the challenge and the success.
func TestHTTP10NoContentLength(t *testing.T) {
	const user, pass = "u", "p"
	verr := &digestCheck{}
	cpe := startRawCPE(t, "tcp4", func(n int, req *http.Request) (string, bool) {
		authz := req.Header.Get("Authorization")
		if authz == "" {
			return "HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"cpe\", nonce=\"n\", qop=\"auth\"\r\nContent-Type: text/html\r\n\r\n<html>401</html>", true
		}
		if !verr.check(authz, map[string]string{"realm": "cpe", "nonce": "n", "qop": "auth"}, user, pass, req) {
			return "HTTP/1.0 403 Forbidden\r\n\r\n", true
		}
		return "HTTP/1.0 200 OK\r\n\r\n<html>ok</html>", true
	})
	s := newService(t, testConfig(), Deps{})
	if r := sendTo(t, s, "http://"+cpe.hostport()+"/", user, pass); r.status != tasksv1.WakeStatus_WAKE_STATUS_SENT {
		t.Fatalf("%v %q (%v)", r.status, r.detail, verr.last())
	}
	if n := cpe.conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// TestHTTPRequestSent: what FleetACS sends, before and after the
// challenge: a GET without a body, the Host of the URL, a User-Agent, no
// cookie (even one the CPE set with its 401), the path and query exactly
// as the URL has them, and a Digest uri= equal to the request-URI.
func TestHTTPRequestSent(t *testing.T) {
	const user, pass = "u", "p"
	const path = "/cr/a%2Fb;x=y?q=1&r=%20s&t=%C3%A9"
	verr := &digestCheck{}
	cpe := startRawCPE(t, "tcp4", func(n int, req *http.Request) (string, bool) {
		authz := req.Header.Get("Authorization")
		if authz == "" {
			return "HTTP/1.1 401 Unauthorized\r\nSet-Cookie: sid=1; Path=/\r\nWWW-Authenticate: Digest realm=\"cpe\", nonce=\"n\", qop=\"auth\"\r\nContent-Length: 0\r\n\r\n", false
		}
		verr.check(authz, map[string]string{"realm": "cpe", "nonce": "n", "qop": "auth"}, user, pass, req)
		return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false
	})
	s := newService(t, testConfig(), Deps{})
	if r := sendTo(t, s, "http://"+cpe.hostport()+path, user, pass); r.status != tasksv1.WakeStatus_WAKE_STATUS_SENT {
		t.Fatalf("%v %q", r.status, r.detail)
	}
	if err := verr.last(); err != nil {
		t.Fatal(err)
	}
	reqs := cpe.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	for i, req := range reqs {
		body, _ := io.ReadAll(req.Body)
		switch {
		case req.Method != http.MethodGet:
			t.Errorf("request %d: method %s", i, req.Method)
		case len(body) != 0 || req.ContentLength > 0 || len(req.TransferEncoding) != 0:
			t.Errorf("request %d: a body (%d bytes, Content-Length %d, %v)", i, len(body), req.ContentLength, req.TransferEncoding)
		case req.Host != cpe.hostport():
			t.Errorf("request %d: Host %q, want %q", i, req.Host, cpe.hostport())
		case req.RequestURI != path:
			t.Errorf("request %d: request-URI %q, want %q", i, req.RequestURI, path)
		case req.UserAgent() == "" || strings.Contains(req.UserAgent(), "Go-http-client"):
			t.Errorf("request %d: User-Agent %q", i, req.UserAgent())
		case req.Header.Get("Cookie") != "":
			t.Errorf("request %d: Cookie %q", i, req.Header.Get("Cookie"))
		}
	}
}

// TestHTTPURLForms: ConnectionRequestURLs as CPEs report them.
func TestHTTPURLForms(t *testing.T) {
	ok := func(n int, req *http.Request) (string, bool) {
		if req.Header.Get("Authorization") == "" {
			return answer401(true, `Digest realm="cpe", nonce="n", qop="auth"`), false
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false
	}
	s := newService(t, testConfig(), Deps{})
	t.Run("upper-case-scheme-and-spaces", func(t *testing.T) {
		cpe := startRawCPE(t, "tcp4", ok)
		for _, u := range []string{
			"HTTP://" + cpe.hostport() + "/cr",
			"Http://" + cpe.hostport() + "/cr",
			"http://" + cpe.hostport() + "/cr ",
			" http://" + cpe.hostport() + "/cr\t",
			"http://" + cpe.hostport() + "/cr\r\n",
		} {
			before := len(cpe.requests())
			if r := sendTo(t, s, u, "u", "p"); r.status != tasksv1.WakeStatus_WAKE_STATUS_SENT {
				t.Errorf("%q: %v %q", u, r.status, r.detail)
				continue
			}
			for _, req := range cpe.requests()[before:] {
				if req.RequestURI != "/cr" {
					t.Errorf("%q: request-URI %q", u, req.RequestURI)
				}
			}
		}
	})
	t.Run("ipv6-literal", func(t *testing.T) {
		cpe := startRawCPE(t, "tcp6", ok)
		u := "http://" + cpe.hostport() + "/cr/v6"
		if !strings.HasPrefix(cpe.hostport(), "[::1]:") {
			t.Fatalf("listener %s", cpe.hostport())
		}
		if r := sendTo(t, s, u, "u", "p"); r.status != tasksv1.WakeStatus_WAKE_STATUS_SENT {
			t.Fatalf("%v %q", r.status, r.detail)
		}
		for _, req := range cpe.requests() {
			if req.Host != cpe.hostport() || req.RequestURI != "/cr/v6" {
				t.Fatalf("Host %q, request-URI %q", req.Host, req.RequestURI)
			}
		}
		// Still subject to the guard.
		cfg := testConfig()
		cfg.AllowLoopback = false
		before := cpe.conns.Load()
		if r := sendTo(t, newService(t, cfg, Deps{}), u, "u", "p"); r.status != tasksv1.WakeStatus_WAKE_STATUS_ADDRESS_REFUSED {
			t.Fatalf("[::1] without -notifier.allow-loopback: %v %q", r.status, r.detail)
		}
		if cpe.conns.Load() != before {
			t.Fatal("connected to a refused [::1]")
		}
	})
	// Without a port, http:// goes to 80 and https:// to 443: shown by
	// the guard, which refuses this process's own listeners there (no
	// test binds port 80).
	t.Run("default-ports", func(t *testing.T) {
		own := []netipAddrPort{netip.MustParseAddrPort("127.0.0.1:80"), netip.MustParseAddrPort("127.0.0.1:443")}
		s := newService(t, testConfig(), Deps{OwnAddrs: func() []netipAddrPort { return own }})
		for _, u := range []string{"http://127.0.0.1/cr", "http://localhost/cr", "https://127.0.0.1/cr", "https://localhost/cr"} {
			r := sendTo(t, s, u, "u", "p")
			if r.status != tasksv1.WakeStatus_WAKE_STATUS_ADDRESS_REFUSED || !strings.Contains(r.detail, "own listeners") {
				t.Errorf("%s: %v %q, want refused as port 80/443", u, r.status, r.detail)
			}
		}
	})
}

// TestHTTPSSelfSignedRefused documents the behaviour with an https://
// ConnectionRequestURL: the CPE's certificate is verified against the
// system's roots, so a self-signed one (what CPEs have) fails the
// handshake before any request is sent, and the outcome says why.
func TestHTTPSSelfSignedRefused(t *testing.T) {
	var got atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	defer srv.Close()
	s := newService(t, testConfig(), Deps{})
	r := sendTo(t, s, srv.URL+"/cr", "u", "p")
	if r.status != tasksv1.WakeStatus_WAKE_STATUS_FAILED || !strings.Contains(r.detail, "certificate") {
		t.Fatalf("%v %q", r.status, r.detail)
	}
	if strings.Contains(r.detail, srv.URL) {
		t.Fatalf("the detail %q holds the URL", r.detail)
	}
	if got.Load() != 0 {
		t.Fatal("a request was sent over an unverified connection")
	}
}

// TestHTTPStalledBody: a CPE that sends its answer's headers and then
// stalls in the body. The status is the outcome, known from the headers:
// a final answer's body is not waited for; a 401's is (to reuse the
// connection), within the request timeout.
func TestHTTPStalledBody(t *testing.T) {
	for _, c := range []struct {
		status string
		want   tasksv1.WakeStatus
		fast   bool
	}{
		{"200 OK", tasksv1.WakeStatus_WAKE_STATUS_SENT, true},
		{"503 Service Unavailable", tasksv1.WakeStatus_WAKE_STATUS_FAILED, true},
		{"401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"cpe\", nonce=\"n\"", tasksv1.WakeStatus_WAKE_STATUS_FAILED, false},
	} {
		cpe := startRawCPE(t, "tcp4", func(n int, req *http.Request) (string, bool) {
			// Content-Length promises more than comes; the connection
			// stays open until the test ends.
			return "HTTP/1.1 " + c.status + "\r\nContent-Length: 1000\r\n\r\nabc", false
		})
		cfg := testConfig()
		cfg.RequestTimeout = time.Minute
		if !c.fast {
			cfg.RequestTimeout = 300 * time.Millisecond
		}
		s := newService(t, cfg, Deps{})
		start := time.Now()
		r := sendTo(t, s, "http://"+cpe.hostport()+"/", "u", "p")
		if r.status != c.want {
			t.Errorf("%q: %v %q", c.status, r.status, r.detail)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%q: took %v", c.status, d)
		}
	}
}
