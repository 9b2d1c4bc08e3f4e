// Package sqlitepresets is the embedded preset store: one SQLite file
// (modernc.org/sqlite, pure Go) beside the inventory's. Presets change
// rarely, so every write is one IMMEDIATE transaction on a pool of one
// connection, and reads use a small query-only pool in WAL mode.
package sqlitepresets

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fleetacs/fleetacs/services/inventory/presetstore"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// Store is the SQLite preset store.
type Store struct {
	path    string
	metrics *telemetry.ClientMetrics

	mu   sync.RWMutex
	w, r *sql.DB
}

var _ presetstore.Store = (*Store)(nil)

// New returns a store on the database file path. It does no I/O.
func New(path string) *Store { return &Store{path: path} }

// WithMetrics makes the store record the latency and errors of its
// database calls (telemetry.OpenSQL); call it before Start.
func (s *Store) WithMetrics(m *telemetry.ClientMetrics) *Store {
	s.metrics = m
	return s
}

const schema = `
CREATE TABLE IF NOT EXISTS presets (
  tenant TEXT NOT NULL,
  name TEXT NOT NULL,
  revision INTEGER NOT NULL,
  enabled INTEGER NOT NULL,
  body BLOB NOT NULL,
  update_ms INTEGER NOT NULL,
  updated_by TEXT NOT NULL,
  PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS preset_revisions (
  tenant TEXT NOT NULL,
  name TEXT NOT NULL,
  revision INTEGER NOT NULL,
  enabled INTEGER NOT NULL,
  body BLOB NOT NULL,
  update_ms INTEGER NOT NULL,
  updated_by TEXT NOT NULL,
  PRIMARY KEY (tenant, name, revision)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS preset_secrets (
  tenant TEXT NOT NULL,
  device TEXT NOT NULL,
  name TEXT NOT NULL,
  key_id TEXT NOT NULL,
  sealed BLOB NOT NULL,
  PRIMARY KEY (tenant, device, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS preset_sets (
  tenant TEXT NOT NULL PRIMARY KEY,
  revision INTEGER NOT NULL
) WITHOUT ROWID;
`

// Start creates the file (owner-only) and the schema; idempotent.
func (s *Store) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("start sqlite preset store: %w", err)
	}
	if f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return fmt.Errorf("start sqlite preset store: %w", err)
	} else if err := f.Close(); err != nil {
		return fmt.Errorf("start sqlite preset store: %w", err)
	}
	base := "file:" + s.path + "?_busy_timeout=5000"
	w, err := telemetry.OpenSQL("sqlite", base+"&_txlock=immediate&_journal_mode=WAL&_synchronous=NORMAL", s.metrics)
	if err != nil {
		return fmt.Errorf("start sqlite preset store: %w", err)
	}
	w.SetMaxOpenConns(1)
	if _, err := w.ExecContext(ctx, schema); err != nil {
		_ = w.Close()
		return fmt.Errorf("start sqlite preset store: schema: %w", err)
	}
	r, err := telemetry.OpenSQL("sqlite", base+"&_query_only=1", s.metrics)
	if err != nil {
		_ = w.Close()
		return fmt.Errorf("start sqlite preset store: %w", err)
	}
	r.SetMaxOpenConns(4)
	s.w, s.r = w, r
	return nil
}

// Close implements presetstore.Store.
func (s *Store) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return nil
	}
	err := errors.Join(s.w.Close(), s.r.Close())
	s.w, s.r = nil, nil
	return err
}

func (s *Store) dbs() (w, r *sql.DB, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.w == nil {
		return nil, nil, fmt.Errorf("sqlite preset store not started: %w", presetstore.ErrUnavailable)
	}
	return s.w, s.r, nil
}

