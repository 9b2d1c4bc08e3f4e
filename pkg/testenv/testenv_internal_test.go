package testenv

import (
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
