package sim

import (
	"context"
	"encoding/json"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// testConfig is a one-device boot storm against acs with protocol time
// compressed 1000-fold.
func testConfig(t testing.TB, acs *testACS) Config {
	return Config{
		URL:       acs.url(),
		Devices:   1,
		BootStorm: true,
		TimeScale: 0.001,
		Timeout:   5 * time.Second,
	}
}

// runSim runs a simulator to its natural end. The 10 s context is a safety
// net against a hang, which fails the test.
func runSim(t testing.TB, cfg Config) (*Simulator, Summary) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sum, err := s.Run(ctx)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("run did not end on its own: %+v", sum)
	}
	return s, sum
}

func msgs(m ...cwmp.Message) []cwmp.Message { return m }

func gpv(names ...string) *cwmp.GetParameterValues {
	return &cwmp.GetParameterValues{ParameterNames: names}
}

// TestAnswersACSRequests runs one session in which the ACS sends the
// common RPCs and checks every answer: values and their types, faults and
// their per-parameter details, object creation and deletion.
func TestAnswersACSRequests(t *testing.T) {
	acs := newTestACS(t, ConnCookie)
	acs.plan = func(inf *cwmp.Inform, n int) []cwmp.Message {
		if n != 1 {
			return nil
		}
		return msgs(
			&cwmp.GetRPCMethods{},
			&cwmp.GetParameterNames{ParameterPath: "Device.", NextLevel: true},
			&cwmp.GetParameterNames{ParameterPath: "Device.ManagementServer.", NextLevel: false},
			&cwmp.GetParameterNames{ParameterPath: "Device.DeviceInfo.SerialNumber", NextLevel: true},
			gpv("Device.DeviceInfo.", "Device.ManagementServer.PeriodicInformInterval"),
			&cwmp.SetParameterValues{ParameterKey: "key-1", ParameterList: []cwmp.ParameterValue{
				{Name: "Device.ManagementServer.PeriodicInformInterval", Value: "600", Type: "xsd:unsignedInt"},
				{Name: "Device.WiFi.SSID.1.SSID", Value: "home", Type: "xsd:string"},
			}},
			gpv("Device.ManagementServer.PeriodicInformInterval", "Device.WiFi.SSID.1.SSID", "Device.ManagementServer.ParameterKey"),
			&cwmp.SetParameterValues{ParameterKey: "key-2", ParameterList: []cwmp.ParameterValue{
				{Name: "Device.DeviceInfo.SerialNumber", Value: "X", Type: "xsd:string"},
				{Name: "Device.No.Such", Value: "1", Type: "xsd:string"},
				{Name: "Device.ManagementServer.PeriodicInformInterval", Value: "0", Type: "xsd:unsignedInt"},
				{Name: "Device.ManagementServer.PeriodicInformEnable", Value: "1", Type: "xsd:int"},
			}},
			gpv("Device.No.Such."),
			&cwmp.AddObject{ObjectName: "Device.NAT.PortMapping.", ParameterKey: "key-3"},
			&cwmp.AddObject{ObjectName: "Device.DeviceInfo."},
			gpv("Device.NAT.PortMapping.1.Enable", "Device.NAT.PortMappingNumberOfEntries"),
			&cwmp.DeleteObject{ObjectName: "Device.NAT.PortMapping.1.", ParameterKey: "key-4"},
			gpv("Device.NAT.PortMapping.1."),
			&cwmp.SetParameterAttributes{ParameterList: []cwmp.SetParameterAttributesStruct{
				{Name: "Device.ManagementServer.PeriodicInformInterval", NotificationChange: true, Notification: 1},
			}},
			&cwmp.GetParameterAttributes{ParameterNames: []string{"Device.ManagementServer.PeriodicInformInterval", "Device.DeviceInfo.SoftwareVersion"}},
			&cwmp.SetParameterAttributes{ParameterList: []cwmp.SetParameterAttributesStruct{
				{Name: "Device.DeviceInfo.SoftwareVersion", NotificationChange: true, Notification: 0},
			}},
			&cwmp.ScheduleInform{DelaySeconds: 0},
			&cwmp.FactoryReset{},
		)
	}
	s, sum := runSim(t, testConfig(t, acs))
	informs, done, _, _ := acs.snapshot()

	var got []string
	for _, d := range done {
		got = append(got, describe(d))
	}
	want := []string{
		"GetRPCMethods -> GetRPCMethodsResponse",
		"GetParameterNames -> GetParameterNamesResponse",
		"GetParameterNames -> GetParameterNamesResponse",
		"GetParameterNames -> Fault 9003",
		"GetParameterValues -> GetParameterValuesResponse",
		"SetParameterValues -> SetParameterValuesResponse",
		"GetParameterValues -> GetParameterValuesResponse",
		"SetParameterValues -> Fault 9003 Device.DeviceInfo.SerialNumber:9008 Device.No.Such:9005 " +
			"Device.ManagementServer.PeriodicInformInterval:9007 Device.ManagementServer.PeriodicInformEnable:9006",
		"GetParameterValues -> Fault 9005",
		"AddObject -> AddObjectResponse",
		"AddObject -> Fault 9005",
		"GetParameterValues -> GetParameterValuesResponse",
		"DeleteObject -> DeleteObjectResponse",
		"GetParameterValues -> Fault 9005",
		"SetParameterAttributes -> SetParameterAttributesResponse",
		"GetParameterAttributes -> GetParameterAttributesResponse",
		"SetParameterAttributes -> Fault 9009",
		"ScheduleInform -> Fault 9003",
		"FactoryReset -> FactoryResetResponse",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("answers:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	methods := done[0].Response.(*cwmp.GetRPCMethodsResponse).MethodList
	for _, m := range []string{"GetParameterValues", "Download", "ChangeDUState", "GetAllQueuedTransfers"} {
		if !containsString(methods, m) {
			t.Errorf("GetRPCMethods lacks %s: %v", m, methods)
		}
	}

	// GPN NextLevel=true on the root lists the immediate children only.
	top := done[1].Response.(*cwmp.GetParameterNamesResponse).ParameterList
	names := map[string]bool{}
	for _, p := range top {
		names[p.Name] = p.Writable
		if rest := strings.TrimPrefix(p.Name, "Device."); strings.Contains(strings.TrimSuffix(rest, "."), ".") {
			t.Errorf("NextLevel=true returned a grandchild %s", p.Name)
		}
	}
	for _, n := range []string{"Device.DeviceInfo.", "Device.ManagementServer.", "Device.RootDataModelVersion", "Device.WiFi."} {
		if _, ok := names[n]; !ok {
			t.Errorf("GPN Device. NextLevel=true lacks %s", n)
		}
	}
	// NextLevel=false: the object itself and its whole subtree, with the
	// data model's writable flags; tables are writable when AddObject is
	// allowed.
	sub := done[2].Response.(*cwmp.GetParameterNamesResponse).ParameterList
	writable := map[string]bool{}
	for _, p := range sub {
		writable[p.Name] = p.Writable
	}
	if sub[0].Name != "Device.ManagementServer." {
		t.Errorf("GPN NextLevel=false starts with %s, want the object itself", sub[0].Name)
	}
	for name, w := range map[string]bool{
		"Device.ManagementServer.URL":                    true,
		"Device.ManagementServer.ParameterKey":           false,
		"Device.ManagementServer.ConnectionRequestURL":   false,
		"Device.ManagementServer.InformParameter.":       true,
		"Device.ManagementServer.HeartbeatPolicy.Enable": true,
	} {
		if got, ok := writable[name]; !ok || got != w {
			t.Errorf("GPN %s writable=%v (present %v), want %v", name, got, ok, w)
		}
	}

	// GPV: partial path expands, values carry the model's types.
	vals := done[4].Response.(*cwmp.GetParameterValuesResponse).ParameterList
	byName := map[string]cwmp.ParameterValue{}
	for _, p := range vals {
		byName[p.Name] = p
	}
	dev := s.Devices()[0]
	for name, typ := range map[string]string{
		"Device.DeviceInfo.SerialNumber":                 "xsd:string",
		"Device.DeviceInfo.UpTime":                       "xsd:unsignedInt",
		"Device.DeviceInfo.MemoryStatus.Total":           "xsd:unsignedInt",
		"Device.DeviceInfo.ProcessStatus.CPUUsage":       "xsd:unsignedInt",
		"Device.ManagementServer.PeriodicInformInterval": "xsd:unsignedInt",
	} {
		p, ok := byName[name]
		if !ok || p.Type != typ {
			t.Errorf("GPV %s = %+v (present %v), want type %s", name, p, ok, typ)
		}
	}
	if got := byName["Device.DeviceInfo.SerialNumber"].Value; got != dev.ID().SerialNumber {
		t.Errorf("SerialNumber %q, want %q", got, dev.ID().SerialNumber)
	}
	if got := byName["Device.ManagementServer.PeriodicInformInterval"].Value; got != "300" {
		t.Errorf("PeriodicInformInterval %q, want the configured 300", got)
	}

	// SPV applied, and the ParameterKey recorded.
	after := done[6].Response.(*cwmp.GetParameterValuesResponse).ParameterList
	if after[0].Value != "600" || after[1].Value != "home" || after[2].Value != "key-1" {
		t.Errorf("after SPV: %+v", after)
	}
	if r := done[9].Response.(*cwmp.AddObjectResponse); r.InstanceNumber != 1 || r.Status != 0 {
		t.Errorf("AddObject: %+v", r)
	}
	inst := done[11].Response.(*cwmp.GetParameterValuesResponse).ParameterList
	if inst[0].Type != "xsd:boolean" || inst[1].Value != "1" {
		t.Errorf("new instance: %+v", inst)
	}
	attrs := done[15].Response.(*cwmp.GetParameterAttributesResponse).ParameterList
	if attrs[0].Notification != 1 || attrs[1].Notification != 2 {
		t.Errorf("attributes: %+v (want PeriodicInformInterval 1 as set, SoftwareVersion 2 forced by the model)", attrs)
	}

	// FactoryReset: the next contact is a BOOTSTRAP, with the factory
	// values back.
	if len(informs) != 2 || eventCodes(informs[1]) != "0 BOOTSTRAP,1 BOOT" {
		t.Fatalf("informs after FactoryReset: %d, last %q", len(informs), eventCodes(informs[len(informs)-1]))
	}
	if p, _ := informParam(informs[1], "Device.ManagementServer.ParameterKey"); p.Value != "" {
		t.Errorf("ParameterKey after factory reset %q, want empty", p.Value)
	}
	if sum.SessionsOK != 2 || sum.SessionsFailed != 0 || sum.Requests["GetParameterValues"] != 5 || sum.Faults["9005"] != 3 {
		t.Errorf("summary: ok %d failed %d requests %v faults %v", sum.SessionsOK, sum.SessionsFailed, sum.Requests, sum.Faults)
	}
}

// TestInformCarriesForcedParameters checks the first Inform of both data
// models: BOOTSTRAP and BOOT, the Forced Inform parameters with their
// types, and a device identity that matches the DeviceId.
func TestInformCarriesForcedParameters(t *testing.T) {
	for _, tc := range []struct {
		model  DataModel
		forced []string
	}{
		{TR181, []string{"Device.RootDataModelVersion", "Device.DeviceInfo.HardwareVersion", "Device.DeviceInfo.SoftwareVersion",
			"Device.DeviceInfo.ProvisioningCode", "Device.ManagementServer.ParameterKey",
			"Device.ManagementServer.ConnectionRequestURL", "Device.ManagementServer.AliasBasedAddressing"}},
		{TR098, []string{"InternetGatewayDevice.DeviceSummary", "InternetGatewayDevice.DeviceInfo.HardwareVersion",
			"InternetGatewayDevice.DeviceInfo.SoftwareVersion", "InternetGatewayDevice.DeviceInfo.SpecVersion",
			"InternetGatewayDevice.DeviceInfo.ProvisioningCode", "InternetGatewayDevice.ManagementServer.ParameterKey",
			"InternetGatewayDevice.ManagementServer.ConnectionRequestURL", "InternetGatewayDevice.ManagementServer.AliasBasedAddressing",
			"InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.ExternalIPAddress"}},
	} {
		t.Run(string(tc.model), func(t *testing.T) {
			acs := newTestACS(t, ConnCookie)
			cfg := testConfig(t, acs)
			cfg.Model = tc.model
			cfg.Devices = 3
			cfg.Seed = 7
			s, _ := runSim(t, cfg)
			informs, _, _, _ := acs.snapshot()
			if len(informs) != 3 {
				t.Fatalf("%d informs, want 3", len(informs))
			}
			serials := map[string]bool{}
			for _, inf := range informs {
				if eventCodes(inf) != "0 BOOTSTRAP,1 BOOT" {
					t.Errorf("events %q", eventCodes(inf))
				}
				var names []string
				for _, p := range inf.ParameterList {
					names = append(names, p.Name)
				}
				if !reflect.DeepEqual(names, tc.forced) {
					t.Errorf("forced parameters %v, want %v", names, tc.forced)
				}
				if p, _ := informParam(inf, tc.forced[len(tc.forced)-2]); p.Type != "xsd:string" && p.Type != "xsd:boolean" {
					t.Errorf("parameter type %+v", p)
				}
				if !validOUI(inf.DeviceID.OUI) || inf.DeviceID.ProductClass == "" || !strings.HasPrefix(inf.DeviceID.SerialNumber, "SIM") {
					t.Errorf("identity %+v", inf.DeviceID)
				}
				serials[inf.DeviceID.SerialNumber] = true
			}
			if len(serials) != 3 {
				t.Errorf("serial numbers not distinct: %v", serials)
			}
			if n := s.Devices()[0].NumParams(); n < 300 || n > 600 {
				t.Errorf("%d parameters per device, want 300-600", n)
			}
			if tc.model == TR098 {
				p, _ := informParam(informs[0], tc.forced[len(tc.forced)-1])
				if net.ParseIP(p.Value) == nil {
					t.Errorf("ExternalIPAddress %q is not an address", p.Value)
				}
			}
		})
	}
}

// TestRebootThenBoot: after a Reboot the next Inform carries 1 BOOT and
// M Reboot with the CommandKey, and the uptime restarted.
func TestRebootThenBoot(t *testing.T) {
	acs := newTestACS(t, ConnCookie)
	acs.plan = func(inf *cwmp.Inform, n int) []cwmp.Message {
		if n == 1 {
			return msgs(&cwmp.Reboot{CommandKey: "reboot-7"})
		}
		return nil
	}
	_, sum := runSim(t, testConfig(t, acs))
	informs, _, _, _ := acs.snapshot()
	var got []string
	for _, inf := range informs {
		got = append(got, eventCodes(inf))
	}
	want := []string{"0 BOOTSTRAP,1 BOOT", "1 BOOT,M Reboot/reboot-7"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("informs %q, want %q", got, want)
	}
	if sum.SessionsOK != 2 || sum.Events["M Reboot"] != 1 || sum.Events["1 BOOT"] != 2 {
		t.Errorf("summary: %+v", sum)
	}
}

// TestDownloadThenTransferComplete: a firmware Download is answered with
// status 1; the device fetches the file after the session, reboots, and
// reports in a new session with 1 BOOT, 7 TRANSFER COMPLETE, M Download
// and a TransferComplete, and the new SoftwareVersion.
func TestDownloadThenTransferComplete(t *testing.T) {
	acs := newTestACS(t, ConnCookie)
	acs.files["/files/fw-2.0.1.bin"] = []byte("firmware image bytes")
	acs.plan = func(inf *cwmp.Inform, n int) []cwmp.Message {
		if n == 1 {
			return msgs(
				&cwmp.Download{CommandKey: "dl-1", FileType: "1 Firmware Upgrade Image", URL: acs.srv.URL + "/files/fw-2.0.1.bin",
					FileSize: 20, TargetFileName: "fw-2.0.1.bin"},
				&cwmp.Download{CommandKey: "dl-2", FileType: "3 Vendor Configuration File", URL: "tftp://x/cfg"},
				&cwmp.GetQueuedTransfers{},
			)
		}
		return nil
	}
	cfg := testConfig(t, acs)
	cfg.FetchTransfers = true
	_, sum := runSim(t, cfg)
	informs, done, cpe, _ := acs.snapshot()
	var got []string
	for _, d := range done {
		got = append(got, describe(d))
	}
	if want := []string{"Download -> DownloadResponse", "Download -> Fault 9013", "GetQueuedTransfers -> GetQueuedTransfersResponse"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("answers %q, want %q", got, want)
	}
	if r := done[0].Response.(*cwmp.DownloadResponse); r.Status != 1 || r.StartTime != cwmp.UnknownTime {
		t.Errorf("DownloadResponse %+v, want status 1 and Unknown Times", r)
	}
	if q := done[2].Response.(*cwmp.GetQueuedTransfersResponse).TransferList; len(q) != 1 || q[0].CommandKey != "dl-1" || q[0].State != 1 {
		t.Errorf("queued transfers %+v", q)
	}
	if len(informs) != 2 || eventCodes(informs[1]) != "1 BOOT,7 TRANSFER COMPLETE,M Download/dl-1" {
		t.Fatalf("second inform events %q", eventCodes(informs[len(informs)-1]))
	}
	if p, _ := informParam(informs[1], "Device.DeviceInfo.SoftwareVersion"); p.Value != "fw-2.0.1" {
		t.Errorf("SoftwareVersion after upgrade %q", p.Value)
	}
	if len(cpe) != 1 {
		t.Fatalf("CPE requests %v, want one TransferComplete", cpe)
	}
	tc, ok := cpe[0].(*cwmp.TransferComplete)
	if !ok || tc.CommandKey != "dl-1" || tc.FaultStruct.FaultCode != 0 || tc.StartTime == cwmp.UnknownTime {
		t.Errorf("TransferComplete %+v", cpe[0])
	}
	if len(acs.gets) != 1 {
		t.Errorf("file server GETs %v, want 1", acs.gets)
	}
	if sum.TransfersCompleted != 1 || sum.SessionsOK != 2 {
		t.Errorf("summary: transfers %d ok %d", sum.TransfersCompleted, sum.SessionsOK)
	}
}

// TestHoldRequests: with HoldRequests the device sends no request of its
// own until the ACS lifts the hold: its TransferComplete arrives only
// after the ACS's requests, then it sends a new empty POST.
func TestHoldRequests(t *testing.T) {
	acs := newTestACS(t, ConnCookie)
	acs.plan = func(inf *cwmp.Inform, n int) []cwmp.Message {
		switch n {
		case 1:
			return msgs(&cwmp.Upload{CommandKey: "up-1", FileType: "1 Vendor Configuration File", URL: acs.srv.URL + "/files/cfg"})
		case 2:
			return msgs(gpv("Device.DeviceInfo.UpTime"))
		}
		return nil
	}
	acs.hold = true
	cfg := testConfig(t, acs)
	cfg.FetchTransfers = true
	runSim(t, cfg)
	acs.mu.Lock()
	order := strings.Join(acs.order, " ")
	put := string(acs.puts["/files/cfg"])
	acs.mu.Unlock()
	want := "inform done:Upload inform done:GetParameterValues cpe:TransferComplete"
	if order != want {
		t.Errorf("order %q, want %q", order, want)
	}
	if !strings.Contains(put, "up-1") {
		t.Errorf("uploaded %q", put)
	}
}

// TestConnModes runs sessions in each connection mode against an ACS that
// tells sessions apart the same way, and checks how the POSTs traveled.
func TestConnModes(t *testing.T) {
	for _, mode := range []ConnMode{ConnCookie, ConnKeepAlive, ConnNewConn} {
		t.Run(string(mode), func(t *testing.T) {
			acs := newTestACS(t, mode)
			acs.plan = func(inf *cwmp.Inform, n int) []cwmp.Message {
				return msgs(gpv("Device.DeviceInfo.SoftwareVersion"), gpv("Device.DeviceInfo.UpTime"))
			}
			cfg := testConfig(t, acs)
			cfg.BootStorm = false
			cfg.Devices = 4
			cfg.Sessions = 12
			cfg.Concurrency = 4
			cfg.ConnMode = mode
			cfg.SourceIPPerDevice = mode == ConnNewConn
			_, sum := runSim(t, cfg)
			_, done, _, posts := acs.snapshot()
			if sum.SessionsOK != 12 || len(done) != 24 {
				t.Fatalf("sessions ok %d, requests done %d; summary %+v", sum.SessionsOK, len(done), sum)
			}
			for _, d := range done {
				if d.Fault != nil {
					t.Errorf("fault %v", d.Fault)
				}
			}
			// 4 POSTs per session: Inform, empty, two answers.
			if len(posts) != 48 {
				t.Fatalf("%d POSTs, want 48", len(posts))
			}
			cookies := 0
			for _, p := range posts {
				if p.cookie != "" {
					cookies++
				}
			}
			conns := acs.conns.Load()
			switch mode {
			case ConnCookie:
				if cookies != 36 {
					t.Errorf("%d POSTs with the session cookie, want 36 (all but the Informs)", cookies)
				}
				if conns > 4 {
					t.Errorf("%d connections for 4 workers, want reuse", conns)
				}
			case ConnKeepAlive:
				if cookies != 0 {
					t.Errorf("cookie-less mode sent %d cookies", cookies)
				}
				// Each session's 4 POSTs came on one connection (which may
				// carry several sessions, one after the other).
				perConn := map[string]int{}
				for _, p := range posts {
					perConn[p.remote]++
				}
				for remote, n := range perConn {
					if n%4 != 0 {
						t.Errorf("connection %s carried %d POSTs, not whole sessions", remote, n)
					}
				}
				acs.mu.Lock()
				if len(acs.anomalies) > 0 {
					t.Errorf("ACS anomalies: %+v", acs.anomalies[0])
				}
				acs.mu.Unlock()
			case ConnNewConn:
				if cookies != 0 {
					t.Errorf("cookie-less mode sent %d cookies", cookies)
				}
				if conns != 48 {
					t.Errorf("%d connections for 48 POSTs, want one each", conns)
				}
				ips := map[string]bool{}
				for _, p := range posts {
					ip, _, _ := net.SplitHostPort(p.remote)
					ips[ip] = true
				}
				if len(ips) != 4 {
					t.Errorf("client addresses %v, want one per device", ips)
				}
			}
		})
	}
}

// TestDigestAuth: the device answers the ACS's Digest challenge once and
// reuses it in later sessions; wrong credentials fail the session.
func TestDigestAuth(t *testing.T) {
	acs := newTestACS(t, ConnCookie)
	acs.user, acs.pass = "cpe-user", "s3cret"
	cfg := testConfig(t, acs)
	cfg.BootStorm = false
	cfg.Sessions = 3
	cfg.Username, cfg.Password = "cpe-user", "s3cret"
	_, sum := runSim(t, cfg)
	if sum.SessionsOK != 3 || sum.AuthChallenges != 1 || acs.challenges.Load() != 1 {
		t.Fatalf("ok %d, challenges answered %d, sent %d; want 3, 1, 1", sum.SessionsOK, sum.AuthChallenges, acs.challenges.Load())
	}
	_, _, _, posts := acs.snapshot()
	for i, p := range posts[1:] {
		if !p.authz {
			t.Errorf("POST %d after the challenge carried no Authorization", i+1)
		}
	}

	basic := newTestACS(t, ConnKeepAlive)
	basic.user, basic.pass, basic.basic = "cpe-user", "s3cret", true
	cfg = testConfig(t, basic)
	cfg.Username, cfg.Password = "cpe-user", "s3cret"
	cfg.ConnMode = ConnKeepAlive
	_, sum = runSim(t, cfg)
	if sum.SessionsOK != 1 || sum.AuthChallenges != 1 {
		t.Errorf("Basic: ok %d challenges %d errors %v", sum.SessionsOK, sum.AuthChallenges, sum.Errors)
	}

	bad := newTestACS(t, ConnCookie)
	bad.user, bad.pass = "cpe-user", "other"
	cfg = testConfig(t, bad)
	cfg.BootStorm = false
	cfg.Sessions = 1
	cfg.Username, cfg.Password = "cpe-user", "s3cret"
	_, sum = runSim(t, cfg)
	if sum.SessionsFailed != 1 || sum.Errors["auth"] != 1 || sum.HTTPStatus[401] != 2 {
		t.Errorf("wrong password: failed %d errors %v statuses %v", sum.SessionsFailed, sum.Errors, sum.HTTPStatus)
	}
}

// TestBackOffOn503: Informs refused with 503 are retried after the
// Retry-After (scaled), with RetryCount counting the failed attempts.
func TestBackOffOn503(t *testing.T) {
	acs := newTestACS(t, ConnCookie)
	acs.unavailable, acs.retryAfter = 2, "7"
	_, sum := runSim(t, testConfig(t, acs))
	informs, _, _, _ := acs.snapshot()
	if len(informs) != 3 {
		t.Fatalf("%d Informs, want 3", len(informs))
	}
	for i, inf := range informs {
		if inf.RetryCount != uint32(i) || eventCodes(inf) != "0 BOOTSTRAP,1 BOOT" {
			t.Errorf("attempt %d: RetryCount %d events %q", i, inf.RetryCount, eventCodes(inf))
		}
	}
	if sum.HTTP503 != 2 || sum.SessionsShed != 2 || sum.SessionsOK != 1 || sum.SessionsFailed != 0 ||
		sum.Retries != 2 || sum.RetryAfterWait != 14*time.Second || sum.SessionsStarted != 3 {
		t.Errorf("summary: %+v", sum)
	}
}

// TestLoadModes runs the load modes to their budgets and checks the
// counts, the events and that no session failed.
func TestLoadModes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mut    func(*Config)
		ok     int64
		events map[string]int64
	}{
		{"closed", func(c *Config) { c.Concurrency = 8; c.Sessions = 200 }, 200,
			map[string]int64{"0 BOOTSTRAP": 20, "1 BOOT": 20, "2 PERIODIC": 180}},
		{"open", func(c *Config) { c.Rate = 5000; c.Sessions = 100 }, 100,
			map[string]int64{"0 BOOTSTRAP": 20, "1 BOOT": 20, "2 PERIODIC": 80}},
		{"known", func(c *Config) { c.Known = true; c.Sessions = 40 }, 40,
			map[string]int64{"2 PERIODIC": 40}},
		{"boot-storm", func(c *Config) { c.BootStorm = true; c.Concurrency = 4 }, 20,
			map[string]int64{"0 BOOTSTRAP": 20, "1 BOOT": 20}},
		{"boot-storm-known", func(c *Config) { c.BootStorm = true; c.Known = true }, 20,
			map[string]int64{"1 BOOT": 20}},
		{"periodic", func(c *Config) {
			c.Periodic = true
			c.Known = true
			c.Interval = 20 * time.Millisecond
			c.Sessions = 60
		}, 60,
			map[string]int64{"2 PERIODIC": 60}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acs := newTestACS(t, ConnCookie)
			cfg := testConfig(t, acs)
			cfg.BootStorm = false
			cfg.Devices = 20
			tc.mut(&cfg)
			_, sum := runSim(t, cfg)
			if sum.SessionsOK != tc.ok || sum.SessionsFailed != 0 || sum.SessionsStarted != tc.ok {
				t.Errorf("started %d ok %d failed %d, want %d ok; errors %v", sum.SessionsStarted, sum.SessionsOK, sum.SessionsFailed, tc.ok, sum.Errors)
			}
			if !reflect.DeepEqual(sum.Events, tc.events) {
				t.Errorf("events %v, want %v", sum.Events, tc.events)
			}
			if sum.HTTPStatus[200] != tc.ok || sum.HTTPStatus[204] != tc.ok {
				t.Errorf("statuses %v", sum.HTTPStatus)
			}
			if sum.SessionLatency.Count != tc.ok || sum.ExchangeLatency.Count != 2*tc.ok ||
				sum.SessionLatency.P50 > sum.SessionLatency.P99 || sum.SessionLatency.P99 > sum.SessionLatency.Max {
				t.Errorf("latencies %+v %+v", sum.SessionLatency, sum.ExchangeLatency)
			}
		})
	}
}

