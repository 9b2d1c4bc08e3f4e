package sqlitestore

import (
	"encoding/binary"
	"slices"
	"strings"

	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// Tree deltas (see "Parameter trees" in tree.go for the design).
//
// A delta is encoded as a tree is (tree.go), but its entries are patches
// rather than entries: each is what the updates of the diffs folded into it
// did to the entry at its path, composed. A patch with a value replaces the
// stored value and type; a known attribute (writable, notification)
// replaces the stored one, an unknown one (0) keeps it; its Updated time
// replaces the stored one. A patch on a path the tree lacks is the entry
// itself. These are the rules by which mergeEncoded applies an update, so
// composing two patches is mergeEncoded of the older delta with the newer
// plan, and applying a delta to a tree gives what applying the diffs'
// plans to the tree one by one gave.

// maxDeltaEntries and maxDeltaBytes bound a delta: a diff whose updates
// would take it past either folds it into the tree instead. Every read of
// the device and every unindexed filter decodes the delta beside the tree,
// and the devices row carries it, so it stays small. Periodic sessions
// report the same paths session after session, so a delta stops growing:
// a cpesim device's holds its 7 forced Inform parameters and the UpTime its
// task read, 8 patches in 243 bytes, well inside the bounds. (Past about
// 600 bytes of delta a devices row no longer fits its b-tree page's local
// payload, some 1,000 bytes at 4 KB pages, and spills into an overflow
// page every UPDATE rewrites: still one page where a tree is four or more.
// The bounds were not tuned by measurement.)
// A writer takes maxDeltaEntries when it starts; 0 turns deltas off (the
// tests that hold deltas to the tree alone compare with such a store).
var maxDeltaEntries = 64

const (
	maxDeltaBytes = 2048
	// deltaSlack bounds by how many bytes one patch can make a tree with
	// the delta applied larger than the two encodings together: the
	// Updated time of the entry after a patched one is encoded relative
	// to the patch's (a varint of at most 10 bytes instead of at least 1).
	deltaSlack = 10
)

// deltaOnly reports whether a diff's plan can go into the delta alone,
// leaving the tree as it is: it only adds and updates entries, and every
// entry the device had confirmed is one it updates or one the delta
// holds. (mergeEncoded moves the Updated time of the confirmed entries a
// plan does not update to confirmedAt. A patch's Updated time is its
// entry's, so for an entry the delta holds that is done in the delta;
// for one only the tree holds it needs the tree.) treeBytes is the stored
// tree's length, -1 when unknown. maxEntries 0 turns deltas off.
func deltaOnly(p *storekit.Plan, cur *storedDevice, maxEntries int) bool {
	if maxEntries == 0 || p.DeleteAll || len(p.Deletes) > 0 || len(p.DeleteEntries) > 0 || len(p.Updates) == 0 || cur.treeBytes < 0 {
		return false
	}
	if cur.confirmedPaths == "" || cur.confirmedAt == 0 {
		return true
	}
	// All three are sorted: walk them together.
	var pathBuf [256]byte
	r := newTreeReader(cur.delta, pathBuf[:])
	more := r.next()
	updates, rest := p.Updates, cur.confirmedPaths
	for rest != "" {
		var path string
		path, rest, _ = cutLine(rest)
		for len(updates) > 0 && updates[0].Path < path {
			updates = updates[1:]
		}
		if len(updates) > 0 && updates[0].Path == path {
			continue
		}
		for more && compareBytes(r.path, path) < 0 {
			more = r.next()
		}
		if !more || compareBytes(r.path, path) != 0 {
			// Not in the delta, or a damaged delta: the fold reports
			// the damage.
			return false
		}
	}
	return true
}

func cutLine(s string) (line, rest string, found bool) {
	for i := range len(s) {
		if s[i] == '\n' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// applyDelta appends to dst[:0] the encoding of tree with delta's patches
// applied, and returns it with its entry count. A damaged tree or delta is
// an error. As in mergeEncoded, a tree entry the delta leaves as it is,
// after an entry written as stored, is copied without being encoded
// again, and once the delta is done so is the rest of the tree.
func applyDelta(dst, tree, delta []byte) ([]byte, int, error) {
	var treePath, deltaPath [256]byte
	t := newTreeReader(tree, treePath[:])
	d := newTreeReader(delta, deltaPath[:])
	e := treeEncoder{prev: make([]byte, 0, 256)}
	moreT, moreD := t.next(), d.next()
	// inStep: the entry last written is the tree entry before t's, as
	// stored (see mergeEncoded).
	inStep := true
	for moreT || moreD {
		var c int
		switch {
		case !moreD:
			if inStep {
				e.copyRaw(t.raw, t.path, t.ms)
				e.buf = append(e.buf, t.b...)
				e.n += int(t.left)
				moreT = false
				continue
			}
			c = -1
		case !moreT:
			c = 1
		default:
			c = slices.Compare(t.path, d.path)
		}
		switch {
		case c < 0 && inStep:
			e.copyRaw(t.raw, t.path, t.ms)
			moreT = t.next()
		case c < 0:
			ent := readerEntry(&t)
			e.addBytes(t.path, &ent)
			inStep = true
			moreT = t.next()
		case c > 0:
			ent := readerEntry(&d)
			e.addBytes(d.path, &ent)
			inStep = false
			moreD = d.next()
		default:
			ent := readerEntry(&t)
			ent.patch(&d)
			e.addBytes(t.path, &ent)
			inStep = ent.ms == t.ms
			moreT, moreD = t.next(), d.next()
		}
	}
	if err := firstErr(t.err, d.err); err != nil {
		return dst, 0, err
	}
	dst = append(dst[:0], treeVersion)
	dst = binary.AppendUvarint(dst, uint64(e.n))
	return append(dst, e.buf...), e.n, nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// readerEntry is r's current entry, pointing into r's input.
func readerEntry(r *treeReader) encEntry {
	return encEntry{hasVal: r.hasVal, writable: store.Tri(r.flags >> 1 & 3), notif: r.notif, ms: r.ms,
		kind: r.kind, typ: r.typ, val: r.val}
}

// patch applies the patch at r to e.
func (e *encEntry) patch(r *treeReader) {
	if r.hasVal {
		e.hasVal, e.kind, e.typ, e.typStr, e.val, e.fromStr = true, r.kind, r.typ, "", r.val, false
	}
	if w := store.Tri(r.flags >> 1 & 3); w != store.TriUnknown {
		e.writable = w
	}
	if r.notif != byte(store.NotificationUnknown) {
		e.notif = r.notif
	}
	e.ms = r.ms
}

// patchParam applies a decoded patch to an entry.
func patchParam(dst *store.Parameter, p *store.Parameter) {
	if p.HasValue {
		dst.HasValue, dst.Value, dst.Type = true, p.Value, p.Type
	}
	if p.Writable != store.TriUnknown {
		dst.Writable = p.Writable
	}
	if p.Notification != store.NotificationUnknown {
		dst.Notification = p.Notification
	}
	dst.Updated = p.Updated
}

// decodeMerged is decodeTreeFunc of tree with delta applied. The patches
// of entries the tree holds apply in place; the others' entries are added
// and the whole sorted again (a delta is small, a tree large).
func decodeMerged(tree, delta []byte, keep func(path []byte) bool) ([]treeEntry, error) {
	entries, err := decodeTreeFunc(tree, nil, keep)
	if err != nil || len(delta) == 0 {
		return entries, err
	}
	patches, err := decodeTreeFunc(delta, nil, keep)
	if err != nil {
		return nil, err
	}
	n := len(entries)
	for j := range patches {
		if i, found := slices.BinarySearchFunc(entries[:n], patches[j].path, cmpEntryPath); found {
			patchParam(&entries[i].Parameter, &patches[j].Parameter)
		} else {
			entries = append(entries, patches[j])
		}
	}
	if len(entries) > n {
		slices.SortFunc(entries, func(a, b treeEntry) int { return strings.Compare(a.path, b.path) })
	}
	return entries, nil
}

func cmpEntryPath(e treeEntry, path string) int { return strings.Compare(e.path, path) }

// findEntry moves r to the entry at path: false when the tree has none
// (r.err tells damage apart).
func findEntry(r *treeReader, path string) bool {
	for r.next() {
		switch c := compareBytes(r.path, path); {
		case c == 0:
			return true
		case c > 0:
			return false // sorted: the entry is absent
		}
	}
	return false
}
