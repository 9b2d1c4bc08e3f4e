package cwmp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The session state machine: one CWMP session seen from the ACS, fed the
// CPE's HTTP POSTs in order, answering each with the ACS's HTTP response
// (docs/protocol.md §4.3). It does no I/O: the gateway decodes and encodes, the session
// worker chooses the ACS requests and acts on the Notices each step returns.
//
// Design: when the protocol lets the ACS speak (after the CPE's empty POST,
// and after each response or fault), Step hands the turn back to its caller
// (Output.Turn, PhaseACSTurn) together with what the CPE's message brought
// (the answer to the previous request among the Notices); the caller then
// sends its next request with Send, or ends its part with Finish, whose
// Output is the reply. So whatever chooses the requests sees every answer
// before it chooses the next one, with no second copy of the matching rules
// outside the state machine, and may do I/O in between. The Session holds
// no queue of pending requests: a checkpoint keeps only what the protocol
// needs (phase, negotiated version, the single outstanding request, the ID
// counter, the hold flags), and the caller checkpoints its own queue.

// DefaultSessionTimeout is the idle time after which a session whose CPE
// sent no SessionTimeout header should be considered dead (docs/protocol.md §3: about
// 30 s, the common CPE default).
const DefaultSessionTimeout = 30 * time.Second

// maxRetransmits bounds how often the outstanding request is sent again when
// the CPE answers it with something else (an empty POST, a stray response)
// or with fault 8005 (Retry request). A CPE that lost the HTTP response
// carrying the request recovers after one resend; one that keeps answering
// with something else is not going to answer, and the session is ended
// rather than looping until the timeout. One bound per request covers both
// causes, so mixing them does not buy a CPE more resends.
const maxRetransmits = 2

// Phase is where a session stands in the exchange of docs/protocol.md §4.3.
type Phase uint8

const (
	// PhaseNew: no Inform yet. Only an Inform starts the session.
	PhaseNew Phase = iota
	// PhaseCPERequests: the InformResponse went out; the CPE sends its own
	// requests until its empty POST.
	PhaseCPERequests
	// PhaseAwaitingResponse: the ACS sent a request and waits for its
	// response or fault. Exactly one request is outstanding in this phase and
	// in no other (MaxEnvelopes 1).
	PhaseAwaitingResponse
	// PhaseEnded: the session is over. Like PhaseNew, only an Inform starts
	// a new one; a stray empty POST gets a 204.
	PhaseEnded
	// PhaseACSTurn: the CPE's message gave the ACS the turn (Output.Turn);
	// the caller answers with Send or Finish before the next Step. It
	// comes last so that the older phases keep their numbers.
	PhaseACSTurn
)

var phaseNames = [...]string{"new", "cpe-requests", "awaiting-response", "ended", "acs-turn"}

// String returns the phase's name as used in checkpoints.
func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "phase(" + strconv.Itoa(int(p)) + ")"
}

