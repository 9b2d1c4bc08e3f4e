package sqlitestore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// These tests drive the group commit deterministically: hold parks the
// writer goroutine inside an op, so that the writes submitted meanwhile wait
// in the queue, in a known order, and all go into the next batch together.

var batchBase = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func startStore(t *testing.T) *Store { return startStoreWith(t, Config{}) }

func startStoreWith(t *testing.T, cfg Config) *Store {
	t.Helper()
	cfg.Path = filepath.Join(t.TempDir(), "inventory.db")
	s := New(cfg)
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// hold blocks the writer inside an op of its own and returns once it is
// there. release lets the writer go on and returns after that op's batch
// committed.
func hold(t *testing.T, s *Store) (release func()) {
	t.Helper()
	entered, proceed, finished := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		finished <- s.submit(context.Background(), func(*writer) error {
			close(entered)
			<-proceed
			return nil
		})
	}()
	select {
	case <-entered:
	case <-time.After(time.Minute):
		t.Fatal("the writer never ran the holding op")
	}
	return func() {
		t.Helper()
		close(proceed)
		if err := <-finished; err != nil {
			t.Errorf("holding op: %v", err)
		}
	}
}

// waitQueued waits until n ops are queued for the writer.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for len(s.st.w.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d ops queued, want %d", len(s.st.w.queue), n)
		}
		runtime.Gosched()
	}
}

// result is the outcome of one ApplySessionDiff.
type result struct {
	created bool
	err     error
}

// enqueue calls ApplySessionDiff in a goroutine and waits until the diff is
// queued (behind queued others), so diffs enqueued one after the other are
// queued in that order.
func enqueue(t *testing.T, s *Store, ctx context.Context, queued int, tenant, id string, d store.Diff, token uint64) <-chan result {
	t.Helper()
	out := make(chan result, 1)
	go func() {
		created, err := s.ApplySessionDiff(ctx, tenant, id, d, token)
		out <- result{created, err}
	}()
	waitQueued(t, s, queued+1)
	return out
}

func testDevice(serial string) cwmp.DeviceID {
	return cwmp.DeviceID{Manufacturer: "Acme", OUI: "00AABB", ProductClass: "R", SerialNumber: serial}
}

// seed creates a device with token, a parameter and a tag.
func seed(t *testing.T, s *Store, tenant, serial string, token uint64) string {
	t.Helper()
	dev := testDevice(serial)
	d := store.Diff{
		Time: batchBase, SessionID: "seed", DeviceID: &dev,
		Inform: &store.Inform{Events: []cwmp.Event{{Code: "0 BOOTSTRAP"}}},
		Fields: store.Fields{SoftwareVersion: store.Ptr("1.0")},
		Params: []store.ParamUpdate{store.SetValue("Device.X", "orig", "xsd:string")}, AddTags: []string{"orig"},
	}
	id := store.MakeID(dev)
	if _, err := s.ApplySessionDiff(t.Context(), tenant, id, d, token); err != nil {
		t.Fatalf("seed %s: %v", id, err)
	}
	return id
}

func mustGet(t *testing.T, s *Store, tenant, id string) store.Device {
	t.Helper()
	d, err := s.Get(t.Context(), tenant, id, store.ReadOptions{Params: true})
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return d
}

