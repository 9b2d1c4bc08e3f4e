package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisClusterNodeTimeout is the cluster's cluster-node-timeout: how long a
// master may be silent before the others fail it over to its replica. Short
// so that a test's failover takes a couple of seconds.
const redisClusterNodeTimeout = 1000 * time.Millisecond

// RedisClusterServers is a Redis Cluster of three masters, each with one
// replica, that one test started (RedisCluster) and may break (Kill).
type RedisClusterServers struct {
	mu    sync.Mutex // guards nodes' proc state against concurrent Kill
	nodes []*redisNode
}

// redisNode is one redis-server of a cluster.
type redisNode struct {
	addr string
	port int
	bus  int
	id   string
	p    *proc
}

// RedisCluster starts a Redis Cluster on 127.0.0.1 for this test alone:
// six redis-server processes on free ports, three masters holding the 16384
// slots in equal ranges and a replica of each, no persistence,
// cluster-node-timeout 1s and cluster-require-full-coverage off (a lost
// master's slots fail alone while its replica takes over; the others keep
// serving). It returns once every node agrees that the cluster is healthy;
// the servers stop and their files go when the test ends.
//
// There is no environment variable naming an external cluster: the tests
// that use it kill its nodes.
func RedisCluster(t testing.TB) *RedisClusterServers {
	t.Helper()
	requireMain(t)
	c, err := startRedisCluster(t.Name())
	if c != nil {
		t.Cleanup(c.stop)
	}
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return c
}

// Addrs returns the host:port of every node, masters first: seeds for a
// cluster client.
func (c *RedisClusterServers) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr
	}
	return out
}

// MasterOf returns the address of the node that serves key's slot now.
func (c *RedisClusterServers) MasterOf(t testing.TB, key string) string {
	t.Helper()
	slot := Slot(key)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range c.live() {
		slots, err := adminClient(n.addr).ClusterSlots(ctx).Result()
		if err != nil {
			continue
		}
		for _, s := range slots {
			if int(s.Start) <= slot && slot <= int(s.End) && len(s.Nodes) > 0 {
				return s.Nodes[0].Addr
			}
		}
	}
	t.Fatalf("testenv: no live node of the cluster says who serves slot %d", slot)
	return ""
}

// Masters returns the addresses of the nodes that serve slots now.
func (c *RedisClusterServers) Masters(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range c.live() {
		slots, err := adminClient(n.addr).ClusterSlots(ctx).Result()
		if err != nil {
			continue
		}
		var out []string
		for _, s := range slots {
			if len(s.Nodes) > 0 && !slices.Contains(out, s.Nodes[0].Addr) {
				out = append(out, s.Nodes[0].Addr)
			}
		}
		return out
	}
	t.Fatalf("testenv: no live node of the cluster answers CLUSTER SLOTS")
	return nil
}

// Kill ends the node at addr with SIGKILL, as a crash would, and waits
// until it has exited.
func (c *RedisClusterServers) Kill(t testing.TB, addr string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.addr == addr {
			n.p.stop(syscall.SIGKILL, 0)
			return
		}
	}
	t.Fatalf("testenv: no node %s in the cluster", addr)
}

// WaitHealthy waits until every live node says the cluster is ok and
// every slot is served by a live master: after Kill, until the replica
// of the killed master has taken its place.
func (c *RedisClusterServers) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := poll(timeout, nil, c.healthy); err != nil {
		t.Fatalf("testenv: redis cluster: %v", err)
	}
}

func (c *RedisClusterServers) live() []*redisNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*redisNode
	for _, n := range c.nodes {
		if !n.p.exited() {
			out = append(out, n)
		}
	}
	return out
}

func (c *RedisClusterServers) healthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	live := c.live()
	liveAddr := map[string]bool{}
	for _, n := range live {
		liveAddr[n.addr] = true
	}
	for _, n := range live {
		info, err := adminClient(n.addr).ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("node %s: %w", n.addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			return fmt.Errorf("node %s: not ok yet:\n%s", n.addr, info)
		}
		slots, err := adminClient(n.addr).ClusterSlots(ctx).Result()
		if err != nil {
			return fmt.Errorf("node %s: %w", n.addr, err)
		}
		covered := 0
		for _, s := range slots {
			if len(s.Nodes) == 0 || !liveAddr[s.Nodes[0].Addr] {
				return fmt.Errorf("node %s: slots %d-%d served by %v, not a live node", n.addr, s.Start, s.End, s.Nodes)
			}
			covered += int(s.End - s.Start + 1)
		}
		if covered != 16384 {
			return fmt.Errorf("node %s: %d slots served", n.addr, covered)
		}
	}
	return nil
}

func (c *RedisClusterServers) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		closeAdminClient(n.addr)
		if n.p != nil {
			n.p.stop(syscall.SIGKILL, 0)
		}
	}
}

// Slot returns the Redis Cluster hash slot of key: CRC16 (XMODEM) of its
// hash tag (the part between the first '{' and the next '}', when not
// empty) or of the whole key, modulo 16384.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

var adminClients struct {
	mu sync.Mutex // leaf lock
	m  map[string]*redis.Client
}

// adminClient returns testenv's plain (non-cluster) client of one node.
func adminClient(addr string) *redis.Client {
	adminClients.mu.Lock()
	defer adminClients.mu.Unlock()
	if c, ok := adminClients.m[addr]; ok {
		return c
	}
	if adminClients.m == nil {
		adminClients.m = map[string]*redis.Client{}
	}
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true, Protocol: 2,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		MaxRetries: -1, PoolSize: 2})
	adminClients.m[addr] = c
	return c
}

