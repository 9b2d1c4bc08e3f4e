package storekit

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/inventory/store"
)

func TestPlanDiffNormalises(t *testing.T) {
	at := time.Date(2025, 1, 1, 0, 0, 0, 999_999, time.FixedZone("x", 3600))
	d := store.Diff{
		Time:        at,
		DeletePaths: []string{"A.B.", "A.", "C.D.", "A.B.", "C.DE.", "A.X", "Q", "Q"},
		Params: []store.ParamUpdate{
			store.SetValue("Z", "1", "xsd:int"),
			store.SetWritable("Z", true),
			store.SetValue("Z", "x", "xsd:string"),
			store.SetNotification("M", 2),
		},
		AddTags:    []string{"b", "a", "b"},
		RemoveTags: []string{"c"},
	}
	p, err := PlanDiff("default", "X-1", d, 5)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Time.Equal(at.Truncate(time.Millisecond)) || p.Time.Location() != time.UTC {
		t.Errorf("time = %v", p.Time)
	}
	if !slices.Equal(p.Deletes, []string{"A.", "C.D.", "C.DE."}) || !slices.Equal(p.DeleteEntries, []string{"Q"}) {
		t.Errorf("deletes = %q, entries %q", p.Deletes, p.DeleteEntries)
	}
	if len(p.Updates) != 2 || p.Updates[0].Path != "M" || p.Updates[1].Path != "Z" {
		t.Fatalf("updates = %+v", p.Updates)
	}
	z := p.Updates[1]
	if z.Value != "x" || z.Type != "xsd:string" || z.Writable != store.TriTrue || z.Number != nil {
		t.Errorf("merged Z = %+v", z)
	}
	if !slices.Equal(p.AddTags, []string{"a", "b"}) || p.Token != 5 {
		t.Errorf("tags %q token %d", p.AddTags, p.Token)
	}
}

func TestCovered(t *testing.T) {
	prefixes := []string{"A.B.", "A.C.", "D."}
	cases := map[string]string{"A.B.": "A.B.", "A.B.x": "A.B.", "A.Bx": "", "A.C.1.2": "A.C.", "A.": "", "B": "", "D.z": "D.", "E": ""}
	for path, want := range cases {
		got, ok := Covered(prefixes, path)
		if got != want || ok != (want != "") {
			t.Errorf("Covered(%q) = %q, %v; want %q", path, got, ok, want)
		}
	}
}

func TestUpperBound(t *testing.T) {
	cases := map[string]string{"a": "b", "A.B.": "A.B/", "a\xff": "b", "\xff\xff": ""}
	for in, want := range cases {
		got, ok := UpperBound(in)
		if got != want || ok != (want != "") {
			t.Errorf("UpperBound(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if _, ok := UpperBound(""); ok {
		t.Error("UpperBound of empty prefix exists")
	}
}

func TestCursorRoundTrip(t *testing.T) {
	for _, id := range []string{"00AABB-R-S1", "weird id/ü", "-"} {
		got, err := DecodeCursor(EncodeCursor(id))
		if err != nil || got != id {
			t.Errorf("cursor of %q decodes to %q, %v", id, got, err)
		}
	}
	if _, err := DecodeCursor("x"); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("bad cursor: %v", err)
	}
}

func TestPageSize(t *testing.T) {
	for in, want := range map[int]int{-1: store.DefaultPageSize, 0: store.DefaultPageSize, 5: 5, store.MaxPageSize + 1: store.MaxPageSize} {
		if got := PageSize(store.PageRequest{Limit: in}); got != want {
			t.Errorf("PageSize(%d) = %d, want %d", in, got, want)
		}
	}
}
