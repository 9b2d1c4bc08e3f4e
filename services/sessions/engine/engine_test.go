package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/affinity/affinitytest"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// The engine on plain values: an in-memory inventory and affinity store,
// scripted operations, and CWMP envelopes built and read with pkg/cwmp.

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const tenant = "default"

// memInventory is the Inventory port in memory: devices by key (known
// ones have been discovered), every diff recorded, profiles merged.
type memInventory struct {
	mu    sync.Mutex
	known map[string]bool
	// undiscovered are devices known but never discovered (a postponed
	// first contact).
	undiscovered map[string]bool
	diffs        []*Diff
	profiles     map[ProductClass]DiscoveryProfile
}

func newMemInventory() *memInventory {
	return &memInventory{known: map[string]bool{}, undiscovered: map[string]bool{}, profiles: map[ProductClass]DiscoveryProfile{}}
}

func (m *memInventory) GetDeviceForSession(_ context.Context, q DeviceQuery) (DeviceState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.undiscovered[q.DeviceKey] {
		return DeviceState{Known: true, DataModelRoot: "Device."}, nil
	}
	if !m.known[q.DeviceKey] {
		return DeviceState{}, nil
	}
	return DeviceState{Known: true, DataModelRoot: "Device.", FullDiscoveryTime: t0}, nil
}

func (m *memInventory) RecordSession(_ context.Context, d *Diff) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.diffs = append(m.diffs, d)
	return nil
}

func (m *memInventory) DiscoveryProfile(_ context.Context, c ProductClass) (DiscoveryProfile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.profiles[c], nil
}

func (m *memInventory) RecordDiscovery(_ context.Context, c ProductClass, o DiscoveryObservation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.profiles[c] = m.profiles[c].Merge(o)
	return nil
}

func (m *memInventory) recorded() []*Diff {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.diffs)
}

// scriptOp asks for its Calls in order; a call whose Message is nil is
// made by Then from the previous answer, so the test sees that the answer
// arrived before the next request was chosen. It takes TransferCompletes
// with its CommandKey.
type scriptOp struct {
	Name       string            `json:"name"`
	Calls      []string          `json:"calls"` // methods: "gpv:<name>", "then", "sd" (ScheduleDownload)
	Pos        int               `json:"pos"`
	Last       string            `json:"last,omitempty"` // value of the last GPV answer
	Seen       []string          `json:"seen,omitempty"` // what Answer got, in order
	CommandKey string            `json:"commandKey,omitempty"`
	Completed  bool              `json:"completed,omitempty"`
	Learned    map[string]string `json:"learned,omitempty"`
}

func (o *scriptOp) Next(*Context) (Call, bool) {
	if o.Pos >= len(o.Calls) {
		return Call{}, false
	}
	key := o.Name + "-" + fmt.Sprint(o.Pos)
	switch c := o.Calls[o.Pos]; {
	case c == "then":
		return Call{Message: &cwmp.GetParameterValues{ParameterNames: []string{"Device.Then." + o.Last}}, Key: key}, true
	case c == "sd":
		return Call{Message: &cwmp.ScheduleDownload{CommandKey: "sd", FileType: "1 Firmware Upgrade Image", URL: "http://f/x",
			TimeWindowList: []cwmp.TimeWindow{{WindowEnd: 60, WindowMode: "1 At Any Time"}}}, Key: key}, true
	default:
		return Call{Message: &cwmp.GetParameterValues{ParameterNames: []string{strings.TrimPrefix(c, "gpv:")}}, Key: key}, true
	}
}

