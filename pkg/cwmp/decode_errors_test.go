package cwmp

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

const (
	decEnvOpen  = `<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-0">`
	decEnvClose = `</soap:Envelope>`
)

type brokenInput struct {
	name   string
	body   string
	limits Limits
	err    error
	line   int
	col    int
	detail string // a part of DecodeError.Detail
}

// brokenInputs is one case per way a body can fail, with where it fails.
// The differential test runs them through the reference front end too.
var brokenInputs = []brokenInput{
	{name: "empty", body: "", err: ErrEmpty, line: 1, col: 1},
	{name: "white space", body: " \r\n\t\n", err: ErrEmpty, line: 3, col: 1},
	{name: "BOM only", body: "\xEF\xBB\xBF\n", err: ErrEmpty, line: 2, col: 1},
	{name: "too large", body: decEnvOpen + "<soap:Body/>" + decEnvClose, limits: Limits{MaxBytes: 100}, err: ErrTooLarge, line: 1, col: 101, detail: "exceeds the limit of 100"},
	{name: "too deep", body: decEnvOpen + "\n<soap:Body>\n  <cwmp:Inform><DeviceId><OUI>1</OUI></DeviceId></cwmp:Inform></soap:Body>" + decEnvClose,
		limits: Limits{MaxDepth: 4}, err: ErrTooDeep, line: 3, col: 26, detail: "<OUI> nested deeper than 4"},
	{name: "mismatched end tag", body: decEnvOpen + "\n<soap:Body>\n<cwmp:Fault/></Bdy>\n" + decEnvClose,
		err: ErrMalformed, line: 3, col: 14, detail: "unexpected end of element </Bdy>"},
	{name: "unclosed element", body: decEnvOpen + "\n<soap:Body>\n<cwmp:Reboot>", err: ErrMalformed, line: 3, col: 14, detail: "<cwmp:Reboot> not closed"},
	{name: "DOCTYPE", body: "<?xml version=\"1.0\"?>\n<!DOCTYPE soap:Envelope>\n" + decEnvOpen + decEnvClose, err: ErrMalformed, line: 2, col: 1, detail: "DOCTYPE"},
	{name: "entity expansion attack", body: "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]>\n<lolz>&lol2;</lolz>",
		err: ErrMalformed, line: 1, col: 1, detail: "DOCTYPE"},
	{name: "undefined entity", body: decEnvOpen + "<soap:Body><cwmp:Reboot><CommandKey>a&nbsp;b</CommandKey></cwmp:Reboot></soap:Body>" + decEnvClose,
		err: ErrMalformed, line: 1, col: 147, detail: `invalid character entity "&nbsp;"`},
	{name: "entity without semicolon", body: "<a>AT&T</a>", err: ErrMalformed, line: 1, col: 6, detail: "invalid character entity"},
	{name: "reference to NUL", body: "<a>&#0;</a>", err: ErrMalformed, line: 1, col: 4, detail: "illegal character"},
	{name: "reference beyond Unicode", body: "<a>&#x110000;</a>", err: ErrMalformed, line: 1, col: 4, detail: "invalid character entity"},
	{name: "unquoted attribute", body: "<a\n  b=1/>", err: ErrMalformed, line: 2, col: 5, detail: "unquoted"},
	{name: "attribute without value", body: "<a b/>", err: ErrMalformed, line: 1, col: 5, detail: "without ="},
	{name: "less-than in attribute", body: "<a b='<'/>", err: ErrMalformed, line: 1, col: 7, detail: "unescaped <"},
	{name: "double hyphen in comment", body: "<a><!-- a -- b --></a>", err: ErrMalformed, line: 1, col: 11, detail: `"--"`},
	{name: "CDATA end in text", body: "<a>x]]>y</a>", err: ErrMalformed, line: 1, col: 5, detail: "]]>"},
	{name: "text after root", body: "<a/>\ntrailing", err: ErrMalformed, line: 1, col: 5, detail: "text outside the root"},
	{name: "two roots", body: "<a/><b/>", err: ErrMalformed, line: 1, col: 5, detail: "more than one root"},
	{name: "declaration not at start", body: "<a/>\n<?xml version=\"1.0\"?>", err: ErrMalformed, line: 2, col: 1, detail: "XML declaration"},
	{name: "unterminated declaration", body: "<?xml version=\"1.0\"", err: ErrMalformed, line: 1, col: 1, detail: "unterminated XML declaration"},
	{name: "malformed declaration", body: "<?xml version=1.0?><a/>", err: ErrMalformed, line: 1, col: 15, detail: "malformed XML declaration"},
	{name: "UTF-16", body: "\xFF\xFE<\x00a\x00 \x00b\x00/\x00>\x00", err: ErrMalformed, line: 1, col: 5, detail: "without ="},
	{name: "UTF-16 without XML", body: "\xFE\xFF\x00 \x00\n", err: ErrEmpty, line: 2, col: 1},
	{name: "UTF-16 bad declaration", body: "\xFE\xFF\x00<\x00?\x00x\x00m\x00l\x00 \x00v", err: ErrMalformed, line: 1, col: 1, detail: "unterminated XML declaration"},
	{name: "name starting with digit", body: "<1a/>", err: ErrMalformed, line: 1, col: 1, detail: "expected element name"},
	{name: "two colons", body: "<a:b:c/>", err: ErrMalformed, line: 1, col: 1, detail: "invalid element name"},
	{name: "non-ASCII name", body: "<caf\u00e9/>", err: ErrMalformed, line: 1, col: 5, detail: "expected attribute name"},
	{name: "stray end tag", body: "</a>", err: ErrMalformed, line: 1, col: 1, detail: "unexpected end of element </a>"},
	{name: "only a comment", body: "<!-- nothing -->", err: ErrMalformed, line: 1, col: 17, detail: "no root element"},
	{name: "truncated tag", body: "<a><b", err: ErrMalformed, line: 1, col: 6, detail: "unexpected end of input"},
	{name: "too many namespace declarations", body: "<a" + manyAttrs(" xmlns:p%03d='u'", 65) + "/>", err: ErrMalformed, line: 1, col: 964, detail: "more than 64 namespace declarations"},
	{name: "namespace declarations across elements", body: "<a" + manyAttrs(" xmlns:p%03d='u'", 40) + "><b" + manyAttrs(" xmlns:q%03d='u'", 30) + "/></a>",
		err: ErrMalformed, line: 1, col: 967, detail: "more than 64 namespace declarations"},

	{name: "not an envelope", body: "<html><body>busy</body></html>", err: ErrNotEnvelope, line: 1, col: 1, detail: "root element is <html>"},
	{name: "SOAP 1.2 envelope", body: `<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><x/></e:Body></e:Envelope>`,
		err: ErrNotEnvelope, line: 1, col: 1, detail: "http://www.w3.org/2003/05/soap-envelope"},
	{name: "no Body", body: decEnvOpen + "<soap:Header/>" + decEnvClose, err: ErrNotEnvelope, line: 1, col: 1, detail: "no SOAP Body"},
	{name: "empty Body", body: decEnvOpen + "\n  <soap:Body> <!-- --> </soap:Body>" + decEnvClose, err: ErrNotEnvelope, line: 2, col: 3, detail: "empty SOAP Body"},
	{name: "two RPCs", body: decEnvOpen + "<soap:Body><cwmp:Reboot/>\n<cwmp:FactoryReset/></soap:Body>" + decEnvClose, err: ErrNotEnvelope, line: 2, col: 1, detail: "holds 2 elements"},
	{name: "two Bodies", body: decEnvOpen + "<soap:Body><cwmp:Reboot/></soap:Body><soap:Body/>" + decEnvClose, err: ErrNotEnvelope, line: 1, col: 147, detail: "more than one SOAP Body"},
	{name: "bad unsignedInt", body: decEnvOpen + "<soap:Body><cwmp:ScheduleInform>\n<DelaySeconds>many</DelaySeconds></cwmp:ScheduleInform></soap:Body>" + decEnvClose,
		err: ErrNotEnvelope, line: 2, col: 1, detail: `invalid unsignedInt "many" in <DelaySeconds>`},
	{name: "negative unsignedInt", body: decEnvOpen + "<soap:Body><cwmp:AddObjectResponse><InstanceNumber>-1</InstanceNumber></cwmp:AddObjectResponse></soap:Body>" + decEnvClose,
		err: ErrNotEnvelope, line: 1, col: 145, detail: `invalid unsignedInt "-1"`},
	{name: "bad boolean", body: decEnvOpen + "<soap:Body><cwmp:GetParameterNames><NextLevel>yes</NextLevel></cwmp:GetParameterNames></soap:Body>" + decEnvClose,
		err: ErrNotEnvelope, line: 1, col: 145, detail: `invalid boolean "yes" in <NextLevel>`},
	{name: "bad int", body: decEnvOpen + "<soap:Body><cwmp:SetParameterValuesResponse><Status>1.0</Status></cwmp:SetParameterValuesResponse></soap:Body>" + decEnvClose,
		err: ErrNotEnvelope, line: 1, col: 154, detail: `invalid int "1.0" in <Status>`},
	{name: "VoucherSN not a number", body: decEnvOpen + "<soap:Body><cwmp:GetOptionsResponse><OptionList><OptionStruct>\n<VoucherSN>V-1</VoucherSN></OptionStruct></OptionList></cwmp:GetOptionsResponse></soap:Body>" + decEnvClose,
		err: ErrNotEnvelope, line: 2, col: 1, detail: `invalid unsignedInt "V-1" in <VoucherSN>`},
	{name: "bad fault code", body: decEnvOpen + "<soap:Body><soap:Fault><detail><cwmp:Fault><FaultCode>90O3</FaultCode></cwmp:Fault></detail></soap:Fault></soap:Body>" + decEnvClose,
		err: ErrNotEnvelope, line: 1, col: 153, detail: `invalid fault code "90O3"`},
}