// MarshalText implements encoding.TextMarshaler, so checkpoints name phases.
func (p Phase) MarshalText() ([]byte, error) {
	if int(p) >= len(phaseNames) {
		return nil, fmt.Errorf("marshal session phase: unknown phase %d", int(p))
	}
	return []byte(phaseNames[p]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Phase) UnmarshalText(b []byte) error {
	for i, name := range phaseNames {
		if string(b) == name {
			*p = Phase(i)
			return nil
		}
	}
	return fmt.Errorf("unmarshal session phase: unknown phase %q", b)
}

// Live reports whether a session is in progress in this phase.
func (p Phase) Live() bool {
	return p == PhaseCPERequests || p == PhaseAwaitingResponse || p == PhaseACSTurn
}

// Request is an ACS request the caller hands to Send.
type Request struct {
	// Message is the RPC to send: one of the CPE methods of docs/protocol.md §5.1
	// (*GetParameterValues, *Download, ...).
	Message Message
	// Key is the caller's opaque handle for the request (a task ID). The
	// session stores it with the outstanding request, checkpoints it, and
	// hands it back with the response, fault or abandonment.
	Key string
	// HoldRequests sends this request with HoldRequests=true, so the CPE
	// stays barred from sending its own requests. A request without it
	// lifts a hold that an earlier envelope set.
	HoldRequests bool
}

// HoldDecider decides whether an InformResponse goes out with
// HoldRequests=true, e.g. to run the ACS's requests before the CPE's
// TransferComplete (SetHoldDecider). The session asks once per Inform,
// inside Step, after recording the device and events, so the decision can
// depend on them. HoldRequests must not call the session's other methods
// than its getters.
type HoldDecider interface {
	HoldRequests(s *Session) bool
}

// Output is the result of one Step.
type Output struct {
	// Reply is the envelope to send with HTTP 200. Nil means an empty HTTP
	// 204 response, unless Notices hold an AnomalyNoSession: then the
	// message belongs to no session and gets an HTTP error without a body.
	Reply *Envelope
	// Notices is what happened, in order, that the caller must act on.
	Notices []Notice
	// End reports that no session is live once Reply is sent: the caller
	// can flush what the session learnt and forget it. A 204 with End false
	// happens only after a hold (see Session).
	End bool
	// Turn reports that the ACS may now send a request: the CPE's message
	// was its empty POST, or answered the outstanding request (a
	// RequestDone among Notices), or was a stray answer taken as such. The
	// session is in PhaseACSTurn and Reply is nil: the caller acts on the
	// Notices, then calls Send with its next request or Finish, and sends
	// the reply of that call's Output.
	Turn bool
}

// Notice is one thing that happened during a Step: *SessionStarted,
// *CPERequest, *RequestDone, *RequestAbandoned or *Anomaly.
type Notice interface{ notice() }

// SessionStarted reports an accepted Inform: the session has begun.
type SessionStarted struct {
	// ID is the Inform's cwmp:ID ("" when it had none).
	ID     string
	Inform *Inform
	// Version, Namespace and UseCWMPVersion are the negotiated outcome.
	Negotiation Negotiation
	// HoldRequests reports that the InformResponse carried HoldRequests=true.
	HoldRequests bool
	// Replaced reports that this Inform arrived while an earlier session was
	// live: the CPE abandoned that session (timeout, reboot, retransmission)
	// and this is a new one. Any request outstanding in the old session was
	// reported as a RequestAbandoned just before.
	Replaced bool
}

// CPERequest reports a CPE-originated request the session answered:
// *TransferComplete, *AutonomousTransferComplete, *RequestDownload,
// *DUStateChangeComplete, *AutonomousDUStateChangeComplete, *Kicked or
// *GetRPCMethods. The reply acknowledges it to the CPE, so the caller should
// record it before sending the reply (and answer with FaultEnvelope and fault
// 8005 instead if it cannot).
type CPERequest struct {
	ID      string
	Message Message
}

// RequestDone reports the CPE's answer to an ACS request: exactly one of
// Response and Fault is set.
type RequestDone struct {
	// ID is the cwmp:ID the session gave the request.
	ID      string
	Request Request
	// Response is the matching "...Response" message.
	Response Message
	// Fault is the CPE's fault (9000 series, with SetParameterValuesFaults
	// for SetParameterValues). A fault 8005 is one only when the request's
	// resends are spent; before that it is a RequestRetried.
	Fault *Fault
	Matched
}

// Matched says how a CPE's answer was matched to the outstanding request
// when its cwmp:ID did not do it (docs/protocol.md §3, ID).
type Matched struct {
	// MissingID reports that the CPE's answer carried no cwmp:ID and was
	// matched to the one outstanding request by method alone.
	MissingID bool
	// ForeignID is the cwmp:ID of an answer that carried one the session
	// never gave (a CPE that numbers its answers itself) and was matched to
	// the one outstanding request by method alone; "" when the IDs agreed.
	ForeignID string
}

// ByMethod reports whether the answer was matched by method alone.
func (m Matched) ByMethod() bool { return m.MissingID || m.ForeignID != "" }

// RequestRetried reports that the CPE answered the outstanding request with
// fault 8005 (Retry request) and the session sent the same request again,
// with the same cwmp:ID, in its reply. The request is still outstanding: its
// outcome comes later as a RequestDone or RequestAbandoned. Once the resends
// are spent (maxRetransmits) an 8005 is reported as the request's
// RequestDone instead.
type RequestRetried struct {
	// ID is the cwmp:ID the session gave the request, sent again.
	ID      string
	Request Request
	Fault   *Fault
	Matched
}

// AbandonReason says why an outstanding request will get no answer.
type AbandonReason uint8

const (
	// AbandonNewInform: the CPE started a new session with an Inform.
	AbandonNewInform AbandonReason = iota + 1
	// AbandonUnanswered: the CPE sent something other than the answer
	// after maxRetransmits resends (of any cause, fault 8005 included); the
	// session ended.
	AbandonUnanswered
	// AbandonExpired: the caller expired the idle session (Expire).
	AbandonExpired
)

var abandonNames = [...]string{"", "new-inform", "unanswered", "expired"}

func (r AbandonReason) String() string {
	if int(r) < len(abandonNames) && r != 0 {
		return abandonNames[r]
	}
	return "abandon(" + strconv.Itoa(int(r)) + ")"
}

// RequestAbandoned reports an outstanding request the CPE will not answer in
// this session. The CPE may or may not have executed it.
type RequestAbandoned struct {
	ID      string
	Request Request
	Reason  AbandonReason
}

// Errors of Send and Finish. A request refused with ErrNotACSRequest or
// ErrMethodTooNew was not sent: the turn stays with the caller, who sends
// another request or finishes.
var (
	// ErrNotACSRequest: the message is not a method the ACS calls on the
	// CPE (docs/protocol.md §5.1).
	ErrNotACSRequest = errors.New("cwmp: not a request the ACS can send")
	// ErrMethodTooNew: the session's negotiated CWMP version does not
	// define the method.
	ErrMethodTooNew = errors.New("cwmp: method not defined in the session's CWMP version")
	// ErrNotACSTurn: Send or Finish outside PhaseACSTurn.
	ErrNotACSTurn = errors.New("cwmp: not the ACS's turn")
)

// AnomalyKind classifies a CPE message the session could not take as it came.
type AnomalyKind uint8

const (
	// AnomalyDecode: the body did not decode (the Err of the Anomaly); the
	// reply is fault 8002, or 8004 for an oversized or too deeply nested one.
	AnomalyDecode AnomalyKind = iota + 1
	// AnomalyNoSession: a message other than an Inform, a response or an
	// empty POST arrived with no live session; the reply is fault 8003.
	// A response or fault outside a session gets no reply (a fault cannot
	// answer a response) and this kind too: the caller answers it with an
	// HTTP error, not the 204 that would end a session (docs/protocol.md
	// §4.3 rule 1).
	AnomalyNoSession
	// AnomalyUnsupportedMethod: the CPE sent a method the ACS does not
	// implement (unknown, vendor, or a CPE-side method such as
	// GetParameterValues); the reply is fault 8000.
	AnomalyUnsupportedMethod
	// AnomalyInvalidInform: an Inform with no usable device identity; the
	// reply is fault 8003.
	AnomalyInvalidInform
	// AnomalyVersionIncompatible: version negotiation failed; the reply is
	// fault 8006, or 8001 to an Inform in cwmp-1-0/cwmp-1-1, whose schemas
	// have no 8006.
	AnomalyVersionIncompatible
	// AnomalyHeld: a CPE request arrived while HoldRequests was in force;
	// the reply is fault 8001 and the request is not reported.
	AnomalyHeld
	// AnomalyStrayResponse: a response or fault that does not answer the
	// outstanding request (wrong cwmp:ID, wrong method, or none outstanding).
	AnomalyStrayResponse
	// AnomalyNoResponse: an empty POST while a request was outstanding.
	AnomalyNoResponse
)

var anomalyNames = [...]string{"", "decode", "no-session", "unsupported-method",
	"invalid-inform", "version-incompatible", "held", "stray-response", "no-response"}

func (k AnomalyKind) String() string {
	if int(k) < len(anomalyNames) && k != 0 {
		return anomalyNames[k]
	}
	return "anomaly(" + strconv.Itoa(int(k)) + ")"
}

// Anomaly reports a CPE message that broke the protocol or could not be
// used, for logs and metrics; the reply already handles it.
type Anomaly struct {
	Kind AnomalyKind
	// ID and Method describe the offending message ("" when unknown).
	ID     string
	Method string
	// Err details the decode failure or negotiation error, when there is one.
	Err error
}

func (*SessionStarted) notice()   {}
func (*CPERequest) notice()       {}
func (*RequestDone) notice()      {}
func (*RequestRetried) notice()   {}
func (*RequestAbandoned) notice() {}
func (*Anomaly) notice()          {}

// Session is the state machine of one CWMP session. It is not safe for
// concurrent use; a session's messages arrive one at a time anyway.
//
// Rules it applies beyond the plain flow of docs/protocol.md §4.3, and why:
//
//   - Only an Inform starts a session. Any other request arriving with no
//     live session gets fault 8003 (Invalid arguments, a Client fault): the
//     message is well-formed but invalid in this position, which is what
//     GenieACS says with its 400 "Invalid session". Not 8005, which would make
//     the CPE resend the same request in a loop. A response or fault with no
//     session gets no reply, since a fault cannot answer a response, and an
//     AnomalyNoSession the caller turns into an HTTP error; a stray empty
//     POST a 204 (docs/protocol.md §4.1, §4.3 rule 1).
//   - Malformed input (ErrMalformed, ErrNotEnvelope, anything not classified)
//     gets fault 8002 (Internal error) without a cwmp:ID: decoding accepts
//     every variant real CPEs are known to send, so a body it cannot read is
//     as likely a gap on our side as a CPE bug, and the ACS cannot claim the
//     arguments were invalid when it could not read them. ErrTooLarge and
//     ErrTooDeep get 8004 (Resources exceeded): the ACS's limits refused it.
//     The phase does not change; the CPE may resend. ErrEmpty is an empty
//     POST.
//   - Version negotiation (NegotiateVersion) failing gets 8006; to an
//     Inform in cwmp-1-0 or cwmp-1-1, whose schemas stop at 8005, 8001
//     (Request denied) instead, so the reply still validates.
//   - An Inform whose DeviceId identifies no device (CheckDeviceID: no
//     DeviceId, no OUI, an overlong field) gets 8003; an empty
//     SerialNumber (MikroTik CHR), an empty ProductClass, an OUI that is
//     not six hex digits and missing parameters are accepted
//     (docs/protocol.md §5.3).
//   - Methods the ACS does not implement (Unknown, vendor methods, CPE-side
//     methods such as GetParameterValues sent by the CPE, ACS-side responses
//     such as InformResponse) get fault 8000 with the request's cwmp:ID.
//   - While HoldRequests is in force a CPE request gets fault 8001 (Request
//     denied): the request may be fine, the ACS just does not take it now;
//     the CPE keeps the request and sends it later. The fault envelope keeps
//     HoldRequests=true, since an envelope without it would lift the hold.
//   - A response or fault matches the outstanding request when its cwmp:ID
//     equals the request's (surrounding white space ignored) or is missing or
//     empty, and its method is the request's response or Fault. Anything else
//     (a wrong ID, most likely a retransmitted answer to an earlier request,
//     or the wrong method) is not attributed to the request: the request is
//     sent again with the same ID, as it is after an empty POST that should
//     have been the answer, at most maxRetransmits times; then the request
//     is abandoned and the session ends with 204. A response or fault when
//     nothing is outstanding is taken as a sign that the CPE thinks the ACS's
//     turn has come, and is answered like an empty POST.
//   - A fault 8005 (Retry request) that matches the outstanding request is
//     not its outcome: 8005 says the request was not carried out and should
//     come again (docs/protocol.md §7.1), so the session sends it again at
//     once, same body and same cwmp:ID, and reports RequestRetried. The
//     same ID tells the CPE that this is the request it asked for again,
//     not a new one, as with the other resends. The resends share
//     maxRetransmits with those for stray answers; when they are spent the
//     8005 is reported as the request's RequestDone. 8005 is an ACS fault
//     code a CPE has no business sending, but its one meaning is clear.
//     Faults the ACS sends to CPE requests are not involved.
//   - A CPE request arriving (not held) while an ACS request is outstanding
//     is answered and reported; the outstanding request stays outstanding.
//     A CPE request of a method newer than the session's version (an
//     AutonomousTransferComplete in a 1.0 session) gets 8000: the
//     GetRPCMethodsResponse of that version does not list it, and its
//     response does not exist in the session's namespace.
//   - HoldRequests and the end of the session: when the CPE's empty POST
//     arrived while it was held, it may still owe requests it was barred from
//     sending; those announced by the Inform's events (5 KICKED, 7 TRANSFER
//     COMPLETE, 9 REQUEST DOWNLOAD, 10/11/12) and not yet received are
//     tracked. When the caller then Finishes, the 204 does not end the
//     session: the phase returns to PhaseCPERequests (End false) and the CPE,
//     whose last POST was not empty, sends them, then a new empty POST, and
//     the turn comes back. With nothing owed the 204 ends the session.
//   - A second Inform in a live session starts a new session in the same
//     Session: the old one is abandoned (SessionStarted.Replaced, plus a
//     RequestAbandoned for its outstanding request). If that Inform is
//     refused (8003, 8006) the old session ends all the same, because the
//     CPE has left it.
//   - ACS request IDs are "<session id>.<n>" with n counting up for the life
//     of the Session, across new Informs and checkpoints, so they are unique
//     within a session and never reused after a restore.
type Session struct {
	hold HoldDecider
	st   State
}

// NewSession returns a session in PhaseNew. id should be unique per session
// (the gateway's session cookie); it prefixes the cwmp:IDs of ACS requests,
// which makes them unique across sessions in logs too.
func NewSession(id string) *Session {
	return &Session{st: State{Format: StateFormat, SessionID: id, Phase: PhaseNew}}
}

// SetHoldDecider sets what decides HoldRequests in InformResponses; without
// one they never hold. It is not part of the checkpoint: set it again after
// a restore.
func (s *Session) SetHoldDecider(h HoldDecider) { s.hold = h }

// ID returns the session ID given to NewSession.
func (s *Session) ID() string { return s.st.SessionID }

// Phase returns the current phase.
func (s *Session) Phase() Phase { return s.st.Phase }

// Version returns the negotiated CWMP version (meaningful once an Inform
// was accepted).
func (s *Session) Version() Version { return s.st.Version }

// Namespace returns the exact cwmp namespace URI of the session's envelopes.
func (s *Session) Namespace() string { return s.st.Namespace }

// UseCWMPVersion returns the UseCWMPVersion value sent in the
// InformResponse, "" when none was sent.
func (s *Session) UseCWMPVersion() string { return s.st.UseCWMPVersion }

// DeviceID returns the DeviceId of the session's Inform.
func (s *Session) DeviceID() DeviceID { return s.st.DeviceID }

// Events returns the events of the session's Inform. The slice is shared;
// do not modify it.
func (s *Session) Events() []Event { return s.st.Events }

// HasEvent reports whether the Inform carried an event with this code,
// compared by numeric prefix for standard codes ("7 TRANSFER COMPLETE"
// matches "7 TRANSFER COMPLETE" and "7 Transfer Complete") and exactly for
// M and vendor events (docs/protocol.md §6.1).
func (s *Session) HasEvent(code string) bool {
	want := eventKey(code)
	for _, e := range s.st.Events {
		if eventKey(e.Code) == want {
			return true
		}
	}
	return false
}

// Held reports whether the last envelope the ACS sent carried
// HoldRequests=true.
func (s *Session) Held() bool { return s.st.Held }

// SessionTimeout returns how long the session may stay idle: the CPE's
// SessionTimeout header when it sent one, DefaultSessionTimeout otherwise.
// The caller expires idle sessions with Expire.
func (s *Session) SessionTimeout() time.Duration {
	if s.st.SessionTimeout > 0 {
		return time.Duration(s.st.SessionTimeout) * time.Second
	}
	return DefaultSessionTimeout
}

// Outstanding returns the request awaiting the CPE's answer, with the
// cwmp:ID it was sent with; ok is false when none is.
func (s *Session) Outstanding() (id string, req Request, ok bool) {
	if o := s.st.Outstanding; o != nil {
		return o.ID, o.Request, true
	}
	return "", Request{}, false
}

// Expire ends the session because the caller saw it idle for longer than
// SessionTimeout (or is shutting down): an outstanding request is reported
// abandoned. Expiring a session that is not live does nothing.
func (s *Session) Expire() []Notice {
	if !s.st.Phase.Live() {
		return nil
	}
	var notices []Notice
	if o := s.st.Outstanding; o != nil {
		notices = append(notices, &RequestAbandoned{ID: o.ID, Request: o.Request, Reason: AbandonExpired})
	}
	s.endSession()
	return notices
}

// FaultEnvelope builds a fault reply to the CPE request req in the session's
// namespace and framing, with req's cwmp:ID and the current hold, without
// changing the session. A worker that cannot record a CPERequest sends it
// with FaultRetryRequest (8005) instead of the Step's reply, after restoring
// the checkpoint taken before the Step, so the CPE resends the request.
func (s *Session) FaultEnvelope(req *Envelope, code FaultCode) *Envelope {
	return s.faultReply(req, code)
}

// Step feeds the session the next CPE POST: the result of Decode on its body
// (env nil and err nil, or err ErrEmpty, for an empty POST) and returns the
// ACS's reply and what happened. When the Output has Turn set, the reply
// comes from the Send or Finish that must follow; calling Step before that
// is a bug in the caller, and Step panics.
func (s *Session) Step(env *Envelope, decodeErr error) Output {
	if s.st.Phase == PhaseACSTurn {
		panic("cwmp: Session.Step during the ACS's turn: call Send or Finish first")
	}
	if decodeErr != nil && !errors.Is(decodeErr, ErrEmpty) {
		return s.decodeFailure(decodeErr)
	}
	if env == nil || decodeErr != nil || env.Body == nil {
		// An envelope with an empty SOAP Body carries nothing either; treat
		// it like the empty POST it stands for.
		return s.emptyPOST(env)
	}
	if s.st.Phase.Live() {
		s.st.XMLDeclaration = env.XMLDeclaration
	}
	switch m := env.Body.(type) {
	case *Inform:
		return s.inform(env, m)
	case *Fault, *VendorResponse:
		return s.answer(env)
	}
	method := env.Body.Method()
	switch {
	case isCPERequest(method):
		return s.cpeRequest(env)
	case isResponseToACS(method):
		return s.answer(env)
	default:
		return s.unsupported(env)
	}
}

// ---- handlers

func (s *Session) decodeFailure(err error) Output {
	code := FaultInternalError
	if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrTooDeep) {
		code = FaultResourcesExceeded
	}
	out := Output{Notices: []Notice{&Anomaly{Kind: AnomalyDecode, Err: err}}}
	out.Reply = s.faultReply(nil, code)
	out.End = !s.st.Phase.Live()
	return out
}

