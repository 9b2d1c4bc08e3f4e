package cwmp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// sampleInform is an Inform envelope with every header field set, used by
// several tests.
func sampleInform() *Envelope {
	return &Envelope{
		Namespace:      NS1_4, // non-standard for 1.4, so it must show
		Version:        V1_4,
		XMLDeclaration: true,
		Header: Header{
			ID: "SAGEM_ID_7589", HasID: true,
			NoMoreRequests:        true,
			SessionTimeout:        30,
			SupportedCWMPVersions: "1.0,1.1,1.2,1.3,1.4",
		},
		Body: &Inform{
			DeviceID: DeviceID{Manufacturer: "Acme & Sons", OUI: "00D09E", ProductClass: "HGW<1>", SerialNumber: "SN:0001"},
			Events: []Event{
				{Code: "1 BOOT"},
				{Code: "M Download", CommandKey: "fw-42"},
			},
			MaxEnvelopes: 1,
			CurrentTime:  "2024-05-01T12:00:00Z",
			RetryCount:   3,
			ParameterList: []ParameterValue{
				{Name: "Device.DeviceInfo.SoftwareVersion", Value: "1.2.3", Type: "xsd:string"},
				{Name: "Device.ManagementServer.ConnectionRequestURL", Value: "http://10.0.0.1:7547/cr?a=1&b=2", Type: "xsd:string"},
				{Name: "Device.DeviceInfo.UpTime", Value: "42", Type: ""},
			},
		},
	}
}

func TestMarshalEnvelopeJSONInform(t *testing.T) {
	got, err := MarshalEnvelopeJSON(sampleInform())
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "cwmpVersion": "1.4",
  "namespace": "urn:dslforum-org:cwmp-1-4",
  "xmlDeclaration": true,
  "id": "SAGEM_ID_7589",
  "holdRequests": false,
  "noMoreRequests": true,
  "sessionTimeout": 30,
  "supportedCWMPVersions": "1.0,1.1,1.2,1.3,1.4",
  "method": "Inform",
  "body": {
    "deviceId": {
      "manufacturer": "Acme & Sons",
      "oui": "00D09E",
      "productClass": "HGW<1>",
      "serialNumber": "SN:0001"
    },
    "events": [
      {
        "code": "1 BOOT",
        "commandKey": ""
      },
      {
        "code": "M Download",
        "commandKey": "fw-42"
      }
    ],
    "maxEnvelopes": 1,
    "currentTime": "2024-05-01T12:00:00Z",
    "retryCount": 3,
    "parameterList": [
      {
        "name": "Device.DeviceInfo.SoftwareVersion",
        "value": "1.2.3",
        "type": "xsd:string"
      },
      {
        "name": "Device.ManagementServer.ConnectionRequestURL",
        "value": "http://10.0.0.1:7547/cr?a=1&b=2",
        "type": "xsd:string"
      },
      {
        "name": "Device.DeviceInfo.UpTime",
        "value": "42",
        "type": ""
      }
    ]
  }
}`
	if string(got) != want {
		t.Errorf("MarshalEnvelopeJSON:\n%s\nwant:\n%s", got, want)
	}
	// The output is plain JSON that any decoder reads to the same values.
	var generic map[string]any
	if err := json.Unmarshal(got, &generic); err != nil {
		t.Fatalf("output is not valid JSON: %v", err)
	}
}

// TestMarshalEnvelopeJSONMinimal covers the defaults: no ID header is null,
// the standard namespace and false/zero headers are left out, empty lists
// are [] and an empty body is {}.
func TestMarshalEnvelopeJSONMinimal(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  *Envelope
		want string
	}{
		{
			name: "no ID, empty Inform",
			env:  &Envelope{Version: V1_0, Namespace: NS1_0, Body: &Inform{}},
			want: `{
  "cwmpVersion": "1.0",
  "id": null,
  "holdRequests": false,
  "method": "Inform",
  "body": {
    "deviceId": {
      "manufacturer": "",
      "oui": "",
      "productClass": "",
      "serialNumber": ""
    },
    "events": [],
    "maxEnvelopes": 0,
    "currentTime": "",
    "retryCount": 0,
    "parameterList": []
  }
}`,
		},
		{
			name: "empty ID, HoldRequests, empty body",
			env:  &Envelope{Version: V1_2, Header: Header{HasID: true, HoldRequests: true, UseCWMPVersion: "1.2"}, Body: &FactoryReset{}},
			want: `{
  "cwmpVersion": "1.2",
  "id": "",
  "holdRequests": true,
  "useCWMPVersion": "1.2",
  "method": "FactoryReset",
  "body": {}
}`,
		},
		{
			name: "fault without per-parameter faults",
			env:  &Envelope{Version: V1_0, Header: Header{ID: "7", HasID: true}, Body: NewFault(FaultRetryRequest)},
			want: `{
  "cwmpVersion": "1.0",
  "id": "7",
  "holdRequests": false,
  "method": "Fault",
  "body": {
    "soapCode": "Server",
    "soapString": "CWMP fault",
    "faultCode": 8005,
    "faultString": "Retry request"
  }
}`,
		},
		{
			name: "unknown method",
			env:  &Envelope{Version: V1_0, Header: Header{ID: "1", HasID: true}, Body: &Unknown{Name: "X_ACME_Frob", Namespace: NS1_0}},
			want: `{
  "cwmpVersion": "1.0",
  "id": "1",
  "holdRequests": false,
  "method": "X_ACME_Frob",
  "unknown": true,
  "body": {
    "name": "X_ACME_Frob",
    "namespace": "urn:dslforum-org:cwmp-1-0"
  }
}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MarshalEnvelopeJSON(tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
			back, err := UnmarshalEnvelopeJSON(got)
			if err != nil {
				t.Fatalf("UnmarshalEnvelopeJSON: %v", err)
			}
			again, err := MarshalEnvelopeJSON(back)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, got) {
				t.Errorf("not a fixed point:\n%s\nthen:\n%s", got, again)
			}
		})
	}
}

