package cwmp

import (
	"errors"
	"fmt"
	"testing"
)

// The transition table: every state the machine can be in, times every kind
// of input, with the exact reply (method or fault code, cwmp:ID, hold), the
// next phase and the notices. Each state is reached by driving a real
// session; then the source is replaced by one holding a single
// SetParameterValues, so "the ACS's turn" shows as that request.

type tableState struct {
	name  string
	setup func(t *testing.T) *tsess
}

const tableNS = NS1_2

func drive(t *testing.T, s *tsess, inputs ...*Envelope) {
	t.Helper()
	for _, in := range inputs {
		out := s.Step(in, nil)
		checkInvariants(t, s, out)
	}
}

// Every setup Inform announces a TransferComplete, so the CPE owes one.
var setupEvents = []string{"1 BOOT", "7 TRANSFER COMPLETE", "M Download"}

var tableStates = []tableState{
	{"new", func(t *testing.T) *tsess {
		return newTestSession("s", nil)
	}},
	{"ended", func(t *testing.T) *tsess {
		s := newTestSession("s", nil)
		drive(t, s, informEnv(tableNS, "i0", setupEvents...), nil)
		return s
	}},
	{"cpe", func(t *testing.T) *tsess {
		s := newTestSession("s", nil)
		drive(t, s, informEnv(tableNS, "i0", setupEvents...))
		return s
	}},
	{"cpe-held", func(t *testing.T) *tsess {
		s := newTestSession("s", &queueSource{hold: true})
		drive(t, s, informEnv(tableNS, "i0", setupEvents...))
		return s
	}},
	{"await", func(t *testing.T) *tsess {
		s := newTestSession("s", queue(Request{Message: gpv("Device."), Key: "k1"}))
		drive(t, s, informEnv(tableNS, "i0", setupEvents...), nil)
		return s
	}},
	{"await-held", func(t *testing.T) *tsess {
		src := queue(Request{Message: gpv("Device."), Key: "k1", HoldRequests: true})
		src.hold = true
		s := newTestSession("s", src)
		drive(t, s, informEnv(tableNS, "i0", setupEvents...), nil)
		return s
	}},
	{"await-max", func(t *testing.T) *tsess {
		s := newTestSession("s", queue(Request{Message: gpv("Device."), Key: "k1"}))
		drive(t, s, informEnv(tableNS, "i0", setupEvents...), nil, nil, nil)
		return s
	}},
}

type tableInput struct {
	name string
	env  *Envelope
	err  error
}

var (
	invalidInform = &Inform{DeviceID: DeviceID{Manufacturer: "Acme", ProductClass: "X"}}
	tooNewInform  = func() *Envelope {
		e := informEnv(tableNS, "c1", "2 PERIODIC")
		e.Header.SupportedCWMPVersions = "2.0,2.1"
		return e
	}()
	nilBody = &Envelope{Namespace: tableNS, Version: V1_2}
)

