package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/fleetacs/fleetacs/services/tasks/store"
)

// Group commit.
//
// A task costs about four writes (Create, the Update storing its queue
// sequence, the claim, the report), each one row, arriving from many RPC
// handlers at once. Committed one by one, every write pays BEGIN, COMMIT
// and a WAL append of the pages it dirtied (the table's leaf and the leaves
// of five indexes); most of that is the same pages again for the next
// write. So every write is an op queued to one writer goroutine, which owns
// the only write connection and applies all the ops waiting, up to
// Config.MaxBatch, in one transaction: the shared pages are written once
// per batch.
//
// Each op gets its own result. Create and Update decide their refusals
// (an id taken, a version conflict, a missing record) by statements that
// changed nothing, so a refused op returns its error wrapped by refuse and
// the batch goes on. Any other failure may have left part of the op
// behind, so the writer rolls the batch back and applies it again with
// each op inside its own SAVEPOINT, where a failing op is rolled back alone
// and only its caller sees the error. Savepoints are not the normal path:
// they cost a statement journal per op.
//
// A caller gets its result after the COMMIT, so success still means
// committed, with the durability of synchronous=NORMAL (sqlitestore.go).
// A caller whose context ends while its op waits in the queue returns
// ctx.Err() and the op is never applied; once the writer has taken the op
// it lands whole or not at all, and the caller, returning ctx.Err(),
// cannot tell which (as with any database over a network).
//
// The queue is bounded (queueFactor batches): when the writer falls behind,
// callers wait to enqueue, their contexts respected, instead of piling up.
//
// Measured with BenchmarkCreate and BenchmarkUpdate (32 callers, 2 cores
// shared with other work at a load average of 8.5 to 10, -benchtime 10000x,
// five runs each, old and new interleaved): one transaction per write took
// 282-438 µs per Create and 100-202 µs per Update; group commit takes
// 64-106 µs and 25-43 µs, four to five times less, about 20,000 writes a
// second in the mix a task makes (one Create, three Updates). What is left
// is mostly SQLite's own: appending the WAL frames and the checkpoints that
// run at the commits.

// Op states; an op moves from opQueued to exactly one of the others.
const (
	opQueued int32 = iota
	opTaken
	opAbandoned
)

// op is one write waiting for the writer goroutine.
type op struct {
	// ctx is the caller's: the writer skips the op if it ended while
	// queued, and never passes it to a statement.
	ctx context.Context
	// run applies the write inside the batch's transaction; it may run
	// twice (see transactIsolated), so it only sets results it owns.
	run   func(w *writer) error
	state atomic.Int32
	// err is the op's result, written by the writer before done closes.
	err  error
	done chan struct{}
}

// queueFactor is the queue's capacity in batches.
const queueFactor = 4

// writer owns the write connection; only its goroutine touches conn, the
// statements and batch.
type writer struct {
	conn     *sql.Conn
	queue    chan *op
	maxBatch int
	// stop closes when Close begins: the writer finishes the batch it is
	// applying and takes no more.
	stop   chan struct{}
	exited chan struct{}

	insert, update, exists, byKey, deleteEnded *sql.Stmt
	begin, commit, rollback                    *sql.Stmt
	savepoint, rollbackTo, release             *sql.Stmt

	batch, live []*op
	// batches and isolated count the batches applied and those applied
	// again op by op after a failure; tests read them.
	batches, isolated atomic.Int64
}

