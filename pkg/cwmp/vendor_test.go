package cwmp

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// vendorFixtureBodies are vendor messages the encoder must write: in the
// session's cwmp namespace and in a vendor namespace, with and without
// arguments.
func vendorFixtureBodies() []Message {
	return []Message{
		&VendorRequest{Name: "X_FLEETACS_Echo", Arguments: `<Text>a &amp; b</Text><n:X xmlns:n="urn:x" n:a="1"><![CDATA[<raw>]]></n:X>`},
		&VendorRequest{Name: "X_00D09E_Reset-All.now", Namespace: "urn:acme:rpc&1"},
		&VendorResponse{Name: "X_FLEETACS_EchoResponse", InnerXML: `<Text xsi:type="xsd:string">ok</Text>`},
		&VendorResponse{Name: "X_HW_GetParamValuesEagerlyResponse", Namespace: "urn:hw", InnerXML: "text only"},
	}
}

func TestVendorEncodeDecodeRoundTrip(t *testing.T) {
	for v := V1_0; v <= MaxVersion; v++ {
		for _, body := range vendorFixtureBodies() {
			out, err := Encode(&Envelope{Version: v, Header: Header{ID: "1", HasID: true}, Body: body})
			if err != nil {
				t.Fatalf("%s %s: %v", v, body.Method(), err)
			}
			env, err := Decode(out)
			if err != nil {
				t.Fatalf("%s %s: decode: %v\n%s", v, body.Method(), err, out)
			}
			want := reflect.ValueOf(body).Elem().Interface()
			got := reflect.ValueOf(env.Body).Elem()
			// The decoder names the namespace the element is in.
			wantNS := reflect.ValueOf(body).Elem().FieldByName("Namespace").String()
			if wantNS == "" {
				wantNS = v.Namespace()
			}
			if got.FieldByName("Namespace").String() != wantNS {
				t.Errorf("%s %s: namespace %q, want %q", v, body.Method(), got.FieldByName("Namespace"), wantNS)
			}
			got.FieldByName("Namespace").SetString(reflect.ValueOf(body).Elem().FieldByName("Namespace").String())
			if !reflect.DeepEqual(got.Interface(), want) {
				t.Errorf("%s: round trip\n got %#v\nwant %#v\n%s", v, got.Interface(), want, out)
			}
			// And through the JSON form.
			js, err := MarshalEnvelopeJSON(env)
			if err != nil {
				t.Fatalf("JSON: %v", err)
			}
			back, err := UnmarshalEnvelopeJSON(js)
			if err != nil || !reflect.DeepEqual(back.Body, env.Body) {
				t.Errorf("JSON round trip: %v\n%s\n%#v", err, js, back)
			}
		}
	}
}

