package sim

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// A tree is the structure of one device's data model: objects, tables,
// instances and parameters with their template values. Devices of one model
// and profile share one tree (immutable while shared) and keep their own
// values in an override map; a device copies the tree the first time the
// ACS changes its structure (AddObject, DeleteObject, FactoryReset of an
// added instance), which few devices in a load run ever do.
type tree struct {
	root  *node
	index map[string]*node
	// forced lists the Forced Inform parameters in document order (docs/protocol.md
	// §5.3).
	forced []*node
	// perDevice lists the parameters whose value depends on the device
	// (serial number, MAC and IP addresses, SSIDs, credentials).
	perDevice []*node
	// params counts the parameters.
	params int
	// profile tells AddObject which sub-objects and tables a new instance
	// gets.
	prof *profile
	// settings are the simulator-wide template values.
	settings *templateSettings
}

type nodeKind uint8

const (
	kindParam    nodeKind = iota
	kindObject            // a single object, e.g. Device.DeviceInfo.
	kindTable             // a table, e.g. Device.NAT.PortMapping.
	kindInstance          // a row, e.g. Device.NAT.PortMapping.1.
)

// dynKind marks parameters whose value is computed when read.
type dynKind uint8

const (
	dynNone       dynKind = iota
	dynUpTime             // seconds since the simulated boot
	dynLocalTime          // the current time
	dynCounter            // a statistics counter growing with the uptime
	dynNumEntries         // the instance count of a table
)

type node struct {
	name     string // full path; objects end with "."
	kind     nodeKind
	obj      *ObjectDef // objects, tables (the row definition) and instances
	param    *ParamDef  // parameters
	parent   *node
	children []*node
	// value is the template value of a parameter.
	value string
	// gen says how a per-device value is derived (see values.go).
	gen genKind
	// inst is an instance's number, or for a parameter the number of the
	// nearest enclosing instance (used by value generators).
	inst uint32
	// ordinal numbers the parameters of a tree, for generators that need
	// distinct values per parameter.
	ordinal int
	dyn     dynKind
	// rate is a counter's growth per second of uptime.
	rate uint64
	// counted is the table whose instances a NumberOfEntries parameter
	// counts.
	counted *node
	// nextInst is a table's next instance number for AddObject. CPEs do not
	// reuse a deleted instance's number at once (docs/protocol.md §5.3).
	nextInst uint32
}

func (n *node) isObject() bool { return n.kind != kindParam }

// writable is the GetParameterNames Writable flag: for a parameter its
// access; for a table whether AddObject is allowed, for an instance whether
// DeleteObject is (docs/protocol.md §5.3).
func (n *node) writable() bool {
	switch n.kind {
	case kindParam:
		return n.param.Writable
	case kindTable, kindInstance:
		return n.obj.Writable
	}
	return false
}

// profile is the subset of a data model a simulated device implements:
// which objects it has and how many instances each table starts with.
type profile struct {
	model *Model
	// include maps model object paths to the instance count of tables
	// (ignored for single objects).
	include map[string]int
	// order lists included object paths in declaration order; parents come
	// before children.
	order []string
}

// buildTree instantiates a profile.
func buildTree(p *profile, ts *templateSettings) (*tree, error) {
	t := &tree{index: map[string]*node{}, prof: p, settings: ts}
	rootDef, ok := p.model.Object(p.model.Root)
	if !ok {
		return nil, fmt.Errorf("build parameter tree: model %s has no root object", p.model.Name)
	}
	t.root = &node{name: p.model.Root, kind: kindObject, obj: rootDef}
	t.index[t.root.name] = t.root
	t.fillObject(t.root, p.model.Root)
	t.finish()
	return t, nil
}

// fillObject adds the parameters of an object (single or instance) and its
// included sub-objects and tables. modelPath is the object's model path
// (with {i} placeholders).
func (t *tree) fillObject(n *node, modelPath string) {
	for _, pd := range n.obj.Params {
		pn := &node{name: n.name + pd.Name, kind: kindParam, param: pd, parent: n, inst: n.inst}
		n.children = append(n.children, pn)
		t.index[pn.name] = pn
	}
	for _, childPath := range t.prof.children(modelPath) {
		def, _ := t.prof.model.Object(childPath)
		rel := strings.TrimPrefix(childPath, modelPath)
		if def.Table {
			tableName := n.name + strings.TrimSuffix(rel, "{i}.")
			tn := &node{name: tableName, kind: kindTable, obj: def, parent: n, nextInst: 1}
			n.children = append(n.children, tn)
			t.index[tn.name] = tn
			for i := 0; i < t.prof.include[childPath]; i++ {
				t.addInstance(tn, childPath)
			}
			continue
		}
		on := &node{name: n.name + rel, kind: kindObject, obj: def, parent: n, inst: n.inst}
		n.children = append(n.children, on)
		t.index[on.name] = on
		t.fillObject(on, childPath)
	}
}

// addInstance creates the next instance of a table with its parameters and
// included sub-objects, returning it.
func (t *tree) addInstance(tn *node, modelPath string) *node {
	num := tn.nextInst
	tn.nextInst++
	in := &node{name: tn.name + strconv.FormatUint(uint64(num), 10) + ".", kind: kindInstance, obj: tn.obj, parent: tn, inst: num}
	tn.children = append(tn.children, in)
	t.index[in.name] = in
	t.fillObject(in, modelPath)
	return in
}

