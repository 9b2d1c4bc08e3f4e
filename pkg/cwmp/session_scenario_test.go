package cwmp

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// step is one exchange of a scenario: the CPE's POST and the rendered
// answer expected.
type step struct {
	in   *Envelope
	err  error
	want string
}

func runScenario(t *testing.T, s *tsess, steps []step) []Output {
	t.Helper()
	outs := make([]Output, 0, len(steps))
	for i, st := range steps {
		out := s.Step(st.in, st.err)
		if got := render(out, s); got != st.want {
			t.Fatalf("step %d:\n got  %s\n want %s", i, got, st.want)
		}
		checkInvariants(t, s, out)
		outs = append(outs, out)
	}
	return outs
}

func TestSessionBootstrapScenario(t *testing.T) {
	src := queue(
		Request{Message: &GetParameterNames{ParameterPath: "Device.", NextLevel: false}, Key: "task-gpn"},
		Request{Message: gpv("Device.DeviceInfo.", "Device.ManagementServer."), Key: "task-gpv"},
	)
	s := newTestSession("boot", src)
	gpnResp := &GetParameterNamesResponse{ParameterList: []ParameterInfo{{Name: "Device.DeviceInfo.UpTime", Writable: false}}}
	gpvResp := &GetParameterValuesResponse{ParameterList: []ParameterValue{{Name: "Device.DeviceInfo.UpTime", Value: "42", Type: "xsd:unsignedInt"}}}
	outs := runScenario(t, s, []step{
		{informEnv(NS1_2, "1", "0 BOOTSTRAP", "1 BOOT"), nil, "InformResponse id=1 -> cpe-requests; started"},
		{nil, nil, "GetParameterNames id=boot.1 -> awaiting-response"},
		{env(NS1_2, "boot.1", gpnResp), nil, "GetParameterValues id=boot.2 -> awaiting-response; done:GetParameterNamesResponse"},
		{env(NS1_2, "boot.2", gpvResp), nil, "204 -> ended end; done:GetParameterValuesResponse"},
	})

	started := outs[0].Notices[0].(*SessionStarted)
	if started.Inform.DeviceID.SerialNumber != "SN0001" || len(started.Inform.Events) != 2 {
		t.Fatalf("SessionStarted %+v", started)
	}
	if !s.HasEvent("0 BOOTSTRAP") || !s.HasEvent("1 boot") || s.HasEvent("2 PERIODIC") {
		t.Fatal("HasEvent")
	}
	if s.DeviceID().OUI != "00D09E" || s.Version() != V1_2 || s.Namespace() != NS1_2 {
		t.Fatalf("session identity %+v %s %s", s.DeviceID(), s.Version(), s.Namespace())
	}
	d1 := outs[2].Notices[0].(*RequestDone)
	d2 := outs[3].Notices[0].(*RequestDone)
	if d1.Request.Key != "task-gpn" || d1.ID != "boot.1" || d1.Response != gpnResp {
		t.Fatalf("first result %+v", d1)
	}
	if d2.Request.Key != "task-gpv" || d2.ID != "boot.2" || d2.Response != gpvResp || d2.Fault != nil {
		t.Fatalf("second result %+v", d2)
	}
	if src.asked != 3 {
		t.Fatalf("source asked %d times, want 3 (two requests, then nothing)", src.asked)
	}
	// The source is asked only when the ACS may speak: never during the
	// Inform exchange.
	if outs[0].Reply.Header.HoldRequests {
		t.Fatal("hold without a HoldDecider saying so")
	}
}

// A Download in one session, its TransferComplete in the next.
func TestSessionTransferCompleteScenario(t *testing.T) {
	dl := &Download{CommandKey: "fw-7", FileType: "1 Firmware Upgrade Image", URL: "http://acs/fw.bin", FileSize: 1 << 20}
	s := newTestSession("a", queue(Request{Message: dl, Key: "task-dl"}))
	outs := runScenario(t, s, []step{
		{informEnv(NS1_0, "", "6 CONNECTION REQUEST"), nil, "InformResponse -> cpe-requests; started"},
		{nil, nil, "Download id=a.1 -> awaiting-response"},
		{env(NS1_0, "a.1", &DownloadResponse{Status: 1, StartTime: UnknownTime, CompleteTime: UnknownTime}), nil,
			"204 -> ended end; done:DownloadResponse"},
	})
	if r := outs[2].Notices[0].(*RequestDone).Response.(*DownloadResponse); r.Status != 1 {
		t.Fatalf("download status %d", r.Status)
	}

	tc := &TransferComplete{CommandKey: "fw-7", FaultStruct: FaultStruct{FaultCode: 0},
		StartTime: "2024-05-01T10:00:00Z", CompleteTime: "2024-05-01T10:01:00Z"}
	s2 := newTestSession("b", nil)
	outs = runScenario(t, s2, []step{
		{informEnv(NS1_0, "77", "1 BOOT", "7 TRANSFER COMPLETE", "M Download"), nil, "InformResponse id=77 -> cpe-requests; started"},
		{env(NS1_0, "78", tc), nil, "TransferCompleteResponse id=78 -> cpe-requests; cpe:TransferComplete"},
		{nil, nil, "204 -> ended end"},
	})
	got := outs[1].Notices[0].(*CPERequest)
	if got.ID != "78" || got.Message != tc {
		t.Fatalf("CPERequest %+v", got)
	}
	if outs[1].Reply.Namespace != NS1_0 {
		t.Fatalf("reply namespace %s", outs[1].Reply.Namespace)
	}
}

