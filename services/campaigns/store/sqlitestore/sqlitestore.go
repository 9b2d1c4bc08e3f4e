// Package sqlitestore is the embedded campaigns store: one SQLite file
// through modernc.org/sqlite (pure Go), a table of campaigns (the API
// record as protobuf, the runner's state as JSON) and a table of the
// devices' progress keyed by campaign and device, indexed by plan order and
// by outcome. It passes the contract suite of package storetest.
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

	"google.golang.org/protobuf/proto"

	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	"github.com/fleetacs/fleetacs/services/campaigns/store"

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

// Store is the SQLite campaigns store.
type Store struct {
	cfg Config
	mu  sync.RWMutex
	db  *sql.DB
}

var _ store.Store = (*Store)(nil)

// New returns a store for cfg. It does no I/O.
func New(cfg Config) *Store { return &Store{cfg: cfg} }

const schema = `
CREATE TABLE IF NOT EXISTS campaigns (
	tenant TEXT NOT NULL,
	id TEXT NOT NULL,
	state INTEGER NOT NULL,
	idem TEXT NOT NULL,
	create_time INTEGER NOT NULL,
	settled INTEGER NOT NULL,
	campaign BLOB NOT NULL,
	run TEXT NOT NULL,
	version INTEGER NOT NULL,
	PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS campaigns_idem ON campaigns (tenant, idem) WHERE idem <> '';
CREATE INDEX IF NOT EXISTS campaigns_created ON campaigns (tenant, create_time DESC, id DESC);
CREATE INDEX IF NOT EXISTS campaigns_unsettled ON campaigns (settled);
CREATE TABLE IF NOT EXISTS campaign_devices (
	tenant TEXT NOT NULL,
	campaign TEXT NOT NULL,
	device TEXT NOT NULL,
	seq INTEGER NOT NULL,
	wave INTEGER NOT NULL,
	task_id TEXT NOT NULL,
	outcome INTEGER NOT NULL,
	detail TEXT NOT NULL,
	task_end INTEGER NOT NULL,
	update_time INTEGER NOT NULL,
	PRIMARY KEY (tenant, campaign, device)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS campaign_devices_seq ON campaign_devices (tenant, campaign, seq);
CREATE INDEX IF NOT EXISTS campaign_devices_outcome ON campaign_devices (tenant, campaign, outcome, seq);
CREATE TABLE IF NOT EXISTS campaign_leases (
	tenant TEXT NOT NULL,
	campaign TEXT NOT NULL,
	owner TEXT NOT NULL,
	until INTEGER NOT NULL,
	PRIMARY KEY (tenant, campaign)
) WITHOUT ROWID;
`

// Start creates the file (readable by its owner only) and the schema.
func (s *Store) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil {
		return nil
	}
	if s.cfg.Path == "" || strings.ContainsAny(s.cfg.Path, "?#") {
		return fmt.Errorf("start sqlite campaigns store: path %q must be a file name without '?' or '#'", s.cfg.Path)
	}
	if err := os.MkdirAll(filepath.Dir(s.cfg.Path), 0o700); err != nil {
		return fmt.Errorf("start sqlite campaigns store: %w", err)
	}
	f, err := os.OpenFile(s.cfg.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("start sqlite campaigns store: %w", err)
	}
	_ = f.Close()
	db, err := telemetry.OpenSQL("sqlite", "file:"+s.cfg.Path+"?_busy_timeout=5000&_txlock=immediate&_journal_mode=WAL&_synchronous=NORMAL", s.cfg.Metrics)
	if err != nil {
		return fmt.Errorf("start sqlite campaigns store: %w", err)
	}
	db.SetMaxOpenConns(4)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		_ = db.Close()
		return fmt.Errorf("start sqlite campaigns store: schema: %w", err)
	}
	s.db = db
	return nil
}

// Close closes the database.
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

func (s *Store) conn() (*sql.DB, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, fmt.Errorf("%w: not started", store.ErrUnavailable)
	}
	return s.db, nil
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

func encode(r store.Record) ([]byte, string, error) {
	c, err := proto.Marshal(r.Campaign)
	if err != nil {
		return nil, "", err
	}
	run, err := json.Marshal(r.Run)
	return c, string(run), err
}

const cols = `tenant, id, state, idem, create_time, settled, campaign, run, version`

