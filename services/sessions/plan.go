package sessions

import (
	"slices"
	"strconv"
	"strings"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// plan is what the worker asks the CPE when the session gives the ACS the
// turn. Today that is a discovery of the parameter tree when the device
// needs one; pending tasks plug in at nextTask.
//
// NextRequest never changes the plan: answers change it through apply, keyed
// by the Request.Key the plan gave the request, before the worker asks for
// the next request; keys make a stale or repeated answer change nothing. The
// plan is checkpointed as JSON with the session.
type plan struct {
	// Fenced: the device lease is lost (a newer session exists). Nothing
	// more is asked and nothing is recorded.
	Fenced    bool       `json:"fenced,omitempty"`
	Discovery *discovery `json:"discovery,omitempty"`
}

// Discovery stages.
const (
	stageNames  = "names"  // GetParameterNames of the root is next
	stageValues = "values" // GetParameterValues of the leaves, batch by batch
	stageDone   = "done"   // every leaf fetched or skipped
	stageFailed = "failed" // the CPE refused in a way batching cannot fix
)

// discovery learns a device's tree: GetParameterNames of the data-model
// root with NextLevel false (the whole subtree, objects included), then
// GetParameterValues of the parameter names in batches. A batch refused
// with 9004 (resources exceeded) or 9005 (invalid parameter name) is halved
// and retried, down to single names; a single name refused that way is
// skipped. 9004 also lowers the batch ceiling for the rest of the session,
// since the CPE's limit will not change; after 9005 batches grow back once
// the bad name is behind. Any other fault ends the value fetching: such
// faults (9000 method not supported, 9001 denied) would repeat on every
// batch.
type discovery struct {
	Stage string `json:"stage"`
	// Root is the path of the GetParameterNames; Roots are the candidates
	// still to try when the CPE refuses Root with 9005 (the data-model root
	// was a guess).
	Root  string   `json:"root"`
	Roots []string `json:"roots,omitempty"`
	// Stored lists the paths the inventory held under the root before the
	// session, until the names arrive and Removed is computed from it.
	Stored []string `json:"stored,omitempty"`
	// Nodes are the names GetParameterNames returned, in its order, with
	// the values fetched so far.
	Nodes []node `json:"nodes,omitempty"`
	// Removed are stored paths the CPE no longer has: objects (with their
	// subtree) where a whole object is gone, else single parameters.
	Removed []string `json:"removed,omitempty"`
	// Cursor is the index, among the parameter (non-object) nodes, of the
	// next name to fetch.
	Cursor int `json:"cursor"`
	// Batch is the size of the next GetParameterValues; Limit its ceiling.
	Batch int `json:"batch"`
	Limit int `json:"limit"`
	// Skipped are names the CPE refused one by one.
	Skipped []string `json:"skipped,omitempty"`

	leaves []int          // indexes of parameter nodes; rebuilt on demand
	index  map[string]int // node index by name; rebuilt on demand
}

// node is one name of the discovered tree; short JSON keys keep checkpoints
// of large trees small.
type node struct {
	Name     string `json:"n"`
	Writable bool   `json:"w,omitempty"`
	Value    string `json:"v,omitempty"`
	Type     string `json:"t,omitempty"`
	HasValue bool   `json:"h,omitempty"`
}

// newDiscovery starts a discovery at the first of roots. stored are the
// paths the inventory has under them.
func newDiscovery(roots []string, stored []string, batch int) *discovery {
	return &discovery{Stage: stageNames, Root: roots[0], Roots: roots[1:], Stored: stored, Batch: batch, Limit: batch}
}

// NextRequest returns the next request to send, ok false when the ACS has
// nothing more to ask.
func (p *plan) NextRequest(s *cwmp.Session) (cwmp.Request, bool) {
	if p.Fenced {
		return cwmp.Request{}, false
	}
	if d := p.Discovery; d != nil {
		if req, ok := d.next(); ok {
			return req, true
		}
	}
	return p.nextTask(s)
}

// nextTask is the extension point for the per-device task queue (NATS,
// DESIGN §3), which a later issue adds: it will hand out the device's
// pending tasks, one request at a time, once discovery is done. Until then
// the ACS has nothing more to ask and the session ends.
func (p *plan) nextTask(*cwmp.Session) (cwmp.Request, bool) {
	return cwmp.Request{}, false
}

// Request keys: "gpn <root>" and "gpv <cursor> <count>".
const (
	keyGPN = "gpn "
	keyGPV = "gpv "
)

func (d *discovery) next() (cwmp.Request, bool) {
	switch d.Stage {
	case stageNames:
		return cwmp.Request{
			Message: &cwmp.GetParameterNames{ParameterPath: d.Root, NextLevel: false},
			Key:     keyGPN + d.Root,
		}, true
	case stageValues:
		leaves := d.leafIndexes()
		if d.Cursor >= len(leaves) {
			return cwmp.Request{}, false
		}
		n := min(max(d.Batch, 1), len(leaves)-d.Cursor)
		names := make([]string, n)
		for i := range names {
			names[i] = d.Nodes[leaves[d.Cursor+i]].Name
		}
		return cwmp.Request{
			Message: &cwmp.GetParameterValues{ParameterNames: names},
			Key:     keyGPV + strconv.Itoa(d.Cursor) + " " + strconv.Itoa(n),
		}, true
	}
	return cwmp.Request{}, false
}

// apply feeds the plan the CPE's answer to one of its requests. It reports
// whether the answer moved the plan; an answer to a request the plan no
// longer waits for (stale key) changes nothing.
func (p *plan) apply(done *cwmp.RequestDone) bool {
	d := p.Discovery
	if d == nil || p.Fenced {
		return false
	}
	key := done.Request.Key
	switch {
	case strings.HasPrefix(key, keyGPN):
		if d.Stage != stageNames || key[len(keyGPN):] != d.Root {
			return false
		}
		return d.applyNames(done)
	case strings.HasPrefix(key, keyGPV):
		cursor, n, ok := parseGPVKey(key[len(keyGPV):])
		if !ok || d.Stage != stageValues || cursor != d.Cursor {
			return false
		}
		return d.applyValues(done, n)
	}
	return false
}

func parseGPVKey(s string) (cursor, n int, ok bool) {
	a, b, found := strings.Cut(s, " ")
	if !found {
		return 0, 0, false
	}
	cursor, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	return cursor, n, err1 == nil && err2 == nil && cursor >= 0 && n > 0
}

func (d *discovery) applyNames(done *cwmp.RequestDone) bool {
	if done.Fault != nil {
		if done.Fault.Code == cwmp.FaultInvalidParameterName && len(d.Roots) > 0 {
			d.Root, d.Roots = d.Roots[0], d.Roots[1:]
			return true
		}
		d.Stage = stageFailed
		d.Stored = nil
		return true
	}
	resp, ok := done.Response.(*cwmp.GetParameterNamesResponse)
	if !ok {
		d.Stage = stageFailed
		d.Stored = nil
		return true
	}
	seen := make(map[string]struct{}, len(resp.ParameterList))
	d.Nodes = make([]node, 0, len(resp.ParameterList))
	for _, pi := range resp.ParameterList {
		// Names outside the root would escape the removal logic, which
		// compares the tree under the root only.
		if !strings.HasPrefix(pi.Name, d.Root) {
			continue
		}
		if _, dup := seen[pi.Name]; dup {
			continue
		}
		seen[pi.Name] = struct{}{}
		d.Nodes = append(d.Nodes, node{Name: pi.Name, Writable: pi.Writable})
	}
	d.Removed = removedPaths(d.Root, d.Stored, seen)
	d.Stored = nil
	d.leaves, d.index = nil, nil
	d.Stage = stageValues
	if len(d.leafIndexes()) == 0 {
		d.Stage = stageDone
	}
	return true
}

func (d *discovery) applyValues(done *cwmp.RequestDone, n int) bool {
	if done.Fault != nil {
		switch done.Fault.Code {
		case cwmp.FaultCPEResourcesExceeded, cwmp.FaultInvalidParameterName:
			if n > 1 {
				d.Batch = n / 2
				if done.Fault.Code == cwmp.FaultCPEResourcesExceeded {
					d.Limit = d.Batch
				}
				return true
			}
			d.Skipped = append(d.Skipped, d.Nodes[d.leafIndexes()[d.Cursor]].Name)
			d.advance(1)
		default:
			d.Stage = stageFailed
		}
		return true
	}
	resp, ok := done.Response.(*cwmp.GetParameterValuesResponse)
	if !ok {
		d.Stage = stageFailed
		return true
	}
	idx := d.nodeIndex()
	for _, pv := range resp.ParameterList {
		if i, ok := idx[pv.Name]; ok {
			nd := &d.Nodes[i]
			nd.Value, nd.Type, nd.HasValue = pv.Value, pv.Type, true
		}
	}
	d.advance(n)
	return true
}

// advance moves past n fetched or skipped names and lets the batch grow
// back toward its ceiling.
func (d *discovery) advance(n int) {
	d.Cursor += n
	d.Batch = min(max(d.Batch*2, 1), d.Limit)
	if d.Cursor >= len(d.leafIndexes()) {
		d.Stage = stageDone
	}
}

func (d *discovery) leafIndexes() []int {
	if d.leaves == nil {
		d.leaves = make([]int, 0, len(d.Nodes))
		for i := range d.Nodes {
			if !strings.HasSuffix(d.Nodes[i].Name, ".") {
				d.leaves = append(d.leaves, i)
			}
		}
	}
	return d.leaves
}

func (d *discovery) nodeIndex() map[string]int {
	if d.index == nil {
		d.index = make(map[string]int, len(d.Nodes))
		for i := range d.Nodes {
			d.index[d.Nodes[i].Name] = i
		}
	}
	return d.index
}

// removedPaths compares the stored paths under root with the discovered
// names and returns what the CPE no longer has: for a missing path, its
// highest missing ancestor object below root (the whole subtree went), else
// the path itself. An object counts as present when any discovered name lies
// under it, because some CPEs list no object names at all.
func removedPaths(root string, stored []string, discovered map[string]struct{}) []string {
	if len(stored) == 0 {
		return nil
	}
	present := make(map[string]struct{}, len(discovered))
	for name := range discovered {
		present[name] = struct{}{}
		// Every object above name exists.
		for i := len(root); i < len(name)-1; i++ {
			if name[i] == '.' {
				present[name[:i+1]] = struct{}{}
			}
		}
	}
	sorted := slices.Clone(stored)
	slices.Sort(sorted)
	var removed []string
	for _, p := range sorted {
		if !strings.HasPrefix(p, root) || p == root {
			continue
		}
		if _, ok := present[p]; ok {
			continue
		}
		if n := len(removed); n > 0 && strings.HasSuffix(removed[n-1], ".") && strings.HasPrefix(p, removed[n-1]) {
			continue // inside a subtree already removed
		}
		target := p
		for i := len(root); i < len(p)-1; i++ {
			if p[i] != '.' {
				continue
			}
			if _, ok := present[p[:i+1]]; !ok {
				target = p[:i+1]
				break
			}
		}
		if n := len(removed); n > 0 && removed[n-1] == target {
			continue
		}
		removed = append(removed, target)
	}
	return removed
}