func ms(t time.Time) int64 { return t.UTC().UnixMilli() }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Put implements presetstore.Store.
func (s *Store) Put(ctx context.Context, p presetstore.Put) (presetstore.Record, error) {
	w, _, err := s.dbs()
	if err != nil {
		return presetstore.Record{}, err
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return presetstore.Record{}, fmt.Errorf("put preset: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var cur uint64
	err = tx.QueryRowContext(ctx, `SELECT revision FROM presets WHERE tenant = ? AND name = ?`, p.Tenant, p.Name).Scan(&cur)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		cur = 0
	case err != nil:
		return presetstore.Record{}, fmt.Errorf("put preset: %w", err)
	}
	if p.Expected != nil && *p.Expected != cur {
		return presetstore.Record{}, fmt.Errorf("put preset %q at revision %d, expected %d: %w", p.Name, cur, *p.Expected, presetstore.ErrRevisionMismatch)
	}
	if cur == 0 {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM presets WHERE tenant = ?`, p.Tenant).Scan(&n); err != nil {
			return presetstore.Record{}, fmt.Errorf("put preset: %w", err)
		}
		if n >= presetstore.MaxPerTenant {
			return presetstore.Record{}, fmt.Errorf("put preset %q: %w", p.Name, presetstore.ErrLimit)
		}
	}
	rec := presetstore.Record{Tenant: p.Tenant, Name: p.Name, Revision: cur + 1, Enabled: p.Enabled,
		Body: p.Body, UpdateTime: p.Time.UTC().Truncate(time.Millisecond), UpdatedBy: p.By}
	args := []any{rec.Tenant, rec.Name, rec.Revision, b2i(rec.Enabled), rec.Body, ms(rec.UpdateTime), rec.UpdatedBy}
	if _, err := tx.ExecContext(ctx, `INSERT INTO presets (tenant, name, revision, enabled, body, update_ms, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant, name) DO UPDATE SET revision = excluded.revision, enabled = excluded.enabled, body = excluded.body, update_ms = excluded.update_ms, updated_by = excluded.updated_by`, args...); err != nil {
		return presetstore.Record{}, fmt.Errorf("put preset: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO preset_revisions (tenant, name, revision, enabled, body, update_ms, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?)`, args...); err != nil {
		return presetstore.Record{}, fmt.Errorf("put preset: %w", err)
	}
	if rec.Revision > presetstore.MaxHistory {
		if _, err := tx.ExecContext(ctx, `DELETE FROM preset_revisions WHERE tenant = ? AND name = ? AND revision <= ?`,
			rec.Tenant, rec.Name, rec.Revision-presetstore.MaxHistory); err != nil {
			return presetstore.Record{}, fmt.Errorf("put preset: %w", err)
		}
	}
	if err := bump(ctx, tx, p.Tenant); err != nil {
		return presetstore.Record{}, err
	}
	if err := tx.Commit(); err != nil {
		return presetstore.Record{}, fmt.Errorf("put preset: %w", err)
	}
	return rec, nil
}

func bump(ctx context.Context, tx *sql.Tx, tenant string) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO preset_sets (tenant, revision) VALUES (?, 1) ON CONFLICT (tenant) DO UPDATE SET revision = revision + 1`, tenant); err != nil {
		return fmt.Errorf("raise the preset set revision: %w", err)
	}
	return nil
}

const cols = `tenant, name, revision, enabled, body, update_ms, updated_by`

func scan(row interface{ Scan(...any) error }) (presetstore.Record, error) {
	var r presetstore.Record
	var enabled int
	var upd int64
	if err := row.Scan(&r.Tenant, &r.Name, &r.Revision, &enabled, &r.Body, &upd, &r.UpdatedBy); err != nil {
		return r, err
	}
	r.Enabled = enabled != 0
	r.UpdateTime = time.UnixMilli(upd).UTC()
	if len(r.Body) == 0 {
		r.Body = nil
	}
	return r, nil
}

// Get implements presetstore.Store.
func (s *Store) Get(ctx context.Context, tenant, name string, revision uint64) (presetstore.Record, error) {
	_, r, err := s.dbs()
	if err != nil {
		return presetstore.Record{}, err
	}
	var row *sql.Row
	if revision == 0 {
		row = r.QueryRowContext(ctx, `SELECT `+cols+` FROM presets WHERE tenant = ? AND name = ?`, tenant, name)
	} else {
		row = r.QueryRowContext(ctx, `SELECT `+cols+` FROM preset_revisions WHERE tenant = ? AND name = ? AND revision = ?`, tenant, name, revision)
	}
	rec, err := scan(row)
	if errors.Is(err, sql.ErrNoRows) {
		return rec, fmt.Errorf("get preset %q: %w", name, presetstore.ErrNotFound)
	}
	if err != nil {
		return rec, fmt.Errorf("get preset %q: %w", name, err)
	}
	return rec, nil
}

// List implements presetstore.Store.
func (s *Store) List(ctx context.Context, tenant, after string, limit int) ([]presetstore.Record, error) {
	_, r, err := s.dbs()
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("list presets: limit %d", limit)
	}
	return s.query(ctx, r, `SELECT `+cols+` FROM presets WHERE tenant = ? AND name > ? ORDER BY name LIMIT ?`, tenant, after, limit)
}

func (s *Store) query(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, stmt string, args ...any) ([]presetstore.Record, error) {
	rows, err := q.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("list presets: %w", err)
	}
	defer rows.Close()
	var out []presetstore.Record
	for rows.Next() {
		rec, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("list presets: %w", err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list presets: %w", err)
	}
	return out, nil
}

// Delete implements presetstore.Store.
func (s *Store) Delete(ctx context.Context, tenant, name string, expected *uint64) error {
	w, _, err := s.dbs()
	if err != nil {
		return err
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete preset: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var cur uint64
	err = tx.QueryRowContext(ctx, `SELECT revision FROM presets WHERE tenant = ? AND name = ?`, tenant, name).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("delete preset %q: %w", name, presetstore.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete preset: %w", err)
	}
	if expected != nil && *expected != cur {
		return fmt.Errorf("delete preset %q at revision %d, expected %d: %w", name, cur, *expected, presetstore.ErrRevisionMismatch)
	}
	for _, q := range []string{`DELETE FROM presets WHERE tenant = ? AND name = ?`, `DELETE FROM preset_revisions WHERE tenant = ? AND name = ?`} {
		if _, err := tx.ExecContext(ctx, q, tenant, name); err != nil {
			return fmt.Errorf("delete preset: %w", err)
		}
	}
	if err := bump(ctx, tx, tenant); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete preset: %w", err)
	}
	return nil
}

// SetRevision implements presetstore.Store.
func (s *Store) SetRevision(ctx context.Context, tenant string) (uint64, error) {
	_, r, err := s.dbs()
	if err != nil {
		return 0, err
	}
	var rev uint64
	err = r.QueryRowContext(ctx, `SELECT revision FROM preset_sets WHERE tenant = ?`, tenant).Scan(&rev)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the preset set revision: %w", err)
	}
	return rev, nil
}

// Set implements presetstore.Store: both reads in one transaction, so
// they see one snapshot.
func (s *Store) Set(ctx context.Context, tenant string) (uint64, []presetstore.Record, error) {
	_, r, err := s.dbs()
	if err != nil {
		return 0, nil, err
	}
	tx, err := r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, nil, fmt.Errorf("read the preset set: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var rev uint64
	err = tx.QueryRowContext(ctx, `SELECT revision FROM preset_sets WHERE tenant = ?`, tenant).Scan(&rev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, nil, fmt.Errorf("read the preset set revision: %w", err)
	}
	recs, err := s.query(ctx, tx, `SELECT `+cols+` FROM presets WHERE tenant = ? AND enabled = 1 ORDER BY name`, tenant)
	if err != nil {
		return 0, nil, err
	}
	return rev, recs, nil
}

// EnsureSecrets implements presetstore.Store.
func (s *Store) EnsureSecrets(ctx context.Context, tenant, device string, want map[string]presetstore.Sealed) (map[string]presetstore.Sealed, error) {
	w, _, err := s.dbs()
	if err != nil {
		return nil, err
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("ensure device secrets: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	out := make(map[string]presetstore.Sealed, len(want))
	for name, sv := range want {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO preset_secrets (tenant, device, name, key_id, sealed) VALUES (?, ?, ?, ?, ?)`,
			tenant, device, name, sv.KeyID, sv.Data); err != nil {
			return nil, fmt.Errorf("ensure device secrets: %w", err)
		}
		var got presetstore.Sealed
		if err := tx.QueryRowContext(ctx, `SELECT key_id, sealed FROM preset_secrets WHERE tenant = ? AND device = ? AND name = ?`,
			tenant, device, name).Scan(&got.KeyID, &got.Data); err != nil {
			return nil, fmt.Errorf("ensure device secrets: %w", err)
		}
		out[name] = got
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("ensure device secrets: %w", err)
	}
	return out, nil
}

