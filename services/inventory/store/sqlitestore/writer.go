package sqlitestore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"

	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
)

// Group commit.
//
// SQLite has one writer at a time, and with synchronous=NORMAL in WAL mode a
// commit costs a WAL append of every page the transaction dirtied plus the
// bookkeeping of BEGIN and COMMIT. Session diffs are small and arrive from
// many sessions at once, so the store applies them the way a database's log
// writer does: every write is an op queued to one writer goroutine, which
// owns the only write connection and applies all ops waiting (up to
// Config.MaxBatch) in one transaction. Pages touched by several diffs (the
// right edge of the last_inform index, hot interior pages) are then written
// once per batch instead of once per diff.
//
// An op that fails must not take the others of its batch down with it, and
// must leave nothing behind. Most failures are refusals decided before the
// op writes anything (a stale fencing token, a missing device): the op
// returns them wrapped by refuse, and the batch goes on. Any other failure
// may have left part of the op written, so the writer rolls the batch back
// and applies it again with each op inside its own SAVEPOINT, where a
// failing op is rolled back alone and only its caller sees the error.
// Savepoints are not the normal path because SQLite keeps a statement
// journal for them: a copy of every page an op first touches, allocated
// and freed page by page, which cost more than the op's own writes.
//
// Every caller gets its result after the COMMIT, so a successful return
// still means "committed" with the same durability as before.
//
// Ops run in queue order, except large ones. A diff of tens of thousands
// of entries (a discovery of a big tree, an oversized Inform) keeps the
// one writer busy for milliseconds; twenty of them in one batch would hold
// every small diff queued behind them for the whole batch. So a batch
// takes at most one op heavier than largeOpWeight: the others wait, in
// their order, for the following batches, while the small ops that
// arrive meanwhile go into every batch. A caller's own diffs still apply
// in the order it made them, since it waits for each result; two callers
// writing one device concurrently are ordered by fencing tokens, not by
// the queue.
//
// Op states; an op moves from opQueued to exactly one of the others.
const (
	opQueued int32 = iota
	opTaken
	opAbandoned
)

// op is one write waiting for the writer goroutine.
type op struct {
	ctx context.Context
	// run applies the write on the writer's connection inside the batch's
	// transaction; its error rolls back what it did and nothing else.
	run   func(w *writer) error
	state atomic.Int32
	// weight is the op's size in entries (see largeOpWeight).
	weight int
	// onCommit, set by run through writer.afterCommit, runs once the
	// transaction that applied the op committed.
	onCommit func()
	// err is the op's result, written by the writer before done closes.
	err  error
	done chan struct{}
}

// writer owns the write connection; only its goroutine touches it and the
// fields below.
type writer struct {
	conn     *sql.Conn
	queue    chan *op
	maxBatch int
	exited   chan struct{}
	// closeErr is what closing the statements reported, read after exited.
	closeErr error

	// rc is valid while run is inside conn.Raw.
	rc    rawConn
	stmts writeStmts
	// updates caches the device UPDATE statements by the set of columns
	// they write (see deviceUpdate); a session writes the same few shapes
	// again and again.
	updates map[uint64]rawStmt
	// update is updateDevice's, reused.
	update deviceUpdate
	// paths are internPaths's.
	paths map[string]string
	// merges holds the parameter merge statements by row count.
	merges [maxMergeRows + 1]rawStmt
	// indexed are the paths whose entries have rows in parameters.
	indexed indexSet
	// treeBuf, treeScratch and indexedUpdates are reused by writeTree
	// and writeIndex.
	treeBuf, treeScratch []byte
	// deltaBuf and foldBuf are writeTree's: the new delta, and the tree
	// with the delta folded in.
	deltaBuf, foldBuf []byte
	// deltaEntries is maxDeltaEntries as the writer started.
	deltaEntries   int
	indexedUpdates []storekit.Update
	// confirm, rest and pathBuf are reused by splitConfirmed and
	// joinPaths.
	confirm, rest      []storekit.Update
	pathBuf, digestBuf []byte

	// sessions receives the session state of every committed diff.
	sessions *sessionCache
	// current is the op running, for afterCommit.
	current *op
	// touched holds the devices the transaction has written so far: their
	// entries in sessions are not yet what the database holds.
	touched map[sessionKey]struct{}

	// isolated counts the batches applied again op by op after a failure
	// (see transactIsolated).
	isolated atomic.Int64

	batch, live []*op
	// batches counts the batches applied.
	batches int
	// large are the heavy ops waiting for a batch of their own, oldest
	// first.
	large []*op
	args  []any
	row   []driver.Value
	done  []bool
}

// maxCachedUpdates bounds the update statement cache; shapes beyond it are
// prepared for one use.
const maxCachedUpdates = 128

// run is the writer goroutine. It prepares the statements, reports the
// outcome on ready, and then applies batches until the queue is closed.
func (w *writer) run(ready chan<- error) {
	defer close(w.exited)
	err := w.conn.Raw(func(dc any) error {
		pc, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return fmt.Errorf("driver connection %T cannot prepare with a context", dc)
		}
		// Statements run with a context that has no Done: a batch is
		// never interrupted halfway for the sake of one caller, and the
		// driver starts a watcher goroutine per statement for a context
		// that can end.
		w.rc = rawConn{ctx: context.Background(), c: pc}
		if err := w.stmts.prepare(&w.rc); err != nil {
			return errors.Join(err, w.rc.close())
		}
		ready <- nil
		ready = nil
		w.loop()
		return w.rc.close()
	})
	if ready != nil {
		ready <- err
		return
	}
	w.closeErr = err
}

