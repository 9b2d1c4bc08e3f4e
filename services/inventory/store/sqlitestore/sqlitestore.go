// Package sqlitestore is the embedded inventory store (docs/design.md §4): one SQLite
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
// is queued to one writer goroutine that owns the only write connection and
// commits the writes waiting in one transaction, each in a savepoint of its
// own (group commit, see writer.go), so the lock is never contended in
// process. Reads use a separate pool of query-only connections; in WAL mode
// they run beside the writer and each read transaction sees one snapshot.
// busy_timeout stays as a backstop for checkpoints and for other processes
// opening the file.
//
// Hot statements are prepared once per connection (the writer's set when it
// starts, the readers' on first use of each pooled connection): parsing SQL
// cost as much as running it.
package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/sqlmigrate"
	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

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
	// MaxBatch is the most writes committed in one transaction; 0 means
	// 64. 1 commits every write on its own.
	MaxBatch int
	// Now is the clock that stamps tag changes (Device.Updated); nil
	// means time.Now. Session diffs carry their own time.
	Now func() time.Time
	// SessionCache is how many devices' session states the store keeps
	// in memory (see session.go), about 1 KB each; 0 means 100,000,
	// negative none.
	SessionCache int
	// IndexedParams are the patterns of the parameter paths whose
	// entries are indexed for filters (see indexed.go); nil means
	// DefaultIndexedParams, IndexAll every path. Changing them rebuilds
	// the index at the next Start.
	IndexedParams []string
	// Secrets seals the passwords the store keeps (storekit, "Passwords
	// at rest"); Start loads it. Nil means the key file "secrets.key"
	// beside the database file, created with a fresh key when missing.
	Secrets *secretbox.Keyring
	// Metrics, if set, records the latency and errors of the database
	// calls (telemetry.OpenSQL).
	Metrics *telemetry.ClientMetrics
}

// Store is the SQLite store. Create it with New and call Start before use.
type Store struct {
	cfg  Config
	keys *secretbox.Keyring

	// mu guards st. Writers hold it shared while they enqueue, so that
	// Close, holding it exclusively, never closes the queue under a send.
	mu sync.RWMutex
	st *state
}

// state is what Start opens and Close releases.
type state struct {
	wdb *sql.DB // exactly one connection, owned by w
	w   *writer
	r   *sql.DB // query-only readers
	rs  readStmts
	// sessions caches what SessionState returns; the writer fills it.
	sessions *sessionCache
	// events decodes the last_events of devices read.
	events eventsCache
	// indexed are the paths whose entries have rows in parameters.
	indexed indexSet
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
		cfg.MaxBatch = 64
	}
	if cfg.SessionCache == 0 {
		cfg.SessionCache = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IndexedParams == nil {
		cfg.IndexedParams = DefaultIndexedParams
	}
	keys := cfg.Secrets
	if keys == nil {
		keys = DefaultSecrets(cfg.Path)
	}
	return &Store{cfg: cfg, keys: keys}
}

// DefaultSecrets is the keyring of a store on the database file path
// that names none: the key file "secrets.key" beside it, created with a
// fresh key when missing.
func DefaultSecrets(path string) *secretbox.Keyring {
	return secretbox.File(filepath.Join(filepath.Dir(path), "secrets.key"), true)
}

func (s *Store) dsn(write bool) string {
	v := fmt.Sprintf("file:%s?_busy_timeout=%d", s.cfg.Path, s.cfg.BusyTimeout.Milliseconds())
	if write {
		// journal_mode=WAL is persistent in the file; synchronous=NORMAL
		// is durable across process crashes in WAL mode and only risks
		// the last commits on power loss, the usual trade for a
		// single-node default.
		//
		// temp_store=MEMORY keeps the statement journal (savepoints, see
		// writer.go) in memory; on disk, copying every page an op first
		// touches into a temporary file cost as much as the WAL writes.
		// A 64 MiB page cache holds the pages a batch dirties: with the
		// default 2 MiB, a batch of first-contact diffs spilled pages to
		// the WAL before its commit.
		// A checkpoint every 10000 pages (40 MiB of WAL) rather than
		// 1000 writes the pages every batch touches (index right edges,
		// interior pages) back to the database once per many batches,
		// and fsyncs ten times less often.
		return v + "&_txlock=immediate&_journal_mode=WAL&_synchronous=NORMAL" +
			"&_pragma=temp_store(MEMORY)&_pragma=wal_autocheckpoint(10000)&_pragma=cache_size(-65536)"
	}
	return v + "&_query_only=1"
}

