package cwmp

import (
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"
	"unicode/utf16"
)

// decEnv wraps an RPC element in a minimal envelope with the usual prefixes.
func decEnv(ns, header, rpc string) string {
	return `<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:soap-enc="http://schemas.xmlsoap.org/soap/encoding/"` +
		` xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:cwmp="` + ns + `">` +
		`<soap:Header>` + header + `</soap:Header><soap:Body>` + rpc + `</soap:Body></soap:Envelope>`
}

func decMust(t *testing.T, body string) *Envelope {
	t.Helper()
	e, err := Decode([]byte(body))
	if err != nil {
		t.Fatalf("decode: %v\ninput: %s", err, body)
	}
	return e
}

// TestDecodeEveryRegisteredMethod: every method NewMessage knows decodes to
// its own concrete type, never to *Unknown.
func TestDecodeEveryRegisteredMethod(t *testing.T) {
	methods := Methods()
	sort.Strings(methods)
	for _, m := range methods {
		t.Run(m, func(t *testing.T) {
			rpc := "<cwmp:" + m + "/>"
			if m == "Fault" {
				rpc = "<soap:Fault><faultcode>Server</faultcode></soap:Fault>"
			}
			e := decMust(t, decEnv(NS1_2, "", rpc))
			want, _ := NewMessage(m)
			if reflect.TypeOf(e.Body) != reflect.TypeOf(want) || e.Body.Method() != m {
				t.Fatalf("decoded %T (%s), want %T", e.Body, e.Body.Method(), want)
			}
		})
	}
}

func TestDecodeNamespaceDetection(t *testing.T) {
	soap := `xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"`
	cases := []struct {
		name, body, ns string
		version        Version
	}{
		{"on the RPC element", `<s:Envelope ` + soap + ` xmlns:c="urn:dslforum-org:cwmp-1-0"><s:Body><r:Reboot xmlns:r="urn:dslforum-org:cwmp-1-1"/></s:Body></s:Envelope>`, NS1_1, V1_1},
		{"declared on the RPC element", `<s:Envelope ` + soap + ` xmlns:c="urn:dslforum-org:cwmp-1-0"><s:Body><Reboot xmlns:x="urn:dslforum-org:cwmp-1-2"/></s:Body></s:Envelope>`, NS1_2, V1_2},
		{"declared on Body", `<s:Envelope ` + soap + ` xmlns:c="urn:dslforum-org:cwmp-1-0"><s:Body xmlns:c="urn:dslforum-org:cwmp-1-4"><Reboot/></s:Body></s:Envelope>`, NS1_4, V1_4},
		{"declared on Envelope", `<s:Envelope ` + soap + ` xmlns:c="urn:dslforum-org:cwmp-1-1"><s:Body><Reboot/></s:Body></s:Envelope>`, NS1_1, V1_1},
		{"declared in the fault detail", `<s:Envelope ` + soap + `><s:Body><s:Fault><detail><c:Fault xmlns:c="urn:dslforum-org:cwmp-1-2"><FaultCode>9001</FaultCode></c:Fault></detail></s:Fault></s:Body></s:Envelope>`, NS1_2, V1_2},
		{"default namespace on the RPC", `<s:Envelope ` + soap + `><s:Body><Reboot xmlns="urn:dslforum-org:cwmp-1-3"/></s:Body></s:Envelope>`, NS1_3, V1_4},
		{"none", `<s:Envelope ` + soap + `><s:Body><Reboot/></s:Body></s:Envelope>`, "", V1_0},
		{"trailing slash", `<s:Envelope ` + soap + `><s:Body><c:Reboot xmlns:c="urn:dslforum-org:cwmp-1-1/"/></s:Body></s:Envelope>`, NS1_1, V1_1},
		{"upper case", `<s:Envelope ` + soap + ` xmlns:c="URN:DSLForum-Org:CWMP-1-2"><s:Body><c:Reboot/></s:Body></s:Envelope>`, NS1_2, V1_2},
		{"both", `<s:Envelope ` + soap + ` xmlns:c="URN:dslforum-org:cwmp-1-0/"><s:Body><c:Reboot/></s:Body></s:Envelope>`, NS1_0, V1_0},
		{"two slashes is not cwmp", `<s:Envelope ` + soap + `><s:Body><Reboot xmlns="urn:dslforum-org:cwmp-1-0//"/></s:Body></s:Envelope>`, "", V1_0},
		{"unsupported version", `<s:Envelope ` + soap + `><s:Body><Reboot xmlns="urn:dslforum-org:cwmp-1-9"/></s:Body></s:Envelope>`, "", V1_0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := decMust(t, c.body)
			if e.Namespace != c.ns || e.Version != c.version {
				t.Fatalf("namespace %q version %v, want %q %v", e.Namespace, e.Version, c.ns, c.version)
			}
			// A qualified RPC element outside the cwmp namespaces is a vendor's.
			wantUnknown := c.name == "unsupported version" || c.name == "two slashes is not cwmp"
			if _, unknown := e.Body.(*Unknown); unknown != wantUnknown {
				t.Fatalf("body %#v, want an Unknown: %v", e.Body, wantUnknown)
			}
		})
	}
}

