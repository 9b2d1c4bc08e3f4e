package sqlitestore

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/tasks/store"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func rec(id string) store.Record {
	return store.Record{Tenant: "default", ID: id, DeviceID: "dev", State: 1, Kind: "reboot",
		CreateTime: t0, UpdateTime: t0, DueTime: t0.Add(time.Hour), Version: 1, Body: []byte("b")}
}

func startStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "tasks.db")
	}
	s := New(cfg)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// blockWriter makes the writer apply an op that waits until the returned
// release is called (then runs then, if not nil), so that the ops queued
// meanwhile go into the following batches. done delivers the op's result.
func blockWriter(t *testing.T, s *Store, then func(w *writer) error) (release func(), done <-chan error) {
	t.Helper()
	started, unblock, res := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		res <- s.submit(context.Background(), func(w *writer) error {
			close(started)
			<-unblock
			if then != nil {
				return then(w)
			}
			return nil
		})
	}()
	<-started
	return func() { close(unblock) }, res
}

// queued is one op submitted while the writer is blocked.
type queued struct {
	name string
	res  chan error
}

// enqueue starts fn in its own goroutine and waits until its op is in the
// queue, so that ops queue in the order enqueue is called.
func enqueue(t *testing.T, s *Store, name string, fn func() error) queued {
	t.Helper()
	n := len(s.st.w.queue)
	q := queued{name: name, res: make(chan error, 1)}
	go func() { q.res <- fn() }()
	waitFor(t, name+" to queue", func() bool { return len(s.st.w.queue) > n })
	return q
}

