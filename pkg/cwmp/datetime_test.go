package cwmp

import (
	"testing"
	"time"
)

func TestDateTimeTime(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi, s, ns int) time.Time {
		return time.Date(y, mo, d, h, mi, s, ns, time.UTC)
	}
	cases := []struct {
		in   DateTime
		want time.Time
	}{
		{"2024-03-05T10:22:31Z", utc(2024, 3, 5, 10, 22, 31, 0)},
		{"2024-03-05T10:22:31+08:00", utc(2024, 3, 5, 2, 22, 31, 0)},
		{"2024-03-05T10:22:31-05:30", utc(2024, 3, 5, 15, 52, 31, 0)},
		{"2024-02-29T23:59:59+0100", utc(2024, 2, 29, 22, 59, 59, 0)}, // strftime %z
		{"2024-02-29T23:59:59+01", utc(2024, 2, 29, 22, 59, 59, 0)},
		{"2023-11-14T03:12:09", utc(2023, 11, 14, 3, 12, 9, 0)}, // no zone: UTC
		{"2014-10-24T0:4:42", utc(2014, 10, 24, 0, 4, 42, 0)},   // unpadded
		{"2014-1-2T3:04:05Z", utc(2014, 1, 2, 3, 4, 5, 0)},
		{"2025-01-15T12:30:45.123456Z", utc(2025, 1, 15, 12, 30, 45, 123456000)},
		{"2025-01-15T12:30:45.1234567891Z", utc(2025, 1, 15, 12, 30, 45, 123456789)},
		{"2025-01-15 12:30:45", utc(2025, 1, 15, 12, 30, 45, 0)},
		{" 2025-01-15T12:30:45Z\n", utc(2025, 1, 15, 12, 30, 45, 0)},
		{"2025-01-15t12:30:45z", utc(2025, 1, 15, 12, 30, 45, 0)},
		{"1970-01-01T00:03:12Z", utc(1970, 1, 1, 0, 3, 12, 0)},
		{"2024-12-31T24:00:00Z", utc(2025, 1, 1, 0, 0, 0, 0)},
		{"2016-12-31T23:59:60Z", utc(2017, 1, 1, 0, 0, 0, 0)},
		{"0001-01-01T00:05:00Z", utc(1, 1, 1, 0, 5, 0, 0)}, // boot-relative
	}
	for _, c := range cases {
		got, err := c.in.Time()
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !got.Equal(c.want) {
			t.Errorf("%q: got %v, want %v", c.in, got, c.want)
		}
	}

	unknown, err := UnknownTime.Time()
	if err != nil || !unknown.IsZero() || unknown != (time.Time{}) {
		t.Errorf("UnknownTime: got %v, %v; want the zero time", unknown, err)
	}

	for _, bad := range []DateTime{
		"", "now", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z",
		"2024-01-01T25:00:00Z", "2024-01-01T24:00:01Z", "2024-01-01T00:60:00Z", "2024-01-01T00:00:61Z",
		"2024-01-01", "2024-01-01T00:00", "2024-01-01T00:00:00.Z", "2024-01-01T00:00:00+1", "2024-01-01T00:00:00+24:00",
		"2024-01-01T00:00:00+05:", "2024-01-01T00:00:00Zjunk", "24-01-01T00:00:00Z", "2024-001-01T00:00:00Z",
		"1714566000",
	} {
		if got, err := bad.Time(); err == nil {
			t.Errorf("%q: parsed as %v, want an error", bad, got)
		}
	}
}

func TestNewDateTime(t *testing.T) {
	cases := []struct {
		in   time.Time
		want DateTime
	}{
		{time.Date(2024, 3, 5, 10, 22, 31, 999999999, time.UTC), "2024-03-05T10:22:31Z"},
		{time.Date(2024, 3, 5, 10, 22, 31, 0, time.FixedZone("", 8*3600)), "2024-03-05T02:22:31Z"},
		{time.Time{}, UnknownTime},
		{time.Date(1, 1, 1, 0, 5, 0, 0, time.UTC), "0001-01-01T00:05:00Z"},
	}
	for _, c := range cases {
		if got := NewDateTime(c.in); got != c.want {
			t.Errorf("NewDateTime(%v) = %q, want %q", c.in, got, c.want)
		}
		back, err := c.want.Time()
		if err != nil || !back.Equal(c.in.Truncate(time.Second)) {
			t.Errorf("%q does not parse back to %v: %v, %v", c.want, c.in, back, err)
		}
	}
}

