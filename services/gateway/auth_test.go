package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDigestResponseRFC2617Example(t *testing.T) {
	// The worked example of RFC 2617 section 3.5.
	p, err := parseDigest(`Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", ` +
		`uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"`)
	if err != nil {
		t.Fatal(err)
	}
	if !verifyDigest(p, "Circle Of Life", "GET", nil) {
		t.Fatal("RFC 2617 example response did not verify")
	}
	if verifyDigest(p, "Circle of Life", "GET", nil) {
		t.Fatal("wrong password verified")
	}
}

func TestParseDigestTolerant(t *testing.T) {
	p, err := parseDigest(`digest   response = "ABCDEF", nc=00000002 ,qop="auth",uri=/cwmp,username="a \"b\"",nonce=xyz,realm="r"`)
	if err != nil {
		t.Fatal(err)
	}
	if p.username != `a "b"` || p.nonce != "xyz" || p.uri != "/cwmp" || p.qop != "auth" || p.nc != "00000002" || p.response != "abcdef" || p.realm != "r" {
		t.Fatalf("parsed %+v", p)
	}
	for _, bad := range []string{`Basic dXNlcjpwYXNz`, `Digest username="a"`, `Digest username="a, nonce=x`} {
		if _, err := parseDigest(bad); err == nil {
			t.Errorf("parseDigest(%q) accepted", bad)
		}
	}
}

