package mongostore

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// Keys of a tree node (see the package doc). Children live under their own
// key, never beside p and o, so segment names cannot collide with them and a
// subtree can be dropped without touching the node's own entries.
const (
	keyParam    = "p" // the parameter "A.B"
	keyObject   = "o" // the object "A.B."
	keyChildren = "c" // "A.B.<segment>..."
)

// An entry keeps what each kind of report taught in its own group, each
// with the time it was learned: the value (GetParameterValues, Inform), the
// writable attribute (GetParameterNames) and the notification attribute
// (GetParameterAttributes). A report then sets exactly one field of the
// entry, whatever the entry held before, which keeps updates small.
const (
	groupValue        = "d" // {v: value, t: type, x: integer, i: instant, u}
	groupWritable     = "w" // {b: writable, u}
	groupNotification = "n" // {i: notification, u}

	fieldValue   = "v"
	fieldType    = "t"
	fieldNumber  = "x"
	fieldInstant = "i"
	fieldBool    = "b"
	fieldInt     = "i"
	fieldUpdated = "u"
)

// escapeKey makes a path segment a safe MongoDB field name: "%" and "$" are
// percent-escaped ("$" may not start a field name, and "%" must be escaped
// for the mapping to be reversible). Segments never contain "." or NUL
// (store.ValidatePath) and are never empty.
func escapeKey(seg string) string {
	if !strings.ContainsAny(seg, "%$") {
		return seg
	}
	var b strings.Builder
	for i := 0; i < len(seg); i++ {
		switch c := seg[i]; c {
		case '%':
			b.WriteString("%25")
		case '$':
			b.WriteString("%24")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func unescapeKey(key string) string {
	if !strings.Contains(key, "%") {
		return key
	}
	return strings.NewReplacer("%25", "%", "%24", "$").Replace(key)
}

// segments splits a valid path into its segments, dropping the trailing
// empty one of an object path.
func segments(path string) []string {
	return strings.Split(strings.TrimSuffix(path, "."), ".")
}

// nodeField is the dotted field of the node for segs:
// params.<s0>.c.<s1>.c.<s2>. An empty segs is the tree root, "params".
func nodeField(segs []string) string {
	var b strings.Builder
	b.WriteString("params")
	for i, s := range segs {
		if i > 0 {
			b.WriteString(".c")
		}
		b.WriteByte('.')
		b.WriteString(escapeKey(s))
	}
	return b.String()
}

// entryField is the field of the entry for path: the node's p for a
// parameter, its o for an object.
func entryField(path string) string {
	if store.IsObjectPath(path) {
		return nodeField(segments(path)) + "." + keyObject
	}
	return nodeField(segments(path)) + "." + keyParam
}

// childrenField is the field that holds everything under prefix (which ends
// with "."); for the empty prefix it is the whole tree.
func childrenField(prefix string) string {
	if prefix == "" {
		return "params"
	}
	return nodeField(segments(prefix)) + "." + keyChildren
}

// groups returns the field groups an update sets, as (key, document) pairs.
func groups(u *storekit.Update, at time.Time) bson.D {
	g := make(bson.D, 0, 3)
	if u.HasValue {
		d := bson.D{{Key: fieldValue, Value: u.Value}, {Key: fieldType, Value: u.Type}}
		if u.Number != nil {
			d = append(d, bson.E{Key: fieldNumber, Value: u.Number})
		}
		if u.IsInstant {
			d = append(d, bson.E{Key: fieldInstant, Value: u.Instant})
		}
		g = append(g, bson.E{Key: groupValue, Value: append(d, bson.E{Key: fieldUpdated, Value: at})})
	}
	if b, known := u.Writable.Bool(); known {
		g = append(g, bson.E{Key: groupWritable, Value: bson.D{{Key: fieldBool, Value: b}, {Key: fieldUpdated, Value: at}}})
	}
	if n, known := u.Notification.Value(); known {
		g = append(g, bson.E{Key: groupNotification, Value: bson.D{{Key: fieldInt, Value: int32(n)}, {Key: fieldUpdated, Value: at}}})
	}
	return g
}

// node is an in-memory subtree, built for a prefix a diff replaces.
type node struct {
	param, object bson.D
	children      map[string]*node
}

func (n *node) child(seg string) *node {
	if n.children == nil {
		n.children = make(map[string]*node)
	}
	c := n.children[seg]
	if c == nil {
		c = &node{}
		n.children[seg] = c
	}
	return c
}

// put stores an entry at segs below n; object tells p from o.
func (n *node) put(segs []string, object bool, entry bson.D) {
	for _, s := range segs {
		n = n.child(s)
	}
	if object {
		n.object = entry
	} else {
		n.param = entry
	}
}

// childrenDoc renders n's children map, keys sorted so equal trees are equal
// documents.
func (n *node) childrenDoc() bson.D {
	keys := make([]string, 0, len(n.children))
	for k := range n.children {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	d := make(bson.D, 0, len(keys))
	for _, k := range keys {
		d = append(d, bson.E{Key: escapeKey(k), Value: n.children[k].doc()})
	}
	return d
}

func (n *node) doc() bson.D {
	d := make(bson.D, 0, 3)
	if n.param != nil {
		d = append(d, bson.E{Key: keyParam, Value: n.param})
	}
	if n.object != nil {
		d = append(d, bson.E{Key: keyObject, Value: n.object})
	}
	if len(n.children) > 0 {
		d = append(d, bson.E{Key: keyChildren, Value: n.childrenDoc()})
	}
	return d
}

// op is one $set (value != nil) or $unset of a field.
type op struct {
	key   string
	value any
}

// treeOps turns the parameter part of a plan into $set and $unset fields,
// deletions first.
//
// Updates outside every deleted prefix set their groups one field each, so
// the groups an update does not carry are kept. A deleted prefix becomes one
// $set of its whole subtree, rebuilt from the updates under it (after the
// delete nothing else is there), or an $unset when none is; the object entry
// of the prefix itself is handled the same way. No field written is a prefix
// of another, so MongoDB sees no conflicting paths.
func treeOps(p *storekit.Plan) []op {
	prefixes := p.Deletes
	if p.DeleteAll {
		prefixes = []string{""}
	}
	subtrees := make(map[string]*node, len(prefixes))
	var fields []op
	// Single entries deleted and written again in the same diff are
	// replaced whole: a $set of their groups with an $unset of the entry
	// would conflict.
	replaced := make(map[string]bool, len(p.DeleteEntries))
	for _, e := range p.DeleteEntries {
		replaced[e] = false
	}
	for i := range p.Updates {
		u := &p.Updates[i]
		g := groups(u, p.Time)
		if done, ok := replaced[u.Path]; ok && !done {
			replaced[u.Path] = true
			fields = append(fields, op{key: entryField(u.Path), value: g})
			continue
		}
		if pre, covered := storekit.Covered(prefixes, u.Path); covered {
			t := subtrees[pre]
			if t == nil {
				t = &node{}
				subtrees[pre] = t
			}
			if u.Path == pre {
				// The object entry of the deleted prefix itself.
				t.object = g
				continue
			}
			t.put(segments(u.Path[len(pre):]), store.IsObjectPath(u.Path), g)
			continue
		}
		f := entryField(u.Path) + "."
		for _, e := range g {
			fields = append(fields, op{key: f + e.Key, value: e.Value})
		}
	}
	ops := make([]op, 0, 2*len(prefixes)+len(p.DeleteEntries)+len(fields))
	for _, e := range p.DeleteEntries {
		if !replaced[e] {
			ops = append(ops, op{key: entryField(e)})
		}
	}
	for _, pre := range prefixes {
		t := subtrees[pre]
		cf := childrenField(pre)
		switch {
		case t != nil && len(t.children) > 0:
			ops = append(ops, op{key: cf, value: t.childrenDoc()})
		case pre == "":
			ops = append(ops, op{key: cf, value: bson.D{}})
		default:
			ops = append(ops, op{key: cf})
		}
		if pre == "" {
			continue
		}
		of := nodeField(segments(pre)) + "." + keyObject
		if t != nil && t.object != nil {
			ops = append(ops, op{key: of, value: t.object})
		} else {
			ops = append(ops, op{key: of})
		}
	}
	return append(ops, fields...)
}

// decodeChildren walks a stored (sub)tree whose nodes' paths start with
// base and adds every entry want accepts to out.
func decodeChildren(raw bson.Raw, base string, want func(string) bool, out map[string]store.Parameter) error {
	elems, err := raw.Elements()
	if err != nil {
		return fmt.Errorf("decode parameter tree: %w", err)
	}
	for _, e := range elems {
		nd, ok := e.Value().DocumentOK()
		if !ok {
			return fmt.Errorf("decode parameter tree: node %q is not a document", base+e.Key())
		}
		if err := decodeNode(nd, base+unescapeKey(e.Key()), want, out); err != nil {
			return err
		}
	}
	return nil
}

// decodeNode decodes the node of path (no trailing ".").
func decodeNode(raw bson.Raw, path string, want func(string) bool, out map[string]store.Parameter) error {
	if v, err := raw.LookupErr(keyParam); err == nil && want(path) {
		p, err := decodeEntry(v)
		if err != nil {
			return fmt.Errorf("decode parameter %q: %w", path, err)
		}
		out[path] = p
	}
	objPath := path + "."
	if v, err := raw.LookupErr(keyObject); err == nil && want(objPath) {
		p, err := decodeEntry(v)
		if err != nil {
			return fmt.Errorf("decode object %q: %w", objPath, err)
		}
		out[objPath] = p
	}
	if v, err := raw.LookupErr(keyChildren); err == nil {
		c, ok := v.DocumentOK()
		if !ok {
			return fmt.Errorf("decode parameter tree: children of %q are not a document", path)
		}
		return decodeChildren(c, objPath, want, out)
	}
	return nil
}

func decodeEntry(v bson.RawValue) (store.Parameter, error) {
	doc, ok := v.DocumentOK()
	if !ok {
		return store.Parameter{}, fmt.Errorf("entry is %s, not a document", v.Type)
	}
	var p store.Parameter
	// seen keeps the latest time of any group as the entry's Updated.
	seen := func(g bson.Raw) {
		if u, err := g.LookupErr(fieldUpdated); err == nil {
			if t, ok := u.TimeOK(); ok && t.After(p.Updated) {
				p.Updated = t.UTC()
			}
		}
	}
	if g, ok := doc.Lookup(groupValue).DocumentOK(); ok {
		if p.Value, ok = g.Lookup(fieldValue).StringValueOK(); !ok {
			return store.Parameter{}, fmt.Errorf("value is %s, not a string", g.Lookup(fieldValue).Type)
		}
		p.Type, _ = g.Lookup(fieldType).StringValueOK()
		p.HasValue = true
		seen(g)
	}
	if g, ok := doc.Lookup(groupWritable).DocumentOK(); ok {
		if b, ok := g.Lookup(fieldBool).BooleanOK(); ok {
			p.Writable = store.TriOf(b)
		}
		seen(g)
	}
	if g, ok := doc.Lookup(groupNotification).DocumentOK(); ok {
		if i, ok := g.Lookup(fieldInt).AsInt64OK(); ok {
			p.Notification = store.NotificationOf(int(i))
		}
		seen(g)
	}
	return p, nil
}