// TestGzipRequests: with Gzip every non-empty body is compressed.
func TestGzipRequests(t *testing.T) {
	acs := newTestACS(t, ConnCookie)
	acs.plan = func(inf *cwmp.Inform, n int) []cwmp.Message { return msgs(gpv("Device.Time.")) }
	cfg := testConfig(t, acs)
	cfg.Gzip = true
	_, sum := runSim(t, cfg)
	_, done, _, posts := acs.snapshot()
	if sum.SessionsOK != 1 || len(done) != 1 || done[0].Fault != nil {
		t.Fatalf("ok %d, done %v", sum.SessionsOK, done)
	}
	for _, p := range posts {
		if p.gzip == p.empty {
			t.Errorf("POST gzip=%v empty=%v", p.gzip, p.empty)
		}
	}
}

// TestConnectionRequest: a per-device listener challenges an
// unauthenticated GET, accepts a Digest one, and the device informs with
// 6 CONNECTION REQUEST.
func TestConnectionRequest(t *testing.T) {
	for _, mode := range []ConnReqMode{ConnReqPerDevice, ConnReqShared} {
		t.Run(string(mode), func(t *testing.T) {
			acs := newTestACS(t, ConnCookie)
			reports := make(chan SessionReport, 8)
			cfg := testConfig(t, acs)
			cfg.Devices = 2
			cfg.ConnReq = mode
			cfg.OnSession = func(r SessionReport) { reports <- r }
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			result := make(chan Summary, 1)
			go func() {
				sum, err := s.Run(ctx)
				if err != nil {
					t.Errorf("Run: %v", err)
				}
				result <- sum
			}()
			for range 2 {
				if r := waitFor(t, reports); !r.OK {
					t.Fatalf("boot session failed: %v", r.Err)
				}
			}
			informs, _, _, _ := acs.snapshot()
			inf := informs[0]
			p, _ := informParam(inf, "Device.ManagementServer.ConnectionRequestURL")
			if !strings.HasPrefix(p.Value, "http://127.0.0.1:") {
				t.Fatalf("ConnectionRequestURL %q", p.Value)
			}
			var dev *Device
			for _, d := range s.Devices() {
				if d.ID().SerialNumber == inf.DeviceID.SerialNumber {
					dev = d
				}
			}
			if dev.ConnectionRequestURL() != p.Value {
				t.Errorf("device says %q, Inform said %q", dev.ConnectionRequestURL(), p.Value)
			}
			user, pass := dev.ConnectionRequestCredentials()
			if code := connectionRequest(t, p.Value, user, "wrong"); code != 401 {
				t.Errorf("wrong password: HTTP %d", code)
			}
			if code := connectionRequest(t, p.Value, user, pass); code != 200 {
				t.Fatalf("connection request: HTTP %d", code)
			}
			r := waitFor(t, reports)
			if !r.OK || r.Device != dev || len(r.Events) != 1 || r.Events[0].Code != "6 CONNECTION REQUEST" {
				t.Errorf("CR session: ok %v device %v events %+v", r.OK, r.Device.ID(), r.Events)
			}
			cancel()
			sum := waitFor(t, result)
			if sum.ConnReqAccepted != 1 || sum.ConnReqRejected != 1 || sum.SessionsOK != 3 {
				t.Errorf("summary: accepted %d rejected %d ok %d", sum.ConnReqAccepted, sum.ConnReqRejected, sum.SessionsOK)
			}
		})
	}
}

