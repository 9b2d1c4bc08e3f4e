package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

func sampleTree() []treeEntry {
	at := time.UnixMilli(1_700_000_000_123).UTC()
	return []treeEntry{
		{path: "Device.", Parameter: store.Parameter{Writable: store.TriFalse, Updated: at}},
		{path: "Device.DeviceInfo.Manufacturer", Parameter: store.Parameter{Value: "ACME", Type: "xsd:string", HasValue: true, Updated: at}},
		{path: "Device.DeviceInfo.UpTime", Parameter: store.Parameter{Value: " 42 ", Type: "xsd:unsignedInt", HasValue: true,
			Writable: store.TriFalse, Notification: store.NotificationOf(2), Updated: at.Add(-time.Hour)}},
		{path: "Device.X.Odd", Parameter: store.Parameter{Value: "", Type: "vendor:Special", HasValue: true}},
		{path: "Device.X.Type", Parameter: store.Parameter{Value: "é\x00\xff", Type: "", HasValue: true, Writable: store.TriTrue, Updated: at}},
	}
}

func TestTreeRoundTrip(t *testing.T) {
	for _, in := range [][]treeEntry{nil, sampleTree()} {
		got, err := decodeTree(encodeTree(nil, in), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 && len(in) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, in) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, in)
		}
	}
}

// TestDecodeTreeFunc: keep selects entries, and their paths and values
// are what decodeTree gives them.
func TestDecodeTreeFunc(t *testing.T) {
	enc := encodeTree(nil, sampleTree())
	all, err := decodeTree(enc, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeTreeFunc(enc, nil, func(p []byte) bool { return strings.HasPrefix(string(p), "Device.X.") })
	if err != nil {
		t.Fatal(err)
	}
	if want := all[3:]; !reflect.DeepEqual(got, want) {
		t.Errorf("kept:\n got %+v\nwant %+v", got, want)
	}
	if got, err := decodeTreeFunc(enc, nil, func([]byte) bool { return false }); err != nil || len(got) != 0 {
		t.Errorf("keep nothing: %+v, %v", got, err)
	}
}

// TestTreeDamaged: every truncation and every single-byte change of an
// encoded tree decodes to an error or to entries, never a panic, and a
// wrong version is refused.
func TestTreeDamaged(t *testing.T) {
	enc := encodeTree(nil, sampleTree())
	for n := range len(enc) {
		if _, err := decodeTree(enc[:n], nil); n > 0 && err == nil {
			t.Errorf("truncated to %d bytes: no error", n)
		}
		for _, b := range []byte{0, 0x7f, 0x80, 0xff} {
			bad := slices.Clone(enc)
			bad[n] = b
			_, _ = decodeTree(bad, nil)
			_, _ = treeMatch(bad, nil, "Device.X.Type", store.OpEq, "x")
		}
	}
	bad := slices.Clone(enc)
	bad[0] = 9
	if _, err := decodeTree(bad, nil); err == nil {
		t.Error("version 9 accepted")
	}
}

// TestTreeDamagedPaths: a tree whose paths are not strictly increasing
// or grow past store.MaxPathLength is damaged. Entries that each extend
// the previous path by a byte cost a few bytes apiece but decode to
// paths whose total length is quadratic in their count: unchecked, a
// damaged tree of a megabyte would decode to gigabytes.
func TestTreeDamagedPaths(t *testing.T) {
	entry := func(p string) treeEntry { return treeEntry{path: p} }
	var growing []treeEntry
	for n := 1; n <= store.MaxPathLength+1; n++ {
		growing = append(growing, entry(strings.Repeat("a", n)))
	}
	for name, entries := range map[string][]treeEntry{
		"descending":          {entry("Device.B"), entry("Device.A")},
		"duplicate":           {entry("Device.A"), entry("Device.A")},
		"prefix after longer": {entry("Device.AB"), entry("Device.A")},
		"empty path":          {entry("")},
		"too long":            growing,
	} {
		if _, err := decodeTree(encodeTree(nil, entries), nil); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
		if _, err := treeMatch(encodeTree(nil, entries), nil, "z", store.OpExists, ""); err == nil {
			t.Errorf("%s: matched without error", name)
		}
	}
	if _, err := decodeTree(encodeTree(nil, growing[:store.MaxPathLength]), nil); err != nil {
		t.Errorf("paths up to %d bytes: %v", store.MaxPathLength, err)
	}
}

func FuzzTreeDecode(f *testing.F) {
	f.Add(encodeTree(nil, sampleTree()))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := decodeTree(b, nil)
		if err != nil {
			return
		}
		// What decodes re-encodes to a tree that decodes the same.
		again, err := decodeTree(encodeTree(nil, entries), nil)
		if err != nil || len(again) != len(entries) {
			t.Fatalf("re-encoded: %d entries, %v; want %d", len(again), err, len(entries))
		}
	})
}