func (o *scriptOp) Answer(_ *Context, a Answer) {
	if a.Call.Key != o.Name+"-"+fmt.Sprint(o.Pos) {
		o.Seen = append(o.Seen, "stale:"+a.Call.Key)
		return
	}
	o.Pos++
	switch {
	case a.NotSent != nil:
		o.Seen = append(o.Seen, "not-sent:"+a.Call.Message.Method())
	case a.Lost != 0:
		o.Seen = append(o.Seen, "lost:"+a.Lost.String())
	case a.Fault != nil:
		o.Seen = append(o.Seen, fmt.Sprintf("fault:%d", a.Fault.Code))
	default:
		o.Seen = append(o.Seen, a.Response.Method())
		if r, ok := a.Response.(*cwmp.GetParameterValuesResponse); ok && len(r.ParameterList) > 0 {
			o.Last = r.ParameterList[0].Value
			if o.Learned == nil {
				o.Learned = map[string]string{}
			}
			o.Learned[r.ParameterList[0].Name] = o.Last
		}
	}
}

func (o *scriptOp) Observe(_ *Context, m cwmp.Message) bool {
	tc, ok := m.(*cwmp.TransferComplete)
	if !ok || o.CommandKey == "" || tc.CommandKey != o.CommandKey {
		return false
	}
	o.Completed = true
	return true
}

func (o *scriptOp) Contribute(_ *Context, b *DiffBuilder, out Outcome) {
	if out != Completed {
		return
	}
	for name, v := range o.Learned {
		b.Set(Parameter{Path: name, Value: v, Type: "xsd:string", HasValue: true})
	}
}

// scriptPlanner plans its ops for every session and keeps what Settle got.
type scriptPlanner struct {
	mu      sync.Mutex
	plan    func() []Planned
	settled []*scriptOp
	ends    []End
}

func (p *scriptPlanner) Kind() string { return "script" }

func (p *scriptPlanner) Plan(context.Context, Start) ([]Planned, error) { return p.plan(), nil }

func (p *scriptPlanner) Restore(data []byte) (Operation, error) {
	var o scriptOp
	return &o, json.Unmarshal(data, &o)
}

func (p *scriptPlanner) Settle(_ context.Context, e End, ops []Operation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ends = append(p.ends, e)
	for _, op := range ops {
		p.settled = append(p.settled, op.(*scriptOp))
	}
}

// env is one test cluster: an affinity store, an inventory, a clock.
type env struct {
	t     *testing.T
	clock *affinitytest.Clock
	store affinity.Store
	inv   *memInventory
	// logger, when set, is the engines' logger.
	logger *slog.Logger
}

func newEnv(t *testing.T) *env {
	clock := affinitytest.NewClock(t0)
	return &env{t: t, clock: clock, store: affinity.NewMemory(clock.Now).Store(), inv: newMemInventory()}
}

func (v *env) engine(id string, planners []Planner, mutate func(*Config)) *Engine {
	v.t.Helper()
	cfg := DefaultConfig()
	cfg.WorkerID, cfg.AdvertiseAddr = id, "127.0.0.1:9300"
	cfg.CRCredentials = CROff // crcreds_test.go sets credentials
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := New(cfg, Deps{Inventory: v.inv, Leases: v.store.Leases, Checkpoints: v.store.Checkpoints, Registry: v.store.Registry,
		Sessions: v.store.Sessions, Planners: planners, Now: v.clock.Now, Logger: v.logger})
	if err != nil {
		v.t.Fatal(err)
	}
	return e
}

// device is a simulated CPE: it answers GetParameterValues of "X" with
// the value "v-X".
type device struct {
	v   *env
	key string
	id  cwmp.DeviceID
	ns  string
	sid string
}

func (v *env) device(serial string) *device {
	id := cwmp.DeviceID{OUI: "00D09E", ProductClass: "Router", SerialNumber: serial}
	return &device{v: v, key: "00D09E-Router-" + serial, id: id, ns: cwmp.NS1_2}
}

func (d *device) encode(body cwmp.Message, id string) []byte {
	d.v.t.Helper()
	v, _ := cwmp.VersionOfNamespace(d.ns)
	env := &cwmp.Envelope{Namespace: d.ns, Version: v, Body: body}
	if id != "" {
		env.Header.ID, env.Header.HasID = id, true
	}
	b, err := cwmp.Encode(env)
	if err != nil {
		d.v.t.Fatal(err)
	}
	return b
}