func waitFor[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting")
		panic("unreachable")
	}
}

// TestSummaryJSON checks the machine-readable summary's keys and units.
func TestSummaryJSON(t *testing.T) {
	acs := newTestACS(t, ConnCookie)
	cfg := testConfig(t, acs)
	cfg.BootStorm = false
	cfg.Sessions = 5
	_, sum := runSim(t, cfg)
	b, err := json.Marshal(sum)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["sessions_ok"] != 5.0 || m["http_status"].(map[string]any)["204"] != 5.0 {
		t.Errorf("json %s", b)
	}
	lat := m["session_latency"].(map[string]any)
	if lat["count"] != 5.0 || lat["p99_ms"].(float64) <= 0 || lat["max_ms"].(float64) < lat["p50_ms"].(float64) {
		t.Errorf("session latency %v", lat)
	}
}

// TestRedirectRetryAndTLS: the first POST is redirected (for this session
// only), the Inform is resent after fault 8005, and the ACS speaks HTTPS.
func TestRedirectRetryAndTLS(t *testing.T) {
	acs := startTestACS(t, ConnCookie, true)
	acs.redirect = true
	acs.retryInform = 1
	acs.plan = func(inf *cwmp.Inform, n int) []cwmp.Message { return msgs(gpv("Device.DeviceInfo.UpTime")) }
	cfg := testConfig(t, acs)
	cfg.BootStorm = false
	cfg.Sessions = 2
	cfg.InsecureSkipVerify = true
	_, sum := runSim(t, cfg)
	if !strings.HasPrefix(cfg.URL, "https://") || sum.SessionsOK != 2 || sum.Redirects != 2 || sum.Retries != 1 || sum.HTTPStatus[307] != 2 {
		t.Errorf("summary: ok %d redirects %d retries %d statuses %v errors %v", sum.SessionsOK, sum.Redirects, sum.Retries, sum.HTTPStatus, sum.Errors)
	}
	informs, done, _, _ := acs.snapshot()
	if len(informs) != 2 || len(done) != 2 || done[0].Fault != nil {
		t.Errorf("informs %d, requests done %d", len(informs), len(done))
	}

	// Without InsecureSkipVerify the test server's certificate is refused.
	cfg.InsecureSkipVerify = false
	cfg.Sessions = 1
	_, sum = runSim(t, cfg)
	if sum.SessionsFailed != 1 || sum.Errors["io"]+sum.Errors["connect"] != 1 {
		t.Errorf("untrusted certificate: failed %d errors %v", sum.SessionsFailed, sum.Errors)
	}
}

