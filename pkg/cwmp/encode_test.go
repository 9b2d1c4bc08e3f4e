package cwmp

import (
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"testing"
)

const envOpen12 = `<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"` +
	` xmlns:soap-enc="http://schemas.xmlsoap.org/soap/encoding/"` +
	` xmlns:xsd="http://www.w3.org/2001/XMLSchema"` +
	` xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"` +
	` xmlns:cwmp="urn:dslforum-org:cwmp-1-2">`

func mustEncode(t *testing.T, env *Envelope) string {
	t.Helper()
	out, err := Encode(env)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return string(out)
}

func TestEncodeExactOutput(t *testing.T) {
	got := mustEncode(t, &Envelope{
		Version: V1_2,
		Header:  Header{ID: "acs-000042", HasID: true},
		Body:    &GetParameterValues{ParameterNames: []string{"Device.DeviceInfo.UpTime", "Device.ManagementServer."}},
	})
	want := envOpen12 +
		`<soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">acs-000042</cwmp:ID></soap-env:Header>` +
		`<soap-env:Body><cwmp:GetParameterValues>` +
		`<ParameterNames soap-enc:arrayType="xsd:string[2]">` +
		`<string>Device.DeviceInfo.UpTime</string><string>Device.ManagementServer.</string>` +
		`</ParameterNames></cwmp:GetParameterValues></soap-env:Body></soap-env:Envelope>` + "\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestEncodeInformResponseExact(t *testing.T) {
	got := mustEncode(t, &Envelope{
		Version:        V1_4,
		XMLDeclaration: true,
		Header:         Header{ID: "1", HasID: true, HoldRequests: true, UseCWMPVersion: "1.4"},
		Body:           &InformResponse{MaxEnvelopes: 1},
	})
	want := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" + envOpen12 +
		`<soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">1</cwmp:ID>` +
		`<cwmp:HoldRequests soap-env:mustUnderstand="1">1</cwmp:HoldRequests>` +
		`<cwmp:UseCWMPVersion soap-env:mustUnderstand="1">1.4</cwmp:UseCWMPVersion></soap-env:Header>` +
		`<soap-env:Body><cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>` +
		`</soap-env:Body></soap-env:Envelope>` + "\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestEncodeHeader(t *testing.T) {
	body := &InformResponse{MaxEnvelopes: 1}
	for _, c := range []struct {
		name     string
		v        Version
		h        Header
		contains []string
		absent   []string
	}{
		{name: "no header elements, no Header", h: Header{}, absent: []string{"Header", "cwmp:ID"}},
		{name: "empty ID kept when HasID", h: Header{HasID: true},
			contains: []string{`<cwmp:ID soap-env:mustUnderstand="1"></cwmp:ID>`}},
		{name: "ID without HasID still sent", h: Header{ID: "7"},
			contains: []string{`<cwmp:ID soap-env:mustUnderstand="1">7</cwmp:ID>`}},
		{name: "ID escaped", h: Header{ID: "a&b<c>", HasID: true},
			contains: []string{`>a&amp;b&lt;c&gt;</cwmp:ID>`}},
		{name: "HoldRequests false is left out", h: Header{ID: "1", HasID: true, HoldRequests: false},
			absent: []string{"HoldRequests"}},
		{name: "NoMoreRequests never sent", h: Header{ID: "1", HasID: true, NoMoreRequests: true},
			absent: []string{"NoMoreRequests"}},
		{name: "NoMoreRequests alone, no Header", h: Header{NoMoreRequests: true},
			absent: []string{"Header"}},
		{name: "SessionTimeout", v: V1_3, h: Header{SessionTimeout: 45},
			contains: []string{`<cwmp:SessionTimeout soap-env:mustUnderstand="0">45</cwmp:SessionTimeout>`}},
		{name: "SupportedCWMPVersions", v: V1_4, h: Header{SupportedCWMPVersions: "1.0,1.4"},
			contains: []string{`<cwmp:SupportedCWMPVersions soap-env:mustUnderstand="0">1.0,1.4</cwmp:SupportedCWMPVersions>`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := mustEncode(t, &Envelope{Version: c.v, Header: c.h, Body: body})
			for _, s := range c.contains {
				if !strings.Contains(got, s) {
					t.Errorf("missing %q in\n%s", s, got)
				}
			}
			for _, s := range c.absent {
				if strings.Contains(got, s) {
					t.Errorf("unexpected %q in\n%s", s, got)
				}
			}
		})
	}
}