var tableInputs = []tableInput{
	{"inform", informEnv(tableNS, "c1", "2 PERIODIC"), nil},
	{"inform-invalid", env(tableNS, "c1", invalidInform), nil},
	{"inform-8006", tooNewInform, nil},
	{"GetRPCMethods", env(tableNS, "c1", &GetRPCMethods{}), nil},
	{"TransferComplete", env(tableNS, "c1", &TransferComplete{CommandKey: "dl1"}), nil},
	{"AutonomousTransferComplete", env(tableNS, "c1", &AutonomousTransferComplete{FileType: "1 Firmware Upgrade Image"}), nil},
	{"RequestDownload", env(tableNS, "c1", &RequestDownload{FileType: "1 Firmware Upgrade Image"}), nil},
	{"DUStateChangeComplete", env(tableNS, "c1", &DUStateChangeComplete{CommandKey: "du1"}), nil},
	{"AutonomousDUStateChangeComplete", env(tableNS, "c1", &AutonomousDUStateChangeComplete{}), nil},
	{"Kicked", env(tableNS, "c1", &Kicked{Command: "go", Next: "http://cpe/next"}), nil},
	{"empty", nil, nil},
	{"empty-ErrEmpty", nil, ErrEmpty},
	{"empty-body", nilBody, nil},
	{"response", env(tableNS, "s.1", &GetParameterValuesResponse{}), nil},
	{"response-no-id", env(tableNS, "", &GetParameterValuesResponse{}), nil},
	{"response-blank-id", env(tableNS, " ", &GetParameterValuesResponse{}), nil},
	{"response-wrong-id", env(tableNS, "s.0", &GetParameterValuesResponse{}), nil},
	{"response-wrong-method", env(tableNS, "s.1", &SetParameterValuesResponse{}), nil},
	{"fault", env(tableNS, "s.1", &Fault{Code: FaultInvalidParameterName}), nil},
	{"fault-no-id", env(tableNS, "", &Fault{Code: FaultInvalidParameterName}), nil},
	{"fault-wrong-id", env(tableNS, "s.0", &Fault{Code: FaultInvalidParameterName}), nil},
	{"response-foreign-id", env(tableNS, "cpe-9", &GetParameterValuesResponse{}), nil},
	{"response-foreign-id-wrong-method", env(tableNS, "cpe-9", &SetParameterValuesResponse{}), nil},
	{"fault-foreign-id", env(tableNS, "zz", &Fault{Code: FaultInvalidParameterName}), nil},
	{"fault-8005", env(tableNS, "s.1", &Fault{Code: FaultRetryRequest}), nil},
	{"fault-8005-no-id", env(tableNS, "", &Fault{Code: FaultRetryRequest}), nil},
	{"fault-8005-wrong-id", env(tableNS, "s.0", &Fault{Code: FaultRetryRequest}), nil},
	{"fault-8005-foreign-id", env(tableNS, "zz", &Fault{Code: FaultRetryRequest}), nil},
	{"unknown", env(tableNS, "c1", &Unknown{Name: "X_ACME_Frob", Namespace: tableNS}), nil},
	{"acs-only-request", env(tableNS, "c1", gpv("Device.")), nil},
	{"acs-side-response", env(tableNS, "c1", &InformResponse{MaxEnvelopes: 1}), nil},
	{"malformed", nil, fmt.Errorf("decode: %w", ErrMalformed)},
	{"not-envelope", nil, ErrNotEnvelope},
	{"too-large", nil, ErrTooLarge},
	{"too-deep", nil, ErrTooDeep},
	{"other-error", nil, errors.New("mystery")},
}

// outside is the answer of a session that is not live (new or ended).
func outside(phase string) map[string]string {
	noSess := "Fault8003 id=c1 -> " + phase + " end; anomaly:no-session"
	stray := "204 -> " + phase + " end; anomaly:no-session"
	return map[string]string{
		"inform":                           "InformResponse id=c1 -> cpe-requests; started",
		"inform-invalid":                   "Fault8003 id=c1 -> " + phase + " end; anomaly:invalid-inform",
		"inform-8006":                      "Fault8006 id=c1 -> " + phase + " end; anomaly:version-incompatible",
		"GetRPCMethods":                    noSess,
		"TransferComplete":                 noSess,
		"AutonomousTransferComplete":       noSess,
		"RequestDownload":                  noSess,
		"DUStateChangeComplete":            noSess,
		"AutonomousDUStateChangeComplete":  noSess,
		"Kicked":                           noSess,
		"empty":                            "204 -> " + phase + " end",
		"empty-ErrEmpty":                   "204 -> " + phase + " end",
		"empty-body":                       "204 -> " + phase + " end",
		"response":                         stray,
		"response-no-id":                   "204 -> " + phase + " end; anomaly:no-session",
		"response-blank-id":                "204 -> " + phase + " end; anomaly:no-session",
		"response-wrong-id":                stray,
		"response-wrong-method":            stray,
		"fault":                            stray,
		"fault-no-id":                      "204 -> " + phase + " end; anomaly:no-session",
		"fault-wrong-id":                   stray,
		"response-foreign-id":              stray,
		"response-foreign-id-wrong-method": stray,
		"fault-foreign-id":                 stray,
		"fault-8005":                       stray,
		"fault-8005-no-id":                 "204 -> " + phase + " end; anomaly:no-session",
		"fault-8005-wrong-id":              stray,
		"fault-8005-foreign-id":            stray,
		"unknown":                          noSess,
		"acs-only-request":                 noSess,
		"acs-side-response":                noSess,
		"malformed":                        "Fault8002 -> " + phase + " end; anomaly:decode",
		"not-envelope":                     "Fault8002 -> " + phase + " end; anomaly:decode",
		"too-large":                        "Fault8004 -> " + phase + " end; anomaly:decode",
		"too-deep":                         "Fault8004 -> " + phase + " end; anomaly:decode",
		"other-error":                      "Fault8002 -> " + phase + " end; anomaly:decode",
	}
}