func TestDecodeRPCElementMatching(t *testing.T) {
	t.Run("vendor namespace is Unknown", func(t *testing.T) {
		e := decMust(t, decEnv(NS1_0, "", `<v:Reboot xmlns:v="urn:vendor:rpc"/>`))
		if want := (&Unknown{Name: "Reboot", Namespace: "urn:vendor:rpc"}); !reflect.DeepEqual(e.Body, want) {
			t.Fatalf("body %#v, want %#v", e.Body, want)
		}
	})
	t.Run("unqualified RPC", func(t *testing.T) {
		e := decMust(t, decEnv(NS1_0, "", `<Reboot><CommandKey>k</CommandKey></Reboot>`))
		if want := (&Reboot{CommandKey: "k"}); !reflect.DeepEqual(e.Body, want) {
			t.Fatalf("body %#v", e.Body)
		}
	})
	t.Run("prefix is not the namespace", func(t *testing.T) {
		// cwmp bound to SOAP-ENC, the cwmp namespace under another prefix.
		body := `<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="http://schemas.xmlsoap.org/soap/encoding/" xmlns:x="urn:dslforum-org:cwmp-1-1">` +
			`<soap:Body><x:Reboot><CommandKey>k</CommandKey></x:Reboot></soap:Body></soap:Envelope>`
		e := decMust(t, body)
		if e.Namespace != NS1_1 || !reflect.DeepEqual(e.Body, &Reboot{CommandKey: "k"}) {
			t.Fatalf("got %q %#v", e.Namespace, e.Body)
		}
	})
	t.Run("Envelope in the wrong namespace", func(t *testing.T) {
		_, err := Decode([]byte(`<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/encoding/"><soap:Body><x/></soap:Body></soap:Envelope>`))
		if !errors.Is(err, ErrNotEnvelope) {
			t.Fatalf("error %v, want ErrNotEnvelope", err)
		}
	})
	t.Run("arguments in any order and namespace, missing ones zero", func(t *testing.T) {
		e := decMust(t, decEnv(NS1_0, "", `<cwmp:Download><cwmp:URL> http://x/fw </cwmp:URL><x:FileSize xmlns:x="urn:other">12</x:FileSize><CommandKey>c</CommandKey><Unknown>?</Unknown></cwmp:Download>`))
		if want := (&Download{CommandKey: "c", URL: "http://x/fw", FileSize: 12}); !reflect.DeepEqual(e.Body, want) {
			t.Fatalf("body %#v, want %#v", e.Body, want)
		}
	})
	t.Run("cwmp Fault straight in the Body", func(t *testing.T) {
		e := decMust(t, decEnv(NS1_0, "", `<cwmp:Fault><FaultCode>8005</FaultCode><FaultString>Retry request</FaultString></cwmp:Fault>`))
		if want := (&Fault{Code: 8005, String: "Retry request"}); !reflect.DeepEqual(e.Body, want) {
			t.Fatalf("body %#v", e.Body)
		}
	})
}