// HoldRequests in the InformResponse: the ACS runs its request before the
// CPE's TransferComplete, then lets it through, and only then ends.
func TestSessionHoldRequestsScenario(t *testing.T) {
	src := queue(Request{Message: gpv("Device.DeviceInfo.SoftwareVersion"), Key: "check-fw"})
	src.hold = true
	s := newTestSession("h", src)
	tc := &TransferComplete{CommandKey: "fw-7"}
	runScenario(t, s, []step{
		{informEnv(NS1_2, "1", "1 BOOT", "7 TRANSFER COMPLETE", "M Download"), nil, "InformResponse id=1 hold -> cpe-requests; started"},
		// A CPE that ignores the hold is told no, and the hold stays.
		{env(NS1_2, "2", tc), nil, "Fault8001 id=2 hold -> cpe-requests; anomaly:held"},
		{nil, nil, "GetParameterValues id=h.1 -> awaiting-response"},
		// The request lifted the hold; the source is dry, but the CPE still
		// owes its TransferComplete: 204 without ending.
		{env(NS1_2, "h.1", &GetParameterValuesResponse{}), nil, "204 -> cpe-requests; done:GetParameterValuesResponse"},
		{env(NS1_2, "3", tc), nil, "TransferCompleteResponse id=3 -> cpe-requests; cpe:TransferComplete"},
		{nil, nil, "204 -> ended end"},
	})
	if src.asked != 3 {
		t.Fatalf("source asked %d times", src.asked)
	}
}

// A source that keeps the hold across requests, and a hold that ends with
// nothing owed: the 204 ends the session.
func TestSessionHoldAcrossRequests(t *testing.T) {
	src := queue(
		Request{Message: gpv("Device."), Key: "a", HoldRequests: true},
		Request{Message: &Reboot{CommandKey: "r"}, Key: "b", HoldRequests: true},
	)
	src.hold = true
	s := newTestSession("h", src)
	runScenario(t, s, []step{
		{informEnv(NS1_2, "1", "2 PERIODIC"), nil, "InformResponse id=1 hold -> cpe-requests; started"},
		{nil, nil, "GetParameterValues id=h.1 hold -> awaiting-response"},
		{env(NS1_2, "x", &GetRPCMethods{}), nil, "Fault8001 id=x hold -> awaiting-response; anomaly:held"},
		{env(NS1_2, "h.1", &GetParameterValuesResponse{}), nil, "Reboot id=h.2 hold -> awaiting-response; done:GetParameterValuesResponse"},
		{env(NS1_2, "h.2", &RebootResponse{}), nil, "204 -> ended end; done:RebootResponse"},
	})
	if s.Held() {
		t.Fatal("hold survives the end of the session")
	}
}

// A CPE that, after a hold-lifting 204, sends only an empty POST: the
// session ends then, the owed request waits for the next session.
func TestSessionHoldOwedNeverSent(t *testing.T) {
	src := queue(Request{Message: gpv("Device."), Key: "a"})
	src.hold = true
	s := newTestSession("h", src)
	runScenario(t, s, []step{
		{informEnv(NS1_2, "1", "7 TRANSFER COMPLETE"), nil, "InformResponse id=1 hold -> cpe-requests; started"},
		{nil, nil, "GetParameterValues id=h.1 -> awaiting-response"},
		{env(NS1_2, "h.1", &GetParameterValuesResponse{}), nil, "204 -> cpe-requests; done:GetParameterValuesResponse"},
		{nil, nil, "204 -> ended end"},
	})
}

func TestSessionVersionNegotiationScenarios(t *testing.T) {
	cases := []struct {
		name      string
		ns        string
		supported string
		timeout   uint32
		wantNS    string
		wantV     Version
		wantUse   string
		methods   []string
	}{
		{"1.0", NS1_0, "", 0, NS1_0, V1_0, "",
			[]string{"Inform", "GetRPCMethods", "TransferComplete", "RequestDownload", "Kicked"}},
		{"1.1", NS1_1, "", 0, NS1_1, V1_1, "",
			[]string{"Inform", "GetRPCMethods", "TransferComplete", "AutonomousTransferComplete", "RequestDownload", "Kicked"}},
		{"1.2", NS1_2, "", 0, NS1_2, V1_2, "",
			[]string{"Inform", "GetRPCMethods", "TransferComplete", "AutonomousTransferComplete", "RequestDownload",
				"DUStateChangeComplete", "AutonomousDUStateChangeComplete", "Kicked"}},
		{"1.3 by SessionTimeout", NS1_2, "", 45, NS1_2, V1_3, "", nil},
		{"1.4 negotiated", NS1_2, "1.0,1.1,1.2,1.3,1.4", 0, NS1_2, V1_4, "1.4", nil},
		{"1.4 on cwmp-1-4 URI", NS1_4, "1.4", 0, NS1_4, V1_4, "1.4", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTestSession("v", nil)
			in := informEnv(c.ns, "i", "1 BOOT")
			in.Header.SupportedCWMPVersions = c.supported
			in.Header.SessionTimeout = c.timeout
			out := s.Step(in, nil)
			checkInvariants(t, s, out)
			if out.Reply.Namespace != c.wantNS || s.Namespace() != c.wantNS || s.Version() != c.wantV ||
				out.Reply.Header.UseCWMPVersion != c.wantUse || s.UseCWMPVersion() != c.wantUse {
				t.Fatalf("reply ns %s use %q, session %s %s", out.Reply.Namespace, out.Reply.Header.UseCWMPVersion, s.Namespace(), s.Version())
			}
			if out.Reply.Version != c.wantV {
				t.Fatalf("reply version %s", out.Reply.Version)
			}
			out = s.Step(env(c.wantNS, "g", &GetRPCMethods{}), nil)
			list := out.Reply.Body.(*GetRPCMethodsResponse).MethodList
			if c.methods != nil && !slices.Equal(list, c.methods) {
				t.Fatalf("methods %v, want %v", list, c.methods)
			}
			want := time.Duration(c.timeout) * time.Second
			if c.timeout == 0 {
				want = DefaultSessionTimeout
			}
			if s.SessionTimeout() != want {
				t.Fatalf("session timeout %s, want %s", s.SessionTimeout(), want)
			}
		})
	}

	t.Run("8006", func(t *testing.T) {
		s := newTestSession("v", nil)
		in := informEnv(NS1_2, "i", "1 BOOT")
		in.Header.SupportedCWMPVersions = "2.0"
		out := s.Step(in, nil)
		if got := render(out, s); got != "Fault8006 id=i -> new end; anomaly:version-incompatible" {
			t.Fatal(got)
		}
		if a := out.Notices[0].(*Anomaly); !errors.Is(a.Err, ErrVersionIncompatible) {
			t.Fatalf("anomaly error %v", a.Err)
		}
		if out.Reply.Namespace != NS1_2 || out.Reply.Body.(*Fault).SOAPCode != "Server" {
			t.Fatalf("8006 reply %+v", out.Reply)
		}
	})

	// A CPE that wrote its Inform in cwmp-1-0 but lists only newer
	// versions: 8006 does not exist in the 1.0 schema, so 8001 it is.
	t.Run("8006 in cwmp-1-0", func(t *testing.T) {
		s := newTestSession("v", nil)
		in := informEnv(NS1_0, "i", "1 BOOT")
		in.Header.SupportedCWMPVersions = "1.2,1.4"
		out := s.Step(in, nil)
		if got := render(out, s); got != "Fault8001 id=i -> new end; anomaly:version-incompatible" {
			t.Fatal(got)
		}
		if out.Reply.Namespace != NS1_0 {
			t.Fatalf("namespace %s", out.Reply.Namespace)
		}
		checkInvariants(t, s, out)
	})

	// Requests the session's version does not define are refused, not sent.
	t.Run("too new for 1.0", func(t *testing.T) {
		src := queue(
			Request{Message: &ScheduleDownload{CommandKey: "sd"}, Key: "sd"},
			Request{Message: &GetAllQueuedTransfers{}, Key: "gaqt"},
			Request{Message: &InformResponse{}, Key: "nonsense"},
			Request{Key: "nil"},
			Request{Message: &Unknown{Name: "X_ACME_Frob"}, Key: "vendor"},
			Request{Message: &GetQueuedTransfers{}, Key: "gqt"},
		)
		s := newTestSession("v", src)
		outs := runScenario(t, s, []step{
			{informEnv(NS1_0, "i", "1 BOOT"), nil, "InformResponse id=i -> cpe-requests; started"},
			{nil, nil, "GetQueuedTransfers id=v.1 -> awaiting-response; refused:ScheduleDownload, refused:GetAllQueuedTransfers, " +
				"refused:InformResponse, refused:<nil>, refused:X_ACME_Frob"},
		})
		n := outs[1].Notices
		if !errors.Is(n[0].(*refusedNotice).err, ErrMethodTooNew) || !errors.Is(n[2].(*refusedNotice).err, ErrNotACSRequest) ||
			!errors.Is(n[3].(*refusedNotice).err, ErrNotACSRequest) {
			t.Fatalf("refusal errors %v %v %v", n[0], n[2], n[3])
		}
	})
}