// open takes the lease and returns the request carrying an Inform with
// these events ("code" or "code|CommandKey").
func (d *device) open(sid string, events ...string) *Request {
	d.v.t.Helper()
	l, err := d.v.store.Leases.Acquire(context.Background(), tenant, d.key, sid, time.Minute)
	if err != nil {
		d.v.t.Fatal(err)
	}
	d.sid = sid
	inf := &cwmp.Inform{DeviceID: d.id, MaxEnvelopes: 1, CurrentTime: "2026-03-01T12:00:00Z",
		ParameterList: []cwmp.ParameterValue{{Name: "Device.DeviceInfo.SoftwareVersion", Value: "1.0", Type: "xsd:string"}}}
	for _, e := range events {
		code, key, _ := strings.Cut(e, "|") // "M ScheduleInform|its CommandKey"
		inf.Events = append(inf.Events, cwmp.Event{Code: code, CommandKey: key})
	}
	return &Request{SessionID: sid, NewSession: true, Tenant: tenant, DeviceKey: d.key,
		Lease: &Lease{FencingToken: l.FencingToken, Superseded: l.Superseded}, Body: d.encode(inf, "inform"), RemoteAddr: "192.0.2.1:7000"}
}

func (d *device) next(body []byte) *Request {
	return &Request{SessionID: d.sid, Tenant: tenant, DeviceKey: d.key, Body: body, RemoteAddr: "192.0.2.1:7000"}
}

// answer returns the CPE's reply to the ACS request in body.
func (d *device) answer(body []byte) []byte {
	d.v.t.Helper()
	env, err := cwmp.Decode(body)
	if err != nil {
		d.v.t.Fatal(err)
	}
	switch m := env.Body.(type) {
	case *cwmp.GetParameterValues:
		resp := &cwmp.GetParameterValuesResponse{}
		for _, n := range m.ParameterNames {
			resp.ParameterList = append(resp.ParameterList, cwmp.ParameterValue{Name: n, Value: "v-" + n, Type: "xsd:string"})
		}
		return d.encode(resp, env.Header.ID)
	default:
		resp, _ := cwmp.NewMessage(env.Body.Method() + "Response")
		return d.encode(resp, env.Header.ID)
	}
}

func exchange(t *testing.T, e *Engine, r *Request) *Reply {
	t.Helper()
	reply, err := e.Exchange(context.Background(), r)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return reply
}

