package tasks

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/apiauth/apiauthtest"
	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/tasks/store"
	"github.com/fleetacs/fleetacs/services/tasks/store/sqlitestore"

	"go.opentelemetry.io/otel/metric"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// clock is the service's clock in tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeInventory serves GetDeviceForSession for a fixed set of devices.
type fakeInventory struct {
	inventoryv1.UnimplementedInventoryInternalServiceServer
	devices map[string]bool // tenant/id
}

func (f *fakeInventory) GetDeviceForSession(_ context.Context, req *inventoryv1.GetDeviceForSessionRequest) (*inventoryv1.GetDeviceForSessionResponse, error) {
	if !f.devices[req.GetTenant()+"/"+req.GetDeviceKey()] {
		return &inventoryv1.GetDeviceForSessionResponse{}, nil
	}
	return &inventoryv1.GetDeviceForSessionResponse{Device: &inventoryv1.Device{Tenant: req.GetTenant(), Id: req.GetDeviceKey()}}, nil
}

const (
	dev1 = "00AABB-HGW-S1"
	dev2 = "00AABB-HGW-S2"
)

type harness struct {
	svc      *Service
	st       store.Store
	clock    *clock
	names    natsbus.Names
	nc       *nats.Conn
	js       jetstream.JetStream
	public   tasksv1.TasksServiceClient
	events   eventsv1.EventsServiceClient
	internal tasksv1.TasksInternalServiceClient
	tokens   *apiauthtest.MemoryStore
	// streams is what the streams were made with.
	streams natsbus.StreamOptions
	// operator, viewer: tokens of tenant "default"; other: operator of
	// tenant "other".
	operator, viewer, other string
}

type harnessOpts struct {
	maxPerDevice int64
	// meter, if set, receives the service's metrics.
	meter metric.MeterProvider
	cfg   func(*Config)
	st    store.Store
}

func newHarness(t testing.TB, o harnessOpts) *harness {
	t.Helper()
	ctx := t.Context()
	nc, js, err := natsbus.Connect(ctx, testenv.NATS(t), t.Name(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	u := testenv.UniqueName(t)
	names := natsbus.New(u, strings.ToUpper(u)+"_")
	so := natsbus.StreamOptions{Replicas: 1, MaxTasksPerDevice: 100, EventsMaxAge: time.Hour, EventsMaxBytes: 64 << 20, WakeMaxAge: time.Minute}
	if o.maxPerDevice > 0 {
		so.MaxTasksPerDevice = o.maxPerDevice
	}
	if err := natsbus.EnsureStreams(ctx, js, names, so); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range []string{names.TasksStream(), names.WakeStream(), names.EventsStream()} {
			_ = js.DeleteStream(context.Background(), s)
		}
	})

	inv := grpc.NewServer()
	inventoryv1.RegisterInventoryInternalServiceServer(inv, &fakeInventory{devices: map[string]bool{
		"default/" + dev1: true, "default/" + dev2: true, "other/" + dev1: true,
	}})
	invConn := testenv.GRPCConn(t, inv)

	ring := testenv.Keyring(t)
	cfg := DefaultConfig()
	cfg.SweepInterval = 10 * time.Minute // tests sweep explicitly
	cfg.RetryBase, cfg.RetryMax = time.Minute, 10*time.Minute
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	st := o.st
	if st == nil {
		st = sqlitestore.New(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "tasks.db")})
	}
	clk := &clock{now: time.Now().UTC().Truncate(time.Millisecond)}
	svc, err := New(cfg, Deps{
		Store: st, NATS: nc, JetStream: js, Names: names,
		Devices:       InventoryDevices{Client: inventoryv1.NewInventoryInternalServiceClient(invConn)},
		Secrets:       ring,
		CallerTenants: apiauth.CallerTenants,
		Requester: func(ctx context.Context) string {
			p, _ := apiauth.FromContext(ctx)
			return p.ID
		},
		Now:   clk.Now,
		Meter: o.meter,
	})
	if err != nil {
		t.Fatal(err)
	}
	tokens := apiauthtest.NewMemoryStore()
	auth := apiauth.NewAuthenticator(apiauth.Config{}, apiauth.Options{Tokens: tokens})
	pub := grpc.NewServer(auth.ServerOptions()...)
	svc.RegisterPublic(pub)
	pubConn := testenv.GRPCConn(t, pub)
	internal := grpc.NewServer()
	svc.RegisterInternal(internal)
	intConn := testenv.GRPCConn(t, internal)

	rctx, cancel := context.WithCancel(context.Background())
	if err := svc.Start(rctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	h := &harness{svc: svc, st: st, clock: clk, names: names, nc: nc, js: js, tokens: tokens, streams: so,
		public: tasksv1.NewTasksServiceClient(pubConn), events: eventsv1.NewEventsServiceClient(pubConn),
		internal: tasksv1.NewTasksInternalServiceClient(intConn)}
	h.operator = h.token(t, authv1.Role_ROLE_OPERATOR, "default")
	h.viewer = h.token(t, authv1.Role_ROLE_VIEWER, "default")
	h.other = h.token(t, authv1.Role_ROLE_OPERATOR, "other")
	return h
}

