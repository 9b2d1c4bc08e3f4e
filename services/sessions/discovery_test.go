package sessions

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
)

// runUntilCrash drives a session from its empty POST; it returns true when
// the CPE answered everything and the session ended, false when a request
// crashed the CPE (which then sends nothing more).
func (c *cpe) runUntilCrash(cl sessionsv1.SessionServiceClient) bool {
	c.t.Helper()
	body := []byte(nil)
	for range 1000 {
		resp := exchange(c.t, cl, c.next(body))
		if resp.HttpStatus != 200 {
			return true
		}
		if body = c.answer(resp.Body); body == nil {
			return false
		}
	}
	c.t.Fatal("session did not end")
	return false
}

// A client that crashes on any GetParameterValues of more than 31 names
// (netcwmp): each session that dies in discovery lowers its product
// class's batch, whichever way the worker learns of the death (the idle
// session expires, or the device's next Inform takes its lease over and
// the gateway abandons it), until a session completes; devices of the
// class that come later start with what worked.
func TestDiscoveryAdaptsToCrashingClient(t *testing.T) {
	h := newMemoryHarness(t)
	w := h.worker("w1", nil) // discovery batch 100
	class := func() DiscoveryProfile { return h.inv.profile(testTenant, "00D09E", "Router") }

	// Session 1: GPV of 100 names; the CPE crashes and goes silent; the
	// worker expires the session.
	a := newCPE(t, "SN-NC1", tree300())
	a.crashAbove = 31
	exchange(t, w.client, h.open(a, "nc-1", "0 BOOTSTRAP", "1 BOOT"))
	if a.runUntilCrash(w.client) {
		t.Fatal("a GPV of 100 names did not crash the CPE")
	}
	h.clock.Advance(cwmp.DefaultSessionTimeout + DefaultConfig().IdleGrace)
	w.tick(context.Background())
	if p := class(); p.GPVBatchFailed != 100 || p.GPVBatchOK != 0 {
		t.Fatalf("after an expired session: %+v", p)
	}
	if acc, _ := h.inv.records(); len(acc) != 1 || len(acc[0].Parameters) != 0 || acc[0].FullDiscoveryTime != nil {
		t.Fatalf("expired session recorded %v", acc)
	}

	// Session 2: the same device restarts and sends its Inform while the
	// crashed session still holds the lease: a takeover. The gateway
	// abandons the old session before forwarding the new Inform.
	a.gpv = 0
	exchange(t, w.client, h.open(a, "nc-2", "1 BOOT"))
	if a.runUntilCrash(w.client) {
		t.Fatal("a GPV of 50 names did not crash the CPE")
	}
	h.clock.Advance(time.Second)
	old := a.sid
	req := h.open(a, "nc-3", "1 BOOT")
	if _, err := w.client.Abandon(context.Background(), &sessionsv1.AbandonRequest{SessionId: old, Tenant: testTenant, DeviceKey: a.key,
		Reason: sessionsv1.AbandonReason_ABANDON_REASON_SUPERSEDED}); err != nil {
		t.Fatal(err)
	}
	if p := class(); p.GPVBatchFailed != 50 {
		t.Fatalf("after a superseded session: %+v", p)
	}

	// Session 3 (the takeover): batches of 25 work.
	exchange(t, w.client, req)
	a.gpv = 0
	if !a.runUntilCrash(w.client) {
		t.Fatal("a GPV of 25 names crashed the CPE")
	}
	if p := class(); p.GPVBatchOK != 25 || p.GPVBatchFailed != 50 {
		t.Fatalf("after a complete discovery: %+v", p)
	}
	acc, _ := h.inv.records()
	last := acc[len(acc)-1]
	if last.SessionId != "nc-3" || last.FullDiscoveryTime == nil || len(last.Parameters) != len(a.tree) {
		t.Fatalf("session nc-3 recorded %d parameters, discovery %v", len(last.Parameters), last.FullDiscoveryTime)
	}

	// Another device of the class starts at 25, on another worker.
	b := newCPE(t, "SN-NC2", tree300())
	b.crashAbove = 31
	w2 := h.worker("w2", nil)
	exchange(t, w2.client, h.open(b, "nc-b", "0 BOOTSTRAP", "1 BOOT"))
	if !b.runUntilCrash(w2.client) || b.gpv != 12 {
		t.Fatalf("second device: %d GetParameterValues", b.gpv)
	}
}

