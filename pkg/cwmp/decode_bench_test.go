package cwmp

import "testing"

func benchmarkDecode(b *testing.B, name string, decode func([]byte) (*Envelope, error)) {
	body := readTestdata(b, name)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeInform40 is the hot path: a 6.6 KB TR-181 Inform with 40
// parameters. The goal is <= 40 us/op and < 60 allocs/op on one core.
func BenchmarkDecodeInform40(b *testing.B) {
	benchmarkDecode(b, "inform-40params.xml", Decode)
}

// BenchmarkDecodeInform40Etree is the same Inform through the etree
// reference front end, for comparison.
func BenchmarkDecodeInform40Etree(b *testing.B) {
	benchmarkDecode(b, "inform-40params.xml", func(body []byte) (*Envelope, error) {
		return decodeReference(body, DecodeOptions{})
	})
}

// BenchmarkDecodeGPNResponse decodes a GetParameterNamesResponse of 200
// entries (22 KB).
func BenchmarkDecodeGPNResponse(b *testing.B) {
	benchmarkDecode(b, "getparameternamesresponse-200.xml", Decode)
}
