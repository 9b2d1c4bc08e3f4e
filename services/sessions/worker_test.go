package sessions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
)

// A periodic session of a device whose tree is known: Inform,
// InformResponse, empty POST, 204, and one RecordSession with the Inform.
func TestPeriodicSession(t *testing.T) {
	h := newRedisHarness(t)
	c := newCPE(t, "SN-P1", tree300())
	h.inv.seed(testTenant, c.key, "Device.", t0.Add(-time.Hour))
	w := h.worker("w1", nil)

	resp := exchange(t, w.client, h.open(c, "sess-p1", "2 PERIODIC"))
	if got := method(t, resp); got != "InformResponse" || resp.HttpStatus != 200 || resp.SessionEnded {
		t.Fatalf("Inform answered %s status %d ended %t", got, resp.HttpStatus, resp.SessionEnded)
	}
	if resp.SetSessionCookie != "sess-p1" {
		t.Fatalf("set_session_cookie = %q", resp.SetSessionCookie)
	}
	// The checkpoint is saved before the answer.
	if _, err := h.store.Checkpoints.Load(context.Background(), testTenant, c.key, "sess-p1"); err != nil {
		t.Fatalf("no checkpoint after the Inform: %v", err)
	}

	replies := c.drive(func(int) sessionsv1.SessionServiceClient { return w.client })
	if len(replies) != 1 || replies[0].HttpStatus != 204 || !replies[0].SessionEnded || len(replies[0].Body) != 0 {
		t.Fatalf("empty POST answered %+v", replies)
	}

	acc, ref := h.inv.records()
	if len(acc) != 1 || len(ref) != 0 {
		t.Fatalf("RecordSession accepted %d, refused %d; want 1, 0", len(acc), len(ref))
	}
	r := acc[0]
	if r.SessionId != "sess-p1" || r.FencingToken != c.lease.FencingToken || r.SessionTakeover {
		t.Errorf("record session %s token %d takeover %t", r.SessionId, r.FencingToken, r.SessionTakeover)
	}
	if r.Inform == nil || r.Inform.RemoteIp != "203.0.113.7" || len(r.Inform.Events) != 1 || r.Inform.Events[0].Code != "2 PERIODIC" || !r.Inform.Time.AsTime().Equal(t0) {
		t.Errorf("inform record %v", r.Inform)
	}
	if r.DeviceId.GetSerialNumber() != "SN-P1" || r.DeviceId.GetOui() != "00D09E" {
		t.Errorf("device id %v", r.DeviceId)
	}
	if len(r.Parameters) != 4 || r.FullDiscoveryTime != nil || len(r.RemovedPaths) != 0 {
		t.Errorf("parameters %d, discovery %v, removed %v", len(r.Parameters), r.FullDiscoveryTime, r.RemovedPaths)
	}
	if r.Fields.GetSoftwareVersion() != "2.0.1" || r.Fields.GetConnectionRequestUrl() != "http://10.0.0.2:7547/cr" || r.Fields.GetDataModelRoot() != "Device." {
		t.Errorf("fields %v", r.Fields)
	}
	if r.Fields.SoftwareVersion == nil || r.Fields.ProvisioningCode != nil {
		t.Errorf("fields not in the Inform must stay unset: %v", r.Fields)
	}

	// The session is gone: lease released, checkpoint deleted, memory freed.
	if _, held, err := h.store.Leases.Holder(context.Background(), testTenant, c.key); err != nil || held {
		t.Errorf("lease still held (%v)", err)
	}
	if _, err := h.store.Checkpoints.Load(context.Background(), testTenant, c.key, "sess-p1"); !errors.Is(err, affinity.ErrNoCheckpoint) {
		t.Errorf("checkpoint after the end: %v", err)
	}
	if w.Sessions() != 0 {
		t.Errorf("worker still holds %d sessions", w.Sessions())
	}
	if n := w.counter(t, "fleetacs.sessions.ended", "outcome", "completed"); n != 1 {
		t.Errorf("completed sessions counted %d", n)
	}
}

// A BOOTSTRAP session learns a 300-parameter tree in batches of 100 and
// records it with types, writability, a discovery time and the objects the
// device no longer has.
func TestBootstrapDiscovery(t *testing.T) {
	h := newRedisHarness(t)
	c := newCPE(t, "SN-B1", tree300())
	h.inv.seed(testTenant, c.key, "Device.", time.Time{},
		"Device.DeviceInfo.SoftwareVersion", "Device.DeviceInfo.Gone",
		"Device.Hosts.Host.99.", "Device.Hosts.Host.99.IPAddress",
		"Device.Old.Param", "Device.Hosts.Host.1.IPAddress")
	w := h.worker("w1", nil)

	if got := method(t, exchange(t, w.client, h.open(c, "sess-b1", "0 BOOTSTRAP", "1 BOOT"))); got != "InformResponse" {
		t.Fatalf("Inform answered %s", got)
	}
	replies := c.drive(func(int) sessionsv1.SessionServiceClient { return w.client })
	var methods []string
	for _, r := range replies {
		methods = append(methods, method(t, r))
	}
	want := []string{"GetParameterNames", "GetParameterValues", "GetParameterValues", "GetParameterValues", "204"}
	if !slices.Equal(methods, want) {
		t.Fatalf("ACS sent %v, want %v", methods, want)
	}
	if leafCount(c.tree) != 300 || c.gpv != 3 {
		t.Fatalf("leaves %d, GPV calls %d", leafCount(c.tree), c.gpv)
	}

	acc, _ := h.inv.records()
	if len(acc) != 1 {
		t.Fatalf("RecordSession accepted %d times", len(acc))
	}
	r := acc[0]
	if r.FullDiscoveryTime == nil {
		t.Error("no full_discovery_time")
	}
	wantRemoved := []string{"Device.DeviceInfo.Gone", "Device.Hosts.Host.99.", "Device.Old."}
	if !slices.Equal(r.RemovedPaths, wantRemoved) {
		t.Errorf("removed %v, want %v", r.RemovedPaths, wantRemoved)
	}
	_, stored := h.inv.device(testTenant, c.key)
	if len(stored) != len(c.tree) {
		t.Errorf("inventory holds %d paths, want %d", len(stored), len(c.tree))
	}
	for _, n := range c.tree {
		p := stored[n.name]
		if p == nil {
			t.Errorf("%s not recorded", n.name)
			continue
		}
		if p.Writable == nil || *p.Writable != n.writable {
			t.Errorf("%s writable %v, want %t", n.name, p.Writable, n.writable)
		}
		if strings.HasSuffix(n.name, ".") {
			if p.Value != nil {
				t.Errorf("object %s has a value", n.name)
			}
			continue
		}
		if p.GetValue() != n.value || p.Type != n.typ {
			t.Errorf("%s = %q (%s), want %q (%s)", n.name, p.GetValue(), p.Type, n.value, n.typ)
		}
	}
	if n := w.counter(t, "fleetacs.sessions.discovered_parameters", "", ""); n != int64(len(c.tree)) {
		t.Errorf("discovered_parameters counted %d", n)
	}
}

