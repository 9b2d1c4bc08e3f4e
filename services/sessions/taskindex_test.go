package sessions

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetacs/fleetacs/pkg/affinity/affinitytest"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/natsembed"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// indexed is a queue reader with its index running, and channels that
// say when the index synced and when it took in a hint.
type indexed struct {
	q      *NATSTaskQueue
	synced chan struct{}
	hinted chan struct{}
	// clock is the index's: a test advances it past the replication
	// grace before it expects a read that finds nothing to drop what a
	// hint named.
	clock *affinitytest.Clock
}

func startIndexed(t *testing.T, js jetstream.JetStream, names natsbus.Names) *indexed {
	t.Helper()
	ix := &indexed{q: NewNATSTaskQueue(js, names, time.Hour, nil), synced: make(chan struct{}, 16), hinted: make(chan struct{}, 64),
		clock: affinitytest.NewClock(t0)}
	ix.q.index.now = ix.clock.Now
	ix.q.index.afterSync = func() { ix.synced <- struct{}{} }
	ix.q.index.afterHint = func() { ix.hinted <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ix.q.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ix
}

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
	}
}

// queueWithHint queues a message as the tasks service does: on the stream,
// then the hint once the stream acknowledged it.
func queueWithHint(t *testing.T, js jetstream.JetStream, names natsbus.Names, tenant, device, id string) {
	t.Helper()
	v := &natsEnv{js: js, names: names}
	seq := v.enqueue(t, tenant, device, id)
	if err := js.Conn().Publish(names.TaskHint(tenant, device), []byte(strconv.FormatUint(seq, 10))); err != nil {
		t.Fatal(err)
	}
}

func pending(t *testing.T, q *NATSTaskQueue, device string, fresh bool) string {
	t.Helper()
	ids, err := q.Pending(context.Background(), "t.one", device, 64, fresh)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(ids, ",")
}

// The index spares the read of a device with nothing queued, and misses
// no queued task: those queued before it started (listed from the
// stream), those queued since (hints), and, after a resynchronisation,
// those whose hint was lost. A read that finds the queue empty drops the
// device; a connection-request session reads whatever the index says.
func TestTaskIndex(t *testing.T) {
	v := newNATSEnv(t)
	nc := v.js.Conn()
	v.enqueue(t, "t.one", "D1", "a1") // before the index: no hint

	q := NewNATSTaskQueue(v.js, v.names, time.Hour, nil)
	if got := pending(t, q, "nobody", false); got != "" {
		t.Fatalf("nobody: %q", got)
	}
	v.gets(t, nc, 1) // not synced yet: every device is read

	ix := startIndexed(t, v.js, v.names)
	q = ix.q
	wait(t, ix.synced, "first sync")
	before := v.directGets.Load()
	if got := pending(t, q, "nobody", false); got != "" {
		t.Fatalf("nobody: %q", got)
	}
	v.gets(t, nc, before) // synced: no read
	if got := pending(t, q, "D1", false); got != "a1" {
		t.Fatalf("D1 queued before the index started: %q", got)
	}
	v.gets(t, nc, before+2)

	queueWithHint(t, v.js, v.names, "t.one", "D2", "b1")
	wait(t, ix.hinted, "hint")
	if got := pending(t, q, "D2", false); got != "b1" {
		t.Fatalf("D2 queued with a hint: %q", got)
	}

	// A lost hint: the task waits for a connection-request session or the
	// next resynchronisation.
	v.enqueue(t, "t.one", "D3", "c1")
	if got := pending(t, q, "D3", false); got != "" {
		t.Fatalf("D3 without hint, before a resync: %q", got)
	}
	if got := pending(t, q, "D3", true); got != "c1" {
		t.Fatalf("D3 read fresh: %q", got)
	}

	// D1's task ends: the next read finds nothing and drops D1, which
	// then costs nothing.
	st, err := v.js.Stream(context.Background(), v.names.TasksStream())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	before = v.directGets.Load()
	if got := pending(t, q, "D1", false); got != "" {
		t.Fatalf("D1 after its task ended: %q", got)
	}
	v.gets(t, nc, before+1)
	if got := pending(t, q, "D1", false); got != "" {
		t.Fatalf("D1 again: %q", got)
	}
	v.gets(t, nc, before+1)
	if n := q.index.size(); n != 2 {
		t.Fatalf("index holds %d devices, want 2 (D2, D3: a fresh read that finds a task keeps the device)", n)
	}

	// Another lost hint, found by the next resynchronisation, which also
	// keeps D2 and D3 (still queued) and nothing else.
	v.enqueue(t, "t.one", "D4", "d1")
	if got := pending(t, q, "D4", false); got != "" {
		t.Fatalf("D4 without hint, before a resync: %q", got)
	}
	q.index.kick <- struct{}{}
	wait(t, ix.synced, "resync")
	if got := pending(t, q, "D4", false); got != "d1" {
		t.Fatalf("D4 after a resync: %q", got)
	}
	if n := q.index.size(); n != 3 {
		t.Fatalf("index holds %d devices after the resync, want 3 (D2, D3, D4)", n)
	}
}

