package sessions

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	pv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

type secretSource struct{ staticPresets }

func (secretSource) DeviceSecrets(_ context.Context, _, _ string, names []string) (map[string]string, error) {
	out := map[string]string{}
	for _, n := range names {
		out[n] = "TOPSECRET-" + n
	}
	return out, nil
}

// TestPresetOpSecretsStaySealed: an operation whose preset uses a secret
// checkpoints it sealed, reveals it in the request it sends, redacts it
// for the checkpoint of an outstanding request, and rebuilds it after a
// restore on a worker with the keys.
func TestPresetOpSecretsStaySealed(t *testing.T) {
	keys, err := secretbox.New(secretbox.Key{ID: "k1", Secret: bytes.Repeat([]byte{3}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	src := &secretSource{staticPresets{rev: 1, presets: []*pv1.Preset{{Name: "wifi", Desired: &pv1.DesiredState{
		Parameters: []*pv1.ParameterValue{{Path: "Device.WiFi.AccessPoint.1.Security.KeyPassphrase", Value: `psk-{{secret "wifi-psk"}}`}}}}}}}
	p := newPresetPlanner(time.Hour, src, keys, &convergedInventory{}, slog.New(slog.DiscardHandler), nil)
	s := engine.Start{Tenant: "default", DeviceKey: "dev-1", Root: "Device.", DeviceID: cwmp.DeviceID{SerialNumber: "S"},
		Events: []cwmp.Event{{Code: "2 PERIODIC"}}, Now: t0}
	planned, err := p.Plan(t.Context(), s)
	if err != nil || len(planned) != 1 {
		t.Fatalf("plan %v %v", planned, err)
	}
	op := planned[0].Op.(*presetOp)
	c := &engine.Context{Tenant: "default", DeviceKey: "dev-1"}
	// The read, answered: the CPE reads the passphrase back empty.
	call, ok := op.Next(c)
	if !ok || call.Message.Method() != "GetParameterValues" {
		t.Fatalf("first call %v", call)
	}
	op.Answer(c, engine.Answer{Call: call, Response: &cwmp.GetParameterValuesResponse{ParameterList: []cwmp.ParameterValue{
		{Name: "Device.WiFi.AccessPoint.1.Security.KeyPassphrase", Value: ""}}}})
	call, ok = op.Next(c)
	spv, isSPV := call.Message.(*cwmp.SetParameterValues)
	if !ok || !isSPV || spv.ParameterList[0].Value != "psk-TOPSECRET-wifi-psk" {
		t.Fatalf("set call %v", call)
	}
	data, err := json.Marshal(op)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("TOPSECRET")) {
		t.Fatalf("checkpoint holds the secret in clear: %s", data)
	}
	red := op.Redact(call.Key, call.Message).(*cwmp.SetParameterValues)
	if strings.Contains(red.ParameterList[0].Value, "TOPSECRET") || red.ParameterList[0].Name != spv.ParameterList[0].Name {
		t.Fatalf("redacted %v", red)
	}
	restored, err := p.Restore(data)
	if err != nil {
		t.Fatal(err)
	}
	again, ok := restored.(engine.SecretCaller).Rebuild(c, call.Key)
	if !ok || again.(*cwmp.SetParameterValues).ParameterList[0].Value != "psk-TOPSECRET-wifi-psk" {
		t.Fatalf("rebuilt %v %v", again, ok)
	}
	// Without the keys (another worker's), nothing is sent.
	other := newPresetPlanner(time.Hour, src, nil, &convergedInventory{}, slog.New(slog.DiscardHandler), nil)
	stranger, err := other.Restore(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := stranger.Next(c); ok {
		t.Fatal("a worker without the keys sent the secret's request")
	}
	// Bound to the device: another device's context cannot open it.
	if _, ok := restored.Next(&engine.Context{Tenant: "default", DeviceKey: "dev-2"}); ok {
		t.Fatal("the secret opened for another device")
	}
	// Confirmed: the inventory gets the path, not the value.
	restored.Answer(c, engine.Answer{Call: call, Response: &cwmp.SetParameterValuesResponse{}})
	ro := restored.(*presetOp)
	if ro.Stage != presetDone || len(ro.Confirmed) != 1 || ro.Confirmed[0].HasValue {
		t.Fatalf("after the set: %+v", ro)
	}
}
