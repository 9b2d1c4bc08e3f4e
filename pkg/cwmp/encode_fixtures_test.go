package cwmp

import "fmt"

// encFixture is one envelope the encoder must be able to write, with every
// field set to a value valid in its version, so that the same fixtures serve
// the XSD test (validity), the round-trip test (fidelity) and benchmarks.
type encFixture struct {
	name string
	env  *Envelope
	// schema is the CWMP version whose XSD validates the message; it is
	// the message's own version except for 1.2-family messages that carry
	// the 1.4 negotiation headers, declared only by cwmp-1-4.xsd.
	schema Version
}

// encTricky is string content that exercises escaping: markup characters,
// quotes, tab, newline, CR, non-ASCII.
const encTricky = "a<b>&c \"q\" 'a'\ttab\nline\r\nZürich ✓"

// encFixturesFor returns one encFixture per method that exists in v (Since), plus
// header and edge-case variants.
func encFixturesFor(v Version) []encFixture {
	var out []encFixture
	n := 0
	add := func(name string, msg Message) {
		n++
		out = append(out, encFixture{
			name: fmt.Sprintf("%s-v%d-%s", name, uint8(v), msg.Method()),
			env: &Envelope{
				Version: v,
				Header:  Header{ID: fmt.Sprintf("id-%d", n), HasID: true},
				Body:    msg,
			},
			schema: v,
		})
	}
	for _, msg := range encSampleMessages(v) {
		add("full", msg)
	}
	for _, msg := range encSparseMessages(v) {
		add("sparse", msg)
	}

	// Header variants.
	out = append(out,
		encFixture{name: fmt.Sprintf("noheader-v%d", uint8(v)), schema: v, env: &Envelope{
			Version: v, Body: &InformResponse{MaxEnvelopes: 1},
		}},
		encFixture{name: fmt.Sprintf("emptyid-v%d", uint8(v)), schema: v, env: &Envelope{
			Version: v, Header: Header{HasID: true}, Body: &GetRPCMethods{},
		}},
		encFixture{name: fmt.Sprintf("hold-decl-v%d", uint8(v)), schema: v, env: &Envelope{
			Version: v, XMLDeclaration: true,
			Header: Header{ID: "1234", HasID: true, HoldRequests: true},
			Body:   &InformResponse{MaxEnvelopes: 1},
		}},
	)
	if v >= V1_3 {
		out = append(out, encFixture{name: fmt.Sprintf("sessiontimeout-v%d", uint8(v)), schema: v, env: &Envelope{
			Version: v,
			Header:  Header{ID: "cpe-7", HasID: true, SessionTimeout: 60},
			Body:    encSampleInform(v),
		}})
	}
	if v >= V1_2 {
		// The 1.4 negotiation headers live in the cwmp-1-2 namespace and
		// are declared by cwmp-1-4.xsd; the negotiated version may be lower.
		use := v.String()
		out = append(out,
			encFixture{name: fmt.Sprintf("supported-v%d", uint8(v)), schema: V1_4, env: &Envelope{
				Version: v,
				Header: Header{ID: "cpe-8", HasID: true, SessionTimeout: encSessionTimeout(v),
					SupportedCWMPVersions: "1.0,1.1,1.2,1.3,1.4"},
				Body: encSampleInform(v),
			}},
			encFixture{name: fmt.Sprintf("usever-v%d", uint8(v)), schema: V1_4, env: &Envelope{
				Version: v,
				Header:  Header{ID: "cpe-8", HasID: true, HoldRequests: true, UseCWMPVersion: use},
				Body:    &InformResponse{MaxEnvelopes: 1},
			}},
		)
	}
	return out
}

func encSessionTimeout(v Version) uint32 {
	if v >= V1_3 {
		return 30
	}
	return 0
}

// encAllFixtures returns the fixtures of every version.
func encAllFixtures() []encFixture {
	var out []encFixture
	for v := V1_0; v <= MaxVersion; v++ {
		out = append(out, encFixturesFor(v)...)
	}
	return out
}