// manyAttrs repeats an attribute format (with a %03d for the index) n times.
func manyAttrs(format string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, format, i)
	}
	return b.String()
}

func TestDecodeErrors(t *testing.T) {
	for _, c := range brokenInputs {
		t.Run(c.name, func(t *testing.T) {
			env, err := DecodeWith([]byte(c.body), DecodeOptions{Limits: c.limits})
			if err == nil {
				t.Fatalf("decoded %#v, want an error", env)
			}
			if env != nil {
				t.Errorf("envelope %#v returned with error", env)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DecodeError", err)
			}
			if !errors.Is(err, c.err) || de.Err != c.err {
				t.Errorf("error %v, want kind %v", err, c.err)
			}
			if de.Line != c.line || de.Column != c.col {
				t.Errorf("position line %d, column %d, want line %d, column %d (%v)", de.Line, de.Column, c.line, c.col, err)
			}
			if !strings.Contains(de.Detail, c.detail) {
				t.Errorf("detail %q does not contain %q", de.Detail, c.detail)
			}
			if de.Offset < 0 || de.Offset > len(c.body) {
				t.Errorf("offset %d outside the body of %d bytes", de.Offset, len(c.body))
			}
		})
	}
}

func TestDecodeErrorMessage(t *testing.T) {
	_, err := Decode([]byte(decEnvOpen + "\n<soap:Body>\n<cwmp:Fault/></Bdy>\n" + decEnvClose))
	const want = "line 3, column 14: malformed XML: unexpected end of element </Bdy>"
	if err == nil || err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	wrapped := errors.Join(errors.New("decode inform"), err)
	if !errors.Is(wrapped, ErrMalformed) {
		t.Fatalf("wrapped error does not match ErrMalformed")
	}
}

