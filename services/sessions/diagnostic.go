package sessions

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

// Diagnostics as tasks (docs/tasks.md, "Diagnostics"): a diagnostic task
// sets its test's inputs and DiagnosticsState "Requested" in one
// SetParameterValues, waits (AWAIT) for a session whose Inform carries
// "8 DIAGNOSTICS COMPLETE", and reads the test's object there with one
// GetParameterValues of its partial path.

const (
	kindDiagnostic = "diagnostic"
	// evDiagnosticsComplete is the event a CPE informs once a requested
	// diagnostic is over.
	evDiagnosticsComplete = "8 DIAGNOSTICS COMPLETE"
	// stageResults: the diagnostic is over; its results are to read.
	stageResults = "results"
	// keyDiagResults is the call key of the results' GetParameterValues.
	keyDiagResults = "diag"
	// defaultDiagnosticAwait bounds a diagnostic's wait when its task sets
	// no await_timeout_seconds: a test runs seconds, not an hour.
	defaultDiagnosticAwait = 600 * time.Second
)

// Data-model roots.
const (
	rootTR181 = "Device."
	rootTR098 = "InternetGatewayDevice."
)

// diagnosticObjects maps a data-model root and a test (the name of
// Diagnostic's oneof field) to the test's object: TR-181 (Device:2) and
// TR-098 (InternetGatewayDevice:1); TR-098 has no NSLookup or
// ServerSelection diagnostic.
var diagnosticObjects = map[string]map[string]string{
	rootTR181: {
		"ip_ping":          "Device.IP.Diagnostics.IPPing.",
		"trace_route":      "Device.IP.Diagnostics.TraceRoute.",
		"download":         "Device.IP.Diagnostics.DownloadDiagnostics.",
		"upload":           "Device.IP.Diagnostics.UploadDiagnostics.",
		"ns_lookup":        "Device.DNS.Diagnostics.NSLookupDiagnostics.",
		"server_selection": "Device.IP.Diagnostics.ServerSelectionDiagnostics.",
	},
	rootTR098: {
		"ip_ping":     "InternetGatewayDevice.IPPingDiagnostics.",
		"trace_route": "InternetGatewayDevice.TraceRouteDiagnostics.",
		"download":    "InternetGatewayDevice.DownloadDiagnostics.",
		"upload":      "InternetGatewayDevice.UploadDiagnostics.",
	},
}

// diagnosticTest names the test a Diagnostic runs, "" when none is set.
func diagnosticTest(d *tasksv1.Diagnostic) string {
	m := d.ProtoReflect()
	f := m.WhichOneof(m.Descriptor().Oneofs().ByName("test"))
	if f == nil {
		return ""
	}
	return string(f.Name())
}

// diagnosticObject returns the object of test on a device of root.
func diagnosticObject(root, test string) (string, error) {
	if root == "" {
		return "", fmt.Errorf("the device's data-model root is not known yet")
	}
	objs, ok := diagnosticObjects[root]
	if !ok {
		return "", fmt.Errorf("no diagnostics are known for data-model root %s", root)
	}
	obj, ok := objs[test]
	if !ok {
		return "", fmt.Errorf("the %s data model has no %s diagnostic", strings.TrimSuffix(root, "."), test)
	}
	return obj, nil
}

// diagInput collects the inputs of a test: name relative to the object,
// value, type. Zero values are left out (the CPE's own apply).
type diagInput struct {
	root string
	vals []cwmp.ParameterValue
	err  error
}

func (in *diagInput) str(name, v string) {
	if v != "" {
		in.vals = append(in.vals, cwmp.ParameterValue{Name: name, Value: v, Type: "xsd:string"})
	}
}

func (in *diagInput) uint(name string, v uint64) {
	if v != 0 {
		in.vals = append(in.vals, cwmp.ParameterValue{Name: name, Value: strconv.FormatUint(v, 10), Type: "xsd:unsignedInt"})
	}
}

