package cwmp

import (
	"errors"
	"strconv"
)

// Limits bound what a decoder accepts. A zero field means the default from
// DefaultLimits.
type Limits struct {
	// MaxBytes is the largest body accepted, in bytes.
	MaxBytes int
	// MaxDepth is the deepest element nesting accepted; the Envelope is at
	// depth 1. CWMP needs 7 (a SetParameterValuesFault in a Fault).
	MaxDepth int
}

// DefaultLimits are the limits Decode applies: 4 MiB holds a full
// GetParameterValuesResponse of a large gateway with room to spare.
var DefaultLimits = Limits{MaxBytes: 4 << 20, MaxDepth: 32}

// DecodeOptions tune DecodeWith.
type DecodeOptions struct {
	Limits Limits
	// Charset is the charset parameter of the HTTP Content-Type, "" if
	// none. It overrides the XML declaration's encoding; a UTF-8 byte
	// order mark overrides both.
	Charset string
	// BodyOwned says that the caller hands the body over: nobody modifies
	// it after the call. The decoded message's strings then share its
	// memory instead of a copy of it (when it is valid UTF-8, as nearly
	// every body is), which saves copying every body once. The body then
	// lives as long as any of those strings.
	BodyOwned bool
}

// Sentinel errors: every error Decode returns is a *DecodeError whose Err is
// one of them, so callers branch with errors.Is.
var (
	// ErrEmpty: the body holds nothing but white space (and a BOM). An
	// empty body is the CPE's empty POST, not an envelope; callers that
	// see it usually meant to check the length first.
	ErrEmpty = errors.New("empty body")
	// ErrTooLarge: the body exceeds Limits.MaxBytes.
	ErrTooLarge = errors.New("body too large")
	// ErrTooDeep: elements nest deeper than Limits.MaxDepth.
	ErrTooDeep = errors.New("XML nested too deep")
	// ErrMalformed: the body is not well-formed XML (or uses a DOCTYPE).
	ErrMalformed = errors.New("malformed XML")
	// ErrNotEnvelope: well-formed XML that is not a valid CWMP message: no
	// SOAP 1.1 Envelope, no Body, a Body without exactly one RPC element,
	// or an argument whose text is not of its type (a Writable of "yes").
	ErrNotEnvelope = errors.New("not a CWMP envelope")
)

// DecodeError describes why a body could not be decoded and where.
type DecodeError struct {
	// Err is one of ErrEmpty, ErrTooLarge, ErrTooDeep, ErrMalformed,
	// ErrNotEnvelope.
	Err error
	// Offset is the byte offset in the body (BOM included) where the
	// problem was found; Line and Column (in characters) are 1-based.
	// All three are 0 when the position is unknown.
	Offset, Line, Column int
	// Detail says what was wrong, e.g. "unexpected end of element </Bdy>".
	Detail string
}

// Error returns e.g. "line 3, column 14: malformed XML: unexpected end of
// element </Bdy>".
func (e *DecodeError) Error() string {
	s := e.Err.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Line > 0 {
		s = "line " + strconv.Itoa(e.Line) + ", column " + strconv.Itoa(e.Column) + ": " + s
	}
	return s
}

// Unwrap returns Err, for errors.Is.
func (e *DecodeError) Unwrap() error { return e.Err }

// Decode decodes one CWMP SOAP message with DefaultLimits, taking the
// charset from the XML declaration (UTF-8 if none). Errors are
// *DecodeError.
func Decode(body []byte) (*Envelope, error) {
	return DecodeWith(body, DecodeOptions{})
}

// DecodeWith decodes one CWMP SOAP message. Decoding is liberal in what it
// accepts (see the package documentation and docs/protocol.md §1-§3, §9, §13) and never
// panics; errors are *DecodeError wrapping one of the sentinel errors.
//
// Field handling, for callers: identifiers, codes, URLs, names, numbers,
// booleans and dateTimes are trimmed of surrounding XML white space, which
// pretty-printing CPEs add. Data kept exactly as sent: ParameterValueStruct
// and ArgStruct Value, Kicked Arg, Username, Password and UserMessage.
// CommandKey is trimmed too: it is the ACS's own token echoed back, and
// FleetACS must never issue a key with surrounding white space, so trimming
// can only repair a CPE's pretty-printing (a key the ACS compares must be
// compared trimmed). OUI is
// kept in the case it was sent. Empty number and boolean elements read as 0
// and false; other text that is not of the element's type is an
// ErrNotEnvelope error naming the element, except in an Inform's
// MaxEnvelopes and RetryCount, which then read as 0.
func DecodeWith(body []byte, opts DecodeOptions) (*Envelope, error) {
	lim := opts.Limits.withDefaults()
	p, xerr := prepare(body, opts.Charset, lim.MaxBytes, opts.BodyOwned)
	if xerr != nil {
		return nil, p.prepareError(body, xerr)
	}
	t, xerr := scanXML(p.text, p.start, lim.MaxDepth)
	if xerr != nil {
		return nil, p.decodeError(xerr)
	}
	env, xerr := buildEnvelope(t)
	t.release()
	if xerr != nil {
		return nil, p.decodeError(xerr)
	}
	env.XMLDeclaration = p.decl
	return env, nil
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultLimits.MaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultLimits.MaxDepth
	}
	return l
}

// decodeError positions a front end or mapping error found in p.text.
func (p *prepared) decodeError(x *xmlError) *DecodeError {
	e := &DecodeError{Err: x.err, Detail: x.detail}
	if x.off >= 0 {
		e.Offset = p.rawOffset(x.off)
		e.Line, e.Column = lineColumn(p.text, x.off)
	}
	return e
}

// prepareError positions an error of prepare: in the converted text for a
// UTF-16 body, whose bytes cannot be counted as characters, else in body.
func (p *prepared) prepareError(body []byte, x *xmlError) *DecodeError {
	if p.charset == charsetUTF16LE || p.charset == charsetUTF16BE {
		return p.decodeError(x)
	}
	return rawDecodeError(body, x)
}

// rawDecodeError positions an error found before the body was converted,
// counting characters as UTF-8.
func rawDecodeError(body []byte, x *xmlError) *DecodeError {
	e := &DecodeError{Err: x.err, Detail: x.detail}
	if x.off >= 0 {
		off := min(x.off, len(body))
		e.Offset = off
		e.Line, e.Column = lineColumn(body, off)
	}
	return e
}
