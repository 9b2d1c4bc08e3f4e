package cwmp

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func decIDHeader(id string) Header { return Header{ID: id, HasID: true} }

// decodeCases pins what each testdata envelope decodes to, field by field.
// Every quirk the vendor files carry (docs/protocol.md §1-§3, §9, §13) shows up in a
// field here.
var decodeCases = []struct {
	file string
	want *Envelope
}{
	{"inform-huawei-hg8245.xml", &Envelope{
		Namespace: NS1_0, Version: V1_0, XMLDeclaration: true, Header: decIDHeader("1"),
		Body: &Inform{
			DeviceID:     DeviceID{Manufacturer: "Huawei Technologies Co., Ltd", OUI: "00E0FC", ProductClass: "HG8245H", SerialNumber: "48575443A1B2C3D4"},
			Events:       []Event{{Code: "0 BOOTSTRAP"}, {Code: "1 BOOT"}},
			MaxEnvelopes: 1, CurrentTime: "2024-03-05T10:22:31+08:00",
			ParameterList: []ParameterValue{
				{"InternetGatewayDevice.DeviceSummary", "InternetGatewayDevice:1.4[](Baseline:1, EthernetLAN:1, WiFiLAN:1, Time:1, IPPing:1)", "xsd:string"},
				{"InternetGatewayDevice.DeviceInfo.SpecVersion", "1.0", "xsd:string"},
				{"InternetGatewayDevice.DeviceInfo.HardwareVersion", "4D5.A", "xsd:string"},
				{"InternetGatewayDevice.DeviceInfo.SoftwareVersion", "V3R017C10S115", "xsd:string"},
				{"InternetGatewayDevice.DeviceInfo.ProvisioningCode", "", "xsd:string"},
				{"InternetGatewayDevice.ManagementServer.ConnectionRequestURL", "http://100.64.12.7:7547/3a7f0c2e9d", "xsd:string"},
				{"InternetGatewayDevice.ManagementServer.ParameterKey", "", "xsd:string"},
				{"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANPPPConnection.1.ExternalIPAddress", "100.64.12.7", "xsd:string"},
			},
		}}},
	{"inform-zyxel-p2601hn-nomorerequests.xml", &Envelope{
		Namespace: NS1_0, Version: V1_0, XMLDeclaration: true, Header: Header{ID: "1804289383", HasID: true, NoMoreRequests: true},
		Body: &Inform{
			DeviceID:     DeviceID{Manufacturer: "ZyXEL", OUI: "5067F0", ProductClass: "P-2601HN-F1", SerialNumber: "S110Y12345678"},
			Events:       []Event{{Code: "2 PERIODIC"}},
			MaxEnvelopes: 1, CurrentTime: "2023-11-14T03:12:09",
			ParameterList: []ParameterValue{
				{"InternetGatewayDevice.DeviceInfo.HardwareVersion", "V1.00", "xsd:string"},
				{"InternetGatewayDevice.DeviceInfo.SoftwareVersion", "V3.40(AAJZ.8)C0", "xsd:string"},
				{"InternetGatewayDevice.ManagementServer.ConnectionRequestURL", "http://10.20.30.40:7547/", "xsd:string"},
				{"InternetGatewayDevice.ManagementServer.PeriodicInformInterval", "86400", "xsd:unsignedInt"},
				{"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.ExternalIPAddress", "10.20.30.40", "xsd:string"},
			},
		}}},
	{"inform-mikrotik-chr-noheader.xml", &Envelope{
		Namespace: NS1_2, Version: V1_2,
		Body: &Inform{
			DeviceID:     DeviceID{Manufacturer: "MikroTik", OUI: "E48D8C", ProductClass: "CHR", SerialNumber: ""},
			Events:       []Event{{Code: "1 BOOT"}, {Code: "4 VALUE CHANGE"}},
			MaxEnvelopes: 1, CurrentTime: "2024-01-09T17:45:02Z", RetryCount: 2,
			ParameterList: []ParameterValue{
				{"Device.RootDataModelVersion", "2.12", "xsd:string"},
				{"Device.DeviceInfo.HardwareVersion", "x86_64", "xsd:string"},
				{"Device.DeviceInfo.SoftwareVersion", "7.13.2", "xsd:string"},
				{"Device.ManagementServer.ConnectionRequestURL", "http://192.0.2.14:7547/", "xsd:string"},
				{"Device.ManagementServer.AliasBasedAddressing", "false", "xsd:boolean"},
				{"Device.ManagementServer.PeriodicInformEnable", "true", "xsd:boolean"},
			},
		}}},
	{"inform-tplink-default-namespace.xml", &Envelope{
		Namespace: NS1_0, Version: V1_0, XMLDeclaration: true, Header: decIDHeader("tplink-0017"),
		Body: &Inform{
			DeviceID:     DeviceID{Manufacturer: "TP-Link", OUI: "50C7BF", ProductClass: "Archer C6", SerialNumber: "2218339000123"},
			Events:       []Event{{Code: "6 CONNECTION REQUEST"}},
			MaxEnvelopes: 1, CurrentTime: "2024-06-01T08:00:00Z", RetryCount: 1490,
			ParameterList: []ParameterValue{
				{"Device.DeviceInfo.SoftwareVersion", "1.1.4 Build 20230219 rel.69802(5553)", "xsd:string"},
				{"Device.ManagementServer.ConnectionRequestURL", "http://198.51.100.23:7547/tr069", "xsd:string"},
				{"Device.WiFi.SSID.1.SSID", "TP-Link_5GHz & <Guest>", "xsd:string"},
			},
		}}},
	{"inform-sagemcom-iso8859-1.xml", &Envelope{
		Namespace: NS1_1, Version: V1_1, XMLDeclaration: true, Header: decIDHeader("SAGEM_ID_7589"),
		Body: &Inform{
			DeviceID:     DeviceID{Manufacturer: "Sagemcom", OUI: "3C81D8", ProductClass: "F@st 5655v2", SerialNumber: "LK18231DP980123"},
			Events:       []Event{{Code: "4 VALUE CHANGE"}},
			MaxEnvelopes: 1, CurrentTime: "2024-02-29T23:59:59+01:00",
			ParameterList: []ParameterValue{
				{"InternetGatewayDevice.LANDevice.1.WLANConfiguration.1.SSID", "Salon Télé", "xsd:string"},
				{"InternetGatewayDevice.DeviceInfo.SoftwareVersion", "SG4K10002816t", "xsd:string"},
			},
		}}},
	{"inform-easycwmp-openwrt.xml", &Envelope{
		Namespace: NS1_2, Version: V1_2, XMLDeclaration: true, Header: decIDHeader("1"),
		Body: &Inform{
			DeviceID:     DeviceID{Manufacturer: "easycwmp", OUI: "FFFFFF", ProductClass: "easycwmp", SerialNumber: "FFFFFF123456"},
			Events:       []Event{{Code: "0 BOOTSTRAP"}},
			MaxEnvelopes: 1, CurrentTime: "2014-10-24T00:04:42", RetryCount: 3,
			ParameterList: []ParameterValue{
				{"Device.DeviceInfo.SoftwareVersion", "OpenWrt 22.03.5 r20134", "xsd:string"},
				{"Device.ManagementServer.ConnectionRequestURL", "http://192.168.1.1:7547/", "xsd:string"},
			},
		}}},
	{"inform-cwmp14-supportedversions.xml", &Envelope{
		// SupportedCWMPVersions exists only in the 1.4 schema: the message
		// is a 1.4 one; negotiation is left to the session layer.
		Namespace: NS1_2, Version: V1_4, XMLDeclaration: true,
		Header: Header{ID: "icwmp-5521", HasID: true, SessionTimeout: 60, SupportedCWMPVersions: "1.0,1.1,1.2,1.3,1.4"},
		Body: &Inform{
			DeviceID:     DeviceID{Manufacturer: "iopsys", OUI: "002194", ProductClass: "EX400", SerialNumber: "E40A2B3C4D5E"},
			Events:       []Event{{Code: "14 HEARTBEAT"}},
			MaxEnvelopes: 1, CurrentTime: "2025-01-15T12:30:45.123456Z",
			ParameterList: []ParameterValue{
				{"Device.RootDataModelVersion", "2.17", "xsd:string"},
				{"Device.ManagementServer.HeartbeatPolicy.ReportingInterval", "300", "xsd:unsignedInt"},
			},
		}}},
	{"inform-cwmp13-namespace.xml", &Envelope{
		Namespace: NS1_3, Version: V1_4, Header: Header{ID: "7", HasID: true, SessionTimeout: 45},
		Body: &Inform{
			DeviceID:     DeviceID{Manufacturer: "Technicolor", OUI: "A0B549", ProductClass: "DGA4130", SerialNumber: "CP1834TAB12"},
			Events:       []Event{{Code: "2 PERIODIC"}},
			MaxEnvelopes: 1, CurrentTime: "1970-01-01T00:03:12Z",
			ParameterList: []ParameterValue{{"Device.DeviceInfo.UpTime", "192", "xsd:unsignedInt"}},
		}}},
	{"inform-bom-comments-cdata.xml", &Envelope{
		Namespace: NS1_0, Version: V1_0, XMLDeclaration: true,
		Body: &Inform{
			DeviceID:     DeviceID{Manufacturer: "AVM & Co <Berlin>", OUI: "00040E", ProductClass: "FRITZ!Box 7590", SerialNumber: "987654321"},
			Events:       []Event{{Code: "1 BOOT"}},
			MaxEnvelopes: 1, CurrentTime: "2024-04-01T09:15:00Z",
			ParameterList: []ParameterValue{
				{"InternetGatewayDevice.DeviceInfo.Description", "  line one\nline two with <markup> & \"quotes\"  ", "xsd:string"},
				{"InternetGatewayDevice.DeviceInfo.ProvisioningCode", "\"ABC'\u00a9", "xsd:string"},
			},
		}}},
	{"inform-zero-padded-arraytype.xml", &Envelope{
		Namespace: NS1_0, Version: V1_0, Header: decIDHeader("0x1F"),
		Body: &Inform{
			DeviceID:     DeviceID{Manufacturer: "Generic", OUI: "001A2B", ProductClass: "ONT-1G", SerialNumber: "GNRC00000042"},
			Events:       []Event{{Code: "2 PERIODIC"}},
			MaxEnvelopes: 1, CurrentTime: "2024-05-05T05:05:05Z",
			ParameterList: []ParameterValue{
				{"InternetGatewayDevice.DeviceInfo.SoftwareVersion", "R1.2.3", "xsd:string"},
				{"InternetGatewayDevice.DeviceInfo.UpTime", "3600", "xsd:unsignedInt"},
				{"InternetGatewayDevice.ManagementServer.ConnectionRequestURL", "http://203.0.113.9:30005/", "xsd:string"},
			},
		}}},
	{"inform-cisco-spa122-untyped.xml", &Envelope{
		Namespace: NS1_0, Version: V1_0, Header: decIDHeader("2"),
		Body: &Inform{
			DeviceID:     DeviceID{Manufacturer: "Cisco", OUI: "E05FB9", ProductClass: "SPA122", SerialNumber: "CCQ16250ABC"},
			Events:       []Event{{Code: "1 BOOT"}},
			MaxEnvelopes: 1, CurrentTime: UnknownTime,
			ParameterList: []ParameterValue{
				// No xsi:type, or no Value at all: a string
				// (docs/protocol.md §2.3).
				{"InternetGatewayDevice.DeviceInfo.SoftwareVersion", "1.4.1 (SR5)", "xsd:string"},
				{"InternetGatewayDevice.DeviceInfo.ProvisioningCode", "", "xsd:string"},
				{"InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.Line.1.SIP.AuthUserName", " 4930123456 ", "xsd:string"},
				// An unprefixed QName with no default namespace does not
				// resolve: a string too.
				{"InternetGatewayDevice.ManagementServer.ConnectionRequestURL", "http://192.0.2.77:7547/", "xsd:string"},
			},
		}}},
	{"inform-mreboot-events.xml", &Envelope{
		Namespace: NS1_2, Version: V1_2, XMLDeclaration: true, Header: decIDHeader("5"),
		Body: &Inform{
			DeviceID: DeviceID{Manufacturer: "Nokia", OUI: "ACE2D3", ProductClass: "G-240W-F", SerialNumber: "ALCLB2C3D4E5"},
			Events: []Event{
				{Code: "1 BOOT"}, {Code: "M Reboot", CommandKey: "fleet-reboot-7f3a"},
				{Code: "7 TRANSFER COMPLETE"}, {Code: "M Download", CommandKey: "fw-3.2.1-wave2"},
			},
			MaxEnvelopes: 2, CurrentTime: "2024-07-07T07:07:07Z",
			ParameterList: []ParameterValue{{"Device.DeviceInfo.SoftwareVersion", "3.2.1", "xsd:string"}},
		}}},
	{"getparametervaluesresponse.xml", &Envelope{
		Namespace: NS1_2, Version: V1_2, XMLDeclaration: true, Header: decIDHeader("fleet-gpv-0001"),
		Body: &GetParameterValuesResponse{ParameterList: []ParameterValue{
			{"Device.WiFi.SSID.1.SSID", " Cafe Wi-Fi ", "xsd:string"},
			{"Device.WiFi.SSID.1.Enable", "true", "xsd:boolean"},
			{"Device.WiFi.Radio.1.TransmitPower", "-1", "xsd:int"},
			{"Device.DeviceInfo.VendorConfigFile.1.Content", "SGVsbG8=", "xsd:base64"},
			{"Device.Ethernet.Interface.1.Stats.BytesSent", "18446744073709551615", "xsd:unsignedLong"},
			{"Device.X_VENDOR_Blob", `{"a":1}`, "xsd:string"},
		}}}},
	{"fault-setparametervalues.xml", &Envelope{
		Namespace: NS1_0, Version: V1_0, Header: decIDHeader("fleet-spv-0003"),
		Body: &Fault{SOAPCode: "Client", SOAPString: "CWMP fault", Code: 9003, String: "Invalid arguments",
			SetParameterValuesFaults: []SetParameterValuesFault{
				{ParameterName: "Device.WiFi.SSID.1.SSID", FaultCode: 9007, FaultString: "Invalid parameter value"},
				{ParameterName: "Device.DeviceInfo.SerialNumber", FaultCode: 9008, FaultString: "Attempt to set a non-writable parameter"},
				{ParameterName: "Device.X_Unknown.Param", FaultCode: 9005},
			}}}},
	{"fault-download-9010.xml", &Envelope{
		Namespace: NS1_0, Version: V1_0, Header: decIDHeader("fleet-dl-0009"),
		Body: &Fault{SOAPCode: "Server", SOAPString: "CWMP fault", Code: 9010, String: "Download failure: HTTP 404"}}},
	{"transfercomplete.xml", &Envelope{
		Namespace: NS1_2, Version: V1_2, Header: decIDHeader("tc-1"),
		Body: &TransferComplete{CommandKey: "fw-3.2.1-wave2", StartTime: "2024-07-07T07:01:12Z", CompleteTime: "2024-07-07T07:04:55Z"}}},
	{"autonomoustransfercomplete.xml", &Envelope{
		Namespace: NS1_1, Version: V1_1, Header: decIDHeader("atc-1"),
		Body: &AutonomousTransferComplete{
			AnnounceURL: "http://updates.example.net/announce", TransferURL: "http://updates.example.net/fw/ax3000-5.8.0.bin",
			IsDownload: true, FileType: "1 Firmware Upgrade Image", FileSize: 31457280, TargetFileName: "ax3000-5.8.0.bin",
			FaultStruct: FaultStruct{FaultCode: 9017, FaultString: "Download incomplete"},
			StartTime:   "2024-08-01T02:00:00Z", CompleteTime: "2024-08-01T02:03:30Z",
		}}},
	{"dustatechangecomplete.xml", &Envelope{
		Namespace: NS1_2, Version: V1_2, Header: decIDHeader("du-1"),
		Body: &DUStateChangeComplete{CommandKey: "du-batch-12", Results: []OpResult{
			{UUID: "6f1e0c1a-0f2b-5d3e-9a4b-1c2d3e4f5a6b", DeploymentUnitRef: "Device.SoftwareModules.DeploymentUnit.3", Version: "1.0.4",
				CurrentState: "Installed", Resolved: true, ExecutionUnitRefList: "Device.SoftwareModules.ExecutionUnit.5",
				StartTime: "2024-09-10T10:00:00Z", CompleteTime: "2024-09-10T10:00:42Z"},
			{UUID: "0b9e2d71-7c44-5b0e-8f3a-aa11bb22cc33", CurrentState: "Failed",
				StartTime: "2024-09-10T10:00:42Z", CompleteTime: "2024-09-10T10:00:43Z",
				Fault: FaultStruct{FaultCode: 9023, FaultString: "Unknown Execution Environment"}},
		}}}},
	{"autonomousdustatechangecomplete.xml", &Envelope{
		Namespace: NS1_2, Version: V1_2, Header: decIDHeader("adu-1"),
		Body: &AutonomousDUStateChangeComplete{Results: []AutonOpResult{{
			OpResult: OpResult{UUID: "11111111-2222-5333-8444-555555555555", DeploymentUnitRef: "Device.SoftwareModules.DeploymentUnit.1",
				Version: "2.0", CurrentState: "Uninstalled", StartTime: "2024-09-11T11:00:00Z", CompleteTime: "2024-09-11T11:00:05Z"},
			OperationPerformed: "Uninstall",
		}}}}},
	{"requestdownload.xml", &Envelope{
		Namespace: NS1_2, Version: V1_2, Header: decIDHeader("rd-1"),
		Body: &RequestDownload{FileType: "3 Vendor Configuration File", FileTypeArg: []Arg{{"Version", "2024.09 "}, {"Profile", "business"}}}}},
	{"kicked.xml", &Envelope{
		Namespace: NS1_0, Version: V1_0, Header: decIDHeader("k-1"),
		Body: &Kicked{Command: "activate", Referer: "http://portal.example.net/start", Arg: " plan=gold&term=12 ", Next: "http://portal.example.net/done"}}},
	{"getrpcmethods-cpe.xml", &Envelope{Namespace: NS1_0, Version: V1_0, Header: decIDHeader("cpe-grm-1"), Body: &GetRPCMethods{}}},
	{"getrpcmethodsresponse.xml", &Envelope{
		Namespace: NS1_0, Version: V1_0, Header: decIDHeader("fleet-grm-1"),
		Body: &GetRPCMethodsResponse{MethodList: []string{"GetRPCMethods", "SetParameterValues", "GetParameterValues", "GetParameterNames", "Reboot", "X_HW_GetParamValuesEagerly"}}}},
	{"setparametervaluesresponse-easycwmp.xml", &Envelope{
		Namespace: NS1_2, Version: V1_2, XMLDeclaration: true, Header: decIDHeader("fleet-spv-0004"),
		Body: &SetParameterValuesResponse{Status: 1}}},
	{"getparameterattributesresponse.xml", &Envelope{
		Namespace: NS1_2, Version: V1_2, Header: decIDHeader("fleet-gpa-1"),
		Body: &GetParameterAttributesResponse{ParameterList: []ParameterAttribute{
			{Name: "Device.DeviceInfo.SoftwareVersion", Notification: 2},
			{Name: "Device.WiFi.SSID.1.SSID", Notification: 1, AccessList: []string{"Subscriber"}},
		}}}},
	{"addobjectresponse.xml", &Envelope{Namespace: NS1_2, Version: V1_2, Header: decIDHeader("fleet-ao-1"), Body: &AddObjectResponse{InstanceNumber: 17}}},
	{"deleteobjectresponse.xml", &Envelope{Namespace: NS1_2, Version: V1_2, Header: decIDHeader("fleet-do-1"), Body: &DeleteObjectResponse{Status: 1}}},
	{"downloadresponse.xml", &Envelope{Namespace: NS1_2, Version: V1_2, Header: decIDHeader("fleet-dl-1"),
		Body: &DownloadResponse{Status: 1, StartTime: UnknownTime, CompleteTime: UnknownTime}}},
	{"uploadresponse.xml", &Envelope{Namespace: NS1_2, Version: V1_2, Header: decIDHeader("fleet-ul-1"),
		Body: &UploadResponse{StartTime: "2024-10-01T12:00:00Z", CompleteTime: "2024-10-01T12:00:03Z"}}},
	{"getqueuedtransfersresponse.xml", &Envelope{Namespace: NS1_0, Version: V1_0, Header: decIDHeader("fleet-gqt-1"),
		Body: &GetQueuedTransfersResponse{TransferList: []QueuedTransfer{{"fw-a", 2}, {"cfg-b", 1}}}}},
	{"getallqueuedtransfersresponse.xml", &Envelope{Namespace: NS1_1, Version: V1_1, Header: decIDHeader("fleet-gaqt-1"),
		Body: &GetAllQueuedTransfersResponse{TransferList: []AllQueuedTransfer{
			{CommandKey: "fw-a", State: 3, IsDownload: true, FileType: "1 Firmware Upgrade Image", FileSize: 1048576, TargetFileName: "fw.bin"}}}}},
	{"getoptionsresponse.xml", &Envelope{Namespace: NS1_0, Version: V1_0, Header: decIDHeader("fleet-go-1"),
		Body: &GetOptionsResponse{OptionList: []Option{
			{OptionName: "IPTV", VoucherSN: "1", State: 1, Mode: 2, StartDate: "2024-01-01T00:00:00Z", ExpirationDate: "2025-01-01T00:00:00Z"},
			{OptionName: "VoIP", VoucherSN: "2", State: 3, StartDate: "2024-02-01T00:00:00Z", IsTransferable: true},
		}}}},
	{"setparameterattributesresponse.xml", &Envelope{Namespace: NS1_2, Version: V1_2, Header: decIDHeader("fleet-setparameterattributesresponse"), Body: &SetParameterAttributesResponse{}}},
	{"rebootresponse.xml", &Envelope{Namespace: NS1_2, Version: V1_2, Header: decIDHeader("fleet-rebootresponse"), Body: &RebootResponse{}}},
	{"factoryresetresponse.xml", &Envelope{Namespace: NS1_2, Version: V1_2, Header: decIDHeader("fleet-factoryresetresponse"), Body: &FactoryResetResponse{}}},
	{"scheduleinformresponse.xml", &Envelope{Namespace: NS1_2, Version: V1_2, Header: decIDHeader("fleet-scheduleinformresponse"), Body: &ScheduleInformResponse{}}},
	{"setvouchersresponse.xml", &Envelope{Namespace: NS1_0, Version: V1_0, Header: decIDHeader("fleet-setvouchersresponse"), Body: &SetVouchersResponse{}}},
	{"scheduledownloadresponse.xml", &Envelope{Namespace: NS1_2, Version: V1_2, Header: decIDHeader("fleet-scheduledownloadresponse"), Body: &ScheduleDownloadResponse{}}},
	{"canceltransferresponse.xml", &Envelope{Namespace: NS1_2, Version: V1_2, Header: decIDHeader("fleet-canceltransferresponse"), Body: &CancelTransferResponse{}}},
	{"changedustateresponse.xml", &Envelope{Namespace: NS1_2, Version: V1_2, Header: decIDHeader("fleet-changedustateresponse"), Body: &ChangeDUStateResponse{}}},
	{"changedustate-typed.xml", &Envelope{
		Namespace: NS1_2, Version: V1_2, Header: decIDHeader("fleet-cdu-1"),
		Body: &ChangeDUState{CommandKey: "du-batch-12", Operations: []DUOperation{
			{Kind: OpInstall, URL: "http://files.example.net/du/app-1.0.ipk", Username: "dl", Password: " s3cret ", ExecutionEnvRef: "Device.SoftwareModules.ExecEnv.1"},
			{Kind: OpUpdate, UUID: "6f1e0c1a-0f2b-5d3e-9a4b-1c2d3e4f5a6b", Version: "1.0.5", URL: "http://files.example.net/du/app-1.0.5.ipk"},
			{Kind: OpUninstall, UUID: "0b9e2d71-7c44-5b0e-8f3a-aa11bb22cc33", ExecutionEnvRef: "Device.SoftwareModules.ExecEnv.1"},
		}}}},
	{"changedustate-untyped.xml", &Envelope{
		// The inference rule of duOperation, one case per line.
		Namespace: NS1_2, Version: V1_2, Header: decIDHeader("fleet-cdu-2"),
		Body: &ChangeDUState{Operations: []DUOperation{
			{Kind: OpInstall, URL: "http://files.example.net/du/a.ipk"},
			{Kind: OpUpdate, URL: "http://files.example.net/du/b.ipk", UUID: "aaaaaaaa-bbbb-5ccc-8ddd-eeeeeeeeeeee"},
			{Kind: OpInstall, URL: "http://files.example.net/du/c.ipk", UUID: "aaaaaaaa-bbbb-5ccc-8ddd-eeeeeeeeeeee", ExecutionEnvRef: "Device.SoftwareModules.ExecEnv.2"},
			{Kind: OpUpdate, URL: "http://files.example.net/du/d.ipk", UUID: "aaaaaaaa-bbbb-5ccc-8ddd-eeeeeeeeeeee", Version: "2.0"},
			{Kind: OpUninstall, UUID: "aaaaaaaa-bbbb-5ccc-8ddd-eeeeeeeeeeee"},
			{Kind: OpUninstall, UUID: "ffffffff-bbbb-5ccc-8ddd-eeeeeeeeeeee", Version: "1"},
		}}}},
	{"setparametervalues-acs.xml", &Envelope{
		Namespace: NS1_2, Version: V1_2, Header: decIDHeader("fleet-spv-0003"),
		Body: &SetParameterValues{ParameterKey: "preset-43", ParameterList: []ParameterValue{
			{"Device.WiFi.SSID.1.SSID", "Home  ", "xsd:string"},
			{"Device.ManagementServer.PeriodicInformInterval", "300", "xsd:unsignedInt"},
		}}}},
	{"download-acs.xml", &Envelope{
		Namespace: NS1_0, Version: V1_0, Header: decIDHeader("fleet-dl-0009"),
		Body: &Download{CommandKey: "fw-3.2.1-wave2", FileType: "1 Firmware Upgrade Image", URL: "https://files.example.net/fw/g240wf-3.2.1.bin",
			Username: "cpe", Password: " pa ss "}}},
	{"informresponse-acs.xml", &Envelope{
		Namespace: NS1_2, Version: V1_4, XMLDeclaration: true, Header: Header{ID: "17", HasID: true, HoldRequests: true, UseCWMPVersion: "1.4"},
		Body: &InformResponse{MaxEnvelopes: 1}}},
	{"vendor-response.xml", &Envelope{
		Namespace: NS1_0, Version: V1_0, XMLDeclaration: true, Header: Header{ID: "fleet.7", HasID: true},
		Body: &VendorResponse{Name: "X_HW_GetParamValuesEagerlyResponse", Namespace: "urn:huawei-com:cwmp-ext",
			InnerXML: "\n  <Values><V xsi:type=\"xsd:string\">a &amp; b</V><![CDATA[<raw/>]]><!-- note --><E/></Values>\n"}}},
	{"unknown-vendor-method.xml", &Envelope{
		Namespace: NS1_2, Version: V1_2, Header: decIDHeader("x-1"),
		Body: &VendorRequest{Name: "X_ACME_Frobnicate", Namespace: NS1_2, Arguments: "<Level>11</Level>"}}},
}