// tr181 adds an input only TR-181 has; on another model a set value fails
// the task rather than being dropped unseen.
func (in *diagInput) tr181(name, v string, set bool, add func()) {
	if !set {
		return
	}
	if in.root != rootTR181 {
		if in.err == nil {
			in.err = fmt.Errorf("%s (%s) is not part of the %s data model", name, v, strings.TrimSuffix(in.root, "."))
		}
		return
	}
	add()
}

// diagnosticRequest builds the SetParameterValues that starts the test
// in object, carrying key.
func diagnosticRequest(d *tasksv1.Diagnostic, root, object, key string) (*cwmp.SetParameterValues, error) {
	in := &diagInput{root: root}
	switch t := d.GetTest().(type) {
	case *tasksv1.Diagnostic_IpPing:
		p := t.IpPing
		in.str("Host", p.GetHost())
		in.uint("NumberOfRepetitions", uint64(p.GetRepetitions()))
		in.uint("Timeout", uint64(p.GetTimeoutMs()))
		in.uint("DataBlockSize", uint64(p.GetDataBlockSize()))
		in.uint("DSCP", uint64(p.GetDscp()))
		in.str("Interface", p.GetInterface())
		in.tr181("ProtocolVersion", p.GetProtocolVersion(), p.GetProtocolVersion() != "", func() { in.str("ProtocolVersion", p.GetProtocolVersion()) })
	case *tasksv1.Diagnostic_TraceRoute:
		p := t.TraceRoute
		in.str("Host", p.GetHost())
		in.uint("NumberOfTries", uint64(p.GetTries()))
		in.uint("Timeout", uint64(p.GetTimeoutMs()))
		in.uint("DataBlockSize", uint64(p.GetDataBlockSize()))
		in.uint("DSCP", uint64(p.GetDscp()))
		in.uint("MaxHopCount", uint64(p.GetMaxHopCount()))
		in.str("Interface", p.GetInterface())
		in.tr181("ProtocolVersion", p.GetProtocolVersion(), p.GetProtocolVersion() != "", func() { in.str("ProtocolVersion", p.GetProtocolVersion()) })
	case *tasksv1.Diagnostic_Download, *tasksv1.Diagnostic_Upload:
		p, urlName := d.GetDownload(), "DownloadURL"
		if p == nil {
			p, urlName = d.GetUpload(), "UploadURL"
		}
		in.str(urlName, p.GetUrl())
		if urlName == "UploadURL" {
			// unsignedLong in TR-181, unsignedInt in TR-098.
			typ := "xsd:unsignedInt"
			if root == rootTR181 {
				typ = "xsd:unsignedLong"
			}
			if n := p.GetTestFileLength(); n != 0 {
				in.vals = append(in.vals, cwmp.ParameterValue{Name: "TestFileLength", Value: strconv.FormatUint(n, 10), Type: typ})
			}
		}
		in.uint("DSCP", uint64(p.GetDscp()))
		in.uint("EthernetPriority", uint64(p.GetEthernetPriority()))
		in.str("Interface", p.GetInterface())
		in.tr181("ProtocolVersion", p.GetProtocolVersion(), p.GetProtocolVersion() != "", func() { in.str("ProtocolVersion", p.GetProtocolVersion()) })
		in.tr181("NumberOfConnections", strconv.FormatUint(uint64(p.GetNumberOfConnections()), 10), p.GetNumberOfConnections() != 0,
			func() { in.uint("NumberOfConnections", uint64(p.GetNumberOfConnections())) })
	case *tasksv1.Diagnostic_NsLookup:
		p := t.NsLookup
		in.str("HostName", p.GetHostName())
		in.str("DNSServer", p.GetDnsServer())
		in.uint("Timeout", uint64(p.GetTimeoutMs()))
		in.uint("NumberOfRepetitions", uint64(p.GetRepetitions()))
		in.str("Interface", p.GetInterface())
	case *tasksv1.Diagnostic_ServerSelection:
		p := t.ServerSelection
		in.str("HostList", strings.Join(p.GetHosts(), ","))
		in.str("Protocol", p.GetProtocol())
		in.uint("NumberOfRepetitions", uint64(p.GetRepetitions()))
		in.uint("Timeout", uint64(p.GetTimeoutMs()))
		in.str("Interface", p.GetInterface())
		in.str("ProtocolVersion", p.GetProtocolVersion())
	default:
		return nil, fmt.Errorf("the diagnostic names no test")
	}
	if in.err != nil {
		return nil, in.err
	}
	// The state last: the CPE applies the whole request atomically, but
	// a reader of the request sees the inputs before what starts the test.
	in.str("DiagnosticsState", "Requested")
	m := &cwmp.SetParameterValues{ParameterKey: key, ParameterList: make([]cwmp.ParameterValue, 0, len(in.vals))}
	for _, v := range in.vals {
		v.Name = object + v.Name
		m.ParameterList = append(m.ParameterList, v)
	}
	return m, nil
}

