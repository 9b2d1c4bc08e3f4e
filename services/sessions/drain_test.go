package sessions

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

// drainRun starts the Run of w (worker id) and ends its context at once, then waits until
// the worker has left the registry: its drain has begun. The channel
// receives Run's result.
func drainRun(t *testing.T, h *harness, w *testWorker, id string) <-chan error {
	t.Helper()
	ctx := context.Background()
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(rctx) }()
	cancel()
	testenv.WaitFor(t, 30*time.Second, func() error {
		live, err := h.store.Registry.Live(ctx)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(live, func(i affinity.Worker) bool { return i.ID == id }) {
			return fmt.Errorf("still registered")
		}
		return nil
	})
	return done
}

// A draining worker whose sessions have all been silent for
// engine.DrainIdle hands them off at once, not after its drain timeout (an
// hour here): their CPEs are gone, as after a power cut, and a stop need
// not wait for them. Another worker resumes such a session from its
// checkpoint.
func TestDrainEndsWhenEverySessionIsSilent(t *testing.T) {
	h := newMemoryHarness(t)
	w := h.worker("w1", func(c *Config) { c.DrainTimeout = time.Hour })
	c := newCPE(t, "SN-DR1", tree300())
	exchange(t, w.client, h.open(c, "dr1", "0 BOOTSTRAP"))
	h.clock.Advance(engine.DrainIdle)

	awaitRun(t, drainRun(t, h, w, "w1"), "the drain waits for a session silent for engine.DrainIdle")
	wantHandedOff(t, h, w, c, "dr1", "GetParameterNames")
}

// wantHandedOff checks that stopped worker w handed off session sid of c:
// w refuses its next exchange with UNAVAILABLE, its checkpoint stays, and
// a new worker resumes it, sending next.
func wantHandedOff(t *testing.T, h *harness, w *testWorker, c *cpe, sid, next string) {
	t.Helper()
	if _, err := w.client.Exchange(context.Background(), c.next(nil)); status.Code(err) != codes.Unavailable {
		t.Fatalf("exchange with the stopped worker: %v, want UNAVAILABLE", err)
	}
	if _, err := h.store.Checkpoints.Load(context.Background(), testTenant, c.key, sid); err != nil {
		t.Fatalf("handed-off session lost its checkpoint: %v", err)
	}
	w2 := h.worker(w.e.ID()+"-next", nil)
	if got := method(t, exchange(t, w2.client, c.next(nil))); got != next {
		t.Fatalf("resumed session sent %s, want %s", got, next)
	}
}

// A session heard from less than engine.DrainIdle ago keeps the drain: it
// goes on and ends on the draining worker, which then stops.
func TestDrainWaitsForARecentSession(t *testing.T) {
	h := newMemoryHarness(t)
	w := h.worker("w1", func(c *Config) { c.DrainTimeout = time.Hour })
	c := newCPE(t, "SN-DR2", tree300())
	h.inv.seed(testTenant, c.key, "Device.", t0.Add(-time.Hour))
	exchange(t, w.client, h.open(c, "dr2", "2 PERIODIC"))
	h.clock.Advance(engine.DrainIdle - time.Second)

	done := drainRun(t, h, w, "w1")
	resp := exchange(t, w.client, c.next(nil))
	if resp.HttpStatus != 204 || !resp.SessionEnded {
		t.Fatalf("session during the drain: HTTP %d, ended %t", resp.HttpStatus, resp.SessionEnded)
	}
	awaitRun(t, done, "the drain did not end with its last session")
}

// awaitRun waits up to 30 s for Run's result on done, failing the test
// with why when it does not come.
func awaitRun(t *testing.T, done <-chan error, why string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal(why)
	}
}
