package cwmp

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Before any XML is parsed, prepare turns the HTTP body into the text both
// front ends read (docs/protocol.md §2.1, §13 input 7):
//   - a byte order mark (UTF-8, UTF-16 LE or BE) is removed and decides the
//     charset;
//   - otherwise the charset is the one from HTTP Content-Type
//     (DecodeOptions.Charset), else the XML declaration's encoding, else
//     UTF-8. That is the order browsers use (WHATWG Encoding), and the one
//     GenieACS follows;
//   - the text is converted to UTF-8; bytes that are not valid in the
//     charset, and characters XML 1.0 forbids (C0 controls other than tab,
//     CR and LF; U+FFFE; U+FFFF), become U+FFFD. CPEs send stray bytes in
//     SSIDs and serial numbers; dropping the session over one would lose
//     the whole Inform;
//   - the XML declaration, found only at the start (after optional white
//     space, which CPEs add), is consumed here; scanning starts after it.
//
// Charsets: UTF-8; windows-1252, which also serves ISO-8859-1, latin1 and
// US-ASCII as the WHATWG standard prescribes (a CPE that claims ISO-8859-1
// and sends a euro sign means windows-1252); ISO-8859-15. An unknown charset
// name is read as UTF-8, whose replacement rule still yields valid text.

// prepared is the input after charset handling.
type prepared struct {
	text    string // UTF-8 holding only characters XML allows; BOM removed
	start   int    // offset in text where scanning starts (after the declaration)
	decl    bool   // an XML declaration was present
	raw     []byte // the body after the BOM, for mapping offsets back
	bom     int    // length of the removed BOM
	charset xmlCharset
	same    bool // text is byte for byte raw: offsets need no mapping
}

type xmlCharset uint8

const (
	charsetUTF8 xmlCharset = iota
	charsetWindows1252
	charsetLatin9
	charsetUTF16LE
	charsetUTF16BE
)

// lookupCharset maps a charset label to the decoder used for it.
func lookupCharset(label string) xmlCharset {
	l := strings.ToLower(strings.Trim(label, " \t\"'"))
	switch l {
	case "iso-8859-1", "iso8859-1", "iso_8859-1", "iso_8859-1:1987", "latin1", "l1",
		"cp819", "ibm819", "iso-ir-100", "csisolatin1", "8859-1",
		"us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us", "us",
		"windows-1252", "cp1252", "x-cp1252":
		return charsetWindows1252
	case "iso-8859-15", "iso8859-15", "iso_8859-15", "latin9", "latin-9", "l9", "csisolatin9":
		return charsetLatin9
	}
	return charsetUTF8
}

// windows1252High maps bytes 0x80..0x9F; the five bytes windows-1252 leaves
// undefined map to the C1 controls of the same value, as WHATWG specifies.
var windows1252High = [32]rune{
	0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
	0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
	0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
	0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
}

// singleByteRune decodes byte c >= 0x80 of a single-byte charset.
func singleByteRune(cs xmlCharset, c byte) rune {
	if cs == charsetWindows1252 {
		if c < 0xA0 {
			return windows1252High[c-0x80]
		}
		return rune(c)
	}
	switch c { // ISO-8859-15 differs from ISO-8859-1 in eight places
	case 0xA4:
		return 0x20AC
	case 0xA6:
		return 0x0160
	case 0xA8:
		return 0x0161
	case 0xB4:
		return 0x017D
	case 0xB8:
		return 0x017E
	case 0xBC:
		return 0x0152
	case 0xBD:
		return 0x0153
	case 0xBE:
		return 0x0178
	}
	return rune(c)
}

var bomUTF8 = []byte{0xEF, 0xBB, 0xBF}