// ResealSecrets implements presetstore.Store.
func (s *Store) ResealSecrets(ctx context.Context, activeKey string, reseal func(tenant, device, name string, s presetstore.Sealed) (presetstore.Sealed, error)) (int, error) {
	w, _, err := s.dbs()
	if err != nil {
		return 0, err
	}
	type row struct {
		tenant, device, name string
		sealed               presetstore.Sealed
	}
	rows, err := w.QueryContext(ctx, `SELECT tenant, device, name, key_id, sealed FROM preset_secrets WHERE key_id != ?`, activeKey)
	if err != nil {
		return 0, fmt.Errorf("reseal device secrets: %w", err)
	}
	var old []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.tenant, &r.device, &r.name, &r.sealed.KeyID, &r.sealed.Data); err != nil {
			rows.Close()
			return 0, fmt.Errorf("reseal device secrets: %w", err)
		}
		old = append(old, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("reseal device secrets: %w", err)
	}
	n := 0
	for _, r := range old {
		next, err := reseal(r.tenant, r.device, r.name, r.sealed)
		if err != nil {
			return n, err
		}
		if _, err := w.ExecContext(ctx, `UPDATE preset_secrets SET key_id = ?, sealed = ? WHERE tenant = ? AND device = ? AND name = ? AND key_id = ?`,
			next.KeyID, next.Data, r.tenant, r.device, r.name, r.sealed.KeyID); err != nil {
			return n, fmt.Errorf("reseal device secrets: %w", err)
		}
		n++
	}
	return n, nil
}

// DeleteSecrets implements presetstore.Store.
func (s *Store) DeleteSecrets(ctx context.Context, tenant, device string) error {
	w, _, err := s.dbs()
	if err != nil {
		return err
	}
	if _, err := w.ExecContext(ctx, `DELETE FROM preset_secrets WHERE tenant = ? AND device = ?`, tenant, device); err != nil {
		return fmt.Errorf("delete device secrets: %w", err)
	}
	return nil
}
