package sessions

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/provisioning"
	pv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

// TestFirmwareFingerprint: the firmware wait a fingerprint carries reads
// back as written; a fingerprint without one, or a damaged one, reads as
// no wait; CommandKeys fit CWMP's 32 characters and differ per revision;
// the back-off doubles up to its cap.
func TestFirmwareFingerprint(t *testing.T) {
	until := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	fp := withWait("s12", firmwareWait{Until: until, Attempt: 3})
	if fp != "s12~fw"+"1796587200.3" {
		t.Fatalf("withWait: %q", fp)
	}
	base, w := splitFingerprint(fp)
	if base != "s12" || !w.Until.Equal(until) || w.Attempt != 3 {
		t.Fatalf("split %q: %q %+v", fp, base, w)
	}
	if base, w := splitFingerprint("s12!~fw1796587200.1"); base != "s12" || w.Attempt != 1 {
		t.Fatalf("refused and waiting: %q %+v", base, w)
	}
	for _, in := range []string{"s12", "s12!", "s12~fwx.1", "s12~fw1796587200", "s12~fw1.-1", ""} {
		base, w := splitFingerprint(in)
		if !w.Until.IsZero() || w.Attempt != 0 {
			t.Errorf("%q: wait %+v", in, w)
		}
		if in != "" && base != "s12" {
			t.Errorf("%q: base %q", in, base)
		}
	}
	if withWait("s12", firmwareWait{}) != "s12" || withWait("", firmwareWait{Until: until, Attempt: 1}) != "" {
		t.Fatal("withWait without a wait, or without a fingerprint")
	}
	long := "a-preset-name-of-sixty-four-characters-" + "xxxxxxxxxxxxxxxxxxxxxxxxx"
	k1, k2 := firmwareCommandKey(long, 1), firmwareCommandKey(long, 2)
	if len(k1) > 32 || k1 == k2 || k1 != firmwareCommandKey(long, 1) {
		t.Fatalf("command keys %q %q", k1, k2)
	}
	for n, want := range map[int]time.Duration{1: 15 * time.Minute, 2: 30 * time.Minute, 3: time.Hour, 8: 24 * time.Hour, 50: 24 * time.Hour} {
		if got := firmwareBackoffAfter(n); got != want {
			t.Errorf("back-off after attempt %d: %s, want %s", n, got, want)
		}
	}
}

// fakeFirmware answers ResolveFile for one product class and counts the
// calls.
type fakeFirmware struct {
	class string
	calls int
}

func (f *fakeFirmware) ResolveFile(_ context.Context, _, device, class, _, version string) (bool, string, uint64, error) {
	f.calls++
	if class != f.class {
		return false, "", 0, nil
	}
	return true, "http://acs/files/default/f1/" + version + ".bin?d=" + device, 1234, nil
}