// populate sets every field reachable from v to a distinct non-zero value
// (lists get two elements), so that a round trip that drops or mixes up a
// field shows.
func populate(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("v%d <&> \"q\" \\ é\n", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(-*n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(4000000000 + *n))
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			populate(s.Index(i), n)
		}
		v.Set(s)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				populate(v.Field(i), n)
			}
		}
	default:
		panic(fmt.Sprintf("populate: unhandled kind %s", v.Kind()))
	}
}

// TestEnvelopeJSONRoundTripEveryMethod checks every method the registry
// knows, zero and fully populated: JSON and back gives the same envelope,
// and the JSON never holds null but for a missing ID.
func TestEnvelopeJSONRoundTripEveryMethod(t *testing.T) {
	methods := Methods()
	slices.Sort(methods)
	for _, method := range methods {
		for _, full := range []bool{false, true} {
			name := method + "/zero"
			if full {
				name = method + "/populated"
			}
			t.Run(name, func(t *testing.T) {
				msg, _ := NewMessage(method)
				// The standard namespace is left out of the JSON, so it
				// would come back as "": use none.
				env := &Envelope{Version: V1_2, Body: msg}
				if full {
					n := 0
					populate(reflect.ValueOf(msg).Elem(), &n)
					env.Header = Header{ID: "id-1", HasID: true, HoldRequests: true, NoMoreRequests: true,
						SessionTimeout: 60, SupportedCWMPVersions: "1.0,1.4", UseCWMPVersion: "1.4"}
					env.XMLDeclaration = true
				}
				data, err := MarshalEnvelopeJSON(env)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(data), "null") != !full {
					t.Errorf("null appears where it should not:\n%s", data)
				}
				back, err := UnmarshalEnvelopeJSON(data)
				if err != nil {
					t.Fatalf("UnmarshalEnvelopeJSON: %v\n%s", err, data)
				}
				if full {
					if !reflect.DeepEqual(back, env) {
						t.Errorf("round trip changed the envelope:\n got %+v %#v\nwant %+v %#v", back, back.Body, env, env.Body)
					}
				} else {
					// The zero message's nil lists come back empty, not nil.
					again, _ := MarshalEnvelopeJSON(back)
					if !bytes.Equal(again, data) {
						t.Errorf("round trip changed the JSON:\n%s\nthen:\n%s", data, again)
					}
				}
			})
		}
	}
}