func TestNonceFreshStaleForged(t *testing.T) {
	n := nonceMinter{secret: []byte("k"), realm: "FleetACS", lifetime: time.Minute}
	t0 := time.Unix(1_700_000_000, 0)
	nonce := n.mint(t0)
	if got, exp := n.check(nonce, t0.Add(59*time.Second)); got != nonceFresh || !exp.Equal(t0.Add(time.Minute+nonceSkew)) {
		t.Fatalf("within lifetime: %v, counts kept until %v", got, exp)
	}
	if got, _ := n.check(nonce, t0.Add(61*time.Second)); got != nonceStale {
		t.Fatalf("after lifetime: %v", got)
	}
	other := nonceMinter{secret: []byte("other"), realm: "FleetACS", lifetime: time.Minute}
	if got, _ := other.check(nonce, t0); got != nonceInvalid {
		t.Fatalf("another secret accepted the nonce: %v", got)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(nonce)
	raw[0] ^= 1 // move the issue time
	if got, _ := n.check(base64.RawURLEncoding.EncodeToString(raw), t0); got != nonceInvalid {
		t.Fatalf("tampered nonce: %v", got)
	}
	if got, _ := n.check("not a nonce", t0); got != nonceInvalid {
		t.Fatalf("garbage nonce: %v", got)
	}
}

func TestDigestReconnectAfter401(t *testing.T) {
	h := startGateway(t, testConfig(), nil)
	c1 := dialCPE(t, h.addr)
	first := c1.post(informBody(t, "SN1", "1 BOOT"))
	if first.StatusCode != http.StatusUnauthorized {
		t.Fatalf("Inform without credentials: %d, want 401", first.StatusCode)
	}
	ch := strings.Join(first.Header.Values("WWW-Authenticate"), " | ")
	if !strings.Contains(ch, `Digest realm="FleetACS"`) || !strings.Contains(ch, `qop="auth"`) || strings.Contains(ch, "Basic") {
		t.Fatalf("challenge %q", ch)
	}
	if n := len(h.worker.seen()); n != 0 {
		t.Fatalf("worker saw %d exchanges before authentication", n)
	}
	// Like most CPEs, close the connection after the 401 and retry on a
	// new one: the nonce must not be bound to the socket.
	_ = c1.c.Close()
	d := &digestClient{user: "cpe", pass: "secret"}
	d.learn(t, first)
	c2 := dialCPE(t, h.addr)
	ok := c2.post(informBody(t, "SN1", "1 BOOT"), d.header("/cwmp"))
	if ok.StatusCode != http.StatusOK {
		t.Fatalf("authenticated Inform: %d %s", ok.StatusCode, ok.body)
	}
	if !strings.Contains(string(ok.body), "InformResponse") {
		t.Fatalf("body %s", ok.body)
	}
	sid := cookieOf(ok)
	seen := h.worker.seen()
	if len(seen) != 1 || sid == "" || seen[0].SessionID != sid || !seen[0].NewSession {
		t.Fatalf("cookie %q, exchanges %+v", sid, seen)
	}
	ex := seen[0]
	if ex.Auth != (Auth{Method: AuthDigest, Principal: "cpe", Scope: ScopeShared}) || ex.Tenant != "default" ||
		ex.DeviceKey != testDeviceKey("SN1") || ex.DeviceID == nil || ex.DeviceID.SerialNumber != "SN1" ||
		len(ex.Events) != 1 || ex.Events[0].Code != "1 BOOT" || ex.Lease == nil || ex.Lease.FencingToken == 0 || ex.TLS {
		t.Fatalf("exchange %+v", ex)
	}
	// The session's later requests need no Authorization (challenge once
	// per session), on this connection...
	if a := c2.post(nil); a.StatusCode != http.StatusOK || !strings.Contains(string(a.body), "GetParameterValues") {
		t.Fatalf("empty POST: %d %s", a.StatusCode, a.body)
	}
	// ...but a CPE that sends it every time is welcome too.
	if a := c2.post(gpvResponseBody(t), d.header("/cwmp")); a.StatusCode != http.StatusNoContent {
		t.Fatalf("GPV response: %d", a.StatusCode)
	}
	if got := h.worker.seen()[1].Auth; got.Method != AuthSession || got.Principal != "cpe" {
		t.Fatalf("continuation auth %+v", got)
	}
}

func TestDigestWrongPasswordAndStaleNonce(t *testing.T) {
	h := startGateway(t, testConfig(), nil)
	c := dialCPE(t, h.addr)
	first := c.post(informBody(t, "SN1", "2 PERIODIC"))
	wrong := &digestClient{user: "cpe", pass: "guess"}
	wrong.learn(t, first)
	a := c.post(informBody(t, "SN1", "2 PERIODIC"), wrong.header("/cwmp"))
	if a.StatusCode != http.StatusUnauthorized || strings.Contains(a.Header.Get("WWW-Authenticate"), "stale") {
		t.Fatalf("wrong password: %d %q", a.StatusCode, a.Header.Get("WWW-Authenticate"))
	}
	if !strings.Contains(h.logs.String(), "CPE authentication failed") {
		t.Fatal("failed authentication not logged")
	}
	unknown := &digestClient{user: "nobody", pass: "secret"}
	unknown.learn(t, first)
	if a := c.post(informBody(t, "SN1", "2 PERIODIC"), unknown.header("/cwmp")); a.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unknown user: %d", a.StatusCode)
	}
	// A right answer to a nonce past its lifetime gets a new nonce with
	// stale=true, which tells the CPE its password was right.
	good := &digestClient{user: "cpe", pass: "secret"}
	good.learn(t, first)
	h.clock.Advance(6 * time.Minute)
	a = c.post(informBody(t, "SN1", "2 PERIODIC"), good.header("/cwmp"))
	if a.StatusCode != http.StatusUnauthorized || !strings.Contains(a.Header.Get("WWW-Authenticate"), "stale=true") {
		t.Fatalf("stale nonce: %d %q", a.StatusCode, a.Header.Get("WWW-Authenticate"))
	}
	good.learn(t, a)
	if a := c.post(informBody(t, "SN1", "2 PERIODIC"), good.header("/cwmp")); a.StatusCode != http.StatusOK {
		t.Fatalf("after stale: %d", a.StatusCode)
	}
	// A digest for another URI is refused.
	if a := c.post(informBody(t, "SN2", "2 PERIODIC"), good.header("/other")); a.StatusCode != http.StatusUnauthorized {
		t.Fatalf("digest for another uri: %d", a.StatusCode)
	}
	if n := len(h.worker.seen()); n != 1 {
		t.Fatalf("worker saw %d exchanges, want 1", n)
	}
}