// prepare checks the size, removes the BOM, finds the XML declaration and
// converts the body to clean UTF-8. Errors carry offsets into body.
func prepare(body []byte, charset string, maxBytes int, owned bool) (prepared, *xmlError) {
	var p prepared
	if len(body) > maxBytes {
		return p, &xmlError{err: ErrTooLarge, off: maxBytes, detail: "body of " + strconv.Itoa(len(body)) + " bytes exceeds the limit of " + strconv.Itoa(maxBytes)}
	}
	raw := body
	fromBOM := false
	if bytes.HasPrefix(raw, bomUTF8) {
		raw, p.bom, fromBOM = raw[3:], 3, true
	} else if be := bytes.HasPrefix(raw, []byte{0xFE, 0xFF}); be || bytes.HasPrefix(raw, []byte{0xFF, 0xFE}) {
		return prepareUTF16(raw[2:], be)
	}
	// Stacks written in C may count the string's terminating NUL in
	// Content-Length: NUL bytes at the very end, among trailing white
	// space, carry nothing and are dropped rather than refuse the message
	// over a character after the root element.
	end := len(raw)
	for end > 0 && (raw[end-1] == 0 || isXMLSpace(raw[end-1])) {
		end--
	}
	if end < len(raw) && bytes.IndexByte(raw[end:], 0) >= 0 {
		raw = raw[:end]
	}
	ws := 0
	for ws < len(raw) && isXMLSpace(raw[ws]) {
		ws++
	}
	if ws == len(raw) {
		return p, &xmlError{err: ErrEmpty, off: p.bom + ws, detail: "no XML in the body"}
	}
	p.raw = raw

	declEnd, declEnc, found, derr := parseXMLDecl(raw, ws)
	if derr != nil {
		derr.off += p.bom
		return p, derr
	}
	p.decl = found
	switch {
	case fromBOM:
		p.charset = charsetUTF8
	case charset != "":
		p.charset = lookupCharset(charset)
	case declEnc == "" || strings.EqualFold(declEnc, "utf-8"):
		p.charset = charsetUTF8
	default:
		p.charset = lookupCharset(declEnc)
	}

	bad := firstNonXMLByte(raw, p.charset == charsetUTF8)
	switch {
	case bad < 0 && owned:
		// DecodeOptions.BodyOwned: nobody changes raw any more.
		p.text, p.same, p.start = unsafe.String(&raw[0], len(raw)), true, declEnd
	case bad < 0:
		p.text, p.same, p.start = string(raw), true, declEnd
	case p.charset == charsetUTF8:
		p.text = string(sanitizeUTF8(raw, bad))
	default:
		p.text = string(decodeSingleByte(raw, bad, p.charset))
	}
	if found && !p.same {
		// The declaration is ASCII in every charset, but the conversion
		// may have changed bytes inside it: find its end again.
		p.start, _, _, _ = parseXMLDecl([]byte(p.text), ws)
	}
	return p, nil
}

// parseXMLDecl parses the XML declaration that may start at b[i] and
// returns the offset after it and its encoding.
func parseXMLDecl(b []byte, i int) (end int, encoding string, found bool, err *xmlError) {
	if !bytes.HasPrefix(b[i:], []byte("<?xml")) || len(b) < i+6 || (!isXMLSpace(b[i+5]) && b[i+5] != '?') {
		return 0, "", false, nil
	}
	e := bytes.Index(b[i:], []byte("?>"))
	if e < 0 {
		return 0, "", false, malformed(i, "unterminated XML declaration")
	}
	e += i
	k := i + 5
	for {
		for k < e && isXMLSpace(b[k]) {
			k++
		}
		if k == e {
			break
		}
		ns := k
		for k < e && (b[k] >= 'a' && b[k] <= 'z' || b[k] >= 'A' && b[k] <= 'Z') {
			k++
		}
		name := b[ns:k]
		for k < e && isXMLSpace(b[k]) {
			k++
		}
		if len(name) == 0 || k == e || b[k] != '=' {
			return 0, "", false, malformed(ns, "malformed XML declaration")
		}
		k++
		for k < e && isXMLSpace(b[k]) {
			k++
		}
		if k == e || (b[k] != '"' && b[k] != '\'') {
			return 0, "", false, malformed(k, "malformed XML declaration")
		}
		q := b[k]
		vs := k + 1
		ve := bytes.IndexByte(b[vs:e], q)
		if ve < 0 {
			return 0, "", false, malformed(k, "malformed XML declaration")
		}
		if string(name) == "encoding" {
			if enc := b[vs : vs+ve]; !bytes.EqualFold(enc, []byte("utf-8")) {
				encoding = string(enc)
			}
		}
		k = vs + ve + 1
	}
	return e + 2, encoding, true, nil
}

