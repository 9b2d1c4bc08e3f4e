package cwmp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"
)

// The JSON form of an envelope is what `fleetctl cwmp decode` prints and
// `fleetctl cwmp encode` reads. It is one object with these keys, always in
// this order:
//
//	cwmpVersion            "1.0".."1.4" (Envelope.Version), always present
//	namespace              the cwmp namespace URI, only when it is not the
//	                       version's standard one (e.g. a CPE's cwmp-1-4)
//	xmlDeclaration         true, only when set
//	id                     the cwmp:ID header; null when the header has no ID
//	                       (as MikroTik sends), always present
//	holdRequests           boolean, always present
//	noMoreRequests         true, only when set
//	sessionTimeout         seconds, only when non-zero
//	supportedCWMPVersions  only when non-empty
//	useCWMPVersion         only when non-empty
//	method                 the RPC element's local name, always present
//	unknown                true, only when the body is an *Unknown method
//	vendor                 true, only when the body is a *VendorRequest or
//	                       *VendorResponse (docs/protocol.md §5.4)
//	body                   the message, keyed by the json tags of its Go
//	                       type, always present
//
// Body keys follow the declaration order of the Go struct fields, and lists
// are written as [] when empty (never null), so that the output is stable and
// diffable. The form is lossless for everything an Envelope holds except
// text that is not valid UTF-8, which JSON cannot carry (it becomes U+FFFD).
//
// An *Unknown body needs the "unknown" marker: without it a method name that
// FleetACS does not implement is rejected, so that a typo in a hand-written
// request ("Infrom") is an error and not a vendor RPC.

// Top-level keys of the JSON envelope form.
const (
	jsonKeyVersion        = "cwmpVersion"
	jsonKeyNamespace      = "namespace"
	jsonKeyXMLDecl        = "xmlDeclaration"
	jsonKeyID             = "id"
	jsonKeyHoldRequests   = "holdRequests"
	jsonKeyNoMoreRequests = "noMoreRequests"
	jsonKeySessionTimeout = "sessionTimeout"
	jsonKeySupported      = "supportedCWMPVersions"
	jsonKeyUseVersion     = "useCWMPVersion"
	jsonKeyMethod         = "method"
	jsonKeyUnknown        = "unknown"
	jsonKeyVendor         = "vendor"
	jsonKeyBody           = "body"
)

// envelopeJSONKeys lists the top-level keys in output order; unknown-key
// errors use it to suggest a spelling.
var envelopeJSONKeys = []string{
	jsonKeyVersion, jsonKeyNamespace, jsonKeyXMLDecl, jsonKeyID,
	jsonKeyHoldRequests, jsonKeyNoMoreRequests, jsonKeySessionTimeout,
	jsonKeySupported, jsonKeyUseVersion, jsonKeyMethod, jsonKeyUnknown,
	jsonKeyVendor, jsonKeyBody,
}

