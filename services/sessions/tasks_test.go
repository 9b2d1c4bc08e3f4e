package sessions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/affinity/affinitytest"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

// The task planner on the engine: a fake task queue and tasks service
// (units), an in-memory inventory and affinity store, and a scripted CPE
// speaking through pkg/cwmp.

// memInventory is engine.Inventory in memory; every device is known and
// discovered, so that sessions run tasks only.
type memInventory struct {
	mu    sync.Mutex
	diffs []*engine.Diff
	fail  bool
}

func (m *memInventory) GetDeviceForSession(context.Context, engine.DeviceQuery) (engine.DeviceState, error) {
	return engine.DeviceState{Known: true, DataModelRoot: "Device.", FullDiscoveryTime: t0}, nil
}

func (m *memInventory) RecordSession(_ context.Context, d *engine.Diff) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("inventory down")
	}
	m.diffs = append(m.diffs, d)
	return nil
}

func (m *memInventory) DiscoveryProfile(context.Context, engine.ProductClass) (engine.DiscoveryProfile, error) {
	return engine.DiscoveryProfile{}, nil
}

func (m *memInventory) RecordDiscovery(context.Context, engine.ProductClass, engine.DiscoveryObservation) error {
	return nil
}

func (m *memInventory) last(t *testing.T) *engine.Diff {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.diffs) == 0 {
		t.Fatal("no diff recorded")
	}
	return m.diffs[len(m.diffs)-1]
}

// fakeQueue is a TaskQueue that counts its reads.
type fakeQueue struct {
	mu    sync.Mutex
	ids   []string
	reads int
}

func (q *fakeQueue) Pending(_ context.Context, _, _ string, max int, _ bool) ([]string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.reads++
	return slices.Clone(q.ids[:min(len(q.ids), max)]), nil
}

// fakeTasks is the tasks service: it claims the tasks it holds with the
// action set for each, and keeps the reports.
type fakeTasks struct {
	mu      sync.Mutex
	tasks   map[string]*tasksv1.ClaimedTask
	claims  []*tasksv1.ClaimTasksRequest
	reports []*tasksv1.TaskReport
	down    bool
}

func newFakeTasks() *fakeTasks { return &fakeTasks{tasks: map[string]*tasksv1.ClaimedTask{}} }

func (f *fakeTasks) ClaimTasks(_ context.Context, req *tasksv1.ClaimTasksRequest) (*tasksv1.ClaimTasksResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claims = append(f.claims, proto.Clone(req).(*tasksv1.ClaimTasksRequest))
	if f.down {
		return nil, errors.New("tasks service down")
	}
	resp := &tasksv1.ClaimTasksResponse{}
	run := 0
	for _, id := range req.GetTaskIds() {
		ct, ok := f.tasks[id]
		if !ok {
			continue
		}
		ct = proto.Clone(ct).(*tasksv1.ClaimedTask)
		if ct.Action == tasksv1.ClaimAction_CLAIM_ACTION_RUN {
			if req.GetMaxRun() > 0 && run >= int(req.GetMaxRun()) {
				ct.Action = tasksv1.ClaimAction_CLAIM_ACTION_SKIP
			}
			run++
		}
		resp.Tasks = append(resp.Tasks, ct)
	}
	return resp, nil
}

func (f *fakeTasks) ReportTasks(_ context.Context, req *tasksv1.ReportTasksRequest) (*tasksv1.ReportTasksResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errors.New("tasks service down")
	}
	resp := &tasksv1.ReportTasksResponse{}
	for _, r := range req.GetReports() {
		f.reports = append(f.reports, r)
		resp.Acks = append(resp.Acks, &tasksv1.ReportTaskAck{Id: r.GetId(), Accepted: true})
	}
	return resp, nil
}

func (f *fakeTasks) add(id string, action tasksv1.ClaimAction, op *tasksv1.Operation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tasks[id] = &tasksv1.ClaimedTask{Action: action, Task: &tasksv1.Task{
		Id: id, Operation: op, CommandKey: id, CreateTime: timestamppb.New(t0.Add(time.Duration(len(f.tasks)) * time.Second)),
	}}
}

// report returns the last report of a task.
func (f *fakeTasks) report(t *testing.T, id string) *tasksv1.TaskReport {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.reports) - 1; i >= 0; i-- {
		if f.reports[i].GetId() == id {
			return f.reports[i]
		}
	}
	t.Fatalf("task %s not reported; reports %v", id, f.reports)
	return nil
}

func (f *fakeTasks) reported() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reports)
}

// recWatcher keeps the session reports.
type recWatcher struct {
	mu      sync.Mutex
	reports []engine.SessionReport
}

func (w *recWatcher) SessionEnded(_ context.Context, r engine.SessionReport) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reports = append(w.reports, r)
}

// taskEnv is one worker with the task planner over fakes.
type taskEnv struct {
	t       testing.TB
	clock   *affinitytest.Clock
	store   affinity.Store
	inv     *memInventory
	queue   *fakeQueue
	tasks   *fakeTasks
	watcher *recWatcher
	e       *engine.Engine
	// keys are the workers' secrets keys (nil: none).
	keys *secretbox.Keyring
	// reader collects the metrics of the last worker engine made.
	reader *sdkmetric.ManualReader
}

func newTaskEnv(t testing.TB, mutate func(*Config)) *taskEnv {
	clock := affinitytest.NewClock(t0)
	v := &taskEnv{t: t, clock: clock, store: affinity.NewMemory(clock.Now).Store(), inv: &memInventory{},
		queue: &fakeQueue{}, tasks: newFakeTasks(), watcher: &recWatcher{}}
	v.e = v.engine(mutate)
	return v
}

// engine makes a worker over the environment's stores (a second one
// plays the worker that takes over from a dead one).
func (v *taskEnv) engine(mutate func(*Config)) *engine.Engine {
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	v.reader = sdkmetric.NewManualReader()
	w, err := New(cfg, Deps{
		Inventory: v.inv, Leases: v.store.Leases, Checkpoints: v.store.Checkpoints, Registry: v.store.Registry, Sessions: v.store.Sessions,
		Now: v.clock.Now, TaskQueue: v.queue, Tasks: v.tasks, Watcher: v.watcher, Secrets: v.keys,
		Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(v.reader)),
	})
	if err != nil {
		v.t.Fatal(err)
	}
	return w.e
}

// quirks is fleetacs.sessions.answer_quirks of the last worker, by
// "quirk method".
func (v *taskEnv) quirks(t testing.TB) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	for _, m := range metricsNamed(t, v.reader, "fleetacs.sessions.answer_quirks") {
		for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
			q, _ := dp.Attributes.Value("quirk")
			meth, _ := dp.Attributes.Value("method")
			got[q.AsString()+" "+meth.AsString()] += dp.Value
		}
	}
	return got
}

