package cwmp

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// ErrInvalidMessage is wrapped by every error Encode returns: the envelope
// cannot be written as a message that validates against the CWMP schema of
// its version (a nil or *Unknown Body, a method newer than the version, a
// missing required field, a value outside its schema range or pattern, more
// items than a list may hold, text XML 1.0 cannot carry, ...).
var ErrInvalidMessage = errors.New("cwmp: invalid message")

// Output shape, chosen once and kept (docs/protocol.md §2.1, §13 output side):
//   - the SOAP prefixes are soap-env and soap-enc (lower case, as in the
//     example of docs/protocol.md §2.1); all five namespaces are declared on the Envelope
//     element because icwmp recognises a message only that way and some
//     CPEs fail validation without the xsd declaration;
//   - no white space between elements, one "\n" after the closing Envelope
//     tag (ip.access CPEs need it), and after the XML declaration when there
//     is one;
//   - every element is written as a start/end pair, never self-closed,
//     because a few CPE parsers do not handle <x/>.
const (
	xmlDecl = `<?xml version="1.0" encoding="UTF-8"?>` + "\n"

	envelopeOpen = `<soap-env:Envelope` +
		` xmlns:soap-env="` + NSSOAPEnv + `"` +
		` xmlns:soap-enc="` + NSSOAPEnc + `"` +
		` xmlns:xsd="` + NSXSD + `"` +
		` xmlns:xsi="` + NSXSI + `"` +
		` xmlns:cwmp="`
	envelopeClose = "</soap-env:Body></soap-env:Envelope>\n"
)

// Encode writes env as a CWMP SOAP message. See AppendEncode.
func Encode(env *Envelope) ([]byte, error) {
	return AppendEncode(make([]byte, 0, 1024), env)
}

// AppendEncode appends env, encoded as a CWMP SOAP message, to dst and
// returns the extended slice; on error it returns dst unchanged and an error
// wrapping ErrInvalidMessage. Reusing dst across calls makes encoding
// allocation-free on the hot path.
//
// The output is strict (docs/protocol.md §2, §3, §13 output side): the cwmp namespace
// is env.Namespace or else env.Version.Namespace(); headers are written only
// when set (cwmp:ID when HasID or ID is not empty, HoldRequests only when
// true, SessionTimeout when not 0, the CWMP 1.4 version headers when not
// empty; NoMoreRequests never); RPC arguments are unqualified, in the XSD's
// sequence order, with SOAP-ENC arrayType and exact counts on every array
// and xsi:type on every ParameterValueStruct Value (xsd:string when Type is
// empty). Empty DateTimes are written as the Unknown Time where the schema
// requires a dateTime. Text that XML 1.0 cannot carry (control characters
// other than tab, newline and carriage return, U+FFFE, U+FFFF, invalid
// UTF-8) is refused rather than dropped, because a silently altered value
// (a password, a key) is worse than an error the caller can act on.
func AppendEncode(dst []byte, env *Envelope) ([]byte, error) {
	if env == nil {
		return dst, fmt.Errorf("encode envelope: nil envelope: %w", ErrInvalidMessage)
	}
	e := encoder{b: dst, v: env.Version}
	e.envelope(env)
	if e.err != nil {
		return dst, e.err
	}
	return e.b, nil
}

// encoder appends one message to b. Errors are sticky: the first one is
// kept in err and later writes are wasted but harmless, which keeps the
// element writers free of error plumbing.
type encoder struct {
	b      []byte
	v      Version
	method string
	err    error
}

// failf records the first error, naming the method being encoded.
func (e *encoder) failf(format string, args ...any) {
	if e.err != nil {
		return
	}
	what := e.method
	if what == "" {
		what = "envelope"
	}
	e.err = fmt.Errorf("encode %s: %s: %w", what, fmt.Sprintf(format, args...), ErrInvalidMessage)
}

func (e *encoder) envelope(env *Envelope) {
	if env.Version > MaxVersion {
		e.failf("unsupported CWMP version %d", uint8(env.Version))
		return
	}
	ns := env.Namespace
	if ns == "" {
		ns = env.Version.Namespace()
	} else if !namespaceFits(ns, env.Version) {
		e.failf("namespace %q does not carry CWMP version %s", ns, env.Version)
		return
	}
	if env.Body == nil {
		e.failf("nil Body")
		return
	}
	if env.XMLDeclaration {
		e.b = append(e.b, xmlDecl...)
	}
	e.b = append(e.b, envelopeOpen...)
	e.b = append(e.b, ns...)
	e.b = append(e.b, `">`...)
	e.header(&env.Header)
	e.b = append(e.b, "<soap-env:Body>"...)
	e.body(env.Body)
	e.b = append(e.b, envelopeClose...)
}