func TestDecodeHeader(t *testing.T) {
	cases := []struct {
		name, header string
		ns           string
		want         Header
		version      Version
	}{
		{"none", "", NS1_2, Header{}, V1_2},
		{"ID trimmed", "<cwmp:ID soap:mustUnderstand=\"1\">\n  abc \n</cwmp:ID>", NS1_0, Header{ID: "abc", HasID: true}, V1_0},
		{"empty ID", "<cwmp:ID/>", NS1_0, Header{HasID: true}, V1_0},
		{"unqualified ID", "<ID>u</ID>", NS1_0, Header{ID: "u", HasID: true}, V1_0},
		{"ID of another namespace ignored", `<v:ID xmlns:v="urn:vendor">v</v:ID>`, NS1_0, Header{}, V1_0},
		{"HoldRequests", "<cwmp:HoldRequests>TRUE</cwmp:HoldRequests>", NS1_0, Header{HoldRequests: true}, V1_0},
		{"NoMoreRequests 1", "<cwmp:NoMoreRequests>1</cwmp:NoMoreRequests>", NS1_0, Header{NoMoreRequests: true}, V1_0},
		{"bad boolean ignored", "<cwmp:NoMoreRequests>yes</cwmp:NoMoreRequests>", NS1_0, Header{}, V1_0},
		{"SessionTimeout lower case", "<cwmp:sessiontimeout> 30 </cwmp:sessiontimeout>", NS1_2, Header{SessionTimeout: 30}, V1_3},
		{"bad SessionTimeout still means 1.3", "<cwmp:SessionTimeout>soon</cwmp:SessionTimeout>", NS1_2, Header{}, V1_3},
		{"SessionTimeout in 1.0 keeps 1.0", "<cwmp:SessionTimeout>30</cwmp:SessionTimeout>", NS1_0, Header{SessionTimeout: 30}, V1_0},
		{"1.4 negotiation", "<cwmp:SupportedCWMPVersions>1.0,1.4</cwmp:SupportedCWMPVersions><cwmp:UseCWMPVersion>1.4</cwmp:UseCWMPVersion>", NS1_2,
			Header{SupportedCWMPVersions: "1.0,1.4", UseCWMPVersion: "1.4"}, V1_4},
		{"1.4 header after SessionTimeout", "<cwmp:SessionTimeout>5</cwmp:SessionTimeout><cwmp:SupportedCWMPVersions>1.0,1.3</cwmp:SupportedCWMPVersions>", NS1_2,
			Header{SessionTimeout: 5, SupportedCWMPVersions: "1.0,1.3"}, V1_4},
		{"1.4 header in 1.1 keeps 1.1", "<cwmp:UseCWMPVersion>1.1</cwmp:UseCWMPVersion>", NS1_1, Header{UseCWMPVersion: "1.1"}, V1_1},
		{"unknown mustUnderstand header", `<v:Auth xmlns:v="urn:vendor" soap:mustUnderstand="1">x</v:Auth><cwmp:ID>9</cwmp:ID>`, NS1_0, Header{ID: "9", HasID: true}, V1_0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := decMust(t, decEnv(c.ns, c.header, "<cwmp:Reboot/>"))
			if e.Header != c.want || e.Version != c.version {
				t.Fatalf("header %+v version %v, want %+v %v", e.Header, e.Version, c.want, c.version)
			}
		})
	}
}