func (s *Session) emptyPOST(env *Envelope) Output {
	if env != nil && s.st.Phase.Live() {
		s.st.XMLDeclaration = env.XMLDeclaration
	}
	switch s.st.Phase {
	case PhaseCPERequests:
		s.st.HeldEmptyPOST = s.st.Held
		return s.acsTurn(nil)
	case PhaseAwaitingResponse:
		notices := []Notice{&Anomaly{Kind: AnomalyNoResponse}}
		return s.retransmit(notices)
	default:
		return Output{End: true}
	}
}

func (s *Session) inform(env *Envelope, m *Inform) Output {
	var notices []Notice
	wasLive := s.st.Phase.Live()
	if o := s.st.Outstanding; wasLive && o != nil {
		notices = append(notices, &RequestAbandoned{ID: o.ID, Request: o.Request, Reason: AbandonNewInform})
	}
	id, _ := requestID(env)
	refuse := func(kind AnomalyKind, code FaultCode, err error) Output {
		if wasLive {
			s.endSession()
		}
		notices = append(notices, &Anomaly{Kind: kind, ID: id, Method: "Inform", Err: err})
		reply := newEnvelope(foreignNamespace(env), env.XMLDeclaration, NewFault(code))
		setReplyID(reply, env)
		return Output{Reply: reply, Notices: notices, End: !s.st.Phase.Live()}
	}
	if err := CheckDeviceID(m.DeviceID); err != nil {
		return refuse(AnomalyInvalidInform, FaultInvalidArguments, err)
	}
	neg, err := NegotiateVersion(env)
	if err != nil {
		code := FaultACSVersionIncompatible
		if ceiling, _ := namespaceCeiling(foreignNamespace(env)); ceiling < V1_4 {
			// 8006 exists only from CWMP 1.4 on and cannot be written in
			// an older namespace: the closest code those schemas know.
			code = FaultRequestDenied
		}
		return refuse(AnomalyVersionIncompatible, code, err)
	}

	// A new session: keep only what outlives sessions (identity of the
	// Session, the ID counter).
	s.st = State{
		Format:         StateFormat,
		SessionID:      s.st.SessionID,
		Counter:        s.st.Counter,
		Phase:          PhaseCPERequests,
		Version:        neg.Version,
		Namespace:      neg.Namespace,
		UseCWMPVersion: neg.UseCWMPVersion,
		XMLDeclaration: env.XMLDeclaration,
		DeviceID:       m.DeviceID,
		Events:         m.Events,
		SessionTimeout: env.Header.SessionTimeout,
		Owed:           owedRequests(m.Events),
	}
	if s.hold != nil && s.hold.HoldRequests(s) {
		s.st.Held = true
	}
	reply := s.envelope(&InformResponse{MaxEnvelopes: 1})
	setReplyID(reply, env)
	reply.Header.UseCWMPVersion = neg.UseCWMPVersion
	notices = append(notices, &SessionStarted{ID: id, Inform: m, Negotiation: neg,
		HoldRequests: s.st.Held, Replaced: wasLive})
	return Output{Reply: reply, Notices: notices}
}

