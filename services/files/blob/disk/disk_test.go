package disk_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fleetacs/fleetacs/services/files/blob"
	"github.com/fleetacs/fleetacs/services/files/blob/blobtest"
	"github.com/fleetacs/fleetacs/services/files/blob/disk"
)

func TestContract(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s := disk.New(t.TempDir())
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestStartRemovesLeftovers: a temporary file a crash left is removed,
// and an aborted write leaves no temporary file.
func TestStartRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	s := disk.New(dir)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	w, err := s.Create(t.Context(), "a", "F")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(filepath.Join(dir, ".tmp"))
	if len(left) != 1 {
		t.Fatalf("%d temporary files during a write, want 1", len(left))
	}
	// A crash: the writer never finishes; the next start cleans up.
	if err := disk.New(dir).Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	left, _ = os.ReadDir(filepath.Join(dir, ".tmp"))
	if len(left) != 0 {
		t.Fatalf("%d temporary files after a restart, want 0", len(left))
	}
	w, err = s.Create(t.Context(), "a", "G")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	left, _ = os.ReadDir(filepath.Join(dir, ".tmp"))
	if len(left) != 0 {
		t.Fatalf("%d temporary files after Abort, want 0", len(left))
	}
}
