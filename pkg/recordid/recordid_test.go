package recordid_test

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/recordid"
)

// Ids are valid, differ, and sort as their times do; malformed ones are
// refused.
func TestNewAndValid(t *testing.T) {
	t0 := time.UnixMilli(1_800_000_000_000)
	a, b, c := recordid.New(t0), recordid.New(t0), recordid.New(t0.Add(time.Millisecond))
	for _, id := range []string{a, b, c} {
		if !recordid.Valid(id) || len(id) != recordid.Length {
			t.Fatalf("%q not valid", id)
		}
	}
	if a == b {
		t.Fatalf("two ids of the same millisecond are equal: %s", a)
	}
	if a[:10] != b[:10] || !(a < c && b < c) {
		t.Fatalf("ids do not sort by time: %s %s %s", a, b, c)
	}
	for _, bad := range []string{"", strings.Repeat("0", 25), strings.Repeat("0", 27), "8" + strings.Repeat("0", 25),
		strings.Repeat("0", 25) + "I", strings.Repeat("0", 25) + "a", strings.Repeat("0", 25) + "-"} {
		if recordid.Valid(bad) {
			t.Errorf("%q valid", bad)
		}
	}
}
