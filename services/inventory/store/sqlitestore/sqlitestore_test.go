package sqlitestore_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/apiauth/apiauthtest"
	"github.com/fleetacs/fleetacs/services/inventory/store"
	"github.com/fleetacs/fleetacs/services/inventory/store/sqlitestore"
	"github.com/fleetacs/fleetacs/services/inventory/storetest"
)

func newStore(t *testing.T) store.Store { return newStoreWith(t, sqlitestore.Config{}) }

func newStoreWith(t *testing.T, cfg sqlitestore.Config) store.Store {
	t.Helper()
	cfg.Path = filepath.Join(t.TempDir(), "inventory.db")
	s := sqlitestore.New(cfg)
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, newStore)
}

// TestContractIndexAll and TestContractIndexNone run the suite with every
// parameter condition answered from index rows, and with every one
// answered from the trees (the default set answers some each way).
func TestContractIndexAll(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return newStoreWith(t, sqlitestore.Config{IndexedParams: []string{sqlitestore.IndexAll}})
	})
}

func TestContractIndexNone(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return newStoreWith(t, sqlitestore.Config{IndexedParams: []string{}})
	})
}

// TestContractWithoutSessionCache runs the suite with every SessionState
// read from the database.
func TestContractWithoutSessionCache(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStoreWith(t, sqlitestore.Config{SessionCache: -1}) })
}

// TestContractRowCacheExact runs the suite with every device row the
// session cache gives the writer compared with the database's: a diff
// whose cached row differs fails.
func TestContractRowCacheExact(t *testing.T) {
	sqlitestore.VerifyRowCache(t)
	storetest.Run(t, newStore)
}

func TestNewDoesNoIO(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "inventory.db")
	s := sqlitestore.New(sqlitestore.Config{Path: path})
	if matches, _ := filepath.Glob(filepath.Join(dir, "*")); len(matches) != 0 {
		t.Fatalf("New created files: %v", matches)
	}
	if _, err := s.Get(t.Context(), "default", "X-1", store.ReadOptions{}); err == nil {
		t.Fatal("Get before Start succeeded")
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestReopenKeepsDataAndMigratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	ctx := t.Context()
	s := sqlitestore.New(sqlitestore.Config{Path: path})
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	d := store.Diff{Time: storetestTime, DeviceID: &devID}
	id := store.MakeID(devID)
	if _, err := s.ApplySessionDiff(ctx, "default", id, d, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := sqlitestore.New(sqlitestore.Config{Path: path})
	if err := s2.Start(ctx); err != nil {
		t.Fatalf("restart on an existing file: %v", err)
	}
	defer s2.Close(ctx)
	if _, err := s2.Get(ctx, "default", id, store.ReadOptions{}); err != nil {
		t.Fatalf("device lost across restart: %v", err)
	}
}

func TestStartFailsOnBadPath(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	s := sqlitestore.New(sqlitestore.Config{Path: file})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.Close(t.Context())
	// A directory below a regular file cannot be created.
	bad := sqlitestore.New(sqlitestore.Config{Path: filepath.Join(file, "x", "inventory.db")})
	if err := bad.Start(t.Context()); err == nil {
		t.Fatal("Start succeeded below a regular file")
	}
	if err := sqlitestore.New(sqlitestore.Config{}).Start(t.Context()); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("Start with empty path: %v", err)
	}
}

func TestTokenStoreContract(t *testing.T) {
	apiauthtest.Run(t, func(t *testing.T) apiauth.TokenStore { return newStore(t).(*sqlitestore.Store) })
}
