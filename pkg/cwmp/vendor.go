package cwmp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Vendor-specific RPCs (docs/protocol.md §5.4): methods named X_<VENDOR>_<Name>
// outside the CWMP schema, whose arguments and response FleetACS carries as
// raw XML.

// Bounds of vendor RPCs.
const (
	// MaxVendorMethodLen is the longest vendor method name: a CPE lists its
	// methods in GetRPCMethodsResponse, whose strings hold at most 64
	// characters (docs/protocol.md §5.1).
	MaxVendorMethodLen = 64
	// MaxVendorArgumentsLen bounds the argument XML of a VendorRequest, in bytes.
	MaxVendorArgumentsLen = 64 << 10
	// MaxVendorArgumentsDepth bounds the element nesting inside the arguments.
	MaxVendorArgumentsDepth = 16
	// MaxVendorResponseLen bounds the inner XML of a decoded vendor message
	// (a VendorResponse, or a VendorRequest the CPE side decodes), in bytes.
	MaxVendorResponseLen = 1 << 20
	// maxVendorNamespaceLen bounds the namespace URI of a vendor method.
	maxVendorNamespaceLen = 1024
	// vendorPrefix is the prefix the encoder binds to a vendor method's own
	// namespace; arguments must not use it for anything else.
	vendorPrefix = "vnd"
)

// ErrInvalidVendorRequest is wrapped by every error CheckVendorRequest
// returns.
var ErrInvalidVendorRequest = errors.New("cwmp: invalid vendor request")

// VendorRequest is a vendor-specific RPC the ACS calls on the CPE, sent as
// <ns:Name>Arguments</ns:Name>. Namespace is the URI of the method element;
// "" (or a cwmp namespace) puts it in the session's cwmp namespace.
// Arguments is the element's content, written verbatim: it must be
// well-formed XML content (CheckVendorRequest). Decoding also yields a
// VendorRequest for a vendor-named RPC element that does not end in
// "Response" (what a CPE receives), with Arguments the element's inner XML.
type VendorRequest struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	Arguments string `json:"arguments"`
}

// VendorResponse is the CPE's answer to a VendorRequest: the element
// <Name> (the request's name + "Response") in any namespace, with InnerXML
// its content exactly as sent (after charset conversion to UTF-8). InnerXML
// may use namespace prefixes that the envelope declares, not itself.
type VendorResponse struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	InnerXML  string `json:"innerXML"`
}

func (m *VendorRequest) Method() string  { return m.Name }
func (m *VendorResponse) Method() string { return m.Name }

// CheckVendorMethod reports whether name is a vendor method name FleetACS
// sends: X_<VENDOR>_<Name> (docs/protocol.md §5.1, §5.4), where VENDOR is
// letters and digits (a short name or an OUI) and Name is letters, digits,
// '_', '-' and '.', at most MaxVendorMethodLen characters in all, not
// ending in "Response" (that names the answer). Such a name is an XML
// NCName and never a standard CWMP method.
func CheckVendorMethod(name string) error {
	if !isVendorMethod(name) {
		return fmt.Errorf("method name %q is not X_<VENDOR>_<Name> (vendor letters and digits; name letters, digits, _ - .; at most %d characters): %w",
			name, MaxVendorMethodLen, ErrInvalidVendorRequest)
	}
	return nil
}

func isVendorMethod(name string) bool {
	rest, ok := strings.CutPrefix(name, "X_")
	if !ok || len(name) > MaxVendorMethodLen || strings.HasSuffix(name, "Response") {
		return false
	}
	i := 0
	for i < len(rest) && isASCIIAlnum(rest[i]) {
		i++
	}
	if i == 0 || i+1 >= len(rest) || rest[i] != '_' {
		return false
	}
	for j := i + 1; j < len(rest); j++ {
		if c := rest[j]; !isASCIIAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isASCIIAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// vendorResponseOf returns the request method a vendor response element
// answers ("X_A_B" for "X_A_BResponse").
func vendorResponseOf(local string) (string, bool) {
	req, ok := strings.CutSuffix(local, "Response")
	return req, ok && isVendorMethod(req)
}

// CheckVendorRequest checks what Encode needs of m: a vendor method name
// (CheckVendorMethod), a namespace that is empty or a URI XML can carry,
// and arguments that are well-formed XML content of at most
// MaxVendorArgumentsLen bytes: valid UTF-8 of XML characters, no DOCTYPE or
// other declarations, no entities beyond the predefined ones, elements
// nested at most MaxVendorArgumentsDepth deep, and every namespace prefix
// declared in the arguments or by the envelope (soap-env, soap-enc, xsd,
// xsi, cwmp). The package's own scanner does the parsing, so what passes
// here is what FleetACS itself would decode. Errors wrap
// ErrInvalidVendorRequest and give the byte offset in the arguments.
func CheckVendorRequest(m *VendorRequest) error {
	if m == nil {
		return fmt.Errorf("nil vendor request: %w", ErrInvalidVendorRequest)
	}
	if err := CheckVendorMethod(m.Name); err != nil {
		return err
	}
	if err := checkVendorNamespace(m.Name, m.Namespace); err != nil {
		return err
	}
	return checkVendorContent(m.Name, m.Namespace, m.Arguments, MaxVendorArgumentsLen)
}

func checkVendorNamespace(method, ns string) error {
	if len(ns) > maxVendorNamespaceLen {
		return fmt.Errorf("%s: namespace longer than %d bytes: %w", method, maxVendorNamespaceLen, ErrInvalidVendorRequest)
	}
	if p := xmlTextProblem(ns); p != "" {
		return fmt.Errorf("%s: namespace %s: %w", method, p, ErrInvalidVendorRequest)
	}
	return nil
}

// xmlTextProblem says what in s XML 1.0 cannot carry, "" if nothing.
func xmlTextProblem(s string) string {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return "is not valid UTF-8 at byte " + strconv.Itoa(i)
			}
		}
		if !isXMLChar(r) {
			return fmt.Sprintf("contains %U at byte %d, which XML 1.0 cannot carry", r, i)
		}
	}
	return ""
}

