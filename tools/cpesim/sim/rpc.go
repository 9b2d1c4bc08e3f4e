package sim

import (
	"fmt"
	"math"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// cpeMethods are the CPE methods the simulator implements (docs/protocol.md §5.1),
// listed in its GetRPCMethodsResponse when the session's version has them.
var cpeMethods = []string{
	"GetRPCMethods", "SetParameterValues", "GetParameterValues", "GetParameterNames",
	"SetParameterAttributes", "GetParameterAttributes", "AddObject", "DeleteObject",
	"Reboot", "Download", "Upload", "FactoryReset", "GetQueuedTransfers", "ScheduleInform",
	"GetAllQueuedTransfers", "ScheduleDownload", "CancelTransfer", "ChangeDUState",
}

// echoMethod is the one vendor method the simulator answers; any other
// gets fault 9000 (Method not supported).
const echoMethod = "X_FLEETACS_Echo"

// maxQueued is the most transfers a CPE lists (the schema's limit).
const maxQueued = 16

// handle answers one ACS request. It returns the response message or a
// *cwmp.Fault. v is the session's CWMP version: a method newer than the
// session is not supported in it.
func (d *Device) handle(req cwmp.Message, v cwmp.Version, now time.Time) cwmp.Message {
	if _, unknown := req.(*cwmp.Unknown); !unknown && cwmp.Since(req.Method()) > v {
		return cwmp.NewFault(cwmp.FaultCPEMethodNotSupported)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch m := req.(type) {
	case *cwmp.GetRPCMethods:
		var list []string
		for _, name := range cpeMethods {
			if cwmp.Since(name) <= v {
				list = append(list, name)
			}
		}
		list = append(list, echoMethod)
		return &cwmp.GetRPCMethodsResponse{MethodList: list}
	case *cwmp.VendorRequest:
		if m.Name == echoMethod {
			// The vendor method the simulator implements: its answer
			// carries the arguments back, in the request's namespace.
			return &cwmp.VendorResponse{Name: echoMethod + "Response", Namespace: m.Namespace, InnerXML: m.Arguments}
		}
		return cwmp.NewFault(cwmp.FaultCPEMethodNotSupported)
	case *cwmp.GetParameterNames:
		return d.getParameterNames(m)
	case *cwmp.GetParameterValues:
		return d.getParameterValues(m, now)
	case *cwmp.SetParameterValues:
		return d.setParameterValues(m)
	case *cwmp.GetParameterAttributes:
		return d.getParameterAttributes(m)
	case *cwmp.SetParameterAttributes:
		return d.setParameterAttributes(m)
	case *cwmp.AddObject:
		return d.addObject(m)
	case *cwmp.DeleteObject:
		return d.deleteObject(m)
	case *cwmp.Reboot:
		key := m.CommandKey
		d.after = append(d.after, func(now time.Time) { d.reboot(now, evMReboot, key) })
		return &cwmp.RebootResponse{}
	case *cwmp.FactoryReset:
		d.after = append(d.after, func(now time.Time) {
			d.mu.Lock()
			d.factoryResetLocked(now)
			d.mu.Unlock()
			d.sim.sched.wake(d, now)
		})
		return &cwmp.FactoryResetResponse{}
	case *cwmp.Download:
		return d.download(m, now)
	case *cwmp.Upload:
		return d.upload(m, now)
	case *cwmp.ScheduleDownload:
		return d.scheduleDownload(m, now)
	case *cwmp.ScheduleInform:
		if m.DelaySeconds == 0 {
			return cwmp.NewFault(cwmp.FaultCPEInvalidArguments)
		}
		delay := d.sim.scaled(time.Duration(m.DelaySeconds) * time.Second)
		key := m.CommandKey
		d.after = append(d.after, func(now time.Time) {
			d.sim.sched.addWakeup(d, now.Add(delay), func(time.Time) {
				d.addEvent(evScheduled, "")
				d.addEvent(evMScheduleInform, key)
			})
		})
		return &cwmp.ScheduleInformResponse{}
	case *cwmp.GetQueuedTransfers:
		var list []cwmp.QueuedTransfer
		for _, t := range d.transfers {
			if st := t.queueState(); st != 0 && len(list) < maxQueued {
				list = append(list, cwmp.QueuedTransfer{CommandKey: t.key, State: st})
			}
		}
		return &cwmp.GetQueuedTransfersResponse{TransferList: list}
	case *cwmp.GetAllQueuedTransfers:
		var list []cwmp.AllQueuedTransfer
		for _, t := range d.transfers {
			if st := t.queueState(); st != 0 && len(list) < maxQueued {
				list = append(list, cwmp.AllQueuedTransfer{
					CommandKey: t.key, State: st, IsDownload: t.download,
					FileType: t.fileType, FileSize: t.fileSize, TargetFileName: t.target,
				})
			}
		}
		return &cwmp.GetAllQueuedTransfersResponse{TransferList: list}
	case *cwmp.CancelTransfer:
		for i, t := range d.transfers {
			if t.key == m.CommandKey && t.state == transferQueued {
				t.state = transferCancelled
				d.transfers = append(d.transfers[:i], d.transfers[i+1:]...)
				return &cwmp.CancelTransferResponse{}
			}
		}
		return cwmp.NewFault(cwmp.FaultCancelNotPermitted)
	case *cwmp.ChangeDUState:
		return d.changeDUState(m)
	}
	return cwmp.NewFault(cwmp.FaultCPEMethodNotSupported)
}

// reboot restarts the device after the session: uptime restarts and the
// next Inform carries 1 BOOT and the M event of what caused it.
func (d *Device) reboot(now time.Time, mEvent, key string) {
	d.mu.Lock()
	d.bootTime = now
	d.addEvent(evBoot, "")
	if mEvent != "" {
		d.addEvent(mEvent, key)
	}
	d.mu.Unlock()
	d.sim.sched.wake(d, now.Add(d.sim.cfg.RebootTime))
}

// partialPath reports a path naming an object (ending in "." or empty).
func partialPath(name string) bool { return name == "" || strings.HasSuffix(name, ".") }

func (d *Device) getParameterNames(m *cwmp.GetParameterNames) cwmp.Message {
	n, ok := d.tree.lookup(m.ParameterPath)
	if !ok || (n.kind == kindParam) == partialPath(m.ParameterPath) {
		return cwmp.NewFault(cwmp.FaultInvalidParameterName)
	}
	var list []cwmp.ParameterInfo
	info := func(n *node) cwmp.ParameterInfo { return cwmp.ParameterInfo{Name: n.name, Writable: n.writable()} }
	switch {
	case n.kind == kindParam:
		// A full parameter name with NextLevel true is invalid (docs/protocol.md §5.3).
		if m.NextLevel {
			return cwmp.NewFault(cwmp.FaultCPEInvalidArguments)
		}
		list = append(list, info(n))
	case m.ParameterPath == "" && m.NextLevel:
		list = append(list, info(d.tree.root))
	case m.NextLevel:
		for _, c := range n.children {
			list = append(list, info(c))
		}
	default:
		// The object itself, then everything below it, objects included.
		var walk func(n *node)
		walk = func(n *node) {
			list = append(list, info(n))
			for _, c := range n.children {
				walk(c)
			}
		}
		walk(n)
	}
	return &cwmp.GetParameterNamesResponse{ParameterList: list}
}

func (d *Device) getParameterValues(m *cwmp.GetParameterValues, now time.Time) cwmp.Message {
	var nodes []*node
	for _, name := range m.ParameterNames {
		n, ok := d.tree.lookup(name)
		if !ok || (n.kind == kindParam) == partialPath(name) {
			return cwmp.NewFault(cwmp.FaultInvalidParameterName)
		}
		nodes = appendParams(nodes, n)
	}
	list := make([]cwmp.ParameterValue, len(nodes))
	for i, n := range nodes {
		list[i] = d.paramValue(n, now)
	}
	return &cwmp.GetParameterValuesResponse{ParameterList: list}
}

// setParameterValues applies all values or none (docs/protocol.md §5.3). Each bad
// parameter gets its own SetParameterValuesFault under a 9003 fault: 9005
// unknown name, 9008 not writable, 9006 the ACS's xsi:type differs from the
// parameter's, 9007 a value not of the type or outside its constraints. A
// parameter named twice is 9003.
func (d *Device) setParameterValues(m *cwmp.SetParameterValues) cwmp.Message {
	var faults []cwmp.SetParameterValuesFault
	addFault := func(name string, code cwmp.FaultCode) {
		faults = append(faults, cwmp.SetParameterValuesFault{ParameterName: name, FaultCode: code, FaultString: code.String()})
	}
	values := make([]string, len(m.ParameterList))
	seen := make(map[string]bool, len(m.ParameterList))
	for i, pv := range m.ParameterList {
		if seen[pv.Name] {
			return cwmp.NewFault(cwmp.FaultCPEInvalidArguments)
		}
		seen[pv.Name] = true
		n, ok := d.tree.lookup(pv.Name)
		if !ok || n.kind != kindParam || pv.Name == "" {
			addFault(pv.Name, cwmp.FaultInvalidParameterName)
			continue
		}
		if !n.param.Writable {
			addFault(pv.Name, cwmp.FaultNonWritableParameter)
			continue
		}
		if pv.Type != "" && pv.Type != n.param.Type && !sameType(pv.Type, n.param.Type) {
			addFault(pv.Name, cwmp.FaultInvalidParameterType)
			continue
		}
		v, code := checkValue(n.param, pv.Value)
		if code != 0 {
			addFault(pv.Name, code)
			continue
		}
		values[i] = v
	}
	if len(faults) > 0 {
		f := cwmp.NewFault(cwmp.FaultCPEInvalidArguments)
		f.SetParameterValuesFaults = faults
		return f
	}
	names := make([]string, len(m.ParameterList))
	for i, pv := range m.ParameterList {
		d.setValueLocked(pv.Name, values[i])
		names[i] = pv.Name
	}
	d.diagnosticsSetLocked(names, values)
	d.setParameterKeyLocked(m.ParameterKey)
	return &cwmp.SetParameterValuesResponse{Status: 0}
}

// sameType treats the base64 spellings CPEs and ACSes use as one type
// (docs/protocol.md §9).
func sameType(a, b string) bool {
	norm := func(t string) string {
		switch t {
		case "xsd:base64Binary", "soap-enc:base64", "SOAP-ENC:base64":
			return "xsd:base64"
		}
		return t
	}
	return norm(a) == norm(b)
}

// setParameterKeyLocked stores ManagementServer.ParameterKey after a
// successful SPV, AddObject or DeleteObject (docs/protocol.md §5.3).
func (d *Device) setParameterKeyLocked(key string) {
	d.setValueLocked(d.tree.root.name+"ManagementServer.ParameterKey", key)
}

func (d *Device) getParameterAttributes(m *cwmp.GetParameterAttributes) cwmp.Message {
	var nodes []*node
	for _, name := range m.ParameterNames {
		n, ok := d.tree.lookup(name)
		if !ok || (n.kind == kindParam) == partialPath(name) {
			return cwmp.NewFault(cwmp.FaultInvalidParameterName)
		}
		nodes = appendParams(nodes, n)
	}
	list := make([]cwmp.ParameterAttribute, len(nodes))
	for i, n := range nodes {
		a := d.attrOf(n)
		list[i] = cwmp.ParameterAttribute{Name: n.name, Notification: a.notification, AccessList: a.accessList}
	}
	return &cwmp.GetParameterAttributesResponse{ParameterList: list}
}

// setParameterAttributes applies attributes (docs/protocol.md §11): a partial path
// applies to every parameter below it; turning off the notification of a
// forceEnabled parameter, or asking active notification of a canDeny one,
// is refused with 9009.
func (d *Device) setParameterAttributes(m *cwmp.SetParameterAttributes) cwmp.Message {
	type change struct {
		n *node
		a paramAttr
	}
	var changes []change
	for _, s := range m.ParameterList {
		n, ok := d.tree.lookup(s.Name)
		if !ok || (n.kind == kindParam) == partialPath(s.Name) {
			return cwmp.NewFault(cwmp.FaultInvalidParameterName)
		}
		for _, p := range appendParams(nil, n) {
			a := d.attrOf(p)
			if s.NotificationChange {
				if p.param.ActiveNotify == "forceEnabled" && s.Notification != 2 ||
					p.param.ActiveNotify == "canDeny" && s.Notification == 2 && n == p {
					return cwmp.NewFault(cwmp.FaultNotificationRejected)
				}
				if p.param.ActiveNotify != "canDeny" || s.Notification != 2 {
					a.notification = s.Notification
				}
			}
			if s.AccessListChange {
				a.accessList = append([]string(nil), s.AccessList...)
			}
			changes = append(changes, change{p, a})
		}
	}
	if d.attrs == nil {
		d.attrs = map[string]paramAttr{}
	}
	for _, c := range changes {
		d.attrs[c.n.name] = c.a
	}
	return &cwmp.SetParameterAttributesResponse{}
}

func (d *Device) addObject(m *cwmp.AddObject) cwmp.Message {
	tn, ok := d.tree.lookup(m.ObjectName)
	if !ok || tn.kind != kindTable || !strings.HasSuffix(m.ObjectName, ".") {
		return cwmp.NewFault(cwmp.FaultInvalidParameterName)
	}
	if !tn.obj.Writable {
		return cwmp.NewFault(cwmp.FaultCPERequestDenied)
	}
	d.ownTreeLocked()
	tn = d.tree.index[m.ObjectName]
	in := d.tree.addInstance(tn, modelPathOf(m.ObjectName)+"{i}.")
	d.tree.finish()
	d.setParameterKeyLocked(m.ParameterKey)
	return &cwmp.AddObjectResponse{InstanceNumber: in.inst, Status: 0}
}

func (d *Device) deleteObject(m *cwmp.DeleteObject) cwmp.Message {
	in, ok := d.tree.lookup(m.ObjectName)
	if !ok || in.kind != kindInstance {
		return cwmp.NewFault(cwmp.FaultInvalidParameterName)
	}
	if !in.obj.Writable {
		return cwmp.NewFault(cwmp.FaultCPERequestDenied)
	}
	d.ownTreeLocked()
	for _, name := range d.tree.remove(d.tree.index[m.ObjectName]) {
		delete(d.vals, name)
		delete(d.attrs, name)
	}
	d.setParameterKeyLocked(m.ParameterKey)
	return &cwmp.DeleteObjectResponse{Status: 0}
}

// ---- transfers

type transferState uint8

const (
	transferQueued    transferState = iota // waiting for its delay or window
	transferRunning                        // in progress
	transferDone                           // finished, TransferComplete not yet acknowledged
	transferCancelled                      // cancelled by CancelTransfer
)

// transfer is a Download, Upload or ScheduleDownload the device accepted.
type transfer struct {
	method   string // "Download", "Upload", "ScheduleDownload"
	key      string
	download bool
	fileType string
	url      string
	username string
	password string
	fileSize uint32
	target   string
	state    transferState
	start    time.Time
	complete time.Time
	fault    cwmp.FaultStruct
}

// queueState is the State of Get(All)QueuedTransfers: 1 not started, 2 in
// progress; 0 for a transfer the CPE no longer lists.
func (t *transfer) queueState() int {
	switch t.state {
	case transferQueued:
		return 1
	case transferRunning:
		return 2
	}
	return 0
}

// mEvent is the M event that reports the transfer.
func (t *transfer) mEvent() string {
	switch t.method {
	case "Upload":
		return evMUpload
	case "ScheduleDownload":
		return evMScheduleDL
	}
	return evMDownload
}

// supportedScheme checks a transfer URL; other schemes get 9013 (docs/protocol.md
// §5.3).
func supportedScheme(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https", "ftp":
		return true
	}
	return false
}

func (d *Device) download(m *cwmp.Download, now time.Time) cwmp.Message {
	if !supportedScheme(m.URL) {
		return cwmp.NewFault(cwmp.FaultUnsupportedTransferProtocol)
	}
	t := &transfer{method: "Download", key: m.CommandKey, download: true, fileType: m.FileType, url: m.URL,
		username: m.Username, password: m.Password, fileSize: m.FileSize, target: m.TargetFileName}
	d.queueTransferLocked(t, time.Duration(m.DelaySeconds)*time.Second)
	// Status 1: the transfer runs after the session, and a TransferComplete
	// follows (docs/protocol.md §5.3); the times are then the Unknown Time.
	return &cwmp.DownloadResponse{Status: 1, StartTime: cwmp.UnknownTime, CompleteTime: cwmp.UnknownTime}
}

func (d *Device) upload(m *cwmp.Upload, now time.Time) cwmp.Message {
	if !supportedScheme(m.URL) {
		return cwmp.NewFault(cwmp.FaultUnsupportedTransferProtocol)
	}
	t := &transfer{method: "Upload", key: m.CommandKey, fileType: m.FileType, url: m.URL,
		username: m.Username, password: m.Password}
	d.queueTransferLocked(t, time.Duration(m.DelaySeconds)*time.Second)
	return &cwmp.UploadResponse{Status: 1, StartTime: cwmp.UnknownTime, CompleteTime: cwmp.UnknownTime}
}

func (d *Device) scheduleDownload(m *cwmp.ScheduleDownload, now time.Time) cwmp.Message {
	if !supportedScheme(m.URL) {
		return cwmp.NewFault(cwmp.FaultUnsupportedTransferProtocol)
	}
	if len(m.TimeWindowList) == 0 || len(m.TimeWindowList) > 2 {
		return cwmp.NewFault(cwmp.FaultCPEInvalidArguments)
	}
	w := m.TimeWindowList[0]
	if w.WindowEnd < w.WindowStart {
		return cwmp.NewFault(cwmp.FaultCPEInvalidArguments)
	}
	t := &transfer{method: "ScheduleDownload", key: m.CommandKey, download: true, fileType: m.FileType, url: m.URL,
		username: m.Username, password: m.Password, fileSize: m.FileSize, target: m.TargetFileName}
	d.queueTransferLocked(t, time.Duration(w.WindowStart)*time.Second)
	return &cwmp.ScheduleDownloadResponse{}
}

// queueTransferLocked accepts a transfer: it starts delay after the
// session ends (scaled by Config.TimeScale) and takes Config.TransferTime.
func (d *Device) queueTransferLocked(t *transfer, delay time.Duration) {
	d.transfers = append(d.transfers, t)
	delay = d.sim.scaled(delay)
	d.after = append(d.after, func(now time.Time) {
		d.sim.sched.addWakeup(d, now.Add(delay), func(now time.Time) { d.runTransfer(t, now) })
	})
}

// runTransfer performs a transfer when its time comes (called by the
// scheduler with d.mu held): it fetches or sends the file when
// Config.FetchTransfers asks for it, else succeeds at once, and queues the
// events of its completion. A firmware image reboots the device.
func (d *Device) runTransfer(t *transfer, now time.Time) {
	if t.state != transferQueued {
		return
	}
	t.state = transferRunning
	t.start = now
	if t.download && failsTransfers(d.index, d.sim.cfg.FailTransfers) {
		t.fault = faultStruct(cwmp.FaultDownloadFailure)
	} else if d.sim.cfg.FetchTransfers {
		// The transfer itself runs outside the device lock: it is I/O.
		d.mu.Unlock()
		fault := d.sim.doTransfer(t)
		d.mu.Lock()
		t.fault = fault
	}
	t.complete = now.Add(d.sim.cfg.TransferTime)
	t.state = transferDone
	d.sim.stats.transfers.Add(1)
	if t.download && t.fault.FaultCode == 0 && t.fileType == "1 Firmware Upgrade Image" {
		d.swVersion = versionFromFile(t.target, t.url, d.swVersion)
		d.bootTime = t.complete
		d.addEvent(evBoot, "")
	}
	d.addEvent(evTransferComplete, "")
	d.addEvent(t.mEvent(), t.key)
}

// versionFromFile derives the new SoftwareVersion from a firmware image's
// name, as a simulator's stand-in for reading the image.
func versionFromFile(target, rawURL, old string) string {
	name := target
	if name == "" {
		if u, err := url.Parse(rawURL); err == nil {
			name = path.Base(u.Path)
		}
	}
	name = strings.TrimSuffix(name, path.Ext(name))
	if name == "" || name == "." || name == "/" {
		return old
	}
	if len(name) > 64 {
		name = name[:64]
	}
	return name
}

// ---- deployment units (ChangeDUState, CWMP 1.2)

type deploymentUnit struct {
	uuid    string
	ref     string
	version string
}

// duChange is a ChangeDUState whose results await delivery.
type duChange struct {
	key     string
	results []cwmp.OpResult
}

func (d *Device) changeDUState(m *cwmp.ChangeDUState) cwmp.Message {
	if len(m.Operations) == 0 {
		return cwmp.NewFault(cwmp.FaultCPEInvalidArguments)
	}
	ops := append([]cwmp.DUOperation(nil), m.Operations...)
	key := m.CommandKey
	d.after = append(d.after, func(now time.Time) {
		d.sim.sched.addWakeup(d, now.Add(d.sim.cfg.TransferTime), func(now time.Time) {
			d.applyDUChangeLocked(key, ops, now)
		})
	})
	return &cwmp.ChangeDUStateResponse{}
}

// applyDUChangeLocked carries out DU operations and queues their results
// with 11 DU STATE CHANGE COMPLETE and M ChangeDUState.
func (d *Device) applyDUChangeLocked(key string, ops []cwmp.DUOperation, now time.Time) {
	if d.dus == nil {
		d.dus = map[string]*deploymentUnit{}
	}
	ts := cwmp.NewDateTime(now)
	ch := &duChange{key: key}
	for _, op := range ops {
		r := cwmp.OpResult{UUID: op.UUID, Version: op.Version, StartTime: ts, CompleteTime: ts}
		switch op.Kind {
		case cwmp.OpInstall:
			if r.UUID == "" {
				d.duSeq++
				r.UUID = fmt.Sprintf("%08x-0000-4000-8000-%012x", d.index, d.duSeq)
			}
			if r.Version == "" {
				r.Version = "1.0"
			}
			if _, dup := d.dus[r.UUID]; dup {
				r.CurrentState, r.Fault = "Failed", faultStruct(cwmp.FaultDuplicateDU)
				break
			}
			d.duSeq++
			du := &deploymentUnit{uuid: r.UUID, version: r.Version,
				ref: d.tree.root.name + "SoftwareModules.DeploymentUnit." + strconv.Itoa(d.duSeq) + "."}
			d.dus[r.UUID] = du
			r.DeploymentUnitRef, r.CurrentState, r.Resolved = du.ref, "Installed", true
		case cwmp.OpUpdate:
			du, ok := d.dus[r.UUID]
			if !ok {
				r.CurrentState, r.Fault = "Failed", faultStruct(cwmp.FaultUnknownDU)
				break
			}
			if r.Version == "" {
				r.Version = du.version + ".1"
			}
			du.version = r.Version
			r.DeploymentUnitRef, r.CurrentState, r.Resolved = du.ref, "Installed", true
		case cwmp.OpUninstall:
			du, ok := d.dus[r.UUID]
			if !ok {
				r.CurrentState, r.Fault = "Failed", faultStruct(cwmp.FaultUnknownDU)
				break
			}
			delete(d.dus, r.UUID)
			r.DeploymentUnitRef, r.Version, r.CurrentState, r.Resolved = du.ref, du.version, "Uninstalled", true
		default:
			r.CurrentState, r.Fault = "Failed", faultStruct(cwmp.FaultCPEInvalidArguments)
		}
		ch.results = append(ch.results, r)
	}
	d.duResults = append(d.duResults, ch)
	d.addEvent(evDUChange, "")
	d.addEvent(evMChangeDUState, key)
}

func faultStruct(code cwmp.FaultCode) cwmp.FaultStruct {
	return cwmp.FaultStruct{FaultCode: code, FaultString: code.String()}
}

// failsTransfers reports whether device index i is among the share f of
// devices whose downloads fail (Config.FailTransfers).
func failsTransfers(i int, f float64) bool {
	if f <= 0 {
		return false
	}
	return math.Floor(float64(i+1)*f) > math.Floor(float64(i)*f)
}