func basicHeader(user, pass string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestBasicRefusedOverPlainHTTP(t *testing.T) {
	cfg := testConfig()
	cfg.AuthSchemes = "digest,basic"
	h := startGateway(t, cfg, nil)
	c := dialCPE(t, h.addr)
	a := c.post(informBody(t, "SN1", "1 BOOT"), basicHeader("cpe", "secret"))
	if a.StatusCode != http.StatusUnauthorized {
		t.Fatalf("Basic over HTTP: %d, want 401", a.StatusCode)
	}
	for _, v := range a.Header.Values("WWW-Authenticate") {
		if strings.HasPrefix(v, "Basic") {
			t.Fatalf("Basic offered over plain HTTP: %q", v)
		}
	}
	if n := len(h.worker.seen()); n != 0 {
		t.Fatalf("worker saw %d exchanges", n)
	}
}

func TestBasicOverHTTPWhenConfigured(t *testing.T) {
	cfg := testConfig()
	cfg.AuthSchemes = "digest,basic"
	cfg.AuthBasicOverHTTP = true
	h := startGateway(t, cfg, nil)
	c := dialCPE(t, h.addr)
	if a := c.post(informBody(t, "SN1", "1 BOOT"), basicHeader("cpe", "secret")); a.StatusCode != http.StatusOK {
		t.Fatalf("Basic over HTTP when allowed: %d", a.StatusCode)
	}
	if a := c.post(informBody(t, "SN1", "1 BOOT"), basicHeader("cpe", "nope")); a.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong Basic password: %d", a.StatusCode)
	}
}

func TestAnonymousMode(t *testing.T) {
	cfg := testConfig()
	cfg.AuthAnonymous = true
	cfg.AuthSharedUsername, cfg.AuthSharedPassword = "", ""
	h := startGateway(t, cfg, nil)
	if !strings.Contains(h.logs.String(), "CPE AUTHENTICATION IS OFF") {
		t.Fatalf("no loud warning at start; logs: %s", h.logs.String())
	}
	c := dialCPE(t, h.addr)
	a := c.post(informBody(t, "SN1", "1 BOOT"))
	if a.StatusCode != http.StatusOK {
		t.Fatalf("anonymous Inform: %d", a.StatusCode)
	}
	if got := h.worker.seen()[0].Auth; got.Method != AuthNone {
		t.Fatalf("auth %+v", got)
	}
}

func TestNoCredentialSourceRefused(t *testing.T) {
	cfg := testConfig()
	cfg.AuthSharedUsername, cfg.AuthSharedPassword = "", ""
	if _, err := New(cfg, Deps{Forwarder: newTestWorker(nil)}); err == nil || !strings.Contains(err.Error(), "no way for CPEs to authenticate") {
		t.Fatalf("New without any credentials: %v", err)
	}
}

