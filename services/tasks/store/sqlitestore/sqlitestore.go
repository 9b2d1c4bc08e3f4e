// Package sqlitestore is the embedded task store: one SQLite file through
// modernc.org/sqlite (pure Go), so that `fleetacs all` needs no database
// server. It passes the contract suite of package storetest.
//
// Layout: one table, tasks, keyed by (tenant, id) without a rowid, with the
// record's indexed fields as columns and Body and Secret as blobs (schema.go
// lists the indexes and the queries they serve). Times are INTEGER unix
// milliseconds; a zero DueTime is NULL, so that the due index holds only
// running tasks.
//
// Concurrency: SQLite has one writer at a time. Every write is an op queued
// to one writer goroutine, which owns the only write connection and commits
// the ops waiting in one transaction (group commit, writer.go), so the
// file's write lock is never contended within the process. Reads use a
// separate pool of query-only connections, which in WAL mode run beside the
// writer, each statement on one snapshot. busy_timeout stays as a backstop
// for checkpoints and other processes opening the file.
//
// The compare-and-swap of Update is the statement's WHERE version = ?: one
// writer runs the ops one after the other, so of concurrent updates from one
// version the first wins and the others change no row.
package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fleetacs/fleetacs/services/tasks/store"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/fleetacs/fleetacs/pkg/sqlmigrate"
	"github.com/fleetacs/fleetacs/pkg/telemetry"
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
	// MaxBatch bounds the writes committed in one transaction
	// (writer.go); 0 means 128. The queue holds queueFactor batches.
	MaxBatch int
	// Metrics, if set, records the latency and errors of the database
	// calls (telemetry.OpenSQL).
	Metrics *telemetry.ClientMetrics
}

// Store is the SQLite task store. Create it with New and call Start before
// use.
type Store struct {
	cfg Config

	// mu guards st: reads hold it shared for their whole run and writes
	// while they enqueue, so that Close, holding it exclusively, waits for
	// reads and never drains the queue under a send.
	mu sync.RWMutex
	st *state
}

// state is what Start opens and Close releases.
type state struct {
	// db is the writer's pool of one connection, which w holds.
	db, r *sql.DB
	w     *writer
	// Prepared statements of the readers: database/sql prepares each
	// once per connection and reuses it.
	get, getMany, due, changed *sql.Stmt
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
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 128
	}
	return &Store{cfg: cfg}
}

func (s *Store) dsn(write bool) string {
	v := fmt.Sprintf("file:%s?_busy_timeout=%d", s.cfg.Path, s.cfg.BusyTimeout.Milliseconds())
	if write {
		// journal_mode=WAL is persistent in the file; synchronous=NORMAL
		// is durable across process crashes in WAL mode and risks only
		// the last commits on power loss, the usual trade for a
		// single-node default. The statement journal stays in memory.
		// A checkpoint every 10000 pages (40 MiB of WAL) rather than
		// SQLite's 1000: the checkpoint runs inside the commit that
		// crosses the mark, on the writer goroutine every claim and
		// report waits for, and fsyncs; the pages a task's writes touch
		// (index right edges, the rows of the tasks in flight) are
		// written back once per many batches (as the inventory's store
		// does).
		return v + "&_txlock=immediate&_journal_mode=WAL&_synchronous=NORMAL&_pragma=temp_store(MEMORY)&_pragma=wal_autocheckpoint(10000)"
	}
	return v + "&_query_only=1"
}

// Start creates the file (readable by its owner only) and its directory,
// switches it to WAL, applies the migrations, prepares the statements and
// starts the writer goroutine. Starting a started store does nothing.
func (s *Store) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st != nil {
		return nil
	}
	st, err := s.open(ctx)
	if err != nil {
		return fmt.Errorf("start sqlite task store: %w", err)
	}
	s.st = st
	return nil
}

