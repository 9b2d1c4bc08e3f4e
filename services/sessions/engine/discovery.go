package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// kindDiscovery is the discovery's operation kind in checkpoints.
const kindDiscovery = "discovery"

// discoveryID is the queue ID of a session's discovery (one at most).
const discoveryID = "discovery"

// discoveryPlanner plans a discovery of the parameter tree for a device
// that needs one (a first contact, a BOOTSTRAP, a device never fully
// discovered) and settles what the discovery learned about its product
// class (docs/sessions.md, "Discovery that adapts to the CPE").
type discoveryPlanner struct {
	inv      Inventory
	batch    int
	quirks   func() *Quirks
	profiles *profileCache
	logger   *slog.Logger
	metrics  *metrics
}

var _ Planner = (*discoveryPlanner)(nil)

// Kind implements Planner.
func (p *discoveryPlanner) Kind() string { return kindDiscovery }

// Restore implements Planner.
func (p *discoveryPlanner) Restore(data []byte) (Operation, error) {
	var d discovery
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("decode discovery: %w", err)
	}
	if d.Root == "" || d.Batch <= 0 || d.Limit <= 0 || d.Cursor < 0 {
		return nil, fmt.Errorf("decode discovery: root %q, batch %d, limit %d, cursor %d", d.Root, d.Batch, d.Limit, d.Cursor)
	}
	return &d, nil
}

// Plan implements Planner.
func (p *discoveryPlanner) Plan(ctx context.Context, s Start) ([]Planned, error) {
	dev := s.Device
	if !s.Bootstrap && dev.Known && !dev.FullDiscoveryTime.IsZero() {
		return nil, nil
	}
	class := classOf(s.Tenant, s.DeviceID)
	quirk := p.quirks().Match(s.DeviceID.OUI, s.DeviceID.ProductClass)
	if quirk.Discovery.Skip {
		return nil, nil
	}
	var stored []string
	if dev.Known {
		q := DeviceQuery{Tenant: s.Tenant, DeviceKey: s.DeviceKey, WithParameters: true}
		if s.Root != "" {
			q.Prefixes = []string{s.Root}
		}
		full, err := p.inv.GetDeviceForSession(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("get parameters of device %s: %w", s.DeviceKey, err)
		}
		stored = make([]string, len(full.Parameters))
		for i, prm := range full.Parameters {
			stored[i] = prm.Path
		}
	}
	roots := []string{s.Root}
	if s.Root == "" {
		// The Inform named no parameter and the inventory knows no root:
		// try both (docs/protocol.md §13, output 7: never GPN "").
		roots = []string{"Device.", "InternetGatewayDevice."}
	}
	prof, err := p.profiles.get(ctx, class)
	if err != nil {
		// What the class taught is an optimisation; discover without it.
		p.metrics.count(p.metrics.failures, "op", failProfile)
		p.logger.WarnContext(ctx, "cannot read the product class's discovery profile", keyDeviceID, s.DeviceKey, "error", err)
	}
	batch, walk := p.settings(quirk.Discovery, prof)
	d := newDiscovery(roots, stored, batch)
	d.Walk = walk
	if walk {
		d.Pending = []string{d.Root}
	}
	// The engine logs the discovery once it has a slot (admitDiscovery):
	// here it may still be postponed.
	return []Planned{{ID: discoveryID, Created: s.Now, Op: d}}, nil
}

// settings chooses the batch size and the GetParameterNames mode of a
// discovery: the quirks profile's, else the configured batch; lowered to
// what the product class has shown it takes.
func (p *discoveryPlanner) settings(q DiscoveryQuirks, prof DiscoveryProfile) (batch int, walk bool) {
	batch = p.batch
	if q.BatchSize > 0 {
		batch = q.BatchSize
	}
	if f := prof.GPVBatchFailed; f > 0 {
		batch = min(batch, max(f/2, prof.GPVBatchOK, 1))
	}
	switch q.GPN {
	case GPNWalk:
		walk = true
	case GPNSubtree:
		walk = false
	default:
		walk = prof.SubtreeGPNFailed
	}
	return batch, walk
}

