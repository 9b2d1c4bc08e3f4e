// Package sqlmigrate applies a store's schema migrations to a SQL
// database: numbered from 1 in the order given, each in its own
// transaction with its row in schema_migrations, each applied once. The
// SQLite stores of inventory and tasks share it; their tests run it
// against real databases (TestNewerSchemaRefused and the migration tests
// of services/inventory/store/sqlitestore and
// services/tasks/store/sqlitestore).
package sqlmigrate

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Apply applies the migrations db has not had yet. It refuses a database
// whose schema_migrations names a version beyond the last of migrations:
// a newer FleetACS migrated it and keeps data where this one does not
// look (docs/operations.md, "Rolling upgrades"), so reading part of it
// and writing over the rest would lose data.
func Apply(ctx context.Context, db *sql.DB, migrations []string) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	var newest int
	if err := db.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if newest > len(migrations) {
		return fmt.Errorf("the database's schema is version %d, written by a newer FleetACS; this one knows versions up to %d: run that version or newer, or restore a backup taken before the upgrade", newest, len(migrations))
	}
	for i, m := range migrations {
		if err := applyOne(ctx, db, i+1, m); err != nil {
			return fmt.Errorf("apply migration %d: %w", i+1, err)
		}
	}
	return nil
}

// applyOne applies migration m as version unless schema_migrations has
// it, in one transaction with its row.
func applyOne(ctx context.Context, db *sql.DB, version int, m string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
		version, time.Now().UnixMilli()); err != nil {
		return err
	}
	return tx.Commit()
}