func (s *Store) open(ctx context.Context) (_ *state, err error) {
	if s.cfg.Path == "" || strings.ContainsAny(s.cfg.Path, "?#") {
		return nil, fmt.Errorf("path %q: must be a file name without '?' or '#'", s.cfg.Path)
	}
	if err := os.MkdirAll(filepath.Dir(s.cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("create directory: %w", err)
	}
	f, err := os.OpenFile(s.cfg.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create database file: %w", err)
	}
	_ = f.Close()
	st := &state{}
	defer func() {
		if err != nil {
			err = errors.Join(err, st.release())
		}
	}()
	if st.db, err = telemetry.OpenSQL("sqlite", s.dsn(true), s.cfg.Metrics); err != nil {
		return nil, fmt.Errorf("open writer: %w", err)
	}
	st.db.SetMaxOpenConns(1)
	st.db.SetMaxIdleConns(1)
	st.db.SetConnMaxLifetime(0)
	st.db.SetConnMaxIdleTime(0)
	if err := migrate(ctx, st.db); err != nil {
		return nil, err
	}
	conn, err := st.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("open writer: %w", err)
	}
	if st.w, err = newWriter(ctx, conn, s.cfg.MaxBatch); err != nil {
		return nil, errors.Join(fmt.Errorf("open writer: %w", err), conn.Close())
	}
	go st.w.run()
	if st.r, err = telemetry.OpenSQL("sqlite", s.dsn(false), s.cfg.Metrics); err != nil {
		return nil, fmt.Errorf("open readers: %w", err)
	}
	st.r.SetMaxOpenConns(s.cfg.ReadConns)
	st.r.SetMaxIdleConns(s.cfg.ReadConns)
	for _, p := range []struct {
		db  *sql.DB
		dst **sql.Stmt
		q   string
	}{
		{st.r, &st.get, `SELECT ` + columns + ` FROM tasks WHERE tenant = ? AND id = ?`},
		// One statement for any number of ids: they arrive as a JSON
		// array.
		{st.r, &st.getMany, `SELECT ` + columns + ` FROM tasks WHERE tenant = ? AND id IN (SELECT value FROM json_each(?))`},
		{st.r, &st.due, `SELECT ` + columns + ` FROM tasks WHERE due_time IS NOT NULL AND due_time <= ? ORDER BY due_time LIMIT ?`},
		// Ended records by their index of update times; running ones
		// (bounded by the queues) by the index of due times, filtered.
		{st.r, &st.changed, `SELECT ` + columns + ` FROM tasks INDEXED BY tasks_ended WHERE due_time IS NULL AND update_time >= ?1
			UNION ALL SELECT ` + columns + ` FROM tasks INDEXED BY tasks_due WHERE due_time IS NOT NULL AND update_time >= ?1 LIMIT ?2`},
	} {
		if *p.dst, err = p.db.PrepareContext(ctx, p.q); err != nil {
			return nil, fmt.Errorf("prepare %q: %w", strings.Join(strings.Fields(p.q), " "), err)
		}
	}
	return st, nil
}

// columns are a record's columns in the order scan reads them.
const columns = `tenant, id, device_id, state, kind, idempotency_key, create_time, update_time, due_time,
	queue_seq, version, body, secret`

func migrate(ctx context.Context, db *sql.DB) error {
	return sqlmigrate.Apply(ctx, db, migrations)
}

// release closes what open opened, stopping the writer goroutine if it
// runs.
func (st *state) release() error {
	var errs []error
	for _, p := range []*sql.Stmt{st.get, st.getMany, st.due, st.changed} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	if st.w != nil {
		errs = append(errs, st.w.shutdown())
	}
	if st.db != nil {
		errs = append(errs, st.db.Close())
	}
	if st.r != nil {
		errs = append(errs, st.r.Close())
	}
	return errors.Join(errs...)
}

// Close waits for running reads and the batch of writes being committed,
// and closes the database. Writes still queued, and later operations, fail
// with store.ErrUnavailable; every write that returned success is
// committed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	if st == nil {
		return nil
	}
	s.st = nil
	if err := st.release(); err != nil {
		return fmt.Errorf("close sqlite task store: %w", err)
	}
	return nil
}

// errNotStarted is what operations on a store not started (or closed)
// return.
var errNotStarted = fmt.Errorf("sqlite task store not started: %w", store.ErrUnavailable)

// with runs fn (a read) on the open state, holding s.mu shared.
func (s *Store) with(fn func(st *state) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.st == nil {
		return errNotStarted
	}
	return fn(s.st)
}