// methodOf names a reply's message, or its status.
func methodOf(t *testing.T, r *Reply) string {
	t.Helper()
	if len(r.Body) == 0 {
		return fmt.Sprint(r.Status)
	}
	env, err := cwmp.Decode(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := env.Body.(*cwmp.GetParameterValues); ok {
		return "GPV " + strings.Join(g.ParameterNames, ",")
	}
	return env.Body.Method()
}

// run drives a session after its InformResponse until the engine ends it,
// sending each POST to pick(i), and returns what the ACS sent.
func (d *device) run(t *testing.T, pick func(i int) *Engine) []string {
	t.Helper()
	var sent []string
	var body []byte
	for i := 0; i < 100; i++ {
		r := exchange(t, pick(i), d.next(body))
		sent = append(sent, methodOf(t, r))
		if r.Status != 200 {
			return sent
		}
		body = d.answer(r.Body)
	}
	t.Fatal("session did not end")
	return nil
}

// Operations run in priority order, then creation order; the session's
// bound leaves the rest for a later session (and out of Settle); each
// operation sees every answer before it chooses its next request.
func TestOperationsRunInQueueOrder(t *testing.T) {
	v := newEnv(t)
	p := &scriptPlanner{plan: func() []Planned {
		return []Planned{
			{ID: "low", Priority: 0, Created: t0, Op: &scriptOp{Name: "low", Calls: []string{"gpv:L"}}},
			{ID: "late", Priority: 5, Created: t0.Add(time.Second), Op: &scriptOp{Name: "late", Calls: []string{"gpv:B"}}},
			{ID: "early", Priority: 5, Created: t0, Op: &scriptOp{Name: "early", Calls: []string{"gpv:A", "then"}}},
		}
	}}
	e := v.engine("w1", []Planner{p}, func(c *Config) { c.MaxOperations = 2 })
	d := v.device("SN1")
	v.inv.known[d.key] = true
	if got := methodOf(t, exchange(t, e, d.open("s1", "2 PERIODIC"))); got != "InformResponse" {
		t.Fatal(got)
	}
	sent := d.run(t, func(int) *Engine { return e })
	want := []string{"GPV A", "GPV Device.Then.v-A", "GPV B", "204"}
	if !slices.Equal(sent, want) {
		t.Fatalf("sent %v, want %v", sent, want)
	}
	if len(p.settled) != 2 || p.settled[0].Name != "early" || p.settled[1].Name != "late" {
		t.Fatalf("settled %+v", p.settled)
	}
	if p.ends[0].Outcome != Completed || !p.ends[0].Recorded {
		t.Fatalf("end %+v", p.ends[0])
	}
	diffs := v.inv.recorded()
	if len(diffs) != 1 {
		t.Fatalf("%d diffs", len(diffs))
	}
	var paths []string
	for _, prm := range diffs[0].Parameters {
		paths = append(paths, prm.Path+"="+prm.Value)
	}
	slices.Sort(paths)
	if want := []string{"A=v-A", "B=v-B", "Device.DeviceInfo.SoftwareVersion=1.0", "Device.Then.v-A=v-Device.Then.v-A"}; !slices.Equal(paths, want) {
		t.Fatalf("diff %v, want %v", paths, want)
	}
}

// A call the session cannot send comes back to its operation as NotSent,
// and the turn goes on; a CPE request an operation waits for is offered to
// it.
func TestOperationRefusedCallAndObservedRequest(t *testing.T) {
	v := newEnv(t)
	op := &scriptOp{Name: "t", Calls: []string{"sd", "gpv:A"}, CommandKey: "fw-1"}
	p := &scriptPlanner{plan: func() []Planned { return []Planned{{Op: op}} }}
	e := v.engine("w1", []Planner{p}, nil)
	d := v.device("SN2")
	v.inv.known[d.key] = true
	d.ns = cwmp.NS1_0 // ScheduleDownload is CWMP 1.2
	exchange(t, e, d.open("s2", "1 BOOT", "7 TRANSFER COMPLETE", "M Download"))
	tc := d.encode(&cwmp.TransferComplete{CommandKey: "fw-1", StartTime: cwmp.UnknownTime, CompleteTime: cwmp.UnknownTime}, "tc")
	if got := methodOf(t, exchange(t, e, d.next(tc))); got != "TransferCompleteResponse" {
		t.Fatal(got)
	}
	sent := d.run(t, func(int) *Engine { return e })
	if !slices.Equal(sent, []string{"GPV A", "204"}) {
		t.Fatalf("sent %v", sent)
	}
	got := p.settled[0]
	if !got.Completed || !slices.Equal(got.Seen, []string{"not-sent:ScheduleDownload", "GetParameterValuesResponse"}) {
		t.Fatalf("operation completed %t, saw %v", got.Completed, got.Seen)
	}
}

// An operation checkpointed with its session is resumed by another worker
// in the middle of its calls; a worker that does not know the operation's
// kind refuses the checkpoint rather than misread it.
func TestOperationResumedElsewhere(t *testing.T) {
	v := newEnv(t)
	plan := func() []Planned {
		return []Planned{{ID: "op", Op: &scriptOp{Name: "op", Calls: []string{"gpv:A", "then", "gpv:C"}}}}
	}
	pa, pb := &scriptPlanner{plan: plan}, &scriptPlanner{plan: plan}
	a := v.engine("wa", []Planner{pa}, nil)
	b := v.engine("wb", []Planner{pb}, nil)
	d := v.device("SN3")
	v.inv.known[d.key] = true
	exchange(t, a, d.open("s3", "2 PERIODIC"))
	sent := d.run(t, func(i int) *Engine {
		if i >= 2 {
			return b
		}
		return a
	})
	if want := []string{"GPV A", "GPV Device.Then.v-A", "GPV C", "204"}; !slices.Equal(sent, want) {
		t.Fatalf("sent %v, want %v", sent, want)
	}
	if len(pb.settled) != 1 || !slices.Equal(pb.settled[0].Seen, []string{"GetParameterValuesResponse", "GetParameterValuesResponse", "GetParameterValuesResponse"}) {
		t.Fatalf("resumed operation %+v", pb.settled)
	}

	// A worker without the "script" planner.
	c := v.engine("wc", nil, nil)
	exchange(t, a, d.open("s4", "2 PERIODIC"))
	first := exchange(t, a, d.next(nil))
	r := exchange(t, c, d.next(d.answer(first.Body)))
	if !r.SessionEnded || r.Status == 200 {
		t.Fatalf("unknown kind resumed: %d", r.Status)
	}
	if _, err := v.store.Checkpoints.Load(context.Background(), tenant, d.key, "s4"); !errors.Is(err, affinity.ErrNoCheckpoint) {
		t.Fatalf("refused checkpoint kept: %v", err)
	}
}

// A session that expires idle records the Inform's facts only: its
// parameters and its operations' findings are for a completed session
// (the CPE sends its Inform again); its outstanding call is lost.
func TestExpiredSessionWritesInformFactsOnly(t *testing.T) {
	v := newEnv(t)
	p := &scriptPlanner{plan: func() []Planned {
		return []Planned{{Op: &scriptOp{Name: "x", Calls: []string{"gpv:A", "gpv:B"}}}}
	}}
	e := v.engine("w1", []Planner{p}, nil)
	d := v.device("SN4")
	v.inv.known[d.key] = true
	exchange(t, e, d.open("s5", "2 PERIODIC"))
	r := exchange(t, e, d.next(nil))
	exchange(t, e, d.next(d.answer(r.Body))) // GPV B outstanding
	v.clock.Advance(cwmp.DefaultSessionTimeout + DefaultConfig().IdleGrace)
	e.Tick(context.Background())
	if e.Sessions() != 0 || e.MemoryUsed() != 0 {
		t.Fatalf("sessions %d, memory %d", e.Sessions(), e.MemoryUsed())
	}
	diffs := v.inv.recorded()
	if len(diffs) != 1 {
		t.Fatalf("%d diffs", len(diffs))
	}
	df := diffs[0]
	if df.Inform == nil || len(df.Inform.Events) != 1 || len(df.Parameters) != 0 || df.Fields.SoftwareVersion != nil || df.Fields.DataModelRoot != nil {
		t.Fatalf("expired session wrote %+v", df)
	}
	if got := p.settled[0].Seen; !slices.Equal(got, []string{"GetParameterValuesResponse", "lost:expired"}) {
		t.Fatalf("operation saw %v", got)
	}
	if p.ends[0].Outcome != Incomplete {
		t.Fatalf("end %+v", p.ends[0])
	}
}

func TestQueueOrderAndFind(t *testing.T) {
	var q queue
	left := q.add("k", []Planned{
		{Priority: 1, Created: t0.Add(2 * time.Second), Op: &scriptOp{Name: "a"}},
		{ID: "b", Priority: 2, Created: t0.Add(3 * time.Second), Op: &scriptOp{Name: "b"}},
		{Priority: 1, Created: t0, Op: &scriptOp{Name: "c"}},
	}, 2)
	var ids []string
	for _, e := range q.Entries {
		ids = append(ids, e.ID)
	}
	if !slices.Equal(ids, []string{"b", "k-2"}) || len(left) != 1 || left[0].ID != "k-1" {
		t.Fatalf("queue %v, left %+v", ids, left)
	}
	if e, key := q.find("k-2 x 1"); e == nil || e.ID != "k-2" || key != "x 1" {
		t.Fatalf("find %v %q", e, key)
	}
	if e, _ := q.find("nope 1"); e != nil {
		t.Fatal("found an unknown operation")
	}
}

// The engine is plain Go: neither it nor what it imports pulls in gRPC or
// protobuf (the gRPC edge is package sessions).
func TestEngineImportsNoGRPC(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "google.golang.org/grpc") || strings.HasPrefix(pkg, "google.golang.org/protobuf") ||
			strings.Contains(pkg, "/proto/gen/") {
			t.Errorf("engine depends on %s", pkg)
		}
	}
}

