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

// deltaCols reads a device's tree delta and tree length as stored (none
// when there is no such device).
func deltaCols(t *testing.T, s *Store, tenant, id string) (delta []byte, treeBytes sql.NullInt64) {
	t.Helper()
	err := s.st.r.QueryRowContext(t.Context(), `SELECT tree_delta, tree_bytes FROM devices WHERE tenant = ? AND id = ?`,
		tenant, id).Scan(&delta, &treeBytes)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatal(err)
	}
	return delta, treeBytes
}

// storedTree reads a device's tree as stored (nil when it has none).
func storedTree(t *testing.T, s *Store, tenant, id string) []byte {
	t.Helper()
	var tree []byte
	err := s.st.r.QueryRowContext(t.Context(), `SELECT tree FROM device_trees WHERE tenant = ? AND device_id = ?`,
		tenant, id).Scan(&tree)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatal(err)
	}
	return tree
}

// withoutDeltas starts a store whose writer writes every diff into the
// tree, as before deltas: the reference the tests hold deltas to.
func withoutDeltas(t *testing.T, cfg Config) *Store {
	t.Helper()
	old := maxDeltaEntries
	maxDeltaEntries = 0
	defer func() { maxDeltaEntries = old }()
	return startStoreWith(t, cfg)
}

func indexRows(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.st.r.QueryContext(t.Context(), `SELECT tenant, device_id, path, quote(value), quote(type), quote(number),
		quote(instant), quote(writable), quote(notification), updated FROM parameters ORDER BY tenant, device_id, path`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var cols [10]string
		dest := make([]any, len(cols))
		for i := range cols {
			dest[i] = &cols[i]
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.Join(cols[:], "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func listIDs(t *testing.T, s *Store, f store.Filter) ([]string, error) {
	t.Helper()
	page, err := s.List(t.Context(), f, store.PageRequest{Limit: 100}, store.ReadOptions{})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, d := range page.Devices {
		ids = append(ids, d.ID)
	}
	return ids, nil
}

// TestDeltaMatchesTreeAlone applies random sequences of session diffs
// (value and attribute updates, new entries, deletions of entries and
// subtrees, replays, confirmed entries that stay and that change, device
// deletions, a restart) to a store with deltas, bounded small so that
// folds are frequent, and to one without; every read must agree after
// every diff: the devices with their parameters, filters on paths that
// are not indexed, and the rows of the indexed paths.
func TestDeltaMatchesTreeAlone(t *testing.T) {
	cfg := Config{IndexedParams: []string{"Device.I.*"}}
	ref := withoutDeltas(t, cfg)
	old := maxDeltaEntries
	maxDeltaEntries = 12
	defer func() { maxDeltaEntries = old }()
	cfg.Path = filepath.Join(t.TempDir(), "inventory.db")
	s := New(cfg)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close(context.Background()) }()

	rng := rand.New(rand.NewPCG(3, 4))
	const tenant = "default"
	devs := []cwmp.DeviceID{testDevice("D0"), testDevice("D1"), testDevice("D2")}
	forced := []string{"Device.DeviceInfo.SoftwareVersion", "Device.DeviceInfo.UpTime", "Device.I.Forced", "Device.U.Forced"}
	paths := func() string {
		return fmt.Sprintf("Device.%s.%d.%s", []string{"I", "U", "W"}[rng.IntN(3)], rng.IntN(3),
			[]string{"Name", "Enable", "Stats.Bytes", "Z"}[rng.IntN(4)])
	}
	types := []string{"xsd:string", "xsd:unsignedInt", "xsd:int", "vendor:odd", "xsd:dateTime"}
	value := func(typ string) string {
		if typ == "xsd:dateTime" {
			return batchBase.Add(time.Duration(rng.IntN(100)) * time.Hour).Format(time.RFC3339)
		}
		return fmt.Sprint(rng.IntN(30))
	}
	at := batchBase
	folds, deltas := 0, 0
	last := map[int]store.Diff{}
	for step := range 600 {
		i := rng.IntN(len(devs))
		id := store.MakeID(devs[i])
		at = at.Add(time.Minute)
		d := store.Diff{Time: at, SessionID: fmt.Sprint("s", step), DeviceID: &devs[i], Inform: &store.Inform{}}
		if rng.IntN(15) == 0 {
			d.Time = at.Add(-time.Duration(rng.IntN(30)) * time.Minute) // a replay
		}
		// The forced Inform parameters, usually all of them.
		for _, p := range forced {
			if rng.IntN(8) > 0 {
				typ := types[rng.IntN(2)]
				d.Params = append(d.Params, store.SetValue(p, value(typ), typ))
			}
		}
		for range rng.IntN(5) {
			switch p := paths(); rng.IntN(4) {
			case 0, 1:
				typ := types[rng.IntN(len(types))]
				d.Params = append(d.Params, store.SetValue(p, value(typ), typ))
			case 2:
				d.Params = append(d.Params, store.SetWritable(p, rng.IntN(2) == 0))
			default:
				d.Params = append(d.Params, store.SetNotification(p, rng.IntN(3)))
			}
		}
		if prev, ok := last[i]; ok && rng.IntN(4) == 0 {
			// The same values again, as periodic sessions report them:
			// the store confirms them without writing their entries.
			d.Params = prev.Params
		} else if len(d.Params) > 0 {
			last[i] = d
		}
		switch rng.IntN(25) {
		case 0:
			d.DeletePaths = append(d.DeletePaths, fmt.Sprintf("Device.%s.", []string{"I", "U", "W"}[rng.IntN(3)]))
		case 1:
			d.DeletePaths = append(d.DeletePaths, paths())
		case 2:
			d.DeletePaths = append(d.DeletePaths, "")
		}
		if rng.IntN(60) == 0 {
			errA, errB := s.Delete(t.Context(), tenant, id), ref.Delete(t.Context(), tenant, id)
			if (errA == nil) != (errB == nil) {
				t.Fatalf("step %d: delete: %v, reference %v", step, errA, errB)
			}
			continue
		}
		before, _ := deltaCols(t, s, tenant, id)
		_, errA := s.ApplySessionDiff(t.Context(), tenant, id, d, 1)
		_, errB := ref.ApplySessionDiff(t.Context(), tenant, id, d, 1)
		if (errA == nil) != (errB == nil) {
			t.Fatalf("step %d: apply: %v, reference %v", step, errA, errB)
		}
		after, _ := deltaCols(t, s, tenant, id)
		switch {
		case after == nil && before != nil:
			folds++
		case after != nil:
			deltas++
		}
		got, want := mustGet(t, s, tenant, id), mustGet(t, ref, tenant, id)
		if !reflect.DeepEqual(got.Params, want.Params) {
			t.Fatalf("step %d, device %s: parameters\n got %v\nwant %v", step, id, got.Params, want.Params)
		}
		if step == 300 {
			// A restart, deltas left in the rows.
			if err := s.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			s = New(cfg)
			if err := s.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if step%10 != 0 {
			continue
		}
		if got, want := indexRows(t, s), indexRows(t, ref); !slices.Equal(got, want) {
			t.Fatalf("step %d: index rows\n got %v\nwant %v", step, got, want)
		}
		for _, op := range []store.Op{store.OpEq, store.OpNe, store.OpExists, store.OpNotExists, store.OpLt, store.OpGt, store.OpPrefix} {
			path := paths()
			if rng.IntN(3) == 0 {
				path = forced[rng.IntN(len(forced))]
			}
			typ := types[rng.IntN(len(types))]
			c := store.ParamCondition{Path: path, Op: op, Value: value(typ)}
			f := store.Filter{Tenant: tenant, Params: []store.ParamCondition{c}}
			got, errA := listIDs(t, s, f)
			want, errB := listIDs(t, ref, f)
			if (errA == nil) != (errB == nil) || !slices.Equal(got, want) {
				t.Fatalf("step %d: list %+v: %v (%v), reference %v (%v)", step, c, got, errA, want, errB)
			}
		}
	}
	t.Logf("%d folds, %d deltas", folds, deltas)
	// The sequence must have exercised both ways a diff goes.
	if folds < 20 || deltas < 100 {
		t.Fatalf("%d folds, %d diffs left a delta: the random sequence missed a path", folds, deltas)
	}
}

// TestDeltaPeriodicSessions: periodic sessions that report the same
// forced parameters and one changed value write the device's delta and
// not its tree; a diff that adds more entries than a delta holds folds
// them all into the tree and clears the delta.
func TestDeltaPeriodicSessions(t *testing.T) {
	s := startStoreWith(t, Config{IndexedParams: []string{"Device.DeviceInfo.*"}})
	const tenant = "default"
	dev := testDevice("P")
	id := store.MakeID(dev)
	at := batchBase
	first := store.Diff{Time: at, DeviceID: &dev, Inform: &store.Inform{}}
	for i := range 200 {
		first.Params = append(first.Params, store.SetValue(fmt.Sprintf("Device.Ethernet.Interface.%d.Name", i), "eth", "xsd:string"))
	}
	if _, err := s.ApplySessionDiff(t.Context(), tenant, id, first, 1); err != nil {
		t.Fatal(err)
	}
	tree := storedTree(t, s, tenant, id)
	if delta, n := deltaCols(t, s, tenant, id); delta != nil || !n.Valid || n.Int64 != int64(len(tree)) {
		t.Fatalf("after the first contact: delta %x, tree_bytes %v, tree of %d bytes", delta, n, len(tree))
	}
	for i := range 5 {
		at = at.Add(time.Hour)
		d := store.Diff{Time: at, DeviceID: &dev, Inform: &store.Inform{}, Params: []store.ParamUpdate{
			store.SetValue("Device.DeviceInfo.SoftwareVersion", "1.0", "xsd:string"),
			store.SetValue("Device.DeviceInfo.UpTime", fmt.Sprint(3600*(i+1)), "xsd:unsignedInt"),
		}}
		if _, err := s.ApplySessionDiff(t.Context(), tenant, id, d, 1); err != nil {
			t.Fatal(err)
		}
		if got := storedTree(t, s, tenant, id); string(got) != string(tree) {
			t.Fatalf("session %d rewrote the tree", i)
		}
		if delta, _ := deltaCols(t, s, tenant, id); delta == nil {
			t.Fatalf("session %d left no delta", i)
		}
		got := mustGet(t, s, tenant, id).Params
		if p := got["Device.DeviceInfo.UpTime"]; p.Value != fmt.Sprint(3600*(i+1)) || !p.Updated.Equal(at) {
			t.Fatalf("session %d: UpTime read as %+v", i, p)
		}
		if len(got) != 202 {
			t.Fatalf("session %d: %d parameters", i, len(got))
		}
	}
	// More new entries than a delta holds.
	at = at.Add(time.Hour)
	big := store.Diff{Time: at, DeviceID: &dev, Inform: &store.Inform{}}
	for i := range maxDeltaEntries + 1 {
		big.Params = append(big.Params, store.SetValue(fmt.Sprintf("Device.X.%d", i), "x", "xsd:string"))
	}
	big.Params = append(big.Params, store.SetValue("Device.DeviceInfo.SoftwareVersion", "1.0", "xsd:string"),
		store.SetValue("Device.DeviceInfo.UpTime", "1", "xsd:unsignedInt"))
	if _, err := s.ApplySessionDiff(t.Context(), tenant, id, big, 1); err != nil {
		t.Fatal(err)
	}
	folded := storedTree(t, s, tenant, id)
	if delta, n := deltaCols(t, s, tenant, id); delta != nil || n.Int64 != int64(len(folded)) {
		t.Fatalf("after the fold: delta %x, tree_bytes %v, tree of %d bytes", delta, n, len(folded))
	}
	entries, err := decodeTree(folded, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 202+maxDeltaEntries+1 {
		t.Fatalf("folded tree: %d entries", len(entries))
	}
	if p := mustGet(t, s, tenant, id).Params["Device.DeviceInfo.UpTime"]; p.Value != "1" || !p.Updated.Equal(at) {
		t.Fatalf("UpTime read as %+v after the fold", p)
	}
}

// TestDeltaFilterDeleteRestart: a value only the delta holds is found by
// a filter on a path that is not indexed, on a device that has no tree at
// all too; it survives a restart; a deleted device leaves neither tree
// nor delta behind.
func TestDeltaFilterDeleteRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	s := New(Config{Path: path})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close(context.Background()) }()
	const tenant = "default"
	a, b := testDevice("A"), testDevice("B")
	idA, idB := store.MakeID(a), store.MakeID(b)
	at := batchBase
	for _, dev := range []*cwmp.DeviceID{&a, &b} {
		// A first diff writes a tree; then one entry goes to the delta.
		d := store.Diff{Time: at, DeviceID: dev, Inform: &store.Inform{},
			Params: []store.ParamUpdate{store.SetValue("Device.U.Name", "old", "xsd:string")}}
		if _, err := s.ApplySessionDiff(t.Context(), tenant, store.MakeID(*dev), d, 1); err != nil {
			t.Fatal(err)
		}
	}
	d := store.Diff{Time: at.Add(time.Minute), DeviceID: &a, Inform: &store.Inform{},
		Params: []store.ParamUpdate{store.SetValue("Device.U.Name", "new", "xsd:string"),
			store.SetValue("Device.U.Count", "7", "xsd:unsignedInt")}}
	if _, err := s.ApplySessionDiff(t.Context(), tenant, idA, d, 1); err != nil {
		t.Fatal(err)
	}
	if delta, _ := deltaCols(t, s, tenant, idA); delta == nil {
		t.Fatal("the diff left no delta")
	}
	// A device whose tree is gone (every entry deleted) and whose only
	// entry is in the delta.
	del := store.Diff{Time: at.Add(time.Minute), DeviceID: &b, Inform: &store.Inform{}, DeletePaths: []string{""}}
	if _, err := s.ApplySessionDiff(t.Context(), tenant, idB, del, 1); err != nil {
		t.Fatal(err)
	}
	d.Time, d.DeviceID = at.Add(2*time.Minute), &b
	d.Params = []store.ParamUpdate{store.SetValue("Device.U.Count", "9", "xsd:unsignedInt")}
	if _, err := s.ApplySessionDiff(t.Context(), tenant, idB, d, 1); err != nil {
		t.Fatal(err)
	}
	if tree, delta := storedTree(t, s, tenant, idB), func() []byte { d, _ := deltaCols(t, s, tenant, idB); return d }(); tree != nil || delta == nil {
		t.Fatalf("device B: tree %x, delta %x; want no tree, a delta", tree, delta)
	}
	check := func(when string) {
		t.Helper()
		for _, c := range []struct {
			cond store.ParamCondition
			want []string
		}{
			{store.ParamCondition{Path: "Device.U.Name", Op: store.OpEq, Value: "new"}, []string{idA}},
			{store.ParamCondition{Path: "Device.U.Name", Op: store.OpEq, Value: "old"}, nil},
			{store.ParamCondition{Path: "Device.U.Name", Op: store.OpNotExists}, []string{idB}},
			{store.ParamCondition{Path: "Device.U.Count", Op: store.OpGt, Value: "8"}, []string{idB}},
			{store.ParamCondition{Path: "Device.U.Count", Op: store.OpExists}, []string{idA, idB}},
		} {
			got, err := listIDs(t, s, store.Filter{Tenant: tenant, Params: []store.ParamCondition{c.cond}})
			if err != nil || !slices.Equal(got, c.want) {
				t.Errorf("%s: %+v: %v, %v; want %v", when, c.cond, got, err, c.want)
			}
		}
		if p := mustGet(t, s, tenant, idA).Params; p["Device.U.Name"].Value != "new" || p["Device.U.Count"].Value != "7" {
			t.Errorf("%s: device A reads %v", when, p)
		}
	}
	check("before a restart")
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	s = New(Config{Path: path})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	check("after a restart")

	if err := s.Delete(t.Context(), tenant, idA); err != nil {
		t.Fatal(err)
	}
	if tree := storedTree(t, s, tenant, idA); tree != nil {
		t.Fatal("a deleted device left its tree")
	}
	// Created again: nothing of before.
	fresh := store.Diff{Time: at.Add(time.Hour), DeviceID: &a, Inform: &store.Inform{},
		Params: []store.ParamUpdate{store.SetValue("Device.V", "1", "xsd:string")}}
	if _, err := s.ApplySessionDiff(t.Context(), tenant, idA, fresh, 1); err != nil {
		t.Fatal(err)
	}
	if p := mustGet(t, s, tenant, idA).Params; len(p) != 1 || p["Device.V"].Value != "1" {
		t.Fatalf("re-created device reads %v", p)
	}
}

// TestDeltaDamaged: a damaged delta is an error for every reader and for
// the next diff, never a panic.
func TestDeltaDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	s := New(Config{Path: path})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	const tenant = "default"
	dev := testDevice("X")
	id := store.MakeID(dev)
	for i := range 2 {
		d := store.Diff{Time: batchBase.Add(time.Duration(i) * time.Minute), DeviceID: &dev, Inform: &store.Inform{},
			Params: []store.ParamUpdate{store.SetValue("Device.A", fmt.Sprint(i), "xsd:string")}}
		if _, err := s.ApplySessionDiff(t.Context(), tenant, id, d, 1); err != nil {
			t.Fatal(err)
		}
	}
	delta, _ := deltaCols(t, s, tenant, id)
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{delta[:len(delta)-1], {2, 1}, append([]byte{1, 9}, delta[2:]...)} {
		db, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`UPDATE devices SET tree_delta = ?`, bad); err != nil {
			t.Fatal(err)
		}
		db.Close()
		s = New(Config{Path: path})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(t.Context(), tenant, id, store.ReadOptions{Params: true}); !errors.Is(err, errBadTree) {
			t.Errorf("delta %x: get: %v", bad, err)
		}
		_, err = listIDs(t, s, store.Filter{Tenant: tenant, Params: []store.ParamCondition{{Path: "Device.Z", Op: store.OpExists}}})
		if err == nil {
			t.Errorf("delta %x: list: no error", bad)
		}
		d := store.Diff{Time: batchBase.Add(time.Hour), DeviceID: &dev, Inform: &store.Inform{},
			Params: []store.ParamUpdate{store.SetValue("Device.B", "1", "xsd:string")}}
		if _, err := s.ApplySessionDiff(t.Context(), tenant, id, d, 1); !errors.Is(err, errBadTree) {
			t.Errorf("delta %x: apply: %v", bad, err)
		}
		if err := s.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDeltaAfterMigration: a database from before deltas (no tree_delta,
// no tree_bytes) gets the columns; the first diff of each device writes
// its tree, which records its length, and the next goes to the delta.
func TestDeltaAfterMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	s := New(Config{Path: path})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	const tenant = "default"
	dev := testDevice("M")
	id := store.MakeID(dev)
	apply := func(at time.Time, v string) {
		t.Helper()
		d := store.Diff{Time: at, DeviceID: &dev, Inform: &store.Inform{},
			Params: []store.ParamUpdate{store.SetValue("Device.A", v, "xsd:string")}}
		if _, err := s.ApplySessionDiff(t.Context(), tenant, id, d, 1); err != nil {
			t.Fatal(err)
		}
	}
	apply(batchBase, "1")
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`ALTER TABLE devices DROP COLUMN tree_delta`, `ALTER TABLE devices DROP COLUMN tree_bytes`,
		`DELETE FROM schema_migrations WHERE version >= 9`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	s = New(Config{Path: path})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close(context.Background()) }()
	if p := mustGet(t, s, tenant, id).Params; p["Device.A"].Value != "1" {
		t.Fatalf("after the migration: %v", p)
	}
	apply(batchBase.Add(time.Minute), "2")
	if delta, n := deltaCols(t, s, tenant, id); delta != nil || !n.Valid {
		t.Fatalf("first diff after the migration: delta %x, tree_bytes %v; want the tree written", delta, n)
	}
	apply(batchBase.Add(2*time.Minute), "3")
	if delta, _ := deltaCols(t, s, tenant, id); delta == nil {
		t.Fatal("second diff after the migration left no delta")
	}
	if p := mustGet(t, s, tenant, id).Params; p["Device.A"].Value != "3" {
		t.Fatalf("after two diffs: %v", p)
	}
}

// TestApplyDeltaMatchesReference holds applyDelta, decodeMerged and
// treeMatch to patching decoded entries one by one (patchParam), on random
// trees and deltas: patches of stored entries, new entries, patches with
// and without values and attributes.
func TestApplyDeltaMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	paths := func() string {
		return fmt.Sprintf("Device.%s.%d.%s", []string{"A", "B", "WiFi"}[rng.IntN(3)], rng.IntN(4),
			[]string{"Name", "Enable", "Stats.Bytes"}[rng.IntN(3)])
	}
	types := []string{"xsd:string", "xsd:unsignedInt", "vendor:odd", ""}
	base := time.UnixMilli(1_700_000_000_000).UTC()
	random := func(n int, patches bool) []treeEntry {
		seen := map[string]bool{}
		var out []treeEntry
		for range n {
			p := paths()
			if seen[p] {
				continue
			}
			seen[p] = true
			e := treeEntry{path: p, Parameter: store.Parameter{Writable: store.Tri(rng.IntN(3)),
				Notification: store.Notification(rng.IntN(3)), Updated: base.Add(time.Duration(rng.IntN(1000)) * time.Second)}}
			if rng.IntN(4) > 0 || !patches {
				e.HasValue, e.Value, e.Type = true, fmt.Sprint(rng.IntN(20)), types[rng.IntN(len(types))]
			}
			out = append(out, e)
		}
		slices.SortFunc(out, func(a, b treeEntry) int { return strings.Compare(a.path, b.path) })
		return out
	}
	for round := range 300 {
		stored, patches := random(rng.IntN(30), false), random(rng.IntN(10), true)
		want := slices.Clone(stored)
		for _, p := range patches {
			if i, ok := slices.BinarySearchFunc(want, p.path, cmpEntryPath); ok {
				patchParam(&want[i].Parameter, &p.Parameter)
			} else {
				want = slices.Insert(want, i, p)
			}
		}
		tree, delta := encodeTree(nil, stored), encodeTree(nil, patches)
		folded, n, err := applyDelta(nil, tree, delta)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeTree(folded, nil)
		if err != nil || n != len(want) || len(got) != len(want) || len(want) > 0 && !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: applyDelta: %v\n got %+v\nwant %+v", round, err, got, want)
		}
		merged, err := decodeMerged(tree, delta, nil)
		if err != nil || len(merged) != len(want) || len(want) > 0 && !reflect.DeepEqual(merged, want) {
			t.Fatalf("round %d: decodeMerged: %v\n got %+v\nwant %+v", round, err, merged, want)
		}
		for range 5 {
			path := paths()
			op := []store.Op{store.OpExists, store.OpEq, store.OpNe, store.OpLt, store.OpGt, store.OpPrefix}[rng.IntN(6)]
			operand := fmt.Sprint(rng.IntN(20))
			gotMatch, err := treeMatch(tree, delta, path, op, operand)
			if err != nil {
				t.Fatal(err)
			}
			wantMatch, err := treeMatch(folded, nil, path, op, operand)
			if err != nil {
				t.Fatal(err)
			}
			if gotMatch != wantMatch {
				t.Fatalf("round %d: %s %v %q: %v with the delta, %v folded", round, path, op, operand, gotMatch, wantMatch)
			}
		}
	}
}

