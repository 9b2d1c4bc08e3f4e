package sessions

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

func pingOp() *tasksv1.Operation {
	return &tasksv1.Operation{Kind: &tasksv1.Operation_Diagnostic{Diagnostic: &tasksv1.Diagnostic{
		Test: &tasksv1.Diagnostic_IpPing{IpPing: &tasksv1.IPPingTest{Host: "example.com", Repetitions: 3, TimeoutMs: 1000}}}}}
}

var diagComplete = []cwmp.Event{{Code: "8 DIAGNOSTICS COMPLETE"}}

// diagCPE answers like answers, and a GetParameterValues of a diagnostic
// object with values (relative names -> value).
func diagCPE(object string, values map[string]string) func(cwmp.Message) cwmp.Message {
	return func(m cwmp.Message) cwmp.Message {
		if g, ok := m.(*cwmp.GetParameterValues); ok && len(g.ParameterNames) == 1 && g.ParameterNames[0] == object {
			resp := &cwmp.GetParameterValuesResponse{}
			for name, v := range values {
				resp.ParameterList = append(resp.ParameterList, cwmp.ParameterValue{Name: object + name, Value: v, Type: "xsd:string"})
			}
			return resp
		}
		return answers(m)
	}
}

// A ping: its inputs and DiagnosticsState in one SetParameterValues, AWAIT
// with the diagnostic's default deadline, nothing in sessions without
// 8 DIAGNOSTICS COMPLETE, then one GetParameterValues of the object and
// typed results, also written to inventory.
func TestTaskDiagnosticPing(t *testing.T) {
	v := newTaskEnv(t, nil)
	v.queue.ids = []string{"t1"}
	v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, pingOp())
	const obj = "Device.IP.Diagnostics.IPPing."
	c := v.cpe(diagCPE(obj, map[string]string{
		"DiagnosticsState": "Complete", "Host": "example.com", "SuccessCount": "3", "FailureCount": "0",
		"AverageResponseTime": "12", "MinimumResponseTime": "10", "MaximumResponseTime": "15",
		"AverageResponseTimeDetailed": "12345", "MinimumResponseTimeDetailed": "10100", "MaximumResponseTimeDetailed": "14900",
		"IPAddressUsed": "198.51.100.9",
	}))
	c.inform(v.e, periodic)
	c.run(v.e)
	if len(c.sent) != 1 {
		t.Fatalf("sent %v, want one SetParameterValues", c.methods())
	}
	spv := c.sent[0].(*cwmp.SetParameterValues)
	want := []cwmp.ParameterValue{
		{Name: obj + "Host", Value: "example.com", Type: "xsd:string"},
		{Name: obj + "NumberOfRepetitions", Value: "3", Type: "xsd:unsignedInt"},
		{Name: obj + "Timeout", Value: "1000", Type: "xsd:unsignedInt"},
		{Name: obj + "DiagnosticsState", Value: "Requested", Type: "xsd:string"},
	}
	if !slices.Equal(spv.ParameterList, want) || spv.ParameterKey != "t1" {
		t.Fatalf("SetParameterValues %+v key %q,\nwant %+v", spv.ParameterList, spv.ParameterKey, want)
	}
	r := v.tasks.report(t, "t1")
	if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_AWAIT || !r.GetAwaitDeadline().AsTime().Equal(t0.Add(defaultDiagnosticAwait)) {
		t.Fatalf("report %v, want AWAIT until %v", r, t0.Add(defaultDiagnosticAwait))
	}

	v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_AWAIT, pingOp())
	before := v.tasks.reported()
	c.inform(v.e, periodic)
	c.run(v.e)
	if len(c.sent) != 0 || v.tasks.reported() != before {
		t.Fatalf("a session without 8 DIAGNOSTICS COMPLETE sent %v, reported %d", c.methods(), v.tasks.reported()-before)
	}

	c.inform(v.e, diagComplete)
	c.run(v.e)
	if got := c.methods(); !slices.Equal(got, []string{"GetParameterValues"}) {
		t.Fatalf("sent %v", got)
	}
	if names := c.sent[0].(*cwmp.GetParameterValues).ParameterNames; !slices.Equal(names, []string{obj}) {
		t.Fatalf("read %v", names)
	}
	r = v.tasks.report(t, "t1")
	if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
		t.Fatalf("report %v", r)
	}
	res := r.GetResult().GetDiagnostic()
	p := res.GetIpPing()
	if res.GetObject() != obj || res.GetState() != "Complete" || res.GetIpAddressUsed() != "198.51.100.9" || p.GetSuccessCount() != 3 ||
		p.GetAverageResponseTimeMs() != 12 || p.GetMinimumResponseTimeMs() != 10 || p.GetMaximumResponseTimeMs() != 15 ||
		p.GetAverageResponseTimeUs() != 12345 || p.GetMaximumResponseTimeUs() != 14900 {
		t.Fatalf("result %v", res)
	}
	if q := param(v.inv.last(t), obj+"SuccessCount"); q == nil || q.Value != "3" {
		t.Fatalf("results not in the diff: %+v", q)
	}
}

