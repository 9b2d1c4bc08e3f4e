package testenv

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFerretDBBinaryMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "ferretdb")
	t.Setenv(EnvFerretDB, missing)
	_, err := ferretDBBinary()
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), installHint) {
		t.Fatalf("ferretDBBinary with %s missing: %v; want an error naming it and %q", missing, err, installHint)
	}
}

func TestSweepStaleKeepsLiveAndForeign(t *testing.T) {
	tmp := t.TempDir()
	mine := filepath.Join(tmp, tempPrefix+"1-x") // PID 1 is alive
	foreign := filepath.Join(tmp, "fleetacs-other-999999-x")
	malformed := filepath.Join(tmp, tempPrefix+"nopid")
	for _, d := range []string{mine, foreign, malformed} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	sweepStale(tmp)
	for _, d := range []string{mine, foreign, malformed} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("sweepStale removed %s: %v", d, err)
		}
	}
}

func TestPostgresBinDir(t *testing.T) {
	dir, err := postgresBinDir()
	if err != nil {
		t.Fatalf("postgresBinDir: %v", err)
	}
	for _, b := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Errorf("postgresBinDir = %s, lacks %s: %v", dir, b, err)
		}
	}
}

// exitedProc is a proc that has already ended with output.
func exitedProc(t *testing.T, output string) *proc {
	log := filepath.Join(t.TempDir(), "out.log")
	if err := os.WriteFile(log, []byte(output), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	close(done)
	return &proc{name: "fake", log: log, done: done}
}

func TestStartOnFreePortRetriesOnlyCollisions(t *testing.T) {
	calls := 0
	port, err := startOnFreePort("fake", func(port int) (*proc, error) {
		calls++
		if calls == 1 {
			return exitedProc(t, "bind: Address already in use\n"), errors.New("exited")
		}
		return nil, nil
	})
	if err != nil || calls != 2 || port == 0 {
		t.Fatalf("after one collision: port %d, err %v, %d calls; want success on the second call", port, err, calls)
	}

	calls = 0
	_, err = startOnFreePort("fake", func(port int) (*proc, error) {
		calls++
		return exitedProc(t, "FATAL: bad option\n"), errors.New("exited")
	})
	if err == nil || calls != 1 {
		t.Fatalf("after a failure that is no collision: err %v, %d calls; want the error after 1 call", err, calls)
	}
}