// TestDeltaOnly: which plans may go into the delta alone.
func TestDeltaOnly(t *testing.T) {
	plan := func(d store.Diff) *storekit.Plan {
		t.Helper()
		d.Time = batchBase
		p, err := storekit.PlanDiff("t", "00AABB-R-S1", d, 1)
		if err != nil {
			t.Fatal(err)
		}
		return &p
	}
	upd := store.Diff{Params: []store.ParamUpdate{store.SetValue("Device.A", "1", ""), store.SetValue("Device.C", "1", "")}}
	for _, c := range []struct {
		name string
		p    *storekit.Plan
		cur  storedDevice
		want bool
	}{
		{"updates", plan(upd), storedDevice{}, true},
		{"tree length unknown", plan(upd), storedDevice{treeBytes: -1}, false},
		{"no updates", plan(store.Diff{}), storedDevice{}, false},
		{"deletes an entry", plan(store.Diff{Params: upd.Params, DeletePaths: []string{"Device.B"}}), storedDevice{}, false},
		{"deletes a subtree", plan(store.Diff{Params: upd.Params, DeletePaths: []string{"Device.B."}}), storedDevice{}, false},
		{"deletes all", plan(store.Diff{Params: upd.Params, DeletePaths: []string{""}}), storedDevice{}, false},
		{"updates the confirmed", plan(upd), storedDevice{confirmedPaths: "Device.A\nDevice.C", confirmedAt: 1}, true},
		{"updates some confirmed", plan(upd), storedDevice{confirmedPaths: "Device.A\nDevice.B", confirmedAt: 1}, false},
		{"confirmed at unknown", plan(upd), storedDevice{confirmedPaths: "Device.B"}, true},
		{"others confirmed in the delta", plan(upd), storedDevice{confirmedPaths: "Device.A\nDevice.B\nDevice.D", confirmedAt: 1,
			delta: encodeTree(nil, []treeEntry{{path: "Device.B"}, {path: "Device.D"}})}, true},
		{"others confirmed, one in the delta", plan(upd), storedDevice{confirmedPaths: "Device.A\nDevice.B\nDevice.D", confirmedAt: 1,
			delta: encodeTree(nil, []treeEntry{{path: "Device.B"}})}, false},
	} {
		if got := deltaOnly(c.p, &c.cur, maxDeltaEntries); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
		if deltaOnly(c.p, &c.cur, 0) {
			t.Errorf("%s: deltas turned off, yet delta only", c.name)
		}
	}
}