// Settle implements Planner: it stores what the session's discovery
// showed about the product class, when that is news.
func (p *discoveryPlanner) Settle(ctx context.Context, e End, ops []Operation) {
	for _, op := range ops {
		d, ok := op.(*discovery)
		if !ok {
			continue
		}
		if d.Truncated {
			p.metrics.count(p.metrics.truncated, "what", truncDiscovery)
			p.logger.WarnContext(ctx, "tree discovery stopped at the session's limits", keyDeviceID, e.DeviceKey,
				keyTenant, e.Tenant, "nodes", len(d.Nodes))
		}
		obs := d.observation()
		if obs.empty() {
			continue
		}
		class := classOf(e.Tenant, e.DeviceID)
		if !p.profiles.news(class, obs) {
			continue
		}
		if obs.GPVBatchFailed > 0 || obs.SubtreeGPNFailed {
			p.logger.WarnContext(ctx, "session died in discovery; the product class will be discovered more gently",
				keyDeviceID, e.DeviceKey, keyTenant, e.Tenant, "oui", class.OUI, "product_class", class.ProductClass,
				"failed_batch", obs.GPVBatchFailed, "subtree_gpn_failed", obs.SubtreeGPNFailed)
		}
		if err := p.profiles.record(ctx, class, obs); err != nil {
			p.metrics.count(p.metrics.failures, "op", failProfile)
			p.logger.WarnContext(ctx, "cannot record the product class's discovery profile", keyDeviceID, e.DeviceKey, "error", err)
		}
	}
}

// Discovery stages.
const (
	stageNames  = "names"  // GetParameterNames are next
	stageValues = "values" // GetParameterValues of the leaves, batch by batch
	stageDone   = "done"   // every leaf fetched or skipped
	stageFailed = "failed" // the CPE refused in a way batching cannot fix
	// stagePostponed: the worker runs its maximum of discoveries; a later
	// session discovers. Retry, when not 0, is the ScheduleInform delay
	// still to ask of the CPE.
	stagePostponed = "postponed"
)

// keySchedule is the call key of a postponed discovery's ScheduleInform.
const keySchedule = "schedule"

// scheduleCommandKey is the CommandKey of that ScheduleInform, which the
// CPE's "M ScheduleInform" event carries back: "fleetacs-discovery" after
// a first postponement, "fleetacs-discovery/N" after the Nth.
const scheduleCommandKey = "fleetacs-discovery"

// maxAttempt caps the postponement count a CommandKey carries.
const maxAttempt = 99

// scheduleKey returns the CommandKey of the ScheduleInform that follows
// the attempt-th postponement.
func scheduleKey(attempt int) string {
	if attempt <= 1 {
		return scheduleCommandKey
	}
	return scheduleCommandKey + "/" + strconv.Itoa(min(attempt, maxAttempt))
}

// returnedAttempt reports how often the device's discovery had been
// postponed when this session is the return a postponement's
// ScheduleInform asked for ("M ScheduleInform" with one of its
// CommandKeys), or 0 when the session is anything else. Several returns
// in one Inform (the CPE held some back) count as the highest.
func returnedAttempt(events []cwmp.Event) int {
	n := 0
	for _, ev := range events {
		if !strings.EqualFold(strings.TrimSpace(ev.Code), "M ScheduleInform") {
			continue
		}
		rest, ok := strings.CutPrefix(ev.CommandKey, scheduleCommandKey)
		switch {
		case !ok:
		case rest == "":
			n = max(n, 1)
		case rest[0] == '/':
			if a, err := strconv.Atoi(rest[1:]); err == nil && a >= 1 {
				n = max(n, min(a, maxAttempt))
			}
		}
	}
	return n
}

