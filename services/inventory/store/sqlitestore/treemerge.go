package sqlitestore

import (
	"cmp"
	"encoding/binary"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// mergeEncoded applies a plan to an encoded tree without decoding it into
// entries: the stored entries stream from a treeReader into the new
// encoding, the plan's updates merged in by path, so that a diff that
// changes ten values of a 600-entry tree costs no allocation per entry.
// The rules are mergeTree's (tree_test.go keeps mergeTree as the
// reference the two are compared against): deletions first, then every
// update stamps its entry with at, a value replaces value and type, a
// known attribute replaces the stored one; entries whose paths are in
// confirmed get their Updated time raised to confirmedAt.
//
// An entry the plan leaves as it is, after an entry also left as it is
// (same path, same Updated time), has the encoding it had: it is copied
// without being encoded again (the shared prefix and the time are
// relative to the entry before). A diff that changes a few values of a
// large tree then costs a walk of the tree to the last change and a copy.
// (The entries after it are not decoded, so damage there is found by the
// tree's next reader rather than by the merge.)
//
// It appends the new encoding to dst[:0] (scratch is reused for the
// entries) and returns it with its entry count; on a damaged stored tree
// it returns the reader's error.
func mergeEncoded(dst, scratch, stored []byte, p *storekit.Plan, at time.Time, confirmed string, confirmedAt int64) (out, scratchOut []byte, n int, err error) {
	var pathBuf [256]byte
	r := newTreeReader(stored, pathBuf[:])
	if p.DeleteAll {
		r = newTreeReader(nil, pathBuf[:])
	}
	var conf []string
	if confirmed != "" && confirmedAt != 0 {
		conf = strings.Split(confirmed, "\n")
	}
	e := treeEncoder{buf: scratch[:0], prev: make([]byte, 0, 256)}
	atMS := at.UnixMilli()
	more := r.next()
	updates := p.Updates
	// inStep: the entry last written is the stored entry before r's, with
	// its path and Updated time, so that r's entry, if unchanged, encodes
	// as stored.
	inStep := true
	for more || len(updates) > 0 {
		if more && len(updates) == 0 && inStep && len(p.Deletes) == 0 && len(p.DeleteEntries) == 0 &&
			(len(conf) == 0 || compareBytes(r.path, conf[len(conf)-1]) > 0) {
			// Nothing changes from here on: the rest is copied as it is.
			e.copyRaw(r.raw, r.path, r.ms)
			e.buf = append(e.buf, r.b...)
			e.n += int(r.left)
			break
		}
		var c int
		switch {
		case !more:
			c = 1
		case len(updates) == 0:
			c = -1
		default:
			c = compareBytes(r.path, updates[0].Path)
		}
		if c > 0 {
			// A new entry.
			u := &updates[0]
			var ent encEntry
			ent.applyUpdate(u, atMS)
			e.add(u.Path, &ent)
			updates = updates[1:]
			inStep = false
			continue
		}
		var ent encEntry
		deleted := deletedBytes(p, r.path)
		if !deleted {
			ent = encEntry{hasVal: r.hasVal, writable: store.Tri(r.flags >> 1 & 3), notif: r.notif, ms: r.ms,
				kind: r.kind, typ: r.typ, val: r.val}
			if len(conf) > 0 && ent.ms < confirmedAt && containsBytes(conf, r.path) {
				ent.ms = confirmedAt
			}
		}
		switch {
		case c == 0:
			ent.applyUpdate(&updates[0], atMS)
			updates = updates[1:]
		case deleted:
			inStep = false
			more = r.next()
			continue
		case inStep && ent.ms == r.ms:
			e.copyRaw(r.raw, r.path, r.ms)
			more = r.next()
			continue
		}
		e.addBytes(r.path, &ent)
		inStep = ent.ms == r.ms
		more = r.next()
	}
	if r.err != nil {
		return dst, e.buf, 0, r.err
	}
	dst = append(dst[:0], treeVersion)
	dst = binary.AppendUvarint(dst, uint64(e.n))
	dst = append(dst, e.buf...)
	return dst, e.buf, e.n, nil
}

// encEntry is one entry on its way into an encoding; typ and val may
// point into the stored tree, which outlives the merge.
type encEntry struct {
	hasVal   bool
	writable store.Tri
	notif    byte
	ms       int64
	kind     uint64 // index into knownTypes plus one; 0: typStr or typ
	typ      []byte
	typStr   string
	val      []byte
	valStr   string
	fromStr  bool // the value is valStr
}

func (e *encEntry) applyUpdate(u *storekit.Update, atMS int64) {
	if u.HasValue {
		e.hasVal = true
		e.kind = uint64(knownType(u.Type))
		e.typ, e.typStr = nil, u.Type
		e.val, e.valStr, e.fromStr = nil, u.Value, true
	}
	if u.Writable != store.TriUnknown {
		e.writable = u.Writable
	}
	if u.Notification != store.NotificationUnknown {
		e.notif = byte(u.Notification)
	}
	e.ms = atMS
}

// treeEncoder writes entries in the encoding of tree.go, after the
// header.
type treeEncoder struct {
	buf    []byte
	prev   []byte
	prevMS int64
	n      int
}

func (t *treeEncoder) add(path string, e *encEntry) { addEntry(t, path, e) }

// copyRaw appends an entry encoded as stored (see mergeEncoded), at path
// with Updated time ms.
func (t *treeEncoder) copyRaw(raw, path []byte, ms int64) {
	t.buf = append(t.buf, raw...)
	t.prev = append(t.prev[:0], path...)
	t.prevMS = ms
	t.n++
}

func (t *treeEncoder) addBytes(path []byte, e *encEntry) { addEntry(t, path, e) }

// addEntry appends an entry at path, sharing its prefix with the previous
// entry's path.
func addEntry[P string | []byte](t *treeEncoder, path P, e *encEntry) {
	shared := 0
	for shared < len(t.prev) && shared < len(path) && t.prev[shared] == path[shared] {
		shared++
	}
	t.buf = binary.AppendUvarint(t.buf, uint64(shared))
	t.buf = binary.AppendUvarint(t.buf, uint64(len(path)-shared))
	t.buf = append(t.buf, path[shared:]...)
	t.prev = append(t.prev[:0], path...)
	t.rest(e)
}

func (t *treeEncoder) rest(e *encEntry) {
	flags := byte(e.writable&3) << 1
	if e.hasVal {
		flags |= 1
	}
	t.buf = append(t.buf, flags, e.notif)
	t.buf = binary.AppendVarint(t.buf, e.ms-t.prevMS)
	t.prevMS = e.ms
	t.n++
	if !e.hasVal {
		return
	}
	if e.kind > 0 {
		t.buf = binary.AppendUvarint(t.buf, e.kind)
	} else {
		t.buf = append(t.buf, 0)
		if e.typ != nil {
			t.buf = binary.AppendUvarint(t.buf, uint64(len(e.typ)))
			t.buf = append(t.buf, e.typ...)
		} else {
			t.buf = binary.AppendUvarint(t.buf, uint64(len(e.typStr)))
			t.buf = append(t.buf, e.typStr...)
		}
	}
	if e.fromStr {
		t.buf = binary.AppendUvarint(t.buf, uint64(len(e.valStr)))
		t.buf = append(t.buf, e.valStr...)
	} else {
		t.buf = binary.AppendUvarint(t.buf, uint64(len(e.val)))
		t.buf = append(t.buf, e.val...)
	}
}

// deletedBytes reports whether the plan deletes the entry at path (a
// subtree deletion covering it, or its own).
func deletedBytes(p *storekit.Plan, path []byte) bool {
	if ps := p.Deletes; len(ps) > 0 {
		// The covering prefix, if any, is the greatest prefix <= path.
		i := sort.Search(len(ps), func(i int) bool { return ps[i] > string(path) })
		if i > 0 && len(path) >= len(ps[i-1]) && string(path[:len(ps[i-1])]) == ps[i-1] {
			return true
		}
	}
	return containsBytes(p.DeleteEntries, path)
}

// containsBytes reports whether sorted holds path.
func containsBytes(sorted []string, path []byte) bool {
	_, found := slices.BinarySearchFunc(sorted, path, func(s string, path []byte) int {
		return -compareBytes(path, s)
	})
	return found
}

// compareBytes is strings.Compare(string(a), b) without converting a.
func compareBytes(a []byte, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return cmp.Compare(len(a), len(b))
}