// Faults on GetParameterValues batches: 9004 halves the batch for good,
// 9005 halves it until the bad name is alone, which is then skipped.
func TestDiscoveryBatchFaults(t *testing.T) {
	h := newMemoryHarness(t)
	c := newCPE(t, "SN-F1", tree300())
	c.maxBatch = 40
	c.bad["Device.Hosts.Host.30.HostName"] = true
	w := h.worker("w1", nil)

	exchange(t, w.client, h.open(c, "sess-f1", "0 BOOTSTRAP"))
	replies := c.drive(func(int) sessionsv1.SessionServiceClient { return w.client })
	if last := replies[len(replies)-1]; last.HttpStatus != 204 {
		t.Fatalf("session ended with %d", last.HttpStatus)
	}
	acc, _ := h.inv.records()
	if len(acc) != 1 || acc[0].FullDiscoveryTime == nil {
		t.Fatalf("records %d, discovery complete %t", len(acc), len(acc) == 1 && acc[0].FullDiscoveryTime != nil)
	}
	_, stored := h.inv.device(testTenant, c.key)
	values := 0
	for _, n := range c.tree {
		if p := stored[n.name]; p != nil && p.Value != nil {
			values++
		}
	}
	if values != 299 {
		t.Errorf("%d values recorded, want 299 (one name skipped)", values)
	}
	if p := stored["Device.Hosts.Host.30.HostName"]; p == nil || p.Value != nil || p.Writable == nil {
		t.Errorf("skipped name recorded as %v; want known, writable set, no value", p)
	}
	// 100 -> 9004 -> 50 -> 9004 -> 25: the ceiling settles at 25, so
	// no GPV asks for more than the CPE takes after the first two.
	if c.gpv > 30 {
		t.Errorf("%d GetParameterValues for 300 names", c.gpv)
	}
	// Every answer counted by method and fault.
	if n := w.counter(t, "fleetacs.sessions.rpcs", "method", "GetParameterValues"); n != int64(c.gpv) {
		t.Errorf("rpcs{GetParameterValues} = %d, the CPE answered %d", n, c.gpv)
	}
	if n := w.counter(t, "fleetacs.sessions.rpcs", "fault", "9004"); n != 2 {
		t.Errorf("rpcs{fault=9004} = %d, want 2", n)
	}
	if n := w.counter(t, "fleetacs.sessions.rpcs", "fault", "9005"); n == 0 {
		t.Error("no rpcs{fault=9005}")
	}
	if n := w.counter(t, "fleetacs.sessions.inform_events", "event", "0 BOOTSTRAP"); n != 1 {
		t.Errorf("inform_events{0 BOOTSTRAP} = %d", n)
	}
}

// A worker dies mid-discovery; the CPE's next POST goes to another worker,
// which resumes from the checkpoint: the replies are the ones a single
// worker sends, nothing is lost and the diff is recorded once.
func TestResumeOnAnotherWorker(t *testing.T) {
	run := func(killAfter int) ([][]byte, map[string]string, int) {
		h := newRedisHarness(t)
		c := newCPE(t, "SN-R1", tree300())
		c.t = t
		a := h.worker("wa", func(c *Config) { c.DiscoveryBatchSize = 50 })
		b := h.worker("wb", func(c *Config) { c.DiscoveryBatchSize = 50 })
		first := exchange(t, a.client, h.open(c, "sess-r1", "0 BOOTSTRAP", "1 BOOT"))
		bodies := [][]byte{first.Body}
		replies := c.drive(func(i int) sessionsv1.SessionServiceClient {
			if killAfter >= 0 && i >= killAfter {
				if i == killAfter {
					a.stop() // the worker is gone, memory and all
				}
				return b.client
			}
			return a.client
		})
		for _, r := range replies {
			bodies = append(bodies, r.Body)
		}
		acc, ref := h.inv.records()
		if len(acc) != 1 || len(ref) != 0 {
			t.Fatalf("kill after %d: RecordSession accepted %d, refused %d", killAfter, len(acc), len(ref))
		}
		if killAfter >= 0 && b.counter(t, "fleetacs.sessions.ended", "outcome", "completed") != 1 {
			t.Fatalf("kill after %d: the second worker did not finish the session", killAfter)
		}
		_, stored := h.inv.device(testTenant, c.key)
		vals := map[string]string{}
		for k, p := range stored {
			vals[k] = p.GetValue() + "|" + p.Type
		}
		return bodies, vals, len(acc)
	}
	refBodies, refVals, _ := run(-1)
	if len(refBodies) != 1+1+6+1 {
		t.Fatalf("reference session had %d replies", len(refBodies))
	}
	for _, kill := range []int{1, 3, 7} {
		bodies, vals, _ := run(kill)
		if len(bodies) != len(refBodies) {
			t.Fatalf("kill after %d: %d replies, reference %d", kill, len(bodies), len(refBodies))
		}
		for i := range bodies {
			if !bytes.Equal(bodies[i], refBodies[i]) {
				t.Fatalf("kill after %d: reply %d differs:\n%s\nreference:\n%s", kill, i, bodies[i], refBodies[i])
			}
		}
		if len(vals) != len(refVals) {
			t.Fatalf("kill after %d: %d paths recorded, reference %d", kill, len(vals), len(refVals))
		}
		for k, v := range refVals {
			if vals[k] != v {
				t.Errorf("kill after %d: %s = %q, reference %q", kill, k, vals[k], v)
			}
		}
	}
}

