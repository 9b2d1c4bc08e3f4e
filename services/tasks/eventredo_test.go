package tasks

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/tasks/store/sqlitestore"
)

// createUnpublished deletes the events stream and creates a task, whose
// queued event then waits in the redo queue; it returns the task.
func createUnpublished(t *testing.T, h *harness) *tasksv1.Task {
	t.Helper()
	if err := h.js.DeleteStream(t.Context(), h.names.EventsStream()); err != nil {
		t.Fatal(err)
	}
	task := h.create(t, dev1, reboot(), nil)
	waitRedo(t, h, 1)
	return task
}

// waitRedo waits for n events to wait in h's redo queue.
func waitRedo(t *testing.T, h *harness, n int64) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, func() error {
		if got := h.svc.redo.Len(); got != n {
			return fmt.Errorf("%d events waiting, want %d", got, n)
		}
		return nil
	})
}

// TestEventsRepublished: events published while the events stream is out
// of reach wait in the redo queue, a task's later event behind its earlier
// one, and reach the stream, in order and once each, when it is back.
func TestEventsRepublished(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := t.Context()
	task := createUnpublished(t, h)
	if _, err := h.public.CancelTask(as(ctx, h.operator), &tasksv1.CancelTaskRequest{Id: task.GetId()}); err != nil {
		t.Fatal(err)
	}
	// The cancelled event queues behind the queued one without a publish
	// of its own (which, with the stream back, would overtake it).
	if n := h.svc.redo.Len(); n != 2 || !h.svc.redo.Waiting(task.GetId()) {
		t.Fatalf("redo queue: %d events", n)
	}
	if err := natsbus.EnsureStreams(ctx, h.js, h.names, h.streams); err != nil {
		t.Fatal(err)
	}
	waitRedo(t, h, 0)
	st, err := h.js.Stream(ctx, h.names.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("events stream holds %d messages, want 2", info.State.Msgs)
	}
	for i, want := range []string{"task.queued", "task.cancelled"} {
		m, err := st.GetMsg(ctx, info.State.FirstSeq+uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		var ev eventsv1.Event
		if err := proto.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.GetKind() != want || ev.GetTask().GetId() != task.GetId() || m.Header.Get(jetstream.MsgIDHeader) != ev.GetId() {
			t.Fatalf("event %d: kind %s, task %s, id %s (header %s); want %s of %s", i, ev.GetKind(), ev.GetTask().GetId(), ev.GetId(), m.Header.Get(jetstream.MsgIDHeader), want, task.GetId())
		}
	}
	if h.svc.redo.Dropped() != 0 {
		t.Fatalf("dropped %d", h.svc.redo.Dropped())
	}
}

// TestEventsRepublishedAtStart: a replica that starts publishes again the
// events of the tasks changed in the last minutes, which a replica that
// died took with it; the stream keeps each event once.
func TestEventsRepublishedAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.db")
	h := newHarness(t, harnessOpts{st: sqlitestore.New(sqlitestore.Config{Path: path})})
	ctx := t.Context()
	task := createUnpublished(t, h)
	if err := natsbus.EnsureStreams(ctx, h.js, h.names, h.streams); err != nil {
		t.Fatal(err)
	}
	// The replica that starts now on the same store and streams, as after
	// a crash of the first (whose waiting event would die with it).
	st := sqlitestore.New(sqlitestore.Config{Path: path})
	second, err := New(DefaultConfig(), Deps{Store: st, NATS: h.nc, JetStream: h.js, Names: h.names,
		Devices: InventoryDevices{}, Secrets: testenv.Keyring(t), Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	second.events.Wait()
	events := func() []string {
		t.Helper()
		s, err := h.js.Stream(ctx, h.names.EventsStream())
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
		}
		return ids
	}
	want := task.GetId() + ".1" // its first history entry: queued
	if got := events(); len(got) != 1 || got[0] != want {
		t.Fatalf("events after the start: %v, want [%s]", got, want)
	}
	// The first replica's own attempt, once the stream is back, is a
	// repeat the stream drops.
	waitRedo(t, h, 0)
	if got := events(); len(got) != 1 {
		t.Fatalf("events after both: %v", got)
	}
}

// The event of a state change is named by the history entry that entered
// the state, which later entries of the same state do not move.
func TestStateEntry(t *testing.T) {
	task := &tasksv1.Task{}
	now := time.Now()
	var got []int
	for _, st := range []tasksv1.TaskState{
		tasksv1.TaskState_TASK_STATE_QUEUED,
		tasksv1.TaskState_TASK_STATE_DISPATCHED,
		tasksv1.TaskState_TASK_STATE_DISPATCHED, // resumed by a later session
		tasksv1.TaskState_TASK_STATE_QUEUED,     // to retry
		tasksv1.TaskState_TASK_STATE_DISPATCHED,
		tasksv1.TaskState_TASK_STATE_DONE,
	} {
		enter(task, st, now, "")
		got = append(got, stateEntry(task))
	}
	if fmt.Sprint(got) != "[1 2 2 4 5 6]" {
		t.Fatalf("state entries %v", got)
	}
}
