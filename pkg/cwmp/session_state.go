package cwmp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// StateFormat is the version of the checkpoint layout State describes.
// Restore refuses other formats rather than guess: a worker running older
// code must not resume a session it would misread.
//
// The hand-back of the ACS's turn (PhaseACSTurn) kept format 1: the layout
// did not change, so checkpoints written before it restore as they are. A
// checkpoint taken during the turn names the phase "acs-turn", which older
// code refuses as an unknown phase; callers resolve the turn within the
// exchange and save after it, so they never write one.
const StateFormat = 1

// ErrBadState means a checkpoint cannot be restored.
var ErrBadState = errors.New("cwmp: invalid session checkpoint")

// State is the complete state of a Session, the checkpoint a worker writes
// after every exchange so that another worker can resume the session (docs/design.md
// §2 step 4). It marshals to JSON with stable names; the outstanding request
// travels with its method name, so any Message can be restored.
//
// Messages inside are shared with the Session, not copied: treat them as
// immutable (the Session never modifies a message).
type State struct {
	Format    int    `json:"format"`
	SessionID string `json:"sessionId"`
	Phase     Phase  `json:"phase"`
	// Counter is the number of ACS requests sent over the Session's life;
	// the next request gets Counter+1.
	Counter        uint64   `json:"counter"`
	Version        Version  `json:"-"`
	Namespace      string   `json:"namespace,omitempty"`
	UseCWMPVersion string   `json:"useCWMPVersion,omitempty"`
	XMLDeclaration bool     `json:"xmlDeclaration,omitempty"`
	DeviceID       DeviceID `json:"deviceId"`
	Events         []Event  `json:"events,omitempty"`
	SessionTimeout uint32   `json:"sessionTimeout,omitempty"`
	// Held: the last ACS envelope carried HoldRequests=true.
	Held bool `json:"held,omitempty"`
	// HeldEmptyPOST: the CPE's latest empty POST arrived while it was held.
	HeldEmptyPOST bool `json:"heldEmptyPost,omitempty"`
	// Owed lists the CPE requests the Inform's events announced that have
	// not arrived yet.
	Owed        []string     `json:"owed,omitempty"`
	Outstanding *Outstanding `json:"outstanding,omitempty"`
}

// Outstanding is the ACS request awaiting the CPE's answer.
type Outstanding struct {
	ID      string  `json:"id"`
	Request Request `json:"request"`
	// Retransmits counts how often the request was sent again, after an
	// empty POST, a stray answer or a fault 8005 alike (maxRetransmits).
	Retransmits int `json:"retransmits,omitempty"`
}

// MarshalJSON implements json.Marshaler: AppendJSON's form. It adds the
// version as text ("cwmpVersion": "1.4"); Version has no text form of its
// own, and giving it one would change other encodings of it.
func (st State) MarshalJSON() ([]byte, error) { return st.AppendJSON(nil) }