// namespaceFits reports whether ns is a cwmp namespace that a message of
// version v may use: cwmp-1-0 and cwmp-1-1 name their versions exactly,
// cwmp-1-2 serves 1.2 to 1.4, and the non-standard cwmp-1-3/cwmp-1-4 that
// some CPEs use are answered in kind (docs/protocol.md §1.2) for 1.2 and later.
func namespaceFits(ns string, v Version) bool {
	switch ns {
	case NS1_0:
		return v == V1_0
	case NS1_1:
		return v == V1_1
	case NS1_2, NS1_3, NS1_4:
		return v >= V1_2
	}
	return false
}

// header writes the SOAP Header, or nothing when no header element is set
// (docs/protocol.md §3).
func (e *encoder) header(h *Header) {
	hasID := h.HasID || h.ID != ""
	if !hasID && !h.HoldRequests && h.SessionTimeout == 0 &&
		h.SupportedCWMPVersions == "" && h.UseCWMPVersion == "" {
		return
	}
	e.b = append(e.b, "<soap-env:Header>"...)
	if hasID {
		e.b = append(e.b, `<cwmp:ID soap-env:mustUnderstand="1">`...)
		e.text("Header/ID", h.ID)
		e.b = append(e.b, "</cwmp:ID>"...)
	}
	if h.HoldRequests {
		// xsd:boolean accepts 1 and true; "1" is what ACSes send in
		// practice and every CPE stack reads it.
		e.b = append(e.b, `<cwmp:HoldRequests soap-env:mustUnderstand="1">1</cwmp:HoldRequests>`...)
	}
	if h.SessionTimeout != 0 {
		if e.v < V1_3 {
			e.failf("Header/SessionTimeout needs CWMP 1.3, message is %s", e.v)
		}
		e.b = append(e.b, `<cwmp:SessionTimeout soap-env:mustUnderstand="0">`...)
		e.b = strconv.AppendUint(e.b, uint64(h.SessionTimeout), 10)
		e.b = append(e.b, "</cwmp:SessionTimeout>"...)
	}
	// The 1.4 negotiation headers are declared (by cwmp-1-4.xsd) in the
	// cwmp-1-2 namespace, so they need a 1.2-family message; the version
	// negotiated with them may itself be below 1.4.
	if h.SupportedCWMPVersions != "" {
		if e.v < V1_2 {
			e.failf("Header/SupportedCWMPVersions needs a cwmp-1-2 namespace message, message is %s", e.v)
		}
		e.b = append(e.b, `<cwmp:SupportedCWMPVersions soap-env:mustUnderstand="0">`...)
		e.text("Header/SupportedCWMPVersions", h.SupportedCWMPVersions)
		e.b = append(e.b, "</cwmp:SupportedCWMPVersions>"...)
	}
	if h.UseCWMPVersion != "" {
		if e.v < V1_2 {
			e.failf("Header/UseCWMPVersion needs a cwmp-1-2 namespace message, message is %s", e.v)
		}
		if _, err := ParseVersion(h.UseCWMPVersion); err != nil {
			e.failf("Header/UseCWMPVersion %q is not a CWMP version", h.UseCWMPVersion)
		}
		e.b = append(e.b, `<cwmp:UseCWMPVersion soap-env:mustUnderstand="1">`...)
		e.text("Header/UseCWMPVersion", h.UseCWMPVersion)
		e.b = append(e.b, "</cwmp:UseCWMPVersion>"...)
	}
	e.b = append(e.b, "</soap-env:Header>"...)
}

// ---- element writers. Argument elements are unqualified (docs/protocol.md §2.1).

func (e *encoder) open(name string) {
	e.b = append(e.b, '<')
	e.b = append(e.b, name...)
	e.b = append(e.b, '>')
}

func (e *encoder) close(name string) {
	e.b = append(e.b, '<', '/')
	e.b = append(e.b, name...)
	e.b = append(e.b, '>')
}

// rpcOpen and rpcClose write the cwmp:-prefixed RPC element.
func (e *encoder) rpcOpen(method string) {
	e.b = append(e.b, "<cwmp:"...)
	e.b = append(e.b, method...)
	e.b = append(e.b, '>')
}

func (e *encoder) rpcClose(method string) {
	e.b = append(e.b, "</cwmp:"...)
	e.b = append(e.b, method...)
	e.b = append(e.b, '>')
}