func TestParseBool(t *testing.T) {
	for in, want := range map[string]bool{
		"true": true, "TRUE": true, "True": true, " true\n": true, "1": true, "\t1 ": true,
		"false": false, "FALSE": false, "fAlSe": false, "0": false, " 0": false,
	} {
		got, err := ParseBool(in)
		if err != nil || got != want {
			t.Errorf("ParseBool(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yes", "no", "2", "-1", "t", "01", "true1"} {
		if got, err := ParseBool(bad); err == nil {
			t.Errorf("ParseBool(%q) = %v, want an error", bad, got)
		}
	}
}

func FuzzDateTime(f *testing.F) {
	for _, s := range []string{"2024-03-05T10:22:31Z", "2014-10-24T0:4:42", "2024-02-29T23:59:59+0100", "0001-01-01T00:00:00Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := DateTime(s).Time()
		if err != nil {
			return
		}
		if y := tm.UTC().Year(); y < 0 || y > 9999 {
			return // xsd:dateTime has no four-digit form for these
		}
		// Whatever parses, formatted strictly, parses back to the same
		// second.
		back, err := NewDateTime(tm).Time()
		if err != nil {
			t.Fatalf("%q -> %v -> %q does not parse: %v", s, tm, NewDateTime(tm), err)
		}
		if !back.Equal(tm.Truncate(time.Second)) {
			t.Fatalf("%q -> %v -> %v", s, tm, back)
		}
		// What the decoder keeps of it is valid, names the same instant,
		// and stays as it is when decoded again.
		trimmed := trimXMLSpace(s)
		c, ok := canonicalDateTime(trimmed)
		if !ok {
			if tm.Year() >= 1 && tm.UTC().Year() >= 1 {
				t.Fatalf("%q parses as %v but has no canonical form", s, tm)
			}
			return
		}
		if !validDateTime(c) {
			t.Fatalf("%q -> canonical %q is not an xsd:dateTime", s, c)
		}
		ctm, err := DateTime(c).Time()
		if err != nil || !ctm.Equal(tm) {
			t.Fatalf("%q (%v) -> canonical %q (%v, %v)", s, tm, c, ctm, err)
		}
		if again, _ := canonicalDateTime(c); again != c {
			t.Fatalf("canonical %q -> %q", c, again)
		}
	})
}

// TestCanonicalDateTime pins the forms the decoder writes.
func TestCanonicalDateTime(t *testing.T) {
	for in, want := range map[string]string{
		"2024-03-05T10:22:31Z":         "2024-03-05T10:22:31Z",
		"2024-03-05T10:22:31+00:00":    "2024-03-05T10:22:31Z",
		"2024-03-05T10:22:31-00:00":    "2024-03-05T10:22:31Z",
		"2014-10-24T0:4:42":            "2014-10-24T00:04:42",
		"2024-02-29T23:59:59+0100":     "2024-02-29T23:59:59+01:00",
		"2024-02-29t23:59:59z":         "2024-02-29T23:59:59Z",
		"2024-02-29 23:59:59.120-0530": "2024-02-29T23:59:59.12-05:30",
		"2024-02-29T23:59:59+00":       "2024-02-29T23:59:59Z",
		"2024-12-31T24:00:00Z":         "2024-12-31T24:00:00Z",
		"2024-12-31T23:59:60":          "2025-01-01T00:00:00",
		"0001-01-01T00:00:00Z":         string(UnknownTime),
	} {
		if got, ok := canonicalDateTime(in); !ok || got != want {
			t.Errorf("canonicalDateTime(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "0000-01-01T00:00:00Z", "2024-02-30T00:00:00Z", "yesterday", "2024-01-01"} {
		if got, ok := canonicalDateTime(bad); ok {
			t.Errorf("canonicalDateTime(%q) = %q, want no form", bad, got)
		}
	}
	if got := normalizeDateTimeField("not a time"); got != UnknownTime {
		t.Errorf("an unreadable dateTime field became %q, want the Unknown Time", got)
	}
	if got := normalizeDateTimeField(""); got != "" {
		t.Errorf("an empty dateTime field became %q", got)
	}
}