func TestDecodeValueTypes(t *testing.T) {
	cases := []struct {
		name, value, wantType, wantValue string
	}{
		{"xsd prefix", `<Value xsi:type="xsd:unsignedInt">5</Value>`, "xsd:unsignedInt", "5"},
		{"other prefix for XML Schema", `<Value xmlns:xs="http://www.w3.org/2001/XMLSchema" xsi:type="xs:dateTime">x</Value>`, "", "x"},
		{"SOAP-ENC base64", `<Value xsi:type="soap-enc:base64">QQ==</Value>`, "xsd:base64", "QQ=="},
		{"1999 schema namespaces", `<Value xmlns:i="http://www.w3.org/1999/XMLSchema-instance" xmlns:s="http://www.w3.org/1999/XMLSchema" i:type="s:int">1</Value>`, "xsd:int", "1"},
		{"default namespace is XML Schema", `<Value xmlns="http://www.w3.org/2001/XMLSchema" xsi:type="boolean">1</Value>`, "xsd:boolean", "true"},
		{"unbound prefix: no usable type", `<Value xsi:type="foo:bar">v</Value>`, "", "v"},
		{"unbound prefix of a known type: no usable type", `<Value xsi:type="foo:int">1</Value>`, "", "1"},
		{"xs undeclared", `<Value xsi:type="xs:boolean">1</Value>`, "xsd:boolean", "true"},
		{"unprefixed type without a default namespace: no usable type", `<Value xsi:type="int">1</Value>`, "", "1"},
		{"xsd prefix rebound", `<Value xmlns:xsd="urn:not-schema" xsi:type="xsd:int">v</Value>`, "", "v"},
		{"empty local part", `<Value xsi:type="xsd:">v</Value>`, "", "v"},
		{"white space around type", `<Value xsi:type=" xsd:long ">9</Value>`, "xsd:long", "9"},
		{"unknown XML Schema type", `<Value xmlns:xs="http://www.w3.org/2001/XMLSchema" xsi:type="xs:json">{}</Value>`, "", "{}"},
		{"type attribute without xsi", `<Value type="xsd:string">v</Value>`, "", "v"},
		{"xsi bound elsewhere", `<Value xmlns:xsi="urn:x" xsi:type="xsd:string">v</Value>`, "", "v"},
		{"no Value", ``, "", ""},
		{"self-closed Value", `<Value xsi:type="xsd:string"/>`, "xsd:string", ""},
		{"white space kept", `<Value xsi:type="xsd:string">  two  spaces  </Value>`, "xsd:string", "  two  spaces  "},
		{"CR LF normalised, character reference kept", "<Value>a\r\nb\rc&#13;</Value>", "", "a\nb\nc\r"},
		{"CDATA and comments joined", `<Value>a<!-- x --><![CDATA[<b>]]>c</Value>`, "", "a<b>c"},
		{"mixed content dropped", `<Value>a<b>c</b>d</Value>`, "", ""},
		{"single quotes", `<Value xsi:type='xsd:string'>'</Value>`, "xsd:string", "'"},
		{"duplicate attribute: last wins", `<Value xsi:type="xsd:int" xsi:type="xsd:long">1</Value>`, "xsd:long", "1"},
		{"duplicates among many attributes", `<Value` + manyAttrs(` a%03d="1"`, 20) + ` xsi:type="xsd:int"` + manyAttrs(` a%03d="2"`, 20) + ` xsi:type="xsd:long">1</Value>`, "xsd:long", "1"},
		{"duplicate namespace declaration", `<Value xmlns:t="urn:x" xmlns:t="http://www.w3.org/2001/XMLSchema" xsi:type="t:int">1</Value>`, "xsd:int", "1"},
		{"many comment-split runs", `<Value>` + strings.Repeat(`ab<!---->`, 100) + `</Value>`, "", strings.Repeat("ab", 100)},
		// Values are normalised for their type (docs/protocol.md §13 input 6).
		{"boolean in capitals", `<Value xsi:type="xsd:boolean"> TRUE </Value>`, "xsd:boolean", "true"},
		{"boolean 0", `<Value xsi:type="xsd:boolean">0</Value>`, "xsd:boolean", "false"},
		{"int with plus, zeros and spaces", `<Value xsi:type="xsd:int"> +007 </Value>`, "xsd:int", "7"},
		{"negative zero", `<Value xsi:type="xsd:long">-0</Value>`, "xsd:long", "0"},
		{"unsignedLong max", `<Value xsi:type="xsd:unsignedLong">18446744073709551615</Value>`, "xsd:unsignedLong", "18446744073709551615"},
		{"int out of range loses its type", `<Value xsi:type="xsd:int">2147483648</Value>`, "", "2147483648"},
		{"negative unsignedInt loses its type", `<Value xsi:type="xsd:unsignedInt">-1</Value>`, "", "-1"},
		{"not a number loses its type", `<Value xsi:type="xsd:int"> n/a </Value>`, "", " n/a "},
		{"unpadded dateTime", `<Value xsi:type="xsd:dateTime">2014-10-24T0:4:42</Value>`, "xsd:dateTime", "2014-10-24T00:04:42"},
		{"dateTime zone without colon", `<Value xsi:type="xsd:dateTime">2024-02-29T23:59:59+0100</Value>`, "xsd:dateTime", "2024-02-29T23:59:59+01:00"},
		{"dateTime zone hours only, space separator", `<Value xsi:type="xsd:dateTime">2024-02-29 23:59:59-05</Value>`, "xsd:dateTime", "2024-02-29T23:59:59-05:00"},
		{"dateTime leap second", `<Value xsi:type="xsd:dateTime">2016-12-31T23:59:60Z</Value>`, "xsd:dateTime", "2017-01-01T00:00:00Z"},
		{"valid dateTime untouched", `<Value xsi:type="xsd:dateTime">2024-01-01T00:00:00.50+01:00</Value>`, "xsd:dateTime", "2024-01-01T00:00:00.50+01:00"},
		{"zero offset written Z", `<Value xsi:type="xsd:dateTime">2024-01-01T00:00:00.50+00:00</Value>`, "xsd:dateTime", "2024-01-01T00:00:00.5Z"},
		{"bogus dateTime loses its type", `<Value xsi:type="xsd:dateTime">unknown</Value>`, "", "unknown"},
		{"year 0000 loses its type", `<Value xsi:type="xsd:dateTime">0000-01-01T00:00:00Z</Value>`, "", "0000-01-01T00:00:00Z"},
		{"hexBinary trimmed", `<Value xsi:type="xsd:hexBinary"> 0aFF </Value>`, "xsd:hexBinary", "0aFF"},
		{"odd hexBinary loses its type", `<Value xsi:type="xsd:hexBinary">abc</Value>`, "", "abc"},
		{"base64Binary kept as such", `<Value xsi:type="xsd:base64Binary">QQ==</Value>`, "xsd:base64Binary", "QQ=="},
		{"bad base64 loses its type", `<Value xsi:type="xsd:base64">Q===</Value>`, "", "Q==="},
		{"supplementary character", `<Value>&#x1F600;` + "\U0001F600</Value>", "", "\U0001F600\U0001F600"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := decMust(t, decEnv(NS1_0, "", `<cwmp:GetParameterValuesResponse><ParameterList><ParameterValueStruct><Name> A.B </Name>`+c.value+
				`</ParameterValueStruct></ParameterList></cwmp:GetParameterValuesResponse>`))
			got := e.Body.(*GetParameterValuesResponse).ParameterList
			if c.wantType == "" {
				c.wantType = "xsd:string" // no usable type: a string (docs/protocol.md §2.3)
			}
			want := []ParameterValue{{Name: "A.B", Value: c.wantValue, Type: c.wantType}}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %#v, want %#v", got, want)
			}
		})
	}
}

