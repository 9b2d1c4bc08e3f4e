package campaigns

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/apierror"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	provisioningv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/campaigns/store"
	"github.com/fleetacs/fleetacs/services/campaigns/store/sqlitestore"
	"github.com/fleetacs/fleetacs/services/files"
	filestore "github.com/fleetacs/fleetacs/services/files/store"
)

// The runner's unit tests drive it pass by pass against a real SQLite
// store and in-memory stand-ins for the inventory, the tasks service and
// the files service (the end-to-end tests in cmd/fleetacs run the real
// ones).

type fakeInventory struct {
	inventoryv1.InventoryServiceClient
	mu      sync.Mutex
	devices []*inventoryv1.Device // sorted by id
	byID    map[string]*inventoryv1.Device
	lists   int
}

func newInventory(n int, class string) *fakeInventory {
	inv := &fakeInventory{byID: map[string]*inventoryv1.Device{}}
	for i := range n {
		d := &inventoryv1.Device{Tenant: "default", Id: fmt.Sprintf("00D09E-%s-%06d", class, i),
			DeviceId: &inventoryv1.DeviceId{ProductClass: class}, SoftwareVersion: "1.0"}
		inv.devices = append(inv.devices, d)
		inv.byID[d.Id] = d
	}
	return inv
}

func (f *fakeInventory) ListDevices(ctx context.Context, req *inventoryv1.ListDevicesRequest, _ ...grpc.CallOption) (*inventoryv1.ListDevicesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if req.GetFilter().GetManufacturer() == "bad" {
		return nil, apierror.New(codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FILTER, "bad filter", nil)
	}
	start := 0
	if t := req.GetPageToken(); t != "" {
		start, _ = strconv.Atoi(t)
	}
	size := int(req.GetPageSize())
	out := &inventoryv1.ListDevicesResponse{}
	i := start
	for ; i < len(f.devices) && len(out.Devices) < size; i++ {
		d := f.devices[i]
		if pc := req.GetFilter().GetProductClass(); pc != "" && d.GetDeviceId().GetProductClass() != pc {
			continue
		}
		out.Devices = append(out.Devices, proto.Clone(d).(*inventoryv1.Device))
	}
	if i < len(f.devices) {
		out.NextPageToken = strconv.Itoa(i)
	}
	return out, nil
}

func (f *fakeInventory) GetDevice(ctx context.Context, req *inventoryv1.GetDeviceRequest, _ ...grpc.CallOption) (*inventoryv1.GetDeviceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.byID[req.GetId()]; ok {
		return &inventoryv1.GetDeviceResponse{Device: proto.Clone(d).(*inventoryv1.Device)}, nil
	}
	return nil, status.Error(codes.NotFound, "device not found")
}

func (f *fakeInventory) AddTags(ctx context.Context, req *inventoryv1.AddTagsRequest, _ ...grpc.CallOption) (*inventoryv1.AddTagsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.byID[req.GetId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "device not found")
	}
	for _, t := range req.GetTags() {
		if !slices.Contains(d.Tags, t) {
			d.Tags = append(d.Tags, t)
			d.PresetsFingerprint = "" // as the inventory does
		}
	}
	return &inventoryv1.AddTagsResponse{}, nil
}

// setFingerprint records what a session of the device recorded of the
// presets.
func (f *fakeInventory) setFingerprint(id, fp string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byID[id].PresetsFingerprint = fp
}

// addTag and removeTag change a device's tags as an operator would.
func (f *fakeInventory) addTag(id, tag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byID[id].Tags = append(f.byID[id].Tags, tag)
	f.byID[id].PresetsFingerprint = ""
}

func (f *fakeInventory) removeTag(id, tag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.byID[id]
	d.Tags = slices.DeleteFunc(d.Tags, func(t string) bool { return t == tag })
	d.PresetsFingerprint = ""
}

func (f *fakeInventory) tags(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.byID[id].Tags)
}

// fakePresets is the inventory's PresetsService as far as campaigns read
// it.
type fakePresets struct {
	provisioningv1.PresetsServiceClient
	presets map[string]*provisioningv1.Preset
}

