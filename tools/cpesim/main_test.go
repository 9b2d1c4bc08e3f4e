package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// cannedACS answers every Inform with an InformResponse and every empty
// POST with 204, or every POST with failStatus when it is set.
func cannedACS(t *testing.T, failStatus int) *httptest.Server {
	t.Helper()
	var informs atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if failStatus != 0 {
			w.WriteHeader(failStatus)
			return
		}
		if len(body) == 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		env, err := cwmp.Decode(body)
		if err != nil {
			t.Errorf("canned ACS: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		informs.Add(1)
		out, _ := cwmp.Encode(&cwmp.Envelope{Namespace: env.Namespace, Version: env.Version, Header: env.Header,
			Body: &cwmp.InformResponse{MaxEnvelopes: 1}})
		w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRunJSON(t *testing.T) {
	srv := cannedACS(t, 0)
	// The data models are compiled in: cpesim runs from any directory,
	// outside the repository too.
	t.Chdir(t.TempDir())
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-url", srv.URL, "-devices", "5", "-sessions", "20",
		"-concurrency", "4", "-model", "tr098", "-json"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, stderr.String())
	}
	var m map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
	}
	if m["sessions_ok"] != 20.0 || m["devices"] != 5.0 || m["model"] != "tr098" {
		t.Errorf("summary %s", stdout.String())
	}
}

func TestRunText(t *testing.T) {
	srv := cannedACS(t, 0)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-url", srv.URL, "-devices", "2", "-boot-storm", "-conn-mode", "keepalive"}, &stdout, &stderr)
	if code != exitOK || !strings.Contains(stdout.String(), "sessions: started 2, ok 2, failed 0") {
		t.Errorf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
}

// TestRunErrorThreshold: failed sessions beyond -max-errors give exit
// status 1; within it, 0.
func TestRunErrorThreshold(t *testing.T) {
	srv := cannedACS(t, http.StatusInternalServerError)
	args := []string{"-url", srv.URL, "-devices", "3", "-boot-storm", "-sessions", "3"}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != exitErrors || !strings.Contains(stdout.String(), "http_500:3") {
		t.Errorf("exit %d, want %d\n%s%s", code, exitErrors, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := run(context.Background(), append(args, "-max-errors", "3"), &stdout, &stderr); code != exitOK {
		t.Errorf("within -max-errors: exit %d", code)
	}
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-devices", "0"},
		{"-model", "tr069"},
		{"-conn-mode", "bogus"},
		{"-table", "Device.Hosts.Host.{i}."},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != exitUsage || stderr.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &stdout, &stderr); code != exitOK || !strings.Contains(stderr.String(), "-boot-storm") {
		t.Errorf("-h: exit %d", code)
	}
}
