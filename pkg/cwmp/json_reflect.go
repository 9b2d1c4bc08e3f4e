package cwmp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The JSON form is written and read by reflection over the message structs'
// json tags rather than by encoding/json, because encoding/json writes nil
// lists as null, escapes <, > and & in URLs, matches keys without regard to
// case and reports neither unknown keys nor type errors with a position.
// Both directions share one field table (jsonFields), so what one writes the
// other reads.

// jsonField is one JSON key of a struct.
type jsonField struct {
	name      string
	index     []int // for reflect.Value.FieldByIndex, through embedded structs
	depth     int   // embedding depth; the shallowest field of a name wins
	omitEmpty bool
}

// fieldCache memoises jsonFields for the duration of one Marshal or
// Unmarshal call (a list of 40 parameters reuses one table). A cache shared
// across calls would be package-level mutable state, which pkg/cwmp keeps
// out.
type fieldCache map[reflect.Type][]jsonField

func (c fieldCache) fields(t reflect.Type) []jsonField {
	f, ok := c[t]
	if !ok {
		f = jsonFields(t)
		c[t] = f
	}
	return f
}

// jsonFields lists the JSON keys of struct type t in declaration order,
// flattening embedded structs the way encoding/json does (AutonOpResult
// embeds OpResult).
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	var walk func(t reflect.Type, index []int, depth int)
	walk = func(t reflect.Type, index []int, depth int) {
		for i := range t.NumField() {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(slices.Clip(index), i)
			if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
				walk(sf.Type, idx, depth+1)
				continue
			}
			if !sf.IsExported() {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			f := jsonField{name: name, index: idx, depth: depth,
				omitEmpty: slices.Contains(strings.Split(opts, ","), "omitempty")}
			if j := slices.IndexFunc(out, func(g jsonField) bool { return g.name == name }); j >= 0 {
				if out[j].depth > depth {
					out[j] = f
				}
				continue
			}
			out = append(out, f)
		}
	}
	walk(t, nil, 0)
	return out
}

// isEmptyJSON reports whether an omitempty field is left out.
func isEmptyJSON(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String, reflect.Slice:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint() == 0
	}
	return false
}

// jsonWriter builds indented JSON. first is true while the innermost open
// object or array has no member yet.
type jsonWriter struct {
	buf    []byte
	depth  int
	first  bool
	fields fieldCache
}

func (w *jsonWriter) newline() {
	w.buf = append(w.buf, '\n')
	for range w.depth {
		w.buf = append(w.buf, "  "...)
	}
}

func (w *jsonWriter) begin(open byte) {
	w.buf = append(w.buf, open)
	w.depth++
	w.first = true
}

func (w *jsonWriter) end(close byte) {
	w.depth--
	if !w.first {
		w.newline()
	}
	w.buf = append(w.buf, close)
	w.first = false
}

// elem starts a member of the open object or array.
func (w *jsonWriter) elem() {
	if !w.first {
		w.buf = append(w.buf, ',')
	}
	w.first = false
	w.newline()
}

func (w *jsonWriter) key(k string) {
	w.elem()
	w.str(k)
	w.buf = append(w.buf, ": "...)
}

func (w *jsonWriter) raw(s string)   { w.buf = append(w.buf, s...) }
func (w *jsonWriter) boolean(b bool) { w.buf = strconv.AppendBool(w.buf, b) }
func (w *jsonWriter) uint(n uint64)  { w.buf = strconv.AppendUint(w.buf, n, 10) }
func (w *jsonWriter) int(n int64)    { w.buf = strconv.AppendInt(w.buf, n, 10) }
func (w *jsonWriter) str(s string)   { w.buf = appendJSONString(w.buf, s) }
func (w *jsonWriter) fail(path string, t reflect.Type) error {
	return fmt.Errorf("%s: cannot write Go type %s as JSON", path, t)
}

