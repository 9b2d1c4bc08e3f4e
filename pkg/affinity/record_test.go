package affinity

import (
	"encoding/json"
	"testing"
	"time"
)

// TestRecordEncoding: the hand-written record encoding is JSON that
// decodes to the record, whatever bytes the names hold.
func TestRecordEncoding(t *testing.T) {
	expires := time.UnixMicro(1_780_000_000_123_456)
	recs := []SessionRecord{
		{SessionID: "s"},
		{SessionID: "c2Vzc2lvbg", Worker: "w-1", ClientIP: "2001:db8::1", Tenant: "default", DeviceKey: "00259E-HG8245H-1",
			Auth: Auth{Method: AuthDigest, Principal: "cpe", Scope: ScopeShared}},
		{SessionID: `q"uote\\`, Worker: "tab\there", ClientIP: "192.0.2.1", Tenant: "ünïcode", DeviceKey: "bad\xffutf8\x00",
			Auth: Auth{Method: AuthClientCertificate, Principal: "CN=cpe,O=\"ISP\"\n", Scope: ScopeDevice}},
	}
	for _, rec := range recs {
		b, err := encodeRecord(&rec, expires)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(b) {
			t.Fatalf("encoding of %+v is not JSON: %s", rec, b)
		}
		got, exp, err := decodeRecord(string(b))
		if err != nil || exp != expires.UnixMicro() {
			t.Fatalf("decode %s: %+v, %d, %v", b, got, exp, err)
		}
		want := rec
		if rec.DeviceKey == "bad\xffutf8\x00" {
			want.DeviceKey = "bad\ufffdutf8\x00" // as encoding/json writes invalid UTF-8
		}
		if got != want {
			t.Fatalf("round trip of %+v gave %+v (%s)", want, got, b)
		}
	}
}
