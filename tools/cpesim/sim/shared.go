package sim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// EnvSharedDir names the environment variable that overrides where the
// shared/ directory (protocol notes, XSDs, data models) is.
const EnvSharedDir = "FLEETACS_SHARED_DIR"

// FindSharedDir locates the project's shared/ directory: $FLEETACS_SHARED_DIR
// when set, else the "shared" directory beside the repository root, the
// first directory holding go.work at or above start. An empty start tries
// the working directory, then the executable's directory (a cpesim built
// into the repository's bin/ finds it from anywhere). The result holds
// tr069/.
func FindSharedDir(start string) (string, error) {
	if d := os.Getenv(EnvSharedDir); d != "" {
		if err := checkShared(d); err != nil {
			return "", fmt.Errorf("find shared dir from %s: %w", EnvSharedDir, err)
		}
		return d, nil
	}
	if start != "" {
		return findSharedFrom(start)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find shared dir: %w", err)
	}
	dir, err := findSharedFrom(wd)
	if err == nil {
		return dir, nil
	}
	if exe, xerr := os.Executable(); xerr == nil {
		if dir, xerr := findSharedFrom(filepath.Dir(exe)); xerr == nil {
			return dir, nil
		}
	}
	return "", err
}

func findSharedFrom(start string) (string, error) {
	dir, err := filepath.Abs(start)
	if err != nil {
		return "", fmt.Errorf("find shared dir: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			shared := filepath.Join(filepath.Dir(dir), "shared")
			if err := checkShared(shared); err != nil {
				return "", fmt.Errorf("find shared dir beside repository root %s (or set %s): %w", dir, EnvSharedDir, err)
			}
			return shared, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find shared dir: no go.work at or above %s; set %s", start, EnvSharedDir)
		}
		dir = parent
	}
}

func checkShared(dir string) error {
	fi, err := os.Stat(filepath.Join(dir, "tr069"))
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errors.New(filepath.Join(dir, "tr069") + " is not a directory")
	}
	return nil
}
