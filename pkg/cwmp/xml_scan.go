package cwmp

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// The scanner is a purpose-built, single-pass, namespace-aware XML parser
// for the hot path (the Inform of every session). It accepts exactly the
// well-formed documents the reference front end (etree over encoding/xml in
// strict mode) accepts, minus the things CWMP never needs and an ACS must
// not allow, each a deliberate rule shared by both front ends:
//   - no DOCTYPE or other <!...> declarations (no entity expansion attacks);
//   - element and attribute names are ASCII (every CWMP name is);
//   - the XML declaration only at the start (prepare consumes it);
//   - at most maxNamespaceBindings namespace declarations in scope.
//
// Work stays linear in the input whatever it holds: one pass, vectorised
// searches for '<', quotes and terminators, a map once an element has many
// attributes, and text split by comments joined in one buffer.
//
// Character-level validity (UTF-8, characters XML forbids) is settled before
// scanning by prepare (xml_charset.go), which replaces bad bytes, so the
// scanner only has to check the characters entities produce.

// xmlError is a front end's error: the sentinel, where, and what.
type xmlError struct {
	err    error
	off    int // byte offset in the prepared text; -1 when unknown
	detail string
}

func malformed(off int, detail string) *xmlError {
	return &xmlError{err: ErrMalformed, off: off, detail: detail}
}

// nameByte classifies ASCII bytes of XML names: 1 may start a name, 2 may
// only continue one. Bytes >= 0x80 are 0: names are ASCII (see above). It is
// a read-only table.
var nameByte = [256]uint8{
	':': 1, '_': 1,
	'A': 1, 'B': 1, 'C': 1, 'D': 1, 'E': 1, 'F': 1, 'G': 1, 'H': 1, 'I': 1,
	'J': 1, 'K': 1, 'L': 1, 'M': 1, 'N': 1, 'O': 1, 'P': 1, 'Q': 1, 'R': 1,
	'S': 1, 'T': 1, 'U': 1, 'V': 1, 'W': 1, 'X': 1, 'Y': 1, 'Z': 1,
	'a': 1, 'b': 1, 'c': 1, 'd': 1, 'e': 1, 'f': 1, 'g': 1, 'h': 1, 'i': 1,
	'j': 1, 'k': 1, 'l': 1, 'm': 1, 'n': 1, 'o': 1, 'p': 1, 'q': 1, 'r': 1,
	's': 1, 't': 1, 'u': 1, 'v': 1, 'w': 1, 'x': 1, 'y': 1, 'z': 1,
	'-': 2, '.': 2,
	'0': 2, '1': 2, '2': 2, '3': 2, '4': 2, '5': 2, '6': 2, '7': 2, '8': 2, '9': 2,
}

// scanName returns the end of the XML name starting at i, or i when no name
// starts there.
func scanName(s string, i int) int {
	if i >= len(s) || nameByte[s[i]] != 1 {
		return i
	}
	j := i + 1
	for j < len(s) && nameByte[s[j]] != 0 {
		j++
	}
	return j
}

func isXMLSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

func skipXMLSpace(s string, i int) int {
	for i < len(s) && isXMLSpace(s[i]) {
		i++
	}
	return i
}

func isAllXMLSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isXMLSpace(s[i]) {
			return false
		}
	}
	return true
}

// maxNamespaceBindings bounds the namespace declarations in scope, which
// keeps prefix lookups (a backward scan) cheap on hostile input. A CWMP
// message uses five or six.
const maxNamespaceBindings = 64

// xmlBinding is one in-scope namespace declaration.
type xmlBinding struct {
	prefix, uri string
}

func lookupNS(binds []xmlBinding, prefix string) string {
	for k := len(binds) - 1; k >= 0; k-- {
		if binds[k].prefix == prefix {
			return binds[k].uri
		}
	}
	return ""
}

// scanFrame is an open element.
type scanFrame struct {
	node  int32
	last  int32  // last child element so far, -1 if none
	binds int32  // length of the binding stack before this element's declarations
	name  string // raw name, to match the end tag
}

