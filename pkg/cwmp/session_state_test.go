package cwmp

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// sampleRequests has one filled-in message of every ACS request method.
func sampleRequests() []Message {
	return []Message{
		&GetRPCMethods{},
		&SetParameterValues{ParameterList: []ParameterValue{{Name: "A.B", Value: " spaced ", Type: "xsd:string"}}, ParameterKey: "pk"},
		&GetParameterValues{ParameterNames: []string{"Device.", "Device.DeviceInfo.UpTime"}},
		&GetParameterNames{ParameterPath: "Device.", NextLevel: true},
		&SetParameterAttributes{ParameterList: []SetParameterAttributesStruct{{Name: "A.", NotificationChange: true, Notification: 2, AccessListChange: true, AccessList: []string{"Subscriber"}}}},
		&GetParameterAttributes{ParameterNames: []string{"A."}},
		&AddObject{ObjectName: "Device.NAT.PortMapping.", ParameterKey: "k"},
		&DeleteObject{ObjectName: "Device.NAT.PortMapping.3.", ParameterKey: "k"},
		&Download{CommandKey: "c", FileType: "1 Firmware Upgrade Image", URL: "http://f/x", Username: "u", Password: "p",
			FileSize: 99, TargetFileName: "x.bin", DelaySeconds: 5, SuccessURL: "s", FailureURL: "f"},
		&Reboot{CommandKey: "r"},
		&GetQueuedTransfers{},
		&ScheduleInform{DelaySeconds: 60, CommandKey: "si"},
		&SetVouchers{VoucherList: []string{"dm91Y2hlcg=="}},
		&GetOptions{OptionName: "opt"},
		&Upload{CommandKey: "u", FileType: "1 Vendor Configuration File", URL: "http://f/up", DelaySeconds: 1},
		&FactoryReset{},
		&GetAllQueuedTransfers{},
		&ScheduleDownload{CommandKey: "sd", FileType: "1 Firmware Upgrade Image", URL: "http://f/x",
			TimeWindowList: []TimeWindow{{WindowStart: 0, WindowEnd: 3600, WindowMode: "2 Immediately", UserMessage: "hi", MaxRetries: -1}}},
		&CancelTransfer{CommandKey: "c"},
		&ChangeDUState{Operations: []DUOperation{
			{Kind: OpInstall, URL: "http://du", UUID: "123e4567-e89b-12d3-a456-426614174001", ExecutionEnvRef: "Device.SoftwareModules.ExecEnv.1."},
			{Kind: OpUpdate, UUID: "123e4567-e89b-12d3-a456-426614174002", Version: "2"},
			{Kind: OpUninstall, UUID: "123e4567-e89b-12d3-a456-426614174003"},
		}, CommandKey: "du"},
	}
}

func TestRequestJSONRoundTrip(t *testing.T) {
	msgs := sampleRequests()
	if len(msgs) != len(acsRequestMethods) {
		t.Fatalf("%d samples for %d ACS request methods", len(msgs), len(acsRequestMethods))
	}
	for _, m := range msgs {
		t.Run(m.Method(), func(t *testing.T) {
			in := Request{Message: m, Key: "task-" + m.Method(), HoldRequests: true}
			b, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			var out Request
			if err := json.Unmarshal(b, &out); err != nil {
				t.Fatalf("unmarshal %s: %v", b, err)
			}
			if !reflect.DeepEqual(in, out) {
				t.Fatalf("round trip changed the request:\n%#v\n%#v", in, out)
			}
		})
	}
}

