package files

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/recordid"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
)

const device = "00D09E-HGW-SN0001"

func (h *harness) signed(t *testing.T, tenant, id, dev string, ttl time.Duration) string {
	t.Helper()
	p, err := h.svc.SignPath(tenant, id, dev, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDownloadRanges(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	data := content(1<<20+3, 11)
	f := h.mustUpload(t, firmware("fw-3.0.bin", "3.0"), data)
	p := h.signed(t, "default", f.GetId(), device, time.Hour)
	etag := `"` + sum(data) + `"`
	size := len(data)

	resp, body := h.get(t, "GET", p)
	if resp.StatusCode != 200 || !bytes.Equal(body, data) || resp.Header.Get("ETag") != etag ||
		resp.Header.Get("Content-Length") != strconv.Itoa(size) || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("GET: %d, %d bytes, headers %v", resp.StatusCode, len(body), resp.Header)
	}
	// The name may end the path, as CPEs like file names in URLs.
	u, _ := url.Parse(p)
	named := u.Path + "/fw-3.0.bin?" + u.RawQuery
	if resp, body := h.get(t, "GET", named); resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("GET with the name: %d", resp.StatusCode)
	}
	resp, body = h.get(t, "HEAD", p)
	if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Length") != strconv.Itoa(size) || resp.Header.Get("ETag") != etag {
		t.Fatalf("HEAD: %d, %d bytes, %v", resp.StatusCode, len(body), resp.Header)
	}
	for _, tc := range []struct {
		rng        string
		start, end int // end exclusive
	}{
		{"bytes=0-0", 0, 1},
		{"bytes=10-19", 10, 20},
		{"bytes=1000000-", 1000000, size},
		{"bytes=-100", size - 100, size},
		{fmt.Sprintf("bytes=%d-%d", size-5, size+1000), size - 5, size},
	} {
		resp, body := h.get(t, "GET", p, "Range", tc.rng)
		want := fmt.Sprintf("bytes %d-%d/%d", tc.start, tc.end-1, size)
		if resp.StatusCode != 206 || !bytes.Equal(body, data[tc.start:tc.end]) || resp.Header.Get("Content-Range") != want ||
			resp.Header.Get("Content-Length") != strconv.Itoa(tc.end-tc.start) {
			t.Errorf("Range %s: %d, %d bytes, Content-Range %q (want %q)", tc.rng, resp.StatusCode, len(body), resp.Header.Get("Content-Range"), want)
		}
	}
	// If-Range: a resume of this very file gets the range, of another
	// version the whole file.
	if resp, body := h.get(t, "GET", p, "Range", "bytes=100-", "If-Range", etag); resp.StatusCode != 206 || !bytes.Equal(body, data[100:]) {
		t.Errorf("If-Range matching: %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp, body := h.get(t, "GET", p, "Range", "bytes=100-", "If-Range", `"other"`); resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Errorf("If-Range not matching: %d, %d bytes", resp.StatusCode, len(body))
	}
	// Unsatisfiable.
	resp, body = h.get(t, "GET", p, "Range", fmt.Sprintf("bytes=%d-", size))
	if resp.StatusCode != 416 || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) || bytes.Contains(body, data[:64]) {
		t.Errorf("Range past the end: %d, Content-Range %q", resp.StatusCode, resp.Header.Get("Content-Range"))
	}
	if resp, _ := h.get(t, "GET", p, "If-None-Match", etag); resp.StatusCode != 304 {
		t.Errorf("If-None-Match: %d", resp.StatusCode)
	}
	// Two ranges: multipart; more than 16: the whole file.
	if resp, body := h.get(t, "GET", p, "Range", "bytes=0-9,100-109"); resp.StatusCode != 206 ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges") || !bytes.Contains(body, data[100:110]) {
		t.Errorf("two ranges: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	many := "bytes=0-0"
	for i := 1; i <= 16; i++ {
		many += fmt.Sprintf(",%d-%d", i*10, i*10)
	}
	if resp, body := h.get(t, "GET", p, "Range", many); resp.StatusCode != 200 || len(body) != size {
		t.Errorf("17 ranges: %d, %d bytes; want the whole file", resp.StatusCode, len(body))
	}
}