func (s *Session) cpeRequest(env *Envelope) Output {
	id, _ := requestID(env)
	method := env.Body.Method()
	if !s.st.Phase.Live() {
		return s.noSession(env, id, method)
	}
	if Since(method) > s.st.Version {
		// Not in the session's GetRPCMethodsResponse, and its response
		// could not be written in the session's namespace.
		return s.unsupported(env)
	}
	if s.st.Held {
		return Output{
			Reply:   s.faultReply(env, FaultRequestDenied),
			Notices: []Notice{&Anomaly{Kind: AnomalyHeld, ID: id, Method: method}},
		}
	}
	var resp Message
	switch m := env.Body.(type) {
	case *GetRPCMethods:
		resp = &GetRPCMethodsResponse{MethodList: ACSMethods(s.st.Version)}
	case *TransferComplete:
		resp = &TransferCompleteResponse{}
	case *AutonomousTransferComplete:
		resp = &AutonomousTransferCompleteResponse{}
	case *RequestDownload:
		resp = &RequestDownloadResponse{}
	case *DUStateChangeComplete:
		resp = &DUStateChangeCompleteResponse{}
	case *AutonomousDUStateChangeComplete:
		resp = &AutonomousDUStateChangeCompleteResponse{}
	case *Kicked:
		// The legacy Kicked flow asks where to send the user's browser next;
		// the CPE proposes Next, and FleetACS has no LAN-side web flow of its
		// own that would pick another page.
		resp = &KickedResponse{NextURL: m.Next}
	default:
		// isCPERequest and this switch list the same methods; a body of an
		// unexpected Go type under such a name is not one FleetACS handles.
		return s.unsupported(env)
	}
	s.st.Owed = removeString(s.st.Owed, method)
	reply := s.envelope(resp)
	setReplyID(reply, env)
	return Output{Reply: reply, Notices: []Notice{&CPERequest{ID: id, Message: env.Body}}}
}

