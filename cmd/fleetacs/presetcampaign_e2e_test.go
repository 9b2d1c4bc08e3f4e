package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	pv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// TestPresetCampaignEndToEnd: `fleetacs all`, six cpesim devices and a
// preset that matches devices tagged "rollout". A campaign applies it in
// two waves (3 devices, then the rest): each device of a wave gets the
// tag and a connection request, its session converges it (the CPE has
// the preset's value), the campaign counts it once the session recorded
// the convergence, and the second wave starts only after the first ended;
// devices of the second wave are untouched until then.
func TestPresetCampaignEndToEnd(t *testing.T) {
	s := startSecured(t, "-notifier.allow-loopback=true", "-tasks.sweep-interval=100ms", "-campaigns.interval=100ms",
		"-sessions.presets-refresh=0")
	events := watchCampaigns(t, s)
	presets := pv1.NewPresetsServiceClient(s.publicConn)
	if _, err := presets.PutPreset(withToken(ctx10(t), s.admin), &pv1.PutPresetRequest{Tenant: "default", Preset: &pv1.Preset{
		Name: "rollout", Match: &pv1.PresetMatch{Tags: []string{"rollout"}},
		Desired: &pv1.DesiredState{Parameters: []*pv1.ParameterValue{{Path: "Device.DeviceInfo.ProvisioningCode", Value: "rolled-{{.SerialNumber}}"}}},
	}}); err != nil {
		t.Fatal(err)
	}
	sm, err := sim.New(sim.Config{URL: "http://" + s.cwmp + "/", Model: sim.TR181, Devices: 6, Seed: 91, SerialPrefix: "RLT",
		ProductClass: "RLT", BootStorm: true, Concurrency: 6, Timeout: 30 * time.Second, ConnReq: sim.ConnReqPerDevice, TimeScale: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := sm.Run(ctx); done <- err }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Errorf("cpesim: %v", err)
		}
	})
	waitFor(t, 30*time.Second, func() error {
		if n := countDevices(t, s, &inventoryv1.DeviceFilter{ProductClass: "RLT"}); n != 6 {
			return fmt.Errorf("%d devices of 6 registered", n)
		}
		return nil
	})
	code := func(d *sim.Device) string {
		v, _ := d.Param("Device.DeviceInfo.ProvisioningCode")
		return v.Value
	}
	for _, d := range sm.Devices() {
		if code(d) == "rolled-"+d.ID().SerialNumber {
			t.Fatalf("device %s has the preset's value before the campaign", d.ID().SerialNumber)
		}
	}

	cc := campaignsv1.NewCampaignsServiceClient(s.publicConn)
	resp, err := cc.CreateCampaign(withToken(ctx10(t), s.admin), &campaignsv1.CreateCampaignRequest{Tenant: "default", Name: "roll out", Spec: &campaignsv1.CampaignSpec{
		Filter:            &inventoryv1.DeviceFilter{ProductClass: "RLT"},
		Action:            &campaignsv1.CampaignSpec_Preset{Preset: &campaignsv1.PresetAction{Name: "rollout"}},
		Waves:             []*campaignsv1.Wave{{Size: &campaignsv1.Wave_Count{Count: 3}}, {Size: &campaignsv1.Wave_Percent{Percent: 100}}},
		MaxInFlight:       10,
		ConnectionRequest: true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetCampaign().GetId()
	waitFor(t, 60*time.Second, func() error {
		c := getCampaign(t, cc, s.admin, id)
		if c.GetState() != campaignsv1.CampaignState_CAMPAIGN_STATE_COMPLETED {
			return fmt.Errorf("campaign %s: %v", c.GetState(), c.GetTotals())
		}
		return nil
	})
	c := getCampaign(t, cc, s.admin, id)
	if c.GetTotals().GetSucceeded() != 6 || len(c.GetWaves()) != 2 || c.GetWaves()[0].GetDevices() != 3 {
		t.Fatalf("campaign: %v %v", c.GetTotals(), c.GetWaves())
	}
	for _, d := range sm.Devices() {
		if got, want := code(d), "rolled-"+d.ID().SerialNumber; got != want {
			t.Errorf("device %s: ProvisioningCode %q, want %q", d.ID().SerialNumber, got, want)
		}
	}
	// The waves in order: the second started once the first completed.
	want := []string{"campaign.wave_started 0", "campaign.wave_completed 0", "campaign.wave_started 1", "campaign.wave_completed 1"}
	waitFor(t, 10*time.Second, func() error {
		var kinds []string
		for _, e := range events.of(id) {
			if e.GetKind() == "campaign.wave_started" || e.GetKind() == "campaign.wave_completed" {
				kinds = append(kinds, fmt.Sprintf("%s %d", e.GetKind(), e.GetCampaign().GetWave()))
			}
		}
		if fmt.Sprint(kinds) != fmt.Sprint(want) {
			return fmt.Errorf("wave events %v, want %v", kinds, want)
		}
		return nil
	})
}