// toMS is a time as stored; zero is NULL.
func toMS(t time.Time) any {
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

// blob is b as stored: empty is NULL.
func blob(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// check reports what makes r unfit to store.
func check(r *store.Record) error {
	switch {
	case r.Tenant == "" || r.ID == "":
		return errors.New("tenant and id must not be empty")
	case r.CreateTime.IsZero() || r.UpdateTime.IsZero():
		return errors.New("create and update times must be set")
	case r.QueueSeq > math.MaxInt64 || r.Version > math.MaxInt64:
		return errors.New("queue sequence and version must not exceed 2^63-1")
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

func scan(row scanner) (store.Record, error) {
	var (
		r                 store.Record
		created, updated  int64
		due               sql.NullInt64
		queueSeq, version int64
		body, secret      []byte
	)
	err := row.Scan(&r.Tenant, &r.ID, &r.DeviceID, &r.State, &r.Kind, &r.IdempotencyKey, &created, &updated, &due,
		&queueSeq, &version, &body, &secret)
	if err != nil {
		return store.Record{}, err
	}
	r.CreateTime, r.UpdateTime = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	r.DueTime = fromMS(due)
	r.QueueSeq, r.Version = uint64(queueSeq), uint64(version)
	if len(body) > 0 {
		r.Body = body
	}
	if len(secret) > 0 {
		r.Secret = secret
	}
	return r, nil
}

// normal is r as the store keeps and returns it.
func normal(r store.Record) store.Record {
	r.CreateTime, r.UpdateTime = time.UnixMilli(r.CreateTime.UnixMilli()).UTC(), time.UnixMilli(r.UpdateTime.UnixMilli()).UTC()
	r.DueTime = fromMS(sqlNull(toMS(r.DueTime)))
	if len(r.Body) == 0 {
		r.Body = nil
	}
	if len(r.Secret) == 0 {
		r.Secret = nil
	}
	return r
}

func sqlNull(v any) sql.NullInt64 {
	if v == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: v.(int64), Valid: true}
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, r store.Record) (store.Record, bool, error) {
	var stored store.Record
	var existing bool
	err := check(&r)
	if err == nil && r.Version != 1 {
		err = fmt.Errorf("version %d, want 1", r.Version)
	}
	if err == nil {
		err = s.submit(ctx, func(w *writer) (err error) {
			stored, existing, err = w.create(r)
			return err
		})
	}
	if err != nil {
		return store.Record{}, false, fmt.Errorf("create task %s/%s: %w", r.Tenant, r.ID, err)
	}
	return stored, existing, nil
}

// create runs on the writer. The insert and the reads after it are in one
// transaction of the one writer, so the record the insert collided with is
// still there to read.
func (w *writer) create(r store.Record) (store.Record, bool, error) {
	res, err := w.exec(w.insert, r.Tenant, r.ID, r.DeviceID, r.State, r.Kind, r.IdempotencyKey,
		r.CreateTime.UnixMilli(), r.UpdateTime.UnixMilli(), toMS(r.DueTime), int64(r.QueueSeq), int64(r.Version),
		blob(r.Body), blob(r.Secret))
	if err != nil {
		return store.Record{}, false, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return store.Record{}, false, err
	} else if n == 1 {
		return normal(r), false, nil
	}
	// The insert collided with the primary key or the key's index, and
	// wrote nothing.
	if r.IdempotencyKey != "" {
		got, err := scan(w.byKey.QueryRowContext(bg, r.Tenant, r.IdempotencyKey))
		if err == nil {
			return got, true, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return store.Record{}, false, err
		}
	}
	var one int
	if err := w.exists.QueryRowContext(bg, r.Tenant, r.ID).Scan(&one); err != nil {
		return store.Record{}, false, fmt.Errorf("insert changed nothing, yet nothing collides: %w", err)
	}
	return store.Record{}, false, refuse(errors.New("a task with this id exists"))
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, tenant, id string) (store.Record, error) {
	var r store.Record
	err := s.with(func(st *state) (err error) {
		r, err = scan(st.get.QueryRowContext(ctx, tenant, id))
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return store.Record{}, fmt.Errorf("get task %s/%s: %w", tenant, id, err)
	}
	return r, nil
}

// GetMany implements store.Store.
func (s *Store) GetMany(ctx context.Context, tenant string, ids []string) ([]store.Record, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	out := make([]store.Record, 0, len(ids))
	err := s.with(func(st *state) error {
		rows, err := st.getMany.QueryContext(ctx, tenant, jsonStrings(ids))
		if err != nil {
			return err
		}
		out, err = scanAll(rows, out)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get %d tasks of %s: %w", len(ids), tenant, err)
	}
	return out, nil
}

// jsonStrings encodes ss as a JSON array of strings.
func jsonStrings(ss []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for _, c := range []byte(s) {
			switch {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c < 0x20:
				fmt.Fprintf(&b, `\u%04x`, c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
	}
	b.WriteByte(']')
	return b.String()
}

func scanAll(rows *sql.Rows, out []store.Record) ([]store.Record, error) {
	defer rows.Close()
	for rows.Next() {
		r, err := scan(rows)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// List implements store.Store. The query is built for the filters given, so
// that SQLite picks the index that fits (schema.go).
func (s *Store) List(ctx context.Context, q store.Query) ([]store.Record, error) {
	var out []store.Record
	err := func() error {
		if q.Tenant == "" {
			return errors.New("tenant must not be empty")
		}
		if q.Limit < 0 {
			return fmt.Errorf("limit %d is negative", q.Limit)
		}
		limit := q.Limit
		if limit == 0 {
			limit = 100
		}
		var sb strings.Builder
		args := []any{q.Tenant}
		sb.WriteString(`SELECT ` + columns + ` FROM tasks WHERE tenant = ?`)
		if q.DeviceID != "" {
			sb.WriteString(` AND device_id = ?`)
			args = append(args, q.DeviceID)
		}
		if len(q.States) > 0 {
			sb.WriteString(` AND state IN (?` + strings.Repeat(`,?`, len(q.States)-1) + `)`)
			for _, v := range q.States {
				args = append(args, v)
			}
		}
		if len(q.Kinds) > 0 {
			sb.WriteString(` AND kind IN (?` + strings.Repeat(`,?`, len(q.Kinds)-1) + `)`)
			for _, v := range q.Kinds {
				args = append(args, v)
			}
		}
		if !q.CreatedAfter.IsZero() {
			sb.WriteString(` AND create_time >= ?`)
			args = append(args, q.CreatedAfter.UnixMilli())
		}
		if !q.CreatedBefore.IsZero() {
			sb.WriteString(` AND create_time < ?`)
			args = append(args, q.CreatedBefore.UnixMilli())
		}
		if c := q.After; c != nil {
			sb.WriteString(` AND (create_time, id) < (?, ?)`)
			args = append(args, c.CreateTime.UnixMilli(), c.ID)
		}
		sb.WriteString(` ORDER BY create_time DESC, id DESC LIMIT ?`)
		args = append(args, limit)
		return s.with(func(st *state) error {
			rows, err := st.r.QueryContext(ctx, sb.String(), args...)
			if err != nil {
				return err
			}
			out, err = scanAll(rows, make([]store.Record, 0, min(limit, 100)))
			return err
		})
	}()
	if err != nil {
		return nil, fmt.Errorf("list tasks of %s: %w", q.Tenant, err)
	}
	return out, nil
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, r store.Record, expectVersion uint64) error {
	err := check(&r)
	if err == nil && (expectVersion == math.MaxUint64 || r.Version != expectVersion+1) {
		err = fmt.Errorf("version %d does not follow %d", r.Version, expectVersion)
	}
	if err == nil {
		err = s.submit(ctx, func(w *writer) error { return w.updateRecord(r, expectVersion) })
	}
	if err != nil {
		return fmt.Errorf("update task %s/%s to version %d: %w", r.Tenant, r.ID, r.Version, err)
	}
	return nil
}

// updateRecord runs on the writer.
func (w *writer) updateRecord(r store.Record, expectVersion uint64) error {
	res, err := w.exec(w.update, r.State, r.Kind, r.UpdateTime.UnixMilli(), toMS(r.DueTime),
		int64(r.QueueSeq), int64(r.Version), blob(r.Body), blob(r.Secret), r.Tenant, r.ID, int64(expectVersion))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return err
	}
	// The update changed nothing.
	var one int
	switch err := w.exists.QueryRowContext(bg, r.Tenant, r.ID).Scan(&one); {
	case errors.Is(err, sql.ErrNoRows):
		return refuse(store.ErrNotFound)
	case err != nil:
		return err
	}
	return refuse(store.ErrVersionConflict)
}

// Due implements store.Store.
func (s *Store) Due(ctx context.Context, t time.Time, limit int) ([]store.Record, error) {
	out, err := s.byTime(ctx, func(st *state) *sql.Stmt { return st.due }, t, limit)
	if err != nil {
		return nil, fmt.Errorf("list tasks due at %v: %w", t, err)
	}
	return out, nil
}

// ChangedSince implements store.Store.
func (s *Store) ChangedSince(ctx context.Context, t time.Time, limit int) ([]store.Record, error) {
	out, err := s.byTime(ctx, func(st *state) *sql.Stmt { return st.changed }, t, limit)
	if err != nil {
		return nil, fmt.Errorf("list tasks changed since %v: %w", t, err)
	}
	return out, nil
}

// byTime runs a reader statement of the records of any tenant by a time
// (its first argument) and a limit (its second), which must be positive.
func (s *Store) byTime(ctx context.Context, stmt func(*state) *sql.Stmt, t time.Time, limit int) ([]store.Record, error) {
	if limit < 1 {
		return nil, fmt.Errorf("limit %d is not positive", limit)
	}
	var out []store.Record
	err := s.with(func(st *state) error {
		rows, err := stmt(st).QueryContext(ctx, t.UnixMilli(), limit)
		if err != nil {
			return err
		}
		out, err = scanAll(rows, nil)
		return err
	})
	return out, err
}

// DeleteEnded implements store.Store.
func (s *Store) DeleteEnded(ctx context.Context, t time.Time, limit int) (int, error) {
	var n int64
	err := func() error {
		if limit < 1 {
			return fmt.Errorf("limit %d is not positive", limit)
		}
		return s.submit(ctx, func(w *writer) error {
			res, err := w.exec(w.deleteEnded, t.UnixMilli(), limit)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
	}()
	if err != nil {
		return 0, fmt.Errorf("delete tasks ended before %v: %w", t, err)
	}
	return int(n), nil
}