func (s *Session) answer(env *Envelope) Output {
	id, hasID := requestID(env)
	method := env.Body.Method()
	switch s.st.Phase {
	case PhaseAwaitingResponse:
		o := s.st.Outstanding
		// An answer must carry its request's cwmp:ID, but CPEs exist that
		// number their answers themselves (docs/protocol.md §3): an ID
		// this session never gave is matched by method, like a missing
		// one. One of the session's own other IDs is a late or repeated
		// answer to an earlier request, never taken for this one's.
		foreign := hasID && id != o.ID && !s.ownID(id)
		idOK := !hasID || id == o.ID || foreign
		methodOK := method == "Fault" || method == o.Request.Message.Method()+"Response"
		if !idOK || !methodOK {
			return s.retransmit([]Notice{&Anomaly{Kind: AnomalyStrayResponse, ID: id, Method: method}})
		}
		matched := Matched{MissingID: !hasID}
		if foreign {
			matched.ForeignID = id
		}
		f, isFault := env.Body.(*Fault)
		if isFault && f.Code == FaultRetryRequest && o.Retransmits < maxRetransmits {
			o.Retransmits++
			return Output{Reply: s.requestEnvelope(), Notices: []Notice{&RequestRetried{
				ID: o.ID, Request: o.Request, Fault: f, Matched: matched}}}
		}
		done := &RequestDone{ID: o.ID, Request: o.Request, Matched: matched}
		if isFault {
			done.Fault = f
		} else {
			done.Response = env.Body
		}
		s.st.Outstanding = nil
		s.st.Phase = PhaseCPERequests // transient: acsTurn moves on
		return s.acsTurn([]Notice{done})
	case PhaseCPERequests:
		s.st.HeldEmptyPOST = s.st.Held
		return s.acsTurn([]Notice{&Anomaly{Kind: AnomalyStrayResponse, ID: id, Method: method}})
	default:
		return Output{End: true, Notices: []Notice{&Anomaly{Kind: AnomalyNoSession, ID: id, Method: method}}}
	}
}