// inCPEPhase is the answer in PhaseCPERequests; hold is " hold" when held.
func inCPEPhase(hold string) map[string]string {
	cpe := func(method string) string {
		if hold != "" {
			return "Fault8001 id=c1 hold -> cpe-requests; anomaly:held"
		}
		return method + "Response id=c1 -> cpe-requests; cpe:" + method
	}
	turn := "SetParameterValues id=s.1 -> awaiting-response"
	stray := turn + "; anomaly:stray-response"
	return map[string]string{
		"inform":                           "InformResponse id=c1 -> cpe-requests; started(replaced)",
		"inform-invalid":                   "Fault8003 id=c1 -> ended end; anomaly:invalid-inform",
		"inform-8006":                      "Fault8006 id=c1 -> ended end; anomaly:version-incompatible",
		"GetRPCMethods":                    cpe("GetRPCMethods"),
		"TransferComplete":                 cpe("TransferComplete"),
		"AutonomousTransferComplete":       cpe("AutonomousTransferComplete"),
		"RequestDownload":                  cpe("RequestDownload"),
		"DUStateChangeComplete":            cpe("DUStateChangeComplete"),
		"AutonomousDUStateChangeComplete":  cpe("AutonomousDUStateChangeComplete"),
		"Kicked":                           cpe("Kicked"),
		"empty":                            turn,
		"empty-ErrEmpty":                   turn,
		"empty-body":                       turn,
		"response":                         stray,
		"response-no-id":                   stray,
		"response-blank-id":                stray,
		"response-wrong-id":                stray,
		"response-wrong-method":            stray,
		"fault":                            stray,
		"fault-no-id":                      stray,
		"fault-wrong-id":                   stray,
		"response-foreign-id":              stray,
		"response-foreign-id-wrong-method": stray,
		"fault-foreign-id":                 stray,
		"fault-8005":                       stray,
		"fault-8005-no-id":                 stray,
		"fault-8005-wrong-id":              stray,
		"fault-8005-foreign-id":            stray,
		"unknown":                          "Fault8000 id=c1" + hold + " -> cpe-requests; anomaly:unsupported-method",
		"acs-only-request":                 "Fault8000 id=c1" + hold + " -> cpe-requests; anomaly:unsupported-method",
		"acs-side-response":                "Fault8000 id=c1" + hold + " -> cpe-requests; anomaly:unsupported-method",
		"malformed":                        "Fault8002" + hold + " -> cpe-requests; anomaly:decode",
		"not-envelope":                     "Fault8002" + hold + " -> cpe-requests; anomaly:decode",
		"too-large":                        "Fault8004" + hold + " -> cpe-requests; anomaly:decode",
		"too-deep":                         "Fault8004" + hold + " -> cpe-requests; anomaly:decode",
		"other-error":                      "Fault8002" + hold + " -> cpe-requests; anomaly:decode",
	}
}

