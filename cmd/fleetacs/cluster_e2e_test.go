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

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/deviceid"
	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// TestClusteredDependencies runs the distributed processes (gateway, two
// session workers, inventory, tasks, notifier, each a fleetacs process of
// its own) over a Redis Cluster of three masters with a replica each and a
// three-node NATS cluster with R3 streams (docs/operations.md, "Clustered
// dependencies"). cpesim devices inform periodically; tasks are queued on
// every device; then the Redis master holding the most keys and the NATS
// node leading the task stream are killed (SIGKILL), and a second batch of
// tasks is queued once they are gone. It checks that every task of both
// batches ends done, that no device was sent a task's SetParameterValues
// twice, and that every device completes sessions again within a bounded
// time after the crash.
func TestClusteredDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run of six processes over two clusters; make test runs it")
	}
	const (
		devices   = 6
		perDevice = 2 // tasks per device in each batch
		paramPath = "Device.ManagementServer.PeriodicInformInterval"
		interval  = 2 * time.Second // the devices' periodic inform
		blip      = 30 * time.Second
	)
	rcl := testenv.RedisCluster(t)
	ncl := testenv.NATSCluster(t)
	c := &cluster{t: t, bin: buildFleetacs(t), dir: t.TempDir()}
	t.Cleanup(c.stopAll)

	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }
	invAddr, invPublic, tasksAddr, tasksPublic, w1Addr, w2Addr, gwAddr := addr(), addr(), addr(), addr(), addr(), addr(), addr()
	internalToken := filepath.Join(c.dir, "internal.token")
	if err := secretbox.WriteFileExclusive(internalToken, []byte("e2e-internal-token-0123456789abcdef0123456789\n")); err != nil {
		t.Fatal(err)
	}
	common := []string{
		"-log.format=json", "-log.level=warn", "-server.http-addr=127.0.0.1:0", "-server.api-http-addr=127.0.0.1:0", "-server.stop-timeout=10s",
		"-redis.mode=cluster", "-redis.addr=" + strings.Join(rcl.Addrs(), ","), "-redis.prefix=e2e",
		"-nats.url=" + ncl.URL(), "-nats.stream-replicas=3",
		"-client.inventory-addr=" + invAddr, "-internal.token-file=" + internalToken,
	}
	args := func(name string, extra ...string) []string {
		return append(append(append([]string{}, common...), "-data-dir="+filepath.Join(c.dir, name)), extra...)
	}
	inv := c.start("inventory", args("inventory", "-server.internal-grpc-addr="+invAddr, "-server.grpc-addr="+invPublic,
		"-inventory.store=sqlite", "inventory")...)
	tsk := c.start("tasks", args("tasks", "-server.internal-grpc-addr="+tasksAddr, "-server.grpc-addr="+tasksPublic,
		"-tasks.sweep-interval=200ms", "tasks")...)
	ntf := c.start("notifier", args("notifier", "-server.internal-grpc-addr=127.0.0.1:0", "-notifier.allow-loopback", "notifier")...)
	worker := func(name, a string) *proc {
		return c.start(name, args(name, "-server.internal-grpc-addr="+a, "-sessions.advertise-addr="+a, "-client.tasks-addr="+tasksAddr,
			"-sessions.worker-id="+name, "-sessions.registry-ttl=3s", "sessions")...)
	}
	w1, w2 := worker("worker-1", w1Addr), worker("worker-2", w2Addr)
	gw := c.start("gateway", args("gateway", "-gateway.listen-addr="+gwAddr, "-server.internal-grpc-addr=127.0.0.1:0",
		"-gateway.auth-shared-username=fleet", "-gateway.auth-shared-password=e2e-secret", "-gateway.auth-nonce-secret=e2e-nonce-key", "gateway")...)
	all := []*proc{inv, tsk, ntf, w1, w2, gw}
	defer func() {
		if t.Failed() {
			for _, p := range all {
				t.Logf("--- %s log tail:\n%s", p.name, p.tail(30))
			}
		}
	}()
	alive := func() {
		t.Helper()
		for _, p := range all {
			if err := c.checkAlive(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	testenv.WaitFor(t, 90*time.Second, func() error {
		alive()
		for _, a := range []string{invAddr, tasksAddr, w1Addr, w2Addr} {
			if err := grpcServing(a); err != nil {
				return err
			}
		}
		return httpReady("http://" + gwAddr + "/readyz")
	})

	var (
		mu    sync.Mutex
		spvs  = map[string][]string{} // device key -> values of paramPath it was sent
		oks   = map[string][]time.Time{}
		fails []string // failed sessions: when, device, kind, error
	)
	sm, err := sim.New(sim.Config{URL: "http://" + gwAddr + "/", Model: sim.TR181,
		Devices: devices, Seed: 31, SerialPrefix: "CLU", BootStorm: true, Concurrency: devices,
		Periodic: true, Interval: interval, Jitter: 0.2,
		Username: "fleet", Password: "e2e-secret",
		Timeout: 20 * time.Second, ConnReq: sim.ConnReqPerDevice, TimeScale: 0.01,
		OnSession: func(r sim.SessionReport) {
			mu.Lock()
			defer mu.Unlock()
			key := deviceid.Key(r.Device.ID())
			if !r.OK {
				fails = append(fails, fmt.Sprintf("%s %s %s: %v", time.Now().Format("15:04:05.000"), key, r.Kind, r.Err))
				return
			}
			oks[key] = append(oks[key], time.Now())
		},
		OnRequest: func(d *sim.Device, m cwmp.Message) bool {
			spv, ok := m.(*cwmp.SetParameterValues)
			if !ok {
				return false
			}
			mu.Lock()
			defer mu.Unlock()
			for _, v := range spv.ParameterList {
				if v.Name == paramPath {
					key := deviceid.Key(d.ID())
					spvs[key] = append(spvs[key], v.Value)
				}
			}
			return false
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
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

	adminToken := ""
	testenv.WaitFor(t, 30*time.Second, func() error {
		b, err := os.ReadFile(filepath.Join(c.dir, "inventory", "admin.token"))
		adminToken = strings.TrimSpace(string(b))
		return err
	})
	admin := func() context.Context { return withToken(ctx10(t), adminToken) }
	inventory := inventoryv1.NewInventoryServiceClient(dialPlain(t, invPublic))
	tasksAPI := tasksv1.NewTasksServiceClient(dialPlain(t, tasksPublic))
	testenv.WaitFor(t, 60*time.Second, func() error {
		alive()
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

	// create queues the tasks of a batch, retrying each (under its
	// idempotency key) through the failovers. Values are unique per task.
	want := map[string][]string{} // device key -> values its tasks set, in order
	var taskIDs []string
	create := func(batch int) {
		t.Helper()
		for i, key := range keys {
			for j := range perDevice {
				value := strconv.Itoa(10000 + 1000*batch + 10*i + j)
				var id string
				testenv.WaitFor(t, 60*time.Second, func() error {
					resp, err := tasksAPI.CreateTask(admin(), &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: key,
						Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_SetParameterValues{SetParameterValues: &tasksv1.SetParameterValues{
							Values: []*tasksv1.ParameterValue{{Name: paramPath, Value: value, Type: "xsd:unsignedInt"}},
						}}},
						Options: &tasksv1.TaskOptions{IdempotencyKey: "clu-" + value}})
					if err != nil {
						return fmt.Errorf("create task on %s: %w", key, err)
					}
					id = resp.GetTask().GetId()
					return nil
				})
				want[key] = append(want[key], value)
				taskIDs = append(taskIDs, id)
			}
		}
	}
	create(1)

	// The crash: the Redis master holding the most keys (device leases,
	// checkpoints, session records, nonces) and the NATS node leading the
	// task stream.
	pending := 0
	for _, id := range taskIDs {
		resp, err := tasksAPI.GetTask(admin(), &tasksv1.GetTaskRequest{Tenant: "default", Id: id})
		if err != nil {
			t.Fatal(err)
		}
		if s := resp.GetTask().GetState(); s == tasksv1.TaskState_TASK_STATE_QUEUED || s == tasksv1.TaskState_TASK_STATE_DISPATCHED {
			pending++
		}
	}
	t.Logf("%d of the %d tasks of the first batch not ended at the crash", pending, len(taskIDs))
	if pending == 0 {
		t.Fatal("every task of the first batch ended before the crash: the run tests nothing in flight")
	}
	victim := busiestMaster(t, rcl)
	natsVictim := ncl.StreamLeader(t, natsbus.New("", "").TasksStream())
	killedAt := time.Now()
	rcl.Kill(t, victim)
	ncl.Kill(t, natsVictim)
	t.Logf("killed redis master %s and nats node %d", victim, natsVictim)
	rcl.WaitHealthy(t, 30*time.Second)
	t.Logf("redis failover done after %s", time.Since(killedAt).Round(time.Millisecond))
	create(2)

	// Every task ends, done.
	testenv.WaitFor(t, 120*time.Second, func() error {
		alive()
		for _, id := range taskIDs {
			resp, err := tasksAPI.GetTask(admin(), &tasksv1.GetTaskRequest{Tenant: "default", Id: id})
			if err != nil {
				return err
			}
			switch task := resp.GetTask(); task.GetState() {
			case tasksv1.TaskState_TASK_STATE_DONE:
			case tasksv1.TaskState_TASK_STATE_QUEUED, tasksv1.TaskState_TASK_STATE_DISPATCHED:
				return fmt.Errorf("task %s of %s still %v; history %v", id, task.GetDeviceId(), task.GetState(), task.GetHistory())
			default:
				t.Fatalf("task %s of %s: %v, fault %v; history %v", id, task.GetDeviceId(), task.GetState(), task.GetFault(), task.GetHistory())
			}
		}
		return nil
	})

	// Sessions complete again: every device has two sessions that ended
	// well after the crash, the first within the blip's bound.
	testenv.WaitFor(t, blip+4*interval, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, key := range keys {
			after := 0
			for _, at := range oks[key] {
				if at.After(killedAt) {
					after++
				}
			}
			if after < 2 {
				return fmt.Errorf("device %s: %d sessions ok since the crash", key, after)
			}
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	var worst time.Duration
	for _, key := range keys {
		i := slices.IndexFunc(oks[key], func(at time.Time) bool { return at.After(killedAt) })
		gap := oks[key][i].Sub(killedAt)
		worst = max(worst, gap)
		if gap > blip {
			t.Errorf("device %s: first good session %s after the crash, want within %s", key, gap, blip)
		}
	}
	t.Logf("longest wait for a good session after the crash (%s): %s; %d failed sessions:\n%s",
		killedAt.Format("15:04:05.000"), worst.Round(time.Millisecond), len(fails), strings.Join(fails, "\n"))

	// No SetParameterValues twice, none lost: each device got each of its
	// tasks' values exactly once. The ACS's own SetParameterValues (the
	// bootstrap's presets set paramPath too) carry other values.
	taskValue := map[string]bool{}
	for _, vs := range want {
		for _, v := range vs {
			taskValue[v] = true
		}
	}
	for _, key := range keys {
		var got []string
		for _, v := range spvs[key] {
			if taskValue[v] {
				got = append(got, v)
			}
		}
		w := slices.Clone(want[key])
		slices.Sort(got)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("device %s was sent %s=%v, want each of %v once", key, paramPath, spvs[key], want[key])
		}
	}
	alive()
}

// busiestMaster returns the Redis master holding the most keys.
func busiestMaster(t *testing.T, rcl *testenv.RedisClusterServers) string {
	t.Helper()
	var best string
	var most int64 = -1
	for _, a := range rcl.Masters(t) {
		rc := redis.NewClient(&redis.Options{Addr: a, DisableIdentity: true})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n, err := rc.DBSize(ctx).Result()
		cancel()
		_ = rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if n > most {
			best, most = a, n
		}
	}
	return best
}