// arrayOpen writes a SOAP-ENC array element with its exact item count,
// e.g. <ParameterNames soap-enc:arrayType="xsd:string[2]"> (docs/protocol.md §2.2).
func (e *encoder) arrayOpen(name, itemType string, n int) {
	e.b = append(e.b, '<')
	e.b = append(e.b, name...)
	e.b = append(e.b, ` soap-enc:arrayType="`...)
	e.b = append(e.b, itemType...)
	e.b = append(e.b, '[')
	e.b = strconv.AppendInt(e.b, int64(n), 10)
	e.b = append(e.b, `]">`...)
}

// str writes <name>s</name>, refusing s when it is longer than maxLen
// characters (0: no limit), the schema's maxLength.
func (e *encoder) str(name, s string, maxLen int) {
	if maxLen > 0 {
		e.maxLen(name, s, maxLen)
	}
	e.open(name)
	e.text(name, s)
	e.close(name)
}

// maxLen refuses s when it has more than n characters. Schema lengths count
// characters, not bytes; the byte length bounds the count from above, so the
// rune count is needed only for long strings.
func (e *encoder) maxLen(field, s string, n int) {
	if len(s) > n && utf8.RuneCountInString(s) > n {
		e.failf("%s is longer than %d characters", field, n)
	}
}

func (e *encoder) uint32(name string, v uint32) {
	e.open(name)
	e.b = strconv.AppendUint(e.b, uint64(v), 10)
	e.close(name)
}

func (e *encoder) int(name string, v int) {
	e.open(name)
	e.b = strconv.AppendInt(e.b, int64(v), 10)
	e.close(name)
}

// intIn writes an int that the schema restricts to lo..hi.
func (e *encoder) intIn(name string, v, lo, hi int) {
	if v < lo || v > hi {
		e.failf("%s %d is outside %d..%d", name, v, lo, hi)
	}
	e.int(name, v)
}

// bool writes an xsd:boolean as true/false, the canonical form.
func (e *encoder) bool(name string, v bool) {
	e.open(name)
	if v {
		e.b = append(e.b, "true"...)
	} else {
		e.b = append(e.b, "false"...)
	}
	e.close(name)
}

// dateTime writes a required xsd:dateTime, the Unknown Time when empty
// (docs/protocol.md §9): the value is sent as given, but it must be one the schema
// accepts.
func (e *encoder) dateTime(name string, d DateTime) {
	if d == "" {
		d = UnknownTime
	} else if !validDateTime(string(d)) {
		e.failf("%s %q is not an xsd:dateTime", name, string(d))
	}
	e.open(name)
	e.b = append(e.b, d...)
	e.close(name)
}

// text appends s escaped for element content. It escapes & < > and ", and
// CR as &#xD; because parsers turn a raw CR (and CR LF) into LF. Tab and
// newline stay raw: they survive in element content, and simple CPE parsers
// read them more reliably than character references. User text is never
// written into attributes (the only variable attribute, xsi:type, is checked
// to be a QName), so no attribute escaping is needed.
func (e *encoder) text(field, s string) {
	if problem := e.escape(s); problem != "" {
		e.failf("%s %s", field, problem)
	}
}

// escape appends s escaped (see text) and returns "" or, for text XML 1.0
// cannot carry, what is wrong with it.
func (e *encoder) escape(s string) (problem string) {
	// Fast path: printable ASCII with nothing to escape.
	i := 0
	for i < len(s) {
		c := s[i]
		if c < 0x20 || c >= 0x80 || c == '&' || c == '<' || c == '>' || c == '"' {
			break
		}
		i++
	}
	e.b = append(e.b, s[:i]...)
	if i == len(s) {
		return ""
	}
	return e.escapeSlow(s[i:])
}

func (e *encoder) escapeSlow(s string) (problem string) {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		var esc string
		switch {
		case c >= 0x80:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return "is not valid UTF-8"
			}
			if r == 0xFFFE || r == 0xFFFF {
				return fmt.Sprintf("contains U+%04X, which XML 1.0 cannot carry", r)
			}
			i += size
			continue
		case c == '&':
			esc = "&amp;"
		case c == '<':
			esc = "&lt;"
		case c == '>':
			esc = "&gt;"
		case c == '"':
			esc = "&quot;"
		case c == '\r':
			esc = "&#xD;"
		case c < 0x20 && c != '\n' && c != '\t':
			return fmt.Sprintf("contains control character %#02x, which XML 1.0 cannot carry", c)
		default:
			i++
			continue
		}
		e.b = append(e.b, s[start:i]...)
		e.b = append(e.b, esc...)
		i++
		start = i
	}
	e.b = append(e.b, s[start:]...)
	return ""
}
