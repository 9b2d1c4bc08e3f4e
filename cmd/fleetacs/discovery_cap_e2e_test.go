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

// TestPostponedDiscoveriesComeBack runs a boot storm of simulated CPEs
// against `fleetacs all` with room for one discovery at a time: the
// devices over the cap get a ScheduleInform, come back when it says (the
// simulator shortens the delay), and every device ends fully discovered
// (docs/sessions.md, "Discovery under load").
func TestPostponedDiscoveriesComeBack(t *testing.T) {
	dataDir := t.TempDir()
	gw, adm, grpcAddr := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb bytes.Buffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{
			"-log.level=warn", "-data-dir=" + dataDir, "-gateway.auth-anonymous",
			"-sessions.max-discoveries=1", "-sessions.discovery-retry=10s",
			fmt.Sprintf("-gateway.listen-addr=127.0.0.1:%d", gw),
			fmt.Sprintf("-server.http-addr=127.0.0.1:%d", adm),
			fmt.Sprintf("-server.grpc-addr=127.0.0.1:%d", grpcAddr), "-server.internal-grpc-addr=127.0.0.1:0",
			"all",
		}, &out, &errb, noEnv)
	}()
	defer func() {
		cancel()
		select {
		case code := <-exited:
			if code != 0 {
				t.Errorf("fleetacs exited with %d:\n%s", code, errb.String())
			}
		case <-time.After(60 * time.Second):
			t.Error("fleetacs did not stop")
		}
	}()
	testenv.WaitFor(t, 30*time.Second, func() error {
		select {
		case code := <-exited:
			t.Fatalf("fleetacs exited with %d:\n%s", code, errb.String())
		default:
		}
		return httpReady(fmt.Sprintf("http://127.0.0.1:%d/readyz", adm))
	})

	// Eight devices start together: while the first discovers (ten round
	// trips), the others are postponed.
	const devices = 8
	s, err := sim.New(sim.Config{
		URL: fmt.Sprintf("http://127.0.0.1:%d/", gw), Model: sim.TR181,
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

	cc, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", grpcAddr), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	list, err := inventoryv1.NewInventoryServiceClient(cc).ListDevices(withToken(context.Background(), strings.TrimSpace(string(token))),
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
