package engine

import (
	"slices"
	"strings"
	"time"
)

// DiffBuilder collects what a session learned into its one RecordSession:
// the Inform's parameters first, then what each operation contributes, in
// queue order; a later contribution to a path overrides the value and the
// writability it sets.
type DiffBuilder struct {
	d     *Diff
	now   time.Time
	index map[string]int
}

// Set adds a parameter (an object when the path ends with a dot), merged
// with what the diff holds for the path.
func (b *DiffBuilder) Set(p Parameter) {
	if b.index == nil {
		b.index = make(map[string]int, max(cap(b.d.Parameters), len(b.d.Parameters)+16))
		for i := range b.d.Parameters {
			b.index[b.d.Parameters[i].Path] = i
		}
	}
	if i, ok := b.index[p.Path]; ok {
		q := &b.d.Parameters[i]
		if p.HasValue {
			q.Value, q.Type, q.HasValue = p.Value, p.Type, true
		}
		if p.HasWritable {
			q.Writable, q.HasWritable = p.Writable, true
		}
		return
	}
	b.index[p.Path] = len(b.d.Parameters)
	b.d.Parameters = append(b.d.Parameters, p)
}

// Grow makes room for n more parameters, for an operation about to set
// many.
func (b *DiffBuilder) Grow(n int) { b.d.Parameters = slices.Grow(b.d.Parameters, n) }

// Remove removes paths (an object path removes its subtree); removals
// apply before the parameters.
func (b *DiffBuilder) Remove(paths ...string) {
	b.d.RemovedPaths = append(b.d.RemovedPaths, paths...)
}

// SetRoot records the device's data-model root.
func (b *DiffBuilder) SetRoot(root string) {
	if root != "" {
		b.d.Fields.DataModelRoot = &root
	}
}

// PresetsFingerprint records the preset set the device converged to.
func (b *DiffBuilder) PresetsFingerprint(f string) { b.d.PresetsFingerprint = &f }

// Tags records tags the device gets and loses.
func (b *DiffBuilder) Tags(add, remove []string) {
	b.d.AddTags = append(b.d.AddTags, add...)
	b.d.RemoveTags = append(b.d.RemoveTags, remove...)
}

// FullDiscovery records that the session discovered the whole tree.
func (b *DiffBuilder) FullDiscovery() { b.d.FullDiscoveryTime = b.now }

// diff builds the one RecordSession of a session from what it kept: the
// Inform's facts, its parameters when the session completed (see
// Outcome), and what the operations contribute. It depends only on the
// session's checkpointed state, so a session resumed on another worker
// sends the same diff (RecordSession is idempotent per session ID).
func (e *Engine) diff(s *session, o Outcome) *Diff {
	inf := s.inform
	now := e.now()
	d := &Diff{
		Tenant: s.tenant, DeviceKey: s.deviceKey, SessionID: s.id,
		FencingToken: s.lease.Token, ObserveTime: now, DeviceID: inf.DeviceID,
		Inform:          &InformRecord{Time: inf.Time, Events: inf.Events, RemoteIP: inf.RemoteIP, RetryCount: inf.RetryCount},
		SessionTakeover: s.lease.Superseded != "",
	}
	if o == Completed {
		d.Parameters = make([]Parameter, 0, len(inf.Params))
		for _, pv := range inf.Params {
			if pv.Name == "" {
				continue
			}
			d.Parameters = append(d.Parameters, Parameter{Path: pv.Name, Value: pv.Value, Type: pv.Type, HasValue: true})
		}
		if inf.Root != "" {
			root := inf.Root
			d.Fields.DataModelRoot = &root
		}
	}
	if s.queue != nil && len(s.queue.Entries) > 0 {
		// Built only here: handed to the operations, it escapes.
		b := &DiffBuilder{d: d, now: now}
		c := s.context(now)
		for _, en := range s.queue.Entries {
			en.Op.Contribute(c, b, o)
		}
	}
	for i := range d.Parameters {
		p := &d.Parameters[i]
		if p.HasValue {
			if f := fieldOf(&d.Fields, p.Path); f != nil {
				*f = &p.Value
			}
		}
	}
	return d
}

// fieldOf returns the top-level field a parameter feeds, matched below
// either data-model root, or nil.
func fieldOf(f *DeviceFields, path string) **string {
	_, rest, ok := strings.Cut(path, ".")
	if !ok {
		return nil
	}
	switch rest {
	case "DeviceInfo.SoftwareVersion":
		return &f.SoftwareVersion
	case "DeviceInfo.HardwareVersion":
		return &f.HardwareVersion
	case "DeviceInfo.ProvisioningCode":
		return &f.ProvisioningCode
	case "ManagementServer.ConnectionRequestURL":
		return &f.ConnectionRequestURL
	case "ManagementServer.UDPConnectionRequestAddress":
		return &f.UDPConnectionRequestAddress
	case "ManagementServer.ConnReqJabberID":
		return &f.JabberID
	}
	return nil
}
