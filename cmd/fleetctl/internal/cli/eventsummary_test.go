package cli

import (
	"strings"
	"testing"

	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
)

// TestEventSummaryPresetFirmware: `events watch` shows what a session did
// about a preset's firmware, with its reason.
func TestEventSummaryPresetFirmware(t *testing.T) {
	got := eventSummary(&eventsv1.Event{Kind: "preset.firmware_no_file", Payload: &eventsv1.Event_PresetFirmware{PresetFirmware: &eventsv1.PresetFirmware{
		Preset: "fw", Revision: 3, Version: "2.0", Status: "no_file", Detail: `no file for product class "ONT"`}}})
	if !strings.Contains(got, "preset fw@3 version 2.0") || !strings.Contains(got, "ONT") {
		t.Fatalf("summary %q", got)
	}
}