func TestDecodeArrays(t *testing.T) {
	cases := []struct {
		name, list string
		want       []string
	}{
		{"no arrayType", `<ParameterNames><string>A.</string><string>B.</string></ParameterNames>`, []string{"A.", "B."}},
		{"count too small", `<ParameterNames soap-enc:arrayType="xsd:string[1]"><string>A.</string><string>B.</string></ParameterNames>`, []string{"A.", "B."}},
		{"zero-padded count", `<ParameterNames soap-enc:arrayType="xsd:string[0002]"><string>A.</string><string>B.</string></ParameterNames>`, []string{"A.", "B."}},
		{"wrong prefix", `<ParameterNames soap-enc:arrayType="foo:string[2]"><string>A.</string><string>B.</string></ParameterNames>`, []string{"A.", "B."}},
		{"items of any name, trimmed", `<ParameterNames><item> A. </item><cwmp:string>B.</cwmp:string></ParameterNames>`, []string{"A.", "B."}},
		{"[0] on a non-empty list", `<ParameterNames soap-enc:arrayType="xsd:string[0]"><string>A.</string></ParameterNames>`, []string{"A."}},
		{"empty list is nil", `<ParameterNames soap-enc:arrayType="xsd:string[0]"/>`, nil},
		{"absent list is nil", ``, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := decMust(t, decEnv(NS1_0, "", `<cwmp:GetParameterValues>`+c.list+`</cwmp:GetParameterValues>`))
			if got := e.Body.(*GetParameterValues).ParameterNames; !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %#v, want %#v", got, c.want)
			}
		})
	}
}