// TestDownloadAbuse: every request that is not a device's valid URL gets
// 403, 404 or 405, and never a byte of the file.
func TestDownloadAbuse(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	data := bytes.Repeat([]byte("SECRET-FIRMWARE-"), 1<<12)
	f := h.mustUpload(t, firmware("fw.bin", "1"), data)
	id := f.GetId()
	// A file of another tenant.
	of, err := h.upload(t, h.other, "", firmware("fw.bin", "1"), data, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	good := h.signed(t, "default", id, device, time.Hour)
	gu, _ := url.Parse(good)
	q := gu.Query()
	with := func(k, v string) string {
		q2 := url.Values{}
		for kk, vv := range q {
			q2[kk] = vv
		}
		if v == "" {
			q2.Del(k)
		} else {
			q2.Set(k, v)
		}
		return gu.Path + "?" + q2.Encode()
	}
	sig := q.Get("s")
	flipped := string(rune(sig[0]^1)) + sig[1:]
	expired := h.signed(t, "default", id, device, time.Minute)
	otherKey, _ := secretbox.GenerateKey()
	otherKeys, _ := NewURLKeys(otherKey)
	forged := &Service{cfg: h.svc.cfg, keys: otherKeys, now: h.svc.now}
	forgedPath, _ := forged.SignPath("default", id, device, time.Hour)
	cases := []struct {
		name, method, path string
		code               int
	}{
		{"no signature", "GET", "/files/default/" + id, 403},
		{"signature removed", "GET", with("s", ""), 403},
		{"tampered signature", "GET", with("s", flipped), 403},
		{"truncated signature", "GET", with("s", sig[:20]), 403},
		{"another device", "GET", with("d", "00D09E-HGW-SN0002"), 403},
		{"expiry moved", "GET", with("e", strconv.FormatInt(time.Now().Add(100*time.Hour).Unix(), 10)), 403},
		{"unknown key", "GET", with("k", "nokey"), 403},
		{"signed by another key", "GET", forgedPath, 403},
		{"extra parameter", "GET", good + "&x=1", 403},
		{"repeated parameter", "GET", good + "&d=" + device, 403},
		{"another tenant in the path", "GET", strings.Replace(good, "/files/default/", "/files/other/", 1), 403},
		{"another file id", "GET", strings.Replace(good, id, of.GetId(), 1), 403},
		{"another tenant's file, its own signature for this tenant", "GET", h.signed(t, "default", of.GetId(), device, time.Hour), 404},
		{"wrong name", "GET", gu.Path + "/other.bin?" + gu.RawQuery, 404},
		// net/http's ServeMux here redirects to the cleaned path, whose
		// signature fails (the gateway mounts the handler without a mux:
		// 404 there, TestHandlerWithoutMux).
		{"traversal", "GET", "/files/default/../other/" + id + "?" + gu.RawQuery, 403},
		{"encoded traversal", "GET", "/files/default/%2e%2e%2fother?" + gu.RawQuery, 404},
		{"deep path", "GET", gu.Path + "/a/b?" + gu.RawQuery, 404},
		{"bad id", "GET", "/files/default/x?" + gu.RawQuery, 404},
		{"huge query", "GET", good + "&pad=" + strings.Repeat("a", 2000), 404},
		{"POST", "POST", good, 405},
		{"PUT", "PUT", good, 405},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h.get(t, tc.method, tc.path)
			if resp.StatusCode != tc.code {
				t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.code)
			}
			if bytes.Contains(body, []byte("SECRET-FIRMWARE")) {
				t.Errorf("%s: the answer holds the file's bytes", tc.name)
			}
		})
	}
	// A GET with a body.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", h.files.URL+good, strings.NewReader("body"))
	resp, err := h.files.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || bytes.Contains(b, []byte("SECRET")) {
		t.Errorf("GET with a body: %d", resp.StatusCode)
	}
	// Expired: the same URL worked before its expiry.
	if resp, _ := h.get(t, "HEAD", expired); resp.StatusCode != 200 {
		t.Fatalf("fresh URL: %d", resp.StatusCode)
	}
	h.clock.Advance(time.Minute + time.Second)
	if resp, body := h.get(t, "GET", expired); resp.StatusCode != 403 || bytes.Contains(body, []byte("SECRET")) {
		t.Errorf("expired URL: %d", resp.StatusCode)
	}
	// A deleted file: 404 even with a valid URL.
	if _, err := h.public.DeleteFile(as(t.Context(), h.operator), &filesv1.DeleteFileRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := h.get(t, "GET", good); resp.StatusCode != 404 {
		t.Errorf("deleted file: %d", resp.StatusCode)
	}
}

