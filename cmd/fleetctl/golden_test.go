package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The golden tests decode every envelope in pkg/cwmp/testdata/*.xml (the
// codec's shared vendor corpus) and in testdata/xml/*.xml (fleetctl's own)
// and compare the output with testdata/golden/NAME.json, or NAME.err when
// decoding fails. Then they encode that JSON and decode the XML again: the
// JSON must come back unchanged, or the encode failure must match
// NAME.encode.err (Encode is strict, Decode liberal: a capture of a quirky
// CPE may not be writable as a valid message). `go test -update` rewrites
// the golden files.

const goldenDir = "testdata/golden"

type goldenInput struct {
	name string // golden file base name
	path string // input, relative to the test's directory
}

func goldenInputs(t *testing.T) []goldenInput {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	var out []goldenInput
	seen := map[string]string{}
	for _, dir := range []string{filepath.Join(repoRoot(t), "pkg", "cwmp", "testdata"), "testdata/xml"} {
		paths, err := filepath.Glob(filepath.Join(dir, "*.xml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			if filepath.IsAbs(p) {
				if p, err = filepath.Rel(wd, p); err != nil {
					t.Fatal(err)
				}
			}
			name := strings.TrimSuffix(filepath.Base(p), ".xml")
			if other, dup := seen[name]; dup {
				t.Fatalf("inputs %s and %s share the golden name %q: rename one", other, p, name)
			}
			seen[name] = p
			out = append(out, goldenInput{name: name, path: filepath.ToSlash(p)})
		}
	}
	if len(out) == 0 {
		t.Fatal("no golden inputs found")
	}
	return out
}

func TestGoldenDecode(t *testing.T) {
	inputs := goldenInputs(t)
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			r := runCLI(t, "", "cwmp", "decode", in.path)
			jsonPath := filepath.Join(goldenDir, in.name+".json")
			errPath := filepath.Join(goldenDir, in.name+".err")
			switch r.code {
			case 0:
				if r.stderr != "" {
					t.Errorf("stderr %q on success", r.stderr)
				}
				checkGolden(t, jsonPath, []byte(r.stdout))
				noGolden(t, errPath)
			case 1:
				if strings.Count(r.stderr, "\n") != 1 {
					t.Errorf("stderr is not one line: %q", r.stderr)
				}
				checkGolden(t, errPath, []byte(r.stderr))
				noGolden(t, jsonPath)
			default:
				t.Fatalf("exit status %d: %s", r.code, r.stderr)
			}
		})
	}
	t.Run("no stale golden files", func(t *testing.T) {
		checkStale(t, inputs)
	})
}

// noGolden removes (under -update) or rejects a golden file that should not
// exist, e.g. a .err for an input that now decodes.
func noGolden(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		return
	}
	if *update {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("stale golden file %s (run with -update)", path)
}

func checkStale(t *testing.T, inputs []goldenInput) {
	files, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		base := f.Name()
		for _, ext := range []string{".encode.err", ".json", ".err"} {
			if s, ok := strings.CutSuffix(base, ext); ok {
				base = s
				break
			}
		}
		if slices.ContainsFunc(inputs, func(in goldenInput) bool { return in.name == base }) {
			continue
		}
		path := filepath.Join(goldenDir, f.Name())
		if *update {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			continue
		}
		t.Errorf("golden file %s has no input (run with -update to remove it)", path)
	}
}

// TestGoldenRoundTrip checks that JSON -> encode -> decode gives the same
// JSON for every golden envelope, up to what Encode normalises on purpose
// (see encodeNormalises), and that a second trip changes nothing at all.
func TestGoldenRoundTrip(t *testing.T) {
	for _, in := range goldenInputs(t) {
		t.Run(in.name, func(t *testing.T) {
			jsonPath := filepath.Join(goldenDir, in.name+".json")
			encErrPath := filepath.Join(goldenDir, in.name+".encode.err")
			want, err := os.ReadFile(jsonPath)
			if os.IsNotExist(err) {
				noGolden(t, encErrPath) // the input does not decode: nothing to encode
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			first, ok := roundTrip(t, string(want))
			if !ok {
				checkEncodeErr(t, encErrPath, first)
				return
			}
			noGolden(t, encErrPath)
			if diffs := roundTripDiffs("", decodeGeneric(t, string(want)), decodeGeneric(t, first)); len(diffs) > 0 {
				t.Errorf("JSON changed through encode and decode:\n  %s\nJSON now:\n%s", strings.Join(diffs, "\n  "), first)
			}
			second, ok := roundTrip(t, first)
			if !ok || second != first {
				t.Errorf("second round trip is not a fixed point:\n%s\nthen:\n%s", first, second)
			}
		})
	}
}

// checkEncodeErr checks an encode refusal against NAME.encode.err. The file
// must exist, so that a capture that stops being re-encodable shows in
// review, but only the stable part of the message is compared: the words
// after "encode <Method>: " belong to pkg/cwmp's encoder and may be
// reworded there without breaking this test. -update rewrites the file.
func checkEncodeErr(t *testing.T, path, stderr string) {
	t.Helper()
	if *update {
		checkGolden(t, path, []byte(stderr))
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("encode failed but %v; stderr: %s", err, stderr)
	}
	stable := func(s string) string {
		const prefix = "fleetctl: cwmp encode stdin: encode "
		if !strings.HasPrefix(s, prefix) {
			return s
		}
		what, _, _ := strings.Cut(s[len(prefix):], ":")
		return prefix + what
	}
	if stable(stderr) != stable(string(want)) {
		t.Errorf("encode failure\n got %s want %s(run with -update to accept)", stderr, want)
	}
}

// roundTrip encodes the JSON form js and decodes the XML again. When encode
// refuses, it returns its stderr line and false.
func roundTrip(t *testing.T, js string) (string, bool) {
	t.Helper()
	enc := runCLI(t, js, "cwmp", "encode")
	if enc.code != 0 {
		if enc.code != 1 || strings.Count(enc.stderr, "\n") != 1 {
			t.Fatalf("encode: exit status %d, stderr %q", enc.code, enc.stderr)
		}
		return enc.stderr, false
	}
	if !strings.HasPrefix(enc.stdout, "<") || !strings.HasSuffix(enc.stdout, "\n") {
		t.Errorf("encode output does not look like an XML envelope ending in a newline:\n%s", enc.stdout)
	}
	dec := runCLI(t, enc.stdout, "cwmp", "decode", "-")
	if dec.code != 0 {
		t.Fatalf("decode of encoded XML: exit status %d: %s\nXML:\n%s", dec.code, dec.stderr, enc.stdout)
	}
	return dec.stdout, true
}

func decodeGeneric(t *testing.T, js string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(js))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode JSON: %v\n%s", err, js)
	}
	return v
}

// dateTimeKeys are body keys of xsd:dateTime fields the schema requires,
// which Encode writes as the Unknown Time when empty.
var dateTimeKeys = map[string]bool{"currentTime": true, "startTime": true, "completeTime": true, "startDate": true}

// encodeNormalises reports whether Encode turning a into b at key is one of
// its deliberate normalisations (pkg/cwmp AppendEncode, docs/protocol.md §2.3, §3):
// xsi:type on every Value ("" -> xsd:string, a bare name -> xsd:name) and
// the Unknown Time for an empty required dateTime.
func encodeNormalises(key string, a, b any) bool {
	as, ok1 := a.(string)
	bs, ok2 := b.(string)
	if !ok1 || !ok2 {
		return false
	}
	switch {
	case key == "type":
		return (as == "" && bs == "xsd:string") || (!strings.Contains(as, ":") && bs == "xsd:"+as)
	case dateTimeKeys[key]:
		return as == "" && bs == "0001-01-01T00:00:00Z"
	}
	return false
}

// roundTripDiffs lists the differences between the JSON values a (before
// encoding) and b (after), other than Encode's normalisations; the
// NoMoreRequests header is never sent (docs/protocol.md §3), so it may disappear.
func roundTripDiffs(path string, a, b any) []string {
	ao, ok1 := a.(map[string]any)
	bo, ok2 := b.(map[string]any)
	if ok1 && ok2 {
		var diffs []string
		for k, av := range ao {
			bv, ok := bo[k]
			if !ok {
				if !(path == "" && k == "noMoreRequests") {
					diffs = append(diffs, fmt.Sprintf("%s.%s: lost", path, k))
				}
				continue
			}
			if reflect.DeepEqual(av, bv) || encodeNormalises(k, av, bv) {
				continue
			}
			diffs = append(diffs, roundTripDiffs(path+"."+k, av, bv)...)
		}
		for k := range bo {
			if _, ok := ao[k]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s.%s: added", path, k))
			}
		}
		return diffs
	}
	aa, ok1 := a.([]any)
	ba, ok2 := b.([]any)
	if ok1 && ok2 && len(aa) == len(ba) {
		var diffs []string
		for i := range aa {
			diffs = append(diffs, roundTripDiffs(fmt.Sprintf("%s[%d]", path, i), aa[i], ba[i])...)
		}
		return diffs
	}
	if reflect.DeepEqual(a, b) {
		return nil
	}
	return []string{fmt.Sprintf("%s: %v became %v", path, a, b)}
}

// TestHandCheckedInform pins the golden JSON of testdata/xml/inform-hand.xml
// to the key list of the issue that asked for `fleetctl cwmp decode`,
// field by field, with values read off the XML by hand. If this fails, the
// golden file was regenerated with a different shape: the JSON form is a
// public format and must not drift.
func TestHandCheckedInform(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(goldenDir, "inform-hand.json"))
	if err != nil {
		t.Fatal(err)
	}

	// Key order in the file itself, not only the key set.
	wantOrder := []string{"cwmpVersion", "id", "holdRequests", "method", "body"}
	if got := topLevelKeys(t, raw); !slices.Equal(got, wantOrder) {
		t.Errorf("top-level keys %v, want %v", got, wantOrder)
	}

	var doc struct {
		CWMPVersion  *string `json:"cwmpVersion"`
		ID           *string `json:"id"`
		HoldRequests *bool   `json:"holdRequests"`
		Method       *string `json:"method"`
		Body         struct {
			DeviceID struct {
				Manufacturer *string `json:"manufacturer"`
				OUI          *string `json:"oui"`
				ProductClass *string `json:"productClass"`
				SerialNumber *string `json:"serialNumber"`
			} `json:"deviceId"`
			Events []struct {
				Code       *string `json:"code"`
				CommandKey *string `json:"commandKey"`
			} `json:"events"`
			MaxEnvelopes  *json.Number `json:"maxEnvelopes"`
			CurrentTime   *string      `json:"currentTime"`
			RetryCount    *json.Number `json:"retryCount"`
			ParameterList []struct {
				Name  *string `json:"name"`
				Value *string `json:"value"`
				Type  *string `json:"type"`
			} `json:"parameterList"`
		} `json:"body"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	dec.DisallowUnknownFields() // the keys and nothing else
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("golden JSON does not have the issue's shape: %v", err)
	}
	b := &doc.Body
	str := func(field string, got *string, want string) {
		t.Helper()
		if got == nil {
			t.Errorf("%s missing", field)
		} else if *got != want {
			t.Errorf("%s = %q, want %q", field, *got, want)
		}
	}
	num := func(field string, got *json.Number, want string) {
		t.Helper()
		if got == nil {
			t.Errorf("%s missing", field)
		} else if string(*got) != want {
			t.Errorf("%s = %s, want %s", field, *got, want)
		}
	}
	str("cwmpVersion", doc.CWMPVersion, "1.0")
	str("id", doc.ID, "inform-0001")
	if doc.HoldRequests == nil || *doc.HoldRequests {
		t.Errorf("holdRequests = %v, want false", doc.HoldRequests)
	}
	str("method", doc.Method, "Inform")
	// encoding/json matches these four case-insensitively, so check the
	// exact spelling in the raw text as well.
	for _, k := range []string{`"manufacturer"`, `"oui"`, `"productClass"`, `"serialNumber"`} {
		if !bytes.Contains(raw, []byte(k)) {
			t.Errorf("key %s missing from deviceId", k)
		}
	}
	str("deviceId.manufacturer", b.DeviceID.Manufacturer, "Acme Networks")
	str("deviceId.oui", b.DeviceID.OUI, "00D09E")
	str("deviceId.productClass", b.DeviceID.ProductClass, "HGW-2000")
	str("deviceId.serialNumber", b.DeviceID.SerialNumber, "ACME0012345")
	if len(b.Events) != 2 {
		t.Fatalf("%d events, want 2", len(b.Events))
	}
	str("events[0].code", b.Events[0].Code, "1 BOOT")
	str("events[0].commandKey", b.Events[0].CommandKey, "")
	str("events[1].code", b.Events[1].Code, "M Reboot")
	str("events[1].commandKey", b.Events[1].CommandKey, "reboot-42")
	num("maxEnvelopes", b.MaxEnvelopes, "1")
	str("currentTime", b.CurrentTime, "2024-05-01T12:34:56Z")
	num("retryCount", b.RetryCount, "2")
	if len(b.ParameterList) != 3 {
		t.Fatalf("%d parameters, want 3", len(b.ParameterList))
	}
	for i, want := range [][3]string{
		{"InternetGatewayDevice.DeviceInfo.SoftwareVersion", "2.1.7 build 33", "xsd:string"},
		{"InternetGatewayDevice.ManagementServer.ConnectionRequestURL", "http://192.0.2.10:7547/cr?x=1&y=2", "xsd:string"},
		{"InternetGatewayDevice.DeviceInfo.UpTime", "3600", "xsd:unsignedInt"},
	} {
		p := b.ParameterList[i]
		str("parameterList[].name", p.Name, want[0])
		str("parameterList[].value", p.Value, want[1])
		str("parameterList[].type", p.Type, want[2])
	}
}

// topLevelKeys returns the keys of the JSON object in raw, in file order.
func topLevelKeys(t *testing.T, raw []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}