// newWriter prepares the write statements on conn, which it then owns.
func newWriter(ctx context.Context, conn *sql.Conn, maxBatch int) (_ *writer, err error) {
	w := &writer{conn: conn, queue: make(chan *op, queueFactor*maxBatch), maxBatch: maxBatch,
		stop: make(chan struct{}), exited: make(chan struct{})}
	defer func() {
		if err != nil {
			err = errors.Join(err, w.closeStmts())
		}
	}()
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&w.insert, `INSERT INTO tasks (` + columns + `) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING`},
		{&w.update, `UPDATE tasks SET state = ?, kind = ?, update_time = ?, due_time = ?, queue_seq = ?,
			version = ?, body = ?, secret = ? WHERE tenant = ? AND id = ? AND version = ?`},
		// exists and byKey run after a write that changed nothing, to see
		// what the write saw (the batch's own earlier writes included).
		{&w.exists, `SELECT 1 FROM tasks WHERE tenant = ? AND id = ?`},
		{&w.byKey, `SELECT ` + columns + ` FROM tasks WHERE tenant = ? AND idempotency_key = ? AND idempotency_key <> ''`},
		{&w.deleteEnded, `DELETE FROM tasks WHERE (tenant, id) IN
			(SELECT tenant, id FROM tasks WHERE due_time IS NULL AND update_time < ? LIMIT ?)`},
		// IMMEDIATE takes the write lock at once, so that a batch never
		// fails halfway to upgrade a read lock.
		{&w.begin, `BEGIN IMMEDIATE`},
		{&w.commit, `COMMIT`},
		{&w.rollback, `ROLLBACK`},
		{&w.savepoint, `SAVEPOINT op`},
		{&w.rollbackTo, `ROLLBACK TO op`},
		{&w.release, `RELEASE op`},
	} {
		if *p.dst, err = conn.PrepareContext(ctx, p.q); err != nil {
			return nil, fmt.Errorf("prepare %q: %w", strings.Join(strings.Fields(p.q), " "), err)
		}
	}
	return w, nil
}

func (w *writer) closeStmts() error {
	var errs []error
	for _, p := range []*sql.Stmt{w.insert, w.update, w.exists, w.byKey, w.deleteEnded,
		w.begin, w.commit, w.rollback, w.savepoint, w.rollbackTo, w.release} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(errs...)
}

// bg is the context of the writer's statements. It has no Done: a batch is
// never interrupted halfway for the sake of one caller, and the driver
// starts no watcher goroutine per statement for it.
var bg = context.Background()

// exec runs one of the writer's statements.
func (w *writer) exec(st *sql.Stmt, args ...any) (sql.Result, error) {
	return st.ExecContext(bg, args...)
}

// run is the writer goroutine: it applies batches until stop closes.
func (w *writer) run() {
	defer close(w.exited)
	for {
		// Stop wins over a waiting op: after Close began, nothing more is
		// applied.
		select {
		case <-w.stop:
			return
		default:
		}
		select {
		case <-w.stop:
			return
		case o := <-w.queue:
			w.batch = append(w.batch[:0], o)
		}
		if len(w.queue) == 0 {
			// Callers woken by the previous commit are runnable but may
			// not have enqueued yet (with one P they cannot have: this
			// goroutine ran first). Yielding once lets them, so the batch
			// fills instead of committing one op at a time.
			runtime.Gosched()
		}
	fill:
		for len(w.batch) < w.maxBatch {
			select {
			case o := <-w.queue:
				w.batch = append(w.batch, o)
			default:
				break fill
			}
		}
		w.apply(w.batch)
		clear(w.batch)
	}
}

// apply runs one batch and delivers every op's result after the commit.
func (w *writer) apply(batch []*op) {
	w.batches.Add(1)
	live := w.live[:0]
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil || !o.state.CompareAndSwap(opQueued, opTaken) {
			// The caller gave up, or is about to, while the op was
			// queued: it is never applied, and a caller that sees done
			// before its context returns the context's error.
			o.state.Store(opAbandoned)
			o.err = o.ctx.Err()
			close(o.done)
			continue
		}
		live = append(live, o)
	}
	w.live = live
	if len(live) > 0 {
		if err := w.transact(live); err != nil {
			for _, o := range live {
				o.err = err
			}
		}
		for _, o := range live {
			close(o.done)
		}
	}
	clear(w.live)
}

