package tasks

import (
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

func diag(d *tasksv1.Diagnostic) *tasksv1.Operation {
	return &tasksv1.Operation{Kind: &tasksv1.Operation_Diagnostic{Diagnostic: d}}
}

func ping(p *tasksv1.IPPingTest) *tasksv1.Operation {
	return diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_IpPing{IpPing: p}})
}

// Diagnostic inputs the CPE could not take are INVALID_ARGUMENT /
// INVALID_FIELD naming the field (in the BadRequest too); sound ones are
// queued, and a diagnostic takes await_timeout_seconds.
func TestCreateDiagnosticValidation(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := as(t.Context(), h.operator)
	f := "operation.diagnostic."
	for _, tt := range []struct {
		op    *tasksv1.Operation
		field string
	}{
		{diag(&tasksv1.Diagnostic{}), "operation.diagnostic"},
		{ping(&tasksv1.IPPingTest{}), f + "ip_ping.host"},
		{ping(&tasksv1.IPPingTest{Host: "two words"}), f + "ip_ping.host"},
		{ping(&tasksv1.IPPingTest{Host: strings.Repeat("h", 257)}), f + "ip_ping.host"},
		{ping(&tasksv1.IPPingTest{Host: "h", Repetitions: 10001}), f + "ip_ping.repetitions"},
		{ping(&tasksv1.IPPingTest{Host: "h", TimeoutMs: 3_600_001}), f + "ip_ping.timeout_ms"},
		{ping(&tasksv1.IPPingTest{Host: "h", DataBlockSize: 65536}), f + "ip_ping.data_block_size"},
		{ping(&tasksv1.IPPingTest{Host: "h", Dscp: 64}), f + "ip_ping.dscp"},
		{ping(&tasksv1.IPPingTest{Host: "h", Interface: "Device.IP.Interface 1"}), f + "ip_ping.interface"},
		{ping(&tasksv1.IPPingTest{Host: "h", ProtocolVersion: "IPv5"}), f + "ip_ping.protocol_version"},
		{diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_TraceRoute{TraceRoute: &tasksv1.TraceRouteTest{Host: "h", Tries: 4}}}), f + "trace_route.tries"},
		{diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_TraceRoute{TraceRoute: &tasksv1.TraceRouteTest{Host: "h", MaxHopCount: 65}}}), f + "trace_route.max_hop_count"},
		{diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_Download{Download: &tasksv1.ThroughputTest{}}}), f + "download.url"},
		{diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_Download{Download: &tasksv1.ThroughputTest{Url: "gopher://x/"}}}), f + "download.url"},
		{diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_Download{Download: &tasksv1.ThroughputTest{Url: "http://x/", TestFileLength: 5}}}), f + "download.test_file_length"},
		{diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_Download{Download: &tasksv1.ThroughputTest{Url: "http://x/", EthernetPriority: 8}}}), f + "download.ethernet_priority"},
		{diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_Upload{Upload: &tasksv1.ThroughputTest{Url: "ftp://x/"}}}), f + "upload.test_file_length"},
		{diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_Upload{Upload: &tasksv1.ThroughputTest{Url: "ftp://x/", TestFileLength: 1, NumberOfConnections: 65}}}), f + "upload.number_of_connections"},
		{diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_NsLookup{NsLookup: &tasksv1.NSLookupTest{}}}), f + "ns_lookup.host_name"},
		{diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_NsLookup{NsLookup: &tasksv1.NSLookupTest{HostName: "h", DnsServer: "a b"}}}), f + "ns_lookup.dns_server"},
		{diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_ServerSelection{ServerSelection: &tasksv1.ServerSelectionTest{}}}), f + "server_selection.hosts"},
		{diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_ServerSelection{ServerSelection: &tasksv1.ServerSelectionTest{Hosts: make([]string, 11)}}}), f + "server_selection.hosts"},
		{diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_ServerSelection{ServerSelection: &tasksv1.ServerSelectionTest{Hosts: []string{"a", "b,c"}}}}), f + "server_selection.hosts[1]"},
		{diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_ServerSelection{ServerSelection: &tasksv1.ServerSelectionTest{Hosts: []string{"a"}, Protocol: "TCP"}}}), f + "server_selection.protocol"},
	} {
		_, err := h.public.CreateTask(ctx, &tasksv1.CreateTaskRequest{DeviceId: dev1, Operation: tt.op})
		wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
		var field string
		for _, d := range status.Convert(err).Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 {
				field = br.GetFieldViolations()[0].GetField()
			}
		}
		if field != tt.field || !strings.HasPrefix(status.Convert(err).Message(), tt.field+": ") {
			t.Errorf("%v: field %q, message %q; want %s", tt.op, field, status.Convert(err).Message(), tt.field)
		}
	}
	if got := h.queueIDs(t, "default", dev1); len(got) != 0 {
		t.Fatalf("refused diagnostics queued %d messages", len(got))
	}
	ok := []*tasksv1.Operation{
		ping(&tasksv1.IPPingTest{Host: "192.0.2.1", Repetitions: 5, TimeoutMs: 1000, DataBlockSize: 64, Dscp: 46, ProtocolVersion: "IPv4"}),
		diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_Upload{Upload: &tasksv1.ThroughputTest{Url: "HTTPS://speed.example/up", TestFileLength: 1 << 20}}}),
		diag(&tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_ServerSelection{ServerSelection: &tasksv1.ServerSelectionTest{Hosts: []string{"a.example", "2001:db8::1"}, Protocol: "UDP Echo"}}}),
	}
	for _, op := range ok {
		resp, err := h.public.CreateTask(ctx, &tasksv1.CreateTaskRequest{DeviceId: dev1, Operation: op, Options: &tasksv1.TaskOptions{AwaitTimeoutSeconds: 30}})
		if err != nil {
			t.Fatalf("%v refused: %v", op, err)
		}
		if resp.GetTask().GetOptions().GetAwaitTimeoutSeconds() != 30 {
			t.Errorf("options %v", resp.GetTask().GetOptions())
		}
	}
}