// An Error_* state ends the task in fault (source DIAGNOSTIC); a state
// still Requested (another test's completion) keeps it waiting; None
// (replaced on the CPE) is a fault too.
func TestTaskDiagnosticStates(t *testing.T) {
	for _, tt := range []struct {
		state   string
		outcome tasksv1.TaskOutcome // 0: nothing reported
	}{
		{"Error_CannotResolveHostName", tasksv1.TaskOutcome_TASK_OUTCOME_FAULT},
		{"Requested", 0},
		{"None", tasksv1.TaskOutcome_TASK_OUTCOME_FAULT},
		{"Completed", tasksv1.TaskOutcome_TASK_OUTCOME_DONE},
	} {
		t.Run(tt.state, func(t *testing.T) {
			v := newTaskEnv(t, nil)
			v.queue.ids = []string{"t1"}
			v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_AWAIT, pingOp())
			c := v.cpe(diagCPE("Device.IP.Diagnostics.IPPing.", map[string]string{"DiagnosticsState": tt.state}))
			c.inform(v.e, diagComplete)
			c.run(v.e)
			if tt.outcome == 0 {
				if v.tasks.reported() != 0 {
					t.Fatalf("reported %v", v.tasks.report(t, "t1"))
				}
				return
			}
			r := v.tasks.report(t, "t1")
			if r.GetOutcome() != tt.outcome {
				t.Fatalf("report %v", r)
			}
			if tt.outcome == tasksv1.TaskOutcome_TASK_OUTCOME_FAULT &&
				(r.GetFault().GetSource() != tasksv1.FaultSource_FAULT_SOURCE_DIAGNOSTIC || !strings.Contains(r.GetFault().GetFaultString(), tt.state)) {
				t.Fatalf("fault %v", r.GetFault())
			}
		})
	}
}

