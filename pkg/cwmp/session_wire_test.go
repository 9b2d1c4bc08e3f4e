package cwmp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Wire-level checks: captured CPE messages (testdata/*.xml) go through
// Decode, the session and Encode, and the reply decodes back to what the
// session meant.

func decodeFixture(t *testing.T, name string) *Envelope {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Decode(b)
	if err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	return e
}

// roundTrip encodes the reply and decodes it again.
func roundTrip(t *testing.T, reply *Envelope) (*Envelope, []byte) {
	t.Helper()
	b, err := Encode(reply)
	if err != nil {
		t.Fatalf("encode %s: %v", reply.Body.Method(), err)
	}
	back, err := Decode(b)
	if err != nil {
		t.Fatalf("decode our own %s: %v\n%s", reply.Body.Method(), err, b)
	}
	return back, b
}

func TestSessionWireInformFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "inform-*.xml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Inform fixtures: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			in := decodeFixture(t, name)
			s := newTestSession("w", nil)
			out := s.Step(in, nil)
			checkInvariants(t, s, out)
			if len(out.Notices) != 1 {
				t.Fatalf("notices %v", render(out, s))
			}
			if _, ok := out.Notices[0].(*SessionStarted); !ok {
				t.Fatalf("not started: %s", render(out, s))
			}
			back, raw := roundTrip(t, out.Reply)
			ir, ok := back.Body.(*InformResponse)
			if !ok || ir.MaxEnvelopes != 1 {
				t.Fatalf("reply %s", raw)
			}
			if back.Namespace != s.Namespace() {
				t.Fatalf("reply namespace %s, session %s", back.Namespace, s.Namespace())
			}
			if cv, _ := VersionOfNamespace(in.Namespace); func() Version { v, _ := VersionOfNamespace(back.Namespace); return v }() > cv {
				t.Fatalf("reply namespace %s newer than the CPE's %s", back.Namespace, in.Namespace)
			}
			if back.XMLDeclaration != in.XMLDeclaration {
				t.Fatalf("XML declaration %t, CPE sent %t", back.XMLDeclaration, in.XMLDeclaration)
			}
			if id, has := requestID(in); has != back.Header.HasID || (has && strings.TrimSpace(back.Header.ID) != id) {
				t.Fatalf("ID %q (%t), CPE sent %q (%t)", back.Header.ID, back.Header.HasID, in.Header.ID, in.Header.HasID)
			}
			if (in.Header.SupportedCWMPVersions != "") != (back.Header.UseCWMPVersion != "") {
				t.Fatalf("UseCWMPVersion %q for SupportedCWMPVersions %q", back.Header.UseCWMPVersion, in.Header.SupportedCWMPVersions)
			}

			// The empty POST, as Decode reports it, ends the session.
			_, derr := Decode(nil)
			out = s.Step(nil, derr)
			if out.Reply != nil || !out.End {
				t.Fatalf("empty POST: %s", render(out, s))
			}
		})
	}
}

func TestSessionWireCPEMessages(t *testing.T) {
	cases := []struct {
		file string
		want string // rendered reply, in a session started in the fixture's namespace
	}{
		{"transfercomplete.xml", "TransferCompleteResponse id=tc-1 -> cpe-requests; cpe:TransferComplete"},
		{"autonomoustransfercomplete.xml", "AutonomousTransferCompleteResponse"},
		{"requestdownload.xml", "RequestDownloadResponse"},
		{"kicked.xml", "KickedResponse"},
		{"getrpcmethods-cpe.xml", "GetRPCMethodsResponse"},
		{"dustatechangecomplete.xml", "DUStateChangeCompleteResponse"},
		{"autonomousdustatechangecomplete.xml", "AutonomousDUStateChangeCompleteResponse"},
		{"unknown-vendor-method.xml", "Fault8000"},
		// ACS-side messages a confused CPE might send.
		{"download-acs.xml", "Fault8000"},
		{"setparametervalues-acs.xml", "Fault8000"},
		{"informresponse-acs.xml", "Fault8000"},
		{"changedustate-typed.xml", "Fault8000"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			in := decodeFixture(t, c.file)
			s := newTestSession("w", nil)
			s.Step(env(in.Namespace, "i", testInform("1 BOOT")), nil)
			out := s.Step(in, nil)
			checkInvariants(t, s, out)
			if got := render(out, s); !strings.HasPrefix(got, c.want) {
				t.Fatalf("got %s, want %s...", got, c.want)
			}
			back, raw := roundTrip(t, out.Reply)
			if id, has := requestID(in); has && strings.TrimSpace(back.Header.ID) != id {
				t.Fatalf("reply ID %q, request ID %q\n%s", back.Header.ID, in.Header.ID, raw)
			}
			if m, ok := back.Body.(*GetRPCMethodsResponse); ok && len(m.MethodList) == 0 {
				t.Fatal("empty method list")
			}
		})
	}
}

// Captured CPE answers to ACS requests: each is attributed to a request of
// its method, whatever cwmp:ID the capture carried (a missing one is
// tolerated, a different one is replaced by ours here).
func TestSessionWireAnswers(t *testing.T) {
	samples := map[string]Message{}
	for _, m := range sampleRequests() {
		samples[m.Method()] = m
	}
	// A vendor RPC, answered in the vendor's own namespace.
	samples["X_HW_GetParamValuesEagerly"] = &VendorRequest{Name: "X_HW_GetParamValuesEagerly",
		Namespace: "urn:huawei-com:cwmp-ext", Arguments: "<Names><N>Device.</N></Names>"}
	answers := map[string]string{ // fixture -> request method
		"fault-download-9010.xml":      "Download",
		"fault-setparametervalues.xml": "SetParameterValues",
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "*response*.xml"))
	for _, f := range files {
		name := filepath.Base(f)
		if strings.Contains(name, "-acs") || strings.HasPrefix(name, "inform") {
			continue
		}
		in := decodeFixture(t, name)
		req, ok := strings.CutSuffix(in.Body.Method(), "Response")
		if !ok {
			t.Fatalf("%s holds %s", name, in.Body.Method())
		}
		answers[name] = req
	}
	if len(answers) < 10 {
		t.Fatalf("only %d answer fixtures", len(answers))
	}
	for file, method := range answers {
		t.Run(file, func(t *testing.T) {
			in := decodeFixture(t, file)
			m, ok := samples[method]
			if !ok {
				t.Fatalf("no sample %s request", method)
			}
			s := newTestSession("w", queue(Request{Message: m, Key: "task"}))
			s.Step(env(in.Namespace, "i", testInform("1 BOOT")), nil)
			out := s.Step(nil, nil)
			checkInvariants(t, s, out)
			if out.Reply == nil {
				t.Fatalf("%s not sent in a %s session: %s", method, s.Version(), render(out, s))
			}
			roundTrip(t, out.Reply)
			if in.Header.HasID {
				in.Header.ID = out.Reply.Header.ID
			}
			out = s.Step(in, nil)
			checkInvariants(t, s, out)
			d, ok := out.Notices[0].(*RequestDone)
			if !ok || d.Request.Key != "task" || !out.End {
				t.Fatalf("answer not attributed: %s", render(out, s))
			}
			if f, isFault := in.Body.(*Fault); isFault && d.Fault != f {
				t.Fatal("fault not reported as the fault")
			}
		})
	}
}

// Oversized and malformed bodies, as Decode reports them.
func TestSessionWireDecodeFailures(t *testing.T) {
	s := newTestSession("w", nil)
	s.Step(informEnv(NS1_2, "i", "1 BOOT"), nil)
	for _, c := range []struct {
		body string
		code FaultCode
	}{
		{"<soap-env:Envelope", FaultInternalError},
		{"<html><body>hello</body></html>", FaultInternalError},
		{strings.Repeat("<a>", 5000) + strings.Repeat("</a>", 5000), FaultResourcesExceeded},
	} {
		e, err := Decode([]byte(c.body))
		if err == nil {
			t.Fatalf("%.40q decoded", c.body)
		}
		out := s.Step(e, err)
		checkInvariants(t, s, out)
		if f, ok := out.Reply.Body.(*Fault); !ok || f.Code != c.code {
			t.Fatalf("%.40q (%v): %s", c.body, err, render(out, s))
		}
		roundTrip(t, out.Reply)
	}
}

// A CPE's fault 8005 as it comes over the wire: the resend the session
// answers with encodes to the very bytes of the first sending (same body,
// same cwmp:ID), and a real answer after it is the request's outcome.
func TestSessionWireRetryRequest(t *testing.T) {
	dl := &Download{CommandKey: "fw", FileType: "1 Firmware Upgrade Image", URL: "http://x/fw.bin", FileSize: 10}
	s := newTestSession("w", queue(Request{Message: dl, Key: "task"}))
	s.Step(env(NS1_0, "i", testInform("1 BOOT")), nil)
	out := s.Step(nil, nil)
	_, first := roundTrip(t, out.Reply)
	fault := func(id string) *Envelope {
		raw := `<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-0">` +
			`<soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">` + id + `</cwmp:ID></soap-env:Header><soap-env:Body>` +
			`<soap-env:Fault><faultcode>Server</faultcode><faultstring>CWMP fault</faultstring><detail><cwmp:Fault>` +
			`<FaultCode>8005</FaultCode><FaultString>Retry request</FaultString></cwmp:Fault></detail></soap-env:Fault></soap-env:Body></soap-env:Envelope>`
		e, err := Decode([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	out = s.Step(fault(out.Reply.Header.ID), nil)
	checkInvariants(t, s, out)
	if got := render(out, s); got != "Download id=w.1 -> awaiting-response; retried:fault8005" {
		t.Fatal(got)
	}
	if _, again := roundTrip(t, out.Reply); string(again) != string(first) {
		t.Fatalf("resent\n%s\nfirst sent\n%s", again, first)
	}
	ans := decodeFixture(t, "fault-download-9010.xml")
	ans.Header.ID = "w.1"
	out = s.Step(ans, nil)
	if got := render(out, s); got != "204 -> ended end; done:fault9010" {
		t.Fatal(got)
	}
}
