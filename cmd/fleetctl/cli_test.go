package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetacs/fleetacs/cmd/fleetctl/internal/cli"
)

const informJSON = `{
  "cwmpVersion": "1.0",
  "id": "1",
  "holdRequests": false,
  "method": "Inform",
  "body": {
    "deviceId": {"manufacturer": "Acme", "oui": "00D09E", "productClass": "HGW", "serialNumber": "S1"},
    "events": [{"code": "1 BOOT", "commandKey": ""}],
    "maxEnvelopes": 1,
    "currentTime": "2024-05-01T12:00:00Z",
    "retryCount": 0,
    "parameterList": []
  }
}
`

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDecodeFromFileStdinAndDash(t *testing.T) {
	const path = "testdata/xml/gpv-request.xml"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	byFile := runCLI(t, "", "cwmp", "decode", path)
	byDash := runCLI(t, string(data), "cwmp", "decode", "-")
	byStdin := runCLI(t, string(data), "cwmp", "decode")
	for _, r := range []result{byFile, byDash, byStdin} {
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("exit status %d, stderr %q", r.code, r.stderr)
		}
	}
	if byFile.stdout != byDash.stdout || byFile.stdout != byStdin.stdout {
		t.Errorf("output depends on how the input was given:\n%s\n%s\n%s", byFile.stdout, byDash.stdout, byStdin.stdout)
	}
	if !strings.Contains(byFile.stdout, `"method": "GetParameterValues"`) {
		t.Errorf("unexpected output:\n%s", byFile.stdout)
	}
}

func TestEncodeFromFile(t *testing.T) {
	path := writeTemp(t, "inform.json", informJSON)
	r := runCLI(t, "", "cwmp", "encode", path)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit status %d, stderr %q", r.code, r.stderr)
	}
	for _, want := range []string{"<cwmp:Inform>", "<OUI>00D09E</OUI>", `<cwmp:ID soap-env:mustUnderstand="1">1</cwmp:ID>`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %s:\n%s", want, r.stdout)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	malformed := "<soap-env:Envelope xmlns:soap-env=\"http://schemas.xmlsoap.org/soap/envelope/\">\n" +
		"  <soap-env:Body>\n" +
		"    <cwmp:Inform></cwmp:Infrom>\n" +
		"  </soap-env:Body>\n" +
		"</soap-env:Envelope>\n"
	malformedPath := writeTemp(t, "inform.xml", malformed)
	good, err := os.ReadFile("testdata/xml/inform-hand.xml")
	if err != nil {
		t.Fatal(err)
	}
	truncated := string(good[:len(good)/2])

	for _, tc := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"malformed XML from a file", "", []string{malformedPath},
			"fleetctl: cwmp decode " + malformedPath + ": line 3, column ...: malformed XML: ..."},
		{"malformed XML from stdin", malformed, nil,
			"fleetctl: cwmp decode stdin: line 3, column ...: malformed XML: ..."},
		{"truncated", truncated, []string{"-"},
			"fleetctl: cwmp decode stdin: line 21, column 9: malformed XML: ..."},
		{"not an envelope", "<?xml version=\"1.0\"?>\n<html><body>502 Bad Gateway</body></html>\n", nil,
			"fleetctl: cwmp decode stdin: line 2, column 1: not a CWMP envelope: ..."},
		{"JSON instead of XML", informJSON, nil,
			"fleetctl: cwmp decode stdin: line 1, column 1: malformed XML: ..."},
		{"empty input", "", nil,
			"fleetctl: cwmp decode stdin: empty input: no envelope"},
		{"blank input", " \n\t\n", nil,
			"fleetctl: cwmp decode stdin: line 3, column 1: empty body: ..."},
		{"missing file", "", []string{filepath.Join(t.TempDir(), "nope.xml")},
			"fleetctl: cwmp decode ...nope.xml: open: no such file or directory"},
		{"directory", "", []string{t.TempDir()},
			"fleetctl: cwmp decode ...: read: is a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.stdin, append([]string{"cwmp", "decode"}, tc.args...)...)
			wantFailure(t, r, tc.want)
			if strings.Contains(tc.want, "line") && !strings.Contains(r.stderr, ": line ") {
				t.Errorf("no position in %q", r.stderr)
			}
		})
	}
}

