package datamodel

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// syntaxInfo is what a <syntax> or a named <dataType> says about values.
type syntaxInfo struct {
	prim     string // primitive element name: string, unsignedInt, ...
	ref      string // <dataType ref=...> inside syntax
	base     string // base attribute of a named dataType
	list     bool
	enum     []string
	maxLen   int
	min, max int64
	hasMin   bool
	hasMax   bool
	def      string
	hasDef   bool
	hidden   bool
	secured  bool
}

// primitiveTypes maps data-model primitive element names to wire types
// (docs/protocol.md §9). decimal is a USP type that never reaches CWMP
// messages; a CPE would carry it as a string.
var primitiveTypes = map[string]string{
	"string":       "xsd:string",
	"unsignedInt":  "xsd:unsignedInt",
	"int":          "xsd:int",
	"long":         "xsd:long",
	"unsignedLong": "xsd:unsignedLong",
	"boolean":      "xsd:boolean",
	"dateTime":     "xsd:dateTime",
	"base64":       "xsd:base64",
	"hexBinary":    "xsd:hexBinary",
	"decimal":      "xsd:string",
}

// ParseBBF reads a BBF data-model document and returns its (first)
// model. Objects and parameters whose status is "deleted" or "obsoleted"
// are left out, as a current CPE would; deprecated ones stay, because
// deployed CPEs still carry them (TR-098 DeviceSummary is even a forced
// Inform parameter).
//
// It reads the document with a small tag lexer rather than encoding/xml:
// the TR-181 document is 4 MB of mostly descriptions, and encoding/xml's
// per-token allocations made parsing it take seconds under the race
// detector, which every test that builds a device would pay.
func ParseBBF(doc []byte) (*Model, error) {
	p := modelParser{lx: lexer{b: doc}, dataTypes: map[string]*syntaxInfo{}}
	if err := p.run(); err != nil {
		return nil, err
	}
	if p.model == nil {
		return nil, errors.New("parse data model: no <model> element")
	}
	return p.model, nil
}

type modelParser struct {
	lx        lexer
	dataTypes map[string]*syntaxInfo
	model     *Model
	// pending parameters whose type needs a data type resolved at the end
	// (a document may refer to a data type before defining it).
	pending []pendingParam
}

type pendingParam struct {
	p *ParamDef
	s *syntaxInfo
}

func removed(t *tag) bool {
	s := t.attr("status")
	return s == "deleted" || s == "obsoleted"
}

func (p *modelParser) next() (*tag, error) {
	t, err := p.lx.next()
	if err != nil {
		return nil, fmt.Errorf("parse data model: %w", err)
	}
	return t, nil
}

func (p *modelParser) run() error {
	depth := 0
	for {
		t, err := p.next()
		if err != nil {
			return err
		}
		if t == nil {
			break
		}
		if t.end {
			depth--
			continue
		}
		depth++
		switch {
		case depth == 2 && t.is("dataType"):
			name := t.attr("name")
			s := &syntaxInfo{base: t.attr("base")}
			if err := p.syntax(s); err != nil {
				return err
			}
			depth--
			if name != "" {
				p.dataTypes[name] = s
			}
		case depth == 2 && t.is("model") && p.model == nil:
			p.model = &Model{Name: t.attr("name"), objects: map[string]*ObjectDef{}}
		case depth == 3 && t.is("object") && p.model != nil:
			if err := p.object(t); err != nil {
				return err
			}
			depth--
		case depth >= 2:
			if err := p.skip(); err != nil {
				return err
			}
			depth--
		}
	}
	for _, pp := range p.pending {
		if err := p.resolve(pp.p, pp.s); err != nil {
			return err
		}
	}
	return nil
}

func (p *modelParser) object(t *tag) error {
	path := t.attr("name")
	if removed(t) || path == "" {
		return p.skip()
	}
	o := &ObjectDef{
		Path:       path,
		Table:      strings.HasSuffix(path, ".{i}."),
		Writable:   t.attr("access") == "readWrite",
		NumEntries: t.attr("numEntriesParameter"),
	}
	if p.model.Root == "" && strings.Count(path, ".") == 1 {
		p.model.Root = path
	}
	p.model.objects[path] = o
	for {
		t, err := p.next()
		if err != nil {
			return err
		}
		if t == nil {
			return fmt.Errorf("parse data model object %s: unexpected end of document", path)
		}
		if t.end {
			return nil
		}
		if !t.is("parameter") || removed(t) {
			if err := p.skip(); err != nil {
				return err
			}
			continue
		}
		if err := p.parameter(o, t); err != nil {
			return err
		}
	}
}