// postpone turns a discovery not yet started into a postponed one, which
// asks the CPE, with a ScheduleInform of retry seconds (none when 0), to
// come back for it; attempt counts the postponements so far, this one
// included.
func (d *discovery) postpone(retry uint32, attempt int) {
	*d = discovery{Stage: stagePostponed, Root: d.Root, Batch: d.Batch, Limit: d.Limit, Retry: retry, Attempt: attempt}
}

// discovery learns a device's tree: GetParameterNames of the data-model
// root with NextLevel false (the whole subtree, objects included), or, in
// walk mode, with NextLevel true object by object (for CPEs that cannot
// list a whole subtree); then GetParameterValues of the parameter names in
// batches. A batch refused with 9004 (resources exceeded) or 9005 (invalid
// parameter name) is halved and retried, down to single names; a single
// name refused that way is skipped. 9004 also lowers the batch ceiling for
// the rest of the session, since the CPE's limit will not change; after
// 9005 batches grow back once the bad name is behind. Any other fault ends
// the value fetching: such faults (9000 method not supported, 9001 denied)
// would repeat on every batch.
//
// It also notes what it showed about the CPE (the largest batch answered,
// a batch that failed or was outstanding when the session died, a subtree
// GetParameterNames that died), which its planner stores per product
// class.
type discovery struct {
	Stage string `json:"stage"`
	// Root is the path of the GetParameterNames; Roots are the candidates
	// still to try when the CPE refuses Root with 9005 (the data-model root
	// was a guess).
	Root  string   `json:"root"`
	Roots []string `json:"roots,omitempty"`
	// Walk selects NextLevel true, object by object; Pending are the
	// objects still to list, Root first.
	Walk    bool     `json:"walk,omitempty"`
	Pending []string `json:"pending,omitempty"`
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
	// Truncated: the session's limits stopped the discovery early; what
	// it has is recorded, removals are not (what it did not see may
	// exist).
	Truncated bool `json:"truncated,omitempty"`

	// What the discovery showed about the CPE (see observation).
	BatchOK     int  `json:"batchOk,omitempty"`
	BatchFailed int  `json:"batchFailed,omitempty"`
	SubtreeDied bool `json:"subtreeDied,omitempty"`

	// Retry is the ScheduleInform delay a postponed discovery still has
	// to ask for, in seconds.
	Retry uint32 `json:"retry,omitempty"`
	// Attempt counts the postponements of a postponed discovery, this
	// one included: its ScheduleInform's CommandKey carries it back.
	Attempt int `json:"attempt,omitempty"`

	leaves []int          // indexes of parameter nodes; rebuilt on demand
	index  map[string]int // node index by name; rebuilt on demand

	// What the journal records written so far hold (see AppendJournal):
	// the first jNodes nodes and jSkipped skipped names, Stored and
	// Removed when set; dirty lists the nodes whose values changed since.
	jNodes, jSkipped  int
	jStored, jRemoved bool
	dirty             []int
}

var (
	_ Operation = (*discovery)(nil)
	_ Journaled = (*discovery)(nil)
)

// discoveryHead is what a checkpoint of format 3 holds of a discovery in
// its head: everything but the lists its journal holds (Stored, Nodes,
// Removed, Skipped). A format-2 checkpoint held those too, under the same
// names, which is how Restore still reads it.
type discoveryHead struct {
	Stage       string   `json:"stage"`
	Root        string   `json:"root"`
	Roots       []string `json:"roots,omitempty"`
	Walk        bool     `json:"walk,omitempty"`
	Pending     []string `json:"pending,omitempty"`
	Cursor      int      `json:"cursor"`
	Batch       int      `json:"batch"`
	Limit       int      `json:"limit"`
	Truncated   bool     `json:"truncated,omitempty"`
	BatchOK     int      `json:"batchOk,omitempty"`
	BatchFailed int      `json:"batchFailed,omitempty"`
	SubtreeDied bool     `json:"subtreeDied,omitempty"`
	Retry       uint32   `json:"retry,omitempty"`
	Attempt     int      `json:"attempt,omitempty"`
}