// The index's bookkeeping: a hint that names a device while the read of
// its queue is under way keeps the device; a read from sequence 1 makes the
// device's list complete only if it saw everything and the index is
// synced; a list learns the hints that came during the read; sequences
// found deleted leave it, and the device with the last of them.
func TestTaskIndexEntries(t *testing.T) {
	x := newTaskIndex(nil, natsbus.New("r", "R_"), nil, time.Hour, nil)
	x.synced = true
	clock := affinitytest.NewClock(t0)
	x.now = clock.Now
	q := "r-internal.tasks.t.D1"
	hint := func(seq string) { x.hint(&nats.Msg{Subject: "r-internal.queued.t.D1", Data: []byte(seq)}) }
	entry := func() indexEntry {
		if e := x.devices[q]; e != nil {
			return *e
		}
		return indexEntry{}
	}

	hint("7") // synced, no entry: the only message
	if e := entry(); !e.complete || !slices.Equal(e.seqs, []uint64{7}) {
		t.Fatalf("after a hint: %+v", e)
	}
	gen := entry().gen
	hint("9") // during a read
	x.learned(q, gen, nil, true)
	if e := entry(); !e.complete || !slices.Equal(e.seqs, []uint64{7, 9}) {
		t.Fatalf("a device named during its read was dropped or changed: %+v", e)
	}
	// A read answered by a replica that has not stored 7 yet: within the
	// grace, 7 stays.
	x.gone(q, []uint64{7})
	if e := entry(); !slices.Equal(e.seqs, []uint64{7, 9}) {
		t.Fatalf("a sequence hinted a moment ago was dropped: %+v", e)
	}
	x.learned(q, entry().gen, nil, true)
	if _, ok := x.devices[q]; !ok {
		t.Fatal("a device hinted a moment ago was dropped by a read that found nothing")
	}
	clock.Advance(replicationGrace)
	x.gone(q, []uint64{7})
	if e := entry(); !slices.Equal(e.seqs, []uint64{9}) {
		t.Fatalf("after 7 went: %+v", e)
	}
	x.gone(q, []uint64{9})
	if _, ok := x.devices[q]; ok {
		t.Fatal("a device whose last message went was kept")
	}

	hint("") // a hint without sequence (an older tasks service)
	if e := entry(); e.complete {
		t.Fatalf("after a hint without sequence: %+v", e)
	}
	x.learned(q, entry().gen, []uint64{3, 12}, false) // stopped at its bound
	if e := entry(); e.complete {
		t.Fatalf("after a bounded read: %+v", e)
	}
	x.learned(q, entry().gen, []uint64{3, 12}, true)
	if e := entry(); !e.complete || !slices.Equal(e.seqs, []uint64{3, 12}) {
		t.Fatalf("after a whole read: %+v", e)
	}
	gen = entry().gen
	hint("15")
	x.learned(q, gen, []uint64{3, 12}, true)
	if e := entry(); !e.complete || !slices.Equal(e.seqs, []uint64{3, 12, 15}) {
		t.Fatalf("after a read with a hint during it: %+v", e)
	}
	// A whole read that began after the hint, answered by a replica
	// without 15: the list keeps it.
	x.learned(q, entry().gen, []uint64{3, 12}, true)
	if e := entry(); !slices.Equal(e.seqs, []uint64{3, 12, 15}) {
		t.Fatalf("a read without a sequence hinted a moment ago: %+v", e)
	}
	clock.Advance(replicationGrace)
	x.learned(q, entry().gen, nil, true)
	if _, ok := x.devices[q]; ok {
		t.Fatal("a device whose read found nothing was kept")
	}

	x.synced = false
	x.learned(q, 0, []uint64{4}, true)
	if e := entry(); e.complete {
		t.Fatalf("learned while not synced: %+v", e)
	}
	x.hint(&nats.Msg{Subject: "r-internal.queued.bad"}) // not a hint subject
	if len(x.devices) != 1 {
		t.Fatalf("index %v", x.devices)
	}
}

// A device with several messages between other devices' is read by
// sequence, in queue order, one direct get per message; those deleted
// leave the index.
func TestTaskIndexReadsBySequence(t *testing.T) {
	v := newNATSEnv(t)
	nc := v.js.Conn()
	ix := startIndexed(t, v.js, v.names)
	wait(t, ix.synced, "first sync")
	var seqs []uint64
	for i := range 3 {
		queueWithHint(t, v.js, v.names, "t.one", "D1", fmt.Sprintf("m%d", i))
		wait(t, ix.hinted, "hint")
		seqs = append(seqs, v.enqueue(t, "t.one", fmt.Sprintf("other%d", i), "x"))
	}
	before := v.directGets.Load()
	if got := pending(t, ix.q, "D1", false); got != "m0,m1,m2" {
		t.Fatalf("D1: %q", got)
	}
	v.gets(t, nc, before+3)
	st, err := v.js.Stream(context.Background(), v.names.TasksStream())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(context.Background(), seqs[0]-1); err != nil { // m0
		t.Fatal(err)
	}
	ix.clock.Advance(replicationGrace)
	if got := pending(t, ix.q, "D1", false); got != "m1,m2" {
		t.Fatalf("D1 after m0 ended: %q", got)
	}
	v.gets(t, nc, before+6)
	if e := ix.q.index.lookup(v.names.TaskQueue("t.one", "D1")); !e.complete || len(e.seqs) != 2 {
		t.Fatalf("index entry %+v", e)
	}
}

