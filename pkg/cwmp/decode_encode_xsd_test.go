package cwmp

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// What the decoder accepts it normalises, so that an accepted envelope,
// decoded, turned into JSON and back, and encoded (what `fleetctl cwmp
// decode | fleetctl cwmp encode` does) validates against the CWMP schema of
// its version (docs/protocol.md §13 input 6). These tests check that three
// ways:
//
//   - TestDecodedCorpusEncodesValid: every envelope of the codec's corpus
//     (the CPE captures in testdata/*.xml, fleetctl's own inputs, the
//     committed fuzz corpora) that decodes goes through
//     decode -> JSON -> encode -> xmllint;
//   - TestLiberalVariantsNormalise: every message FleetACS can encode,
//     rewritten in the liberal spellings real CPEs use, decodes to the same
//     envelope as the strict original and encodes to the same valid bytes;
//   - FuzzDecodeEncode: for any input the decoder accepts, encoding either
//     succeeds with output that decodes and encodes to itself, or refuses a
//     value that has no valid form, never a spelling the decoder should
//     have normalised. Its committed corpus goes through xmllint in
//     TestDecodedCorpusEncodesValid.

// schemaNamespace maps the cwmp namespace of an encoded message to one the
// BBF schemas declare: the non-standard cwmp-1-3 and cwmp-1-4 URIs that some
// CPEs use, and that FleetACS answers in kind (docs/protocol.md §1.2), name
// the cwmp-1-2 schema family, for which no schema of their own exists.
func schemaNamespace(doc []byte) []byte {
	doc = bytes.ReplaceAll(doc, []byte(`"`+NS1_3+`"`), []byte(`"`+NS1_2+`"`))
	return bytes.ReplaceAll(doc, []byte(`"`+NS1_4+`"`), []byte(`"`+NS1_2+`"`))
}

// reencode is the fleetctl pipeline: the envelope to JSON, back, and
// encoded. It also returns the JSON. The one header Encode leaves out on
// purpose, the deprecated NoMoreRequests (docs/protocol.md §3: never sent),
// is cleared first, so that the JSON of a message and of its re-encoding
// can be compared.
func reencode(env *Envelope) (out, js []byte, err error) {
	env.Header.NoMoreRequests = false
	js, err = MarshalEnvelopeJSON(env)
	if err != nil {
		return nil, nil, fmt.Errorf("to JSON: %w", err)
	}
	back, err := UnmarshalEnvelopeJSON(js)
	if err != nil {
		return nil, js, fmt.Errorf("from JSON: %w", err)
	}
	out, err = Encode(back)
	return out, js, err
}

// normalisationGap reports an encode failure that the decoder should have
// prevented by normalising: a dateTime, a typed value or its xsi:type, an
// OUI that is hexadecimal but not upper case.
func normalisationGap(env *Envelope, err error) bool {
	msg := err.Error()
	if strings.Contains(msg, "is not an xsd:dateTime") || strings.Contains(msg, "is not a valid ") ||
		strings.Contains(msg, "xsi:type") {
		return true
	}
	if inf, ok := env.Body.(*Inform); ok && strings.Contains(msg, "OUI") {
		oui := strings.ToUpper(inf.DeviceID.OUI)
		return len(oui) == 6 && strings.Trim(oui, "0123456789ABCDEF") == "" && oui != inf.DeviceID.OUI
	}
	return false
}

// corpusInput is one envelope of the corpus, with where it comes from.
type corpusInput struct {
	name string
	body []byte
	// strict inputs must encode; fuzz inputs may hold values with no valid
	// form (a 70-character ProductClass), which Encode refuses.
	strict bool
}

// corpus collects the codec's inputs: the CPE captures, fleetctl's inputs
// and every []byte or string argument of the committed fuzz corpora.
func corpus(t *testing.T) []corpusInput {
	t.Helper()
	var out []corpusInput
	for _, pattern := range []string{"testdata/*.xml", "../../cmd/fleetctl/testdata/xml/*.xml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, corpusInput{name: f, body: b, strict: true})
		}
	}
	files, err := filepath.Glob("testdata/fuzz/*/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		args, err := readFuzzCorpusFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for i, a := range args {
			out = append(out, corpusInput{name: f + "#" + strconv.Itoa(i), body: a})
		}
	}
	if len(out) < 50 {
		t.Fatalf("corpus has only %d inputs; testdata missing?", len(out))
	}
	return out
}

