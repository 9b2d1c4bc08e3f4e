package sqlitestore_test

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetacs/fleetacs/services/tasks/store/sqlitestore"
)

// TestNewerSchemaRefused: a database a newer release migrated (a schema
// version this one does not know) is refused at start with a message
// that says so, and left as it is.
func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	s := sqlitestore.New(sqlitestore.Config{Path: path})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (999, 0)`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s = sqlitestore.New(sqlitestore.Config{Path: path})
	err = s.Start(t.Context())
	if err == nil {
		_ = s.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "version 999, written by a newer FleetACS") {
		t.Fatalf("start on a newer schema: %v", err)
	}
}
