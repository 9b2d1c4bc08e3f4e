package cwmp

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// queueSource hands out its requests in order; hold answers HoldDecider.
type queueSource struct {
	reqs  []Request
	hold  bool
	asked int
}

func (q *queueSource) NextRequest(*Session) (Request, bool) {
	q.asked++
	if len(q.reqs) == 0 {
		return Request{}, false
	}
	r := q.reqs[0]
	q.reqs = q.reqs[1:]
	return r, true
}

func (q *queueSource) HoldRequests(*Session) bool { return q.hold }

var _ HoldDecider = (*queueSource)(nil)

func queue(reqs ...Request) *queueSource { return &queueSource{reqs: reqs} }

// env builds a CPE envelope in namespace ns with cwmp:ID id ("" for none).
func env(ns, id string, body Message) *Envelope {
	v, _ := VersionOfNamespace(ns)
	e := &Envelope{Namespace: ns, Version: v, Body: body}
	if id != "" {
		e.Header.ID, e.Header.HasID = id, true
	}
	return e
}

func testInform(events ...string) *Inform {
	inf := &Inform{
		DeviceID:     DeviceID{Manufacturer: "Acme", OUI: "00D09E", ProductClass: "Router", SerialNumber: "SN0001"},
		MaxEnvelopes: 1,
		CurrentTime:  "2024-05-01T10:00:00Z",
		ParameterList: []ParameterValue{
			{Name: "Device.DeviceInfo.SoftwareVersion", Value: "1.2.3", Type: "xsd:string"},
		},
	}
	for _, e := range events {
		inf.Events = append(inf.Events, Event{Code: e})
	}
	return inf
}

func informEnv(ns, id string, events ...string) *Envelope {
	return env(ns, id, testInform(events...))
}

func gpv(names ...string) *GetParameterValues { return &GetParameterValues{ParameterNames: names} }

// render gives an Output as "<reply> -> <phase>[ end][; notices]", where
// reply is 204, the body's method, or FaultNNNN, followed by " id=<cwmp:ID>"
// and " hold" when the header carries them.
func render(out Output, s *Session) string {
	var b strings.Builder
	switch {
	case out.Reply == nil:
		b.WriteString("204")
	default:
		if f, ok := out.Reply.Body.(*Fault); ok {
			b.WriteString("Fault" + strconv.Itoa(int(f.Code)))
		} else {
			b.WriteString(out.Reply.Body.Method())
		}
		if out.Reply.Header.HasID {
			b.WriteString(" id=" + out.Reply.Header.ID)
		}
		if out.Reply.Header.HoldRequests {
			b.WriteString(" hold")
		}
	}
	b.WriteString(" -> " + s.Phase().String())
	if out.End {
		b.WriteString(" end")
	}
	if len(out.Notices) > 0 {
		parts := make([]string, len(out.Notices))
		for i, n := range out.Notices {
			parts[i] = renderNotice(n)
		}
		b.WriteString("; " + strings.Join(parts, ", "))
	}
	return b.String()
}

func renderNotice(n Notice) string {
	switch n := n.(type) {
	case *SessionStarted:
		if n.Replaced {
			return "started(replaced)"
		}
		return "started"
	case *CPERequest:
		return "cpe:" + n.Message.Method()
	case *RequestDone:
		s := "done:"
		if n.Fault != nil {
			s += "fault" + strconv.Itoa(int(n.Fault.Code))
		} else {
			s += n.Response.Method()
		}
		if n.MissingID {
			s += "(missing-id)"
		}
		return s
	case *RequestAbandoned:
		return "abandoned:" + n.Reason.String()
	case *RequestRefused:
		name := "<nil>"
		if n.Request.Message != nil {
			name = n.Request.Message.Method()
		}
		return "refused:" + name
	case *Anomaly:
		return "anomaly:" + n.Kind.String()
	}
	return fmt.Sprintf("%T", n)
}

// checkInvariants asserts what must hold after every step.
func checkInvariants(t testing.TB, s *Session, out Output) {
	t.Helper()
	_, _, outstanding := s.Outstanding()
	if (s.Phase() == PhaseAwaitingResponse) != outstanding {
		t.Fatalf("phase %s with outstanding=%t", s.Phase(), outstanding)
	}
	if out.End == s.Phase().Live() {
		t.Fatalf("End=%t in phase %s", out.End, s.Phase())
	}
	if out.Reply != nil {
		if out.Reply.Body == nil {
			t.Fatal("reply envelope without a body")
		}
		if _, err := Encode(out.Reply); err != nil {
			t.Fatalf("reply %s does not encode: %v", out.Reply.Body.Method(), err)
		}
		if s.Phase().Live() && out.Reply.Namespace != s.Namespace() {
			t.Fatalf("reply namespace %q, session namespace %q", out.Reply.Namespace, s.Namespace())
		}
		if isACSRequest(out.Reply.Body.Method()) {
			id, req, ok := s.Outstanding()
			if !ok || id != out.Reply.Header.ID || req.Message != out.Reply.Body {
				t.Fatalf("sent request %s id=%s is not the outstanding one", out.Reply.Body.Method(), out.Reply.Header.ID)
			}
		}
	}
	// The checkpoint restores to an equal state.
	b1, err := s.MarshalBinary()
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	r := &Session{}
	if err := r.UnmarshalBinary(b1); err != nil {
		t.Fatalf("restore %s: %v", b1, err)
	}
	b2, err := r.MarshalBinary()
	if err != nil {
		t.Fatalf("checkpoint restored: %v", err)
	}
	if string(b1) != string(b2) {
		t.Fatalf("restored state differs:\n%s\n%s", b1, b2)
	}
}

// stateJSON is the checkpoint of s as text, for comparisons.
func stateJSON(t testing.TB, s *Session) string {
	t.Helper()
	b, err := json.Marshal(s.State())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
