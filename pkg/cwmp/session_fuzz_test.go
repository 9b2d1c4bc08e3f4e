package cwmp

import (
	"errors"
	"testing"
)

// FuzzSession drives a session with input sequences decoded from the fuzz
// data, one byte per input (plus argument bytes), against a source whose
// queue the data also fills. After every step the invariants hold: at most
// one outstanding request, and only in PhaseAwaitingResponse; End exactly
// when no session is live; ACS request IDs never reused for a new request;
// answers attributed only to the request outstanding before the step; the
// checkpoint restores to an equal state.
func FuzzSession(f *testing.F) {
	f.Add([]byte{0, 0, 20, 3, 10, 11, 10})
	f.Add([]byte{2, 9, 3, 4, 20, 130, 10, 13, 13, 13, 19, 11})
	f.Add([]byte{20, 1, 20, 140, 0, 2, 5, 10, 19, 12, 15, 0, 1, 10, 10, 10, 21})
	f.Add([]byte{18, 0, 16, 0, 3, 17, 18, 3, 22, 10, 14, 14, 14})
	f.Add([]byte{20, 200, 20, 201, 0, 4, 6, 10, 19, 11, 19, 4, 10, 8, 10})

	f.Fuzz(fuzzSession)
}

var (
	fuzzNamespaces  = []string{NS1_0, NS1_1, NS1_2, NS1_3, NS1_4, "urn:dslforum-org:cwmp-1-9", "urn:other", ""}
	fuzzSupported   = []string{"", "1.0", "1.0,1.1,1.2,1.3,1.4", "1.4", "2.0", "1.1,1.2"}
	fuzzCPERequests = []Message{&GetRPCMethods{}, &TransferComplete{CommandKey: "c"}, &AutonomousTransferComplete{},
		&RequestDownload{}, &DUStateChangeComplete{}, &AutonomousDUStateChangeComplete{}, &Kicked{Next: "n"}}
	fuzzDecodeErrs = []error{ErrMalformed, ErrNotEnvelope, ErrTooLarge, ErrTooDeep, ErrEmpty}
	fuzzEvents     = [][]string{{"1 BOOT"}, {"7 TRANSFER COMPLETE", "M Download"}, {"0 BOOTSTRAP", "9 REQUEST DOWNLOAD", "5 KICKED"}, nil}
)