// A quirks file sets a class's batch size and walks its tree object by
// object; Run refuses a file it cannot use.
func TestQuirksFile(t *testing.T) {
	h := newMemoryHarness(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "quirks.json")
	quirks := `{"profiles": [{"oui": "00d09e", "productClass": "Router", "note": "test", "discovery": {"batchSize": 7, "gpn": "walk"}}]}`
	if err := os.WriteFile(path, []byte(quirks), 0o600); err != nil {
		t.Fatal(err)
	}
	w := h.worker("w1", func(c *Config) { c.QuirksFile = path })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitRegistered(t, h, "w1")

	c := newCPE(t, "SN-Q1", tree300())
	exchange(t, w.client, h.open(c, "q-1", "0 BOOTSTRAP"))
	sizes := map[int]int{}
	body := []byte(nil)
	for {
		resp := exchange(t, w.client, c.next(body))
		if resp.HttpStatus != 200 {
			break
		}
		env, _ := cwmp.Decode(resp.Body)
		switch m := env.Body.(type) {
		case *cwmp.GetParameterNames:
			if !m.NextLevel {
				t.Fatalf("GetParameterNames of %s without NextLevel", m.ParameterPath)
			}
		case *cwmp.GetParameterValues:
			sizes[len(m.ParameterNames)]++
		}
		body = c.answer(resp.Body)
	}
	for n := range sizes {
		if n > 7 {
			t.Fatalf("GetParameterValues of %d names", n)
		}
	}
	// One GPN per object: the root, DeviceInfo, ManagementServer, Hosts,
	// Hosts.Host and its 58 instances.
	if c.gpn != 63 {
		t.Fatalf("%d GetParameterNames", c.gpn)
	}
	acc, _ := h.inv.records()
	if len(acc) != 1 || acc[0].FullDiscoveryTime == nil || len(acc[0].Parameters) != len(c.tree)-1 {
		t.Fatalf("recorded %d parameters (tree %d, root not listed)", len(acc[0].Parameters), len(c.tree))
	}

	for name, content := range map[string]string{
		"typo":   `{"profiles": [{"oui": "00D09E", "discovery": {"batchSizes": 7}}]}`,
		"oui":    `{"profiles": [{"oui": "00D09", "discovery": {"batchSize": 7}}]}`,
		"gpn":    `{"profiles": [{"oui": "00D09E", "discovery": {"gpn": "deep"}}]}`,
		"syntax": `{"profiles": [`,
	} {
		bad := filepath.Join(dir, name+".json")
		if err := os.WriteFile(bad, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		bw := h.worker("bad-"+name, func(c *Config) { c.QuirksFile = bad })
		// Cancelled: a Run that got past the quirks fails to register
		// rather than run on.
		cctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := bw.Run(cctx); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: Run = %v", name, err)
		}
	}
	missing := h.worker("missing", func(c *Config) { c.QuirksFile = filepath.Join(dir, "none.json") })
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if err := missing.Run(cctx); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: Run = %v", err)
	}
}

func waitRegistered(t *testing.T, h *harness, id string) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, func() error {
		live, err := h.store.Registry.Live(context.Background())
		if err != nil {
			return err
		}
		for _, w := range live {
			if w.ID == id {
				return nil
			}
		}
		return fmt.Errorf("worker %s not registered", id)
	})
}

