package main

import (
	"context"
	"flag"
	"testing"
	"time"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/notifier"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// simTargets serves the simulated devices' addresses and credentials as
// the inventory would.
type simTargets map[string]notifier.Target

func (m simTargets) Target(_ context.Context, _, device string) (notifier.Target, error) {
	t, ok := m[device]
	if !ok {
		return notifier.Target{}, notifier.ErrDeviceNotFound
	}
	return t, nil
}

// TestNotifierWakesSimulatedCPEs sends the notifier's HTTP (Digest) and
// UDP (TR-111) connection requests to cpesim's real per-device listeners:
// the right credentials are accepted, a wrong password is refused by the
// CPE (HTTP: auth_failed; UDP: the CPE drops the forged datagram).
func TestNotifierWakesSimulatedCPEs(t *testing.T) {
	s, err := sim.New(sim.Config{
		URL: "http://127.0.0.1:1/", Devices: 2, ConnReq: sim.ConnReqPerDevice, ConnReqUDP: true,
		GiveUp: -1, TimeScale: 0.001, Timeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	result := make(chan sim.Summary, 1)
	go func() {
		sum, _ := s.Run(ctx)
		result <- sum
	}()
	d1, d2 := s.Devices()[0], s.Devices()[1]
	deadline := time.Now().Add(10 * time.Second)
	for d1.ConnectionRequestURL() == "" || d2.UDPConnectionRequestAddress() == "" {
		if time.Now().After(deadline) {
			t.Fatal("the simulator opened no listeners")
		}
		time.Sleep(5 * time.Millisecond)
	}
	u1, p1 := d1.ConnectionRequestCredentials()
	u2, p2 := d2.ConnectionRequestCredentials()
	targets := simTargets{
		"http-ok":   {URL: d1.ConnectionRequestURL(), Username: u1, Password: p1, HasCredentials: true},
		"http-bad":  {URL: d1.ConnectionRequestURL(), Username: u1, Password: "wrong", HasCredentials: true},
		"udp-ok":    {UDPAddress: d2.UDPConnectionRequestAddress(), Username: u2, Password: p2, HasCredentials: true},
		"udp-forge": {UDPAddress: d2.UDPConnectionRequestAddress(), Username: u2, Password: "wrong", HasCredentials: true},
	}
	var cfg notifier.Config
	cfg.RegisterFlags(newTestFlagSet())
	cfg.AllowLoopback, cfg.STUNAddr, cfg.UDPInterval, cfg.PerDeviceInterval, cfg.CoalesceWindow = true, "", time.Millisecond, 0, 0
	n, err := notifier.New(cfg, notifier.Deps{Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	for dev, want := range map[string]tasksv1.WakeStatus{
		"http-ok": tasksv1.WakeStatus_WAKE_STATUS_SENT, "http-bad": tasksv1.WakeStatus_WAKE_STATUS_AUTH_FAILED,
		"udp-ok": tasksv1.WakeStatus_WAKE_STATUS_SENT, "udp-forge": tasksv1.WakeStatus_WAKE_STATUS_SENT, // UDP has no answer
	} {
		if st, tr, detail := n.Wake(ctx, &tasksv1.WakeRequest{Tenant: "t", DeviceId: dev}); st != want {
			t.Errorf("%s: %v over %s (%s), want %v", dev, st, tr, detail, want)
		}
	}
	// Each UDP request went out three times; the CPE acts once on the
	// good one and refuses every copy of the forged one.
	want := func(sum sim.Summary) bool { return sum.ConnReqAccepted == 2 && sum.ConnReqRejected == 1+3 }
	deadline = time.Now().Add(10 * time.Second)
	for !want(s.Snapshot()) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	sum := <-result
	if !want(sum) {
		t.Fatalf("the CPEs accepted %d and refused %d connection requests, want 2 and 4", sum.ConnReqAccepted, sum.ConnReqRejected)
	}
}

func newTestFlagSet() *flag.FlagSet { return flag.NewFlagSet("test", flag.ContinueOnError) }
