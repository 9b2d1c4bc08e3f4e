package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	pv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// presetFleet is `fleetacs all` with one simulated CPE whose sessions the
// test starts itself and whose requests it records.
type presetFleet struct {
	*secured
	presets pv1.PresetsServiceClient
	dev     *sim.Device

	mu       sync.Mutex
	sessions []sim.SessionReport
	// loseAdd makes the CPE lose its answer to the next AddObject (it
	// makes the instance, the ACS never hears of it).
	loseAdd atomic.Bool
	// set holds every value the ACS set, in order, by name (the CPE reads
	// secrets back as "").
	set map[string][]string
}

func (f *presetFleet) setValues(name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.set[name])
}

func (f *presetFleet) reports() []sim.SessionReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sessions)
}

// session asks the CPE for a session with event and returns the reports
// of the sessions that ran until one ended well.
func (f *presetFleet) session(t *testing.T, event string) []sim.SessionReport {
	t.Helper()
	before := len(f.reports())
	f.dev.Inform(cwmp.Event{Code: event})
	var out []sim.SessionReport
	waitFor(t, 30*time.Second, func() error {
		out = f.reports()[before:]
		for _, r := range out {
			if r.OK {
				return nil
			}
		}
		var kinds []string
		for _, r := range out {
			kinds = append(kinds, fmt.Sprintf("%s %v %v", r.Kind, r.Err, r.Requests))
		}
		return fmt.Errorf("no session ended well yet: %q", kinds)
	})
	return out
}

func (f *presetFleet) param(t *testing.T, name string) string {
	t.Helper()
	v, ok := f.dev.Param(name)
	if !ok {
		t.Fatalf("the CPE has no %s", name)
	}
	return v.Value
}

// portMappings returns the Descriptions of the CPE's NAT port mappings.
func (f *presetFleet) portMappings() []string {
	var out []string
	for i := 1; i <= 10; i++ {
		if v, ok := f.dev.Param(fmt.Sprintf("Device.NAT.PortMapping.%d.Description", i)); ok {
			out = append(out, v.Value)
		}
	}
	return out
}

func count(methods []string, m string) int {
	n := 0
	for _, x := range methods {
		if x == m {
			n++
		}
	}
	return n
}

func natPreset(ext string, extra ...*pv1.ObjectInstance) *pv1.Preset {
	objects := append([]*pv1.ObjectInstance{{
		Table: "Device.NAT.PortMapping.",
		Keys:  []*pv1.ObjectParameter{{Name: "Description", Value: "ssh-{{.SerialNumber}}"}},
		Values: []*pv1.ObjectParameter{{Name: "ExternalPort", Value: ext, Type: "xsd:unsignedInt"}, {Name: "InternalPort", Value: "22", Type: "xsd:unsignedInt"},
			{Name: "Protocol", Value: "TCP"}, {Name: "Enable", Value: "true", Type: "xsd:boolean"}},
	}}, extra...)
	return &pv1.Preset{Name: "nat", Precedence: 10, Desired: &pv1.DesiredState{
		Parameters: []*pv1.ParameterValue{
			{Path: "Device.ManagementServer.PeriodicInformInterval", Value: "86399", Type: "xsd:unsignedInt"},
			{Path: "Device.DeviceInfo.ProvisioningCode", Value: "pc-{{.SerialNumber}}"},
			{Path: "Device.WiFi.AccessPoint.1.Security.KeyPassphrase", Value: `{{secret "wifi-psk"}}`},
		},
		Objects: objects,
		AddTags: []string{"nat-managed"},
	}}
}