func TestVendorEncodeWritesArgumentsVerbatim(t *testing.T) {
	args := "<A  b='1'>x&#x41;</A>\n<B/>"
	out, err := Encode(&Envelope{Version: V1_2, Body: &VendorRequest{Name: "X_ACME_Do", Arguments: args}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "<soap-env:Body><cwmp:X_ACME_Do>"+args+"</cwmp:X_ACME_Do></soap-env:Body>") {
		t.Fatalf("arguments not verbatim in the cwmp namespace:\n%s", out)
	}
	out, err = Encode(&Envelope{Version: V1_0, Body: &VendorRequest{Name: "X_ACME_Do", Namespace: "urn:acme", Arguments: args}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `<vnd:X_ACME_Do xmlns:vnd="urn:acme">`+args+"</vnd:X_ACME_Do>") {
		t.Fatalf("arguments not verbatim in the vendor namespace:\n%s", out)
	}
}

func TestVendorRequestRefused(t *testing.T) {
	big := "<A>" + strings.Repeat("x", MaxVendorArgumentsLen) + "</A>"
	deep := strings.Repeat("<a>", MaxVendorArgumentsDepth+1) + strings.Repeat("</a>", MaxVendorArgumentsDepth+1)
	for _, c := range []struct {
		name string
		m    *VendorRequest
		want string
	}{
		{"standard method", &VendorRequest{Name: "Reboot"}, "not X_<VENDOR>_<Name>"},
		{"no vendor", &VendorRequest{Name: "X__Foo"}, "not X_<VENDOR>_<Name>"},
		{"no name", &VendorRequest{Name: "X_ACME_"}, "not X_<VENDOR>_<Name>"},
		{"colon", &VendorRequest{Name: "X_ACME_a:b"}, "not X_<VENDOR>_<Name>"},
		{"space", &VendorRequest{Name: "X_ACME_a b"}, "not X_<VENDOR>_<Name>"},
		{"response name", &VendorRequest{Name: "X_ACME_FooResponse"}, "not X_<VENDOR>_<Name>"},
		{"too long", &VendorRequest{Name: "X_ACME_" + strings.Repeat("a", 60)}, "not X_<VENDOR>_<Name>"},
		{"unclosed", &VendorRequest{Name: "X_ACME_Do", Arguments: "<A><B></A>"}, "byte 6: malformed XML: unexpected end of element </A>"},
		{"open at end", &VendorRequest{Name: "X_ACME_Do", Arguments: "<A>"}, "byte 3: malformed XML"},
		{"stray end tag", &VendorRequest{Name: "X_ACME_Do", Arguments: "</A>"}, "byte 0: malformed XML"},
		{"doctype", &VendorRequest{Name: "X_ACME_Do", Arguments: "<!DOCTYPE x [<!ENTITY e 'x'>]>"}, "DOCTYPE"},
		{"entity", &VendorRequest{Name: "X_ACME_Do", Arguments: "<A>&e;</A>"}, `invalid character entity "&e;"`},
		{"xml declaration", &VendorRequest{Name: "X_ACME_Do", Arguments: `<?xml version="1.0"?><A/>`}, "XML declaration"},
		{"unbound prefix", &VendorRequest{Name: "X_ACME_Do", Arguments: "<A><p:B/></A>"}, `byte 3: namespace prefix "p" is not declared`},
		{"unbound attribute prefix", &VendorRequest{Name: "X_ACME_Do", Arguments: `<A q:x="1"/>`}, `namespace prefix "q" is not declared`},
		{"vendor prefix without namespace", &VendorRequest{Name: "X_ACME_Do", Arguments: `<vnd:A/>`}, `prefix "vnd"`},
		{"bad UTF-8", &VendorRequest{Name: "X_ACME_Do", Arguments: "<A>\xff</A>"}, "not valid UTF-8 at byte 3"},
		{"control character", &VendorRequest{Name: "X_ACME_Do", Arguments: "<A>\x01</A>"}, "U+0001"},
		{"bad namespace", &VendorRequest{Name: "X_ACME_Do", Namespace: "urn:\x00"}, "namespace contains U+0000"},
		{"oversized", &VendorRequest{Name: "X_ACME_Do", Arguments: big}, "more than 65536"},
		{"too deep", &VendorRequest{Name: "X_ACME_Do", Arguments: deep}, "nested deeper"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := CheckVendorRequest(c.m)
			if !errors.Is(err, ErrInvalidVendorRequest) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("CheckVendorRequest: %v, want an ErrInvalidVendorRequest with %q", err, c.want)
			}
			_, err = Encode(&Envelope{Body: c.m})
			if !errors.Is(err, ErrInvalidMessage) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Encode: %v, want an ErrInvalidMessage with %q", err, c.want)
			}
			s := NewSession("s")
			s.Step(informEnv(NS1_2, "i", "1 BOOT"), nil)
			s.Step(nil, nil)
			if _, err := s.Send(Request{Message: c.m}); !errors.Is(err, ErrNotACSRequest) {
				t.Fatalf("Send: %v, want ErrNotACSRequest", err)
			}
		})
	}
	// At the bounds: accepted.
	ok := []*VendorRequest{
		{Name: "X_ACME_" + strings.Repeat("a", MaxVendorMethodLen-7)},
		{Name: "X_ACME_Do", Arguments: strings.Repeat("y", MaxVendorArgumentsLen)},
		{Name: "X_ACME_Do", Arguments: deep[3 : len(deep)-4]},
		{Name: "X_ACME_Do", Namespace: "urn:a", Arguments: `<vnd:A xml:lang="en"/><cwmp:B xsi:type="xsd:string"/>`},
	}
	for _, m := range ok {
		if err := CheckVendorRequest(m); err != nil {
			t.Errorf("%.40q: %v", m.Arguments, err)
		}
	}
}

func TestVendorResponseTooLargeToDecode(t *testing.T) {
	body := `<soap-env:Envelope xmlns:soap-env="` + NSSOAPEnv + `"><soap-env:Body><X_A_BResponse>` +
		strings.Repeat("z", MaxVendorResponseLen+1) + `</X_A_BResponse></soap-env:Body></soap-env:Envelope>`
	_, err := Decode([]byte(body))
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "content of <X_A_BResponse> longer than") {
		t.Fatalf("err %v, want ErrTooLarge", err)
	}
}

// vendorTurn returns a session of version ns at the ACS's turn.
func vendorTurn(t *testing.T, ns string) *Session {
	t.Helper()
	s := NewSession("s")
	s.Step(informEnv(ns, "i", "1 BOOT"), nil)
	if out := s.Step(nil, nil); !out.Turn {
		t.Fatalf("no turn: %+v", out)
	}
	return s
}