// MarshalEnvelopeJSON renders env in its JSON form (see above), indented
// with two spaces, without a trailing newline.
func MarshalEnvelopeJSON(env *Envelope) ([]byte, error) {
	if env == nil {
		return nil, errors.New("marshal envelope JSON: nil envelope")
	}
	if env.Version > MaxVersion {
		return nil, fmt.Errorf("marshal envelope JSON: unsupported CWMP version %s", env.Version)
	}
	body, unknown, err := jsonBody(env.Body)
	if err != nil {
		return nil, fmt.Errorf("marshal envelope JSON: %w", err)
	}
	h := &env.Header
	w := &jsonWriter{buf: make([]byte, 0, 1024)}
	w.begin('{')
	w.key(jsonKeyVersion)
	w.str(env.Version.String())
	if env.Namespace != "" && env.Namespace != env.Version.Namespace() {
		w.key(jsonKeyNamespace)
		w.str(env.Namespace)
	}
	if env.XMLDeclaration {
		w.key(jsonKeyXMLDecl)
		w.raw("true")
	}
	w.key(jsonKeyID)
	// An ID set without HasID is still an ID: say so rather than drop it.
	if h.HasID || h.ID != "" {
		w.str(h.ID)
	} else {
		w.raw("null")
	}
	w.key(jsonKeyHoldRequests)
	w.boolean(h.HoldRequests)
	if h.NoMoreRequests {
		w.key(jsonKeyNoMoreRequests)
		w.raw("true")
	}
	if h.SessionTimeout != 0 {
		w.key(jsonKeySessionTimeout)
		w.uint(uint64(h.SessionTimeout))
	}
	if h.SupportedCWMPVersions != "" {
		w.key(jsonKeySupported)
		w.str(h.SupportedCWMPVersions)
	}
	if h.UseCWMPVersion != "" {
		w.key(jsonKeyUseVersion)
		w.str(h.UseCWMPVersion)
	}
	w.key(jsonKeyMethod)
	w.str(env.Body.Method())
	if unknown {
		w.key(jsonKeyUnknown)
		w.raw("true")
	}
	switch env.Body.(type) {
	case *VendorRequest, *VendorResponse:
		w.key(jsonKeyVendor)
		w.raw("true")
	}
	w.key(jsonKeyBody)
	if err := w.value(body, jsonKeyBody); err != nil {
		return nil, fmt.Errorf("marshal envelope JSON: %w", err)
	}
	w.end('}')
	return w.buf, nil
}

// jsonBody checks that m is a message the JSON form can carry back: a type
// the method registry builds for m.Method(), or an *Unknown. It returns the
// struct to render and whether m is an *Unknown.
func jsonBody(m Message) (reflect.Value, bool, error) {
	if m == nil {
		return reflect.Value{}, false, errors.New("nil body")
	}
	v := reflect.ValueOf(m)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}, false, fmt.Errorf("unsupported body %T: want a non-nil pointer to a message struct", m)
	}
	if u, ok := m.(*Unknown); ok {
		if u.Name == "" {
			return reflect.Value{}, false, errors.New("unknown method without a name")
		}
		return v.Elem(), true, nil
	}
	switch b := m.(type) {
	case *VendorRequest:
		if !isVendorMethod(b.Name) {
			return reflect.Value{}, false, fmt.Errorf("vendor request %q is not a vendor method name", b.Name)
		}
		return v.Elem(), false, nil
	case *VendorResponse:
		if !isVendorResponse(b.Name) {
			return reflect.Value{}, false, fmt.Errorf("vendor response %q is not a vendor method name followed by Response", b.Name)
		}
		return v.Elem(), false, nil
	}
	want, ok := NewMessage(m.Method())
	if !ok || reflect.TypeOf(want) != v.Type() {
		return reflect.Value{}, false, fmt.Errorf("unsupported body %T for method %q", m, m.Method())
	}
	return v.Elem(), false, nil
}

// JSONError is a problem UnmarshalEnvelopeJSON found in its input, with the
// place it found it.
type JSONError struct {
	// Offset is the byte offset of the offending token in the input.
	Offset int64
	// Line and Column are 1-based; Column counts characters, not bytes.
	Line, Column int
	// Path locates the offending value, e.g. "body.events[0].code"; it is
	// empty when the message already names the place.
	Path string
	// Msg says what is wrong.
	Msg string
	// Err is the underlying error, if any (e.g. from ParseVersion).
	Err error
}