// After its NATS server restarts, the index is not trusted until it has
// resynchronised, and then holds what was queued while it was away.
func TestTaskIndexReconnect(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	start := func() (stop func()) {
		srv := natsembed.New("127.0.0.1", port, dir)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Run(ctx) }()
		select {
		case <-srv.Ready():
		case err := <-done:
			t.Fatalf("NATS server: %v", err)
		}
		return func() {
			cancel()
			<-done
		}
	}
	stop := start()
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	// The index's client tries to reconnect only once the test lets it.
	release := make(chan struct{})
	hold := nats.CustomReconnectDelay(func(int) time.Duration {
		<-release
		return 0
	})
	nc, js, err := natsbus.Connect(context.Background(), url, "index-test", 5*time.Second, hold)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	names := natsbus.New("idx", "IDX_")
	if err := natsbus.EnsureStreams(context.Background(), js, names, natsbus.StreamOptions{Replicas: 1, MaxTasksPerDevice: 10,
		EventsMaxAge: time.Hour, EventsMaxBytes: 1 << 20, WakeMaxAge: time.Minute}); err != nil {
		t.Fatal(err)
	}
	ix := startIndexed(t, js, names)
	wait(t, ix.synced, "first sync")
	if ix.q.index.lookup(names.TaskQueue("t.one", "D9")).maybe {
		t.Fatal("synced index names a device with nothing queued")
	}

	stop()
	stop = start()
	defer func() { stop() }()
	// Queued by another client while the index's client is away: its
	// hint is lost.
	nc2, js2, err := natsbus.Connect(context.Background(), url, "index-test-2", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	queueWithHint(t, js2, names, "t.one", "D9", "z1")
	if err := nc2.Flush(); err != nil {
		t.Fatal(err)
	}
	close(release)
	wait(t, ix.synced, "sync after the reconnection")
	if got := pending(t, ix.q, "D9", false); got != "z1" {
		t.Fatalf("D9 queued while the index's client was away: %q", got)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// With its index synced, a worker's periodic session of a device with
// nothing queued reads nothing from NATS; a task queued the way the tasks
// service queues it runs in the device's next periodic session, and a
// session opened by a connection request reads the queue.
func TestPeriodicSessionNoReadWithIndex(t *testing.T) {
	v := newNATSEnv(t)
	env := newTaskEnv(t, nil)
	w, err := New(testConfig(), Deps{
		Inventory: env.inv, Leases: env.store.Leases, Checkpoints: env.store.Checkpoints, Registry: env.store.Registry, Sessions: env.store.Sessions,
		Now: env.clock.Now, JetStream: v.js, BusNames: v.names, Tasks: env.tasks,
	})
	if err != nil {
		t.Fatal(err)
	}
	synced, hinted := make(chan struct{}, 4), make(chan struct{}, 4)
	clock := affinitytest.NewClock(t0)
	w.queue.index.now = clock.Now
	w.queue.index.afterSync = func() { synced <- struct{}{} }
	w.queue.index.afterHint = func() { hinted <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.queue.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	wait(t, synced, "first sync")

	nc := v.js.Conn()
	c := env.cpe(answers)
	c.inform(w.e, periodic)
	c.run(w.e)
	v.gets(t, nc, 0)
	if len(env.tasks.claims) != 0 || len(c.sent) != 0 {
		t.Fatalf("%d claims, sent %v", len(env.tasks.claims), c.methods())
	}

	queueWithHint(t, v.js, v.names, testTenant, c.key, "t1")
	wait(t, hinted, "hint")
	env.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, gpv("Device.X.A"))
	c.inform(w.e, periodic)
	c.run(w.e)
	if r := env.tasks.report(t, "t1"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
		t.Fatalf("report %v", r)
	}

	// t1 ends (the tasks service deletes its message): the next session
	// reads the queue once more, finds it empty, and the device drops out
	// of the index.
	st, err := v.js.Stream(context.Background(), v.names.TasksStream())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(replicationGrace)
	before := v.directGets.Load()
	c.inform(w.e, periodic)
	c.run(w.e)
	v.gets(t, nc, before+1)
	c.inform(w.e, periodic)
	c.run(w.e)
	v.gets(t, nc, before+1)

	// A task queued without its hint (lost): a periodic session does not
	// see it; a session opened by a connection request does, and runs it.
	v.enqueue(t, testTenant, c.key, "t2")
	env.tasks.add("t2", tasksv1.ClaimAction_CLAIM_ACTION_RUN, gpv("Device.X.A"))
	c.inform(w.e, periodic)
	c.run(w.e)
	v.gets(t, nc, before+1)
	c.inform(w.e, []cwmp.Event{{Code: "6 CONNECTION REQUEST"}})
	c.run(w.e)
	if r := env.tasks.report(t, "t2"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
		t.Fatalf("report of t2 %v", r)
	}
}