func TestRequestJSONErrors(t *testing.T) {
	if _, err := json.Marshal(Request{Key: "x"}); err == nil {
		t.Fatal("marshalled a request without a message")
	}
	for _, bad := range []string{
		`{"method":"NoSuchMethod","message":{}}`,
		`{"method":"Reboot","message":{"commandKey":"x","extra":1}}`,
		`{"method":"Reboot","message":[]}`,
		`[]`,
	} {
		var r Request
		if err := json.Unmarshal([]byte(bad), &r); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// Every outstanding request type survives a checkpoint and is answered
// after the restore.
func TestSessionCheckpointEachRequestType(t *testing.T) {
	for _, m := range sampleRequests() {
		t.Run(m.Method(), func(t *testing.T) {
			s := newTestSession("c", queue(Request{Message: m, Key: "k"}))
			s.Step(informEnv(NS1_2, "1", "1 BOOT"), nil)
			s.Step(nil, nil)
			b, err := s.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			r := &Session{}
			if err := r.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			id, req, ok := r.Outstanding()
			if !ok || id != "c.1" || !reflect.DeepEqual(req.Message, m) || req.Key != "k" {
				t.Fatalf("restored outstanding %s %+v", id, req)
			}
			resp, _ := NewMessage(m.Method() + "Response")
			out := r.Step(env(NS1_2, "c.1", resp), nil)
			if got := render(out, r); got != "204 -> acs-turn turn; done:"+m.Method()+"Response" {
				t.Fatal(got)
			}
		})
	}
}

func TestRestoreSessionRejects(t *testing.T) {
	s := newTestSession("v", queue(Request{Message: gpv("A."), Key: "k"}))
	s.Step(informEnv(NS1_2, "1", "1 BOOT"), nil)
	s.Step(nil, nil)
	good := s.State()
	if _, err := RestoreSession(good); err != nil {
		t.Fatalf("good state: %v", err)
	}
	cases := map[string]func(st *State){
		"format":             func(st *State) { st.Format = 2 },
		"phase":              func(st *State) { st.Phase = 9 },
		"version":            func(st *State) { st.Version = 7 },
		"awaiting without":   func(st *State) { st.Outstanding = nil },
		"outstanding in cpe": func(st *State) { st.Phase = PhaseCPERequests },
		"no id":              func(st *State) { o := *st.Outstanding; o.ID = ""; st.Outstanding = &o },
		"not a request": func(st *State) {
			o := *st.Outstanding
			o.Request.Message = &InformResponse{}
			st.Outstanding = &o
		},
		"retransmits": func(st *State) { o := *st.Outstanding; o.Retransmits = 3; st.Outstanding = &o },
		"namespace":   func(st *State) { st.Namespace = "urn:x" },
		"owed":        func(st *State) { st.Owed = []string{"Inform"} },
	}
	for name, mutate := range cases {
		st := s.State()
		mutate(&st)
		if _, err := RestoreSession(st); !errors.Is(err, ErrBadState) {
			t.Errorf("%s: error %v", name, err)
		}
	}

	var r Session
	for _, bad := range []string{`{`, `{"format":1,"phase":"nope","cwmpVersion":"1.0"}`, `{"format":1,"phase":"new","cwmpVersion":"3.0"}`} {
		if err := r.UnmarshalBinary([]byte(bad)); !errors.Is(err, ErrBadState) {
			t.Errorf("%s: error %v", bad, err)
		}
	}
}

// A snapshot does not move with the session.
func TestSessionStateIsSnapshot(t *testing.T) {
	s := newTestSession("v", queue(Request{Message: gpv("A."), Key: "k"}))
	s.Step(informEnv(NS1_2, "1", "1 BOOT", "7 TRANSFER COMPLETE"), nil)
	snap := s.State()
	before, _ := json.Marshal(snap)
	s.Step(env(NS1_2, "2", &TransferComplete{}), nil)
	s.Step(nil, nil)
	s.Step(nil, nil)
	after, _ := json.Marshal(snap)
	if string(before) != string(after) {
		t.Fatalf("snapshot changed:\n%s\n%s", before, after)
	}
}

// The checkpoint of a live session names its fields (it is read by people
// debugging a stuck session, and by the next FleetACS version).
func TestSessionStateJSONShape(t *testing.T) {
	s := newTestSession("sess-1", queue(Request{Message: &Reboot{CommandKey: "r"}, Key: "task-9", HoldRequests: true}))
	in := informEnv(NS1_2, "1", "1 BOOT")
	in.Header.SupportedCWMPVersions = "1.4"
	in.Header.SessionTimeout = 20
	s.Step(in, nil)
	s.Step(nil, nil)
	got := stateJSON(t, s)
	want := `{"format":1,"sessionId":"sess-1","phase":"awaiting-response","counter":1,"namespace":"urn:dslforum-org:cwmp-1-2",` +
		`"useCWMPVersion":"1.4","deviceId":{"manufacturer":"Acme","oui":"00D09E","productClass":"Router","serialNumber":"SN0001"},` +
		`"events":[{"code":"1 BOOT","commandKey":""}],"sessionTimeout":20,"held":true,` +
		`"outstanding":{"id":"sess-1.1","request":{"method":"Reboot","message":{"commandKey":"r"},"key":"task-9","holdRequests":true}},` +
		`"cwmpVersion":"1.4"}`
	if got != want {
		t.Fatalf("checkpoint\n got  %s\n want %s", got, want)
	}
}