func (s *Session) unsupported(env *Envelope) Output {
	id, _ := requestID(env)
	method := env.Body.Method()
	if !s.st.Phase.Live() {
		return s.noSession(env, id, method)
	}
	return Output{
		Reply:   s.faultReply(env, FaultMethodNotSupported),
		Notices: []Notice{&Anomaly{Kind: AnomalyUnsupportedMethod, ID: id, Method: method}},
	}
}

func (s *Session) noSession(env *Envelope, id, method string) Output {
	reply := newEnvelope(foreignNamespace(env), env.XMLDeclaration, NewFault(FaultInvalidArguments))
	setReplyID(reply, env)
	return Output{Reply: reply, End: true,
		Notices: []Notice{&Anomaly{Kind: AnomalyNoSession, ID: id, Method: method}}}
}

// acsTurn hands the turn to the caller, who answers with Send or Finish.
func (s *Session) acsTurn(notices []Notice) Output {
	s.st.Phase = PhaseACSTurn
	return Output{Notices: notices, Turn: true}
}

// Send sends req as the ACS's next request, in PhaseACSTurn: the Output's
// Reply carries it, with the next cwmp:ID, and the session awaits its
// answer. A request the session cannot send (ErrNotACSRequest,
// ErrMethodTooNew) is refused without changing anything: the turn stays
// with the caller. Outside PhaseACSTurn Send fails with ErrNotACSTurn.
func (s *Session) Send(req Request) (Output, error) {
	if s.st.Phase != PhaseACSTurn {
		return Output{}, fmt.Errorf("send request in phase %s: %w", s.st.Phase, ErrNotACSTurn)
	}
	if err := s.sendable(req); err != nil {
		return Output{}, err
	}
	s.st.Counter++
	id := s.requestIDFor(s.st.Counter)
	s.st.Outstanding = &Outstanding{ID: id, Request: req}
	s.st.Phase = PhaseAwaitingResponse
	s.st.Held = req.HoldRequests
	return Output{Reply: s.requestEnvelope()}, nil
}

