package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// allInOne is `fleetacs all` run in this test process (startProcess) on
// free loopback ports, with CPE authentication off.
type allInOne struct {
	*process
	dataDir      string
	gw, grpcAddr int
	// admin is the admin server's port (-server.http-addr).
	admin int
}

// startAllInOne starts `fleetacs all` on dataDir with extra flags and
// waits until it is ready.
func startAllInOne(t *testing.T, dataDir string, extra ...string) *allInOne {
	t.Helper()
	a := &allInOne{dataDir: dataDir, gw: testenv.FreePort(t), grpcAddr: testenv.FreePort(t)}
	adm := testenv.FreePort(t)
	a.admin = adm
	args := append([]string{
		"-log.level=warn", "-data-dir=" + dataDir, "-gateway.auth-anonymous", "-server.internal-grpc-addr=127.0.0.1:0",
		fmt.Sprintf("-gateway.listen-addr=127.0.0.1:%d", a.gw),
		fmt.Sprintf("-server.http-addr=127.0.0.1:%d", adm),
		fmt.Sprintf("-server.grpc-addr=127.0.0.1:%d", a.grpcAddr),
	}, extra...)
	a.process = startProcess(t, append(args, "all")...)
	testenv.WaitFor(t, 30*time.Second, func() error {
		a.alive(t)
		return httpReady(fmt.Sprintf("http://127.0.0.1:%d/readyz", adm))
	})
	return a
}

// url is the ACS URL of the process's gateway.
func (a *allInOne) url() string { return fmt.Sprintf("http://127.0.0.1:%d/", a.gw) }

// stopClean stops the process and fails the test unless it exited with 0.
func (a *allInOne) stopClean(t *testing.T) {
	t.Helper()
	stop(t, a.process)
	code := <-a.exited
	a.exited <- code
	if code != 0 {
		t.Fatalf("fleetacs exited with %d:\n%s", code, a.stderr.String())
	}
}

// inventory returns a client of the public inventory API and a context
// carrying the admin token the first start wrote (docs/security.md).
func (a *allInOne) inventory(t *testing.T) (inventoryv1.InventoryServiceClient, context.Context) {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(a.dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	cc := dialPlain(t, fmt.Sprintf("127.0.0.1:%d", a.grpcAddr))
	return inventoryv1.NewInventoryServiceClient(cc), withToken(ctx10(t), strings.TrimSpace(string(token)))
}

// TestAllInOneServesCPEs runs `fleetacs all` in this process, with the
// services calling each other directly and through the gRPC transport, and
// drives simulated CPEs through it: first contacts (tree discovery) and then
// periodic Informs. Every device must end up in inventory with its tree.
func TestAllInOneServesCPEs(t *testing.T) {
	for _, inProcess := range []bool{true, false} {
		t.Run(fmt.Sprintf("grpc-in-process=%v", inProcess), func(t *testing.T) {
			const devices = 24
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			a := startAllInOne(t, t.TempDir(), fmt.Sprintf("-server.grpc-in-process=%v", inProcess))

			simulate := func(known bool) sim.Summary {
				t.Helper()
				cfg := sim.Config{
					URL: a.url(), Model: sim.TR181,
					Devices: devices, Seed: 7, SerialPrefix: "AIO", BootStorm: !known, Known: known,
					Concurrency: 6, Timeout: 30 * time.Second,
				}
				if known {
					// Periodic sessions run until stopped: one second of them.
					cfg.Duration = time.Second
				}
				s, err := sim.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				sum, err := s.Run(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if sum.SessionsOK == 0 || sum.SessionsFailed > 0 {
					var b bytes.Buffer
					sum.WriteText(&b)
					t.Fatalf("cpesim (known %v):\n%s\nfleetacs:\n%s", known, b.String(), a.stderr.String())
				}
				return sum
			}
			if sum := simulate(false); sum.SessionsOK < devices {
				t.Fatalf("%d first contacts ok, want %d", sum.SessionsOK, devices)
			}
			simulate(true)

			// The public API wants credentials: the admin token.
			inv, authCtx := a.inventory(t)
			list, err := inv.ListDevices(authCtx, &inventoryv1.ListDevicesRequest{Tenant: "default", PageSize: 100})
			if err != nil {
				t.Fatal(err)
			}
			if n := len(list.GetDevices()); n != devices {
				t.Fatalf("inventory lists %d devices, want %d", n, devices)
			}
			for _, d := range list.GetDevices() {
				if d.GetFullDiscoveryTime() == nil || d.GetDataModelRoot() != "Device." || d.GetLastInformTime() == nil {
					t.Fatalf("device %s: discovery %v, root %q, last Inform %v", d.GetId(), d.GetFullDiscoveryTime(), d.GetDataModelRoot(), d.GetLastInformTime())
				}
			}
			got, err := inv.GetDevice(authCtx, &inventoryv1.GetDeviceRequest{Tenant: "default", Id: list.GetDevices()[0].GetId(),
				Parameters: &inventoryv1.ParameterSelector{}})
			if err != nil {
				t.Fatal(err)
			}
			if n := len(got.GetDevice().GetParameters()); n < 50 {
				t.Fatalf("device %s has %d parameters after its discovery", got.GetDevice().GetId(), n)
			}

			a.stopClean(t)
		})
	}
}