func TestEncodeFraming(t *testing.T) {
	env := &Envelope{Version: V1_0, Body: &GetRPCMethods{}}
	got := mustEncode(t, env)
	if strings.HasPrefix(got, "<?xml") {
		t.Errorf("XML declaration written without XMLDeclaration:\n%s", got)
	}
	if !strings.HasSuffix(got, "</soap-env:Envelope>\n") || strings.HasSuffix(got, "\n\n") {
		t.Errorf("want exactly one trailing newline:\n%q", got)
	}
	if !strings.Contains(got, `xmlns:cwmp="urn:dslforum-org:cwmp-1-0"`) {
		t.Errorf("want the 1.0 namespace:\n%s", got)
	}
	if !strings.Contains(got, "<cwmp:GetRPCMethods></cwmp:GetRPCMethods>") {
		t.Errorf("want an explicit start/end pair for an empty RPC:\n%s", got)
	}
	env.XMLDeclaration = true
	if got := mustEncode(t, env); !strings.HasPrefix(got, `<?xml version="1.0" encoding="UTF-8"?>`+"\n<soap-env:Envelope ") {
		t.Errorf("want the XML declaration first:\n%s", got)
	}
}

func TestEncodeNamespace(t *testing.T) {
	for _, c := range []struct {
		v    Version
		ns   string
		want string
	}{
		{V1_0, "", NS1_0},
		{V1_1, "", NS1_1},
		{V1_2, "", NS1_2},
		{V1_3, "", NS1_2},
		{V1_4, "", NS1_2},
		{V1_4, NS1_4, NS1_4}, // answer a non-standard CPE in kind (docs/protocol.md §1.2)
		{V1_4, NS1_3, NS1_3},
		{V1_2, NS1_2, NS1_2},
	} {
		got := mustEncode(t, &Envelope{Version: c.v, Namespace: c.ns, Body: &InformResponse{MaxEnvelopes: 1}})
		if !strings.Contains(got, `xmlns:cwmp="`+c.want+`"`) {
			t.Errorf("version %s namespace %q: want %s in\n%s", c.v, c.ns, c.want, got)
		}
	}
}

func TestEncodeEscapingAndTypes(t *testing.T) {
	got := mustEncode(t, &Envelope{Version: V1_2, Body: &SetParameterValues{
		ParameterList: []ParameterValue{
			{Name: "A", Value: "x&y<z>\"w\" 'v'\r\n\tend"},
			{Name: "B", Value: "42", Type: "unsignedInt"},
			{Name: "C", Value: "AQID", Type: "SOAP-ENC:base64"},
			{Name: "D", Value: "AQID", Type: "soap-enc:base64"},
			{Name: "E", Value: "1", Type: "xsd:boolean"},
			{Name: "F", Value: " +7 ", Type: "xsd:int"},
			{Name: "G", Value: "AQID", Type: "xsd:base64"}, // GenieACS-style: XML Schema has no base64
		},
		ParameterKey: "",
	}})
	for _, s := range []string{
		`<Name>A</Name><Value xsi:type="xsd:string">x&amp;y&lt;z&gt;&quot;w&quot; 'v'&#xD;` + "\n\tend</Value>",
		`<Name>B</Name><Value xsi:type="xsd:unsignedInt">42</Value>`,
		`<Name>C</Name><Value xsi:type="soap-enc:base64">AQID</Value>`,
		`<Name>D</Name><Value xsi:type="soap-enc:base64">AQID</Value>`,
		`<Name>E</Name><Value xsi:type="xsd:boolean">1</Value>`,
		`<Name>F</Name><Value xsi:type="xsd:int"> +7 </Value>`,
		`<Name>G</Name><Value xsi:type="soap-enc:base64">AQID</Value>`,
		`<ParameterKey></ParameterKey>`,
		`soap-enc:arrayType="cwmp:ParameterValueStruct[7]"`,
	} {
		if !strings.Contains(got, s) {
			t.Errorf("missing %q in\n%s", s, got)
		}
	}
}

