package sim

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// Device is one simulated CPE: its identity, credentials, parameter tree
// (shared template plus its own values), the events it has yet to deliver
// and the work the ACS gave it that outlives a session (transfers, DU
// changes, scheduled informs). Its exported methods are safe for concurrent
// use.
type Device struct {
	sim   *Simulator
	index int
	id    cwmp.DeviceID

	// Credentials for the ACS (HTTP authentication) and for connection
	// requests, expanded from the configured templates.
	acsUser, acsPass string
	crUser, crPass   string

	// auth is the HTTP authentication state towards the ACS, kept across
	// sessions so the device answers later sessions without a new
	// challenge. Only the session goroutine touches it.
	auth *authState
	// srcIP is the device's own source address (Config.SourceIPPerDevice),
	// nil when it dials from any; idle is then its own idle connection.
	// Session goroutine only.
	srcIP net.IP
	idle  *conn

	mu sync.Mutex // guards everything below
	// tree is the shared template until the ACS changes the structure;
	// ownTree tells whether the device has its own copy.
	tree    *tree
	ownTree bool
	// vals holds values that differ from the template and generators.
	vals map[string]string
	// attrs holds parameter attributes set by the ACS.
	attrs map[string]paramAttr
	// crURL is ManagementServer.ConnectionRequestURL, udpAddr
	// ManagementServer.UDPConnectionRequestAddress.
	crURL, udpAddr string
	// swVersion is DeviceInfo.SoftwareVersion, which a firmware download
	// changes.
	swVersion string
	bootTime  time.Time
	// events are the events not yet delivered (docs/protocol.md §6).
	events []cwmp.Event
	// retryCount is the RetryCount of the next Inform (docs/protocol.md §4.4).
	retryCount uint32
	// transfers are Download, Upload and ScheduleDownload requests not yet
	// acknowledged by a TransferCompleteResponse.
	transfers []*transfer
	// duResults are finished ChangeDUState requests awaiting their
	// DUStateChangeCompleteResponse; dus the installed deployment units.
	duResults []*duChange
	dus       map[string]*deploymentUnit
	duSeq     int
	// after holds what the ACS asked for during the running session that
	// happens once it ends (reboot, factory reset, starting transfers).
	after []func(now time.Time)

	// Scheduling state, guarded by the scheduler's mutex, not mu.
	sched deviceSched
}

// paramAttr is what SetParameterAttributes set on one parameter.
type paramAttr struct {
	notification int
	accessList   []string
}

// ID returns the device's DeviceId (OUI, ProductClass, SerialNumber).
func (d *Device) ID() cwmp.DeviceID { return d.id }

// Index returns the device's index in its simulator, 0 to Devices-1.
func (d *Device) Index() int { return d.index }

// ConnectionRequestURL returns the URL at which the device accepts
// connection requests, "" when it has no listener.
func (d *Device) ConnectionRequestURL() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.crURL
}

// ConnectionRequestCredentials returns the username and password the
// device expects on connection requests.
func (d *Device) ConnectionRequestCredentials() (username, password string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.paramValueLocked(d.tree.root.name+"ManagementServer.ConnectionRequestUsername", d.crUser),
		d.paramValueLocked(d.tree.root.name+"ManagementServer.ConnectionRequestPassword", d.crPass)
}

// paramValueLocked returns a parameter's current value, or def when the
// device's model has no such parameter.
func (d *Device) paramValueLocked(name, def string) string {
	n, ok := d.tree.lookup(name)
	if !ok || n.kind != kindParam {
		return def
	}
	return d.value(n, time.Now())
}

// Param returns a parameter's current value with its type, as
// GetParameterValues would report it (hidden parameters read as "").
func (d *Device) Param(name string) (cwmp.ParameterValue, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.tree.lookup(name)
	if !ok || n.kind != kindParam {
		return cwmp.ParameterValue{}, false
	}
	return d.paramValue(n, time.Now()), true
}

