package gateway

import (
	"bytes"
	"encoding/xml"
	"io"
	"net/url"
	"strings"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// The gateway reads only what routing, authentication and admission need:
// whether a body is an Inform and, if so, its DeviceId and events. Parsing
// everything else is the worker's job (DESIGN §2).

// rpcName returns the local name of the first element inside the SOAP Body,
// without decoding the rest, so that a large GetParameterValuesResponse
// costs the gateway a few tokens. It returns "" for XML it cannot follow
// that far; such bodies go to the worker, which answers with a fault.
func rpcName(body []byte) string {
	d := xml.NewDecoder(bytes.NewReader(body))
	// Element names are ASCII in every charset CPEs use; the worker decodes
	// the text properly.
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	depth := 0
	inBody := false
	for range 4096 { // enough for any Header; bounds hostile input
		tok, err := d.RawToken()
		if err != nil {
			return ""
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch {
			case depth == 1 && t.Name.Local != "Envelope":
				return ""
			case depth == 2 && t.Name.Local == "Body":
				inBody = true
			case depth == 3 && inBody:
				return t.Name.Local
			}
		case xml.EndElement:
			if depth == 2 && inBody {
				return "" // an empty Body
			}
			depth--
		}
	}
	return ""
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

// DeviceKey is the canonical device key of a DeviceId: "OUI-ProductClass-
// SerialNumber", or "OUI-SerialNumber" when the product class is empty,
// with the OUI in upper case, white space trimmed and each part
// percent-escaped (including '-') so that the key splits back unambiguously.
//
// It stands in for the shared function the sessions.v1 and inventory APIs
// refer to until that lands in pkg; Deps.DeviceKey overrides it.
func DeviceKey(id cwmp.DeviceID) string {
	oui := strings.ToUpper(strings.TrimSpace(id.OUI))
	pc := strings.TrimSpace(id.ProductClass)
	sn := strings.TrimSpace(id.SerialNumber)
	var b strings.Builder
	b.Grow(len(oui) + len(pc) + len(sn) + 2)
	b.WriteString(escapeKeyPart(oui))
	if pc != "" {
		b.WriteByte('-')
		b.WriteString(escapeKeyPart(pc))
	}
	b.WriteByte('-')
	b.WriteString(escapeKeyPart(sn))
	return b.String()
}

func escapeKeyPart(s string) string {
	return strings.ReplaceAll(url.PathEscape(s), "-", "%2D")
}

// charsetOf returns the charset parameter of a Content-Type, as sent
// (unquoted); CPEs send every Content-Type (notes §4.1), so a header that
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