func (p *modelParser) parameter(o *ObjectDef, t *tag) error {
	pd := &ParamDef{
		Name:         t.attr("name"),
		Writable:     t.attr("access") == "readWrite",
		ForcedInform: t.attr("forcedInform") == "true",
		ActiveNotify: t.attr("activeNotify"),
	}
	var s *syntaxInfo
	for {
		t, err := p.next()
		if err != nil {
			return err
		}
		if t == nil {
			return fmt.Errorf("parse data model parameter %s%s: unexpected end of document", o.Path, pd.Name)
		}
		if t.end {
			if pd.Name == "" || s == nil {
				return nil
			}
			o.Params = append(o.Params, pd)
			p.pending = append(p.pending, pendingParam{pd, s})
			return nil
		}
		if !t.is("syntax") {
			if err := p.skip(); err != nil {
				return err
			}
			continue
		}
		s = &syntaxInfo{hidden: t.attr("hidden") == "true", secured: t.attr("secured") == "true"}
		if err := p.syntax(s); err != nil {
			return err
		}
	}
}

// syntax reads the children of a <syntax> or named <dataType> element up to
// its end tag.
func (p *modelParser) syntax(s *syntaxInfo) error {
	var stack []string
	listMax, itemMax := 0, 0
	for {
		t, err := p.next()
		if err != nil {
			return err
		}
		if t == nil {
			return errors.New("parse data model syntax: unexpected end of document")
		}
		if t.end {
			if len(stack) == 0 {
				// A list's length limit is that of the whole comma-separated
				// value; an item's limit does not bound it.
				if s.list {
					s.maxLen = listMax
				} else {
					s.maxLen = itemMax
				}
				return nil
			}
			stack = stack[:len(stack)-1]
			continue
		}
		name := string(t.name)
		parent := ""
		if len(stack) > 0 {
			parent = stack[len(stack)-1]
		}
		stack = append(stack, name)
		depth := len(stack)
		switch {
		case name == "description":
			if err := p.skip(); err != nil {
				return err
			}
			stack = stack[:len(stack)-1]
		case depth == 1 && primitiveTypes[name] != "":
			s.prim = name
		case depth == 1 && name == "dataType":
			s.ref = t.attr("ref")
			if s.ref == "" {
				s.ref = t.attr("base")
			}
		case depth == 1 && name == "list":
			s.list = true
		case depth == 1 && name == "default":
			switch t.attr("type") {
			case "object", "factory", "implementation", "":
				s.def, s.hasDef = t.attr("value"), true
			}
		case name == "enumeration":
			s.enum = append(s.enum, t.attr("value"))
		case name == "size":
			if v, err := strconv.Atoi(t.attr("maxLength")); err == nil {
				if parent == "list" {
					listMax = v
				} else {
					itemMax = v
				}
			}
		case name == "range":
			if v, err := strconv.ParseInt(t.attr("minInclusive"), 10, 64); err == nil {
				if !s.hasMin || v < s.min {
					s.min, s.hasMin = v, true
				}
			}
			if v, err := strconv.ParseInt(t.attr("maxInclusive"), 10, 64); err == nil {
				if !s.hasMax || v > s.max {
					s.max, s.hasMax = v, true
				}
			}
		}
	}
}

// skip consumes tokens up to the end of the element whose start was just
// read.
func (p *modelParser) skip() error {
	depth := 1
	for depth > 0 {
		t, err := p.next()
		if err != nil {
			return err
		}
		if t == nil {
			return errors.New("parse data model: unexpected end of document")
		}
		if t.end {
			depth--
		} else {
			depth++
		}
	}
	return nil
}

// resolve fills a parameter's type and constraints from its syntax,
// following named data types down their base chain to a primitive.
func (p *modelParser) resolve(pd *ParamDef, s *syntaxInfo) error {
	pd.Hidden, pd.Secured = s.hidden, s.secured
	pd.List = s.list
	pd.Default, pd.HasDefault = s.def, s.hasDef
	pd.Enum = s.enum
	pd.MaxLen = s.maxLen
	pd.Min, pd.HasMin, pd.Max, pd.HasMax = s.min, s.hasMin, s.max, s.hasMax
	prim := s.prim
	ref := s.ref
	for hops := 0; prim == "" && ref != ""; hops++ {
		if hops > 16 {
			return fmt.Errorf("parse data model parameter %s: data type %q: base chain too long", pd.Name, s.ref)
		}
		dt, ok := p.dataTypes[ref]
		if !ok {
			return fmt.Errorf("parse data model parameter %s: unknown data type %q", pd.Name, ref)
		}
		if pd.DataType == "" {
			pd.DataType = ref
		}
		if pd.MaxLen == 0 && !pd.List {
			pd.MaxLen = dt.maxLen
		}
		if len(pd.Enum) == 0 {
			pd.Enum = dt.enum
		}
		if !pd.HasMin && dt.hasMin {
			pd.Min, pd.HasMin = dt.min, true
		}
		if !pd.HasMax && dt.hasMax {
			pd.Max, pd.HasMax = dt.max, true
		}
		prim = dt.prim
		ref = dt.base
		if prim == "" && dt.ref != "" {
			ref = dt.ref
		}
	}
	if prim == "" {
		return fmt.Errorf("parse data model parameter %s: syntax names no type", pd.Name)
	}
	pd.Type = primitiveTypes[prim]
	if pd.List {
		// A list travels as one comma-separated string whatever its items.
		pd.Type = "xsd:string"
	}
	return nil
}

