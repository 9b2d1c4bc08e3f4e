package sessions

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/affinity/affinitytest"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const testTenant = "default"

// t0 is the fake clock's start; far from the zero time so that fencing
// tokens raised to the clock stay realistic.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// harness is one cluster: an affinity store (Redis or memory), a fake
// inventory served over gRPC, a fake clock, and workers made on demand,
// each behind its own gRPC server.
type harness struct {
	t      testing.TB
	clock  *affinitytest.Clock
	store  affinity.Store
	inv    *fakeInventory
	invCli *GRPCInventory
	// local makes workers that keep their sessions in memory only
	// (Deps.Local), as fleetacs all without Redis does.
	local bool
}

// newRedisHarness uses a real Redis (pkg/testenv) under a key prefix of
// the test's own.
func newRedisHarness(t testing.TB) *harness {
	addr, db := testenv.RedisDB(t)
	c := redis.NewClient(&redis.Options{Addr: addr, DB: db, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	clock := affinitytest.NewClock(t0)
	r := affinity.NewRedis(c, "fleetacs:"+testenv.UniqueName(t)+":", clock.Now)
	return newHarness(t, clock, r.Store())
}

func newMemoryHarness(t testing.TB) *harness {
	clock := affinitytest.NewClock(t0)
	return newHarness(t, clock, affinity.NewMemory(clock.Now).Store())
}

// newLocalHarness is one process without Redis: the in-memory store and
// workers with Deps.Local.
func newLocalHarness(t testing.TB) *harness {
	h := newMemoryHarness(t)
	h.local = true
	return h
}

func newHarness(t testing.TB, clock *affinitytest.Clock, store affinity.Store) *harness {
	h := &harness{t: t, clock: clock, store: store, inv: newFakeInventory()}
	srv := grpc.NewServer()
	inventoryv1.RegisterInventoryInternalServiceServer(srv, h.inv)
	h.invCli = NewGRPCInventory(testenv.GRPCConn(t, srv))
	return h
}

func testConfig() Config {
	c := DefaultConfig()
	c.WorkerID = "w-test"
	c.AdvertiseAddr = "127.0.0.1:9300"
	c.CRCredentials = "off" // engine/crcreds_test.go sets credentials
	return c
}

// testWorker is a worker with its own gRPC server and a client to it.
type testWorker struct {
	*Worker
	client sessionsv1.SessionServiceClient
	reader *sdkmetric.ManualReader
	stop   func()
}

func (h *harness) worker(id string, mutate func(*Config)) *testWorker {
	h.t.Helper()
	cfg := testConfig()
	cfg.WorkerID = id
	if mutate != nil {
		mutate(&cfg)
	}
	reader := sdkmetric.NewManualReader()
	w, err := New(cfg, Deps{
		Inventory: h.invCli, Leases: h.store.Leases, Checkpoints: h.store.Checkpoints, Registry: h.store.Registry, Sessions: h.store.Sessions,
		Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), Now: h.clock.Now, Local: h.local,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	srv := grpc.NewServer()
	w.Register(srv)
	cc := testenv.GRPCConn(h.t, srv)
	return &testWorker{Worker: w, client: sessionsv1.NewSessionServiceClient(cc), reader: reader, stop: srv.Stop}
}

// tick runs the engine's background work once, as Run would.
func (tw *testWorker) tick(ctx context.Context) { tw.e.Tick(ctx) }

// counter sums a counter's data points whose attribute key has value (any
// value when key is "").
func (tw *testWorker) counter(t testing.TB, name, key, value string) int64 {
	t.Helper()
	var n int64
	for _, m := range tw.metrics(t, name) {
		sum, ok := m.Data.(metricdata.Sum[int64])
		if !ok {
			t.Fatalf("metric %s is %T", name, m.Data)
		}
		for _, dp := range sum.DataPoints {
			if v, ok := dp.Attributes.Value(attribute.Key(key)); key == "" || (ok && v.AsString() == value) {
				n += dp.Value
			}
		}
	}
	return n
}

// metrics collects the worker's metrics and returns those called name.
func (tw *testWorker) metrics(t testing.TB, name string) []metricdata.Metrics {
	t.Helper()
	return metricsNamed(t, tw.reader, name)
}

// metricsNamed collects r's metrics and returns those called name.
func metricsNamed(t testing.TB, r *sdkmetric.ManualReader, name string) []metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var out []metricdata.Metrics
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				out = append(out, m)
			}
		}
	}
	return out
}

