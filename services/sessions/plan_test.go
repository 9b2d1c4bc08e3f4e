package sessions

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

func TestRemovedPaths(t *testing.T) {
	discovered := map[string]struct{}{}
	for _, n := range []string{
		"Device.", "Device.DeviceInfo.UpTime",
		// No object names below: some CPEs list none.
		"Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.10.SSID",
	} {
		discovered[n] = struct{}{}
	}
	stored := []string{
		"Device.DeviceInfo.UpTime",       // present
		"Device.DeviceInfo.Gone",         // parameter gone, object present
		"Device.WiFi.SSID.1.",            // present: a name lies under it
		"Device.WiFi.SSID.1.Enable",      // gone, object present
		"Device.WiFi.SSID.2.SSID",        // whole instance gone
		"Device.WiFi.SSID.2.Enable",      // ... same subtree
		"Device.WiFi.SSID.2.Stats.Bytes", // ... same subtree
		"Device.NAT.",                    // whole object gone
		"Device.NAT.PortMapping.1.Port",  // inside it
		"Device.",                        // the root is never removed
		"InternetGatewayDevice.X",        // outside the root: not ours to judge
	}
	got := removedPaths("Device.", stored, discovered)
	want := []string{"Device.DeviceInfo.Gone", "Device.NAT.", "Device.WiFi.SSID.1.Enable", "Device.WiFi.SSID.2."}
	if !slices.Equal(got, want) {
		t.Fatalf("removed %v, want %v", got, want)
	}
}

func gpnDone(key string, names ...string) *cwmp.RequestDone {
	resp := &cwmp.GetParameterNamesResponse{}
	for _, n := range names {
		resp.ParameterList = append(resp.ParameterList, cwmp.ParameterInfo{Name: n})
	}
	return &cwmp.RequestDone{Request: cwmp.Request{Key: key}, Response: resp}
}

func faultDone(key string, code cwmp.FaultCode) *cwmp.RequestDone {
	return &cwmp.RequestDone{Request: cwmp.Request{Key: key}, Fault: cwmp.NewFault(code)}
}

func TestPlanKeysAndRoots(t *testing.T) {
	p := &plan{Discovery: newDiscovery([]string{"Device.", "InternetGatewayDevice."}, nil, 2)}
	next := func() cwmp.Request {
		t.Helper()
		req, ok := p.NextRequest(nil)
		if !ok {
			t.Fatal("plan has no request")
		}
		return req
	}
	// NextRequest does not move the plan.
	if a, b := next(), next(); a.Key != b.Key || a.Key != "gpn Device." {
		t.Fatalf("keys %q, %q", a.Key, b.Key)
	}
	// The guessed root is refused: the other one is tried.
	if !p.apply(faultDone("gpn Device.", cwmp.FaultInvalidParameterName)) || next().Key != "gpn InternetGatewayDevice." {
		t.Fatal("second root not tried")
	}
	// A stale answer for the first root changes nothing.
	if p.apply(gpnDone("gpn Device.", "Device.X")) {
		t.Fatal("stale GetParameterNames answer applied")
	}
	root := "InternetGatewayDevice."
	if !p.apply(gpnDone("gpn "+root, root, root+"A", root+"B.", root+"B.C", root+"D", "Device.Stray")) {
		t.Fatal("names not applied")
	}
	req := next()
	gpv, ok := req.Message.(*cwmp.GetParameterValues)
	if !ok || req.Key != "gpv 0 2" || !slices.Equal(gpv.ParameterNames, []string{root + "A", root + "B.C"}) {
		t.Fatalf("first batch %q %v", req.Key, req.Message)
	}
	p.apply(&cwmp.RequestDone{Request: req, Response: &cwmp.GetParameterValuesResponse{ParameterList: []cwmp.ParameterValue{
		{Name: root + "A", Value: "1", Type: "xsd:int"}, {Name: root + "B.C", Value: "x", Type: "xsd:string"}}}})
	// Repeating the same answer is ignored (the cursor moved).
	if p.apply(&cwmp.RequestDone{Request: req, Response: &cwmp.GetParameterValuesResponse{}}) {
		t.Fatal("repeated answer applied")
	}
	if req := next(); req.Key != "gpv 2 1" {
		t.Fatalf("second batch %q", req.Key)
	}
	p.apply(faultDone("gpv 2 1", cwmp.FaultInvalidParameterName))
	if p.Discovery.Stage != stageDone || !slices.Equal(p.Discovery.Skipped, []string{root + "D"}) {
		t.Fatalf("stage %s skipped %v", p.Discovery.Stage, p.Discovery.Skipped)
	}
	if _, ok := p.NextRequest(nil); ok {
		t.Fatal("request after discovery")
	}

	// The plan survives a checkpoint round trip.
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back plan
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Discovery.Nodes) != 5 || back.Discovery.Nodes[1].Value != "1" || !back.Discovery.Nodes[1].HasValue {
		t.Fatalf("restored nodes %+v", back.Discovery.Nodes)
	}
}

func TestPlanFailsOnOtherFaults(t *testing.T) {
	p := &plan{Discovery: newDiscovery([]string{"Device."}, nil, 100)}
	p.apply(gpnDone("gpn Device.", "Device.A", "Device.B"))
	p.apply(faultDone("gpv 0 2", cwmp.FaultCPERequestDenied))
	if p.Discovery.Stage != stageFailed {
		t.Fatalf("stage %s after 9001", p.Discovery.Stage)
	}
	if _, ok := p.NextRequest(nil); ok {
		t.Fatal("request after a failed discovery")
	}
	fenced := &plan{Fenced: true, Discovery: newDiscovery([]string{"Device."}, nil, 100)}
	if _, ok := fenced.NextRequest(nil); ok {
		t.Fatal("a fenced plan asks for something")
	}
}

func TestConfig(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "sessions.advertise-addr") {
		t.Fatalf("defaults without an advertise address validate: %v", err)
	}
	c.AdvertiseAddr = "10.0.0.7:9300" // what fleetacs fills in from its gRPC server
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if c.DiscoveryBatchSize != 100 {
		t.Errorf("discovery batch size default %d", c.DiscoveryBatchSize)
	}
	c.MaxSessions, c.LeaseTTL, c.DiscoveryBatchSize = 0, 0, -1
	err := c.Validate()
	for _, name := range []string{"sessions.max-sessions", "sessions.lease-ttl", "sessions.discovery-batch-size"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Validate does not name %s: %v", name, err)
		}
	}
}