func closeAdminClient(addr string) {
	adminClients.mu.Lock()
	defer adminClients.mu.Unlock()
	if c, ok := adminClients.m[addr]; ok {
		_ = c.Close()
		delete(adminClients.m, addr)
	}
}

var redisClusterSeq struct {
	mu sync.Mutex
	n  int
}

func startRedisCluster(name string) (*RedisClusterServers, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("start redis cluster: redis-server not found in PATH: %s", installHint)
	}
	root, err := tempRoot()
	if err != nil {
		return nil, fmt.Errorf("start redis cluster: %w", err)
	}
	redisClusterSeq.mu.Lock()
	redisClusterSeq.n++
	dir := filepath.Join(root, fmt.Sprintf("rediscluster-%d", redisClusterSeq.n))
	redisClusterSeq.mu.Unlock()
	c := &RedisClusterServers{}
	for i := range 6 {
		n, err := startRedisNode(bin, filepath.Join(dir, strconv.Itoa(i)))
		if err != nil {
			return c, fmt.Errorf("start redis cluster for %s: %w", name, err)
		}
		c.nodes = append(c.nodes, n)
	}
	if err := c.form(); err != nil {
		var logs strings.Builder
		for _, n := range c.nodes {
			fmt.Fprintf(&logs, "\n--- %s:\n%s", n.addr, n.p.logTail())
		}
		return c, fmt.Errorf("start redis cluster for %s: %w%s", name, err, logs.String())
	}
	return c, nil
}

func startRedisNode(bin, dir string) (*redisNode, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	n := &redisNode{}
	_, err := startOnFreePort("redis-server (cluster)", func(port int) (*proc, error) {
		bus, err := freePort()
		if err != nil {
			return nil, err
		}
		p, err := startProc(procSpec{
			name: "redis-server " + strconv.Itoa(port),
			bin:  bin,
			args: []string{
				"--port", strconv.Itoa(port),
				"--cluster-port", strconv.Itoa(bus),
				"--bind", "127.0.0.1",
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", strconv.Itoa(int(redisClusterNodeTimeout / time.Millisecond)),
				"--cluster-require-full-coverage", "no",
				// A replica takes over however long it was cut off.
				"--cluster-replica-validity-factor", "0",
				"--save", "",
				"--appendonly", "no",
				"--dir", dir,
				"--daemonize", "no",
			},
			dir: dir,
			log: filepath.Join(dir, "redis.log"),
		})
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := poll(30*time.Second, p.done, func() error { return redisPing(addr) }); err != nil {
			p.stop(syscall.SIGKILL, 0)
			return p, fmt.Errorf("start redis-server: %w; output:\n%s", err, p.logTail())
		}
		n.addr, n.port, n.bus, n.p = addr, port, bus, p
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

// form makes the six servers one cluster: slots to the first three, every
// node meets the first, then the last three replicate the first three.
func (c *RedisClusterServers) form() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, n := range c.nodes {
		id, err := adminClient(n.addr).Do(ctx, "cluster", "myid").Text()
		if err != nil {
			return fmt.Errorf("cluster myid of %s: %w", n.addr, err)
		}
		n.id = id
	}
	ranges := [][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}}
	for i, r := range ranges {
		if err := adminClient(c.nodes[i].addr).Do(ctx, "cluster", "addslotsrange", r[0], r[1]).Err(); err != nil {
			return fmt.Errorf("cluster addslotsrange on %s: %w", c.nodes[i].addr, err)
		}
	}
	first := c.nodes[0]
	for _, n := range c.nodes[1:] {
		if err := adminClient(n.addr).Do(ctx, "cluster", "meet", "127.0.0.1", first.port, first.bus).Err(); err != nil {
			return fmt.Errorf("cluster meet from %s: %w", n.addr, err)
		}
	}
	// Every node must know every other before a replica can name its
	// master.
	err := poll(30*time.Second, nil, func() error {
		for _, n := range c.nodes {
			out, err := adminClient(n.addr).ClusterNodes(ctx).Result()
			if err != nil {
				return err
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != len(c.nodes) || strings.Contains(out, "handshake") || strings.Contains(out, "noaddr") {
				return fmt.Errorf("node %s knows %d nodes:\n%s", n.addr, len(lines), out)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster meet: %w", err)
	}
	for i, n := range c.nodes[3:] {
		if err := adminClient(n.addr).Do(ctx, "cluster", "replicate", c.nodes[i].id).Err(); err != nil {
			return fmt.Errorf("cluster replicate on %s: %w", n.addr, err)
		}
	}
	err = poll(45*time.Second, nil, func() error {
		for _, n := range c.nodes[3:] {
			info, err := adminClient(n.addr).Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "master_link_status:up") {
				return fmt.Errorf("replica %s not in sync yet", n.addr)
			}
		}
		if err := c.healthy(); err != nil {
			return err
		}
		// Every node sees three masters with a replica each.
		for _, n := range c.nodes {
			out, err := adminClient(n.addr).ClusterNodes(ctx).Result()
			if err != nil {
				return err
			}
			if strings.Count(out, "slave") != 3 {
				return fmt.Errorf("node %s does not see three replicas yet:\n%s", n.addr, out)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster replicas: %w", err)
	}
	return nil
}
