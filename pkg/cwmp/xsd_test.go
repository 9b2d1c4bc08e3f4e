package cwmp

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The XSD test validates every message FleetACS can emit, in every CWMP
// version where it exists, with a real XSD validator (xmllint, from libxml2),
// against the Broadband Forum schemas vendored in third_party/bbf-cwmp (see
// its SOURCES.md). The BBF schemas import the SOAP envelope and encoding
// schemas by URL and include each other by URL; there is no network here,
// so an XML catalog maps those URLs to the vendored schemas and to the
// test's own SOAP schemas in testdata/xsd. Those SOAP schemas use
// processContents="strict" for Header and Body content, so every cwmp
// element must be declared by the version's schema.
//
// cwmp-1-3.xsd and cwmp-1-4.xsd keep the cwmp-1-2 target namespace and pull
// in the earlier files with xs:include/xs:redefine; validating against the
// 1.4 file therefore checks the whole 1.2 family plus the 1.3/1.4 headers.

// EnvBBFSchemaDir names a directory that holds the BBF CWMP schemas instead
// of the vendored copy.
const EnvBBFSchemaDir = "FLEETACS_BBF_XSD_DIR"

// bbfSchemaFiles are the BBF schemas the XSD tests need.
var bbfSchemaFiles = []string{"cwmp-1-0.xsd", "cwmp-1-1.xsd", "cwmp-1-2.xsd", "cwmp-1-3.xsd", "cwmp-1-4.xsd"}

// xsdSchemaDir returns the directory holding the BBF CWMP schemas:
// $FLEETACS_BBF_XSD_DIR, else third_party/bbf-cwmp in the repository (the
// directory holding go.work, at or above the package directory). It fails
// the test naming the first missing file and where it was looked for.
func xsdSchemaDir(t testing.TB) string {
	t.Helper()
	dir, err := findSchemaDir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func findSchemaDir() (string, error) {
	dir, how := os.Getenv(EnvBBFSchemaDir), "from "+EnvBBFSchemaDir
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", fmt.Errorf("find BBF schemas: %w", err)
		}
		for root := wd; ; {
			if _, err := os.Stat(filepath.Join(root, "go.work")); err == nil {
				dir, how = filepath.Join(root, "third_party", "bbf-cwmp"), "in the repository (set "+EnvBBFSchemaDir+" to use another copy)"
				break
			}
			parent := filepath.Dir(root)
			if parent == root {
				return "", fmt.Errorf("find BBF schemas: no go.work at or above %s to locate third_party/bbf-cwmp; set %s", wd, EnvBBFSchemaDir)
			}
			root = parent
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("find BBF schemas: %w", err)
	}
	for _, f := range bbfSchemaFiles {
		p := filepath.Join(dir, f)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("BBF schema %s missing: looked for %s %s (third_party/bbf-cwmp/SOURCES.md says where it comes from): %w", f, p, how, err)
		}
	}
	return dir, nil
}

// xmllint returns the path of xmllint, failing the test when it is missing.
func xsdLint(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("xmllint")
	if err != nil {
		t.Fatalf("xmllint not found (%v): run scripts/ensure-xmllint.sh to install Debian package libxml2-utils", err)
	}
	return p
}

func xsdFileURL(p string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(p)}).String()
}

