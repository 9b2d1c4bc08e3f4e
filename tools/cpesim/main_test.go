package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	// The process's CPU over the run, and per session started.
	user, _ := m["cpu_user_s"].(float64)
	system, _ := m["cpu_system_s"].(float64)
	per, _ := m["cpu_us_per_session"].(float64)
	if user+system <= 0 || per <= 0 || math.Abs(per-(user+system)*1e6/20) > 0.01*per {
		t.Errorf("cpu figures: user %v system %v per session %v", m["cpu_user_s"], m["cpu_system_s"], m["cpu_us_per_session"])
	}
}

func TestRunText(t *testing.T) {
	srv := cannedACS(t, 0)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-url", srv.URL, "-devices", "2", "-boot-storm", "-conn-mode", "keepalive"}, &stdout, &stderr)
	if code != exitOK || !strings.Contains(stdout.String(), "sessions: started 2, ok 2, failed 0") {
		t.Errorf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if !regexp.MustCompile(`(?m)^cpu: [0-9]+ µs/session \(user [0-9.]+s, system [0-9.]+s over 2 sessions started\)$`).MatchString(stdout.String()) {
		t.Errorf("no cpu line in\n%s", stdout.String())
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
	if code := run(context.Background(), []string{"-h"}, &stdout, &stderr); code != exitOK || !strings.Contains(stdout.String(), "-boot-storm") {
		t.Errorf("-h: exit %d", code)
	}
}

// A mistyped flag is one line and a hint, not the flag list (issue 8
// item 16).
func TestMistypedFlagIsOneLine(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-devcies", "3"}, &stdout, &stderr); code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
	want := "cpesim: flag provided but not defined: -devcies\nRun 'cpesim -help' for the flags.\n"
	if stderr.String() != want || stdout.Len() != 0 {
		t.Fatalf("stderr %q, stdout %q; want only %q", stderr.String(), stdout.String(), want)
	}
}

// Aimed at a closed port, cpesim says so at the first failed session, ends
// the run after -give-up, and the summary tells the connection error
// (issue 8 item 16: it printed nothing for minutes).
func TestClosedPortReportedPromptly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/"
	ln.Close() // nothing listens there any more
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), []string{"-url", url, "-devices", "2", "-give-up", "1s"}, &stdout, &stderr)
	}()
	select {
	case code := <-done:
		if code != exitErrors {
			t.Fatalf("exit %d, want %d\n%s%s", code, exitErrors, stdout.String(), stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("cpesim still running against a closed port")
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "cpesim: a session failed (connect): ") || !strings.Contains(lines[0], "connection refused") ||
		!strings.HasPrefix(lines[1], "cpesim: ACS unreachable: no answer from "+url+" in 1s") {
		t.Fatalf("stderr:\n%s\nwant the first failure, then the end of the run", stderr.String())
	}
	if out := stdout.String(); !strings.Contains(out, "errors: connect:") || !strings.Contains(out, "first connect error: ") {
		t.Fatalf("summary does not tell the connection error:\n%s", out)
	}
}

// TestConnReqDevicesSleep: devices with connection-request listeners and
// no load named bootstrap once each and then wait (every -interval, or a
// connection request), as the README's newcomer path has them do, instead
// of running sessions back to back.
func TestConnReqDevicesSleep(t *testing.T) {
	var informs atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if len(body) == 0 {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		env, err := cwmp.Decode(body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if informs.Add(1) == 3 {
			// Every device has bootstrapped: a device that informed
			// again would arrive while run winds down.
			time.AfterFunc(200*time.Millisecond, cancel)
		}
		out, _ := cwmp.Encode(&cwmp.Envelope{Namespace: env.Namespace, Version: env.Version, Header: env.Header,
			Body: &cwmp.InformResponse{MaxEnvelopes: 1}})
		w.Write(out)
	}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"-url", srv.URL, "-devices", "3", "-cr", "per-device"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if n := informs.Load(); n != 3 {
		t.Fatalf("%d Informs from 3 devices that should bootstrap once and sleep", n)
	}
	if !strings.Contains(stderr.String(), "devices bootstrap, then inform every 5m0s") {
		t.Errorf("stderr does not say how the devices behave: %s", stderr.String())
	}
}
