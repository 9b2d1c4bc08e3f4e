package sqlitestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// Parameter trees.
//
// A device's parameter tree is one value in device_trees: every entry,
// sorted by path, in a compact binary encoding. A first contact reports a
// whole tree (600 to several thousand entries); as rows of an indexed
// table each entry cost a B-tree insert in the primary key and one in
// each value index, scattered over the whole file, and the single writer
// spent most of a first contact there. As one value it is one insert of a
// few kilobytes (paths share long prefixes, which the encoding shares).
//
// Filters need indexes, so the entries of indexed paths (Config.
// IndexedParams, see indexed.go) are also kept as rows of parameters, a
// copy the writer keeps in step with the tree; conditions on them are
// index range scans as before. A condition on any other path is answered
// by reading the trees of the tenant's devices (treeMatchSQL), which is
// correct but linear in the fleet.
//
// Tree deltas (treedelta.go). Most diffs change a handful of values: a
// periodic session reports its Inform's forced parameters and the values
// its tasks read. Rewriting the whole tree for them cost the writer more
// than anything else in such a session: reading the tree (13.5 KB, four
// pages, for a typical CPE), merging, writing it back, and a WAL frame at
// commit for every page of it (the overflow pages most of them), all to
// store one changed value. So a device row also carries a delta,
// devices.tree_delta: the entries the diffs since the tree was last
// written changed, encoded as a tree is (sorted, the same entry encoding)
// but each entry a patch (treedelta.go says how one applies). It lives
// in the device row because every diff rewrites that row anyway (last
// Inform, fencing token, confirmed entries), in the same UPDATE; a diff
// that only adds or updates a few entries writes no tree page at all. The
// row also records the tree's length (tree_bytes), so that the size limit
// (maxTreeBytes) holds without reading the tree.
//
// A diff goes into the delta alone when it deletes nothing, every entry
// the device had confirmed is one it updates or one the delta holds (see
// "Confirmed entries" in apply.go: moving the Updated time of one only
// the tree holds needs the tree), and the delta stays within
// maxDeltaEntries entries and maxDeltaBytes bytes. Any other diff
// folds: it reads the tree, applies the delta and then its own plan, writes
// the tree and clears the delta. Every reader (Get and List with
// parameters, filters on paths that are not indexed, the index rebuild)
// reads the tree with the delta applied, the delta's patches winning. The
// index rows of parameters follow each diff as before, wherever its
// entries went.
//
// Encoding (version 1), all integers unsigned varints unless said:
//
//	version byte (1), entry count
//	per entry: bytes shared with the previous path, length of the rest,
//	  the rest; flags byte (bit 0 value known, bits 1-2 store.Tri of
//	  writable); notification byte (store.Notification); updated (unix
//	  ms) as a signed varint difference from the previous entry's
//	  (the first from 0); when the value is known, the type (index into
//	  knownTypes plus one, or 0 followed by its length and bytes) and the
//	  value's length and bytes.
//
// Decoding validates every length against what is left, and the paths
// (valid lengths, strictly increasing), so a damaged value is an error,
// never a panic or a huge allocation.
const treeVersion = 1

// treeEntry is one entry of a tree.
type treeEntry struct {
	path string
	store.Parameter
}

// knownTypes are the types a tree encodes as one byte; any other is
// written out.
var knownTypes = [...]string{
	"xsd:string", "xsd:unsignedInt", "xsd:int", "xsd:boolean", "xsd:dateTime",
	"xsd:unsignedLong", "xsd:long", "xsd:base64", "xsd:hexBinary", "",
}

func knownType(t string) int {
	for i, k := range knownTypes {
		if k == t {
			return i + 1
		}
	}
	return 0
}

var errBadTree = errors.New("damaged parameter tree")