func fuzzSession(t *testing.T, data []byte) {
	namespaces, supported, cpeRequests, decodeErrs, events := fuzzNamespaces, fuzzSupported, fuzzCPERequests, fuzzDecodeErrs, fuzzEvents
	requests := append(sampleRequests(), &VendorRequest{Name: "X_FLEETACS_Echo", Arguments: "<A>1</A>"})
	src := &queueSource{}
	s := NewSession("z")
	s.SetHoldDecider(src)
	sentIDs := map[string]bool{}
	ns := NS1_2
	pos := 0
	next := func() int {
		if pos >= len(data) {
			return 0
		}
		b := data[pos]
		pos++
		return int(b)
	}
	restore := func() {
		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		s = &Session{}
		s.SetHoldDecider(src)
		if err := s.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
	}
	checkSent := func(out Output, prevID string, hadOutstanding bool) {
		if out.Reply == nil {
			return
		}
		if _, vendor := out.Reply.Body.(*VendorRequest); !vendor && !isACSRequest(out.Reply.Body.Method()) {
			return
		}
		id := out.Reply.Header.ID
		if hadOutstanding && id == prevID {
			return // the outstanding request sent again
		}
		if sentIDs[id] {
			t.Fatalf("request ID %s reused", id)
		}
		sentIDs[id] = true
	}
	for steps := 0; pos < len(data) && steps < 200; steps++ {
		if s.Phase().Live() {
			ns = s.Namespace()
		}
		prevID, prevReq, hadOutstanding := s.Outstanding()
		var in *Envelope
		var derr error
		op := next() % 24
		switch op {
		case 0, 1, 2:
			inf := testInform(events[next()%len(events)]...)
			if op == 1 {
				inf.DeviceID = DeviceID{}
			}
			in = env(namespaces[next()%len(namespaces)], "i", inf)
			if op == 2 {
				in.Header.SupportedCWMPVersions = supported[next()%len(supported)]
				in.Header.SessionTimeout = uint32(next())
			}
		case 3, 4, 5, 6, 7, 8, 9:
			in = env(ns, "c", cpeRequests[op-3])
		case 10:
			// empty POST
		case 11, 12, 13, 14:
			id := prevID
			method := "GetParameterValuesResponse"
			if hadOutstanding {
				method = prevReq.Message.Method() + "Response"
			}
			switch op {
			case 12:
				id = ""
			case 13:
				id = prevID + "x"
			case 14:
				method = "GetRPCMethodsResponse"
				if hadOutstanding && prevReq.Message.Method() == "GetRPCMethods" {
					method = "RebootResponse"
				}
			}
			m, _ := NewMessage(method)
			if isVendorResponse(method) {
				m = &VendorResponse{Name: method, InnerXML: "<A>1</A>"}
			}
			in = env(ns, id, m)
		case 15:
			in = env(ns, prevID, &Fault{Code: FaultCode(9000 + next())})
		case 16:
			in = env(ns, "u", &Unknown{Name: "X_Vendor"})
			if next()%2 == 1 {
				in = env(ns, "u", &VendorResponse{Name: "X_FLEETACS_EchoResponse"})
			}
		case 17:
			in = env(ns, "a", requests[next()%len(requests)])
		case 18:
			derr = decodeErrs[next()%len(decodeErrs)]
		case 19:
			restore()
			continue
		case 20:
			b := next()
			src.reqs = append(src.reqs, Request{Message: requests[b%len(requests)], Key: "k", HoldRequests: b&64 != 0})
			src.hold = b&128 != 0
			continue
		case 21:
			s.Expire()
			continue
		case 22:
			in = &Envelope{Namespace: ns}
		case 23:
			// Send and Finish outside the ACS's turn change nothing.
			before := stateJSON(t, s)
			if _, err := s.Send(Request{Message: &Reboot{}}); !errors.Is(err, ErrNotACSTurn) {
				t.Fatalf("Send in phase %s: %v", s.Phase(), err)
			}
			if _, err := s.Finish(); !errors.Is(err, ErrNotACSTurn) {
				t.Fatalf("Finish in phase %s: %v", s.Phase(), err)
			}
			if stateJSON(t, s) != before {
				t.Fatal("Send or Finish outside the turn changed the session")
			}
			continue
		}
		in2 := in
		if in2 != nil && next()&1 == 1 {
			cp := *in2
			cp.XMLDeclaration = true
			in2 = &cp
		}

		out := s.Step(in2, derr)
		checkInvariants(t, s, out)

		for _, n := range out.Notices {
			if d, ok := n.(*RequestDone); ok {
				if !hadOutstanding || d.ID != prevID {
					t.Fatalf("answer attributed to %s, outstanding was %s (%t)", d.ID, prevID, hadOutstanding)
				}
				// The answer reaches the caller before the next request
				// is chosen: with the turn, never with a request.
				if !out.Turn {
					t.Fatalf("answer %s reported without the turn", d.ID)
				}
			}
			if _, ok := n.(*SessionStarted); ok {
				if out.Reply == nil || out.Reply.Body.Method() != "InformResponse" {
					t.Fatal("session started without an InformResponse")
				}
			}
		}
		if out.Reply != nil {
			if f, ok := out.Reply.Body.(*Fault); ok && (f.Code < 8000 || f.Code > 8006) {
				t.Fatalf("ACS fault code %d", f.Code)
			}
		}
		checkSent(out, prevID, hadOutstanding)

		// The caller's side of the turn, chosen by the data: a checkpoint
		// in the middle of it, a request the session must refuse, the
		// queued requests, or nothing more.
		for out.Turn {
			switch c := next(); {
			case c%7 == 1:
				restore()
				continue
			case c%7 == 2:
				before := stateJSON(t, s)
				bad := Request{Message: &InformResponse{}, Key: "bad"}
				if _, err := s.Send(bad); !errors.Is(err, ErrNotACSRequest) {
					t.Fatalf("sent %v", err)
				}
				if stateJSON(t, s) != before {
					t.Fatal("a refused request changed the session")
				}
				continue
			}
			req, ok := src.next()
			var err error
			if ok {
				out, err = s.Send(req)
				if errors.Is(err, ErrMethodTooNew) {
					if s.Phase() != PhaseACSTurn {
						t.Fatalf("refused request left phase %s", s.Phase())
					}
					out = Output{Turn: true}
					continue
				}
			} else {
				out, err = s.Finish()
			}
			if err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, s, out)
			checkSent(out, prevID, hadOutstanding)
			if out.Turn {
				t.Fatal("Send or Finish handed the turn back")
			}
		}
	}
}