// NumParams returns the number of parameters in the device's tree.
func (d *Device) NumParams() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tree.params
}

// PendingEvents returns the events the device has yet to deliver.
func (d *Device) PendingEvents() []cwmp.Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]cwmp.Event(nil), d.events...)
}

// value returns the current value of parameter n: the device's own value
// if the ACS set one, else the generated or dynamic value, else the
// template's.
func (d *Device) value(n *node, now time.Time) string {
	if v, ok := d.vals[n.name]; ok {
		return v
	}
	switch n.dyn {
	case dynUpTime:
		return strconv.FormatInt(int64(d.uptime(now)/time.Second), 10)
	case dynLocalTime:
		return string(cwmp.NewDateTime(now))
	case dynCounter:
		v := uint64(d.uptime(now)/time.Second) * n.rate
		if n.param.Type == "xsd:unsignedInt" {
			v &= 0xFFFFFFFF
		}
		return strconv.FormatUint(v, 10)
	case dynNumEntries:
		return strconv.Itoa(len(n.counted.children))
	}
	if n.gen != genNone {
		return d.generated(n)
	}
	return n.value
}

func (d *Device) uptime(now time.Time) time.Duration {
	if up := now.Sub(d.bootTime); up > 0 {
		return up
	}
	return 0
}

// paramValue is a ParameterValueStruct for GetParameterValues and Inform.
// Hidden and secured parameters (passwords) read as empty strings.
func (d *Device) paramValue(n *node, now time.Time) cwmp.ParameterValue {
	v := ""
	if !n.param.Hidden && !n.param.Secured {
		v = d.value(n, now)
	}
	return cwmp.ParameterValue{Name: n.name, Value: v, Type: n.param.Type}
}

// generated derives a per-device value.
func (d *Device) generated(n *node) string {
	switch n.gen {
	case genManufacturer:
		return d.id.Manufacturer
	case genOUI:
		return d.id.OUI
	case genProductClass:
		return d.id.ProductClass
	case genSerial:
		return d.id.SerialNumber
	case genSoftwareVersion:
		return d.swVersion
	case genMAC:
		return d.mac(n.ordinal)
	case genWANIP:
		i := d.index + 1
		return fmt.Sprintf("100.%d.%d.%d", 64+(i>>16)&63, (i>>8)&255, i&255)
	case genSSID:
		sn := d.id.SerialNumber
		if len(sn) > 6 {
			sn = sn[len(sn)-6:]
		}
		return "fleet-" + sn + "-" + strconv.FormatUint(uint64(n.inst), 10)
	case genACSUsername:
		return d.acsUser
	case genACSPassword:
		return d.acsPass
	case genCRURL:
		return d.crURL
	case genCRUDPAddr:
		return d.udpAddr
	case genCRUsername:
		return d.crUser
	case genCRPassword:
		return d.crPass
	}
	return n.value
}

// mac derives a distinct unicast MAC from the OUI, the device index and the
// parameter's ordinal.
func (d *Device) mac(ordinal int) string {
	oui, _ := strconv.ParseUint(d.id.OUI, 16, 32)
	low := (uint64(d.index)<<5 | uint64(ordinal&31)) & 0xFFFFFF
	return fmt.Sprintf("%02X:%02X:%02X:%02X:%02X:%02X",
		byte(oui>>16)&0xFE, byte(oui>>8), byte(oui), byte(low>>16), byte(low>>8), byte(low))
}

// informParams returns the Forced Inform parameters (docs/protocol.md §5.3).
func (d *Device) informParams(now time.Time) []cwmp.ParameterValue {
	out := make([]cwmp.ParameterValue, 0, len(d.tree.forced)+1)
	for _, n := range d.tree.forced {
		out = append(out, d.paramValue(n, now))
	}
	// A CPE keeps active notification on its UDP address (docs/protocol.md
	// §8.2); the simulator reports it in every Inform instead.
	if d.udpAddr != "" {
		if n, ok := d.tree.lookup(d.tree.root.name + "ManagementServer.UDPConnectionRequestAddress"); ok && n.kind == kindParam {
			out = append(out, d.paramValue(n, now))
		}
	}
	return out
}