// TestPresetFirmwarePlan drives the planner's firmware decisions: a
// device on another version gets a Download (CommandKey of the preset's
// revision) and a wait recorded with the fingerprint; within the wait a
// boot sends nothing about firmware and asks no file; a CPE that refuses
// the Download is backed off and the fingerprint marked; a device on the
// version converges with the plain fingerprint.
func TestPresetFirmwarePlan(t *testing.T) {
	src := &staticPresets{rev: 4, presets: []*pv1.Preset{{Name: "fw", Revision: 2, Desired: &pv1.DesiredState{FirmwareVersion: "2.0"}}}}
	files := &fakeFirmware{class: "HGW"}
	p := newPresetPlanner(time.Hour, src, nil, &convergedInventory{}, slog.New(slog.DiscardHandler), nil)
	p.files = files
	start := func(version, fingerprint string, events ...string) engine.Start {
		s := engine.Start{Tenant: "default", DeviceKey: "dev-1", Root: "Device.", DeviceID: cwmp.DeviceID{SerialNumber: "S", ProductClass: "HGW"},
			Params: []cwmp.ParameterValue{{Name: "Device.DeviceInfo.SoftwareVersion", Value: version}}, Now: t0}
		s.Device.PresetsFingerprint = fingerprint
		for _, e := range events {
			s.Events = append(s.Events, cwmp.Event{Code: e})
		}
		return s
	}
	c := &engine.Context{Tenant: "default", DeviceKey: "dev-1", Now: t0}
	converged := provisioning.Fingerprint(4, nil) // the device has no tags
	recorded := func(op *presetOp) string {
		fp, ok := op.recordedFingerprint()
		if !ok {
			return "(none)"
		}
		return fp
	}
	plan := func(s engine.Start) *presetOp {
		t.Helper()
		planned, err := p.Plan(t.Context(), s)
		if err != nil || len(planned) != 1 {
			t.Fatalf("plan: %v %v", planned, err)
		}
		return planned[0].Op.(*presetOp)
	}

	op := plan(start("1.0", "", "0 BOOTSTRAP"))
	call, ok := op.Next(c)
	dl, isDL := call.Message.(*cwmp.Download)
	if !ok || !isDL || dl.CommandKey != firmwareCommandKey("fw", 2) || dl.FileSize != 1234 || dl.FileType != firmwareFileType || dl.URL == "" {
		t.Fatalf("first call %#v", call.Message)
	}
	op.Answer(c, engine.Answer{Call: call, Response: &cwmp.DownloadResponse{Status: 1}})
	fp := recorded(op)
	if base, w := splitFingerprint(fp); base != converged || !w.Until.Equal(t0.Add(firmwareTransferWait)) || w.Attempt != 1 || op.Firmware.Event != "download" {
		t.Fatalf("after the Download: %q %+v", fp, op.Firmware)
	}

	// A boot within the wait: matched again, nothing about firmware.
	files.calls = 0
	op = plan(start("1.0", fp, "1 BOOT"))
	if _, ok := op.Next(c); ok || files.calls != 0 || recorded(op) != fp {
		t.Fatalf("within the wait: calls %d, fingerprint %q", files.calls, recorded(op))
	}
	// A periodic session within the wait: not even planned.
	if planned, _ := p.Plan(t.Context(), start("1.0", fp, "2 PERIODIC")); len(planned) != 0 {
		t.Fatalf("periodic session within the wait planned %v", planned)
	}

	// The wait is over: attempt 2, which the CPE refuses.
	s := start("1.0", fp, "2 PERIODIC")
	s.Now = t0.Add(2 * time.Hour)
	op = plan(s)
	call, _ = op.Next(c)
	c2 := &engine.Context{Tenant: "default", DeviceKey: "dev-1", Now: s.Now}
	op.Answer(c2, engine.Answer{Call: call, Fault: &cwmp.Fault{Code: 9010, String: "no space"}})
	fp2 := recorded(op)
	base, w := splitFingerprint(fp2)
	if !strings.HasPrefix(fp2, converged+"!") || base != converged || w.Attempt != 2 || !w.Until.Equal(s.Now.Add(firmwareBackoffAfter(2))) ||
		op.Firmware.Event != "failed" || !strings.Contains(op.Firmware.Detail, "9010") {
		t.Fatalf("refused Download: %q %+v", fp2, op.Firmware)
	}

	// Another product class: no file, nothing sent, backed off.
	s = start("1.0", "", "0 BOOTSTRAP")
	s.DeviceID.ProductClass = "ONT"
	op = plan(s)
	if _, ok := op.Next(c); ok || op.Firmware.Event != "no_file" || !strings.Contains(op.Firmware.Detail, `"ONT"`) {
		t.Fatalf("no file: %+v", op.Firmware)
	}
	if _, w := splitFingerprint(recorded(op)); w.Attempt != 1 || !w.Until.Equal(t0.Add(firmwareBackoff)) {
		t.Fatalf("no file: wait %+v", w)
	}

	// The end of the Download on the new version: converged.
	s = start("2.0", fp, "1 BOOT", "M Download")
	s.Events[1].CommandKey = firmwareCommandKey("fw", 2)
	op = plan(s)
	if _, ok := op.Next(c); ok || recorded(op) != converged || op.Firmware.Event != "upgraded" {
		t.Fatalf("upgraded: %q %+v", recorded(op), op.Firmware)
	}
}
