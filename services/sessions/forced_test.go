package sessions

import (
	"bufio"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// forcedInform knows every forced Inform parameter of docs/protocol.md
// §5.3, the TR-098 WAN addresses under any instance numbers, and nothing
// else.
func TestForcedInform(t *testing.T) {
	forced := []string{
		// InternetGatewayDevice:1 (TR-098).
		"InternetGatewayDevice.DeviceSummary",
		"InternetGatewayDevice.DeviceInfo.HardwareVersion",
		"InternetGatewayDevice.DeviceInfo.SoftwareVersion",
		"InternetGatewayDevice.DeviceInfo.SpecVersion",
		"InternetGatewayDevice.DeviceInfo.ProvisioningCode",
		"InternetGatewayDevice.ManagementServer.ParameterKey",
		"InternetGatewayDevice.ManagementServer.ConnectionRequestURL",
		"InternetGatewayDevice.ManagementServer.AliasBasedAddressing",
		"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.ExternalIPAddress",
		"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANPPPConnection.1.ExternalIPAddress",
		"InternetGatewayDevice.WANDevice.12.WANConnectionDevice.305.WANIPConnection.4096.ExternalIPAddress",
		"InternetGatewayDevice.WANDevice.99.WANConnectionDevice.7.WANPPPConnection.10.ExternalIPAddress",
		// Device:1 (TR-106).
		"Device.DeviceSummary",
		"Device.DeviceInfo.HardwareVersion",
		"Device.DeviceInfo.SoftwareVersion",
		"Device.ManagementServer.ParameterKey",
		"Device.ManagementServer.ConnectionRequestURL",
		"Device.LAN.IPAddress",
		// Device:2 (TR-181).
		"Device.RootDataModelVersion",
		"Device.DeviceInfo.ProvisioningCode",
		"Device.ManagementServer.AliasBasedAddressing",
	}
	notForced := []string{
		"",
		"Device.",
		"Device.DeviceInfo.",
		"Device.DeviceInfo.SoftwareVersionX",
		"Device.DeviceInfo.UpTime",
		"Device.DeviceInfo.SpecVersion", // TR-098 only
		"device.DeviceInfo.SoftwareVersion",
		"Device.DeviceInfo.SoftwareVersion.",
		"InternetGatewayDevice.RootDataModelVersion", // Device:2 only
		"InternetGatewayDevice.LAN.IPAddress",        // Device:1 only
		"InternetGatewayDevice.ManagementServer.ParameterKeyX",
		"Device.X_0000C5_Temperature",
		"InternetGatewayDevice.X_ACME_DeviceInfo.SoftwareVersion",
		// WAN addresses: a wrong instance, object or parameter.
		"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.x.WANIPConnection.1.ExternalIPAddress",
		"InternetGatewayDevice.WANDevice..WANConnectionDevice.1.WANIPConnection.1.ExternalIPAddress",
		"InternetGatewayDevice.WANDevice.{i}.WANConnectionDevice.{i}.WANIPConnection.{i}.ExternalIPAddress",
		"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.-1.ExternalIPAddress",
		"InternetGatewayDevice.WANDevice.1a.WANConnectionDevice.1.WANIPConnection.1.ExternalIPAddress",
		"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1",
		"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.",
		"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.ExternalIPAddress",
		"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.ExternalIPAddressX",
		"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.ExternalIPAddress.",
		"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.SubnetMask",
		"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANEthernetConnection.1.ExternalIPAddress",
		"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.ExternalIPAddress",
		"InternetGatewayDevice.WANDevice.1.ExternalIPAddress",
		"InternetGatewayDevice.WANDevice.1",
		"InternetGatewayDevice.LANDevice.1.WANConnectionDevice.1.WANIPConnection.1.ExternalIPAddress",
		"Device.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.ExternalIPAddress",
		"Device.IP.Interface.1.IPv4Address.1.IPAddress",
	}
	for _, name := range forced {
		if !forcedInform(name) {
			t.Errorf("%q: not forced, want forced", name)
		}
	}
	for _, name := range notForced {
		if forcedInform(name) {
			t.Errorf("%q: forced, want not", name)
		}
	}
}

// forcedInform does not allocate, whatever the name.
func TestForcedInformAllocs(t *testing.T) {
	names := []string{
		"Device.DeviceInfo.SoftwareVersion",
		"InternetGatewayDevice.WANDevice.12.WANConnectionDevice.305.WANIPConnection.4096.ExternalIPAddress",
		"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.SubnetMask",
		"Device.WiFi.SSID.1.SSID",
	}
	n := 0
	if allocs := testing.AllocsPerRun(100, func() {
		for _, name := range names {
			if forcedInform(name) {
				n++
			}
		}
	}); allocs != 0 {
		t.Fatalf("%v allocations per run", allocs)
	}
	if n != 2*101 {
		t.Fatalf("%d forced over the runs, want %d", n, 2*101)
	}
}

// BenchmarkForcedInform checks the names of a typical value-change Inform:
// seven forced Device:2 parameters, a TR-098 WAN address and two others.
func BenchmarkForcedInform(b *testing.B) {
	names := []string{
		"Device.RootDataModelVersion", "Device.DeviceInfo.HardwareVersion", "Device.DeviceInfo.SoftwareVersion",
		"Device.DeviceInfo.ProvisioningCode", "Device.ManagementServer.ParameterKey",
		"Device.ManagementServer.ConnectionRequestURL", "Device.ManagementServer.AliasBasedAddressing",
		"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANPPPConnection.1.ExternalIPAddress",
		"Device.WiFi.SSID.1.SSID", "Device.DeviceInfo.UpTime",
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, name := range names {
			forcedInform(name)
		}
	}
}

// forcedInform agrees with the data models the repository carries (the
// tables tools/cpesim generates from the Broadband Forum's TR-098 and
// TR-181 XML, flag "f"): every parameter they mark forced is, under
// instance number 1, and no other of theirs is. Device:1's DeviceSummary
// and LAN.IPAddress are in neither table; TestForcedInform covers them.
func TestForcedInformMatchesDataModels(t *testing.T) {
	for _, file := range []string{"tr098.dm.gz", "tr181.dm.gz"} {
		t.Run(file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("..", "..", "tools", "cpesim", "sim", "datamodels", file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			zr, err := gzip.NewReader(f)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(zr)
			sc.Buffer(nil, 1<<20)
			object, params, forced := "", 0, 0
			for sc.Scan() {
				fields := strings.Split(sc.Text(), "\t")
				switch fields[0] {
				case "o":
					object = strings.ReplaceAll(fields[1], "{i}", "1")
				case "p":
					if len(fields) < 4 || object == "" {
						t.Fatalf("parameter record %q outside an object", sc.Text())
					}
					name := object + fields[1]
					want := strings.Contains(fields[3], "f")
					if got := forcedInform(name); got != want {
						t.Errorf("%s: forcedInform %v, the data model says %v", name, got, want)
					}
					params++
					if want {
						forced++
					}
				}
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			if params < 1000 || forced == 0 {
				t.Fatalf("read %d parameters, %d forced: not the table expected", params, forced)
			}
		})
	}
}