func TestLogKeysMatchTelemetry(t *testing.T) {
	if keyDeviceID != telemetry.KeyDeviceID || keySessionID != telemetry.KeySessionID || keyTenant != telemetry.KeyTenant {
		t.Fatal("log keys differ from pkg/telemetry's")
	}
}

// detach leaves the values alone and shares no memory with the body.
func TestDetach(t *testing.T) {
	body := "OUI0SNevt1keyN1V1T1N2V2T2N3V3T3"
	sub := func(i, j int) string { return body[i:j] }
	inf := &cwmp.Inform{
		DeviceID: cwmp.DeviceID{OUI: sub(0, 3), SerialNumber: sub(3, 6)},
		Events:   []cwmp.Event{{Code: sub(6, 10), CommandKey: sub(10, 13)}},
		ParameterList: []cwmp.ParameterValue{
			{Name: sub(13, 15), Value: sub(15, 17), Type: sub(17, 19)},
			{Name: sub(19, 21), Value: sub(21, 23), Type: sub(23, 25)},
			{Name: sub(25, 27), Value: sub(27, 29), Type: sub(29, 31)},
		},
	}
	env := &cwmp.Envelope{Namespace: cwmp.NS1_0, Body: inf}
	detach(env, 2)
	if inf.DeviceID.OUI != "OUI" || inf.Events[0].CommandKey != "key" || inf.ParameterList[1].Type != "T2" {
		t.Fatalf("detached %+v", inf)
	}
	shares := func(s string) bool {
		return len(s) > 0 && unsafe.StringData(s) == unsafe.StringData(body[strings.Index(body, s):])
	}
	for _, s := range []string{inf.DeviceID.OUI, inf.Events[0].Code, inf.ParameterList[0].Name, inf.ParameterList[1].Value} {
		if shares(s) {
			t.Errorf("%q still points into the body", s)
		}
	}
	if !shares(inf.ParameterList[2].Name) {
		t.Error("a parameter past the bound was copied")
	}
}

