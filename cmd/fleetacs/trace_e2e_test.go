package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	collectortracev1 "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"

	"github.com/fleetacs/fleetacs/pkg/deviceid"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// otlpSpan is one span an OTLP receiver took, flattened.
type otlpSpan struct {
	service              string
	traceID, id, parent  string
	name                 string
	kind                 tracev1.Span_SpanKind
	attrs                map[string]string
	linkTraces, linkSpan []string
}

// otlpReceiver is an OTLP/gRPC trace receiver (the collector's
// TraceService) that keeps every span it is sent.
type otlpReceiver struct {
	collectortracev1.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []otlpSpan
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortracev1.ExportTraceServiceRequest) (*collectortracev1.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := attrString(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := otlpSpan{
					service: service, traceID: hex.EncodeToString(s.GetTraceId()), id: hex.EncodeToString(s.GetSpanId()),
					parent: hex.EncodeToString(s.GetParentSpanId()), name: s.GetName(), kind: s.GetKind(),
					attrs: map[string]string{},
				}
				for _, kv := range s.GetAttributes() {
					sp.attrs[kv.GetKey()] = anyValueString(kv.GetValue())
				}
				for _, l := range s.GetLinks() {
					sp.linkTraces = append(sp.linkTraces, hex.EncodeToString(l.GetTraceId()))
					sp.linkSpan = append(sp.linkSpan, hex.EncodeToString(l.GetSpanId()))
				}
				r.spans = append(r.spans, sp)
			}
		}
	}
	return &collectortracev1.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) snapshot() []otlpSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]otlpSpan(nil), r.spans...)
}

func attrString(kvs []*commonv1.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return anyValueString(kv.GetValue())
		}
	}
	return ""
}

func anyValueString(v *commonv1.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonv1.AnyValue_StringValue:
		return x.StringValue
	case *commonv1.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonv1.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	}
	return v.String()
}

// startOTLPReceiver serves an OTLP receiver on a loopback port and returns
// it with its endpoint URL.
func startOTLPReceiver(t testing.TB) (*otlpReceiver, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rcv := &otlpReceiver{}
	srv := grpc.NewServer()
	collectortracev1.RegisterTraceServiceServer(srv, rcv)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return rcv, "http://" + ln.Addr().String()
}

