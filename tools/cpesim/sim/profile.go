package sim

import (
	"fmt"
	"strings"

	"github.com/fleetacs/fleetacs/tools/cpesim/internal/datamodel"
)

// DataModel selects the root data model a simulated device implements.
type DataModel string

// The data models the simulator knows.
const (
	// TR181 is Device:2.17 ("Device."), from the BBF's
	// tr-181-2-17-0-cwmp-full.xml.
	TR181 DataModel = "tr181"
	// TR098 is InternetGatewayDevice:1.14 ("InternetGatewayDevice."), from
	// the BBF's tr-098-1-8-0-full.xml.
	TR098 DataModel = "tr098"
)

// source returns where the table of m comes from.
func (m DataModel) source() (datamodel.Source, error) {
	for _, s := range datamodel.Sources {
		if s.Model == string(m) {
			return s, nil
		}
	}
	return datamodel.Source{}, fmt.Errorf("unknown data model %q (want %s or %s)", string(m), TR181, TR098)
}

// The default subsets: what a typical home gateway of each model exposes
// to an ACS, a few hundred parameters. Values are the initial instance
// counts of tables (0 for single objects, and for tables that start empty
// but exist so the ACS can AddObject to them). Ancestors are included
// automatically. Parameters below an included object are all included;
// sub-objects are included only when listed.
var defaultProfiles = map[DataModel]map[string]int{
	TR181: {
		"Device.DeviceInfo.":                            0,
		"Device.DeviceInfo.MemoryStatus.":               0,
		"Device.DeviceInfo.ProcessStatus.":              0,
		"Device.DeviceInfo.NetworkProperties.":          0,
		"Device.DeviceInfo.VendorConfigFile.{i}.":       1,
		"Device.DeviceInfo.VendorLogFile.{i}.":          1,
		"Device.DeviceInfo.Processor.{i}.":              2,
		"Device.ManagementServer.":                      0,
		"Device.ManagementServer.ManageableDevice.{i}.": 0,
		"Device.ManagementServer.InformParameter.{i}.":  0,
		"Device.ManagementServer.HeartbeatPolicy.":      0,
		"Device.Time.":                                      0,
		"Device.Ethernet.Interface.{i}.":                    2,
		"Device.Ethernet.Interface.{i}.Stats.":              0,
		"Device.WiFi.Radio.{i}.":                            2,
		"Device.WiFi.SSID.{i}.":                             2,
		"Device.WiFi.SSID.{i}.Stats.":                       0,
		"Device.WiFi.AccessPoint.{i}.":                      2,
		"Device.WiFi.AccessPoint.{i}.Security.":             0,
		"Device.WiFi.AccessPoint.{i}.AssociatedDevice.{i}.": 0,
		"Device.IP.Interface.{i}.":                          2,
		"Device.IP.Interface.{i}.IPv4Address.{i}.":          1,
		"Device.Hosts.Host.{i}.":                            3,
		"Device.DHCPv4.Server.Pool.{i}.":                    1,
		"Device.NAT.PortMapping.{i}.":                       0,
		"Device.LANConfigSecurity.":                         0,
	},
	TR098: {
		"InternetGatewayDevice.DeviceInfo.":                                                                0,
		"InternetGatewayDevice.DeviceInfo.MemoryStatus.":                                                   0,
		"InternetGatewayDevice.DeviceInfo.ProcessStatus.":                                                  0,
		"InternetGatewayDevice.DeviceInfo.VendorConfigFile.{i}.":                                           1,
		"InternetGatewayDevice.ManagementServer.":                                                          0,
		"InternetGatewayDevice.ManagementServer.ManageableDevice.{i}.":                                     0,
		"InternetGatewayDevice.Time.":                                                                      0,
		"InternetGatewayDevice.LANConfigSecurity.":                                                         0,
		"InternetGatewayDevice.LANDevice.{i}.":                                                             1,
		"InternetGatewayDevice.LANDevice.{i}.LANHostConfigManagement.":                                     0,
		"InternetGatewayDevice.LANDevice.{i}.LANEthernetInterfaceConfig.{i}.":                              2,
		"InternetGatewayDevice.LANDevice.{i}.LANEthernetInterfaceConfig.{i}.Stats.":                        0,
		"InternetGatewayDevice.LANDevice.{i}.WLANConfiguration.{i}.":                                       2,
		"InternetGatewayDevice.LANDevice.{i}.Hosts.":                                                       0,
		"InternetGatewayDevice.LANDevice.{i}.Hosts.Host.{i}.":                                              3,
		"InternetGatewayDevice.WANDevice.{i}.":                                                             1,
		"InternetGatewayDevice.WANDevice.{i}.WANCommonInterfaceConfig.":                                    0,
		"InternetGatewayDevice.WANDevice.{i}.WANConnectionDevice.{i}.":                                     1,
		"InternetGatewayDevice.WANDevice.{i}.WANConnectionDevice.{i}.WANIPConnection.{i}.":                 1,
		"InternetGatewayDevice.WANDevice.{i}.WANConnectionDevice.{i}.WANIPConnection.{i}.PortMapping.{i}.": 0,
		"InternetGatewayDevice.WANDevice.{i}.WANConnectionDevice.{i}.WANPPPConnection.{i}.":                0,
	},
}

// diagnosticsProfiles are the diagnostic objects (TR-143) Config.Diagnostics
// adds to the default subsets, result tables empty: about 120 parameters
// in TR-181, 50 in TR-098, left out by default so that load figures keep
// their tree.
var diagnosticsProfiles = map[DataModel]map[string]int{
	TR181: {
		"Device.IP.Diagnostics.IPPing.":                          0,
		"Device.IP.Diagnostics.TraceRoute.RouteHops.{i}.":        0,
		"Device.IP.Diagnostics.DownloadDiagnostics.":             0,
		"Device.IP.Diagnostics.UploadDiagnostics.":               0,
		"Device.IP.Diagnostics.ServerSelectionDiagnostics.":      0,
		"Device.DNS.Diagnostics.NSLookupDiagnostics.Result.{i}.": 0,
	},
	TR098: {
		"InternetGatewayDevice.IPPingDiagnostics.":                   0,
		"InternetGatewayDevice.TraceRouteDiagnostics.RouteHops.{i}.": 0,
		"InternetGatewayDevice.DownloadDiagnostics.":                 0,
		"InternetGatewayDevice.UploadDiagnostics.":                   0,
	},
}

// loadProfile builds the profile of dm: the default subset, with tables
// overridden or objects added by extra (model path -> instance count).
func loadProfile(dm DataModel, extra map[string]int, diagnostics bool) (*profile, error) {
	m, err := loadModel(dm)
	if err != nil {
		return nil, fmt.Errorf("load profile: %w", err)
	}
	include := map[string]int{}
	for k, v := range defaultProfiles[dm] {
		include[k] = v
	}
	if diagnostics {
		for k, v := range diagnosticsProfiles[dm] {
			include[k] = v
		}
	}
	for k, v := range extra {
		if !strings.HasPrefix(k, m.Root) {
			return nil, fmt.Errorf("load profile: object %s is not in the %s model", k, m.Root)
		}
		if !strings.HasSuffix(k, ".") {
			k += "."
		}
		include[k] = v
	}
	p, err := newProfile(m, include)
	if err != nil {
		return nil, fmt.Errorf("load profile: %w", err)
	}
	return p, nil
}