// Start loads the secrets keyring, opens the database (readable by its
// owner only), switches it to WAL, applies migrations, seals passwords
// stored in clear or under a retired key, and starts the writer goroutine.
func (s *Store) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st != nil {
		return nil
	}
	st, err := s.open(ctx)
	if err != nil {
		return fmt.Errorf("start sqlite store: %w", err)
	}
	ready := make(chan error, 1)
	go st.w.run(ready)
	if err := <-ready; err != nil {
		<-st.w.exited
		return fmt.Errorf("start sqlite store: prepare writer: %w", errors.Join(err, st.release()))
	}
	s.st = st
	return nil
}

func (s *Store) open(ctx context.Context) (_ *state, err error) {
	if s.cfg.Path == "" || strings.ContainsAny(s.cfg.Path, "?#") {
		return nil, fmt.Errorf("path %q: %w", s.cfg.Path, store.ErrInvalidArgument)
	}
	if dir := filepath.Dir(s.cfg.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create directory: %w", err)
		}
	}
	if _, err := s.keys.Load(); err != nil {
		return nil, err
	}
	if err := privateFiles(s.cfg.Path); err != nil {
		return nil, fmt.Errorf("create database file: %w", err)
	}
	indexed, err := newIndexSet(s.cfg.IndexedParams)
	if err != nil {
		return nil, err
	}
	st := &state{indexed: indexed}
	defer func() {
		if err != nil {
			err = errors.Join(err, st.release())
		}
	}()
	if st.wdb, err = telemetry.OpenSQL("sqlite", s.dsn(true), s.cfg.Metrics); err != nil {
		return nil, fmt.Errorf("open writer: %w", err)
	}
	st.wdb.SetMaxOpenConns(1)
	st.wdb.SetMaxIdleConns(1)
	st.wdb.SetConnMaxLifetime(0)
	st.wdb.SetConnMaxIdleTime(0)
	if err := migrate(ctx, st.wdb); err != nil {
		return nil, err
	}
	if _, err := reseal(ctx, st.wdb, s.keys); err != nil {
		return nil, err
	}
	if err := syncTrees(ctx, st.wdb, &indexed); err != nil {
		return nil, err
	}
	w := &writer{
		queue:    make(chan *op, 4*s.cfg.MaxBatch),
		maxBatch: s.cfg.MaxBatch,
		exited:   make(chan struct{}),
		updates:  make(map[uint64]rawStmt),
		sessions: newSessionCache(s.cfg.SessionCache),
		indexed:  indexed,
		touched:  make(map[sessionKey]struct{}),
		paths:    make(map[string]string),

		deltaEntries: maxDeltaEntries,
	}
	st.sessions = w.sessions
	if w.conn, err = st.wdb.Conn(ctx); err != nil {
		return nil, fmt.Errorf("open writer: %w", err)
	}
	st.w = w
	if st.r, err = telemetry.OpenSQL("sqlite", s.dsn(false), s.cfg.Metrics); err != nil {
		return nil, fmt.Errorf("open readers: %w", err)
	}
	st.r.SetMaxOpenConns(s.cfg.ReadConns)
	st.r.SetMaxIdleConns(s.cfg.ReadConns)
	if err := st.rs.prepare(ctx, st.r); err != nil {
		return nil, fmt.Errorf("prepare readers: %w", err)
	}
	return st, nil
}

// release closes what open opened; the writer goroutine must not be
// running.
func (st *state) release() error {
	var errs []error
	st.rs.close()
	if st.w != nil && st.w.conn != nil {
		errs = append(errs, st.w.closeErr, st.w.conn.Close())
		// optimize refreshes the planner's statistics where they
		// drifted; it is cheap and SQLite recommends running it before
		// closing.
		_, _ = st.wdb.Exec(`PRAGMA optimize`)
	}
	if st.wdb != nil {
		errs = append(errs, st.wdb.Close())
	}
	if st.r != nil {
		errs = append(errs, st.r.Close())
	}
	return errors.Join(errs...)
}

func migrate(ctx context.Context, db *sql.DB) error {
	return sqlmigrate.Apply(ctx, db, migrations)
}