// Finish ends the ACS's turn without a request: the ACS has nothing more
// to ask. The reply is an empty 204, which normally ends the session;
// after a hold, while the CPE still owes requests it was barred from
// sending, the session goes on instead (see Session). Outside PhaseACSTurn
// Finish fails with ErrNotACSTurn.
func (s *Session) Finish() (Output, error) {
	if s.st.Phase != PhaseACSTurn {
		return Output{}, fmt.Errorf("finish in phase %s: %w", s.st.Phase, ErrNotACSTurn)
	}
	if s.st.HeldEmptyPOST && len(s.st.Owed) > 0 {
		// The CPE went quiet only because it was held: let it send what it
		// owes. An empty response carries no HoldRequests, so the hold ends.
		s.st.Phase = PhaseCPERequests
		s.st.Held = false
		s.st.HeldEmptyPOST = false
		return Output{}, nil
	}
	s.endSession()
	return Output{End: true}, nil
}

// retransmit sends the outstanding request again, or gives up on it.
func (s *Session) retransmit(notices []Notice) Output {
	o := s.st.Outstanding
	if o.Retransmits >= maxRetransmits {
		notices = append(notices, &RequestAbandoned{ID: o.ID, Request: o.Request, Reason: AbandonUnanswered})
		s.endSession()
		return Output{Notices: notices, End: true}
	}
	o.Retransmits++
	return Output{Reply: s.requestEnvelope(), Notices: notices}
}

func (s *Session) endSession() {
	s.st.Phase = PhaseEnded
	s.st.Outstanding = nil
	s.st.Held = false
	s.st.HeldEmptyPOST = false
}

func (s *Session) sendable(req Request) error {
	if v, ok := req.Message.(*VendorRequest); ok {
		// Outside the schema, so no version bars it (docs/protocol.md §5.4).
		if err := CheckVendorRequest(v); err != nil {
			return fmt.Errorf("send vendor request: %w", errors.Join(err, ErrNotACSRequest))
		}
		return nil
	}
	if req.Message == nil || !isACSRequest(req.Message.Method()) {
		name := "<nil>"
		if req.Message != nil {
			name = req.Message.Method()
		}
		return fmt.Errorf("send %s: %w", name, ErrNotACSRequest)
	}
	if since := Since(req.Message.Method()); since > s.st.Version {
		return fmt.Errorf("send %s (since %s) in a CWMP %s session: %w",
			req.Message.Method(), since, s.st.Version, ErrMethodTooNew)
	}
	return nil
}

// ownID reports whether id has the form of the cwmp:IDs this session
// gives its requests (requestIDFor), whatever its number.
func (s *Session) ownID(id string) bool {
	n, ok := strings.CutPrefix(id, s.requestIDPrefix())
	if !ok || n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		if n[i] < '0' || n[i] > '9' {
			return false
		}
	}
	return true
}

// requestIDPrefix is what every cwmp:ID of the session's requests starts
// with: its session ID ("acs" without one) and a dot.
func (s *Session) requestIDPrefix() string {
	if s.st.SessionID == "" {
		return "acs."
	}
	return s.st.SessionID + "."
}

func (s *Session) requestIDFor(n uint64) string {
	return s.requestIDPrefix() + strconv.FormatUint(n, 10)
}

// ---- envelopes

// newEnvelope builds a reply outside a session's framing. Its version is the
// newest the namespace carries (1.4 for cwmp-1-2 and up): a fault's schema
// only grows with versions, and 8006 exists only from 1.4 on.
func newEnvelope(ns string, xmlDecl bool, body Message) *Envelope {
	v, ok := namespaceCeiling(ns)
	if !ok {
		ns, v = NS1_0, V1_0
	}
	return &Envelope{Namespace: ns, Version: v, XMLDeclaration: xmlDecl, Body: body}
}

// envelope builds a reply in the session's framing. It keeps the current
// hold: any ACS envelope without HoldRequests=true would lift it.
func (s *Session) envelope(body Message) *Envelope {
	env := &Envelope{Namespace: s.st.Namespace, Version: s.st.Version,
		XMLDeclaration: s.st.XMLDeclaration, Body: body}
	env.Header.HoldRequests = s.st.Held
	return env
}

func (s *Session) requestEnvelope() *Envelope {
	o := s.st.Outstanding
	env := s.envelope(o.Request.Message)
	env.Header.ID, env.Header.HasID = o.ID, true
	return env
}