// readFuzzCorpusFile returns the []byte and string arguments of a file in
// Go's fuzz corpus format ("go test fuzz v1", then one Go literal a line).
func readFuzzCorpusFile(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) == 0 || lines[0] != "go test fuzz v1" {
		return nil, errors.New("not a Go fuzz corpus file")
	}
	var out [][]byte
	for _, l := range lines[1:] {
		var lit string
		switch {
		case strings.HasPrefix(l, "[]byte(") && strings.HasSuffix(l, ")"):
			lit = l[len("[]byte(") : len(l)-1]
		case strings.HasPrefix(l, "string(") && strings.HasSuffix(l, ")"):
			lit = l[len("string(") : len(l)-1]
		default:
			continue // numbers, booleans: not envelopes
		}
		s, err := strconv.Unquote(lit)
		if err != nil {
			return nil, fmt.Errorf("argument %q: %w", l, err)
		}
		out = append(out, []byte(s))
	}
	return out, nil
}

// validateAll validates documents of several versions, each against the
// schema of its version, and reports every failure.
func validateAll(t *testing.T, byVersion map[Version]map[string][]byte) {
	t.Helper()
	versions := make([]Version, 0, len(byVersion))
	for v := range byVersion {
		versions = append(versions, v)
	}
	sort.Slice(versions, func(i, j int) bool { return versions[i] < versions[j] })
	for _, v := range versions {
		docs := byVersion[v]
		for name, verr := range validateXSD(t, v, docs) {
			if verr != nil {
				t.Errorf("%s (CWMP %s): %v\n%s", name, v, verr, docs[name])
			}
		}
	}
}

func TestDecodedCorpusEncodesValid(t *testing.T) {
	byVersion := map[Version]map[string][]byte{}
	accepted, unknown, vendor := 0, 0, 0
	for _, in := range corpus(t) {
		env, err := Decode(in.body)
		if err != nil {
			continue // not accepted: nothing to re-encode
		}
		if _, ok := env.Body.(*Unknown); ok {
			// A method FleetACS does not implement is recognised only to
			// be answered with fault 8000; its arguments are not kept.
			unknown++
			continue
		}
		switch env.Body.(type) {
		case *VendorRequest, *VendorResponse:
			vendor++
		}
		accepted++
		out, js, err := reencode(env)
		if err != nil {
			if in.strict || !errors.Is(err, ErrInvalidMessage) || normalisationGap(env, err) {
				t.Errorf("%s: decoded but does not encode again: %v\nJSON: %s", in.name, err, js)
			}
			continue
		}
		// The encoded message is in normal form: decoding it gives the
		// same JSON. (A fuzz input may lack what the encoder fills in, a
		// namespace or a required time: for those the second decode is
		// compared with the third.)
		again, err := Decode(out)
		if err != nil {
			t.Errorf("%s: re-encoded message does not decode: %v\n%s", in.name, err, out)
			continue
		}
		out2, js2, err := reencode(again)
		if !in.strict && err == nil {
			if third, derr := Decode(out2); derr == nil {
				js = js2
				_, js2, err = reencode(third)
			}
		}
		if err != nil || !bytes.Equal(js, js2) {
			t.Errorf("%s: decode of the re-encoded message differs (%v)\nfirst:  %s\nsecond: %s", in.name, err, js, js2)
		}
		if byVersion[env.Version] == nil {
			byVersion[env.Version] = map[string][]byte{}
		}
		byVersion[env.Version][in.name] = schemaNamespace(withoutVendorBody(t, env, out))
	}
	if accepted < 50 || unknown+vendor == 0 {
		t.Fatalf("only %d accepted envelopes (and %d unknown methods, %d vendor methods) in the corpus", accepted, unknown, vendor)
	}
	validateAll(t, byVersion)
}