func encSampleInform(v Version) *Inform {
	events := []Event{
		{Code: "0 BOOTSTRAP"},
		{Code: "1 BOOT"},
		{Code: "M Reboot", CommandKey: "reboot-42"},
		{Code: "X 00D09E RESET BUTTON"},
	}
	if v >= V1_1 {
		events = append(events, Event{Code: "10 AUTONOMOUS TRANSFER COMPLETE"})
	}
	if v >= V1_2 {
		events = append(events, Event{Code: "M X_ACME_Thing", CommandKey: "k"}, Event{Code: "X ACME Odd Event"})
	}
	if v >= V1_4 {
		events = append(events, Event{Code: "13 WAKEUP"}, Event{Code: "14 HEARTBEAT"})
	}
	return &Inform{
		DeviceID: DeviceID{
			Manufacturer: "Example & Sons <Networks>",
			OUI:          "00D09E",
			ProductClass: "HG-8245\"Q\"",
			SerialNumber: "SN:0001",
		},
		Events:       events,
		MaxEnvelopes: 1,
		CurrentTime:  "2024-05-06T07:08:09Z",
		RetryCount:   2,
		ParameterList: []ParameterValue{
			{Name: "Device.DeviceInfo.SoftwareVersion", Value: "V1.0 <beta> & more", Type: "xsd:string"},
			{Name: "Device.DeviceInfo.UpTime", Value: "3600", Type: "xsd:unsignedInt"},
			{Name: "Device.ManagementServer.PeriodicInformEnable", Value: "true", Type: "xsd:boolean"},
			{Name: "Device.Time.CurrentLocalTime", Value: "2024-05-06T09:08:09+02:00", Type: "xsd:dateTime"},
			{Name: "Device.X_ACME.Offset", Value: "-5", Type: "xsd:int"},
			{Name: "Device.IP.Interface.1.Stats.BytesSent", Value: "18446744073709551615", Type: "xsd:unsignedLong"},
			{Name: "Device.X_ACME.Delta", Value: "-9223372036854775808", Type: "xsd:long"},
			{Name: "Device.X_ACME.Blob", Value: "AQIDBA==", Type: "xsd:base64Binary"},
			{Name: "Device.X_ACME.Hex", Value: "0aFF", Type: "xsd:hexBinary"},
			{Name: "Device.X_ACME.Empty", Value: "", Type: "xsd:string"},
			{Name: "Device.X_ACME.Tricky", Value: encTricky, Type: "xsd:string"},
			{Name: "Device.X_ACME.Spaces", Value: "  padded  ", Type: "xsd:string"},
		},
	}
}

