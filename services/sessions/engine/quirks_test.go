package engine

import (
	"strings"
	"testing"
)

func TestQuirksMatch(t *testing.T) {
	q, err := ParseQuirks([]byte(`{"profiles": [
		{"oui": "00d09e", "discovery": {"batchSize": 50}},
		{"oui": "00D09E", "productClass": " Router ", "discovery": {"batchSize": 7, "gpn": "walk"}},
		{"oui": "00D09E", "productClass": "Router", "discovery": {"batchSize": 3}}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	q.Profiles = append(q.Profiles, builtinQuirks...)
	for _, c := range []struct {
		oui, pc string
		batch   int
		gpn     string
	}{
		{"00D09E", "Router", 7, GPNWalk}, // most specific, first listed
		{" 00d09e ", "Router", 7, GPNWalk},
		{"00D09E", "Switch", 50, ""}, // OUI alone
		{"00D09E", "", 50, ""},
		{"A00001", "OT2800", 31, ""}, // built in: netcwmp
		{"A00001", "OT2801", 0, ""},
		{"123456", "Router", 0, ""},
	} {
		got := q.Match(c.oui, c.pc)
		if got.Discovery.BatchSize != c.batch || got.Discovery.GPN != c.gpn {
			t.Errorf("%s/%s: %+v", c.oui, c.pc, got)
		}
	}
	if (*Quirks)(nil).Match("A00001", "OT2800").Discovery.BatchSize != 0 {
		t.Error("nil quirks match")
	}
	if DefaultQuirks().Match("a00001", "OT2800").Discovery.BatchSize != 31 {
		t.Error("built-in netcwmp profile missing")
	}
}

func TestParseQuirksRejects(t *testing.T) {
	for name, c := range map[string]struct{ in, want string }{
		"unknown field": {`{"profiles": [{"oui": "00D09E", "discovery": {"batch": 1}}]}`, "unknown field"},
		"bad oui":       {`{"profiles": [{"oui": "00D09G"}]}`, "profile 0: oui"},
		"negative":      {`{"profiles": [{"oui": "00D09E", "discovery": {"batchSize": -1}}]}`, "negative"},
		"gpn":           {`{"profiles": [{"oui": "00D09E"}, {"oui": "00D09E", "discovery": {"gpn": "bfs"}}]}`, "profile 1: discovery.gpn"},
		"trailing":      {`{"profiles": []} {}`, "after the JSON object"},
	} {
		if _, err := ParseQuirks([]byte(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDiscoveryProfileMerge(t *testing.T) {
	p := DiscoveryProfile{}
	for _, st := range []struct {
		o    DiscoveryObservation
		want DiscoveryProfile
	}{
		{DiscoveryObservation{GPVBatchFailed: 100}, DiscoveryProfile{GPVBatchFailed: 100}},
		{DiscoveryObservation{GPVBatchFailed: 50}, DiscoveryProfile{GPVBatchFailed: 50}},
		{DiscoveryObservation{GPVBatchOK: 25}, DiscoveryProfile{GPVBatchOK: 25, GPVBatchFailed: 50}},
		{DiscoveryObservation{GPVBatchFailed: 10}, DiscoveryProfile{GPVBatchOK: 25, GPVBatchFailed: 50}},
		{DiscoveryObservation{GPVBatchOK: 60}, DiscoveryProfile{GPVBatchOK: 60}},
		{DiscoveryObservation{SubtreeGPNFailed: true}, DiscoveryProfile{GPVBatchOK: 60, SubtreeGPNFailed: true}},
	} {
		if p = p.Merge(st.o); p != st.want {
			t.Fatalf("merge %+v: %+v, want %+v", st.o, p, st.want)
		}
	}
}

// The batch a discovery starts with: the configured one, a quirk's, lowered
// to half the smallest size that failed, never below what worked or one.
func TestDiscoverySettings(t *testing.T) {
	p := &discoveryPlanner{batch: 100}
	for _, c := range []struct {
		q     DiscoveryQuirks
		prof  DiscoveryProfile
		batch int
		walk  bool
	}{
		{DiscoveryQuirks{}, DiscoveryProfile{}, 100, false},
		{DiscoveryQuirks{BatchSize: 31}, DiscoveryProfile{}, 31, false},
		{DiscoveryQuirks{}, DiscoveryProfile{GPVBatchFailed: 100}, 50, false},
		{DiscoveryQuirks{}, DiscoveryProfile{GPVBatchOK: 40, GPVBatchFailed: 50}, 40, false},
		{DiscoveryQuirks{}, DiscoveryProfile{GPVBatchFailed: 1}, 1, false},
		{DiscoveryQuirks{BatchSize: 20}, DiscoveryProfile{GPVBatchFailed: 100}, 20, false},
		{DiscoveryQuirks{}, DiscoveryProfile{SubtreeGPNFailed: true}, 100, true},
		{DiscoveryQuirks{GPN: GPNSubtree}, DiscoveryProfile{SubtreeGPNFailed: true}, 100, false},
		{DiscoveryQuirks{GPN: GPNWalk}, DiscoveryProfile{}, 100, true},
	} {
		batch, walk := p.settings(c.q, c.prof)
		if batch != c.batch || walk != c.walk {
			t.Errorf("%+v %+v: batch %d walk %t, want %d %t", c.q, c.prof, batch, walk, c.batch, c.walk)
		}
	}
}

func TestBudget(t *testing.T) {
	b := &budget{limit: 1000}
	u := usage{maxParams: 3, maxBytes: 600, budget: b}
	if !u.charge(2, 500) || u.charge(2, 10) || u.charge(1, 200) || !u.charge(1, 100) {
		t.Fatalf("charges: %+v", u)
	}
	if b.used.Load() != 600 || !b.admits(400) || b.admits(401) {
		t.Fatalf("budget used %d", b.used.Load())
	}
	u.release()
	if b.used.Load() != 0 || u.Params != 0 {
		t.Fatalf("after release: used %d, usage %+v", b.used.Load(), u)
	}
	if !(&budget{}).admits(1 << 40) {
		t.Fatal("no limit refuses")
	}
}