// The CPE refusing the request (no such object) ends the task with its
// fault; a test the model lacks, or an input it lacks, fails the task
// without sending anything.
func TestTaskDiagnosticRefused(t *testing.T) {
	v := newTaskEnv(t, nil)
	v.queue.ids = []string{"t1"}
	v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, pingOp())
	c := v.cpe(func(m cwmp.Message) cwmp.Message {
		if _, ok := m.(*cwmp.SetParameterValues); ok {
			return cwmp.NewFault(cwmp.FaultCPEInvalidArguments)
		}
		return answers(m)
	})
	c.inform(v.e, periodic)
	c.run(v.e)
	if r := v.tasks.report(t, "t1"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_FAULT || r.GetFault().GetCode() != 9003 {
		t.Fatalf("report %v", r)
	}

	op := &taskOp{Kind: kindDiagnostic, Key: "k", spec: &tasksv1.Operation{Kind: &tasksv1.Operation_Diagnostic{Diagnostic: &tasksv1.Diagnostic{
		Test: &tasksv1.Diagnostic_NsLookup{NsLookup: &tasksv1.NSLookupTest{HostName: "example.com"}}}}}, Stage: stagePending}
	op.startDiagnostic("InternetGatewayDevice.")
	if op.Stage != stageFault || !strings.Contains(op.Detail, "has no ns_lookup") {
		t.Fatalf("ns_lookup on TR-098: stage %s, %q", op.Stage, op.Detail)
	}
	op = &taskOp{Kind: kindDiagnostic, Key: "k", spec: &tasksv1.Operation{Kind: &tasksv1.Operation_Diagnostic{Diagnostic: &tasksv1.Diagnostic{
		Test: &tasksv1.Diagnostic_IpPing{IpPing: &tasksv1.IPPingTest{Host: "h", ProtocolVersion: "IPv6"}}}}}, Stage: stagePending}
	op.startDiagnostic("InternetGatewayDevice.")
	if op.Stage != stageFault || !strings.Contains(op.Detail, "ProtocolVersion") {
		t.Fatalf("ProtocolVersion on TR-098: stage %s, %q", op.Stage, op.Detail)
	}
	op.Stage, op.Detail = stagePending, ""
	op.startDiagnostic("")
	if op.Stage != stageFault || !strings.Contains(op.Detail, "root is not known") {
		t.Fatalf("unknown root: stage %s, %q", op.Stage, op.Detail)
	}
}

// A session that died before reporting the request: the Inform's
// ParameterKey says the CPE took it, so it is not sent again; the task
// reads the object at once (its 8 DIAGNOSTICS COMPLETE may have gone to
// the session that died), and waits when the test still runs.
func TestTaskDiagnosticResume(t *testing.T) {
	for _, tt := range []struct {
		name   string
		key    string
		events []cwmp.Event
		state  string
		sent   string
		report tasksv1.TaskOutcome
	}{
		{"not applied", "older", periodic, "Complete", "SetParameterValues", tasksv1.TaskOutcome_TASK_OUTCOME_AWAIT},
		{"applied, running", "t1", periodic, "Requested", "GetParameterValues", tasksv1.TaskOutcome_TASK_OUTCOME_AWAIT},
		{"applied, complete", "t1", diagComplete, "Complete", "GetParameterValues", tasksv1.TaskOutcome_TASK_OUTCOME_DONE},
		{"applied, completion already informed", "t1", periodic, "Complete", "GetParameterValues", tasksv1.TaskOutcome_TASK_OUTCOME_DONE},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := newTaskEnv(t, nil)
			v.queue.ids = []string{"t1"}
			v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RESUME, pingOp())
			c := v.cpe(diagCPE("Device.IP.Diagnostics.IPPing.", map[string]string{"DiagnosticsState": tt.state, "SuccessCount": "3"}))
			c.inform(v.e, tt.events, cwmp.ParameterValue{Name: "Device.ManagementServer.ParameterKey", Value: tt.key, Type: "xsd:string"})
			c.run(v.e)
			var want []string
			if tt.sent != "" {
				want = []string{tt.sent}
			}
			if got := c.methods(); !slices.Equal(got, want) {
				t.Fatalf("sent %v, want %v", got, want)
			}
			if r := v.tasks.report(t, "t1"); r.GetOutcome() != tt.report {
				t.Fatalf("report %v", r)
			}
		})
	}
}

// A session lost while reading the results reports nothing: the CPE
// informs 8 DIAGNOSTICS COMPLETE again in its next session.
func TestTaskDiagnosticResultsLost(t *testing.T) {
	v := newTaskEnv(t, nil)
	v.queue.ids = []string{"t1"}
	v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_AWAIT, pingOp())
	c := v.cpe(answers)
	c.inform(v.e, diagComplete)
	if m, _ := c.step(v.e, nil); m == nil || m.Method() != "GetParameterValues" {
		t.Fatalf("sent %v", m)
	}
	v.e.Abandon(context.Background(), c.sid, engine.AbandonConnection)
	if n := v.tasks.reported(); n != 0 {
		t.Fatalf("reported %v", v.tasks.report(t, "t1"))
	}
}

