package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// diagnoseCommand is `fleetctl diagnose`: a diagnostic task (TR-143) with
// its inputs as flags, and its typed results printed.
func diagnoseCommand() *Command {
	return &Command{
		Name: "diagnose", Args: "DEVICE_ID TEST TARGET...", Short: "run a diagnostic test on a device",
		Long: "Run a diagnostic test on DEVICE_ID as a task (docs/tasks.md, \"Diagnostics\"): the device\n" +
			"runs it after its session and informs 8 DIAGNOSTICS COMPLETE, then its results are read.\n" +
			"Tests and their TARGET:\n" +
			"  ping HOST               IPPing (-count, -test-timeout, -size, -dscp)\n" +
			"  traceroute HOST         TraceRoute (-tries, -test-timeout, -size, -dscp, -max-hops)\n" +
			"  download URL            DownloadDiagnostics: throughput (-connections, -dscp)\n" +
			"  upload URL              UploadDiagnostics: throughput (-length, -connections, -dscp)\n" +
			"  nslookup HOST           NSLookupDiagnostics, TR-181 only (-dns-server, -count, -test-timeout)\n" +
			"  server-selection HOST...  ServerSelectionDiagnostics, TR-181 only (-protocol, -count, -test-timeout)\n" +
			"Every test takes -interface and -protocol-version (TR-181 only); unset inputs take the\n" +
			"device's defaults. -wait D waits for the results (add -connection-request to start at\n" +
			"once); -deadline D is how long the task waits for the device to finish (default 10m).\n" +
			"Exit status: 0 when created (with -wait: when it ended done); 1 when -wait ends with\n" +
			"the task in another state (a test that failed on the device ends in fault) or not\n" +
			"ended; 2 on a usage error. Output (-o): text (default) or json (as tasks create).\n" +
			"Example: fleetctl diagnose DEV ping 192.0.2.1 -count 5 -connection-request -wait 60s",
		Setup: setupDiagnose,
	}
}

type diagnoseOptions struct {
	createOptions
	count, tries, size, dscp, maxHops, connections uint
	testTimeout, deadline                          time.Duration
	length                                         uint64
	iface, protocolVersion, dnsServer, protocol    string
}

// diagnoseFlags says which test takes which test flag.
var diagnoseFlags = map[string][]string{
	"ping":             {"count", "test-timeout", "size", "dscp"},
	"traceroute":       {"tries", "test-timeout", "size", "dscp", "max-hops"},
	"download":         {"connections", "dscp"},
	"upload":           {"length", "connections", "dscp"},
	"nslookup":         {"dns-server", "count", "test-timeout"},
	"server-selection": {"protocol", "count", "test-timeout"},
}

var testFlags = []string{"count", "tries", "size", "dscp", "max-hops", "connections", "test-timeout", "length", "dns-server", "protocol"}

func setupDiagnose(fs *flag.FlagSet) RunFunc {
	o := &diagnoseOptions{}
	o.taskFlags.register(fs, "text,json")
	fs.BoolVar(&o.connectionRequest, "connection-request", false, "wake the device now with a connection request")
	fs.DurationVar(&o.wait, "wait", 0, "wait up to this `duration` for the results")
	fs.DurationVar(&o.deadline, "deadline", 0, "how long the task waits for the device to finish the test once it took it\n(`duration`, whole seconds; default: the server's, 10m)")
	fs.UintVar(&o.count, "count", 0, "ping, nslookup, server-selection: repetitions (`n`)")
	fs.UintVar(&o.tries, "tries", 0, "traceroute: tries per hop (`n`, 1 to 3)")
	fs.UintVar(&o.size, "size", 0, "ping, traceroute: data block size in `bytes`")
	fs.UintVar(&o.dscp, "dscp", 0, "DSCP of the test's packets (`0-63`)")
	fs.UintVar(&o.maxHops, "max-hops", 0, "traceroute: maximum hop count (`n`, 1 to 64)")
	fs.UintVar(&o.connections, "connections", 0, "download, upload: TCP connections (`n`, TR-181 only)")
	fs.DurationVar(&o.testTimeout, "test-timeout", 0, "ping, traceroute, nslookup, server-selection: the test's own timeout\n(`duration`, millisecond resolution; per try for traceroute)")
	fs.Uint64Var(&o.length, "length", 1<<20, "upload: `bytes` to send")
	fs.StringVar(&o.iface, "interface", "", "`path` of the interface to test from (default: the device's routing)")
	fs.StringVar(&o.protocolVersion, "protocol-version", "", "Any, IPv4 or IPv6 (TR-181 only)")
	fs.StringVar(&o.dnsServer, "dns-server", "", "nslookup: the DNS `server` to ask (default: the device's)")
	fs.StringVar(&o.protocol, "protocol", "", "server-selection: ICMP or \"UDP Echo\"")
	return func(ctx context.Context, env *Env, args []string) error {
		pos, err := interspersedArgs(fs, args)
		if err != nil {
			return err
		}
		if err := o.checkOutput("text,json"); err != nil {
			return err
		}
		if len(pos) < 3 {
			return Usagef("want DEVICE_ID TEST TARGET (tests: ping, traceroute, download, upload, nslookup, server-selection)")
		}
		test := pos[1]
		allowed, ok := diagnoseFlags[test]
		if !ok {
			return Usagef("unknown test %q (tests: ping, traceroute, download, upload, nslookup, server-selection)", test)
		}
		var stray []string
		fs.Visit(func(f *flag.Flag) {
			if containsString(testFlags, f.Name) && !containsString(allowed, f.Name) {
				stray = append(stray, "-"+f.Name)
			}
		})
		if len(stray) > 0 {
			return Usagef("%s does not take %s", test, strings.Join(stray, ", "))
		}
		d, err := o.diagnostic(test, pos[2:])
		if err != nil {
			return Usagef("%s: %v", test, err)
		}
		if o.wait < 0 || o.wait > 24*time.Hour {
			return Usagef("-wait must be 0 to 24h, got %s", o.wait)
		}
		if o.deadline < 0 || o.deadline%time.Second != 0 || o.deadline > 7*24*time.Hour {
			return Usagef("-deadline must be whole seconds up to 168h, got %s", o.deadline)
		}
		o.what = "diagnose"
		req := &tasksv1.CreateTaskRequest{Tenant: o.tenant, DeviceId: pos[0],
			Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_Diagnostic{Diagnostic: d}},
			Options:   &tasksv1.TaskOptions{ConnectionRequest: o.connectionRequest, AwaitTimeoutSeconds: uint32(o.deadline / time.Second)}}
		return tasksCreate(ctx, env, &o.createOptions, req)
	}
}

