package tasks

import (
	"fmt"
	"strings"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// Limits of a diagnostic's inputs (docs/tasks.md, "Diagnostics"): the
// ranges TR-181 and TR-098 give the parameters, and bounds of our own
// where they give none, so that a typo does not run a test for hours.
const (
	maxHost           = 256
	maxRepetitions    = 10000
	maxDiagTimeoutMs  = 3_600_000
	maxDataBlockSize  = 65535
	maxDSCP           = 63
	maxEthernetPrio   = 7
	maxTries          = 3
	maxHopCount       = 64
	maxConnections    = 64
	maxSelectionHosts = 10
)

// validateDiagnostic checks a diagnostic's inputs; field is its path in
// the request.
func validateDiagnostic(field string, d *tasksv1.Diagnostic) error {
	switch t := d.GetTest().(type) {
	case *tasksv1.Diagnostic_IpPing:
		p, f := t.IpPing, field+".ip_ping"
		return firstErr(
			checkHost(f+".host", p.GetHost(), true),
			checkRange(f+".repetitions", p.GetRepetitions(), maxRepetitions),
			checkRange(f+".timeout_ms", p.GetTimeoutMs(), maxDiagTimeoutMs),
			checkRange(f+".data_block_size", p.GetDataBlockSize(), maxDataBlockSize),
			checkMax(f+".dscp", p.GetDscp(), maxDSCP),
			checkPath(f+".interface", p.GetInterface(), true),
			checkProtocolVersion(f+".protocol_version", p.GetProtocolVersion()),
		)
	case *tasksv1.Diagnostic_TraceRoute:
		p, f := t.TraceRoute, field+".trace_route"
		return firstErr(
			checkHost(f+".host", p.GetHost(), true),
			checkRange(f+".tries", p.GetTries(), maxTries),
			checkRange(f+".timeout_ms", p.GetTimeoutMs(), maxDiagTimeoutMs),
			checkRange(f+".data_block_size", p.GetDataBlockSize(), maxDataBlockSize),
			checkMax(f+".dscp", p.GetDscp(), maxDSCP),
			checkRange(f+".max_hop_count", p.GetMaxHopCount(), maxHopCount),
			checkPath(f+".interface", p.GetInterface(), true),
			checkProtocolVersion(f+".protocol_version", p.GetProtocolVersion()),
		)
	case *tasksv1.Diagnostic_Download:
		return checkThroughput(field+".download", t.Download, false)
	case *tasksv1.Diagnostic_Upload:
		return checkThroughput(field+".upload", t.Upload, true)
	case *tasksv1.Diagnostic_NsLookup:
		p, f := t.NsLookup, field+".ns_lookup"
		return firstErr(
			checkHost(f+".host_name", p.GetHostName(), true),
			checkHost(f+".dns_server", p.GetDnsServer(), false),
			checkRange(f+".timeout_ms", p.GetTimeoutMs(), maxDiagTimeoutMs),
			checkRange(f+".repetitions", p.GetRepetitions(), maxRepetitions),
			checkPath(f+".interface", p.GetInterface(), true),
		)
	case *tasksv1.Diagnostic_ServerSelection:
		p, f := t.ServerSelection, field+".server_selection"
		hs := p.GetHosts()
		if len(hs) == 0 || len(hs) > maxSelectionHosts {
			return badField(f+".hosts", fmt.Sprintf("1 to %d hosts", maxSelectionHosts))
		}
		for i, h := range hs {
			if err := checkHost(fmt.Sprintf("%s.hosts[%d]", f, i), h, true); err != nil {
				return err
			}
			if strings.Contains(h, ",") {
				return badField(fmt.Sprintf("%s.hosts[%d]", f, i), "not a host name or address")
			}
		}
		if pr := p.GetProtocol(); pr != "" && pr != "ICMP" && pr != "UDP Echo" {
			return badField(f+".protocol", `"ICMP" or "UDP Echo"`)
		}
		return firstErr(
			checkRange(f+".repetitions", p.GetRepetitions(), maxRepetitions),
			checkRange(f+".timeout_ms", p.GetTimeoutMs(), maxDiagTimeoutMs),
			checkPath(f+".interface", p.GetInterface(), true),
			checkProtocolVersion(f+".protocol_version", p.GetProtocolVersion()),
		)
	}
	return badField(field, "exactly one test must be set")
}

func checkThroughput(f string, p *tasksv1.ThroughputTest, upload bool) error {
	if err := checkURL(f+".url", p.GetUrl(), true); err != nil {
		return err
	}
	scheme, _, _ := strings.Cut(p.GetUrl(), "://")
	switch strings.ToLower(scheme) {
	case "http", "https", "ftp":
	default:
		return badField(f+".url", "an http, https or ftp URL")
	}
	if upload && p.GetTestFileLength() == 0 {
		return badField(f+".test_file_length", "must be at least 1")
	}
	if !upload && p.GetTestFileLength() != 0 {
		return badField(f+".test_file_length", "only an upload sends a test file")
	}
	return firstErr(
		checkMax(f+".dscp", p.GetDscp(), maxDSCP),
		checkMax(f+".ethernet_priority", p.GetEthernetPriority(), maxEthernetPrio),
		checkPath(f+".interface", p.GetInterface(), true),
		checkProtocolVersion(f+".protocol_version", p.GetProtocolVersion()),
		checkRange(f+".number_of_connections", p.GetNumberOfConnections(), maxConnections),
	)
}

// checkHost checks a host name or address: printable, without spaces, at
// most 256 characters.
func checkHost(field, h string, required bool) error {
	switch {
	case h == "" && required:
		return badField(field, "must not be empty")
	case len(h) > maxHost:
		return badField(field, fmt.Sprintf("longer than %d characters", maxHost))
	case strings.ContainsAny(h, " \t/") || !printable(h):
		return badField(field, "not a host name or address")
	}
	return nil
}

// checkRange checks an optional count: 0 (the CPE's own) or 1 to max.
func checkRange(field string, v, max uint32) error {
	if v > max {
		return badField(field, fmt.Sprintf("1 to %d, or 0 for the CPE's default", max))
	}
	return nil
}

func checkMax(field string, v, max uint32) error {
	if v > max {
		return badField(field, fmt.Sprintf("0 to %d", max))
	}
	return nil
}

func checkProtocolVersion(field, v string) error {
	switch v {
	case "", "Any", "IPv4", "IPv6":
		return nil
	}
	return badField(field, `"Any", "IPv4" or "IPv6"`)
}