// awaiting is the answer while GetParameterValues s.1 is outstanding; atMax
// when it was already sent again maxRetransmits times.
func awaiting(hold string, atMax bool) map[string]string {
	cpe := func(method string) string {
		if hold != "" {
			return "Fault8001 id=c1 hold -> awaiting-response; anomaly:held"
		}
		return method + "Response id=c1 -> awaiting-response; cpe:" + method
	}
	again := func(anomaly string) string {
		if atMax {
			return "204 -> ended end; anomaly:" + anomaly + ", abandoned:unanswered"
		}
		return "GetParameterValues id=s.1" + hold + " -> awaiting-response; anomaly:" + anomaly
	}
	next := "SetParameterValues id=s.2 -> awaiting-response; done:"
	// retry is a fault 8005 matched to the request: sent again with its
	// own cwmp:ID while resends are left, else the request's outcome.
	retry := func(how string) string {
		if atMax {
			return next + "fault8005" + how
		}
		return "GetParameterValues id=s.1" + hold + " -> awaiting-response; retried:fault8005" + how
	}
	return map[string]string{
		"inform":                           "InformResponse id=c1 -> cpe-requests; abandoned:new-inform, started(replaced)",
		"inform-invalid":                   "Fault8003 id=c1 -> ended end; abandoned:new-inform, anomaly:invalid-inform",
		"inform-8006":                      "Fault8006 id=c1 -> ended end; abandoned:new-inform, anomaly:version-incompatible",
		"GetRPCMethods":                    cpe("GetRPCMethods"),
		"TransferComplete":                 cpe("TransferComplete"),
		"AutonomousTransferComplete":       cpe("AutonomousTransferComplete"),
		"RequestDownload":                  cpe("RequestDownload"),
		"DUStateChangeComplete":            cpe("DUStateChangeComplete"),
		"AutonomousDUStateChangeComplete":  cpe("AutonomousDUStateChangeComplete"),
		"Kicked":                           cpe("Kicked"),
		"empty":                            again("no-response"),
		"empty-ErrEmpty":                   again("no-response"),
		"empty-body":                       again("no-response"),
		"response":                         next + "GetParameterValuesResponse",
		"response-no-id":                   next + "GetParameterValuesResponse(missing-id)",
		"response-blank-id":                next + "GetParameterValuesResponse(missing-id)",
		"response-wrong-id":                again("stray-response"),
		"response-wrong-method":            again("stray-response"),
		"fault":                            next + "fault9005",
		"fault-no-id":                      next + "fault9005(missing-id)",
		"fault-wrong-id":                   again("stray-response"),
		"response-foreign-id":              next + "GetParameterValuesResponse(foreign-id cpe-9)",
		"response-foreign-id-wrong-method": again("stray-response"),
		"fault-foreign-id":                 next + "fault9005(foreign-id zz)",
		"fault-8005":                       retry(""),
		"fault-8005-no-id":                 retry("(missing-id)"),
		"fault-8005-wrong-id":              again("stray-response"),
		"fault-8005-foreign-id":            retry("(foreign-id zz)"),
		"unknown":                          "Fault8000 id=c1" + hold + " -> awaiting-response; anomaly:unsupported-method",
		"acs-only-request":                 "Fault8000 id=c1" + hold + " -> awaiting-response; anomaly:unsupported-method",
		"acs-side-response":                "Fault8000 id=c1" + hold + " -> awaiting-response; anomaly:unsupported-method",
		"malformed":                        "Fault8002" + hold + " -> awaiting-response; anomaly:decode",
		"not-envelope":                     "Fault8002" + hold + " -> awaiting-response; anomaly:decode",
		"too-large":                        "Fault8004" + hold + " -> awaiting-response; anomaly:decode",
		"too-deep":                         "Fault8004" + hold + " -> awaiting-response; anomaly:decode",
		"other-error":                      "Fault8002" + hold + " -> awaiting-response; anomaly:decode",
	}
}

var transitionTable = map[string]map[string]string{
	"new":        outside("new"),
	"ended":      outside("ended"),
	"cpe":        inCPEPhase(""),
	"cpe-held":   inCPEPhase(" hold"),
	"await":      awaiting("", false),
	"await-held": awaiting(" hold", false),
	"await-max":  awaiting("", true),
}

