package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// TestPostponedDiscoveriesComeBack runs a boot storm of simulated CPEs
// against `fleetacs all` with room for one discovery at a time: the
// devices over the cap get a ScheduleInform, come back when it says (the
// simulator shortens the delay), and every device ends fully discovered
// (docs/sessions.md, "Discovery under load").
func TestPostponedDiscoveriesComeBack(t *testing.T) {
	a := startAllInOne(t, t.TempDir(), "-sessions.max-discoveries=1", "-sessions.discovery-retry=10s")
	defer a.stopClean(t)

	// Eight devices start together: while the first discovers (ten round
	// trips), the others are postponed.
	const devices = 8
	s, err := sim.New(sim.Config{
		URL: a.url(), Model: sim.TR181,
		Devices: devices, Seed: 5, SerialPrefix: "CAP", BootStorm: true, Concurrency: devices,
		Timeout: 30 * time.Second, TimeScale: 0.01, // a ScheduleInform of 5-15 s waits 50-150 ms
	})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer scancel()
	sum, err := s.Run(sctx)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	sum.WriteText(&b)
	if sctx.Err() != nil || sum.SessionsFailed != 0 || sum.Requests["GetParameterNames"] != devices || sum.Requests["ScheduleInform"] == 0 {
		t.Fatalf("storm with one discovery slot:\n%s", b.String())
	}

	inv, authCtx := a.inventory(t)
	list, err := inv.ListDevices(authCtx,
		&inventoryv1.ListDevicesRequest{Tenant: "default", PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetDevices()); n != devices {
		t.Fatalf("%d devices in inventory, want %d", n, devices)
	}
	for _, d := range list.GetDevices() {
		if d.GetFullDiscoveryTime() == nil {
			t.Fatalf("device %s never fully discovered:\n%s", d.GetId(), b.String())
		}
	}
}