func TestSessionCPEFaultScenario(t *testing.T) {
	spv := &SetParameterValues{ParameterList: []ParameterValue{
		{Name: "Device.WiFi.SSID.1.SSID", Value: "home", Type: "xsd:string"},
		{Name: "Device.WiFi.Radio.1.Channel", Value: "99", Type: "xsd:unsignedInt"},
	}, ParameterKey: "k1"}
	src := queue(Request{Message: spv, Key: "task-spv"}, Request{Message: &Reboot{CommandKey: "rb"}, Key: "task-reboot"})
	s := newTestSession("f", src)
	fault := &Fault{SOAPCode: "Client", SOAPString: "CWMP fault", Code: FaultCPEInvalidArguments, String: "Invalid arguments",
		SetParameterValuesFaults: []SetParameterValuesFault{
			{ParameterName: "Device.WiFi.Radio.1.Channel", FaultCode: FaultInvalidParameterValue, FaultString: "bad channel"},
		}}
	outs := runScenario(t, s, []step{
		{informEnv(NS1_2, "1", "6 CONNECTION REQUEST"), nil, "InformResponse id=1 -> cpe-requests; started"},
		{nil, nil, "SetParameterValues id=f.1 -> awaiting-response"},
		{env(NS1_2, "f.1", fault), nil, "Reboot id=f.2 -> awaiting-response; done:fault9003"},
		{env(NS1_2, "f.2", &RebootResponse{}), nil, "204 -> ended end; done:RebootResponse"},
	})
	d := outs[2].Notices[0].(*RequestDone)
	if d.Request.Key != "task-spv" || d.Response != nil || d.Fault != fault || len(d.Fault.SetParameterValuesFaults) != 1 ||
		d.Fault.SetParameterValuesFaults[0].FaultCode != 9007 {
		t.Fatalf("fault result %+v", d)
	}
}

// A second Inform mid-session: the old session is abandoned, with its
// outstanding request, and a new one starts; IDs keep counting.
func TestSessionSecondInform(t *testing.T) {
	s := newTestSession("x", queue(Request{Message: gpv("Device."), Key: "t1"}, Request{Message: gpv("Device."), Key: "t2"}))
	outs := runScenario(t, s, []step{
		{informEnv(NS1_0, "1", "2 PERIODIC"), nil, "InformResponse id=1 -> cpe-requests; started"},
		{nil, nil, "GetParameterValues id=x.1 -> awaiting-response"},
		{informEnv(NS1_2, "2", "1 BOOT"), nil, "InformResponse id=2 -> cpe-requests; abandoned:new-inform, started(replaced)"},
		{nil, nil, "GetParameterValues id=x.2 -> awaiting-response"},
		// The answer to the abandoned request comes too late: not attributed.
		{env(NS1_2, "x.1", &GetParameterValuesResponse{}), nil, "GetParameterValues id=x.2 -> awaiting-response; anomaly:stray-response"},
		{env(NS1_2, "x.2", &GetParameterValuesResponse{}), nil, "204 -> ended end; done:GetParameterValuesResponse"},
	})
	ab := outs[2].Notices[0].(*RequestAbandoned)
	if ab.ID != "x.1" || ab.Request.Key != "t1" {
		t.Fatalf("abandoned %+v", ab)
	}
	if s.Version() != V1_2 || !s.HasEvent("1 BOOT") || s.HasEvent("2 PERIODIC") {
		t.Fatal("the new session did not replace the old one's version and events")
	}
}

