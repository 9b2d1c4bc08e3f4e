package sim

import (
	"crypto/md5"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// connectionRequest makes an HTTP connection request the way an ACS does
// (docs/protocol.md §8.1): GET, answer the Digest challenge, GET again. It computes
// Digest itself rather than with the simulator's code.
func connectionRequest(t *testing.T, rawURL, user, pass string) int {
	t.Helper()
	resp, err := http.Get(rawURL)
	if err != nil {
		t.Fatalf("connection request: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return resp.StatusCode
	}
	ch := resp.Header.Get("WWW-Authenticate")
	p := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(ch, "Digest "), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		p[k] = strings.Trim(v, `"`)
	}
	u, _ := url.Parse(rawURL)
	md := func(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }
	ha1 := md(user + ":" + p["realm"] + ":" + pass)
	ha2 := md("GET:" + u.RequestURI())
	r := md(ha1 + ":" + p["nonce"] + ":00000001:abcdef:auth:" + ha2)
	req, _ := http.NewRequest(http.MethodGet, rawURL, nil)
	req.Header.Set("Authorization", `Digest username="`+user+`", realm="`+p["realm"]+`", nonce="`+p["nonce"]+
		`", uri="`+u.RequestURI()+`", qop=auth, nc=00000001, cnonce="abcdef", response="`+r+`"`)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("connection request: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestDigestResponse checks the client's Digest arithmetic against the
// worked example of RFC 2617 section 3.5.
func TestDigestResponse(t *testing.T) {
	chs := parseChallenges([]string{`Digest realm="testrealm@host.com", qop="auth,auth-int", ` +
		`nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"`})
	ch, ok := pickChallenge(chs)
	if !ok || ch.qop != "auth" || ch.realm != "testrealm@host.com" {
		t.Fatalf("challenge %+v", chs)
	}
	a := &authState{user: "Mufasa", pass: "Circle Of Life", ch: ch, cnonce: "0a4f113b"}
	h := a.header("GET", "/dir/index.html")
	for _, want := range []string{`response="6629fae49393a05397450978507c4ef1"`, `nc=00000001`, `opaque="5ccc069c403ebaf9f0171e9517f40e41"`, `cnonce="0a4f113b"`} {
		if !strings.Contains(h, want) {
			t.Errorf("Authorization %s lacks %s", h, want)
		}
	}
	if h2 := a.header("GET", "/dir/index.html"); !strings.Contains(h2, "nc=00000002") {
		t.Errorf("reused challenge does not count nonces: %s", h2)
	}
}

func TestParseChallenges(t *testing.T) {
	chs := parseChallenges([]string{`Basic realm="a", Digest realm="b", nonce="n1", algorithm=MD5-sess, qop="auth-int"`, `Digest realm="c",nonce="n,2",stale=true`})
	if len(chs) != 3 {
		t.Fatalf("%d challenges: %+v", len(chs), chs)
	}
	if chs[0].scheme != "basic" || chs[1].scheme != "digest" || chs[1].algorithm != "MD5-sess" || chs[1].qop != "" ||
		chs[2].nonce != "n,2" || !chs[2].stale {
		t.Errorf("challenges %+v", chs)
	}
	if ch, _ := pickChallenge(chs); ch.realm != "b" {
		t.Errorf("picked %+v, want the first Digest", ch)
	}
	if _, ok := pickChallenge(parseChallenges([]string{`Digest realm="x", nonce="y", algorithm=SHA-512-256`})); ok {
		t.Error("picked a challenge with an unsupported algorithm")
	}
}

// TestDigestServer: the connection request side accepts what the client
// side produces, refuses a wrong password and flags an expired nonce.
func TestDigestServer(t *testing.T) {
	srv := newDigestServer("cpesim")
	now := time.Now()
	chs := parseChallenges([]string{srv.challengeHeader(now, false)})
	a := &authState{user: "u", pass: "p", ch: chs[0]}
	h := a.header("GET", "/cr/x")
	if ok, _ := srv.verify(h, "GET", "u", "p", now); !ok {
		t.Errorf("verify rejected %s", h)
	}
	if ok, _ := srv.verify(h, "GET", "u", "q", now); ok {
		t.Error("verify accepted a wrong password")
	}
	if ok, stale := srv.verify(h, "GET", "u", "p", now.Add(time.Hour)); ok || !stale {
		t.Errorf("expired nonce: ok %v stale %v", ok, stale)
	}
}

func TestRetryWait(t *testing.T) {
	for _, tc := range []struct {
		n      int
		lo, hi time.Duration
	}{{1, 5 * time.Second, 10 * time.Second}, {2, 10 * time.Second, 20 * time.Second}, {10, 2560 * time.Second, 5120 * time.Second}, {15, 2560 * time.Second, 5120 * time.Second}} {
		if lo, hi := retryWait(tc.n, 5*time.Second, 2, 0), retryWait(tc.n, 5*time.Second, 2, 0.999999999); lo != tc.lo || hi < tc.hi-time.Millisecond || hi > tc.hi {
			t.Errorf("retry %d: window [%v, %v], want [%v, %v] (docs/protocol.md §4.4)", tc.n, lo, hi, tc.lo, tc.hi)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Millisecond)
	}
	l := h.summary()
	within := func(got, want time.Duration) bool { return got >= want && float64(got) <= float64(want)*1.04 }
	if l.Count != 1000 || l.Max != time.Second || !within(l.P50, 500*time.Millisecond) ||
		!within(l.P90, 900*time.Millisecond) || !within(l.P99, 990*time.Millisecond) {
		t.Errorf("summary %+v", l)
	}
	for us := uint64(0); us < 1<<20; us = us*5/4 + 1 {
		if i := histIndex(us); histValue(i) < us || (i > 0 && histValue(i-1) >= us) {
			t.Fatalf("bucket %d of %d µs is [%d, %d]", i, us, histValue(i-1), histValue(i))
		}
	}
}

// TestDeviceUnknownMethod: methods the device does not implement, and
// methods newer than the session's version, get fault 9000.
func TestDeviceUnknownMethod(t *testing.T) {
	s, err := New(Config{Devices: 1})
	if err != nil {
		t.Fatal(err)
	}
	d := s.Devices()[0]
	for _, tc := range []struct {
		msg cwmp.Message
		v   cwmp.Version
	}{
		{&cwmp.Unknown{Name: "X_ACME_Frobnicate", Namespace: cwmp.NS1_2}, cwmp.V1_4},
		{&cwmp.VendorRequest{Name: "X_ACME_Frobnicate", Namespace: cwmp.NS1_2, Arguments: "<A/>"}, cwmp.V1_4},
		{&cwmp.SetVouchers{}, cwmp.V1_4},
		{&cwmp.ChangeDUState{Operations: []cwmp.DUOperation{{Kind: cwmp.OpInstall, URL: "http://x/du"}}}, cwmp.V1_1},
		{&cwmp.GetAllQueuedTransfers{}, cwmp.V1_0},
	} {
		f, ok := d.handle(tc.msg, tc.v, time.Now()).(*cwmp.Fault)
		if !ok || f.Code != cwmp.FaultCPEMethodNotSupported {
			t.Errorf("%s in %s: %v, want fault 9000", tc.msg.Method(), tc.v, f)
		}
	}
}

// TestDeviceVendorEcho: X_FLEETACS_Echo answers with its arguments, through
// the wire codec, in every version.
func TestDeviceVendorEcho(t *testing.T) {
	s, err := New(Config{Devices: 1})
	if err != nil {
		t.Fatal(err)
	}
	d := s.Devices()[0]
	args := `<Text>a &amp; b</Text><n:X xmlns:n="urn:n"/>`
	for v := cwmp.V1_0; v <= cwmp.MaxVersion; v++ {
		req := &cwmp.VendorRequest{Name: "X_FLEETACS_Echo", Arguments: args}
		wire, err := cwmp.Encode(&cwmp.Envelope{Version: v, Body: req})
		if err != nil {
			t.Fatal(err)
		}
		in, err := cwmp.Decode(wire)
		if err != nil {
			t.Fatal(err)
		}
		resp := d.handle(in.Body, v, time.Now())
		out, err := cwmp.Encode(&cwmp.Envelope{Version: v, Body: resp})
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		back, err := cwmp.Decode(out)
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := back.Body.(*cwmp.VendorResponse); !ok || r.Name != "X_FLEETACS_EchoResponse" || r.InnerXML != args {
			t.Fatalf("%s: answer %#v", v, back.Body)
		}
	}
}

// TestDeviceTreeOperations covers GPN corner cases, instance numbering
// after deletes, the shared template staying untouched, DU state changes
// and CancelTransfer.
func TestDeviceTreeOperations(t *testing.T) {
	s, err := New(Config{Devices: 2})
	if err != nil {
		t.Fatal(err)
	}
	d, other := s.Devices()[0], s.Devices()[1]
	now := time.Now()
	call := func(m cwmp.Message) cwmp.Message { return d.handle(m, cwmp.V1_4, now) }

	r := call(&cwmp.GetParameterNames{ParameterPath: "", NextLevel: true}).(*cwmp.GetParameterNamesResponse)
	if len(r.ParameterList) != 1 || r.ParameterList[0].Name != "Device." {
		t.Errorf("GPN \"\" NextLevel=true: %+v", r.ParameterList)
	}
	full := call(&cwmp.GetParameterNames{ParameterPath: "Device.", NextLevel: false}).(*cwmp.GetParameterNamesResponse)
	params := 0
	for _, p := range full.ParameterList {
		if !strings.HasSuffix(p.Name, ".") {
			params++
		}
	}
	if params != d.NumParams() {
		t.Errorf("GPN Device. lists %d parameters, tree has %d", params, d.NumParams())
	}
	if f, ok := call(&cwmp.GetParameterNames{ParameterPath: "Device.DeviceInfo"}).(*cwmp.Fault); !ok || f.Code != 9005 {
		t.Errorf("object path without dot: %v", f)
	}

	add := func() uint32 {
		return call(&cwmp.AddObject{ObjectName: "Device.NAT.PortMapping."}).(*cwmp.AddObjectResponse).InstanceNumber
	}
	if n := add(); n != 1 {
		t.Errorf("first port mapping is %d, want 1", n)
	}
	if _, ok := call(&cwmp.DeleteObject{ObjectName: "Device.NAT.PortMapping.1."}).(*cwmp.DeleteObjectResponse); !ok {
		t.Fatal("DeleteObject failed")
	}
	if n := add(); n != 2 {
		t.Errorf("instance number after a delete is %d, want 2 (not reused)", n)
	}
	if v, _ := d.Param("Device.NAT.PortMappingNumberOfEntries"); v.Value != "1" {
		t.Errorf("PortMappingNumberOfEntries %q, want 1", v.Value)
	}
	if v, _ := other.Param("Device.NAT.PortMappingNumberOfEntries"); v.Value != "0" {
		t.Errorf("other device's PortMappingNumberOfEntries %q: the shared template changed", v.Value)
	}
	if _, ok := other.Param("Device.NAT.PortMapping.2.Enable"); ok {
		t.Error("other device sees the new instance")
	}
	if v, _ := d.Param("Device.Hosts.HostNumberOfEntries"); v.Value != "3" {
		t.Errorf("HostNumberOfEntries %q, want 3", v.Value)
	}
	if f, ok := call(&cwmp.DeleteObject{ObjectName: "Device.DeviceInfo."}).(*cwmp.Fault); !ok || f.Code != 9005 {
		t.Errorf("delete of a single object: %v", f)
	}
	if f, ok := call(&cwmp.AddObject{ObjectName: "Device.Hosts.Host."}).(*cwmp.Fault); !ok || f.Code != 9001 {
		t.Errorf("add to a read-only table: %v, want 9001", f)
	}

	// Distinct generated values per device.
	m1, _ := d.Param("Device.Ethernet.Interface.1.MACAddress")
	m2, _ := other.Param("Device.Ethernet.Interface.1.MACAddress")
	if m1.Value == m2.Value || len(m1.Value) != 17 {
		t.Errorf("MACs %q %q", m1.Value, m2.Value)
	}
	if p, _ := d.Param("Device.ManagementServer.Password"); p.Value != "" {
		t.Errorf("hidden password reads %q", p.Value)
	}

	// ChangeDUState runs after the session; its results are queued with
	// their events.
	call(&cwmp.ChangeDUState{CommandKey: "du-1", Operations: []cwmp.DUOperation{
		{Kind: cwmp.OpInstall, URL: "http://x/app.ipk"}, {Kind: cwmp.OpUninstall, UUID: "no-such"}}})
	call(&cwmp.Download{CommandKey: "dl-9", FileType: "1 Firmware Upgrade Image", URL: "http://x/fw", DelaySeconds: 60})
	if _, ok := call(&cwmp.CancelTransfer{CommandKey: "dl-9"}).(*cwmp.CancelTransferResponse); !ok {
		t.Error("CancelTransfer of a queued download failed")
	}
	if f, ok := call(&cwmp.CancelTransfer{CommandKey: "dl-9"}).(*cwmp.Fault); !ok || f.Code != 9021 {
		t.Errorf("second CancelTransfer: %v", f)
	}
	d.mu.Lock()
	d.applyDUChangeLocked("du-1", []cwmp.DUOperation{{Kind: cwmp.OpInstall, URL: "http://x/app.ipk"}, {Kind: cwmp.OpUninstall, UUID: "no-such"}}, now)
	res := d.duResults[0].results
	events := append([]cwmp.Event(nil), d.events...)
	d.mu.Unlock()
	if res[0].CurrentState != "Installed" || res[0].UUID == "" || res[1].Fault.FaultCode != cwmp.FaultUnknownDU {
		t.Errorf("DU results %+v", res)
	}
	if !containsEvent(events, evDUChange, "") || !containsEvent(events, evMChangeDUState, "du-1") {
		t.Errorf("events %+v", events)
	}
}

func containsEvent(list []cwmp.Event, code, key string) bool {
	for _, e := range list {
		if e.Code == code && e.CommandKey == key {
			return true
		}
	}
	return false
}

// TestCheckValue covers the type checks of SetParameterValues.
func TestCheckValue(t *testing.T) {
	for _, tc := range []struct {
		pd   ParamDef
		in   string
		out  string
		code cwmp.FaultCode
	}{
		{ParamDef{Type: "xsd:boolean"}, "1", "true", 0},
		{ParamDef{Type: "xsd:boolean"}, "yes", "", 9007},
		{ParamDef{Type: "xsd:unsignedInt", Min: 1, HasMin: true}, "0", "", 9007},
		{ParamDef{Type: "xsd:unsignedInt"}, "4294967296", "", 9007},
		{ParamDef{Type: "xsd:int", Min: -1, HasMin: true, Max: 10, HasMax: true}, "-1", "-1", 0},
		{ParamDef{Type: "xsd:string", MaxLen: 3}, "abcd", "", 9007},
		{ParamDef{Type: "xsd:string", Enum: []string{"A", "B"}}, "C", "", 9007},
		{ParamDef{Type: "xsd:string", Enum: []string{"A", "B"}, List: true}, "A,B", "A,B", 0},
		{ParamDef{Type: "xsd:dateTime"}, "2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z", 0},
		{ParamDef{Type: "xsd:dateTime"}, "yesterday", "", 9007},
		{ParamDef{Type: "xsd:hexBinary"}, "0aF", "", 9007},
		{ParamDef{Type: "xsd:base64"}, "aGk=", "aGk=", 0},
	} {
		out, code := checkValue(&tc.pd, tc.in)
		if out != tc.out || code != tc.code {
			t.Errorf("%s %q: %q %d, want %q %d", tc.pd.Type, tc.in, out, code, tc.out, tc.code)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, mut := range []func(*Config){
		func(c *Config) { c.URL = "ftp://x/" },
		func(c *Config) { c.Model = "tr069" },
		func(c *Config) { c.OUI = "00d09e" },
		func(c *Config) { c.CWMPVersion = "2.0" },
		func(c *Config) { c.ConnMode = "pipelined" },
		func(c *Config) { c.ConnReq = "udp" },
		func(c *Config) { c.Jitter = 1 },
		func(c *Config) { c.Rate = -1 },
	} {
		c := Config{}.withDefaults()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("config %+v validated", c)
		}
	}
	c := Config{}.withDefaults()
	if err := c.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