// histogram returns the count and sum of the histogram name's points whose
// attribute key is value.
func (tw *testWorker) histogram(t testing.TB, name, key, value string) (uint64, float64) {
	t.Helper()
	var n uint64
	var sum float64
	for _, m := range tw.metrics(t, name) {
		h, ok := m.Data.(metricdata.Histogram[float64])
		if !ok {
			t.Fatalf("metric %s is %T", name, m.Data)
		}
		for _, dp := range h.DataPoints {
			if v, ok := dp.Attributes.Value(attribute.Key(key)); ok && v.AsString() == value {
				n += dp.Count
				sum += dp.Sum
			}
		}
	}
	return n, sum
}

// cpe is a simulated CPE: a device identity, a tree, and the session it is
// in. It answers GetParameterNames and GetParameterValues from its tree.
type cpe struct {
	t          testing.TB
	id         cwmp.DeviceID
	key        string
	tree       []treeNode
	byName     map[string]int
	maxBatch   int             // a GPV asking for more names gets 9004
	crashAbove int             // a GPV asking for more names gets no answer at all (see crashes)
	bad        map[string]bool // a GPV naming one of these gets 9005
	gpv, gpn   int

	// The session in progress.
	sid    string
	lease  *sessionsv1.DeviceLease
	events []string
}

type treeNode struct {
	name, value, typ string
	writable         bool
}

func newCPE(t testing.TB, serial string, tree []treeNode) *cpe {
	c := &cpe{t: t, tree: tree, byName: map[string]int{}, bad: map[string]bool{},
		id: cwmp.DeviceID{Manufacturer: "Acme", OUI: "00D09E", ProductClass: "Router", SerialNumber: serial}}
	c.key = "00D09E-Router-" + serial
	for i, n := range tree {
		c.byName[n.name] = i
	}
	return c
}

// treeHosts is tree300 with hosts Hosts.Host instances: 10 + 5*hosts
// parameters.
func treeHosts(hosts int) []treeNode {
	nodes := tree300()[:15]
	for i := 1; i <= hosts; i++ {
		p := "Device.Hosts.Host." + strconv.Itoa(i) + "."
		nodes = append(nodes, treeNode{name: p},
			treeNode{name: p + "IPAddress", value: fmt.Sprintf("192.168.%d.%d", i/250, i%250), typ: "xsd:string"},
			treeNode{name: p + "PhysAddress", value: fmt.Sprintf("00:11:22:33:%02x:%02x", i/256, i%256), typ: "xsd:string"},
			treeNode{name: p + "HostName", value: "host-" + strconv.Itoa(i), typ: "xsd:string"},
			treeNode{name: p + "Active", value: "true", typ: "xsd:boolean"},
			treeNode{name: p + "LeaseTimeRemaining", value: strconv.Itoa(100 * i), typ: "xsd:int"},
		)
	}
	return nodes
}