// A liberal rewrite of a strictly encoded message: the spellings of
// docs/protocol.md §2, §3, §9 and §13 input that real CPEs use. Each is a
// textual rewrite of the encoder's output, whose shape is fixed: no white
// space between elements, double-quoted attributes, text escaped so that
// "<", ">" and quotes never appear in it.
type liberalRewrite struct {
	name string
	fn   func(doc string, rng *rand.Rand) string
}

var (
	reDateTime   = regexp.MustCompile(`>(-?\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?<`)
	reTrimmed    = regexp.MustCompile(`<((?:cwmp:)?(?:Name|EventCode|OUI|CommandKey|ParameterKey|MaxEnvelopes|RetryCount|Status|FaultCode|InstanceNumber|NextLevel|Writable|Notification|FileSize|DelaySeconds|State|IsDownload|CurrentTime|StartTime|CompleteTime|ObjectName|ParameterPath|string|FileType|URL))>([^<]*)</`)
	reTypedValue = regexp.MustCompile(`(<Value xsi:type="xsd:(?:int|unsignedInt|long|unsignedLong|boolean|dateTime|hexBinary)">)([^<]*)(</Value>)`)
	reArrayType  = regexp.MustCompile(` soap-enc:arrayType="([^"\[]*)\[(\d+)\]"`)
	reEventCode  = regexp.MustCompile(`<EventCode>(\d+ [^<]*|M [^<]*)</EventCode>`)
	reOUI        = regexp.MustCompile(`<OUI>([^<]*)</OUI>`)
	reBoolField  = regexp.MustCompile(`<(NextLevel|Writable|NotificationChange|AccessListChange|IsDownload|IsTransferable|Resolved)>(true|false)</`)
	reBoolValue  = regexp.MustCompile(`(<Value xsi:type="xsd:boolean">)(true|false|1|0)(</Value>)`)
	reArgument   = regexp.MustCompile(`<(/?)(ParameterKey|CommandKey|ObjectName|MaxEnvelopes)>`)
	reNoAmpText  = regexp.MustCompile(`<(Name|FaultString|Manufacturer)>([^<&]+)</`)
)