// The worker keeps its sessions' affinity records (docs/design.md §1):
// stored with the checkpoint of the Inform, for as long as the worker
// would let the session idle, moved to the worker that resumes the
// session, removed at its end.
func TestAffinityRecordKeptByWorker(t *testing.T) {
	ctx := context.Background()
	h := newRedisHarness(t)
	c := newCPE(t, "SN-AR1", tree300())
	a := h.worker("wa", func(c *Config) { c.DiscoveryBatchSize = 100 })
	b := h.worker("wb", func(c *Config) { c.DiscoveryBatchSize = 100 })
	want := affinity.SessionRecord{
		SessionID: "sess-ar1", Worker: "wa", ClientIP: "203.0.113.7", Tenant: testTenant, DeviceKey: c.key,
		Auth: affinity.Auth{Method: affinity.AuthDigest, Principal: c.key},
	}
	wantRecord := func(step string, want *affinity.SessionRecord) {
		t.Helper()
		got, err := h.store.Affinity.Lookup(ctx, "sess-ar1")
		if want == nil {
			if !errors.Is(err, affinity.ErrNoRecord) {
				t.Fatalf("%s: record %+v, %v; want none", step, got, err)
			}
			if got, err := h.store.Affinity.OpenSessionAt(ctx, "203.0.113.7"); !errors.Is(err, affinity.ErrNoRecord) {
				t.Fatalf("%s: session open at the address: %+v, %v", step, got, err)
			}
			return
		}
		if err != nil || got != *want {
			t.Fatalf("%s: record %+v, %v; want %+v", step, got, err, *want)
		}
		if got, err := h.store.Affinity.OpenSessionAt(ctx, "203.0.113.7"); err != nil || got != *want {
			t.Fatalf("%s: session open at the address: %+v, %v", step, got, err)
		}
	}

	req := h.open(c, "sess-ar1", "0 BOOTSTRAP", "1 BOOT")
	req.RemoteAddr = "[::ffff:203.0.113.7]:40001" // indexed as the gateway does: unmapped
	if first := exchange(t, a.client, req); first.SessionEnded {
		t.Fatal("InformResponse ended the session")
	}
	wantRecord("after the Inform", &want)

	// The record outlives an idle session no longer than the worker keeps
	// it: gone with the CPE's session timeout plus the grace.
	idle := cwmp.DefaultSessionTimeout + DefaultConfig().IdleGrace
	h.clock.Advance(idle - time.Second)
	wantRecord("before the record's life ends", &want)

	moved := want
	moved.Worker = "wb"
	replies := c.drive(func(i int) sessionsv1.SessionServiceClient {
		switch i {
		case 0:
			a.stop()
		case 2:
			wantRecord("after the resume", &moved)
		}
		return b.client
	})
	if last := replies[len(replies)-1]; last.HttpStatus != 204 || !last.SessionEnded {
		t.Fatalf("last reply %d, ended %t", last.HttpStatus, last.SessionEnded)
	}
	wantRecord("after the end", nil)
	if _, held, err := h.store.Leases.Holder(ctx, testTenant, c.key); err != nil || held {
		t.Fatalf("lease still held (%v)", err)
	}

	// A session left idle: its record expires with the idle time.
	exchange(t, b.client, h.open(c, "sess-ar1", "2 PERIODIC"))
	kept := want
	kept.Worker = "wb"
	wantRecord("periodic session", &kept)
	h.clock.Advance(idle + time.Second)
	wantRecord("idle past its life", nil)
}

// A new Inform of the same device takes the lease over while the old
// session still looks live: the old worker's results are refused.
func TestLeaseTakeoverFencesOldSession(t *testing.T) {
	h := newRedisHarness(t)
	c := newCPE(t, "SN-T1", tree300())
	h.inv.seed(testTenant, c.key, "Device.", t0.Add(-time.Hour))
	a := h.worker("wa", nil)
	b := h.worker("wb", nil)

	exchange(t, a.client, h.open(c, "old", "2 PERIODIC"))
	old := *c

	h.clock.Advance(time.Second)
	exchange(t, b.client, h.open(c, "new", "1 BOOT"))
	if c.lease.SupersededSessionId != "old" || c.lease.FencingToken <= old.lease.FencingToken {
		t.Fatalf("takeover lease %v after %v", c.lease, old.lease)
	}
	if r := c.drive(func(int) sessionsv1.SessionServiceClient { return b.client }); r[0].HttpStatus != 204 {
		t.Fatalf("new session ended with %d", r[0].HttpStatus)
	}

	// The old session's CPE side sends its empty POST late.
	resp := exchange(t, a.client, old.next(nil))
	if resp.HttpStatus != 204 || !resp.SessionEnded {
		t.Fatalf("old session answered %d ended %t", resp.HttpStatus, resp.SessionEnded)
	}
	acc, ref := h.inv.records()
	if len(acc) != 1 || acc[0].SessionId != "new" || !acc[0].SessionTakeover {
		t.Fatalf("accepted %v", acc)
	}
	if len(ref) != 1 || ref[0].SessionId != "old" {
		t.Fatalf("refused %v", ref)
	}
	if n := a.counter(t, "fleetacs.sessions.lease_lost", "stage", "record"); n != 1 {
		t.Errorf("lease_lost{stage=record} = %d", n)
	}
	if n := b.counter(t, "fleetacs.sessions.takeovers", "", ""); n != 1 {
		t.Errorf("takeovers = %d", n)
	}
	if a.Sessions() != 0 {
		t.Errorf("old worker still holds %d sessions", a.Sessions())
	}
}

