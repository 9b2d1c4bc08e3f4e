package datamodel

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The table format: UTF-8 text, one record per line, fields separated by
// tabs; field text escapes backslash, tab, newline and carriage return as
// \\, \t, \n and \r. Lines starting with "#" are comments (the license
// notice and provenance the generator writes). Records:
//
//	model  NAME  ROOT
//	o      PATH  FLAGS  NUM-ENTRIES-PARAMETER
//	p      NAME  TYPE  FLAGS  ACTIVE-NOTIFY  DATA-TYPE  MAX-LEN  MIN  MAX  DEFAULT  ENUM...
//
// A "p" record belongs to the "o" record before it. Object FLAGS: "w" for
// writable. Parameter FLAGS, any of: w writable, f forced Inform, l list,
// h hidden, s secured, d has a default (DEFAULT may be empty). MAX-LEN is
// empty for none, MIN and MAX empty when unbounded; every field after MAX
// is one enumeration value. TYPE drops the "xsd:" prefix. Objects come
// sorted by path, parameters in document order, so that the same model
// always gives the same bytes.

// tableMagic is the first record of every table; a reader refuses any other
// version of the format.
const tableMagic = "fleetacs-datamodel-table\t1"

// MarshalTable writes m in the table format, after the comment lines of
// notice (each line prefixed with "# ").
func MarshalTable(m *Model, notice string) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(strings.TrimRight(notice, "\n"), "\n") {
		if line == "" {
			b.WriteString("#\n")
			continue
		}
		b.WriteString("# " + line + "\n")
	}
	b.WriteString(tableMagic + "\n")
	writeFields(&b, "model", m.Name, m.Root)
	for _, path := range m.Paths() {
		o := m.objects[path]
		flags := ""
		if o.Writable {
			flags = "w"
		}
		writeFields(&b, "o", o.Path, flags, o.NumEntries)
		for _, p := range o.Params {
			f := []string{"p", p.Name, strings.TrimPrefix(p.Type, "xsd:"), paramFlags(p), p.ActiveNotify, p.DataType,
				optInt(int64(p.MaxLen), p.MaxLen > 0), optInt(p.Min, p.HasMin), optInt(p.Max, p.HasMax), p.Default}
			writeFields(&b, append(f, p.Enum...)...)
		}
	}
	return b.Bytes()
}

func paramFlags(p *ParamDef) string {
	var f []byte
	for _, x := range []struct {
		on bool
		c  byte
	}{{p.Writable, 'w'}, {p.ForcedInform, 'f'}, {p.List, 'l'}, {p.Hidden, 'h'}, {p.Secured, 's'}, {p.HasDefault, 'd'}} {
		if x.on {
			f = append(f, x.c)
		}
	}
	return string(f)
}

func optInt(v int64, ok bool) string {
	if !ok {
		return ""
	}
	return strconv.FormatInt(v, 10)
}

var fieldEscaper = strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`)

func writeFields(b *bytes.Buffer, fields ...string) {
	for i, f := range fields {
		if i > 0 {
			b.WriteByte('\t')
		}
		b.WriteString(fieldEscaper.Replace(f))
	}
	b.WriteByte('\n')
}

// UnmarshalTable reads a model written by MarshalTable.
func UnmarshalTable(data []byte) (*Model, error) {
	var m *Model
	var obj *ObjectDef
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	magic := false
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		if !magic {
			if line != tableMagic {
				return nil, fmt.Errorf("read data-model table line %d: not a table of format %q", n, tableMagic)
			}
			magic = true
			continue
		}
		f, err := splitFields(line)
		if err != nil {
			return nil, fmt.Errorf("read data-model table line %d: %w", n, err)
		}
		switch {
		case f[0] == "model" && len(f) == 3 && m == nil:
			m = &Model{Name: f[1], Root: f[2], objects: map[string]*ObjectDef{}}
		case f[0] == "o" && len(f) == 4 && m != nil:
			obj = &ObjectDef{Path: f[1], Table: strings.HasSuffix(f[1], ".{i}."), Writable: f[2] == "w", NumEntries: f[3]}
			if _, dup := m.objects[obj.Path]; dup {
				return nil, fmt.Errorf("read data-model table line %d: object %s twice", n, obj.Path)
			}
			m.objects[obj.Path] = obj
		case f[0] == "p" && len(f) >= 10 && obj != nil:
			p, err := paramOf(f)
			if err != nil {
				return nil, fmt.Errorf("read data-model table line %d: %w", n, err)
			}
			obj.Params = append(obj.Params, p)
		default:
			return nil, fmt.Errorf("read data-model table line %d: unexpected %q record with %d fields", n, f[0], len(f))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read data-model table: %w", err)
	}
	if m == nil {
		return nil, errors.New("read data-model table: no model record")
	}
	if _, ok := m.objects[m.Root]; !ok {
		return nil, fmt.Errorf("read data-model table: no root object %s", m.Root)
	}
	return m, nil
}

func paramOf(f []string) (*ParamDef, error) {
	p := &ParamDef{Name: f[1], Type: "xsd:" + f[2], ActiveNotify: f[4], DataType: f[5], Default: f[9]}
	for _, c := range f[3] {
		switch c {
		case 'w':
			p.Writable = true
		case 'f':
			p.ForcedInform = true
		case 'l':
			p.List = true
		case 'h':
			p.Hidden = true
		case 's':
			p.Secured = true
		case 'd':
			p.HasDefault = true
		default:
			return nil, fmt.Errorf("parameter %s: unknown flag %q", p.Name, c)
		}
	}
	var err error
	if f[6] != "" {
		if p.MaxLen, err = strconv.Atoi(f[6]); err != nil {
			return nil, fmt.Errorf("parameter %s: max length: %w", p.Name, err)
		}
	}
	if f[7] != "" {
		if p.Min, err = strconv.ParseInt(f[7], 10, 64); err != nil {
			return nil, fmt.Errorf("parameter %s: minimum: %w", p.Name, err)
		}
		p.HasMin = true
	}
	if f[8] != "" {
		if p.Max, err = strconv.ParseInt(f[8], 10, 64); err != nil {
			return nil, fmt.Errorf("parameter %s: maximum: %w", p.Name, err)
		}
		p.HasMax = true
	}
	if len(f) > 10 {
		p.Enum = f[10:]
	}
	return p, nil
}

// splitFields splits a record at its tabs and undoes the escaping.
func splitFields(line string) ([]string, error) {
	raw := strings.Split(line, "\t")
	for i, r := range raw {
		if !strings.Contains(r, `\`) {
			continue
		}
		var b strings.Builder
		for j := 0; j < len(r); j++ {
			if r[j] != '\\' {
				b.WriteByte(r[j])
				continue
			}
			if j+1 == len(r) {
				return nil, errors.New("escape at the end of a field")
			}
			j++
			switch r[j] {
			case '\\':
				b.WriteByte('\\')
			case 't':
				b.WriteByte('\t')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			default:
				return nil, fmt.Errorf("unknown escape \\%c", r[j])
			}
		}
		raw[i] = b.String()
	}
	return raw, nil
}
