package main

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestAllInOneServesCPEs runs `fleetacs all` in this process, with the
// services calling each other directly and through the gRPC transport, and
// drives simulated CPEs through it: first contacts (tree discovery) and then
// periodic Informs. Every device must end up in inventory with its tree.
func TestAllInOneServesCPEs(t *testing.T) {
	for _, inProcess := range []bool{true, false} {
		t.Run(fmt.Sprintf("grpc-in-process=%v", inProcess), func(t *testing.T) {
			const devices = 24
			gw, adm, grpcAddr := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out, errb bytes.Buffer
			exited := make(chan int, 1)
			go func() {
				exited <- run(ctx, []string{
					"-log.level=warn", "-data-dir=" + t.TempDir(), "-gateway.auth-anonymous",
					fmt.Sprintf("-gateway.listen-addr=127.0.0.1:%d", gw),
					fmt.Sprintf("-server.http-addr=127.0.0.1:%d", adm),
					fmt.Sprintf("-server.grpc-addr=127.0.0.1:%d", grpcAddr),
					fmt.Sprintf("-server.grpc-in-process=%v", inProcess),
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

			simulate := func(known bool) sim.Summary {
				t.Helper()
				cfg := sim.Config{
					URL: fmt.Sprintf("http://127.0.0.1:%d/", gw), Model: sim.TR181,
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
					t.Fatalf("cpesim (known %v):\n%s\nfleetacs:\n%s", known, b.String(), errb.String())
				}
				return sum
			}
			if sum := simulate(false); sum.SessionsOK < devices {
				t.Fatalf("%d first contacts ok, want %d", sum.SessionsOK, devices)
			}
			simulate(true)

			cc, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", grpcAddr), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			inv := inventoryv1.NewInventoryServiceClient(cc)
			list, err := inv.ListDevices(ctx, &inventoryv1.ListDevicesRequest{Tenant: "default", PageSize: 100})
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
			got, err := inv.GetDevice(ctx, &inventoryv1.GetDeviceRequest{Tenant: "default", Id: list.GetDevices()[0].GetId(),
				Parameters: &inventoryv1.ParameterSelector{}})
			if err != nil {
				t.Fatal(err)
			}
			if n := len(got.GetDevice().GetParameters()); n < 50 {
				t.Fatalf("device %s has %d parameters after its discovery", got.GetDevice().GetId(), n)
			}

			cancel()
			select {
			case code := <-exited:
				if code != 0 {
					t.Fatalf("fleetacs exited with %d:\n%s", code, errb.String())
				}
			case <-time.After(60 * time.Second):
				t.Fatal("fleetacs did not stop")
			}
		})
	}
}
