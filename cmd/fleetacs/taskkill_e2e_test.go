package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/deviceid"
	"github.com/fleetacs/fleetacs/pkg/natsembed"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// spvSeen is a SetParameterValues as a simulated CPE received it.
type spvSeen struct {
	key    string
	values map[string]string
}

// TestTaskSurvivesKilledWorker: the issue's "a worker killed mid-task loses
// no task and sends no SetParameterValues twice", with inventory, tasks and
// notifier in one process, two session workers and a gateway in processes
// of their own (docs/tasks.md). Every device gets a SetParameterValues task
// with a connection request; when the first CPE receives its
// SetParameterValues, the worker holding that session is killed (SIGKILL)
// before the CPE answers. The CPE's answer then reaches the other worker,
// which resumes the session from its checkpoint.
func TestTaskSurvivesKilledWorker(t *testing.T) {
	testKilledWorker(t, false)
}

// TestTaskResumedAfterKilledWorker is TestTaskSurvivesKilledWorker with the
// CPE's answer lost as well: the CPE applied the change, but no worker
// heard it; its next session's Inform carries the task's ParameterKey, and
// the task resumed there must not be sent again (docs/tasks.md).
func TestTaskResumedAfterKilledWorker(t *testing.T) {
	testKilledWorker(t, true)
}