// scanXML parses s from offset start into a node table. maxDepth bounds
// element nesting.
func scanXML(s string, start, maxDepth int) (*xmlTree, *xmlError) {
	// Upper bounds that cost one vectorised pass each and save the slices
	// from growing: every element has a '<' (and most an end tag with
	// another), every attribute an '='.
	lt := strings.Count(s[start:], "<")
	t := newTree(lt/2+1, strings.Count(s[start:], "="))
	t.src = s
	var frameBuf [40]scanFrame
	stack := frameBuf[:0]
	var bindBuf [16]xmlBinding
	binds := bindBuf[:0]
	haveRoot := false
	acc := textAcc{node: -1}

	i := start
	n := len(s)
	for i < n {
		// Character data up to the next markup.
		j := strings.IndexByte(s[i:], '<')
		if j < 0 {
			j = n
		} else {
			j += i
		}
		if j > i {
			if err := scanText(t, s, i, j, stack, false, &acc); err != nil {
				return nil, err
			}
			i = j
			if i == n {
				break
			}
		}
		// Markup at i.
		if i+1 >= n {
			return nil, malformed(i, "unexpected end of input after <")
		}
		switch s[i+1] {
		case '/':
			k := scanName(s, i+2)
			if k == i+2 {
				return nil, malformed(i, "expected element name after </")
			}
			name := s[i+2 : k]
			k = skipXMLSpace(s, k)
			if k >= n {
				return nil, malformed(k, "unexpected end of input in end tag </"+name)
			}
			if s[k] != '>' {
				return nil, malformed(k, "invalid characters between </"+name+" and >")
			}
			if len(stack) == 0 || stack[len(stack)-1].name != name {
				return nil, malformed(i, "unexpected end of element </"+name+">")
			}
			top := stack[len(stack)-1]
			t.nodes[top.node].ce = int32(i)
			if acc.node == top.node {
				t.nodes[top.node].text = string(acc.buf)
				acc.node = -1
			}
			binds = binds[:top.binds]
			stack = stack[:len(stack)-1]
			i = k + 1

		case '?':
			k := scanName(s, i+2)
			if k == i+2 {
				return nil, malformed(i, "expected target name after <?")
			}
			target := s[i+2 : k]
			if target == "xml" {
				return nil, malformed(i, "XML declaration not at the start of the document")
			}
			k = skipXMLSpace(s, k)
			e := strings.Index(s[k:], "?>")
			if e < 0 {
				return nil, malformed(i, "unterminated processing instruction <?"+target)
			}
			i = k + e + 2

		case '!':
			switch {
			case strings.HasPrefix(s[i:], "<!--"):
				e := strings.Index(s[i+4:], "--")
				if e < 0 {
					return nil, malformed(i, "unterminated comment")
				}
				e += i + 4
				if e+2 >= n {
					return nil, malformed(i, "unterminated comment")
				}
				if s[e+2] != '>' {
					return nil, malformed(e, `"--" not allowed in comments`)
				}
				i = e + 3
			case strings.HasPrefix(s[i:], "<![CDATA["):
				e := strings.Index(s[i+9:], "]]>")
				if e < 0 {
					return nil, malformed(i, "unterminated CDATA section")
				}
				e += i + 9
				if err := scanText(t, s, i+9, e, stack, true, &acc); err != nil {
					return nil, err
				}
				i = e + 3
			case strings.HasPrefix(s[i:], "<!-"):
				return nil, malformed(i, "invalid sequence <!- not part of <!--")
			case strings.HasPrefix(s[i:], "<!["):
				return nil, malformed(i, "invalid <![ sequence")
			default:
				// DOCTYPE, ENTITY, ...: internal subsets enable entity
				// expansion attacks and CWMP never needs them.
				return nil, malformed(i, "DOCTYPE and other <! declarations are not allowed")
			}

		default:
			var err *xmlError
			if i, stack, binds, err = scanStartTag(t, s, i, stack, binds, &haveRoot, maxDepth); err != nil {
				return nil, err
			}
			if acc.node >= 0 && t.nodes[acc.node].first >= 0 {
				acc.node = -1 // it has a child now: its text is dropped
			}
		}
	}
	if len(stack) > 0 {
		top := stack[len(stack)-1]
		return nil, malformed(n, "unexpected end of input: element <"+top.name+"> not closed")
	}
	if !haveRoot {
		return nil, malformed(n, "no root element")
	}
	return t, nil
}

