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
	// Now is the clock that stamps tag changes (Device.Updated); nil
	// means time.Now. Session diffs carry their own time.
	Now func() time.Time
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
	if cfg.Now == nil {
		cfg.Now = time.Now
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
func (s *Store) ApplySessionDiff(ctx context.Context, tenant, id string, d store.Diff, fencingToken uint64) (bool, error) {
	p, err := storekit.PlanDiff(tenant, id, d, fencingToken)
	if err != nil {
		return false, fmt.Errorf("apply diff to %s/%s: %w", tenant, id, err)
	}
	w, _, err := s.pools()
	if err != nil {
		return false, fmt.Errorf("apply diff to %s/%s: %w", tenant, id, err)
	}
	var created bool
	err = inTx(ctx, w, func(tx *sql.Tx) (err error) {
		created, err = applyPlan(ctx, tx, tenant, id, &p)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("apply diff to %s/%s: %w", tenant, id, err)
	}
	return created, nil
}

func applyPlan(ctx context.Context, tx *sql.Tx, tenant, id string, p *storekit.Plan) (created bool, err error) {
	var (
		stored          int64
		takeoverSession string
	)
	err = tx.QueryRowContext(ctx, `SELECT fencing_token, takeover_session FROM devices WHERE tenant = ? AND id = ?`,
		tenant, id).Scan(&stored, &takeoverSession)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if p.DeviceID == nil {
			return false, store.ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO devices (tenant, id, registered, updated, fencing_token) VALUES (?, ?, ?, ?, ?)`,
			tenant, id, p.Time.UnixMilli(), p.Time.UnixMilli(), p.Token); err != nil {
			return false, fmt.Errorf("insert device: %w", err)
		}
		created = true
	case err != nil:
		return false, fmt.Errorf("read fencing token: %w", err)
	case p.Token < stored:
		return false, store.ErrStaleFencingToken
	}

	set := []string{"fencing_token = ?", "updated = ?"}
	args := []any{p.Token, p.Time.UnixMilli()}
	add := func(col string, v any) {
		set = append(set, col+" = ?")
		args = append(args, v)
	}
	if dev := p.DeviceID; dev != nil {
		add("manufacturer", dev.Manufacturer)
		add("oui_raw", dev.OUI)
		add("oui", p.OUI)
		add("product_class", dev.ProductClass)
		add("serial_number", dev.SerialNumber)
	}
	if in := p.Inform; in != nil {
		events := in.Events
		if events == nil {
			events = []cwmp.Event{}
		}
		ev, err := json.Marshal(events)
		if err != nil {
			return false, fmt.Errorf("encode events: %w", err)
		}
		add("last_inform", p.InformTime.UnixMilli())
		add("remote_ip", addrText(in.RemoteIP))
		add("last_events", string(ev))
		if p.Boot {
			add("last_boot", p.InformTime.UnixMilli())
		}
		if p.Bootstrap {
			add("last_bootstrap", p.InformTime.UnixMilli())
		}
	}
	for _, f := range []struct {
		col string
		v   *string
	}{
		{"data_model_root", p.Fields.DataModelRoot}, {"software_version", p.Fields.SoftwareVersion},
		{"hardware_version", p.Fields.HardwareVersion}, {"provisioning_code", p.Fields.ProvisioningCode},
		{"cr_url", p.Fields.ConnectionRequestURL}, {"cr_udp_address", p.Fields.UDPConnectionRequestAddress},
		{"cr_jabber_id", p.Fields.JabberID},
	} {
		if f.v != nil {
			add(f.col, *f.v)
		}
	}
	if c := p.ConnectionRequestCredentials; c != nil {
		add("cr_username", c.Username)
		add("cr_password", c.Password)
	}
	if c := p.CPECredentials; c != nil {
		add("cpe_username", c.Username)
		add("cpe_password", c.Password)
	}
	if !p.FullDiscovery.IsZero() {
		add("full_discovery", p.FullDiscovery.UnixMilli())
	}
	if p.Takeover && (p.SessionID == "" || p.SessionID != takeoverSession) {
		set = append(set, "takeover_count = takeover_count + 1")
		add("last_takeover", p.Time.UnixMilli())
		add("takeover_session", p.SessionID)
	}
	args = append(args, tenant, id)
	if _, err := tx.ExecContext(ctx, `UPDATE devices SET `+strings.Join(set, ", ")+` WHERE tenant = ? AND id = ?`, args...); err != nil {
		return false, fmt.Errorf("update device: %w", err)
	}

	if p.DeleteAll {
		if _, err := tx.ExecContext(ctx, `DELETE FROM parameters WHERE tenant = ? AND device_id = ?`, tenant, id); err != nil {
			return false, fmt.Errorf("delete parameters: %w", err)
		}
	}
	for _, pre := range p.Deletes {
		// A prefix ends with ".", so its upper bound always exists.
		upper, _ := storekit.UpperBound(pre)
		if _, err := tx.ExecContext(ctx, `DELETE FROM parameters WHERE tenant = ? AND device_id = ? AND path >= ? AND path < ?`,
			tenant, id, pre, upper); err != nil {
			return false, fmt.Errorf("delete parameters under %q: %w", pre, err)
		}
	}
	for _, path := range p.DeleteEntries {
		if _, err := tx.ExecContext(ctx, `DELETE FROM parameters WHERE tenant = ? AND device_id = ? AND path = ?`,
			tenant, id, path); err != nil {
			return false, fmt.Errorf("delete parameter %q: %w", path, err)
		}
	}
	if len(p.Updates) > 0 {
		if err := upsertParams(ctx, tx, tenant, id, p); err != nil {
			return false, err
		}
	}
	if err := changeTags(ctx, tx, tenant, id, p.AddTags, p.RemoveTags); err != nil {
		return false, err
	}
	return created, nil
}

// upsertSQL merges an update into an entry: NULL in value, writable or
// notification means "unknown, keep what is stored". A known value is never
// NULL (an empty value is the empty string), which makes COALESCE exact.
const upsertSQL = `INSERT INTO parameters (tenant, device_id, path, value, type, number, instant, writable, notification, updated)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant, device_id, path) DO UPDATE SET
	value        = COALESCE(excluded.value, parameters.value),
	type         = CASE WHEN excluded.value IS NULL THEN parameters.type ELSE excluded.type END,
	number       = CASE WHEN excluded.value IS NULL THEN parameters.number ELSE excluded.number END,
	instant      = CASE WHEN excluded.value IS NULL THEN parameters.instant ELSE excluded.instant END,
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
		var value, typ, number, instant, writable, notification any
		if u.HasValue {
			value, typ, number = u.Value, u.Type, u.Number
			if u.IsInstant {
				instant = u.Instant.UnixMilli()
			}
		}
		if b, known := u.Writable.Bool(); known {
			writable = b
		}
		if n, known := u.Notification.Value(); known {
			notification = n
		}
		if _, err := stmt.ExecContext(ctx, tenant, id, u.Path, value, typ, number, instant, writable, notification, updated); err != nil {
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
		res, err := tx.ExecContext(ctx, `UPDATE devices SET updated = ? WHERE tenant = ? AND id = ?`,
			storekit.Time(s.cfg.Now()).UnixMilli(), tenant, id)
		if err != nil {
			return fmt.Errorf("touch device: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("touch device: %w", err)
		} else if n == 0 {
			return store.ErrNotFound
		}
		if add {
			return changeTags(ctx, tx, tenant, id, tags, nil)
		}
		return changeTags(ctx, tx, tenant, id, nil, tags)
	})
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
