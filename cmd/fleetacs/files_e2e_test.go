package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/services/files"
	"github.com/fleetacs/fleetacs/services/files/blob/disk"
	"github.com/fleetacs/fleetacs/services/files/store/sqlitestore"
)

// signerFor signs download URLs with the key file a fleetacs process
// created in its data directory, as the process itself would.
func signerFor(t *testing.T, dataDir string) *files.Service {
	t.Helper()
	keys := files.URLKeyFile(filepath.Join(dataDir, "files-url.key"), false)
	if err := keys.Load(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	svc, err := files.New(files.DefaultConfig(), files.Deps{
		Store: sqlitestore.New(sqlitestore.Config{Path: filepath.Join(dir, "unused.db")}), Blobs: disk.New(dir), URLKeys: keys,
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func fetch(t *testing.T, method, u string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx10(t), method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestFilesEndToEnd: `fleetacs all` takes a firmware by HTTP PUT on its
// HTTP/JSON API, lists it, serves it to a device's signed URL on the CWMP
// listener (whole and by range), refuses unsigned requests there, and
// stops serving it once deleted.
func TestFilesEndToEnd(t *testing.T) {
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s := startSecured(t, "-server.api-http-addr="+httpAddr)
	base := "http://" + httpAddr
	fw := bytes.Repeat([]byte("FIRMWARE-5.0-"), 100_000)
	sum := sha256.Sum256(fw)
	q := url.Values{"type": {"1 Firmware Upgrade Image"}, "version": {"5.0"}, "product_class": {"HGW"}, "sha256": {hex.EncodeToString(sum[:])}, "tenant": {"default"}}
	req, _ := http.NewRequestWithContext(ctx10(t), "PUT", base+"/v1/files/fw-5.0.bin?"+q.Encode(), bytes.NewReader(fw))
	req.Header.Set("Authorization", "Bearer "+s.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d %s", resp.StatusCode, b)
	}
	code, m := httpCall(t, "GET", base+"/v1/tenants/default/files?productClass=HGW", s.admin, nil)
	list, _ := m["files"].([]any)
	if code != 200 || len(list) != 1 {
		t.Fatalf("list: %d %v", code, m)
	}
	f := list[0].(map[string]any)
	id := f["id"].(string)
	if f["sha256"] != hex.EncodeToString(sum[:]) || f["size"] != fmt.Sprint(len(fw)) {
		t.Fatalf("record: %v", f)
	}
	code, m = httpCall(t, "GET", base+"/v1/tenants/default/files/"+id, "", nil)
	expectHTTP(t, "get without a token", code, m, http.StatusUnauthorized, "CREDENTIALS_MISSING")

	path, err := signerFor(t, s.dir).SignPath("default", id, "00D09E-HGW-E2E1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	gw := "http://" + s.cwmp
	if resp, body := fetch(t, "GET", gw+path); resp.StatusCode != 200 || !bytes.Equal(body, fw) {
		t.Fatalf("download through the gateway: %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp, body := fetch(t, "GET", gw+path, "Range", "bytes=13-25"); resp.StatusCode != 206 || !bytes.Equal(body, fw[13:26]) {
		t.Fatalf("range through the gateway: %d, %q", resp.StatusCode, body)
	}
	if resp, body := fetch(t, "GET", gw+"/files/default/"+id); resp.StatusCode != 403 || bytes.Contains(body, []byte("FIRMWARE")) {
		t.Fatalf("unsigned download: %d", resp.StatusCode)
	}
	// CWMP is still served beside it.
	if resp, _ := fetch(t, "GET", gw+"/"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET / on the CWMP listener: %d", resp.StatusCode)
	}
	code, m = httpCall(t, "DELETE", base+"/v1/tenants/default/files/"+id, s.admin, nil)
	if code != 200 {
		t.Fatalf("delete: %d %v", code, m)
	}
	if resp, _ := fetch(t, "GET", gw+path); resp.StatusCode != 404 {
		t.Fatalf("download of a deleted file: %d", resp.StatusCode)
	}
}
