package notifier

import (
	"context"
	"strings"
	"testing"
	"time"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestAdmissionCoalescesAndLimits(t *testing.T) {
	clk := newClock()
	a := newAdmission(clk.Now, 30*time.Second, 5*time.Second, 2, 2)
	d1, d2, d3 := deviceRef{"t", "d1"}, deviceRef{"t", "d2"}, deviceRef{"t", "d3"}
	want := func(d deviceRef, st tasksv1.WakeStatus) {
		t.Helper()
		if got, detail := a.admit(d, time.Time{}); got != st {
			t.Fatalf("%v: %v (%s), want %v", d, got, detail, st)
		}
	}
	want(d1, 0)
	want(d1, tasksv1.WakeStatus_WAKE_STATUS_COALESCED) // in flight
	a.done(d1, true)
	clk.Add(29 * time.Second)
	want(d1, tasksv1.WakeStatus_WAKE_STATUS_COALESCED) // sent 29s ago
	clk.Add(time.Second)
	want(d1, 0) // window over
	a.done(d1, false)
	clk.Add(4 * time.Second)
	want(d1, tasksv1.WakeStatus_WAKE_STATUS_RATE_LIMITED) // failed 4s ago: per-device interval
	clk.Add(time.Second)
	// Global bucket: 2 tokens, 2 per second; d1 took the last one 5s ago,
	// so it is full again.
	want(d1, 0)
	want(d2, 0)
	want(d3, tasksv1.WakeStatus_WAKE_STATUS_RATE_LIMITED) // bucket empty
	clk.Add(500 * time.Millisecond)
	want(d3, 0) // one token back
	a.done(d1, false)
	a.done(d2, false)
	a.done(d3, false)
	clk.Add(time.Minute)
	want(deviceRef{"t", "d4"}, 0) // sweeps
	if n := a.size(); n != 1 {
		t.Fatalf("%d devices remembered after their windows, want 1", n)
	}
}

// TestAdmissionAfterInform: a device that informed since its last
// connection request answered it: the next one goes out at once, neither
// coalesced nor held back by the per-device interval.
func TestAdmissionAfterInform(t *testing.T) {
	clk := newClock()
	clk.Add(300 * time.Microsecond) // within a millisecond
	a := newAdmission(clk.Now, 30*time.Second, 5*time.Second, 0, 1)
	d := deviceRef{"t", "d"}
	if st, _ := a.admit(d, time.Time{}); st != 0 {
		t.Fatalf("first: %v", st)
	}
	sent := clk.Now()
	a.done(d, true)
	clk.Add(time.Second)
	if st, _ := a.admit(d, sent.Add(-time.Minute)); st != tasksv1.WakeStatus_WAKE_STATUS_COALESCED {
		t.Fatalf("informed before the request: %v, want coalesced", st)
	}
	// The store keeps milliseconds: an Inform in the request's millisecond,
	// read back truncated, is after it.
	if st, _ := a.admit(d, sent.Truncate(time.Millisecond)); st != 0 {
		t.Fatalf("informed in the request's millisecond: %v, want sent", st)
	}
	if !a.inFlight(d) {
		t.Fatal("not in flight after admission")
	}
	a.done(d, false)
	clk.Add(time.Second)
	if st, _ := a.admit(d, sent.Add(100*time.Millisecond)); st != tasksv1.WakeStatus_WAKE_STATUS_RATE_LIMITED {
		t.Fatalf("failed 1s ago, no Inform since: %v, want rate limited", st)
	}
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	c.RegisterFlags(newFlagSet())
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.AllowLoopback || strings.Contains(c.AllowedNetworks, "127.") {
		t.Fatalf("loopback allowed by default: %q", c.AllowedNetworks)
	}
	bad := c
	bad.AllowedNetworks = "10.0.0.0/8,not-a-cidr"
	if bad.Validate() == nil {
		t.Fatal("a bad CIDR passed")
	}
	bad = c
	bad.AllowedNetworks = ""
	if bad.Validate() == nil {
		t.Fatal("no networks passed")
	}
}

func TestUDPRefusedAddress(t *testing.T) {
	cfg := testConfig()
	cfg.AllowLoopback = false
	targets := &fakeTargets{}
	targets.set("d", Target{UDPAddress: "localhost:7547", Username: "u", Password: "p", HasCredentials: true})
	targets.set("m", Target{UDPAddress: "169.254.169.254", Username: "u", Password: "p", HasCredentials: true})
	s := newService(t, cfg, Deps{Targets: targets})
	for _, d := range []string{"d", "m"} {
		if r := s.wake(context.Background(), &tasksv1.WakeRequest{Tenant: "t", DeviceId: d}); r.status != tasksv1.WakeStatus_WAKE_STATUS_ADDRESS_REFUSED || r.transport != "udp" {
			t.Fatalf("%s: %v %s %q", d, r.status, r.transport, r.detail)
		}
	}
}

// TestWakeWaitsForTheGlobalRate: over -notifier.rate a request waits for a
// token rather than being shed, as long as it stays within
// -notifier.max-wake-age; past that it is answered rate_limited.
func TestWakeWaitsForTheGlobalRate(t *testing.T) {
	targets := &fakeTargets{}
	for _, d := range []string{"a", "b", "c"} {
		targets.set(d, Target{Username: "u", Password: "p", HasCredentials: true}) // no address: NO_ADDRESS once admitted
	}
	for _, tt := range []struct {
		maxAge time.Duration
		want   tasksv1.WakeStatus
	}{
		{2 * time.Second, tasksv1.WakeStatus_WAKE_STATUS_NO_ADDRESS},
		{20 * time.Millisecond, tasksv1.WakeStatus_WAKE_STATUS_RATE_LIMITED},
	} {
		cfg := testConfig()
		cfg.Rate, cfg.Burst, cfg.MaxWakeAge = 20, 1, tt.maxAge
		s := newService(t, cfg, Deps{Targets: targets})
		now := timestamppb.Now()
		if r := s.wake(context.Background(), &tasksv1.WakeRequest{Tenant: "t", DeviceId: "a", RequestTime: now}); r.status != tasksv1.WakeStatus_WAKE_STATUS_NO_ADDRESS {
			t.Fatalf("first request: %v %q", r.status, r.detail)
		}
		// The bucket is empty: the next token comes in 50ms.
		if r := s.wake(context.Background(), &tasksv1.WakeRequest{Tenant: "t", DeviceId: "b", RequestTime: now}); r.status != tt.want {
			t.Fatalf("max age %s: second request %v %q, want %v", tt.maxAge, r.status, r.detail, tt.want)
		}
	}
}