// A postponed discovery's ScheduleInform delay is spread over 50% to 150%
// of -sessions.discovery-retry and is never 0, which CPEs refuse.
func TestDiscoveryRetrySpread(t *testing.T) {
	lo, hi := time.Hour, time.Duration(0)
	for i := range 2000 {
		d := spread("session-"+strconv.Itoa(i), time.Minute)
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 30*time.Second || hi > 90*time.Second || hi-lo < 50*time.Second {
		t.Fatalf("delays of a minute spread over %s to %s", lo, hi)
	}
	for i := range 200 {
		if got := scheduleDelay("session-"+strconv.Itoa(i), 400*time.Millisecond); got != 1 {
			t.Fatalf("a retry of 400ms asks for %d seconds", got)
		}
	}
	if got := scheduleDelay("s", time.Minute); got < 30 || got > 90 {
		t.Fatalf("a retry of 1m asks for %d seconds", got)
	}
}

// A request on a held session that names another device or tenant (a
// forged or confused SessionService call) is refused and leaves the
// session as it was.
func TestSessionOfAnotherDeviceRefused(t *testing.T) {
	v := newEnv(t)
	e := v.engine("w1", nil, nil)
	a, b := v.device("SN-OWN1"), v.device("SN-OWN2")
	if got := methodOf(t, exchange(t, e, a.open("own-a", "2 PERIODIC"))); got != "InformResponse" {
		t.Fatalf("a's Inform answered %s", got)
	}
	forged := a.next(nil)
	forged.DeviceKey = b.key
	if _, err := e.Exchange(t.Context(), forged); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("a request for b on a's session: %v, want ErrInvalidRequest", err)
	}
	other := a.next(nil)
	other.Tenant = "other"
	if _, err := e.Exchange(t.Context(), other); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("a request of another tenant on a's session: %v, want ErrInvalidRequest", err)
	}
	if sent := a.run(t, func(int) *Engine { return e }); sent[0] != "GetParameterNames" {
		t.Fatalf("a's own session then got %v", sent)
	}
	if got := v.inv.recorded(); len(got) != 1 || got[0].DeviceKey != a.key {
		t.Fatalf("recorded %+v", got)
	}
}

