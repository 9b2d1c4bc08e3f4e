package sessions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
)

// taskIndex is a worker's picture of the devices whose task queue holds
// something (docs/sessions.md, "Tasks"), so that the session of a device
// with nothing queued, most periodic sessions, reads nothing from NATS.
//
// Once synced it never misses a device whose queue holds a message; it may
// name devices whose queue has emptied since, which cost the read they
// would have cost without it, after which they are dropped. It learns:
//
//   - from the hints the tasks service publishes on core NATS after each
//     message the stream acknowledged (natsbus.Names.TaskHint), to which it
//     subscribes first;
//   - then from the list of the queue subjects that hold messages, read
//     from the stream when it starts, after every reconnection or hint the
//     client dropped, and every resync interval (which also forgets the
//     devices whose queue emptied without a session of theirs noticing).
//
// Between a lost connection and the resynchronisation that follows, it is
// not synced and every device is read. A hint lost otherwise (the tasks
// service dying between the acknowledgement and the hint) delays the task
// until the next resynchronisation; a session opened by a connection
// request reads the queue whatever the index says.
//
// A device is dropped only by a read that found its queue empty and only
// if no hint came since the read began (the generation check in forget):
// a hint is sent after its message is stored, so a message the read missed
// has a hint that arrives after the read began.
type taskIndex struct {
	// conn returns the NATS connection; asked for when run starts (the
	// process connects after building its services). nc is its answer.
	conn   func() *nats.Conn
	nc     *nats.Conn
	names  natsbus.Names
	stream func(context.Context) (jetstream.Stream, error)
	every  time.Duration
	logger *slog.Logger

	// kick asks the loop for a resynchronisation now.
	kick chan struct{}
	// afterSync and afterHint, when set (tests), are called after each
	// successful resynchronisation and each hint taken in.
	afterSync, afterHint func()
	// now is the clock (time.Now; tests set theirs).
	now func() time.Time

	mu  sync.Mutex
	sub *nats.Subscription
	// devices maps a queue subject to what the index knows of it.
	devices map[string]*indexEntry
	gen     uint64
	// synced: the index is complete, as of the client's reconnection
	// count and the subscription's dropped count below.
	synced     bool
	reconnects uint64
	dropped    int
	// during collects what hints name while a resynchronisation lists
	// the stream; nil when none runs.
	during map[string]struct{}
}

// indexEntry is what the index knows of one device's queue.
type indexEntry struct {
	// gen is the generation of the last thing that named the device.
	gen uint64
	// seqs are the stream sequences of the device's messages the index
	// learned (from hints and reads), ascending. complete says they are
	// all of the device's messages, so that a read gets each by its
	// sequence; else a read looks the device's subject up from sequence 1,
	// which on a stream where many devices' messages interleave scans
	// every message in between (BenchmarkQueueRead).
	seqs     []uint64
	complete bool
	// recent are the sequences hinted less than replicationGrace ago. A
	// read may be answered by a stream replica that has not stored them
	// yet (a replicated stream acknowledges once a majority has), so a
	// read that does not find them neither drops them nor the device.
	recent []hintedSeq
}

type hintedSeq struct {
	seq uint64
	at  time.Time
}

// replicationGrace bounds how long a replica of the task stream may lag
// behind the acknowledgement of a message.
const replicationGrace = 10 * time.Second

// fresh drops the recent sequences older than the grace and reports
// whether seq (0: any) is among the rest.
func (e *indexEntry) fresh(now time.Time, seq uint64) bool {
	e.recent = slices.DeleteFunc(e.recent, func(h hintedSeq) bool { return now.Sub(h.at) >= replicationGrace })
	for _, h := range e.recent {
		if seq == 0 || h.seq == seq {
			return true
		}
	}
	return false
}

// maxIndexedSeqs bounds the sequences the index keeps for one device;
// beyond, the entry is incomplete.
const maxIndexedSeqs = 64

// add records seq (0: unknown) in e.
func (e *indexEntry) add(seq uint64) {
	switch {
	case seq == 0 || len(e.seqs) >= maxIndexedSeqs:
		e.complete, e.seqs = false, nil
	case len(e.seqs) == 0 || e.seqs[len(e.seqs)-1] < seq:
		e.seqs = append(e.seqs, seq)
	case !slices.Contains(e.seqs, seq):
		e.seqs = append(e.seqs, seq)
		slices.Sort(e.seqs)
	}
}