func TestEncodeDefaults(t *testing.T) {
	got := mustEncode(t, &Envelope{Version: V1_0, Body: &DownloadResponse{Status: 1}})
	if !strings.Contains(got, "<StartTime>0001-01-01T00:00:00Z</StartTime><CompleteTime>0001-01-01T00:00:00Z</CompleteTime>") {
		t.Errorf("empty DateTime must be written as the Unknown Time:\n%s", got)
	}
	got = mustEncode(t, &Envelope{Version: V1_0, Body: &GetParameterNames{ParameterPath: "Device.", NextLevel: true}})
	if !strings.Contains(got, "<NextLevel>true</NextLevel>") {
		t.Errorf("booleans are true/false in bodies:\n%s", got)
	}
	got = mustEncode(t, &Envelope{Version: V1_0, Body: &GetOptionsResponse{OptionList: []Option{
		{OptionName: "o", VoucherSN: "1", StartDate: "2024-01-01T00:00:00Z", IsTransferable: true},
	}}})
	if !strings.Contains(got, "<IsTransferable>1</IsTransferable>") || strings.Contains(got, "ExpirationDate") {
		t.Errorf("IsTransferable is an int 0/1 and an empty ExpirationDate is left out:\n%s", got)
	}
}

func TestEncodeFault(t *testing.T) {
	for _, c := range []struct {
		f    *Fault
		want string
	}{
		{&Fault{SOAPCode: "Client", Code: 9005, String: "Invalid parameter name"},
			`<soap-env:Fault><faultcode>soap-env:Client</faultcode><faultstring>CWMP fault</faultstring>` +
				`<detail><cwmp:Fault><FaultCode>9005</FaultCode><FaultString>Invalid parameter name</FaultString>` +
				`</cwmp:Fault></detail></soap-env:Fault>`},
		{&Fault{Code: 8005}, // SOAPCode from Code, empty FaultString left out
			`<faultcode>soap-env:Server</faultcode><faultstring>CWMP fault</faultstring><detail><cwmp:Fault><FaultCode>8005</FaultCode></cwmp:Fault>`},
		{&Fault{SOAPCode: "SOAP-ENV:Client", SOAPString: "Oops & co", Code: 9003},
			`<faultcode>soap-env:Client</faultcode><faultstring>Oops &amp; co</faultstring>`},
		{NewFault(FaultInvalidParameterType), `<faultcode>soap-env:Client</faultcode><faultstring>CWMP fault</faultstring><detail><cwmp:Fault><FaultCode>9006</FaultCode><FaultString>Invalid parameter type</FaultString>`},
	} {
		got := mustEncode(t, &Envelope{Version: V1_2, Header: Header{ID: "9", HasID: true}, Body: c.f})
		if !strings.Contains(got, c.want) {
			t.Errorf("missing\n%s\nin\n%s", c.want, got)
		}
		if !strings.Contains(got, `<cwmp:ID soap-env:mustUnderstand="1">9</cwmp:ID>`) {
			t.Errorf("the fault carries the request's ID:\n%s", got)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	many := func(n int) []Event {
		ev := make([]Event, n)
		for i := range ev {
			ev[i].Code = "2 PERIODIC"
		}
		return ev
	}
	inform := func(mod func(*Inform)) *Inform {
		m := &Inform{DeviceID: DeviceID{OUI: "00D09E"}, CurrentTime: UnknownTime}
		mod(m)
		return m
	}
	spv := func(name, value, typ string) *SetParameterValues {
		return &SetParameterValues{ParameterList: []ParameterValue{{Name: name, Value: value, Type: typ}}}
	}
	uuid := "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	for _, c := range []struct {
		name string
		env  *Envelope
		msg  string // part of the error text
	}{
		{"nil envelope", nil, "nil envelope"},
		{"nil body", &Envelope{}, "nil Body"},
		{"unknown method", &Envelope{Body: &Unknown{Name: "X_ACME_Foo"}}, "X_ACME_Foo"},
		{"nil unknown", &Envelope{Body: (*Unknown)(nil)}, "unknown method"},
		{"nil pointer body", &Envelope{Body: (*Inform)(nil)}, "nil Inform"},
		{"nil fault", &Envelope{Body: (*Fault)(nil)}, "nil Fault"},
		{"foreign body type", &Envelope{Body: encForeign{}}, "no encoder"},
		{"method newer than version", &Envelope{Version: V1_1, Body: &CancelTransfer{}}, "needs CWMP 1.2"},
		{"1.1 method in 1.0", &Envelope{Version: V1_0, Body: &GetAllQueuedTransfers{}}, "needs CWMP 1.1"},
		{"version out of range", &Envelope{Version: MaxVersion + 1, Body: &GetRPCMethods{}}, "unsupported CWMP version"},
		{"unknown namespace", &Envelope{Namespace: "urn:example", Body: &GetRPCMethods{}}, "namespace"},
		{"namespace newer than version", &Envelope{Version: V1_0, Namespace: NS1_2, Body: &GetRPCMethods{}}, "namespace"},
		{"namespace older than version", &Envelope{Version: V1_2, Namespace: NS1_1, Body: &GetRPCMethods{}}, "namespace"},
		{"SessionTimeout before 1.3", &Envelope{Version: V1_2, Header: Header{SessionTimeout: 5}, Body: &InformResponse{}}, "SessionTimeout"},
		{"UseCWMPVersion in 1.0", &Envelope{Version: V1_0, Header: Header{UseCWMPVersion: "1.0"}, Body: &InformResponse{}}, "UseCWMPVersion"},
		{"SupportedCWMPVersions in 1.1", &Envelope{Version: V1_1, Header: Header{SupportedCWMPVersions: "1.0"}, Body: &InformResponse{}}, "SupportedCWMPVersions"},
		{"bad UseCWMPVersion", &Envelope{Version: V1_4, Header: Header{UseCWMPVersion: "2.0"}, Body: &InformResponse{}}, "UseCWMPVersion"},
		{"control character", &Envelope{Body: spv("A", "a\x00b", "")}, "control character"},
		{"escape character", &Envelope{Body: spv("A", "a\x1bb", "")}, "control character"},
		{"control character in ID", &Envelope{Header: Header{ID: "\x01", HasID: true}, Body: &GetRPCMethods{}}, "Header/ID"},
		{"invalid UTF-8", &Envelope{Body: spv("A", "a\xffb", "")}, "UTF-8"},
		{"U+FFFE", &Envelope{Body: spv("A", "a\uFFFEb", "")}, "U+FFFE"},
		{"bad value for type", &Envelope{Body: spv("A", "12x", "xsd:unsignedInt")}, "not a valid unsignedInt"},
		{"negative unsignedInt", &Envelope{Body: spv("A", "-1", "xsd:unsignedInt")}, "unsignedInt"},
		{"int overflow", &Envelope{Body: spv("A", "2147483648", "xsd:int")}, "int"},
		{"bad boolean", &Envelope{Body: spv("A", "yes", "xsd:boolean")}, "boolean"},
		{"bad dateTime value", &Envelope{Body: spv("A", "2014-10-24T0:4:42", "xsd:dateTime")}, "dateTime"},
		{"empty typed value", &Envelope{Body: spv("A", "", "xsd:unsignedInt")}, "unsignedInt"},
		{"foreign type prefix", &Envelope{Body: spv("A", "1", "foo:bar")}, "xsi:type"},
		{"empty type local name", &Envelope{Body: spv("A", "1", "xsd:")}, "xsi:type"},
		{"name too long", &Envelope{Body: spv(strings.Repeat("n", 257), "", "")}, "longer than 256"},
		{"GPV without names", &Envelope{Body: &GetParameterValues{}}, "ParameterNames needs at least 1"},
		{"GPA without names", &Envelope{Body: &GetParameterAttributes{}}, "ParameterNames needs at least 1"},
		{"GPV name too long", &Envelope{Body: &GetParameterValues{ParameterNames: []string{strings.Repeat("é", 257)}}}, "longer than 256"},
		{"empty MethodList", &Envelope{Body: &GetRPCMethodsResponse{}}, "MethodList"},
		{"notification 7", &Envelope{Version: V1_4, Body: &SetParameterAttributes{ParameterList: []SetParameterAttributesStruct{{Name: "A", Notification: 7}}}}, "Notification 7"},
		{"notification -1", &Envelope{Version: V1_4, Body: &GetParameterAttributesResponse{ParameterList: []ParameterAttribute{{Name: "A", Notification: -1}}}}, "Notification -1"},
		{"notification 3 in 1.1", &Envelope{Version: V1_1, Body: &SetParameterAttributes{ParameterList: []SetParameterAttributesStruct{{Name: "A", Notification: 3}}}}, "Notification 3"},
		{"empty SPA", &Envelope{Body: &SetParameterAttributes{}}, "ParameterList needs at least 1"},
		{"bad AccessList entry", &Envelope{Body: &SetParameterAttributes{ParameterList: []SetParameterAttributesStruct{{Name: "A", AccessList: []string{"Everyone"}}}}}, "Subscriber"},
		{"65 events", &Envelope{Body: inform(func(m *Inform) { m.Events = many(65) })}, "at most 64"},
		{"bad event code", &Envelope{Version: V1_2, Body: inform(func(m *Inform) { m.Events = []Event{{Code: "BOOT"}} })}, "EventCode"},
		{"1.2 event code in 1.0", &Envelope{Version: V1_0, Body: inform(func(m *Inform) { m.Events = []Event{{Code: "11 DU STATE CHANGE COMPLETE"}} })}, "EventCode"},
		{"event CommandKey too long", &Envelope{Body: inform(func(m *Inform) { m.Events = []Event{{Code: "1 BOOT", CommandKey: strings.Repeat("k", 33)}} })}, "CommandKey is longer than 32"},
		{"lower-case OUI", &Envelope{Body: inform(func(m *Inform) { m.DeviceID.OUI = "00d09e" })}, "OUI"},
		{"short OUI", &Envelope{Body: inform(func(m *Inform) { m.DeviceID.OUI = "00D09" })}, "OUI"},
		{"bad CurrentTime", &Envelope{Body: inform(func(m *Inform) { m.CurrentTime = "2024-13-01T00:00:00Z" })}, "CurrentTime"},
		{"17 transfers", &Envelope{Body: &GetQueuedTransfersResponse{TransferList: make([]QueuedTransfer, 17)}}, "at most 16"},
		{"17 all transfers", &Envelope{Version: V1_1, Body: &GetAllQueuedTransfersResponse{TransferList: make([]AllQueuedTransfer, 17)}}, "at most 16"},
		{"transfer state 0", &Envelope{Body: &GetQueuedTransfersResponse{TransferList: []QueuedTransfer{{State: 0}}}}, "State 0"},
		{"17 file type args", &Envelope{Body: &RequestDownload{FileType: "1 Firmware Upgrade Image", FileTypeArg: make([]Arg, 17)}}, "at most 16"},
		{"SPV status 2", &Envelope{Body: &SetParameterValuesResponse{Status: 2}}, "Status 2"},
		{"instance number 0", &Envelope{Body: &AddObjectResponse{}}, "InstanceNumber"},
		{"object name without dot", &Envelope{Body: &AddObject{ObjectName: "Device.NAT.PortMapping"}}, "ObjectName"},
		{"empty object name", &Envelope{Body: &DeleteObject{}}, "ObjectName"},
		{"download without URL", &Envelope{Body: &Download{FileType: "1 Firmware Upgrade Image"}}, "URL is required"},
		{"download URL too long", &Envelope{Body: &Download{FileType: "1 Firmware Upgrade Image", URL: "http://" + strings.Repeat("x", 250)}}, "URL is longer than 256"},
		{"bad download file type", &Envelope{Body: &Download{FileType: "Firmware", URL: "http://f/"}}, "FileType"},
		{"1.2 file type in 1.0", &Envelope{Version: V1_0, Body: &Download{FileType: "4 Tone File", URL: "http://f/"}}, "FileType"},
		{"download type for upload in 1.0", &Envelope{Version: V1_0, Body: &Upload{FileType: "1 Firmware Upgrade Image", URL: "http://f/"}}, "FileType"},
		{"transfer fault 9003", &Envelope{Body: &TransferComplete{FaultStruct: FaultStruct{FaultCode: 9003}}}, "FaultStruct/FaultCode 9003"},
		{"transfer fault 9014 in 1.0", &Envelope{Version: V1_0, Body: &TransferComplete{FaultStruct: FaultStruct{FaultCode: 9014}}}, "FaultStruct/FaultCode 9014"},
		{"fault code 7000", &Envelope{Body: &Fault{Code: 7000}}, "FaultCode 7000"},
		{"fault code 8006 in 1.0", &Envelope{Version: V1_0, Body: &Fault{Code: 8006}}, "FaultCode 8006"},
		{"ACS code in SPV fault", &Envelope{Version: V1_2, Body: &Fault{Code: 9003, SetParameterValuesFaults: []SetParameterValuesFault{{ParameterName: "A", FaultCode: 8003}}}}, "SetParameterValuesFault[0]"},
		{"bad faultcode", &Envelope{Body: &Fault{SOAPCode: "Not a code", Code: 9002}}, "faultcode"},
		{"no time window", &Envelope{Version: V1_2, Body: &ScheduleDownload{FileType: "1 Firmware Upgrade Image", URL: "http://f/"}}, "TimeWindowList"},
		{"three time windows", &Envelope{Version: V1_2, Body: &ScheduleDownload{FileType: "1 Firmware Upgrade Image", URL: "http://f/",
			TimeWindowList: []TimeWindow{{WindowMode: "1 At Any Time"}, {WindowMode: "1 At Any Time"}, {WindowMode: "1 At Any Time"}}}}, "TimeWindowList"},
		{"bad window mode", &Envelope{Version: V1_2, Body: &ScheduleDownload{FileType: "1 Firmware Upgrade Image", URL: "http://f/",
			TimeWindowList: []TimeWindow{{WindowMode: "Anytime"}}}}, "WindowMode"},
		{"no DU operations", &Envelope{Version: V1_2, Body: &ChangeDUState{}}, "Operations needs at least 1"},
		{"unknown DU kind", &Envelope{Version: V1_2, Body: &ChangeDUState{Operations: []DUOperation{{Kind: "Reinstall"}}}}, "unknown kind"},
		{"install without URL", &Envelope{Version: V1_2, Body: &ChangeDUState{Operations: []DUOperation{{Kind: OpInstall}}}}, "needs a URL"},
		{"install with Version", &Envelope{Version: V1_2, Body: &ChangeDUState{Operations: []DUOperation{{Kind: OpInstall, URL: "http://f/", Version: "1"}}}}, "has no Version"},
		{"uninstall without UUID", &Envelope{Version: V1_2, Body: &ChangeDUState{Operations: []DUOperation{{Kind: OpUninstall}}}}, "needs a UUID"},
		{"uninstall with URL", &Envelope{Version: V1_2, Body: &ChangeDUState{Operations: []DUOperation{{Kind: OpUninstall, UUID: uuid, URL: "http://f/"}}}}, "has no URL"},
		{"update with bad UUID", &Envelope{Version: V1_2, Body: &ChangeDUState{Operations: []DUOperation{{Kind: OpUpdate, UUID: "nope"}}}}, "UUID"},
		{"no DU results", &Envelope{Version: V1_2, Body: &DUStateChangeComplete{}}, "Results needs at least 1"},
		{"no autonomous DU results", &Envelope{Version: V1_2, Body: &AutonomousDUStateChangeComplete{}}, "Results needs at least 1"},
		{"bad DU state", &Envelope{Version: V1_2, Body: &DUStateChangeComplete{Results: []OpResult{{UUID: uuid, CurrentState: "Running"}}}}, "CurrentState"},
		{"bad DU fault code", &Envelope{Version: V1_2, Body: &DUStateChangeComplete{Results: []OpResult{{UUID: uuid, CurrentState: "Failed", Fault: FaultStruct{FaultCode: 9002}}}}}, "Fault/FaultCode 9002"},
		{"empty voucher list", &Envelope{Body: &SetVouchers{}}, "VoucherList"},
		{"bad voucher", &Envelope{Body: &SetVouchers{VoucherList: []string{"not base64!"}}}, "VoucherList[0]"},
		{"bad VoucherSN", &Envelope{Body: &GetOptionsResponse{OptionList: []Option{{VoucherSN: "x", StartDate: UnknownTime}}}}, "VoucherSN"},
		{"option mode 3", &Envelope{Body: &GetOptionsResponse{OptionList: []Option{{VoucherSN: "1", Mode: 3}}}}, "Mode 3"},
		{"kicked command too long", &Envelope{Body: &Kicked{Command: strings.Repeat("c", 33)}}, "Command is longer than 32"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := []byte("prefix")
			out, err := AppendEncode(dst, c.env)
			if err == nil {
				t.Fatalf("no error; output:\n%s", out)
			}
			if !errors.Is(err, ErrInvalidMessage) {
				t.Errorf("error %v does not wrap ErrInvalidMessage", err)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not mention %q", err, c.msg)
			}
			if !strings.HasPrefix(err.Error(), "encode ") {
				t.Errorf("error %q does not name the action", err)
			}
			if string(out) != "prefix" {
				t.Errorf("AppendEncode changed dst on error: %q", out)
			}
		})
	}
}