// startDiagnostic prepares a diagnostic task to send in a session of a
// device of root: it names the test and its object, or fails the task.
func (o *taskOp) startDiagnostic(root string) {
	d := o.operation().GetDiagnostic()
	o.Test = diagnosticTest(d)
	obj, err := diagnosticObject(root, o.Test)
	if err == nil {
		_, err = diagnosticRequest(d, root, obj, o.Key)
	}
	if err != nil {
		o.fail(&tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_ACS, FaultString: "diagnostic " + o.Test + ": " + err.Error()})
		return
	}
	o.Object = obj
}

// awaitDiagnostic is a diagnostic claimed in a session after the CPE
// accepted it (CLAIM_ACTION_AWAIT): the session reads its results when
// its Inform says a diagnostic completed, else the task waits on.
func (o *taskOp) awaitDiagnostic(s engine.Start) {
	if o.Object == "" {
		o.Test = diagnosticTest(o.operation().GetDiagnostic())
		obj, err := diagnosticObject(s.Root, o.Test)
		if err != nil {
			o.fail(&tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_ACS, FaultString: "diagnostic " + o.Test + ": " + err.Error()})
			return
		}
		o.Object = obj
	}
	o.Spec, o.spec, o.Awaited = nil, nil, true
	if hasEventCode(s.Events, evDiagnosticsComplete) {
		o.Stage = stageResults
	} else {
		o.Stage = stageWaiting
	}
}

// resumeDiagnostic is a diagnostic claimed again after a session that
// carried it ended without its report: the Inform's ParameterKey says
// whether the CPE took the request (docs/tasks.md, "Resume after a dead
// worker"). If it did, the test ran or runs, and its object is read at
// once: its 8 DIAGNOSTICS COMPLETE may have gone to the session that died
// (or its results not reached inventory); still running, the task waits
// for it (AWAIT). If not, it is sent again.
func (o *taskOp) resumeDiagnostic(paramKey string) {
	if o.Stage != stagePending || paramKey == "" || paramKey != o.Key {
		return
	}
	o.Spec, o.spec = nil, nil
	o.Stage = stageResults
}

// hasEventCode reports whether events hold code (matched by number, as
// CPEs differ in the rest).
func hasEventCode(events []cwmp.Event, code string) bool {
	num, _, _ := strings.Cut(code, " ")
	for _, e := range events {
		if n, _, _ := strings.Cut(strings.TrimSpace(e.Code), " "); n == num {
			return true
		}
	}
	return false
}

// diagnosticAnswered takes the answer to the diagnostic's request: the
// CPE accepted the SetParameterValues, so the test runs after the session
// and the task waits for "8 DIAGNOSTICS COMPLETE".
func (o *taskOp) diagnosticAnswered(resp cwmp.Message) {
	if _, ok := resp.(*cwmp.SetParameterValuesResponse); !ok {
		o.unexpected(resp)
		return
	}
	o.Stage = stageAwait
	o.Detail = "the CPE accepted the diagnostic; waiting for 8 DIAGNOSTICS COMPLETE"
}