func TestEnvelopeJSONRoundTripFaultAndUnknown(t *testing.T) {
	fault := NewFault(FaultCPEInvalidArguments)
	fault.SetParameterValuesFaults = []SetParameterValuesFault{
		{ParameterName: "Device.X.Y", FaultCode: FaultInvalidParameterValue, FaultString: "Invalid parameter value"},
	}
	for _, env := range []*Envelope{
		{Version: V1_0, Header: Header{ID: "a", HasID: true}, Body: fault},
		{Version: V1_4, Namespace: NS1_3, Body: &Unknown{Name: "X_HW_GetParamValuesEagerly", Namespace: NS1_3}},
		// A known name in a foreign namespace is still an Unknown.
		{Version: V1_0, Body: &Unknown{Name: "Inform", Namespace: "urn:example:other"}},
	} {
		data, err := MarshalEnvelopeJSON(env)
		if err != nil {
			t.Fatal(err)
		}
		back, err := UnmarshalEnvelopeJSON(data)
		if err != nil {
			t.Fatalf("UnmarshalEnvelopeJSON: %v\n%s", err, data)
		}
		if !reflect.DeepEqual(back, env) {
			t.Errorf("round trip of %s changed it:\n got %+v\nwant %+v", env.Body.Method(), back, env)
		}
	}
}

func TestUnmarshalEnvelopeJSONAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want *Envelope
	}{
		{
			name: "minimal request, keys in any order",
			in:   `{"body": {"parameterNames": ["Device."]}, "method": "GetParameterValues", "cwmpVersion": "1.0"}`,
			want: &Envelope{Version: V1_0, Body: &GetParameterValues{ParameterNames: []string{"Device."}}},
		},
		{
			name: "missing body is the zero message; null list is empty",
			in:   `{"cwmpVersion": "1.1", "id": "x", "method": "GetRPCMethodsResponse"}`,
			want: &Envelope{Version: V1_1, Header: Header{ID: "x", HasID: true}, Body: &GetRPCMethodsResponse{}},
		},
		{
			name: "null list",
			in:   `{"cwmpVersion": "1.2", "id": null, "method": "GetRPCMethodsResponse", "body": {"methodList": null}}`,
			want: &Envelope{Version: V1_2, Body: &GetRPCMethodsResponse{}},
		},
		{
			name: "standard namespace kept as given",
			in:   "\xEF\xBB\xBF" + `{"cwmpVersion": "1.3", "namespace": "urn:dslforum-org:cwmp-1-2", "method": "Reboot", "body": {"commandKey": "r1"}}`,
			want: &Envelope{Version: V1_3, Namespace: NS1_2, Body: &Reboot{CommandKey: "r1"}},
		},
		{
			name: "unknown without body takes the method as name",
			in:   `{"cwmpVersion": "1.0", "method": "X_ACME_Frob", "unknown": true}`,
			want: &Envelope{Version: V1_0, Body: &Unknown{Name: "X_ACME_Frob"}},
		},
		{
			name: "embedded struct fields and limits",
			in: `{"cwmpVersion": "1.2", "method": "AutonomousDUStateChangeComplete", "body": {"results": [
				{"uuid": "u", "fault": {"faultCode": 9001, "faultString": ""}, "operationPerformed": "Install", "resolved": true}]}}`,
			want: &Envelope{Version: V1_2, Body: &AutonomousDUStateChangeComplete{Results: []AutonOpResult{{
				OpResult:           OpResult{UUID: "u", Resolved: true, Fault: FaultStruct{FaultCode: 9001}},
				OperationPerformed: "Install",
			}}}},
		},
		{
			name: "uint32 maximum",
			in:   `{"cwmpVersion": "1.0", "method": "InformResponse", "body": {"maxEnvelopes": 4294967295}}`,
			want: &Envelope{Version: V1_0, Body: &InformResponse{MaxEnvelopes: 4294967295}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := UnmarshalEnvelopeJSON([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v %+v\nwant %+v %+v", got, got.Body, tc.want, tc.want.Body)
			}
		})
	}
}

func TestUnmarshalEnvelopeJSONErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", `line 1, column 1: invalid JSON: empty input, want a JSON object`},
		{"blank", " \n ", `line 2, column 2: invalid JSON: empty input, want a JSON object`},
		{"syntax", "{\n  \"cwmpVersion\" \"1.0\"}", `line 2, column 17: invalid JSON: invalid character '"' after object key`},
		{"truncated", "{\n  \"cwmpVersion\": \"1.0\",\n  \"method\": \"Inf", `line 3, column 17: invalid JSON: unexpected end of JSON input`},
		{"trailing data", `{"cwmpVersion": "1.0", "method": "Reboot"} {}`, `line 1, column 44: invalid JSON: invalid character '{' after top-level value`},
		{"not an object", `["Inform"]`, `line 1, column 1: want a JSON object (the envelope), got array`},
		{"unknown method", "{\n  \"cwmpVersion\": \"1.0\",\n  \"id\": \"1\",\n  \"method\": \"Infrom\"\n}", `line 4, column 13: unknown method "Infrom" (did you mean "Inform"?)`},
		{"unknown method far from any", `{"cwmpVersion": "1.0", "method": "Zzzzzzzzzz"}`, `line 1, column 34: unknown method "Zzzzzzzzzz"`},
		{"method case", `{"cwmpVersion": "1.0", "method": "inform"}`, `line 1, column 34: unknown method "inform" (did you mean "Inform"?)`},
		{"empty unknown", `{"cwmpVersion": "1.0", "method": "", "unknown": true}`, `line 1, column 34: empty method name`},
		{"unknown name mismatch", `{"cwmpVersion": "1.0", "method": "X_A", "unknown": true, "body": {"name": "X_B"}}`, `line 1, column 66: body.name: "X_B" differs from method "X_A"`},
		{"missing method", `  {"cwmpVersion": "1.0"}`, `line 1, column 3: missing key "method"`},
		{"missing version", `{"method": "Reboot"}`, `line 1, column 1: missing key "cwmpVersion"`},
		{"bad version", `{"cwmpVersion": "2.0", "method": "Reboot"}`, `line 1, column 17: cwmpVersion: unsupported CWMP version "2.0", want 1.0 to 1.4`},
		{"version as number", `{"cwmpVersion": 1.0, "method": "Reboot"}`, `line 1, column 17: cwmpVersion: want string, got number`},
		{"unknown top key", `{"cwmpVersion": "1.0", "ID": "1", "method": "Reboot"}`, `line 1, column 24: unknown key "ID" in envelope (did you mean "id"?)`},
		{"duplicate key", `{"cwmpVersion": "1.0", "method": "Reboot", "method": "Reboot"}`, `line 1, column 44: duplicate key "method"`},
		{"id not string", `{"cwmpVersion": "1.0", "id": 5, "method": "Reboot"}`, `line 1, column 30: id: want string or null, got number`},
		{"holdRequests string", `{"cwmpVersion": "1.0", "holdRequests": "true", "method": "Reboot"}`, `line 1, column 40: holdRequests: want boolean, got string`},
		{"sessionTimeout negative", `{"cwmpVersion": "1.0", "sessionTimeout": -5, "method": "Reboot"}`, `line 1, column 42: sessionTimeout: -5 is out of range for uint32`},
		{"unknown body key", "{\"cwmpVersion\": \"1.0\", \"method\": \"Inform\", \"body\": {\n  \"deviceID\": {}}}", `line 2, column 3: unknown key "deviceID" in body (did you mean "deviceId"?)`},
		{"nested type error", "{\"cwmpVersion\": \"1.0\", \"method\": \"Inform\", \"body\": {\n \"events\": [{\"code\": \"1 BOOT\"},\n   {\"code\": 4}]}}", `line 3, column 13: body.events[1].code: want string, got number`},
		{"nested unknown key", `{"cwmpVersion": "1.0", "method": "Inform", "body": {"events": [{"code": "1 BOOT", "commandkey": ""}]}}`, `line 1, column 83: unknown key "commandkey" in body.events[0] (did you mean "commandKey"?)`},
		{"duplicate body key", `{"cwmpVersion": "1.0", "method": "Reboot", "body": {"commandKey": "a", "commandKey": "b"}}`, `line 1, column 72: duplicate key "commandKey" in body`},
		{"not an integer", `{"cwmpVersion": "1.0", "method": "Inform", "body": {"retryCount": 1.5}}`, `line 1, column 67: body.retryCount: 1.5 is not an integer`},
		{"uint overflow", `{"cwmpVersion": "1.0", "method": "Inform", "body": {"retryCount": 4294967296}}`, `line 1, column 67: body.retryCount: 4294967296 is out of range for uint32`},
		{"int overflow", `{"cwmpVersion": "1.0", "method": "Fault", "body": {"faultCode": 99999999999999999999}}`, `line 1, column 65: body.faultCode: 99999999999999999999 is out of range for int`},
		{"body not object", `{"cwmpVersion": "1.0", "method": "Reboot", "body": []}`, `line 1, column 52: body: want object, got array`},
		{"list not array", `{"cwmpVersion": "1.0", "method": "GetParameterValues", "body": {"parameterNames": "Device."}}`, `line 1, column 83: body.parameterNames: want array, got string`},
		{"bool as number", `{"cwmpVersion": "1.0", "method": "GetParameterNames", "body": {"nextLevel": 1}}`, `line 1, column 77: body.nextLevel: want boolean, got number`},
		{"multibyte column", "{\"cwmpVersion\": \"1.0\", \"method\": \"Reboot\", \"body\": {\"commandKey\": \"é€\", \"x\": 1}}", `line 1, column 73: unknown key "x" in body`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, err := UnmarshalEnvelopeJSON([]byte(tc.in))
			if err == nil {
				t.Fatalf("no error; got %+v", env)
			}
			var je *JSONError
			if !errors.As(err, &je) {
				t.Fatalf("error %T %v is not a *JSONError", err, err)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %s\nwant %s", err, tc.want)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestUnmarshalEnvelopeJSONVersionErrorUnwraps(t *testing.T) {
	_, err := UnmarshalEnvelopeJSON([]byte(`{"cwmpVersion": "1.9", "method": "Reboot"}`))
	_, want := ParseVersion("1.9")
	if err == nil || want == nil || !strings.Contains(errors.Unwrap(err).Error(), want.Error()) {
		t.Errorf("error %v does not wrap %v", err, want)
	}
}

// foreignMessage is a Message the registry does not know.
type foreignMessage struct{}

func (foreignMessage) Method() string { return "Inform" }

func TestMarshalEnvelopeJSONErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  *Envelope
		want string
	}{
		{"nil envelope", nil, "marshal envelope JSON: nil envelope"},
		{"nil body", &Envelope{}, "marshal envelope JSON: nil body"},
		{"typed nil body", &Envelope{Body: (*Inform)(nil)}, "marshal envelope JSON: unsupported body *cwmp.Inform: want a non-nil pointer to a message struct"},
		{"foreign body", &Envelope{Body: &foreignMessage{}}, `marshal envelope JSON: unsupported body *cwmp.foreignMessage for method "Inform"`},
		{"unknown without name", &Envelope{Body: &Unknown{}}, "marshal envelope JSON: unknown method without a name"},
		{"bad version", &Envelope{Version: 9, Body: &Reboot{}}, "marshal envelope JSON: unsupported CWMP version 1.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := MarshalEnvelopeJSON(tc.env)
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v, want %s", err, tc.want)
			}
		})
	}
}

