package gateway

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"testing"
)

// getDigest is the Authorization header of a GET of uri answering a
// challenge with nonce.
func getDigest(user, pass, realm, nonce, uri string, nc int) string {
	hash := func(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }
	ha1 := hash(user + ":" + realm + ":" + pass)
	ha2 := hash("GET:" + uri)
	n := fmt.Sprintf("%08x", nc)
	resp := hash(ha1 + ":" + nonce + ":" + n + ":c0ffee:auth:" + ha2)
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", algorithm=MD5, qop=auth, nc=%s, cnonce="c0ffee", response="%s"`,
		user, realm, nonce, uri, n, resp)
}

// TestAuthenticateDevice: a file download checked against the credentials
// of the device its URL names: only that device's own credentials pass.
func TestAuthenticateDevice(t *testing.T) {
	cfg := testConfig()
	cfg.AuthSchemes = "digest,basic"
	cfg.AuthBasicOverHTTP = true
	var h *harness
	files := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The URL is for SN1 (as the files service reads it from the
		// signed URL).
		if h.svc.AuthenticateDevice(w, r, "default", testDeviceKey("SN1")) {
			_, _ = io.WriteString(w, "FILE")
		}
	})
	h = startGateway(t, cfg, func(d *Deps) { d.Credentials = perDeviceCredentials(); d.Files = files })
	const uri = "/files/default/F/fw.bin?d=SN1&e=1&k=k&s=sig"
	do := func(auth string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+h.addr+uri, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	first, body := do("")
	if first.StatusCode != http.StatusUnauthorized || body == "FILE" {
		t.Fatalf("no credentials: %d %q", first.StatusCode, body)
	}
	var realm, nonce string
	for _, v := range first.Header.Values("WWW-Authenticate") {
		if len(v) > 7 && v[:7] == "Digest " {
			realm, nonce = challengeParam(v, "realm"), challengeParam(v, "nonce")
		}
	}
	if nonce == "" {
		t.Fatalf("no Digest challenge: %v", first.Header)
	}
	basic := func(u, p string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)) }
	for _, tc := range []struct {
		name, auth string
		code       int
	}{
		{"its own credentials (Digest)", getDigest("sn1-user", "sn1-pass", realm, nonce, uri, 1), 200},
		{"its own credentials (Basic)", basic("sn1-user", "sn1-pass"), 200},
		{"a replayed Digest header", getDigest("sn1-user", "sn1-pass", realm, nonce, uri, 1), 401},
		{"wrong password", getDigest("sn1-user", "nope", realm, nonce, uri, 2), 401},
		{"another device's credentials", getDigest("sn2-user", "sn2-pass", realm, nonce, uri, 3), 401},
		{"the shared onboarding credentials", basic("cpe", "secret"), 401},
	} {
		resp, body := do(tc.auth)
		if resp.StatusCode != tc.code || (tc.code != 200) == (body == "FILE") {
			t.Errorf("%s: %d %q, want %d", tc.name, resp.StatusCode, body, tc.code)
		}
	}
}

// TestAuthenticateDeviceSharedOnly: a device without credentials of its
// own, authenticated with the shared ones, is not vouched for: 403.
func TestAuthenticateDeviceSharedOnly(t *testing.T) {
	cfg := testConfig()
	cfg.AuthSchemes = "digest,basic"
	cfg.AuthBasicOverHTTP = true
	var h *harness
	h = startGateway(t, cfg, func(d *Deps) {
		d.Files = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if h.svc.AuthenticateDevice(w, r, "default", testDeviceKey("SN9")) {
				_, _ = io.WriteString(w, "FILE")
			}
		})
	})
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+h.addr+"/files/default/F", nil)
	req.SetBasicAuth("cpe", "secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || string(b) == "FILE" {
		t.Fatalf("shared credentials: %d %q, want 403", resp.StatusCode, b)
	}
}