func TestDecodeTooLarge(t *testing.T) {
	var stdout, stderr strings.Builder
	big := io.LimitReader(repeatReader('x'), cli.MaxInput+1)
	code := run([]string{"cwmp", "decode"}, big, &stdout, &stderr)
	wantFailure(t, result{code, stdout.String(), stderr.String()},
		"fleetctl: cwmp decode stdin: input is larger than the 16 MiB limit")
}

// TestDecodeAtLimit checks that input of exactly MaxInput bytes is read
// whole and handed to the decoder (which then finds it is not XML).
func TestDecodeAtLimit(t *testing.T) {
	var stdout, stderr strings.Builder
	big := io.LimitReader(repeatReader('x'), cli.MaxInput)
	code := run([]string{"cwmp", "decode"}, big, &stdout, &stderr)
	wantFailure(t, result{code, stdout.String(), stderr.String()},
		"fleetctl: cwmp decode stdin: line 1, column 1: malformed XML: ...")
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

func TestEncodeErrors(t *testing.T) {
	reqPath := writeTemp(t, "req.json", "{\n  \"cwmpVersion\": \"1.0\",\n  \"id\": \"1\",\n  \"method\": \"Infrom\",\n  \"body\": {}\n}\n")
	for _, tc := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"unknown method", "", []string{reqPath},
			"fleetctl: cwmp encode " + reqPath + `: line 4, column 13: unknown method "Infrom" (did you mean "Inform"?)`},
		{"syntax error", "{\n  \"cwmpVersion\": \"1.0\",\n  \"method\" \"Reboot\"\n}", nil,
			`fleetctl: cwmp encode stdin: line 3, column 12: invalid JSON: invalid character '"' after object key`},
		{"truncated", informJSON[:120], nil,
			"fleetctl: cwmp encode stdin: line 7, column 23: invalid JSON: unexpected end of JSON input"},
		{"XML instead of JSON", "<soap-env:Envelope/>", nil,
			"fleetctl: cwmp encode stdin: line 1, column 1: invalid JSON: invalid character '<' looking for beginning of value"},
		{"unknown key", strings.Replace(informJSON, `"retryCount"`, `"retrycount"`, 1), nil,
			`fleetctl: cwmp encode stdin: line 11, column 5: unknown key "retrycount" in body (did you mean "retryCount"?)`},
		{"wrong type", strings.Replace(informJSON, `"maxEnvelopes": 1`, `"maxEnvelopes": "1"`, 1), nil,
			`fleetctl: cwmp encode stdin: line 9, column 21: body.maxEnvelopes: want integer, got string`},
		{"empty", "", nil,
			"fleetctl: cwmp encode stdin: line 1, column 1: invalid JSON: empty input, want a JSON object"},
		{"invalid message", strings.Replace(informJSON, `"oui": "00D09E"`, `"oui": "not-an-oui"`, 1), nil,
			"fleetctl: cwmp encode stdin: ...OUI..."},
		{"unknown method cannot be encoded", `{"cwmpVersion": "1.0", "id": "1", "method": "X_ACME_Frob", "unknown": true}`, nil,
			"fleetctl: cwmp encode stdin: ..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.stdin, append([]string{"cwmp", "encode"}, tc.args...)...)
			wantFailure(t, r, tc.want)
		})
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		wantCode  int
		wantFirst string // first line of stderr (usage errors) or stdout (help)
	}{
		{"no arguments", nil, 2, "fleetctl: missing command"},
		{"unknown command", []string{"devcies"}, 2, `fleetctl: unknown command "devcies"`},
		{"unknown global flag", []string{"-v"}, 2, "fleetctl: unknown flag -v"},
		{"group without command", []string{"cwmp"}, 2, "fleetctl: missing command"},
		{"unknown subcommand", []string{"cwmp", "parse"}, 2, `fleetctl: unknown command "parse"`},
		{"too many files", []string{"cwmp", "decode", "a.xml", "b.xml"}, 2, "fleetctl: fleetctl cwmp decode: too many arguments: want at most one FILE, got 2"},
		{"unknown flag", []string{"cwmp", "encode", "-pretty"}, 2, "fleetctl: flag provided but not defined: -pretty"},
		{"help", []string{"help"}, 0, "Usage: fleetctl <command> [arguments]"},
		{"-h", []string{"-h"}, 0, "Usage: fleetctl <command> [arguments]"},
		{"--help", []string{"--help"}, 0, "Usage: fleetctl <command> [arguments]"},
		{"group -h", []string{"cwmp", "-h"}, 0, "Usage: fleetctl cwmp <command> [arguments]"},
		{"leaf -h", []string{"cwmp", "decode", "-h"}, 0, "Usage: fleetctl cwmp decode [flags] [FILE|-]"},
		{"help leaf", []string{"help", "cwmp", "encode"}, 0, "Usage: fleetctl cwmp encode [FILE|-]"},
		{"help unknown", []string{"help", "cwmp", "nope"}, 2, `fleetctl: help: unknown command "cwmp nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, "", tc.args...)
			if r.code != tc.wantCode {
				t.Fatalf("exit status %d, want %d\nstdout %q\nstderr %q", r.code, tc.wantCode, r.stdout, r.stderr)
			}
			out, other := r.stdout, r.stderr
			if tc.wantCode == 2 {
				out, other = r.stderr, r.stdout
				// One line and a hint, not the help (issue 8 item 16).
				if lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n"); len(lines) != 2 || !strings.HasSuffix(lines[1], " -help' for usage.") {
					t.Errorf("usage error is not one line and a hint:\n%s", r.stderr)
				}
			}
			if other != "" {
				t.Errorf("unexpected output on the other stream: %q", other)
			}
			if first, _, _ := strings.Cut(out, "\n"); first != tc.wantFirst {
				t.Errorf("first line %q, want %q", first, tc.wantFirst)
			}
		})
	}
}

// TestHelpGolden keeps every help text in one reviewed file, so that a
// change to the command tree shows in review (as Mimir's help.txt does).
func TestHelpGolden(t *testing.T) {
	var all strings.Builder
	for _, args := range [][]string{
		{"help"},
		{"help", "cwmp"},
		{"help", "cwmp", "decode"},
		{"help", "cwmp", "encode"},
	} {
		r := runCLI(t, "", args...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("%v: exit status %d, stderr %q", args, r.code, r.stderr)
		}
		all.WriteString("$ fleetctl " + strings.Join(args, " ") + "\n" + r.stdout + "\n")
	}
	checkGolden(t, "testdata/help.txt", []byte(all.String()))
}

// TestDecodeCharset checks that -charset (the HTTP Content-Type's charset)
// reaches the decoder: a Latin-1 body without an XML declaration.
func TestDecodeCharset(t *testing.T) {
	body := "<soap-env:Envelope xmlns:soap-env=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:cwmp=\"urn:dslforum-org:cwmp-1-0\">" +
		"<soap-env:Body><cwmp:Reboot><CommandKey>caf\xe9</CommandKey></cwmp:Reboot></soap-env:Body></soap-env:Envelope>"
	r := runCLI(t, body, "cwmp", "decode", "-charset", "iso-8859-1")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit status %d, stderr %q", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, `"commandKey": "café"`) {
		t.Errorf("charset not applied:\n%s", r.stdout)
	}
	r = runCLI(t, body, "cwmp", "decode")
	if strings.Contains(r.stdout, "café") {
		t.Errorf("without -charset the body was still read as Latin-1:\n%s", r.stdout)
	}
}