// Close applies the writes already queued, stops the writer and closes
// both pools.
func (s *Store) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	if st == nil {
		return nil
	}
	s.st = nil
	close(st.w.queue)
	<-st.w.exited
	if err := st.release(); err != nil {
		return fmt.Errorf("close sqlite store: %w", err)
	}
	return nil
}

var errNotStarted = errors.New("sqlite store not started")

func (s *Store) state() (*state, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.st == nil {
		return nil, errNotStarted
	}
	return s.st, nil
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

func fromMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// ApplySessionDiff implements store.Store. The diff is validated and
// planned in the caller's goroutine; the writer only runs statements.
func (s *Store) ApplySessionDiff(ctx context.Context, tenant, id string, d store.Diff, fencingToken uint64) (bool, error) {
	p, err := storekit.PlanDiff(tenant, id, d, fencingToken)
	if err != nil {
		return false, fmt.Errorf("apply diff to %s/%s: %w", tenant, id, err)
	}
	if err := p.SealPlan(s.keys, tenant, id); err != nil {
		return false, fmt.Errorf("apply diff to %s/%s: %w", tenant, id, err)
	}
	op := &diffOp{tenant: tenant, id: id, plan: p}
	if c := p.SealedConnectionRequest; c != nil {
		op.crPass = sealedText(c)
	}
	if c := p.SealedCPE; c != nil {
		op.cpePass = sealedText(c)
	}
	if p.Inform != nil {
		if op.events, err = eventsJSON(p.Inform.Events); err != nil {
			return false, fmt.Errorf("apply diff to %s/%s: %w", tenant, id, err)
		}
	}
	var created bool
	weight := len(p.Updates) + len(p.Deletes) + len(p.DeleteEntries)
	err = s.submitWeighted(ctx, weight, func(w *writer) (err error) {
		created, err = w.applyDiff(op)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("apply diff to %s/%s: %w", tenant, id, err)
	}
	return created, nil
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
	now := storekit.Time(s.cfg.Now()).UnixMilli()
	return s.submit(ctx, func(w *writer) error {
		if add {
			return w.changeTagsOp(tenant, id, now, tags, nil)
		}
		return w.changeTagsOp(tenant, id, now, nil, tags)
	})
}

// SetConnectionRequestCredentials implements store.Store.
func (s *Store) SetConnectionRequestCredentials(ctx context.Context, tenant, id string, c store.Credentials, pending bool) error {
	err := storekit.Key(tenant, id)
	if err == nil {
		err = storekit.CheckCredentials(c)
	}
	field := storekit.FieldConnectionRequest
	if pending {
		field = storekit.FieldConnectionRequestPending
	}
	var sealed *storekit.Sealed
	if err == nil {
		sealed, err = storekit.Seal(s.keys, tenant, id, field, &c)
	}
	if err == nil {
		now := storekit.Time(s.cfg.Now()).UnixMilli()
		err = s.submit(ctx, func(w *writer) error { return w.setCRCredentials(tenant, id, now, sealed, pending) })
	}
	if err != nil {
		return fmt.Errorf("set connection-request credentials of %s/%s: %w", tenant, id, err)
	}
	return nil
}

// SetCPECredentials implements store.Store.
func (s *Store) SetCPECredentials(ctx context.Context, tenant, id string, c store.Credentials) error {
	err := storekit.Key(tenant, id)
	if err == nil {
		err = storekit.CheckCredentials(c)
	}
	var sealed *storekit.Sealed
	if err == nil {
		sealed, err = storekit.Seal(s.keys, tenant, id, storekit.FieldCPE, &c)
	}
	if err == nil {
		now := storekit.Time(s.cfg.Now()).UnixMilli()
		err = s.submit(ctx, func(w *writer) error { return w.setCPECredentials(tenant, id, now, sealed) })
	}
	if err != nil {
		return fmt.Errorf("set CPE credentials of %s/%s: %w", tenant, id, err)
	}
	return nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, tenant, id string) error {
	err := storekit.Key(tenant, id)
	if err == nil {
		err = s.submit(ctx, func(w *writer) error { return w.deleteDevice(tenant, id) })
	}
	if err != nil {
		return fmt.Errorf("delete device %s/%s: %w", tenant, id, err)
	}
	return nil
}