// takeDiagnosticResults reads the test's object: done with its typed
// results when DiagnosticsState says complete, fault on an error state;
// still "Requested" (another diagnostic's completion), the task waits on.
func (o *taskOp) takeDiagnosticResults(c *engine.Context, resp cwmp.Message) {
	r, ok := resp.(*cwmp.GetParameterValuesResponse)
	if !ok {
		o.unexpected(resp)
		return
	}
	vals := make(map[string]string, len(r.ParameterList))
	learned := make([]engine.Parameter, 0, len(r.ParameterList))
	for _, p := range r.ParameterList {
		if !strings.HasPrefix(p.Name, o.Object) {
			continue
		}
		vals[strings.TrimPrefix(p.Name, o.Object)] = p.Value
		learned = append(learned, engine.Parameter{Path: p.Name, Value: p.Value, Type: p.Type, HasValue: true})
	}
	state, ok := vals["DiagnosticsState"]
	switch {
	case !ok:
		o.fail(&tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_ACS, FaultString: "the CPE did not return " + o.Object + "DiagnosticsState"})
		return
	case state == "Requested":
		// Not over yet (another test's completion, or a resumed task):
		// an awaited task waits on with its deadline, a resumed one
		// starts its wait.
		o.Stage, o.Detail = stageWaiting, ""
		if !o.Awaited {
			o.Stage = stageAwait
		}
		return
	case state == "Complete" || state == "Completed":
	case strings.HasPrefix(state, "Error"):
		o.fail(&tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_DIAGNOSTIC, FaultString: state})
		return
	default:
		o.fail(&tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_DIAGNOSTIC,
			FaultString: fmt.Sprintf("DiagnosticsState %q: the test was cancelled or replaced on the CPE", state)})
		return
	}
	if !o.charge(c, learned) {
		return
	}
	res := diagnosticResult(o.Test, o.Object, vals)
	o.Learned = learned
	if t := tableOf(o.Test); t != "" {
		// The table is read whole: instances of an earlier, longer run go.
		o.Removed = o.Object + t
	}
	o.Detail = "results read after 8 DIAGNOSTICS COMPLETE: DiagnosticsState " + state
	o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_Diagnostic{Diagnostic: res}})
}

// tableOf names the result table of a test, "" when it has none.
func tableOf(test string) string {
	switch test {
	case "trace_route":
		return "RouteHops."
	case "ns_lookup":
		return "Result."
	}
	return ""
}

