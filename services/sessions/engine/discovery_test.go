package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

func TestRemovedPaths(t *testing.T) {
	discovered := map[string]int{}
	for i, n := range []string{
		"Device.", "Device.DeviceInfo.UpTime",
		// No object names below: some CPEs list none.
		"Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.10.SSID",
	} {
		discovered[n] = i
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

// answerOf builds the Answer to call with a response or a fault.
func answerOf(call Call, resp cwmp.Message, fault *cwmp.Fault) Answer {
	return Answer{Call: call, Response: resp, Fault: fault}
}

func gpnResponse(names ...string) *cwmp.GetParameterNamesResponse {
	resp := &cwmp.GetParameterNamesResponse{}
	for _, n := range names {
		resp.ParameterList = append(resp.ParameterList, cwmp.ParameterInfo{Name: n})
	}
	return resp
}

// testContext is a session context without limits.
func testContext() *Context { return &Context{} }

func TestDiscoveryKeysAndRoots(t *testing.T) {
	d := newDiscovery([]string{"Device.", "InternetGatewayDevice."}, nil, 2)
	c := testContext()
	next := func() Call {
		t.Helper()
		call, ok := d.Next(c)
		if !ok {
			t.Fatal("discovery has no request")
		}
		return call
	}
	// Next does not move the discovery.
	if a, b := next(), next(); a.Key != b.Key || a.Key != "gpn Device." {
		t.Fatalf("keys %q, %q", a.Key, b.Key)
	}
	// The guessed root is refused: the other one is tried.
	d.Answer(c, answerOf(next(), nil, cwmp.NewFault(cwmp.FaultInvalidParameterName)))
	if next().Key != "gpn InternetGatewayDevice." {
		t.Fatal("second root not tried")
	}
	// A stale answer for the first root changes nothing.
	before := checkpointed(t, d)
	d.Answer(c, answerOf(Call{Key: "gpn Device."}, gpnResponse("Device.X"), nil))
	if after := checkpointed(t, d); after != before {
		t.Fatal("stale GetParameterNames answer applied")
	}
	root := "InternetGatewayDevice."
	d.Answer(c, answerOf(next(), gpnResponse(root, root+"A", root+"B.", root+"B.C", root+"D", "Device.Stray"), nil))
	call := next()
	gpv, ok := call.Message.(*cwmp.GetParameterValues)
	if !ok || call.Key != "gpv 0 2" || !slices.Equal(gpv.ParameterNames, []string{root + "A", root + "B.C"}) {
		t.Fatalf("first batch %q %v", call.Key, call.Message)
	}
	d.Answer(c, answerOf(call, &cwmp.GetParameterValuesResponse{ParameterList: []cwmp.ParameterValue{
		{Name: root + "A", Value: "1", Type: "xsd:int"}, {Name: root + "B.C", Value: "x", Type: "xsd:string"}}}, nil))
	// Repeating the same answer is ignored (the cursor moved).
	before = checkpointed(t, d)
	d.Answer(c, answerOf(call, &cwmp.GetParameterValuesResponse{}, nil))
	if after := checkpointed(t, d); after != before {
		t.Fatal("repeated answer applied")
	}
	if call := next(); call.Key != "gpv 2 1" {
		t.Fatalf("second batch %q", call.Key)
	}
	d.Answer(c, answerOf(next(), nil, cwmp.NewFault(cwmp.FaultInvalidParameterName)))
	if d.Stage != stageDone || !slices.Equal(d.Skipped, []string{root + "D"}) {
		t.Fatalf("stage %s skipped %v", d.Stage, d.Skipped)
	}
	if _, ok := d.Next(c); ok {
		t.Fatal("request after discovery")
	}
	if o := d.observation(); o.GPVBatchOK != 2 || o.GPVBatchFailed != 0 || o.SubtreeGPNFailed {
		t.Fatalf("observation %+v", o)
	}

	// The discovery survives a checkpoint round trip: its head, then its
	// journal.
	back := restored(t, d)
	if len(back.Nodes) != 5 || back.Nodes[1].Value != "1" || !back.Nodes[1].HasValue || !slices.Equal(back.Skipped, d.Skipped) {
		t.Fatalf("restored nodes %+v", back.Nodes)
	}
	if checkpointed(t, back) != checkpointed(t, d) {
		t.Fatal("restored discovery checkpoints differently")
	}
}

// checkpointed is the discovery as a checkpoint holds it: its head and a
// full journal record.
func checkpointed(t *testing.T, d *discovery) string {
	t.Helper()
	head, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return string(head) + "\n" + string(d.AppendJournal(nil, true))
}

// restored is d restored from its head and the journal records it writes,
// one per call of fn in between (none: one full record).
func restored(t *testing.T, d *discovery, records ...[]byte) *discovery {
	t.Helper()
	head, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(records) == 0 {
		records = [][]byte{d.AppendJournal(nil, true)}
	}
	op, err := (&discoveryPlanner{}).Restore(head)
	if err != nil {
		t.Fatal(err)
	}
	back := op.(*discovery)
	for _, r := range records {
		if err := back.ReplayJournal(r); err != nil {
			t.Fatalf("replay %s: %v", r, err)
		}
	}
	return back
}

// The journal grows with what each answer adds: replaying the incremental
// records gives the same discovery as one full record, and the records
// hold each name and value once.
func TestDiscoveryJournalIsIncremental(t *testing.T) {
	stored := []string{"Device.Old.", "Device.Old.X", "Device.A"}
	d := newDiscovery([]string{"Device."}, stored, 2)
	c := testContext()
	var records [][]byte
	note := func() {
		if r := d.AppendJournal(nil, false); len(r) > 0 {
			records = append(records, r)
		}
	}
	note() // the stored paths
	names := []string{"Device.", "Device.A", "Device.B.", "Device.B.C", "Device.D", "Device.E\n\"q\"\x01\u00e9\u2028"}
	call, _ := d.Next(c)
	d.Answer(c, answerOf(call, gpnResponse(names...), nil))
	note()
	for {
		call, ok := d.Next(c)
		if !ok {
			break
		}
		gpv := call.Message.(*cwmp.GetParameterValues)
		if slices.Contains(gpv.ParameterNames, "Device.D") { // halved, then skipped
			d.Answer(c, answerOf(call, nil, cwmp.NewFault(cwmp.FaultInvalidParameterName)))
		} else {
			resp := &cwmp.GetParameterValuesResponse{}
			for _, n := range gpv.ParameterNames {
				resp.ParameterList = append(resp.ParameterList, cwmp.ParameterValue{Name: n, Value: "v<" + n + ">", Type: "xsd:string"})
			}
			d.Answer(c, answerOf(call, resp, nil))
		}
		note()
	}
	if d.Stage != stageDone || !slices.Equal(d.Skipped, []string{"Device.D"}) || !slices.Equal(d.Removed, []string{"Device.Old."}) {
		t.Fatalf("stage %s, skipped %v, removed %v", d.Stage, d.Skipped, d.Removed)
	}
	all := strings.Join(func() []string {
		var out []string
		for _, r := range records {
			out = append(out, string(r))
		}
		return out
	}(), "\n")
	if n := strings.Count(all, `"Device.B.C"`); n != 1 {
		t.Errorf("the records name Device.B.C %d times:\n%s", n, all)
	}
	if n := strings.Count(all, `"v<Device.A>"`); n != 1 {
		t.Errorf("the records hold Device.A's value %d times:\n%s", n, all)
	}
	back := restored(t, d, records...)
	if got, want := checkpointed(t, back), checkpointed(t, d); got != want {
		t.Fatalf("replayed records give\n%s\nwant\n%s", got, want)
	}
	// Mid-way: a discovery restored from the records so far goes on
	// appending where they stopped.
	mid := newDiscovery([]string{"Device."}, stored, 2)
	midRecs := [][]byte{mid.AppendJournal(nil, false)}
	call, _ = mid.Next(c)
	mid.Answer(c, answerOf(call, gpnResponse(names...), nil))
	midRecs = append(midRecs, mid.AppendJournal(nil, false))
	resumed := restored(t, mid, midRecs...)
	if r := resumed.AppendJournal(nil, false); len(r) != 0 {
		t.Fatalf("a restored discovery records again what it was restored from: %s", r)
	}
	if len(resumed.Stored) != 0 || len(resumed.Nodes) != len(names) || !slices.Equal(resumed.Removed, []string{"Device.Old."}) {
		t.Fatalf("restored mid-way: stored %v, %d nodes, removed %v", resumed.Stored, len(resumed.Nodes), resumed.Removed)
	}
}

func TestDiscoveryFailsOnOtherFaults(t *testing.T) {
	d := newDiscovery([]string{"Device."}, nil, 100)
	c := testContext()
	call, _ := d.Next(c)
	d.Answer(c, answerOf(call, gpnResponse("Device.A", "Device.B"), nil))
	call, _ = d.Next(c)
	d.Answer(c, answerOf(call, nil, cwmp.NewFault(cwmp.FaultCPERequestDenied)))
	if d.Stage != stageFailed {
		t.Fatalf("stage %s after 9001", d.Stage)
	}
	if _, ok := d.Next(c); ok {
		t.Fatal("request after a failed discovery")
	}
}

// A session that dies with a batch outstanding, or with the whole-tree
// GetParameterNames outstanding, says so in its observation; a batch
// refused with 9004 counts as failed too.
func TestDiscoveryObservesDeaths(t *testing.T) {
	c := testContext()
	d := newDiscovery([]string{"Device."}, nil, 100)
	call, _ := d.Next(c)
	d.Answer(c, Answer{Call: call, Lost: cwmp.AbandonExpired})
	if o := d.observation(); !o.SubtreeGPNFailed || o.GPVBatchFailed != 0 || d.Stage != stageFailed {
		t.Fatalf("died in GetParameterNames: %+v stage %s", o, d.Stage)
	}

	d = newDiscovery([]string{"Device."}, nil, 8)
	call, _ = d.Next(c)
	var names []string
	for i := range 20 {
		names = append(names, "Device.P"+strconv.Itoa(i))
	}
	d.Answer(c, answerOf(call, gpnResponse(names...), nil))
	call, _ = d.Next(c)
	d.Answer(c, answerOf(call, nil, cwmp.NewFault(cwmp.FaultCPEResourcesExceeded))) // 8 refused
	call, _ = d.Next(c)
	d.Answer(c, answerOf(call, &cwmp.GetParameterValuesResponse{}, nil)) // 4 answered
	call, _ = d.Next(c)
	if call.Key != "gpv 4 4" {
		t.Fatalf("batch after 9004 %q", call.Key)
	}
	d.Answer(c, Answer{Call: call, Lost: cwmp.AbandonNewInform})
	if o := d.observation(); o.GPVBatchOK != 4 || o.GPVBatchFailed != 4 || o.SubtreeGPNFailed {
		t.Fatalf("observation %+v", o)
	}
}

// In walk mode the names come object by object (NextLevel true); objects
// listed are listed in turn, a fault on one skips it.
func TestDiscoveryWalk(t *testing.T) {
	c := testContext()
	d := newDiscovery([]string{"Device."}, []string{"Device.Gone.X"}, 10)
	d.Walk, d.Pending = true, []string{"Device."}
	answers := map[string]cwmp.Message{
		"Device.":      gpnResponse("Device.", "Device.A", "Device.B.", "Device.C."),
		"Device.B.":    gpnResponse("Device.B.X", "Device.B.1.", "Device.Other"),
		"Device.C.":    nil, // refused
		"Device.B.1.":  gpnResponse("Device.B.1.Y"),
		"Device.Gone.": nil,
	}
	var listed []string
	for d.Stage == stageNames {
		call, ok := d.Next(c)
		if !ok {
			t.Fatal("walk stopped early")
		}
		gpn := call.Message.(*cwmp.GetParameterNames)
		if !gpn.NextLevel {
			t.Fatal("walk without NextLevel")
		}
		listed = append(listed, gpn.ParameterPath)
		if resp := answers[gpn.ParameterPath]; resp != nil {
			d.Answer(c, answerOf(call, resp, nil))
		} else {
			d.Answer(c, answerOf(call, nil, cwmp.NewFault(cwmp.FaultInvalidParameterName)))
		}
	}
	if want := []string{"Device.", "Device.B.", "Device.C.", "Device.B.1."}; !slices.Equal(listed, want) {
		t.Fatalf("listed %v, want %v", listed, want)
	}
	var names []string
	for _, n := range d.Nodes {
		names = append(names, n.Name)
	}
	if want := []string{"Device.A", "Device.B.", "Device.C.", "Device.B.X", "Device.B.1.", "Device.B.1.Y"}; !slices.Equal(names, want) {
		t.Fatalf("nodes %v, want %v", names, want)
	}
	if d.Stage != stageValues || !slices.Equal(d.Removed, []string{"Device.Gone."}) {
		t.Fatalf("stage %s removed %v", d.Stage, d.Removed)
	}
}

// The session's limits stop a discovery: at the names (the rest are not
// kept, nothing is removed) and at the values.
func TestDiscoveryTruncatedByLimits(t *testing.T) {
	u := &usage{maxParams: 3}
	c := &Context{usage: u}
	d := newDiscovery([]string{"Device."}, []string{"Device.Old"}, 10)
	call, _ := d.Next(c)
	d.Answer(c, answerOf(call, gpnResponse("Device.A", "Device.B", "Device.C", "Device.D", "Device.E"), nil))
	if !d.Truncated || len(d.Nodes) != 3 || d.Removed != nil || u.Params != 3 {
		t.Fatalf("truncated %t nodes %d removed %v charged %d", d.Truncated, len(d.Nodes), d.Removed, u.Params)
	}
	call, _ = d.Next(c)
	if call.Key != "gpv 0 3" {
		t.Fatalf("batch %q", call.Key)
	}

	u = &usage{maxBytes: 3*ParameterCost("Device.A", "", "") + 10}
	c = &Context{usage: u}
	d = newDiscovery([]string{"Device."}, nil, 10)
	call, _ = d.Next(c)
	d.Answer(c, answerOf(call, gpnResponse("Device.A", "Device.B", "Device.C"), nil))
	call, _ = d.Next(c)
	d.Answer(c, answerOf(call, &cwmp.GetParameterValuesResponse{ParameterList: []cwmp.ParameterValue{
		{Name: "Device.A", Value: "12345", Type: "x"}, {Name: "Device.B", Value: "12345", Type: "x"}}}, nil))
	if !d.Truncated || d.Stage != stageDone || !d.Nodes[0].HasValue || d.Nodes[1].HasValue {
		t.Fatalf("truncated %t stage %s nodes %+v", d.Truncated, d.Stage, d.Nodes)
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

// A discovery is logged as planned only when it runs: a postponed one is
// logged as postponed, not as planned too.
func TestPostponedDiscoveryNotLoggedAsPlanned(t *testing.T) {
	v := newEnv(t)
	var logs bytes.Buffer
	v.logger = slog.New(slog.NewTextHandler(&logs, nil))
	e := v.engine("w1", nil, func(c *Config) { c.MaxDiscoveries = 1 })
	a, b := v.device("SN-LOG1"), v.device("SN-LOG2")
	exchange(t, e, a.open("log-a", "0 BOOTSTRAP"))
	exchange(t, e, b.open("log-b", "0 BOOTSTRAP"))
	count := func(msg, device string) int {
		n := 0
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "msg=\""+msg+"\"") && strings.Contains(l, device) {
				n++
			}
		}
		return n
	}
	if n := count("tree discovery planned", a.key); n != 1 {
		t.Errorf("a's discovery logged as planned %d times, want once", n)
	}
	if n := count("tree discovery postponed: the worker runs its maximum of discoveries", b.key); n != 1 {
		t.Errorf("b's discovery logged as postponed %d times, want once", n)
	}
	if n := count("tree discovery planned", b.key); n != 0 {
		t.Errorf("b's postponed discovery logged as planned:\n%s", logs.String())
	}
}

// A hostile CPE that answers a GetParameterValues with a name it already
// gave a value (repeated in one response, or again in a later one) cannot
// swap in a larger value past the session's byte limit, nor make every
// save journal the name again: a node takes the first value it gets.
func TestDiscoveryValueTakenOnce(t *testing.T) {
	u := &usage{maxBytes: 1 << 20}
	c := &Context{usage: u}
	d := newDiscovery([]string{"Device."}, nil, 1)
	call, _ := d.Next(c)
	d.Answer(c, answerOf(call, gpnResponse("Device.A", "Device.B", "Device.C"), nil))
	d.AppendJournal(nil, false)
	big := strings.Repeat("x", 4<<20)
	call, _ = d.Next(c)
	d.Answer(c, answerOf(call, &cwmp.GetParameterValuesResponse{ParameterList: []cwmp.ParameterValue{
		{Name: "Device.A", Value: "1", Type: "xsd:string"}, {Name: "Device.A", Value: big, Type: "xsd:string"}}}, nil))
	first := d.AppendJournal(nil, false)
	for range 2 {
		call, _ = d.Next(c)
		d.Answer(c, answerOf(call, &cwmp.GetParameterValuesResponse{ParameterList: []cwmp.ParameterValue{
			{Name: call.Message.(*cwmp.GetParameterValues).ParameterNames[0], Value: "2", Type: "xsd:string"},
			{Name: "Device.A", Value: big, Type: "xsd:string"}}}, nil))
		if r := d.AppendJournal(nil, false); len(r) > 1000 {
			t.Fatalf("a repeated name journaled again: %d bytes", len(r))
		}
	}
	if len(first) > 1000 {
		t.Fatalf("a name repeated in one response journaled %d bytes", len(first))
	}
	if d.Nodes[0].Value != "1" || u.Bytes > 1<<20 {
		t.Fatalf("Device.A holds %d bytes; the session is charged %d of at most %d", len(d.Nodes[0].Value), u.Bytes, u.maxBytes)
	}
}

// A return from a postponement's ScheduleInform is told by its CommandKey,
// which carries how often the discovery was postponed; other keys, codes
// and malformed counts are not returns.
func TestReturnedAttempt(t *testing.T) {
	ev := func(code, key string) cwmp.Event { return cwmp.Event{Code: code, CommandKey: key} }
	for _, c := range []struct {
		events []cwmp.Event
		want   int
	}{
		{nil, 0},
		{[]cwmp.Event{ev("3 SCHEDULED", ""), ev("M ScheduleInform", "fleetacs-discovery")}, 1},
		{[]cwmp.Event{ev("M ScheduleInform", "fleetacs-discovery/3")}, 3},
		{[]cwmp.Event{ev("m scheduleinform", "fleetacs-discovery/2")}, 2},
		{[]cwmp.Event{ev("M ScheduleInform", "fleetacs-discovery/2"), ev("M ScheduleInform", "fleetacs-discovery/5")}, 5},
		{[]cwmp.Event{ev("M ScheduleInform", "fleetacs-discovery/100000")}, maxAttempt},
		{[]cwmp.Event{ev("M ScheduleInform", "fleetacs-discovery/0")}, 0},
		{[]cwmp.Event{ev("M ScheduleInform", "fleetacs-discovery/-1")}, 0},
		{[]cwmp.Event{ev("M ScheduleInform", "fleetacs-discovery/x")}, 0},
		{[]cwmp.Event{ev("M ScheduleInform", "fleetacs-discoveryx")}, 0},
		{[]cwmp.Event{ev("M ScheduleInform", "operator-key")}, 0},
		{[]cwmp.Event{ev("M Reboot", "fleetacs-discovery")}, 0},
	} {
		if got := returnedAttempt(c.events); got != c.want {
			t.Errorf("returnedAttempt(%v) = %d, want %d", c.events, got, c.want)
		}
	}
	for attempt, want := range map[int]string{0: "fleetacs-discovery", 1: "fleetacs-discovery", 2: "fleetacs-discovery/2", 500: "fleetacs-discovery/99"} {
		if got := scheduleKey(attempt); got != want {
			t.Errorf("scheduleKey(%d) = %q, want %q", attempt, got, want)
		}
		if attempt > 0 && returnedAttempt([]cwmp.Event{ev("M ScheduleInform", want)}) != min(attempt, maxAttempt) {
			t.Errorf("the key of attempt %d does not read back", attempt)
		}
	}
}

// firstCall opens a session and returns what the ACS sends after the
// InformResponse: its method, and the CommandKey when it is a
// ScheduleInform.
func firstCall(t *testing.T, e *Engine, d *device, sid string, events ...string) (method, key string) {
	method, key, _ = firstRequest(t, e, d, sid, events...)
	return method, key
}

// firstRequest is firstCall that also returns the request's body.
func firstRequest(t *testing.T, e *Engine, d *device, sid string, events ...string) (method, key string, body []byte) {
	t.Helper()
	if got := methodOf(t, exchange(t, e, d.open(sid, events...))); got != "InformResponse" {
		t.Fatalf("%s's Inform answered %s", sid, got)
	}
	r := exchange(t, e, d.next(nil))
	if len(r.Body) == 0 {
		return fmt.Sprint(r.Status), "", nil
	}
	env, err := cwmp.Decode(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	if si, ok := env.Body.(*cwmp.ScheduleInform); ok {
		return "ScheduleInform", si.CommandKey, r.Body
	}
	return env.Body.Method(), "", r.Body
}

// Under a storm, devices that were postponed before get ahead of
// newcomers: each postponement lets a device's return take a slot a
// little further over the bound (an eighth of it per postponement, at
// most half), so no device waits forever while new ones keep coming. Its
// next ScheduleInform carries the count on.
func TestPostponedDiscoveriesGetAhead(t *testing.T) {
	v := newEnv(t)
	e := v.engine("w1", nil, func(c *Config) { c.MaxDiscoveries = 8 })
	for i := range 8 { // the bound, held by sessions left open
		d := v.device("SN-HOLD" + strconv.Itoa(i))
		if got, _ := firstCall(t, e, d, "hold-"+strconv.Itoa(i), "0 BOOTSTRAP"); got != "GetParameterNames" {
			t.Fatalf("holder %d got %s", i, got)
		}
	}
	steps := []struct {
		serial, event, want, key string
	}{
		{"SN-NEW", "0 BOOTSTRAP", "ScheduleInform", "fleetacs-discovery"},            // a newcomer never goes over
		{"SN-BACK1", "M ScheduleInform|fleetacs-discovery", "GetParameterNames", ""}, // 9 of 8+1
		{"SN-BACK1B", "M ScheduleInform|fleetacs-discovery", "ScheduleInform", "fleetacs-discovery/2"},
		{"SN-BACK2", "M ScheduleInform|fleetacs-discovery/2", "GetParameterNames", ""},                   // 10 of 8+2
		{"SN-BACK3", "M ScheduleInform|fleetacs-discovery/3", "GetParameterNames", ""},                   // 11 of 8+3
		{"SN-BACK4", "M ScheduleInform|fleetacs-discovery/4", "GetParameterNames", ""},                   // 12 of 8+4
		{"SN-BACK9", "M ScheduleInform|fleetacs-discovery/9", "ScheduleInform", "fleetacs-discovery/10"}, // never over 8+4
	}
	for _, st := range steps {
		d := v.device(st.serial)
		got, key := firstCall(t, e, d, "s-"+st.serial, "3 SCHEDULED", st.event)
		if got != st.want || key != st.key {
			t.Errorf("%s (%s): sent %s %q, want %s %q", st.serial, st.event, got, key, st.want, st.key)
		}
	}
	if used := e.discoveries.used.Load(); used != 12 {
		t.Fatalf("%d slots used, want 12", used)
	}
}

// A device whose discovery was postponed is asked to come back only when
// no earlier request of ours is likely pending: on its first contact, on a
// boot, or when it is itself such a return. Its other sessions (a
// connection request's, a periodic one) ask nothing, since a CPE keeps
// every ScheduleInform it accepted and would come back once for each.
func TestPostponedDiscoveryAsksOnce(t *testing.T) {
	v := newEnv(t)
	e := v.engine("w1", nil, func(c *Config) { c.MaxDiscoveries = 1 })
	hold := v.device("SN-HOLD")
	if got, _ := firstCall(t, e, hold, "hold", "0 BOOTSTRAP"); got != "GetParameterNames" {
		t.Fatalf("holder got %s", got)
	}
	d := v.device("SN-WAIT")
	v.inv.undiscovered[d.key] = true
	e.discoveries.force() // the overdraft a return could take
	for i, c := range []struct {
		events    []string
		want, key string
	}{
		{[]string{"6 CONNECTION REQUEST"}, "204", ""},
		{[]string{"2 PERIODIC"}, "204", ""},
		{[]string{"4 VALUE CHANGE"}, "204", ""},
		{[]string{"1 BOOT", "M Download|fw-1", "7 TRANSFER COMPLETE"}, "ScheduleInform", "fleetacs-discovery"},
		{[]string{"0 BOOTSTRAP", "1 BOOT"}, "ScheduleInform", "fleetacs-discovery"},
		{[]string{"3 SCHEDULED", "M ScheduleInform|operator"}, "204", ""},
		// A return may take a slot over the bound of 1: give it none.
		{[]string{"3 SCHEDULED", "M ScheduleInform|fleetacs-discovery/6"}, "ScheduleInform", "fleetacs-discovery/7"},
	} {
		got, key, body := firstRequest(t, e, d, "wait-"+strconv.Itoa(i), c.events...)
		if got != c.want || key != c.key {
			t.Errorf("session %v: sent %s %q, want %s %q", c.events, got, key, c.want, c.key)
		}
		if got == "ScheduleInform" {
			if r := exchange(t, e, d.next(d.answer(body))); r.Status != 204 {
				t.Fatalf("after the ScheduleInform: status %d", r.Status)
			}
		}
	}
	if used := e.discoveries.used.Load(); used != 2 {
		t.Fatalf("%d slots used, want the holder's and the forced one", used)
	}
}

// Each postponement of a device asks it to come back later than the one
// before, up to four times -sessions.discovery-retry, within the spread
// of 50% to 150%.
func TestPostponedDiscoveryBacksOff(t *testing.T) {
	v := newEnv(t)
	e := v.engine("w1", nil, func(c *Config) { c.MaxDiscoveries = 1; c.DiscoveryRetry = time.Minute })
	e.discoveries.force()
	e.discoveries.force() // no slot left, not even a return's overdraft
	d := v.device("SN-BACKOFF")
	for attempt, want := range []time.Duration{time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 4 * time.Minute} {
		events := []string{"0 BOOTSTRAP"}
		if attempt > 0 {
			events = []string{"3 SCHEDULED", "M ScheduleInform|" + scheduleKey(attempt)}
		}
		sid := "backoff-" + strconv.Itoa(attempt)
		_, key, body := firstRequest(t, e, d, sid, events...)
		env, err := cwmp.Decode(body)
		if err != nil {
			t.Fatal(err)
		}
		si := env.Body.(*cwmp.ScheduleInform)
		if got := time.Duration(si.DelaySeconds) * time.Second; got != spread(sid, want).Round(time.Second) || key != scheduleKey(attempt+1) {
			t.Errorf("postponement %d: ScheduleInform of %s (%q), want %s (%q)", attempt+1, got, key, spread(sid, want).Round(time.Second), scheduleKey(attempt+1))
		}
		exchange(t, e, d.next(d.answer(body)))
	}
}
