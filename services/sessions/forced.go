package sessions

import "strings"

// forcedInformNames are the parameters the data models have every Inform
// carry (forcedInform="true"), whether or not they changed: the union of
// InternetGatewayDevice:1 (TR-098), Device:1 (TR-106) and Device:2
// (TR-181), as listed in docs/protocol.md §5.3. A Device. name counts
// whichever of the two Device models the CPE implements. The WAN
// ExternalIPAddress parameters of TR-098, which sit under instance numbers,
// are matched by forcedWANAddress instead. TestForcedInformMatchesDataModels
// checks the list against the data-model tables tools/cpesim generates.
var forcedInformNames = map[string]struct{}{
	// InternetGatewayDevice:1.
	"InternetGatewayDevice.DeviceSummary":                         {},
	"InternetGatewayDevice.DeviceInfo.HardwareVersion":            {},
	"InternetGatewayDevice.DeviceInfo.SoftwareVersion":            {},
	"InternetGatewayDevice.DeviceInfo.SpecVersion":                {},
	"InternetGatewayDevice.DeviceInfo.ProvisioningCode":           {},
	"InternetGatewayDevice.ManagementServer.ParameterKey":         {},
	"InternetGatewayDevice.ManagementServer.ConnectionRequestURL": {},
	"InternetGatewayDevice.ManagementServer.AliasBasedAddressing": {},
	// Device:1 and Device:2.
	"Device.DeviceSummary":                         {}, // Device:1
	"Device.RootDataModelVersion":                  {}, // Device:2
	"Device.DeviceInfo.HardwareVersion":            {},
	"Device.DeviceInfo.SoftwareVersion":            {},
	"Device.DeviceInfo.ProvisioningCode":           {}, // Device:2
	"Device.ManagementServer.ParameterKey":         {},
	"Device.ManagementServer.ConnectionRequestURL": {},
	"Device.ManagementServer.AliasBasedAddressing": {}, // Device:2
	"Device.LAN.IPAddress":                         {}, // Device:1
}

// forcedInform reports whether name is a forced Inform parameter of one of
// the data models FleetACS knows (docs/protocol.md §5.3). It does not
// allocate.
func forcedInform(name string) bool {
	if _, ok := forcedInformNames[name]; ok {
		return true
	}
	return forcedWANAddress(name)
}

// forcedWANAddress reports whether name is
// InternetGatewayDevice.WANDevice.{i}.WANConnectionDevice.{i}.WANIPConnection.{i}.ExternalIPAddress
// or the same under WANPPPConnection.{i}, for any instance numbers (one or
// more digits each): TR-098's forced ExternalIPAddress parameters
// (docs/protocol.md §5.3). It walks the name segment by segment.
func forcedWANAddress(name string) bool {
	rest, ok := strings.CutPrefix(name, "InternetGatewayDevice.WANDevice.")
	if !ok {
		return false
	}
	if rest, ok = instance(rest); !ok {
		return false
	}
	if rest, ok = strings.CutPrefix(rest, "WANConnectionDevice."); !ok {
		return false
	}
	if rest, ok = instance(rest); !ok {
		return false
	}
	conn, ok := strings.CutPrefix(rest, "WANIPConnection.")
	if !ok {
		if conn, ok = strings.CutPrefix(rest, "WANPPPConnection."); !ok {
			return false
		}
	}
	if rest, ok = instance(conn); !ok {
		return false
	}
	return rest == "ExternalIPAddress"
}

// instance cuts an instance number (one or more ASCII digits) and the dot
// after it from the front of s.
func instance(s string) (rest string, ok bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i == len(s) || s[i] != '.' {
		return s, false
	}
	return s[i+1:], true
}
