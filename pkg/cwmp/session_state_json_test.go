package cwmp

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
)

// The hand-written JSON of a State (AppendJSON) says what encoding/json
// said before it (testdata/session-states-68792b9.json, written by that
// commit's reflective encoding from goldStates), and reads back as the
// state it came from.
func TestStateJSONAsBefore(t *testing.T) {
	b, err := os.ReadFile("testdata/session-states-68792b9.json")
	if err != nil {
		t.Fatal(err)
	}
	var gold []json.RawMessage
	if err := json.Unmarshal(b, &gold); err != nil {
		t.Fatal(err)
	}
	states := goldStates()
	if len(gold) != len(states) {
		t.Fatalf("%d gold states, %d states", len(gold), len(states))
	}
	for i, st := range states {
		got, err := st.AppendJSON([]byte("prefix"))
		if err != nil {
			t.Fatal(err)
		}
		if string(got[:6]) != "prefix" {
			t.Fatal("AppendJSON did not append")
		}
		got = got[6:]
		var a, w any
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("state %d: %v\n%s", i, err, got)
		}
		if err := json.Unmarshal(gold[i], &w); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, w) {
			t.Errorf("state %d:\n%s\nwant\n%s", i, got, gold[i])
		}
		var back State
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("state %d: %v", i, err)
		}
		if !reflect.DeepEqual(back, st) {
			t.Errorf("state %d reads back as %+v", i, back)
		}
		if m, err := st.MarshalJSON(); err != nil || string(m) != string(got) {
			t.Errorf("state %d: MarshalJSON differs from AppendJSON: %v", i, err)
		}
	}
}

// goldStates are states with every field set, and outstanding requests of
// the hand-written kinds and another.
func goldStates() []State {
	base := State{Format: StateFormat, SessionID: "s<1>&\"", Phase: PhaseAwaitingResponse, Counter: 7, Version: V1_2,
		Namespace: NS1_2, UseCWMPVersion: "1.2", XMLDeclaration: true,
		DeviceID: DeviceID{Manufacturer: "Acme & Co", OUI: "00D09E", ProductClass: "Router", SerialNumber: "SN\n1"},
		Events:   []Event{{Code: "0 BOOTSTRAP"}, {Code: "M Download", CommandKey: "k\u2028"}}, SessionTimeout: 30,
		Held: true, HeldEmptyPOST: true, Owed: []string{"TransferComplete"}}
	var out []State
	for _, m := range []Message{
		&GetParameterValues{ParameterNames: []string{"Device.A", "Device.<B>", "Device.\u00e9"}},
		&GetParameterValues{},
		&GetParameterNames{ParameterPath: "Device.", NextLevel: true},
		&ScheduleInform{DelaySeconds: 42, CommandKey: "fleetacs-discovery"},
		&Download{CommandKey: "dl", FileType: "1 Firmware Upgrade Image", URL: "http://x/?a=1&b=2", FileSize: 10},
	} {
		st := base
		st.Outstanding = &Outstanding{ID: "s.7", Request: Request{Message: m, Key: "discovery gpv 0 3", HoldRequests: true}, Retransmits: 1}
		out = append(out, st)
	}
	plain := State{Format: StateFormat, SessionID: "p", Phase: PhaseCPERequests, Version: V1_0}
	out = append(out, plain)
	return out
}

// AppendJSONString writes what encoding/json reads back as the string
// encoding/json would have written.
func TestAppendJSONStringReadsBack(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"uote\\", "\n\r\t\x00\x1f\x7f", "é€😀", "\u2028\u2029", "bad\xffutf8\xc3", "<&>"} {
		var got, want string
		if err := json.Unmarshal(AppendJSONString(nil, s), &got); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		b, _ := json.Marshal(s)
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%q read back as %q, encoding/json %q", s, got, want)
		}
	}
}
