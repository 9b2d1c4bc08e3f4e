package sim

import (
	"fmt"
	"hash/fnv"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Diagnostics (TR-143 in TR-181 and TR-098; docs/tasks.md, "Diagnostics"):
// when the ACS sets a diagnostic object's DiagnosticsState to "Requested",
// the device runs the test after the session (DiagnosticTime), sets the
// result parameters and DiagnosticsState, and informs
// "8 DIAGNOSTICS COMPLETE". Nothing goes on the network: the results are
// derived from the inputs, deterministic and plausible (a host's
// round-trip times from a hash of its name). Hosts under ".invalid" (RFC
// 6761) do not resolve; hosts in 192.0.2.0/24 (TEST-NET-1) never answer a
// ping.

const evDiagnosticsComplete = "8 DIAGNOSTICS COMPLETE"

// diagnosticTest names the test of a diagnostic object path, "" when the
// path is not one.
func diagnosticTest(object string) string {
	switch {
	case strings.HasSuffix(object, ".IPPing."), strings.HasSuffix(object, ".IPPingDiagnostics."):
		return "ping"
	case strings.HasSuffix(object, ".TraceRoute."), strings.HasSuffix(object, ".TraceRouteDiagnostics."):
		return "traceroute"
	case strings.HasSuffix(object, ".DownloadDiagnostics."):
		return "download"
	case strings.HasSuffix(object, ".UploadDiagnostics."):
		return "upload"
	case strings.HasSuffix(object, ".NSLookupDiagnostics."):
		return "nslookup"
	case strings.HasSuffix(object, ".ServerSelectionDiagnostics."):
		return "serverselection"
	}
	return ""
}

// diagnosticsSetLocked follows a successful SetParameterValues: a
// diagnostic whose state was set to "Requested" starts after the session;
// one whose inputs were set without that goes back to "None" (TR-181:
// changing an input cancels a test and resets its results' validity).
func (d *Device) diagnosticsSetLocked(names []string, values []string) {
	requested := map[string]bool{}
	touched := map[string]bool{}
	for i, name := range names {
		dot := strings.LastIndexByte(name, '.')
		obj, param := name[:dot+1], name[dot+1:]
		if diagnosticTest(obj) == "" {
			continue
		}
		touched[obj] = true
		if param == "DiagnosticsState" && values[i] == "Requested" {
			requested[obj] = true
		}
	}
	for obj := range touched {
		if !requested[obj] {
			d.setValueLocked(obj+"DiagnosticsState", "None")
			continue
		}
		if d.sim.cfg.StallDiagnostics {
			continue
		}
		delay := d.sim.cfg.DiagnosticTime
		d.after = append(d.after, func(now time.Time) {
			d.sim.sched.addWakeup(d, now.Add(delay), func(now time.Time) { d.runDiagnosticLocked(obj, now) })
		})
	}
}

// runDiagnosticLocked runs a requested test (d.mu held): results, state,
// and the event that makes the device inform.
func (d *Device) runDiagnosticLocked(obj string, now time.Time) {
	if d.paramValueLocked(obj+"DiagnosticsState", "") != "Requested" {
		return // cancelled or replaced since
	}
	r := diagRun{d: d, obj: obj, now: now, tr098: d.tree.root.name == "InternetGatewayDevice."}
	var state string
	switch diagnosticTest(obj) {
	case "ping":
		state = r.ping()
	case "traceroute":
		state = r.traceroute()
	case "download":
		state = r.throughput(true)
	case "upload":
		state = r.throughput(false)
	case "nslookup":
		state = r.nslookup()
	case "serverselection":
		state = r.serverSelection()
	default:
		return
	}
	d.setValueLocked(obj+"DiagnosticsState", state)
	d.addEvent(evDiagnosticsComplete, "")
}

// diagRun is one test being run.
type diagRun struct {
	d     *Device
	obj   string
	now   time.Time
	tr098 bool
}

// in reads an input as the ACS set it ("" when it set none: the
// template's values are not inputs).
func (r *diagRun) in(name string) string { return r.d.vals[r.obj+name] }

// count reads an unsignedInt input, def when unset or 0.
func (r *diagRun) count(name string, def uint64) uint64 {
	n, err := strconv.ParseUint(r.in(name), 10, 64)
	if err != nil || n == 0 {
		return def
	}
	return n
}

// set stores a result parameter the model has.
func (r *diagRun) set(name, v string) {
	if n, ok := r.d.tree.lookup(r.obj + name); ok && n.kind == kindParam {
		r.d.setValueLocked(r.obj+name, v)
	}
}

func (r *diagRun) setUint(name string, v uint64) { r.set(name, strconv.FormatUint(v, 10)) }

// setTime stores a dateTime result with microseconds (TR-143's
// precision).
func (r *diagRun) setTime(name string, t time.Time) {
	r.set(name, t.UTC().Format("2006-01-02T15:04:05.000000Z"))
}

// table empties a result table and gives it n fresh instances, numbered
// from 1; it returns their paths.
func (r *diagRun) table(name string, n int) []string {
	d := r.d
	path := r.obj + name
	if _, ok := d.tree.lookup(path); !ok {
		return nil
	}
	d.ownTreeLocked()
	tn := d.tree.index[path]
	for len(tn.children) > 0 {
		for _, gone := range d.tree.remove(tn.children[0]) {
			delete(d.vals, gone)
			delete(d.attrs, gone)
		}
	}
	tn.nextInst = 1
	paths := make([]string, 0, n)
	for range n {
		paths = append(paths, d.tree.addInstance(tn, modelPathOf(path)+"{i}.").name)
	}
	d.tree.finish()
	return paths
}

// addressUsed is the device's simulated WAN address.
func (r *diagRun) addressUsed() string {
	return "198.51.100." + strconv.Itoa(1+r.d.index%250)
}

func nameHash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

func unresolvable(host string) bool {
	return strings.HasSuffix(strings.TrimSuffix(strings.ToLower(host), "."), ".invalid")
}

// silent reports a host in TEST-NET-1, which never answers.
func silent(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.To4() != nil && ip.To4()[0] == 192 && ip.To4()[1] == 0 && ip.To4()[2] == 2
}

// addressOf is the address a host name resolves to (TEST-NET-3), or the
// host itself when it is an address.
func addressOf(host string) string {
	if net.ParseIP(host) != nil {
		return host
	}
	return "203.0.113." + strconv.FormatUint(1+nameHash(host)%254, 10)
}

// rttMicros is the round-trip time to host of the i-th packet of size
// bytes: 2 to 42 ms by host, a little more per KiB, varying per packet.
func rttMicros(host string, i, size uint64) uint64 {
	h := nameHash(host)
	return 2000 + h%40000 + size/1024*100 + (h>>16+i*7919)%1500
}

func (r *diagRun) ping() string {
	host := r.in("Host")
	switch {
	case host == "":
		return "Error_Other"
	case unresolvable(host):
		return "Error_CannotResolveHostName"
	}
	reps, size := r.count("NumberOfRepetitions", 4), r.count("DataBlockSize", 64)
	r.set("IPAddressUsed", r.addressUsed())
	var ok, minUs, maxUs, sum uint64
	if !silent(host) {
		for i := range reps {
			us := rttMicros(host, i, size)
			if ok == 0 || us < minUs {
				minUs = us
			}
			maxUs = max(maxUs, us)
			sum += us
			ok++
		}
	}
	var avgUs uint64
	if ok > 0 {
		avgUs = sum / ok
	}
	r.setUint("SuccessCount", ok)
	r.setUint("FailureCount", reps-ok)
	r.setUint("AverageResponseTime", (avgUs+500)/1000)
	r.setUint("MinimumResponseTime", (minUs+500)/1000)
	r.setUint("MaximumResponseTime", (maxUs+500)/1000)
	r.setUint("AverageResponseTimeDetailed", avgUs)
	r.setUint("MinimumResponseTimeDetailed", minUs)
	r.setUint("MaximumResponseTimeDetailed", maxUs)
	return "Complete"
}

func (r *diagRun) traceroute() string {
	host := r.in("Host")
	switch {
	case host == "":
		return "Error_Other"
	case unresolvable(host):
		return "Error_CannotResolveHostName"
	}
	h := nameHash(host)
	hops := 3 + h%6
	maxHops := r.count("MaxHopCount", 30)
	tries := r.count("NumberOfTries", 3)
	state := "Complete"
	if hops > maxHops {
		hops, state = maxHops, "Error_MaxHopCountExceeded"
	}
	prefix := ""
	if r.tr098 {
		prefix = "Hop"
	}
	r.set("IPAddressUsed", r.addressUsed())
	var last uint64
	for i, p := range r.table("RouteHops.", int(hops)) {
		n := uint64(i) + 1
		addr := fmt.Sprintf("10.%d.%d.1", n, h%200)
		name := addr
		if n == hops && state == "Complete" {
			addr, name = addressOf(host), host
		}
		rtts := make([]string, 0, tries)
		for t := range tries {
			ms := n*2 + h%5 + t
			rtts = append(rtts, strconv.FormatUint(ms, 10))
			if t == 0 {
				last = ms
			}
		}
		r.d.setValueLocked(p+prefix+"Host", name)
		r.d.setValueLocked(p+prefix+"HostAddress", addr)
		r.d.setValueLocked(p+prefix+"ErrorCode", "0")
		r.d.setValueLocked(p+prefix+"RTTimes", strings.Join(rtts, ","))
	}
	r.setUint("ResponseTime", last)
	return state
}

// throughput runs a DownloadDiagnostics or UploadDiagnostics: a transfer
// of 1 to 16 MiB (download) or TestFileLength (upload) at 20 to 500
// Mbit/s, ending now.
func (r *diagRun) throughput(download bool) string {
	name := "UploadURL"
	if download {
		name = "DownloadURL"
	}
	raw := r.in(name)
	u, err := url.Parse(raw)
	if raw == "" || err != nil || u.Hostname() == "" {
		return "Error_InitConnectionFailed"
	}
	if unresolvable(u.Hostname()) {
		if r.tr098 {
			return "Error_InitConnectionFailed"
		}
		return "Error_CannotResolveHostName"
	}
	h := nameHash(raw)
	var bytes, mbps uint64
	if download {
		bytes, mbps = (1+h%16)<<20, 50+h%450
	} else {
		bytes, mbps = r.count("TestFileLength", 1<<20), 20+h%180
	}
	dur := time.Duration(float64(bytes*8) / float64(mbps*1_000_000) * float64(time.Second))
	eom := r.now
	bom := eom.Add(-dur)
	rom := bom.Add(-15 * time.Millisecond)
	tcpResp := rom.Add(-5 * time.Millisecond)
	tcpReq := tcpResp.Add(-10 * time.Millisecond)
	r.set("IPAddressUsed", r.addressUsed())
	r.setTime("TCPOpenRequestTime", tcpReq)
	r.setTime("TCPOpenResponseTime", tcpResp)
	r.setTime("ROMTime", rom)
	r.setTime("BOMTime", bom)
	r.setTime("EOMTime", eom)
	if download {
		r.setUint("TestBytesReceived", bytes)
		r.setUint("TotalBytesReceived", bytes+bytes/50)
		r.setUint("TotalBytesSent", 1500+bytes/40)
	} else {
		r.setUint("TestBytesSent", bytes)
		r.setUint("TotalBytesSent", bytes+bytes/50)
		r.setUint("TotalBytesReceived", 1500+bytes/40)
	}
	if r.tr098 {
		return "Completed" // TR-098's spelling for these two
	}
	return "Complete"
}

func (r *diagRun) nslookup() string {
	host := r.in("HostName")
	if host == "" {
		return "Error_Other"
	}
	server := r.in("DNSServer")
	if server == "" || net.ParseIP(server) == nil {
		server = "198.51.100.53"
	}
	reps := r.count("NumberOfRepetitions", 1)
	var ok uint64
	for i, p := range r.table("Result.", int(reps)) {
		set := func(name, v string) { r.d.setValueLocked(p+name, v) }
		set("DNSServerIP", server)
		set("ResponseTime", strconv.FormatUint(3+nameHash(host)%30+uint64(i), 10))
		if unresolvable(host) {
			set("Status", "Error_HostNameNotResolved")
			set("AnswerType", "None")
			set("HostNameReturned", "")
			set("IPAddresses", "")
			continue
		}
		ok++
		set("Status", "Success")
		set("AnswerType", "NonAuthoritative")
		set("HostNameReturned", host)
		set("IPAddresses", addressOf(host))
	}
	r.setUint("SuccessCount", ok)
	return "Complete"
}

func (r *diagRun) serverSelection() string {
	var best string
	var bestAvg, bestMin, bestMax uint64
	reps := r.count("NumberOfRepetitions", 3)
	for host := range strings.SplitSeq(r.in("HostList"), ",") {
		host = strings.TrimSpace(host)
		if host == "" || unresolvable(host) || silent(host) {
			continue
		}
		var sum, lo, hi uint64
		for i := range reps {
			us := rttMicros(host, i, 64)
			if i == 0 || us < lo {
				lo = us
			}
			hi = max(hi, us)
			sum += us
		}
		if avg := sum / reps; best == "" || avg < bestAvg {
			best, bestAvg, bestMin, bestMax = host, avg, lo, hi
		}
	}
	if best == "" {
		return "Error_CannotResolveHostName"
	}
	r.set("IPAddressUsed", r.addressUsed())
	r.set("FastestHost", best)
	r.setUint("MinimumResponseTime", bestMin)
	r.setUint("AverageResponseTime", bestAvg)
	r.setUint("MaximumResponseTime", bestMax)
	return "Complete"
}