// diagnosticResult types the values of a completed test's object (names
// relative to it).
func diagnosticResult(test, object string, v map[string]string) *tasksv1.DiagnosticResult {
	u32 := func(name string) uint32 {
		n, _ := strconv.ParseUint(strings.TrimSpace(v[name]), 10, 32)
		return uint32(n)
	}
	u64 := func(name string) uint64 {
		n, _ := strconv.ParseUint(strings.TrimSpace(v[name]), 10, 64)
		return n
	}
	res := &tasksv1.DiagnosticResult{Object: object, State: v["DiagnosticsState"], IpAddressUsed: v["IPAddressUsed"]}
	switch test {
	case "ip_ping":
		res.Kind = &tasksv1.DiagnosticResult_IpPing{IpPing: &tasksv1.IPPingResult{
			SuccessCount: u32("SuccessCount"), FailureCount: u32("FailureCount"),
			AverageResponseTimeMs: u32("AverageResponseTime"), MinimumResponseTimeMs: u32("MinimumResponseTime"),
			MaximumResponseTimeMs: u32("MaximumResponseTime"), AverageResponseTimeUs: u32("AverageResponseTimeDetailed"),
			MinimumResponseTimeUs: u32("MinimumResponseTimeDetailed"), MaximumResponseTimeUs: u32("MaximumResponseTimeDetailed"),
		}}
	case "trace_route":
		tr := &tasksv1.TraceRouteResult{ResponseTimeMs: u32("ResponseTime")}
		for _, i := range instances(v, "RouteHops.") {
			p := "RouteHops." + strconv.Itoa(i) + "."
			// TR-181 names them Host, ...; TR-098 HopHost, ...
			pick := func(name string) string {
				if s, ok := v[p+name]; ok {
					return s
				}
				return v[p+"Hop"+name]
			}
			code, _ := strconv.ParseUint(strings.TrimSpace(pick("ErrorCode")), 10, 32)
			hop := &tasksv1.TraceRouteHop{Host: pick("Host"), Address: pick("HostAddress"), ErrorCode: uint32(code)}
			for _, s := range splitList(pick("RTTimes")) {
				if n, err := strconv.ParseUint(s, 10, 32); err == nil {
					hop.RttMs = append(hop.RttMs, uint32(n))
				}
			}
			tr.Hops = append(tr.Hops, hop)
		}
		res.Kind = &tasksv1.DiagnosticResult_TraceRoute{TraceRoute: tr}
	case "download":
		t := throughput(v, u64("TestBytesReceived"))
		t.TotalBytesReceived, t.TotalBytesSent = u64("TotalBytesReceived"), u64("TotalBytesSent")
		res.Kind = &tasksv1.DiagnosticResult_Download{Download: t}
	case "upload":
		sent, ok := v["TestBytesSent"]
		bytes, _ := strconv.ParseUint(strings.TrimSpace(sent), 10, 64)
		if !ok {
			bytes = u64("TestFileLength")
		}
		t := throughput(v, bytes)
		t.TotalBytesReceived, t.TotalBytesSent = u64("TotalBytesReceived"), u64("TotalBytesSent")
		res.Kind = &tasksv1.DiagnosticResult_Upload{Upload: t}
	case "ns_lookup":
		ns := &tasksv1.NSLookupResult{SuccessCount: u32("SuccessCount")}
		for _, i := range instances(v, "Result.") {
			p := "Result." + strconv.Itoa(i) + "."
			rt, _ := strconv.ParseUint(strings.TrimSpace(v[p+"ResponseTime"]), 10, 32)
			ns.Answers = append(ns.Answers, &tasksv1.NSLookupAnswer{Status: v[p+"Status"], AnswerType: v[p+"AnswerType"],
				HostNameReturned: v[p+"HostNameReturned"], IpAddresses: splitList(v[p+"IPAddresses"]),
				DnsServerIp: v[p+"DNSServerIP"], ResponseTimeMs: uint32(rt)})
		}
		res.Kind = &tasksv1.DiagnosticResult_NsLookup{NsLookup: ns}
	case "server_selection":
		res.Kind = &tasksv1.DiagnosticResult_ServerSelection{ServerSelection: &tasksv1.ServerSelectionResult{
			FastestHost: v["FastestHost"], MinimumResponseTimeUs: u32("MinimumResponseTime"),
			AverageResponseTimeUs: u32("AverageResponseTime"), MaximumResponseTimeUs: u32("MaximumResponseTime")}}
	}
	return res
}

// throughput types the times of a Download or Upload diagnostic; the rate
// is bytes over EOMTime - BOMTime.
func throughput(v map[string]string, bytes uint64) *tasksv1.ThroughputResult {
	t := &tasksv1.ThroughputResult{
		RomTime: timestampOf(cwmp.DateTime(v["ROMTime"])), BomTime: timestampOf(cwmp.DateTime(v["BOMTime"])),
		EomTime: timestampOf(cwmp.DateTime(v["EOMTime"])), TcpOpenRequestTime: timestampOf(cwmp.DateTime(v["TCPOpenRequestTime"])),
		TcpOpenResponseTime: timestampOf(cwmp.DateTime(v["TCPOpenResponseTime"])), TestBytes: bytes,
	}
	if t.BomTime != nil && t.EomTime != nil {
		if d := t.EomTime.AsTime().Sub(t.BomTime.AsTime()); d > 0 {
			t.ThroughputBps = uint64(float64(bytes) * 8 / d.Seconds())
		}
	}
	return t
}

// instances returns the instance numbers under table (relative names
// "<table><n>.<param>"), ascending.
func instances(v map[string]string, table string) []int {
	seen := map[int]bool{}
	for name := range v {
		rest, ok := strings.CutPrefix(name, table)
		if !ok {
			continue
		}
		num, _, ok := strings.Cut(rest, ".")
		if n, err := strconv.Atoi(num); ok && err == nil && n > 0 {
			seen[n] = true
		}
	}
	out := make([]int, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// splitList splits a comma-separated list value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
