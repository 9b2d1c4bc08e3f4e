// Package sqlitestore is the embedded inventory store (DESIGN §4): one SQLite
// file through modernc.org/sqlite, pure Go, so `fleetacs all` needs no
// database server.
//
// Layout: a devices table (one row per device, hot fields as indexed
// columns), device_tags (one row per tag, indexed by tag for all-of
// filters) and parameters (one row per tree entry, keyed by tenant, device
// and path, with indexes on (tenant, path, value) and (tenant, path, number)
// so parameter conditions are index range scans).
//
// Concurrency: SQLite allows one writer at a time. Rather than let
// connections race for the write lock and fail with SQLITE_BUSY, every write
// goes through a pool of exactly one connection whose transactions begin
// IMMEDIATE, so writers queue inside database/sql, in process, and the lock
// is never contended. Reads use a separate pool of query-only connections;
// in WAL mode they run beside the writer and each read transaction sees one
// snapshot. busy_timeout stays as a backstop for checkpoints and for other
// processes opening the file.
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Config configures the store.
type Config struct {
	// Path is the database file; its directory is created if missing.
	Path string
	// ReadConns is the size of the reader pool; 0 means 4.
	ReadConns int
	// BusyTimeout bounds waits on a lock held by another process; 0
	// means 5s.
	BusyTimeout time.Duration
}

// Store is the SQLite store. Create it with New and call Start before use.
type Store struct {
	cfg Config

	mu sync.Mutex // guards w and r during Start and Close
	w  *sql.DB    // exactly one connection: the only writer
	r  *sql.DB    // query-only readers
}

var _ store.Store = (*Store)(nil)

// New returns a store for cfg. It does no I/O.
func New(cfg Config) *Store {
	if cfg.ReadConns <= 0 {
		cfg.ReadConns = 4
	}
	if cfg.BusyTimeout <= 0 {
		cfg.BusyTimeout = 5 * time.Second
	}
	return &Store{cfg: cfg}
}

func (s *Store) dsn(write bool) string {
	v := fmt.Sprintf("file:%s?_busy_timeout=%d", s.cfg.Path, s.cfg.BusyTimeout.Milliseconds())
	if write {
		// journal_mode=WAL is persistent in the file; synchronous=NORMAL
		// is durable across process crashes in WAL mode and only risks
		// the last commits on power loss, the usual trade for a
		// single-node default.
		return v + "&_txlock=immediate&_journal_mode=WAL&_synchronous=NORMAL"
	}
	return v + "&_query_only=1"
}

// Start opens the database, switches it to WAL and applies migrations.
func (s *Store) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil {
		return nil
	}
	if s.cfg.Path == "" || strings.ContainsAny(s.cfg.Path, "?#") {
		return fmt.Errorf("start sqlite store: path %q: %w", s.cfg.Path, store.ErrInvalidArgument)
	}
	if dir := filepath.Dir(s.cfg.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("start sqlite store: create directory: %w", err)
		}
	}
	w, err := sql.Open("sqlite", s.dsn(true))
	if err != nil {
		return fmt.Errorf("start sqlite store: open writer: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrate(ctx, w); err != nil {
		_ = w.Close()
		return fmt.Errorf("start sqlite store: %w", err)
	}
	r, err := sql.Open("sqlite", s.dsn(false))
	if err != nil {
		_ = w.Close()
		return fmt.Errorf("start sqlite store: open readers: %w", err)
	}
	r.SetMaxOpenConns(s.cfg.ReadConns)
	r.SetMaxIdleConns(s.cfg.ReadConns)
	if err := r.PingContext(ctx); err != nil {
		_ = w.Close()
		_ = r.Close()
		return fmt.Errorf("start sqlite store: open readers: %w", err)
	}
	s.w, s.r = w, r
	return nil
}

func migrate(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for i, m := range migrations {
		version := i + 1
		err := inTx(ctx, db, func(tx *sql.Tx) error {
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
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
				version, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("apply migration %d: %w", version, err)
		}
	}
	return nil
}

// Close closes both pools.
func (s *Store) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return nil
	}
	// optimize refreshes the planner's statistics where they drifted; it
	// is cheap and SQLite recommends running it before closing.
	_, _ = s.w.Exec(`PRAGMA optimize`)
	errR := s.r.Close()
	errW := s.w.Close()
	s.w, s.r = nil, nil
	if err := errors.Join(errW, errR); err != nil {
		return fmt.Errorf("close sqlite store: %w", err)
	}
	return nil
}

var errNotStarted = errors.New("sqlite store not started")