// tree300 is a TR-181 tree with 300 parameters: DeviceInfo and
// ManagementServer with 5 each, and 58 Hosts.Host instances with 5 each.
func tree300() []treeNode {
	nodes := []treeNode{
		{name: "Device."}, {name: "Device.DeviceInfo."},
		{name: "Device.DeviceInfo.Manufacturer", value: "Acme", typ: "xsd:string"},
		{name: "Device.DeviceInfo.SerialNumber", value: "SN", typ: "xsd:string"},
		{name: "Device.DeviceInfo.SoftwareVersion", value: "2.0.1", typ: "xsd:string"},
		{name: "Device.DeviceInfo.HardwareVersion", value: "HW1", typ: "xsd:string"},
		{name: "Device.DeviceInfo.UpTime", value: "3600", typ: "xsd:unsignedInt"},
		{name: "Device.ManagementServer."},
		{name: "Device.ManagementServer.URL", value: "http://acs.example/", typ: "xsd:string", writable: true},
		{name: "Device.ManagementServer.PeriodicInformEnable", value: "true", typ: "xsd:boolean", writable: true},
		{name: "Device.ManagementServer.PeriodicInformInterval", value: "3600", typ: "xsd:unsignedInt", writable: true},
		{name: "Device.ManagementServer.ConnectionRequestURL", value: "http://10.0.0.2:7547/cr", typ: "xsd:string"},
		{name: "Device.ManagementServer.ParameterKey", value: "", typ: "xsd:string"},
		{name: "Device.Hosts."}, {name: "Device.Hosts.Host.", writable: false},
	}
	for i := 1; i <= 58; i++ {
		p := "Device.Hosts.Host." + strconv.Itoa(i) + "."
		nodes = append(nodes, treeNode{name: p},
			treeNode{name: p + "IPAddress", value: fmt.Sprintf("192.168.1.%d", i), typ: "xsd:string"},
			treeNode{name: p + "PhysAddress", value: fmt.Sprintf("00:11:22:33:44:%02x", i), typ: "xsd:string"},
			treeNode{name: p + "HostName", value: "host-" + strconv.Itoa(i), typ: "xsd:string"},
			treeNode{name: p + "Active", value: "true", typ: "xsd:boolean"},
			treeNode{name: p + "LeaseTimeRemaining", value: strconv.Itoa(100 * i), typ: "xsd:int"},
		)
	}
	return nodes
}

func leafCount(tree []treeNode) int {
	n := 0
	for _, x := range tree {
		if x.name[len(x.name)-1] != '.' {
			n++
		}
	}
	return n
}

// informBody encodes an Inform with the given events and the forced
// parameters from the tree.
func (c *cpe) informBody(events ...string) []byte {
	c.t.Helper()
	inf := &cwmp.Inform{DeviceID: c.id, MaxEnvelopes: 1, CurrentTime: "2026-03-01T12:00:00Z"}
	for _, e := range events {
		inf.Events = append(inf.Events, cwmp.Event{Code: e})
	}
	for _, name := range []string{"Device.DeviceInfo.SoftwareVersion", "Device.DeviceInfo.HardwareVersion", "Device.ManagementServer.ConnectionRequestURL", "Device.ManagementServer.ParameterKey"} {
		if i, ok := c.byName[name]; ok {
			n := c.tree[i]
			inf.ParameterList = append(inf.ParameterList, cwmp.ParameterValue{Name: n.name, Value: n.value, Type: n.typ})
		}
	}
	return c.encode(&cwmp.Envelope{Namespace: cwmp.NS1_2, Version: cwmp.V1_2, Header: cwmp.Header{ID: "inform-1", HasID: true}, Body: inf})
}

func (c *cpe) encode(env *cwmp.Envelope) []byte {
	c.t.Helper()
	b, err := cwmp.Encode(env)
	if err != nil {
		c.t.Fatalf("encode CPE message: %v", err)
	}
	return b
}

// answer returns the CPE's POST body answering the ACS request in body;
// nil when the request crashed it (crashAbove).
func (c *cpe) answer(body []byte) []byte {
	c.t.Helper()
	env, err := cwmp.Decode(body)
	if err != nil {
		c.t.Fatalf("CPE cannot decode ACS message: %v\n%s", err, body)
	}
	reply := &cwmp.Envelope{Namespace: env.Namespace, Version: env.Version, Header: cwmp.Header{ID: env.Header.ID, HasID: env.Header.HasID}}
	switch m := env.Body.(type) {
	case *cwmp.GetParameterNames:
		c.gpn++
		resp := &cwmp.GetParameterNamesResponse{}
		for _, n := range c.tree {
			if len(n.name) >= len(m.ParameterPath) && n.name[:len(m.ParameterPath)] == m.ParameterPath {
				resp.ParameterList = append(resp.ParameterList, cwmp.ParameterInfo{Name: n.name, Writable: n.writable})
			}
		}
		if len(resp.ParameterList) == 0 {
			reply.Body = cwmp.NewFault(cwmp.FaultInvalidParameterName)
		} else {
			reply.Body = resp
		}
	case *cwmp.GetParameterValues:
		c.gpv++
		if c.crashAbove > 0 && len(m.ParameterNames) > c.crashAbove {
			return nil // crashed: nothing goes back
		}
		if c.maxBatch > 0 && len(m.ParameterNames) > c.maxBatch {
			reply.Body = cwmp.NewFault(cwmp.FaultCPEResourcesExceeded)
			break
		}
		resp := &cwmp.GetParameterValuesResponse{}
		for _, name := range m.ParameterNames {
			i, ok := c.byName[name]
			if !ok || c.bad[name] {
				resp = nil
				break
			}
			n := c.tree[i]
			resp.ParameterList = append(resp.ParameterList, cwmp.ParameterValue{Name: n.name, Value: n.value, Type: n.typ})
		}
		if resp == nil {
			reply.Body = cwmp.NewFault(cwmp.FaultInvalidParameterName)
		} else {
			reply.Body = resp
		}
	default:
		c.t.Fatalf("CPE got unexpected ACS message %s", env.Body.Method())
	}
	return c.encode(reply)
}

