package sqlitestore_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
	"github.com/fleetacs/fleetacs/pkg/telemetry/telemetrytest"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/services/tasks/store/sqlitestore"
)

func sqliteMetric(t *testing.T, h http.Handler, name, op string) float64 {
	v, _ := testenv.Metric(t, h, name, "system", "sqlite", "operation", op)
	return v
}

// The wrapped driver records statements, transactions and prepared
// statements (the raw connection path too), counts a statement SQLite
// refuses, and not one the caller canceled.
func TestOpenSQLRecordsCalls(t *testing.T) {
	h, cm := telemetrytest.ClientMetrics(t)
	db, err := telemetry.OpenSQL("sqlite", "file:"+filepath.Join(t.TempDir(), "m.db"), cm)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (?, ?)", "a", 1); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := db.QueryRowContext(ctx, "SELECT v FROM t WHERE k = ?", "a").Scan(&v); err != nil || v != 1 {
		t.Fatalf("read back %d, %v", v, err)
	}
	if err := db.QueryRowContext(ctx, "SELECT v FROM t WHERE k = ?", "missing").Scan(&v); !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("missing row: %v", err)
	}
	// The raw driver connection, as the inventory's writer uses it.
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = conn.Raw(func(dc any) error {
		pc, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return errors.New("no ConnPrepareContext")
		}
		s, err := pc.PrepareContext(ctx, "INSERT INTO t VALUES ('b', 2)")
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = s.(driver.StmtExecContext).ExecContext(ctx, nil)
		return err
	})
	_ = conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	if sqliteMetric(t, h, "fleetacs_client_request_duration_seconds_count", "exec") != 3 ||
		sqliteMetric(t, h, "fleetacs_client_request_duration_seconds_count", "query") != 2 ||
		sqliteMetric(t, h, "fleetacs_client_request_duration_seconds_count", "begin") != 1 ||
		sqliteMetric(t, h, "fleetacs_client_request_duration_seconds_count", "commit") != 1 {
		t.Fatalf("exec %v query %v begin %v commit %v, want 3 2 1 1",
			sqliteMetric(t, h, "fleetacs_client_request_duration_seconds_count", "exec"),
			sqliteMetric(t, h, "fleetacs_client_request_duration_seconds_count", "query"),
			sqliteMetric(t, h, "fleetacs_client_request_duration_seconds_count", "begin"),
			sqliteMetric(t, h, "fleetacs_client_request_duration_seconds_count", "commit"))
	}
	for _, op := range []string{"exec", "query", "begin", "commit"} {
		if n := sqliteMetric(t, h, "fleetacs_client_request_errors_total", op); n != 0 {
			t.Fatalf("%v %s errors before any failed", n, op)
		}
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO nosuchtable VALUES (1)"); err == nil {
		t.Fatal("insert into a missing table succeeded")
	}
	if _, err := db.QueryContext(ctx, "SELEKT 1"); err == nil {
		t.Fatal("bad SQL accepted")
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := db.ExecContext(canceled, "INSERT INTO t VALUES ('c', 3)"); err == nil {
		t.Fatal("canceled insert succeeded")
	}
	if n := sqliteMetric(t, h, "fleetacs_client_request_errors_total", "exec"); n != 1 {
		t.Errorf("exec errors %v, want 1 (the missing table; not the cancellation)", n)
	}
	if n := sqliteMetric(t, h, "fleetacs_client_request_errors_total", "query"); n != 1 {
		t.Errorf("query errors %v, want 1", n)
	}
}

// The task store records its calls when configured to.
func TestStoreRecordsClientMetrics(t *testing.T) {
	h, cm := telemetrytest.ClientMetrics(t)
	s := sqlitestore.New(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "tasks.db"), Metrics: cm})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.Create(t.Context(), record("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), "default", "a"); err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"query", "exec", "commit"} {
		if sqliteMetric(t, h, "fleetacs_client_request_duration_seconds_count", op) == 0 {
			t.Errorf("no %s recorded", op)
		}
	}
}