// scanStartTag parses the start tag at s[i] ('<' followed by a name), adds
// its node and attributes, and returns the offset after it with the updated
// element and binding stacks (passed by value so that their first backing
// arrays can live on scanXML's stack).
func scanStartTag(t *xmlTree, s string, i int, stack []scanFrame, binds []xmlBinding, haveRoot *bool, maxDepth int) (int, []scanFrame, []xmlBinding, *xmlError) {
	n := len(s)
	k := scanName(s, i+1)
	if k == i+1 {
		return 0, nil, nil, malformed(i, "expected element name after <")
	}
	qname := s[i+1 : k]
	prefix, local, ok := splitQName(qname)
	if !ok {
		return 0, nil, nil, malformed(i, "invalid element name "+qname)
	}
	parent := int32(-1)
	if len(stack) > 0 {
		parent = stack[len(stack)-1].node
	} else if *haveRoot {
		return 0, nil, nil, malformed(i, "more than one root element")
	}
	idx := int32(len(t.nodes))
	a0 := int32(len(t.attrs))
	t.nodes = append(t.nodes, xmlNode{local: local, parent: parent, first: -1, next: -1, attr: a0, off: int32(i)})
	mark := int32(len(binds))

	self := false
	var seen map[[2]string]int32 // attribute index by (raw prefix or nsXMLNS, local)
	for {
		k = skipXMLSpace(s, k)
		if k >= n {
			return 0, nil, nil, malformed(k, "unexpected end of input in element <"+qname+">")
		}
		c := s[k]
		if c == '>' {
			k++
			break
		}
		if c == '/' {
			if k+1 < n && s[k+1] == '>' {
				self = true
				k += 2
				break
			}
			return 0, nil, nil, malformed(k, "expected /> in element <"+qname+">")
		}
		an := k
		k = scanName(s, k)
		if k == an {
			return 0, nil, nil, malformed(an, "expected attribute name in element <"+qname+">")
		}
		araw := s[an:k]
		apfx, aloc, ok := splitQName(araw)
		if !ok {
			return 0, nil, nil, malformed(an, "invalid attribute name "+araw)
		}
		k = skipXMLSpace(s, k)
		if k >= n || s[k] != '=' {
			return 0, nil, nil, malformed(k, "attribute "+araw+" without = in element <"+qname+">")
		}
		k = skipXMLSpace(s, k+1)
		if k >= n || (s[k] != '"' && s[k] != '\'') {
			return 0, nil, nil, malformed(k, "unquoted or missing value of attribute "+araw)
		}
		q := s[k]
		vs := k + 1
		ve := strings.IndexByte(s[vs:], q)
		if ve < 0 {
			return 0, nil, nil, malformed(k, "unterminated value of attribute "+araw)
		}
		ve += vs
		val := s[vs:ve]
		if lt := strings.IndexByte(val, '<'); lt >= 0 {
			return 0, nil, nil, malformed(vs+lt, "unescaped < in value of attribute "+araw)
		}
		if needsUnescape(val) {
			var err *xmlError
			if val, err = unescapeText(val, vs, false); err != nil {
				return 0, nil, nil, err
			}
		}
		k = ve + 1

		// A declaration is stored under nsXMLNS with the declared prefix as
		// local name; other attributes keep their raw prefix in ns until the
		// tag is complete, because declarations may follow their use.
		ans, alocal, decl := apfx, aloc, false
		if apfx == "xmlns" {
			ans, decl = nsXMLNS, true
		} else if apfx == "" && aloc == "xmlns" {
			ans, alocal, decl = nsXMLNS, "", true
		}
		// The last of duplicate attributes wins, in the first's place, as
		// in etree. Past a few attributes a map keeps this linear.
		dup := int32(-1)
		if seen == nil && int32(len(t.attrs))-a0 >= 16 {
			seen = make(map[[2]string]int32)
			for x := a0; x < int32(len(t.attrs)); x++ {
				seen[[2]string{t.attrs[x].ns, t.attrs[x].local}] = x
			}
		}
		if seen != nil {
			if x, ok := seen[[2]string{ans, alocal}]; ok {
				dup = x
			}
		} else {
			for x := a0; x < int32(len(t.attrs)); x++ {
				if a := &t.attrs[x]; a.local == alocal && a.ns == ans {
					dup = x
					break
				}
			}
		}
		if dup >= 0 {
			t.attrs[dup].value = val
			if decl {
				for b := len(binds) - 1; b >= int(mark); b-- {
					if binds[b].prefix == alocal {
						binds[b].uri = val
						break
					}
				}
			}
			continue
		}
		if seen != nil {
			seen[[2]string{ans, alocal}] = int32(len(t.attrs))
		}
		t.attrs = append(t.attrs, xmlAttr{local: alocal, ns: ans, value: val})
		if decl {
			if len(binds) >= maxNamespaceBindings {
				return 0, nil, nil, malformed(an, "more than "+strconv.Itoa(maxNamespaceBindings)+" namespace declarations in scope")
			}
			binds = append(binds, xmlBinding{prefix: alocal, uri: val})
		}
	}

	if len(stack) >= maxDepth {
		// Checked after the attributes, as the reference front end does.
		return 0, nil, nil, &xmlError{err: ErrTooDeep, off: i, detail: "element <" + qname + "> nested deeper than " + strconv.Itoa(maxDepth)}
	}

	// Resolve prefixes now that every declaration of the tag is known.
	node := &t.nodes[idx]
	node.ns = lookupNS(binds, prefix)
	node.cs, node.ce = int32(k), -1
	if self {
		node.ce = int32(k)
	}
	if node.ns == "" && prefix != "" && prefix != "xml" && t.unboundOff < 0 {
		t.unboundOff, t.unboundPrefix = i, prefix
	}
	node.nattr = int32(len(t.attrs)) - a0
	for x := a0; x < int32(len(t.attrs)); x++ {
		a := &t.attrs[x]
		if a.ns == nsXMLNS {
			continue
		}
		if a.ns != "" {
			raw := a.ns
			a.ns = lookupNS(binds, raw)
			if a.ns == "" && raw != "xml" && t.unboundOff < 0 {
				t.unboundOff, t.unboundPrefix = i, raw
			}
			if a.ns == "" && a.local == "type" {
				a.ns = undeclaredTypeNS(raw)
			}
		}
		if a.local == "type" && isXSINamespace(a.ns) {
			p, _ := qnameParts(a.value)
			if a.valueNS = lookupNS(binds, p); a.valueNS == "" {
				a.valueNS = undeclaredTypeNS(p)
			}
		}
	}

	// Link into the parent.
	if parent >= 0 {
		f := &stack[len(stack)-1]
		if f.last < 0 {
			t.nodes[parent].first = idx
			t.nodes[parent].text = "" // mixed content: see xmlNode.text
		} else {
			t.nodes[f.last].next = idx
		}
		f.last = idx
	} else {
		*haveRoot = true
	}
	if self {
		binds = binds[:mark]
	} else {
		stack = append(stack, scanFrame{node: idx, last: -1, binds: mark, name: qname})
	}
	return k, stack, binds, nil
}