// TestPresetsEndToEnd: a preset (and the default set) converge a fresh
// device in its bootstrap session; the next session sends nothing; a
// changed preset converges the device in its next session; an object
// instance whose AddObject answer was lost is adopted, not added twice.
func TestPresetsEndToEnd(t *testing.T) {
	s := startSecured(t, "-sessions.presets-refresh=0")
	f := &presetFleet{secured: s, presets: pv1.NewPresetsServiceClient(s.publicConn), set: map[string][]string{}}
	admin := func() context.Context { return withToken(ctx10(t), s.admin) }
	if _, err := f.presets.PutPreset(admin(), &pv1.PutPresetRequest{Tenant: "default", Preset: natPreset("2222")}); err != nil {
		t.Fatal(err)
	}

	sm, err := sim.New(sim.Config{URL: "http://" + s.cwmp + "/", Model: sim.TR181,
		Devices: 1, Seed: 5, SerialPrefix: "PRE", BootStorm: true, Concurrency: 1,
		Timeout: 30 * time.Second, ConnReq: sim.ConnReqPerDevice, TimeScale: 0.01,
		OnSession: func(r sim.SessionReport) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.sessions = append(f.sessions, r)
		},
		OnRequest: func(_ *sim.Device, m cwmp.Message) bool {
			if spv, ok := m.(*cwmp.SetParameterValues); ok {
				f.mu.Lock()
				for _, pv := range spv.ParameterList {
					f.set[pv.Name] = append(f.set[pv.Name], pv.Value)
				}
				f.mu.Unlock()
			}
			_, add := m.(*cwmp.AddObject)
			return add && f.loseAdd.CompareAndSwap(true, false)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.dev = sm.Devices()[0]
	sn := f.dev.ID().SerialNumber
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := sm.Run(ctx); done <- err }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Errorf("cpesim: %v", err)
		}
	})

	// 1. The bootstrap session converges the fresh device: it reads what
	// the presets set, then sets it.
	waitFor(t, 30*time.Second, func() error {
		for _, r := range f.reports() {
			if r.OK {
				return nil
			}
		}
		return fmt.Errorf("no bootstrap session yet")
	})
	boot := f.reports()[0]
	if !boot.OK || boot.Events[0].Code != "0 BOOTSTRAP" {
		t.Fatalf("first session %+v", boot)
	}
	// cpesim's SoftwareVersion and ConnectionRequestURL have active
	// notification already (forced by the data model): the default
	// preset reads the attributes and sets none.
	if count(boot.Requests, "SetParameterAttributes") != 0 {
		t.Fatalf("bootstrap session set attributes the CPE has: %v", boot.Requests)
	}
	for _, m := range []string{"GetParameterAttributes", "AddObject"} {
		if count(boot.Requests, m) != 1 {
			t.Fatalf("bootstrap session sent %d %s: %v", count(boot.Requests, m), m, boot.Requests)
		}
	}
	if got := f.param(t, "Device.ManagementServer.PeriodicInformInterval"); got != "86399" {
		t.Fatalf("interval %q: the preset of higher precedence sets it", got)
	}
	if got := f.param(t, "Device.ManagementServer.PeriodicInformEnable"); got != "true" && got != "1" {
		t.Fatalf("PeriodicInformEnable %q: the default preset sets it", got)
	}
	if got := f.param(t, "Device.DeviceInfo.ProvisioningCode"); got != "pc-"+sn {
		t.Fatalf("ProvisioningCode %q", got)
	}
	if got := f.portMappings(); fmt.Sprint(got) != "[ssh-"+sn+"]" {
		t.Fatalf("port mappings %v", got)
	}
	// The per-device secret: generated, set, and never in the inventory
	// in clear.
	const pskPath = "Device.WiFi.AccessPoint.1.Security.KeyPassphrase"
	pskSet := f.setValues(pskPath)
	if len(pskSet) != 1 || len(pskSet[0]) != 26 || strings.Trim(pskSet[0], "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
		t.Fatalf("KeyPassphrase set to %q: want one generated secret", pskSet)
	}
	psk := pskSet[0]
	inv := inventoryv1.NewInventoryServiceClient(s.publicConn)
	list, err := inv.ListDevices(admin(), &inventoryv1.ListDevicesRequest{Tenant: "default"})
	if err != nil || len(list.GetDevices()) != 1 {
		t.Fatalf("devices %v, %v", list, err)
	}
	devID := list.GetDevices()[0].GetId()
	if tags := list.GetDevices()[0].GetTags(); fmt.Sprint(tags) != "[nat-managed]" {
		t.Fatalf("tags %v: the preset adds nat-managed", tags)
	}

	// 2. A converged device: the next session is the Inform alone.
	for _, r := range f.session(t, "2 PERIODIC") {
		if len(r.Requests) != 0 {
			t.Fatalf("a periodic session of a converged device sent %v", r.Requests)
		}
	}

	// 3. A changed preset converges the device in its next session, by
	// key: the instance is updated, not added again.
	if _, err := f.presets.PutPreset(admin(), &pv1.PutPresetRequest{Tenant: "default", Preset: natPreset("2223"), ExpectedRevision: ptr(uint64(1))}); err != nil {
		t.Fatal(err)
	}
	changed := f.session(t, "2 PERIODIC")
	last := changed[len(changed)-1]
	if count(last.Requests, "AddObject") != 0 || count(last.Requests, "SetParameterValues") != 1 || count(last.Requests, "GetParameterValues") != 1 {
		t.Fatalf("session after the change sent %v", last.Requests)
	}
	if got := f.param(t, "Device.NAT.PortMapping.1.ExternalPort"); got != "2223" {
		t.Fatalf("ExternalPort %q after the change", got)
	}
	// A secret reads back empty: the session sets it again, to the same
	// value.
	if got := f.setValues(pskPath); fmt.Sprint(got) != fmt.Sprint([]string{psk, psk}) {
		t.Fatalf("KeyPassphrase set to %q after the change, want the device's secret %q again", got, psk)
	}
	for _, r := range f.session(t, "2 PERIODIC") {
		if len(r.Requests) != 0 {
			t.Fatalf("converged again, a session sent %v", r.Requests)
		}
	}

	// 4. A new instance whose AddObject answer is lost: the CPE made it,
	// the session broke. The next session adopts it instead of adding
	// another.
	web := &pv1.ObjectInstance{Table: "Device.NAT.PortMapping.", Keys: []*pv1.ObjectParameter{{Name: "Description", Value: "web-{{.SerialNumber}}"}},
		Values: []*pv1.ObjectParameter{{Name: "ExternalPort", Value: "8080", Type: "xsd:unsignedInt"}}}
	if _, err := f.presets.PutPreset(admin(), &pv1.PutPresetRequest{Tenant: "default", Preset: natPreset("2223", web)}); err != nil {
		t.Fatal(err)
	}
	f.loseAdd.Store(true)
	before := len(f.reports())
	f.dev.Inform(cwmp.Event{Code: "2 PERIODIC"})
	waitFor(t, 30*time.Second, func() error {
		if len(f.reports()) == before {
			return fmt.Errorf("no session yet")
		}
		return nil
	})
	lost := f.reports()[before]
	if lost.OK || lost.Kind != "answer_lost" || count(lost.Requests, "AddObject") != 1 || f.loseAdd.Load() {
		t.Fatalf("session with the lost AddObject: %+v", lost)
	}
	// The device's next session.
	reps := f.session(t, "2 PERIODIC")
	var adds int
	for _, r := range reps {
		adds += count(r.Requests, "AddObject")
	}
	if adds != 0 {
		t.Fatalf("sessions after the lost AddObject added again: %+v", reps)
	}
	if got := f.portMappings(); fmt.Sprint(got) != fmt.Sprintf("[ssh-%s web-%s]", sn, sn) {
		t.Fatalf("port mappings %v after the lost AddObject", got)
	}
	if got := f.param(t, "Device.NAT.PortMapping.2.ExternalPort"); got != "8080" {
		t.Fatalf("adopted instance's ExternalPort %q", got)
	}
	for _, r := range f.session(t, "2 PERIODIC") {
		if len(r.Requests) != 0 {
			t.Fatalf("after adoption, a session sent %v", r.Requests)
		}
	}

	// 5. An instance that must be absent is deleted; an attribute that
	// differs is set; the next session is free again.
	gone := &pv1.ObjectInstance{Table: "Device.NAT.PortMapping.", Keys: web.Keys, Absent: true}
	p5 := natPreset("2223", gone)
	p5.Desired.Attributes = []*pv1.ParameterAttribute{{Path: "Device.ManagementServer.PeriodicInformInterval", Notification: pv1.Notification_NOTIFICATION_PASSIVE}}
	if _, err := f.presets.PutPreset(admin(), &pv1.PutPresetRequest{Tenant: "default", Preset: p5}); err != nil {
		t.Fatal(err)
	}
	reps = f.session(t, "2 PERIODIC")
	last = reps[len(reps)-1]
	for _, m := range []string{"GetParameterValues", "GetParameterAttributes", "DeleteObject", "SetParameterAttributes"} {
		if count(last.Requests, m) != 1 {
			t.Fatalf("session with an absent instance and an attribute sent %v", last.Requests)
		}
	}
	if got := f.portMappings(); fmt.Sprint(got) != "[ssh-"+sn+"]" {
		t.Fatalf("port mappings %v after the absent instance", got)
	}
	for _, r := range f.session(t, "2 PERIODIC") {
		if len(r.Requests) != 0 {
			t.Fatalf("after the deletion, a session sent %v", r.Requests)
		}
	}

	// The dry run agrees: nothing to do.
	dry, err := f.presets.DryRunPreset(admin(), &pv1.DryRunPresetRequest{Tenant: "default",
		DeviceId: devID, Events: []string{"2 PERIODIC"}})
	if err != nil {
		t.Fatal(err)
	}
	// The dry run cannot know a secret the CPE does not read back: it
	// would set it again, and says so with the secret's name only.
	var sets []string
	for _, r := range dry.GetRequests() {
		if r.GetMethod() == "SetParameterValues" {
			sets = append(sets, r.GetValues()...)
		}
	}
	if fmt.Sprint(sets) != "[(secret wifi-psk)]" {
		t.Fatalf("dry run of the converged device: %v", dry)
	}
	dev, err := inv.GetDevice(admin(), &inventoryv1.GetDeviceRequest{Tenant: "default", Id: devID, Parameters: &inventoryv1.ParameterSelector{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range dev.GetDevice().GetParameters() {
		if strings.Contains(p.GetValue(), psk) {
			t.Fatalf("the inventory holds the secret in clear at %s", p.GetPath())
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestHTTPPresets: the presets API over HTTP/JSON, with its roles,
// tenants and field errors, against `fleetacs all`.
func TestHTTPPresets(t *testing.T) {
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s := startSecured(t, "-server.api-http-addr="+httpAddr)
	base := "http://" + httpAddr + "/v1/tenants/default"
	dev := s.bootOne(t, "HTTPP")
	token := func(role, tenant string) string {
		code, m := httpCall(t, "POST", "http://"+httpAddr+"/v1/tokens", s.admin,
			strings.NewReader(fmt.Sprintf(`{"name":"t","role":"%s","tenants":["%s"]}`, role, tenant)))
		if code != http.StatusOK {
			t.Fatalf("create a token: %d %v", code, m)
		}
		return m["secret"].(string)
	}
	viewer, operator, other := token("ROLE_VIEWER", "default"), token("ROLE_OPERATOR", "default"), token("ROLE_ADMIN", "other")

	body := `{"preset":{"precedence":5,"desired":{"parameters":[{"path":"Device.DeviceInfo.ProvisioningCode","value":"x-{{.SerialNumber}}"}]}}}`
	code, m := httpCall(t, "PUT", base+"/presets/code", s.admin, strings.NewReader(body))
	p, _ := m["preset"].(map[string]any)
	if code != http.StatusOK || p["name"] != "code" || p["revision"] != "1" {
		t.Fatalf("PUT a preset: %d %v", code, m)
	}
	code, m = httpCall(t, "GET", base+"/presets/code", viewer, nil)
	if p, _ := m["preset"].(map[string]any); code != http.StatusOK || p["precedence"] != float64(5) {
		t.Fatalf("GET the preset: %d %v", code, m)
	}
	code, m = httpCall(t, "GET", base+"/presets", viewer, nil)
	if list, _ := m["presets"].([]any); code != http.StatusOK || len(list) != 2 { // with the default preset
		t.Fatalf("list: %d %v", code, m)
	}
	code, m = httpCall(t, "POST", base+"/devices/"+url.PathEscape(dev)+":dryRunPresets", operator, strings.NewReader(`{"name":"code"}`))
	if reqs, _ := m["requests"].([]any); code != http.StatusOK || len(reqs) == 0 {
		t.Fatalf("dry run: %d %v", code, m)
	}

	code, m = httpCall(t, "PUT", base+"/presets/code", viewer, strings.NewReader(body))
	expectHTTP(t, "viewer writing", code, m, http.StatusForbidden, "ROLE_FORBIDDEN")
	code, m = httpCall(t, "POST", base+"/devices/"+url.PathEscape(dev)+":dryRunPresets", viewer, strings.NewReader(`{}`))
	expectHTTP(t, "viewer dry-running", code, m, http.StatusForbidden, "ROLE_FORBIDDEN")
	code, m = httpCall(t, "GET", base+"/presets/code", other, nil)
	expectHTTP(t, "another tenant's admin", code, m, http.StatusForbidden, "TENANT_FORBIDDEN")
	code, m = httpCall(t, "PUT", base+"/presets/code", "", strings.NewReader(body))
	expectHTTP(t, "no token", code, m, http.StatusUnauthorized, "CREDENTIALS_MISSING")
	code, m = httpCall(t, "PUT", base+"/presets/Bad%20Name", s.admin, strings.NewReader(body))
	expectHTTP(t, "a bad name", code, m, http.StatusBadRequest, "INVALID_FIELD")
	code, m = httpCall(t, "PUT", base+"/presets/code", s.admin, strings.NewReader(`{"preset":{"desired":{"parameters":[{"path":"Device.X","value":"{{.Nope}}"}]}}}`))
	expectHTTP(t, "a bad template", code, m, http.StatusBadRequest, "INVALID_FIELD")
	if msg, _ := m["message"].(string); !strings.HasPrefix(msg, "preset.desired.parameters[0].value: ") {
		t.Errorf("bad template message %q: want the field first", msg)
	}
	code, m = httpCall(t, "PUT", base+"/presets/code", s.admin, strings.NewReader(`{"preset":{},"expectedRevision":"7"}`))
	expectHTTP(t, "a stale revision", code, m, http.StatusConflict, "PRESET_REVISION_MISMATCH")
	code, m = httpCall(t, "DELETE", base+"/presets/code", s.admin, nil)
	if code != http.StatusOK {
		t.Fatalf("DELETE: %d %v", code, m)
	}
	code, m = httpCall(t, "GET", base+"/presets/code", viewer, nil)
	expectHTTP(t, "a deleted preset", code, m, http.StatusNotFound, "PRESET_NOT_FOUND")
}

// TestPresetsFleet: ten devices converge in their bootstrap sessions; a
// changed preset converges the fleet in the next sessions, each with one
// read and one write, and then costs nothing; a tag an operator adds
// brings a tag-matched preset to that device alone.
func TestPresetsFleet(t *testing.T) {
	const devices = 10
	s := startSecured(t, "-sessions.presets-refresh=0")
	admin := func() context.Context { return withToken(ctx10(t), s.admin) }
	presets := pv1.NewPresetsServiceClient(s.publicConn)
	inv := inventoryv1.NewInventoryServiceClient(s.publicConn)
	interval := func(v string) *pv1.Preset {
		return &pv1.Preset{Name: "interval", Desired: &pv1.DesiredState{Parameters: []*pv1.ParameterValue{
			{Path: "Device.ManagementServer.PeriodicInformInterval", Value: v, Type: "xsd:unsignedInt"}}}}
	}
	vip := &pv1.Preset{Name: "vip", Match: &pv1.PresetMatch{Tags: []string{"vip"}}, Desired: &pv1.DesiredState{
		Parameters: []*pv1.ParameterValue{{Path: "Device.DeviceInfo.ProvisioningCode", Value: "vip-{{.SerialNumber}}"}}}}
	for _, p := range []*pv1.Preset{interval("86398"), vip} {
		if _, err := presets.PutPreset(admin(), &pv1.PutPresetRequest{Tenant: "default", Preset: p}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	bySerial := map[string][]sim.SessionReport{}
	sm, err := sim.New(sim.Config{URL: "http://" + s.cwmp + "/", Model: sim.TR181,
		Devices: devices, Seed: 9, SerialPrefix: "FLT", BootStorm: true, Concurrency: devices,
		Timeout: 30 * time.Second, ConnReq: sim.ConnReqPerDevice, TimeScale: 0.01,
		OnSession: func(r sim.SessionReport) {
			mu.Lock()
			defer mu.Unlock()
			sn := r.Device.ID().SerialNumber
			bySerial[sn] = append(bySerial[sn], r)
		},
	})
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
	okSessions := func(sn string) []sim.SessionReport {
		mu.Lock()
		defer mu.Unlock()
		var out []sim.SessionReport
		for _, r := range bySerial[sn] {
			if r.OK {
				out = append(out, r)
			}
		}
		return out
	}
	// round asks every device for a session and returns the requests of
	// each one's session that ended well.
	round := func(n int) map[string][]string {
		t.Helper()
		for _, d := range sm.Devices() {
			d.Inform(cwmp.Event{Code: "2 PERIODIC"})
		}
		out := map[string][]string{}
		waitFor(t, 30*time.Second, func() error {
			for _, d := range sm.Devices() {
				sn := d.ID().SerialNumber
				ok := okSessions(sn)
				if len(ok) < n {
					return fmt.Errorf("device %s: %d sessions, want %d", sn, len(ok), n)
				}
				out[sn] = ok[n-1].Requests
			}
			return nil
		})
		return out
	}
	waitFor(t, 30*time.Second, func() error {
		for _, d := range sm.Devices() {
			if len(okSessions(d.ID().SerialNumber)) == 0 {
				return fmt.Errorf("device %s has not bootstrapped", d.ID().SerialNumber)
			}
		}
		return nil
	})
	for _, d := range sm.Devices() {
		if v, _ := d.Param("Device.ManagementServer.PeriodicInformInterval"); v.Value != "86398" {
			t.Fatalf("device %s: interval %q after its bootstrap", d.ID().SerialNumber, v.Value)
		}
	}
	for sn, reqs := range round(2) {
		if len(reqs) != 0 {
			t.Fatalf("converged device %s was sent %v", sn, reqs)
		}
	}

	// A changed preset: one read and one write per device, then nothing.
	if _, err := presets.PutPreset(admin(), &pv1.PutPresetRequest{Tenant: "default", Preset: interval("86397")}); err != nil {
		t.Fatal(err)
	}
	for sn, reqs := range round(3) {
		if fmt.Sprint(reqs) != "[GetParameterValues SetParameterValues]" {
			t.Fatalf("device %s after the change was sent %v", sn, reqs)
		}
	}
	for _, d := range sm.Devices() {
		if v, _ := d.Param("Device.ManagementServer.PeriodicInformInterval"); v.Value != "86397" {
			t.Fatalf("device %s: interval %q after the change", d.ID().SerialNumber, v.Value)
		}
	}
	for sn, reqs := range round(4) {
		if len(reqs) != 0 {
			t.Fatalf("converged device %s was sent %v", sn, reqs)
		}
	}

	// An operator tags one device vip: that device alone gets the vip
	// preset in its next session.
	first := sm.Devices()[0]
	list, err := inv.ListDevices(admin(), &inventoryv1.ListDevicesRequest{Tenant: "default", PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	var firstID string
	for _, d := range list.GetDevices() {
		if strings.HasSuffix(d.GetId(), "-"+first.ID().SerialNumber) {
			firstID = d.GetId()
		}
	}
	if _, err := inv.AddTags(admin(), &inventoryv1.AddTagsRequest{Tenant: "default", Id: firstID, Tags: []string{"vip"}}); err != nil {
		t.Fatal(err)
	}
	for sn, reqs := range round(5) {
		want := "[]"
		if sn == first.ID().SerialNumber {
			want = "[GetParameterValues SetParameterValues]"
		}
		if fmt.Sprint(reqs) != want {
			t.Fatalf("device %s after the tag was sent %v, want %s", sn, reqs, want)
		}
	}
	if v, _ := first.Param("Device.DeviceInfo.ProvisioningCode"); v.Value != "vip-"+first.ID().SerialNumber {
		t.Fatalf("the vip device's ProvisioningCode %q", v.Value)
	}
}

// TestPresetsConditionKnownAfterDiscovery: a preset whose condition names
// a parameter the Inform does not carry does not match a first contact;
// the discovery of that session stores the parameter, and the device's
// next session matches and converges; the one after costs nothing.
func TestPresetsConditionKnownAfterDiscovery(t *testing.T) {
	s := startSecured(t, "-sessions.presets-refresh=0")
	admin := func() context.Context { return withToken(ctx10(t), s.admin) }
	ntp := &pv1.Preset{Name: "ntp", Match: &pv1.PresetMatch{Parameters: []*pv1.ParameterCondition{
		{Path: "Device.DeviceInfo.ModelName", Op: pv1.ConditionOp_CONDITION_OP_EXISTS}}},
		Desired: &pv1.DesiredState{Parameters: []*pv1.ParameterValue{{Path: "Device.Time.NTPServer1", Value: "ntp.example.net"}}}}
	if _, err := pv1.NewPresetsServiceClient(s.publicConn).PutPreset(admin(), &pv1.PutPresetRequest{Tenant: "default", Preset: ntp}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var reports []sim.SessionReport
	sm, err := sim.New(sim.Config{URL: "http://" + s.cwmp + "/", Model: sim.TR181, Devices: 1, Seed: 4, SerialPrefix: "CND",
		BootStorm: true, Concurrency: 1, Timeout: 30 * time.Second, ConnReq: sim.ConnReqPerDevice, TimeScale: 0.01,
		OnSession: func(r sim.SessionReport) {
			mu.Lock()
			defer mu.Unlock()
			reports = append(reports, r)
		}})
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
	dev := sm.Devices()[0]
	nth := func(n int) sim.SessionReport {
		t.Helper()
		var r sim.SessionReport
		waitFor(t, 30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			var ok []sim.SessionReport
			for _, x := range reports {
				if x.OK {
					ok = append(ok, x)
				}
			}
			if len(ok) < n {
				return fmt.Errorf("%d sessions, want %d", len(ok), n)
			}
			r = ok[n-1]
			return nil
		})
		return r
	}
	boot := nth(1)
	if v, _ := dev.Param("Device.Time.NTPServer1"); v.Value == "ntp.example.net" || count(boot.Requests, "GetParameterNames") == 0 {
		t.Fatalf("bootstrap session %v set NTPServer1 %q before the condition was known", boot.Requests, v.Value)
	}
	dev.Inform(cwmp.Event{Code: "2 PERIODIC"})
	if r := nth(2); fmt.Sprint(r.Requests) != "[GetParameterValues SetParameterValues]" {
		t.Fatalf("the session after the discovery sent %v", r.Requests)
	}
	if v, _ := dev.Param("Device.Time.NTPServer1"); v.Value != "ntp.example.net" {
		t.Fatalf("NTPServer1 %q", v.Value)
	}
	dev.Inform(cwmp.Event{Code: "2 PERIODIC"})
	if r := nth(3); len(r.Requests) != 0 {
		t.Fatalf("the converged device was sent %v", r.Requests)
	}
}
