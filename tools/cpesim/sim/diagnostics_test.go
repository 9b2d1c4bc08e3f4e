package sim

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// diagDevice is a device of model with helpers to request a diagnostic
// and run it as the scheduler would once the session is over.
type diagDevice struct {
	t *testing.T
	d *Device
}

func newDiagDevice(t *testing.T, cfg Config) diagDevice {
	t.Helper()
	if cfg.Devices == 0 {
		cfg.Devices = 1
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return diagDevice{t: t, d: s.Devices()[0]}
}

// request sets values (name relative to obj -> value, typed by the
// model) and returns how many after-session actions the device queued.
func (dd diagDevice) request(obj string, values ...string) int {
	dd.t.Helper()
	m := &cwmp.SetParameterValues{ParameterKey: "k1"}
	for i := 0; i < len(values); i += 2 {
		n, ok := dd.d.tree.lookup(obj + values[i])
		if !ok {
			dd.t.Fatalf("no parameter %s%s", obj, values[i])
		}
		m.ParameterList = append(m.ParameterList, cwmp.ParameterValue{Name: obj + values[i], Value: values[i+1], Type: n.param.Type})
	}
	if _, ok := dd.d.handle(m, cwmp.V1_4, time.Now()).(*cwmp.SetParameterValuesResponse); !ok {
		dd.t.Fatalf("SetParameterValues of %v refused", values)
	}
	dd.d.mu.Lock()
	defer dd.d.mu.Unlock()
	n := len(dd.d.after)
	dd.d.after = nil
	return n
}

func (dd diagDevice) run(obj string) {
	dd.d.mu.Lock()
	dd.d.runDiagnosticLocked(obj, time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	dd.d.mu.Unlock()
}

func (dd diagDevice) get(name string) string {
	dd.t.Helper()
	v, ok := dd.d.Param(name)
	if !ok {
		dd.t.Fatalf("no parameter %s", name)
	}
	return v.Value
}

func (dd diagDevice) uint(name string) uint64 {
	dd.t.Helper()
	n, err := strconv.ParseUint(dd.get(name), 10, 64)
	if err != nil {
		dd.t.Fatalf("%s: %v", name, err)
	}
	return n
}

func TestDiagnosticIPPing(t *testing.T) {
	dd := newDiagDevice(t, Config{Devices: 2, Diagnostics: true})
	const obj = "Device.IP.Diagnostics.IPPing."
	if n := dd.request(obj, "Host", "example.com", "NumberOfRepetitions", "5", "DiagnosticsState", "Requested"); n != 1 {
		t.Fatalf("%d actions queued after the session, want 1 (the test)", n)
	}
	if got := dd.get(obj + "DiagnosticsState"); got != "Requested" {
		t.Errorf("state during the session %q", got)
	}
	if containsEvent(dd.d.PendingEvents(), evDiagnosticsComplete, "") {
		t.Error("8 DIAGNOSTICS COMPLETE before the test ran")
	}
	dd.run(obj)
	if got := dd.get(obj + "DiagnosticsState"); got != "Complete" {
		t.Errorf("state %q, want Complete", got)
	}
	if !containsEvent(dd.d.PendingEvents(), evDiagnosticsComplete, "") {
		t.Errorf("events %v lack 8 DIAGNOSTICS COMPLETE", dd.d.PendingEvents())
	}
	ok, fail := dd.uint(obj+"SuccessCount"), dd.uint(obj+"FailureCount")
	lo, avg, hi := dd.uint(obj+"MinimumResponseTimeDetailed"), dd.uint(obj+"AverageResponseTimeDetailed"), dd.uint(obj+"MaximumResponseTimeDetailed")
	if ok != 5 || fail != 0 || lo == 0 || lo > avg || avg > hi || dd.uint(obj+"AverageResponseTime") != (avg+500)/1000 {
		t.Errorf("ok %d fail %d min/avg/max %d/%d/%d us", ok, fail, lo, avg, hi)
	}

	// The same inputs give the same results on another device.
	other := diagDevice{t: t, d: dd.d.sim.Devices()[1]}
	other.request(obj, "Host", "example.com", "NumberOfRepetitions", "5", "DiagnosticsState", "Requested")
	other.run(obj)
	if other.uint(obj+"AverageResponseTimeDetailed") != avg {
		t.Error("results differ between devices for the same inputs")
	}

	// A host that does not resolve, one that never answers.
	dd.request(obj, "Host", "nowhere.invalid", "DiagnosticsState", "Requested")
	dd.run(obj)
	if got := dd.get(obj + "DiagnosticsState"); got != "Error_CannotResolveHostName" {
		t.Errorf("unresolvable host: state %q", got)
	}
	dd.request(obj, "Host", "192.0.2.7", "NumberOfRepetitions", "3", "DiagnosticsState", "Requested")
	dd.run(obj)
	if dd.get(obj+"DiagnosticsState") != "Complete" || dd.uint(obj+"SuccessCount") != 0 || dd.uint(obj+"FailureCount") != 3 {
		t.Errorf("silent host: state %s, %s ok, %s failed", dd.get(obj+"DiagnosticsState"), dd.get(obj+"SuccessCount"), dd.get(obj+"FailureCount"))
	}

	// Changing an input without requesting a test resets the state, and a
	// test cancelled so does not run.
	dd.request(obj, "Host", "example.com", "DiagnosticsState", "Requested")
	if n := dd.request(obj, "Host", "example.org"); n != 0 {
		t.Errorf("setting an input queued %d actions", n)
	}
	if got := dd.get(obj + "DiagnosticsState"); got != "None" {
		t.Errorf("state after an input changed %q, want None", got)
	}
	dd.run(obj)
	if got := dd.get(obj + "DiagnosticsState"); got != "None" {
		t.Errorf("a cancelled test ran: state %q", got)
	}
}

func TestDiagnosticTraceRoute(t *testing.T) {
	for _, model := range []DataModel{TR181, TR098} {
		t.Run(string(model), func(t *testing.T) {
			dd := newDiagDevice(t, Config{Model: model, Diagnostics: true})
			obj, hop := "Device.IP.Diagnostics.TraceRoute.", "Host"
			if model == TR098 {
				obj, hop = "InternetGatewayDevice.TraceRouteDiagnostics.", "HopHost"
			}
			dd.request(obj, "Host", "example.net", "NumberOfTries", "2", "DiagnosticsState", "Requested")
			dd.run(obj)
			hops := dd.uint(obj + "RouteHopsNumberOfEntries")
			if dd.get(obj+"DiagnosticsState") != "Complete" || hops < 3 || hops > 8 {
				t.Fatalf("state %s, %d hops", dd.get(obj+"DiagnosticsState"), hops)
			}
			last := obj + "RouteHops." + strconv.FormatUint(hops, 10) + "."
			if got := dd.get(last + hop); got != "example.net" {
				t.Errorf("last hop %q, want the target", got)
			}
			if rtts := strings.Split(dd.get(last+strings.TrimSuffix(hop, "Host")+"RTTimes"), ","); len(rtts) != 2 {
				t.Errorf("RTTimes %v, want one per try", rtts)
			}
			// A second run with fewer hops allowed replaces the table.
			dd.request(obj, "Host", "example.net", "MaxHopCount", "2", "DiagnosticsState", "Requested")
			dd.run(obj)
			if dd.get(obj+"DiagnosticsState") != "Error_MaxHopCountExceeded" || dd.uint(obj+"RouteHopsNumberOfEntries") != 2 {
				t.Errorf("state %s, %s hops", dd.get(obj+"DiagnosticsState"), dd.get(obj+"RouteHopsNumberOfEntries"))
			}
			if _, ok := dd.d.Param(obj + "RouteHops.3." + hop); ok {
				t.Error("a hop of the earlier run is left")
			}
		})
	}
}

func TestDiagnosticThroughput(t *testing.T) {
	for _, model := range []DataModel{TR181, TR098} {
		t.Run(string(model), func(t *testing.T) {
			dd := newDiagDevice(t, Config{Model: model, Diagnostics: true})
			root, done := "Device.IP.Diagnostics.", "Complete"
			if model == TR098 {
				root, done = "InternetGatewayDevice.", "Completed"
			}
			down := root + "DownloadDiagnostics."
			dd.request(down, "DownloadURL", "http://speed.example/10MB", "DiagnosticsState", "Requested")
			dd.run(down)
			bom, err1 := cwmp.DateTime(dd.get(down + "BOMTime")).Time()
			eom, err2 := cwmp.DateTime(dd.get(down + "EOMTime")).Time()
			rom, err3 := cwmp.DateTime(dd.get(down + "ROMTime")).Time()
			bytes := dd.uint(down + "TestBytesReceived")
			if dd.get(down+"DiagnosticsState") != done || err1 != nil || err2 != nil || err3 != nil || !rom.Before(bom) || !bom.Before(eom) || bytes < 1<<20 {
				t.Fatalf("download: state %s, ROM %v BOM %v EOM %v, %d bytes", dd.get(down+"DiagnosticsState"), rom, bom, eom, bytes)
			}
			if mbps := float64(bytes) * 8 / eom.Sub(bom).Seconds() / 1e6; mbps < 40 || mbps > 510 {
				t.Errorf("download at %.0f Mbit/s", mbps)
			}
			up := root + "UploadDiagnostics."
			dd.request(up, "UploadURL", "http://speed.example/up", "TestFileLength", "2000000", "DiagnosticsState", "Requested")
			dd.run(up)
			if dd.get(up+"DiagnosticsState") != done || dd.uint(up+"TotalBytesSent") < 2000000 {
				t.Errorf("upload: state %s, %s bytes sent", dd.get(up+"DiagnosticsState"), dd.get(up+"TotalBytesSent"))
			}
		})
	}
}

func TestDiagnosticNSLookupAndServerSelection(t *testing.T) {
	dd := newDiagDevice(t, Config{Diagnostics: true})
	ns := "Device.DNS.Diagnostics.NSLookupDiagnostics."
	dd.request(ns, "HostName", "example.com", "NumberOfRepetitions", "2", "DiagnosticsState", "Requested")
	dd.run(ns)
	if dd.get(ns+"DiagnosticsState") != "Complete" || dd.uint(ns+"SuccessCount") != 2 || dd.uint(ns+"ResultNumberOfEntries") != 2 ||
		dd.get(ns+"Result.1.Status") != "Success" || !strings.HasPrefix(dd.get(ns+"Result.2.IPAddresses"), "203.0.113.") {
		t.Errorf("nslookup: state %s, %s ok, result 1 %s", dd.get(ns+"DiagnosticsState"), dd.get(ns+"SuccessCount"), dd.get(ns+"Result.1.Status"))
	}
	dd.request(ns, "HostName", "x.invalid", "DiagnosticsState", "Requested")
	dd.run(ns)
	if dd.uint(ns+"SuccessCount") != 0 || dd.uint(ns+"ResultNumberOfEntries") != 2 || dd.get(ns+"Result.1.Status") != "Error_HostNameNotResolved" {
		t.Errorf("nslookup of an unresolvable name: %s ok, %s", dd.get(ns+"SuccessCount"), dd.get(ns+"Result.1.Status"))
	}
	ss := "Device.IP.Diagnostics.ServerSelectionDiagnostics."
	dd.request(ss, "HostList", "a.example,b.example,c.invalid", "DiagnosticsState", "Requested")
	dd.run(ss)
	fastest := dd.get(ss + "FastestHost")
	if dd.get(ss+"DiagnosticsState") != "Complete" || (fastest != "a.example" && fastest != "b.example") ||
		dd.uint(ss+"MinimumResponseTime") > dd.uint(ss+"AverageResponseTime") {
		t.Errorf("server selection: state %s, fastest %q", dd.get(ss+"DiagnosticsState"), fastest)
	}
}

func TestDiagnosticsStall(t *testing.T) {
	dd := newDiagDevice(t, Config{Diagnostics: true, StallDiagnostics: true})
	const obj = "Device.IP.Diagnostics.IPPing."
	if n := dd.request(obj, "Host", "example.com", "DiagnosticsState", "Requested"); n != 0 {
		t.Errorf("a stalled device queued %d actions", n)
	}
	if got := dd.get(obj + "DiagnosticsState"); got != "Requested" {
		t.Errorf("state %q", got)
	}
}

// Without Config.Diagnostics the objects are not there: the request is
// refused with 9005 for the parameter, as a CPE without the feature does.
func TestDiagnosticsOff(t *testing.T) {
	dd := newDiagDevice(t, Config{})
	m := &cwmp.SetParameterValues{ParameterList: []cwmp.ParameterValue{
		{Name: "Device.IP.Diagnostics.IPPing.Host", Value: "example.com", Type: "xsd:string"},
		{Name: "Device.IP.Diagnostics.IPPing.DiagnosticsState", Value: "Requested", Type: "xsd:string"}}}
	f, ok := dd.d.handle(m, cwmp.V1_4, time.Now()).(*cwmp.Fault)
	if !ok || f.Code != cwmp.FaultCPEInvalidArguments || len(f.SetParameterValuesFaults) != 2 || f.SetParameterValuesFaults[0].FaultCode != cwmp.FaultInvalidParameterName {
		t.Fatalf("answer %+v", f)
	}
}
