package sessions

import (
	"testing"
	"time"
)

// TestFirmwareFingerprint: the firmware wait a fingerprint carries reads
// back as written; a fingerprint without one, or a damaged one, reads as
// no wait; CommandKeys fit CWMP's 32 characters and differ per revision;
// the back-off doubles up to its cap.
func TestFirmwareFingerprint(t *testing.T) {
	until := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	fp := withWait("s12", firmwareWait{Until: until, Attempt: 3})
	if fp != "s12~fw"+"1796587200.3" {
		t.Fatalf("withWait: %q", fp)
	}
	base, w := splitFingerprint(fp)
	if base != "s12" || !w.Until.Equal(until) || w.Attempt != 3 {
		t.Fatalf("split %q: %q %+v", fp, base, w)
	}
	if base, w := splitFingerprint("s12!~fw1796587200.1"); base != "s12" || w.Attempt != 1 {
		t.Fatalf("refused and waiting: %q %+v", base, w)
	}
	for _, in := range []string{"s12", "s12!", "s12~fwx.1", "s12~fw1796587200", "s12~fw1.-1", ""} {
		base, w := splitFingerprint(in)
		if !w.Until.IsZero() || w.Attempt != 0 {
			t.Errorf("%q: wait %+v", in, w)
		}
		if in != "" && base != "s12" {
			t.Errorf("%q: base %q", in, base)
		}
	}
	if withWait("s12", firmwareWait{}) != "s12" || withWait("", firmwareWait{Until: until, Attempt: 1}) != "" {
		t.Fatal("withWait without a wait, or without a fingerprint")
	}
	long := "a-preset-name-of-sixty-four-characters-" + "xxxxxxxxxxxxxxxxxxxxxxxxx"
	k1, k2 := firmwareCommandKey(long, 1), firmwareCommandKey(long, 2)
	if len(k1) > 32 || k1 == k2 || k1 != firmwareCommandKey(long, 1) {
		t.Fatalf("command keys %q %q", k1, k2)
	}
	for n, want := range map[int]time.Duration{1: 15 * time.Minute, 2: 30 * time.Minute, 3: time.Hour, 8: 24 * time.Hour, 50: 24 * time.Hour} {
		if got := firmwareBackoffAfter(n); got != want {
			t.Errorf("back-off after attempt %d: %s, want %s", n, got, want)
		}
	}
}