func TestPerDeviceCredentialsRetireShared(t *testing.T) {
	creds := NewStaticCredentials()
	creds.Set("default", testDeviceKey("SN1"), Credential{Username: "sn1-user", Password: "sn1-pass"})
	h := startGateway(t, testConfig(), func(d *Deps) { d.Credentials = creds })
	c := dialCPE(t, h.addr)
	first := c.post(informBody(t, "SN1", "1 BOOT"))

	shared := &digestClient{user: "cpe", pass: "secret"}
	shared.learn(t, first)
	if a := c.post(informBody(t, "SN1", "1 BOOT"), shared.header("/cwmp")); a.StatusCode != http.StatusUnauthorized {
		t.Fatalf("shared credentials for a device with its own: %d", a.StatusCode)
	}
	own := &digestClient{user: "sn1-user", pass: "sn1-pass"}
	own.learn(t, first)
	if a := c.post(informBody(t, "SN1", "1 BOOT"), own.header("/cwmp")); a.StatusCode != http.StatusOK {
		t.Fatalf("per-device credentials: %d", a.StatusCode)
	}
	// Another device's credentials do not open SN2's session.
	if a := c.post(informBody(t, "SN2", "1 BOOT"), own.header("/cwmp")); a.StatusCode != http.StatusUnauthorized {
		t.Fatalf("SN1's credentials for SN2: %d", a.StatusCode)
	}
	// SN2 has none of its own: the shared ones work.
	if a := c.post(informBody(t, "SN2", "1 BOOT"), shared.header("/cwmp")); a.StatusCode != http.StatusOK {
		t.Fatalf("shared credentials for SN2: %d", a.StatusCode)
	}
	seen := h.worker.seen()
	if len(seen) != 2 || seen[0].Auth.Scope != ScopeDevice || seen[1].Auth.Scope != ScopeShared {
		t.Fatalf("exchanges %+v", seen)
	}
}

func TestDerivedOnboardingCredentials(t *testing.T) {
	cfg := testConfig()
	cfg.AuthSharedUsername, cfg.AuthSharedPassword = "", ""
	cfg.AuthOnboardingSecret = "factory-secret"
	h := startGateway(t, cfg, nil)
	try := func(serial, user string) int {
		c := dialCPE(t, h.addr)
		d := &digestClient{user: user, pass: DerivePassword("factory-secret", user)}
		d.learn(t, c.post(informBody(t, serial, "0 BOOTSTRAP")))
		return c.post(informBody(t, serial, "0 BOOTSTRAP"), d.header("/cwmp")).StatusCode
	}
	for _, user := range []string{"SN1", "00D09E-SN1", testDeviceKey("SN1")} {
		if got := try("SN1", user); got != http.StatusOK {
			t.Fatalf("derived credentials of %q: %d", user, got)
		}
	}
	// SN2's derived password, presented by a device claiming to be SN1.
	if got := try("SN1", "SN2"); got != http.StatusUnauthorized {
		t.Fatalf("another device's derived credentials: %d", got)
	}
	// User names compare exactly: the derived password of "sn1" (another
	// serial number as far as anyone knows) does not open SN1's session.
	for _, user := range []string{"sn1", "00d09e-SN1", strings.ToLower(testDeviceKey("SN1"))} {
		if got := try("SN1", user); got != http.StatusUnauthorized {
			t.Fatalf("derived credentials of %q for SN1: %d, want 401", user, got)
		}
	}
	if len(DerivePassword("s", "u")) != 64 {
		t.Fatal("derived password is not 64 hex characters")
	}
}

// tlsFiles writes a CA, a server certificate for 127.0.0.1 and a client
// certificate with common name "SN1" into dir.
type tlsFiles struct {
	caFile, certFile, keyFile string
	caPool                    *x509.CertPool
	client                    tls.Certificate
	// client2 has common name "SN2".
	client2 tls.Certificate
}

func writeTLSFiles(t *testing.T) tlsFiles {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ip net.IP) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if ip != nil {
			tmpl.IPAddresses = []net.IP{ip}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var f tlsFiles
	f.caFile = write("ca.pem", "CERTIFICATE", caDER)
	srvDER, srvKey := issue(2, "acs", x509.ExtKeyUsageServerAuth, net.IPv4(127, 0, 0, 1))
	f.certFile = write("server.pem", "CERTIFICATE", srvDER)
	kb, _ := x509.MarshalECPrivateKey(srvKey)
	f.keyFile = write("server-key.pem", "EC PRIVATE KEY", kb)
	cliDER, cliKey := issue(3, "SN1", x509.ExtKeyUsageClientAuth, nil)
	f.client = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
	cli2DER, cli2Key := issue(4, "SN2", x509.ExtKeyUsageClientAuth, nil)
	f.client2 = tls.Certificate{Certificate: [][]byte{cli2DER}, PrivateKey: cli2Key}
	f.caPool = x509.NewCertPool()
	f.caPool.AddCert(ca)
	return f
}

