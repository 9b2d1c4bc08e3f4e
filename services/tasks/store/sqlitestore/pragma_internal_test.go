package sqlitestore

import (
	"errors"
	"path/filepath"
	"testing"
)

// TestPragmas checks that the connection strings take effect: WAL,
// synchronous=NORMAL and a checkpoint every 10000 pages on the writer,
// query_only on the readers.
func TestPragmas(t *testing.T) {
	s := New(Config{Path: filepath.Join(t.TempDir(), "tasks.db")})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mode string
	var sync, autockpt, busy, queryOnly int
	// The writer's connection is the writer goroutine's: ask through it.
	if err := s.submit(t.Context(), func(w *writer) error {
		return errors.Join(w.conn.QueryRowContext(bg, `PRAGMA journal_mode`).Scan(&mode),
			w.conn.QueryRowContext(bg, `PRAGMA synchronous`).Scan(&sync),
			w.conn.QueryRowContext(bg, `PRAGMA wal_autocheckpoint`).Scan(&autockpt))
	}); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Fatalf("journal_mode %q; want wal", mode)
	}
	if sync != 1 {
		t.Fatalf("synchronous %d; want 1 (NORMAL)", sync)
	}
	if autockpt != 10000 {
		t.Fatalf("wal_autocheckpoint %d; want 10000", autockpt)
	}
	if err := s.st.r.QueryRow(`PRAGMA busy_timeout`).Scan(&busy); err != nil || busy != 5000 {
		t.Fatalf("readers' busy_timeout %d, %v; want 5000", busy, err)
	}
	if err := s.st.r.QueryRow(`PRAGMA query_only`).Scan(&queryOnly); err != nil || queryOnly != 1 {
		t.Fatalf("readers' query_only %d, %v; want 1", queryOnly, err)
	}
}
