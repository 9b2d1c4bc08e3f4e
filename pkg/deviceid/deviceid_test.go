package deviceid

import (
	"errors"
	"strings"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

func TestKeyAndParse(t *testing.T) {
	cases := []struct {
		in   cwmp.DeviceID
		want string
	}{
		{cwmp.DeviceID{OUI: "00259E", ProductClass: "HG8245H", SerialNumber: "4857544312345678"}, "00259E-HG8245H-4857544312345678"},
		{cwmp.DeviceID{OUI: " 50c7bf\n", ProductClass: " Archer C7 ", SerialNumber: "2171234 "}, "50C7BF-Archer%20C7-2171234"},
		{cwmp.DeviceID{OUI: "E48D8C", SerialNumber: ""}, "E48D8C-"},
		{cwmp.DeviceID{OUI: "001E80", ProductClass: "a-b", SerialNumber: "x:y%z.é"}, "001E80-a%2Db-x%3Ay%25z%2E%C3%A9"},
	}
	for _, c := range cases {
		got := Key(c.in)
		if got != c.want {
			t.Errorf("Key(%+v) = %q, want %q", c.in, got, c.want)
			continue
		}
		oui, pc, sn, err := Parse(got)
		if err != nil {
			t.Errorf("Parse(%q): %v", got, err)
			continue
		}
		if oui != NormalizeOUI(c.in.OUI) || pc != trim(c.in.ProductClass) || sn != trim(c.in.SerialNumber) {
			t.Errorf("Parse(%q) = %q %q %q", got, oui, pc, sn)
		}
	}
}

func trim(s string) string { return strings.TrimSpace(s) }

func TestParseRejectsForeignIDs(t *testing.T) {
	for _, id := range []string{"", "a", "a-b-c-d", "A--B", "A-B%2", "A-B%zz", "A-B.C"} {
		if _, _, _, err := Parse(id); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Parse(%q) err = %v, want ErrInvalidKey", id, err)
		}
	}
}

// Parse of a key whose parts need no unescaping allocates nothing: the
// tasks service parses the device key of every claim and report.
func TestParsePlainKeyAllocatesNothing(t *testing.T) {
	var oui, pc, sn string
	var err error
	n := testing.AllocsPerRun(100, func() { oui, pc, sn, err = Parse("00259E-HG8245H-4857544312345678") })
	if err != nil || oui != "00259E" || pc != "HG8245H" || sn != "4857544312345678" {
		t.Fatalf("Parse = %q %q %q %v", oui, pc, sn, err)
	}
	if n != 0 {
		t.Errorf("%v allocations per Parse of a plain key", n)
	}
	for id, want := range map[string][3]string{"A-B-": {"A", "B", ""}, "-A": {"", "", "A"}, "A%2DB-C": {"A-B", "", "C"}} {
		oui, pc, sn, err := Parse(id)
		if err != nil || [3]string{oui, pc, sn} != want {
			t.Errorf("Parse(%q) = %q %q %q %v, want %q", id, oui, pc, sn, err, want)
		}
	}
}