func (f *fakePresets) GetPreset(ctx context.Context, req *provisioningv1.GetPresetRequest, _ ...grpc.CallOption) (*provisioningv1.GetPresetResponse, error) {
	p, ok := f.presets[req.GetName()]
	if !ok || req.GetTenant() != "default" {
		return nil, status.Error(codes.NotFound, "preset not found")
	}
	return &provisioningv1.GetPresetResponse{Preset: proto.Clone(p).(*provisioningv1.Preset)}, nil
}

func newPresets() *fakePresets {
	off := false
	return &fakePresets{presets: map[string]*provisioningv1.Preset{
		"rollout":  {Name: "rollout", Match: &provisioningv1.PresetMatch{Tags: []string{"wave-rollout", "hgw"}}},
		"untagged": {Name: "untagged", Match: &provisioningv1.PresetMatch{ProductClass: "HGW"}},
		"off":      {Name: "off", Enabled: &off, Match: &provisioningv1.PresetMatch{Tags: []string{"x"}}},
	}}
}

func (f *fakeInventory) setVersion(id, v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.byID[id]; ok {
		d.SoftwareVersion = v
	}
}

// fakeTasks keeps tasks by idempotency key as the tasks service does: the
// same request gets the same task, another request IDEMPOTENCY_CONFLICT
// with the task's id.
type fakeTasks struct {
	tasksv1.TasksServiceClient
	mu      sync.Mutex
	byKey   map[string]*tasksv1.Task
	byID    map[string]*tasksv1.Task
	creates int
}

func newTasks() *fakeTasks {
	return &fakeTasks{byKey: map[string]*tasksv1.Task{}, byID: map[string]*tasksv1.Task{}}
}

func (f *fakeTasks) CreateTask(ctx context.Context, req *tasksv1.CreateTaskRequest, _ ...grpc.CallOption) (*tasksv1.CreateTaskResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates++
	key := req.GetOptions().GetIdempotencyKey()
	if t, ok := f.byKey[key]; ok {
		if t.GetDeviceId() != req.GetDeviceId() || !proto.Equal(t.GetOperation(), req.GetOperation()) {
			return nil, apierror.New(codes.AlreadyExists, errorsv1.ErrorReason_IDEMPOTENCY_CONFLICT, "conflict", map[string]string{"task_id": t.GetId()})
		}
		return &tasksv1.CreateTaskResponse{Task: proto.Clone(t).(*tasksv1.Task), Existing: true}, nil
	}
	// The requester the runner names, as the tasks service reads it on
	// its internal listener.
	md, _ := grpcmd.FromOutgoingContext(ctx)
	t := &tasksv1.Task{Id: fmt.Sprintf("t%d", len(f.byID)), Tenant: req.GetTenant(), DeviceId: req.GetDeviceId(),
		Operation: req.GetOperation(), Options: req.GetOptions(), State: tasksv1.TaskState_TASK_STATE_QUEUED,
		Requester: strings.Join(md.Get(apiauth.OnBehalfOfHeader), ",")}
	f.byKey[key], f.byID[t.Id] = t, t
	return &tasksv1.CreateTaskResponse{Task: proto.Clone(t).(*tasksv1.Task)}, nil
}

func (f *fakeTasks) GetTask(ctx context.Context, req *tasksv1.GetTaskRequest, _ ...grpc.CallOption) (*tasksv1.GetTaskResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.byID[req.GetId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "task not found")
	}
	return &tasksv1.GetTaskResponse{Task: proto.Clone(t).(*tasksv1.Task)}, nil
}

func (f *fakeTasks) CancelTask(ctx context.Context, req *tasksv1.CancelTaskRequest, _ ...grpc.CallOption) (*tasksv1.CancelTaskResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.byID[req.GetId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "task not found")
	}
	if t.State != tasksv1.TaskState_TASK_STATE_QUEUED {
		return nil, status.Error(codes.FailedPrecondition, "not cancellable")
	}
	t.State = tasksv1.TaskState_TASK_STATE_CANCELLED
	return &tasksv1.CancelTaskResponse{}, nil
}