// largeOpWeight is the weight above which an op counts as large: at most
// one per batch.
const largeOpWeight = 2000

func (w *writer) loop() {
	open := true
	for open || len(w.large) > 0 {
		w.batch = w.batch[:0]
		heavy := false
		if len(w.large) > 0 {
			w.batch = append(w.batch, w.large[0])
			w.large = slices.Delete(w.large, 0, 1)
			heavy = true
		} else {
			o, ok := <-w.queue
			if !ok {
				return
			}
			w.batch = append(w.batch, o)
			heavy = o.weight > largeOpWeight
		}
		if open && len(w.queue) == 0 {
			// Callers woken by the previous commit are runnable but may
			// not have enqueued yet (with one P they cannot have: this
			// goroutine ran first). Yielding once lets them, so the batch
			// fills instead of committing one op at a time.
			runtime.Gosched()
		}
	fill:
		for open && len(w.batch) < w.maxBatch {
			select {
			case o, ok := <-w.queue:
				switch {
				case !ok:
					open = false
					break fill
				case o.weight <= largeOpWeight:
					w.batch = append(w.batch, o)
				case !heavy:
					w.batch = append(w.batch, o)
					heavy = true
				default:
					w.large = append(w.large, o)
				}
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
	w.batches++
	live := w.live[:0]
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil || !o.state.CompareAndSwap(opQueued, opTaken) {
			// The caller gave up before the op began: it is never applied.
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
				if o.err == nil {
					o.err = err
				}
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
	if err := w.begin(); err != nil {
		return err
	}
	for _, o := range ops {
		err := w.runOp(o)
		var r refusal
		switch {
		case err == nil:
			o.err = nil
			continue
		case errors.As(err, &r):
			// Refused before writing anything: the batch goes on.
			o.err = r.err
			continue
		case len(ops) == 1:
			// Alone in the transaction, an op's failure rolls back
			// everything there is.
			o.err = err
			w.rollback()
			return nil
		}
		// The op may have written part of its changes: start over with a
		// savepoint around each op.
		w.rollback()
		w.isolated.Add(1)
		return w.transactIsolated(ops)
	}
	return w.commit(ops)
}

// runOp runs o's write, forgetting what an earlier run of it left.
func (w *writer) runOp(o *op) error {
	o.onCommit, w.current = nil, o
	defer func() { w.current = nil }()
	return o.run(w)
}

// afterCommit makes f run once the op running now has committed; an op
// that fails or whose transaction fails never runs it.
func (w *writer) afterCommit(f func()) { w.current.onCommit = f }

// transactIsolated applies ops in one transaction, each inside its own
// savepoint so that a failing op is rolled back alone.
func (w *writer) transactIsolated(ops []*op) error {
	if err := w.begin(); err != nil {
		return err
	}
	st, rc := &w.stmts, &w.rc
	for _, o := range ops {
		if _, err := rc.exec(st.savepoint); err != nil {
			w.rollback()
			return fmt.Errorf("open savepoint: %w", err)
		}
		if o.err = w.runOp(o); o.err != nil {
			var r refusal
			if errors.As(o.err, &r) {
				o.err = r.err
			}
			// If SQLite rolled back the whole transaction (an I/O
			// error, a full disk), the savepoint is gone and so is
			// the batch.
			if _, err := rc.exec(st.rollbackTo); err != nil {
				w.rollback()
				return fmt.Errorf("roll back failed write (%w): %w", o.err, err)
			}
		}
		if _, err := rc.exec(st.release); err != nil {
			w.rollback()
			return fmt.Errorf("release savepoint: %w", err)
		}
	}
	return w.commit(ops)
}

// begin opens the batch's write transaction.
func (w *writer) begin() error {
	if _, err := w.rc.exec(w.stmts.begin); err != nil {
		return fmt.Errorf("begin write transaction: %w", err)
	}
	clear(w.touched)
	return nil
}

// commit commits the transaction of ops and runs their commit hooks.
func (w *writer) commit(ops []*op) error {
	if _, err := w.rc.exec(w.stmts.commit); err != nil {
		w.rollback()
		return fmt.Errorf("commit: %w", err)
	}
	for _, o := range ops {
		if o.err == nil && o.onCommit != nil {
			o.onCommit()
		}
		o.onCommit = nil
	}
	return nil
}

// refusal is an op's failure decided before the op wrote anything; see
// refuse.
type refusal struct{ err error }

func (r refusal) Error() string { return r.err.Error() }
func (r refusal) Unwrap() error { return r.err }

// refuse marks err as a refusal: the op wrote nothing, so the batch needs
// no rollback. Only an op that has not written yet may return it.
func refuse(err error) error { return refusal{err: err} }

// rollback ends the transaction after a failure. Its own error is dropped:
// the failure that led here is what callers need, and a transaction SQLite
// already rolled back makes ROLLBACK fail harmlessly.
func (w *writer) rollback() {
	_, _ = w.rc.exec(w.stmts.rollback)
}

// submit queues run for the writer and waits for its result.
func (s *Store) submit(ctx context.Context, run func(w *writer) error) error {
	return s.submitWeighted(ctx, 1, run)
}

// submitWeighted is submit of an op of weight entries (see largeOpWeight).
func (s *Store) submitWeighted(ctx context.Context, weight int, run func(w *writer) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &op{ctx: ctx, run: run, weight: weight, done: make(chan struct{})}
	// The read lock keeps Close from closing the queue under the send.
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