// hintPendingLimit bounds the hints a worker holds unread: each is a
// subject, no body. Past it the client drops hints and the index
// resynchronises.
const hintPendingLimit = 1 << 20

func newTaskIndex(conn func() *nats.Conn, names natsbus.Names, stream func(context.Context) (jetstream.Stream, error), every time.Duration, logger *slog.Logger) *taskIndex {
	return &taskIndex{
		conn: conn, names: names, stream: stream, every: every, logger: logger,
		kick: make(chan struct{}, 1), devices: map[string]*indexEntry{}, now: time.Now,
	}
}

// subscribe subscribes to the hints; the client renews the subscription
// after a reconnection by itself.
func (x *taskIndex) subscribe() error {
	sub, err := x.nc.Subscribe(x.names.TaskHints(), x.hint)
	if err != nil {
		return fmt.Errorf("subscribe to task queue hints: %w", err)
	}
	if err := sub.SetPendingLimits(hintPendingLimit, hintPendingLimit*64); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("subscribe to task queue hints: %w", err)
	}
	x.mu.Lock()
	x.sub = sub
	x.mu.Unlock()
	return nil
}

func (x *taskIndex) hint(m *nats.Msg) {
	q, ok := x.names.TaskQueueOfHint(m.Subject)
	if !ok {
		return
	}
	seq, _ := strconv.ParseUint(string(m.Data), 10, 64)
	x.mu.Lock()
	x.gen++
	e := x.devices[q]
	if e == nil {
		// Synced, the index names every device with a message: this
		// one had none, so the hinted message is its only one.
		e = &indexEntry{complete: x.synced}
		x.devices[q] = e
	}
	e.gen = x.gen
	e.add(seq)
	if seq != 0 {
		now := x.now()
		e.fresh(now, 0)
		e.recent = append(e.recent, hintedSeq{seq, now})
	}
	if x.during != nil {
		x.during[q] = struct{}{}
	}
	x.mu.Unlock()
	if x.afterHint != nil {
		x.afterHint()
	}
}

// indexView is what lookup tells of one device.
type indexView struct {
	// maybe: the device's queue may hold something; when false, the
	// rest is empty.
	maybe bool
	// gen is to hand back to forget or learned.
	gen uint64
	// seqs, when complete, are all the device's messages (a copy).
	seqs     []uint64
	complete bool
}

// lookup tells what the index knows of the device's queue.
func (x *taskIndex) lookup(queue string) indexView {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.current() {
		return indexView{maybe: true}
	}
	e, ok := x.devices[queue]
	if !ok {
		return indexView{}
	}
	v := indexView{maybe: true, gen: e.gen, complete: e.complete}
	if e.complete {
		v.seqs = slices.Clone(e.seqs)
	}
	return v
}

// current reports whether the index is synced and its subscription has
// dropped no hint since. x.mu is held.
func (x *taskIndex) current() bool {
	if !x.synced || x.sub == nil {
		return false
	}
	if x.droppedNow() != x.dropped {
		x.synced = false
		select {
		case x.kick <- struct{}{}:
		default:
		}
		return false
	}
	return true
}

// unsync marks the index incomplete: the connection went down, so hints
// may be lost until the resynchronisation that follows.
func (x *taskIndex) unsync() {
	x.mu.Lock()
	x.synced = false
	x.mu.Unlock()
}

func (x *taskIndex) droppedNow() int {
	n, err := x.sub.Dropped()
	if err != nil {
		// The subscription is gone: count it as a loss.
		return -1
	}
	return n
}

// learned records what a read of the device's queue from sequence 1
// found: seqs, every message the device had when the read passed (all is
// false when the read stopped at its bound). The index keeps them, with
// what hints named since the read began, as the device's complete list,
// if it is synced; a read that found nothing drops the device unless
// something named it since the read began (gen).
func (x *taskIndex) learned(queue string, gen uint64, seqs []uint64, all bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.devices[queue]
	if len(seqs) == 0 {
		if ok && e.gen == gen && all && !e.fresh(x.now(), 0) {
			delete(x.devices, queue)
		}
		return
	}
	if !ok {
		x.gen++
		e = &indexEntry{gen: x.gen}
		x.devices[queue] = e
	}
	if !all || !x.synced {
		e.complete, e.seqs = false, nil
		return
	}
	if e.gen != gen {
		// Hinted since the read began: those hints' sequences are in
		// e.seqs if e was complete; if not, they are lost, and the
		// entry stays incomplete.
		if !e.complete {
			return
		}
		for _, s := range seqs {
			e.add(s)
		}
		return
	}
	found := slices.Clone(seqs)
	e.fresh(x.now(), 0)
	for _, h := range e.recent {
		// Hinted, and maybe not stored yet by the replica that answered.
		if !slices.Contains(found, h.seq) {
			found = append(found, h.seq)
		}
	}
	slices.Sort(found)
	e.seqs, e.complete = found, len(found) <= maxIndexedSeqs
	if !e.complete {
		e.seqs = nil
	}
}