// open takes the device lease as a gateway does and returns the request
// carrying the Inform.
func (h *harness) open(c *cpe, sid string, events ...string) *sessionsv1.ExchangeRequest {
	h.t.Helper()
	l, err := h.store.Leases.Acquire(context.Background(), testTenant, c.key, sid, 2*time.Minute)
	if err != nil {
		h.t.Fatal(err)
	}
	c.sid = sid
	c.lease = &sessionsv1.DeviceLease{FencingToken: l.FencingToken, SupersededSessionId: l.Superseded}
	return &sessionsv1.ExchangeRequest{
		SessionId: sid, NewSession: true, Tenant: testTenant, DeviceKey: c.key,
		DeviceId: &sessionsv1.DeviceId{Manufacturer: c.id.Manufacturer, Oui: c.id.OUI, ProductClass: c.id.ProductClass, SerialNumber: c.id.SerialNumber},
		Lease:    c.lease, Body: c.informBody(events...), RemoteAddr: "203.0.113.7:40001",
		Auth: &sessionsv1.CpeAuthentication{Method: sessionsv1.CpeAuthMethod_CPE_AUTH_METHOD_DIGEST, Principal: c.key},
	}
}

// next is a later request of the CPE's session.
func (c *cpe) next(body []byte) *sessionsv1.ExchangeRequest {
	return &sessionsv1.ExchangeRequest{SessionId: c.sid, Tenant: testTenant, DeviceKey: c.key, Body: body, RemoteAddr: "203.0.113.7:40001",
		Auth: &sessionsv1.CpeAuthentication{Method: sessionsv1.CpeAuthMethod_CPE_AUTH_METHOD_SESSION, Principal: c.key}}
}

func exchange(t testing.TB, cl sessionsv1.SessionServiceClient, req *sessionsv1.ExchangeRequest) *sessionsv1.ExchangeResponse {
	t.Helper()
	resp, err := cl.Exchange(context.Background(), req)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return resp
}

// method names the CWMP message of a 200 response ("Fault8002" for a
// fault), or "204".
func method(t testing.TB, resp *sessionsv1.ExchangeResponse) string {
	t.Helper()
	if len(resp.Body) == 0 {
		return strconv.Itoa(int(resp.HttpStatus))
	}
	env, err := cwmp.Decode(resp.Body)
	if err != nil {
		t.Fatalf("worker reply does not decode: %v\n%s", err, resp.Body)
	}
	if f, ok := env.Body.(*cwmp.Fault); ok {
		return "Fault" + strconv.Itoa(int(f.Code))
	}
	return env.Body.Method()
}

// drive runs the CPE's side from the empty POST after the InformResponse
// until the worker answers 204, sending each POST to pick(i) (i counts the
// POSTs), and returns every reply.
func (c *cpe) drive(pick func(i int) sessionsv1.SessionServiceClient) []*sessionsv1.ExchangeResponse {
	c.t.Helper()
	var out []*sessionsv1.ExchangeResponse
	body := []byte(nil)
	for i := 0; i < 1000; i++ {
		resp := exchange(c.t, pick(i), c.next(body))
		out = append(out, resp)
		if resp.HttpStatus != 200 {
			return out
		}
		if resp.SessionEnded {
			c.t.Fatalf("200 with session_ended")
		}
		body = c.answer(resp.Body)
	}
	c.t.Fatal("session did not end after 1000 exchanges")
	return nil
}