// The old worker learns of the takeover from its lease renewal and from its
// checkpoint save, and drops the session without writing.
func TestLeaseTakeoverSeenByRenewalAndCheckpoint(t *testing.T) {
	h := newRedisHarness(t)
	c := newCPE(t, "SN-T2", tree300())
	a := h.worker("wa", nil)
	b := h.worker("wb", nil)

	// Renewal: the old session idles while a new one takes over.
	exchange(t, a.client, h.open(c, "old1", "0 BOOTSTRAP"))
	old := *c
	exchange(t, b.client, h.open(c, "new1", "1 BOOT"))
	h.clock.Advance(DefaultConfig().LeaseTTL / 3)
	a.tick(context.Background())
	if a.Sessions() != 0 {
		t.Fatal("renewal did not drop the superseded session")
	}
	if n := a.counter(t, "fleetacs.sessions.lease_lost", "stage", "renew"); n != 1 {
		t.Errorf("lease_lost{stage=renew} = %d", n)
	}
	// Its late POST finds no session: an empty POST outside one gets 204.
	if resp := exchange(t, a.client, old.next(nil)); resp.HttpStatus != 204 || !resp.SessionEnded {
		t.Errorf("late POST answered %d", resp.HttpStatus)
	}

	// Checkpoint: a session mid-discovery whose next save is fenced.
	c2 := newCPE(t, "SN-T3", tree300())
	exchange(t, a.client, h.open(c2, "old2", "0 BOOTSTRAP"))
	old2 := *c2
	exchange(t, b.client, h.open(c2, "new2", "0 BOOTSTRAP")) // saves under the newer token
	resp := exchange(t, a.client, old2.next(nil))            // would send GetParameterNames
	if resp.HttpStatus != 204 || !resp.SessionEnded {
		t.Fatalf("fenced save answered %d", resp.HttpStatus)
	}
	if n := a.counter(t, "fleetacs.sessions.lease_lost", "stage", "checkpoint"); n != 1 {
		t.Errorf("lease_lost{stage=checkpoint} = %d", n)
	}
	if acc, _ := h.inv.records(); len(acc) != 0 {
		t.Errorf("superseded sessions wrote %d records", len(acc))
	}
}

func TestCapacityAndDraining(t *testing.T) {
	h := newMemoryHarness(t)
	w := h.worker("w1", func(c *Config) { c.MaxSessions = 1; c.DrainTimeout = 0 })
	c1 := newCPE(t, "SN-C1", tree300())
	c2 := newCPE(t, "SN-C2", tree300())
	exchange(t, w.client, h.open(c1, "s1", "0 BOOTSTRAP"))

	_, err := w.client.Exchange(context.Background(), h.open(c2, "s2", "1 BOOT"))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second session: %v, want RESOURCE_EXHAUSTED", err)
	}
	if n := w.counter(t, "fleetacs.sessions.refused", "reason", "capacity"); n != 1 {
		t.Errorf("refused{capacity} = %d", n)
	}

	// Draining: Run's context ends, the session is handed off (its
	// checkpoint stays for the next worker), and every exchange is refused
	// with UNAVAILABLE.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if live, _ := h.store.Registry.Live(context.Background()); len(live) != 0 {
		t.Errorf("drained worker still registered: %v", live)
	}
	// Another worker resumes it.
	wantHandedOff(t, h, w, c1, "s1", "GetParameterNames")
}

// Bodies the worker cannot read, and messages outside any session, are
// answered as CWMP says, never with a gRPC error.
func TestBadInputAnswers(t *testing.T) {
	h := newMemoryHarness(t)
	w := h.worker("w1", nil)
	c := newCPE(t, "SN-M1", tree300())

	// A malformed first message: 400 with fault 8002, the lease released.
	req := h.open(c, "bad1")
	req.Body = []byte("<soap:Envelope><Body><cwmp:Inform>")
	resp := exchange(t, w.client, req)
	if resp.HttpStatus != 400 || !resp.SessionEnded || method(t, resp) != "Fault8002" {
		t.Fatalf("malformed Inform: %d ended %t %s", resp.HttpStatus, resp.SessionEnded, method(t, resp))
	}
	if _, held, _ := h.store.Leases.Holder(context.Background(), testTenant, c.key); held {
		t.Error("lease of a session that never started is still held")
	}

	// Malformed inside a live session: 200 with the fault; the session goes on.
	h.inv.seed(testTenant, c.key, "Device.", t0)
	exchange(t, w.client, h.open(c, "live1", "2 PERIODIC"))
	resp = exchange(t, w.client, c.next([]byte("<not-xml")))
	if resp.HttpStatus != 200 || resp.SessionEnded || method(t, resp) != "Fault8002" {
		t.Fatalf("malformed in session: %d ended %t %s", resp.HttpStatus, resp.SessionEnded, method(t, resp))
	}
	if resp := exchange(t, w.client, c.next(nil)); resp.HttpStatus != 204 {
		t.Fatalf("session did not go on after the fault: %d", resp.HttpStatus)
	}

	// Outside any session: a CPE request gets 400 and fault 8003, an empty
	// POST 204.
	tc := c.encode(&cwmp.Envelope{Namespace: cwmp.NS1_0, Header: cwmp.Header{ID: "tc1", HasID: true},
		Body: &cwmp.TransferComplete{CommandKey: "k", StartTime: cwmp.UnknownTime, CompleteTime: cwmp.UnknownTime}})
	c.sid = "unknown-session"
	resp = exchange(t, w.client, c.next(tc))
	if resp.HttpStatus != 400 || !resp.SessionEnded || method(t, resp) != "Fault8003" {
		t.Fatalf("request outside a session: %d %s", resp.HttpStatus, method(t, resp))
	}
	resp = exchange(t, w.client, c.next(nil))
	if resp.HttpStatus != 204 || !resp.SessionEnded {
		t.Fatalf("empty POST outside a session: %d", resp.HttpStatus)
	}

	// Contract breaches are gRPC errors.
	if _, err := w.client.Exchange(context.Background(), &sessionsv1.ExchangeRequest{Tenant: testTenant}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no session id: %v", err)
	}
	noLease := h.open(c, "nolease", "1 BOOT")
	noLease.Lease = nil
	if _, err := w.client.Exchange(context.Background(), noLease); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Inform without a lease: %v", err)
	}
	if w.Sessions() != 0 {
		t.Errorf("worker holds %d sessions", w.Sessions())
	}
}

// When inventory cannot be read, the Inform gets fault 8005 (retry) and no
// session stays behind.
func TestInventoryDownAsksCPEToRetry(t *testing.T) {
	h := newMemoryHarness(t)
	w := h.worker("w1", nil)
	c := newCPE(t, "SN-D1", tree300())
	h.inv.failGets = 1
	resp := exchange(t, w.client, h.open(c, "s1", "1 BOOT"))
	if resp.HttpStatus != 200 || !resp.SessionEnded || method(t, resp) != "Fault8005" {
		t.Fatalf("Inform with inventory down: %d ended %t %s", resp.HttpStatus, resp.SessionEnded, method(t, resp))
	}
	env, _ := cwmp.Decode(resp.Body)
	if env.Header.ID != "inform-1" {
		t.Errorf("fault carries cwmp:ID %q", env.Header.ID)
	}
	if _, held, _ := h.store.Leases.Holder(context.Background(), testTenant, c.key); held || w.Sessions() != 0 {
		t.Errorf("lease held %t, sessions %d", held, w.Sessions())
	}
}

