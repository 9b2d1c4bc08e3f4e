package gateway

import (
	"bytes"
	"strings"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/deviceid"
)

// The gateway reads only what routing, authentication and admission need:
// whether a body is an Inform and, if so, its DeviceId and events. Parsing
// everything else is the worker's job (docs/design.md §2).

// rpcName returns the local name of the first element inside the SOAP Body,
// without decoding the rest, so that a large GetParameterValuesResponse
// costs the gateway a scan of its first few tags. It returns "" for input it
// cannot follow that far (not an Envelope, a DOCTYPE, broken markup); such
// bodies go to the worker, which answers with a fault. Element names are
// ASCII in every charset CPEs use, so no decoding is needed.
func rpcName(b []byte) string {
	depth, inBody := 0, false
	for pos := 0; pos < len(b); {
		i := bytes.IndexByte(b[pos:], '<')
		if i < 0 || pos+i+1 >= len(b) {
			return ""
		}
		pos += i + 1
		switch b[pos] {
		case '?': // XML declaration or processing instruction
			if pos = skipPast(b, pos, "?>"); pos < 0 {
				return ""
			}
		case '!':
			if !bytes.HasPrefix(b[pos:], []byte("!--")) {
				return "" // DOCTYPE or CDATA: not in a CWMP envelope's outline
			}
			if pos = skipPast(b, pos, "-->"); pos < 0 {
				return ""
			}
		case '/':
			if depth == 2 && inBody {
				return "" // an empty Body
			}
			depth--
			if pos = skipPast(b, pos, ">"); pos < 0 {
				return ""
			}
		default:
			nameEnd := pos
			for nameEnd < len(b) && !isTagDelim(b[nameEnd]) {
				nameEnd++
			}
			name := b[pos:nameEnd]
			if c := bytes.LastIndexByte(name, ':'); c >= 0 {
				name = name[c+1:]
			}
			if len(name) == 0 {
				return ""
			}
			depth++
			switch {
			case depth == 1 && string(name) != "Envelope":
				return ""
			case depth == 2 && string(name) == "Body":
				inBody = true
			case depth == 3 && inBody:
				return string(name)
			}
			// Find the end of the tag, minding quoted attribute values.
			var quote byte
			j := nameEnd
			for ; j < len(b); j++ {
				c := b[j]
				if quote != 0 {
					if c == quote {
						quote = 0
					}
					continue
				}
				if c == '"' || c == '\'' {
					quote = c
				} else if c == '>' {
					break
				}
			}
			if j >= len(b) {
				return ""
			}
			if b[j-1] == '/' {
				depth-- // self-closing
			}
			pos = j + 1
		}
	}
	return ""
}

// skipPast returns the index after the first end found at or after pos, or
// -1.
func skipPast(b []byte, pos int, end string) int {
	i := bytes.Index(b[pos:], []byte(end))
	if i < 0 {
		return -1
	}
	return pos + i + len(end)
}

func isTagDelim(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '/' || c == '>'
}

// informOf decodes an Inform body; ok is false when it does not decode as
// one.
func informOf(body []byte, charset string, maxBytes int64) (*cwmp.Inform, bool) {
	env, err := cwmp.DecodeWith(body, cwmp.DecodeOptions{Charset: charset, Limits: cwmp.Limits{MaxBytes: int(maxBytes)}})
	if err != nil {
		return nil, false
	}
	inf, ok := env.Body.(*cwmp.Inform)
	return inf, ok
}

// DeviceKey is the canonical device key of a DeviceId, shared with the
// session workers and inventory (pkg/deviceid); Deps.DeviceKey overrides it.
func DeviceKey(id cwmp.DeviceID) string { return deviceid.Key(id) }

// charsetOf returns the charset parameter of a Content-Type, as sent
// (unquoted); CPEs send every Content-Type (docs/protocol.md §4.1), so a header that
// does not parse simply has none.
func charsetOf(ct string) string {
	for _, p := range strings.Split(ct, ";")[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "charset") {
			return strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	return ""
}
