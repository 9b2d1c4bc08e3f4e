package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	pv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// fwFleet records each simulated device's sessions and the Downloads it
// got, by product class (one device per class).
type fwFleet struct {
	mu        sync.Mutex
	sessions  map[string][]sim.SessionReport
	downloads map[string][]string // product class -> URLs
	devices   map[string]*sim.Device
}

func (f *fwFleet) reports(class string) []sim.SessionReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sessions[class])
}

func (f *fwFleet) downloadsOf(class string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.downloads[class])
}

// periodic asks the device of class for a periodic session and returns
// its report once it ended well.
func (f *fwFleet) periodic(t *testing.T, class string) sim.SessionReport {
	t.Helper()
	before := len(f.reports(class))
	f.devices[class].Inform(cwmp.Event{Code: "2 PERIODIC"})
	var got sim.SessionReport
	waitFor(t, 30*time.Second, func() error {
		for _, r := range f.reports(class)[before:] {
			if r.OK && len(r.Events) > 0 && r.Events[0].Code == "2 PERIODIC" {
				got = r
				return nil
			}
		}
		return fmt.Errorf("no periodic session of %s yet", class)
	})
	return got
}

func eventsOf(ce *campaignEvents, kind, device string) []*eventsv1.Event {
	ce.mu.Lock()
	defer ce.mu.Unlock()
	var out []*eventsv1.Event
	for _, e := range ce.events {
		if e.GetKind() == kind && e.GetDeviceId() == device {
			out = append(out, e)
		}
	}
	return out
}