func TestDecodeScalars(t *testing.T) {
	cases := []struct {
		name, fields string
		want         AddObjectResponse
	}{
		{"plain", `<InstanceNumber>3</InstanceNumber><Status>1</Status>`, AddObjectResponse{3, 1}},
		{"white space", "<InstanceNumber>\n 3 \n</InstanceNumber><Status> 0 </Status>", AddObjectResponse{3, 0}},
		{"plus sign", `<InstanceNumber>+4</InstanceNumber><Status>+1</Status>`, AddObjectResponse{4, 1}},
		{"leading zeros", `<InstanceNumber>007</InstanceNumber>`, AddObjectResponse{InstanceNumber: 7}},
		{"empty", `<InstanceNumber/><Status></Status>`, AddObjectResponse{}},
		{"max unsignedInt", `<InstanceNumber>4294967295</InstanceNumber>`, AddObjectResponse{InstanceNumber: 4294967295}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := decMust(t, decEnv(NS1_0, "", `<cwmp:AddObjectResponse>`+c.fields+`</cwmp:AddObjectResponse>`))
			if got := *e.Body.(*AddObjectResponse); got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
	_, err := Decode([]byte(decEnv(NS1_0, "", `<cwmp:AddObjectResponse><InstanceNumber>4294967296</InstanceNumber></cwmp:AddObjectResponse>`)))
	if !errors.Is(err, ErrNotEnvelope) {
		t.Fatalf("overflowing unsignedInt: error %v, want ErrNotEnvelope", err)
	}

	for _, b := range []struct {
		text string
		want bool
	}{{"1", true}, {"0", false}, {"true", true}, {"False", false}, {" TRUE ", true}, {"", false}} {
		e := decMust(t, decEnv(NS1_0, "", `<cwmp:GetParameterNames><ParameterPath>Device.</ParameterPath><NextLevel>`+b.text+`</NextLevel></cwmp:GetParameterNames>`))
		if got := e.Body.(*GetParameterNames); got.NextLevel != b.want || got.ParameterPath != "Device." {
			t.Errorf("NextLevel %q: got %+v, want %v", b.text, got, b.want)
		}
	}
}

func TestDecodeCharsets(t *testing.T) {
	const value = `<cwmp:Kicked><Arg>%s</Arg></cwmp:Kicked>`
	withDecl := func(enc, arg string) string {
		return `<?xml version="1.0" encoding="` + enc + `"?>` + decEnv(NS1_0, "", strings.Replace(value, "%s", arg, 1))
	}
	cases := []struct {
		name, body, charset, want string
	}{
		{"UTF-8", withDecl("UTF-8", "caf\u00e9 \u20ac"), "", "caf\u00e9 \u20ac"},
		{"ISO-8859-1", withDecl("ISO-8859-1", "caf\xe9"), "", "caf\u00e9"},
		{"latin1 label", withDecl("latin1", "\xc0 \xff"), "", "\u00c0 \u00ff"},
		{"ISO-8859-1 read as windows-1252", withDecl("iso-8859-1", "\x80 \x93x\x94"), "", "\u20ac \u201cx\u201d"},
		{"windows-1252", withDecl("windows-1252", "\x80\x81\x9f"), "", "\u20ac\u0081\u0178"},
		{"US-ASCII with a stray byte", withDecl("US-ASCII", "a\xe9"), "", "a\u00e9"},
		{"ISO-8859-15", withDecl("ISO-8859-15", "\xa4\xbd"), "", "\u20ac\u0153"},
		{"HTTP charset overrides the declaration", withDecl("UTF-8", "caf\xe9"), "ISO-8859-1", "caf\u00e9"},
		{"HTTP charset with quotes and case", withDecl("UTF-8", "caf\xe9"), `"Latin1"`, "caf\u00e9"},
		{"BOM overrides both", "\xEF\xBB\xBF" + withDecl("ISO-8859-1", "caf\u00e9"), "ISO-8859-1", "caf\u00e9"},
		{"unknown charset read as UTF-8", withDecl("x-unknown", "caf\u00e9\xe9"), "", "caf\u00e9\ufffd"},
		{"invalid UTF-8 replaced", withDecl("UTF-8", "a\xffb\xc3"), "", "a\ufffdb\ufffd"},
		{"surrogate bytes replaced", withDecl("UTF-8", "a\xed\xa0\x80b"), "", "a\ufffd\ufffd\ufffdb"},
		{"control characters replaced", withDecl("UTF-8", "a\x00b\x1bc\td"), "", "a\ufffdb\ufffdc\td"},
		{"control characters replaced in latin1", withDecl("ISO-8859-1", "\xe9\x01"), "", "\u00e9\ufffd"},
		{"noncharacters replaced", withDecl("UTF-8", "a\uFFFEb\uFFFF"), "", "a\ufffdb\ufffd"},
		{"UTF-16LE with BOM", utf16Body(false, withDecl("UTF-16", "caf\u00e9 \U0001F600")), "", "caf\u00e9 \U0001F600"},
		{"UTF-16BE with BOM, charset says otherwise", utf16Body(true, withDecl("ISO-8859-1", "caf\u00e9")), "UTF-8", "caf\u00e9"},
		{"UTF-16 without declaration", utf16Body(false, decEnv(NS1_0, "", strings.Replace(value, "%s", "\u20ac", 1))), "", "\u20ac"},
		{"UTF-16 control replaced", utf16Body(false, withDecl("UTF-16", "a\x01b")), "", "a\ufffdb"},
		{"UTF-16 unpaired surrogates replaced", strings.Replace(utf16Body(false, withDecl("UTF-16", "aHbLc")), "H\x00b\x00L\x00", "\x00\xD8b\x00\x00\xDC", 1), "", "a\ufffdb\ufffdc"},
		{"no declaration", decEnv(NS1_0, "", strings.Replace(value, "%s", "\u00e9", 1)), "", "\u00e9"},
		{"declaration after white space", "\r\n  " + withDecl("ISO-8859-1", "\xe9"), "", "\u00e9"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := DecodeWith([]byte(c.body), DecodeOptions{Charset: c.charset})
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got := e.Body.(*Kicked).Arg; got != c.want {
				t.Fatalf("Arg %q, want %q", got, c.want)
			}
			compareFrontEnds(t, []byte(c.body), DecodeOptions{Charset: c.charset}, true)
		})
	}
}

func TestDecodeLimits(t *testing.T) {
	body := []byte(decEnv(NS1_0, "", "<cwmp:Reboot/>"))
	if _, err := DecodeWith(body, DecodeOptions{Limits: Limits{MaxBytes: len(body)}}); err != nil {
		t.Fatalf("body of exactly MaxBytes: %v", err)
	}
	if _, err := DecodeWith(body, DecodeOptions{Limits: Limits{MaxBytes: len(body) - 1}}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("body one byte over: %v, want ErrTooLarge", err)
	}
	// Envelope, Body, Reboot: depth 3.
	if _, err := DecodeWith(body, DecodeOptions{Limits: Limits{MaxDepth: 3}}); err != nil {
		t.Fatalf("depth of exactly MaxDepth: %v", err)
	}
	if _, err := DecodeWith(body, DecodeOptions{Limits: Limits{MaxDepth: 2}}); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("depth one over: %v, want ErrTooDeep", err)
	}
	deep := strings.Repeat("<a>", 33) + strings.Repeat("</a>", 33)
	if _, err := Decode([]byte(deep)); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("33 levels with default limits: %v, want ErrTooDeep", err)
	}
	if DefaultLimits != (Limits{MaxBytes: 4 << 20, MaxDepth: 32}) {
		t.Fatalf("DefaultLimits changed: %+v", DefaultLimits)
	}
}