// TestCancelMidRun: ending the context stops the run; sessions cut short
// are counted as canceled, not failed.
func TestCancelMidRun(t *testing.T) {
	acs := newTestACS(t, ConnCookie)
	cfg := testConfig(t, acs)
	cfg.BootStorm = false
	cfg.Devices = 4
	started := make(chan struct{})
	var once sync.Once
	cfg.OnSession = func(SessionReport) { once.Do(func() { close(started) }) }
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cancel, result := runInBackground(s)
	waitFor(t, started)
	if snap := s.Snapshot(); snap.SessionsOK < 1 || snap.Elapsed <= 0 {
		t.Errorf("snapshot during the run: ok %d elapsed %v", snap.SessionsOK, snap.Elapsed)
	}
	cancel()
	sum := waitFor(t, result)
	if sum.SessionsOK == 0 || sum.SessionsFailed != 0 || sum.SessionsStarted != sum.SessionsOK+sum.SessionsCanceled {
		t.Errorf("summary: started %d ok %d failed %d canceled %d errors %v", sum.SessionsStarted, sum.SessionsOK,
			sum.SessionsFailed, sum.SessionsCanceled, sum.Errors)
	}
	if _, err := s.Run(context.Background()); err == nil {
		t.Error("a simulator ran twice")
	}
}

