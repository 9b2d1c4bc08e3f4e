package sqlitestore

import (
	"cmp"
	"database/sql/driver"
	"fmt"
	"slices"
	"strings"

	"modernc.org/sqlite"

	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// DefaultIndexedParams are the paths whose entries the store indexes
// unless configured otherwise: what operators look devices up by besides
// the device columns (model, WAN addresses). "*" stands for one path
// segment; a pattern ending with "." covers the whole subtree. Every
// indexed entry costs a first contact an index row and a changed value
// an index update, so the default is short; values that change at every
// Inform (uptime, counters) are poor candidates.
var DefaultIndexedParams = []string{
	"Device.DeviceInfo.ModelName",
	"InternetGatewayDevice.DeviceInfo.ModelName",
	"Device.IP.Interface.*.IPv4Address.*.IPAddress",
	"InternetGatewayDevice.WANDevice.*.WANConnectionDevice.*.WANIPConnection.*.ExternalIPAddress",
	"InternetGatewayDevice.WANDevice.*.WANConnectionDevice.*.WANPPPConnection.*.ExternalIPAddress",
}

// A filter on a path that is not indexed reads about 60,000 trees a second
// (20,000 trees of 640 entries in 343 ms on the loaded development
// machine); on a large fleet, index the paths filters use.

// IndexAll is the IndexedParams value that indexes every entry, as the
// store did before trees: the fastest filters on any path, and first
// contacts several times slower.
const IndexAll = "all"

// indexSet decides which paths have rows in parameters.
type indexSet struct {
	all      bool
	patterns [][]string // segments; a trailing "" segment is a subtree
	// literals are the patterns' texts up to their first "*": a path
	// without that prefix cannot match, which most paths fail fast.
	literals []string
}

func newIndexSet(patterns []string) (indexSet, error) {
	var s indexSet
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
			continue
		case p == IndexAll:
			s.all = true
			continue
		case strings.HasPrefix(p, ".") || strings.Contains(p, ".."):
			return indexSet{}, fmt.Errorf("indexed parameter pattern %q: %w", p, store.ErrInvalidArgument)
		}
		s.patterns = append(s.patterns, strings.Split(p, "."))
		lit, _, _ := strings.Cut(p, "*")
		s.literals = append(s.literals, lit)
	}
	return s, nil
}

// String is the canonical form the database records, to notice a change.
func (s indexSet) String() string {
	if s.all {
		return IndexAll
	}
	out := make([]string, len(s.patterns))
	for i, p := range s.patterns {
		out[i] = strings.Join(p, ".")
	}
	slices.Sort(out)
	return strings.Join(slices.Compact(out), ",")
}

// has reports whether path's entry is indexed.
func (s *indexSet) has(path string) bool {
	if s.all {
		return true
	}
	for i, p := range s.patterns {
		if strings.HasPrefix(path, s.literals[i]) && matchSegments(p, path) {
			return true
		}
	}
	return false
}

func matchSegments(pattern []string, path string) bool {
	for i, seg := range pattern {
		if seg == "" && i == len(pattern)-1 {
			return true // "A.B." covers everything under it
		}
		var cur string
		cur, path, _ = strings.Cut(path, ".")
		if seg != "*" && seg != cur || cur == "" && seg == "*" {
			return false
		}
		if path == "" {
			// The path ended: it matches when the pattern ends here too,
			// or is the subtree of this object ("A.B." covers "A.B.").
			last := len(pattern) - 1
			return i == last || i == last-1 && pattern[last] == ""
		}
	}
	return false
}

// treeMatchFunc is the SQL function that answers a parameter condition
// from a device's tree and delta (treedelta.go):
// fleet_tree_match(tree, delta, path, op, value) is 1 when the entry at
// path, the delta's patch applied, satisfies op (a store.Op) against
// value, by the rules of store.Op, else 0. tree and delta may be NULL.
const treeMatchFunc = "fleet_tree_match"