// xsdWriteCatalog writes an XML catalog that maps the schema URLs the CWMP
// schemas use to local files, and returns its path.
func xsdWriteCatalog(t testing.TB, dir string) string {
	t.Helper()
	local, err := filepath.Abs(filepath.Join("testdata", "xsd"))
	if err != nil {
		t.Fatalf("resolve testdata/xsd: %v", err)
	}
	bbfDir := xsdSchemaDir(t)
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?>` + "\n")
	b.WriteString(`<catalog xmlns="urn:oasis:names:tc:entity:xmlns:xml:catalog">` + "\n")
	for from, to := range map[string]string{
		NSSOAPEnv: filepath.Join(local, "soap-envelope.xsd"),
		NSSOAPEnc: filepath.Join(local, "soap-encoding.xsd"),
	} {
		fmt.Fprintf(&b, "  <uri name=%q uri=%q/>\n  <system systemId=%q uri=%q/>\n", from, xsdFileURL(to), from, xsdFileURL(to))
	}
	const bbf = "http://www.broadband-forum.org/cwmp/"
	fmt.Fprintf(&b, "  <rewriteURI uriStartString=%q rewritePrefix=%q/>\n", bbf, xsdFileURL(bbfDir)+"/")
	fmt.Fprintf(&b, "  <rewriteSystem systemIdStartString=%q rewritePrefix=%q/>\n", bbf, xsdFileURL(bbfDir)+"/")
	b.WriteString("</catalog>\n")
	p := filepath.Join(dir, "catalog.xml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatalf("write catalog: %v", err)
	}
	return p
}

// validateXSD validates each document against the envelope wrapper schema
// of CWMP version v with one xmllint run, and returns the verdict per name
// (nil for valid) plus xmllint's messages for the failures.
func validateXSD(t testing.TB, v Version, docs map[string][]byte) map[string]error {
	t.Helper()
	lint := xsdLint(t)
	dir := t.TempDir()
	catalog := xsdWriteCatalog(t, dir)
	schema, err := filepath.Abs(filepath.Join("testdata", "xsd", fmt.Sprintf("cwmp-1-%d-envelope.xsd", uint8(v))))
	if err != nil {
		t.Fatalf("resolve wrapper schema: %v", err)
	}
	names := make([]string, 0, len(docs))
	for name := range docs {
		names = append(names, name)
	}
	sort.Strings(names)
	files := make([]string, 0, len(names))
	byFile := make(map[string]string, len(names))
	for i, name := range names {
		f := filepath.Join(dir, fmt.Sprintf("m%04d.xml", i))
		if err := os.WriteFile(f, docs[name], 0o644); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
		files = append(files, f)
		byFile[f] = name
	}
	args := append([]string{"--nonet", "--noout", "--schema", schema}, files...)
	cmd := exec.Command(lint, args...)
	cmd.Env = append(os.Environ(), "XML_CATALOG_FILES="+catalog)
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	runErr := cmd.Run()
	out := stderr.String()
	if strings.Contains(out, "failed to compile") || strings.Contains(out, "failed to load") {
		t.Fatalf("xmllint could not load schema %s (version %s): %v\n%s", schema, v, runErr, out)
	}

	// xmllint prints "<file> validates" or "<file> fails to validate" per
	// file, after the messages about that file (which start "<file>:").
	verdict := make(map[string]error, len(files))
	msgs := make(map[string][]string)
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasSuffix(line, " validates"):
			f := strings.TrimSuffix(line, " validates")
			if name, ok := byFile[f]; ok {
				verdict[name] = nil
			}
		case strings.HasSuffix(line, " fails to validate"):
			f := strings.TrimSuffix(line, " fails to validate")
			if name, ok := byFile[f]; ok {
				verdict[name] = fmt.Errorf("fails to validate:\n%s", strings.Join(msgs[f], "\n"))
			}
		default:
			if f, _, ok := strings.Cut(line, ":"); ok {
				if _, known := byFile[f]; known {
					msgs[f] = append(msgs[f], line)
				}
			}
		}
	}
	for _, f := range files {
		if _, ok := verdict[byFile[f]]; !ok {
			t.Fatalf("xmllint gave no verdict for %s (%s): %v\n%s", byFile[f], f, runErr, out)
		}
	}
	return verdict
}

// TestEncodeValidatesAgainstXSD encodes every encFixture (every method in every
// version where it exists, plus header and edge variants) and validates it.
func TestEncodeValidatesAgainstXSD(t *testing.T) {
	byVersion := make(map[Version]map[string][]byte)
	covered := make(map[Version]map[string]bool)
	for v := V1_0; v <= MaxVersion; v++ {
		byVersion[v] = make(map[string][]byte)
		covered[v] = make(map[string]bool)
	}
	for _, f := range encAllFixtures() {
		out, err := Encode(f.env)
		if err != nil {
			t.Fatalf("%s: Encode: %v", f.name, err)
		}
		if p := encOutputProblems(out); len(p) != 0 {
			t.Errorf("%s: %v\n%s", f.name, p, out)
		}
		byVersion[f.schema][f.name] = out
		covered[f.env.Version][f.env.Body.Method()] = true
	}
	// Vendor RPCs in every version: the envelope around the vendor element
	// validates (withoutVendorBody).
	for v := V1_0; v <= MaxVersion; v++ {
		for i, body := range vendorFixtureBodies() {
			env := &Envelope{Version: v, Header: Header{ID: "v", HasID: true, HoldRequests: true}, Body: body}
			out, err := Encode(env)
			if err != nil {
				t.Fatalf("vendor %d in %s: Encode: %v", i, v, err)
			}
			if p := encOutputProblems(out); len(p) != 0 {
				t.Errorf("vendor %d in %s: %v\n%s", i, v, p, out)
			}
			byVersion[v][fmt.Sprintf("vendor-%d-%s", i, body.Method())] = withoutVendorBody(t, env, out)
		}
	}

	// Every method FleetACS knows is covered in every version that has it.
	for v := V1_0; v <= MaxVersion; v++ {
		for _, m := range Methods() {
			if Since(m) <= v && !covered[v][m] {
				t.Errorf("no encFixture for %s in CWMP %s", m, v)
			}
		}
	}

	for v := V1_0; v <= MaxVersion; v++ {
		docs := byVersion[v]
		if len(docs) == 0 {
			t.Fatalf("no documents for CWMP %s", v)
		}
		for name, verr := range validateXSD(t, v, docs) {
			if verr != nil {
				t.Errorf("%s (schema %s): %v\n%s", name, v, verr, docs[name])
			}
		}
	}
}

// TestXSDRejectsBrokenMessages proves the validation can fail: each valid
// message below is broken in one way the schemas forbid, and xmllint must
// reject it (in the same run, the unbroken original must pass).
func TestXSDRejectsBrokenMessages(t *testing.T) {
	enc := func(v Version, h Header, msg Message) string {
		out, err := Encode(&Envelope{Version: v, Header: h, Body: msg})
		if err != nil {
			t.Fatalf("Encode %s: %v", msg.Method(), err)
		}
		return string(out)
	}
	id := Header{ID: "x", HasID: true}
	gpv := enc(V1_2, id, &GetParameterValues{ParameterNames: []string{"Device."}})
	spv := enc(V1_2, id, &SetParameterValues{ParameterList: []ParameterValue{{Name: "Device.A", Value: "1", Type: "xsd:unsignedInt"}}, ParameterKey: "k"})
	dl := enc(V1_0, id, &Download{CommandKey: "c", FileType: "1 Firmware Upgrade Image", URL: "http://f/"})
	ir := enc(V1_2, id, &InformResponse{MaxEnvelopes: 1})
	use := enc(V1_4, Header{UseCWMPVersion: "1.4"}, &InformResponse{MaxEnvelopes: 1})
	spa10 := enc(V1_0, id, &SetParameterAttributes{ParameterList: []SetParameterAttributesStruct{{Name: "Device.A", Notification: 2}}})
	fault := enc(V1_2, id, &Fault{Code: 9003, String: "x"})

	mustReplace := func(s, old, new string) string {
		if !strings.Contains(s, old) {
			t.Fatalf("broken-message setup: %q not found in %s", old, s)
		}
		return strings.Replace(s, old, new, 1)
	}
	type broken struct {
		name string
		v    Version
		doc  string
	}
	cases := []broken{
		{"missing arrayType", V1_2, mustReplace(gpv, ` soap-enc:arrayType="xsd:string[1]"`, "")},
		{"arrayType without count", V1_2, mustReplace(gpv, `xsd:string[1]`, `xsd:string`)},
		{"wrong child order", V1_2, mustReplace(spv,
			spv[strings.Index(spv, "<ParameterList"):strings.Index(spv, "<ParameterKey>")]+"<ParameterKey>k</ParameterKey>",
			"<ParameterKey>k</ParameterKey>"+spv[strings.Index(spv, "<ParameterList"):strings.Index(spv, "<ParameterKey>")])},
		{"swapped Download fields", V1_0, mustReplace(dl,
			"<CommandKey>c</CommandKey><FileType>1 Firmware Upgrade Image</FileType>",
			"<FileType>1 Firmware Upgrade Image</FileType><CommandKey>c</CommandKey>")},
		{"missing required child", V1_2, mustReplace(ir, "<MaxEnvelopes>1</MaxEnvelopes>", "")},
		{"misspelt method", V1_2, strings.ReplaceAll(gpv, "cwmp:GetParameterValues>", "cwmp:GetParameterValue>")},
		{"qualified argument", V1_2, strings.ReplaceAll(gpv, "ParameterNames", "cwmp:ParameterNames")},
		{"mustUnderstand not 0 or 1", V1_2, mustReplace(ir, `mustUnderstand="1"`, `mustUnderstand="true"`)},
		{"two RPCs in Body", V1_2, mustReplace(ir, "</cwmp:InformResponse>", "</cwmp:InformResponse><cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>")},
		{"1.4 header against 1.2 schema", V1_2, use},
		{"notification 3 in 1.0", V1_0, mustReplace(spa10, "<Notification>2</Notification>", "<Notification>3</Notification>")},
		{"non-integer value for xsi:type", V1_2, mustReplace(spv, ">1</Value>", ">one</Value>")},
		{"unknown fault code", V1_2, mustReplace(fault, "<FaultCode>9003</FaultCode>", "<FaultCode>7000</FaultCode>")},
		{"version-foreign namespace", V1_0, mustReplace(dl, NS1_0, NS1_2)},
	}
	docs := map[Version]map[string][]byte{}
	add := func(v Version, name, doc string) {
		if docs[v] == nil {
			docs[v] = map[string][]byte{}
		}
		docs[v][name] = []byte(doc)
	}
	for _, c := range cases {
		add(c.v, "broken: "+c.name, c.doc)
	}
	for _, good := range []struct {
		v   Version
		doc string
	}{{V1_2, gpv}, {V1_2, spv}, {V1_0, dl}, {V1_2, ir}, {V1_4, use}, {V1_0, spa10}, {V1_2, fault}} {
		add(good.v, fmt.Sprintf("good %d", len(docs[good.v])), good.doc)
	}
	for v, set := range docs {
		for name, verr := range validateXSD(t, v, set) {
			broken := strings.HasPrefix(name, "broken: ")
			switch {
			case broken && verr == nil:
				t.Errorf("%s (schema %s): xmllint accepted it:\n%s", name, v, set[name])
			case !broken && verr != nil:
				t.Errorf("%s (schema %s): %v\n%s", name, v, verr, set[name])
			}
		}
	}
}

// encOutputProblems checks what the schema check cannot: that every
// soap-enc:arrayType count equals the number of items in the array (a
// schema cannot count), and that the cwmp header elements carry the
// mustUnderstand value the CWMP schemas fix (libxml2 does not enforce a
// fixed value on an attribute use that refers to a global attribute, which
// is how the schemas declare soap-env:mustUnderstand).
func encOutputProblems(doc []byte) []string {
	var problems []string
	type frame struct {
		want, got int
		typ       string
	}
	wantMU := map[string]string{
		"ID": "1", "HoldRequests": "1", "UseCWMPVersion": "1",
		"SessionTimeout": "0", "SupportedCWMPVersions": "0",
	}
	var stack []frame
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return append(problems, fmt.Sprintf("not well-formed XML: %v", err))
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if len(stack) > 0 && stack[len(stack)-1].want >= 0 {
				stack[len(stack)-1].got++
			}
			fr := frame{want: -1}
			mu, hasMU := "", false
			for _, a := range el.Attr {
				switch {
				case a.Name.Space == NSSOAPEnc && a.Name.Local == "arrayType":
					open := strings.LastIndexByte(a.Value, '[')
					n, err := strconv.Atoi(strings.TrimSuffix(a.Value[open+1:], "]"))
					if open < 0 || err != nil {
						problems = append(problems, fmt.Sprintf("bad arrayType %q", a.Value))
					}
					fr = frame{want: n, typ: a.Value}
				case a.Name.Space == NSSOAPEnv && a.Name.Local == "mustUnderstand":
					mu, hasMU = a.Value, true
				}
			}
			// Header entries sit at depth 2: Envelope/Header/entry.
			if want, ok := wantMU[el.Name.Local]; ok && len(stack) == 2 {
				if !hasMU || mu != want {
					problems = append(problems, fmt.Sprintf("header %s has mustUnderstand %q, want %q", el.Name.Local, mu, want))
				}
			}
			stack = append(stack, fr)
		case xml.EndElement:
			fr := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if fr.want >= 0 && fr.want != fr.got {
				problems = append(problems, fmt.Sprintf("%s has arrayType %s but %d items", el.Name.Local, fr.typ, fr.got))
			}
		}
	}
	return problems
}

// TestOutputCheckCanFail proves encOutputProblems catches what it is for.
func TestOutputCheckCanFail(t *testing.T) {
	out, err := Encode(&Envelope{Version: V1_4,
		Header: Header{ID: "x", HasID: true, SessionTimeout: 5},
		Body:   &GetParameterValues{ParameterNames: []string{"A.", "B."}}})
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if p := encOutputProblems(out); len(p) != 0 {
		t.Fatalf("valid output flagged: %v\n%s", p, out)
	}
	for _, c := range []struct{ old, new string }{
		{`xsd:string[2]`, `xsd:string[3]`},
		{`<cwmp:ID soap-env:mustUnderstand="1">`, `<cwmp:ID soap-env:mustUnderstand="0">`},
		{`<cwmp:ID soap-env:mustUnderstand="1">`, `<cwmp:ID>`},
		{`<cwmp:SessionTimeout soap-env:mustUnderstand="0">`, `<cwmp:SessionTimeout soap-env:mustUnderstand="1">`},
	} {
		broken := strings.Replace(string(out), c.old, c.new, 1)
		if broken == string(out) {
			t.Fatalf("setup: %q not in output", c.old)
		}
		if len(encOutputProblems([]byte(broken))) == 0 {
			t.Errorf("replacing %q by %q went unnoticed", c.old, c.new)
		}
	}
}

// withoutVendorBody returns out, the encoding of env, with a vendor RPC
// element replaced by an empty GetRPCMethods: a vendor element is outside
// the CWMP schema (docs/protocol.md §5.4), but the envelope around it,
// header included, must still validate. Other messages are returned as they
// are.
func withoutVendorBody(t testing.TB, env *Envelope, out []byte) []byte {
	t.Helper()
	switch env.Body.(type) {
	case *VendorRequest, *VendorResponse:
	default:
		return out
	}
	open, closeTag := []byte("<soap-env:Body>"), []byte("</soap-env:Body>")
	i, j := bytes.Index(out, open), bytes.LastIndex(out, closeTag)
	if i < 0 || j < i {
		t.Fatalf("no SOAP Body in the encoded vendor message:\n%s", out)
	}
	var b []byte
	b = append(b, out[:i+len(open)]...)
	b = append(b, "<cwmp:GetRPCMethods></cwmp:GetRPCMethods>"...)
	return append(b, out[j:]...)
}