// checkVendorContent checks args, the content of a vendor RPC element, for
// CheckVendorRequest; limit bounds its size.
func checkVendorContent(method, ns, args string, limit int) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s: arguments: %s: %w", method, fmt.Sprintf(format, a...), ErrInvalidVendorRequest)
	}
	if len(args) > limit {
		return bad("%d bytes, more than %d", len(args), limit)
	}
	if args == "" {
		return nil
	}
	if p := xmlTextProblem(args); p != "" {
		return bad("%s", p)
	}
	// Parse the arguments as the content of an element that binds the
	// prefixes the envelope and the method element bind.
	var w strings.Builder
	w.Grow(len(args) + 320)
	w.WriteString(`<w xmlns:soap-env="` + NSSOAPEnv + `" xmlns:soap-enc="` + NSSOAPEnc +
		`" xmlns:xsd="` + NSXSD + `" xmlns:xsi="` + NSXSI + `" xmlns:cwmp="` + NS1_0 + `"`)
	if ns != "" && !isCWMPNamespace(ns) {
		w.WriteString(` xmlns:` + vendorPrefix + `="x"`)
	}
	w.WriteString(">")
	head := w.Len()
	w.WriteString(args)
	w.WriteString("</w>")
	t, xerr := scanXML(w.String(), 0, MaxVendorArgumentsDepth+1)
	if xerr != nil {
		off := max(xerr.off-head, 0)
		if xerr.off >= head+len(args) {
			// The wrapper's end tag: an element of the arguments is not
			// closed, or an end tag closes more than was opened.
			off = len(args)
		}
		return bad("byte %d: %s: %s", off, xerr.err, xerr.detail)
	}
	defer t.release()
	if t.unboundOff >= 0 {
		return bad("byte %d: namespace prefix %q is not declared", t.unboundOff-head, t.unboundPrefix)
	}
	return nil
}

// innerXML returns the content of node i (between its start and end tag)
// as it stands in the text, or false when the front end knows no positions.
func (t *xmlTree) innerXML(i int32) (string, bool) {
	n := &t.nodes[i]
	if n.cs < 0 || n.ce < n.cs || int(n.ce) > len(t.src) {
		return "", false
	}
	return t.src[n.cs:n.ce], true
}

// vendorMessage maps a vendor-named RPC element: a *VendorResponse when the
// name ends in "Response", else a *VendorRequest.
func (m *mapper) vendorMessage(i int32) Message {
	n := &m.t.nodes[i]
	inner, ok := m.t.innerXML(i)
	if !ok {
		m.fail(i, "position of <"+n.local+"> unknown")
		return &Unknown{Name: n.local, Namespace: n.ns}
	}
	if len(inner) > MaxVendorResponseLen {
		if m.err == nil {
			m.err = &xmlError{err: ErrTooLarge, off: int(n.off),
				detail: "content of <" + n.local + "> longer than " + strconv.Itoa(MaxVendorResponseLen) + " bytes"}
		}
		return &Unknown{Name: n.local, Namespace: n.ns}
	}
	if _, ok := vendorResponseOf(n.local); ok {
		return &VendorResponse{Name: n.local, Namespace: n.ns, InnerXML: inner}
	}
	return &VendorRequest{Name: n.local, Namespace: n.ns, Arguments: inner}
}

// vendorBody writes a vendor RPC element (docs/protocol.md §5.4) whose
// name, namespace and content check found valid (err nil): content is
// written verbatim.
func (e *encoder) vendorBody(name, ns, content string, err error) {
	if err != nil {
		e.failf("%v", err)
		return
	}
	if ns == "" || isCWMPNamespace(ns) {
		e.rpcOpen(name)
		e.b = append(e.b, content...)
		e.rpcClose(name)
		return
	}
	e.b = append(e.b, "<"+vendorPrefix+":"...)
	e.b = append(e.b, name...)
	e.b = append(e.b, " xmlns:"+vendorPrefix+`="`...)
	e.escape(ns)
	e.b = append(e.b, `">`...)
	e.b = append(e.b, content...)
	e.b = append(e.b, "</"+vendorPrefix+":"...)
	e.b = append(e.b, name...)
	e.b = append(e.b, '>')
}

// checkVendorResponse checks a VendorResponse as CheckVendorRequest checks
// a request (the CPE side encodes it), with MaxVendorResponseLen as bound.
func checkVendorResponse(m *VendorResponse) error {
	if _, ok := vendorResponseOf(m.Name); !ok {
		return fmt.Errorf("response name %q is not a vendor method name followed by Response: %w", m.Name, ErrInvalidVendorRequest)
	}
	if err := checkVendorNamespace(m.Name, m.Namespace); err != nil {
		return err
	}
	return checkVendorContent(m.Name, m.Namespace, m.InnerXML, MaxVendorResponseLen)
}

func isVendorResponse(local string) bool {
	_, ok := vendorResponseOf(local)
	return ok
}
