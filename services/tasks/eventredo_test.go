package tasks

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

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
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := h.svc.redo.Len(); n != 1 {
			return fmt.Errorf("%d events waiting, want the queued one", n)
		}
		return nil
	})
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
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := h.svc.redo.Len(); n != 0 {
			return fmt.Errorf("%d events still waiting", n)
		}
		return nil
	})
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