func init() {
	err := sqlite.RegisterDeterministicScalarFunction(treeMatchFunc, 5,
		func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			tree, _ := args[0].([]byte)
			delta, _ := args[1].([]byte)
			path, _ := args[2].(string)
			op, _ := args[3].(int64)
			operand, _ := args[4].(string)
			ok, err := treeMatch(tree, delta, path, store.Op(op), operand)
			if err != nil {
				return nil, err
			}
			if ok {
				return int64(1), nil
			}
			return int64(0), nil
		})
	if err != nil {
		panic(err)
	}
}

// treeMatch evaluates a condition against an encoded tree with an encoded
// delta applied: the entry exists when either holds it, and its value is
// the delta's when the patch carries one, else the tree's.
func treeMatch(tree, delta []byte, path string, op store.Op, operand string) (bool, error) {
	var pathBuf [256]byte
	var (
		found, hasVal bool
		kind          uint64
		typ, v        []byte
	)
	take := func(r *treeReader) {
		found = true
		if r.hasVal {
			hasVal, kind, typ, v = true, r.kind, r.typ, r.val
		}
	}
	if len(delta) > 0 {
		r := newTreeReader(delta, pathBuf[:])
		if findEntry(&r, path) {
			take(&r)
		} else if r.err != nil {
			return false, r.err
		}
	}
	if !hasVal && !(found && op == store.OpExists) {
		r := newTreeReader(tree, pathBuf[:])
		if findEntry(&r, path) {
			take(&r)
		} else if r.err != nil {
			return false, r.err
		}
	}
	if !found {
		return false, nil
	}
	if op == store.OpExists {
		return true, nil
	}
	if !hasVal {
		return false, nil
	}
	// The value stays in the tree: comparisons of string(v) convert
	// nothing.
	switch op {
	case store.OpEq:
		return string(v) == operand, nil
	case store.OpNe:
		return string(v) != operand, nil
	case store.OpPrefix:
		return len(v) >= len(operand) && string(v[:len(operand)]) == operand, nil
	case store.OpLt, store.OpGt:
		t := string(typ)
		if kind > 0 {
			t = knownTypes[kind-1]
		}
		c, ok := compareTyped(v, t, operand)
		if !ok {
			return false, nil
		}
		return op == store.OpLt && c < 0 || op == store.OpGt && c > 0, nil
	}
	return false, fmt.Errorf("%s: operator %d", treeMatchFunc, op)
}

// compareTyped compares a stored value with an operand the way the rows
// of parameters do (see store.OpLt and listQuery): an integer-typed value
// that parses compares as a number, a dateTime-typed one as an instant,
// each only against an operand of its kind; any other value, including
// a typed one that does not parse, as a byte string. ok is false when
// the value's kind and the operand's differ.
func compareTyped(v []byte, typ, operand string) (int, bool) {
	switch {
	case slices.Contains(store.IntegerTypes, typ):
		if a, ok := store.ParseInteger(string(v)); ok {
			b, ok := store.ParseInteger(operand)
			if !ok {
				return 0, false
			}
			return compareNumbers(a, b), true
		}
	case typ == store.DateTimeType:
		if a, ok := store.ParseInstant(string(v)); ok {
			b, ok := store.ParseOperandInstant(operand)
			if !ok {
				return 0, false
			}
			return cmp.Compare(a.UnixMilli(), b.UnixMilli()), true
		}
	}
	return compareBytes(v, operand), true
}

// compareNumbers compares ParseInteger results (int64 or float64).
func compareNumbers(a, b any) int {
	ai, aInt := a.(int64)
	bi, bInt := b.(int64)
	if aInt && bInt {
		switch {
		case ai < bi:
			return -1
		case ai > bi:
			return 1
		}
		return 0
	}
	af, bf := toFloat(a), toFloat(b)
	switch {
	case af < bf:
		return -1
	case af > bf:
		return 1
	}
	return 0
}

func toFloat(x any) float64 {
	switch v := x.(type) {
	case int64:
		return float64(v)
	case float64:
		return v
	}
	return 0
}
