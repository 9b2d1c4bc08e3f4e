package sqlitestore

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

func TestEventsCacheHandsOutCopies(t *testing.T) {
	var c eventsCache
	const periodic = `[{"code":"2 PERIODIC","commandKey":""}]`
	want := []cwmp.Event{{Code: "2 PERIODIC"}}
	first, err := c.decode(periodic)
	if err != nil || !reflect.DeepEqual(first, want) {
		t.Fatalf("decode = %+v, %v", first, err)
	}
	first[0].Code = "changed by a caller"
	second, err := c.decode(periodic)
	if err != nil || !reflect.DeepEqual(second, want) {
		t.Fatalf("decode after a caller changed its copy = %+v, %v", second, err)
	}
	if got, err := c.decode("[]"); got != nil || err != nil {
		t.Fatalf("decode of no events = %+v, %v", got, err)
	}
	if _, err := c.decode("{"); err == nil {
		t.Fatal("decode of bad JSON succeeded")
	}
	// The cache stops growing at its bound and still decodes.
	for i := range maxCachedEvents + 10 {
		s := fmt.Sprintf(`[{"code":"M Download","commandKey":"k%d"}]`, i)
		got, err := c.decode(s)
		if err != nil || len(got) != 1 || got[0].CommandKey != fmt.Sprint("k", i) {
			t.Fatalf("decode %s = %+v, %v", s, got, err)
		}
	}
	if n := c.n.Load(); n != maxCachedEvents {
		t.Fatalf("cache holds %d entries, want the bound %d", n, maxCachedEvents)
	}
}
