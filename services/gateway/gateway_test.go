package gateway

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fleetacs/fleetacs/pkg/authstate/authstatetest"
)

func anonymousConfig() Config {
	c := testConfig()
	c.AuthAnonymous = true
	return c
}

func TestConfigDefaultsValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var c2 Config
	c2.RegisterFlags(fs)
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.HasPrefix(f.Name, "gateway.") || strings.ToLower(f.Name) != f.Name || strings.Contains(f.Name, "_") {
			t.Errorf("flag %q is not gateway.<kebab-name>", f.Name)
		}
	})
	if err := fs.Parse([]string{"-gateway.max-sessions=7", "-gateway.auth-schemes=digest,basic"}); err != nil {
		t.Fatal(err)
	}
	if c2.MaxSessions != 7 || c2.AuthSchemes != "digest,basic" {
		t.Fatalf("parsed %+v", c2)
	}
}

func TestConfigValidateRejects(t *testing.T) {
	for name, edit := range map[string]func(*Config){
		"no listener":        func(c *Config) { c.ListenAddr, c.TLSListenAddr = "", "" },
		"tls without cert":   func(c *Config) { c.TLSListenAddr = ":7548" },
		"client auth no CA":  func(c *Config) { c.TLSClientAuth = "require" },
		"client auth value":  func(c *Config) { c.TLSClientAuth = "maybe" },
		"body limit":         func(c *Config) { c.MaxBodyBytes = 0 },
		"scheme":             func(c *Config) { c.AuthSchemes = "ntlm" },
		"basic over http":    func(c *Config) { c.AuthBasicOverHTTP = true },
		"shared half":        func(c *Config) { c.AuthSharedUsername = "x" },
		"share":              func(c *Config) { c.AdmissionReservedShare = 1 },
		"events":             func(c *Config) { c.AdmissionPriorityEvents = "1,BOOT" },
		"retry after":        func(c *Config) { c.RetryAfterMax = time.Second },
		"tenant hosts":       func(c *Config) { c.TenantHosts = "acs.example" },
		"trusted proxies":    func(c *Config) { c.TrustedProxies = "10.0.0.0/33" },
		"exchange vs write":  func(c *Config) { c.ExchangeTimeout = c.WriteTimeout },
		"realm with a quote": func(c *Config) { c.AuthRealm = `a"b` },
		"shared scope":       func(c *Config) { c.AuthSharedScope = "some" },
		"onboarding window":  func(c *Config) { c.AuthOnboardingWindow = 0 },
		"negative failures":  func(c *Config) { c.AuthFailuresPerUser = -1 },
		"backoff order":      func(c *Config) { c.AuthBackoffMax = c.AuthBackoffBase / 2 },
		"backoff too long":   func(c *Config) { c.AuthBackoffMax = 48 * time.Hour },
		"failure memory":     func(c *Config) { c.AuthFailureMemory = 0 },
		"known source ttl":   func(c *Config) { c.AuthKnownSourceTTL = 0 },
		"conn failures":      func(c *Config) { c.AuthConnFailures = 0 },
		"acs host url":       func(c *Config) { c.ACSHostNames = "http://acs.example/" },
		"acs host port":      func(c *Config) { c.ACSHostNames = "acs.example:99999" },
	} {
		c := DefaultConfig()
		edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
	}
}

