package tasks

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// The queue gauges follow the tasks stream: two queued tasks show as a
// depth of 2 with a positive age; once one is done, its message leaves the
// stream and the depth drops to 1; once both are, the age is 0.
func TestQueueMetrics(t *testing.T) {
	p, err := telemetry.Setup(context.Background(), "test", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	h := newHarness(t, harnessOpts{meter: p.Meter})
	gauge := func(name string) (float64, bool) { return testenv.Metric(t, p.MetricsHandler, name) }
	if d, ok := gauge("fleetacs_tasks_queue_depth"); !ok || d != 0 {
		t.Fatalf("empty queue: depth %v (present %t), want 0", d, ok)
	}
	for _, name := range []string{"fleetacs_tasks_events_redo", "fleetacs_tasks_events_dropped_total"} {
		if v, ok := gauge(name); !ok || v != 0 {
			t.Fatalf("%s %v (present %t), want 0", name, v, ok)
		}
	}
	a := h.create(t, dev1, reboot(), nil)
	b := h.create(t, dev1, spv("Device.X", "1"), nil)
	if d, _ := gauge("fleetacs_tasks_queue_depth"); d != 2 {
		t.Fatalf("depth %v after queueing 2 tasks", d)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		if age, _ := gauge("fleetacs_tasks_queue_oldest_age_seconds"); age <= 0 {
			return fmt.Errorf("oldest age %v, want positive", age)
		}
		return nil
	})
	ids := h.queueIDs(t, "default", dev1)
	h.claim(t, "s1", ids...)
	if acks := h.report(t, "s1", done(a.GetId())); !acks[0].GetAccepted() {
		t.Fatalf("report refused: %v", acks)
	}
	// The queue delete runs in the background: once it is answered.
	h.svc.deletes.Wait()
	if d, _ := gauge("fleetacs_tasks_queue_depth"); d != 1 {
		t.Fatalf("depth %v after one task is done, want 1", d)
	}
	if acks := h.report(t, "s1", done(b.GetId())); !acks[0].GetAccepted() {
		t.Fatalf("report refused: %v", acks)
	}
	h.svc.deletes.Wait()
	if d, _ := gauge("fleetacs_tasks_queue_depth"); d != 0 {
		t.Fatalf("depth %v after both are done, want 0", d)
	}
	if age, ok := gauge("fleetacs_tasks_queue_oldest_age_seconds"); !ok || age != 0 {
		t.Fatalf("empty queue: oldest age %v (present %t), want 0", age, ok)
	}
}