// cpe is a scripted CPE: respond answers each ACS request (a response
// message or a *cwmp.Fault).
type taskCPE struct {
	v       *taskEnv
	key     string
	sid     string
	n       int
	respond func(m cwmp.Message) cwmp.Message
	// sent lists the ACS requests of the last session.
	sent []cwmp.Message
}

func (v *taskEnv) cpe(respond func(cwmp.Message) cwmp.Message) *taskCPE {
	return &taskCPE{v: v, key: "00D09E-Router-SN1", respond: respond}
}

func (c *taskCPE) encode(body cwmp.Message, id string) []byte {
	c.v.t.Helper()
	env := &cwmp.Envelope{Namespace: cwmp.NS1_2, Version: cwmp.V1_2, Body: body}
	if id != "" {
		env.Header.ID, env.Header.HasID = id, true
	}
	b, err := cwmp.Encode(env)
	if err != nil {
		c.v.t.Fatal(err)
	}
	return b
}

func (c *taskCPE) exchange(e *engine.Engine, req *engine.Request) *engine.Reply {
	c.v.t.Helper()
	r, err := e.Exchange(context.Background(), req)
	if err != nil {
		c.v.t.Fatalf("exchange: %v", err)
	}
	return r
}

// inform opens a session on e with an Inform of events and params.
func (c *taskCPE) inform(e *engine.Engine, events []cwmp.Event, params ...cwmp.ParameterValue) {
	c.v.t.Helper()
	c.n++
	c.sid = fmt.Sprintf("s%d", c.n)
	c.sent = nil
	l, err := c.v.store.Leases.Acquire(context.Background(), testTenant, c.key, c.sid, time.Minute)
	if err != nil {
		c.v.t.Fatal(err)
	}
	inf := &cwmp.Inform{DeviceID: cwmp.DeviceID{OUI: "00D09E", ProductClass: "Router", SerialNumber: "SN1"}, MaxEnvelopes: 1,
		CurrentTime: "2026-03-01T12:00:00Z", Events: events,
		ParameterList: append([]cwmp.ParameterValue{{Name: "Device.DeviceInfo.SoftwareVersion", Value: "1.0", Type: "xsd:string"}}, params...)}
	r := c.exchange(e, &engine.Request{SessionID: c.sid, NewSession: true, Tenant: testTenant, DeviceKey: c.key,
		Lease: &engine.Lease{FencingToken: l.FencingToken}, Body: c.encode(inf, "inform"), RemoteAddr: "192.0.2.1:7000"})
	if r.Status != 200 {
		c.v.t.Fatalf("Inform answered %d", r.Status)
	}
}

func (c *taskCPE) post(e *engine.Engine, body []byte) *engine.Reply {
	return c.exchange(e, &engine.Request{SessionID: c.sid, Tenant: testTenant, DeviceKey: c.key, Body: body, RemoteAddr: "192.0.2.1:7000"})
}

// request sends a CPE request (TransferComplete, ...) and checks its
// response.
func (c *taskCPE) request(e *engine.Engine, m cwmp.Message) {
	c.v.t.Helper()
	r := c.post(e, c.encode(m, "cpe-1"))
	if r.Status != 200 || !strings.Contains(string(r.Body), m.Method()+"Response") {
		c.v.t.Fatalf("%s answered %d %s", m.Method(), r.Status, r.Body)
	}
}

// step sends body (nil: an empty POST) and returns the ACS's request, nil
// when the session ended.
func (c *taskCPE) step(e *engine.Engine, body []byte) (cwmp.Message, string) {
	c.v.t.Helper()
	m, id, _ := c.stepReply(e, body)
	return m, id
}

// stepReply is step that also returns the ACS's reply, for a test that
// checks how the session ended.
func (c *taskCPE) stepReply(e *engine.Engine, body []byte) (cwmp.Message, string, *engine.Reply) {
	c.v.t.Helper()
	r := c.post(e, body)
	if r.Status != 200 {
		return nil, "", r
	}
	env, err := cwmp.Decode(r.Body)
	if err != nil {
		c.v.t.Fatal(err)
	}
	c.sent = append(c.sent, env.Body)
	return env.Body, env.Header.ID, r
}

// run runs the rest of the session on e: empty POST, then an answer to
// every request, until the ACS ends it.
func (c *taskCPE) run(e *engine.Engine) {
	c.v.t.Helper()
	var body []byte
	for range 100 {
		m, id := c.step(e, body)
		if m == nil {
			return
		}
		body = c.encode(c.respond(m), id)
	}
	c.v.t.Fatal("session did not end")
}

// methods names what the ACS sent in the last session.
func (c *taskCPE) methods() []string {
	var out []string
	for _, m := range c.sent {
		out = append(out, m.Method())
	}
	return out
}

// answers is a CPE that accepts everything: Download and Upload answer
// status 1 (the transfer comes later), AddObject instance 7.
func answers(m cwmp.Message) cwmp.Message {
	switch m := m.(type) {
	case *cwmp.GetRPCMethods:
		return &cwmp.GetRPCMethodsResponse{MethodList: []string{"GetRPCMethods", "Reboot"}}
	case *cwmp.GetParameterNames:
		return &cwmp.GetParameterNamesResponse{ParameterList: []cwmp.ParameterInfo{
			{Name: m.ParameterPath, Writable: false}, {Name: m.ParameterPath + "A", Writable: true}, {Name: m.ParameterPath + "B"}}}
	case *cwmp.GetParameterValues:
		resp := &cwmp.GetParameterValuesResponse{}
		for _, n := range m.ParameterNames {
			resp.ParameterList = append(resp.ParameterList, cwmp.ParameterValue{Name: n, Value: "v-" + n, Type: "xsd:string"})
		}
		return resp
	case *cwmp.GetParameterAttributes:
		return &cwmp.GetParameterAttributesResponse{ParameterList: []cwmp.ParameterAttribute{{Name: m.ParameterNames[0], Notification: 2, AccessList: []string{}}}}
	case *cwmp.AddObject:
		return &cwmp.AddObjectResponse{InstanceNumber: 7}
	case *cwmp.Download:
		return &cwmp.DownloadResponse{Status: 1}
	case *cwmp.Upload:
		return &cwmp.UploadResponse{Status: 1}
	case *cwmp.GetQueuedTransfers:
		return &cwmp.GetQueuedTransfersResponse{TransferList: []cwmp.QueuedTransfer{{CommandKey: "k", State: 2}}}
	case *cwmp.GetAllQueuedTransfers:
		return &cwmp.GetAllQueuedTransfersResponse{TransferList: []cwmp.AllQueuedTransfer{{CommandKey: "k", State: 1, IsDownload: true, FileType: "1 Firmware Upgrade Image"}}}
	case *cwmp.VendorRequest:
		return &cwmp.VendorResponse{Name: m.Name + "Response", Namespace: m.Namespace, InnerXML: "<Log>level 3</Log>"}
	}
	resp, ok := cwmp.NewMessage(m.Method() + "Response")
	if !ok {
		panic("no response to " + m.Method())
	}
	return resp
}