// TestBatchFailuresStayWithTheirCaller puts valid diffs, stale ones and one
// for a missing device into one batch: every caller gets its own outcome,
// and a failed diff leaves no trace while the others are applied whole.
func TestBatchFailuresStayWithTheirCaller(t *testing.T) {
	s := startStore(t)
	const tenant = "default"
	a, b, c := seed(t, s, tenant, "A", 10), seed(t, s, tenant, "B", 10), seed(t, s, tenant, "C", 10)
	beforeB := mustGet(t, s, tenant, b)

	at := batchBase.Add(time.Minute)
	valid := func(param, value, tag string) store.Diff {
		return store.Diff{Time: at, Params: []store.ParamUpdate{store.SetValue(param, value, "xsd:string")},
			AddTags: []string{tag}, Fields: store.Fields{SoftwareVersion: store.Ptr(value)}}
	}
	devB := testDevice("B")
	staleB := store.Diff{
		Time: at, SessionID: "late", DeviceID: &devB, SessionTakeover: true,
		Inform:         &store.Inform{Events: []cwmp.Event{{Code: "1 BOOT"}}},
		Fields:         store.Fields{SoftwareVersion: store.Ptr("stale"), HardwareVersion: store.Ptr("stale")},
		DeletePaths:    []string{""},
		Params:         []store.ParamUpdate{store.SetValue("Device.X", "stale", "xsd:string"), store.SetValue("Device.New", "1", "xsd:int")},
		AddTags:        []string{"stale"},
		RemoveTags:     []string{"orig"},
		FullDiscovery:  at,
		CPECredentials: &store.Credentials{Username: "u", Password: "p"},
	}
	ctx := t.Context()

	release := hold(t, s)
	results := []<-chan result{
		enqueue(t, s, ctx, 0, tenant, a, valid("Device.X", "a1", "a1"), 10),
		enqueue(t, s, ctx, 1, tenant, b, staleB, 9),
		enqueue(t, s, ctx, 2, tenant, a, valid("Device.X", "stale", "stale"), 9),
		enqueue(t, s, ctx, 3, tenant, "00AABB-R-MISSING", valid("Device.X", "m", "m"), 10),
		enqueue(t, s, ctx, 4, tenant, c, valid("Device.X", "c1", "c1"), 11),
		enqueue(t, s, ctx, 5, tenant, a, valid("Device.Y", "a2", "a2"), 10),
		// Stale against the token the fifth diff raised in this batch.
		enqueue(t, s, ctx, 6, tenant, c, valid("Device.Z", "stale", "stale"), 10),
	}
	release()

	want := []error{nil, store.ErrStaleFencingToken, store.ErrStaleFencingToken, store.ErrNotFound, nil, nil, store.ErrStaleFencingToken}
	for i, ch := range results {
		r := <-ch
		if want[i] == nil && r.err != nil || want[i] != nil && !errors.Is(r.err, want[i]) {
			t.Errorf("diff %d: err = %v, want %v", i, r.err, want[i])
		}
	}

	gotA := mustGet(t, s, tenant, a)
	if gotA.Params["Device.X"].Value != "a1" || gotA.Params["Device.Y"].Value != "a2" || gotA.SoftwareVersion != "a2" ||
		!slices.Equal(gotA.Tags, []string{"a1", "a2", "orig"}) || gotA.FencingToken != 10 {
		t.Errorf("device A: %+v", gotA)
	}
	if gotB := mustGet(t, s, tenant, b); !reflect.DeepEqual(gotB, beforeB) {
		t.Errorf("a stale diff changed device B:\n before %+v\n after  %+v", beforeB, gotB)
	}
	gotC := mustGet(t, s, tenant, c)
	if gotC.Params["Device.X"].Value != "c1" || len(gotC.Params) != 1 || gotC.FencingToken != 11 ||
		!slices.Equal(gotC.Tags, []string{"c1", "orig"}) {
		t.Errorf("device C: %+v", gotC)
	}
	if _, err := s.Get(ctx, tenant, "00AABB-R-MISSING", store.ReadOptions{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the diff without DeviceId created its device: %v", err)
	}
	// Refusals are decided before an op writes: the batch needed no
	// second, op-by-op pass.
	if n := s.st.w.isolated.Load(); n != 0 {
		t.Errorf("%d batches applied again op by op; refusals need none", n)
	}
}

// TestBatchFailureAfterWrites: an op that fails after writing part of its
// changes leaves none of them, and the other ops of its batch land whole
// (the writer applies the batch again with a savepoint per op).
func TestBatchFailureAfterWrites(t *testing.T) {
	s := startStore(t)
	const tenant = "default"
	a, b := seed(t, s, tenant, "A", 10), seed(t, s, tenant, "B", 10)
	at := batchBase.Add(time.Minute)
	valid := func(value string) store.Diff {
		return store.Diff{Time: at, Params: []store.ParamUpdate{store.SetValue("Device.X", value, "xsd:string")}, AddTags: []string{value}}
	}
	ctx := t.Context()

	release := hold(t, s)
	first := enqueue(t, s, ctx, 0, tenant, a, valid("a1"), 10)
	broken := make(chan error, 1)
	go func() {
		broken <- s.submit(ctx, func(w *writer) error {
			if _, err := w.rc.exec(w.stmts.addTag, tenant, b, "half-written"); err != nil {
				return err
			}
			return errors.New("boom")
		})
	}()
	waitQueued(t, s, 2)
	last := enqueue(t, s, ctx, 2, tenant, b, valid("b1"), 10)
	release()

	if r := <-first; r.err != nil {
		t.Errorf("first diff: %v", r.err)
	}
	if err := <-broken; err == nil || err.Error() != "boom" {
		t.Errorf("broken op: err = %v, want boom", err)
	}
	if r := <-last; r.err != nil {
		t.Errorf("last diff: %v", r.err)
	}
	if got := mustGet(t, s, tenant, a); got.Params["Device.X"].Value != "a1" || !slices.Equal(got.Tags, []string{"a1", "orig"}) {
		t.Errorf("device A: %+v", got)
	}
	if got := mustGet(t, s, tenant, b); got.Params["Device.X"].Value != "b1" || !slices.Equal(got.Tags, []string{"b1", "orig"}) {
		t.Errorf("device B (the broken op's write must be gone): %+v", got)
	}
	if n := s.st.w.isolated.Load(); n != 1 {
		t.Errorf("%d batches applied again op by op, want 1", n)
	}
}

// TestBatchManyGoroutines has 64 goroutines write to four devices, a third
// of them with a stale token, first all in one batch and then in whatever
// batches the scheduling makes.
func TestBatchManyGoroutines(t *testing.T) {
	s := startStore(t)
	const tenant, writers = "default", 64
	var ids []string
	for d := range 4 {
		ids = append(ids, seed(t, s, tenant, fmt.Sprint("M", d), 10))
	}
	for _, wave := range []string{"one-batch", "free"} {
		errs := make([]error, writers)
		var wg sync.WaitGroup
		var release func()
		if wave == "one-batch" {
			release = hold(t, s)
		}
		for i := range writers {
			token := uint64(10)
			if i%3 == 0 {
				token = 9
			}
			d := store.Diff{Time: batchBase.Add(time.Hour),
				Params:  []store.ParamUpdate{store.SetValue(fmt.Sprintf("Device.%s.G%d", wave, i), "x", "xsd:string")},
				AddTags: []string{fmt.Sprintf("%s-%d", wave, i)}}
			wg.Go(func() {
				_, errs[i] = s.ApplySessionDiff(t.Context(), tenant, ids[i%4], d, token)
			})
		}
		if release != nil {
			waitQueued(t, s, writers)
			release()
		}
		wg.Wait()
		for i, err := range errs {
			if stale := i%3 == 0; stale && !errors.Is(err, store.ErrStaleFencingToken) || !stale && err != nil {
				t.Errorf("%s: writer %d: %v", wave, i, err)
			}
		}
		for d, id := range ids {
			dev := mustGet(t, s, tenant, id)
			for i := d; i < writers; i += 4 {
				_, param := dev.Params[fmt.Sprintf("Device.%s.G%d", wave, i)]
				_, tag := slices.BinarySearch(dev.Tags, fmt.Sprintf("%s-%d", wave, i))
				if applied := i%3 != 0; param != applied || tag != applied {
					t.Errorf("%s: writer %d on device %d: parameter %v, tag %v, want %v", wave, i, d, param, tag, applied)
				}
			}
		}
	}
}

// TestBatchKeepsDeviceOrder queues diffs of two devices, interleaved, into
// one batch: each device's diffs apply in the order they arrived.
func TestBatchKeepsDeviceOrder(t *testing.T) {
	s := startStore(t)
	const tenant, n = "default", 20
	a, b := seed(t, s, tenant, "OA", 1), seed(t, s, tenant, "OB", 1)
	release := hold(t, s)
	var results []<-chan result
	for k := range n {
		for _, id := range []string{a, b} {
			d := store.Diff{Time: batchBase.Add(time.Duration(k) * time.Second), Params: []store.ParamUpdate{
				store.SetValue("Device.Seq", fmt.Sprint(k), "xsd:unsignedInt"),
				store.SetValue(fmt.Sprintf("Device.K%d", k), fmt.Sprint(k), "xsd:unsignedInt"),
			}}
			if k%2 == 1 {
				// Odd diffs remove what the even one before them added.
				d.DeletePaths = []string{fmt.Sprintf("Device.K%d", k-1)}
			}
			results = append(results, enqueue(t, s, t.Context(), len(results), tenant, id, d, uint64(k+1)))
		}
	}
	release()
	for i, ch := range results {
		if r := <-ch; r.err != nil {
			t.Fatalf("diff %d: %v", i, r.err)
		}
	}
	for _, id := range []string{a, b} {
		dev := mustGet(t, s, tenant, id)
		if got := dev.Params["Device.Seq"]; got.Value != fmt.Sprint(n-1) || !got.Updated.Equal(batchBase.Add((n-1)*time.Second)) {
			t.Errorf("%s: Device.Seq = %+v, want the last diff's", id, got)
		}
		for k := range n {
			if _, ok := dev.Params[fmt.Sprintf("Device.K%d", k)]; ok != (k%2 == 1) {
				t.Errorf("%s: Device.K%d present %v: diffs applied out of order", id, k, ok)
			}
		}
		if dev.FencingToken != n {
			t.Errorf("%s: token %d, want %d", id, dev.FencingToken, n)
		}
	}
}

// TestCancelWhileQueued: a caller that gives up while its diff waits in the
// queue gets its context's error at once, and the diff is never applied.
func TestCancelWhileQueued(t *testing.T) {
	s := startStore(t)
	const tenant = "default"
	id := seed(t, s, tenant, "Q", 1)
	release := hold(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	ch := enqueue(t, s, ctx, 0, tenant, id, store.Diff{Time: batchBase.Add(time.Hour),
		Params: []store.ParamUpdate{store.SetValue("Device.Gone", "x", "")}, AddTags: []string{"gone"}}, 1)
	cancel()
	// The writer is still held: the call returns without it.
	if r := <-ch; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("canceled call: %v", r.err)
	}
	release()
	// A later write commits after the abandoned op was passed over.
	seed(t, s, tenant, "Q2", 1)
	dev := mustGet(t, s, tenant, id)
	if _, ok := dev.Params["Device.Gone"]; ok || slices.Contains(dev.Tags, "gone") {
		t.Fatalf("an abandoned diff was applied: %+v", dev)
	}
}

// TestCancelAfterTaken: once the writer has begun a diff, a caller that
// gives up is not waited for, and the diff still lands whole.
func TestCancelAfterTaken(t *testing.T) {
	s := startStore(t)
	const tenant = "default"
	id := seed(t, s, tenant, "T", 1)
	release1 := hold(t, s)
	// The second holding op and the diff queue up behind the first one and
	// form the next batch, so the diff is taken when that op runs.
	entered, proceed, held := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		held <- s.submit(context.Background(), func(*writer) error {
			close(entered)
			<-proceed
			return nil
		})
	}()
	waitQueued(t, s, 1)
	ctx, cancel := context.WithCancel(t.Context())
	ch := enqueue(t, s, ctx, 1, tenant, id, store.Diff{Time: batchBase.Add(time.Hour),
		Params:  []store.ParamUpdate{store.SetValue("Device.Kept", "x", ""), store.SetValue("Device.X", "new", "")},
		AddTags: []string{"kept"}}, 1)
	released := make(chan struct{})
	go func() {
		defer close(released)
		release1()
	}()
	<-entered
	cancel()
	if r := <-ch; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("canceled call: %v", r.err)
	}
	close(proceed)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	<-released
	dev := mustGet(t, s, tenant, id)
	if dev.Params["Device.Kept"].Value != "x" || dev.Params["Device.X"].Value != "new" || !slices.Contains(dev.Tags, "kept") {
		t.Fatalf("a diff the writer had begun was not applied whole: %+v", dev)
	}
}