// value writes v, a field of a message struct, at path (for errors).
func (w *jsonWriter) value(v reflect.Value, path string) error {
	switch v.Kind() {
	case reflect.String:
		w.str(v.String())
	case reflect.Bool:
		w.boolean(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		w.int(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		w.uint(v.Uint())
	case reflect.Slice:
		// A nil list is written as [] like an empty one: readers of the
		// JSON should not have to tell "none" from "null".
		w.begin('[')
		for i := range v.Len() {
			w.elem()
			if err := w.value(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		w.end(']')
	case reflect.Struct:
		w.begin('{')
		if w.fields == nil {
			w.fields = make(fieldCache)
		}
		for _, f := range w.fields.fields(v.Type()) {
			fv := v.FieldByIndex(f.index)
			if f.omitEmpty && isEmptyJSON(fv) {
				continue
			}
			w.key(f.name)
			if err := w.value(fv, path+"."+f.name); err != nil {
				return err
			}
		}
		w.end('}')
	default:
		return w.fail(path, v.Type())
	}
	return nil
}

// appendJSONString appends s as a JSON string. Unlike encoding/json it
// leaves <, > and & alone (URLs stay readable); invalid UTF-8 becomes
// U+FFFD, and U+2028/U+2029 are escaped so the output is also valid
// JavaScript.
func appendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				buf = append(buf, '\\', c)
			case c == '\n':
				buf = append(buf, '\\', 'n')
			case c == '\r':
				buf = append(buf, '\\', 'r')
			case c == '\t':
				buf = append(buf, '\\', 't')
			case c < 0x20:
				buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			default:
				buf = append(buf, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			buf = append(buf, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			buf = append(buf, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			buf = append(buf, s[i:i+size]...)
		}
		i += size
	}
	return append(buf, '"')
}

// tokenReader walks the tokens of data[from:to] (already known to be valid
// JSON), reporting positions as offsets into the whole of data.
type tokenReader struct {
	data   []byte
	base   int64
	dec    *json.Decoder
	fields fieldCache
}

func newTokenReader(data []byte, from, to int64) *tokenReader {
	dec := json.NewDecoder(bytes.NewReader(data[from:to]))
	dec.UseNumber()
	return &tokenReader{data: data, base: from, dec: dec, fields: make(fieldCache)}
}

// skipSeparators moves off past white space and the ':' or ',' that the
// decoder leaves between the previous token and the next one.
func (r *tokenReader) skipSeparators(off int64) int64 {
	for off < int64(len(r.data)) {
		switch r.data[off] {
		case ' ', '\t', '\r', '\n', ':', ',':
			off++
		default:
			return off
		}
	}
	return off
}

// next returns the next token and the offset where it starts.
func (r *tokenReader) next() (json.Token, int64, error) {
	off := r.skipSeparators(r.base + r.dec.InputOffset())
	tok, err := r.dec.Token()
	if err != nil {
		e := newJSONError(r.data, off, "", "invalid JSON: %v", err)
		e.Err = err
		return nil, off, e
	}
	return tok, off, nil
}

// key reads an object key.
func (r *tokenReader) key() (string, int64, error) {
	tok, off, err := r.next()
	if err != nil {
		return "", off, err
	}
	k, ok := tok.(string)
	if !ok {
		return "", off, newJSONError(r.data, off, "", "want an object key, got %s", tokenKind(tok))
	}
	return k, off, nil
}

// into reads the next value into *ptr and returns where it started.
func (r *tokenReader) into(ptr any, path string) (int64, error) {
	tok, off, err := r.next()
	if err != nil {
		return off, err
	}
	return off, r.fill(tok, off, reflect.ValueOf(ptr).Elem(), path)
}

// rawValue returns the next value unparsed, with the offset where it
// starts.
func (r *tokenReader) rawValue() (int64, json.RawMessage, error) {
	off := r.skipSeparators(r.base + r.dec.InputOffset())
	var raw json.RawMessage
	if err := r.dec.Decode(&raw); err != nil {
		e := newJSONError(r.data, off, "", "invalid JSON: %v", err)
		e.Err = err
		return off, nil, e
	}
	// raw holds the value's exact bytes and ends where the decoder stopped.
	return r.base + r.dec.InputOffset() - int64(len(raw)), raw, nil
}

// value reads the next value into v.
func (r *tokenReader) value(v reflect.Value, path string) error {
	tok, off, err := r.next()
	if err != nil {
		return err
	}
	return r.fill(tok, off, v, path)
}

// fill stores the value that starts with tok (at off) into v.
func (r *tokenReader) fill(tok json.Token, off int64, v reflect.Value, path string) error {
	mismatch := func(want string) error {
		return newJSONError(r.data, off, path, "want %s, got %s", want, tokenKind(tok))
	}
	switch v.Kind() {
	case reflect.String:
		s, ok := tok.(string)
		if !ok {
			return mismatch("string")
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := tok.(bool)
		if !ok {
			return mismatch("boolean")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := tok.(json.Number)
		if !ok {
			return mismatch("integer")
		}
		i, err := strconv.ParseInt(string(n), 10, v.Type().Bits())
		if err != nil {
			return r.numberError(off, path, n, v.Type(), err)
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := tok.(json.Number)
		if !ok {
			return mismatch("integer")
		}
		u, err := strconv.ParseUint(string(n), 10, v.Type().Bits())
		if err != nil {
			if strings.HasPrefix(string(n), "-") && isInteger(string(n[1:])) {
				err = strconv.ErrRange
			}
			return r.numberError(off, path, n, v.Type(), err)
		}
		v.SetUint(u)
	case reflect.Slice:
		if tok == nil { // null is accepted for a list and means an empty one
			v.SetZero()
			return nil
		}
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			return mismatch("array")
		}
		s := reflect.MakeSlice(v.Type(), 0, 0)
		for i := 0; r.dec.More(); i++ {
			elem := reflect.New(v.Type().Elem()).Elem()
			if err := r.value(elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
			s = reflect.Append(s, elem)
		}
		if _, _, err := r.next(); err != nil { // ']'
			return err
		}
		v.Set(s)
	case reflect.Struct:
		if d, ok := tok.(json.Delim); !ok || d != '{' {
			return mismatch("object")
		}
		fields := r.fields.fields(v.Type())
		var seen uint64 // bit i: fields[i] was set; message structs have < 64 fields
		if len(fields) > 64 {
			return newJSONError(r.data, off, path, "cannot read JSON into Go type %s: too many fields", v.Type())
		}
		for r.dec.More() {
			key, keyOff, err := r.key()
			if err != nil {
				return err
			}
			i := slices.IndexFunc(fields, func(f jsonField) bool { return f.name == key })
			if i < 0 {
				names := make([]string, len(fields))
				for j, f := range fields {
					names[j] = f.name
				}
				return unknownKeyError(r.data, keyOff, key, path, names)
			}
			if seen&(1<<i) != 0 {
				return newJSONError(r.data, keyOff, "", "duplicate key %q in %s", key, path)
			}
			seen |= 1 << i
			if err := r.value(v.FieldByIndex(fields[i].index), path+"."+key); err != nil {
				return err
			}
		}
		if _, _, err := r.next(); err != nil { // '}'
			return err
		}
	default:
		return newJSONError(r.data, off, path, "cannot read JSON into Go type %s", v.Type())
	}
	return nil
}

// numberError explains why number n does not fit Go type t.
func (r *tokenReader) numberError(off int64, path string, n json.Number, t reflect.Type, err error) error {
	var e *JSONError
	if errors.Is(err, strconv.ErrRange) {
		e = newJSONError(r.data, off, path, "%s is out of range for %s", n, t.Kind())
	} else {
		e = newJSONError(r.data, off, path, "%s is not an integer", n)
	}
	e.Err = err
	return e
}

// isInteger reports whether s is a non-empty run of decimal digits.
func isInteger(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
