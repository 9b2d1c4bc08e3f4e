package provisioning

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
)

func wifiPreset() *pv1.Preset {
	return &pv1.Preset{
		Name: "wifi", Precedence: 10,
		Match: &pv1.PresetMatch{ProductClass: "HG*", Tags: []string{"residential"}},
		Desired: &pv1.DesiredState{
			Parameters: []*pv1.ParameterValue{
				{Path: "Device.ManagementServer.PeriodicInformInterval", Value: "3600", Type: "xsd:unsignedInt"},
				{Path: "Device.ManagementServer.PeriodicInformEnable", Value: "true", Type: "xsd:boolean"},
				{Path: "Device.DeviceInfo.ProvisioningCode", Value: "sn-{{.SerialNumber}}"},
			},
			Objects: []*pv1.ObjectInstance{{
				Table:  "Device.WiFi.SSID.",
				Keys:   []*pv1.ObjectParameter{{Name: "SSID", Value: "guest-{{.SerialNumber}}"}},
				Values: []*pv1.ObjectParameter{{Name: "Enable", Value: "1", Type: "xsd:boolean"}, {Name: "KeyPassphrase", Value: `{{secret "wifi-psk"}}`}},
			}},
			Attributes: []*pv1.ParameterAttribute{{Path: "Device.DeviceInfo.SoftwareVersion", Notification: pv1.Notification_NOTIFICATION_ACTIVE}},
			AddTags:    []string{"provisioned"},
			RemoveTags: []string{"new"},
		},
	}
}

func TestValidateNamesTheField(t *testing.T) {
	cases := []struct {
		field string
		edit  func(p *pv1.Preset)
	}{
		{"preset.name", func(p *pv1.Preset) { p.Name = "Bad Name" }},
		{"preset.name", func(p *pv1.Preset) { p.Name = "" }},
		{"preset.precedence", func(p *pv1.Preset) { p.Precedence = 5000 }},
		{"preset.match.tags[0]", func(p *pv1.Preset) { p.Match.Tags = []string{"has space"} }},
		{"preset.match.data_model_root", func(p *pv1.Preset) { p.Match.DataModelRoot = "Foo." }},
		{"preset.match.parameters[0].op", func(p *pv1.Preset) {
			p.Match.Parameters = []*pv1.ParameterCondition{{Path: "Device.X"}}
		}},
		{"preset.match.parameters[0].path", func(p *pv1.Preset) {
			p.Match.Parameters = []*pv1.ParameterCondition{{Path: "Other.X", Op: pv1.ConditionOp_CONDITION_OP_EXISTS}}
		}},
		{"preset.match.schedule.start", func(p *pv1.Preset) { p.Match.Schedule = &pv1.Schedule{Start: "25:00", End: "03:00"} }},
		{"preset.match.schedule.time_zone", func(p *pv1.Preset) {
			p.Match.Schedule = &pv1.Schedule{Start: "01:00", End: "03:00", TimeZone: "Mars/Olympus"}
		}},
		{"preset.match.schedule.weekdays[0]", func(p *pv1.Preset) {
			p.Match.Schedule = &pv1.Schedule{Start: "01:00", End: "03:00", Weekdays: []int32{7}}
		}},
		{"preset.desired.parameters[0].path", func(p *pv1.Preset) { p.Desired.Parameters[0].Path = "Device.WiFi." }},
		{"preset.desired.parameters[1].path", func(p *pv1.Preset) { p.Desired.Parameters[1].Path = p.Desired.Parameters[0].Path }},
		{"preset.desired.parameters[0].type", func(p *pv1.Preset) { p.Desired.Parameters[0].Type = "xsd:float" }},
		{"preset.desired.parameters[2].value", func(p *pv1.Preset) { p.Desired.Parameters[2].Value = "{{.Password}}" }},
		{"preset.desired.parameters[2].value", func(p *pv1.Preset) { p.Desired.Parameters[2].Value = `{{range .}}x{{end}}` }},
		{"preset.desired.parameters[2].value", func(p *pv1.Preset) { p.Desired.Parameters[2].Value = `{{printf "%s" .OUI}}` }},
		{"preset.desired.parameters[2].value", func(p *pv1.Preset) { p.Desired.Parameters[2].Value = `{{secret "Bad Name"}}` }},
		{"preset.desired.parameters[2].value", func(p *pv1.Preset) { p.Desired.Parameters[2].Value = `{{define "x"}}y{{end}}` }},
		{"preset.desired.parameters[2].value", func(p *pv1.Preset) { p.Desired.Parameters[2].Value = strings.Repeat("x", MaxValueLength+1) }},
		{"preset.desired.objects[0].keys", func(p *pv1.Preset) { p.Desired.Objects[0].Keys = nil }},
		{"preset.desired.objects[0].table", func(p *pv1.Preset) { p.Desired.Objects[0].Table = "Device.WiFi.SSID" }},
		{"preset.desired.objects[0].keys[0].value", func(p *pv1.Preset) { p.Desired.Objects[0].Keys[0].Value = `{{secret "k"}}` }},
		{"preset.desired.objects[0].values", func(p *pv1.Preset) { p.Desired.Objects[0].Absent = true }},
		{"preset.desired.attributes[0]", func(p *pv1.Preset) { p.Desired.Attributes[0].Notification = 0 }},
		{"preset.desired.attributes[0].notification", func(p *pv1.Preset) { p.Desired.Attributes[0].Notification = 9 }},
		{"preset.desired.remove_tags", func(p *pv1.Preset) { p.Desired.RemoveTags = []string{"provisioned"} }},
		{"preset.desired.firmware_version", func(p *pv1.Preset) { p.Desired.FirmwareVersion = " 1.2" }},
	}
	if err := Validate(wifiPreset()); err != nil {
		t.Fatalf("valid preset: %v", err)
	}
	for i, c := range cases {
		p := wifiPreset()
		c.edit(p)
		err := Validate(p)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("case %d: %v, want an error on %s", i, err, c.field)
		}
	}
}

