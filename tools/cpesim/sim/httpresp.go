package sim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
)

// Reading the ACS's responses. http.ReadResponse builds a header map, a
// textproto reader and a body reader for every response: a fifth of the
// simulator's allocations in a periodic session. Nearly every response an
// ACS sends is plain: HTTP/1.1, a status line, a few header lines, a
// Content-Length (or none on a 204), all already in the connection's
// buffer. readResponse parses exactly that subset itself, and hands
// anything else, untouched, to http.ReadResponse: whatever the fast path
// accepts, http.ReadResponse accepts with the same meaning, and whatever it
// declines gets the answer it always got (TestReadResponseMatchesNetHTTP
// and FuzzReadResponse compare the two).

// hdrField is one header line of a response.
type hdrField struct{ name, value string }

// respHeader holds a response's header fields in arrival order. Names are
// compared without regard to case, as http.Header's canonical keys are.
type respHeader []hdrField

// Get returns the first value of the named field, "" when there is none.
func (h respHeader) Get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			return f.value
		}
	}
	return ""
}

// Values returns every value of the named field in order.
func (h respHeader) Values(name string) []string {
	var out []string
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			out = append(out, f.value)
		}
	}
	return out
}

// headerFromHTTP converts the header http.ReadResponse parsed.
func headerFromHTTP(h http.Header) respHeader {
	out := make(respHeader, 0, len(h))
	for name, values := range h {
		for _, v := range values {
			out = append(out, hdrField{name, v})
		}
	}
	return out
}

// maxResponseBody bounds an ACS response's body, as read and once
// decompressed: a CPE has little memory, and the simulator must not be
// made to allocate what a broken or hostile ACS announces.
const maxResponseBody = 16 << 20

var errResponseTooLarge = fmt.Errorf("response body over %d bytes", maxResponseBody)

// maxFastFields bounds the header lines the fast path takes.
const maxFastFields = 32

// fieldNames lists header fields by canonical name.
type fieldNames []string

// readFields are the response header fields the simulator reads: the fast
// path keeps only these (http.ReadResponse's header keeps everything).
var readFields = fieldNames{"Content-Type", "Content-Encoding", "Retry-After", "Location", "Set-Cookie", "WWW-Authenticate"}

// canonical returns the listed name b spells in any case, "" when it is
// not listed.
func (l fieldNames) canonical(b []byte) string {
	for _, name := range l {
		if asciiEqualFold(b, name) {
			return name
		}
	}
	return ""
}

// usualContentType is the Content-Type FleetACS and most ACSes send; the
// fast path shares one copy of it rather than allocating one per response.
const usualContentType = `text/xml; charset="utf-8"`

// readResponse reads one response from br, its body into buf (the
// response's body aliases buf's memory).
func readResponse(br *bufio.Reader, buf *bytes.Buffer) (*response, error) {
	// Wait for the first bytes, so that the status line and header are
	// usually all buffered when the fast path looks.
	if _, err := br.Peek(1); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // as http.ReadResponse says it
		}
		return nil, fmt.Errorf("read response: %w", err)
	}
	if resp, ok, err := readResponseFast(br, buf); ok {
		return resp, err
	}
	hr, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	buf.Reset()
	_, err = buf.ReadFrom(io.LimitReader(hr.Body, maxResponseBody+1))
	hr.Body.Close()
	if err == nil && buf.Len() > maxResponseBody {
		err = errResponseTooLarge
	}
	if err != nil {
		return nil, fmt.Errorf("read response body: %w", err)
	}
	return &response{status: hr.StatusCode, header: headerFromHTTP(hr.Header), body: buf.Bytes(), close: hr.Close}, nil
}

