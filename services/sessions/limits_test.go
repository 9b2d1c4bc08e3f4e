package sessions

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
)

// heavyInform is an Inform carrying n parameters with values of size
// bytes, besides the forced ones: what an InformParameter table pointed at
// a whole subtree produces (docs/sessions.md, "Limits").
func (c *cpe) heavyInform(n, size int, events ...string) []byte {
	c.t.Helper()
	inf := &cwmp.Inform{DeviceID: c.id, MaxEnvelopes: 1, CurrentTime: "2026-03-01T12:00:00Z"}
	for _, e := range events {
		inf.Events = append(inf.Events, cwmp.Event{Code: e})
	}
	inf.ParameterList = append(inf.ParameterList, cwmp.ParameterValue{Name: "Device.DeviceInfo.SoftwareVersion", Value: "2.0.1", Type: "xsd:string"})
	value := strings.Repeat("v", size)
	for i := range n {
		inf.ParameterList = append(inf.ParameterList, cwmp.ParameterValue{Name: "Device.X_Big." + strconv.Itoa(i), Value: value, Type: "xsd:string"})
	}
	return c.encode(&cwmp.Envelope{Namespace: cwmp.NS1_2, Version: cwmp.V1_2, Header: cwmp.Header{ID: "inform-1", HasID: true}, Body: inf})
}

// An Inform with more parameters than the limit keeps the first ones, in
// the session and in what it records; the rest are counted as dropped.
func TestInformParametersBounded(t *testing.T) {
	h := newMemoryHarness(t)
	w := h.worker("w1", func(c *Config) { c.MaxInformParameters = 5 })
	c := newCPE(t, "SN-IP1", tree300())
	h.inv.seed(testTenant, c.key, "Device.", t0)
	req := h.open(c, "ip-1", "2 PERIODIC")
	req.Body = c.heavyInform(40, 10, "2 PERIODIC", "4 VALUE CHANGE")
	if got := method(t, exchange(t, w.client, req)); got != "InformResponse" {
		t.Fatalf("heavy Inform answered %s", got)
	}
	c.drive(func(int) sessionsv1.SessionServiceClient { return w.client })
	acc, _ := h.inv.records()
	if len(acc) != 1 || len(acc[0].Parameters) != 5 || acc[0].Parameters[0].Path != "Device.DeviceInfo.SoftwareVersion" ||
		acc[0].Parameters[4].Path != "Device.X_Big.3" || len(acc[0].Inform.Events) != 2 {
		t.Fatalf("recorded %d parameters", len(acc[0].Parameters))
	}
	if n := w.counter(t, "fleetacs.sessions.truncated", "what", "inform"); n != 36 {
		t.Errorf("truncated{inform} = %d, want 36", n)
	}
}

// A discovery stops at the session's parameter limit: what it learned is
// recorded, the discovery counts as done (the device is not discovered
// again every session) and nothing is removed that it did not get to see.
func TestDiscoveryStopsAtSessionLimit(t *testing.T) {
	h := newMemoryHarness(t)
	w := h.worker("w1", func(c *Config) { c.MaxSessionParameters = 100 })
	c := newCPE(t, "SN-DL1", tree300())
	h.inv.seed(testTenant, c.key, "Device.", time.Time{}, "Device.Hosts.Host.57.IPAddress", "Device.Gone.X")
	exchange(t, w.client, h.open(c, "dl-1", "0 BOOTSTRAP"))
	replies := c.drive(func(int) sessionsv1.SessionServiceClient { return w.client })
	if last := replies[len(replies)-1]; last.HttpStatus != 204 {
		t.Fatalf("session ended with %d", last.HttpStatus)
	}
	acc, _ := h.inv.records()
	r := acc[0]
	// Four Inform parameters and 96 names fill the limit; the Inform's
	// are among those names.
	if r.FullDiscoveryTime == nil || len(r.Parameters) != 96 || len(r.RemovedPaths) != 0 {
		t.Fatalf("recorded %d parameters, removed %v, discovery %v", len(r.Parameters), r.RemovedPaths, r.FullDiscoveryTime)
	}
	if n := w.counter(t, "fleetacs.sessions.truncated", "what", "discovery"); n != 1 {
		t.Errorf("truncated{discovery} = %d", n)
	}
}

// The worker's memory budget: new sessions whose Inform does not fit are
// shed with 503 and Retry-After (their lease released), lighter ones still
// fit, and the budget is given back as sessions end.
func TestMemoryBudgetShedsNewSessions(t *testing.T) {
	h := newMemoryHarness(t)
	heavy := newCPE(t, "SN-H0", tree300()).heavyInform(100, 200)
	// Two heavy sessions fit; a third does not, a light one does.
	budget := 2*len(heavy) + len(heavy)/2
	w := h.worker("w1", func(c *Config) { c.MemoryBudget = budget })
	var open []*cpe
	for i := range 3 {
		c := newCPE(t, "SN-H"+strconv.Itoa(i), tree300())
		h.inv.seed(testTenant, c.key, "Device.", t0)
		req := h.open(c, "h-"+strconv.Itoa(i), "2 PERIODIC")
		req.Body = c.heavyInform(100, 200, "2 PERIODIC")
		resp := exchange(t, w.client, req)
		if i < 2 {
			if method(t, resp) != "InformResponse" {
				t.Fatalf("heavy session %d answered %d", i, resp.HttpStatus)
			}
			open = append(open, c)
			continue
		}
		ra := resp.GetRetryAfter().AsDuration()
		if resp.HttpStatus != 503 || !resp.SessionEnded || ra < 30*time.Second || ra > 90*time.Second {
			t.Fatalf("third heavy session: status %d ended %t retry-after %v", resp.HttpStatus, resp.SessionEnded, ra)
		}
		if _, held, _ := h.store.Leases.Holder(context.Background(), testTenant, c.key); held {
			t.Fatal("a shed session's lease is still held")
		}
	}
	if n := w.counter(t, "fleetacs.sessions.refused", "reason", "memory"); n != 1 {
		t.Errorf("refused{memory} = %d", n)
	}
	light := newCPE(t, "SN-L0", tree300())
	h.inv.seed(testTenant, light.key, "Device.", t0)
	if got := method(t, exchange(t, w.client, h.open(light, "l-0", "2 PERIODIC"))); got != "InformResponse" {
		t.Fatalf("light session answered %s", got)
	}
	open = append(open, light)
	if w.e.MemoryUsed() <= 0 || w.e.MemoryUsed() > int64(budget) {
		t.Fatalf("memory used %d, budget %d", w.e.MemoryUsed(), budget)
	}
	for _, c := range open {
		c.drive(func(int) sessionsv1.SessionServiceClient { return w.client })
	}
	if w.e.MemoryUsed() != 0 || w.Sessions() != 0 {
		t.Fatalf("after the sessions: memory %d, sessions %d", w.e.MemoryUsed(), w.Sessions())
	}
	// Room again for a heavy one.
	c := newCPE(t, "SN-H9", tree300())
	req := h.open(c, "h-9", "2 PERIODIC")
	req.Body = c.heavyInform(100, 200, "2 PERIODIC")
	if got := method(t, exchange(t, w.client, req)); got != "InformResponse" {
		t.Fatalf("heavy session after the others ended: %s", got)
	}
}
