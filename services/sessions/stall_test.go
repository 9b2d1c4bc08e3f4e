package sessions

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// Two requests on one cookie at once (a broken or hostile CPE) must not
// stall the worker's other large exchanges: while one request holds the
// session (here, its RecordSession is slow), the other, a large message,
// waits for the session without holding a large-exchange slot, and a
// large Inform of another device is served meanwhile.
func TestRequestWaitingForItsSessionHoldsNoSlot(t *testing.T) {
	h := newMemoryHarness(t)
	w := h.worker("w1", func(c *Config) { c.LargeExchangeBytes, c.LargeExchangeSlots = 100, 1 })
	a := newCPE(t, "SN-ST1", tree300())
	h.inv.seed(testTenant, a.key, "Device.", t0.Add(-time.Hour))
	open := h.open(a, "st-a", "2 PERIODIC")
	if method(t, exchange(t, w.client, open)) != "InformResponse" {
		t.Fatal("a's Inform not answered")
	}
	entered, release := h.inv.holdRecord()
	done := make(chan error, 2)
	// The empty POST ends a's session; its record waits, holding the
	// session.
	go func() { _, err := w.client.Exchange(context.Background(), a.next(nil)); done <- err }()
	<-entered
	// A large message on the same cookie waits for the session.
	go func() { _, err := w.client.Exchange(context.Background(), a.next(open.Body)); done <- err }()
	// Let it get as far as it goes: with the slot taken before the
	// session's lock (as it once was), it would now hold the only slot.
	// Nothing below depends on how far it got.
	for range 10000 {
		runtime.Gosched()
	}
	b := newCPE(t, "SN-ST2", tree300())
	h.inv.seed(testTenant, b.key, "Device.", t0.Add(-time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := w.client.Exchange(ctx, h.open(b, "st-b", "2 PERIODIC"))
	close(release)
	if err != nil {
		t.Fatalf("another device's large Inform while a session's two requests wait: %v", err)
	}
	if method(t, resp) != "InformResponse" {
		t.Fatalf("b's Inform answered %+v", resp)
	}
	for range 2 {
		<-done
	}
}