// diagnostic builds the test from its target arguments and flags. Ranges
// are the server's to check (it names the field); here only what does
// not fit the message.
func (o *diagnoseOptions) diagnostic(test string, targets []string) (*tasksv1.Diagnostic, error) {
	if test != "server-selection" && len(targets) != 1 {
		return nil, fmt.Errorf("want one target, got %d", len(targets))
	}
	if o.testTimeout < 0 || o.testTimeout > time.Hour {
		return nil, fmt.Errorf("-test-timeout must be 0 to 1h, got %s", o.testTimeout)
	}
	for name, v := range map[string]uint{"count": o.count, "tries": o.tries, "size": o.size, "dscp": o.dscp, "max-hops": o.maxHops, "connections": o.connections} {
		if v > 1<<31 {
			return nil, fmt.Errorf("-%s %d is out of range", name, v)
		}
	}
	ms := uint32(o.testTimeout / time.Millisecond)
	switch test {
	case "ping":
		return &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_IpPing{IpPing: &tasksv1.IPPingTest{Host: targets[0], Repetitions: uint32(o.count),
			TimeoutMs: ms, DataBlockSize: uint32(o.size), Dscp: uint32(o.dscp), Interface: o.iface, ProtocolVersion: o.protocolVersion}}}, nil
	case "traceroute":
		return &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_TraceRoute{TraceRoute: &tasksv1.TraceRouteTest{Host: targets[0], Tries: uint32(o.tries),
			TimeoutMs: ms, DataBlockSize: uint32(o.size), Dscp: uint32(o.dscp), MaxHopCount: uint32(o.maxHops), Interface: o.iface,
			ProtocolVersion: o.protocolVersion}}}, nil
	case "download":
		return &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_Download{Download: &tasksv1.ThroughputTest{Url: targets[0], Dscp: uint32(o.dscp),
			Interface: o.iface, ProtocolVersion: o.protocolVersion, NumberOfConnections: uint32(o.connections)}}}, nil
	case "upload":
		return &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_Upload{Upload: &tasksv1.ThroughputTest{Url: targets[0], TestFileLength: o.length,
			Dscp: uint32(o.dscp), Interface: o.iface, ProtocolVersion: o.protocolVersion, NumberOfConnections: uint32(o.connections)}}}, nil
	case "nslookup":
		return &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_NsLookup{NsLookup: &tasksv1.NSLookupTest{HostName: targets[0], DnsServer: o.dnsServer,
			TimeoutMs: ms, Repetitions: uint32(o.count), Interface: o.iface}}}, nil
	case "server-selection":
		if len(targets) == 0 {
			return nil, fmt.Errorf("want at least one HOST")
		}
		return &tasksv1.Diagnostic{Test: &tasksv1.Diagnostic_ServerSelection{ServerSelection: &tasksv1.ServerSelectionTest{Hosts: targets,
			Protocol: o.protocol, Repetitions: uint32(o.count), TimeoutMs: ms, Interface: o.iface, ProtocolVersion: o.protocolVersion}}}, nil
	}
	return nil, fmt.Errorf("unknown test")
}

