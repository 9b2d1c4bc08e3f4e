package cwmp

import "testing"

func TestValidDateTime(t *testing.T) {
	for _, c := range []struct {
		s  string
		ok bool
	}{
		{"0001-01-01T00:00:00Z", true},
		{"2024-05-06T07:08:09Z", true},
		{"2024-05-06T07:08:09", true},
		{"2024-05-06T07:08:09.123+02:00", true},
		{"2024-05-06T07:08:09-14:00", true},
		{"-0044-03-15T12:00:00Z", true},
		{"12024-05-06T07:08:09Z", true},
		{"2024-05-06T24:00:00Z", true},
		{"", false},
		{"2014-10-24T0:4:42", false},
		{"2024-05-06 07:08:09", false},
		{"2024-05-06T07:08:09+0000", false},
		{"2024-13-06T07:08:09Z", false},
		{"2024-00-06T07:08:09Z", false},
		{"2024-05-32T07:08:09Z", false},
		{"2024-05-06T24:00:01Z", false},
		{"2024-05-06T24:00:00.5Z", false},
		{"2024-05-06T07:60:09Z", false},
		{"2024-05-06T07:08:60Z", false},
		{"2024-05-06T07:08:09.Z", false},
		{"2024-05-06T07:08:09+15:00", false},
		{"0000-05-06T07:08:09Z", false},
		{"02024-05-06T07:08:09Z", false},
		{"24-05-06T07:08:09Z", false},
		{"2024-05-06T07:08:09Zjunk", false},
	} {
		if got := validDateTime(c.s); got != c.ok {
			t.Errorf("validDateTime(%q) = %v, want %v", c.s, got, c.ok)
		}
	}
}

func TestValidBase64(t *testing.T) {
	for _, c := range []struct {
		s  string
		ok bool
	}{
		{"", true},
		{"AQID", true},
		{"AQIDBA==", true},
		{"AQIDBAU=", true},
		{"AQ ID\nBA==", true},
		{"AQI", false},
		{"AQIDBB==", false}, // non-zero bits under the padding
		{"AQIDBAV=", false},
		{"AQ=D", false},
		{"A===", false},
		{"AQI*", false},
	} {
		if got := validBase64(c.s); got != c.ok {
			t.Errorf("validBase64(%q) = %v, want %v", c.s, got, c.ok)
		}
	}
}

func TestEventCodePatterns(t *testing.T) {
	for _, c := range []struct {
		code          string
		v10, v11, v12 bool
	}{
		{"0 BOOTSTRAP", true, true, true},
		{"6 CONNECTION REQUEST", true, true, true},
		{"M Reboot", true, true, true},
		{"M X_ACME_Reset", true, true, true},
		{"X 00D09E SOMETHING", true, true, true},
		{"X 00D09E ", true, true, false},
		{"10 AUTONOMOUS TRANSFER COMPLETE", false, true, true},
		{"14 HEARTBEAT", false, true, true},
		{"M ChangeDUState", false, true, true},
		{"X ACME Thing", false, false, true},
		{"BOOT", false, false, false},
		{"1  BOOT", false, false, false},
		{"1 BOOT ", false, false, false},
		{"1 BOOT\tX", false, false, false},
		{"M ", false, false, false},
		{"M Two Words", false, false, false},
	} {
		for _, vc := range []struct {
			v    Version
			want bool
		}{{V1_0, c.v10}, {V1_1, c.v11}, {V1_2, c.v12}, {V1_4, c.v12}} {
			if got := validEventCode(c.code, vc.v); got != vc.want {
				t.Errorf("validEventCode(%q, %s) = %v, want %v", c.code, vc.v, got, vc.want)
			}
		}
	}
}

func TestFileTypePatterns(t *testing.T) {
	for _, c := range []struct {
		s    string
		kind fileTypeKind
		v    Version
		ok   bool
	}{
		{"1 Firmware Upgrade Image", downloadFile, V1_0, true},
		{"3 Vendor Configuration File", downloadFile, V1_1, true},
		{"4 Tone File", downloadFile, V1_1, false},
		{"4 Tone File", downloadFile, V1_2, true},
		{"X 00D09E Boot Loader", downloadFile, V1_0, true},
		{"X ACME Boot Loader", downloadFile, V1_0, false},
		{"X ACME Boot Loader", downloadFile, V1_2, true},
		{"2 Vendor Log File", uploadFile, V1_0, true},
		{"1 Firmware Upgrade Image", uploadFile, V1_0, false},
		{"3 Vendor Configuration File 2", uploadFile, V1_2, true},
		{"4 Vendor Log File", transferFile, V1_1, true},
		{"0 Nothing", downloadFile, V1_2, false},
		{"", downloadFile, V1_2, false},
	} {
		if got := validFileType(c.s, c.kind, c.v); got != c.ok {
			t.Errorf("validFileType(%q, %d, %s) = %v, want %v", c.s, c.kind, c.v, got, c.ok)
		}
	}
}

func TestValueType(t *testing.T) {
	for _, c := range []struct {
		in, qname, local string
		ok               bool
	}{
		{"", "xsd:string", "string", true},
		{"xsd:unsignedInt", "xsd:unsignedInt", "unsignedInt", true},
		{"unsignedInt", "", "unsignedInt", true},
		{"soap-enc:base64", "soap-enc:base64", "base64", true},
		{"SOAP-ENC:base64", "", "base64", true},
		{"xs:int", "", "", false},
		{"xsd:", "", "", false},
		{"xsd:a b", "", "", false},
		{"a:b:c", "", "", false},
	} {
		q, l, ok := valueType(c.in)
		if q != c.qname || l != c.local || ok != c.ok {
			t.Errorf("valueType(%q) = %q, %q, %v; want %q, %q, %v", c.in, q, l, ok, c.qname, c.local, c.ok)
		}
	}
}