// encForeign is a Message type the encoder does not know.
type encForeign struct{}

func (encForeign) Method() string { return "Inform" }

func TestAppendEncodeAppends(t *testing.T) {
	env := &Envelope{Version: V1_2, Body: &InformResponse{MaxEnvelopes: 1}}
	one := mustEncode(t, env)
	buf, err := AppendEncode([]byte("HTTP-ish prefix|"), env)
	if err != nil {
		t.Fatalf("AppendEncode: %v", err)
	}
	if string(buf) != "HTTP-ish prefix|"+one {
		t.Errorf("AppendEncode did not append:\n%s", buf)
	}
}

// TestEncodeHotPathAllocs pins the promise that encoding into a reused
// buffer does not allocate for the hot-path messages.
func TestEncodeHotPathAllocs(t *testing.T) {
	for _, env := range []*Envelope{encBenchGPV(), encBenchInformResponse(), {Version: V1_2, Body: encSampleInform(V1_2)}} {
		buf, err := AppendEncode(nil, env)
		if err != nil {
			t.Fatalf("AppendEncode %s: %v", env.Body.Method(), err)
		}
		allocs := testing.AllocsPerRun(100, func() {
			buf, _ = AppendEncode(buf[:0], env)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per encode into a reused buffer, want 0", env.Body.Method(), allocs)
		}
	}
}

// FuzzEncodeValue checks that any name and value either encode to
// well-formed XML that gives them back unchanged, or are refused with
// ErrInvalidMessage.
func FuzzEncodeValue(f *testing.F) {
	for _, s := range []string{"", "plain", encTricky, "a\x00b", "\xff", "]]>", "&amp;", "\r\n", "\uFFFE"} {
		f.Add("Device.X", s)
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		env := &Envelope{Version: V1_2, Header: Header{ID: value, HasID: true},
			Body: &SetParameterValues{ParameterList: []ParameterValue{{Name: name, Value: value}}, ParameterKey: "k"}}
		out, err := Encode(env)
		if err != nil {
			if !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("error %v does not wrap ErrInvalidMessage", err)
			}
			return
		}
		var doc struct {
			Header struct {
				ID string `xml:"ID"`
			} `xml:"Header"`
			Body struct {
				SPV struct {
					List struct {
						Items []struct {
							Name  string `xml:"Name"`
							Value string `xml:"Value"`
						} `xml:"ParameterValueStruct"`
					} `xml:"ParameterList"`
				} `xml:"SetParameterValues"`
			} `xml:"Body"`
		}
		if err := xml.Unmarshal(out, &doc); err != nil {
			t.Fatalf("output is not well-formed: %v\n%s", err, out)
		}
		items := doc.Body.SPV.List.Items
		if len(items) != 1 || items[0].Name != name || items[0].Value != value || doc.Header.ID != value {
			t.Fatalf("round trip through encoding/xml changed the text: %+v, ID %q\n%s", items, doc.Header.ID, out)
		}
	})
}