func TestSessionVendorResponseMatching(t *testing.T) {
	req := &VendorRequest{Name: "X_FLEETACS_Echo", Arguments: "<A>1</A>"}
	for _, ns := range []string{NS1_0, NS1_1, NS1_2} {
		s := vendorTurn(t, ns)
		out, err := s.Send(Request{Message: req, Key: "k"})
		if err != nil {
			t.Fatalf("%s: Send: %v", ns, err)
		}
		wire, err := Encode(out.Reply)
		if err != nil {
			t.Fatalf("%s: encode: %v", ns, err)
		}
		if !strings.Contains(string(wire), "<cwmp:X_FLEETACS_Echo><A>1</A></cwmp:X_FLEETACS_Echo>") {
			t.Fatalf("%s: request on the wire:\n%s", ns, wire)
		}
		// Any prefix, any namespace.
		answer := `<e:Envelope xmlns:e="` + NSSOAPEnv + `" xmlns:v="urn:other"><e:Header><ID xmlns="` + ns + `">s.1</ID></e:Header>` +
			`<e:Body><v:X_FLEETACS_EchoResponse><A>1</A></v:X_FLEETACS_EchoResponse></e:Body></e:Envelope>`
		env, err := Decode([]byte(answer))
		if err != nil {
			t.Fatal(err)
		}
		out = s.Step(env, nil)
		if !out.Turn || len(out.Notices) != 1 {
			t.Fatalf("%s: %+v", ns, out)
		}
		done := out.Notices[0].(*RequestDone)
		r, ok := done.Response.(*VendorResponse)
		if !ok || r.InnerXML != "<A>1</A>" || r.Name != "X_FLEETACS_EchoResponse" || done.Request.Key != "k" || done.Fault != nil {
			t.Fatalf("%s: done %+v, response %#v", ns, done, done.Response)
		}
	}

	t.Run("fault", func(t *testing.T) {
		s := vendorTurn(t, NS1_2)
		if _, err := s.Send(Request{Message: req, Key: "k"}); err != nil {
			t.Fatal(err)
		}
		f := NewFault(FaultCPEMethodNotSupported)
		out := s.Step(env(NS1_2, "s.1", f), nil)
		if done, ok := out.Notices[0].(*RequestDone); !ok || done.Fault == nil || done.Fault.Code != FaultCPEMethodNotSupported {
			t.Fatalf("%+v", out.Notices)
		}
	})

	// Another method's response is not the answer: the request goes again
	// with the same ID (docs/protocol.md §5.4; Session), then is abandoned.
	t.Run("another method's response", func(t *testing.T) {
		s := vendorTurn(t, NS1_2)
		if _, err := s.Send(Request{Message: req, Key: "k"}); err != nil {
			t.Fatal(err)
		}
		wrong := []Message{
			&VendorResponse{Name: "X_FLEETACS_OtherResponse", Namespace: NS1_2},
			&GetParameterValuesResponse{},
			&VendorResponse{Name: "X_FLEETACS_EchoResponse", Namespace: NS1_2},
		}[:maxRetransmits]
		for i, m := range wrong {
			id := "s.1"
			if i == 1 {
				id = "s.0" // and a wrong ID
			}
			out := s.Step(env(NS1_2, id, m), nil)
			a, ok := out.Notices[0].(*Anomaly)
			if !ok || a.Kind != AnomalyStrayResponse || out.Reply == nil || out.Reply.Body != Message(req) || out.Reply.Header.ID != "s.1" {
				t.Fatalf("%d: %+v", i, out)
			}
		}
		out := s.Step(env(NS1_2, "s.1", &VendorResponse{Name: "X_FLEETACS_OtherResponse"}), nil)
		if ab, ok := out.Notices[len(out.Notices)-1].(*RequestAbandoned); !ok || ab.Reason != AbandonUnanswered || !out.End {
			t.Fatalf("not abandoned: %+v", out)
		}
	})

	t.Run("vendor request from the CPE", func(t *testing.T) {
		s := NewSession("s")
		s.Step(informEnv(NS1_2, "i", "1 BOOT"), nil)
		out := s.Step(env(NS1_2, "c", &VendorRequest{Name: "X_ACME_Frob"}), nil)
		if f, ok := out.Reply.Body.(*Fault); !ok || f.Code != FaultMethodNotSupported {
			t.Fatalf("%+v", out)
		}
	})
}

func TestSessionStateVendorRoundTrip(t *testing.T) {
	s := vendorTurn(t, NS1_0)
	req := Request{Message: &VendorRequest{Name: "X_ACME_Do", Namespace: "urn:acme", Arguments: `<A b="&quot;">é</A>`}, Key: "task-1"}
	if _, err := s.Send(req); err != nil {
		t.Fatal(err)
	}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"method":"X_ACME_Do","vendor":true`) {
		t.Fatalf("state JSON: %s", b)
	}
	var back Session
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatalf("restore: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(back.State(), s.State()) {
		t.Fatalf("restored\n%#v\nwant\n%#v", back.State(), s.State())
	}
	_, got, _ := back.Outstanding()
	if !reflect.DeepEqual(got, req) {
		t.Fatalf("outstanding %#v", got)
	}
	// A checkpoint whose vendor request is invalid is refused.
	bad := strings.Replace(string(b), `"name":"X_ACME_Do"`, `"name":"Reboot"`, 1)
	if err := json.Unmarshal([]byte(bad), new(State)); err == nil {
		t.Fatalf("accepted a renamed vendor request")
	}
	st := s.State()
	st.Outstanding.Request.Message = &VendorRequest{Name: "X_ACME_Do", Arguments: "<A>"}
	if _, err := RestoreSession(st); !errors.Is(err, ErrBadState) {
		t.Fatalf("accepted malformed arguments: %v", err)
	}
}