// config returns testConfig serving CWMP over HTTPS only, with the files'
// certificate, and client certificates optional under their CA.
func (f tlsFiles) config() Config {
	cfg := testConfig()
	cfg.ListenAddr = ""
	cfg.TLSListenAddr = "127.0.0.1:0"
	cfg.TLSCertFile, cfg.TLSKeyFile = f.certFile, f.keyFile
	cfg.TLSClientCAFile, cfg.TLSClientAuth = f.caFile, "optional"
	return cfg
}

func dialTLS(t *testing.T, addr string, f tlsFiles, withCert bool) *cpeConn {
	t.Helper()
	if withCert {
		return dialTLSWith(t, addr, f, &f.client)
	}
	return dialTLSWith(t, addr, f, nil)
}

// dialTLSWith opens a TLS connection presenting cert (none when nil).
func dialTLSWith(t *testing.T, addr string, f tlsFiles, cert *tls.Certificate) *cpeConn {
	t.Helper()
	tc := &tls.Config{RootCAs: f.caPool, ServerName: "127.0.0.1"}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	c, err := tls.Dial("tcp", addr, tc)
	if err != nil {
		t.Fatalf("dial TLS: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &cpeConn{t: t, c: c, br: bufio.NewReader(c)}
}

func TestTLSBasicAndClientCertificate(t *testing.T) {
	f := writeTLSFiles(t)
	cfg := f.config()
	cfg.AuthSchemes = "digest,basic"
	h := startGateway(t, cfg, nil)

	c := dialTLS(t, h.tlsAddr, f, false)
	a := c.post(informBody(t, "SN1", "1 BOOT"))
	if a.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no credentials over TLS: %d", a.StatusCode)
	}
	var basic bool
	for _, v := range a.Header.Values("WWW-Authenticate") {
		basic = basic || strings.HasPrefix(v, `Basic realm="FleetACS"`)
	}
	if !basic {
		t.Fatalf("Basic not offered over TLS: %q", a.Header.Values("WWW-Authenticate"))
	}
	if a := c.post(informBody(t, "SN1", "1 BOOT"), basicHeader("cpe", "secret")); a.StatusCode != http.StatusOK {
		t.Fatalf("Basic over TLS: %d", a.StatusCode)
	}
	cc := dialTLS(t, h.tlsAddr, f, true)
	if a := cc.post(informBody(t, "SN1", "1 BOOT")); a.StatusCode != http.StatusOK {
		t.Fatalf("client certificate: %d", a.StatusCode)
	}
	seen := h.worker.seen()
	if len(seen) != 2 || seen[0].Auth.Method != AuthBasic || !seen[0].TLS ||
		seen[1].Auth != (Auth{Method: AuthClientCertificate, Principal: "SN1"}) {
		t.Fatalf("exchanges %+v", seen)
	}
}

// TestClientCertificateNamesDevice: a client certificate authenticates the
// device its common name names, not any device: a CPE holding its own
// certificate must not pose as another, nor get around another's
// per-device credentials. gateway.tls-client-cert-devices=any allows
// certificates shared by many CPEs.
func TestClientCertificateNamesDevice(t *testing.T) {
	f := writeTLSFiles(t)
	for _, devices := range []string{certDevicesNamed, certDevicesAny} {
		t.Run(devices, func(t *testing.T) {
			cfg := f.config()
			cfg.TLSClientCertDevices = devices
			h := startGateway(t, cfg, func(d *Deps) { d.Credentials = perDeviceCredentials() })
			// SN2's certificate, informing as SN1 (whose own credentials
			// are sn1-user/sn1-pass).
			a := dialTLSWith(t, h.tlsAddr, f, &f.client2).post(informBody(t, "SN1", "1 BOOT"))
			want := http.StatusUnauthorized
			if devices == certDevicesAny {
				want = http.StatusOK
			}
			if a.StatusCode != want {
				t.Fatalf("SN2's certificate informing as SN1: %d, want %d", a.StatusCode, want)
			}
			// Its own device, either way.
			if a := dialTLSWith(t, h.tlsAddr, f, &f.client2).post(informBody(t, "SN2", "1 BOOT")); a.StatusCode != http.StatusOK {
				t.Fatalf("SN2's certificate informing as SN2: %d", a.StatusCode)
			}
			for _, ex := range h.worker.seen() {
				if devices == certDevicesNamed && ex.DeviceID != nil && ex.DeviceID.SerialNumber != ex.Auth.Principal {
					t.Errorf("worker saw %s authenticated as %q", ex.DeviceID.SerialNumber, ex.Auth.Principal)
				}
			}
		})
	}
}

// failingCredentials is a credentials store that is down.
type failingCredentials struct{}

func (failingCredentials) CPECredentials(context.Context, string, string) (DeviceCredentials, error) {
	return DeviceCredentials{}, errors.New("inventory unreachable")
}

func TestCredentialStoreDown(t *testing.T) {
	h := startGateway(t, testConfig(), func(d *Deps) { d.Credentials = failingCredentials{} })
	c := dialCPE(t, h.addr)
	first := c.post(informBody(t, "SN1", "1 BOOT"))
	d := &digestClient{user: "cpe", pass: "secret"}
	d.learn(t, first)
	a := c.post(informBody(t, "SN1", "1 BOOT"), d.header("/cwmp"))
	if a.StatusCode != http.StatusServiceUnavailable || a.Header.Get("Retry-After") != "10" {
		t.Fatalf("credentials store down: %d %q", a.StatusCode, a.Header.Get("Retry-After"))
	}
	if n := len(h.worker.seen()); n != 0 {
		t.Fatalf("worker saw %d exchanges", n)
	}
}

// stalledCredentials answers no lookup: it waits for its caller to give
// up, and reports when it does.
type stalledCredentials struct{ gaveUp chan error }

func (c stalledCredentials) CPECredentials(ctx context.Context, _, _ string) (DeviceCredentials, error) {
	<-ctx.Done()
	c.gaveUp <- ctx.Err()
	return DeviceCredentials{}, ctx.Err()
}

// TestStalledCredentialStoreBounded: a credentials store that never
// answers holds a request no longer than gateway.write-timeout, even when
// the CPE (or an attacker with a valid Digest header) keeps its connection
// open: net/http cancels a request's context only when the client hangs
// up.
func TestStalledCredentialStoreBounded(t *testing.T) {
	cfg := testConfig()
	cfg.WriteTimeout, cfg.ExchangeTimeout = 500*time.Millisecond, 400*time.Millisecond
	creds := stalledCredentials{gaveUp: make(chan error, 1)}
	h := startGateway(t, cfg, func(d *Deps) { d.Credentials = creds })
	c := dialCPE(t, h.addr)
	d := &digestClient{user: "cpe", pass: "secret"}
	d.learn(t, c.post(informBody(t, "SN1", "1 BOOT")))
	req, err := http.NewRequest(http.MethodPost, "http://acs.example/cwmp", bytes.NewReader(informBody(t, "SN1", "1 BOOT")))
	if err != nil {
		t.Fatal(err)
	}
	k, v, _ := strings.Cut(d.header("/cwmp"), ": ")
	req.Header.Set(k, v)
	if err := req.Write(c.c); err != nil {
		t.Fatal(err)
	}
	// The connection stays open; only the gateway's own deadline can end
	// the lookup. The wait below is a failure bound, not a timing.
	select {
	case err := <-creds.gaveUp:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("lookup ended with %v, want the request's deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("credentials lookup still waiting 10s after the request: nothing bounds it")
	}
}
