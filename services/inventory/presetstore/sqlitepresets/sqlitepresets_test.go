package sqlitepresets_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/fleetacs/fleetacs/services/inventory/presetstore"
	"github.com/fleetacs/fleetacs/services/inventory/presetstore/presetstoretest"
	"github.com/fleetacs/fleetacs/services/inventory/presetstore/sqlitepresets"
)

func open(t *testing.T) presetstore.Store {
	s := sqlitepresets.New(filepath.Join(t.TempDir(), "sub", "presets.db"))
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(t.Context()); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestContract(t *testing.T) { presetstoretest.Run(t, open) }

func TestNotStartedIsUnavailable(t *testing.T) {
	s := sqlitepresets.New(filepath.Join(t.TempDir(), "p.db"))
	if _, err := s.Get(t.Context(), "t", "a", 0); !errors.Is(err, presetstore.ErrUnavailable) {
		t.Fatalf("get before start: %v", err)
	}
}
