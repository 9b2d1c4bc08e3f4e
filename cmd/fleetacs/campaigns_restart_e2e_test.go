package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// startAt is startSecured on a given data directory and addresses, so
// that a test can stop the process and start another on the same data.
func startAt(t *testing.T, s *secured, extra ...string) {
	t.Helper()
	args := append([]string{"-log.level=error", "-data-dir=" + s.dir, "-gateway.auth-anonymous",
		"-gateway.listen-addr=" + s.cwmp, "-server.http-addr=127.0.0.1:0",
		"-server.grpc-addr=" + s.public, "-server.internal-grpc-addr=" + s.internal,
		"-auth.failure-burst=1000"}, extra...)
	s.p = startProcess(t, append(args, "all")...)
	testenv.WaitFor(t, 30*time.Second, func() error {
		s.p.alive(t)
		if !strings.Contains(s.p.stdout.String(), "FleetACS is ready") {
			return fmt.Errorf("not ready")
		}
		return nil
	})
	b, err := os.ReadFile(filepath.Join(s.dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	s.admin = strings.TrimSpace(string(b))
	s.publicConn = dialPlain(t, s.public)
}

// TestCampaignSurvivesRestart: `fleetacs all` is stopped in the middle of
// a firmware campaign over 60 cpesim devices and started again on the
// same data; the campaign carries on from its store and completes: every
// device has an outcome (those whose download ran while fleetacs was down
// failed it), the others upgraded, none with a second Download.
func TestCampaignSurvivesRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("stops and restarts fleetacs")
	}
	free := func() string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }
	s := &secured{dir: t.TempDir(), public: free(), internal: free(), cwmp: free()}
	flags := []string{"-notifier.allow-loopback=true", "-tasks.sweep-interval=100ms", "-campaigns.interval=100ms"}
	startAt(t, s, flags...)
	runSim(t, sim.Config{URL: "http://" + s.cwmp + "/", Model: sim.TR181, BootStorm: true, Concurrency: 30,
		Devices: 60, Seed: 41, SerialPrefix: "RS", ProductClass: "HGWR", OUI: "00D09E",
		Timeout: 30 * time.Second, ConnReq: sim.ConnReqPerDevice, GiveUp: -1,
		Periodic: true, Interval: 2 * time.Second,
		TimeScale: 0.01, RebootTime: 20 * time.Millisecond, TransferTime: 300 * time.Millisecond, FetchTransfers: true})
	waitFor(t, 60*time.Second, func() error {
		if n := countDevices(t, s, &inventoryv1.DeviceFilter{ProductClass: "HGWR"}); n != 60 {
			return fmt.Errorf("%d devices of 60 registered", n)
		}
		return nil
	})
	uploadFirmware(t, s, "3.0.bin", "3.0", bytes.Repeat([]byte("FW-3.0 "), 5_000))
	cc := campaignsv1.NewCampaignsServiceClient(s.publicConn)
	resp, err := cc.CreateCampaign(withToken(ctx10(t), s.admin), &campaignsv1.CreateCampaignRequest{Tenant: "default", Name: "restart",
		Spec: &campaignsv1.CampaignSpec{Filter: &inventoryv1.DeviceFilter{ProductClass: "HGWR"},
			Action:      &campaignsv1.CampaignSpec_Firmware{Firmware: &campaignsv1.FirmwareAction{Version: "3.0"}},
			MaxInFlight: 8, ConnectionRequest: true, TransferTimeoutSeconds: 15}})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetCampaign().GetId()
	waitFor(t, 60*time.Second, func() error {
		tot := getCampaign(t, cc, s.admin, id).GetTotals()
		if tot.GetSucceeded() < 8 || tot.GetInFlight() == 0 {
			return fmt.Errorf("before the restart: %v", tot)
		}
		return nil
	})
	stop(t, s.p)
	before := getCampaignAfterStop(t, s)
	startAt(t, s, flags...)
	cc = campaignsv1.NewCampaignsServiceClient(s.publicConn)
	waitFor(t, 90*time.Second, func() error {
		c := getCampaign(t, cc, s.admin, id)
		if c.GetState() != campaignsv1.CampaignState_CAMPAIGN_STATE_COMPLETED {
			return fmt.Errorf("after the restart: %s %v", c.GetState(), c.GetTotals())
		}
		return nil
	})
	// Devices that fetched the file while fleetacs was down failed it
	// (9015, the file server unreachable) or had their task time out:
	// those are true outcomes. The rest upgraded.
	fr, err := cc.GetCampaign(withToken(ctx10(t), s.admin), &campaignsv1.GetCampaignRequest{Tenant: "default", Id: id, FailedDevices: 60})
	if err != nil {
		t.Fatal(err)
	}
	tot := fr.GetCampaign().GetTotals()
	if tot.GetSucceeded()+tot.GetFailed() != 60 || tot.GetSucceeded() < 40 {
		t.Fatalf("after the restart: %v (before it: %s)", tot, before)
	}
	for _, d := range fr.GetFailedDevices() {
		if !strings.Contains(d.GetDetail(), "9015") && !strings.Contains(d.GetDetail(), "did not arrive") && !strings.Contains(d.GetDetail(), "never reported") {
			t.Errorf("device %s failed: %q", d.GetDeviceId(), d.GetDetail())
		}
	}
	for dev, n := range downloadTasks(t, s) {
		if n != 1 {
			t.Errorf("device %s got %d Download tasks", dev, n)
		}
	}
	if n := countDevices(t, s, &inventoryv1.DeviceFilter{ProductClass: "HGWR", SoftwareVersion: "3.0"}); uint64(n) != tot.GetSucceeded() {
		t.Errorf("%d devices on 3.0, %d succeeded", n, tot.GetSucceeded())
	}
}

// getCampaignAfterStop describes the state the stopped process left, for
// the failure message: the store's file is there.
func getCampaignAfterStop(t *testing.T, s *secured) string {
	t.Helper()
	fi, err := os.Stat(filepath.Join(s.dir, "campaigns.db"))
	if err != nil {
		t.Fatalf("campaigns store after the stop: %v", err)
	}
	return fmt.Sprintf("campaigns.db of %d bytes", fi.Size())
}