var liberalRewrites = []liberalRewrite{
	{"qualified arguments", func(d string, _ *rand.Rand) string {
		return reArgument.ReplaceAllString(d, "<${1}cwmp:${2}>")
	}},
	{"other prefixes", func(d string, _ *rand.Rand) string {
		for _, p := range [][2]string{{"soap-env", "SOAP-ENV"}, {"soap-enc", "enc"}, {"cwmp", "c"}, {"xsd", "xs"}, {"xsi", "i"}} {
			d = strings.ReplaceAll(d, "xmlns:"+p[0]+"=", "xmlns:"+p[1]+"=")
			d = strings.ReplaceAll(d, "<"+p[0]+":", "<"+p[1]+":")
			d = strings.ReplaceAll(d, "</"+p[0]+":", "</"+p[1]+":")
			d = strings.ReplaceAll(d, " "+p[0]+":", " "+p[1]+":")
			d = strings.ReplaceAll(d, `"`+p[0]+":", `"`+p[1]+":")
			d = strings.ReplaceAll(d, ">"+p[0]+":", ">"+p[1]+":")
		}
		return d
	}},
	{"untyped strings", func(d string, _ *rand.Rand) string {
		return strings.ReplaceAll(d, ` xsi:type="xsd:string"`, "")
	}},
	{"booleans spelt otherwise", func(d string, rng *rand.Rand) string {
		d = reBoolValue.ReplaceAllStringFunc(d, func(m string) string {
			g := reBoolValue.FindStringSubmatch(m)
			truth := g[2] == "true" || g[2] == "1"
			spell := map[bool][]string{true: {"TRUE", "True", "1", " true "}, false: {"FALSE", "False", "0", " false "}}[truth]
			return g[1] + spell[rng.IntN(len(spell))] + g[3]
		})
		return reBoolField.ReplaceAllStringFunc(d, func(m string) string {
			g := reBoolField.FindStringSubmatch(m)
			spell := map[string]string{"true": "1", "false": "0"}[g[2]]
			if rng.IntN(2) == 0 {
				spell = strings.ToUpper(g[2])
			}
			return "<" + g[1] + ">" + spell + "</"
		})
	}},
	{"sloppy dateTimes", func(d string, rng *rand.Rand) string {
		return reDateTime.ReplaceAllStringFunc(d, func(m string) string {
			g := reDateTime.FindStringSubmatch(m)
			unpad := func(s string) string {
				if rng.IntN(2) == 0 {
					return strings.TrimPrefix(s, "0")
				}
				return s
			}
			sep := "T"
			if rng.IntN(3) == 0 {
				sep = " "
			}
			zone := g[8]
			switch {
			case zone == "Z":
				zone = []string{"Z", "z", "+0000", "+00", "+00:00", "-00:00"}[rng.IntN(6)]
			case zone != "":
				zone = strings.Replace(zone, ":", "", rng.IntN(2))
			}
			return ">" + g[1] + "-" + unpad(g[2]) + "-" + unpad(g[3]) + sep + unpad(g[4]) + ":" + unpad(g[5]) + ":" + unpad(g[6]) + g[7] + zone + "<"
		})
	}},
	{"white space around values", func(d string, rng *rand.Rand) string {
		ws := []string{" ", "\n  ", "\t", "\r\n"}
		d = reTrimmed.ReplaceAllStringFunc(d, func(m string) string {
			g := reTrimmed.FindStringSubmatch(m)
			return "<" + g[1] + ">" + ws[rng.IntN(len(ws))] + g[2] + ws[rng.IntN(len(ws))] + "</"
		})
		return reTypedValue.ReplaceAllString(d, "${1} ${2}\n${3}")
	}},
	{"broken arrayType counts", func(d string, rng *rand.Rand) string {
		return reArrayType.ReplaceAllStringFunc(d, func(m string) string {
			g := reArrayType.FindStringSubmatch(m)
			switch rng.IntN(4) {
			case 0:
				return ""
			case 1:
				return ` soap-enc:arrayType="` + g[1] + `[0]"`
			case 2:
				return ` soap-enc:arrayType="` + g[1] + `[000` + g[2] + `]"`
			}
			return ` soap-enc:arrayType="xsd:anyType[` + g[2] + `]"`
		})
	}},
	{"event codes spelt otherwise", func(d string, _ *rand.Rand) string {
		return reEventCode.ReplaceAllStringFunc(d, func(m string) string {
			g := reEventCode.FindStringSubmatch(m)
			code := g[1]
			if !strings.HasPrefix(code, "M X_") {
				code = strings.ToLower(code)
				code = strings.ToUpper(code[:1]) + code[1:]
			}
			return "<EventCode>" + code + "</EventCode>"
		})
	}},
	{"lower-case OUI", func(d string, _ *rand.Rand) string {
		return reOUI.ReplaceAllStringFunc(d, func(m string) string {
			return "<OUI>" + strings.ToLower(reOUI.FindStringSubmatch(m)[1]) + "</OUI>"
		})
	}},
	{"comments and line breaks between elements", func(d string, rng *rand.Rand) string {
		parts := strings.Split(d, "><")
		var b strings.Builder
		for i, p := range parts {
			if i > 0 {
				// Not inside an empty element, whose text white space
				// would become.
				left := parts[i-1]
				lastTag := left[strings.LastIndexByte(left, '<')+1:]
				inEmpty := strings.HasPrefix(p, "/") && !strings.HasPrefix(lastTag, "/") && !strings.HasSuffix(lastTag, "/")
				sep := []string{"><", ">\r\n<", "><!-- x --><", ">\n\t<"}[rng.IntN(4)]
				if inEmpty {
					sep = "><!-- x --><"
				}
				b.WriteString(sep)
			}
			b.WriteString(p)
		}
		return b.String()
	}},
	{"single-quoted attributes", func(d string, _ *rand.Rand) string {
		return regexp.MustCompile(`="([^"]*)"`).ReplaceAllString(d, "='$1'")
	}},
	{"CDATA sections", func(d string, _ *rand.Rand) string {
		return reNoAmpText.ReplaceAllString(d, "<$1><![CDATA[$2]]></")
	}},
}