// When inventory cannot take a session's results, the CPE is told to retry
// the session later (503 with Retry-After), never that it succeeded, and
// nothing of the session stays behind.
func TestRecordFailureAsksCPEToRetryLater(t *testing.T) {
	h := newMemoryHarness(t)
	w := h.worker("w1", nil)
	c := newCPE(t, "SN-R1", tree300())
	h.inv.seed(testTenant, c.key, "Device.", t0)
	exchange(t, w.client, h.open(c, "s1", "2 PERIODIC"))
	h.inv.failRecords = 1
	resp := exchange(t, w.client, &sessionsv1.ExchangeRequest{SessionId: "s1", Tenant: testTenant, DeviceKey: c.key, RemoteAddr: "203.0.113.7:40001"})
	ra := resp.GetRetryAfter().AsDuration()
	if resp.HttpStatus != 503 || !resp.SessionEnded || ra < 30*time.Second || ra > 90*time.Second {
		t.Fatalf("record failure: status %d ended %t retry-after %v", resp.HttpStatus, resp.SessionEnded, ra)
	}
	if _, held, _ := h.store.Leases.Holder(context.Background(), testTenant, c.key); held || w.Sessions() != 0 {
		t.Errorf("lease held %t, sessions %d", held, w.Sessions())
	}
}

// Idle sessions expire after the CPE's session timeout plus the grace;
// abandoned ones end at once. Both record the Inform's facts (time,
// events, address) and not its parameters: the CPE counts the session as
// failed and sends them again (docs/sessions.md, "What a session
// writes").
func TestExpiryAndAbandon(t *testing.T) {
	h := newMemoryHarness(t)
	w := h.worker("w1", nil)
	c := newCPE(t, "SN-E1", tree300())
	h.inv.seed(testTenant, c.key, "Device.", t0)
	exchange(t, w.client, h.open(c, "idle", "2 PERIODIC"))

	h.clock.Advance(cwmp.DefaultSessionTimeout + DefaultConfig().IdleGrace - time.Second)
	w.tick(context.Background())
	if w.Sessions() != 1 {
		t.Fatal("session expired early")
	}
	h.clock.Advance(time.Second)
	w.tick(context.Background())
	if w.Sessions() != 0 {
		t.Fatal("idle session not expired")
	}
	if acc, _ := h.inv.records(); len(acc) != 1 || acc[0].SessionId != "idle" || acc[0].Inform == nil ||
		len(acc[0].Parameters) != 0 || acc[0].Fields.SoftwareVersion != nil {
		t.Fatalf("expired session records %v", acc)
	}
	if n := w.counter(t, "fleetacs.sessions.ended", "outcome", "expired"); n != 1 {
		t.Errorf("ended{expired} = %d", n)
	}
	// From the Inform to the expiry, on the harness's clock.
	if n, sum := w.histogram(t, "fleetacs.sessions.duration", "outcome", "expired"); n != 1 || sum != (cwmp.DefaultSessionTimeout+DefaultConfig().IdleGrace).Seconds() {
		t.Errorf("duration{expired}: %d sessions, %v s", n, sum)
	}

	exchange(t, w.client, h.open(c, "gone", "2 PERIODIC"))
	if _, err := w.client.Abandon(context.Background(), &sessionsv1.AbandonRequest{SessionId: "gone", Tenant: testTenant, DeviceKey: c.key,
		Reason: sessionsv1.AbandonReason_ABANDON_REASON_CONNECTION_TIMEOUT}); err != nil {
		t.Fatal(err)
	}
	if _, held, _ := h.store.Leases.Holder(context.Background(), testTenant, c.key); held || w.Sessions() != 0 {
		t.Errorf("abandoned: lease held %t, sessions %d", held, w.Sessions())
	}
	if acc, _ := h.inv.records(); len(acc) != 2 || acc[1].Inform == nil || len(acc[1].Parameters) != 0 {
		t.Errorf("abandoned session recorded %v", acc)
	}
	if _, err := w.client.Abandon(context.Background(), &sessionsv1.AbandonRequest{SessionId: "never-seen"}); err != nil {
		t.Errorf("abandon of an unknown session: %v", err)
	}
	if n := w.counter(t, "fleetacs.sessions.inform_events", "event", "2 PERIODIC"); n != 2 {
		t.Errorf("inform_events{2 PERIODIC} = %d", n)
	}
}

// Lease renewal happens every third of the TTL while the session runs.
func TestLeaseRenewal(t *testing.T) {
	h := newMemoryHarness(t)
	w := h.worker("w1", func(c *Config) { c.LeaseTTL = 90 * time.Second; c.IdleGrace = time.Hour })
	c := newCPE(t, "SN-L1", tree300())
	exchange(t, w.client, h.open(c, "s1", "0 BOOTSTRAP"))
	before, _, _ := h.store.Leases.Holder(context.Background(), testTenant, c.key)
	h.clock.Advance(29 * time.Second)
	w.tick(context.Background())
	mid, _, _ := h.store.Leases.Holder(context.Background(), testTenant, c.key)
	if !mid.Expires.Equal(before.Expires) {
		t.Fatal("renewed before a third of the TTL")
	}
	h.clock.Advance(time.Second)
	w.tick(context.Background())
	after, held, _ := h.store.Leases.Holder(context.Background(), testTenant, c.key)
	if !held || !after.Expires.Equal(t0.Add(30*time.Second+90*time.Second)) {
		t.Fatalf("lease after renewal: held %t expires %v", held, after.Expires)
	}
}

// A second Inform on the session's cookie means the CPE started over: the
// first session's results are recorded and the new one runs in its place.
func TestInformReplacesSessionOnSameCookie(t *testing.T) {
	h := newMemoryHarness(t)
	w := h.worker("w1", nil)
	c := newCPE(t, "SN-X1", tree300())
	h.inv.seed(testTenant, c.key, "Device.", t0)
	exchange(t, w.client, h.open(c, "same", "2 PERIODIC"))

	h.clock.Advance(time.Second)
	resp := exchange(t, w.client, c.next(c.informBody("1 BOOT")))
	if method(t, resp) != "InformResponse" || resp.SetSessionCookie != "" {
		t.Fatalf("second Inform answered %s cookie %q", method(t, resp), resp.SetSessionCookie)
	}
	if r := exchange(t, w.client, c.next(nil)); r.HttpStatus != 204 {
		t.Fatalf("empty POST answered %d", r.HttpStatus)
	}
	acc, _ := h.inv.records()
	if len(acc) != 2 || acc[0].Inform.Events[0].Code != "2 PERIODIC" || acc[1].Inform.Events[0].Code != "1 BOOT" {
		t.Fatalf("records %v", acc)
	}
	if w.Sessions() != 0 {
		t.Errorf("worker holds %d sessions", w.Sessions())
	}
}

