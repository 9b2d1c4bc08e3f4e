// Package sqlitestore is the embedded files metadata store: one SQLite file
// through modernc.org/sqlite (pure Go). Uploads and deletes are rare, so it
// is a plain database/sql pool in WAL mode; product classes are a JSON array
// column searched with json_each. It passes the contract suite of package
// storetest.
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fleetacs/fleetacs/services/files/store"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// Config configures the store.
type Config struct {
	// Path is the database file; its directory is created if missing.
	Path string
	// Metrics, if set, records the latency and errors of the database
	// calls (telemetry.OpenSQL).
	Metrics *telemetry.ClientMetrics
}

// Store is the SQLite files store.
type Store struct {
	cfg Config
	mu  sync.RWMutex
	db  *sql.DB
}

var _ store.Store = (*Store)(nil)

// New returns a store for cfg. It does no I/O.
func New(cfg Config) *Store { return &Store{cfg: cfg} }

const schema = `
CREATE TABLE IF NOT EXISTS files (
	tenant TEXT NOT NULL,
	id TEXT NOT NULL,
	name TEXT NOT NULL,
	file_type TEXT NOT NULL,
	product_classes TEXT NOT NULL,
	oui TEXT NOT NULL,
	version TEXT NOT NULL,
	size INTEGER NOT NULL,
	sha256 TEXT NOT NULL,
	create_time INTEGER NOT NULL,
	uploader TEXT NOT NULL,
	PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS files_name ON files (tenant, name);
CREATE INDEX IF NOT EXISTS files_created ON files (tenant, create_time DESC, id DESC);
`

// Start creates the file (readable by its owner only) and the schema.
func (s *Store) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		return nil
	}
	if s.cfg.Path == "" || strings.ContainsAny(s.cfg.Path, "?#") {
		return fmt.Errorf("start sqlite files store: path %q must be a file name without '?' or '#'", s.cfg.Path)
	}
	if err := os.MkdirAll(filepath.Dir(s.cfg.Path), 0o700); err != nil {
		return fmt.Errorf("start sqlite files store: %w", err)
	}
	f, err := os.OpenFile(s.cfg.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("start sqlite files store: %w", err)
	}
	_ = f.Close()
	db, err := telemetry.OpenSQL("sqlite", "file:"+s.cfg.Path+"?_busy_timeout=5000&_txlock=immediate&_journal_mode=WAL&_synchronous=NORMAL", s.cfg.Metrics)
	if err != nil {
		return fmt.Errorf("start sqlite files store: %w", err)
	}
	db.SetMaxOpenConns(4)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		_ = db.Close()
		return fmt.Errorf("start sqlite files store: schema: %w", err)
	}
	s.db = db
	return nil
}

// Close releases the database.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	return err
}

func (s *Store) with(f func(db *sql.DB) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return fmt.Errorf("%w: not started", store.ErrUnavailable)
	}
	return f(s.db)
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, r store.Record) error {
	if r.Tenant == "" || r.ID == "" || r.Name == "" {
		return errors.New("create file record: tenant, id and name are required")
	}
	pcs, err := json.Marshal(nonNil(r.ProductClasses))
	if err != nil {
		return err
	}
	return s.with(func(db *sql.DB) error {
		_, err := db.ExecContext(ctx, `INSERT INTO files (tenant, id, name, file_type, product_classes, oui, version, size, sha256, create_time, uploader)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Tenant, r.ID, r.Name, r.FileType, string(pcs), r.OUI, r.Version, r.Size, r.SHA256, r.CreateTime.UnixMilli(), r.Uploader)
		if err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed") {
			return fmt.Errorf("create file %q: %w", r.Name, store.ErrNameExists)
		}
		if err != nil {
			return fmt.Errorf("create file record: %w", err)
		}
		return nil
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

const columns = `tenant, id, name, file_type, product_classes, oui, version, size, sha256, create_time, uploader`

func scan(row interface{ Scan(...any) error }) (store.Record, error) {
	var r store.Record
	var pcs string
	var created int64
	if err := row.Scan(&r.Tenant, &r.ID, &r.Name, &r.FileType, &pcs, &r.OUI, &r.Version, &r.Size, &r.SHA256, &created, &r.Uploader); err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(pcs), &r.ProductClasses); err != nil {
		return r, fmt.Errorf("product classes of file %s: %w", r.ID, err)
	}
	if len(r.ProductClasses) == 0 {
		r.ProductClasses = nil
	}
	r.CreateTime = time.UnixMilli(created).UTC()
	return r, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, tenant, id string) (store.Record, error) {
	var r store.Record
	err := s.with(func(db *sql.DB) error {
		var err error
		r, err = scan(db.QueryRowContext(ctx, `SELECT `+columns+` FROM files WHERE tenant = ? AND id = ?`, tenant, id))
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		return err
	})
	return r, err
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, q store.Query) ([]store.Record, error) {
	if q.Limit < 0 {
		return nil, errors.New("list files: negative limit")
	}
	if q.Limit == 0 {
		q.Limit = 100
	}
	where := []string{"tenant = ?"}
	args := []any{q.Tenant}
	if q.FileType != "" {
		where, args = append(where, "file_type = ?"), append(args, q.FileType)
	}
	if q.Version != "" {
		where, args = append(where, "version = ?"), append(args, q.Version)
	}
	if q.Name != "" {
		where, args = append(where, "name = ?"), append(args, q.Name)
	}
	if q.ProductClass != "" {
		where = append(where, "(product_classes = '[]' OR EXISTS (SELECT 1 FROM json_each(files.product_classes) WHERE value = ?))")
		args = append(args, q.ProductClass)
	}
	if q.After != nil {
		ms := q.After.CreateTime.UnixMilli()
		where = append(where, "(create_time < ? OR (create_time = ? AND id < ?))")
		args = append(args, ms, ms, q.After.ID)
	}
	args = append(args, q.Limit)
	var out []store.Record
	err := s.with(func(db *sql.DB) error {
		rows, err := db.QueryContext(ctx, `SELECT `+columns+` FROM files WHERE `+strings.Join(where, " AND ")+
			` ORDER BY create_time DESC, id DESC LIMIT ?`, args...)
		if err != nil {
			return fmt.Errorf("list files: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scan(rows)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, tenant, id string) error {
	return s.with(func(db *sql.DB) error {
		res, err := db.ExecContext(ctx, `DELETE FROM files WHERE tenant = ? AND id = ?`, tenant, id)
		if err != nil {
			return fmt.Errorf("delete file record: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}