func mustGet(t *testing.T, s *Store, id string) store.Record {
	t.Helper()
	r, err := s.Get(t.Context(), "default", id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return r
}

func next(r store.Record) store.Record {
	r.Version++
	r.UpdateTime = r.UpdateTime.Add(time.Second)
	r.State = 2
	return r
}

// TestBatchOpsFailAlone queues ops that succeed beside ops that are refused
// and checks that all of them ran in one batch, each with its own result.
func TestBatchOpsFailAlone(t *testing.T) {
	s := startStore(t, Config{})
	ctx := t.Context()
	for _, id := range []string{"a", "b"} {
		if _, _, err := s.Create(ctx, rec(id)); err != nil {
			t.Fatal(err)
		}
	}
	w := s.st.w
	release, blocked := blockWriter(t, s, nil)
	before := w.batches.Load() // the blocking op's batch included

	a, b := rec("a"), rec("b")
	keyed1, keyed2 := rec("k1"), rec("k2")
	keyed1.IdempotencyKey, keyed2.IdempotencyKey = "key", "key"
	var dup store.Record
	var existing bool
	ops := []struct {
		q    queued
		want error // nil: success; errAny: any error that is no sentinel
	}{
		{enqueue(t, s, "create c", func() error { _, _, err := s.Create(ctx, rec("c")); return err }), nil},
		{enqueue(t, s, "create a again", func() error { _, _, err := s.Create(ctx, rec("a")); return err }), errAny},
		{enqueue(t, s, "update a", func() error { return s.Update(ctx, next(a), 1) }), nil},
		{enqueue(t, s, "update a again from 1", func() error { return s.Update(ctx, next(a), 1) }), store.ErrVersionConflict},
		{enqueue(t, s, "update b from 5", func() error { b.Version = 6; return s.Update(ctx, b, 5) }), store.ErrVersionConflict},
		{enqueue(t, s, "update missing", func() error { return s.Update(ctx, next(rec("missing")), 1) }), store.ErrNotFound},
		{enqueue(t, s, "create k1", func() error { _, _, err := s.Create(ctx, keyed1); return err }), nil},
		{enqueue(t, s, "create k2, same key", func() error {
			var err error
			dup, existing, err = s.Create(ctx, keyed2)
			return err
		}), nil},
		{enqueue(t, s, "update c", func() error { return s.Update(ctx, next(rec("c")), 1) }), nil},
	}
	release()
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	for _, o := range ops {
		err := <-o.q.res
		switch {
		case o.want == nil && err != nil:
			t.Errorf("%s: %v", o.q.name, err)
		case o.want == errAny && (err == nil || errors.Is(err, store.ErrNotFound) ||
			errors.Is(err, store.ErrVersionConflict) || errors.Is(err, store.ErrUnavailable)):
			t.Errorf("%s: %v, want an error that is none of the sentinels", o.q.name, err)
		case o.want != nil && o.want != errAny && !errors.Is(err, o.want):
			t.Errorf("%s: %v, want %v", o.q.name, err, o.want)
		}
	}
	if got := w.batches.Load() - before; got != 1 {
		t.Errorf("%d batches after the blocking one, want 1 holding every op", got)
	}
	if n := w.isolated.Load(); n != 0 {
		t.Errorf("%d batches applied op by op; refusals need no rollback", n)
	}
	if r := mustGet(t, s, "a"); r.Version != 2 || r.State != 2 {
		t.Errorf("a is version %d state %d, want 2 and 2", r.Version, r.State)
	}
	if r := mustGet(t, s, "b"); r.Version != 1 {
		t.Errorf("b is version %d, want 1", r.Version)
	}
	if r := mustGet(t, s, "c"); r.Version != 2 {
		t.Errorf("c is version %d, want 2 (created and updated in one batch)", r.Version)
	}
	if !existing || dup.ID != "k1" {
		t.Errorf("second create with one key: %s existing %v, want k1 existing", dup.ID, existing)
	}
	if _, err := s.Get(ctx, "default", "k2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("k2: %v, want not found", err)
	}
}

var errAny = errors.New("any error")

// TestBatchFailureIsolated runs, in one batch, an op that writes and then
// fails: it is rolled back alone and the other ops are applied.
func TestBatchFailureIsolated(t *testing.T) {
	s := startStore(t, Config{})
	ctx := t.Context()
	if _, _, err := s.Create(ctx, rec("a")); err != nil {
		t.Fatal(err)
	}
	w := s.st.w
	release, blocked := blockWriter(t, s, nil)
	boom := errors.New("boom")
	q1 := enqueue(t, s, "create x", func() error { _, _, err := s.Create(ctx, rec("x")); return err })
	q2 := enqueue(t, s, "half-done write", func() error {
		return s.submit(ctx, func(w *writer) error {
			if _, _, err := w.create(rec("half")); err != nil {
				return err
			}
			return boom
		})
	})
	q3 := enqueue(t, s, "update a", func() error { return s.Update(ctx, next(rec("a")), 1) })
	q4 := enqueue(t, s, "conflicting update a", func() error { return s.Update(ctx, next(rec("a")), 1) })
	release()
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	for _, q := range []queued{q1, q3} {
		if err := <-q.res; err != nil {
			t.Errorf("%s: %v", q.name, err)
		}
	}
	if err := <-q2.res; !errors.Is(err, boom) {
		t.Errorf("half-done write: %v, want boom", err)
	}
	if err := <-q4.res; !errors.Is(err, store.ErrVersionConflict) {
		t.Errorf("conflicting update: %v, want a version conflict", err)
	}
	if n := w.isolated.Load(); n != 1 {
		t.Errorf("%d batches applied op by op, want 1", n)
	}
	if _, err := s.Get(ctx, "default", "half"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the failed op's write: %v, want not found (rolled back)", err)
	}
	mustGet(t, s, "x")
	if r := mustGet(t, s, "a"); r.Version != 2 {
		t.Errorf("a is version %d, want 2", r.Version)
	}
}

// TestCancelledWhileQueued: a caller whose context ends while its op waits
// returns the context's error and its op is never applied; the ops queued
// beside it are.
func TestCancelledWhileQueued(t *testing.T) {
	s := startStore(t, Config{})
	ctx := t.Context()
	for _, id := range []string{"a", "b"} {
		if _, _, err := s.Create(ctx, rec(id)); err != nil {
			t.Fatal(err)
		}
	}
	release, blocked := blockWriter(t, s, nil)
	cctx, cancel := context.WithCancel(ctx)
	qa := enqueue(t, s, "update a", func() error { return s.Update(cctx, next(rec("a")), 1) })
	qc := enqueue(t, s, "create c", func() error { _, _, err := s.Create(cctx, rec("c")); return err })
	qb := enqueue(t, s, "update b", func() error { return s.Update(ctx, next(rec("b")), 1) })
	cancel()
	// The cancelled callers return while the writer is still blocked.
	for _, q := range []queued{qa, qc} {
		if err := <-q.res; !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v, want context.Canceled", q.name, err)
		}
	}
	release()
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	if err := <-qb.res; err != nil {
		t.Fatalf("update b: %v", err)
	}
	if r := mustGet(t, s, "a"); r.Version != 1 {
		t.Errorf("a is version %d, want 1: a cancelled update was applied", r.Version)
	}
	if _, err := s.Get(ctx, "default", "c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("c: %v, want not found: a cancelled create was applied", err)
	}
	if r := mustGet(t, s, "b"); r.Version != 2 {
		t.Errorf("b is version %d, want 2", r.Version)
	}
}