func TestSessionXMLDeclarationMirrored(t *testing.T) {
	s := newTestSession("d", queue(Request{Message: gpv("Device."), Key: "t"}))
	in := informEnv(NS1_2, "1", "1 BOOT")
	in.XMLDeclaration = true
	out := s.Step(in, nil)
	if !out.Reply.XMLDeclaration {
		t.Fatal("InformResponse without the declaration the CPE used")
	}
	out = s.Step(nil, nil) // an empty POST carries no framing: keep the Inform's
	if !out.Reply.XMLDeclaration {
		t.Fatal("request without the declaration")
	}
	out = s.Step(env(NS1_2, "d.0", &GetParameterValuesResponse{}), nil) // a stray answer (an earlier ID), and the CPE now sends no declaration
	if out.Reply.XMLDeclaration {
		t.Fatal("declaration the CPE stopped sending")
	}
	// Outside a session a fault mirrors the message itself.
	s2 := newTestSession("d", nil)
	tc := env(NS1_1, "t", &TransferComplete{})
	tc.XMLDeclaration = true
	out = s2.Step(tc, nil)
	if !out.Reply.XMLDeclaration || out.Reply.Namespace != NS1_1 {
		t.Fatalf("no-session fault framing %+v", out.Reply)
	}
}

// CPE requests newer than the session's version are not supported in it.
func TestSessionCPERequestTooNew(t *testing.T) {
	s := newTestSession("o", nil)
	runScenario(t, s, []step{
		{informEnv(NS1_0, "1", "10 AUTONOMOUS TRANSFER COMPLETE"), nil, "InformResponse id=1 -> cpe-requests; started"},
		{env(NS1_0, "2", &AutonomousTransferComplete{}), nil, "Fault8000 id=2 -> cpe-requests; anomaly:unsupported-method"},
		{env(NS1_0, "3", &DUStateChangeComplete{}), nil, "Fault8000 id=3 -> cpe-requests; anomaly:unsupported-method"},
	})
	s = newTestSession("o", nil)
	runScenario(t, s, []step{
		{informEnv(NS1_1, "1", "10 AUTONOMOUS TRANSFER COMPLETE"), nil, "InformResponse id=1 -> cpe-requests; started"},
		{env(NS1_1, "2", &AutonomousTransferComplete{}), nil,
			"AutonomousTransferCompleteResponse id=2 -> cpe-requests; cpe:AutonomousTransferComplete"},
		{env(NS1_1, "3", &AutonomousDUStateChangeComplete{}), nil, "Fault8000 id=3 -> cpe-requests; anomaly:unsupported-method"},
	})
}

func TestSessionKickedAndIDEcho(t *testing.T) {
	s := newTestSession("k", nil)
	s.Step(informEnv(NS1_0, "", "5 KICKED"), nil)
	in := env(NS1_0, " SAGEM_ID_7589 ", &Kicked{Command: "c", Referer: "r", Arg: "a", Next: "http://lan/next"})
	out := s.Step(in, nil)
	if r := out.Reply.Body.(*KickedResponse); r.NextURL != "http://lan/next" {
		t.Fatalf("NextURL %q", r.NextURL)
	}
	if out.Reply.Header.ID != " SAGEM_ID_7589 " {
		t.Fatalf("ID not echoed exactly: %q", out.Reply.Header.ID)
	}
	if c := out.Notices[0].(*CPERequest); c.ID != "SAGEM_ID_7589" {
		t.Fatalf("reported ID %q", c.ID)
	}
}

func TestSessionInformValidation(t *testing.T) {
	cases := []struct {
		name string
		id   DeviceID
		ok   bool
	}{
		{"complete", DeviceID{OUI: "00D09E", ProductClass: "R", SerialNumber: "1"}, true},
		{"MikroTik empty serial", DeviceID{Manufacturer: "MikroTik", OUI: "E48D8C", ProductClass: "CHR"}, true},
		{"lower-case OUI", DeviceID{OUI: "00d09e", SerialNumber: "1"}, true},
		{"white space around everything", DeviceID{Manufacturer: " M ", OUI: " 00D09E\n", ProductClass: "\tR", SerialNumber: " 1 "}, true},
		{"64-character serial", DeviceID{OUI: "00D09E", SerialNumber: strings.Repeat("é", 64)}, true},
		// docs/protocol.md §5.3: an Inform must name a device.
		{"no DeviceId", DeviceID{}, false},
		{"serial only", DeviceID{SerialNumber: "abc"}, false},
		{"blank", DeviceID{Manufacturer: "x", ProductClass: "y", OUI: " ", SerialNumber: "\n"}, false},
		// Liberal: an OUI that is not six hex digits still names the device.
		{"OUI not hex", DeviceID{OUI: "ZZZZZZ", SerialNumber: "1"}, true},
		{"OUI too short", DeviceID{OUI: "00D09", SerialNumber: "1"}, true},
		{"OUI with separators", DeviceID{OUI: "00:D0:9E", SerialNumber: "1"}, true},
		{"65-character OUI", DeviceID{OUI: strings.Repeat("0", 65), SerialNumber: "1"}, false},
		{"65-character serial", DeviceID{OUI: "00D09E", SerialNumber: strings.Repeat("s", 65)}, false},
		{"65-character product class", DeviceID{OUI: "00D09E", ProductClass: strings.Repeat("p", 65), SerialNumber: "1"}, false},
		{"65-character manufacturer", DeviceID{OUI: "00D09E", Manufacturer: strings.Repeat("m", 65), SerialNumber: "1"}, false},
	}
	for _, c := range cases {
		s := newTestSession("v", nil)
		out := s.Step(env(NS1_0, "1", &Inform{DeviceID: c.id}), nil)
		if ok := s.Phase() == PhaseCPERequests; ok != c.ok {
			t.Errorf("%s: accepted=%t, want %t (%s)", c.name, ok, c.ok, render(out, s))
		}
		if c.ok {
			continue
		}
		if f, isFault := out.Reply.Body.(*Fault); !isFault || f.Code != FaultInvalidArguments || out.Reply.Header.ID != "1" || !out.End {
			t.Errorf("%s: refused with %s", c.name, render(out, s))
		}
		if a, isAnomaly := out.Notices[len(out.Notices)-1].(*Anomaly); !isAnomaly || a.Kind != AnomalyInvalidInform || !errors.Is(a.Err, ErrInvalidDeviceID) {
			t.Errorf("%s: notices %s", c.name, render(out, s))
		}
	}
}

