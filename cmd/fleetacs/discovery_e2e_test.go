package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// TestDiscoveryAdaptsToCrashingCPEs runs `fleetacs all` against simulated
// CPEs whose client crashes on a GetParameterValues of more than 31 names,
// as netcwmp's does, through the gateway, a session worker and the SQLite
// inventory. With the default batch of 100 their BOOTSTRAP would never
// complete; the sessions that die teach the product class a smaller batch
// (100, 50, then 25 works) and every device ends fully discovered. After a
// restart on the same data directory, a new device of the class starts
// with what worked and never crashes.
func TestDiscoveryAdaptsToCrashingCPEs(t *testing.T) {
	dataDir := t.TempDir()
	simulate := func(a *allInOne, devices int, prefix string) sim.Summary {
		t.Helper()
		s, err := sim.New(sim.Config{
			URL: a.url(), Model: sim.TR181,
			Devices: devices, Seed: 3, SerialPrefix: prefix, OUI: "ABCDEF", ProductClass: "NC-SIM", Manufacturer: "Sim",
			BootStorm: true, Concurrency: 2, Timeout: 30 * time.Second, TimeScale: 0.001,
			ConnMode: sim.ConnKeepAlive, CrashGPVAbove: 31,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sum, err := s.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			var b bytes.Buffer
			sum.WriteText(&b)
			t.Fatalf("cpesim did not finish:\n%s", b.String())
		}
		return sum
	}
	discovered := func(a *allInOne, prefix string, want int) {
		t.Helper()
		inv, authCtx := a.inventory(t)
		list, err := inv.ListDevices(authCtx, &inventoryv1.ListDevicesRequest{Tenant: "default", PageSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, d := range list.GetDevices() {
			if d.GetDeviceId().GetSerialNumber()[:len(prefix)] != prefix {
				continue
			}
			if d.GetFullDiscoveryTime() == nil {
				t.Fatalf("device %s never fully discovered", d.GetId())
			}
			n++
		}
		if n != want {
			t.Fatalf("%d devices %s* in inventory, want %d", n, prefix, want)
		}
	}

	a := startAllInOne(t, dataDir)
	sum := simulate(a, 3, "NCA")
	// Each device's first contact completes; the class learns from the
	// crashes, at most two per device (100 and 50 names).
	if sum.SessionsOK < 3 || sum.Errors["crashed"] == 0 || sum.Errors["crashed"] > 6 || sum.SessionsFailed != sum.Errors["crashed"] {
		var b bytes.Buffer
		sum.WriteText(&b)
		t.Fatalf("first run:\n%s", b.String())
	}
	discovered(a, "NCA", 3)
	a.stopClean(t)

	a = startAllInOne(t, dataDir)
	defer a.stopClean(t)
	sum = simulate(a, 1, "NCB")
	if sum.SessionsOK != 1 || sum.SessionsFailed != 0 {
		var b bytes.Buffer
		sum.WriteText(&b)
		t.Fatalf("after the restart, a new device of the class:\n%s", b.String())
	}
	discovered(a, "NCB", 1)
}