// TestDecodeErrorOffsetsInConvertedText checks that offsets point into the
// body as received when the text was converted (latin1, replaced bytes).
func TestDecodeErrorOffsetsInConvertedText(t *testing.T) {
	cases := []struct {
		name    string
		body    string
		charset string
		offset  int
		line    int
		col     int
	}{
		{"latin1", "<a>\xe9\xe9\xe9</b>", "ISO-8859-1", 6, 1, 7},
		{"invalid UTF-8", "<a>\xff\xfe\xfd</b>", "", 6, 1, 7},
		{"BOM", "\xEF\xBB\xBF<a></b>", "", 6, 1, 4},
		{"UTF-16LE", utf16Body(false, "<a>\u00e9\U0001F600</b>"), "", 2 + 2*6, 1, 6},
		{"UTF-16BE after a declaration", utf16Body(true, "<?xml version='1.0' encoding='UTF-16'?>\n<a></b>"), "", 2 + 2*43, 2, 4},
		{"latin1 declared", "<?xml version='1.0' encoding='latin1'?>\n<a>\xe9</b>", "", 44, 2, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeWith([]byte(c.body), DecodeOptions{Charset: c.charset})
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v, want *DecodeError", err)
			}
			if de.Offset != c.offset || de.Line != c.line || de.Column != c.col {
				t.Fatalf("offset %d line %d column %d, want %d %d %d", de.Offset, de.Line, de.Column, c.offset, c.line, c.col)
			}
			if at := c.body[de.Offset:]; !strings.HasPrefix(at, "<") && !strings.HasPrefix(at, "\x00<") { // "\x00<": UTF-16BE
				t.Fatalf("offset %d points at %q, want the '<' of </b>", de.Offset, c.body[de.Offset])
			}
		})
	}
}