// Discoveries beyond -sessions.max-discoveries are postponed: the session
// records its Inform, asks the CPE with a ScheduleInform to come back
// after about -sessions.discovery-retry, and ends; the device is
// discovered at that later session, once a slot is free. Every way out of
// a session gives its slot back.
func TestDiscoveriesBeyondTheCapArePostponed(t *testing.T) {
	h := newMemoryHarness(t)
	w := h.worker("w1", func(c *Config) { c.MaxDiscoveries = 1; c.DiscoveryRetry = time.Minute })
	a := newCPE(t, "SN-CAP1", tree300())
	b := newCPE(t, "SN-CAP2", tree300())

	exchange(t, w.client, h.open(a, "cap-a", "0 BOOTSTRAP", "1 BOOT"))
	exchange(t, w.client, h.open(b, "cap-b", "0 BOOTSTRAP", "1 BOOT"))
	// b's discovery is postponed: a ScheduleInform, then the end.
	resp := exchange(t, w.client, b.next(nil))
	env, err := cwmp.Decode(resp.Body)
	if err != nil {
		t.Fatalf("reply to b's empty POST: %v (%d)", err, resp.HttpStatus)
	}
	si, ok := env.Body.(*cwmp.ScheduleInform)
	if !ok {
		t.Fatalf("b's empty POST answered %s, want ScheduleInform", env.Body.Method())
	}
	if si.DelaySeconds < 30 || si.DelaySeconds > 90 || si.CommandKey == "" {
		t.Fatalf("ScheduleInform %+v", si)
	}
	ack := b.encode(&cwmp.Envelope{Namespace: env.Namespace, Version: env.Version, Header: cwmp.Header{ID: env.Header.ID, HasID: true}, Body: &cwmp.ScheduleInformResponse{}})
	if resp := exchange(t, w.client, b.next(ack)); resp.HttpStatus != 204 || !resp.SessionEnded {
		t.Fatalf("b's session went on: %d", resp.HttpStatus)
	}
	acc, _ := h.inv.records()
	if len(acc) != 1 || acc[0].SessionId != "cap-b" || acc[0].FullDiscoveryTime != nil {
		t.Fatalf("b recorded %v", acc)
	}
	if _, stored := h.inv.device(testTenant, b.key); len(stored) != 4 {
		t.Fatalf("b's inventory holds %d paths, want its Inform's 4", len(stored))
	}
	if n := w.counter(t, "fleetacs.sessions.discoveries_postponed", "", ""); n != 1 {
		t.Fatalf("discoveries_postponed = %d", n)
	}

	// a holds the slot and discovers.
	if r := a.drive(func(int) sessionsv1.SessionServiceClient { return w.client }); r[len(r)-1].HttpStatus != 204 || a.gpv != 3 {
		t.Fatalf("a's discovery: status %d after %d GPV", r[len(r)-1].HttpStatus, a.gpv)
	}
	// b comes back as asked; the slot is free again.
	exchange(t, w.client, h.open(b, "cap-b2", "3 SCHEDULED", "M ScheduleInform"))
	if r := b.drive(func(int) sessionsv1.SessionServiceClient { return w.client }); r[len(r)-1].HttpStatus != 204 || b.gpv != 3 {
		t.Fatalf("b's later discovery: status %d after %d GPV", r[len(r)-1].HttpStatus, b.gpv)
	}
	acc, _ = h.inv.records()
	if len(acc) != 3 || acc[2].SessionId != "cap-b2" || acc[2].FullDiscoveryTime == nil {
		t.Fatalf("records %d", len(acc))
	}

	// A session that dies in discovery (expired) gives its slot back too.
	c := newCPE(t, "SN-CAP3", tree300())
	exchange(t, w.client, h.open(c, "cap-c", "0 BOOTSTRAP"))
	h.clock.Advance(cwmp.DefaultSessionTimeout + DefaultConfig().IdleGrace)
	w.tick(context.Background())
	d := newCPE(t, "SN-CAP4", tree300())
	exchange(t, w.client, h.open(d, "cap-d", "0 BOOTSTRAP"))
	if got := method(t, exchange(t, w.client, d.next(nil))); got != "GetParameterNames" {
		t.Fatalf("after an expired discovery, the next one got %s", got)
	}
}

// With -sessions.discovery-retry 0 a postponed discovery asks nothing of
// the CPE: the session ends after the Inform, and the device's next
// session, whenever it comes, discovers.
func TestPostponedDiscoveryWithoutScheduleInform(t *testing.T) {
	h := newMemoryHarness(t)
	w := h.worker("w1", func(c *Config) { c.MaxDiscoveries = 1; c.DiscoveryRetry = 0 })
	a := newCPE(t, "SN-CAP5", tree300())
	b := newCPE(t, "SN-CAP6", tree300())
	exchange(t, w.client, h.open(a, "cap-e", "0 BOOTSTRAP"))
	exchange(t, w.client, h.open(b, "cap-f", "0 BOOTSTRAP"))
	if resp := exchange(t, w.client, b.next(nil)); resp.HttpStatus != 204 || !resp.SessionEnded {
		t.Fatalf("b's empty POST answered %d", resp.HttpStatus)
	}
}