const (
	lowBits  = 0x0101010101010101
	highBits = 0x8080808080808080
)

// firstNonXMLByte returns the offset of the first byte of b that the
// conversion must rewrite, or -1: for UTF-8 a byte that does not belong to
// valid UTF-8 of a character XML allows, for a single-byte charset any byte
// >= 0x80; in both a control character XML forbids. It checks eight ASCII
// bytes at a time because it reads every byte of every Inform.
func firstNonXMLByte(b []byte, isUTF8 bool) int {
	i := 0
	for i < len(b) {
		if i+8 <= len(b) {
			w := binary.LittleEndian.Uint64(b[i:])
			if w&highBits == 0 {
				if (w-lowBits*0x20)&^w&highBits != 0 {
					// Some byte is below 0x20: allow only tab, LF and CR.
					for k := i; k < i+8; k++ {
						if c := b[k]; c < 0x20 && !isXMLSpace(c) {
							return k
						}
					}
				}
				i += 8
				continue
			}
		}
		c := b[i]
		if c < 0x80 {
			if c < 0x20 && !isXMLSpace(c) {
				return i
			}
			i++
			continue
		}
		if !isUTF8 {
			return i
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 || r == 0xFFFE || r == 0xFFFF {
			return i
		}
		i += size
	}
	return -1
}

const replacementUTF8 = "\uFFFD"

// sanitizeUTF8 copies b, replacing from offset from on each byte that is not
// valid UTF-8 and each character XML forbids with U+FFFD.
func sanitizeUTF8(b []byte, from int) []byte {
	out := make([]byte, 0, len(b)+len(b)/8)
	out = append(out, b[:from]...)
	for i := from; i < len(b); {
		n, size := utf8StepLen(b, i)
		if n < 0 {
			out = append(out, replacementUTF8...)
		} else {
			out = append(out, b[i:i+size]...)
		}
		i += size
	}
	return out
}

// utf8StepLen decodes one character of b at i: it returns size bytes read
// and the length it keeps, or n < 0 when it becomes U+FFFD.
func utf8StepLen(b []byte, i int) (n, size int) {
	c := b[i]
	if c < 0x80 {
		if c < 0x20 && !isXMLSpace(c) {
			return -1, 1
		}
		return 1, 1
	}
	r, size := utf8.DecodeRune(b[i:])
	if r == utf8.RuneError && size == 1 || r == 0xFFFE || r == 0xFFFF {
		return -1, size
	}
	return size, size
}

// decodeSingleByte converts b from a single-byte charset, copying the
// ASCII prefix b[:from] unchanged.
func decodeSingleByte(b []byte, from int, cs xmlCharset) []byte {
	out := make([]byte, 0, len(b)+len(b)/4)
	out = append(out, b[:from]...)
	for _, c := range b[from:] {
		switch {
		case c < 0x20 && !isXMLSpace(c):
			out = append(out, replacementUTF8...)
		case c < 0x80:
			out = append(out, c)
		default:
			out = utf8.AppendRune(out, singleByteRune(cs, c))
		}
	}
	return out
}

// rawOffset maps an offset in p.text back to an offset in the body.
func (p *prepared) rawOffset(off int) int {
	if p.same || off <= 0 {
		return p.bom + off
	}
	out := 0
	i := 0
	for i < len(p.raw) && out < off {
		if p.charset == charsetUTF16LE || p.charset == charsetUTF16BE {
			r, size := utf16Step(p.raw, i, p.charset == charsetUTF16BE)
			out += utf8.RuneLen(r)
			i += size
			continue
		}
		if p.charset == charsetUTF8 {
			n, size := utf8StepLen(p.raw, i)
			if n < 0 {
				n = len(replacementUTF8)
			}
			out += n
			i += size
			continue
		}
		c := p.raw[i]
		switch {
		case c < 0x20 && !isXMLSpace(c):
			out += len(replacementUTF8)
		case c < 0x80:
			out++
		default:
			out += utf8.RuneLen(singleByteRune(p.charset, c))
		}
		i++
	}
	return p.bom + i
}

// lineColumn returns the 1-based line and column (in characters) of offset
// off in text. CR LF, CR and LF each end a line.
func lineColumn[T string | []byte](text T, off int) (line, col int) {
	off = min(max(off, 0), len(text))
	line, ls := 1, 0
	for i := 0; i < off; i++ {
		switch text[i] {
		case '\n':
			line, ls = line+1, i+1
		case '\r':
			if i+1 < len(text) && text[i+1] == '\n' {
				continue
			}
			line, ls = line+1, i+1
		}
	}
	return line, utf8.RuneCountInString(string(text[ls:off])) + 1
}

// prepareUTF16 is prepare for a body that starts with a UTF-16 byte order
// mark (raw is what follows the mark). Some Windows-based and Java CPE
// stacks write UTF-16 (docs/protocol.md §2.1): the mark decides the charset,
// whatever HTTP or the declaration say. The whole body is converted before
// the declaration is looked for, because UTF-16 is not ASCII-compatible;
// unlike prepare's, errors carry offsets into the converted text.
func prepareUTF16(raw []byte, bigEndian bool) (prepared, *xmlError) {
	p := prepared{raw: raw, bom: 2, charset: charsetUTF16LE}
	if bigEndian {
		p.charset = charsetUTF16BE
	}
	text := make([]byte, 0, len(raw)/2+len(raw)/8)
	for i := 0; i < len(raw); {
		r, size := utf16Step(raw, i, bigEndian)
		text = utf8.AppendRune(text, r)
		i += size
	}
	p.text = string(text)
	ws := 0
	for ws < len(text) && isXMLSpace(text[ws]) {
		ws++
	}
	if ws == len(text) {
		return p, &xmlError{err: ErrEmpty, off: ws, detail: "no XML in the body"}
	}
	end, _, found, derr := parseXMLDecl(text, ws)
	if derr != nil {
		return p, derr
	}
	if found {
		p.start, p.decl = end, true
	} else {
		p.start = ws
	}
	return p, nil
}

// utf16Step decodes the UTF-16 character at b[i]: the character as the
// converted text holds it (U+FFFD for an unpaired surrogate, a lone last
// byte, or a character XML forbids) and the number of bytes it took.
func utf16Step(b []byte, i int, bigEndian bool) (rune, int) {
	unit := func(k int) rune {
		if bigEndian {
			return rune(b[k])<<8 | rune(b[k+1])
		}
		return rune(b[k+1])<<8 | rune(b[k])
	}
	if i+2 > len(b) {
		return utf8.RuneError, len(b) - i
	}
	r := unit(i)
	switch {
	case r >= 0xD800 && r < 0xDC00:
		if i+4 <= len(b) {
			if lo := unit(i + 2); lo >= 0xDC00 && lo < 0xE000 {
				return utf16.DecodeRune(r, lo), 4
			}
		}
		return utf8.RuneError, 2
	case r >= 0xDC00 && r < 0xE000, r < 0x20 && !isXMLSpace(byte(r)), r == 0xFFFE, r == 0xFFFF:
		return utf8.RuneError, 2
	}
	return r, 2
}