// qnameParts splits the QName value of an attribute such as xsi:type
// (surrounding white space ignored) into prefix and local part.
func qnameParts(v string) (prefix, local string) {
	v = trimXMLSpace(v)
	if c := strings.IndexByte(v, ':'); c >= 0 {
		return v[:c], v[c+1:]
	}
	return "", v
}

// textAcc accumulates the text of an element whose character data comes in
// several runs (split by comments or CDATA sections), so that joining them
// stays linear. Only the innermost open element without children collects
// text, so one accumulator is enough.
type textAcc struct {
	node int32 // the element collecting, -1 if none
	buf  []byte
}

// scanText handles the character data s[i:j] (raw text, or the inside of a
// CDATA section when cdata is set) found inside the innermost open element,
// or outside the root when stack is empty.
func scanText(t *xmlTree, s string, i, j int, stack []scanFrame, cdata bool, acc *textAcc) *xmlError {
	run := s[i:j]
	if !cdata {
		if e := strings.Index(run, "]]>"); e >= 0 {
			return malformed(i+e, "unescaped ]]> not in CDATA section")
		}
	}
	if len(stack) == 0 || stack[len(stack)-1].last >= 0 {
		// Outside the root only white space may appear; inside an element
		// with child elements the text is dropped, but entities must still
		// be valid.
		if !needsUnescape(run) && (len(stack) > 0 || isAllXMLSpace(run)) {
			return nil
		}
		dec := run
		if needsUnescape(run) {
			var err *xmlError
			if dec, err = unescapeText(run, i, cdata); err != nil {
				return err
			}
		}
		if len(stack) == 0 && !isAllXMLSpace(dec) {
			return malformed(i, "text outside the root element")
		}
		return nil
	}
	if needsUnescape(run) {
		var err *xmlError
		if run, err = unescapeText(run, i, cdata); err != nil {
			return err
		}
	}
	idx := stack[len(stack)-1].node
	node := &t.nodes[idx]
	switch {
	case acc.node == idx:
		acc.buf = append(acc.buf, run...)
	case node.text == "":
		node.text = run
	default:
		acc.node = idx
		acc.buf = append(append(acc.buf[:0], node.text...), run...)
	}
	return nil
}

