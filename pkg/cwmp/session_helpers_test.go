package cwmp

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// queueSource is the caller's side of the ACS's turn in tests: it hands
// out its requests in order; hold answers HoldDecider.
type queueSource struct {
	reqs  []Request
	hold  bool
	asked int
}

func (q *queueSource) next() (Request, bool) {
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

// refusedNotice records, for render, a request Send refused.
type refusedNotice struct {
	req Request
	err error
}

func (*refusedNotice) notice() {}

// tsess is a Session driven the way the sessions worker drives one: its
// Step resolves every ACS turn from the queue (nil: an ACS with nothing to
// ask), sending the queued requests in order (a refused one is reported
// with a refusedNotice and the next one tried) and finishing when the
// queue is dry. The merged Output is what one HTTP exchange gives the CPE.
type tsess struct {
	*Session
	src *queueSource
}

func newTestSession(id string, src *queueSource) *tsess {
	s := &tsess{Session: NewSession(id), src: src}
	if src != nil {
		s.SetHoldDecider(src)
	}
	return s
}

func (s *tsess) Step(env *Envelope, err error) Output {
	return resolveTurn(s.Session, s.src, s.Session.Step(env, err))
}

// restore replaces the session with one restored from its checkpoint.
func (s *tsess) restore(t testing.TB) {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	r := &Session{}
	if s.src != nil {
		r.SetHoldDecider(s.src)
	}
	if err := r.UnmarshalBinary(b); err != nil {
		t.Fatalf("restore %s: %v", b, err)
	}
	s.Session = r
}

// resolveTurn answers the turn out hands over, if any, from src.
func resolveTurn(s *Session, src *queueSource, out Output) Output {
	if !out.Turn {
		return out
	}
	notices := out.Notices
	for src != nil {
		req, ok := src.next()
		if !ok {
			break
		}
		sent, err := s.Send(req)
		if err != nil {
			notices = append(notices, &refusedNotice{req: req, err: err})
			continue
		}
		sent.Notices = append(notices, sent.Notices...)
		return sent
	}
	fin, err := s.Finish()
	if err != nil {
		panic(err)
	}
	fin.Notices = append(notices, fin.Notices...)
	return fin
}

// sessionView is what the helpers below read of a *Session or a *tsess.
type sessionView interface {
	Phase() Phase
	Namespace() string
	Outstanding() (string, Request, bool)
	State() State
	MarshalBinary() ([]byte, error)
}

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
func render(out Output, s sessionView) string {
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
	if out.Turn {
		b.WriteString(" turn")
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
		if n.ForeignID != "" {
			s += "(foreign-id " + n.ForeignID + ")"
		}
		return s
	case *RequestRetried:
		s := "retried:fault" + strconv.Itoa(int(n.Fault.Code))
		if n.MissingID {
			s += "(missing-id)"
		}
		if n.ForeignID != "" {
			s += "(foreign-id " + n.ForeignID + ")"
		}
		return s
	case *RequestAbandoned:
		return "abandoned:" + n.Reason.String()
	case *refusedNotice:
		name := "<nil>"
		if n.req.Message != nil {
			name = n.req.Message.Method()
		}
		return "refused:" + name
	case *Anomaly:
		return "anomaly:" + n.Kind.String()
	}
	return fmt.Sprintf("%T", n)
}

// checkInvariants asserts what must hold after every step.
func checkInvariants(t testing.TB, s sessionView, out Output) {
	t.Helper()
	_, _, outstanding := s.Outstanding()
	if (s.Phase() == PhaseAwaitingResponse) != outstanding {
		t.Fatalf("phase %s with outstanding=%t", s.Phase(), outstanding)
	}
	if out.End == s.Phase().Live() {
		t.Fatalf("End=%t in phase %s", out.End, s.Phase())
	}
	if out.Turn != (s.Phase() == PhaseACSTurn) {
		t.Fatalf("Turn=%t in phase %s", out.Turn, s.Phase())
	}
	if out.Turn && out.Reply != nil {
		t.Fatalf("Turn with a reply %s", out.Reply.Body.Method())
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
func stateJSON(t testing.TB, s sessionView) string {
	t.Helper()
	b, err := json.Marshal(s.State())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