func TestSignURL(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *Config) { c.MaxURLTTL = time.Hour }})
	id := recordid.New(time.Now())
	u, err := h.svc.SignURL("default", id, device, time.Minute)
	if err != nil || !strings.HasPrefix(u, "http://acs.example.net:7547/files/default/"+id+"?") {
		t.Fatalf("SignURL = %q, %v", u, err)
	}
	for _, tc := range []struct {
		tenant, id, dev string
		ttl             time.Duration
	}{
		{"", id, device, time.Minute},
		{"default", "x", device, time.Minute},
		{"default", id, "", time.Minute},
		{"default", id, strings.Repeat("d", 300), time.Minute},
		{"default", id, device, 0},
		{"default", id, device, 2 * time.Hour},
	} {
		if _, err := h.svc.SignURL(tc.tenant, tc.id, tc.dev, tc.ttl); err == nil {
			t.Errorf("SignURL(%q, %q, %q, %s) succeeded", tc.tenant, tc.id, tc.dev, tc.ttl)
		}
	}
	noBase, err := New(DefaultConfig(), Deps{Store: h.svc.meta, Blobs: h.svc.blobs, URLKeys: h.svc.keys})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noBase.SignURL("default", id, device, time.Minute); err == nil {
		t.Error("SignURL without a base URL succeeded")
	}
}

// TestURLKeyRotation: a URL signed with a key that is no longer the first
// still verifies; the key file is created owner-only.
func TestURLKeyRotation(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/files-url.key"
	k := URLKeyFile(path, true)
	if err := k.Load(); err != nil {
		t.Fatal(err)
	}
	fi, err := osStat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	old, _ := k.signing()
	newer, _ := secretbox.GenerateKey()
	rotated, err := NewURLKeys(newer, old)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	a := &Service{cfg: cfg, keys: k, now: time.Now}
	b := &Service{cfg: cfg, keys: rotated, now: time.Now}
	id := recordid.New(time.Now())
	p, err := a.SignPath("default", id, device, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(p)
	if dev, err := b.checkSignature("default", id, u.Query()); err != nil || dev != device {
		t.Fatalf("URL of the previous key: %q, %v", dev, err)
	}
	if err := URLKeyFile(dir+"/missing.key", false).Load(); err == nil {
		t.Fatal("a named key file that does not exist loaded")
	}
}

// TestSlowClients: a download whose client stops reading ends at its
// deadline, and a slow request line never reaches the handler (the
// gateway's ReadHeaderTimeout; here a plain server's).
func TestSlowClients(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *Config) { c.ServeMaxTime = time.Second }})
	data := content(32<<20, 12)
	f := h.mustUpload(t, &filesv1.UploadFileHeader{Name: "big.bin", FileType: "1 Firmware Upgrade Image", Version: "1"}, data)
	p := h.signed(t, "default", f.GetId(), device, time.Hour)
	c, err := net.Dial("tcp", h.files.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", p); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("response: %v, %v", resp, err)
	}
	// Read nothing until the handler has given up: it frees its slot.
	deadline := time.Now().Add(10 * time.Second)
	for len(h.svc.serving) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the download of a client that reads nothing is still served")
		}
		time.Sleep(20 * time.Millisecond)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	if n >= int64(len(data)) {
		t.Fatalf("the stalled client got the whole file (%d bytes)", n)
	}
}