// Many sessions at once on one worker, with the background work running:
// every session completes and records once (run with -race).
func TestConcurrentSessions(t *testing.T) {
	h := newRedisHarness(t)
	w := h.worker("w1", func(c *Config) { c.DiscoveryBatchSize = 64 })
	const n = 24
	stop := make(chan struct{})
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		for {
			select {
			case <-stop:
				return
			default:
				w.tick(context.Background())
			}
		}
	}()
	errs := make(chan error, n)
	for i := range n {
		go func() {
			// A failed helper calls t.Fatalf here, which ends this goroutine
			// with Goexit: the deferred send still reports it.
			result := fmt.Errorf("session %d aborted", i)
			defer func() { errs <- result }()
			c := newCPE(t, "SN-CC"+strconv.Itoa(i), tree300())
			events := "2 PERIODIC"
			if i%3 == 0 {
				events = "0 BOOTSTRAP"
			} else {
				h.inv.seed(testTenant, c.key, "Device.", t0)
			}
			resp, err := w.client.Exchange(context.Background(), h.open(c, "cc-"+strconv.Itoa(i), events))
			if err != nil || resp.HttpStatus != 200 {
				result = fmt.Errorf("session %d Inform: %v %v", i, resp, err)
				return
			}
			body := []byte(nil)
			for {
				resp, err := w.client.Exchange(context.Background(), c.next(body))
				if err != nil {
					result = fmt.Errorf("session %d: %v", i, err)
					return
				}
				if resp.HttpStatus != 200 {
					result = nil
					return
				}
				body = c.answer(resp.Body)
			}
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	<-ticked
	acc, ref := h.inv.records()
	if len(acc) != n || len(ref) != 0 || w.Sessions() != 0 {
		t.Fatalf("records %d refused %d held %d", len(acc), len(ref), w.Sessions())
	}
}

// A worker that went silent while its session moved to another worker
// must not end that session when it wakes up: no release, no write.
func TestPausedWorkerForgetsSessionResumedElsewhere(t *testing.T) {
	h := newRedisHarness(t)
	c := newCPE(t, "SN-Z1", tree300())
	a := h.worker("wa", nil)
	b := h.worker("wb", nil)
	exchange(t, a.client, h.open(c, "moved", "0 BOOTSTRAP"))
	gpn := exchange(t, a.client, c.next(nil))
	if method(t, gpn) != "GetParameterNames" {
		t.Fatalf("sent %s", method(t, gpn))
	}
	// The gateway lost track of A; B resumes with the CPE's answer.
	resp := exchange(t, b.client, c.next(c.answer(gpn.Body)))
	if method(t, resp) != "GetParameterValues" {
		t.Fatalf("resumed session sent %s", method(t, resp))
	}
	h.clock.Advance(cwmp.DefaultSessionTimeout + DefaultConfig().IdleGrace)
	a.tick(context.Background())
	if a.Sessions() != 0 {
		t.Fatal("the paused worker kept the session")
	}
	if _, held, _ := h.store.Leases.Holder(context.Background(), testTenant, c.key); !held {
		t.Fatal("the paused worker released the lease of a running session")
	}
	if acc, _ := h.inv.records(); len(acc) != 0 {
		t.Fatalf("the paused worker recorded %d diffs", len(acc))
	}
	body := c.answer(resp.Body)
	for {
		resp = exchange(t, b.client, c.next(body))
		if resp.HttpStatus != 200 {
			break
		}
		body = c.answer(resp.Body)
	}
	if acc, _ := h.inv.records(); len(acc) != 1 || acc[0].FullDiscoveryTime == nil {
		t.Fatalf("records after the resumed session: %d", len(acc))
	}
}

// A request routed back to a worker whose copy of the session is stale
// (another worker served the session since) is answered from the stored
// checkpoint, as the other worker would have answered it.
func TestStaleCopyReplaysFromCheckpoint(t *testing.T) {
	h := newRedisHarness(t)
	c := newCPE(t, "SN-S1", tree300())
	a := h.worker("wa", func(c *Config) { c.DiscoveryBatchSize = 100 })
	b := h.worker("wb", func(c *Config) { c.DiscoveryBatchSize = 100 })
	exchange(t, a.client, h.open(c, "stale", "0 BOOTSTRAP"))
	gpn := exchange(t, a.client, c.next(nil))
	gpv1 := exchange(t, b.client, c.next(c.answer(gpn.Body))) // B resumes
	// The next POST goes back to A, which still holds the GPN step.
	gpv2 := exchange(t, a.client, c.next(c.answer(gpv1.Body)))
	if method(t, gpv2) != "GetParameterValues" || bytes.Equal(gpv2.Body, gpv1.Body) {
		t.Fatalf("stale worker answered %s", method(t, gpv2))
	}
	env, _ := cwmp.Decode(gpv2.Body)
	if got := env.Body.(*cwmp.GetParameterValues).ParameterNames[0]; got != "Device.Hosts.Host.19.IPAddress" {
		t.Fatalf("second batch starts at %s", got)
	}
	body := c.answer(gpv2.Body)
	for {
		resp := exchange(t, a.client, c.next(body))
		if resp.HttpStatus != 200 {
			break
		}
		body = c.answer(resp.Body)
	}
	if acc, _ := h.inv.records(); len(acc) != 1 || acc[0].FullDiscoveryTime == nil || len(acc[0].Parameters) != len(c.tree) {
		t.Fatalf("records %v", acc)
	}
}

// A checkpoint the previous worker version saved (format 1, a discovery
// half done, a GetParameterValues outstanding) is resumed: the answer to
// that request goes on with the discovery where it stood, and the session
// records the whole tree.
func TestResumeFormatOneCheckpoint(t *testing.T) {
	testResumeOldCheckpoint(t, "testdata/checkpoint-v1.json")
}

// A checkpoint of format 2 (the whole state as JSON, before the journal)
// is resumed too; its next save writes the journal whole.
func TestResumeFormatTwoCheckpoint(t *testing.T) {
	testResumeOldCheckpoint(t, "testdata/checkpoint-v2.json")
}

func testResumeOldCheckpoint(t *testing.T, file string) {
	h := newRedisHarness(t)
	c := newCPE(t, "SN-OLD", tree300())
	cp, outstanding := loadCheckpoint(t, file, c.key)
	l, err := h.store.Leases.Acquire(context.Background(), testTenant, c.key, "sess-old", 2*time.Minute)
	if err != nil || l.FencingToken != cp.FencingToken {
		t.Fatalf("lease token %d (%v), checkpoint %d", l.FencingToken, err, cp.FencingToken)
	}
	if err := h.store.Checkpoints.Save(context.Background(), cp, time.Minute); err != nil {
		t.Fatal(err)
	}
	// The first worker resumes the old checkpoint and saves it in the
	// current format; the second resumes that.
	w := h.worker("w-new", nil)
	w2 := h.worker("w-newer", nil)
	c.sid = "sess-old"
	body := c.answer(c.encode(outstanding))
	var replies []*sessionsv1.ExchangeResponse
	for i := 0; ; i++ {
		cl := w.client
		if i > 0 {
			cl = w2.client
		}
		resp := exchange(t, cl, c.next(body))
		replies = append(replies, resp)
		if resp.HttpStatus != 200 {
			break
		}
		body = c.answer(resp.Body)
	}
	// 300 leaves in batches of 100: the checkpoint's request asked for
	// the first, two more follow, then the end.
	if len(replies) != 3 || method(t, replies[0]) != "GetParameterValues" || replies[2].HttpStatus != 204 {
		t.Fatalf("%d replies, last %d", len(replies), replies[len(replies)-1].HttpStatus)
	}
	env, _ := cwmp.Decode(replies[0].Body)
	if got := env.Body.(*cwmp.GetParameterValues).ParameterNames[0]; got != "Device.Hosts.Host.19.IPAddress" || env.Header.ID != "sess-old.3" {
		t.Fatalf("next batch starts at %s, id %s", got, env.Header.ID)
	}
	acc, _ := h.inv.records()
	if len(acc) != 1 || acc[0].FullDiscoveryTime == nil || len(acc[0].Parameters) != len(c.tree) {
		t.Fatalf("records %d", len(acc))
	}
	_, stored := h.inv.device(testTenant, c.key)
	for _, n := range c.tree {
		if p := stored[n.name]; p == nil || (!strings.HasSuffix(n.name, ".") && p.GetValue() != n.value) {
			t.Fatalf("%s recorded as %v", n.name, p)
		}
	}
}

// A checkpoint of a format this worker does not know is refused cleanly:
// dropped, and the request answered as outside any session.
func TestUnknownCheckpointFormatRefused(t *testing.T) {
	h := newMemoryHarness(t)
	c := newCPE(t, "SN-OLD", tree300())
	cp, outstanding := loadCheckpoint(t, "testdata/checkpoint-v1.json", c.key)
	cp.Data = bytes.Replace(cp.Data, []byte(`"format": 1`), []byte(`"format": 99`), 1)
	if _, err := h.store.Leases.Acquire(context.Background(), testTenant, c.key, "sess-old", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := h.store.Checkpoints.Save(context.Background(), cp, time.Minute); err != nil {
		t.Fatal(err)
	}
	w := h.worker("w-new", nil)
	c.sid = "sess-old"
	resp := exchange(t, w.client, c.next(c.answer(c.encode(outstanding))))
	if !resp.SessionEnded || resp.HttpStatus == 200 {
		t.Fatalf("answered %d ended %t", resp.HttpStatus, resp.SessionEnded)
	}
	if _, err := h.store.Checkpoints.Load(context.Background(), testTenant, c.key, "sess-old"); !errors.Is(err, affinity.ErrNoCheckpoint) {
		t.Fatalf("unusable checkpoint kept: %v", err)
	}
	if n := w.counter(t, "fleetacs.sessions.failures", "op", "checkpoint"); n != 1 {
		t.Errorf("failures{checkpoint} = %d", n)
	}
}

// loadCheckpoint reads an old checkpoint from testdata: the checkpoint and
// the request it has outstanding, as the CPE received it.
func loadCheckpoint(t *testing.T, file, deviceKey string) (affinity.Checkpoint, *cwmp.Envelope) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		FencingToken uint64          `json:"fencingToken"`
		Seq          uint64          `json:"seq"`
		Data         json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var snap struct {
		CWMP cwmp.State `json:"cwmp"`
	}
	if err := json.Unmarshal(f.Data, &snap); err != nil || snap.CWMP.Outstanding == nil {
		t.Fatalf("checkpoint's outstanding request: %v", err)
	}
	o := snap.CWMP.Outstanding
	env := &cwmp.Envelope{Namespace: snap.CWMP.Namespace, Version: snap.CWMP.Version,
		Header: cwmp.Header{ID: o.ID, HasID: true}, Body: o.Request.Message}
	return affinity.Checkpoint{Tenant: testTenant, DeviceKey: deviceKey, SessionID: "sess-old",
		FencingToken: f.FencingToken, Seq: f.Seq, Data: f.Data}, env
}

// A worker whose affinity store lives in its own process (Deps.Local)
// keeps its sessions' state in memory: each exchange still saves a
// checkpoint, numbered and fenced by the lease token, but without state;
// the discovery completes as with a shared store, and a newer session's
// save still fences the old one off.
func TestLocalWorkerKeepsStateInMemory(t *testing.T) {
	h := newLocalHarness(t)
	c := newCPE(t, "SN-L1", tree300())
	w := h.worker("w1", nil)
	ctx := context.Background()

	exchange(t, w.client, h.open(c, "sess-l1", "0 BOOTSTRAP", "1 BOOT"))
	body := []byte(nil)
	var seqs []uint64
	for {
		resp := exchange(t, w.client, c.next(body))
		if resp.HttpStatus != 200 {
			break
		}
		cp, err := h.store.Checkpoints.Load(ctx, testTenant, c.key, "sess-l1")
		if err != nil {
			t.Fatalf("no checkpoint after %s: %v", method(t, resp), err)
		}
		if len(cp.Data) != 0 {
			t.Fatalf("local checkpoint after %s holds %d bytes of state", method(t, resp), len(cp.Data))
		}
		if cp.FencingToken != c.lease.FencingToken {
			t.Fatalf("checkpoint token %d, lease %d", cp.FencingToken, c.lease.FencingToken)
		}
		seqs = append(seqs, cp.Seq)
		body = c.answer(resp.Body)
	}
	if len(seqs) != 4 || !slices.IsSorted(seqs) || seqs[0] == seqs[3] {
		t.Fatalf("checkpoint seqs %v", seqs)
	}
	acc, _ := h.inv.records()
	if len(acc) != 1 || acc[0].FullDiscoveryTime == nil {
		t.Fatalf("records %d", len(acc))
	}
	if _, stored := h.inv.device(testTenant, c.key); len(stored) != len(c.tree) {
		t.Fatalf("inventory holds %d paths, want %d", len(stored), len(c.tree))
	}
	if _, err := h.store.Checkpoints.Load(ctx, testTenant, c.key, "sess-l1"); err != affinity.ErrNoCheckpoint {
		t.Fatalf("checkpoint after the session: %v", err)
	}

	// Fencing: a newer session of the device saves under a newer token;
	// the old one's next save is refused and it ends without writing.
	c2 := newCPE(t, "SN-L2", tree300())
	exchange(t, w.client, h.open(c2, "old", "0 BOOTSTRAP"))
	old := *c2
	exchange(t, w.client, h.open(c2, "new", "0 BOOTSTRAP"))
	if resp := exchange(t, w.client, old.next(nil)); resp.HttpStatus != 204 || !resp.SessionEnded {
		t.Fatalf("fenced save answered %d", resp.HttpStatus)
	}
	if n := w.counter(t, "fleetacs.sessions.lease_lost", "stage", "checkpoint"); n != 1 {
		t.Errorf("lease_lost{stage=checkpoint} = %d", n)
	}
}

// With a shared store, a discovery's checkpoints grow by appends: each
// save's journal extends the previous one, and the head stays the size of
// one exchange's state (the outstanding request), whatever the tree's
// size, so a discovery costs its tree once to save, not once per exchange.
func TestCheckpointJournalAppendOnly(t *testing.T) {
	h := newRedisHarness(t)
	c := newCPE(t, "SN-J1", treeHosts(126))
	w := h.worker("w1", nil)
	ctx := context.Background()

	exchange(t, w.client, h.open(c, "sess-j1", "0 BOOTSTRAP", "1 BOOT"))
	var prev []byte
	written := 0
	body := []byte(nil)
	for {
		resp := exchange(t, w.client, c.next(body))
		if resp.HttpStatus != 200 {
			break
		}
		cp, err := h.store.Checkpoints.Load(ctx, testTenant, c.key, "sess-j1")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(cp.Journal, prev) {
			t.Fatalf("after %s the journal does not extend the previous one", method(t, resp))
		}
		if len(cp.Data) > 12<<10 {
			t.Fatalf("after %s the head holds %d bytes", method(t, resp), len(cp.Data))
		}
		written += len(cp.Data) + len(cp.Journal) - len(prev)
		prev = cp.Journal
		body = c.answer(resp.Body)
	}
	// The tree's names and values, once, and a head per exchange.
	if len(prev) < 30<<10 || written > 2*len(prev)+9*12<<10 {
		t.Fatalf("journal %d bytes, %d bytes written over the session", len(prev), written)
	}
	if acc, _ := h.inv.records(); len(acc) != 1 || len(acc[0].Parameters) != len(c.tree) {
		t.Fatalf("records %d", len(acc))
	}
}

// flakySessions loses saves of a session as a store or network can: a save
// applied whose reply is lost (the worker sees an error), and a save never
// applied whose reply says it was (as after a failover to a replica that
// missed it). Saves are counted from 1.
type flakySessions struct {
	affinity.Sessions
	mu                  sync.Mutex
	n                   int
	lostReply, vanished int
}

func (f *flakySessions) Save(ctx context.Context, s affinity.SessionSave) error {
	f.mu.Lock()
	f.n++
	n := f.n
	f.mu.Unlock()
	switch n {
	case f.vanished:
		return nil
	case f.lostReply:
		_ = f.Sessions.Save(ctx, s)
		return errors.New("reply lost")
	}
	return f.Sessions.Save(ctx, s)
}

// Whatever becomes of a save, the next one leaves a journal that another
// worker resumes from exactly: after an error the journal is written
// whole, and an append that finds a gap (a save that vanished) is written
// whole at once.
func TestCheckpointJournalRecovers(t *testing.T) {
	for _, tc := range []struct {
		name                string
		lostReply, vanished int
	}{
		{"reply lost", 3, 0},
		{"save vanished", 0, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newRedisHarness(t)
			c := newCPE(t, "SN-JR", tree300())
			flaky := &flakySessions{Sessions: h.store.Sessions, lostReply: tc.lostReply, vanished: tc.vanished}
			h.store.Sessions = flaky
			a := h.worker("wa", func(c *Config) { c.DiscoveryBatchSize = 50 })
			b := h.worker("wb", func(c *Config) { c.DiscoveryBatchSize = 50 })
			exchange(t, a.client, h.open(c, "sess-jr", "0 BOOTSTRAP", "1 BOOT"))
			// Saves: 1 the Inform, 2 after the GPN, 3 after the first GPV
			// (lost), 4 after the second; then worker b takes over.
			replies := c.drive(func(i int) sessionsv1.SessionServiceClient {
				if i >= 4 {
					if i == 4 {
						a.stop()
					}
					return b.client
				}
				return a.client
			})
			if last := replies[len(replies)-1]; last.HttpStatus != 204 {
				t.Fatalf("session ended with %d", last.HttpStatus)
			}
			if c.gpv != 6 {
				t.Fatalf("%d GetParameterValues for 300 names in batches of 50", c.gpv)
			}
			acc, _ := h.inv.records()
			if len(acc) != 1 || acc[0].FullDiscoveryTime == nil {
				t.Fatalf("records %d", len(acc))
			}
			_, stored := h.inv.device(testTenant, c.key)
			for _, n := range c.tree {
				if p := stored[n.name]; p == nil || (!strings.HasSuffix(n.name, ".") && p.GetValue() != n.value) {
					t.Fatalf("%s recorded as %v", n.name, p)
				}
			}
		})
	}
}