// gone drops, from the device's complete list, the sequences a read by
// sequence found deleted (their tasks ended); a device left with none is
// dropped.
func (x *taskIndex) gone(queue string, seqs []uint64) {
	if len(seqs) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.devices[queue]
	if !ok || !e.complete {
		return
	}
	now := x.now()
	e.seqs = slices.DeleteFunc(e.seqs, func(s uint64) bool { return slices.Contains(seqs, s) && !e.fresh(now, s) })
	if len(e.seqs) == 0 {
		delete(x.devices, queue)
	}
}

// resync lists the queue subjects that hold messages and makes them, and
// what hints named meanwhile, the index.
func (x *taskIndex) resync(ctx context.Context) error {
	x.mu.Lock()
	if x.sub == nil {
		x.mu.Unlock()
		return errors.New("task index: not subscribed")
	}
	reconnects, dropped := x.nc.Stats().Reconnects, x.droppedNow()
	x.during = map[string]struct{}{}
	x.mu.Unlock()

	subjects, err := x.list(ctx)

	x.mu.Lock()
	defer x.mu.Unlock()
	during := x.during
	x.during = nil
	if err != nil {
		return err
	}
	devices := make(map[string]*indexEntry, len(subjects)+len(during))
	for q := range during {
		// Hinted during the listing: if the listing missed it too, the
		// hints are all the index knows, and they are complete when the
		// entry was.
		if e := x.devices[q]; e != nil {
			devices[q] = e
		}
	}
	for q, n := range subjects {
		if n > 0 {
			// Listed: the count is known, the sequences not.
			x.gen++
			devices[q] = &indexEntry{gen: x.gen}
		}
	}
	x.devices = devices
	x.synced = dropped >= 0 && x.nc.Stats().Reconnects == reconnects
	x.reconnects, x.dropped = reconnects, dropped
	return nil
}

func (x *taskIndex) list(ctx context.Context) (map[string]uint64, error) {
	st, err := x.stream(ctx)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(x.names.TaskQueues()))
	if err != nil {
		return nil, fmt.Errorf("list the task queues of NATS stream %s: %w", x.names.TasksStream(), err)
	}
	return info.State.Subjects, nil
}

// size returns the number of devices the index names.
func (x *taskIndex) size() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.devices)
}

// run keeps the index synced until ctx ends: at once, when the client
// reconnects, when lookup finds that hints were dropped, and every resync
// interval. A failed resynchronisation is tried again after a second (the
// index stays unsynced meanwhile: every device is read).
func (x *taskIndex) run(ctx context.Context) {
	x.nc = x.conn()
	status := x.nc.StatusChanged(nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	defer x.nc.RemoveStatusListener(status)
	defer func() {
		x.mu.Lock()
		sub := x.sub
		x.sub, x.synced = nil, false
		x.mu.Unlock()
		if sub != nil {
			_ = sub.Unsubscribe()
		}
	}()
	const retry = time.Second
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case st := <-status:
			x.unsync()
			if st != nats.CONNECTED {
				continue
			}
		case <-x.kick:
		case <-timer.C:
		}
		next := x.every
		if err := x.sync(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			x.logger.WarnContext(ctx, "task index not synced: every session reads its device's queue", "error", err)
			next = retry
		} else if x.afterSync != nil {
			x.afterSync()
		}
		timer.Reset(next)
	}
}

// sync subscribes to the hints if need be, then resynchronises.
func (x *taskIndex) sync(ctx context.Context) error {
	x.mu.Lock()
	subscribed := x.sub != nil
	x.mu.Unlock()
	if !subscribed {
		if err := x.subscribe(); err != nil {
			return err
		}
	}
	return x.resync(ctx)
}