// BenchmarkSessions measures whole minimal sessions (Inform, InformResponse,
// empty POST, 204) against the in-test ACS; the simulator's own share of
// the CPU is what cpesim -cpuprofile shows against a separate ACS.
func BenchmarkSessions(b *testing.B) {
	acs := newTestACS(&testing.T{}, ConnCookie)
	defer acs.srv.Close()
	cfg := Config{URL: acs.url(), Devices: 100, Sessions: b.N, Concurrency: 8, Timeout: 5 * time.Second}
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	sum, err := s.Run(context.Background())
	if err != nil || sum.SessionsOK != int64(b.N) {
		b.Fatalf("run: %v, %+v", err, sum)
	}
	b.ReportMetric(float64(sum.SessionsOK)/sum.Elapsed.Seconds(), "sessions/s")
}

// TestDeferredWork: ChangeDUState and ScheduleInform are carried out after
// the session and reported later with their events, the DU results in a
// DUStateChangeComplete.
func TestDeferredWork(t *testing.T) {
	acs := newTestACS(t, ConnCookie)
	acs.plan = func(inf *cwmp.Inform, n int) []cwmp.Message {
		if n == 1 {
			return msgs(
				&cwmp.ChangeDUState{CommandKey: "du-1", Operations: []cwmp.DUOperation{{Kind: cwmp.OpInstall, URL: "http://x/app.ipk", UUID: "6ba7b810-9dad-41d1-80b4-00c04fd430c8"}}},
				&cwmp.ScheduleInform{DelaySeconds: 30, CommandKey: "si-1"},
				&cwmp.ScheduleDownload{CommandKey: "sd-1", FileType: "2 Web Content", URL: "http://x/web.tar",
					TimeWindowList: []cwmp.TimeWindow{{WindowStart: 10, WindowEnd: 20, WindowMode: "1 At Any Time"}}},
				&cwmp.GetAllQueuedTransfers{},
			)
		}
		return nil
	}
	_, sum := runSim(t, testConfig(t, acs))
	informs, done, cpe, _ := acs.snapshot()
	if q := done[3].Response.(*cwmp.GetAllQueuedTransfersResponse).TransferList; len(q) != 1 || q[0].CommandKey != "sd-1" || !q[0].IsDownload {
		t.Errorf("queued transfers %+v", q)
	}
	// Timing decides whether the three completions share sessions, so
	// check what was delivered over all of them.
	var events []string
	for _, inf := range informs[1:] {
		events = append(events, strings.Split(eventCodes(inf), ",")...)
	}
	for _, want := range []string{"11 DU STATE CHANGE COMPLETE", "M ChangeDUState/du-1", "3 SCHEDULED", "M ScheduleInform/si-1",
		"7 TRANSFER COMPLETE", "M ScheduleDownload/sd-1"} {
		if !containsString(events, want) {
			t.Errorf("events after the first session %q lack %q", events, want)
		}
	}
	var du *cwmp.DUStateChangeComplete
	var tc *cwmp.TransferComplete
	for _, m := range cpe {
		switch m := m.(type) {
		case *cwmp.DUStateChangeComplete:
			du = m
		case *cwmp.TransferComplete:
			tc = m
		}
	}
	if du == nil || du.CommandKey != "du-1" || len(du.Results) != 1 || du.Results[0].CurrentState != "Installed" ||
		du.Results[0].UUID != "6ba7b810-9dad-41d1-80b4-00c04fd430c8" || du.Results[0].Fault.FaultCode != 0 {
		t.Errorf("DUStateChangeComplete %+v", du)
	}
	if tc == nil || tc.CommandKey != "sd-1" {
		t.Errorf("TransferComplete %+v", tc)
	}
	if sum.SessionsFailed != 0 || len(cpe) != 2 {
		t.Errorf("failed %d, CPE requests %d", sum.SessionsFailed, len(cpe))
	}
}