func TestDecodeTestdata(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range decodeCases {
		seen[c.file] = true
		t.Run(c.file, func(t *testing.T) {
			got, err := Decode(readTestdata(t, c.file))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got.Namespace != c.want.Namespace || got.Version != c.want.Version || got.XMLDeclaration != c.want.XMLDeclaration {
				t.Errorf("namespace %q version %v declaration %v, want %q %v %v",
					got.Namespace, got.Version, got.XMLDeclaration, c.want.Namespace, c.want.Version, c.want.XMLDeclaration)
			}
			if got.Header != c.want.Header {
				t.Errorf("header\n got %+v\nwant %+v", got.Header, c.want.Header)
			}
			if !reflect.DeepEqual(got.Body, c.want.Body) {
				t.Errorf("body\n got %#v\nwant %#v", got.Body, c.want.Body)
			}
		})
	}
	for _, f := range testdataFiles(t) {
		name := f[len("testdata/"):]
		switch name {
		case "inform-40params.xml", "getparameternamesresponse-200.xml":
			continue // checked by their own tests
		}
		if !seen[name] {
			t.Errorf("testdata/%s has no expected value in decodeCases", name)
		}
	}
}

func TestDecodeInform40(t *testing.T) {
	body := readTestdata(t, "inform-40params.xml")
	if len(body) < 6300 || len(body) > 6700 {
		t.Fatalf("bench Inform is %d bytes, want 6300..6700", len(body))
	}
	env, err := Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	in, ok := env.Body.(*Inform)
	if !ok {
		t.Fatalf("body %T, want *Inform", env.Body)
	}
	if len(in.ParameterList) != 40 {
		t.Fatalf("%d parameters, want 40", len(in.ParameterList))
	}
	wantID := DeviceID{Manufacturer: "Acme Networks", OUI: "00D09E", ProductClass: "AX3000", SerialNumber: "ACME2310A0004711"}
	if in.DeviceID != wantID || len(in.Events) != 2 || in.Events[1].Code != "4 VALUE CHANGE" || env.Header.ID != "17" {
		t.Fatalf("unexpected Inform %+v header %+v", in, env.Header)
	}
	for i, want := range []ParameterValue{
		{"Device.RootDataModelVersion", "2.15", "xsd:string"},
		{"Device.ManagementServer.AliasBasedAddressing", "false", "xsd:boolean"},
		{"Device.Ethernet.Interface.1.Stats.BytesReceived", "512347890123", "xsd:unsignedLong"},
		{"Device.Time.CurrentLocalTime", "2025-03-14T09:26:53Z", "xsd:dateTime"},
		{"Device.X_ACME_Diag.LastRebootReason", "Power cycle & watchdog", "xsd:string"},
	} {
		found := false
		for _, p := range in.ParameterList {
			if p == want {
				found = true
			}
		}
		if !found {
			t.Errorf("parameter %d %+v missing", i, want)
		}
	}
	types := map[string]int{}
	for _, p := range in.ParameterList {
		if p.Name == "" || !strings.HasPrefix(p.Name, "Device.") {
			t.Errorf("bad name %q", p.Name)
		}
		types[p.Type]++
	}
	if types["xsd:string"] == 0 || types["xsd:unsignedInt"] == 0 || types["xsd:boolean"] == 0 || types["xsd:int"] == 0 {
		t.Errorf("types %v: every common type should appear", types)
	}
}