func encBenchGPV() *Envelope {
	names := make([]string, 10)
	for i := range names {
		names[i] = fmt.Sprintf("Device.WiFi.SSID.%d.SSID", i+1)
	}
	names[9] = "Device.ManagementServer."
	return &Envelope{
		Version: V1_2,
		Header:  Header{ID: "acs-000042", HasID: true},
		Body:    &GetParameterValues{ParameterNames: names},
	}
}

func encBenchInformResponse() *Envelope {
	return &Envelope{
		Version: V1_2,
		Header:  Header{ID: "1234567", HasID: true},
		Body:    &InformResponse{MaxEnvelopes: 1},
	}
}

func benchmarkEncode(b *testing.B, env *Envelope) {
	buf, err := AppendEncode(nil, env)
	if err != nil {
		b.Fatalf("AppendEncode: %v", err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		buf, err = AppendEncode(buf[:0], env)
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeGetParameterValues(b *testing.B) { benchmarkEncode(b, encBenchGPV()) }
func BenchmarkEncodeInformResponse(b *testing.B)     { benchmarkEncode(b, encBenchInformResponse()) }

// BenchmarkEncodeInform is the simulator's hot path: a 12-parameter Inform.
func BenchmarkEncodeInform(b *testing.B) {
	benchmarkEncode(b, &Envelope{Version: V1_2, Header: Header{ID: "1", HasID: true}, Body: encSampleInform(V1_2)})
}

// BenchmarkEncodeFresh measures Encode without buffer reuse.
func BenchmarkEncodeFresh(b *testing.B) {
	env := encBenchGPV()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(env); err != nil {
			b.Fatal(err)
		}
	}
}