// writeDiagnostic prints a diagnostic's typed results, one fact a line.
func writeDiagnostic(w io.Writer, r *tasksv1.DiagnosticResult) {
	from := ""
	if a := r.GetIpAddressUsed(); a != "" {
		from = " from " + a
	}
	fmt.Fprintf(w, "  %s %s%s\n", r.GetObject(), r.GetState(), from)
	switch k := r.GetKind().(type) {
	case *tasksv1.DiagnosticResult_IpPing:
		p := k.IpPing
		fmt.Fprintf(w, "  %d sent, %d received, %d lost\n", p.GetSuccessCount()+p.GetFailureCount(), p.GetSuccessCount(), p.GetFailureCount())
		if p.GetAverageResponseTimeUs() > 0 {
			fmt.Fprintf(w, "  rtt min/avg/max %s/%s/%s ms\n", micros(p.GetMinimumResponseTimeUs()), micros(p.GetAverageResponseTimeUs()), micros(p.GetMaximumResponseTimeUs()))
		} else {
			fmt.Fprintf(w, "  rtt min/avg/max %d/%d/%d ms\n", p.GetMinimumResponseTimeMs(), p.GetAverageResponseTimeMs(), p.GetMaximumResponseTimeMs())
		}
	case *tasksv1.DiagnosticResult_TraceRoute:
		t := k.TraceRoute
		fmt.Fprintf(w, "  %d hops, response time %d ms\n", len(t.GetHops()), t.GetResponseTimeMs())
		for i, h := range t.GetHops() {
			rtts := make([]string, len(h.GetRttMs()))
			for j, ms := range h.GetRttMs() {
				rtts[j] = strconv.FormatUint(uint64(ms), 10)
			}
			line := fmt.Sprintf("  %2d  %s", i+1, quoteIfNeeded(h.GetHost()))
			if h.GetAddress() != "" && h.GetAddress() != h.GetHost() {
				line += " (" + h.GetAddress() + ")"
			}
			if len(rtts) > 0 {
				line += "  " + strings.Join(rtts, " ") + " ms"
			}
			if h.GetErrorCode() != 0 {
				line += fmt.Sprintf("  error %d", h.GetErrorCode())
			}
			fmt.Fprintln(w, line)
		}
	case *tasksv1.DiagnosticResult_Download:
		writeThroughput(w, "received", k.Download)
	case *tasksv1.DiagnosticResult_Upload:
		writeThroughput(w, "sent", k.Upload)
	case *tasksv1.DiagnosticResult_NsLookup:
		ns := k.NsLookup
		fmt.Fprintf(w, "  %d of %d answered\n", ns.GetSuccessCount(), len(ns.GetAnswers()))
		for _, a := range ns.GetAnswers() {
			fmt.Fprintf(w, "  %s %s %s [%s] from %s in %d ms\n", a.GetStatus(), a.GetAnswerType(), quoteIfNeeded(a.GetHostNameReturned()),
				strings.Join(a.GetIpAddresses(), " "), a.GetDnsServerIp(), a.GetResponseTimeMs())
		}
	case *tasksv1.DiagnosticResult_ServerSelection:
		s := k.ServerSelection
		fmt.Fprintf(w, "  fastest %s: rtt min/avg/max %s/%s/%s ms\n", quoteIfNeeded(s.GetFastestHost()), micros(s.GetMinimumResponseTimeUs()),
			micros(s.GetAverageResponseTimeUs()), micros(s.GetMaximumResponseTimeUs()))
	}
}

func writeThroughput(w io.Writer, verb string, t *tasksv1.ThroughputResult) {
	line := fmt.Sprintf("  %d bytes %s", t.GetTestBytes(), verb)
	if t.GetBomTime() != nil && t.GetEomTime() != nil {
		line += fmt.Sprintf(" in %.3f s", t.GetEomTime().AsTime().Sub(t.GetBomTime().AsTime()).Seconds())
	}
	if bps := t.GetThroughputBps(); bps > 0 {
		line += fmt.Sprintf(": %.2f Mbit/s", float64(bps)/1e6)
	}
	fmt.Fprintln(w, line)
	if t.GetBomTime() != nil {
		fmt.Fprintf(w, "  BOM %s EOM %s\n", microTime(t.GetBomTime()), microTime(t.GetEomTime()))
	}
}

// microTime formats a test's time to the microsecond, TR-143's precision.
func microTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format("2006-01-02T15:04:05.000000Z")
}

// micros formats microseconds as milliseconds with three decimals.
func micros(us uint32) string { return fmt.Sprintf("%d.%03d", us/1000, us%1000) }
