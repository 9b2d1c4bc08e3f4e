package sqlitestore_test

import (
	"path/filepath"
	"testing"

	"github.com/fleetacs/fleetacs/services/campaigns/store"
	"github.com/fleetacs/fleetacs/services/campaigns/store/sqlitestore"
	"github.com/fleetacs/fleetacs/services/campaigns/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := sqlitestore.New(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "campaigns.db")})
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