// FuzzDeltaDecode: whatever a delta holds, applying it, reading through
// it and matching against it return an error or agree, never panic; a
// delta that decodes gives the same entries folded as read.
func FuzzDeltaDecode(f *testing.F) {
	tree := encodeTree(nil, sampleTree())
	f.Add(encodeTree(nil, sampleTree()[1:3]))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{1, 1, 0, 3, 'D', 'e', 'v', 1, 0, 2, 1, 1, 'x'})
	f.Fuzz(func(t *testing.T, delta []byte) {
		folded, _, errFold := applyDelta(nil, tree, delta)
		merged, errRead := decodeMerged(tree, delta, nil)
		_, _ = treeMatch(tree, delta, "Device.DeviceInfo.SoftwareVersion", store.OpEq, "1")
		_ = deltaOnly(&storekit.Plan{Updates: []storekit.Update{{ParamUpdate: store.SetValue("Device.A", "1", "")}}},
			&storedDevice{delta: delta, confirmedPaths: "Device.B", confirmedAt: 1}, maxDeltaEntries)
		if (errFold == nil) != (errRead == nil) {
			t.Fatalf("fold: %v, read: %v", errFold, errRead)
		}
		if errFold != nil {
			return
		}
		got, err := decodeTree(folded, nil)
		if err != nil || !reflect.DeepEqual(got, merged) {
			t.Fatalf("folded %+v (%v), read %+v", got, err, merged)
		}
	})
}