// transact applies ops in one transaction. Ops that fail on their own carry
// their error in op.err; the returned error is the transaction's, and means
// that none of the ops was applied.
func (w *writer) transact(ops []*op) error {
	if _, err := w.exec(w.begin); err != nil {
		return fmt.Errorf("begin write transaction: %w", err)
	}
	for _, o := range ops {
		err := o.run(w)
		var r refusal
		switch {
		case err == nil:
			o.err = nil
			continue
		case errors.As(err, &r):
			// Refused without writing anything: the batch goes on.
			o.err = r.err
			continue
		case len(ops) == 1:
			// Alone in the transaction, the op's failure rolls back
			// everything there is.
			w.abort()
			o.err = err
			return nil
		}
		// The op may have written part of its changes: start over with a
		// savepoint around each op.
		w.abort()
		w.isolated.Add(1)
		return w.transactIsolated(ops)
	}
	return w.end()
}

// transactIsolated applies ops in one transaction, each inside its own
// savepoint so that a failing op is rolled back alone.
func (w *writer) transactIsolated(ops []*op) error {
	if _, err := w.exec(w.begin); err != nil {
		return fmt.Errorf("begin write transaction: %w", err)
	}
	for _, o := range ops {
		if _, err := w.exec(w.savepoint); err != nil {
			w.abort()
			return fmt.Errorf("open savepoint: %w", err)
		}
		if o.err = o.run(w); o.err != nil {
			var r refusal
			if errors.As(o.err, &r) {
				o.err = r.err
			}
			// If SQLite rolled back the whole transaction (an I/O
			// error, a full disk), the savepoint is gone and so is the
			// batch.
			if _, err := w.exec(w.rollbackTo); err != nil {
				w.abort()
				return fmt.Errorf("roll back failed write (%w): %w", o.err, err)
			}
		}
		if _, err := w.exec(w.release); err != nil {
			w.abort()
			return fmt.Errorf("release savepoint: %w", err)
		}
	}
	return w.end()
}

// end commits the batch's transaction.
func (w *writer) end() error {
	if _, err := w.exec(w.commit); err != nil {
		w.abort()
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// abort ends the transaction after a failure. Its own error is dropped: the
// failure that led here is what callers need, and a transaction SQLite
// already rolled back makes ROLLBACK fail harmlessly.
func (w *writer) abort() {
	_, _ = w.exec(w.rollback)
}

// refusal is an op's failure decided without writing anything; see refuse.
type refusal struct{ err error }

func (r refusal) Error() string { return r.err.Error() }
func (r refusal) Unwrap() error { return r.err }

// refuse marks err as a refusal: the op wrote nothing, so the batch needs
// no rollback. Only an op that has changed nothing may return it.
func refuse(err error) error { return refusal{err: err} }

// errClosed is what ops still queued when Close stops the writer return.
var errClosed = fmt.Errorf("sqlite task store closed: %w", store.ErrUnavailable)

// submit queues run for the writer and waits for its result.
func (s *Store) submit(ctx context.Context, run func(w *writer) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &op{ctx: ctx, run: run, done: make(chan struct{})}
	// The read lock keeps Close from draining the queue under the send.
	s.mu.RLock()
	st := s.st
	if st == nil {
		s.mu.RUnlock()
		return errNotStarted
	}
	select {
	case st.w.queue <- o:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	select {
	case <-o.done:
		return o.err
	case <-ctx.Done():
		// Either the op was still queued and is now taken back, or the
		// writer has begun it and it lands whole or not at all; in both
		// cases the caller stops waiting.
		o.state.CompareAndSwap(opQueued, opAbandoned)
		return ctx.Err()
	}
}

// shutdown stops the writer after the batch it is applying, fails the ops
// still queued with errClosed, and closes the statements and connection.
// No submit may be sending (Close holds s.mu).
func (w *writer) shutdown() error {
	close(w.stop)
	<-w.exited
	for {
		select {
		case o := <-w.queue:
			o.state.CompareAndSwap(opQueued, opAbandoned)
			o.err = errClosed
			close(o.done)
			continue
		default:
		}
		break
	}
	// optimize refreshes the planner's statistics where they drifted;
	// SQLite recommends it before closing.
	_, _ = w.conn.ExecContext(bg, `PRAGMA optimize`)
	return errors.Join(w.closeStmts(), w.conn.Close())
}
