package sim

import (
	"encoding/base64"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// genKind says how a parameter's value is derived from its device (the
// identity, the credentials, the index). Such values are computed when read
// instead of stored, so ten thousand devices cost no more memory than their
// differences from the template.
type genKind uint8

const (
	genNone genKind = iota
	genManufacturer
	genOUI
	genProductClass
	genSerial
	genSoftwareVersion
	genMAC
	genWANIP
	genSSID
	genACSUsername
	genACSPassword
	genCRURL
	genCRUDPAddr
	genCRUsername
	genCRPassword
)

// templateSettings are the simulator-wide values a template carries.
type templateSettings struct {
	acsURL          string
	periodicSeconds uint32
	rootVersion     string // Device.RootDataModelVersion, e.g. "2.17"
	compression     string // ManagementServer.HTTPCompression
}

// preferredEnums are picked, in this order, when a string enumeration has
// no default: a simulated device is up and running.
var preferredEnums = []string{"Up", "Enabled", "Connected", "Active", "Synchronized", "Complete", "None", "Disabled"}

// initParam sets a parameter's template value, generator and dynamic kind
// from its name, its object and its syntax. The rules are heuristics that
// give an ACS (and an operator looking at it) plausible values of the right
// type.
func initParam(n *node, ts *templateSettings) {
	pd := n.param
	n.gen, n.dyn, n.rate, n.counted = genNone, dynNone, 0, nil
	objModel := n.parent.obj.Path
	short := lastSegment(objModel)
	name := pd.Name

	switch {
	case short == "DeviceInfo":
		switch name {
		case "Manufacturer":
			n.gen = genManufacturer
		case "ManufacturerOUI":
			n.gen = genOUI
		case "ProductClass", "ModelName":
			n.gen = genProductClass
		case "SerialNumber":
			n.gen = genSerial
		case "SoftwareVersion":
			n.gen = genSoftwareVersion
		case "HardwareVersion":
			n.value = "HW-1.0"
			return
		case "SpecVersion":
			n.value = "1.0"
			return
		case "Description":
			n.value = "FleetACS simulated CPE"
			return
		case "UpTime":
			n.dyn = dynUpTime
			return
		case "ProvisioningCode":
			n.value = ""
			return
		}
	case short == "ManagementServer":
		switch name {
		case "URL":
			n.value = ts.acsURL
			return
		case "Username":
			n.gen = genACSUsername
		case "Password":
			n.gen = genACSPassword
		case "ConnectionRequestURL":
			n.gen = genCRURL
		case "UDPConnectionRequestAddress":
			n.gen = genCRUDPAddr
		case "ConnectionRequestUsername", "STUNUsername":
			// The STUN user name is the connection-request user name, as
			// FleetACS's STUN server expects (docs/protocol.md §8.2).
			n.gen = genCRUsername
		case "ConnectionRequestPassword":
			n.gen = genCRPassword
		case "PeriodicInformEnable", "EnableCWMP":
			n.value = "true"
			return
		case "PeriodicInformInterval":
			n.value = strconv.FormatUint(uint64(ts.periodicSeconds), 10)
			return
		case "ParameterKey":
			n.value = ""
			return
		case "SupportedConnReqMethods":
			n.value = "HTTP"
			return
		case "AliasBasedAddressing", "InstanceWildcardsSupported", "UpgradesManaged":
			n.value = "false"
			return
		case "HTTPCompression":
			if ts.compression != "" {
				n.value = ts.compression
				return
			}
		}
	case short == "Time" && name == "CurrentLocalTime":
		n.dyn = dynLocalTime
		return
	}
	if n.gen != genNone {
		return
	}
	if n.parent.parent == nil && name == "RootDataModelVersion" {
		n.value = ts.rootVersion
		return
	}
	if n.parent.parent == nil && name == "DeviceSummary" {
		n.value = "InternetGatewayDevice:1.4[](Baseline:1, EthernetLAN:1, WiFiLAN:1, Time:1)"
		return
	}

	switch pd.Type {
	case "xsd:string":
		n.value = stringValue(n)
	case "xsd:boolean":
		n.value = "false"
		if pd.HasDefault && (pd.Default == "true" || pd.Default == "false") {
			n.value = pd.Default
		}
		if name == "Enable" || name == "Active" || strings.HasSuffix(name, "Enable") && !pd.HasDefault {
			n.value = "true"
		}
	case "xsd:unsignedInt", "xsd:unsignedLong", "xsd:int", "xsd:long":
		if name == "UpTime" || name == "Uptime" || name == "LastChange" {
			n.dyn = dynUpTime
			return
		}
		if isCounter(n) {
			n.dyn = dynCounter
			n.rate = counterRate(name, n.ordinal)
			return
		}
		n.value = numberValue(pd)
	case "xsd:dateTime":
		n.value = string(cwmp.UnknownTime)
		if pd.HasDefault && validDateTime(pd.Default) {
			n.value = pd.Default
		}
	default: // hexBinary, base64: empty is valid for both
		n.value = ""
	}
}

func lastSegment(modelPath string) string {
	s := strings.TrimSuffix(modelPath, ".")
	s = strings.TrimSuffix(s, ".{i}")
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func isCounter(n *node) bool {
	switch n.param.DataType {
	case "StatsCounter32", "StatsCounter64":
		return true
	}
	return strings.HasSuffix(n.parent.obj.Path, ".Stats.") &&
		(strings.HasPrefix(n.param.Type, "xsd:unsigned"))
}

// counterRate is how fast a counter grows per second of uptime: traffic
// counters grow, error counters mostly stay at zero.
func counterRate(name string, ordinal int) uint64 {
	switch {
	case strings.Contains(name, "Error"), strings.Contains(name, "Discard"), strings.Contains(name, "Unknown"):
		return 0
	case strings.Contains(name, "Bytes"):
		return 20000 + uint64(ordinal%7)*10000
	case strings.Contains(name, "Packets"):
		return 40 + uint64(ordinal%5)*20
	}
	return 1
}

func stringValue(n *node) string {
	pd := n.param
	name := pd.Name
	var v string
	switch {
	case pd.HasDefault && validForParam(pd, pd.Default) && !(name == "Status" && len(pd.Enum) > 0):
		// A Status default describes a new object; a running device's
		// objects are up (next case).
		v = pd.Default
	case len(pd.Enum) > 0 && !pd.List:
		v = pd.Enum[0]
		for _, want := range preferredEnums {
			if containsString(pd.Enum, want) {
				v = want
				break
			}
		}
	case !pd.List && (pd.DataType == "MACAddress" || strings.HasSuffix(name, "MACAddress") || name == "BSSID"):
		n.gen = genMAC
		return ""
	case name == "SSID":
		n.gen = genSSID
		return ""
	case name == "ExternalIPAddress" || (strings.Contains(name, "IPAddress") || pd.DataType == "IPv4Address" || pd.DataType == "IPAddress") && isWAN(n):
		n.gen = genWANIP
		return ""
	case name == "IPAddress" || name == "IPInterfaceIPAddress" || name == "MinAddress":
		v = "192.168.1." + strconv.Itoa(lanHost(n))
	case name == "MaxAddress":
		v = "192.168.1.250"
	case strings.HasSuffix(name, "SubnetMask"):
		v = "255.255.255.0"
	case name == "DNSServers" || name == "IPRouters" || name == "DefaultGateway":
		v = "192.168.1.1"
	case name == "Alias":
		v = "cpe-" + strconv.FormatUint(uint64(max(n.inst, 1)), 10)
	case name == "Name" && n.inst > 0:
		v = interfaceName(n.parent.obj.Path) + strconv.FormatUint(uint64(n.inst-1), 10)
	case name == "HostName" && n.inst > 0:
		v = "host-" + strconv.FormatUint(uint64(n.inst), 10)
	case name == "HostName":
		v = "gateway"
	case name == "Channel" || name == "PossibleChannels":
		v = ""
	}
	if pd.MaxLen > 0 && utf8.RuneCountInString(v) > pd.MaxLen {
		v = string([]rune(v)[:pd.MaxLen])
	}
	return v
}

// isWAN tells whether an address parameter belongs to the WAN side, where
// every device has its own address.
func isWAN(n *node) bool {
	p := n.parent.name
	if strings.Contains(p, "WAN") {
		return true
	}
	// TR-181: the second IP interface plays the WAN.
	return strings.HasPrefix(p, "Device.IP.Interface.") && !strings.HasPrefix(p, "Device.IP.Interface.1.")
}

func lanHost(n *node) int {
	if strings.Contains(n.parent.name, ".Hosts.") {
		return 100 + int(n.inst%100)
	}
	return 1
}

// numberHints are plausible values for common numeric parameters that
// have no default, used when the parameter's range allows them.
var numberHints = map[string]int64{
	"Total": 262144, "Free": 131072, "TotalPersistent": 65536, "FreePersistent": 32768,
	"CPUUsage": 7, "MaxBitRate": 1000, "CurrentBitRate": 1000, "MaxTCPWindowSize": 65535,
	"LeaseTime": 86400, "MaxMTUSize": 1500, "Channel": 6, "TransmitPower": 100,
	"CWMPRetryMinimumWaitInterval": 5, "CWMPRetryIntervalMultiplier": 2000,
}

// interfaceName is the prefix of a generated interface Name: eth0, wl1, ...
func interfaceName(objPath string) string {
	for _, m := range []struct{ part, name string }{
		{"Ethernet.", "eth"}, {"LANEthernet", "eth"}, {"WiFi.Radio.", "radio"}, {"WiFi.SSID.", "wl"},
		{"WiFi.AccessPoint.", "ap"}, {"WLANConfiguration.", "wl"}, {"IP.Interface.", "ip"},
	} {
		if strings.Contains(objPath, m.part) {
			return m.name
		}
	}
	v := strings.ToLower(lastSegment(objPath))
	if len(v) > 4 {
		v = v[:4]
	}
	return v
}

func numberValue(pd *ParamDef) string {
	var v int64
	if h, ok := numberHints[pd.Name]; ok && !pd.HasDefault {
		v = h
	}
	if pd.HasDefault {
		if d, err := strconv.ParseInt(pd.Default, 10, 64); err == nil {
			v = d
		}
	}
	if pd.HasMin && v < pd.Min {
		v = pd.Min
	}
	if pd.HasMax && v > pd.Max {
		v = pd.Max
	}
	if v < 0 && strings.HasPrefix(pd.Type, "xsd:unsigned") {
		v = 0
	}
	return strconv.FormatInt(v, 10)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkValue checks a value an ACS wants to set against the parameter's
// type and constraints and returns the value in canonical form (booleans
// as true/false), or the CPE fault code: 9007 for a value that is not of
// the type or outside its range, length or enumeration.
func checkValue(pd *ParamDef, v string) (string, cwmp.FaultCode) {
	switch pd.Type {
	case "xsd:boolean":
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true", "1":
			return "true", 0
		case "false", "0":
			return "false", 0
		}
		return "", cwmp.FaultInvalidParameterValue
	case "xsd:int", "xsd:long":
		bits := 32
		if pd.Type == "xsd:long" {
			bits = 64
		}
		x, err := strconv.ParseInt(strings.TrimSpace(v), 10, bits)
		if err != nil || (pd.HasMin && x < pd.Min) || (pd.HasMax && x > pd.Max) {
			return "", cwmp.FaultInvalidParameterValue
		}
		return strconv.FormatInt(x, 10), 0
	case "xsd:unsignedInt", "xsd:unsignedLong":
		bits := 32
		if pd.Type == "xsd:unsignedLong" {
			bits = 64
		}
		x, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(v), "+"), 10, bits)
		if err != nil || (pd.HasMin && pd.Min > 0 && x < uint64(pd.Min)) || (pd.HasMax && pd.Max >= 0 && x > uint64(pd.Max)) {
			return "", cwmp.FaultInvalidParameterValue
		}
		return strconv.FormatUint(x, 10), 0
	case "xsd:dateTime":
		if !validDateTime(v) {
			return "", cwmp.FaultInvalidParameterValue
		}
		return strings.TrimSpace(v), 0
	case "xsd:hexBinary":
		if len(v)%2 != 0 || strings.Trim(v, "0123456789abcdefABCDEF") != "" {
			return "", cwmp.FaultInvalidParameterValue
		}
		return v, 0
	case "xsd:base64":
		if _, err := base64.StdEncoding.DecodeString(v); err != nil {
			return "", cwmp.FaultInvalidParameterValue
		}
		return v, 0
	}
	if !validForParam(pd, v) {
		return "", cwmp.FaultInvalidParameterValue
	}
	return v, 0
}

// validForParam checks a string value's length and enumeration.
func validForParam(pd *ParamDef, v string) bool {
	if pd.MaxLen > 0 && utf8.RuneCountInString(v) > pd.MaxLen {
		return false
	}
	if len(pd.Enum) == 0 {
		return true
	}
	if !pd.List {
		return containsString(pd.Enum, v)
	}
	if v == "" {
		return true
	}
	for _, item := range strings.Split(v, ",") {
		if !containsString(pd.Enum, strings.TrimSpace(item)) {
			return false
		}
	}
	return true
}

func validDateTime(v string) bool {
	_, err := cwmp.DateTime(v).Time()
	return err == nil
}