func TestSessionTransitionTable(t *testing.T) {
	rows := 0
	for _, st := range tableStates {
		want := transitionTable[st.name]
		if len(want) != len(tableInputs) {
			t.Fatalf("state %s: table has %d inputs, want %d", st.name, len(want), len(tableInputs))
		}
		for _, in := range tableInputs {
			t.Run(st.name+"/"+in.name, func(t *testing.T) {
				s := st.setup(t)
				q := queue(Request{Message: &SetParameterValues{ParameterKey: "pk"}, Key: "next"})
				s.src = q
				s.SetHoldDecider(q)
				before := s.State()
				// The same step on a bare copy: without the turn it gives
				// exactly what the queue-driven session gives; with it, no
				// reply yet and the notices the reply will follow.
				raw, err := RestoreSession(before)
				if err != nil {
					t.Fatal(err)
				}
				bare := raw.Step(in.env, in.err)
				out := s.Step(in.env, in.err)
				if !bare.Turn && render(bare, raw) != render(out, s) {
					t.Errorf("without the turn: bare %s, driven %s", render(bare, raw), render(out, s))
				}
				if bare.Turn && (bare.Reply != nil || len(bare.Notices) > len(out.Notices)) {
					t.Errorf("turn with reply %v, %d notices of %d", bare.Reply, len(bare.Notices), len(out.Notices))
				}
				if got := render(out, s); got != want[in.name] {
					t.Errorf("state %s, input %s:\n got  %s\n want %s", st.name, in.name, got, want[in.name])
				}
				checkInvariants(t, s, out)
				checkReplyFraming(t, before, in, out)
			})
			rows++
		}
	}
	if rows != len(tableStates)*len(tableInputs) {
		t.Fatalf("ran %d rows", rows)
	}
}

// checkReplyFraming checks the parts of the reply render does not show: the
// namespace, the XML declaration and the Inform's answer headers.
func checkReplyFraming(t *testing.T, before State, in tableInput, out Output) {
	t.Helper()
	if out.Reply == nil {
		return
	}
	if got := out.Reply.Namespace; got != tableNS && !(in.env == nil && !before.Phase.Live() && got == NS1_0) {
		t.Errorf("reply namespace %q", got)
	}
	if out.Reply.XMLDeclaration {
		t.Errorf("XML declaration in reply to a message without one")
	}
	if ir, ok := out.Reply.Body.(*InformResponse); ok && ir.MaxEnvelopes != 1 {
		t.Errorf("InformResponse MaxEnvelopes %d", ir.MaxEnvelopes)
	}
	if out.Reply.Header.UseCWMPVersion != "" {
		t.Errorf("UseCWMPVersion %q without SupportedCWMPVersions", out.Reply.Header.UseCWMPVersion)
	}
	if f, ok := out.Reply.Body.(*Fault); ok {
		if f.SOAPCode != f.Code.SOAPFaultCode() || f.String == "" || f.SOAPString != "CWMP fault" {
			t.Errorf("fault %+v lacks standard texts", f)
		}
	}
}

// The owed-request bookkeeping in the same table states: a TransferComplete
// pays the debt, other requests do not.
func TestSessionOwedRequests(t *testing.T) {
	s := newTestSession("s", nil)
	drive(t, s, informEnv(tableNS, "i0", setupEvents...))
	if got := s.State().Owed; len(got) != 1 || got[0] != "TransferComplete" {
		t.Fatalf("owed %v", got)
	}
	drive(t, s, env(tableNS, "c1", &GetRPCMethods{}))
	if got := s.State().Owed; len(got) != 1 {
		t.Fatalf("owed after GetRPCMethods %v", got)
	}
	drive(t, s, env(tableNS, "c2", &TransferComplete{CommandKey: "x"}))
	if got := s.State().Owed; len(got) != 0 {
		t.Fatalf("owed after TransferComplete %v", got)
	}
}