// utf16Body is s in UTF-16 with a byte order mark.
func utf16Body(bigEndian bool, s string) string {
	b := []byte{0xFF, 0xFE}
	if bigEndian {
		b = []byte{0xFE, 0xFF}
	}
	for _, u := range utf16.Encode([]rune(s)) {
		if bigEndian {
			b = append(b, byte(u>>8), byte(u))
		} else {
			b = append(b, byte(u), byte(u>>8))
		}
	}
	return string(b)
}

// TestDecodeInformHints: an Inform's MaxEnvelopes and RetryCount are hints;
// one that is missing or not an unsignedInt reads as 0 and the Inform is
// kept (docs/protocol.md §5.3).
func TestDecodeInformHints(t *testing.T) {
	cases := []struct {
		name, fields    string
		maxEnv, retries uint32
	}{
		{"plain", `<MaxEnvelopes>1</MaxEnvelopes><RetryCount>2</RetryCount>`, 1, 2},
		{"white space and plus", "<MaxEnvelopes> +1 </MaxEnvelopes><RetryCount>\r\n3\r\n</RetryCount>", 1, 3},
		{"missing", ``, 0, 0},
		{"empty", `<MaxEnvelopes/><RetryCount></RetryCount>`, 0, 0},
		{"MaxEnvelopes 0", `<MaxEnvelopes>0</MaxEnvelopes>`, 0, 0},
		{"negative", `<MaxEnvelopes>-1</MaxEnvelopes><RetryCount>-1</RetryCount>`, 0, 0},
		{"not a number", `<MaxEnvelopes>unbounded</MaxEnvelopes><RetryCount>n/a</RetryCount>`, 0, 0},
		{"too large", `<MaxEnvelopes>1</MaxEnvelopes><RetryCount>4294967296</RetryCount>`, 1, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := decMust(t, decEnv(NS1_0, "", `<cwmp:Inform><DeviceId><Manufacturer>M</Manufacturer><OUI>00AABB</OUI><ProductClass>P</ProductClass><SerialNumber>S</SerialNumber></DeviceId>`+
				`<Event><EventStruct><EventCode>2 PERIODIC</EventCode><CommandKey/></EventStruct></Event>`+c.fields+`</cwmp:Inform>`))
			inf := e.Body.(*Inform)
			if inf.MaxEnvelopes != c.maxEnv || inf.RetryCount != c.retries || inf.DeviceID.SerialNumber != "S" || len(inf.Events) != 1 {
				t.Fatalf("got %+v, want MaxEnvelopes %d RetryCount %d", inf, c.maxEnv, c.retries)
			}
		})
	}
}