// modelPathOf maps an instance path to its model path:
// Device.WiFi.SSID.2.Stats. -> Device.WiFi.SSID.{i}.Stats.
func modelPathOf(name string) string {
	parts := strings.Split(name, ".")
	for i, s := range parts {
		if s != "" && s[0] >= '0' && s[0] <= '9' {
			parts[i] = "{i}"
		}
	}
	return strings.Join(parts, ".")
}

// finish computes what depends on the whole tree: NumberOfEntries links,
// template values, dynamic kinds, the forced and per-device lists. It runs
// after building and after every structural change.
func (t *tree) finish() {
	t.forced = t.forced[:0]
	t.perDevice = t.perDevice[:0]
	t.params = 0
	ordinal := 0
	var walk func(n *node)
	walk = func(n *node) {
		if n.kind == kindParam {
			t.params++
			ordinal++
			n.ordinal = ordinal
			initParam(n, t.settings)
			if n.param.ForcedInform {
				t.forced = append(t.forced, n)
			}
			if n.gen != genNone {
				t.perDevice = append(t.perDevice, n)
			}
			return
		}
		// Link each table's NumberOfEntries parameter, a sibling of the
		// table in its parent object.
		if n.kind == kindTable && n.obj.NumEntries != "" && n.parent != nil {
			if c, ok := t.index[n.parent.name+n.obj.NumEntries]; ok {
				c.dyn, c.counted = dynNumEntries, n
			}
		}
		for _, c := range n.children {
			walk(c)
		}
	}
	walk(t.root)
}

// clone deep-copies the tree, for a device about to change its structure.
func (t *tree) clone() *tree {
	c := &tree{index: make(map[string]*node, len(t.index)), prof: t.prof, settings: t.settings}
	remap := make(map[*node]*node, len(t.index))
	var cp func(n, parent *node) *node
	cp = func(n, parent *node) *node {
		m := *n
		m.parent = parent
		m.children = make([]*node, len(n.children))
		remap[n] = &m
		c.index[m.name] = &m
		for i, ch := range n.children {
			m.children[i] = cp(ch, &m)
		}
		return &m
	}
	c.root = cp(t.root, nil)
	for _, n := range c.index {
		if n.counted != nil {
			n.counted = remap[n.counted]
		}
	}
	c.forced = make([]*node, len(t.forced))
	for i, n := range t.forced {
		c.forced[i] = remap[n]
	}
	c.perDevice = make([]*node, len(t.perDevice))
	for i, n := range t.perDevice {
		c.perDevice[i] = remap[n]
	}
	c.params = t.params
	return c
}

// remove deletes an instance and its subtree from the tree, returning the
// names of the parameters it held.
func (t *tree) remove(in *node) []string {
	var gone []string
	var walk func(n *node)
	walk = func(n *node) {
		delete(t.index, n.name)
		if n.kind == kindParam {
			gone = append(gone, n.name)
		}
		for _, c := range n.children {
			walk(c)
		}
	}
	walk(in)
	p := in.parent
	for i, c := range p.children {
		if c == in {
			p.children = append(p.children[:i:i], p.children[i+1:]...)
			break
		}
	}
	t.finish()
	return gone
}

// lookup finds a parameter or object by its full name. "" is the root.
func (t *tree) lookup(name string) (*node, bool) {
	if name == "" {
		return t.root, true
	}
	n, ok := t.index[name]
	return n, ok
}

// params appends the parameters at or below n in tree order.
func appendParams(dst []*node, n *node) []*node {
	if n.kind == kindParam {
		return append(dst, n)
	}
	for _, c := range n.children {
		dst = appendParams(dst, c)
	}
	return dst
}

// children returns the included model objects directly below a model path:
// single objects and tables whose path extends it by one segment (a table
// "X.{i}." counts as one segment below its parent).
func (p *profile) children(modelPath string) []string {
	var out []string
	for _, path := range p.order {
		if !strings.HasPrefix(path, modelPath) || path == modelPath {
			continue
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(path, modelPath), ".")
		rel = strings.TrimSuffix(rel, ".{i}")
		if !strings.Contains(rel, ".") {
			out = append(out, path)
		}
	}
	return out
}

// newProfile checks a profile's object list against the model and orders
// it so that parents come first.
func newProfile(m *Model, include map[string]int) (*profile, error) {
	p := &profile{model: m, include: map[string]int{}}
	for path, n := range include {
		if _, ok := m.Object(path); !ok {
			return nil, fmt.Errorf("profile of %s: no object %s in the model", m.Name, path)
		}
		if n < 0 {
			return nil, fmt.Errorf("profile of %s: negative instance count for %s", m.Name, path)
		}
		p.include[path] = n
	}
	p.include[m.Root] = 0
	// An object is only reachable through its ancestors, so include them
	// too (with no instances unless asked for).
	for path := range p.include {
		for a := parentPath(path); a != ""; a = parentPath(a) {
			if _, ok := m.Object(a); !ok {
				continue
			}
			if _, ok := p.include[a]; !ok {
				p.include[a] = 0
			}
		}
	}
	for path := range p.include {
		p.order = append(p.order, path)
	}
	sort.Strings(p.order)
	return p, nil
}

// parentPath returns the model path of an object's parent: the parent of
// "Device.WiFi.SSID.{i}.Stats." is "Device.WiFi.SSID.{i}.", of
// "Device.WiFi.SSID.{i}." it is "Device.WiFi.", of the root it is "".
func parentPath(path string) string {
	s := strings.TrimSuffix(path, ".")
	s = strings.TrimSuffix(s, ".{i}")
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		return ""
	}
	return s[:i+1]
}
