package sqlitestore_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/tasks/store"
	"github.com/fleetacs/fleetacs/services/tasks/store/sqlitestore"
	"github.com/fleetacs/fleetacs/services/tasks/storetest"
)

func open(t testing.TB) *sqlitestore.Store {
	t.Helper()
	s := sqlitestore.New(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "tasks.db")})
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

var created = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func record(id string) store.Record {
	return store.Record{Tenant: "default", ID: id, DeviceID: "dev", State: 1, Kind: "reboot",
		CreateTime: created, UpdateTime: created, DueTime: created.Add(time.Hour), Version: 1, Body: []byte("b")}
}

func TestNewDoesNoIO(t *testing.T) {
	dir := t.TempDir()
	s := sqlitestore.New(sqlitestore.Config{Path: filepath.Join(dir, "sub", "tasks.db")})
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Fatalf("New created files: %v", m)
	}
	if _, err := s.Get(t.Context(), "default", "x"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Get before Start: %v, want ErrUnavailable", err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create(t.Context(), record("x")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Create after Close: %v, want ErrUnavailable", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestReopenKeepsDataAndMigratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	ctx := t.Context()
	s := sqlitestore.New(sqlitestore.Config{Path: path})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create(ctx, record("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := sqlitestore.New(sqlitestore.Config{Path: path})
	if err := s2.Start(ctx); err != nil {
		t.Fatalf("restart on an existing file: %v", err)
	}
	defer s2.Close()
	if _, err := s2.Get(ctx, "default", "a"); err != nil {
		t.Fatalf("record lost across restart: %v", err)
	}
}

func TestStartFailsOnBadPath(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	s := sqlitestore.New(sqlitestore.Config{Path: file})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, p := range []string{filepath.Join(file, "x", "tasks.db"), "", "a?mode=ro"} {
		if err := sqlitestore.New(sqlitestore.Config{Path: p}).Start(t.Context()); err == nil {
			t.Fatalf("Start on %q succeeded", p)
		}
	}
}
