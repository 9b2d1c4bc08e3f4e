package sqlitestore_test

import (
	"path/filepath"
	"testing"

	"github.com/fleetacs/fleetacs/services/files/store"
	"github.com/fleetacs/fleetacs/services/files/store/sqlitestore"
	"github.com/fleetacs/fleetacs/services/files/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := sqlitestore.New(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "files.db")})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		})
		return s
	})
}