// faultReply answers req (nil after a decode failure) with a fault: in the
// session's framing when a session is live, else in the CPE's own namespace
// (the oldest, cwmp-1-0, when even that is unknown: never newer than the CPE).
func (s *Session) faultReply(req *Envelope, code FaultCode) *Envelope {
	var env *Envelope
	if s.st.Phase.Live() {
		env = s.envelope(NewFault(code))
	} else if req != nil {
		env = newEnvelope(foreignNamespace(req), req.XMLDeclaration, NewFault(code))
	} else {
		env = newEnvelope(NS1_0, false, NewFault(code))
	}
	if req != nil {
		setReplyID(env, req)
	}
	return env
}

// foreignNamespace is the namespace to answer a message outside a session
// in: the CPE's own when FleetACS knows it, cwmp-1-2 for a future cwmp-1-N
// (older, so allowed), cwmp-1-0 for anything else (the oldest cannot be
// newer than what the CPE speaks).
func foreignNamespace(env *Envelope) string {
	ns := env.Namespace
	if ns == "" {
		if env.Version > MaxVersion {
			return NS1_0
		}
		return env.Version.Namespace()
	}
	if _, ok := VersionOfNamespace(ns); ok {
		return ns
	}
	if _, ok := namespaceCeiling(ns); ok {
		return NS1_2
	}
	return NS1_0
}

// requestID returns the message's cwmp:ID without surrounding white space;
// hasID is false when it is missing or empty (both mean "no ID", docs/protocol.md §3).
func requestID(env *Envelope) (id string, hasID bool) {
	if !env.Header.HasID {
		return "", false
	}
	id = strings.TrimSpace(env.Header.ID)
	return id, id != ""
}

// setReplyID echoes the request's cwmp:ID exactly as received.
func setReplyID(reply, req *Envelope) {
	if _, ok := requestID(req); ok {
		reply.Header.ID, reply.Header.HasID = req.Header.ID, true
	}
}

// ---- method classes

// acsRequestMethods are the methods the ACS calls on the CPE (docs/protocol.md §5.1).
var acsRequestMethods = map[string]bool{
	"GetRPCMethods": true, "SetParameterValues": true, "GetParameterValues": true,
	"GetParameterNames": true, "SetParameterAttributes": true, "GetParameterAttributes": true,
	"AddObject": true, "DeleteObject": true, "Download": true, "Reboot": true,
	"GetQueuedTransfers": true, "ScheduleInform": true, "SetVouchers": true,
	"GetOptions": true, "Upload": true, "FactoryReset": true, "GetAllQueuedTransfers": true,
	"ScheduleDownload": true, "CancelTransfer": true, "ChangeDUState": true,
}

// cpeRequestMethods are the methods the CPE calls on the ACS that the
// session answers itself (docs/protocol.md §5.2), Inform apart.
var cpeRequestMethods = map[string]bool{
	"GetRPCMethods": true, "TransferComplete": true, "AutonomousTransferComplete": true,
	"RequestDownload": true, "DUStateChangeComplete": true,
	"AutonomousDUStateChangeComplete": true, "Kicked": true,
}

func isACSRequest(method string) bool { return acsRequestMethods[method] }
func isCPERequest(method string) bool { return cpeRequestMethods[method] }

func isResponseToACS(method string) bool {
	req, ok := strings.CutSuffix(method, "Response")
	return ok && acsRequestMethods[req]
}

// ACSMethods lists the methods FleetACS implements as an ACS in a session
// of version v, as GetRPCMethodsResponse reports them: the baseline ones,
// AutonomousTransferComplete from 1.1, the DU state change ones from 1.2.
func ACSMethods(v Version) []string {
	list := []string{"Inform", "GetRPCMethods", "TransferComplete"}
	if v >= V1_1 {
		list = append(list, "AutonomousTransferComplete")
	}
	list = append(list, "RequestDownload")
	if v >= V1_2 {
		list = append(list, "DUStateChangeComplete", "AutonomousDUStateChangeComplete")
	}
	return append(list, "Kicked")
}

// ---- events

// eventKey reduces an event code to what identifies it: the number of a
// standard event ("7 TRANSFER COMPLETE" -> "7"), the whole trimmed code of
// M and vendor events.
func eventKey(code string) string {
	code = strings.TrimSpace(code)
	num, _, _ := strings.Cut(code, " ")
	if num != "" && strings.Trim(num, "0123456789") == "" {
		return num
	}
	return code
}

// owedByEvent maps the events that announce a CPE request to that request.
var owedByEvent = map[string]string{
	"5":  "Kicked",
	"7":  "TransferComplete",
	"9":  "RequestDownload",
	"10": "AutonomousTransferComplete",
	"11": "DUStateChangeComplete",
	"12": "AutonomousDUStateChangeComplete",
}

// owedRequests lists, in event order without repeats, the CPE requests the
// Inform's events announce.
func owedRequests(events []Event) []string {
	var owed []string
	for _, e := range events {
		if m, ok := owedByEvent[eventKey(e.Code)]; ok && !containsString(owed, m) {
			owed = append(owed, m)
		}
	}
	return owed
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// removeString returns list without s, copying so that a slice shared with a
// checkpoint is never modified.
func removeString(list []string, s string) []string {
	if !containsString(list, s) {
		return list
	}
	out := make([]string, 0, len(list)-1)
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// IsACSMethod reports whether method is one of the methods an ACS calls
// on a CPE in CWMP 1.0 to 1.4 (docs/protocol.md §5.1); vendor methods are
// not.
func IsACSMethod(method string) bool { return acsRequestMethods[method] }
