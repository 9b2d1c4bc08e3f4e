package sessions

import "strings"

// diff builds the one RecordSession of a session from what it kept: the
// Inform, then the discovery, whose values are newer than the Inform's.
// It depends only on the session's checkpointed state, so a session resumed
// on another worker sends the same diff (RecordSession is idempotent per
// session ID).
func (w *Worker) diff(s *session) *Diff {
	inf := s.inform
	now := w.now()
	d := &Diff{
		Tenant: s.tenant, DeviceKey: s.deviceKey, SessionID: s.id,
		FencingToken: s.lease.Token, ObserveTime: now, DeviceID: inf.DeviceID,
		Inform:          &InformRecord{Time: inf.Time, Events: inf.Events, RemoteIP: inf.RemoteIP, RetryCount: inf.RetryCount},
		SessionTakeover: s.lease.Superseded != "",
	}
	root := inf.Root
	var disc *discovery
	if s.plan != nil && s.plan.Discovery != nil && s.plan.Discovery.Stage != stageNames {
		disc = s.plan.Discovery
		if len(disc.Nodes) > 0 || disc.Stage == stageDone {
			root = disc.Root
		}
	}

	n := len(inf.Params)
	if disc != nil {
		n += len(disc.Nodes)
	}
	d.Parameters = make([]Parameter, 0, n)
	var index map[string]int
	if disc != nil {
		index = make(map[string]int, n)
	}
	add := func(p Parameter) {
		if index != nil {
			if i, ok := index[p.Path]; ok {
				q := &d.Parameters[i]
				if p.HasValue {
					q.Value, q.Type, q.HasValue = p.Value, p.Type, true
				}
				if p.HasWritable {
					q.Writable, q.HasWritable = p.Writable, true
				}
				return
			}
			index[p.Path] = len(d.Parameters)
		}
		d.Parameters = append(d.Parameters, p)
	}
	for _, pv := range inf.Params {
		if pv.Name == "" {
			continue
		}
		add(Parameter{Path: pv.Name, Value: pv.Value, Type: pv.Type, HasValue: true})
	}
	if disc != nil {
		d.RemovedPaths = disc.Removed
		for _, nd := range disc.Nodes {
			p := Parameter{Path: nd.Name, Writable: nd.Writable, HasWritable: true}
			if nd.HasValue {
				p.Value, p.Type, p.HasValue = nd.Value, nd.Type, true
			}
			add(p)
		}
		if disc.Stage == stageDone {
			d.FullDiscoveryTime = now
		}
	}
	if root != "" {
		d.Fields.DataModelRoot = &root
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