// AppendJSON appends the state's JSON to b: the fields under their json
// tags, in declaration order, empty ones left out where the tag says
// omitempty, and "cwmpVersion" last. It is written by hand because
// workers checkpoint the state after every exchange: the outstanding
// request of a tree discovery names up to a hundred parameters, and
// encoding/json would reflect over them and then re-scan the nested JSON
// of each level (state, request, message) once more.
func (st State) AppendJSON(b []byte) ([]byte, error) {
	phase, err := st.Phase.MarshalText()
	if err != nil {
		return nil, err
	}
	b = append(b, `{"format":`...)
	b = strconv.AppendInt(b, int64(st.Format), 10)
	b = append(b, `,"sessionId":`...)
	b = appendJSONString(b, st.SessionID)
	b = append(b, `,"phase":`...)
	b = appendJSONString(b, string(phase))
	b = append(b, `,"counter":`...)
	b = strconv.AppendUint(b, st.Counter, 10)
	if st.Namespace != "" {
		b = append(b, `,"namespace":`...)
		b = appendJSONString(b, st.Namespace)
	}
	if st.UseCWMPVersion != "" {
		b = append(b, `,"useCWMPVersion":`...)
		b = appendJSONString(b, st.UseCWMPVersion)
	}
	if st.XMLDeclaration {
		b = append(b, `,"xmlDeclaration":true`...)
	}
	b = append(b, `,"deviceId":{"manufacturer":`...)
	b = appendJSONString(b, st.DeviceID.Manufacturer)
	b = append(b, `,"oui":`...)
	b = appendJSONString(b, st.DeviceID.OUI)
	b = append(b, `,"productClass":`...)
	b = appendJSONString(b, st.DeviceID.ProductClass)
	b = append(b, `,"serialNumber":`...)
	b = appendJSONString(b, st.DeviceID.SerialNumber)
	b = append(b, '}')
	if len(st.Events) > 0 {
		b = append(b, `,"events":[`...)
		for i, e := range st.Events {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"code":`...)
			b = appendJSONString(b, e.Code)
			b = append(b, `,"commandKey":`...)
			b = appendJSONString(b, e.CommandKey)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if st.SessionTimeout != 0 {
		b = append(b, `,"sessionTimeout":`...)
		b = strconv.AppendUint(b, uint64(st.SessionTimeout), 10)
	}
	if st.Held {
		b = append(b, `,"held":true`...)
	}
	if st.HeldEmptyPOST {
		b = append(b, `,"heldEmptyPost":true`...)
	}
	if len(st.Owed) > 0 {
		b = append(b, `,"owed":`...)
		b = appendJSONStrings(b, st.Owed)
	}
	if o := st.Outstanding; o != nil {
		b = append(b, `,"outstanding":{"id":`...)
		b = appendJSONString(b, o.ID)
		b = append(b, `,"request":`...)
		if b, err = o.Request.appendJSON(b); err != nil {
			return nil, err
		}
		if o.Retransmits != 0 {
			b = append(b, `,"retransmits":`...)
			b = strconv.AppendInt(b, int64(o.Retransmits), 10)
		}
		b = append(b, '}')
	}
	b = append(b, `,"cwmpVersion":`...)
	b = appendJSONString(b, st.Version.String())
	return append(b, '}'), nil
}

// AppendJSONString appends s as a JSON string, as encoding/json writes it
// (invalid UTF-8 becomes U+FFFD; <, > and & are left alone). Other
// packages that hand-write JSON in this package's manner (the session
// engine's checkpoint journal) use it rather than a copy of their own.
func AppendJSONString(b []byte, s string) []byte { return appendJSONString(b, s) }

// AppendJSONStrings appends a JSON array of strings; null for nil, as
// encoding/json writes a nil slice.
func AppendJSONStrings(b []byte, ss []string) []byte { return appendJSONStrings(b, ss) }

// appendJSONStrings appends a JSON array of strings; null for nil, as
// encoding/json writes a nil slice.
func appendJSONStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// UnmarshalJSON implements json.Unmarshaler.
func (st *State) UnmarshalJSON(data []byte) error {
	type plain State
	var aux struct {
		plain
		CWMPVersion string `json:"cwmpVersion"`
	}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	v, err := ParseVersion(aux.CWMPVersion)
	if err != nil {
		return fmt.Errorf("decode session state version: %w", err)
	}
	*st = State(aux.plain)
	st.Version = v
	return nil
}

// State returns a snapshot of the session's state. The snapshot does not
// change when the session moves on.
func (s *Session) State() State {
	st := s.st
	st.Events = append([]Event(nil), st.Events...)
	st.Owed = append([]string(nil), st.Owed...)
	if o := st.Outstanding; o != nil {
		cp := *o
		st.Outstanding = &cp
	}
	return st
}

// RestoreSession rebuilds a session from a checkpoint, after checking that
// the state is one a Session can be in. The session has no HoldDecider.
func RestoreSession(st State) (*Session, error) {
	if err := st.validate(); err != nil {
		return nil, err
	}
	s := &Session{}
	s.st = st
	s.st = s.State() // own copies of the slices
	return s, nil
}

func (st State) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("restore session %q: %s: %w", st.SessionID, fmt.Sprintf(format, args...), ErrBadState)
	}
	if st.Format != StateFormat {
		return bad("checkpoint format %d, want %d", st.Format, StateFormat)
	}
	if st.Phase > PhaseACSTurn {
		return bad("unknown phase %d", st.Phase)
	}
	if st.Version > MaxVersion {
		return bad("unknown CWMP version %d", st.Version)
	}
	if (st.Phase == PhaseAwaitingResponse) != (st.Outstanding != nil) {
		return bad("phase %s with outstanding request %t", st.Phase, st.Outstanding != nil)
	}
	if o := st.Outstanding; o != nil {
		if o.ID == "" || o.Request.Message == nil {
			return bad("outstanding request is not an ACS request")
		}
		if v, ok := o.Request.Message.(*VendorRequest); ok {
			if err := CheckVendorRequest(v); err != nil {
				return bad("outstanding vendor request: %v", err)
			}
		} else if !isACSRequest(o.Request.Message.Method()) {
			return bad("outstanding request is not an ACS request")
		}
		if o.Retransmits < 0 || o.Retransmits > maxRetransmits {
			return bad("outstanding request retransmitted %d times", o.Retransmits)
		}
	}
	if st.Phase.Live() {
		if _, ok := namespaceCeiling(st.Namespace); !ok {
			return bad("namespace %q", st.Namespace)
		}
	}
	for _, m := range st.Owed {
		if !isCPERequest(m) {
			return bad("owed request %q", m)
		}
	}
	return nil
}

// MarshalBinary implements encoding.BinaryMarshaler: the JSON form of State.
func (s *Session) MarshalBinary() ([]byte, error) {
	b, err := json.Marshal(s.State())
	if err != nil {
		return nil, fmt.Errorf("marshal session %q: %w", s.st.SessionID, err)
	}
	return b, nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler. It keeps the
// session's HoldDecider.
func (s *Session) UnmarshalBinary(data []byte) error {
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("unmarshal session: %w", errors.Join(err, ErrBadState))
	}
	r, err := RestoreSession(st)
	if err != nil {
		return err
	}
	r.hold = s.hold
	*s = *r
	return nil
}

// requestJSON is Request's JSON form: the method name tells which Go type
// the message decodes into.
type requestJSON struct {
	Method       string          `json:"method"`
	Message      json.RawMessage `json:"message"`
	Key          string          `json:"key,omitempty"`
	HoldRequests bool            `json:"holdRequests,omitempty"`
	// Vendor marks a *VendorRequest, whose method is its own name.
	Vendor bool `json:"vendor,omitempty"`
}

// MarshalJSON implements json.Marshaler.
func (r Request) MarshalJSON() ([]byte, error) { return r.appendJSON(nil) }

// appendJSON appends the request's JSON (requestJSON's form) to b. The
// messages of a tree discovery are written by hand, others with
// encoding/json.
func (r Request) appendJSON(b []byte) ([]byte, error) {
	if r.Message == nil {
		return nil, errors.New("marshal request: no message")
	}
	if v, ok := r.Message.(*VendorRequest); ok && v == nil {
		return nil, errors.New("marshal request: nil vendor request")
	}
	b = append(b, `{"method":`...)
	b = appendJSONString(b, r.Message.Method())
	if _, ok := r.Message.(*VendorRequest); ok {
		b = append(b, `,"vendor":true`...)
	}
	b = append(b, `,"message":`...)
	switch m := r.Message.(type) {
	case *GetParameterValues:
		b = append(b, `{"parameterNames":`...)
		b = appendJSONStrings(b, m.ParameterNames)
		b = append(b, '}')
	case *GetParameterNames:
		b = append(b, `{"parameterPath":`...)
		b = appendJSONString(b, m.ParameterPath)
		b = append(b, `,"nextLevel":`...)
		b = strconv.AppendBool(b, m.NextLevel)
		b = append(b, '}')
	default:
		body, err := json.Marshal(r.Message)
		if err != nil {
			return nil, fmt.Errorf("marshal %s request: %w", r.Message.Method(), err)
		}
		b = append(b, body...)
	}
	if r.Key != "" {
		b = append(b, `,"key":`...)
		b = appendJSONString(b, r.Key)
	}
	if r.HoldRequests {
		b = append(b, `,"holdRequests":true`...)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON implements json.Unmarshaler. Unknown fields in the message
// are an error: a checkpoint is written by FleetACS, so they mean a version
// mismatch, not a quirk to tolerate.
func (r *Request) UnmarshalJSON(data []byte) error {
	var aux requestJSON
	if err := json.Unmarshal(data, &aux); err != nil {
		return fmt.Errorf("unmarshal request: %w", err)
	}
	m, ok := NewMessage(aux.Method)
	if aux.Vendor {
		m, ok = &VendorRequest{}, true
	}
	if !ok {
		return fmt.Errorf("unmarshal request: unknown method %q", aux.Method)
	}
	dec := json.NewDecoder(bytes.NewReader(aux.Message))
	dec.DisallowUnknownFields()
	if err := dec.Decode(m); err != nil {
		return fmt.Errorf("unmarshal %s request: %w", aux.Method, err)
	}
	if v, ok := m.(*VendorRequest); ok && v.Name != aux.Method {
		return fmt.Errorf("unmarshal vendor request: name %q differs from method %q", v.Name, aux.Method)
	}
	*r = Request{Message: m, Key: aux.Key, HoldRequests: aux.HoldRequests}
	return nil
}