func (h *harness) token(t testing.TB, role authv1.Role, tenants ...string) string {
	t.Helper()
	tok, _, err := apiauth.IssueToken(t.Context(), h.tokens, apiauth.TokenRecord{Name: "test", Role: role, Tenants: tenants, Creator: "test", Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// as returns a context that calls with token.
func as(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func wantError(t *testing.T, err error, code codes.Code, reason errorsv1.ErrorReason) *errdetails.ErrorInfo {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("error = %v, want code %s", err, code)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if info.GetReason() != reason.String() || info.GetDomain() != "fleetacs" {
				t.Fatalf("reason = %s/%s, want fleetacs/%s (%v)", info.GetDomain(), info.GetReason(), reason, err)
			}
			return info
		}
	}
	t.Fatalf("error %v carries no ErrorInfo", err)
	return nil
}

func reboot() *tasksv1.Operation {
	return &tasksv1.Operation{Kind: &tasksv1.Operation_Reboot{Reboot: &tasksv1.Reboot{}}}
}

func spv(name, value string) *tasksv1.Operation {
	return &tasksv1.Operation{Kind: &tasksv1.Operation_SetParameterValues{SetParameterValues: &tasksv1.SetParameterValues{
		Values: []*tasksv1.ParameterValue{{Name: name, Value: value, Type: "xsd:string"}}}}}
}

// create creates a task as the operator of "default".
func (h *harness) create(t *testing.T, device string, op *tasksv1.Operation, opts *tasksv1.TaskOptions) *tasksv1.Task {
	t.Helper()
	resp, err := h.public.CreateTask(as(t.Context(), h.operator), &tasksv1.CreateTaskRequest{DeviceId: device, Operation: op, Options: opts})
	if err != nil {
		t.Fatalf("CreateTask: %v", err)
	}
	return resp.GetTask()
}

func (h *harness) get(t *testing.T, id string) *tasksv1.Task {
	t.Helper()
	resp, err := h.public.GetTask(as(t.Context(), h.viewer), &tasksv1.GetTaskRequest{Id: id})
	if err != nil {
		t.Fatalf("GetTask %s: %v", id, err)
	}
	return resp.GetTask()
}

// queueIDs lists the task ids in a device's queue, in order, as a worker
// finds them, once the queue deletes under way have been answered.
func (h *harness) queueIDs(t *testing.T, tenant, device string) []string {
	t.Helper()
	h.svc.deletes.Wait()
	ctx := t.Context()
	s, err := h.js.Stream(ctx, h.names.TasksStream())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(h.names.TaskQueue(tenant, device)))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return ids
		}
		if err != nil {
			t.Fatal(err)
		}
		qt := &tasksv1.QueuedTask{}
		if err := proto.Unmarshal(m.Data, qt); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, qt.GetId())
		seq = m.Sequence + 1
	}
}

func (h *harness) claim(t *testing.T, session string, ids ...string) []*tasksv1.ClaimedTask {
	t.Helper()
	resp, err := h.internal.ClaimTasks(t.Context(), &tasksv1.ClaimTasksRequest{Tenant: "default", DeviceId: dev1, SessionId: session, TaskIds: ids,
		ReportsClaimMarks: true})
	if err != nil {
		t.Fatalf("ClaimTasks: %v", err)
	}
	return resp.GetTasks()
}

func (h *harness) report(t *testing.T, session string, reps ...*tasksv1.TaskReport) []*tasksv1.ReportTaskAck {
	t.Helper()
	resp, err := h.internal.ReportTasks(t.Context(), &tasksv1.ReportTasksRequest{Tenant: "default", DeviceId: dev1, SessionId: session, Reports: reps})
	if err != nil {
		t.Fatalf("ReportTasks: %v", err)
	}
	return resp.GetAcks()
}

// onTaskEvents calls fn, from the subscription's goroutine, with each
// task event of the harness's install and its message, from now on.
func (h *harness) onTaskEvents(t *testing.T, fn func(m *nats.Msg, ev *eventsv1.Event)) {
	t.Helper()
	sub, err := h.nc.Subscribe(h.names.EventFilter("default", "task", ""), func(m *nats.Msg) {
		ev := &eventsv1.Event{}
		if err := proto.Unmarshal(m.Data, ev); err != nil {
			t.Errorf("event: %v", err)
			return
		}
		fn(m, ev)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// taskEvents subscribes to every task event of the harness's install and
// returns a function listing the kinds received for a task so far.
func (h *harness) taskEvents(t *testing.T) func(id string) []string {
	t.Helper()
	var mu sync.Mutex
	got := map[string][]string{}
	h.onTaskEvents(t, func(_ *nats.Msg, ev *eventsv1.Event) {
		mu.Lock()
		got[ev.GetTask().GetId()] = append(got[ev.GetTask().GetId()], ev.GetKind())
		mu.Unlock()
	})
	return func(id string) []string {
		_ = h.nc.Flush()
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got[id]...)
	}
}
