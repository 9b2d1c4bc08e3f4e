package cwmp

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// testdataFiles returns the XML envelopes in testdata/, sorted.
func testdataFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 40 {
		t.Fatalf("found %d envelopes in testdata/, want at least 40", len(files))
	}
	return files
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sentinelOf returns which sentinel err wraps.
func sentinelOf(err error) error {
	for _, s := range []error{ErrEmpty, ErrTooLarge, ErrTooDeep, ErrMalformed, ErrNotEnvelope} {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}

// compareFrontEnds decodes body with the scanner and with the etree
// reference and reports any difference. Kinds must match when strictKind.
func compareFrontEnds(t *testing.T, body []byte, opts DecodeOptions, strictKind bool) {
	t.Helper()
	got, err := DecodeWith(body, opts)
	want, refErr := decodeReference(body, opts)
	switch {
	case err != nil && refErr != nil:
		var de *DecodeError
		if !errors.As(err, &de) || sentinelOf(err) == nil {
			t.Fatalf("scanner error %v is not a *DecodeError wrapping a sentinel", err)
		}
		if strictKind && sentinelOf(err) != sentinelOf(refErr) {
			t.Fatalf("error kinds differ:\nscanner:   %v\nreference: %v", err, refErr)
		}
	case err != nil:
		t.Fatalf("scanner failed, reference succeeded:\nscanner: %v\nreference: %#v\ninput: %q", err, want, body)
	case refErr != nil:
		t.Fatalf("reference failed, scanner succeeded:\nreference: %v\nscanner: %#v\ninput: %q", refErr, got, body)
	default:
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("envelopes differ:\nscanner:   %#v\n           %#v\nreference: %#v\n           %#v\ninput: %q", got, got.Body, want, want.Body, body)
		}
	}
}

func TestFrontEndsAgreeOnTestdata(t *testing.T) {
	for _, f := range testdataFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Decode(body); err != nil {
				t.Fatalf("decode: %v", err)
			}
			compareFrontEnds(t, body, DecodeOptions{}, true)
		})
	}
}

func TestFrontEndsAgreeOnBrokenInput(t *testing.T) {
	for _, c := range brokenInputs {
		t.Run(c.name, func(t *testing.T) {
			compareFrontEnds(t, []byte(c.body), DecodeOptions{Limits: c.limits}, true)
		})
	}
}

// fuzzSeeds adds every testdata envelope and every broken input.
func fuzzSeeds(f *testing.F) {
	for _, name := range testdataFiles(f) {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, c := range brokenInputs {
		f.Add([]byte(c.body))
	}
	for _, s := range []string{
		"<a/>", "<a>&#xD800;</a>", "<a>&#0;</a>", "<a x='1' x='2'/>", "<:a/>", "<a:/>",
		"<a>]]></a>", "<a><![CDATA[]]]]></a>", "<a>\r\n\r</a>", "<?xml version='1.1'?><a/>",
		"<a><?xml x?></a>", "<a xmlns:p='u' p:b='1' p:b='2'/>", "<a>&#32;</a>&#32;",
	} {
		f.Add([]byte(s))
	}
}

// FuzzFrontEnds holds the scanner to the etree reference: for every input
// both give the same Envelope or both fail.
func FuzzFrontEnds(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		compareFrontEnds(t, body, DecodeOptions{}, false)
	})
}

// FuzzDecode asserts that Decode never panics, returns either an envelope
// or a *DecodeError, and that a successful decode is stable: decoding the
// same bytes again gives the same Envelope, which shares no memory with the
// input (scribbling over the body afterwards changes nothing).
func FuzzDecode(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		in := bytes.Clone(body)
		env, err := Decode(in)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || sentinelOf(err) == nil || env != nil {
				t.Fatalf("bad error %#v with envelope %v", err, env)
			}
			if de.Offset < 0 || de.Offset > len(body) || (de.Line == 0) != (de.Column == 0) {
				t.Fatalf("bad position in %#v (body of %d bytes)", de, len(body))
			}
			return
		}
		if env == nil || env.Body == nil {
			t.Fatalf("nil envelope or body without error")
		}
		for i := range in {
			in[i] = 'X'
		}
		again, err := Decode(body)
		if err != nil {
			t.Fatalf("second decode failed: %v", err)
		}
		if !reflect.DeepEqual(env, again) {
			t.Fatalf("decode not stable:\n%#v\n%#v", env, again)
		}
	})
}
