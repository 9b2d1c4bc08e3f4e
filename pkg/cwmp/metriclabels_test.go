package cwmp

import "testing"

func TestMetricLabelHelpers(t *testing.T) {
	for code, want := range map[string]bool{"0 BOOTSTRAP": true, "14 HEARTBEAT": true, "M Reboot": true, "M ChangeDUState": true,
		"6": false, "X ACME Event": false, "M X_ACME_Reset": false, "": false} {
		if got := IsStandardEvent(code); got != want {
			t.Errorf("IsStandardEvent(%q) = %v", code, got)
		}
	}
	for m, want := range map[string]bool{"GetParameterValues": true, "ChangeDUState": true, "Inform": false, "X_ACME_Reset": false, "TransferComplete": false} {
		if got := IsACSMethod(m); got != want {
			t.Errorf("IsACSMethod(%q) = %v", m, got)
		}
	}
}