// endAll ends every open task with st (and fault when st is FAULT),
// returning the devices whose tasks it ended.
func (f *fakeTasks) endAll(st tasksv1.TaskState, pick func(device string) bool) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, t := range f.byID {
		if t.State != tasksv1.TaskState_TASK_STATE_QUEUED || (pick != nil && !pick(t.DeviceId)) {
			continue
		}
		t.State = st
		if st == tasksv1.TaskState_TASK_STATE_FAULT {
			t.Fault = &tasksv1.TaskFault{Code: 9010, FaultString: "Download failure"}
		}
		out = append(out, t.DeviceId)
	}
	slices.Sort(out)
	return out
}

func (f *fakeTasks) open() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, t := range f.byID {
		if t.State == tasksv1.TaskState_TASK_STATE_QUEUED {
			n++
		}
	}
	return n
}

func (f *fakeTasks) perDevice() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for _, t := range f.byID {
		out[t.DeviceId]++
	}
	return out
}

// fakeFiles has one firmware, 2.0, and signs URLs with a counter, so
// that each signature differs as real ones (with their expiry) do.
type fakeFiles struct {
	mu    sync.Mutex
	signs int
}

var firmware2 = &filesv1.File{Tenant: "default", Id: "f1", Name: "2.0.bin", FileType: firmwareFileType, Version: "2.0", Size: 1000}

func (f *fakeFiles) Get(ctx context.Context, tenant, id string) (*filesv1.File, error) {
	if id == firmware2.Id && tenant == "default" {
		return firmware2, nil
	}
	return nil, fmt.Errorf("get file: %w", filestore.ErrNotFound)
}

func (f *fakeFiles) Resolve(ctx context.Context, tenant, class, fileType, version string) (*filesv1.File, error) {
	if version == "2.0" && fileType == firmwareFileType && tenant == "default" {
		return firmware2, nil
	}
	return nil, files.ErrNoFile
}

func (f *fakeFiles) HasVersion(ctx context.Context, tenant, fileType, version string) (bool, error) {
	return tenant == "default" && fileType == firmwareFileType && version == "2.0", nil
}

func (f *fakeFiles) SignFileURL(file *filesv1.File, device string, ttl time.Duration) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signs++
	return fmt.Sprintf("http://acs.example/files/default/%s/%s?d=%s&s=%d", file.Id, file.Name, device, f.signs), nil
}

// harness is a service on a real SQLite store with the fakes, its clock
// under the test's control.
type harness struct {
	t     testing.TB
	svc   *Service
	store store.Store
	inv   *fakeInventory
	tasks *fakeTasks
	files *fakeFiles
	now   time.Time
	mu    sync.Mutex
	// tenants are the caller's tenants.
	tenants []string
	// pageSize overrides the tests' page of 10.
	pageSize int
	// runnerID names the runner restart makes ("runner-1" if empty).
	runnerID string
}

func newHarness(t testing.TB, devices int) *harness {
	t.Helper()
	st := sqlitestore.New(sqlitestore.Config{Path: filepath.Join(t.TempDir(), "campaigns.db")})
	h := &harness{t: t, store: st, inv: newInventory(devices, "HGW"), tasks: newTasks(), files: &fakeFiles{},
		now: time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC), tenants: []string{"default"}}
	h.svc = h.restart()
	t.Cleanup(func() { _ = st.Close() })
	return h
}

// restart is a new service on the same store and fakes: a restarted
// runner.
func (h *harness) restart() *Service {
	h.t.Helper()
	cfg := DefaultConfig()
	cfg.PageSize = 10
	if h.pageSize != 0 {
		cfg.PageSize = h.pageSize
	}
	// The same runner again (same name, same leases), unless a test
	// names another.
	runnerID := h.runnerID
	if runnerID == "" {
		runnerID = "runner-1"
	}
	svc, err := New(cfg, Deps{Store: h.store, Inventory: h.inv, Tasks: h.tasks, Files: h.files, Presets: newPresets(), RunnerID: runnerID,
		CallerTenants: func(context.Context) []string { return h.tenants },
		Now: func() time.Time {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.now
		}})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := svc.Start(h.t.Context()); err != nil {
		h.t.Fatal(err)
	}
	return svc
}

func (h *harness) advance(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.now = h.now.Add(d)
}

func (h *harness) pass() { h.svc.pass(h.t.Context()) }