// MarshalJSON implements json.Marshaler: the head (see discoveryHead).
func (d *discovery) MarshalJSON() ([]byte, error) {
	return json.Marshal(discoveryHead{
		Stage: d.Stage, Root: d.Root, Roots: d.Roots, Walk: d.Walk, Pending: d.Pending, Cursor: d.Cursor,
		Batch: d.Batch, Limit: d.Limit, Truncated: d.Truncated, BatchOK: d.BatchOK, BatchFailed: d.BatchFailed,
		SubtreeDied: d.SubtreeDied, Retry: d.Retry, Attempt: d.Attempt,
	})
}

// AppendJournal implements Journaled. A record is a JSON object whose
// members are replayed in this order, whatever order they come in:
//
//	"z": 1           a full record: forget what earlier records said
//	"s": [path...]   Stored
//	"n": [name...]   nodes appended, "w" their writable flags ("0"/"1" each)
//	"r": [path...]   Removed
//	"vi": [index...] nodes whose values were fetched, "vv" value and type of each
//	"k": [name...]   names skipped
func (d *discovery) AppendJournal(b []byte, full bool) []byte {
	if len(d.Nodes) < d.jNodes || len(d.Skipped) < d.jSkipped {
		full = true // what was recorded is no longer a prefix
	}
	start := len(b)
	b = append(b, '{')
	member := func(name string) {
		if len(b) > start+1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
	}
	values := d.dirty
	if full {
		member("z")
		b = append(b, '1')
		d.jNodes, d.jSkipped, d.jStored, d.jRemoved = 0, 0, false, false
		values = values[:0]
		for i := range d.Nodes {
			if d.Nodes[i].HasValue {
				values = append(values, i)
			}
		}
	}
	if d.Stored != nil && !d.jStored {
		member("s")
		b = cwmp.AppendJSONStrings(b, d.Stored)
		d.jStored = true
	}
	if len(d.Nodes) > d.jNodes {
		nodes := d.Nodes[d.jNodes:]
		member("n")
		b = append(b, '[')
		for i := range nodes {
			if i > 0 {
				b = append(b, ',')
			}
			b = cwmp.AppendJSONString(b, nodes[i].Name)
		}
		b = append(b, ']')
		member("w")
		b = append(b, '"')
		for i := range nodes {
			if nodes[i].Writable {
				b = append(b, '1')
			} else {
				b = append(b, '0')
			}
		}
		b = append(b, '"')
		d.jNodes = len(d.Nodes)
	}
	if d.Removed != nil && !d.jRemoved {
		member("r")
		b = cwmp.AppendJSONStrings(b, d.Removed)
		d.jRemoved = true
	}
	if len(values) > 0 {
		member("vi")
		b = append(b, '[')
		for k, i := range values {
			if k > 0 {
				b = append(b, ',')
			}
			b = appendInt(b, i)
		}
		b = append(b, ']')
		member("vv")
		b = append(b, '[')
		for k, i := range values {
			if k > 0 {
				b = append(b, ',')
			}
			b = cwmp.AppendJSONString(b, d.Nodes[i].Value)
			b = append(b, ',')
			b = cwmp.AppendJSONString(b, d.Nodes[i].Type)
		}
		b = append(b, ']')
	}
	d.dirty = values[:0]
	if len(d.Skipped) > d.jSkipped {
		member("k")
		b = cwmp.AppendJSONStrings(b, d.Skipped[d.jSkipped:])
		d.jSkipped = len(d.Skipped)
	}
	if len(b) == start+1 {
		return b[:start]
	}
	return append(b, '}')
}

