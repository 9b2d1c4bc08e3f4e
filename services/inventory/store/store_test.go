package store_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

func TestMakeID(t *testing.T) {
	cases := []struct {
		d    cwmp.DeviceID
		want string
	}{
		{cwmp.DeviceID{OUI: "00AABB", ProductClass: "Router", SerialNumber: "SN123"}, "00AABB-Router-SN123"},
		{cwmp.DeviceID{OUI: "00aabb ", ProductClass: "", SerialNumber: "SN123"}, "00AABB-SN123"},
		{cwmp.DeviceID{OUI: "00AABB", ProductClass: "HG-8245", SerialNumber: "48:57:54:43"}, "00AABB-HG%2D8245-48%3A57%3A54%3A43"},
		{cwmp.DeviceID{OUI: "00AABB", SerialNumber: ""}, "00AABB-"},
		{cwmp.DeviceID{OUI: "00AABB", ProductClass: "a b", SerialNumber: "100%"}, "00AABB-a%20b-100%25"},
		{cwmp.DeviceID{OUI: "00AABB", ProductClass: "x_y", SerialNumber: "é"}, "00AABB-x_y-%C3%A9"},
		{cwmp.DeviceID{OUI: "00AABB", ProductClass: "a\tb", SerialNumber: "."}, "00AABB-a%09b-%2E"},
		// Parts are trimmed (pkg/deviceid): padding never makes a new id.
		{cwmp.DeviceID{OUI: "00AABB", ProductClass: " \t", SerialNumber: " S1\n"}, "00AABB-S1"},
	}
	for _, c := range cases {
		if got := store.MakeID(c.d); got != c.want {
			t.Errorf("MakeID(%+v) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestParseIDRejects(t *testing.T) {
	for _, id := range []string{"", "A", "A-B-C-D", "A--C", "A-%4", "A-%4g", "A-%4a", "A-b c", "A-ü"} {
		if _, _, _, err := store.ParseID(id); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("ParseID(%q) = %v, want ErrInvalidArgument", id, err)
		}
	}
}

func FuzzIDRoundTrip(f *testing.F) {
	f.Add("00AABB", "Router", "SN-1")
	f.Add("00aabb", "", "")
	f.Add("ÿ", "%", "-:")
	f.Fuzz(func(t *testing.T, oui, pc, sn string) {
		id := store.MakeID(cwmp.DeviceID{OUI: oui, ProductClass: pc, SerialNumber: sn})
		if err := store.ValidateID(id); err != nil && len(id) <= store.MaxIDLength {
			t.Fatalf("MakeID made an invalid id %q: %v", id, err)
		}
		o, p, s, err := store.ParseID(id)
		if err != nil {
			t.Fatalf("ParseID(%q): %v", id, err)
		}
		if o != store.NormalizeOUI(oui) || p != strings.TrimSpace(pc) || s != strings.TrimSpace(sn) {
			t.Fatalf("round trip of %q %q %q gave %q %q %q", oui, pc, sn, o, p, s)
		}
	})
}

func TestValidatePath(t *testing.T) {
	good := []string{"Device.", "Device.A", "Device.A.", "Device.A.1.B", "X", "Device.Ü.$x.%y", "Device.a b"}
	for _, p := range good {
		if err := store.ValidatePath(p); err != nil {
			t.Errorf("ValidatePath(%q) = %v", p, err)
		}
	}
	bad := []string{"", ".", ".A", "A..B", "A..", "A.\x00", "A.\xff", strings.Repeat("a", store.MaxPathLength+1),
		strings.Repeat("a.", store.MaxPathSegments+1)}
	for _, p := range bad {
		if err := store.ValidatePath(p); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("ValidatePath(%q) = %v, want ErrInvalidArgument", p, err)
		}
	}
	// Exactly MaxPathSegments segments, as an object path too.
	if err := store.ValidatePath(strings.Repeat("a.", store.MaxPathSegments)); err != nil {
		t.Errorf("object path of %d segments: %v", store.MaxPathSegments, err)
	}
}

func TestValidateTenantAndTag(t *testing.T) {
	for _, tn := range []string{"default", "isp-1", "A.b_C"} {
		if err := store.ValidateTenant(tn); err != nil {
			t.Errorf("ValidateTenant(%q) = %v", tn, err)
		}
	}
	for _, tn := range []string{"", "a:b", "a/b", "ü", strings.Repeat("a", store.MaxTenantLength+1)} {
		if err := store.ValidateTenant(tn); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("ValidateTenant(%q) = %v", tn, err)
		}
	}
	for _, tag := range []string{"campaign:42", "fw/2.1", "A-b_c.d"} {
		if err := store.ValidateTag(tag); err != nil {
			t.Errorf("ValidateTag(%q) = %v", tag, err)
		}
	}
	for _, tag := range []string{"", " a", "a b", "a\nb", "ü", "a,b", strings.Repeat("a", store.MaxTagLength+1)} {
		if err := store.ValidateTag(tag); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("ValidateTag(%q) = %v", tag, err)
		}
	}
}

func TestParseInteger(t *testing.T) {
	ints := map[string]any{"0": int64(0), "42": int64(42), "-7": int64(-7), "+7": int64(7), " 010 ": int64(10),
		"9223372036854775807": int64(9223372036854775807), "18446744073709551615": float64(18446744073709551615)}
	for s, want := range ints {
		if got, ok := store.ParseInteger(s); !ok || got != want {
			t.Errorf("ParseInteger(%q) = %v (%T), %v; want %v", s, got, got, ok, want)
		}
	}
	for _, s := range []string{"", "1.5", "1e3", "0x10", "abc", "18446744073709551616", "1_000"} {
		if _, ok := store.ParseInteger(s); ok {
			t.Errorf("ParseInteger(%q) accepted", s)
		}
	}
}

func TestParseInstant(t *testing.T) {
	a, ok := store.ParseInstant("2024-06-01T12:00:00.5009+02:00")
	b, ok2 := store.ParseOperandInstant("2024-06-01T10:00:00.500Z")
	if !ok || !ok2 || !a.Equal(b) {
		t.Fatalf("instants %v %v (%v %v) differ", a, b, ok, ok2)
	}
	if _, ok := store.ParseInstant("2024-06-01T10:00:00"); !ok {
		t.Error("a dateTime without zone is a UTC instant")
	}
	if _, ok := store.ParseOperandInstant("2024-06-01"); ok {
		t.Error("an operand must be a whole RFC 3339 time")
	}
}

func TestTriAndNotification(t *testing.T) {
	if b, known := store.TriUnknown.Bool(); known || b {
		t.Error("TriUnknown is known")
	}
	if b, known := store.TriOf(false).Bool(); !known || b {
		t.Error("TriOf(false)")
	}
	if v, known := store.NotificationUnknown.Value(); known || v != 0 {
		t.Error("NotificationUnknown is known")
	}
	for n := 0; n <= store.MaxNotification; n++ {
		if v, known := store.NotificationOf(n).Value(); !known || v != n {
			t.Errorf("NotificationOf(%d) = %d, %v", n, v, known)
		}
	}
	if store.NotificationOf(-1) != store.NotificationUnknown || store.NotificationOf(store.MaxNotification+1) != store.NotificationUnknown {
		t.Error("out-of-range notification is not unknown")
	}
	if !utf8.ValidString(store.TriTrue.String()) || store.TriTrue.String() != "true" {
		t.Error("Tri.String")
	}
}