func TestDecodeGPNResponse200(t *testing.T) {
	env, err := Decode(readTestdata(t, "getparameternamesresponse-200.xml"))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := env.Body.(*GetParameterNamesResponse)
	if !ok {
		t.Fatalf("body %T", env.Body)
	}
	if len(r.ParameterList) != 200 {
		t.Fatalf("%d entries, want 200", len(r.ParameterList))
	}
	if r.ParameterList[0] != (ParameterInfo{"Device.", false}) {
		t.Errorf("first entry %+v", r.ParameterList[0])
	}
	writable := 0
	for _, p := range r.ParameterList {
		if p.Writable {
			writable++
			if !strings.HasSuffix(p.Name, ".X_ACME_Blocked") {
				t.Errorf("%s decoded writable", p.Name)
			}
		}
	}
	// 1/0 and true/false alternate in the file; each host has one writable leaf.
	if writable != 31 {
		t.Errorf("%d writable entries, want 31", writable)
	}
}

// With DecodeOptions.BodyOwned the decoded strings share the body's
// memory; without it they do not.
func TestDecodeBodyOwned(t *testing.T) {
	body := []byte(`<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-0"><soap:Body><cwmp:GetParameterNamesResponse><ParameterList><ParameterInfoStruct><Name>Device.X</Name><Writable>1</Writable></ParameterInfoStruct></ParameterList></cwmp:GetParameterNamesResponse></soap:Body></soap:Envelope>`)
	for _, owned := range []bool{false, true} {
		b := bytes.Clone(body)
		env, err := DecodeWith(b, DecodeOptions{BodyOwned: owned})
		if err != nil {
			t.Fatal(err)
		}
		name := env.Body.(*GetParameterNamesResponse).ParameterList[0].Name
		i := bytes.Index(b, []byte("Device.X"))
		b[i+7] = 'Y' // what a caller that broke the contract would do
		if got, want := name, map[bool]string{false: "Device.X", true: "Device.Y"}[owned]; got != want {
			t.Errorf("owned %t: name %q after the body changed, want %q", owned, got, want)
		}
	}
}