func TestLiberalVariantsNormalise(t *testing.T) {
	byVersion := map[Version]map[string][]byte{}
	used := make([]bool, len(liberalRewrites))
	for fi, f := range encAllFixtures() {
		strict, err := Encode(f.env)
		if err != nil {
			t.Fatalf("%s: Encode: %v", f.name, err)
		}
		base, err := Decode(strict)
		if err != nil {
			t.Fatalf("%s: Decode: %v", f.name, err)
		}
		wantOut, wantJS, err := reencode(base)
		if err != nil {
			t.Fatalf("%s: strict message does not re-encode: %v", f.name, err)
		}
		// Every rewrite alone, then random combinations.
		plans := make([][]int, 0, len(liberalRewrites)+3)
		for i := range liberalRewrites {
			plans = append(plans, []int{i})
		}
		rng := rand.New(rand.NewPCG(uint64(fi), 7))
		for range 3 {
			var plan []int
			for i := range liberalRewrites {
				if rng.IntN(2) == 0 {
					plan = append(plan, i)
				}
			}
			plans = append(plans, plan)
		}
		for pi, plan := range plans {
			doc := string(strict)
			var names []string
			for _, i := range plan {
				next := liberalRewrites[i].fn(doc, rng)
				if next != doc {
					used[i] = true
				}
				doc = next
				names = append(names, liberalRewrites[i].name)
			}
			what := fmt.Sprintf("%s with %s", f.name, strings.Join(names, ", "))
			env, err := Decode([]byte(doc))
			if err != nil {
				t.Errorf("%s: not accepted: %v\n%s", what, err, doc)
				continue
			}
			out, js, err := reencode(env)
			if err != nil {
				t.Errorf("%s: does not encode: %v\n%s", what, err, doc)
				continue
			}
			if !bytes.Equal(js, wantJS) {
				t.Errorf("%s: decodes differently from the strict message\nstrict:  %s\nliberal: %s\ninput: %s", what, wantJS, js, doc)
				continue
			}
			if !bytes.Equal(out, wantOut) {
				t.Errorf("%s: encodes differently\nstrict:  %s\nliberal: %s", what, wantOut, out)
				continue
			}
			v := env.Version
			if f.schema > v {
				v = f.schema // 1.4 headers on a message of an older version
			}
			if byVersion[v] == nil {
				byVersion[v] = map[string][]byte{}
			}
			byVersion[v][fmt.Sprintf("%s#%d", f.name, pi)] = schemaNamespace(out)
		}
	}
	for i, ok := range used {
		if !ok {
			t.Errorf("rewrite %q changed no message: it tests nothing", liberalRewrites[i].name)
		}
	}
	validateAll(t, byVersion)
}

// FuzzDecodeEncode: whatever the decoder accepts encodes again, unless a
// value has no valid form at all; what is encoded is in normal form.
func FuzzDecodeEncode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.xml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, fx := range encAllFixtures()[:40] {
		if b, err := Encode(fx.env); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := Decode(data)
		if err != nil {
			return
		}
		if _, ok := env.Body.(*Unknown); ok {
			return
		}
		out, js, err := reencode(env)
		if err != nil {
			if !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("re-encode failed outside the encoder: %v\nJSON: %s", err, js)
			}
			if normalisationGap(env, err) {
				t.Fatalf("the decoder left a value the encoder refuses: %v\nJSON: %s", err, js)
			}
			return
		}
		// The encoder fills in what it must (the namespace of the version,
		// the Unknown Time for an empty required dateTime), so the first
		// decode may differ from the second; from there on nothing changes.
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("encoded output does not decode: %v\n%s", err, out)
		}
		out2, js2, err := reencode(again)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("encoding is not a fixed point (%v)\nfirst:  %s\nsecond: %s", err, out, out2)
		}
		third, err := Decode(out2)
		if err != nil {
			t.Fatal(err)
		}
		if _, js3, _ := reencode(third); !bytes.Equal(js2, js3) {
			t.Fatalf("decoding is not a fixed point\nsecond: %s\nthird:  %s", js2, js3)
		}
	})
}