// The inputs and names of every test in both models (docs/tasks.md,
// "Diagnostics").
func TestDiagnosticRequests(t *testing.T) {
	for _, tt := range []struct {
		root string
		d    *tasksv1.Diagnostic
		want []string // name=value, DiagnosticsState last
	}{
		{rootTR098, &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_IpPing{IpPing: &tasksv1.IPPingTest{Host: "h", DataBlockSize: 1000, Dscp: 46, Interface: "InternetGatewayDevice.WANDevice.1."}}},
			[]string{"InternetGatewayDevice.IPPingDiagnostics.Host=h", "InternetGatewayDevice.IPPingDiagnostics.DataBlockSize=1000",
				"InternetGatewayDevice.IPPingDiagnostics.DSCP=46", "InternetGatewayDevice.IPPingDiagnostics.Interface=InternetGatewayDevice.WANDevice.1.",
				"InternetGatewayDevice.IPPingDiagnostics.DiagnosticsState=Requested"}},
		{rootTR181, &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_TraceRoute{TraceRoute: &tasksv1.TraceRouteTest{Host: "h", Tries: 2, MaxHopCount: 20, ProtocolVersion: "IPv4"}}},
			[]string{"Device.IP.Diagnostics.TraceRoute.Host=h", "Device.IP.Diagnostics.TraceRoute.NumberOfTries=2", "Device.IP.Diagnostics.TraceRoute.MaxHopCount=20",
				"Device.IP.Diagnostics.TraceRoute.ProtocolVersion=IPv4", "Device.IP.Diagnostics.TraceRoute.DiagnosticsState=Requested"}},
		{rootTR098, &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_Upload{Upload: &tasksv1.ThroughputTest{Url: "http://u/", TestFileLength: 5000, EthernetPriority: 3}}},
			[]string{"InternetGatewayDevice.UploadDiagnostics.UploadURL=http://u/", "InternetGatewayDevice.UploadDiagnostics.TestFileLength=5000",
				"InternetGatewayDevice.UploadDiagnostics.EthernetPriority=3", "InternetGatewayDevice.UploadDiagnostics.DiagnosticsState=Requested"}},
		{rootTR181, &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_Download{Download: &tasksv1.ThroughputTest{Url: "http://d/", NumberOfConnections: 4}}},
			[]string{"Device.IP.Diagnostics.DownloadDiagnostics.DownloadURL=http://d/", "Device.IP.Diagnostics.DownloadDiagnostics.NumberOfConnections=4",
				"Device.IP.Diagnostics.DownloadDiagnostics.DiagnosticsState=Requested"}},
		{rootTR181, &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_NsLookup{NsLookup: &tasksv1.NSLookupTest{HostName: "h", DnsServer: "192.0.2.53", Repetitions: 2}}},
			[]string{"Device.DNS.Diagnostics.NSLookupDiagnostics.HostName=h", "Device.DNS.Diagnostics.NSLookupDiagnostics.DNSServer=192.0.2.53",
				"Device.DNS.Diagnostics.NSLookupDiagnostics.NumberOfRepetitions=2", "Device.DNS.Diagnostics.NSLookupDiagnostics.DiagnosticsState=Requested"}},
		{rootTR181, &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_ServerSelection{ServerSelection: &tasksv1.ServerSelectionTest{Hosts: []string{"a", "b"}, Protocol: "ICMP"}}},
			[]string{"Device.IP.Diagnostics.ServerSelectionDiagnostics.HostList=a,b", "Device.IP.Diagnostics.ServerSelectionDiagnostics.Protocol=ICMP",
				"Device.IP.Diagnostics.ServerSelectionDiagnostics.DiagnosticsState=Requested"}},
	} {
		obj, err := diagnosticObject(tt.root, diagnosticTest(tt.d))
		if err != nil {
			t.Fatal(err)
		}
		m, err := diagnosticRequest(tt.d, tt.root, obj, "k")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range m.ParameterList {
			got = append(got, p.Name+"="+p.Value)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s %s:\n got %v\nwant %v", tt.root, diagnosticTest(tt.d), got, tt.want)
		}
		// What the session would send is valid CWMP.
		if _, err := cwmp.Encode(&cwmp.Envelope{Version: cwmp.MaxVersion, Body: m}); err != nil {
			t.Errorf("%s: %v", diagnosticTest(tt.d), err)
		}
	}
}

