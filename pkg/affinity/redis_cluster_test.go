package affinity_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/affinity/affinitytest"
	"github.com/fleetacs/fleetacs/pkg/redisconn"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// clusterClient is the production cluster client (pkg/redisconn) on rc,
// closed when the test ends.
func clusterClient(t testing.TB, rc *testenv.RedisClusterServers) *redis.ClusterClient {
	t.Helper()
	c, err := redisconn.New(redisconn.Config{Mode: redisconn.ModeCluster, Addrs: rc.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*redis.ClusterClient)
}

// TestRedisClusterConformance runs the store's contract suite on a real
// Redis Cluster of three masters: every script and pipeline of the store
// works when its keys are spread over nodes (a script whose keys were in
// several slots would fail with CROSSSLOT).
func TestRedisClusterConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a six-node Redis Cluster")
	}
	rc := testenv.RedisCluster(t)
	client := clusterClient(t, rc)
	affinitytest.Run(t, func(t *testing.T, now func() time.Time) affinity.Store {
		return affinity.NewRedis(client, "fleetacs:"+testenv.UniqueName(t)+":", now).Store()
	})
}

// TestRedisKeySlots: every key of one device (lease, token counter,
// checkpoints and their journals, fence) lies in one Redis Cluster slot,
// computed as Redis does (CRC16 of the hash tag), and checked against the
// cluster's own CLUSTER KEYSLOT; the registry's keys share one slot too.
// Devices spread over the slots rather than piling on one.
func TestRedisKeySlots(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a six-node Redis Cluster")
	}
	client := clusterClient(t, testenv.RedisCluster(t))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	r := affinity.NewRedis(nil, "fleetacs:", nil)
	keyslot := func(key string) int {
		t.Helper()
		n, err := client.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := testenv.Slot(key); got != int(n) {
			t.Fatalf("testenv.Slot(%q) = %d, CLUSTER KEYSLOT says %d", key, got, n)
		}
		return int(n)
	}
	names := [][3]string{
		{"default", "00259E-HG8245H-1", "c2Vzc2lvbg"},
		{"a:b", "c", "s"},
		{"t}", "{d", "}{"},
		{"tenant", "dev}ice", "sess{ion}"},
		{"", "x", ""},
	}
	for i := range 200 {
		names = append(names, [3]string{fmt.Sprintf("tenant%d", i%7), fmt.Sprintf("00259E-HG8245H-%06d", i), fmt.Sprintf("s%d", i)})
	}
	slots := map[int]bool{}
	for _, n := range names {
		tn, dev, sid := n[0], n[1], n[2]
		keys := []string{r.LeaseKey(tn, dev), r.TokenKey(tn, dev), r.CheckpointKey(tn, dev, sid),
			r.CheckpointKey(tn, dev, sid) + ":j", r.FenceKey(tn, dev), r.CheckpointKey(tn, dev, sid+"-other")}
		for _, group := range r.KeyGroups(tn, dev, sid, "192.0.2.7") {
			keys = append(keys, group...)
		}
		want := keyslot(keys[0])
		slots[want] = true
		for _, k := range keys[1:] {
			if k == r.WorkerKeys()[0] || k == r.WorkerKeys()[1] {
				continue
			}
			if got := keyslot(k); got != want {
				t.Errorf("device %q/%q: key %q in slot %d, the lease %q in %d", tn, dev, k, got, keys[0], want)
			}
		}
	}
	wk := r.WorkerKeys()
	if keyslot(wk[0]) != keyslot(wk[1]) {
		t.Errorf("registry keys %q in different slots", wk)
	}
	// 205 devices over 16384 slots: nearly all apart.
	if len(slots) < 190 {
		t.Errorf("%d devices in only %d slots", len(names), len(slots))
	}
}

// TestRedisScriptsDeclareKeys: no Lua script touches a key it does not
// declare in KEYS (Redis Cluster routes a script by its declared keys).
func TestRedisScriptsDeclareKeys(t *testing.T) {
	if n := testenv.CheckLuaKeys(t, "scripts.go"); n != len(affinity.Scripts) {
		t.Errorf("the audit read %d scripts in scripts.go, the store has %d", n, len(affinity.Scripts))
	}
}

// TestRedisClusterFailover kills the master that holds a device's keys: once
// its replica has taken over, the store works again on that device, and a
// new lease's fencing token is above every token handed out before the
// crash even if the counter's last increments were not replicated.
func TestRedisClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a six-node Redis Cluster")
	}
	rc := testenv.RedisCluster(t)
	client := clusterClient(t, rc)
	r := affinity.NewRedis(client, "fleetacs:", nil)
	const tn, dev = "default", "00259E-HG8245H-FAIL"
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var last uint64
	for i := range 20 {
		l, err := r.Leases().Acquire(ctx, tn, dev, fmt.Sprintf("s%d", i), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		last = l.FencingToken
	}
	rc.Kill(t, rc.MasterOf(t, r.LeaseKey(tn, dev)))
	rc.WaitHealthy(t, 30*time.Second)
	var l affinity.Lease
	testenv.WaitFor(t, 30*time.Second, func() error {
		var err error
		l, err = r.Leases().Acquire(ctx, tn, dev, "after", time.Minute)
		return err
	})
	if l.FencingToken <= last {
		t.Fatalf("token after failover %d, not above %d from before", l.FencingToken, last)
	}
	if err := r.Checkpoints().Save(ctx, affinity.Checkpoint{Tenant: tn, DeviceKey: dev, SessionID: "after",
		FencingToken: l.FencingToken, Seq: 1, Data: []byte("x")}, time.Minute); err != nil {
		t.Fatal(err)
	}
}

// TestRedisSentinel runs the store's contract suite through the production
// client in Sentinel mode (a master, its replica and a sentinel), then
// kills the master: once the sentinel has promoted the replica the client
// finds it, and a new lease's fencing token is above every token before.
func TestRedisSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis master, replica and sentinel")
	}
	rs := testenv.RedisSentinel(t)
	c, err := redisconn.New(redisconn.Config{Mode: redisconn.ModeSentinel, Addrs: []string{rs.SentinelAddr()},
		MasterName: testenv.SentinelMaster})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	affinitytest.Run(t, func(t *testing.T, now func() time.Time) affinity.Store {
		return affinity.NewRedis(c, "fleetacs:"+testenv.UniqueName(t)+":", now).Store()
	})

	r := affinity.NewRedis(c, "fleetacs:failover:", nil)
	const tn, dev = "default", "00259E-HG8245H-SENT"
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	var last uint64
	for i := range 20 {
		l, err := r.Leases().Acquire(ctx, tn, dev, fmt.Sprintf("s%d", i), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		last = l.FencingToken
	}
	rs.KillMaster(t)
	var l affinity.Lease
	testenv.WaitFor(t, 30*time.Second, func() error {
		var err error
		l, err = r.Leases().Acquire(ctx, tn, dev, "after", time.Minute)
		return err
	})
	if l.FencingToken <= last {
		t.Fatalf("token after failover %d, not above %d from before", l.FencingToken, last)
	}
}
