package sim

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// TestIRCache: an InformResponse's bytes seen before decode to what
// cwmp.DecodeWith gives, as the caller's own copy; other bodies and other
// charsets are decoded; malformed bodies fail every time, as before.
func TestIRCache(t *testing.T) {
	var c irCache
	ir := []byte(stubInformResponse)
	want, err := cwmp.DecodeWith(ir, cwmp.DecodeOptions{Charset: "utf-8"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		got, err := c.decode(ir, "utf-8")
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("decode %d: %+v, %v; want %+v", i, got, err, want)
		}
		if i == 0 && c.last.Load() == nil {
			t.Fatal("the InformResponse was not remembered")
		}
		// The copy is the caller's: changing it changes nothing cached.
		got.Header.ID = "changed"
		got.Body.(*cwmp.InformResponse).MaxEnvelopes = 9
	}

	// The same bytes with another Content-Type charset: decoded.
	if _, err := c.decode(ir, "iso-8859-1"); err != nil {
		t.Fatalf("charset iso-8859-1: %v", err)
	}
	if c.last.Load().charset != "iso-8859-1" {
		t.Error("another charset's decoding was not remembered")
	}

	// Another message: decoded, not remembered.
	gpv, err := c.decode([]byte(stubGPV), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := gpv.Body.(*cwmp.GetParameterValues); !ok || c.last.Load().charset != "iso-8859-1" {
		t.Errorf("GetParameterValues decoded as %T, cache charset %q", gpv.Body, c.last.Load().charset)
	}

	// Malformed: the InformResponse cut short, or with a changed byte.
	for _, bad := range []string{stubInformResponse[:len(stubInformResponse)-5],
		strings.Replace(stubInformResponse, "<MaxEnvelopes>1<", "<MaxEnvelopes>x<", 1)} {
		for range 2 {
			_, err := c.decode([]byte(bad), "utf-8")
			var derr *cwmp.DecodeError
			if !errors.As(err, &derr) {
				t.Errorf("%q: error %v, want a *cwmp.DecodeError", bad, err)
			}
		}
	}
}

// TestNextID: a session's request IDs count from cpesim-1, past the ones
// built in advance.
func TestNextID(t *testing.T) {
	ss := &session{}
	for i := 1; i <= 2*len(sessionIDs); i++ {
		if got, want := ss.nextID(), "cpesim-"+strconv.Itoa(i); got != want {
			t.Fatalf("ID %d is %q, want %q", i, got, want)
		}
	}
}