func TestTreeMatch(t *testing.T) {
	tree := encodeTree(nil, sampleTree())
	for _, c := range []struct {
		path    string
		op      store.Op
		operand string
		want    bool
	}{
		{"Device.", store.OpExists, "", true},
		{"Device.", store.OpEq, "", false}, // no value
		{"Device.DeviceInfo.UpTime", store.OpGt, "9", true},
		{"Device.DeviceInfo.UpTime", store.OpLt, "100", true},
		{"Device.DeviceInfo.UpTime", store.OpLt, "4.5", false},
		{"Device.DeviceInfo.UpTime", store.OpEq, " 42 ", true},
		{"Device.DeviceInfo.Manufacturer", store.OpPrefix, "AC", true},
		{"Device.DeviceInfo.Manufacturer", store.OpNe, "ACME", false},
		{"Device.DeviceInfo.Manufacturer", store.OpLt, "B", true},
		{"Device.DeviceInfo.Missing", store.OpExists, "", false},
		{"Device.Z", store.OpExists, "", false},
		{"Device.X.Odd", store.OpEq, "", true},
	} {
		got, err := treeMatch(tree, nil, c.path, c.op, c.operand)
		if err != nil || got != c.want {
			t.Errorf("%s %s %q = %v, %v; want %v", c.path, c.op, c.operand, got, err, c.want)
		}
	}
}

func TestIndexSet(t *testing.T) {
	idx, err := newIndexSet([]string{"Device.DeviceInfo.*", "Device.IP.Interface.*.IPv4Address.*.IPAddress", "Device.Hosts."})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"Device.DeviceInfo.UpTime":                         true,
		"Device.DeviceInfo.":                               false,
		"Device.DeviceInfo.ProcessStatus.CPUUsage":         false,
		"Device.IP.Interface.1.IPv4Address.2.IPAddress":    true,
		"Device.IP.Interface.1.IPv4Address.2.SubnetMask":   false,
		"Device.IP.Interface..IPv4Address.2.IPAddress":     false,
		"Device.Hosts.":                                    true,
		"Device.Hosts.Host.3.IPAddress":                    true,
		"Device.HostsX.Host":                               false,
		"InternetGatewayDevice.DeviceInfo.SoftwareVersion": false,
	} {
		if got := idx.has(path); got != want {
			t.Errorf("has(%q) = %v, want %v", path, got, want)
		}
	}
	if _, err := newIndexSet([]string{"Device..X"}); err == nil {
		t.Error("empty segment accepted")
	}
	all, _ := newIndexSet([]string{IndexAll})
	if !all.has("Anything.At.All") || all.String() != IndexAll {
		t.Error("all does not index everything")
	}
}

func TestMergeTree(t *testing.T) {
	at := time.UnixMilli(1_800_000_000_000).UTC()
	stored := sampleTree()
	p := storekit.Plan{
		Deletes:       []string{"Device.X."},
		DeleteEntries: []string{"Device.DeviceInfo.Manufacturer"},
		Updates: []storekit.Update{
			{ParamUpdate: store.ParamUpdate{Path: "Device.A", Value: "1", Type: "xsd:int", HasValue: true}},
			{ParamUpdate: store.ParamUpdate{Path: "Device.DeviceInfo.UpTime", Writable: store.TriTrue}},
			{ParamUpdate: store.ParamUpdate{Path: "Device.X.Type", Value: "new", Type: "xsd:string", HasValue: true}},
		},
	}
	got := mergeTree(stored, &p, at, "", 0, nil)
	var paths []string
	for _, e := range got {
		paths = append(paths, e.path)
	}
	if want := []string{"Device.", "Device.A", "Device.DeviceInfo.UpTime", "Device.X.Type"}; !slices.Equal(paths, want) {
		t.Fatalf("paths %v, want %v", paths, want)
	}
	up := got[2].Parameter
	if up.Value != " 42 " || up.Writable != store.TriTrue || up.Notification != store.NotificationOf(2) || !up.Updated.Equal(at) {
		t.Errorf("attribute update lost the rest of the entry: %+v", up)
	}
	if x := got[3].Parameter; x.Writable != store.TriUnknown || x.Value != "new" {
		t.Errorf("re-created entry kept what its deletion removed: %+v", x)
	}
}