// testKilledWorker runs the scenario of TestTaskSurvivesKilledWorker; with
// loseAnswer the CPE applies the SetParameterValues during which the worker
// died, and its answer is lost. Every task must end done, every CPE must
// have received exactly one SetParameterValues, carrying its task's value
// and key, and the inventory must hold the values.
func testKilledWorker(t *testing.T, loseAnswer bool) {
	if testing.Short() {
		t.Skip("end-to-end run of four processes; make test runs it")
	}
	const devices = 4
	const paramPath = "Device.ManagementServer.PeriodicInformInterval"
	// window is the notifier's least time between connection requests to a
	// device: the second wake of the killed device comes after it.
	const window = 300 * time.Millisecond
	redisAddr, redisDB := testenv.RedisDB(t)
	c := &cluster{t: t, bin: buildFleetacs(t), dir: t.TempDir()}
	t.Cleanup(c.stopAll)

	ns := startPrivateNATS(t, c)

	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }
	coreAddr, corePublic, w1Addr, w2Addr, gwAddr := addr(), addr(), addr(), addr(), addr()
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
	// Inventory, tasks and notifier share a process (a tasks process of
	// its own verifies tokens through the inventory: tokens_e2e_test.go).
	core := c.start("core", args("-server.internal-grpc-addr="+coreAddr, "-server.grpc-addr="+corePublic,
		"-client.inventory-addr="+coreAddr, "-client.tasks-addr="+coreAddr,
		"-inventory.store=sqlite", "-inventory.sqlite-path="+filepath.Join(c.dir, "inventory.db"),
		"-tasks.sqlite-path="+filepath.Join(c.dir, "tasks.db"), "-tasks.sweep-interval=200ms",
		"-notifier.allow-loopback", "-notifier.coalesce-window="+window.String(), "-notifier.per-device-interval="+window.String(),
		"inventory", "tasks", "notifier")...)
	worker := func(name, a string) *proc {
		return c.start(name, args("-server.internal-grpc-addr="+a, "-sessions.advertise-addr="+a, "-client.tasks-addr="+coreAddr,
			"-sessions.worker-id="+name, "-sessions.registry-ttl=3s", "sessions")...)
	}
	w1, w2 := worker("worker-1", w1Addr), worker("worker-2", w2Addr)
	gw := c.start("gateway", args("-gateway.listen-addr="+gwAddr, "-server.internal-grpc-addr=127.0.0.1:0", "-gateway.auth-shared-username=fleet",
		"-gateway.auth-shared-password=e2e-secret", "-gateway.auth-nonce-secret=e2e-nonce-key", "gateway")...)
	all := []*proc{core, w1, w2, gw}
	workers := map[string]*proc{w1.name: w1, w2.name: w2}
	c.awaitUp(t, 90*time.Second, all, 30, []string{coreAddr, w1Addr, w2Addr}, "http://"+gwAddr+"/readyz")

	rc := redis.NewClient(&redis.Options{Addr: redisAddr, DB: redisDB})
	defer rc.Close()
	aff := affinity.NewRedis(rc, "e2e", nil)
	// holder returns the worker process that holds the open session of
	// the device with key.
	holder := func(key string) (*proc, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h, held, err := aff.Leases().Holder(ctx, "default", key)
		if err != nil || !held {
			return nil, fmt.Errorf("lease of %s: held %v, %v", key, held, err)
		}
		rec, err := aff.Affinity().Lookup(ctx, h.SessionID)
		if err != nil {
			return nil, fmt.Errorf("session %s of %s: %w", h.SessionID, key, err)
		}
		p := workers[rec.Worker]
		if p == nil {
			return nil, fmt.Errorf("session %s of %s on unknown worker %q", h.SessionID, key, rec.Worker)
		}
		return p, nil
	}

	var (
		mu           sync.Mutex
		spvs         = map[string][]spvSeen{} // device key -> SetParameterValues received
		armed        bool                     // the tasks exist: the next SPV kills its worker
		killed       *proc
		killedDevice string
		hookErr      error
	)
	lost := make(chan struct{}) // closed when the session whose answer was lost ended
	sm, err := sim.New(sim.Config{URL: "http://" + gwAddr + "/", Model: sim.TR181,
		Devices: devices, Seed: 23, SerialPrefix: "KILL", BootStorm: true, Concurrency: devices,
		Username: "fleet", Password: "e2e-secret",
		Timeout: 20 * time.Second, ConnReq: sim.ConnReqPerDevice, TimeScale: 0.01,
		OnSession: func(r sim.SessionReport) {
			if r.Kind == "answer_lost" {
				close(lost)
			}
		},
		OnRequest: func(d *sim.Device, m cwmp.Message) bool {
			// The ACS's own SetParameterValues (connection-request
			// credentials, the default bootstrap preset's periodic
			// inform settings, docs/provisioning.md) do not count: only
			// the tasks'.
			spv, ok := m.(*cwmp.SetParameterValues)
			if !ok || spv.ParameterKey == "fleetacs-preset" ||
				!slices.ContainsFunc(spv.ParameterList, func(v cwmp.ParameterValue) bool { return v.Name == paramPath }) {
				return false
			}
			key := deviceid.Key(d.ID())
			seen := spvSeen{key: spv.ParameterKey, values: map[string]string{}}
			for _, v := range spv.ParameterList {
				seen.values[v.Name] = v.Value
			}
			mu.Lock()
			defer mu.Unlock()
			spvs[key] = append(spvs[key], seen)
			if !armed || killed != nil || hookErr != nil {
				return false
			}
			// The CPE holds the SetParameterValues and has not answered:
			// its session's worker dies now; the CPE applies the change and
			// answers once the worker is gone (or its answer is lost).
			p, err := holder(key)
			if err != nil {
				hookErr = err
				return false
			}
			if err := p.cmd.Process.Kill(); err != nil {
				hookErr = err
				return false
			}
			<-p.done
			killed, killedDevice = p, key
			return loseAnswer
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, devices)
	for _, d := range sm.Devices() {
		keys = append(keys, deviceid.Key(d.ID()))
	}
	slices.Sort(keys)
	sctx, scancel := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() { _, err := sm.Run(sctx); simDone <- err }()
	defer func() {
		scancel()
		if err := <-simDone; err != nil && sctx.Err() == nil {
			t.Errorf("cpesim: %v", err)
		}
	}()

	adminToken := func() string {
		b, err := os.ReadFile(filepath.Join(c.dir, "data", "admin.token"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}()
	admin := func() context.Context { return withToken(ctx10(t), adminToken) }
	dial := func(a string) *grpc.ClientConn { return dialPlain(t, a) }
	inventory := inventoryv1.NewInventoryServiceClient(dial(corePublic))
	tasksAPI := tasksv1.NewTasksServiceClient(dial(corePublic))

	// Every device bootstrapped and got its connection-request
	// credentials, and sleeps.
	testenv.WaitFor(t, 30*time.Second, func() error {
		for _, key := range keys {
			resp, err := inventory.GetDevice(admin(), &inventoryv1.GetDeviceRequest{Tenant: "default", Id: key})
			if err != nil {
				return fmt.Errorf("device %s: %w", key, err)
			}
			if !resp.GetDevice().GetConnectionRequest().GetPasswordSet() {
				return fmt.Errorf("device %s has no connection-request credentials yet", key)
			}
		}
		return nil
	})

	mu.Lock()
	armed = true
	mu.Unlock()
	want := map[string]string{}   // device key -> value its task sets
	taskOf := map[string]string{} // device key -> task id
	for i, key := range keys {
		want[key] = strconv.Itoa(1000 + 7*i)
		resp, err := tasksAPI.CreateTask(admin(), &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: key,
			Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_SetParameterValues{SetParameterValues: &tasksv1.SetParameterValues{
				Values: []*tasksv1.ParameterValue{{Name: paramPath, Value: want[key], Type: "xsd:unsignedInt"}},
			}}},
			Options: &tasksv1.TaskOptions{ConnectionRequest: true}})
		if err != nil {
			t.Fatalf("create task on %s: %v", key, err)
		}
		taskOf[key] = resp.GetTask().GetId()
	}

	if loseAnswer {
		// The lost session carried only "6 CONNECTION REQUEST", which a
		// CPE does not retry (docs/protocol.md): the device next informs
		// when woken for another task. That session finds the first task
		// dispatched to the dead one and resumes it.
		select {
		case <-lost:
		case <-time.After(30 * time.Second):
			t.Fatal("no session lost its answer")
		}
		mu.Lock()
		key := killedDevice
		mu.Unlock()
		// The notifier coalesces a wake that comes within its window of
		// the last connection request to the device.
		testenv.WaitFor(t, 10*time.Second, func() error {
			got, err := tasksAPI.GetTask(admin(), &tasksv1.GetTaskRequest{Tenant: "default", Id: taskOf[key]})
			if err != nil {
				return err
			}
			w := got.GetTask().GetWake()
			if w.GetTime() == nil || time.Since(w.GetTime().AsTime()) < window {
				return fmt.Errorf("last connection request to %s: %v", key, w)
			}
			return nil
		})
		resp, err := tasksAPI.CreateTask(admin(), &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: key,
			Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterValues{GetParameterValues: &tasksv1.GetParameterValues{
				Names: []string{paramPath},
			}}},
			Options: &tasksv1.TaskOptions{ConnectionRequest: true}})
		if err != nil {
			t.Fatalf("create task on %s: %v", key, err)
		}
		testenv.WaitFor(t, 30*time.Second, func() error {
			got, err := tasksAPI.GetTask(admin(), &tasksv1.GetTaskRequest{Tenant: "default", Id: resp.GetTask().GetId()})
			if err != nil {
				return err
			}
			if task := got.GetTask(); task.GetState() != tasksv1.TaskState_TASK_STATE_DONE {
				return fmt.Errorf("task %s on %s: %v, wake %v; history %v", task.GetId(), key, task.GetState(), task.GetWake(), task.GetHistory())
			}
			return nil
		})
	}

	// Every task ends, done.
	final := map[string]*tasksv1.Task{}
	testenv.WaitFor(t, 45*time.Second, func() error {
		mu.Lock()
		err := hookErr
		mu.Unlock()
		if err != nil {
			t.Fatalf("kill hook: %v", err)
		}
		for _, key := range keys {
			if final[key] != nil {
				continue
			}
			resp, err := tasksAPI.GetTask(admin(), &tasksv1.GetTaskRequest{Tenant: "default", Id: taskOf[key]})
			if err != nil {
				return err
			}
			switch task := resp.GetTask(); task.GetState() {
			case tasksv1.TaskState_TASK_STATE_QUEUED, tasksv1.TaskState_TASK_STATE_DISPATCHED:
				return fmt.Errorf("task %s of %s still %v; history %v", task.GetId(), key, task.GetState(), task.GetHistory())
			default:
				final[key] = task
			}
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if killed == nil {
		t.Fatal("no worker was killed: no SetParameterValues reached a CPE after the tasks were created")
	}
	history := final[killedDevice].GetHistory()
	t.Logf("killed %s while %s held a SetParameterValues; its task: %v", killed.name, killedDevice, history)
	if loseAnswer && !slices.ContainsFunc(history, func(h *tasksv1.TaskHistoryEntry) bool {
		return strings.Contains(h.GetDetail(), "resumed after session")
	}) {
		t.Errorf("the task of %s was not resumed by a later session: %v", killedDevice, history)
	}
	for _, key := range keys {
		task := final[key]
		if task.GetState() != tasksv1.TaskState_TASK_STATE_DONE {
			t.Errorf("task %s of %s: %v, fault %v; history %v", task.GetId(), key, task.GetState(), task.GetFault(), task.GetHistory())
		}
		got := spvs[key]
		if len(got) != 1 {
			t.Errorf("device %s received %d SetParameterValues, want 1: %v; task history %v", key, len(got), got, task.GetHistory())
			continue
		}
		if got[0].values[paramPath] != want[key] || len(got[0].values) != 1 || got[0].key != task.GetCommandKey() {
			t.Errorf("device %s received %v with key %q, want %s=%s with key %q", key, got[0].values, got[0].key, paramPath, want[key], task.GetCommandKey())
		}
		resp, err := inventory.GetDevice(admin(), &inventoryv1.GetDeviceRequest{Tenant: "default", Id: key,
			Parameters: &inventoryv1.ParameterSelector{PathPrefixes: []string{paramPath}}})
		if err != nil {
			t.Fatal(err)
		}
		var value string
		for _, p := range resp.GetDevice().GetParameters() {
			if p.GetPath() == paramPath {
				value = p.GetValue()
			}
		}
		if value != want[key] {
			t.Errorf("inventory has %s=%q on %s, want %q", paramPath, value, key, want[key])
		}
	}
	for _, p := range all {
		if p == killed {
			continue
		}
		if err := c.checkAlive(p); err != nil {
			t.Error(err)
		}
	}
}

// startPrivateNATS runs a NATS server with JetStream for this test alone,
// under c's directory, stopped after c's processes. The processes of a
// test use the default stream and subject names, which a server shared
// with other tests would mix.
func startPrivateNATS(t *testing.T, c *cluster) *natsembed.Server {
	t.Helper()
	nctx, ncancel := context.WithCancel(context.Background())
	ns := natsembed.New("127.0.0.1", -1, filepath.Join(c.dir, "nats"))
	nsDone := make(chan error, 1)
	go func() { nsDone <- ns.Run(nctx) }()
	t.Cleanup(func() { c.stopAll(); ncancel(); <-nsDone })
	select {
	case <-ns.Ready():
	case err := <-nsDone:
		t.Fatalf("nats: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("nats did not start")
	}
	return ns
}