// addEvent queues an event for the next Inform. Single events (docs/protocol.md §6.1)
// are queued once; M events once per CommandKey.
func (d *Device) addEvent(code, key string) {
	for _, e := range d.events {
		if e.Code == code && (!strings.HasPrefix(code, "M ") || e.CommandKey == key) {
			return
		}
	}
	d.events = append(d.events, cwmp.Event{Code: code, CommandKey: key})
}

// removeEvent drops a delivered event.
func (d *Device) removeEvent(code, key string) {
	for i, e := range d.events {
		if e.Code == code && e.CommandKey == key {
			d.events = append(d.events[:i], d.events[i+1:]...)
			return
		}
	}
}

// Event codes the simulator sends (docs/protocol.md §6.1).
const (
	evBootstrap        = "0 BOOTSTRAP"
	evBoot             = "1 BOOT"
	evPeriodic         = "2 PERIODIC"
	evScheduled        = "3 SCHEDULED"
	evConnReq          = "6 CONNECTION REQUEST"
	evTransferComplete = "7 TRANSFER COMPLETE"
	evDUChange         = "11 DU STATE CHANGE COMPLETE"
	evMReboot          = "M Reboot"
	evMScheduleInform  = "M ScheduleInform"
	evMDownload        = "M Download"
	evMUpload          = "M Upload"
	evMScheduleDL      = "M ScheduleDownload"
	evMChangeDUState   = "M ChangeDUState"
)

// completedByInformResponse tells which delivered events the
// InformResponse completes; the others wait for the response to the CPE
// request that goes with them (docs/protocol.md §6.1).
func completedByInformResponse(code string) bool {
	switch code {
	case evTransferComplete, evMDownload, evMUpload, evMScheduleDL, evDUChange, evMChangeDUState:
		return false
	}
	return true
}

// informDelivered drops the events an InformResponse completes. A
// connection request event whose session failed is dropped too, elsewhere
// (docs/protocol.md §6.1: it is not retried).
func (d *Device) informDelivered(sent []cwmp.Event) {
	for _, e := range sent {
		if completedByInformResponse(e.Code) {
			d.removeEvent(e.Code, e.CommandKey)
		}
	}
}

// ownTreeLocked gives the device its own copy of the tree before a
// structural change.
func (d *Device) ownTreeLocked() {
	if !d.ownTree {
		d.tree = d.tree.clone()
		d.ownTree = true
	}
}

// setValueLocked stores a value the ACS set.
func (d *Device) setValueLocked(name, v string) {
	if d.vals == nil {
		d.vals = map[string]string{}
	}
	d.vals[name] = v
}

// factoryResetLocked returns the device to its factory state: template
// tree, no values or attributes set by the ACS, no pending work, and a
// BOOTSTRAP for the next contact (docs/protocol.md §5.3).
func (d *Device) factoryResetLocked(now time.Time) {
	d.tree = d.sim.template
	d.ownTree = false
	d.vals = nil
	d.attrs = nil
	d.transfers = nil
	d.duResults = nil
	d.dus = nil
	d.events = d.events[:0]
	d.addEvent(evBootstrap, "")
	d.addEvent(evBoot, "")
	d.bootTime = now
	d.auth = nil
}

// attr returns a parameter's attributes: what the ACS set, else the
// defaults of the data model (forced and default-on active notification).
func (d *Device) attrOf(n *node) paramAttr {
	if a, ok := d.attrs[n.name]; ok {
		return a
	}
	switch n.param.ActiveNotify {
	case "forceEnabled", "forceDefaultEnabled":
		return paramAttr{notification: 2}
	}
	return paramAttr{}
}