// Typed results of TraceRoute (both models' names), throughput and
// NSLookup.
func TestDiagnosticResults(t *testing.T) {
	tr181 := diagnosticResult("trace_route", "Device.IP.Diagnostics.TraceRoute.", map[string]string{
		"DiagnosticsState": "Complete", "ResponseTime": "14",
		"RouteHops.2.Host": "example.net", "RouteHops.2.HostAddress": "203.0.113.5", "RouteHops.2.RTTimes": "14,15,16",
		"RouteHops.10.Host": "late", "RouteHops.1.Host": "10.0.0.1", "RouteHops.1.HostAddress": "10.0.0.1", "RouteHops.1.ErrorCode": "0", "RouteHops.1.RTTimes": "2",
	}).GetTraceRoute()
	if len(tr181.GetHops()) != 3 || tr181.GetHops()[1].GetHost() != "example.net" || !slices.Equal(tr181.GetHops()[1].GetRttMs(), []uint32{14, 15, 16}) ||
		tr181.GetHops()[2].GetHost() != "late" || tr181.GetResponseTimeMs() != 14 {
		t.Errorf("TR-181 trace %v", tr181)
	}
	tr098 := diagnosticResult("trace_route", "InternetGatewayDevice.TraceRouteDiagnostics.", map[string]string{
		"RouteHops.1.HopHost": "gw", "RouteHops.1.HopHostAddress": "10.0.0.1", "RouteHops.1.HopErrorCode": "11", "RouteHops.1.HopRTTimes": "3,4",
	}).GetTraceRoute()
	if len(tr098.GetHops()) != 1 || tr098.GetHops()[0].GetAddress() != "10.0.0.1" || tr098.GetHops()[0].GetErrorCode() != 11 || len(tr098.GetHops()[0].GetRttMs()) != 2 {
		t.Errorf("TR-098 trace %v", tr098)
	}
	dl := diagnosticResult("download", "Device.IP.Diagnostics.DownloadDiagnostics.", map[string]string{
		"BOMTime": "2026-12-06T12:00:00.000000Z", "EOMTime": "2026-12-06T12:00:02.000000Z", "ROMTime": "2026-12-06T11:59:59.990000Z",
		"TestBytesReceived": "25000000", "TotalBytesReceived": "25500000",
	}).GetDownload()
	if dl.GetThroughputBps() != 100_000_000 || dl.GetTotalBytesReceived() != 25500000 || dl.GetRomTime().AsTime().Nanosecond() != 990_000_000 {
		t.Errorf("download %v", dl)
	}
	up := diagnosticResult("upload", "InternetGatewayDevice.UploadDiagnostics.", map[string]string{
		"BOMTime": "2026-12-06T12:00:00Z", "EOMTime": "2026-12-06T12:00:01Z", "TestFileLength": "1000000", "TotalBytesSent": "1010000",
	}).GetUpload()
	if up.GetTestBytes() != 1000000 || up.GetThroughputBps() != 8_000_000 {
		t.Errorf("TR-098 upload (no TestBytesSent) %v", up)
	}
	noTimes := diagnosticResult("download", "x.", map[string]string{"BOMTime": "0001-01-01T00:00:00Z", "TestBytesReceived": "5"}).GetDownload()
	if noTimes.GetThroughputBps() != 0 || noTimes.GetBomTime() != nil {
		t.Errorf("download without times %v", noTimes)
	}
	ns := diagnosticResult("ns_lookup", "Device.DNS.Diagnostics.NSLookupDiagnostics.", map[string]string{
		"SuccessCount": "1", "Result.1.Status": "Success", "Result.1.IPAddresses": "203.0.113.1, 2001:db8::1", "Result.1.ResponseTime": "7",
	}).GetNsLookup()
	if ns.GetSuccessCount() != 1 || len(ns.GetAnswers()) != 1 || !slices.Equal(ns.GetAnswers()[0].GetIpAddresses(), []string{"203.0.113.1", "2001:db8::1"}) {
		t.Errorf("nslookup %v", ns)
	}
}

