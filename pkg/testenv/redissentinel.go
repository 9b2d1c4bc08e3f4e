package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SentinelMaster is the name the sentinel of RedisSentinel monitors.
const SentinelMaster = "fleetacs"

// RedisSentinelServers is a Redis master, its replica and one sentinel
// watching them, that one test started (RedisSentinel) and may break
// (KillMaster).
type RedisSentinelServers struct {
	mu       sync.Mutex
	master   *redisNode
	replica  *redisNode
	sentinel *redisNode
}

// RedisSentinel starts, for this test alone, a Redis master, a replica of
// it and a sentinel monitoring them under SentinelMaster with quorum 1,
// down-after-milliseconds 1000 (three redis-server processes on free
// ports, no persistence). It returns once the replica is in sync and the
// sentinel knows it; the servers stop and their files go when the test
// ends. One sentinel is enough to fail over on loopback; a deployment runs
// three.
func RedisSentinel(t testing.TB) *RedisSentinelServers {
	t.Helper()
	requireMain(t)
	s, err := startRedisSentinel()
	if s != nil {
		t.Cleanup(s.stop)
	}
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return s
}

// SentinelAddr returns the sentinel's host:port.
func (s *RedisSentinelServers) SentinelAddr() string { return s.sentinel.addr }

// MasterAddr returns the address the sentinel gives for the master now.
func (s *RedisSentinelServers) MasterAddr(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := adminClient(s.sentinel.addr).Do(ctx, "sentinel", "get-master-addr-by-name", SentinelMaster).StringSlice()
	if err != nil || len(v) != 2 {
		t.Fatalf("testenv: sentinel get-master-addr-by-name: %v %v", v, err)
	}
	return net.JoinHostPort(v[0], v[1])
}

// KillMaster ends the first master with SIGKILL and waits until the
// sentinel has promoted the replica.
func (s *RedisSentinelServers) KillMaster(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	s.master.p.stop(syscall.SIGKILL, 0)
	s.mu.Unlock()
	WaitFor(t, 60*time.Second, func() error {
		if got := s.MasterAddr(t); got != s.replica.addr {
			return fmt.Errorf("sentinel still names %s the master", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		info, err := adminClient(s.replica.addr).Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "role:master") {
			return fmt.Errorf("replica %s not promoted yet", s.replica.addr)
		}
		return nil
	})
}

func (s *RedisSentinelServers) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range []*redisNode{s.sentinel, s.replica, s.master} {
		if n != nil && n.p != nil {
			closeAdminClient(n.addr)
			n.p.stop(syscall.SIGKILL, 0)
		}
	}
}

var redisSentinelSeq struct {
	mu sync.Mutex
	n  int
}

func startRedisSentinel() (*RedisSentinelServers, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("start redis sentinel: redis-server not found in PATH: %s", installHint)
	}
	root, err := tempRoot()
	if err != nil {
		return nil, fmt.Errorf("start redis sentinel: %w", err)
	}
	redisSentinelSeq.mu.Lock()
	redisSentinelSeq.n++
	base := filepath.Join(root, fmt.Sprintf("redissentinel-%d", redisSentinelSeq.n))
	redisSentinelSeq.mu.Unlock()
	s := &RedisSentinelServers{}
	if s.master, err = startPlainRedis(bin, filepath.Join(base, "master"), nil); err != nil {
		return s, fmt.Errorf("start redis sentinel master: %w", err)
	}
	if s.replica, err = startPlainRedis(bin, filepath.Join(base, "replica"), func(int) []string {
		return []string{"--replicaof", "127.0.0.1", strconv.Itoa(s.master.port)}
	}); err != nil {
		return s, fmt.Errorf("start redis sentinel replica: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = poll(30*time.Second, nil, func() error {
		info, err := adminClient(s.replica.addr).Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("replica %s not in sync yet", s.replica.addr)
		}
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("start redis sentinel replica: %w", err)
	}
	dir := filepath.Join(base, "sentinel")
	if s.sentinel, err = startPlainRedis(bin, dir, func(port int) []string {
		// The sentinel rewrites its configuration file: it must be its own.
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\nsentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 10000\n",
			port, SentinelMaster, s.master.port, SentinelMaster, SentinelMaster)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			return nil
		}
		return []string{conf, "--sentinel"}
	}); err != nil {
		return s, fmt.Errorf("start redis sentinel: %w", err)
	}
	// The sentinel learns of the replica from the master's INFO.
	err = poll(30*time.Second, nil, func() error {
		reps, err := adminClient(s.sentinel.addr).Do(ctx, "sentinel", "replicas", SentinelMaster).Slice()
		if err != nil {
			return err
		}
		if len(reps) != 1 {
			return fmt.Errorf("sentinel knows %d replicas", len(reps))
		}
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("start redis sentinel: %w", err)
	}
	return s, nil
}

// startPlainRedis starts one redis-server without persistence in dir on a
// free port; extra, when not nil, gives arguments that depend on the port
// (a sentinel's configuration file comes first).
func startPlainRedis(bin, dir string, extra func(port int) []string) (*redisNode, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	n := &redisNode{}
	_, err := startOnFreePort("redis-server", func(port int) (*proc, error) {
		var args []string
		if extra != nil {
			args = extra(port)
		}
		args = append(args, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no")
		p, err := startProc(procSpec{name: "redis-server " + strconv.Itoa(port), bin: bin, args: args,
			dir: dir, log: filepath.Join(dir, "redis.log")})
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err := poll(30*time.Second, p.done, func() error { return redisPing(addr) }); err != nil {
			p.stop(syscall.SIGKILL, 0)
			return p, fmt.Errorf("%w; output:\n%s", err, p.logTail())
		}
		n.addr, n.port, n.p = addr, port, p
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}