func device() *Device {
	return &Device{
		Fields: Fields{SerialNumber: "S1", OUI: "00AA11", ProductClass: "HG8245", Manufacturer: "Acme", DeviceID: "00AA11-HG8245-S1"},
		Root:   "Device.", Tags: []string{"residential", "new"}, Events: []string{"0 BOOTSTRAP", "1 BOOT"},
		Params: map[string]Param{
			"Device.ManagementServer.PeriodicInformInterval": {Value: "300", Type: "xsd:unsignedInt", HasValue: true, Notification: -1},
			"Device.ManagementServer.PeriodicInformEnable":   {Value: "1", Type: "xsd:boolean", HasValue: true, Notification: -1},
			"Device.DeviceInfo.SoftwareVersion":              {Value: "1.0", HasValue: true, Notification: 0},
			"Device.WiFi.SSID.":                              {Notification: -1},
			"Device.WiFi.SSID.1.":                            {Notification: -1},
			"Device.WiFi.SSID.1.SSID":                        {Value: "home", HasValue: true, Notification: -1},
		},
	}
}

func compile(t *testing.T, p *pv1.Preset) *Preset {
	t.Helper()
	c, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func methods(pl *Plan) string {
	var out []string
	for _, r := range pl.Requests {
		out = append(out, r.Method+fmt.Sprint(r.Paths))
	}
	return strings.Join(out, " ")
}

func TestConvergeReadsFirstThenWrites(t *testing.T) {
	p := compile(t, wifiPreset())
	d := device()
	matched, verdicts, unknown := Matching([]*Preset{p}, d, time.Now())
	if len(matched) != 1 || !verdicts[0].Matched || len(unknown) != 0 {
		t.Fatalf("verdicts %+v", verdicts)
	}
	pl, err := Converge(matched, d, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := "GetParameterValues[Device.DeviceInfo.ProvisioningCode] SetParameterValues[Device.ManagementServer.PeriodicInformInterval] " +
		"AddObject[Device.WiFi.SSID.] SetParameterAttributes[Device.DeviceInfo.SoftwareVersion]"
	if got := methods(pl); got != want {
		t.Fatalf("plan %s\nwant %s", got, want)
	}
	add := pl.Requests[2]
	if fmt.Sprint(add.Values) != "[SSID=guest-S1 Enable=1 KeyPassphrase=(secret wifi-psk)]" {
		t.Fatalf("AddObject values %v", add.Values)
	}
	if fmt.Sprint(pl.AddTags, pl.RemoveTags) != "[provisioned] [new]" || pl.Converged() {
		t.Fatalf("tags %v %v", pl.AddTags, pl.RemoveTags)
	}

	// Once the device holds it all, nothing is left to do.
	d.Params["Device.DeviceInfo.ProvisioningCode"] = Param{Value: "sn-S1", HasValue: true, Notification: -1}
	d.Params["Device.ManagementServer.PeriodicInformInterval"] = Param{Value: "3600", HasValue: true, Notification: -1}
	d.Params["Device.WiFi.SSID.2."] = Param{Notification: -1}
	d.Params["Device.WiFi.SSID.2.SSID"] = Param{Value: "guest-S1", HasValue: true, Notification: -1}
	d.Params["Device.WiFi.SSID.2.Enable"] = Param{Value: "true", HasValue: true, Notification: -1}
	d.Params["Device.DeviceInfo.SoftwareVersion"] = Param{Value: "1.0", HasValue: true, Notification: 2}
	d.Tags = []string{"residential", "provisioned"}
	pl, err = Converge(matched, d, Options{Secret: func(string) (string, error) { return "s3cret", nil }})
	if err != nil {
		t.Fatal(err)
	}
	// The passphrase is a secret: the CPE never reads it back, so only the
	// converged fingerprint (docs/provisioning.md) skips setting it again.
	if got := methods(pl); got != "SetParameterValues[Device.WiFi.SSID.2.KeyPassphrase]" || pl.Requests[0].Values[0] != "s3cret" {
		t.Fatalf("plan of a converged device: %s %v", got, pl.Requests)
	}
}

func TestObjectAbsentAndKeyedUpdate(t *testing.T) {
	p := wifiPreset()
	p.Desired = &pv1.DesiredState{Objects: []*pv1.ObjectInstance{
		{Table: "Device.WiFi.SSID.", Keys: []*pv1.ObjectParameter{{Name: "SSID", Value: "home"}}, Absent: true},
		{Table: "Device.Hosts.Host.", Keys: []*pv1.ObjectParameter{{Name: "MAC", Value: "x"}}},
	}}
	pl, err := Converge([]*Preset{compile(t, p)}, device(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := methods(pl); got != "GetParameterNames[Device.Hosts.Host.] DeleteObject[Device.WiFi.SSID.1.]" {
		t.Fatalf("plan %s", got)
	}
}

func TestPrecedenceAndFirmware(t *testing.T) {
	hi := &pv1.Preset{Name: "b-high", Precedence: 5, Desired: &pv1.DesiredState{
		Parameters: []*pv1.ParameterValue{{Path: "Device.ManagementServer.PeriodicInformInterval", Value: "600"}}}}
	lo := &pv1.Preset{Name: "a-low", Desired: &pv1.DesiredState{FirmwareVersion: "2.0",
		Parameters: []*pv1.ParameterValue{{Path: "Device.ManagementServer.PeriodicInformInterval", Value: "60"}}}}
	matched, _, _ := Matching([]*Preset{compile(t, lo), compile(t, hi)}, device(), time.Now())
	pl, err := Converge(matched, device(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.Requests) != 1 || pl.Requests[0].Values[0] != "600" {
		t.Fatalf("requests %+v", pl.Requests)
	}
	if !slices.ContainsFunc(pl.Notes, func(n string) bool { return strings.Contains(n, "a-low yields to preset b-high") }) ||
		!slices.ContainsFunc(pl.Notes, func(n string) bool { return strings.Contains(n, NoFirmwareNote) }) {
		t.Fatalf("notes %q", pl.Notes)
	}
}

func TestMatch(t *testing.T) {
	at := time.Date(2026, 12, 7, 23, 30, 0, 0, time.UTC) // a Monday
	cases := []struct {
		m    *pv1.PresetMatch
		want bool
	}{
		{&pv1.PresetMatch{}, true},
		{&pv1.PresetMatch{Events: []string{"0 BOOTSTRAP"}}, true},
		{&pv1.PresetMatch{Events: []string{"2 PERIODIC"}}, false},
		{&pv1.PresetMatch{Events: []string{"0"}}, true},
		{&pv1.PresetMatch{Tags: []string{"residential"}, WithoutTags: []string{"vip"}}, true},
		{&pv1.PresetMatch{WithoutTags: []string{"new"}}, false},
		{&pv1.PresetMatch{Oui: "00aa*"}, true},
		{&pv1.PresetMatch{SerialNumber: "S?"}, true},
		{&pv1.PresetMatch{SerialNumber: "S??"}, false},
		{&pv1.PresetMatch{Manufacturer: "*cm*"}, true},
		{&pv1.PresetMatch{DataModelRoot: "InternetGatewayDevice."}, false},
		{&pv1.PresetMatch{Parameters: []*pv1.ParameterCondition{{Path: "Device.WiFi.SSID.1.SSID", Op: pv1.ConditionOp_CONDITION_OP_EQUALS, Value: "home"}}}, true},
		{&pv1.PresetMatch{Parameters: []*pv1.ParameterCondition{{Path: "Device.WiFi.SSID.1.SSID", Op: pv1.ConditionOp_CONDITION_OP_NOT_EQUALS, Value: "home"}}}, false},
		{&pv1.PresetMatch{Parameters: []*pv1.ParameterCondition{{Path: "Device.X.Y", Op: pv1.ConditionOp_CONDITION_OP_NOT_EXISTS}}}, true},
		{&pv1.PresetMatch{Schedule: &pv1.Schedule{Start: "23:00", End: "02:00"}}, true},
		{&pv1.PresetMatch{Schedule: &pv1.Schedule{Start: "01:00", End: "05:00"}}, false},
		{&pv1.PresetMatch{Schedule: &pv1.Schedule{Start: "23:00", End: "02:00", Weekdays: []int32{2}}}, false},
		{&pv1.PresetMatch{Schedule: &pv1.Schedule{Start: "00:00", End: "02:00", TimeZone: "Europe/Paris"}}, true}, // 00:30 there
	}
	for i, c := range cases {
		p := compile(t, &pv1.Preset{Name: "p", Match: c.m})
		if got, why, _ := p.Match(device(), at); got != c.want {
			t.Errorf("case %d (%v): %v (%s), want %v", i, c.m, got, why, c.want)
		}
	}
	// A condition on an unknown parameter asks for it.
	p := compile(t, &pv1.Preset{Name: "p", Match: &pv1.PresetMatch{Parameters: []*pv1.ParameterCondition{
		{Path: "Device.X.Y", Op: pv1.ConditionOp_CONDITION_OP_EXISTS}}}})
	if ok, _, unk := p.Match(device(), at); ok || fmt.Sprint(unk) != "[Device.X.Y]" {
		t.Fatalf("unknown condition: %v %v", ok, unk)
	}
	off := compile(t, &pv1.Preset{Name: "p", Enabled: proto.Bool(false)})
	if ok, _, _ := off.Match(device(), at); ok {
		t.Fatal("disabled preset matched")
	}
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{{"", "", true}, {"*", "", true}, {"a*b*c", "axxbyyc", true}, {"a*b*c", "axxbyy", false}, {"?", "", false},
		{"*a", strings.Repeat("b", 10000), false}, {"a?c", "abc", true}, {"abc", "abd", false}} {
		if Glob(c.p, c.s) != c.want {
			t.Errorf("Glob(%q, %q) != %v", c.p, c.s, c.want)
		}
	}
}

func TestSameValue(t *testing.T) {
	if !SameValue("1", "true", "xsd:boolean") || SameValue("1", "false", "xsd:boolean") || !SameValue("007", "7", "xsd:unsignedInt") ||
		SameValue("1", "true", "xsd:string") {
		t.Fatal("SameValue")
	}
}

func TestAttributesReadFirstAndMerged(t *testing.T) {
	a := &pv1.Preset{Name: "a", Desired: &pv1.DesiredState{Attributes: []*pv1.ParameterAttribute{
		{Path: "Device.ManagementServer.PeriodicInformInterval", Notification: pv1.Notification_NOTIFICATION_PASSIVE}, // unknown: read
		{Path: "Device.DeviceInfo.SoftwareVersion", Notification: pv1.Notification_NOTIFICATION_ACTIVE},               // known 0: set
	}}}
	b := &pv1.Preset{Name: "b", Desired: &pv1.DesiredState{Attributes: []*pv1.ParameterAttribute{
		{Path: "Device.WiFi.SSID.1.SSID", SetAccessList: true, AccessList: []string{"Subscriber"}}, // access lists: set
		{Path: "Device.WiFi.", Notification: pv1.Notification_NOTIFICATION_OFF},                    // partial path: set
	}}}
	pl, err := Converge([]*Preset{compile(t, a), compile(t, b)}, device(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := methods(pl); got != "GetParameterAttributes[Device.ManagementServer.PeriodicInformInterval] "+
		"SetParameterAttributes[Device.DeviceInfo.SoftwareVersion Device.WiFi.SSID.1.SSID Device.WiFi.]" {
		t.Fatalf("plan %s", got)
	}
	spa := pl.Requests[1]
	if len(spa.Attributes) != 3 || spa.Attributes[0].Notification != 2 || spa.Attributes[1].Notification != -1 ||
		!spa.Attributes[1].SetAccessList || spa.Attributes[2].Notification != 0 {
		t.Fatalf("attributes %+v", spa.Attributes)
	}
	// Once read and equal, nothing.
	d := device()
	d.Params["Device.ManagementServer.PeriodicInformInterval"] = Param{Value: "300", HasValue: true, Notification: 1}
	d.Params["Device.DeviceInfo.SoftwareVersion"] = Param{Value: "1.0", HasValue: true, Notification: 2}
	pl, err = Converge([]*Preset{compile(t, a)}, d, Options{})
	if err != nil || len(pl.Requests) != 0 {
		t.Fatalf("converged attributes: %v %v", pl.Requests, err)
	}
}

// TestFingerprintTags: a fingerprint names the set revision and the tags
// as a set (order and duplicates do not count); it covers a device's tags
// only when they are those it was made with and nothing was refused or
// awaited; fingerprints without tags cover none; the check allocates
// nothing.
func TestFingerprintTags(t *testing.T) {
	fp := Fingerprint(12, []string{"b", "a"})
	if !strings.HasPrefix(fp, "s12t") || len(fp) != len("s12t")+16 || fp != Fingerprint(12, []string{"a", "b", "a"}) {
		t.Fatalf("fingerprint %q", fp)
	}
	if fp == Fingerprint(12, []string{"a"}) || fp == Fingerprint(12, []string{"ab"}) || fp == Fingerprint(13, []string{"a", "b"}) ||
		Fingerprint(1, nil) != Fingerprint(1, []string{}) || Fingerprint(1, []string{"a", "b"}) == Fingerprint(1, []string{"ab"}) {
		t.Fatal("fingerprints of different sets or tags are equal")
	}
	for _, tc := range []struct {
		fp   string
		tags []string
		want bool
	}{
		{fp, []string{"a", "b"}, true},
		{fp, []string{"b", "a"}, true},
		{fp, []string{"a"}, false},
		{fp, []string{"a", "b", "c"}, false},
		{fp + "!", []string{"a", "b"}, false},
		{fp + "~fw1796587200.1", []string{"a", "b"}, false},
		{"s12", nil, false},
		{"s12", []string{"a", "b"}, false},
		{"", nil, false},
		{"t" + fp[4:], []string{"a", "b"}, false},
	} {
		if got := FingerprintCovers(tc.fp, tc.tags); got != tc.want {
			t.Errorf("FingerprintCovers(%q, %q) = %v, want %v", tc.fp, tc.tags, got, tc.want)
		}
	}
	set, tags := SetFingerprint(12), []string{"a", "b"}
	if !IsFingerprint(fp, set, tags) || IsFingerprint(fp, SetFingerprint(1), tags) || IsFingerprint(fp, set, nil) || IsFingerprint("s12", set, nil) {
		t.Fatal("IsFingerprint")
	}
	if n := testing.AllocsPerRun(100, func() { IsFingerprint(fp, set, tags) }); n != 0 {
		t.Fatalf("IsFingerprint allocates %v times", n)
	}
	if got := TagsAfter([]string{"c", "a"}, []string{"b", "a"}, []string{"c"}); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("TagsAfter: %q", got)
	}
}

// TestTagChanges: the first preset (by precedence) to name a tag decides;
// tags the device has are not added again, nor absent ones removed.
func TestTagChanges(t *testing.T) {
	mk := func(name string, add, remove []string) *Preset {
		return &Preset{Name: name, AddTags: add, RemoveTags: remove}
	}
	add, remove := TagChanges([]*Preset{mk("p1", []string{"x", "have"}, []string{"y"}), mk("p2", []string{"y"}, []string{"x", "gone", "have"})},
		[]string{"have", "y"})
	if !slices.Equal(add, []string{"x"}) || !slices.Equal(remove, []string{"y", "have"}) {
		t.Fatalf("add %q remove %q", add, remove)
	}
}

// BenchmarkIsFingerprint is the check at the start of every session of a
// device with three tags.
func BenchmarkIsFingerprint(b *testing.B) {
	tags := []string{"lab", "residential", "wave-1"}
	fp, set := Fingerprint(7, tags), SetFingerprint(7)
	b.ReportAllocs()
	for b.Loop() {
		if !IsFingerprint(fp, set, tags) {
			b.Fatal("not the fingerprint")
		}
	}
}