// Error returns "line L, column C: [path: ]message".
func (e *JSONError) Error() string {
	if e.Path != "" {
		return fmt.Sprintf("line %d, column %d: %s: %s", e.Line, e.Column, e.Path, e.Msg)
	}
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// Unwrap returns the underlying error.
func (e *JSONError) Unwrap() error { return e.Err }

// UnmarshalEnvelopeJSON parses the JSON form of an envelope (see
// MarshalEnvelopeJSON). It is strict, because its input is written or edited
// by people: syntax errors, unknown or duplicate keys, values of the wrong
// type or out of range, an unknown method or CWMP version are all errors of
// type *JSONError, which say where they are. "cwmpVersion" and "method" are
// required; any other key may be left out and then takes its zero value
// (a missing "id" means no cwmp:ID header).
func UnmarshalEnvelopeJSON(data []byte) (*Envelope, error) {
	// The standard library's scanner reports syntax errors with exact
	// offsets, which the token stream does not; checking syntax first also
	// means the token walk below only meets well-formed JSON.
	start := int64(0)
	if bytes.HasPrefix(data, utf8BOM) {
		start = int64(len(utf8BOM))
	}
	var syntax json.RawMessage
	if err := json.Unmarshal(data[start:], &syntax); err != nil {
		var se *json.SyntaxError
		if !errors.As(err, &se) {
			return nil, newJSONError(data, start, "", "invalid JSON: %v", err)
		}
		off := start + se.Offset
		if !strings.HasPrefix(se.Error(), "unexpected end") && se.Offset > 0 {
			off-- // Offset counts the offending byte itself
		}
		msg := se.Error()
		if len(bytes.TrimSpace(data[start:])) == 0 {
			msg = "empty input, want a JSON object"
		}
		e := newJSONError(data, off, "", "invalid JSON: %s", msg)
		e.Err = err
		return nil, e
	}

	r := newTokenReader(data, start, int64(len(data)))
	tok, off, err := r.next()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, newJSONError(data, off, "", "want a JSON object (the envelope), got %s", tokenKind(tok))
	}
	objStart := off

	env := new(Envelope)
	var (
		seen       = make(map[string]bool, len(envelopeJSONKeys))
		method     string
		methodOff  int64
		unknown    bool
		vendor     bool
		body       json.RawMessage
		bodyOff    int64
		versionSet bool
	)
	for r.dec.More() {
		key, keyOff, err := r.key()
		if err != nil {
			return nil, err
		}
		if seen[key] {
			return nil, newJSONError(data, keyOff, "", "duplicate key %q", key)
		}
		seen[key] = true
		h := &env.Header
		switch key {
		case jsonKeyVersion:
			var s string
			voff, err := r.into(&s, key)
			if err != nil {
				return nil, err
			}
			v, err := ParseVersion(s)
			if err != nil {
				e := newJSONError(data, voff, key, "unsupported CWMP version %q, want 1.0 to %s", s, MaxVersion)
				e.Err = err
				return nil, e
			}
			env.Version, versionSet = v, true
		case jsonKeyNamespace:
			_, err = r.into(&env.Namespace, key)
		case jsonKeyXMLDecl:
			_, err = r.into(&env.XMLDeclaration, key)
		case jsonKeyID:
			tok, voff, err := r.next()
			if err != nil {
				return nil, err
			}
			switch t := tok.(type) {
			case nil:
				h.ID, h.HasID = "", false
			case string:
				h.ID, h.HasID = t, true
			default:
				return nil, newJSONError(data, voff, key, "want string or null, got %s", tokenKind(tok))
			}
		case jsonKeyHoldRequests:
			_, err = r.into(&h.HoldRequests, key)
		case jsonKeyNoMoreRequests:
			_, err = r.into(&h.NoMoreRequests, key)
		case jsonKeySessionTimeout:
			_, err = r.into(&h.SessionTimeout, key)
		case jsonKeySupported:
			_, err = r.into(&h.SupportedCWMPVersions, key)
		case jsonKeyUseVersion:
			_, err = r.into(&h.UseCWMPVersion, key)
		case jsonKeyMethod:
			methodOff, err = r.into(&method, key)
		case jsonKeyUnknown:
			_, err = r.into(&unknown, key)
		case jsonKeyVendor:
			_, err = r.into(&vendor, key)
		case jsonKeyBody:
			bodyOff, body, err = r.rawValue()
		default:
			return nil, unknownKeyError(data, keyOff, key, "envelope", envelopeJSONKeys)
		}
		if err != nil {
			return nil, err
		}
	}
	if _, _, err := r.next(); err != nil { // the closing '}'
		return nil, err
	}
	if !versionSet {
		return nil, newJSONError(data, objStart, "", "missing key %q", jsonKeyVersion)
	}
	if !seen[jsonKeyMethod] {
		return nil, newJSONError(data, objStart, "", "missing key %q", jsonKeyMethod)
	}

	var msg Message
	switch {
	case vendor && unknown:
		return nil, newJSONError(data, methodOff, "", "both %q and %q are set", jsonKeyUnknown, jsonKeyVendor)
	case vendor && isVendorResponse(method):
		msg = &VendorResponse{}
	case vendor && isVendorMethod(method):
		msg = &VendorRequest{}
	case vendor:
		return nil, newJSONError(data, methodOff, "", "%q is not a vendor method name (X_<VENDOR>_<Name>)", method)
	case unknown:
		if method == "" {
			return nil, newJSONError(data, methodOff, "", "empty method name")
		}
		msg = &Unknown{}
	default:
		m, ok := NewMessage(method)
		if !ok {
			e := newJSONError(data, methodOff, "", "unknown method %q", method)
			if s := suggest(method, Methods()); s != "" {
				e.Msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return nil, e
		}
		msg = m
	}
	if body != nil {
		br := newTokenReader(data, bodyOff, bodyOff+int64(len(body)))
		if err := br.value(reflect.ValueOf(msg).Elem(), jsonKeyBody); err != nil {
			return nil, err
		}
	}
	var name *string
	switch b := msg.(type) {
	case *Unknown:
		name = &b.Name
	case *VendorRequest:
		name = &b.Name
	case *VendorResponse:
		name = &b.Name
	}
	if name != nil {
		switch *name {
		case "":
			*name = method
		case method:
		default:
			return nil, newJSONError(data, bodyOff, "body.name", "%q differs from method %q", *name, method)
		}
	}
	env.Body = msg
	return env, nil
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// newJSONError builds a *JSONError at byte offset off of data.
func newJSONError(data []byte, off int64, path, format string, args ...any) *JSONError {
	line, col := jsonPosition(data, off)
	return &JSONError{Offset: off, Line: line, Column: col, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// jsonPosition turns a byte offset into a 1-based line and column; the
// column counts characters, so that it matches what an editor shows.
func jsonPosition(data []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line = 1 + bytes.Count(before, []byte{'\n'})
	lineStart := bytes.LastIndexByte(before, '\n') + 1
	rest := before[lineStart:]
	if lineStart == 0 {
		rest = bytes.TrimPrefix(rest, utf8BOM)
	}
	return line, 1 + utf8.RuneCount(rest)
}

// unknownKeyError reports key as not allowed in the object at where,
// suggesting the nearest allowed key.
func unknownKeyError(data []byte, off int64, key, where string, allowed []string) *JSONError {
	e := newJSONError(data, off, "", "unknown key %q in %s", key, where)
	if s := suggest(key, allowed); s != "" {
		e.Msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return e
}

// suggest returns the candidate closest to s when it is plausibly a typo of
// it: the same word in other case, or at most two edits away.
func suggest(s string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if strings.EqualFold(c, s) {
			return c
		}
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance (Levenshtein plus
// adjacent transpositions, the commonest typo) over bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b)) // not worth the quadratic work
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// tokenKind names the JSON type of a token for error messages.
func tokenKind(tok json.Token) string {
	switch t := tok.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number, float64:
		return "number"
	case string:
		return "string"
	case json.Delim:
		switch t {
		case '{':
			return "object"
		case '[':
			return "array"
		}
		return "'" + t.String() + "'"
	}
	return fmt.Sprintf("%T", tok)
}