// A hostile CPE's oversized message in the middle of a session is not
// decoded past the limit: it is answered with a fault, and the session
// still ends cleanly, its budget given back.
func TestOversizedMessageMidSession(t *testing.T) {
	v := newEnv(t)
	e := v.engine("w1", nil, func(c *Config) { c.MaxBodyBytes = 64 << 10 })
	a := v.device("SN-BIG1")
	exchange(t, e, a.open("big-a", "2 PERIODIC"))
	huge := bytes.Repeat([]byte("<x>"), (64<<10)/3+10)
	r := exchange(t, e, a.next(append([]byte(`<?xml version="1.0"?>`), huge...)))
	env, err := cwmp.Decode(r.Body)
	if err != nil || r.SessionEnded {
		t.Fatalf("oversized message answered %d (ended %t): %v", r.Status, r.SessionEnded, err)
	}
	if f, ok := env.Body.(*cwmp.Fault); !ok || f.Code != cwmp.FaultResourcesExceeded {
		t.Fatalf("oversized message answered %s, want fault 8004", env.Body.Method())
	}
	a.run(t, func(int) *Engine { return e })
	if got := v.inv.recorded(); len(got) != 1 {
		t.Fatalf("%d records after the session", len(got))
	}
	if e.Sessions() != 0 || e.MemoryUsed() != 0 {
		t.Fatalf("after the session: %d sessions, %d bytes held", e.Sessions(), e.MemoryUsed())
	}
}

// A poisoned checkpoint journal (lines that do not replay: an unknown
// kind, an operation the queue lacks, records that are not JSON, Inform
// parameters that are not triples, a line without its end) is refused:
// the checkpoint is dropped and the request answered as outside any
// session, whatever the head says.
func TestPoisonedJournalRefused(t *testing.T) {
	for _, junk := range []string{
		"x 1\n", "o nosuch {}\n", "o discovery not-json\n", `i {"p":["a","b"]}` + "\n", "i {}", "o discovery " + `{"vi":[99999],"vv":["a","b"]}` + "\n",
	} {
		v := newEnv(t)
		a := v.engine("wa", nil, nil)
		b := v.engine("wb", nil, nil)
		d := v.device("SN-POISON")
		exchange(t, a, d.open("sp", "0 BOOTSTRAP"))
		first := exchange(t, a, d.next(nil)) // GetParameterNames
		ctx := context.Background()
		cp, err := v.store.Checkpoints.Load(ctx, tenant, d.key, "sp")
		if err != nil {
			t.Fatal(err)
		}
		cp.Journal, cp.JournalAt = append(cp.Journal, junk...), 0
		cp.Seq++
		if err := v.store.Checkpoints.Save(ctx, cp, time.Minute); err != nil {
			t.Fatal(err)
		}
		r := exchange(t, b, d.next(d.answer(first.Body)))
		if !r.SessionEnded || r.Status == 200 {
			t.Fatalf("journal + %q: resumed, answered %d", junk, r.Status)
		}
		if _, err := v.store.Checkpoints.Load(ctx, tenant, d.key, "sp"); !errors.Is(err, affinity.ErrNoCheckpoint) {
			t.Fatalf("journal + %q: poisoned checkpoint kept: %v", junk, err)
		}
		if b.Sessions() != 0 || b.MemoryUsed() != 0 {
			t.Fatalf("journal + %q: %d sessions, %d bytes held", junk, b.Sessions(), b.MemoryUsed())
		}
	}
}