// TestWholeTreeEncodes: every value, name and attribute of both models
// encodes as a valid CWMP message (the encoder checks values against their
// types), so no GetParameterValues of any subtree can fail.
func TestWholeTreeEncodes(t *testing.T) {
	for _, dm := range []DataModel{TR181, TR098} {
		s, err := New(Config{Devices: 1, Model: dm, Gzip: true})
		if err != nil {
			t.Fatal(err)
		}
		d := s.Devices()[0]
		root := d.tree.root.name
		for _, req := range []cwmp.Message{
			gpv(root),
			&cwmp.GetParameterNames{ParameterPath: root},
			&cwmp.GetParameterAttributes{ParameterNames: []string{root}},
		} {
			resp := d.handle(req, cwmp.V1_4, time.Now())
			if f, ok := resp.(*cwmp.Fault); ok {
				t.Fatalf("%s %s: %v", dm, req.Method(), f)
			}
			if _, err := cwmp.Encode(&cwmp.Envelope{Version: cwmp.V1_4, Header: cwmp.Header{ID: "1"}, Body: resp}); err != nil {
				t.Errorf("%s %s: %v", dm, req.Method(), err)
			}
		}
	}
}

// TestCrashOnLargeGetParameterValues: with CrashGPVAbove 31, a
// GetParameterValues of 32 names crashes the client, as netcwmp's: the
// session fails without an answer and the next one carries 1 BOOT, where
// 31 names are answered.
func TestCrashOnLargeGetParameterValues(t *testing.T) {
	acs := newTestACS(t, ConnKeepAlive)
	names := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "Device.DeviceInfo.UpTime"
		}
		return out
	}
	acs.plan = func(inf *cwmp.Inform, n int) []cwmp.Message {
		if n == 1 {
			return msgs(gpv(names(32)...))
		}
		return msgs(gpv(names(31)...))
	}
	cfg := testConfig(t, acs)
	cfg.ConnMode = ConnKeepAlive
	cfg.CrashGPVAbove = 31
	_, sum := runSim(t, cfg)
	informs, done, _, _ := acs.snapshot()
	var got []string
	for _, inf := range informs {
		got = append(got, eventCodes(inf))
	}
	if want := []string{"0 BOOTSTRAP,1 BOOT", "1 BOOT"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("informs %q, want %q", got, want)
	}
	if len(done) != 1 || len(done[0].Response.(*cwmp.GetParameterValuesResponse).ParameterList) != 31 {
		t.Fatalf("answers %+v", done)
	}
	if sum.SessionsOK != 1 || sum.SessionsFailed != 1 || sum.Errors["crashed"] != 1 {
		t.Fatalf("summary: ok %d failed %d errors %v", sum.SessionsOK, sum.SessionsFailed, sum.Errors)
	}
	if _, err := New(Config{URL: acs.url(), CrashGPVAbove: -1}); err == nil {
		t.Fatal("negative crash-gpv-above accepted")
	}
}

// runInBackground runs s until the returned cancel is called; its summary
// arrives on result once Run returns.
func runInBackground(s *Simulator) (cancel context.CancelFunc, result <-chan Summary) {
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan Summary, 1)
	go func() {
		sum, _ := s.Run(ctx)
		out <- sum
	}()
	return cancel, out
}