// encSampleMessages returns every method of v, each with all fields set.
func encSampleMessages(v Version) []Message {
	uuid := "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	notif := 2
	if v >= V1_2 {
		notif = 6
	}
	all := []Message{
		&GetRPCMethods{},
		&GetRPCMethodsResponse{MethodList: []string{"Inform", "GetRPCMethods", "TransferComplete"}},
		&SetParameterValues{
			ParameterList: []ParameterValue{
				{Name: "Device.ManagementServer.PeriodicInformInterval", Value: "300", Type: "xsd:unsignedInt"},
				{Name: "Device.WiFi.SSID.1.SSID", Value: encTricky, Type: "xsd:string"},
				{Name: "Device.WiFi.Radio.1.Enable", Value: "false", Type: "xsd:boolean"},
			},
			ParameterKey: "pk-1&2",
		},
		&SetParameterValuesResponse{Status: 1},
		&GetParameterValues{ParameterNames: []string{"Device.DeviceInfo.", "Device.ManagementServer.URL"}},
		&GetParameterValuesResponse{ParameterList: []ParameterValue{
			{Name: "Device.ManagementServer.URL", Value: "http://acs.example.com:7547/?a=1&b=2", Type: "xsd:string"},
			{Name: "Device.DeviceInfo.UpTime", Value: "12", Type: "xsd:unsignedInt"},
		}},
		&GetParameterNames{ParameterPath: "Device.", NextLevel: true},
		&GetParameterNamesResponse{ParameterList: []ParameterInfo{
			{Name: "Device.DeviceInfo.", Writable: false},
			{Name: "Device.WiFi.SSID.1.SSID", Writable: true},
		}},
		&SetParameterAttributes{ParameterList: []SetParameterAttributesStruct{
			{Name: "Device.DeviceInfo.SoftwareVersion", NotificationChange: true, Notification: notif,
				AccessListChange: true, AccessList: []string{"Subscriber"}},
			{Name: "Device.WiFi.", NotificationChange: false, Notification: 0,
				AccessListChange: true, AccessList: []string{}},
		}},
		&SetParameterAttributesResponse{},
		&GetParameterAttributes{ParameterNames: []string{"Device.DeviceInfo.SoftwareVersion"}},
		&GetParameterAttributesResponse{ParameterList: []ParameterAttribute{
			{Name: "Device.DeviceInfo.SoftwareVersion", Notification: 2, AccessList: []string{"Subscriber"}},
			{Name: "Device.DeviceInfo.UpTime", Notification: 0, AccessList: []string{}},
		}},
		&AddObject{ObjectName: "Device.NAT.PortMapping.", ParameterKey: "pk-2"},
		&AddObjectResponse{InstanceNumber: 7, Status: 0},
		&DeleteObject{ObjectName: "Device.NAT.PortMapping.7.", ParameterKey: "pk-3"},
		&DeleteObjectResponse{Status: 1},
		&Reboot{CommandKey: "reboot-42"},
		&RebootResponse{},
		&Download{
			CommandKey: "dl-1", FileType: "1 Firmware Upgrade Image",
			URL: "https://files.example.com/fw.bin?x=1&y=2", Username: "u", Password: "p<&>",
			FileSize: 1234567, TargetFileName: "fw.bin", DelaySeconds: 5,
			SuccessURL: "http://ok.example.com/", FailureURL: "http://fail.example.com/",
		},
		&DownloadResponse{Status: 1, StartTime: UnknownTime, CompleteTime: UnknownTime},
		&Upload{
			CommandKey: "ul-1", FileType: "1 Vendor Configuration File",
			URL: "http://files.example.com/up", Username: "u", Password: "p", DelaySeconds: 0,
		},
		&UploadResponse{Status: 0, StartTime: "2024-01-02T03:04:05Z", CompleteTime: "2024-01-02T03:04:06.5+01:00"},
		&FactoryReset{},
		&FactoryResetResponse{},
		&GetQueuedTransfers{},
		&GetQueuedTransfersResponse{TransferList: []QueuedTransfer{
			{CommandKey: "dl-1", State: 1}, {CommandKey: "dl-2", State: 3},
		}},
		&ScheduleInform{DelaySeconds: 60, CommandKey: "si-1"},
		&ScheduleInformResponse{},
		&SetVouchers{VoucherList: []string{"AQIDBA==", "Zm9vYmFy"}},
		&SetVouchersResponse{},
		&GetOptions{OptionName: "Opt"},
		&GetOptionsResponse{OptionList: []Option{
			{OptionName: "Opt", VoucherSN: "12", State: 1, Mode: 2, StartDate: "2024-01-01T00:00:00Z",
				ExpirationDate: "2025-01-01T00:00:00Z", IsTransferable: true},
			{OptionName: "Opt2", VoucherSN: "13", State: 0, Mode: 0, StartDate: "2024-01-01T00:00:00Z"},
		}},
		encSampleInform(v),
		&InformResponse{MaxEnvelopes: 1},
		&TransferComplete{
			CommandKey:   "dl-1",
			FaultStruct:  FaultStruct{FaultCode: 9010, FaultString: "Download failure: <404>"},
			StartTime:    "2024-05-06T07:08:09Z",
			CompleteTime: "2024-05-06T07:09:09Z",
		},
		&TransferCompleteResponse{},
		&RequestDownload{FileType: "1 Firmware Upgrade Image", FileTypeArg: []Arg{
			{Name: "Version", Value: "2.0 & up"},
		}},
		&RequestDownloadResponse{},
		&Kicked{Command: "cmd", Referer: "http://ref/", Arg: "a&b", Next: "http://next/"},
		&KickedResponse{NextURL: "http://next/?a=1&b=2"},
		&Fault{SOAPCode: "Client", SOAPString: "CWMP fault", Code: 9003, String: "Invalid arguments",
			SetParameterValuesFaults: []SetParameterValuesFault{
				{ParameterName: "Device.A", FaultCode: 9007, FaultString: "Invalid parameter value"},
				{ParameterName: "Device.B<", FaultCode: 9008, FaultString: "Attempt to set a non-writable parameter"},
			}},
	}
	if v >= V1_1 {
		all = append(all,
			&GetAllQueuedTransfers{},
			&GetAllQueuedTransfersResponse{TransferList: []AllQueuedTransfer{
				{CommandKey: "dl-1", State: 2, IsDownload: true, FileType: "1 Firmware Upgrade Image",
					FileSize: 100, TargetFileName: "fw.bin"},
				{CommandKey: "ul-1", State: 1, IsDownload: false, FileType: "4 Vendor Log File"},
			}},
			&AutonomousTransferComplete{
				AnnounceURL: "http://announce/", TransferURL: "http://transfer/?a&b", IsDownload: true,
				FileType: "1 Firmware Upgrade Image", FileSize: 42, TargetFileName: "fw.bin",
				FaultStruct: FaultStruct{FaultCode: 0, FaultString: ""},
				StartTime:   "2024-05-06T07:08:09Z", CompleteTime: "2024-05-06T07:09:09Z",
			},
			&AutonomousTransferCompleteResponse{},
		)
	}
	if v >= V1_2 {
		result := OpResult{
			UUID: uuid, DeploymentUnitRef: "Device.SoftwareModules.DeploymentUnit.1",
			Version: "1.0", CurrentState: "Installed", Resolved: true,
			ExecutionUnitRefList: "Device.SoftwareModules.ExecutionUnit.1,Device.SoftwareModules.ExecutionUnit.2",
			StartTime:            "2024-05-06T07:08:09Z", CompleteTime: "2024-05-06T07:09:09Z",
			Fault: FaultStruct{FaultCode: 9028, FaultString: "Unknown Deployment Unit"},
		}
		all = append(all,
			&ScheduleDownload{
				CommandKey: "sd-1", FileType: "1 Firmware Upgrade Image", URL: "http://files/fw.bin",
				Username: "u", Password: "p", FileSize: 9, TargetFileName: "fw.bin",
				TimeWindowList: []TimeWindow{
					{WindowStart: 0, WindowEnd: 3600, WindowMode: "1 At Any Time", UserMessage: "", MaxRetries: -1},
					{WindowStart: 7200, WindowEnd: 9000, WindowMode: "4 Confirmation Needed", UserMessage: "Upgrade <now>?", MaxRetries: 3},
				},
			},
			&ScheduleDownloadResponse{},
			&CancelTransfer{CommandKey: "sd-1"},
			&CancelTransferResponse{},
			&ChangeDUState{CommandKey: "du-1", Operations: []DUOperation{
				{Kind: OpInstall, URL: "http://files/app.ipk", UUID: uuid, Username: "u", Password: "p", ExecutionEnvRef: "Device.SoftwareModules.ExecEnv.1"},
				{Kind: OpUpdate, UUID: uuid, Version: "2.0", URL: "http://files/app2.ipk", Username: "u", Password: "p"},
				{Kind: OpUninstall, UUID: uuid, Version: "2.0", ExecutionEnvRef: "Device.SoftwareModules.ExecEnv.1"},
			}},
			&ChangeDUStateResponse{},
			&DUStateChangeComplete{CommandKey: "du-1", Results: []OpResult{result, {
				UUID: uuid, CurrentState: "Failed", StartTime: UnknownTime, CompleteTime: UnknownTime,
			}}},
			&DUStateChangeCompleteResponse{},
			&AutonomousDUStateChangeComplete{Results: []AutonOpResult{{OpResult: result, OperationPerformed: "Install"}}},
			&AutonomousDUStateChangeCompleteResponse{},
		)
	}
	return all
}

