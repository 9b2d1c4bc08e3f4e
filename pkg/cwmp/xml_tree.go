package cwmp

import "sync"

// The decoder works in two steps: a front end turns the prepared text into a
// flat node table (xmlTree), then one mapper (decode_message.go) turns that
// table into typed messages. Two front ends build the same table: the fast
// single-pass scanner (xml_scan.go) used by Decode, and a reference built from
// an etree document (xml_etree.go) that tests and fuzz targets compare it
// with. Keeping the table flat (indices, not pointers) and its strings sliced
// from one string of the whole input is what keeps decoding to a handful of
// allocations.

// nsXMLNS is the namespace of namespace declarations. In the node table a
// declaration xmlns:p="u" is an attribute {ns: nsXMLNS, local: "p", value:
// "u"} and xmlns="u" is {ns: nsXMLNS, local: "", value: "u"}.
const nsXMLNS = "http://www.w3.org/2000/xmlns/"

// xmlNode is one element. Nodes are stored in document order, so the root is
// node 0 and every child comes after its parent.
type xmlNode struct {
	local string // local name (the part after the prefix)
	ns    string // namespace URI the prefix resolved to; "" when unbound
	// text is the element's character data (text and CDATA, entities
	// replaced, line ends normalised) when it has no child elements, and ""
	// when it has: mixed content carries no meaning in CWMP.
	text   string
	parent int32 // -1 for the root
	first  int32 // first child element, -1 if none
	next   int32 // next sibling element, -1 if none
	attr   int32 // index of the first attribute in xmlTree.attrs
	nattr  int32 // number of attributes
	off    int32 // byte offset of '<' in the prepared text; -1 if unknown
	// cs and ce delimit the element's content in xmlTree.src (after the
	// start tag's '>', at the end tag's '<'; both after "/>" for an empty
	// element tag); -1 when unknown.
	cs, ce int32
}

// xmlAttr is one attribute, namespace declarations included (see nsXMLNS).
type xmlAttr struct {
	local string
	ns    string // "" for unprefixed attributes and unbound prefixes
	value string
	// valueNS is set for xsi:type only: the namespace the prefix of the
	// QName in value resolves to where the attribute stands, because
	// Value's type is "xsd:"+local only when that namespace is XML Schema
	// (docs/protocol.md §2.3).
	valueNS string
}

// xmlTree is the node table of one document.
type xmlTree struct {
	nodes []xmlNode
	attrs []xmlAttr
	// src is the text the content offsets (cs, ce) refer to.
	src string
	// unboundOff is the offset in src of the first element or attribute
	// whose prefix no declaration binds (-1 if none), unboundPrefix that
	// prefix. Decoding tolerates them; vendor arguments do not.
	unboundOff    int
	unboundPrefix string
}

// Node tables are scratch space: a message's strings point into the text,
// never into the table, so the table can go back to a pool once the message
// is mapped. A first contact decodes a GetParameterNamesResponse of
// hundreds of names and several GetParameterValuesResponses; their tables
// (72 bytes a node) were most of what decoding allocated.
var treePool = sync.Pool{New: func() any { return new(xmlTree) }}

// maxPooledNodes bounds the tables kept for reuse (about 1.2 MB of nodes):
// the rare huge document should not pin its memory.
const maxPooledNodes = 16 << 10

// newTree returns an empty table with room for nodes nodes and attrs
// attributes, from the pool when it holds one.
func newTree(nodes, attrs int) *xmlTree {
	t := treePool.Get().(*xmlTree)
	if cap(t.nodes) < nodes {
		t.nodes = make([]xmlNode, 0, nodes)
	}
	if cap(t.attrs) < attrs {
		t.attrs = make([]xmlAttr, 0, attrs)
	}
	t.unboundOff, t.unboundPrefix = -1, ""
	return t
}

// release hands the table back to the pool. Its strings are cleared so that
// a pooled table does not keep a document's text alive; t must not be used
// afterwards.
func (t *xmlTree) release() {
	if cap(t.nodes) > maxPooledNodes {
		return
	}
	clear(t.nodes)
	clear(t.attrs)
	t.nodes, t.attrs = t.nodes[:0], t.attrs[:0]
	t.src, t.unboundPrefix = "", ""
	treePool.Put(t)
}

// countChildren returns the number of child elements of node i.
func (t *xmlTree) countChildren(i int32) int {
	n := 0
	for c := t.nodes[i].first; c >= 0; c = t.nodes[c].next {
		n++
	}
	return n
}

// isXSINamespace reports whether ns is an XML Schema instance namespace:
// the 2001 one CWMP uses, or the 1999 draft old SOAP stacks still emit.
func isXSINamespace(ns string) bool {
	return ns == NSXSI || ns == "http://www.w3.org/1999/XMLSchema-instance"
}

// isXSDNamespace reports whether a type QName's namespace names XML Schema
// built-in types: the 2001 and 1999 XML Schema namespaces, and SOAP-ENC,
// whose base64 CPEs use for xsd:base64 (docs/protocol.md §9).
func isXSDNamespace(ns string) bool {
	return ns == NSXSD || ns == NSSOAPEnc || ns == "http://www.w3.org/1999/XMLSchema"
}

// undeclaredTypeNS is the namespace an xsi:type attribute's prefix, or the
// prefix of the type it names, stands for when no declaration binds it:
// "xsi" the XML Schema instance namespace, "xsd" and "xs" XML Schema, others
// none. Some CPE stacks write xsi:type="xsd:unsignedInt" without declaring
// xsi or xsd (docs/protocol.md §2.3); those prefixes have only one meaning
// in a CWMP message, and reading them so keeps the value's type.
func undeclaredTypeNS(prefix string) string {
	switch prefix {
	case "xsi":
		return NSXSI
	case "xsd", "xs":
		return NSXSD
	}
	return ""
}

// xsiType returns the xsi:type attribute of node i.
func (t *xmlTree) xsiType(i int32) (xmlAttr, bool) {
	n := &t.nodes[i]
	for _, a := range t.attrs[n.attr : n.attr+n.nattr] {
		if a.local == "type" && isXSINamespace(a.ns) {
			return a, true
		}
	}
	return xmlAttr{}, false
}

// splitQName splits an XML name the way encoding/xml does, which the
// reference front end relies on: more than one colon is an error; one colon
// with text on both sides separates prefix and local name; otherwise the
// whole name is local.
func splitQName(s string) (prefix, local string, ok bool) {
	colon := -1
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			if colon >= 0 {
				return "", "", false
			}
			colon = i
		}
	}
	if colon <= 0 || colon == len(s)-1 {
		return "", s, true
	}
	return s[:colon], s[colon+1:], true
}