// TestDecodedInformWithoutDeviceID: what a CPE sends without a usable
// DeviceId, decoded, is refused by the session with fault 8003.
func TestDecodedInformWithoutDeviceID(t *testing.T) {
	for name, deviceID := range map[string]string{
		"no DeviceId element":  "",
		"empty DeviceId":       "<DeviceId></DeviceId>",
		"self-closed DeviceId": "<DeviceId/>",
		"white-space fields":   "<DeviceId><Manufacturer> </Manufacturer><OUI>\n</OUI><ProductClass>\t</ProductClass><SerialNumber> </SerialNumber></DeviceId>",
		"serial without OUI":   "<DeviceId><SerialNumber>S1</SerialNumber></DeviceId>",
	} {
		body := decEnv(NS1_0, `<cwmp:ID soap:mustUnderstand="1">i1</cwmp:ID>`,
			"<cwmp:Inform>"+deviceID+"<Event/><MaxEnvelopes>1</MaxEnvelopes><CurrentTime>2024-01-01T00:00:00Z</CurrentTime><RetryCount>0</RetryCount><ParameterList/></cwmp:Inform>")
		e, err := Decode([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		s := NewSession("d")
		out := s.Step(e, nil)
		if f, ok := out.Reply.Body.(*Fault); !ok || f.Code != FaultInvalidArguments || s.Phase().Live() {
			t.Errorf("%s: %s", name, render(out, s))
		}
	}
}

func TestSessionExpire(t *testing.T) {
	s := newTestSession("e", queue(Request{Message: gpv("Device."), Key: "t"}))
	if n := s.Expire(); n != nil {
		t.Fatalf("expire of a new session: %v", n)
	}
	s.Step(informEnv(NS1_2, "1", "1 BOOT"), nil)
	s.Step(nil, nil)
	n := s.Expire()
	if len(n) != 1 || renderNotice(n[0]) != "abandoned:expired" || n[0].(*RequestAbandoned).Request.Key != "t" {
		t.Fatalf("expire notices %v", n)
	}
	if s.Phase() != PhaseEnded {
		t.Fatalf("phase %s", s.Phase())
	}
	if out := s.Step(nil, nil); out.Reply != nil || !out.End {
		t.Fatal("empty POST after expiry")
	}
}

func TestSessionFaultEnvelope(t *testing.T) {
	src := queue()
	src.hold = true
	s := newTestSession("r", src)
	s.Step(informEnv(NS1_4, "1", "7 TRANSFER COMPLETE"), nil)
	before := stateJSON(t, s)
	tc := env(NS1_4, "tc-9", &TransferComplete{CommandKey: "x"})
	f := s.FaultEnvelope(tc, FaultRetryRequest)
	if f.Namespace != NS1_4 || f.Header.ID != "tc-9" || !f.Header.HoldRequests || f.Body.(*Fault).Code != 8005 {
		t.Fatalf("fault envelope %+v", f)
	}
	if stateJSON(t, s) != before {
		t.Fatal("FaultEnvelope changed the session")
	}
}

// The ACS's turn: the caller sees each answer before it chooses the next
// request (here, a GetParameterValues of the names a GetParameterNames
// returned), may checkpoint in the middle of the turn, and has a refused
// request handed back without any change.
func TestSessionTurn(t *testing.T) {
	s := NewSession("t")
	if out := s.Step(informEnv(NS1_0, "1", "1 BOOT"), nil); render(out, s) != "InformResponse id=1 -> cpe-requests; started" {
		t.Fatal(render(out, s))
	}
	if _, err := s.Send(Request{Message: &Reboot{}}); !errors.Is(err, ErrNotACSTurn) {
		t.Fatalf("Send before the turn: %v", err)
	}
	if _, err := s.Finish(); !errors.Is(err, ErrNotACSTurn) {
		t.Fatalf("Finish before the turn: %v", err)
	}
	out := s.Step(nil, nil)
	if got := render(out, s); got != "204 -> acs-turn turn" {
		t.Fatal(got)
	}
	checkInvariants(t, s, out)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Step during the turn did not panic")
			}
		}()
		s.Step(nil, nil)
	}()
	out, err := s.Send(Request{Message: &GetParameterNames{ParameterPath: "Device.", NextLevel: true}, Key: "gpn"})
	if err != nil || render(out, s) != "GetParameterNames id=t.1 -> awaiting-response" {
		t.Fatalf("%s %v", render(out, s), err)
	}

	gpn := &GetParameterNamesResponse{ParameterList: []ParameterInfo{{Name: "Device.DeviceInfo.UpTime"}, {Name: "Device.X_Y"}}}
	out = s.Step(env(NS1_0, "t.1", gpn), nil)
	if got := render(out, s); got != "204 -> acs-turn turn; done:GetParameterNamesResponse" {
		t.Fatal(got)
	}
	done := out.Notices[0].(*RequestDone)
	var names []string
	for _, pi := range done.Response.(*GetParameterNamesResponse).ParameterList {
		names = append(names, pi.Name)
	}

	// A checkpoint taken during the turn restores into the turn.
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"phase":"acs-turn"`) {
		t.Fatalf("checkpoint %s", b)
	}
	s = &Session{}
	if err := s.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}

	before := stateJSON(t, s)
	if _, err := s.Send(Request{Message: &GetAllQueuedTransfers{}, Key: "gaqt"}); !errors.Is(err, ErrMethodTooNew) {
		t.Fatalf("1.1 method in a 1.0 session: %v", err)
	}
	if _, err := s.Send(Request{Key: "nothing"}); !errors.Is(err, ErrNotACSRequest) {
		t.Fatalf("request without a message: %v", err)
	}
	if stateJSON(t, s) != before || s.Phase() != PhaseACSTurn {
		t.Fatal("a refused request changed the session")
	}
	out, err = s.Send(Request{Message: gpv(names...), Key: "gpv"})
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Reply.Body.(*GetParameterValues).ParameterNames; !slices.Equal(got, names) || out.Reply.Header.ID != "t.2" {
		t.Fatalf("sent GPV %v id %s", got, out.Reply.Header.ID)
	}
	out = s.Step(env(NS1_0, "t.2", &GetParameterValuesResponse{}), nil)
	if got := render(out, s); got != "204 -> acs-turn turn; done:GetParameterValuesResponse" {
		t.Fatal(got)
	}
	out, err = s.Finish()
	if err != nil || render(out, s) != "204 -> ended end" {
		t.Fatalf("%s %v", render(out, s), err)
	}
	checkInvariants(t, s, out)
}

// A checkpoint written before the turn was handed back (the same format 1,
// without the acs-turn phase) restores, and the answer it awaited gives the
// caller the turn.
func TestSessionRestoresPreviousCheckpoint(t *testing.T) {
	const old = `{"format":1,"sessionId":"sess-1","phase":"awaiting-response","counter":1,"namespace":"urn:dslforum-org:cwmp-1-2",` +
		`"useCWMPVersion":"1.4","deviceId":{"manufacturer":"Acme","oui":"00D09E","productClass":"Router","serialNumber":"SN0001"},` +
		`"events":[{"code":"1 BOOT","commandKey":""}],"sessionTimeout":20,"held":true,` +
		`"outstanding":{"id":"sess-1.1","request":{"method":"Reboot","message":{"commandKey":"r"},"key":"task-9","holdRequests":true}},` +
		`"cwmpVersion":"1.4"}`
	s := &Session{}
	if err := s.UnmarshalBinary([]byte(old)); err != nil {
		t.Fatal(err)
	}
	out := s.Step(env(NS1_2, "sess-1.1", &RebootResponse{}), nil)
	if got := render(out, s); got != "204 -> acs-turn turn; done:RebootResponse" {
		t.Fatal(got)
	}
	if d := out.Notices[0].(*RequestDone); d.Request.Key != "task-9" {
		t.Fatalf("done %+v", d)
	}
	out, _ = s.Send(Request{Message: gpv("Device."), Key: "next"})
	if out.Reply.Header.ID != "sess-1.2" {
		t.Fatalf("next request id %q", out.Reply.Header.ID)
	}
}

// A session without requests to send ends at the CPE's empty POST.
func TestSessionNothingToAsk(t *testing.T) {
	s := newTestSession("n", nil)
	runScenario(t, s, []step{
		{informEnv(NS1_0, "1", "1 BOOT"), nil, "InformResponse id=1 -> cpe-requests; started"},
		{nil, nil, "204 -> ended end"},
	})
}

// The checkpoint of every step of a long session, restored into a fresh
// Session, gives the same outputs as the uninterrupted run.
func TestSessionCheckpointEveryStep(t *testing.T) {
	newSource := func() *queueSource {
		src := queue(
			Request{Message: &GetParameterNames{ParameterPath: "Device.", NextLevel: true}, Key: "t1", HoldRequests: true},
			Request{Message: gpv("Device.DeviceInfo."), Key: "t2"},
			Request{Message: &SetParameterValues{ParameterList: []ParameterValue{{Name: "A.B", Value: "1", Type: "xsd:int"}}, ParameterKey: "pk"}, Key: "t3"},
			Request{Message: &ChangeDUState{Operations: []DUOperation{{Kind: OpInstall, URL: "http://x/du"}}, CommandKey: "du"}, Key: "t4"},
			Request{Message: &ScheduleDownload{CommandKey: "sd", FileType: "1 Firmware Upgrade Image", URL: "http://x/fw", TimeWindowList: []TimeWindow{{WindowStart: 1, WindowEnd: 60, WindowMode: "1 At Any Time"}}}, Key: "t5"},
			Request{Message: &Download{CommandKey: "dl", FileType: "1 Firmware Upgrade Image", URL: "http://x/fw"}, Key: "t6"},
			Request{Message: gpv("Device."), Key: "t7"},
		)
		src.hold = true
		return src
	}
	spvFault := &Fault{Code: 9003, SetParameterValuesFaults: []SetParameterValuesFault{{ParameterName: "A.B", FaultCode: 9008}}}
	inputs := []struct {
		env *Envelope
		err error
	}{
		{informEnv(NS1_2, "1", "1 BOOT", "7 TRANSFER COMPLETE", "M Download", "11 DU STATE CHANGE COMPLETE"), nil},
		{env(NS1_2, "2", &TransferComplete{CommandKey: "old"}), nil}, // held: 8001
		{nil, nil},
		{nil, ErrMalformed},
		{env(NS1_2, "s.1", &GetParameterNamesResponse{ParameterList: []ParameterInfo{{Name: "Device.DeviceInfo.", Writable: false}}}), nil},
		{nil, nil}, // no answer: resend
		{env(NS1_2, "", &GetParameterValuesResponse{ParameterList: []ParameterValue{{Name: "X", Value: "y"}}}), nil},
		{env(NS1_2, "s.3", &Fault{Code: FaultRetryRequest}), nil}, // 8005: resend
		{env(NS1_2, "s.3", spvFault), nil},
		{env(NS1_2, "c", &Unknown{Name: "X_Y"}), nil},
		{env(NS1_2, "s.4", &ChangeDUStateResponse{}), nil},
		{env(NS1_2, "s.9", &ScheduleDownloadResponse{}), nil}, // wrong ID: resend
		{env(NS1_2, "s.5", &ScheduleDownloadResponse{}), nil},
		{env(NS1_2, "s.6", &DownloadResponse{Status: 1, StartTime: UnknownTime, CompleteTime: UnknownTime}), nil},
		{env(NS1_2, "s.7", &GetParameterValuesResponse{}), nil}, // source dry; CPE owes two requests
		{env(NS1_2, "3", &TransferComplete{CommandKey: "old"}), nil},
		{env(NS1_2, "4", &DUStateChangeComplete{CommandKey: "du0"}), nil},
		{nil, nil},
		{nil, nil}, // stray empty POST after the end
		{informEnv(NS1_2, "5", "2 PERIODIC"), nil},
		{nil, nil},
	}

	run := func(restoreAt int) []string {
		src := newSource()
		s := newTestSession("s", src)
		var got []string
		for i, in := range inputs {
			if i == restoreAt {
				s.restore(t)
			}
			out := s.Step(in.env, in.err)
			checkInvariants(t, s, out)
			b, err := json.Marshal(out.Reply)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, render(out, s)+" | "+string(b)+" | "+stateJSON(t, s))
		}
		return got
	}

	want := run(-1)
	wantReplies := []string{
		"InformResponse id=1 hold -> cpe-requests; started",
		"Fault8001 id=2 hold -> cpe-requests; anomaly:held",
		"GetParameterNames id=s.1 hold -> awaiting-response",
		"Fault8002 hold -> awaiting-response; anomaly:decode",
		"GetParameterValues id=s.2 -> awaiting-response; done:GetParameterNamesResponse",
		"GetParameterValues id=s.2 -> awaiting-response; anomaly:no-response",
		"SetParameterValues id=s.3 -> awaiting-response; done:GetParameterValuesResponse(missing-id)",
		"SetParameterValues id=s.3 -> awaiting-response; retried:fault8005",
		"ChangeDUState id=s.4 -> awaiting-response; done:fault9003",
		"Fault8000 id=c -> awaiting-response; anomaly:unsupported-method",
		"ScheduleDownload id=s.5 -> awaiting-response; done:ChangeDUStateResponse",
		"ScheduleDownload id=s.5 -> awaiting-response; anomaly:stray-response",
		"Download id=s.6 -> awaiting-response; done:ScheduleDownloadResponse",
		"GetParameterValues id=s.7 -> awaiting-response; done:DownloadResponse",
		"204 -> cpe-requests; done:GetParameterValuesResponse",
		"TransferCompleteResponse id=3 -> cpe-requests; cpe:TransferComplete",
		"DUStateChangeCompleteResponse id=4 -> cpe-requests; cpe:DUStateChangeComplete",
		"204 -> ended end",
		"204 -> ended end",
		"InformResponse id=5 hold -> cpe-requests; started",
		"204 -> ended end",
	}
	for i, w := range want {
		if got, _, _ := strings.Cut(w, " | "); got != wantReplies[i] {
			t.Fatalf("step %d:\n got  %s\n want %s", i, got, wantReplies[i])
		}
	}
	for at := range inputs {
		if got := run(at); !slices.Equal(got, want) {
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("restored before step %d: step %d differs:\n got  %s\n want %s", at, i, got[i], want[i])
				}
			}
		}
	}
}

// retry is a CPE's fault 8005 (Retry request) with the given cwmp:ID.
func retry(id string) *Envelope {
	return env(NS1_2, id, &Fault{SOAPCode: "Server", SOAPString: "CWMP fault", Code: FaultRetryRequest, String: "Retry request"})
}

// Fault 8005 to an ACS request (docs/protocol.md §7.1): the session sends
// the same request again, with the same cwmp:ID, and the caller sees only
// the real answer; the resends share maxRetransmits with those for stray
// answers, and only when they are spent does the 8005 become the request's
// outcome.
func TestSessionRetryRequest(t *testing.T) {
	spv := &SetParameterValues{ParameterList: []ParameterValue{{Name: "Device.X", Value: "1", Type: "xsd:int"}}, ParameterKey: "k"}
	t.Run("once then the answer", func(t *testing.T) {
		s := newTestSession("r", queue(Request{Message: spv, Key: "t1"}))
		outs := runScenario(t, s, []step{
			{informEnv(NS1_2, "1", "2 PERIODIC"), nil, "InformResponse id=1 -> cpe-requests; started"},
			{nil, nil, "SetParameterValues id=r.1 -> awaiting-response"},
			{retry("r.1"), nil, "SetParameterValues id=r.1 -> awaiting-response; retried:fault8005"},
			{env(NS1_2, "r.1", &SetParameterValuesResponse{Status: 0}), nil, "204 -> ended end; done:SetParameterValuesResponse"},
		})
		if outs[2].Reply.Body != spv || outs[1].Reply.Header != outs[2].Reply.Header {
			t.Fatalf("resent %+v, sent %+v", outs[2].Reply, outs[1].Reply)
		}
		r := outs[2].Notices[0].(*RequestRetried)
		if r.ID != "r.1" || r.Request.Key != "t1" || r.Fault.Code != 8005 || r.MissingID || r.ForeignID != "" {
			t.Fatalf("retried %+v", r)
		}
		d := outs[3].Notices[0].(*RequestDone)
		if d.Fault != nil || d.Request.Key != "t1" {
			t.Fatalf("done %+v", d)
		}
	})
	t.Run("three times", func(t *testing.T) {
		s := newTestSession("r", queue(Request{Message: spv, Key: "t1"}, Request{Message: gpv("Device."), Key: "t2"}))
		outs := runScenario(t, s, []step{
			{informEnv(NS1_2, "1", "2 PERIODIC"), nil, "InformResponse id=1 -> cpe-requests; started"},
			{nil, nil, "SetParameterValues id=r.1 -> awaiting-response"},
			{retry("r.1"), nil, "SetParameterValues id=r.1 -> awaiting-response; retried:fault8005"},
			{retry("r.1"), nil, "SetParameterValues id=r.1 -> awaiting-response; retried:fault8005"},
			{retry("r.1"), nil, "GetParameterValues id=r.2 -> awaiting-response; done:fault8005"},
			{env(NS1_2, "r.2", &GetParameterValuesResponse{}), nil, "204 -> ended end; done:GetParameterValuesResponse"},
		})
		d := outs[4].Notices[0].(*RequestDone)
		if d.Request.Key != "t1" || d.Fault == nil || d.Fault.Code != FaultRetryRequest || d.Fault.String != "Retry request" {
			t.Fatalf("done %+v", d)
		}
	})
	t.Run("after stray resends", func(t *testing.T) {
		// An empty POST spends one resend, an 8005 without ID the other:
		// the next 8005 is the outcome.
		s := newTestSession("r", queue(Request{Message: spv, Key: "t1"}))
		runScenario(t, s, []step{
			{informEnv(NS1_2, "1", "2 PERIODIC"), nil, "InformResponse id=1 -> cpe-requests; started"},
			{nil, nil, "SetParameterValues id=r.1 -> awaiting-response"},
			{nil, nil, "SetParameterValues id=r.1 -> awaiting-response; anomaly:no-response"},
			{retry(""), nil, "SetParameterValues id=r.1 -> awaiting-response; retried:fault8005(missing-id)"},
			{retry("cpe-7"), nil, "204 -> ended end; done:fault8005(foreign-id cpe-7)"},
		})
	})
	t.Run("stray after 8005 resends", func(t *testing.T) {
		// The other way round: two 8005 resends leave none for a stray
		// answer, and the request is abandoned.
		s := newTestSession("r", queue(Request{Message: spv, Key: "t1"}))
		runScenario(t, s, []step{
			{informEnv(NS1_2, "1", "2 PERIODIC"), nil, "InformResponse id=1 -> cpe-requests; started"},
			{nil, nil, "SetParameterValues id=r.1 -> awaiting-response"},
			{retry("r.1"), nil, "SetParameterValues id=r.1 -> awaiting-response; retried:fault8005"},
			{retry("r.1"), nil, "SetParameterValues id=r.1 -> awaiting-response; retried:fault8005"},
			{nil, nil, "204 -> ended end; anomaly:no-response, abandoned:unanswered"},
		})
	})
	t.Run("each request its own bound", func(t *testing.T) {
		s := newTestSession("r", queue(Request{Message: spv, Key: "t1"}, Request{Message: gpv("Device."), Key: "t2"}))
		runScenario(t, s, []step{
			{informEnv(NS1_2, "1", "2 PERIODIC"), nil, "InformResponse id=1 -> cpe-requests; started"},
			{nil, nil, "SetParameterValues id=r.1 -> awaiting-response"},
			{retry("r.1"), nil, "SetParameterValues id=r.1 -> awaiting-response; retried:fault8005"},
			{retry("r.1"), nil, "SetParameterValues id=r.1 -> awaiting-response; retried:fault8005"},
			{env(NS1_2, "r.1", &SetParameterValuesResponse{}), nil, "GetParameterValues id=r.2 -> awaiting-response; done:SetParameterValuesResponse"},
			{retry("r.2"), nil, "GetParameterValues id=r.2 -> awaiting-response; retried:fault8005"},
			{env(NS1_2, "r.2", &GetParameterValuesResponse{}), nil, "204 -> ended end; done:GetParameterValuesResponse"},
		})
	})
	t.Run("late 8005 to an earlier request", func(t *testing.T) {
		// An 8005 carrying another of the session's IDs answers an earlier
		// request: stray, not a retry of this one.
		s := newTestSession("r", queue(Request{Message: spv, Key: "t1"}, Request{Message: gpv("Device."), Key: "t2"}))
		runScenario(t, s, []step{
			{informEnv(NS1_2, "1", "2 PERIODIC"), nil, "InformResponse id=1 -> cpe-requests; started"},
			{nil, nil, "SetParameterValues id=r.1 -> awaiting-response"},
			{env(NS1_2, "r.1", &SetParameterValuesResponse{}), nil, "GetParameterValues id=r.2 -> awaiting-response; done:SetParameterValuesResponse"},
			{retry("r.1"), nil, "GetParameterValues id=r.2 -> awaiting-response; anomaly:stray-response"},
			{env(NS1_2, "r.2", &GetParameterValuesResponse{}), nil, "204 -> ended end; done:GetParameterValuesResponse"},
		})
	})
	t.Run("held request keeps its hold", func(t *testing.T) {
		src := queue(Request{Message: spv, Key: "t1", HoldRequests: true})
		src.hold = true
		s := newTestSession("r", src)
		runScenario(t, s, []step{
			{informEnv(NS1_2, "1", "2 PERIODIC"), nil, "InformResponse id=1 hold -> cpe-requests; started"},
			{nil, nil, "SetParameterValues id=r.1 hold -> awaiting-response"},
			{retry("r.1"), nil, "SetParameterValues id=r.1 hold -> awaiting-response; retried:fault8005"},
		})
	})
}

// Fault 8005 in the CPE's own exchanges is not a retry of anything: the
// ACS's 8005 to a CPE request is the caller's FaultEnvelope and changes no
// state, and a CPE's 8005 while no ACS request is outstanding is a stray
// answer, as any fault there.
func TestSessionRetryRequestCPEExchange(t *testing.T) {
	s := newTestSession("c", queue(Request{Message: gpv("Device."), Key: "t1"}))
	runScenario(t, s, []step{
		{informEnv(NS1_2, "1", "7 TRANSFER COMPLETE"), nil, "InformResponse id=1 -> cpe-requests; started"},
	})
	before := stateJSON(t, s)
	tc := env(NS1_2, "tc-1", &TransferComplete{CommandKey: "x"})
	if f := s.FaultEnvelope(tc, FaultRetryRequest); f.Header.ID != "tc-1" || f.Body.(*Fault).Code != FaultRetryRequest {
		t.Fatalf("fault envelope %+v", f)
	}
	if stateJSON(t, s) != before {
		t.Fatal("FaultEnvelope changed the session")
	}
	runScenario(t, s, []step{
		{retry("tc-1"), nil, "GetParameterValues id=c.1 -> awaiting-response; anomaly:stray-response"},
		{env(NS1_2, "c.1", &GetParameterValuesResponse{}), nil, "204 -> ended end; done:GetParameterValuesResponse"},
	})
}