// TestConcurrencyCap: past files.serve-max-concurrent, 503.
func TestConcurrencyCap(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *Config) { c.ServeMaxConcurrent = 1 }})
	f := h.mustUpload(t, firmware("fw.bin", "1"), []byte("firmware"))
	p := h.signed(t, "default", f.GetId(), device, time.Hour)
	h.svc.serving <- struct{}{} // one download in progress
	resp, body := h.get(t, "GET", p)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || bytes.Contains(body, []byte("firmware")) {
		t.Fatalf("over the cap: %d", resp.StatusCode)
	}
	<-h.svc.serving
	if resp, body := h.get(t, "GET", p); resp.StatusCode != 200 || string(body) != "firmware" {
		t.Fatalf("under the cap: %d %q", resp.StatusCode, body)
	}
}

// TestHandlerWithoutMux: the handler itself refuses paths that are not
// /files/<tenant>/<id>[/<name>], as the gateway hands it raw paths.
func TestHandlerWithoutMux(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	f := h.mustUpload(t, firmware("fw.bin", "1"), []byte("SECRET-FIRMWARE"))
	good, _ := url.Parse(h.signed(t, "default", f.GetId(), device, time.Hour))
	for _, path := range []string{
		"/files/default/../other/" + f.GetId(),
		"/files/default/" + f.GetId() + "/../../x",
		"/files/../default/" + f.GetId(),
		"/files//" + f.GetId(),
		"/files/default",
		"/filesdefault/" + f.GetId(),
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "http://x/", nil)
		r.URL.Path, r.URL.RawQuery = path, good.RawQuery
		h.svc.DownloadHandler().ServeHTTP(w, r)
		if w.Code != 404 && w.Code != 403 || bytes.Contains(w.Body.Bytes(), []byte("SECRET")) {
			t.Errorf("%s: %d", path, w.Code)
		}
	}
}

// TestDeviceAuthCredentials: with files.device-auth=credentials a valid URL
// is not enough: the device check runs (after the signature's), and
// without a checker the download is refused.
func TestDeviceAuthCredentials(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *Config) { c.DeviceAuth = DeviceAuthCredentials }})
	f := h.mustUpload(t, firmware("fw.bin", "1"), []byte("SECRET-FIRMWARE"))
	p := h.signed(t, "default", f.GetId(), device, time.Hour)
	if resp, body := h.get(t, "GET", p); resp.StatusCode != 503 || bytes.Contains(body, []byte("SECRET")) {
		t.Fatalf("no checker: %d", resp.StatusCode)
	}
	var mu sync.Mutex
	var asked []string
	h.svc.SetDeviceAuth(func(w http.ResponseWriter, r *http.Request, tenant, dev string) bool {
		mu.Lock()
		asked = append(asked, tenant+"/"+dev)
		mu.Unlock()
		if r.Header.Get("X-Device") != dev {
			http.Error(w, "not the device", http.StatusUnauthorized)
			return false
		}
		return true
	})
	if resp, body := h.get(t, "GET", p, "X-Device", device); resp.StatusCode != 200 || string(body) != "SECRET-FIRMWARE" {
		t.Fatalf("the device: %d %q", resp.StatusCode, body)
	}
	// Another device holding this device's URL.
	if resp, body := h.get(t, "GET", p, "X-Device", "00D09E-HGW-SN0002"); resp.StatusCode != 401 || bytes.Contains(body, []byte("SECRET")) {
		t.Fatalf("another device with the URL: %d", resp.StatusCode)
	}
	// A bad signature is refused before the device is asked for.
	mu.Lock()
	n := len(asked)
	mu.Unlock()
	resp, _ := h.get(t, "GET", "/files/default/"+f.GetId()+"?d="+device, "X-Device", device)
	mu.Lock()
	defer mu.Unlock()
	if resp.StatusCode != 403 || len(asked) != n {
		t.Fatalf("unsigned: %d, checker called %d times", resp.StatusCode, len(asked)-n)
	}
	if asked[0] != "default/"+device {
		t.Fatalf("checker asked for %v", asked)
	}
}
