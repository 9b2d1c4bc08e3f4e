package cwmp

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"

	"github.com/beevik/etree"
)

// The reference front end builds the node table from an etree document
// (encoding/xml underneath, strict mode). It is slower and allocates a tree
// of pointers, but it is the project's XML library and independent of the
// scanner, so the differential test and fuzz target hold the scanner to it:
// for every input both front ends must give the same Envelope or both fail.
//
// The rules the scanner adds on top of XML (see xml_scan.go) are checked here
// on the finished document, so that both front ends mean the same thing:
// exactly one root element and only white space beside it, no <!...>
// directives, no PI named xml after the start, ASCII names.

// decodeReference decodes like DecodeWith with the etree front end.
func decodeReference(body []byte, opts DecodeOptions) (*Envelope, error) {
	lim := opts.Limits.withDefaults()
	p, xerr := prepare(body, opts.Charset, lim.MaxBytes, false)
	if xerr != nil {
		return nil, p.prepareError(body, xerr)
	}
	t, xerr := etreeTree(p.text[p.start:], lim.MaxDepth)
	if xerr != nil {
		return nil, p.decodeError(xerr)
	}
	env, xerr := buildEnvelope(t)
	if xerr != nil {
		return nil, p.decodeError(xerr)
	}
	env.XMLDeclaration = p.decl
	return env, nil
}

// etreeTree parses s with etree and converts the document to a node table.
// Positions are unknown (off -1): etree keeps none.
func etreeTree(s string, maxDepth int) (*xmlTree, *xmlError) {
	doc := etree.NewDocument()
	doc.ReadSettings = etree.ReadSettings{MaxDepth: maxDepth}
	if err := doc.ReadFromString(s); err != nil {
		if errors.Is(err, etree.ErrMaxDepth) {
			return nil, &xmlError{err: ErrTooDeep, off: -1, detail: err.Error()}
		}
		return nil, malformed(-1, err.Error())
	}
	var root *etree.Element
	for _, tok := range doc.Child {
		switch c := tok.(type) {
		case *etree.Element:
			if root != nil {
				return nil, malformed(-1, "more than one root element")
			}
			root = c
		case *etree.CharData:
			if !isAllXMLSpace(c.Data) {
				return nil, malformed(-1, "text outside the root element")
			}
		default:
			if err := etreeCheckMisc(tok); err != nil {
				return nil, err
			}
		}
	}
	if root == nil {
		return nil, malformed(-1, "no root element")
	}
	b := etreeBuilder{t: &xmlTree{src: s, unboundOff: -1}}
	if err := b.element(root, -1, 0); err != nil {
		return nil, err
	}
	if err := contentOffsets(b.t, s); err != nil {
		return nil, err
	}
	return b.t, nil
}

// contentOffsets sets the content offsets (cs, ce) of the nodes from a
// second, independent pass of encoding/xml over s: etree keeps no
// positions, and the nodes are in document order, the order of the start
// elements.
func contentOffsets(t *xmlTree, s string) *xmlError {
	d := xml.NewDecoder(strings.NewReader(s))
	var stack []int32
	next := int32(0)
	for {
		start := d.InputOffset()
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return malformed(-1, err.Error())
		}
		switch tok.(type) {
		case xml.StartElement:
			if int(next) >= len(t.nodes) {
				return malformed(-1, "encoding/xml found more elements than etree")
			}
			t.nodes[next].cs, t.nodes[next].ce = int32(d.InputOffset()), -1
			stack = append(stack, next)
			next++
		case xml.EndElement:
			if len(stack) == 0 {
				return malformed(-1, "encoding/xml found an unmatched end element")
			}
			t.nodes[stack[len(stack)-1]].ce = int32(start)
			stack = stack[:len(stack)-1]
		}
	}
	return nil
}

// etreeCheckMisc rejects the non-element tokens the scanner refuses.
func etreeCheckMisc(tok etree.Token) *xmlError {
	switch c := tok.(type) {
	case *etree.Directive:
		return malformed(-1, "DOCTYPE and other <! declarations are not allowed")
	case *etree.ProcInst:
		if c.Target == "xml" {
			return malformed(-1, "XML declaration not at the start of the document")
		}
		if !isASCII(c.Target) {
			return malformed(-1, "non-ASCII processing instruction target")
		}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

type etreeBuilder struct {
	t *xmlTree
}

// element appends e and, recursively, its children (depth is bounded by
// MaxDepth, which etree enforced). scope counts the namespace declarations
// in scope above e, bounded as in the scanner.
func (b *etreeBuilder) element(e *etree.Element, parent int32, scope int) *xmlError {
	if !isASCII(e.Space) || !isASCII(e.Tag) {
		return malformed(-1, "non-ASCII element name")
	}
	t := b.t
	idx := int32(len(t.nodes))
	t.nodes = append(t.nodes, xmlNode{local: e.Tag, ns: e.NamespaceURI(), parent: parent, first: -1, next: -1, attr: int32(len(t.attrs)), off: -1, cs: -1, ce: -1})
	for _, a := range e.Attr {
		if !isASCII(a.Space) || !isASCII(a.Key) {
			return malformed(-1, "non-ASCII attribute name")
		}
		switch {
		case a.Space == "xmlns" || a.Space == "" && a.Key == "xmlns":
			if scope++; scope > maxNamespaceBindings {
				return malformed(-1, "too many namespace declarations in scope")
			}
			prefix := a.Key
			if a.Space == "" {
				prefix = ""
			}
			t.attrs = append(t.attrs, xmlAttr{local: prefix, ns: nsXMLNS, value: a.Value})
		default:
			x := xmlAttr{local: a.Key, ns: a.NamespaceURI(), value: a.Value}
			if x.local == "type" && x.ns == "" && a.Space != "" {
				x.ns = undeclaredTypeNS(a.Space)
			}
			if x.local == "type" && isXSINamespace(x.ns) {
				p, _ := qnameParts(a.Value)
				if x.valueNS = etreeResolve(e, p); x.valueNS == "" {
					x.valueNS = undeclaredTypeNS(p)
				}
			}
			t.attrs = append(t.attrs, x)
		}
	}
	t.nodes[idx].nattr = int32(len(t.attrs)) - t.nodes[idx].attr

	var text strings.Builder
	last := int32(-1)
	for _, tok := range e.Child {
		switch c := tok.(type) {
		case *etree.Element:
			child := int32(len(t.nodes))
			if last < 0 {
				t.nodes[idx].first = child
			} else {
				t.nodes[last].next = child
			}
			last = child
			if err := b.element(c, idx, scope); err != nil {
				return err
			}
		case *etree.CharData:
			text.WriteString(c.Data)
		default:
			if err := etreeCheckMisc(tok); err != nil {
				return err
			}
		}
	}
	if last < 0 {
		t.nodes[idx].text = text.String()
	}
	return nil
}

// etreeResolve returns the namespace bound to prefix ("" for the default
// namespace) where e stands, or "" when unbound.
func etreeResolve(e *etree.Element, prefix string) string {
	for el := e; el != nil; el = el.Parent() {
		for _, a := range el.Attr {
			if prefix == "" && a.Space == "" && a.Key == "xmlns" || prefix != "" && a.Space == "xmlns" && a.Key == prefix {
				return a.Value
			}
		}
	}
	return ""
}
