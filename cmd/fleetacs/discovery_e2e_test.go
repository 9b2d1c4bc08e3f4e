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

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fleetacs/fleetacs/pkg/testenv"
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
	start := func() (gw, grpcAddr int, stop func()) {
		gw, adm, grpcAddr := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
		ctx, cancel := context.WithCancel(context.Background())
		var out, errb bytes.Buffer
		exited := make(chan int, 1)
		go func() {
			exited <- run(ctx, []string{
				"-log.level=warn", "-data-dir=" + dataDir, "-gateway.auth-anonymous",
				fmt.Sprintf("-gateway.listen-addr=127.0.0.1:%d", gw),
				fmt.Sprintf("-server.http-addr=127.0.0.1:%d", adm),
				fmt.Sprintf("-server.grpc-addr=127.0.0.1:%d", grpcAddr), "-server.internal-grpc-addr=127.0.0.1:0",
				"all",
			}, &out, &errb, noEnv)
		}()
		testenv.WaitFor(t, 30*time.Second, func() error {
			select {
			case code := <-exited:
				t.Fatalf("fleetacs exited with %d:\n%s", code, errb.String())
			default:
			}
			return httpReady(fmt.Sprintf("http://127.0.0.1:%d/readyz", adm))
		})
		return gw, grpcAddr, func() {
			cancel()
			select {
			case code := <-exited:
				if code != 0 {
					t.Fatalf("fleetacs exited with %d:\n%s", code, errb.String())
				}
			case <-time.After(60 * time.Second):
				t.Fatal("fleetacs did not stop")
			}
		}
	}
	simulate := func(gw, devices int, prefix string) sim.Summary {
		t.Helper()
		s, err := sim.New(sim.Config{
			URL: fmt.Sprintf("http://127.0.0.1:%d/", gw), Model: sim.TR181,
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
	discovered := func(grpcAddr int, prefix string, want int) {
		t.Helper()
		cc, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", grpcAddr), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		// The admin token the first start wrote (docs/security.md).
		token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
		if err != nil {
			t.Fatal(err)
		}
		list, err := inventoryv1.NewInventoryServiceClient(cc).ListDevices(withToken(context.Background(), strings.TrimSpace(string(token))),
			&inventoryv1.ListDevicesRequest{Tenant: "default", PageSize: 100})
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

	gw, grpcAddr, stop := start()
	sum := simulate(gw, 3, "NCA")
	// Each device's first contact completes; the class learns from the
	// crashes, at most two per device (100 and 50 names).
	if sum.SessionsOK < 3 || sum.Errors["crashed"] == 0 || sum.Errors["crashed"] > 6 || sum.SessionsFailed != sum.Errors["crashed"] {
		var b bytes.Buffer
		sum.WriteText(&b)
		t.Fatalf("first run:\n%s", b.String())
	}
	discovered(grpcAddr, "NCA", 3)
	stop()

	gw, grpcAddr, stop = start()
	defer stop()
	sum = simulate(gw, 1, "NCB")
	if sum.SessionsOK != 1 || sum.SessionsFailed != 0 {
		var b bytes.Buffer
		sum.WriteText(&b)
		t.Fatalf("after the restart, a new device of the class:\n%s", b.String())
	}
	discovered(grpcAddr, "NCB", 1)
}