// A diagnostic's wait defaults to the diagnostic's own bound, below the
// tasks' default; an explicit await_timeout_seconds wins.
func TestDiagnosticAwaitDefault(t *testing.T) {
	task := &tasksv1.Task{Id: "t", Operation: pingOp()}
	op, err := newTaskOp(task, stagePending, time.Hour, nil)
	if err != nil || op.AwaitSeconds != uint32(defaultDiagnosticAwait/time.Second) {
		t.Fatalf("await %d, %v", op.AwaitSeconds, err)
	}
	task.Options = &tasksv1.TaskOptions{AwaitTimeoutSeconds: 5}
	if op, _ := newTaskOp(task, stagePending, time.Hour, nil); op.AwaitSeconds != 5 {
		t.Fatalf("await %d, want 5", op.AwaitSeconds)
	}
}

// Two tests of one device completing apart: the session of the first
// 8 DIAGNOSTICS COMPLETE ends the one whose object says Complete; the
// other, still Requested, waits for the next.
func TestTaskDiagnosticsTwoTests(t *testing.T) {
	v := newTaskEnv(t, nil)
	v.queue.ids = []string{"t1", "t2"}
	trace := &tasksv1.Operation{Kind: &tasksv1.Operation_Diagnostic{Diagnostic: &tasksv1.Diagnostic{
		Test: &tasksv1.Diagnostic_TraceRoute{TraceRoute: &tasksv1.TraceRouteTest{Host: "example.net"}}}}}
	v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_AWAIT, pingOp())
	v.tasks.add("t2", tasksv1.ClaimAction_CLAIM_ACTION_AWAIT, trace)
	states := map[string]string{"Device.IP.Diagnostics.IPPing.": "Complete", "Device.IP.Diagnostics.TraceRoute.": "Requested"}
	cpe := func(m cwmp.Message) cwmp.Message {
		if g, ok := m.(*cwmp.GetParameterValues); ok && len(g.ParameterNames) == 1 {
			if st, ok := states[g.ParameterNames[0]]; ok {
				return &cwmp.GetParameterValuesResponse{ParameterList: []cwmp.ParameterValue{
					{Name: g.ParameterNames[0] + "DiagnosticsState", Value: st, Type: "xsd:string"}}}
			}
		}
		return answers(m)
	}
	c := v.cpe(cpe)
	c.inform(v.e, diagComplete)
	c.run(v.e)
	if r := v.tasks.report(t, "t1"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
		t.Fatalf("ping %v", r)
	}
	if n := v.tasks.reported(); n != 1 {
		t.Fatalf("%d reports, want the ping's only", n)
	}
	states["Device.IP.Diagnostics.TraceRoute."] = "Complete"
	v.tasks.mu.Lock()
	delete(v.tasks.tasks, "t1")
	v.tasks.mu.Unlock()
	c.inform(v.e, diagComplete)
	c.run(v.e)
	if r := v.tasks.report(t, "t2"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE || r.GetResult().GetDiagnostic().GetTraceRoute() == nil {
		t.Fatalf("traceroute %v", r)
	}
}