var periodic = []cwmp.Event{{Code: "2 PERIODIC"}}

// Every kind of operation, each in its own session: what the ACS sends,
// and what is reported.
func TestTaskEveryOperation(t *testing.T) {
	tests := []struct {
		name    string
		op      *tasksv1.Operation
		sent    []string
		outcome tasksv1.TaskOutcome
		check   func(t *testing.T, r *tasksv1.TaskReport, sent []cwmp.Message, d *engine.Diff)
	}{
		{name: "GetRPCMethods", op: &tasksv1.Operation{Kind: &tasksv1.Operation_GetRpcMethods{GetRpcMethods: &tasksv1.GetRPCMethods{}}},
			sent: []string{"GetRPCMethods"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE,
			check: func(t *testing.T, r *tasksv1.TaskReport, _ []cwmp.Message, _ *engine.Diff) {
				if got := r.GetResult().GetGetRpcMethods().GetMethods(); len(got) != 2 {
					t.Errorf("methods %v", got)
				}
			}},
		{name: "GetParameterNames", op: &tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterNames{GetParameterNames: &tasksv1.GetParameterNames{ParameterPath: "Device.X."}}},
			sent: []string{"GetParameterNames"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE,
			check: func(t *testing.T, r *tasksv1.TaskReport, _ []cwmp.Message, d *engine.Diff) {
				if n := len(r.GetResult().GetGetParameterNames().GetParameters()); n != 3 {
					t.Errorf("%d names", n)
				}
				if p := param(d, "Device.X.A"); p == nil || !p.HasWritable || !p.Writable {
					t.Errorf("diff has %+v", p)
				}
			}},
		{name: "GetParameterValues", op: gpv("Device.X.A"),
			sent: []string{"GetParameterValues"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE,
			check: func(t *testing.T, r *tasksv1.TaskReport, _ []cwmp.Message, d *engine.Diff) {
				v := r.GetResult().GetGetParameterValues().GetValues()
				if len(v) != 1 || v[0].GetValue() != "v-Device.X.A" || v[0].GetType() != "xsd:string" {
					t.Errorf("values %v", v)
				}
				if p := param(d, "Device.X.A"); p == nil || p.Value != "v-Device.X.A" || p.Type != "xsd:string" {
					t.Errorf("diff has %+v", p)
				}
			}},
		{name: "SetParameterValues", op: spv("", "Device.X.A", "1", "xsd:unsignedInt"),
			sent: []string{"SetParameterValues"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE,
			check: func(t *testing.T, r *tasksv1.TaskReport, sent []cwmp.Message, d *engine.Diff) {
				m := sent[0].(*cwmp.SetParameterValues)
				if m.ParameterKey != "t1" || m.ParameterList[0].Type != "xsd:unsignedInt" {
					t.Errorf("sent %+v: the ParameterKey must be the task's command key", m)
				}
				if p := param(d, "Device.X.A"); p == nil || p.Value != "1" || p.Type != "xsd:unsignedInt" {
					t.Errorf("diff has %+v", p)
				}
			}},
		{name: "SetParameterValues own key", op: spv("mine", "Device.X.A", "1", ""),
			sent: []string{"SetParameterValues"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE,
			check: func(t *testing.T, _ *tasksv1.TaskReport, sent []cwmp.Message, _ *engine.Diff) {
				if m := sent[0].(*cwmp.SetParameterValues); m.ParameterKey != "mine" || m.ParameterList[0].Type != "xsd:string" {
					t.Errorf("sent %+v", m)
				}
			}},
		{name: "GetParameterAttributes", op: &tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterAttributes{GetParameterAttributes: &tasksv1.GetParameterAttributes{Names: []string{"Device.X.A"}}}},
			sent: []string{"GetParameterAttributes"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE,
			check: func(t *testing.T, r *tasksv1.TaskReport, _ []cwmp.Message, _ *engine.Diff) {
				if a := r.GetResult().GetGetParameterAttributes().GetAttributes(); len(a) != 1 || a[0].GetNotification() != 2 {
					t.Errorf("attributes %v", a)
				}
			}},
		{name: "SetParameterAttributes", op: &tasksv1.Operation{Kind: &tasksv1.Operation_SetParameterAttributes{SetParameterAttributes: &tasksv1.SetParameterAttributes{
			Changes: []*tasksv1.ParameterAttributeChange{{Name: "Device.X.A", NotificationChange: true, Notification: 2}}}}},
			sent: []string{"SetParameterAttributes"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE},
		{name: "AddObject", op: &tasksv1.Operation{Kind: &tasksv1.Operation_AddObject{AddObject: &tasksv1.AddObject{ObjectName: "Device.NAT.PortMapping."}}},
			sent: []string{"AddObject"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE,
			check: func(t *testing.T, r *tasksv1.TaskReport, _ []cwmp.Message, d *engine.Diff) {
				res := r.GetResult().GetAddObject()
				if res.GetInstanceNumber() != 7 || res.GetObjectPath() != "Device.NAT.PortMapping.7." {
					t.Errorf("result %v", res)
				}
				if param(d, "Device.NAT.PortMapping.7.") == nil {
					t.Errorf("the new instance is not in the diff: %+v", d.Parameters)
				}
			}},
		{name: "DeleteObject", op: &tasksv1.Operation{Kind: &tasksv1.Operation_DeleteObject{DeleteObject: &tasksv1.DeleteObject{ObjectName: "Device.NAT.PortMapping.3."}}},
			sent: []string{"DeleteObject"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE,
			check: func(t *testing.T, _ *tasksv1.TaskReport, _ []cwmp.Message, d *engine.Diff) {
				if !slices.Contains(d.RemovedPaths, "Device.NAT.PortMapping.3.") {
					t.Errorf("removed %v", d.RemovedPaths)
				}
			}},
		{name: "Reboot", op: &tasksv1.Operation{Kind: &tasksv1.Operation_Reboot{Reboot: &tasksv1.Reboot{}}},
			sent: []string{"Reboot"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_AWAIT,
			check: func(t *testing.T, r *tasksv1.TaskReport, sent []cwmp.Message, _ *engine.Diff) {
				if sent[0].(*cwmp.Reboot).CommandKey != "t1" {
					t.Errorf("sent %+v", sent[0])
				}
				if !r.GetAwaitDeadline().AsTime().Equal(t0.Add(time.Hour)) {
					t.Errorf("await deadline %v", r.GetAwaitDeadline().AsTime())
				}
			}},
		{name: "FactoryReset", op: &tasksv1.Operation{Kind: &tasksv1.Operation_FactoryReset{FactoryReset: &tasksv1.FactoryReset{}}},
			sent: []string{"FactoryReset"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_AWAIT},
		{name: "Download accepted", op: download(), sent: []string{"Download"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_AWAIT,
			check: func(t *testing.T, _ *tasksv1.TaskReport, sent []cwmp.Message, _ *engine.Diff) {
				if d := sent[0].(*cwmp.Download); d.CommandKey != "t1" || d.Password != "secret" || d.URL != "http://files/fw.bin" {
					t.Errorf("sent %+v", d)
				}
			}},
		{name: "Upload", op: &tasksv1.Operation{Kind: &tasksv1.Operation_Upload{Upload: &tasksv1.Upload{FileType: "1 Vendor Configuration File", Url: "http://files/up"}}},
			sent: []string{"Upload"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_AWAIT},
		{name: "ScheduleInform", op: &tasksv1.Operation{Kind: &tasksv1.Operation_ScheduleInform{ScheduleInform: &tasksv1.ScheduleInform{DelaySeconds: 30}}},
			sent: []string{"ScheduleInform"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_AWAIT},
		{name: "ScheduleDownload", op: &tasksv1.Operation{Kind: &tasksv1.Operation_ScheduleDownload{ScheduleDownload: &tasksv1.ScheduleDownload{
			FileType: "1 Firmware Upgrade Image", Url: "http://files/fw.bin", TimeWindows: []*tasksv1.TimeWindow{{WindowEnd: 60, WindowMode: "1 At Any Time", MaxRetries: -1}}}}},
			sent: []string{"ScheduleDownload"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_AWAIT},
		{name: "CancelTransfer", op: &tasksv1.Operation{Kind: &tasksv1.Operation_CancelTransfer{CancelTransfer: &tasksv1.CancelTransfer{CommandKey: "other"}}},
			sent: []string{"CancelTransfer"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE,
			check: func(t *testing.T, _ *tasksv1.TaskReport, sent []cwmp.Message, _ *engine.Diff) {
				if sent[0].(*cwmp.CancelTransfer).CommandKey != "other" {
					t.Errorf("CancelTransfer must name the transfer's key: %+v", sent[0])
				}
			}},
		{name: "ChangeDUState", op: &tasksv1.Operation{Kind: &tasksv1.Operation_ChangeDuState{ChangeDuState: &tasksv1.ChangeDUState{
			Operations: []*tasksv1.DeploymentUnitOperation{{Kind: &tasksv1.DeploymentUnitOperation_Install{Install: &tasksv1.DuInstall{Url: "http://du/x"}}}}}}},
			sent: []string{"ChangeDUState"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_AWAIT},
		{name: "GetQueuedTransfers", op: &tasksv1.Operation{Kind: &tasksv1.Operation_GetQueuedTransfers{GetQueuedTransfers: &tasksv1.GetQueuedTransfers{}}},
			sent: []string{"GetQueuedTransfers"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE,
			check: func(t *testing.T, r *tasksv1.TaskReport, _ []cwmp.Message, _ *engine.Diff) {
				if q := r.GetResult().GetQueuedTransfers().GetTransfers(); len(q) != 1 || q[0].GetState() != 2 {
					t.Errorf("transfers %v", q)
				}
			}},
		{name: "GetAllQueuedTransfers", op: &tasksv1.Operation{Kind: &tasksv1.Operation_GetAllQueuedTransfers{GetAllQueuedTransfers: &tasksv1.GetAllQueuedTransfers{}}},
			sent: []string{"GetAllQueuedTransfers"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE,
			check: func(t *testing.T, r *tasksv1.TaskReport, _ []cwmp.Message, _ *engine.Diff) {
				if q := r.GetResult().GetQueuedTransfers().GetTransfers(); len(q) != 1 || !q[0].GetIsDownload() {
					t.Errorf("transfers %v", q)
				}
			}},
		{name: "Refresh", op: &tasksv1.Operation{Kind: &tasksv1.Operation_Refresh{Refresh: &tasksv1.Refresh{Path: "Device.Y."}}},
			sent: []string{"GetParameterNames", "GetParameterValues"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE,
			check: func(t *testing.T, r *tasksv1.TaskReport, sent []cwmp.Message, d *engine.Diff) {
				if g := sent[1].(*cwmp.GetParameterValues); !slices.Equal(g.ParameterNames, []string{"Device.Y.A", "Device.Y.B"}) {
					t.Errorf("GPV of %v: objects must not be asked for", g.ParameterNames)
				}
				if n := len(r.GetResult().GetGetParameterValues().GetValues()); n != 2 {
					t.Errorf("%d values", n)
				}
				if p := param(d, "Device.Y.B"); p == nil || p.Value != "v-Device.Y.B" || !p.HasWritable {
					t.Errorf("diff has %+v", p)
				}
				if param(d, "Device.Y.") == nil {
					t.Error("the refreshed object is not in the diff")
				}
			}},
		{name: "Refresh of the root", op: &tasksv1.Operation{Kind: &tasksv1.Operation_Refresh{Refresh: &tasksv1.Refresh{}}},
			sent: []string{"GetParameterNames", "GetParameterValues"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE,
			check: func(t *testing.T, _ *tasksv1.TaskReport, sent []cwmp.Message, _ *engine.Diff) {
				if p := sent[0].(*cwmp.GetParameterNames).ParameterPath; p != "Device." {
					t.Errorf("GPN of %q", p)
				}
			}},
		{name: "VendorMethod", op: &tasksv1.Operation{Kind: &tasksv1.Operation_VendorMethod{VendorMethod: &tasksv1.VendorMethod{
			Method: "X_ACME_Log", Namespace: "urn:acme", ArgumentsXml: "<Level>3</Level>"}}},
			sent: []string{"X_ACME_Log"}, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_DONE,
			check: func(t *testing.T, r *tasksv1.TaskReport, sent []cwmp.Message, _ *engine.Diff) {
				if m := sent[0].(*cwmp.VendorRequest); m.Namespace != "urn:acme" || m.Arguments != "<Level>3</Level>" {
					t.Errorf("sent %#v", m)
				}
				if got := resultXML(t, r); got != "<Log>level 3</Log>" {
					t.Errorf("response_xml %q", got)
				}
			}},
		{name: "VendorMethod not a vendor name", op: &tasksv1.Operation{Kind: &tasksv1.Operation_VendorMethod{VendorMethod: &tasksv1.VendorMethod{Method: "Reboot"}}},
			sent: nil, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_FAULT,
			check: func(t *testing.T, r *tasksv1.TaskReport, _ []cwmp.Message, _ *engine.Diff) {
				if r.GetFault().GetSource() != tasksv1.FaultSource_FAULT_SOURCE_ACS || !strings.Contains(r.GetFault().GetFaultString(), "X_<VENDOR>_<Name>") {
					t.Errorf("fault %v", r.GetFault())
				}
			}},
		{name: "VendorMethod malformed arguments", op: &tasksv1.Operation{Kind: &tasksv1.Operation_VendorMethod{VendorMethod: &tasksv1.VendorMethod{Method: "X_ACME_Log", ArgumentsXml: "<Level>"}}},
			sent: nil, outcome: tasksv1.TaskOutcome_TASK_OUTCOME_FAULT,
			check: func(t *testing.T, r *tasksv1.TaskReport, _ []cwmp.Message, _ *engine.Diff) {
				if r.GetFault().GetSource() != tasksv1.FaultSource_FAULT_SOURCE_ACS || !strings.Contains(r.GetFault().GetFaultString(), "malformed XML") {
					t.Errorf("fault %v", r.GetFault())
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newTaskEnv(t, nil)
			v.queue.ids = []string{"t1"}
			v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, tt.op)
			c := v.cpe(answers)
			c.inform(v.e, periodic)
			c.run(v.e)
			if got := c.methods(); !slices.Equal(got, tt.sent) {
				t.Fatalf("ACS sent %v, want %v", got, tt.sent)
			}
			r := v.tasks.report(t, "t1")
			if r.GetOutcome() != tt.outcome {
				t.Fatalf("reported %v (%s), want %v", r.GetOutcome(), r.GetDetail(), tt.outcome)
			}
			if tt.check != nil {
				tt.check(t, r, c.sent, v.inv.last(t))
			}
		})
	}
}

func gpv(names ...string) *tasksv1.Operation {
	return &tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterValues{GetParameterValues: &tasksv1.GetParameterValues{Names: names}}}
}

func spv(key, name, value, typ string) *tasksv1.Operation {
	return &tasksv1.Operation{Kind: &tasksv1.Operation_SetParameterValues{SetParameterValues: &tasksv1.SetParameterValues{
		ParameterKey: key, Values: []*tasksv1.ParameterValue{{Name: name, Value: value, Type: typ}}}}}
}

func download() *tasksv1.Operation {
	return &tasksv1.Operation{Kind: &tasksv1.Operation_Download{Download: &tasksv1.Download{
		FileType: "1 Firmware Upgrade Image", Url: "http://files/fw.bin", Username: "u", Password: "secret"}}}
}

func param(d *engine.Diff, path string) *engine.Parameter {
	for i := range d.Parameters {
		if d.Parameters[i].Path == path {
			return &d.Parameters[i]
		}
	}
	return nil
}

// A CPE fault with per-parameter faults is reported as the task's fault,
// and nothing of the SetParameterValues reaches inventory.
func TestTaskCPEFault(t *testing.T) {
	v := newTaskEnv(t, nil)
	v.queue.ids = []string{"t1"}
	v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, spv("", "Device.X.A", "70000", "xsd:unsignedShort"))
	c := v.cpe(func(cwmp.Message) cwmp.Message {
		f := cwmp.NewFault(cwmp.FaultCPEInvalidArguments)
		f.SetParameterValuesFaults = []cwmp.SetParameterValuesFault{{ParameterName: "Device.X.A", FaultCode: 9007, FaultString: "Invalid parameter value"}}
		return f
	})
	c.inform(v.e, periodic)
	c.run(v.e)
	r := v.tasks.report(t, "t1")
	f := r.GetFault()
	if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_FAULT || f.GetCode() != 9003 || f.GetSource() != tasksv1.FaultSource_FAULT_SOURCE_CPE {
		t.Fatalf("report %v", r)
	}
	if pf := f.GetParameterFaults(); len(pf) != 1 || pf[0].GetName() != "Device.X.A" || pf[0].GetCode() != 9007 || pf[0].GetFaultString() == "" {
		t.Fatalf("parameter faults %v", pf)
	}
	if param(v.inv.last(t), "Device.X.A") != nil {
		t.Fatal("a refused value reached the diff")
	}
}

// resultXML returns the response_xml of a report's VendorMethodResult.
func resultXML(t *testing.T, r *tasksv1.TaskReport) string {
	t.Helper()
	return r.GetResult().GetVendorMethod().GetResponseXml()
}

// A CPE that does not know a vendor method faults it: the task's fault is
// the CPE's.
func TestTaskVendorMethodCPEFault(t *testing.T) {
	v := newTaskEnv(t, nil)
	v.queue.ids = []string{"t1"}
	v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, &tasksv1.Operation{Kind: &tasksv1.Operation_VendorMethod{
		VendorMethod: &tasksv1.VendorMethod{Method: "X_ACME_Log"}}})
	c := v.cpe(func(cwmp.Message) cwmp.Message { return cwmp.NewFault(cwmp.FaultCPEMethodNotSupported) })
	c.inform(v.e, periodic)
	c.run(v.e)
	r := v.tasks.report(t, "t1")
	if f := r.GetFault(); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_FAULT || f.GetCode() != 9000 || f.GetSource() != tasksv1.FaultSource_FAULT_SOURCE_CPE {
		t.Fatalf("report %v", r)
	}
}

// A task whose request is not valid CWMP fails without costing the
// session.
func TestTaskInvalidRequest(t *testing.T) {
	v := newTaskEnv(t, nil)
	v.queue.ids = []string{"t1", "t2"}
	v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, spv("", "Device.X.A", "nope", "xsd:unsignedInt"))
	v.tasks.add("t2", tasksv1.ClaimAction_CLAIM_ACTION_RUN, gpv("Device.X.B"))
	c := v.cpe(answers)
	c.inform(v.e, periodic)
	c.run(v.e)
	if r := v.tasks.report(t, "t1"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_FAULT || r.GetFault().GetSource() != tasksv1.FaultSource_FAULT_SOURCE_ACS {
		t.Fatalf("t1 %v", r)
	}
	if r := v.tasks.report(t, "t2"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
		t.Fatalf("t2 %v", r)
	}
}

// A task the session cannot send to the CPE's CWMP version is a fault of
// the ACS, named clearly; the CPE never sees it.
func TestTaskMethodTooNew(t *testing.T) {
	v := newTaskEnv(t, nil)
	v.queue.ids = []string{"t1"}
	v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, &tasksv1.Operation{Kind: &tasksv1.Operation_GetAllQueuedTransfers{GetAllQueuedTransfers: &tasksv1.GetAllQueuedTransfers{}}})
	c := v.cpe(answers)
	// A CWMP 1.0 CPE: GetAllQueuedTransfers is 1.1.
	c.inform10(v.e)
	c.run(v.e)
	if len(c.sent) != 0 {
		t.Fatalf("sent %v", c.methods())
	}
	r := v.tasks.report(t, "t1")
	if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_FAULT || r.GetFault().GetSource() != tasksv1.FaultSource_FAULT_SOURCE_ACS ||
		!strings.Contains(r.GetFault().GetFaultString(), "CWMP version") {
		t.Fatalf("report %v", r)
	}
}

// inform10 opens a session as a CWMP 1.0 CPE.
func (c *taskCPE) inform10(e *engine.Engine) {
	c.v.t.Helper()
	c.n++
	c.sid = fmt.Sprintf("s%d", c.n)
	l, err := c.v.store.Leases.Acquire(context.Background(), testTenant, c.key, c.sid, time.Minute)
	if err != nil {
		c.v.t.Fatal(err)
	}
	env := &cwmp.Envelope{Namespace: cwmp.NS1_0, Version: cwmp.V1_0, Body: &cwmp.Inform{
		DeviceID: cwmp.DeviceID{OUI: "00D09E", ProductClass: "Router", SerialNumber: "SN1"}, MaxEnvelopes: 1,
		CurrentTime: "2026-03-01T12:00:00Z", Events: periodic}}
	env.Header.ID, env.Header.HasID = "inform", true
	b, err := cwmp.Encode(env)
	if err != nil {
		c.v.t.Fatal(err)
	}
	r := c.exchange(e, &engine.Request{SessionID: c.sid, NewSession: true, Tenant: testTenant, DeviceKey: c.key,
		Lease: &engine.Lease{FencingToken: l.FencingToken}, Body: b, RemoteAddr: "192.0.2.1:7000"})
	if r.Status != 200 {
		c.v.t.Fatalf("Inform answered %d", r.Status)
	}
}

// The RESUME rule: a worker dies after sending a SetParameterValues. In
// the next session the tasks service hands the task back with
// CLAIM_ACTION_RESUME: if the Inform's ParameterKey is the task's, the CPE
// applied it and it is not sent again; with another key it is.
func TestTaskResumeByParameterKey(t *testing.T) {
	for _, tt := range []struct {
		name     string
		informed string
		resent   bool
	}{
		{"applied", "t1", false},
		{"not applied", "older-key", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := newTaskEnv(t, nil)
			v.queue.ids = []string{"t1"}
			v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, spv("", "Device.X.A", "1", ""))
			c := v.cpe(answers)
			c.inform(v.e, periodic)
			if m, _ := c.step(v.e, nil); m == nil || m.Method() != "SetParameterValues" {
				t.Fatalf("first session sent %v", m)
			}
			// The worker dies here: nothing more of it runs, nothing is
			// reported; the tasks service's sweeper makes it RESUME.
			if v.tasks.reported() != 0 {
				t.Fatal("reported before the session ended")
			}
			v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RESUME, spv("", "Device.X.A", "1", ""))
			other := v.engine(func(c *Config) { c.WorkerID = "w-2" })
			c.inform(other, []cwmp.Event{{Code: "4 VALUE CHANGE"}},
				cwmp.ParameterValue{Name: "Device.ManagementServer.ParameterKey", Value: tt.informed, Type: "xsd:string"})
			c.run(other)
			if got := slices.Contains(c.methods(), "SetParameterValues"); got != tt.resent {
				t.Fatalf("SetParameterValues sent again: %v (sent %v)", got, c.methods())
			}
			r := v.tasks.report(t, "t1")
			if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
				t.Fatalf("report %v", r)
			}
			if got := r.GetResult().GetSetParameterValues().GetConfirmedByParameterKey(); got == tt.resent {
				t.Fatalf("confirmed_by_parameter_key %v", got)
			}
			if p := param(v.inv.last(t), "Device.X.A"); p == nil || p.Value != "1" {
				t.Fatalf("the applied value is not in the diff: %+v", p)
			}
		})
	}
}

// AWAIT: a Reboot accepted in one session ends in the session whose
// Inform carries "M Reboot" with its key; nothing is sent for it then.
func TestTaskAwaitReboot(t *testing.T) {
	v := newTaskEnv(t, nil)
	v.queue.ids = []string{"t1"}
	v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, &tasksv1.Operation{Kind: &tasksv1.Operation_Reboot{Reboot: &tasksv1.Reboot{}}})
	c := v.cpe(answers)
	c.inform(v.e, periodic)
	c.run(v.e)
	if r := v.tasks.report(t, "t1"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_AWAIT {
		t.Fatalf("report %v", r)
	}
	v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_AWAIT, &tasksv1.Operation{Kind: &tasksv1.Operation_Reboot{Reboot: &tasksv1.Reboot{}}})
	// A session without the reboot's events: nothing to report.
	before := v.tasks.reported()
	c.inform(v.e, periodic)
	c.run(v.e)
	if v.tasks.reported() != before || len(c.sent) != 0 {
		t.Fatalf("a session without M Reboot reported or sent: %d reports, sent %v", v.tasks.reported()-before, c.methods())
	}
	// Another key: not this task's reboot.
	c.inform(v.e, []cwmp.Event{{Code: "1 BOOT"}, {Code: "M Reboot", CommandKey: "other"}})
	c.run(v.e)
	if v.tasks.reported() != before {
		t.Fatal("another reboot completed the task")
	}
	c.inform(v.e, []cwmp.Event{{Code: "1 BOOT"}, {Code: "M Reboot", CommandKey: "t1"}})
	c.run(v.e)
	if len(c.sent) != 0 {
		t.Fatalf("sent %v", c.methods())
	}
	if r := v.tasks.report(t, "t1"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
		t.Fatalf("report %v", r)
	}
}

// AWAIT: a Download ends with the TransferComplete carrying its key, done
// or failed by its fault code.
func TestTaskAwaitTransferComplete(t *testing.T) {
	for _, tt := range []struct {
		name    string
		fault   cwmp.FaultCode
		outcome tasksv1.TaskOutcome
	}{
		{"done", 0, tasksv1.TaskOutcome_TASK_OUTCOME_DONE},
		{"failed", 9010, tasksv1.TaskOutcome_TASK_OUTCOME_FAULT},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := newTaskEnv(t, nil)
			v.queue.ids = []string{"t1"}
			v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_AWAIT, download())
			c := v.cpe(answers)
			c.inform(v.e, []cwmp.Event{{Code: "7 TRANSFER COMPLETE"}, {Code: "M Download", CommandKey: "t1"}})
			// Another transfer's completion first: not this task's.
			c.request(v.e, &cwmp.TransferComplete{CommandKey: "other", StartTime: cwmp.UnknownTime, CompleteTime: cwmp.UnknownTime})
			c.request(v.e, &cwmp.TransferComplete{CommandKey: "t1", FaultStruct: cwmp.FaultStruct{FaultCode: tt.fault, FaultString: "Download failure"},
				StartTime: "2026-03-01T11:59:00Z", CompleteTime: "2026-03-01T11:59:30Z"})
			c.run(v.e)
			if len(c.sent) != 0 {
				t.Fatalf("sent %v", c.methods())
			}
			r := v.tasks.report(t, "t1")
			if r.GetOutcome() != tt.outcome {
				t.Fatalf("report %v", r)
			}
			if tt.fault != 0 {
				if r.GetFault().GetSource() != tasksv1.FaultSource_FAULT_SOURCE_TRANSFER || r.GetFault().GetCode() != 9010 {
					t.Fatalf("fault %v", r.GetFault())
				}
				return
			}
			tr := r.GetResult().GetTransfer()
			if !tr.GetCompleteTime().AsTime().Equal(time.Date(2026, 3, 1, 11, 59, 30, 0, time.UTC)) {
				t.Fatalf("transfer result %v", tr)
			}
			// Both completions reach the session's Watcher (device events).
			v.watcher.mu.Lock()
			defer v.watcher.mu.Unlock()
			if n := len(v.watcher.reports[len(v.watcher.reports)-1].Completions); n != 2 {
				t.Fatalf("%d completions", n)
			}
		})
	}
}

// A session that ends before the CPE answers reports RETRY; the tasks the
// session's bound left out are released; a diff that did not reach
// inventory turns a done read into a retry.
func TestTaskSettlement(t *testing.T) {
	t.Run("lost", func(t *testing.T) {
		v := newTaskEnv(t, nil)
		v.queue.ids = []string{"t1", "t2"}
		v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, gpv("Device.A"))
		v.tasks.add("t2", tasksv1.ClaimAction_CLAIM_ACTION_RUN, gpv("Device.B"))
		c := v.cpe(answers)
		c.inform(v.e, periodic)
		if m, _ := c.step(v.e, nil); m == nil {
			t.Fatal("nothing sent")
		}
		v.e.Abandon(context.Background(), c.sid, engine.AbandonConnection)
		if r := v.tasks.report(t, "t1"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_RETRY {
			t.Fatalf("t1 %v", r)
		}
		if r := v.tasks.report(t, "t2"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_RELEASE {
			t.Fatalf("t2 %v", r)
		}
	})
	t.Run("bound", func(t *testing.T) {
		v := newTaskEnv(t, func(c *Config) { c.MaxOperations = 1 })
		v.queue.ids = []string{"t1", "t2"}
		v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, gpv("Device.A"))
		v.tasks.add("t2", tasksv1.ClaimAction_CLAIM_ACTION_RUN, gpv("Device.B"))
		c := v.cpe(answers)
		c.inform(v.e, periodic)
		if r := v.tasks.report(t, "t2"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_RELEASE {
			t.Fatalf("t2 %v", r)
		}
		c.run(v.e)
		if r := v.tasks.report(t, "t1"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
			t.Fatalf("t1 %v", r)
		}
	})
	t.Run("max tasks per session", func(t *testing.T) {
		v := newTaskEnv(t, func(c *Config) { c.MaxTasksPerSession = 1 })
		v.queue.ids = []string{"t1", "t2"}
		v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, gpv("Device.A"))
		v.tasks.add("t2", tasksv1.ClaimAction_CLAIM_ACTION_RUN, gpv("Device.B"))
		c := v.cpe(answers)
		c.inform(v.e, periodic)
		c.run(v.e)
		if got := v.tasks.claims[0].GetMaxRun(); got != 1 {
			t.Fatalf("max_run %d", got)
		}
		if len(c.sent) != 1 || v.tasks.reported() != 1 {
			t.Fatalf("sent %v, %d reports", c.methods(), v.tasks.reported())
		}
	})
	t.Run("not recorded", func(t *testing.T) {
		v := newTaskEnv(t, nil)
		v.queue.ids = []string{"t1", "t2"}
		v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, gpv("Device.A"))
		v.tasks.add("t2", tasksv1.ClaimAction_CLAIM_ACTION_RUN, &tasksv1.Operation{Kind: &tasksv1.Operation_Reboot{Reboot: &tasksv1.Reboot{}}})
		c := v.cpe(answers)
		c.inform(v.e, periodic)
		v.inv.mu.Lock()
		v.inv.fail = true
		v.inv.mu.Unlock()
		c.run(v.e)
		if r := v.tasks.report(t, "t1"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_RETRY {
			t.Fatalf("t1 %v", r)
		}
		// A Reboot wrote nothing to inventory: the CPE accepted it.
		if r := v.tasks.report(t, "t2"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_AWAIT {
			t.Fatalf("t2 %v", r)
		}
	})
	t.Run("tasks service down", func(t *testing.T) {
		v := newTaskEnv(t, nil)
		v.queue.ids = []string{"t1"}
		v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, gpv("Device.A"))
		v.tasks.down = true
		c := v.cpe(answers)
		c.inform(v.e, periodic)
		c.run(v.e)
		if len(c.sent) != 0 {
			t.Fatalf("sent %v without a claim", c.methods())
		}
	})
}

// The session checkpoints its tasks: a worker that resumes the session
// mid-refresh goes on with it.
func TestTaskResumedByAnotherWorker(t *testing.T) {
	v := newTaskEnv(t, nil)
	v.queue.ids = []string{"t1"}
	v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, &tasksv1.Operation{Kind: &tasksv1.Operation_Refresh{Refresh: &tasksv1.Refresh{Path: "Device.Y."}}})
	// A read-only task comes with its claim's mark, which the report
	// names, whichever worker makes it (the checkpoint keeps it).
	v.tasks.tasks["t1"].ClaimMark = 2
	c := v.cpe(answers)
	c.inform(v.e, periodic)
	m, id := c.step(v.e, nil)
	if m == nil || m.Method() != "GetParameterNames" {
		t.Fatalf("sent %v", m)
	}
	other := v.engine(func(c *Config) { c.WorkerID = "w-2" })
	m, id = c.step(other, c.encode(answers(m), id))
	if m == nil || m.Method() != "GetParameterValues" {
		t.Fatalf("the other worker sent %v", m)
	}
	if m, _ = c.step(other, c.encode(answers(m), id)); m != nil {
		t.Fatalf("sent %v", m.Method())
	}
	if r := v.tasks.report(t, "t1"); r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE || len(r.GetResult().GetGetParameterValues().GetValues()) != 2 ||
		r.GetClaimMark() != 2 {
		t.Fatalf("report %v", r)
	}
}

// A periodic session of a device with nothing queued reads the queue once
// and does nothing else: no claim, no report, no event.
func TestTaskPeriodicWithoutTasks(t *testing.T) {
	v := newTaskEnv(t, nil)
	c := v.cpe(answers)
	c.inform(v.e, periodic)
	c.run(v.e)
	if v.queue.reads != 1 || len(v.tasks.claims) != 0 || v.tasks.reported() != 0 || len(c.sent) != 0 {
		t.Fatalf("%d queue reads, %d claims, %d reports, sent %v", v.queue.reads, len(v.tasks.claims), v.tasks.reported(), c.methods())
	}
	v.watcher.mu.Lock()
	defer v.watcher.mu.Unlock()
	if len(v.watcher.reports) != 1 || len(deviceEvents(v.watcher.reports[0])) != 0 {
		t.Fatalf("events of a periodic session: %v", v.watcher.reports)
	}
}

// BenchmarkPeriodicSession compares a periodic session (Inform, empty
// POST, 204) of a worker without the task planner with one whose planner
// finds the device's queue empty.
func BenchmarkPeriodicSession(b *testing.B) {
	for _, withTasks := range []bool{false, true} {
		b.Run(fmt.Sprintf("tasks=%v", withTasks), func(b *testing.B) {
			v := newTaskEnv(b, nil)
			if !withTasks {
				w, err := New(testConfig(), Deps{Inventory: v.inv, Leases: v.store.Leases, Checkpoints: v.store.Checkpoints,
					Registry: v.store.Registry, Sessions: v.store.Sessions, Now: v.clock.Now})
				if err != nil {
					b.Fatal(err)
				}
				v.e = w.e
			}
			c := v.cpe(answers)
			b.ReportAllocs()
			for b.Loop() {
				c.inform(v.e, periodic)
				if r := c.post(v.e, nil); r.Status != 204 {
					b.Fatalf("status %d", r.Status)
				}
			}
		})
	}
}

// The other completions of AWAIT tasks: FactoryReset by 0 BOOTSTRAP,
// ScheduleInform by M ScheduleInform with its key, ChangeDUState by its
// DUStateChangeComplete.
func TestTaskAwaitOtherCompletions(t *testing.T) {
	du := &tasksv1.Operation{Kind: &tasksv1.Operation_ChangeDuState{ChangeDuState: &tasksv1.ChangeDUState{
		Operations: []*tasksv1.DeploymentUnitOperation{{Kind: &tasksv1.DeploymentUnitOperation_Uninstall{Uninstall: &tasksv1.DuUninstall{Uuid: "5f1c6e0e-2f0b-4a53-9a55-6b2b3d1f0a11"}}}}}}}
	for _, tt := range []struct {
		name    string
		op      *tasksv1.Operation
		events  []cwmp.Event
		request cwmp.Message
	}{
		{"FactoryReset", &tasksv1.Operation{Kind: &tasksv1.Operation_FactoryReset{FactoryReset: &tasksv1.FactoryReset{}}},
			[]cwmp.Event{{Code: "0 BOOTSTRAP"}, {Code: "1 BOOT"}}, nil},
		{"ScheduleInform", &tasksv1.Operation{Kind: &tasksv1.Operation_ScheduleInform{ScheduleInform: &tasksv1.ScheduleInform{DelaySeconds: 5}}},
			[]cwmp.Event{{Code: "3 SCHEDULED"}, {Code: "M ScheduleInform", CommandKey: "t1"}}, nil},
		{"ChangeDUState", du, []cwmp.Event{{Code: "11 DU STATE CHANGE COMPLETE"}, {Code: "M ChangeDUState", CommandKey: "t1"}},
			&cwmp.DUStateChangeComplete{CommandKey: "t1", Results: []cwmp.OpResult{{UUID: "5f1c6e0e-2f0b-4a53-9a55-6b2b3d1f0a11", CurrentState: "Uninstalled",
				StartTime: cwmp.UnknownTime, CompleteTime: cwmp.UnknownTime, Fault: cwmp.FaultStruct{FaultCode: 9001, FaultString: "denied"}}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := newTaskEnv(t, func(c *Config) { c.MaxDiscoveries = 0 })
			v.queue.ids = []string{"t1"}
			v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_AWAIT, tt.op)
			c := v.cpe(answers)
			c.inform(v.e, tt.events)
			if tt.request != nil {
				c.request(v.e, tt.request)
			}
			c.run(v.e)
			if m := c.methods(); slices.Contains(m, "FactoryReset") || slices.Contains(m, "ScheduleInform") || slices.Contains(m, "ChangeDUState") {
				t.Fatalf("sent %v", c.methods())
			}
			r := v.tasks.report(t, "t1")
			if r.GetOutcome() != tasksv1.TaskOutcome_TASK_OUTCOME_DONE {
				t.Fatalf("report %v", r)
			}
			if tt.request != nil {
				res := r.GetResult().GetChangeDuState().GetResults()
				if len(res) != 1 || res[0].GetCurrentState() != "Uninstalled" || res[0].GetFault().GetCode() != 9001 {
					t.Fatalf("results %v", res)
				}
			}
		})
	}
}

// A task's password never sits in a checkpoint in clear, neither in the
// operation nor in the outstanding request: a worker with the same keys
// resumes the session and sends the Download again, password included,
// when the CPE asks; one without them does not send it without it.
func TestTaskPasswordSealedInCheckpoints(t *testing.T) {
	const secret = "s3cret-pw"
	for _, shared := range []bool{true, false} {
		v := newTaskEnv(t, nil)
		v.keys = testenv.Keyring(t)
		v.e = v.engine(nil)
		v.queue.ids = []string{"t1"}
		v.tasks.add("t1", tasksv1.ClaimAction_CLAIM_ACTION_RUN, &tasksv1.Operation{Kind: &tasksv1.Operation_Download{Download: &tasksv1.Download{
			FileType: "1 Firmware Upgrade Image", Url: "https://files.example/fw.bin", Username: "fw", Password: secret}}})
		c := v.cpe(answers)
		c.inform(v.e, periodic)
		m, _ := c.step(v.e, nil)
		if d, ok := m.(*cwmp.Download); !ok || d.Password != secret || d.Username != "fw" {
			t.Fatalf("sent %#v", m)
		}
		cp, err := v.store.Checkpoints.Load(context.Background(), testTenant, c.key, c.sid)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(cp.Data, []byte(secret)) || bytes.Contains(cp.Journal, []byte(secret)) {
			t.Fatal("checkpoint holds the password in clear")
		}
		if !bytes.Contains(cp.Data, []byte("files.example")) {
			t.Fatal("checkpoint without the request")
		}
		if !shared {
			v.keys = testenv.Keyring(t)
		}
		other := v.engine(func(c *Config) { c.WorkerID = "w-2" })
		m, _ = c.step(other, nil) // an empty POST: the request again
		d, ok := m.(*cwmp.Download)
		switch {
		case shared && (!ok || d.Password != secret):
			t.Fatalf("the worker with the keys sent %#v", m)
		case !shared && ok:
			t.Fatalf("the worker without the keys sent %#v", m)
		}
	}
}

// newTaskOp keeps the operation's encoding without its passwords and
// leaves the claimed task's operation as it was: one with a password
// field is copied before the passwords are cleared, one without (encoded
// as it is) comes back whole.
func TestNewTaskOpLeavesTheOperation(t *testing.T) {
	gpv := &tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterValues{GetParameterValues: &tasksv1.GetParameterValues{
		Names: []string{"Device.DeviceInfo.UpTime"}}}}
	dl := &tasksv1.Operation{Kind: &tasksv1.Operation_Download{Download: &tasksv1.Download{
		FileType: "1 Firmware Upgrade Image", Url: "https://files.example/fw.bin", Username: "fw", Password: "pw"}}}
	for _, op := range []*tasksv1.Operation{gpv, dl} {
		before := proto.Clone(op)
		o, err := newTaskOp(&tasksv1.Task{Id: "t1", Operation: op}, stagePending, time.Minute, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(op, before) {
			t.Fatalf("operation changed to %v", op)
		}
		var enc tasksv1.Operation
		if err := proto.Unmarshal(o.Spec, &enc); err != nil {
			t.Fatal(err)
		}
		want := proto.Clone(before).(*tasksv1.Operation)
		if d := want.GetDownload(); d != nil {
			d.Password = ""
		}
		if !proto.Equal(&enc, want) {
			t.Fatalf("encoded %v, want %v", &enc, want)
		}
	}
}