func scan(row interface{ Scan(...any) error }) (store.Record, error) {
	var r store.Record
	var ct int64
	var settled int
	var c []byte
	var run string
	if err := row.Scan(&r.Tenant, &r.ID, &r.State, &r.IdempotencyKey, &ct, &settled, &c, &run, &r.Version); err != nil {
		return r, err
	}
	r.CreateTime = fromMS(ct)
	r.Settled = settled != 0
	r.Campaign = &campaignsv1.Campaign{}
	if err := proto.Unmarshal(c, r.Campaign); err != nil {
		return r, fmt.Errorf("decode campaign %s: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(run), &r.Run); err != nil {
		return r, fmt.Errorf("decode campaign %s run state: %w", r.ID, err)
	}
	return r, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, r store.Record) (store.Record, bool, error) {
	db, err := s.conn()
	if err != nil {
		return r, false, err
	}
	c, run, err := encode(r)
	if err != nil {
		return r, false, err
	}
	r.Version = 1
	_, err = db.ExecContext(ctx, `INSERT INTO campaigns (`+cols+`) VALUES (?,?,?,?,?,?,?,?,?)`,
		r.Tenant, r.ID, r.State, r.IdempotencyKey, ms(r.CreateTime), b2i(r.Settled), c, run, r.Version)
	if err != nil && r.IdempotencyKey != "" && strings.Contains(err.Error(), "UNIQUE") {
		row := db.QueryRowContext(ctx, `SELECT `+cols+` FROM campaigns WHERE tenant = ? AND idem = ?`, r.Tenant, r.IdempotencyKey)
		got, err := scan(row)
		if err != nil {
			return r, false, fmt.Errorf("create campaign: %w", err)
		}
		return got, true, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("create campaign: %w", err)
	}
	r.CreateTime = fromMS(ms(r.CreateTime))
	return r, false, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, tenant, id string) (store.Record, error) {
	db, err := s.conn()
	if err != nil {
		return store.Record{}, err
	}
	r, err := scan(db.QueryRowContext(ctx, `SELECT `+cols+` FROM campaigns WHERE tenant = ? AND id = ?`, tenant, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, store.ErrNotFound
	}
	return r, err
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, tenant string, state campaignsv1.CampaignState, after *store.Cursor, limit int) ([]store.Record, error) {
	db, err := s.conn()
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 50
	}
	q := `SELECT ` + cols + ` FROM campaigns WHERE tenant = ?`
	args := []any{tenant}
	if state != campaignsv1.CampaignState_CAMPAIGN_STATE_UNSPECIFIED {
		q += ` AND state = ?`
		args = append(args, state)
	}
	if after != nil {
		q += ` AND (create_time < ? OR (create_time = ? AND id < ?))`
		args = append(args, ms(after.CreateTime), ms(after.CreateTime), after.ID)
	}
	q += ` ORDER BY create_time DESC, id DESC LIMIT ?`
	args = append(args, limit)
	return s.query(ctx, db, q, args...)
}

func (s *Store) query(ctx context.Context, db *sql.DB, q string, args ...any) ([]store.Record, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	defer rows.Close()
	var out []store.Record
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, r store.Record) (store.Record, error) {
	db, err := s.conn()
	if err != nil {
		return r, err
	}
	c, run, err := encode(r)
	if err != nil {
		return r, err
	}
	res, err := db.ExecContext(ctx, `UPDATE campaigns SET state = ?, settled = ?, campaign = ?, run = ?, version = version + 1
		WHERE tenant = ? AND id = ? AND version = ?`, r.State, b2i(r.Settled), c, run, r.Tenant, r.ID, r.Version)
	if err != nil {
		return r, fmt.Errorf("update campaign: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.Get(ctx, r.Tenant, r.ID); err != nil {
			return r, err
		}
		return r, store.ErrConflict
	}
	r.Version++
	return r, nil
}

// Unsettled implements store.Store.
func (s *Store) Unsettled(ctx context.Context) ([]store.Record, error) {
	db, err := s.conn()
	if err != nil {
		return nil, err
	}
	return s.query(ctx, db, `SELECT `+cols+` FROM campaigns WHERE settled = 0 ORDER BY create_time, id`)
}

// AddDevices implements store.Store.
func (s *Store) AddDevices(ctx context.Context, ds []store.Device) error {
	db, err := s.conn()
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("add campaign devices: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	st, err := tx.PrepareContext(ctx, `INSERT INTO campaign_devices (tenant, campaign, device, seq, wave, task_id, outcome, detail, task_end, update_time)
		VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING`)
	if err != nil {
		return fmt.Errorf("add campaign devices: %w", err)
	}
	defer st.Close()
	for _, d := range ds {
		if _, err := st.ExecContext(ctx, d.Tenant, d.Campaign, d.DeviceID, int64(d.Seq), d.Wave, d.TaskID, d.Outcome, d.Detail, ms(d.TaskEnd), ms(d.UpdateTime)); err != nil {
			return fmt.Errorf("add campaign devices: %w", err)
		}
	}
	return tx.Commit()
}

// SetWave implements store.Store.
func (s *Store) SetWave(ctx context.Context, tenant, campaign string, from, to uint64, wave int32) error {
	db, err := s.conn()
	if err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, `UPDATE campaign_devices SET wave = ? WHERE tenant = ? AND campaign = ? AND seq >= ? AND seq < ?`,
		wave, tenant, campaign, int64(from), int64(to))
	if err != nil {
		return fmt.Errorf("set campaign wave: %w", err)
	}
	return nil
}

// Devices implements store.Store.
func (s *Store) Devices(ctx context.Context, q store.DeviceQuery) ([]store.Device, error) {
	db, err := s.conn()
	if err != nil {
		return nil, err
	}
	if q.Limit <= 0 {
		q.Limit = 100
	}
	sq := `SELECT tenant, campaign, device, seq, wave, task_id, outcome, detail, task_end, update_time FROM campaign_devices
		WHERE tenant = ? AND campaign = ? AND seq > ?`
	args := []any{q.Tenant, q.Campaign, q.AfterSeq}
	if q.Wave >= 0 {
		sq += ` AND wave = ?`
		args = append(args, q.Wave)
	}
	if q.Outcome != campaignsv1.Outcome_OUTCOME_UNSPECIFIED {
		sq += ` AND outcome = ?`
		args = append(args, q.Outcome)
	}
	sq += ` ORDER BY seq LIMIT ?`
	args = append(args, q.Limit)
	rows, err := db.QueryContext(ctx, sq, args...)
	if err != nil {
		return nil, fmt.Errorf("list campaign devices: %w", err)
	}
	defer rows.Close()
	var out []store.Device
	for rows.Next() {
		var d store.Device
		var seq, te, ut int64
		if err := rows.Scan(&d.Tenant, &d.Campaign, &d.DeviceID, &seq, &d.Wave, &d.TaskID, &d.Outcome, &d.Detail, &te, &ut); err != nil {
			return nil, fmt.Errorf("list campaign devices: %w", err)
		}
		d.Seq, d.TaskEnd, d.UpdateTime = uint64(seq), fromMS(te), fromMS(ut)
		out = append(out, d)
	}
	return out, rows.Err()
}

// UpdateDevice implements store.Store.
func (s *Store) UpdateDevice(ctx context.Context, d store.Device) error {
	db, err := s.conn()
	if err != nil {
		return err
	}
	res, err := db.ExecContext(ctx, `UPDATE campaign_devices SET task_id = ?, outcome = ?, detail = ?, task_end = ?, update_time = ?
		WHERE tenant = ? AND campaign = ? AND device = ?`, d.TaskID, d.Outcome, d.Detail, ms(d.TaskEnd), ms(d.UpdateTime), d.Tenant, d.Campaign, d.DeviceID)
	if err != nil {
		return fmt.Errorf("update campaign device: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// SetOutcomes implements store.Store.
func (s *Store) SetOutcomes(ctx context.Context, tenant, campaign string, from, to campaignsv1.Outcome, detail string) (int64, error) {
	db, err := s.conn()
	if err != nil {
		return 0, err
	}
	res, err := db.ExecContext(ctx, `UPDATE campaign_devices SET outcome = ?, detail = ?, update_time = ? WHERE tenant = ? AND campaign = ? AND outcome = ?`,
		to, detail, time.Now().UnixMilli(), tenant, campaign, from)
	if err != nil {
		return 0, fmt.Errorf("set campaign outcomes: %w", err)
	}
	return res.RowsAffected()
}

// Count implements store.Store.
func (s *Store) Count(ctx context.Context, tenant, campaign string) (store.Counts, error) {
	db, err := s.conn()
	if err != nil {
		return nil, err
	}
	rows, err := db.QueryContext(ctx, `SELECT wave, outcome, COUNT(*) FROM campaign_devices WHERE tenant = ? AND campaign = ? GROUP BY wave, outcome`, tenant, campaign)
	if err != nil {
		return nil, fmt.Errorf("count campaign devices: %w", err)
	}
	defer rows.Close()
	out := store.Counts{}
	for rows.Next() {
		var w int32
		var o campaignsv1.Outcome
		var n uint64
		if err := rows.Scan(&w, &o, &n); err != nil {
			return nil, fmt.Errorf("count campaign devices: %w", err)
		}
		if out[w] == nil {
			out[w] = map[campaignsv1.Outcome]uint64{}
		}
		out[w][o] = n
	}
	return out, rows.Err()
}

// Lease implements store.Store: an upsert whose update only applies when
// the lease is the owner's or has ended.
func (s *Store) Lease(ctx context.Context, tenant, campaign, owner string, now, until time.Time) (bool, error) {
	db, err := s.conn()
	if err != nil {
		return false, err
	}
	res, err := db.ExecContext(ctx, `INSERT INTO campaign_leases (tenant, campaign, owner, until) VALUES (?, ?, ?, ?)
		ON CONFLICT (tenant, campaign) DO UPDATE SET owner = excluded.owner, until = excluded.until
		WHERE campaign_leases.owner = excluded.owner OR campaign_leases.until <= ?`,
		tenant, campaign, owner, until.UnixMilli(), now.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("lease campaign: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("lease campaign: %w", err)
	}
	return n == 1, nil
}

// Release implements store.Store.
func (s *Store) Release(ctx context.Context, tenant, campaign, owner string) error {
	db, err := s.conn()
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `DELETE FROM campaign_leases WHERE tenant = ? AND campaign = ? AND owner = ?`, tenant, campaign, owner); err != nil {
		return fmt.Errorf("release campaign lease: %w", err)
	}
	return nil
}