// readResponseFast parses a response whose status line and header are
// already buffered in br and keep to the plain subset: "HTTP/1.1", a
// status from 200 to 599, header lines "Name: value" with a token name and
// a printable ASCII value, at most one Content-Length (required unless the
// status is 204, which must have none), no Transfer-Encoding or Trailer,
// at most one Connection ("close" or "keep-alive"). ok is false, with
// nothing consumed from br, for anything else.
func readResponseFast(br *bufio.Reader, buf *bytes.Buffer) (resp *response, ok bool, err error) {
	data, _ := br.Peek(br.Buffered())
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, false, nil
	}
	block := data[:end+2] // every line with its CRLF
	nl := bytes.Index(block, []byte("\r\n"))
	status, ok := parseStatusLine(block[:nl])
	if !ok {
		return nil, false, nil
	}
	// The fields are parsed from the buffered bytes first, and those the
	// simulator reads copied once they all pass.
	type span struct{ name, value [2]int }
	var spans [maxFastFields]span
	nf := 0
	contentLength, haveLength := int64(0), false
	closeConn, haveConnection := false, false
	for pos := nl + 2; pos < len(block); {
		n := bytes.Index(block[pos:], []byte("\r\n"))
		line := block[pos : pos+n]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || nf == maxFastFields || !isToken(line[:colon]) {
			return nil, false, nil
		}
		vs, ve := colon+1, len(line)
		for i := vs; i < ve; i++ {
			if c := line[i]; (c < 0x20 && c != '\t') || c > 0x7e {
				return nil, false, nil
			}
		}
		for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
			vs++
		}
		for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
			ve--
		}
		name, value := line[:colon], line[vs:ve]
		switch {
		case asciiEqualFold(name, "Content-Length"):
			if haveLength {
				return nil, false, nil
			}
			if contentLength, ok = parseLength(value); !ok {
				return nil, false, nil
			}
			haveLength = true
		case asciiEqualFold(name, "Transfer-Encoding"), asciiEqualFold(name, "Trailer"):
			return nil, false, nil
		case asciiEqualFold(name, "Connection"):
			if haveConnection {
				return nil, false, nil
			}
			haveConnection = true
			switch {
			case asciiEqualFold(value, "close"):
				closeConn = true
			case asciiEqualFold(value, "keep-alive"):
			default:
				return nil, false, nil
			}
		}
		spans[nf] = span{[2]int{pos, pos + colon}, [2]int{pos + vs, pos + ve}}
		nf++
		pos += n + 2
	}
	if status == http.StatusNoContent {
		if haveLength {
			return nil, false, nil
		}
	} else if !haveLength {
		return nil, false, nil
	}

	resp = &response{status: status, close: closeConn}
	resp.header = resp.fields[:0]
	for _, sp := range spans[:nf] {
		name := readFields.canonical(block[sp.name[0]:sp.name[1]])
		if name == "" {
			continue // a field the simulator never reads
		}
		value := block[sp.value[0]:sp.value[1]]
		v := usualContentType
		if name != "Content-Type" || string(value) != v {
			v = string(value)
		}
		resp.header = append(resp.header, hdrField{name, v})
	}
	br.Discard(end + 4)
	buf.Reset()
	if contentLength > maxResponseBody {
		return nil, true, fmt.Errorf("read response body: %w (Content-Length %d)", errResponseTooLarge, contentLength)
	}
	if contentLength > 0 {
		buf.Grow(int(contentLength))
		body := buf.AvailableBuffer()[:contentLength]
		if _, err := io.ReadFull(br, body); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, true, fmt.Errorf("read response body: %w", err)
		}
		resp.body = body
	}
	return resp, true, nil
}

// parseStatusLine reads "HTTP/1.1 NNN reason" with NNN from 200 to 599
// and a printable ASCII reason (or none).
func parseStatusLine(line []byte) (int, bool) {
	const proto = "HTTP/1.1 "
	if len(line) < len(proto)+3 || string(line[:len(proto)]) != proto {
		return 0, false
	}
	d := line[len(proto) : len(proto)+3]
	if d[0] < '2' || d[0] > '5' || d[1] < '0' || d[1] > '9' || d[2] < '0' || d[2] > '9' {
		return 0, false
	}
	rest := line[len(proto)+3:]
	if len(rest) > 0 {
		if rest[0] != ' ' {
			return 0, false
		}
		for _, c := range rest {
			if c < 0x20 || c > 0x7e {
				return 0, false
			}
		}
	}
	return int(d[0]-'0')*100 + int(d[1]-'0')*10 + int(d[2]-'0'), true
}

// parseLength reads a Content-Length: decimal digits, no sign, no leading
// zero, below 2^53 (well inside what http.ReadResponse takes).
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// isToken reports whether b is an HTTP token (RFC 9110 §5.6.2).
func isToken(b []byte) bool {
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return len(b) > 0
}

// asciiEqualFold compares b with an ASCII name without regard to case.
func asciiEqualFold(b []byte, name string) bool {
	if len(b) != len(name) {
		return false
	}
	for i := range len(b) {
		c, d := b[i], name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// contentCharset returns the charset parameter of a Content-Type, ""
// when there is none or the value does not parse. The spellings ACSes
// send are recognised without mime.ParseMediaType's map.
func contentCharset(contentType string) string {
	switch contentType {
	case "", "text/xml", "text/xml; charset=utf-8", `text/xml; charset="utf-8"`:
		if strings.HasSuffix(contentType, "utf-8") || strings.HasSuffix(contentType, `utf-8"`) {
			return "utf-8"
		}
		return ""
	}
	if _, params, err := mime.ParseMediaType(contentType); err == nil {
		return params["charset"]
	}
	return ""
}

// parseSetCookie reads a Set-Cookie line for the session: the cookie's
// name and value, and whether the line expires it. The usual line,
// "name=value" with a plain value and attributes other than Max-Age and
// Expires (FleetACS sends "session=…; Path=/"), is read here; anything
// else goes to http.ParseSetCookie (TestParseSetCookieMatchesNetHTTP and
// FuzzParseSetCookie compare the two). ok is false for a line
// http.ParseSetCookie refuses.
func parseSetCookie(line string, now time.Time) (name, value string, expired, ok bool) {
	first, attrs, _ := strings.Cut(line, ";")
	n, v, found := strings.Cut(first, "=")
	plain := found && isToken([]byte(n)) && !strings.ContainsFunc(v, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-_.~+/=", r))
	})
	if plain {
		lower := strings.ToLower(attrs)
		plain = !strings.Contains(lower, "max-age") && !strings.Contains(lower, "expires")
	}
	if plain {
		return n, v, false, true
	}
	c, err := http.ParseSetCookie(line)
	if err != nil {
		return "", "", false, false
	}
	return c.Name, c.Value, c.MaxAge < 0 || (!c.Expires.IsZero() && c.Expires.Before(now)), true
}
