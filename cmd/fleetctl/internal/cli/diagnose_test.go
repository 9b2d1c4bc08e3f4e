package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

func diagTask(r *tasksv1.DiagnosticResult) *tasksv1.Task {
	return &tasksv1.Task{Id: "01J0000000000000000000DIAG", Tenant: "default", State: tasksv1.TaskState_TASK_STATE_DONE, Attempts: 1,
		Result: &tasksv1.TaskResult{Kind: &tasksv1.TaskResult_Diagnostic{Diagnostic: r}}}
}

func TestDiagnosePing(t *testing.T) {
	f := &fakeTasks{answer: diagTask(&tasksv1.DiagnosticResult{Object: "Device.IP.Diagnostics.IPPing.", State: "Complete", IpAddressUsed: "198.51.100.9",
		Kind: &tasksv1.DiagnosticResult_IpPing{IpPing: &tasksv1.IPPingResult{SuccessCount: 4, FailureCount: 1, AverageResponseTimeMs: 12,
			AverageResponseTimeUs: 12345, MinimumResponseTimeUs: 10100, MaximumResponseTimeUs: 14900}}})}
	serveTasks(t, f)
	r := fleetctl(t, "diagnose", "dev-1", "ping", "192.0.2.1", "-count", "5", "-test-timeout", "1500ms", "-size", "64", "-dscp", "46",
		"-interface", "Device.IP.Interface.1.", "-protocol-version", "IPv4", "-connection-request", "-wait", "30s", "-deadline", "2m")
	wantOK(t, r)
	req := f.created[0]
	p := req.GetOperation().GetDiagnostic().GetIpPing()
	if p.GetHost() != "192.0.2.1" || p.GetRepetitions() != 5 || p.GetTimeoutMs() != 1500 || p.GetDataBlockSize() != 64 || p.GetDscp() != 46 ||
		p.GetInterface() != "Device.IP.Interface.1." || p.GetProtocolVersion() != "IPv4" {
		t.Errorf("ping %v", p)
	}
	if o := req.GetOptions(); !o.GetConnectionRequest() || o.GetAwaitTimeoutSeconds() != 120 || req.GetWaitMs() != 30000 {
		t.Errorf("options %v, wait %d", o, req.GetWaitMs())
	}
	want := "01J0000000000000000000DIAG done diagnostic dev-1\n" +
		"  Device.IP.Diagnostics.IPPing. Complete from 198.51.100.9\n" +
		"  5 sent, 4 received, 1 lost\n" +
		"  rtt min/avg/max 10.100/12.345/14.900 ms\n"
	if r.stdout != want {
		t.Errorf("text\n%s\nwant\n%s", r.stdout, want)
	}
	r = fleetctl(t, "diagnose", "dev-1", "ping", "192.0.2.1", "-o", "json")
	wantOK(t, r)
	var j struct {
		Kind   string
		Result struct {
			Diagnostic struct {
				IPPing struct {
					SuccessCount int
				} `json:"ipPing"`
			}
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil || j.Kind != "diagnostic" || j.Result.Diagnostic.IPPing.SuccessCount != 4 {
		t.Errorf("json %s (%v)", r.stdout, err)
	}
}

func TestDiagnoseResults(t *testing.T) {
	bom := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		args  []string
		res   *tasksv1.DiagnosticResult
		check func(*tasksv1.Diagnostic) bool
		out   string
	}{
		{[]string{"traceroute", "example.net", "-tries", "2", "-max-hops", "20"},
			&tasksv1.DiagnosticResult{Object: "InternetGatewayDevice.TraceRouteDiagnostics.", State: "Complete",
				Kind: &tasksv1.DiagnosticResult_TraceRoute{TraceRoute: &tasksv1.TraceRouteResult{ResponseTimeMs: 9, Hops: []*tasksv1.TraceRouteHop{
					{Host: "10.1.1.1", Address: "10.1.1.1", RttMs: []uint32{2, 3}}, {Host: "example.net", Address: "203.0.113.5", RttMs: []uint32{9, 10}}}}}},
			func(d *tasksv1.Diagnostic) bool {
				return d.GetTraceRoute().GetTries() == 2 && d.GetTraceRoute().GetMaxHopCount() == 20
			},
			"  2 hops, response time 9 ms\n   1  10.1.1.1  2 3 ms\n   2  example.net (203.0.113.5)  9 10 ms\n"},
		{[]string{"download", "http://speed.example/f", "-connections", "4"},
			&tasksv1.DiagnosticResult{Object: "Device.IP.Diagnostics.DownloadDiagnostics.", State: "Complete",
				Kind: &tasksv1.DiagnosticResult_Download{Download: &tasksv1.ThroughputResult{TestBytes: 25_000_000, ThroughputBps: 100_000_000,
					BomTime: timestamppb.New(bom), EomTime: timestamppb.New(bom.Add(2 * time.Second))}}},
			func(d *tasksv1.Diagnostic) bool { return d.GetDownload().GetNumberOfConnections() == 4 },
			"  25000000 bytes received in 2.000 s: 100.00 Mbit/s\n  BOM 2026-12-06T12:00:00.000000Z EOM 2026-12-06T12:00:02.000000Z\n"},
		{[]string{"upload", "http://speed.example/up"}, &tasksv1.DiagnosticResult{Object: "x.", State: "Completed"},
			func(d *tasksv1.Diagnostic) bool { return d.GetUpload().GetTestFileLength() == 1<<20 }, "  x. Completed\n"},
		{[]string{"nslookup", "example.com", "-dns-server", "192.0.2.53", "-count", "1"},
			&tasksv1.DiagnosticResult{Object: "Device.DNS.Diagnostics.NSLookupDiagnostics.", State: "Complete",
				Kind: &tasksv1.DiagnosticResult_NsLookup{NsLookup: &tasksv1.NSLookupResult{SuccessCount: 1, Answers: []*tasksv1.NSLookupAnswer{
					{Status: "Success", AnswerType: "NonAuthoritative", HostNameReturned: "example.com", IpAddresses: []string{"203.0.113.7"}, DnsServerIp: "192.0.2.53", ResponseTimeMs: 4}}}}},
			func(d *tasksv1.Diagnostic) bool { return d.GetNsLookup().GetDnsServer() == "192.0.2.53" },
			"  1 of 1 answered\n  Success NonAuthoritative example.com [203.0.113.7] from 192.0.2.53 in 4 ms\n"},
		{[]string{"server-selection", "a.example", "b.example", "-protocol", "UDP Echo"},
			&tasksv1.DiagnosticResult{Object: "Device.IP.Diagnostics.ServerSelectionDiagnostics.", State: "Complete",
				Kind: &tasksv1.DiagnosticResult_ServerSelection{ServerSelection: &tasksv1.ServerSelectionResult{FastestHost: "b.example",
					MinimumResponseTimeUs: 2000, AverageResponseTimeUs: 2500, MaximumResponseTimeUs: 3001}}},
			func(d *tasksv1.Diagnostic) bool {
				s := d.GetServerSelection()
				return len(s.GetHosts()) == 2 && s.GetProtocol() == "UDP Echo"
			},
			"  fastest b.example: rtt min/avg/max 2.000/2.500/3.001 ms\n"},
	} {
		f := &fakeTasks{answer: diagTask(tt.res)}
		serveTasks(t, f)
		r := fleetctl(t, append([]string{"diagnose", "dev-1"}, tt.args...)...)
		wantOK(t, r)
		if !tt.check(f.created[0].GetOperation().GetDiagnostic()) {
			t.Errorf("%v: request %v", tt.args, f.created[0].GetOperation())
		}
		if !strings.HasSuffix(r.stdout, tt.out) {
			t.Errorf("%v: text\n%s\nwant it to end with\n%s", tt.args, r.stdout, tt.out)
		}
	}
}

func TestDiagnoseExitStatus(t *testing.T) {
	f := &fakeTasks{answer: &tasksv1.Task{Id: "01J0000000000000000000DIAG", State: tasksv1.TaskState_TASK_STATE_FAULT,
		Fault: &tasksv1.TaskFault{FaultString: "Error_CannotResolveHostName", Source: tasksv1.FaultSource_FAULT_SOURCE_DIAGNOSTIC}}}
	serveTasks(t, f)
	r := fleetctl(t, "diagnose", "dev-1", "ping", "nowhere.invalid", "-wait", "1s", "-o", "json")
	wantFailOut(t, r, "fleetctl: diagnose: task 01J0000000000000000000DIAG is fault after -wait 1s")
	if !strings.Contains(r.stdout, `"fault":{"code":0,"string":"Error_CannotResolveHostName","source":"diagnostic"}`) {
		t.Errorf("fault JSON %s", r.stdout)
	}
	r = fleetctl(t, "diagnose", "dev-1", "ping", "nowhere.invalid", "-wait", "1s")
	if r.code != ExitFailure || !strings.Contains(r.stdout, "  fault (diagnostic): Error_CannotResolveHostName\n") {
		t.Errorf("exit %d, text %q", r.code, r.stdout)
	}
	for _, args := range [][]string{
		{"diagnose", "dev-1"},
		{"diagnose", "dev-1", "ping"},
		{"diagnose", "dev-1", "explode", "x"},
		{"diagnose", "dev-1", "ping", "a", "b"},
		{"diagnose", "dev-1", "ping", "a", "-max-hops", "3"},
		{"diagnose", "dev-1", "download", "http://x/", "-length", "5"},
		{"diagnose", "dev-1", "ping", "a", "-deadline", "1500ms"},
		{"diagnose", "dev-1", "ping", "a", "-test-timeout", "2h"},
		{"diagnose", "dev-1", "ping", "a", "-o", "yaml"},
		{"diagnose", "dev-1", "server-selection"},
	} {
		if r := fleetctl(t, args...); r.code != ExitUsage {
			t.Errorf("%v: exit %d, want 2 (%q)", args, r.code, r.stderr)
		}
	}
	if n := len(f.created); n != 2 {
		t.Errorf("%d tasks created, want 2 (usage errors create none)", n)
	}
}

func TestDiagnoseHelpGolden(t *testing.T) {
	helpGolden(t, "DiagnoseHelpGolden", "../../testdata/help-diagnose.txt", "diagnose")
}