// TestBoundedQueueAndBatch: with MaxBatch 2 the queue holds 8 ops; a caller
// finding it full waits, and gives up with its context; queued ops are
// applied two per batch.
func TestBoundedQueueAndBatch(t *testing.T) {
	s := startStore(t, Config{MaxBatch: 2})
	ctx := t.Context()
	w := s.st.w
	release, blocked := blockWriter(t, s, nil)
	before := w.batches.Load() // the blocking op's batch included
	var qs []queued
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		qs = append(qs, enqueue(t, s, "create "+id, func() error { _, _, err := s.Create(ctx, rec(id)); return err }))
	}
	if n := cap(w.queue); n != len(qs) {
		t.Fatalf("queue capacity %d, want %d", n, len(qs))
	}
	tctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, _, err := s.Create(tctx, rec("late")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("create into a full queue: %v, want the deadline's error", err)
	}
	release()
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if err := <-q.res; err != nil {
			t.Errorf("%s: %v", q.name, err)
		}
	}
	if got := w.batches.Load() - before; got != 4 {
		t.Errorf("%d batches after the blocking one, want 4 of 2 ops", got)
	}
	if _, err := s.Get(ctx, "default", "late"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("late: %v, want not found", err)
	}
}

// TestCloseWithQueuedOps: Close lets the batch being applied commit, fails
// the ops still queued with ErrUnavailable, and every write acknowledged
// before is in the file when it is opened again.
func TestCloseWithQueuedOps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	s := startStore(t, Config{Path: path})
	ctx := t.Context()
	if _, _, err := s.Create(ctx, rec("a")); err != nil {
		t.Fatal(err)
	}
	w := s.st.w
	release, blocked := blockWriter(t, s, func(w *writer) error {
		_, _, err := w.create(rec("inflight"))
		return err
	})
	q1 := enqueue(t, s, "create q1", func() error { _, _, err := s.Create(ctx, rec("q1")); return err })
	q2 := enqueue(t, s, "update a", func() error { return s.Update(ctx, next(rec("a")), 1) })
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	<-w.stop // Close has begun: the writer takes nothing more.
	release()
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := <-blocked; err != nil {
		t.Fatalf("the op being applied at Close: %v", err)
	}
	for _, q := range []queued{q1, q2} {
		if err := <-q.res; !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s queued at Close: %v, want ErrUnavailable", q.name, err)
		}
	}
	if _, _, err := s.Create(ctx, rec("after")); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("create after Close: %v, want ErrUnavailable", err)
	}

	s2 := startStore(t, Config{Path: path})
	if r := mustGet(t, s2, "a"); r.Version != 1 {
		t.Errorf("a is version %d, want 1", r.Version)
	}
	mustGet(t, s2, "inflight")
	if _, err := s2.Get(ctx, "default", "q1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("q1: %v, want not found", err)
	}
}