// TestUpgradeRowsToTrees opens a database laid out before trees (every
// entry a row of parameters, no device_trees) and finds every entry,
// value and time in the trees, with only the indexed entries left as rows.
func TestUpgradeRowsToTrees(t *testing.T) {
	for _, c := range []struct {
		name     string
		patterns []string
		rows     []string
	}{
		{"default index", nil, []string{"Device.DeviceInfo.ModelName"}},
		{"no index", []string{}, nil},
	} {
		t.Run(c.name, func(t *testing.T) { testUpgradeRowsToTrees(t, c.patterns, c.rows) })
	}
}

func testUpgradeRowsToTrees(t *testing.T, patterns, wantRows []string) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	const tenant = "default"
	dev := testDevice("U")
	id := store.MakeID(dev)
	at := batchBase
	diff := store.Diff{Time: at, SessionID: "s1", DeviceID: &dev, Inform: &store.Inform{Events: []cwmp.Event{{Code: "0 BOOTSTRAP"}}}}
	for i := range 50 {
		diff.Params = append(diff.Params, store.SetValue(fmt.Sprintf("Device.Big.%d.Value", i), fmt.Sprint(i), "xsd:int"))
	}
	diff.Params = append(diff.Params, store.SetValue("Device.DeviceInfo.ModelName", "2.0", "xsd:string"),
		store.SetWritable("Device.Big.", true))

	// Write the device with every entry indexed, then take the database
	// back to migration 5: the rows are the whole tree.
	s := New(Config{Path: path, IndexedParams: []string{IndexAll}})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplySessionDiff(t.Context(), tenant, id, diff, 1); err != nil {
		t.Fatal(err)
	}
	want := mustGet(t, s, tenant, id).Params
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TABLE device_trees`, `DROP TABLE store_meta`,
		`ALTER TABLE devices DROP COLUMN crp_username`, `ALTER TABLE devices DROP COLUMN crp_password`,
		`ALTER TABLE devices DROP COLUMN crp_password_key`, `ALTER TABLE devices DROP COLUMN crp_time`,
		`ALTER TABLE devices DROP COLUMN cr_refused`, `ALTER TABLE devices DROP COLUMN presets`,
		`ALTER TABLE devices DROP COLUMN tree_delta`, `ALTER TABLE devices DROP COLUMN tree_bytes`,
		`DELETE FROM schema_migrations WHERE version >= 6`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s = New(Config{Path: path, IndexedParams: patterns})
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("start on a database before trees: %v", err)
	}
	defer s.Close(context.Background())
	if got := mustGet(t, s, tenant, id).Params; !reflect.DeepEqual(got, want) {
		t.Errorf("after the upgrade:\n got %v\nwant %v", got, want)
	}
	var rows []string
	r, err := s.st.r.Query(`SELECT path FROM parameters ORDER BY path`)
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var p string
		if err := r.Scan(&p); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, p)
	}
	r.Close()
	if !slices.Equal(rows, wantRows) {
		t.Errorf("index rows after the upgrade: %v", rows)
	}
	// Filters answer from either side.
	for _, c := range []store.ParamCondition{
		{Path: "Device.DeviceInfo.ModelName", Op: store.OpEq, Value: "2.0"},
		{Path: "Device.Big.7.Value", Op: store.OpGt, Value: "6"},
	} {
		page, err := s.List(t.Context(), store.Filter{Tenant: tenant, Params: []store.ParamCondition{c}}, store.PageRequest{}, store.ReadOptions{})
		if err != nil || len(page.Devices) != 1 {
			t.Errorf("filter %+v: %d devices, %v", c, len(page.Devices), err)
		}
	}
}

// TestIndexChangeRebuildsRows: starting with other patterns rebuilds the
// rows, and filters on the newly indexed path match what they did.
func TestIndexChangeRebuildsRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	const tenant = "default"
	start := func(patterns ...string) *Store {
		t.Helper()
		s := New(Config{Path: path, IndexedParams: patterns})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		return s
	}
	count := func(s *Store) (n int) {
		t.Helper()
		if err := s.st.r.QueryRow(`SELECT count(*) FROM parameters`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	s := start("Device.DeviceInfo.*")
	for i := range 3 {
		dev := testDevice(fmt.Sprintf("I%d", i))
		d := store.Diff{Time: batchBase, DeviceID: &dev, Inform: &store.Inform{},
			Params: []store.ParamUpdate{
				store.SetValue("Device.DeviceInfo.UpTime", "1", "xsd:unsignedInt"),
				store.SetValue("Device.WiFi.SSID.1.SSID", fmt.Sprintf("net-%d", i), "xsd:string"),
			}}
		if _, err := s.ApplySessionDiff(t.Context(), tenant, store.MakeID(dev), d, 1); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(s); n != 3 {
		t.Fatalf("%d rows with DeviceInfo indexed, want 3", n)
	}
	s.Close(context.Background())

	s = start("Device.WiFi.SSID.*.SSID")
	defer s.Close(context.Background())
	if n := count(s); n != 3 {
		t.Fatalf("%d rows with the SSIDs indexed, want 3", n)
	}
	var p string
	if err := s.st.r.QueryRow(`SELECT min(path) FROM parameters`).Scan(&p); err != nil || !strings.HasPrefix(p, "Device.WiFi.") {
		t.Fatalf("rows after the change: %q, %v", p, err)
	}
	page, err := s.List(t.Context(), store.Filter{Tenant: tenant, Params: []store.ParamCondition{
		{Path: "Device.WiFi.SSID.1.SSID", Op: store.OpEq, Value: "net-1"}}}, store.PageRequest{}, store.ReadOptions{})
	if err != nil || len(page.Devices) != 1 {
		t.Fatalf("filter on the new index: %d devices, %v", len(page.Devices), err)
	}
}

// mergeTree is the reference mergeEncoded is held to: it applies a plan's deletions and updates, in that order, to the
// stored entries and returns the new tree. Every update stamps its entry
// with at; a value replaces value and type, a known attribute replaces
// the stored one, unknown keeps it. Entries whose paths are in confirmed
// get their Updated time moved to confirmedAt when later (see "Confirmed
// entries" in apply.go), so that the time readers derived from the
// device row survives the device row's next confirmation.
func mergeTree(stored []treeEntry, p *storekit.Plan, at time.Time, confirmed string, confirmedAt int64, out []treeEntry) []treeEntry {
	out = slices.Grow(out[:0], len(stored)+len(p.Updates))
	if p.DeleteAll {
		stored = nil
	}
	if confirmed != "" && confirmedAt != 0 {
		t := time.UnixMilli(confirmedAt).UTC()
		for path := range strings.SplitSeq(confirmed, "\n") {
			if i, ok := slices.BinarySearchFunc(stored, path, cmpEntryPath); ok && stored[i].Updated.Before(t) {
				stored[i].Updated = t
			}
		}
	}
	deleted := func(path string) bool {
		if _, ok := storekit.Covered(p.Deletes, path); ok {
			return true
		}
		_, ok := slices.BinarySearch(p.DeleteEntries, path)
		return ok
	}
	i, j := 0, 0
	for i < len(stored) || j < len(p.Updates) {
		switch {
		case j == len(p.Updates) || (i < len(stored) && stored[i].path < p.Updates[j].Path):
			if !deleted(stored[i].path) {
				out = append(out, stored[i])
			}
			i++
		case i == len(stored) || p.Updates[j].Path < stored[i].path:
			e := treeEntry{path: p.Updates[j].Path}
			applyUpdate(&e.Parameter, &p.Updates[j], at)
			out = append(out, e)
			j++
		default: // same path
			e := stored[i]
			if deleted(e.path) {
				e = treeEntry{path: e.path}
			}
			applyUpdate(&e.Parameter, &p.Updates[j], at)
			out = append(out, e)
			i++
			j++
		}
	}
	return out
}

func applyUpdate(dst *store.Parameter, u *storekit.Update, at time.Time) {
	if u.HasValue {
		dst.HasValue, dst.Value, dst.Type = true, u.Value, u.Type
	}
	if u.Writable != store.TriUnknown {
		dst.Writable = u.Writable
	}
	if u.Notification != store.NotificationUnknown {
		dst.Notification = u.Notification
	}
	dst.Updated = at
}

// TestMergeEncodedMatchesReference holds mergeEncoded to mergeTree on
// random trees and plans: deletions of subtrees and entries, new entries,
// value and attribute updates, confirmed paths.
func TestMergeEncodedMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	paths := func() string {
		return fmt.Sprintf("Device.%s.%d.%s", []string{"A", "B", "WiFi", "X"}[rng.IntN(4)], rng.IntN(4),
			[]string{"", "Name", "Enable", "Stats.Bytes", "Z"}[rng.IntN(5)])
	}
	types := []string{"xsd:string", "xsd:unsignedInt", "vendor:odd", "", "xsd:dateTime"}
	base := time.UnixMilli(1_700_000_000_000).UTC()
	compared := 0
	for round := range 500 {
		// A stored tree.
		seen := map[string]bool{}
		var stored []treeEntry
		for range rng.IntN(30) {
			p := paths()
			if seen[p] {
				continue
			}
			seen[p] = true
			e := treeEntry{path: p, Parameter: store.Parameter{Writable: store.Tri(rng.IntN(3)),
				Notification: store.NotificationOf(rng.IntN(3)), Updated: base.Add(time.Duration(rng.IntN(1000)) * time.Second)}}
			if rng.IntN(4) > 0 {
				e.HasValue, e.Value, e.Type = true, fmt.Sprint(rng.IntN(100)), types[rng.IntN(len(types))]
			}
			if rng.IntN(10) == 0 {
				e.Updated = time.Time{}
			}
			stored = append(stored, e)
		}
		slices.SortFunc(stored, func(a, b treeEntry) int { return strings.Compare(a.path, b.path) })
		// A plan.
		d := store.Diff{Time: base.Add(time.Hour)}
		for range rng.IntN(8) {
			switch p := paths(); rng.IntN(3) {
			case 0:
				d.Params = append(d.Params, store.SetValue(p, fmt.Sprint(rng.IntN(100)), types[rng.IntN(len(types))]))
			case 1:
				d.Params = append(d.Params, store.SetWritable(p, rng.IntN(2) == 0))
			default:
				d.Params = append(d.Params, store.SetNotification(p, rng.IntN(3)))
			}
		}
		for range rng.IntN(3) {
			if rng.IntN(2) == 0 {
				d.DeletePaths = append(d.DeletePaths, fmt.Sprintf("Device.%s.", []string{"A", "B", "WiFi"}[rng.IntN(3)]))
			} else {
				d.DeletePaths = append(d.DeletePaths, paths())
			}
		}
		if rng.IntN(20) == 0 {
			d.DeletePaths = append(d.DeletePaths, "")
		}
		plan, err := storekit.PlanDiff("t", "00AABB-R-S1", d, 1)
		if err != nil {
			continue // an invalid random path: not what is tested
		}
		at := base.Add(time.Hour)
		var confirmed []string
		for _, e := range stored {
			if rng.IntN(4) == 0 {
				confirmed = append(confirmed, e.path)
			}
		}
		confirmedAt := base.Add(time.Duration(rng.IntN(2000)) * time.Second).UnixMilli()
		enc := encodeTree(nil, stored)

		want := mergeTree(slices.Clone(stored), &plan, at, strings.Join(confirmed, "\n"), confirmedAt, nil)
		out, _, n, err := mergeEncoded(nil, nil, enc, &plan, at, strings.Join(confirmed, "\n"), confirmedAt)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeTree(out, nil)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if n != len(got) || len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
			t.Fatalf("round %d: plan %+v on %+v\n got %+v\nwant %+v", round, plan, stored, got, want)
		}
		compared++
	}
	if compared < 250 {
		t.Fatalf("only %d of 500 random plans were valid", compared)
	}
}

// TestTreeMatchAllocs: fleet_tree_match runs once per device a list
// reads, walking the tree to the path; it allocates nothing per entry,
// however long the paths and values (an unindexed filter is linear in the
// fleet, so what each device costs is the whole cost). The one
// allocation left is the reader's path buffer, which escape analysis
// moves to the heap (the reader stores slices of its input in itself).
func TestTreeMatchAllocs(t *testing.T) {
	long := strings.Repeat("v", 100)
	var entries []treeEntry
	for i := range 200 {
		entries = append(entries, treeEntry{
			path:      fmt.Sprintf("Device.WiFi.AccessPoint.%03d.AssociatedDevice.1.Stats.BytesSent", i),
			Parameter: store.Parameter{Value: long, Type: "xsd:string", HasValue: true},
		})
	}
	tree := encodeTree(nil, entries)
	last := entries[len(entries)-1].path
	for _, op := range []store.Op{store.OpExists, store.OpEq, store.OpNe, store.OpPrefix, store.OpLt} {
		n := testing.AllocsPerRun(20, func() {
			if ok, err := treeMatch(tree, nil, last, op, long); err != nil || !ok && op != store.OpNe && op != store.OpLt {
				t.Fatalf("%s: %v, %v", op, ok, err)
			}
		})
		if n > 1 {
			t.Errorf("%s: %v allocations per match; want at most 1", op, n)
		}
	}
}

// TestTreeSizeBounded: a diff that would grow a device's tree past
// maxTreeBytes is refused as an invalid argument and writes nothing; the
// device keeps its tree, and smaller diffs still apply.
func TestTreeSizeBounded(t *testing.T) {
	old := maxTreeBytes
	maxTreeBytes = 4 << 10
	defer func() { maxTreeBytes = old }()
	s := startStore(t)
	const tenant = "default"
	dev := testDevice("BIG")
	id := store.MakeID(dev)
	at := batchBase
	small := store.Diff{Time: at, DeviceID: &dev, Inform: &store.Inform{},
		Params: []store.ParamUpdate{store.SetValue("Device.A", "1", "xsd:string")}}
	if _, err := s.ApplySessionDiff(t.Context(), tenant, id, small, 1); err != nil {
		t.Fatal(err)
	}
	big := store.Diff{Time: at.Add(time.Minute), DeviceID: &dev, Inform: &store.Inform{}}
	for i := range 10 {
		big.Params = append(big.Params, store.SetValue(fmt.Sprintf("Device.Big.%d", i), strings.Repeat("x", 1024), "xsd:string"))
	}
	if _, err := s.ApplySessionDiff(t.Context(), tenant, id, big, 1); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("a diff growing the tree past the limit: %v, want ErrInvalidArgument", err)
	}
	got := mustGet(t, s, tenant, id)
	if len(got.Params) != 1 || got.Params["Device.A"].Value != "1" || !got.LastInform.Equal(at) {
		t.Fatalf("after the refused diff: %d parameters, last Inform %v", len(got.Params), got.LastInform)
	}
	small.Time = at.Add(2 * time.Minute)
	small.Params[0].Value = "2"
	if _, err := s.ApplySessionDiff(t.Context(), tenant, id, small, 1); err != nil {
		t.Fatal(err)
	}
	if v := mustGet(t, s, tenant, id).Params["Device.A"].Value; v != "2" {
		t.Fatalf("Device.A = %q after a later small diff", v)
	}
}

// BenchmarkMergeOneValue merges a diff that changes one value (a task's
// GetParameterValues of Device.DeviceInfo.UpTime) into a tree of 1,000
// entries: what the writer does to the tree of a device whose session
// read one value that changed.
func BenchmarkMergeOneValue(b *testing.B) {
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var stored []treeEntry
	for i := range 100 {
		for _, p := range []string{"Enable", "Status", "Name", "MACAddress", "MaxBitRate", "DuplexMode",
			"Stats.BytesSent", "Stats.BytesReceived", "Stats.PacketsSent", "Stats.PacketsReceived"} {
			stored = append(stored, treeEntry{path: fmt.Sprintf("Device.Ethernet.Interface.%d.%s", i+1, p),
				Parameter: store.Parameter{HasValue: true, Value: "value", Type: "xsd:string", Writable: store.TriTrue, Updated: at}})
		}
	}
	slices.SortFunc(stored, func(a, b treeEntry) int { return strings.Compare(a.path, b.path) })
	tree := encodeTree(nil, stored)
	plan, err := storekit.PlanDiff("default", "00AABB-HGW-M1", store.Diff{Time: at.Add(time.Minute),
		Params: []store.ParamUpdate{store.SetValue(stored[len(stored)/2].path, "12345", "xsd:unsignedInt")}}, 1)
	if err != nil {
		b.Fatal(err)
	}
	var dst, scratch []byte
	b.SetBytes(int64(len(tree)))
	b.ReportAllocs()
	for b.Loop() {
		if dst, scratch, _, err = mergeEncoded(dst, scratch, tree, &plan, plan.Time, "", 0); err != nil {
			b.Fatal(err)
		}
	}
}
