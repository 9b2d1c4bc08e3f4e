package tasks

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// waitFor polls cond (a state the service reaches on its own) for up to
// 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEventsRepublished: events published while the events stream is out
// of reach wait in the redo queue, a task's later event behind its earlier
// one, and reach the stream, in order and once each, when it is back.
func TestEventsRepublished(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := t.Context()
	if err := h.js.DeleteStream(ctx, h.names.EventsStream()); err != nil {
		t.Fatal(err)
	}
	task := h.create(t, dev1, reboot(), nil)
	waitFor(t, "the queued event to wait", func() bool { return h.svc.redo.n.Load() == 1 })
	if _, err := h.public.CancelTask(as(ctx, h.operator), &tasksv1.CancelTaskRequest{Id: task.GetId()}); err != nil {
		t.Fatal(err)
	}
	// The cancelled event queues behind the queued one without a publish
	// of its own (which, with the stream back, would overtake it).
	if n := h.svc.redo.n.Load(); n != 2 || !h.svc.redo.waiting(task.GetId()) {
		t.Fatalf("redo queue: %d events", n)
	}
	if err := natsbus.EnsureStreams(ctx, h.js, h.names, h.streams); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the events to be published", func() bool { return h.svc.redo.n.Load() == 0 })
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
	if h.svc.redo.dropped.Load() != 0 {
		t.Fatalf("dropped %d", h.svc.redo.dropped.Load())
	}
}

// TestEventRedoBound: beyond maxRedoEvents the oldest waiting event goes,
// counted, and the queue's bookkeeping stays exact.
func TestEventRedoBound(t *testing.T) {
	r := newEventRedo()
	for i := range maxRedoEvents {
		if _, dropped := r.add(redoEvent{id: "e", taskID: "a"}); dropped {
			t.Fatalf("dropped at %d", i)
		}
	}
	d, dropped := r.add(redoEvent{id: "f", taskID: "b"})
	if !dropped || d.taskID != "a" || r.dropped.Load() != 1 || r.n.Load() != maxRedoEvents {
		t.Fatalf("dropped %v %v, count %d, n %d", d, dropped, r.dropped.Load(), r.n.Load())
	}
	if !r.waiting("a") || !r.waiting("b") || r.waiting("c") {
		t.Fatal("waiting per task wrong")
	}
	for range maxRedoEvents {
		e, ok := r.first()
		if !ok {
			t.Fatal("queue emptied early")
		}
		r.published(e)
	}
	if r.waiting("a") || r.waiting("b") || r.n.Load() != 0 || len(r.byTask) != 0 {
		t.Fatalf("after publishing all: n %d, tasks %v", r.n.Load(), r.byTask)
	}
}