// TestPresetFirmwareEndToEnd: `fleetacs all` and three fresh cpesim
// devices (-fetch), one per product class, with presets asking for a
// firmware version. The HGW device, for whose class a file of the version
// exists, gets one Download with a URL signed for it, really fetches the
// file through /files/, reboots on the new version, and the presets
// converge: its next periodic session sends nothing. The ONT device's
// preset asks for the same version, whose only file is for HGW (product
// class mismatch), the XGW device's for a version without any file:
// neither gets a Download, the reason is published (preset.firmware_no_file)
// and their next sessions send nothing either (the back-off). The BAD
// device gets its Download but fails the transfer: the failure is
// published with the TransferComplete's fault, and its next session sends
// no second Download (the back-off).
func TestPresetFirmwareEndToEnd(t *testing.T) {
	s := startSecured(t, "-sessions.presets-refresh=0")
	events := watchKinds(t, s, "preset")
	uploadFirmware(t, s, "2.0.bin", "2.0", bytes.Repeat([]byte("FW-2.0 "), 20_000), "HGW")
	uploadFirmware(t, s, "3.0.bin", "3.0", bytes.Repeat([]byte("FW-3.0 "), 1_000), "BAD")
	presets := pv1.NewPresetsServiceClient(s.publicConn)
	for _, p := range []*pv1.Preset{
		{Name: "fw-hgw", Match: &pv1.PresetMatch{ProductClass: "HGW"}, Desired: &pv1.DesiredState{FirmwareVersion: "2.0"}},
		{Name: "fw-ont", Match: &pv1.PresetMatch{ProductClass: "ONT"}, Desired: &pv1.DesiredState{FirmwareVersion: "2.0"}},
		{Name: "fw-xgw", Match: &pv1.PresetMatch{ProductClass: "XGW"}, Desired: &pv1.DesiredState{FirmwareVersion: "9.9"}},
		{Name: "fw-bad", Match: &pv1.PresetMatch{ProductClass: "BAD"}, Desired: &pv1.DesiredState{FirmwareVersion: "3.0"}},
	} {
		if _, err := presets.PutPreset(withToken(ctx10(t), s.admin), &pv1.PutPresetRequest{Tenant: "default", Preset: p}); err != nil {
			t.Fatal(err)
		}
	}

	f := &fwFleet{sessions: map[string][]sim.SessionReport{}, downloads: map[string][]string{}, devices: map[string]*sim.Device{}}
	for i, class := range []string{"HGW", "ONT", "XGW", "BAD"} {
		fail := 0.0
		if class == "BAD" {
			fail = 1 // every transfer fails (9010)
		}
		sm, err := sim.New(sim.Config{FailTransfers: fail, URL: "http://" + s.cwmp + "/", Model: sim.TR181, Devices: 1, Seed: uint64(70 + i),
			SerialPrefix: "FW" + class, ProductClass: class, BootStorm: true, Concurrency: 1, Timeout: 30 * time.Second,
			ConnReq: sim.ConnReqPerDevice, TimeScale: 0.01, RebootTime: 20 * time.Millisecond, TransferTime: 20 * time.Millisecond,
			FetchTransfers: true,
			OnSession: func(r sim.SessionReport) {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.sessions[class] = append(f.sessions[class], r)
			},
			OnRequest: func(_ *sim.Device, m cwmp.Message) bool {
				if dl, ok := m.(*cwmp.Download); ok {
					f.mu.Lock()
					f.downloads[class] = append(f.downloads[class], dl.URL)
					f.mu.Unlock()
				}
				return false
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		f.devices[class] = sm.Devices()[0]
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { _, err := sm.Run(ctx); done <- err }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil && ctx.Err() == nil {
				t.Errorf("cpesim %s: %v", class, err)
			}
		})
	}
	inv := inventoryv1.NewInventoryServiceClient(s.publicConn)
	keys := map[string]string{}
	waitFor(t, 30*time.Second, func() error {
		for _, class := range []string{"HGW", "ONT", "XGW", "BAD"} {
			resp, err := inv.ListDevices(withToken(ctx10(t), s.admin), &inventoryv1.ListDevicesRequest{Tenant: "default",
				Filter: &inventoryv1.DeviceFilter{ProductClass: class}})
			if err != nil {
				return err
			}
			if len(resp.GetDevices()) != 1 {
				return fmt.Errorf("%s: %d devices", class, len(resp.GetDevices()))
			}
			keys[class] = resp.GetDevices()[0].GetId()
		}
		return nil
	})
	key := func(class string) string { return keys[class] }

	// HGW: downloaded, rebooted on 2.0, converged.
	waitFor(t, 60*time.Second, func() error {
		if n := countDevices(t, s, &inventoryv1.DeviceFilter{ProductClass: "HGW", SoftwareVersion: "2.0"}); n != 1 {
			return fmt.Errorf("HGW device not on 2.0 yet (downloads %v)", f.downloadsOf("HGW"))
		}
		if len(eventsOf(events, "preset.firmware_upgraded", key("HGW"))) == 0 {
			return fmt.Errorf("no preset.firmware_upgraded event yet")
		}
		return nil
	})
	dls := f.downloadsOf("HGW")
	if len(dls) != 1 || !strings.Contains(dls[0], "/2.0.bin?") || !strings.Contains(dls[0], "d="+key("HGW")) {
		t.Fatalf("HGW downloads: %v", dls)
	}
	if ev := eventsOf(events, "preset.firmware_download", key("HGW")); len(ev) != 1 || ev[0].GetPresetFirmware().GetPreset() != "fw-hgw" {
		t.Fatalf("download events: %v", ev)
	}
	if r := f.periodic(t, "HGW"); len(r.Requests) != 0 {
		t.Fatalf("the converged HGW device's periodic session sent %v", r.Requests)
	}

	// ONT and XGW: no file, nothing sent, the reason published.
	for class, want := range map[string]string{"ONT": `product class "ONT"`, "XGW": `version "9.9"`} {
		waitFor(t, 30*time.Second, func() error {
			if len(eventsOf(events, "preset.firmware_no_file", key(class))) == 0 {
				return fmt.Errorf("no preset.firmware_no_file event for %s yet", class)
			}
			return nil
		})
		ev := eventsOf(events, "preset.firmware_no_file", key(class))[0].GetPresetFirmware()
		if !strings.Contains(ev.GetDetail(), want) || ev.GetRetryTime() == nil {
			t.Fatalf("%s: %v", class, ev)
		}
		if r := f.periodic(t, class); len(r.Requests) != 0 {
			t.Fatalf("%s: the periodic session after the missing file sent %v (no back-off)", class, r.Requests)
		}
		if dls := f.downloadsOf(class); len(dls) != 0 {
			t.Fatalf("%s got a Download: %v", class, dls)
		}
		if n := len(eventsOf(events, "preset.firmware_no_file", key(class))); n != 1 {
			t.Fatalf("%s: %d no_file events, want one", class, n)
		}
	}

	// BAD: one Download, a failed transfer, published, backed off.
	waitFor(t, 30*time.Second, func() error {
		if len(eventsOf(events, "preset.firmware_failed", key("BAD"))) == 0 {
			return fmt.Errorf("no preset.firmware_failed event for BAD yet (downloads %v)", f.downloadsOf("BAD"))
		}
		return nil
	})
	ev := eventsOf(events, "preset.firmware_failed", key("BAD"))[0].GetPresetFirmware()
	if !strings.Contains(ev.GetDetail(), "TransferComplete fault 9010") || ev.GetRetryTime() == nil {
		t.Fatalf("BAD: %v", ev)
	}
	if r := f.periodic(t, "BAD"); len(r.Requests) != 0 {
		t.Fatalf("BAD: the periodic session after the failed transfer sent %v (no back-off)", r.Requests)
	}
	if dls := f.downloadsOf("BAD"); len(dls) != 1 {
		t.Fatalf("BAD got %d Downloads, want one: %v", len(dls), dls)
	}
}