func TestCookieSession(t *testing.T) {
	for in, want := range map[string]string{
		"session=abc":                           "abc",
		"a=1; session=abc":                      "abc",
		"a=1, session=abc, b=2":                 "abc",
		`$Version=1; Session="abc"; $Path="/"`:  "abc",
		"session=bad value":                     "",
		"session=" + strings.Repeat("x", 200):   "",
		"sessionx=abc":                          "",
		"session=<script>; session=second-good": "second-good",
	} {
		h := http.Header{"Cookie": {in}}
		if got := cookieSession(h); got != want {
			t.Errorf("cookieSession(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClientAddrTrustedProxies(t *testing.T) {
	trusted, err := parsePrefixes("10.0.0.0/8, 192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	r := &http.Request{RemoteAddr: "10.1.2.3:4444", Header: http.Header{"X-Forwarded-For": {"203.0.113.9, 198.51.100.7", "10.9.9.9"}}}
	if addr, ip := clientAddr(r, trusted); ip != "198.51.100.7" || addr != "198.51.100.7:0" {
		t.Fatalf("behind trusted proxies: %s %s", addr, ip)
	}
	r.RemoteAddr = "198.51.100.50:5555" // not a proxy: its header is the CPE's claim
	if addr, ip := clientAddr(r, trusted); ip != "198.51.100.50" || addr != "198.51.100.50:5555" {
		t.Fatalf("untrusted peer: %s %s", addr, ip)
	}
}

func TestTenantOfHost(t *testing.T) {
	hosts, _ := parseTenantHosts("acs.isp1.example=isp1, ACS.isp2.example=isp2")
	for host, want := range map[string]string{"acs.isp1.example:7547": "isp1", "acs.isp2.example": "isp2", "other": "default"} {
		if got := tenantOf(&http.Request{Host: host}, hosts, "default"); got != want {
			t.Errorf("tenantOf(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestEventNumber(t *testing.T) {
	for code, want := range map[string]int{"0 BOOTSTRAP": 0, "1 BOOT": 1, " 6 CONNECTION REQUEST": 6, "7 TRANSFER COMPLETE": 7, "14 HEARTBEAT": 14, "1": 1} {
		if n, ok := eventNumber(code); !ok || n != want {
			t.Errorf("eventNumber(%q) = %d, %v", code, n, ok)
		}
	}
	for _, code := range []string{"M Reboot", "X 00D09E Foo", "", "1BOOT"} {
		if _, ok := eventNumber(code); ok {
			t.Errorf("eventNumber(%q) matched", code)
		}
	}
}

func TestRPCName(t *testing.T) {
	for body, want := range map[string]string{
		string(informBody(t, "SN1")): "Inform",
		`<?xml version="1.0"?><s:Envelope xmlns:s="x"><s:Header><c:ID xmlns:c="y">1</c:ID></s:Header><s:Body><c:GetParameterValuesResponse xmlns:c="y"/></s:Body></s:Envelope>`: "GetParameterValuesResponse",
		"\ufeff<?xml version='1.0'?>\n<!-- c > d --><soap:Envelope a='>'>\n <soap:Header/>\n <soap:Body>\n  <cwmp:Inform>":                                                      "Inform",
		`<Envelope><Header><ID x="/>">1</ID></Header><Body><TransferComplete/></Body></Envelope>`:                                                                               "TransferComplete",
		`<Envelope><Body></Body></Envelope>`:   "",
		`<Envelope><Body/></Envelope>`:         "",
		`<!DOCTYPE x><Envelope><Body><Inform>`: "",
		`<html>`:                               "",
		`<Envelope><Body><`:                    "",
		`not xml`:                              "",
	} {
		if got := rpcName([]byte(body)); got != want {
			t.Errorf("rpcName(%.40q) = %q, want %q", body, got, want)
		}
	}
}

func FuzzRPCName(f *testing.F) {
	f.Add(informBody(f, "SN1", "1 BOOT"))
	f.Add(gpvResponseBody(f))
	f.Add([]byte(`<a:Envelope><a:Header/><a:Body><b:X/></a:Body></a:Envelope>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		name := rpcName(b)
		if name != "" && !bytes.Contains(b, []byte(name)) {
			t.Fatalf("rpcName invented %q", name)
		}
	})
}

// runSession completes the test worker's session (empty POST, then the
// GetParameterValuesResponse) with post, which sends one request.
func runSession(t *testing.T, post func(body []byte) answer) {
	t.Helper()
	a := post(nil)
	if a.StatusCode != http.StatusOK || !strings.Contains(string(a.body), "GetParameterValues") {
		t.Fatalf("empty POST: %d %s %q", a.StatusCode, a.body, a.Header)
	}
	if a := post(gpvResponseBody(t)); a.StatusCode != http.StatusNoContent || len(a.body) != 0 {
		t.Fatalf("GetParameterValuesResponse: %d %s", a.StatusCode, a.body)
	}
}

// checkOneSession asserts that the worker saw one session of three
// requests, all with the same session ID, and that nothing is left open.
func checkOneSession(t *testing.T, h *harness) {
	t.Helper()
	seen := h.worker.seen()
	if len(seen) != 3 {
		t.Fatalf("worker saw %d exchanges, want 3", len(seen))
	}
	for i, ex := range seen {
		if ex.SessionID != seen[0].SessionID || ex.NewSession != (i == 0) || ex.Tenant != "default" || ex.DeviceKey != testDeviceKey("SN1") {
			t.Fatalf("exchange %d: %+v", i, ex)
		}
	}
	if n := h.worker.openSessions(); n != 0 {
		t.Fatalf("worker still holds %d sessions", n)
	}
	waitFor(t, "affinity record removed", func() bool { return h.affinity.Len() == 0 })
	if n, _ := h.svc.sessions.count(); n != 0 {
		t.Fatalf("gateway still counts %d sessions", n)
	}
}

func TestRoutingByCookie(t *testing.T) {
	h := startGateway(t, testConfig(), nil)
	_, first := h.openSession("SN1", "1 BOOT")
	sid := cookieOf(first)
	if first.StatusCode != http.StatusOK || sid == "" {
		t.Fatalf("Inform: %d cookie %q", first.StatusCode, sid)
	}
	if got := first.Header.Get("Set-Cookie"); got != "session="+sid+"; Path=/" {
		t.Fatalf("Set-Cookie %q", got)
	}
	// Every later request on a new connection with the cookie only, in
	// the comma-separated form some CPEs use.
	runSession(t, func(body []byte) answer {
		return dialCPE(t, h.addr).post(body, "Cookie: other=1, session="+sid)
	})
	checkOneSession(t, h)
}

func TestRoutingByKeepAliveConnection(t *testing.T) {
	h := startGateway(t, testConfig(), nil)
	c, first := h.openSession("SN1", "1 BOOT")
	if first.StatusCode != http.StatusOK {
		t.Fatalf("Inform: %d", first.StatusCode)
	}
	// No cookie, no credentials: the connection carries the session.
	runSession(t, func(body []byte) answer { return c.post(body) })
	checkOneSession(t, h)
}

func TestRoutingByClientAddress(t *testing.T) {
	h := startGateway(t, testConfig(), nil)
	c, first := h.openSession("SN1", "1 BOOT")
	if first.StatusCode != http.StatusOK {
		t.Fatalf("Inform: %d", first.StatusCode)
	}
	_ = c.c.Close()
	// A new connection and no cookie: the address finds the session, but
	// the address alone does not prove who speaks.
	if a := dialCPE(t, h.addr).post(nil); a.StatusCode != http.StatusUnauthorized {
		t.Fatalf("address-routed request without credentials: %d, want 401", a.StatusCode)
	}
	d := &digestClient{user: "cpe", pass: "secret"}
	d.learn(t, dialCPE(t, h.addr).post(informBody(t, "SN9")))
	runSession(t, func(body []byte) answer {
		return dialCPE(t, h.addr).post(body, d.header("/cwmp"))
	})
	// One of the exchanges above is the SN9 probe's challenge only: the
	// worker saw just SN1's session.
	checkOneSession(t, h)
}

// TestWorkerKeepsRecords: the worker keeps the session's affinity record
// (docs/design.md §1), the gateway writes none itself, and every way of
// routing a session works from the worker's records.
func TestWorkerKeepsRecords(t *testing.T) {
	for _, mode := range []string{"cookie", "connection", "address"} {
		t.Run(mode, func(t *testing.T) {
			cfg := testConfig()
			counted := &countingAffinity{}
			h := startGateway(t, cfg, func(d *Deps) {
				counted.Affinity = d.Affinity
				d.Affinity = counted
			})
			c, first := h.openSession("SN1", "1 BOOT")
			if first.StatusCode != http.StatusOK {
				t.Fatalf("Inform: %d", first.StatusCode)
			}
			if h.affinity.Len() != 1 {
				t.Fatalf("%d records after the Inform, want the worker's one", h.affinity.Len())
			}
			switch mode {
			case "cookie":
				sid := cookieOf(first)
				runSession(t, func(body []byte) answer { return dialCPE(t, h.addr).post(body, "Cookie: session="+sid) })
			case "connection":
				runSession(t, func(body []byte) answer { return c.post(body) })
			case "address":
				_ = c.c.Close()
				d := &digestClient{user: "cpe", pass: "secret"}
				d.learn(t, dialCPE(t, h.addr).post(informBody(t, "SN9")))
				runSession(t, func(body []byte) answer { return dialCPE(t, h.addr).post(body, d.header("/cwmp")) })
			}
			checkOneSession(t, h)
			if p, d := counted.puts.Load(), counted.deletes.Load(); p != 0 || d != 0 {
				t.Fatalf("gateway wrote records itself: %d puts, %d deletes", p, d)
			}
		})
	}
}

func TestEmptyPOSTOutsideSession(t *testing.T) {
	h := startGateway(t, anonymousConfig(), nil)
	c := dialCPE(t, h.addr)
	if a := c.post(nil); a.StatusCode != http.StatusNoContent {
		t.Fatalf("empty POST: %d", a.StatusCode)
	}
	// A chunked body with no data is just as empty.
	req, _ := http.NewRequest(http.MethodPost, "http://acs.example/", io.NopCloser(strings.NewReader("")))
	req.ContentLength = -1
	req.TransferEncoding = []string{"chunked"}
	if a := c.do(req); a.StatusCode != http.StatusNoContent {
		t.Fatalf("chunked empty POST: %d", a.StatusCode)
	}
	if n := len(h.worker.seen()); n != 0 {
		t.Fatalf("worker saw %d exchanges", n)
	}
}

func TestMalformedBodyForwarded(t *testing.T) {
	h := startGateway(t, anonymousConfig(), nil)
	a := dialCPE(t, h.addr).post([]byte("<soap:Envelope><broken"), `Content-Type: text/html; charset="ISO-8859-1"`)
	if a.StatusCode != http.StatusBadRequest || !strings.Contains(string(a.body), "Fault") {
		t.Fatalf("malformed body: %d %s", a.StatusCode, a.body)
	}
	seen := h.worker.seen()
	if len(seen) != 1 || !seen[0].NewSession || seen[0].DeviceKey != "" || seen[0].Charset != "ISO-8859-1" {
		t.Fatalf("exchanges %+v", seen)
	}
}

func TestCompressedBodies(t *testing.T) {
	h := startGateway(t, anonymousConfig(), nil)
	plain := informBody(t, "SN1", "1 BOOT")
	for _, tc := range []struct {
		name, coding string
		encode       func(w io.Writer) io.WriteCloser
		decode       func(r io.Reader) (io.Reader, error)
	}{
		{"gzip", "gzip", func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) },
			func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }},
		{"zlib deflate", "deflate", func(w io.Writer) io.WriteCloser { return zlib.NewWriter(w) },
			func(r io.Reader) (io.Reader, error) { return zlib.NewReader(r) }},
		{"raw deflate", "Deflate", func(w io.Writer) io.WriteCloser { fw, _ := flate.NewWriter(w, 5); return fw },
			func(r io.Reader) (io.Reader, error) { return zlib.NewReader(r) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			zw := tc.encode(&buf)
			_, _ = zw.Write(plain)
			_ = zw.Close()
			a := dialCPE(t, h.addr).post(buf.Bytes(), "Content-Encoding: "+tc.coding)
			if a.StatusCode != http.StatusOK {
				t.Fatalf("status %d", a.StatusCode)
			}
			seen := h.worker.seen()
			if got := seen[len(seen)-1].Body; !bytes.Equal(got, plain) {
				t.Fatalf("worker got %d bytes, want the %d decompressed", len(got), len(plain))
			}
			if ce := a.Header.Get("Content-Encoding"); !strings.EqualFold(ce, tc.coding) && !(tc.coding == "Deflate" && ce == "deflate") {
				t.Fatalf("reply Content-Encoding %q", ce)
			}
			zr, err := tc.decode(bytes.NewReader(a.body))
			if err != nil {
				t.Fatal(err)
			}
			out, err := io.ReadAll(zr)
			if err != nil || !strings.Contains(string(out), "InformResponse") {
				t.Fatalf("reply %q, %v", out, err)
			}
		})
	}
}

func TestBodyLimits(t *testing.T) {
	cfg := anonymousConfig()
	cfg.MaxBodyBytes = 64 << 10
	cfg.MaxWireBodyBytes = 32 << 10
	h := startGateway(t, cfg, nil)

	// A zip bomb: 16 MiB of zeros in about 16 KiB of gzip (one compressed
	// MiB repeated as 16 gzip members, which decoders concatenate), within
	// the wire limit but far over the decompressed one.
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	_, _ = zw.Write(make([]byte, 1<<20))
	_ = zw.Close()
	bomb := bytes.NewBuffer(bytes.Repeat(member.Bytes(), 16))
	if bomb.Len() > int(cfg.MaxWireBodyBytes) {
		t.Fatalf("bomb of %d bytes does not fit the wire limit", bomb.Len())
	}
	if a := dialCPE(t, h.addr).post(bomb.Bytes(), "Content-Encoding: gzip"); a.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("zip bomb: %d, want 413", a.StatusCode)
	}

	big := bytes.Repeat([]byte("x"), 40<<10)
	if a := dialCPE(t, h.addr).post(big); a.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversize body: %d, want 413", a.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://acs.example/", io.NopCloser(bytes.NewReader(big)))
	req.ContentLength = -1
	req.TransferEncoding = []string{"chunked"}
	if a := dialCPE(t, h.addr).do(req); a.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversize chunked body: %d, want 413", a.StatusCode)
	}
	if a := dialCPE(t, h.addr).post([]byte("x"), "Content-Encoding: br"); a.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("brotli: %d, want 415", a.StatusCode)
	}
	if a := dialCPE(t, h.addr).post([]byte("\x1f\x8b\x08\x00garbage"), "Content-Encoding: gzip"); a.StatusCode != http.StatusBadRequest {
		t.Fatalf("corrupt gzip: %d, want 400", a.StatusCode)
	}
	var trunc bytes.Buffer
	zw = gzip.NewWriter(&trunc)
	_, _ = zw.Write(informBody(t, "SN1"))
	_ = zw.Close()
	if a := dialCPE(t, h.addr).post(trunc.Bytes()[:trunc.Len()-12], "Content-Encoding: gzip"); a.StatusCode != http.StatusBadRequest {
		t.Fatalf("truncated gzip: %d, want 400", a.StatusCode)
	}
	if n := len(h.worker.seen()); n != 0 {
		t.Fatalf("worker saw %d exchanges", n)
	}
}

func TestHeaderLimit(t *testing.T) {
	cfg := anonymousConfig()
	cfg.MaxHeaderBytes = 1 << 10
	h := startGateway(t, cfg, nil)
	// net/http allows 4 KiB of slack over MaxHeaderBytes.
	a := dialCPE(t, h.addr).post(informBody(t, "SN1"), "X-Padding: "+strings.Repeat("p", 8<<10))
	if a.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("large headers: %d, want 431", a.StatusCode)
	}
}

func TestMethodAndProbes(t *testing.T) {
	h := startGateway(t, anonymousConfig(), nil)
	get := func(addr, path string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		return dialCPE(t, addr).do(req).StatusCode
	}
	if s := get(h.addr, "/cwmp"); s != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", s)
	}
	if s := get(h.addr, "/healthz"); s != http.StatusOK {
		t.Fatalf("healthz: %d", s)
	}
	if s := get(h.addr, "/readyz"); s != http.StatusOK {
		t.Fatalf("readyz: %d", s)
	}

	cfg := anonymousConfig()
	cfg.AdminListenAddr = "127.0.0.1:0"
	h2 := startGateway(t, cfg, nil)
	if s := get(h2.admin, "/readyz"); s != http.StatusOK {
		t.Fatalf("admin readyz: %d", s)
	}
	if s := get(h2.addr, "/readyz"); s != http.StatusMethodNotAllowed {
		t.Fatalf("readyz on the CWMP listener with an admin listener: %d", s)
	}
	// Headers are bounded there too (probes send a few hundred bytes).
	req, _ := http.NewRequest(http.MethodGet, "http://"+h2.admin+"/readyz", nil)
	req.Header.Set("X-Pad", strings.Repeat("p", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("admin listener, 64 KiB of headers: %d, want 431", resp.StatusCode)
	}
}

// shedCount reads fleetacs.gateway.sessions.shed for reason and priority.
func shedCount(t *testing.T, r *sdkmetric.ManualReader, reason string, priority bool) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	want := attribute.NewSet(attribute.String("reason", reason), attribute.Bool("priority", priority))
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "fleetacs.gateway.sessions.shed" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if dp.Attributes.Equals(&want) {
					return dp.Value
				}
			}
		}
	}
	return 0
}

func TestAdmissionPriorityAndJitter(t *testing.T) {
	cfg := anonymousConfig()
	cfg.AdmissionRate = 0.001 // the fake clock stands still: no refill
	cfg.AdmissionBurst = 2
	cfg.AdmissionReservedShare = 0.5
	reader := sdkmetric.NewManualReader()
	var randMu sync.Mutex
	var randArgs []int64
	h := startGateway(t, cfg, func(d *Deps) {
		d.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		d.RandN = func(n int64) int64 {
			randMu.Lock()
			defer randMu.Unlock()
			randArgs = append(randArgs, n)
			return n - 1
		}
	})

	periodic := dialCPE(t, h.addr)
	if a := periodic.post(informBody(t, "SN1", "2 PERIODIC")); a.StatusCode != http.StatusOK {
		t.Fatalf("first PERIODIC: %d", a.StatusCode)
	}
	// The next PERIODIC would dig into the reserve: shed.
	a := dialCPE(t, h.addr).post(informBody(t, "SN2", "2 PERIODIC", "4 VALUE CHANGE"))
	if a.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second PERIODIC: %d, want 503", a.StatusCode)
	}
	secs, err := strconv.Atoi(a.Header.Get("Retry-After"))
	if err != nil || secs < 60 || secs > 120 {
		t.Fatalf("Retry-After %q not within [60, 120]", a.Header.Get("Retry-After"))
	}
	randMu.Lock()
	if secs != 120 || len(randArgs) != 1 || randArgs[0] != 61 {
		t.Fatalf("Retry-After %d from rand args %v; want 60 + (61-1)", secs, randArgs)
	}
	randMu.Unlock()
	// A BOOT takes the reserved token.
	if a := dialCPE(t, h.addr).post(informBody(t, "SN3", "1 BOOT")); a.StatusCode != http.StatusOK {
		t.Fatalf("BOOT: %d", a.StatusCode)
	}
	// The bucket is empty, yet the open session goes on to its end.
	runSession(t, func(body []byte) answer { return periodic.post(body) })
	// Even priority work waits now.
	if a := dialCPE(t, h.addr).post(informBody(t, "SN4", "6 CONNECTION REQUEST")); a.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("CONNECTION REQUEST with an empty bucket: %d", a.StatusCode)
	}
	if n := shedCount(t, reader, shedRate, false); n != 1 {
		t.Fatalf("normal sheds counted %d, want 1", n)
	}
	if n := shedCount(t, reader, shedRate, true); n != 1 {
		t.Fatalf("priority sheds counted %d, want 1", n)
	}
	// Time refills the bucket.
	h.clock.Advance(2000 * time.Second)
	if a := dialCPE(t, h.addr).post(informBody(t, "SN4", "6 CONNECTION REQUEST")); a.StatusCode != http.StatusOK {
		t.Fatalf("after refill: %d", a.StatusCode)
	}
}

func TestAdmissionBucket(t *testing.T) {
	clock := authstatetest.NewClock(authstatetest.Start)
	a := newAdmission(10, 10, 0.3, map[int]bool{1: true}, clock.Now)
	admitted := 0
	for a.admit(false) {
		admitted++
	}
	if admitted != 7 {
		t.Fatalf("normal requests admitted %d, want 7 (10 minus the reserve of 3)", admitted)
	}
	for range 3 {
		if !a.admit(true) {
			t.Fatal("priority request refused with reserve left")
		}
	}
	if a.admit(true) {
		t.Fatal("priority request admitted from an empty bucket")
	}
	clock.Advance(100 * time.Millisecond) // one token
	if a.admit(false) {
		t.Fatal("normal request took a reserved token")
	}
	if !a.admit(true) {
		t.Fatal("priority request refused with a token")
	}
	var nilAdmission *admission
	if !nilAdmission.admit(false) {
		t.Fatal("disabled admission refused")
	}
}

func TestMaxSessions(t *testing.T) {
	cfg := anonymousConfig()
	cfg.MaxSessions = 1
	h := startGateway(t, cfg, nil)
	c := dialCPE(t, h.addr)
	if a := c.post(informBody(t, "SN1", "1 BOOT")); a.StatusCode != http.StatusOK {
		t.Fatalf("first session: %d", a.StatusCode)
	}
	a := dialCPE(t, h.addr).post(informBody(t, "SN2", "1 BOOT"))
	if a.StatusCode != http.StatusServiceUnavailable || a.Header.Get("Retry-After") == "" {
		t.Fatalf("over the cap: %d %q", a.StatusCode, a.Header.Get("Retry-After"))
	}
	runSession(t, func(body []byte) answer { return c.post(body) })
	if a := dialCPE(t, h.addr).post(informBody(t, "SN2", "1 BOOT")); a.StatusCode != http.StatusOK {
		t.Fatalf("after the first ended: %d", a.StatusCode)
	}
	// A session whose CPE vanished stops counting after the idle timeout.
	h.clock.Advance(cfg.SessionIdleTimeout + time.Second)
	if a := dialCPE(t, h.addr).post(informBody(t, "SN3", "1 BOOT")); a.StatusCode != http.StatusOK {
		t.Fatalf("after the idle timeout: %d", a.StatusCode)
	}
}

func TestTakeoverAbandonsOldSession(t *testing.T) {
	h := startGateway(t, anonymousConfig(), nil)
	first := dialCPE(t, h.addr).post(informBody(t, "SN1", "1 BOOT"))
	old := cookieOf(first)
	// The CPE rebooted mid-session and starts again elsewhere.
	second := dialCPE(t, h.addr).post(informBody(t, "SN1", "1 BOOT"))
	if second.StatusCode != http.StatusOK || cookieOf(second) == old {
		t.Fatalf("second Inform: %d", second.StatusCode)
	}
	seen := h.worker.seen()
	if seen[1].Lease == nil || seen[1].Lease.Superseded != old || seen[1].Lease.FencingToken <= seen[0].Lease.FencingToken {
		t.Fatalf("leases %+v then %+v", seen[0].Lease, seen[1].Lease)
	}
	ab := h.worker.abandoned()
	if len(ab) != 1 || ab[0].SessionID != old || ab[0].Reason != AbandonSuperseded || ab[0].Worker != "w1" || ab[0].DeviceKey != testDeviceKey("SN1") {
		t.Fatalf("abandons %+v", ab)
	}
	if holder, _ := h.holder(testDeviceKey("SN1")); holder != cookieOf(second) {
		t.Fatalf("lease holder %q", holder)
	}
}

func TestWorkerErrors(t *testing.T) {
	busy := &scriptedForwarder{}
	busy.set(ErrWorkersBusy, nil)
	h := startGateway(t, anonymousConfig(), func(d *Deps) { d.Forwarder = busy })
	a := dialCPE(t, h.addr).post(informBody(t, "SN1", "1 BOOT"))
	if a.StatusCode != http.StatusServiceUnavailable || a.Header.Get("Retry-After") != "90" {
		t.Fatalf("workers busy: %d %q", a.StatusCode, a.Header.Get("Retry-After"))
	}
	if holder, ok := h.holder(testDeviceKey("SN1")); ok {
		t.Fatalf("lease still held by %q after no worker took the session", holder)
	}
	busy.set(nil, &Reply{Status: 299})
	if a := dialCPE(t, h.addr).post(informBody(t, "SN1", "1 BOOT")); a.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status outside the contract: %d", a.StatusCode)
	}
	busy.set(nil, &Reply{Status: http.StatusServiceUnavailable, RetryAfter: 1500 * time.Millisecond, SessionEnded: true})
	if a := dialCPE(t, h.addr).post(informBody(t, "SN1", "1 BOOT")); a.StatusCode != http.StatusServiceUnavailable || a.Header.Get("Retry-After") != "2" {
		t.Fatalf("worker 503: %d %q", a.StatusCode, a.Header.Get("Retry-After"))
	}
	busy.set(nil, &Reply{Status: http.StatusOK})
	if a := dialCPE(t, h.addr).post(informBody(t, "SN1", "1 BOOT")); a.StatusCode != http.StatusNoContent {
		t.Fatalf("empty 200: %d, want 204", a.StatusCode)
	}
	busy.set(io.ErrUnexpectedEOF, nil)
	if a := dialCPE(t, h.addr).post(informBody(t, "SN1", "1 BOOT")); a.StatusCode != http.StatusInternalServerError {
		t.Fatalf("worker failure: %d", a.StatusCode)
	}
	// A worker too slow to answer, or none reachable, is an outage the CPE
	// waits out: 503 with the jittered Retry-After, never a 5xx it counts
	// as a server error.
	for _, err := range []error{
		fmt.Errorf("exchange with worker w1: %w", context.DeadlineExceeded),
		fmt.Errorf("exchange with worker w1: %w", status.Error(codes.Unavailable, "connection refused")),
		fmt.Errorf("exchange: %w", ErrNoWorkers),
	} {
		busy.set(err, nil)
		a := dialCPE(t, h.addr).post(informBody(t, "SN1", "1 BOOT"))
		if a.StatusCode != http.StatusServiceUnavailable || a.Header.Get("Retry-After") != "90" {
			t.Fatalf("%v: %d %q, want 503 with Retry-After", err, a.StatusCode, a.Header.Get("Retry-After"))
		}
	}
	if n, _ := h.svc.sessions.count(); n != 0 {
		t.Fatalf("gateway counts %d sessions after failures", n)
	}
}

// scriptedForwarder answers every exchange the same way.
type scriptedForwarder struct {
	mu    sync.Mutex
	err   error
	reply *Reply
}

func (f *scriptedForwarder) set(err error, r *Reply) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err, f.reply = err, r
}

func (f *scriptedForwarder) Exchange(context.Context, *Exchange) (*Reply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	r := *f.reply
	return &r, nil
}

func (f *scriptedForwarder) Abandon(context.Context, *Abandonment) error { return nil }

func TestDrainOnShutdown(t *testing.T) {
	cfg := anonymousConfig()
	cfg.DrainGrace = 20 * time.Second
	h := startGateway(t, cfg, nil)
	c := dialCPE(t, h.addr)
	if a := c.post(informBody(t, "SN1", "1 BOOT")); a.StatusCode != http.StatusOK {
		t.Fatalf("Inform: %d", a.StatusCode)
	}
	// Hold the session's next exchange in the worker.
	h.worker.mu.Lock()
	h.worker.hold, h.worker.entered = make(chan struct{}), make(chan string, 1)
	hold := h.worker.hold
	h.worker.mu.Unlock()
	inflight := make(chan answer, 1)
	go func() { inflight <- c.post(nil) }()
	<-h.worker.entered

	stopped := make(chan error, 1)
	cancel := h.cancel
	h.cancel = nil
	go func() { cancel(); stopped <- <-h.done }()
	waitFor(t, "not ready", func() bool { return !h.svc.Ready() })
	req, _ := http.NewRequest(http.MethodGet, "http://"+h.addr+"/readyz", nil)
	if a := dialCPE(t, h.addr).do(req); a.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz while draining: %d", a.StatusCode)
	}
	// New sessions are refused...
	a := dialCPE(t, h.addr).post(informBody(t, "SN2", "1 BOOT"))
	if a.StatusCode != http.StatusServiceUnavailable || a.Header.Get("Retry-After") == "" || !a.Close {
		t.Fatalf("new session while draining: %d %q close=%v", a.StatusCode, a.Header.Get("Retry-After"), a.Close)
	}
	// ...while the open one finishes, its in-flight exchange first.
	h.worker.mu.Lock()
	h.worker.hold = nil
	h.worker.mu.Unlock()
	close(hold)
	if got := <-inflight; got.StatusCode != http.StatusOK {
		t.Fatalf("in-flight exchange: %d", got.StatusCode)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Run returned with a session open: %v", err)
	default:
	}
	if a := c.post(gpvResponseBody(t)); a.StatusCode != http.StatusNoContent {
		t.Fatalf("last exchange: %d", a.StatusCode)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the last session ended")
	}
}

// TestInformWithoutDevice: an Inform whose DeviceId names no device is
// authenticated like any other and forwarded, but under no device key: no
// lease is taken and no credentials are looked up under a key made of
// empty parts ("-", "-SN"); the worker refuses it (docs/protocol.md §5.3).
func TestInformWithoutDevice(t *testing.T) {
	h := startGateway(t, testConfig(), nil)
	for name, deviceID := range map[string]string{
		"no DeviceId": "",
		"blank OUI":   "<DeviceId><Manufacturer>Acme</Manufacturer><OUI> </OUI><ProductClass></ProductClass><SerialNumber> </SerialNumber></DeviceId>",
		"serial only": "<DeviceId><SerialNumber>SN</SerialNumber></DeviceId>",
	} {
		body := []byte(`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-0"><s:Body><cwmp:Inform>` +
			deviceID + `<Event/><MaxEnvelopes>1</MaxEnvelopes><CurrentTime>2026-03-01T12:00:00Z</CurrentTime><RetryCount>0</RetryCount><ParameterList/></cwmp:Inform></s:Body></s:Envelope>`)
		c := dialCPE(t, h.addr)
		first := c.post(body)
		if first.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: first POST %d, want the challenge", name, first.StatusCode)
		}
		d := &digestClient{user: "cpe", pass: "secret"}
		d.learn(t, first)
		c.post(body, d.header("/cwmp"))
		seen := h.worker.seen()
		last := seen[len(seen)-1]
		if !last.NewSession || last.DeviceKey != "" || last.Lease != nil {
			t.Errorf("%s: forwarded with device key %q, lease %+v", name, last.DeviceKey, last.Lease)
		}
	}
	for _, key := range []string{"-", "-SN", "ZZ-SN"} {
		if _, held := h.holder(key); held {
			t.Errorf("a lease is held for device key %q", key)
		}
	}
}

// TestBodyExpansionBounded: a body read before its CPE is authenticated
// may not expand more than maxExpansion times past maxExpansionFloor, so
// a few kilobytes of gzip no longer make the gateway inflate megabytes
// within the size limit; compressed CWMP as CPEs send it (ten to forty
// times) still goes through.
func TestBodyExpansionBounded(t *testing.T) {
	h := startGateway(t, anonymousConfig(), nil)
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = zw.Write(b)
		_ = zw.Close()
		return buf.Bytes()
	}
	zeros := gz(make([]byte, 3<<20)) // under the 4 MiB limit, about 3 KiB on the wire
	if a := dialCPE(t, h.addr).post(zeros, "Content-Encoding: gzip"); a.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("3 MiB from %d bytes of gzip: %d, want 413", len(zeros), a.StatusCode)
	}
	// An Inform carrying a large, repetitive parameter list, the most
	// compressible CWMP there is in practice.
	var params strings.Builder
	for i := range 4000 {
		fmt.Fprintf(&params, "<ParameterValueStruct><Name>Device.WiFi.AccessPoint.%d.AssociatedDevice.%d.SignalStrength</Name><Value xsi:type=\"xsd:int\">-%d</Value></ParameterValueStruct>", i/50, i%50, 40+i%37)
	}
	plain := bytes.Replace(informBody(t, "SN-X", "1 BOOT"), []byte("</ParameterList>"), []byte(params.String()+"</ParameterList>"), 1)
	if len(plain) < 400<<10 {
		t.Fatalf("the test Inform has %d bytes: its parameters were not added", len(plain))
	}
	body := gz(plain)
	if ratio := len(plain) / len(body); ratio > maxExpansion {
		t.Fatalf("test body expands %d times", ratio)
	}
	if a := dialCPE(t, h.addr).post(body, "Content-Encoding: gzip"); a.StatusCode == http.StatusRequestEntityTooLarge {
		t.Fatalf("a %d-byte Inform compressed %d times was refused", len(plain), len(plain)/len(body))
	}
}