// TestTraceAcrossServices runs inventory with tasks and the notifier, two
// session workers and a gateway as separate processes exporting their
// spans over OTLP to a receiver in the test (docs/operations.md,
// "Traces"), and checks:
//   - a CPE session is one trace: the Inform's cwmp.request span on the
//     gateway is its root, every later request's span a child of it;
//   - each exchange crosses the processes with the right parents: the
//     gateway's request span → its SessionService client span → the
//     worker's server span → the worker's cwmp.exchange span (device,
//     tenant, RPC attributes) → the worker's inventory client span → the
//     inventory's server span;
//   - a task created through the public API with a connection request is
//     delivered by a session (a trace of its own) whose exchange span links
//     to the CreateTask span, the notifier's span for the connection
//     request is in the CreateTask's trace, and the CPE's fault 9005 is on
//     the exchange span that carried it.
func TestTraceAcrossServices(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run of four processes; make test runs it")
	}
	rcv, endpoint := startOTLPReceiver(t)
	redisAddr, redisDB := testenv.RedisDB(t)
	c := &cluster{t: t, bin: buildFleetacs(t), dir: t.TempDir()}
	t.Cleanup(c.stopAll)
	otel := func(service string) []string {
		return []string{
			"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
			"OTEL_TRACES_SAMPLER=parentbased_always_on", "OTEL_BSP_SCHEDULE_DELAY=50", "OTEL_SERVICE_NAME=" + service,
		}
	}

	ns := startPrivateNATS(t, c)
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }
	coreAddr, corePublic, w1Addr, w2Addr, gwAddr, coreAdmin := addr(), addr(), addr(), addr(), addr(), addr()
	internalToken := filepath.Join(c.dir, "internal.token")
	if err := secretbox.WriteFileExclusive(internalToken, []byte("e2e-internal-token-0123456789abcdef0123456789\n")); err != nil {
		t.Fatal(err)
	}
	common := []string{
		"-log.format=json", "-log.level=warn", "-server.http-addr=127.0.0.1:0", "-server.api-http-addr=127.0.0.1:0", "-server.stop-timeout=10s",
		fmt.Sprintf("-redis.addr=%s", redisAddr), fmt.Sprintf("-redis.db=%d", redisDB), "-redis.prefix=e2e",
		"-client.inventory-addr=" + coreAddr, "-internal.token-file=" + internalToken, "-nats.url=" + ns.URL(),
	}
	args := func(extra ...string) []string { return append(append([]string{}, common...), extra...) }
	// Inventory, tasks and the notifier share a process, as in
	// taskkill_e2e_test.go.
	c.env = otel("fleetacs-core")
	core := c.start("core", args("-server.internal-grpc-addr="+coreAddr, "-server.grpc-addr="+corePublic,
		"-client.tasks-addr="+coreAddr,
		"-inventory.store=sqlite", "-inventory.sqlite-path="+filepath.Join(c.dir, "inventory.db"),
		"-tasks.sqlite-path="+filepath.Join(c.dir, "tasks.db"), "-notifier.allow-loopback",
		"-server.http-addr="+coreAdmin, "inventory", "tasks", "notifier")...)
	worker := func(name, a string) *proc {
		c.env = otel("fleetacs-" + name)
		return c.start(name, args("-server.internal-grpc-addr="+a, "-sessions.advertise-addr="+a, "-client.tasks-addr="+coreAddr,
			"-sessions.worker-id="+name, "-sessions.registry-ttl=3s", "sessions")...)
	}
	w1, w2 := worker("worker-1", w1Addr), worker("worker-2", w2Addr)
	c.env = otel("fleetacs-gateway")
	gw := c.start("gateway", args("-gateway.listen-addr="+gwAddr, "-server.internal-grpc-addr=127.0.0.1:0", "-gateway.auth-shared-username=fleet",
		"-gateway.auth-shared-password=e2e-secret", "-gateway.auth-nonce-secret=e2e-nonce-key", "gateway")...)
	all := []*proc{core, w1, w2, gw}
	c.awaitUp(t, 90*time.Second, all, 20, []string{coreAddr, w1Addr, w2Addr}, "http://"+gwAddr+"/readyz")

	// One CPE: its boot session, then it waits for connection requests.
	var (
		mu      sync.Mutex
		reports []sim.SessionReport
	)
	sm, err := sim.New(sim.Config{URL: "http://" + gwAddr + "/", Model: sim.TR181,
		Devices: 1, Seed: 7, SerialPrefix: "TRACE", BootStorm: true, Concurrency: 1, ConnReq: sim.ConnReqPerDevice,
		Username: "fleet", Password: "e2e-secret", Timeout: 20 * time.Second, TimeScale: 0.01,
		OnSession: func(r sim.SessionReport) {
			mu.Lock()
			defer mu.Unlock()
			reports = append(reports, r)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	key := deviceid.Key(sm.Devices()[0].ID())
	sctx, scancel := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() { _, err := sm.Run(sctx); simDone <- err }()
	defer func() {
		scancel()
		if err := <-simDone; err != nil && sctx.Err() == nil {
			t.Errorf("cpesim: %v", err)
		}
	}()
	var boot sim.SessionReport
	testenv.WaitFor(t, time.Minute, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(reports) == 0 {
			return errors.New("no session yet")
		}
		boot = reports[0]
		return nil
	})
	if !boot.OK {
		t.Fatalf("boot session failed: %s %v", boot.Kind, boot.Err)
	}

	// The Inform's exchange: its spans arrive within the batcher's delay
	// of the session's end.
	var chain traceChain
	testenv.WaitFor(t, 30*time.Second, func() error {
		var err error
		chain, err = informChain(rcv.snapshot(), key)
		return err
	})
	t.Logf("Inform exchange: trace %s, gateway %s, worker %s, inventory call %s", chain.request.traceID,
		chain.request.service, chain.exchange.service, chain.invServer.name)
	// One trace for the session: the Inform's request span is its root,
	// every later request's span a child of it, every exchange span in it.
	if chain.request.parent != "" {
		t.Errorf("the Inform's cwmp.request span has parent %s, want none (the session trace's root)", chain.request.parent)
	}
	// The boot session's exchanges (its round trips but the
	// authentication challenges; nothing else ran yet): wait for all of
	// their spans.
	var want int64
	for code, n := range sm.Snapshot().HTTPStatus {
		if code != http.StatusUnauthorized {
			want += n
		}
	}
	if want < 2 {
		t.Fatalf("boot session of %d exchanges: want at least the Inform and the session's end", want)
	}
	sid := chain.exchange.attrs["fleetacs.session_id"]
	var requests, exchanges []otlpSpan
	testenv.WaitFor(t, 30*time.Second, func() error {
		requests, exchanges = nil, nil
		for _, s := range rcv.snapshot() {
			if s.attrs["fleetacs.session_id"] != sid {
				continue
			}
			switch s.name {
			case "cwmp.request":
				requests = append(requests, s)
			case "cwmp.exchange":
				exchanges = append(exchanges, s)
			}
		}
		if int64(len(requests)) != want || int64(len(exchanges)) != want {
			return fmt.Errorf("session %s: %d request spans, %d exchange spans; want %d of each", sid, len(requests), len(exchanges), want)
		}
		return nil
	})
	for _, s := range requests {
		if s.traceID != chain.request.traceID {
			t.Errorf("request %q of the session in trace %s, want %s", s.attrs["cwmp.rpc"], s.traceID, chain.request.traceID)
		}
		if s.id != chain.request.id && s.parent != chain.request.id {
			t.Errorf("request %q of the session has parent %s, want the Inform's request span %s", s.attrs["cwmp.rpc"], s.parent, chain.request.id)
		}
	}
	for _, s := range exchanges {
		if s.traceID != chain.request.traceID {
			t.Errorf("exchange %q of the session in trace %s, want %s", s.attrs["cwmp.rpc"], s.traceID, chain.request.traceID)
		}
	}
	if chain.exchange.attrs["fleetacs.tenant"] != "default" || chain.exchange.attrs["fleetacs.session_id"] == "" ||
		chain.exchange.attrs["cwmp.acs_rpc"] != "InformResponse" {
		t.Errorf("exchange span attributes %v: want tenant default, a session ID, acs_rpc InformResponse", chain.exchange.attrs)
	}
	// A task created through the public API with a connection request:
	// the session that delivers it links to the API call's span, and the
	// CPE's fault (9005: no such parameter) is on the exchange that
	// carried it.
	adminToken, err := os.ReadFile(filepath.Join(c.dir, "data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	tasksAPI := tasksv1.NewTasksServiceClient(dialPlain(t, corePublic))
	created, err := tasksAPI.CreateTask(withToken(ctx10(t), strings.TrimSpace(string(adminToken))), &tasksv1.CreateTaskRequest{
		Tenant: "default", DeviceId: key,
		Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterValues{GetParameterValues: &tasksv1.GetParameterValues{
			Names: []string{"Device.NoSuchObject.NoSuchParameter"},
		}}},
		Options: &tasksv1.TaskOptions{ConnectionRequest: true}})
	if err != nil {
		t.Fatalf("create task: %v", err)
	}
	testenv.WaitFor(t, time.Minute, func() error {
		spans := rcv.snapshot()
		var create otlpSpan
		for _, s := range spans {
			if s.service == "fleetacs-core" && s.kind == tracev1.Span_SPAN_KIND_SERVER && s.name == "fleetacs.tasks.v1.TasksService/CreateTask" {
				create = s
			}
		}
		if create.id == "" {
			return errors.New("no CreateTask server span from the tasks service")
		}
		var linked, faulted otlpSpan
		for _, s := range spans {
			if s.name != "cwmp.exchange" || s.attrs["fleetacs.device_id"] != key {
				continue
			}
			for i := range s.linkSpan {
				if s.linkSpan[i] == create.id && s.linkTraces[i] == create.traceID {
					linked = s
				}
			}
			if s.attrs["cwmp.fault_code"] != "" {
				faulted = s
			}
		}
		if linked.id == "" {
			return fmt.Errorf("no exchange span of %s links to the CreateTask span %s/%s", key, create.traceID, create.id)
		}
		if linked.traceID == create.traceID {
			return fmt.Errorf("the delivering session is in the API call's trace %s, want a trace of its own", create.traceID)
		}
		// The connection request: the notifier's span for the wake
		// request the tasks service queued, in the API call's trace.
		var woke bool
		for _, s := range spans {
			if s.name == "notifier.wake" && s.attrs["fleetacs.device_id"] == key && s.attrs["fleetacs.wake_status"] == "sent" {
				if s.traceID != create.traceID || s.service != "fleetacs-core" || s.kind != tracev1.Span_SPAN_KIND_CONSUMER {
					return fmt.Errorf("notifier span in trace %s from %s (%s), want the CreateTask's trace %s", s.traceID, s.service, s.kind, create.traceID)
				}
				woke = true
			}
		}
		if !woke {
			return fmt.Errorf("no notifier.wake span with status sent for %s", key)
		}
		if faulted.id == "" {
			return fmt.Errorf("no exchange span of %s with a fault code yet", key)
		}
		if faulted.attrs["cwmp.fault_code"] != "9005" || faulted.attrs["cwmp.rpc"] != "Fault" || faulted.traceID != linked.traceID {
			return fmt.Errorf("fault exchange span %v in trace %s: want fault 9005 in the delivering session's trace %s", faulted.attrs, faulted.traceID, linked.traceID)
		}
		return nil
	})
	t.Logf("task %s: delivered by a session whose exchange links to the CreateTask span; the CPE's 9005 is on its exchange span", created.GetTask().GetId())

	// With tracing on, the gRPC call metrics are the same as with it off:
	// rpc.server.call.duration from the process's own handler, none from
	// the OpenTelemetry instrumentation (its per-call attribute sets cost
	// more than the spans at a low sample rate) and no client metrics.
	resp, err := http.Get("http://" + coreAdmin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		t.Fatal(err)
	}
	var served bool
	for _, line := range strings.Split(string(metrics), "\n") {
		switch {
		case strings.HasPrefix(line, "rpc_client_"), strings.Contains(line, `otel_scope_name="go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"`):
			t.Errorf("metric of the OpenTelemetry gRPC instrumentation: %s", line)
		case strings.HasPrefix(line, "rpc_server_call_duration_seconds_count{") &&
			strings.Contains(line, `rpc_method="fleetacs.inventory.v1.InventoryInternalService/GetDeviceForSession"`):
			served = true
		}
	}
	if !served {
		t.Errorf("no rpc_server_call_duration_seconds_count of the inventory's GetDeviceForSession on the core's /metrics")
	}
}

// traceChain is the spans of one CWMP exchange, from the gateway to the
// inventory.
type traceChain struct {
	request, gwClient, wServer, exchange, wClient, invServer otlpSpan
}

// informChain finds the spans of the Inform exchange of device key and
// checks their parent links and processes.
func informChain(spans []otlpSpan, key string) (traceChain, error) {
	var ch traceChain
	byID := map[string]otlpSpan{}
	for _, s := range spans {
		byID[s.id] = s
	}
	for _, s := range spans {
		if s.name == "cwmp.exchange" && s.attrs["fleetacs.device_id"] == key && s.attrs["cwmp.rpc"] == "Inform" {
			ch.exchange = s
		}
	}
	if ch.exchange.id == "" {
		return ch, fmt.Errorf("no cwmp.exchange span of the Inform of %s among %d spans", key, len(spans))
	}
	if !strings.HasPrefix(ch.exchange.service, "fleetacs-worker-") {
		return ch, fmt.Errorf("cwmp.exchange span from %q, want a worker", ch.exchange.service)
	}
	parent := func(s otlpSpan, what string) (otlpSpan, error) {
		p, ok := byID[s.parent]
		switch {
		case s.parent == "":
			return p, fmt.Errorf("%s %q has no parent", what, s.name)
		case !ok:
			return p, fmt.Errorf("parent %s of %s %q not received (yet)", s.parent, what, s.name)
		case p.traceID != s.traceID:
			return p, fmt.Errorf("%s %q in trace %s, its parent in %s", what, s.name, s.traceID, p.traceID)
		}
		return p, nil
	}
	var err error
	if ch.wServer, err = parent(ch.exchange, "exchange span"); err != nil {
		return ch, err
	}
	if ch.wServer.kind != tracev1.Span_SPAN_KIND_SERVER || ch.wServer.service != ch.exchange.service ||
		ch.wServer.name != "fleetacs.sessions.v1.SessionService/Exchange" {
		return ch, fmt.Errorf("exchange span's parent %q (%s, %s), want the worker's SessionService/Exchange server span", ch.wServer.name, ch.wServer.kind, ch.wServer.service)
	}
	if ch.gwClient, err = parent(ch.wServer, "worker server span"); err != nil {
		return ch, err
	}
	if ch.gwClient.kind != tracev1.Span_SPAN_KIND_CLIENT || ch.gwClient.service != "fleetacs-gateway" {
		return ch, fmt.Errorf("worker server span's parent %q (%s, %s), want the gateway's client span", ch.gwClient.name, ch.gwClient.kind, ch.gwClient.service)
	}
	if ch.request, err = parent(ch.gwClient, "gateway client span"); err != nil {
		return ch, err
	}
	if ch.request.name != "cwmp.request" || ch.request.service != "fleetacs-gateway" || ch.request.kind != tracev1.Span_SPAN_KIND_SERVER {
		return ch, fmt.Errorf("gateway client span's parent %q (%s, %s), want the gateway's cwmp.request", ch.request.name, ch.request.kind, ch.request.service)
	}
	if ch.request.attrs["cwmp.rpc"] != "Inform" || ch.request.attrs["fleetacs.device_id"] != key {
		return ch, fmt.Errorf("gateway request span attributes %v, want the Inform of %s", ch.request.attrs, key)
	}
	// An inventory call the worker made in the session (it records the
	// session when it ends): a client span under one of the session's
	// exchange spans whose child server span is the inventory's.
	exchanges := map[string]bool{}
	for _, s := range spans {
		if s.name == "cwmp.exchange" && s.attrs["fleetacs.session_id"] == ch.exchange.attrs["fleetacs.session_id"] {
			exchanges[s.id] = true
		}
	}
	var found []string
	for _, s := range spans {
		if !exchanges[s.parent] || s.kind != tracev1.Span_SPAN_KIND_CLIENT {
			continue
		}
		for _, srv := range spans {
			if srv.parent == s.id && srv.kind == tracev1.Span_SPAN_KIND_SERVER && srv.traceID == s.traceID {
				found = append(found, srv.service+" "+srv.name)
				if srv.service == "fleetacs-core" && strings.HasPrefix(srv.name, "fleetacs.inventory.") {
					ch.wClient, ch.invServer = s, srv
				}
			}
		}
	}
	if ch.invServer.id == "" {
		return ch, fmt.Errorf("no inventory server span under a client span of the session's %d exchange spans (server spans under them: %v)", len(exchanges), found)
	}
	return ch, nil
}