// needsUnescape reports whether s holds an entity or a carriage return,
// which unescapeText must rewrite.
func needsUnescape(s string) bool {
	return strings.IndexByte(s, '&') >= 0 || strings.IndexByte(s, '\r') >= 0
}

// xmlEntities are the predefined entities; DOCTYPE is refused, so there are
// no others.
func predefinedEntity(name string) (byte, bool) {
	switch name {
	case "lt":
		return '<', true
	case "gt":
		return '>', true
	case "amp":
		return '&', true
	case "apos":
		return '\'', true
	case "quot":
		return '"', true
	}
	return 0, false
}

// unescapeText replaces entity and character references (unless cdata) and
// normalises line ends (\r\n and lone \r become \n) in s, which starts at
// offset base of the prepared text.
func unescapeText(s string, base int, cdata bool) (string, *xmlError) {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\r':
			b = append(b, '\n')
			i++
			if i < len(s) && s[i] == '\n' {
				i++
			}
		case c == '&' && !cdata:
			r, size, ok := parseReference(s[i:])
			if !ok {
				end := min(i+size, len(s))
				return "", malformed(base+i, "invalid character entity "+strconv.Quote(s[i:end]))
			}
			if !isXMLChar(r) {
				return "", malformed(base+i, "character reference to illegal character "+strconv.QuoteRuneToASCII(r))
			}
			b = utf8.AppendRune(b, r)
			i += size
		default:
			b = append(b, c)
			i++
		}
	}
	return string(b), nil
}

// parseReference parses the reference at the start of s ("&...;") and
// returns the character and the reference's length. On failure size tells
// how much to quote in the error.
func parseReference(s string) (r rune, size int, ok bool) {
	if len(s) > 1 && s[1] == '#' {
		i, base := 2, 10
		if i < len(s) && s[i] == 'x' {
			i, base = 3, 16
		}
		d0 := i
		var v uint64
		for ; i < len(s); i++ {
			c := s[i]
			var d uint64
			switch {
			case c >= '0' && c <= '9':
				d = uint64(c - '0')
			case base == 16 && c >= 'a' && c <= 'f':
				d = uint64(c-'a') + 10
			case base == 16 && c >= 'A' && c <= 'F':
				d = uint64(c-'A') + 10
			default:
				goto done
			}
			if v <= utf8.MaxRune {
				v = v*uint64(base) + d
			}
		}
	done:
		if i == d0 || i >= len(s) || s[i] != ';' || v > utf8.MaxRune {
			return 0, i + 1, false
		}
		r = rune(v)
		if r >= 0xD800 && r <= 0xDFFF {
			// A surrogate is no character; like encoding/xml, keep the
			// replacement character instead.
			r = utf8.RuneError
		}
		return r, i + 1, true
	}
	e := scanName(s, 1)
	if e >= len(s) || s[e] != ';' {
		return 0, e + 1, false
	}
	c, ok := predefinedEntity(s[1:e])
	if !ok {
		return 0, e + 1, false
	}
	return rune(c), e + 1, true
}

// isXMLChar reports whether XML 1.0 allows the character r.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// trimXMLSpace trims XML white space (space, tab, CR, LF) from both ends.
func trimXMLSpace(s string) string {
	i, j := 0, len(s)
	for i < j && isXMLSpace(s[i]) {
		i++
	}
	for j > i && isXMLSpace(s[j-1]) {
		j--
	}
	return s[i:j]
}
