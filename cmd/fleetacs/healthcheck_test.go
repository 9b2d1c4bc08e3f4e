package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	ready := false
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		if r.URL.Path == "/healthz" || (r.URL.Path == "/readyz" && ready) {
			w.WriteHeader(http.StatusOK)
			return
		}
		http.Error(w, "not ready: inventory", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	check := func(addr string, args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), append([]string{"-server.http-addr=" + addr, "healthcheck"}, args...), &out, &errb, noEnv)
		return code, errb.String()
	}
	if code, msg := check(":" + port); code != 1 || !strings.Contains(msg, "503") || !strings.Contains(msg, "not ready: inventory") {
		t.Errorf("not ready: exit %d, %q", code, msg)
	}
	if code, msg := check(":"+port, "live"); code != 0 {
		t.Errorf("live: exit %d, %q", code, msg)
	}
	ready = true
	if code, msg := check("0.0.0.0:"+port, "ready"); code != 0 {
		t.Errorf("ready: exit %d, %q", code, msg)
	}
	if want := []string{"/readyz", "/healthz", "/readyz"}; strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("paths %v, want %v", paths, want)
	}
	srv.Close()
	if code, _ := check(":" + port); code != 1 {
		t.Errorf("no listener: exit %d, want 1", code)
	}
	if code, msg := check(":"+port, "now"); code != 2 || !strings.Contains(msg, "live or ready") {
		t.Errorf("bad argument: exit %d, %q", code, msg)
	}
	if code, msg := check("127.0.0.1:0"); code != 2 || !strings.Contains(msg, "no fixed port") {
		t.Errorf("port 0: exit %d, %q", code, msg)
	}
}