// lexer yields the start and end tags of an XML document, skipping text,
// comments, processing instructions, CDATA sections and the DOCTYPE. It
// trusts the document to be well-formed (the BBF files are) and checks only
// what it needs to make progress.
type lexer struct {
	b       []byte
	i       int
	pending bool // a self-closing tag was returned; its end comes next
	t       tag
}

// tag is a start or end tag. name and raw point into the document.
type tag struct {
	end  bool
	name []byte
	raw  []byte // the attribute text of a start tag
}

func (t *tag) is(name string) bool { return string(t.name) == name }

// attr returns the value of the attribute with this local name (prefixes
// ignored), entity references decoded; "" when absent.
func (t *tag) attr(name string) string {
	r := t.raw
	for len(r) > 0 {
		r = bytes.TrimLeft(r, " \t\r\n")
		eq := bytes.IndexByte(r, '=')
		if eq < 0 {
			return ""
		}
		key := bytes.TrimSpace(r[:eq])
		if c := bytes.IndexByte(key, ':'); c >= 0 {
			key = key[c+1:]
		}
		r = bytes.TrimLeft(r[eq+1:], " \t\r\n")
		if len(r) == 0 || (r[0] != '"' && r[0] != '\'') {
			return ""
		}
		q := r[0]
		end := bytes.IndexByte(r[1:], q)
		if end < 0 {
			return ""
		}
		val := r[1 : 1+end]
		r = r[2+end:]
		if string(key) == name {
			return unescapeAttr(val)
		}
	}
	return ""
}

var attrEntities = strings.NewReplacer("&quot;", "\"", "&apos;", "'", "&lt;", "<", "&gt;", ">", "&amp;", "&")

func unescapeAttr(v []byte) string {
	if bytes.IndexByte(v, '&') < 0 {
		return string(v)
	}
	return attrEntities.Replace(string(v))
}

// next returns the next tag, nil at the end of the document.
func (lx *lexer) next() (*tag, error) {
	if lx.pending {
		lx.pending = false
		lx.t.end, lx.t.raw = true, nil
		return &lx.t, nil
	}
	for {
		lt := bytes.IndexByte(lx.b[lx.i:], '<')
		if lt < 0 {
			return nil, nil
		}
		lx.i += lt
		rest := lx.b[lx.i:]
		switch {
		case bytes.HasPrefix(rest, []byte("<!--")):
			if err := lx.skipPast("-->"); err != nil {
				return nil, err
			}
			continue
		case bytes.HasPrefix(rest, []byte("<![CDATA[")):
			if err := lx.skipPast("]]>"); err != nil {
				return nil, err
			}
			continue
		case bytes.HasPrefix(rest, []byte("<?")):
			if err := lx.skipPast("?>"); err != nil {
				return nil, err
			}
			continue
		case bytes.HasPrefix(rest, []byte("<!")):
			if err := lx.skipPast(">"); err != nil {
				return nil, err
			}
			continue
		}
		end := lx.tagEnd(rest)
		if end < 0 {
			return nil, fmt.Errorf("unterminated tag at byte %d", lx.i)
		}
		body := rest[1:end]
		lx.i += end + 1
		lx.t = tag{}
		if len(body) > 0 && body[0] == '/' {
			lx.t.end = true
			lx.t.name = bytes.TrimSpace(body[1:])
		} else {
			if len(body) > 0 && body[len(body)-1] == '/' {
				body = body[:len(body)-1]
				lx.pending = true
			}
			n := 0
			for n < len(body) && body[n] != ' ' && body[n] != '\t' && body[n] != '\n' && body[n] != '\r' {
				n++
			}
			lx.t.name, lx.t.raw = body[:n], body[n:]
		}
		if c := bytes.IndexByte(lx.t.name, ':'); c >= 0 {
			lx.t.name = lx.t.name[c+1:]
		}
		if len(lx.t.name) == 0 {
			return nil, fmt.Errorf("tag without a name at byte %d", lx.i)
		}
		return &lx.t, nil
	}
}

// tagEnd returns the index of the '>' closing the tag at the start of s,
// skipping quoted attribute values, or -1.
func (lx *lexer) tagEnd(s []byte) int {
	var quote byte
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '>':
			return i
		}
	}
	return -1
}

func (lx *lexer) skipPast(marker string) error {
	j := bytes.Index(lx.b[lx.i:], []byte(marker))
	if j < 0 {
		return fmt.Errorf("unterminated %q at byte %d", marker, lx.i)
	}
	lx.i += j + len(marker)
	return nil
}
