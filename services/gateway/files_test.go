package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestFilesMounted: with Deps.Files the CWMP listener hands GET and HEAD
// (and any method) under /files/ to it, and only those paths; without it
// /files/ is a CWMP path like any other (405 for a GET).
func TestFilesMounted(t *testing.T) {
	files := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "files:"+r.Method+":"+r.URL.Path)
	})
	h := startGateway(t, testConfig(), func(d *Deps) { d.Files = files })
	get := func(addr, method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, "http://"+addr+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(h.addr, "GET", "/files/default/X/fw.bin"); code != 200 || body != "files:GET:/files/default/X/fw.bin" {
		t.Fatalf("GET /files/: %d %q", code, body)
	}
	if code, body := get(h.addr, "POST", "/files/x"); code != 200 || body != "files:POST:/files/x" {
		t.Fatalf("POST /files/ goes to the files handler too (it answers 405 itself): %d %q", code, body)
	}
	for _, p := range []string{"/", "/filesx", "/cwmp/files/x"} {
		if code, body := get(h.addr, "GET", p); code != http.StatusMethodNotAllowed || strings.HasPrefix(body, "files:") {
			t.Errorf("GET %s: %d %q, want the CWMP handler's 405", p, code, body)
		}
	}
	plain := startGateway(t, testConfig(), nil)
	if code, body := get(plain.addr, "GET", "/files/default/X"); code != http.StatusMethodNotAllowed || strings.HasPrefix(body, "files:") {
		t.Errorf("without Files: %d %q", code, body)
	}
}