// TestDecodeUndeclaredTypePrefixes: an envelope that declares neither xsi
// nor xsd (or only one of them) still types its values, because those
// prefixes mean one thing in CWMP (docs/protocol.md §2.3); other
// undeclared prefixes give no type.
func TestDecodeUndeclaredTypePrefixes(t *testing.T) {
	cases := []struct {
		name, decls, value, wantType, wantValue string
	}{
		{"neither declared", ``, `<Value xsi:type="xsd:unsignedInt"> 5 </Value>`, "xsd:unsignedInt", "5"},
		{"xsd only", ` xmlns:xsd="` + NSXSD + `"`, `<Value xsi:type="xsd:boolean">True</Value>`, "xsd:boolean", "true"},
		{"xsi only", ` xmlns:xsi="` + NSXSI + `"`, `<Value xsi:type="xsd:dateTime">2024-01-01T00:00:00</Value>`, "xsd:dateTime", "2024-01-01T00:00:00"},
		{"xsd declared elsewhere wins", ` xmlns:xsd="urn:vendor"`, `<Value xsi:type="xsd:int">1</Value>`, "xsd:string", "1"},
		{"undeclared vendor prefix", ``, `<Value xsi:type="v:int">1</Value>`, "xsd:string", "1"},
		{"undeclared attribute prefix", ``, `<Value x:type="xsd:int">1</Value>`, "xsd:string", "1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := `<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="` + NS1_0 + `"` + c.decls + `><soap:Body>` +
				`<cwmp:GetParameterValuesResponse><ParameterList><ParameterValueStruct><Name>A</Name>` + c.value +
				`</ParameterValueStruct></ParameterList></cwmp:GetParameterValuesResponse></soap:Body></soap:Envelope>`
			e := decMust(t, body)
			want := []ParameterValue{{Name: "A", Value: c.wantValue, Type: c.wantType}}
			if got := e.Body.(*GetParameterValuesResponse).ParameterList; !reflect.DeepEqual(got, want) {
				t.Fatalf("got %#v, want %#v", got, want)
			}
			compareFrontEnds(t, []byte(body), DecodeOptions{}, true)
		})
	}
}

// TestDecodeTrailingNUL: a C string's terminating NUL sent after the
// envelope, alone or with white space, is dropped; a NUL anywhere else is
// still a character XML forbids.
func TestDecodeTrailingNUL(t *testing.T) {
	body := decEnv(NS1_0, "", "<cwmp:Reboot><CommandKey>k</CommandKey></cwmp:Reboot>")
	for _, tail := range []string{"\x00", "\r\n\x00", "\x00\n", "\n\x00\x00 \x00"} {
		e, err := Decode([]byte(body + tail))
		if err != nil {
			t.Fatalf("tail %q: %v", tail, err)
		}
		if !reflect.DeepEqual(e.Body, &Reboot{CommandKey: "k"}) {
			t.Fatalf("tail %q: body %#v", tail, e.Body)
		}
		compareFrontEnds(t, []byte(body+tail), DecodeOptions{}, true)
	}
	for _, bad := range []string{"\x00" + body, body + "\x00x", body + "\x00<!---->"} {
		if _, err := Decode([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: error %v, want ErrMalformed", bad[:8], err)
		}
	}
	if _, err := Decode([]byte("\x00\r\n")); !errors.Is(err, ErrEmpty) {
		t.Errorf("only a NUL: error %v, want ErrEmpty", err)
	}
}