// encodeTree appends the encoding of entries (sorted by path, no
// duplicates) to buf.
func encodeTree(buf []byte, entries []treeEntry) []byte {
	buf = append(buf, treeVersion)
	buf = binary.AppendUvarint(buf, uint64(len(entries)))
	prev, prevMS := "", int64(0)
	for i := range entries {
		e := &entries[i]
		shared := commonPrefix(prev, e.path)
		buf = binary.AppendUvarint(buf, uint64(shared))
		buf = binary.AppendUvarint(buf, uint64(len(e.path)-shared))
		buf = append(buf, e.path[shared:]...)
		flags := byte(e.Writable&3) << 1
		if e.HasValue {
			flags |= 1
		}
		buf = append(buf, flags, byte(e.Notification))
		ms := int64(0)
		if !e.Updated.IsZero() {
			ms = e.Updated.UnixMilli()
		}
		buf = binary.AppendVarint(buf, ms-prevMS)
		prev, prevMS = e.path, ms
		if !e.HasValue {
			continue
		}
		if k := knownType(e.Type); k > 0 {
			buf = binary.AppendUvarint(buf, uint64(k))
		} else {
			buf = append(buf, 0)
			buf = binary.AppendUvarint(buf, uint64(len(e.Type)))
			buf = append(buf, e.Type...)
		}
		buf = binary.AppendUvarint(buf, uint64(len(e.Value)))
		buf = append(buf, e.Value...)
	}
	return buf
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// treeReader walks an encoded tree entry by entry without allocating
// (the path is rebuilt in a buffer the caller must not keep).
type treeReader struct {
	b      []byte
	left   uint64
	path   []byte
	ms     int64
	err    error
	hasVal bool
	flags  byte
	notif  byte
	kind   uint64 // index into knownTypes plus one; 0: typ
	typ    []byte
	val    []byte
	// raw is the current entry's encoding as stored, which a merge copies
	// as it is where the entry and the one before it are unchanged.
	raw []byte
}

func newTreeReader(b []byte, pathBuf []byte) treeReader {
	r := treeReader{path: pathBuf[:0]}
	if len(b) == 0 {
		return r // no tree: no entries
	}
	if b[0] != treeVersion {
		r.err = fmt.Errorf("%w: version %d", errBadTree, b[0])
		return r
	}
	r.b = b[1:]
	r.left = r.uvarint()
	return r
}

func (r *treeReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *treeReader) bytes(n uint64) []byte {
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *treeReader) fail() {
	if r.err == nil {
		r.err = errBadTree
	}
	r.left, r.b = 0, nil
}

// next moves to the next entry; false at the end or on damage (r.err).
func (r *treeReader) next() bool {
	if r.left == 0 || r.err != nil {
		return false
	}
	r.left--
	begin := r.b
	shared := r.uvarint()
	rest := r.bytes(r.uvarint())
	// Paths are valid (at most store.MaxPathLength bytes), so that the
	// decoded paths of a damaged tree stay within a constant factor of
	// its size, and strictly increasing (readers stop at the first path
	// past the one they look for). The encoders share the longest common
	// prefix, so the first byte after it is greater than the previous
	// path's there.
	if r.err != nil || shared > uint64(len(r.path)) || shared+uint64(len(rest)) > store.MaxPathLength ||
		len(rest) == 0 || shared < uint64(len(r.path)) && rest[0] <= r.path[shared] {
		r.fail()
		return false
	}
	r.path = append(r.path[:shared], rest...)
	fl := r.bytes(2)
	if r.err != nil {
		return false
	}
	r.flags, r.notif = fl[0]&7, fl[1]
	d, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return false
	}
	r.b = r.b[n:]
	r.ms += d
	r.hasVal = r.flags&1 != 0
	r.kind, r.typ, r.val = 0, nil, nil
	if r.hasVal {
		r.kind = r.uvarint()
		switch {
		case r.kind == 0:
			r.typ = r.bytes(r.uvarint())
		case r.kind > uint64(len(knownTypes)):
			r.fail()
		}
		r.val = r.bytes(r.uvarint())
	}
	if r.err != nil {
		return false
	}
	r.raw = begin[:len(begin)-len(r.b)]
	return true
}

// typeName is the current entry's type.
func (r *treeReader) typeName() string {
	if r.kind > 0 {
		return knownTypes[r.kind-1]
	}
	return string(r.typ)
}

// param is the current entry as a store.Parameter.
func (r *treeReader) param() store.Parameter {
	p := r.attrs()
	if r.hasVal {
		p.Value = string(r.val)
	}
	return p
}

// attrs is param without the value (HasValue and Type still set).
func (r *treeReader) attrs() store.Parameter {
	p := store.Parameter{
		HasValue:     r.hasVal,
		Writable:     store.Tri(r.flags >> 1 & 3),
		Notification: store.Notification(int8(r.notif)),
	}
	if r.ms != 0 {
		p.Updated = time.UnixMilli(r.ms).UTC()
	}
	if r.hasVal {
		p.Type = r.typeName()
	}
	return p
}

// decodeTree returns the entries of an encoded tree. Their paths and
// values are substrings of one string, two allocations for the whole tree
// rather than two per entry.
func decodeTree(b []byte, into []treeEntry) ([]treeEntry, error) {
	return decodeTreeFunc(b, into, nil)
}

// decodeTreeFunc is decodeTree of the entries whose paths keep reports
// (all when keep is nil).
func decodeTreeFunc(b []byte, into []treeEntry, keep func(path []byte) bool) ([]treeEntry, error) {
	var pathBuf [256]byte
	r := newTreeReader(b, pathBuf[:])
	n := int(min(r.left, 1<<16))
	into = slices.Grow(into[:0], n)
	type span struct{ path, value, end int }
	spans := make([]span, 0, n)
	arena := make([]byte, 0, len(b)*2)
	for r.next() {
		if keep != nil && !keep(r.path) {
			continue
		}
		sp := span{path: len(arena)}
		arena = append(arena, r.path...)
		sp.value = len(arena)
		arena = append(arena, r.val...)
		sp.end = len(arena)
		spans = append(spans, sp)
		into = append(into, treeEntry{Parameter: r.attrs()})
	}
	if r.err != nil {
		return into[:0], r.err
	}
	all := string(arena)
	for i, sp := range spans {
		into[i].path = all[sp.path:sp.value]
		if into[i].HasValue {
			into[i].Value = all[sp.value:sp.end]
		}
	}
	return into, nil
}