func (s *Store) pools() (w, r *sql.DB, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return nil, nil, errNotStarted
	}
	return s.w, s.r, nil
}

func inTx(ctx context.Context, db *sql.DB, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func ms(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func fromMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

// ApplySessionDiff implements store.Store.
func (s *Store) ApplySessionDiff(ctx context.Context, tenant, id string, d store.Diff, fencingToken uint64) error {
	p, err := storekit.PlanDiff(tenant, id, d, fencingToken)
	if err != nil {
		return fmt.Errorf("apply diff to %s/%s: %w", tenant, id, err)
	}
	w, _, err := s.pools()
	if err != nil {
		return fmt.Errorf("apply diff to %s/%s: %w", tenant, id, err)
	}
	err = inTx(ctx, w, func(tx *sql.Tx) error { return applyPlan(ctx, tx, tenant, id, &p) })
	if err != nil {
		return fmt.Errorf("apply diff to %s/%s: %w", tenant, id, err)
	}
	return nil
}

func applyPlan(ctx context.Context, tx *sql.Tx, tenant, id string, p *storekit.Plan) error {
	var stored int64
	err := tx.QueryRowContext(ctx, `SELECT fencing_token FROM devices WHERE tenant = ? AND id = ?`, tenant, id).Scan(&stored)
	exists := err == nil
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if p.Inform == nil {
			return store.ErrNotFound
		}
	case err != nil:
		return fmt.Errorf("read fencing token: %w", err)
	case p.Token < stored:
		return store.ErrStaleFencingToken
	}

	if !exists {
		if _, err := tx.ExecContext(ctx, `INSERT INTO devices (tenant, id, registered, fencing_token) VALUES (?, ?, ?, ?)`,
			tenant, id, p.Time.UnixMilli(), p.Token); err != nil {
			return fmt.Errorf("insert device: %w", err)
		}
	}
	set := []string{"fencing_token = ?"}
	args := []any{p.Token}
	if in := p.Inform; in != nil {
		events := in.Events
		if events == nil {
			events = []cwmp.Event{}
		}
		ev, err := json.Marshal(events)
		if err != nil {
			return fmt.Errorf("encode events: %w", err)
		}
		set = append(set, "manufacturer = ?", "oui_raw = ?", "oui = ?", "product_class = ?", "serial_number = ?",
			"cr_url = ?", "last_inform = ?", "remote_ip = ?", "last_events = ?")
		args = append(args, in.DeviceID.Manufacturer, in.DeviceID.OUI, p.OUI, in.DeviceID.ProductClass,
			in.DeviceID.SerialNumber, in.ConnectionRequestURL, p.Time.UnixMilli(), addrText(in.RemoteIP), string(ev))
		if in.SoftwareVersion != "" {
			set = append(set, "software_version = ?")
			args = append(args, in.SoftwareVersion)
		}
		if in.DataModelRoot != "" {
			set = append(set, "data_model_root = ?")
			args = append(args, in.DataModelRoot)
		}
		if p.Boot {
			set = append(set, "last_boot = ?")
			args = append(args, p.Time.UnixMilli())
		}
	}
	if c := p.Credentials; c != nil {
		set = append(set, "cr_username = ?", "cr_password = ?")
		args = append(args, c.Username, c.Password)
	}
	args = append(args, tenant, id)
	if _, err := tx.ExecContext(ctx, `UPDATE devices SET `+strings.Join(set, ", ")+` WHERE tenant = ? AND id = ?`, args...); err != nil {
		return fmt.Errorf("update device: %w", err)
	}

	if p.DeleteAll {
		if _, err := tx.ExecContext(ctx, `DELETE FROM parameters WHERE tenant = ? AND device_id = ?`, tenant, id); err != nil {
			return fmt.Errorf("delete parameters: %w", err)
		}
	}
	for _, pre := range p.Deletes {
		// A prefix ends with ".", so its upper bound always exists.
		upper, _ := storekit.UpperBound(pre)
		if _, err := tx.ExecContext(ctx, `DELETE FROM parameters WHERE tenant = ? AND device_id = ? AND path >= ? AND path < ?`,
			tenant, id, pre, upper); err != nil {
			return fmt.Errorf("delete parameters under %q: %w", pre, err)
		}
	}
	if len(p.Updates) > 0 {
		if err := upsertParams(ctx, tx, tenant, id, p); err != nil {
			return err
		}
	}
	if err := changeTags(ctx, tx, tenant, id, p.AddTags, p.RemoveTags); err != nil {
		return err
	}
	return nil
}

// upsertSQL merges an update into an entry: NULL in value, writable or
// notification means "unknown, keep what is stored". A known value is never
// NULL (an empty value is the empty string), which makes COALESCE exact.
const upsertSQL = `INSERT INTO parameters (tenant, device_id, path, value, type, number, writable, notification, updated)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant, device_id, path) DO UPDATE SET
	value        = COALESCE(excluded.value, parameters.value),
	type         = CASE WHEN excluded.value IS NULL THEN parameters.type ELSE excluded.type END,
	number       = CASE WHEN excluded.value IS NULL THEN parameters.number ELSE excluded.number END,
	writable     = COALESCE(excluded.writable, parameters.writable),
	notification = COALESCE(excluded.notification, parameters.notification),
	updated      = excluded.updated`

func upsertParams(ctx context.Context, tx *sql.Tx, tenant, id string, p *storekit.Plan) error {
	stmt, err := tx.PrepareContext(ctx, upsertSQL)
	if err != nil {
		return fmt.Errorf("prepare parameter upsert: %w", err)
	}
	defer stmt.Close()
	updated := p.Time.UnixMilli()
	for i := range p.Updates {
		u := &p.Updates[i]
		var value, typ, number, writable, notification any
		if u.HasValue {
			value, typ = u.Value, u.Type
			if u.IsNumber {
				number = u.Number
			}
		}
		if b, known := u.Writable.Bool(); known {
			writable = b
		}
		if n, known := u.Notification.Value(); known {
			notification = n
		}
		if _, err := stmt.ExecContext(ctx, tenant, id, u.Path, value, typ, number, writable, notification, updated); err != nil {
			return fmt.Errorf("upsert parameter %q: %w", u.Path, err)
		}
	}
	return nil
}

func changeTags(ctx context.Context, tx *sql.Tx, tenant, id string, add, remove []string) error {
	for _, t := range add {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO device_tags (tenant, device_id, tag) VALUES (?, ?, ?)`, tenant, id, t); err != nil {
			return fmt.Errorf("add tag %q: %w", t, err)
		}
	}
	for _, t := range remove {
		if _, err := tx.ExecContext(ctx, `DELETE FROM device_tags WHERE tenant = ? AND device_id = ? AND tag = ?`, tenant, id, t); err != nil {
			return fmt.Errorf("remove tag %q: %w", t, err)
		}
	}
	return nil
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// AddTags implements store.Store.
func (s *Store) AddTags(ctx context.Context, tenant, id string, tags ...string) error {
	if err := s.tagOp(ctx, tenant, id, tags, true); err != nil {
		return fmt.Errorf("add tags to %s/%s: %w", tenant, id, err)
	}
	return nil
}

// RemoveTags implements store.Store.
func (s *Store) RemoveTags(ctx context.Context, tenant, id string, tags ...string) error {
	if err := s.tagOp(ctx, tenant, id, tags, false); err != nil {
		return fmt.Errorf("remove tags from %s/%s: %w", tenant, id, err)
	}
	return nil
}

func (s *Store) tagOp(ctx context.Context, tenant, id string, tags []string, add bool) error {
	if err := storekit.Key(tenant, id); err != nil {
		return err
	}
	tags, err := storekit.Tags(tags)
	if err != nil {
		return err
	}
	w, _, err := s.pools()
	if err != nil {
		return err
	}
	return inTx(ctx, w, func(tx *sql.Tx) error {
		if err := existsTx(ctx, tx, tenant, id); err != nil {
			return err
		}
		if add {
			return changeTags(ctx, tx, tenant, id, tags, nil)
		}
		return changeTags(ctx, tx, tenant, id, nil, tags)
	})
}

func existsTx(ctx context.Context, tx *sql.Tx, tenant, id string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM devices WHERE tenant = ? AND id = ?`, tenant, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("look up device: %w", err)
	}
	return nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, tenant, id string) error {
	err := func() error {
		if err := storekit.Key(tenant, id); err != nil {
			return err
		}
		w, _, err := s.pools()
		if err != nil {
			return err
		}
		return inTx(ctx, w, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `DELETE FROM devices WHERE tenant = ? AND id = ?`, tenant, id)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return store.ErrNotFound
			}
			for _, q := range []string{
				`DELETE FROM parameters WHERE tenant = ? AND device_id = ?`,
				`DELETE FROM device_tags WHERE tenant = ? AND device_id = ?`,
			} {
				if _, err := tx.ExecContext(ctx, q, tenant, id); err != nil {
					return err
				}
			}
			return nil
		})
	}()
	if err != nil {
		return fmt.Errorf("delete device %s/%s: %w", tenant, id, err)
	}
	return nil
}