func TestAppendJSONString(t *testing.T) {
	in := "a<b>&c \"q\" \\ \n\r\t\x01\x1f é \u2028\u2029 \xff end"
	got := string(appendJSONString(nil, in))
	want := `"a<b>&c \"q\" \\ \n\r\t\u0001\u001f é \u2028\u2029 \ufffd end"`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	var back string
	if err := json.Unmarshal([]byte(got), &back); err != nil {
		t.Fatal(err)
	}
	if wantBack := strings.ReplaceAll(in, "\xff", "\uFFFD"); back != wantBack {
		t.Errorf("read back %q, want %q", back, wantBack)
	}
}

func TestJSONPosition(t *testing.T) {
	data := []byte("\xEF\xBB\xBFab\né€x\n")
	for _, tc := range []struct {
		off       int64
		line, col int
	}{
		{0, 1, 1}, {3, 1, 1}, {4, 1, 2}, {6, 2, 1}, {8, 2, 2}, {11, 2, 3}, {12, 2, 4}, {13, 3, 1}, {99, 3, 1}, {-1, 1, 1},
	} {
		if line, col := jsonPosition(data, tc.off); line != tc.line || col != tc.col {
			t.Errorf("jsonPosition(%d) = %d:%d, want %d:%d", tc.off, line, col, tc.line, tc.col)
		}
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"Inform", "InformResponse", "Reboot", "Download"}
	for in, want := range map[string]string{
		"Infrom":   "Inform",
		"inform":   "Inform",
		"Reboto":   "Reboot",
		"Downlaod": "Download",
		"Upload":   "",
		"X":        "",
	} {
		if got := suggest(in, names); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzUnmarshalEnvelopeJSON checks that any input either fails with a
// *JSONError or gives an envelope whose JSON form is a fixed point.
func FuzzUnmarshalEnvelopeJSON(f *testing.F) {
	seed, _ := MarshalEnvelopeJSON(sampleInform())
	f.Add(seed)
	f.Add([]byte(`{"cwmpVersion": "1.0", "method": "X_Y", "unknown": true, "body": {"namespace": "urn:x"}}`))
	f.Add([]byte(`{"cwmpVersion": "1.2", "id": null, "method": "Fault", "body": {"faultCode": 9003, "setParameterValuesFault": [{"parameterName": "a"}]}}`))
	f.Add([]byte(`{"cwmpVersion": "1.0", "method": "AutonomousDUStateChangeComplete", "body": {"results": [{"uuid": "u"}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := UnmarshalEnvelopeJSON(data)
		if err != nil {
			var je *JSONError
			if !errors.As(err, &je) {
				t.Fatalf("error %T %v is not a *JSONError", err, err)
			}
			return
		}
		first, err := MarshalEnvelopeJSON(env)
		if err != nil {
			t.Fatalf("MarshalEnvelopeJSON of an accepted envelope: %v", err)
		}
		env2, err := UnmarshalEnvelopeJSON(first)
		if err != nil {
			t.Fatalf("UnmarshalEnvelopeJSON of own output: %v\n%s", err, first)
		}
		second, err := MarshalEnvelopeJSON(env2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, second) {
			t.Fatalf("not a fixed point:\n%s\nthen:\n%s", first, second)
		}
	})
}

// benchInform is an Inform with 40 parameters, the size of a typical
// gateway's periodic Inform.
func benchInform() *Envelope {
	env := sampleInform()
	inf := env.Body.(*Inform)
	for i := len(inf.ParameterList); i < 40; i++ {
		inf.ParameterList = append(inf.ParameterList, ParameterValue{
			Name: fmt.Sprintf("Device.Ethernet.Interface.%d.Stats.BytesSent", i), Value: "123456789", Type: "xsd:unsignedLong"})
	}
	return env
}

func BenchmarkMarshalEnvelopeJSON(b *testing.B) {
	env := benchInform()
	data, _ := MarshalEnvelopeJSON(env)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MarshalEnvelopeJSON(env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalEnvelopeJSON(b *testing.B) {
	data, err := MarshalEnvelopeJSON(benchInform())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnmarshalEnvelopeJSON(data); err != nil {
			b.Fatal(err)
		}
	}
}
