package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestBinary builds the real fleetctl and checks what the in-process tests
// cannot: that main turns run's result into the process exit status and
// wires the standard streams.
func TestBinary(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "fleetctl")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	exe := func(stdin string, args ...string) result {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("run fleetctl %v: %v", args, err)
			}
			code = ee.ExitCode()
		}
		return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	}

	t.Run("decode succeeds", func(t *testing.T) {
		r := exe("", "cwmp", "decode", "testdata/xml/inform-hand.xml")
		want, err := os.ReadFile("testdata/golden/inform-hand.json")
		if err != nil {
			t.Fatal(err)
		}
		if r.code != 0 || r.stderr != "" || r.stdout != string(want) {
			t.Errorf("exit status %d, stderr %q, stdout:\n%s", r.code, r.stderr, r.stdout)
		}
	})
	t.Run("decode piped into encode", func(t *testing.T) {
		dec := exe("", "cwmp", "decode", "testdata/xml/gpv-request.xml")
		enc := exe(dec.stdout, "cwmp", "encode", "-")
		if enc.code != 0 || !strings.Contains(enc.stdout, "<cwmp:GetParameterValues>") {
			t.Errorf("exit status %d, stderr %q, stdout:\n%s", enc.code, enc.stderr, enc.stdout)
		}
	})
	t.Run("bad input exits 1 with one line", func(t *testing.T) {
		r := exe("<soap-env:Envelope>\n<oops", "cwmp", "decode")
		wantFailure(t, r, "fleetctl: cwmp decode stdin: line ...")
	})
	t.Run("usage error exits 2", func(t *testing.T) {
		r := exe("", "cwmp", "decode", "a", "b")
		if r.code != 2 || !strings.Contains(r.stderr, "Run 'fleetctl cwmp decode -help' for usage.") {
			t.Errorf("exit status %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("tasks usage error exits 2", func(t *testing.T) {
		r := exe("", "tasks", "create", "dev-1", "download", "http://files/fw.bin")
		if r.code != 2 || !strings.Contains(r.stderr, "-file-type is required") {
			t.Errorf("exit status %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("help exits 0", func(t *testing.T) {
		r := exe("", "-h")
		if r.code != 0 || !strings.Contains(r.stdout, "cwmp decode") || r.stderr != "" {
			t.Errorf("exit status %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
}