// TestCloseAppliesQueuedWrites: Close lets the writer finish what is queued
// before it stops, and refuses writes afterwards.
func TestCloseAppliesQueuedWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	s := New(Config{Path: path})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	const tenant = "default"
	id := seed(t, s, tenant, "CL", 1)
	release := hold(t, s)
	ch := enqueue(t, s, t.Context(), 0, tenant, id, store.Diff{Time: batchBase.Add(time.Hour),
		Params: []store.ParamUpdate{store.SetValue("Device.Late", "x", "")}}, 1)
	closed := make(chan error, 1)
	go func() { closed <- s.Close(context.Background()) }()
	release()
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
	if r := <-ch; r.err != nil {
		t.Fatalf("diff queued before Close: %v", r.err)
	}
	if _, err := s.ApplySessionDiff(t.Context(), tenant, id, store.Diff{Time: batchBase}, 1); err == nil {
		t.Fatal("ApplySessionDiff after Close succeeded")
	}
	s2 := startAt(t, path)
	if dev := mustGet(t, s2, tenant, id); dev.Params["Device.Late"].Value != "x" {
		t.Fatalf("the diff queued before Close is lost: %+v", dev.Params)
	}
}

func startAt(t *testing.T, path string) *Store {
	t.Helper()
	s := New(Config{Path: path})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// TestLargeOpsTakeTurns: large ops queued together go one per batch, and
// the small ops queued behind them go into the first batch instead of
// waiting for all of them.
func TestLargeOpsTakeTurns(t *testing.T) {
	s := startStore(t)
	release := hold(t, s)
	var ran []string // written by the writer goroutine only
	var results []chan error
	queued := 0
	submit := func(name string, weight int) {
		out := make(chan error, 1)
		results = append(results, out)
		go func() {
			out <- s.submitWeighted(t.Context(), weight, func(w *writer) error {
				ran = append(ran, fmt.Sprintf("%s@%d", name, w.batches))
				return nil
			})
		}()
		queued++
		waitQueued(t, s, queued)
	}
	for _, name := range []string{"L1", "L2", "L3"} {
		submit(name, largeOpWeight+1)
	}
	for _, name := range []string{"S1", "S2", "S3"} {
		submit(name, 10)
	}
	release()
	for _, r := range results {
		if err := <-r; err != nil {
			t.Fatal(err)
		}
	}
	// Batch numbers are relative to the holding op's batch (1).
	want := []string{"L1@2", "S1@2", "S2@2", "S3@2", "L2@3", "L3@4"}
	if !slices.Equal(ran, want) {
		t.Errorf("applied %v, want %v", ran, want)
	}
}