// ReplayJournal implements Journaled.
func (d *discovery) ReplayJournal(data []byte) error {
	var r struct {
		Z  int      `json:"z"`
		S  []string `json:"s"`
		N  []string `json:"n"`
		W  string   `json:"w"`
		R  []string `json:"r"`
		VI []int    `json:"vi"`
		VV []string `json:"vv"`
		K  []string `json:"k"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("discovery record: %w", err)
	}
	if len(r.N) != len(r.W) || 2*len(r.VI) != len(r.VV) {
		return fmt.Errorf("discovery record: %d names with %d flags, %d values for %d nodes", len(r.N), len(r.W), len(r.VV), len(r.VI))
	}
	if r.Z == 1 {
		d.Stored, d.Nodes, d.Removed, d.Skipped = nil, nil, nil, nil
	}
	if r.S != nil && d.Stage == stageNames {
		d.Stored = r.S
	}
	for i, name := range r.N {
		d.Nodes = append(d.Nodes, node{Name: name, Writable: r.W[i] == '1'})
	}
	if r.R != nil {
		d.Removed = r.R
	}
	for k, i := range r.VI {
		if i < 0 || i >= len(d.Nodes) {
			return fmt.Errorf("discovery record: value of node %d of %d", i, len(d.Nodes))
		}
		nd := &d.Nodes[i]
		nd.Value, nd.Type, nd.HasValue = r.VV[2*k], r.VV[2*k+1], true
	}
	d.Skipped = append(d.Skipped, r.K...)
	d.leaves, d.index = nil, nil
	d.jNodes, d.jSkipped, d.jStored, d.jRemoved, d.dirty = len(d.Nodes), len(d.Skipped), d.Stored != nil, d.Removed != nil, nil
	return nil
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

// Call keys: "gpn <path>" and "gpv <cursor> <count>".
const (
	keyGPN = "gpn"
	keyGPV = "gpv"
)

// Next implements Operation.
func (d *discovery) Next(*Context) (Call, bool) {
	switch d.Stage {
	case stagePostponed:
		if d.Retry == 0 {
			return Call{}, false
		}
		return Call{Message: &cwmp.ScheduleInform{DelaySeconds: d.Retry, CommandKey: scheduleKey(d.Attempt)}, Key: keySchedule}, true
	case stageNames:
		path := d.Root
		if d.Walk {
			if len(d.Pending) == 0 {
				return Call{}, false
			}
			path = d.Pending[0]
		}
		return Call{
			Message: &cwmp.GetParameterNames{ParameterPath: path, NextLevel: d.Walk},
			Key:     keyGPN + " " + path,
		}, true
	case stageValues:
		leaves := d.leafIndexes()
		if d.Cursor >= len(leaves) {
			return Call{}, false
		}
		n := min(max(d.Batch, 1), len(leaves)-d.Cursor)
		names := make([]string, n)
		for i := range names {
			names[i] = d.Nodes[leaves[d.Cursor+i]].Name
		}
		return Call{
			Message: &cwmp.GetParameterValues{ParameterNames: names},
			Key:     keyGPV + " " + strconv.Itoa(d.Cursor) + " " + strconv.Itoa(n),
		}, true
	}
	return Call{}, false
}

// Answer implements Operation. An answer to a call the discovery no longer
// waits for (a stale key) changes nothing.
func (d *discovery) Answer(c *Context, a Answer) {
	kind, rest, _ := strings.Cut(a.Call.Key, " ")
	switch kind {
	case keySchedule:
		// Answered or not, it is asked once: a CPE without
		// ScheduleInform is discovered at its next session.
		d.Retry = 0
	case keyGPN:
		if d.Stage != stageNames || rest != d.namesPath() {
			return
		}
		switch {
		case a.Lost != 0:
			if !d.Walk {
				d.SubtreeDied = true
			}
			d.Stage = stageFailed
		case a.NotSent != nil:
			d.Stage = stageFailed
		case d.Walk:
			d.applyLevel(c, a)
		default:
			d.applyNames(c, a)
		}
	case keyGPV:
		cursor, n, ok := parseGPVKey(rest)
		if !ok || d.Stage != stageValues || cursor != d.Cursor {
			return
		}
		switch {
		case a.Lost != 0:
			d.failedAt(n)
			d.Stage = stageFailed
		case a.NotSent != nil:
			d.Stage = stageFailed
		default:
			d.applyValues(c, a, n)
		}
	}
}

// Observe implements Operation: no CPE request completes a discovery.
func (d *discovery) Observe(*Context, cwmp.Message) bool { return false }

// namesPath is the path of the GetParameterNames the discovery waits for.
func (d *discovery) namesPath() string {
	if d.Walk && len(d.Pending) > 0 {
		return d.Pending[0]
	}
	return d.Root
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

// failedAt notes that a batch of n names failed.
func (d *discovery) failedAt(n int) {
	if d.BatchFailed == 0 || n < d.BatchFailed {
		d.BatchFailed = n
	}
}

func (d *discovery) applyNames(c *Context, a Answer) {
	if a.Fault != nil {
		if a.Fault.Code == cwmp.FaultInvalidParameterName && len(d.Roots) > 0 {
			d.Root, d.Roots = d.Roots[0], d.Roots[1:]
			return
		}
		d.Stage = stageFailed
		d.Stored = nil
		return
	}
	resp, ok := a.Response.(*cwmp.GetParameterNamesResponse)
	if !ok {
		d.Stage = stageFailed
		d.Stored = nil
		return
	}
	seen := make(map[string]int, len(resp.ParameterList))
	d.Nodes = make([]node, 0, len(resp.ParameterList))
	for _, pi := range resp.ParameterList {
		if !d.addNode(c, seen, pi) {
			break
		}
	}
	d.namesDone(seen)
}

// applyLevel takes one NextLevel GetParameterNames of the walk: the
// immediate children of the path, whose objects are listed in turn. A
// fault on an object below the root skips that object (some CPEs refuse
// parts of their tree); on the root it is what applyNames does with it.
func (d *discovery) applyLevel(c *Context, a Answer) {
	path := d.Pending[0]
	if path == d.Root && len(d.Nodes) == 0 && a.Fault != nil {
		if a.Fault.Code == cwmp.FaultInvalidParameterName && len(d.Roots) > 0 {
			d.Root, d.Roots = d.Roots[0], d.Roots[1:]
			d.Pending = []string{d.Root}
			return
		}
		d.Stage = stageFailed
		d.Stored = nil
		return
	}
	d.Pending = d.Pending[1:]
	if resp, ok := a.Response.(*cwmp.GetParameterNamesResponse); ok {
		seen := d.nodeSet()
		for _, pi := range resp.ParameterList {
			// Only children of path: anything else would escape the walk.
			if pi.Name == path || !strings.HasPrefix(pi.Name, path) {
				continue
			}
			if _, dup := seen[pi.Name]; dup {
				continue
			}
			if !d.addNode(c, seen, pi) {
				d.Pending = nil
				break
			}
			if strings.HasSuffix(pi.Name, ".") {
				d.Pending = append(d.Pending, pi.Name)
			}
		}
	}
	if len(d.Pending) == 0 {
		d.namesDone(d.nodeSet())
	}
}

// addNode keeps a name the CPE listed, unless it is outside the root (it
// would escape the removal logic, which compares the tree under the root
// only), a repeat, or over the session's limits (then it reports false
// and the discovery is truncated).
func (d *discovery) addNode(c *Context, seen map[string]int, pi cwmp.ParameterInfo) bool {
	if !strings.HasPrefix(pi.Name, d.Root) {
		return true
	}
	if _, dup := seen[pi.Name]; dup {
		return true
	}
	if !c.Charge(1, ParameterCost(pi.Name, "", "")) {
		d.Truncated = true
		return false
	}
	seen[pi.Name] = len(d.Nodes)
	d.Nodes = append(d.Nodes, node{Name: pi.Name, Writable: pi.Writable})
	d.index = nil
	return true
}

// namesDone moves on to the values once every name is known; seen is the
// index of the nodes by name, which the values then use.
func (d *discovery) namesDone(seen map[string]int) {
	if !d.Truncated {
		d.Removed = removedPaths(d.Root, d.Stored, seen)
	}
	d.Stored = nil
	d.leaves, d.index = nil, seen
	d.Stage = stageValues
	if len(d.leafIndexes()) == 0 {
		d.Stage = stageDone
	}
}

// nodeSet returns the index of the nodes by name.
func (d *discovery) nodeSet() map[string]int {
	seen := make(map[string]int, len(d.Nodes))
	for i := range d.Nodes {
		seen[d.Nodes[i].Name] = i
	}
	return seen
}

func (d *discovery) applyValues(c *Context, a Answer, n int) {
	if a.Fault != nil {
		switch a.Fault.Code {
		case cwmp.FaultCPEResourcesExceeded, cwmp.FaultInvalidParameterName:
			if n > 1 {
				d.Batch = n / 2
				if a.Fault.Code == cwmp.FaultCPEResourcesExceeded {
					d.Limit = d.Batch
					d.failedAt(n)
				}
				return
			}
			d.Skipped = append(d.Skipped, d.Nodes[d.leafIndexes()[d.Cursor]].Name)
			d.advance(1)
		default:
			d.Stage = stageFailed
		}
		return
	}
	resp, ok := a.Response.(*cwmp.GetParameterValuesResponse)
	if !ok {
		d.Stage = stageFailed
		return
	}
	d.BatchOK = max(d.BatchOK, n)
	idx := d.nodeIndex()
	for _, pv := range resp.ParameterList {
		i, ok := idx[pv.Name]
		if !ok {
			continue
		}
		nd := &d.Nodes[i]
		if nd.HasValue {
			// A node takes its first value: a repeat (in this response
			// or a later one) would replace it uncharged, and journal
			// it again.
			continue
		}
		if !c.Charge(0, len(pv.Value)+len(pv.Type)) {
			d.Truncated = true
			d.Stage = stageDone
			return
		}
		nd.Value, nd.Type, nd.HasValue = pv.Value, pv.Type, true
		d.dirty = append(d.dirty, i)
	}
	d.advance(n)
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

// Contribute implements Operation: a discovery is written only by a
// completed session, since an incomplete one will be run again from the
// start. Its values are newer than the Inform's.
func (d *discovery) Contribute(_ *Context, b *DiffBuilder, o Outcome) {
	if o != Completed || d.Stage == stageNames || d.Stage == stagePostponed {
		return
	}
	if len(d.Nodes) > 0 || d.Stage == stageDone {
		b.SetRoot(d.Root)
	}
	b.Remove(d.Removed...)
	b.Grow(len(d.Nodes))
	for _, nd := range d.Nodes {
		p := Parameter{Path: nd.Name, Writable: nd.Writable, HasWritable: true}
		if nd.HasValue {
			p.Value, p.Type, p.HasValue = nd.Value, nd.Type, true
		}
		b.Set(p)
	}
	if d.Stage == stageDone {
		b.FullDiscovery()
	}
}

// observation is what the discovery showed about its CPE's product class.
func (d *discovery) observation() DiscoveryObservation {
	return DiscoveryObservation{GPVBatchOK: d.BatchOK, GPVBatchFailed: d.BatchFailed, SubtreeGPNFailed: d.SubtreeDied}
}

// removedPaths compares the stored paths under root with the discovered
// names and returns what the CPE no longer has: for a missing path, its
// highest missing ancestor object below root (the whole subtree went), else
// the path itself. An object counts as present when any discovered name lies
// under it, because some CPEs list no object names at all.
func removedPaths(root string, stored []string, discovered map[string]int) []string {
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