// encSparseMessages returns messages with empty lists and optional fields left
// out, where the schema allows it.
func encSparseMessages(v Version) []Message {
	out := []Message{
		&Inform{DeviceID: DeviceID{OUI: "FFFFFF"}, Events: []Event{}, CurrentTime: UnknownTime, ParameterList: []ParameterValue{}},
		&GetParameterValuesResponse{ParameterList: []ParameterValue{}},
		&GetParameterNamesResponse{ParameterList: []ParameterInfo{}},
		&GetParameterAttributesResponse{ParameterList: []ParameterAttribute{}},
		&GetQueuedTransfersResponse{TransferList: []QueuedTransfer{}},
		&GetOptionsResponse{OptionList: []Option{}},
		&SetParameterValues{ParameterList: []ParameterValue{}, ParameterKey: ""},
		&RequestDownload{FileType: "X 00D09E Special", FileTypeArg: []Arg{}},
		&GetParameterNames{ParameterPath: "", NextLevel: false},
		&Fault{SOAPCode: "Server", SOAPString: "CWMP fault", Code: 8005, String: "Retry request"},
		&TransferComplete{CommandKey: "", FaultStruct: FaultStruct{FaultCode: 0}, StartTime: UnknownTime, CompleteTime: UnknownTime},
	}
	if v >= V1_1 {
		out = append(out, &GetAllQueuedTransfersResponse{TransferList: []AllQueuedTransfer{}})
	}
	if v >= V1_2 {
		out = append(out,
			&ChangeDUState{Operations: []DUOperation{{Kind: OpInstall, URL: "http://files/a.ipk"}, {Kind: OpUpdate}}},
			&ScheduleDownload{CommandKey: "", FileType: "X ACME Special File", URL: "http://f/",
				TimeWindowList: []TimeWindow{{WindowMode: "2 Immediately"}}},
		)
	}
	return out
}
