package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// privateRedisDBs is the number of databases the private redis-server has,
// so that every test in a binary can have its own.
const privateRedisDBs = 1024

// redisClaimLease bounds how long a database stays claimed by a test binary
// that died without releasing it.
const redisClaimLease = 15 * time.Minute

var redisServer struct {
	once sync.Once
	addr string
	err  error
}

// RedisAddr returns the host:port of a Redis server: $FLEETACS_TEST_REDIS_ADDR
// when set, else a redis-server this test binary starts on a free port (no
// persistence, 1024 databases). The server is shared by every test in the
// binary; use RedisDB for a database of the test's own.
func RedisAddr(t testing.TB) string {
	t.Helper()
	requireMain(t)
	addr := os.Getenv(EnvRedisAddr)
	if addr == "" {
		redisServer.once.Do(func() { redisServer.addr, redisServer.err = startRedis() })
		if redisServer.err != nil {
			t.Fatalf("testenv: %v", redisServer.err)
		}
		addr = redisServer.addr
	}
	if _, err := redisAdmin(addr); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return addr
}

// RedisDB returns a Redis server address and a database number that no other
// running test uses, empty at the start of the test and flushed at its end.
// The claim lives in database 0 of that server (keys fleetacs:testenv:db:N),
// so it also holds between test binaries sharing an external Redis; tests
// using RedisDB must therefore leave database 0 alone and never FLUSHALL.
func RedisDB(t testing.TB) (addr string, db int) {
	t.Helper()
	addr = RedisAddr(t)
	admin, err := redisAdmin(addr)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, token, err := admin.claim(ctx)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := admin.release(ctx, db, token); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	if err := admin.flush(ctx, db); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return addr, db
}

func startRedis() (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("start redis-server: not found in PATH: %s", installHint)
	}
	root, err := tempRoot()
	if err != nil {
		return "", fmt.Errorf("start redis-server: %w", err)
	}
	dir := filepath.Join(root, "redis")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("start redis-server: %w", err)
	}
	port, err := startOnFreePort("redis-server", func(port int) (*proc, error) {
		p, err := startProc(procSpec{
			name: "redis-server",
			bin:  bin,
			args: []string{
				"--port", strconv.Itoa(port),
				"--bind", "127.0.0.1",
				"--save", "",
				"--appendonly", "no",
				"--dir", dir,
				"--databases", strconv.Itoa(privateRedisDBs),
				"--daemonize", "no",
			},
			dir: dir,
			log: filepath.Join(dir, "redis.log"),
		})
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = poll(30*time.Second, p.done, func() error { return redisPing(addr) })
		if err != nil {
			p.stop(syscall.SIGKILL, 0)
			return p, fmt.Errorf("start redis-server: %w; output:\n%s", err, p.logTail())
		}
		onStop(func() { p.stop(syscall.SIGTERM, 10*time.Second) })
		return p, nil
	})
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// redisAdminClient does testenv's own work on one Redis server: checking that
// it answers and handing out databases.
type redisAdminClient struct {
	addr   string
	c      *redis.Client // database 0, where claims live
	dbs    int           // number of databases the server has
	next   atomic.Int64  // where the next claim search starts
	prefix string        // identifies this process in claim tokens
	seq    atomic.Uint64
}

var redisAdmins struct {
	mu sync.Mutex // leaf lock
	m  map[string]*redisAdminClient
}

// redisAdmin returns the admin client for addr, connecting (and checking that
// the server answers) on first use.
func redisAdmin(addr string) (*redisAdminClient, error) {
	redisAdmins.mu.Lock()
	defer redisAdmins.mu.Unlock()
	if a, ok := redisAdmins.m[addr]; ok {
		return a, nil
	}
	if err := redisPing(addr); err != nil {
		return nil, err
	}
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := &redisAdminClient{addr: addr, c: c, dbs: 16, prefix: fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())}
	// CONFIG may be disabled on a managed server; 16 is Redis's default.
	if cfg, err := c.ConfigGet(ctx, "databases").Result(); err == nil {
		if n, err := strconv.Atoi(cfg["databases"]); err == nil && n > 1 {
			a.dbs = n
		}
	}
	// Start each process's search at a different place so that binaries
	// sharing one server rarely contend for the same database.
	a.next.Store(int64(os.Getpid()))
	if redisAdmins.m == nil {
		redisAdmins.m = map[string]*redisAdminClient{}
	}
	redisAdmins.m[addr] = a
	onStop(func() {
		redisAdmins.mu.Lock()
		delete(redisAdmins.m, addr)
		redisAdmins.mu.Unlock()
		_ = c.Close()
	})
	return a, nil
}

// redisPing checks that a Redis server answers at addr. It speaks RESP
// itself: go-redis would retry and log each refused dial while a server
// starts.
func redisPing(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return fmt.Errorf("ping redis at %s: %w", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return fmt.Errorf("ping redis at %s: %w", addr, err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("ping redis at %s: %w", addr, err)
	}
	// -LOADING and the like mean it is not ready yet.
	if line != "+PONG\r\n" {
		return fmt.Errorf("ping redis at %s: answered %q", addr, strings.TrimSpace(line))
	}
	return nil
}

func redisClaimKey(db int) string { return "fleetacs:testenv:db:" + strconv.Itoa(db) }

// claim reserves a database other than 0 and returns it with the token that
// releases it.
func (a *redisAdminClient) claim(ctx context.Context) (int, string, error) {
	token := a.prefix + "-" + strconv.FormatUint(a.seq.Add(1), 10)
	n := a.dbs - 1 // databases 1..dbs-1
	for range n {
		db := 1 + int(uint64(a.next.Add(1))%uint64(n))
		ok, err := a.c.SetNX(ctx, redisClaimKey(db), token, redisClaimLease).Result()
		if err != nil {
			return 0, "", fmt.Errorf("claim redis database at %s: %w", a.addr, err)
		}
		if ok {
			return db, token, nil
		}
	}
	return 0, "", fmt.Errorf("claim redis database at %s: all %d are claimed by running tests", a.addr, n)
}

// releaseScript deletes a claim only if it is still ours: after the lease
// expired another test may hold it.
var releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// release empties db and gives up its claim.
func (a *redisAdminClient) release(ctx context.Context, db int, token string) error {
	flushErr := a.flush(ctx, db)
	err := releaseScript.Run(ctx, a.c, []string{redisClaimKey(db)}, token).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		err = fmt.Errorf("release redis database %d at %s: %w", db, a.addr, err)
	} else {
		err = nil
	}
	return errors.Join(flushErr, err)
}

// flush empties one database.
func (a *redisAdminClient) flush(ctx context.Context, db int) error {
	c := redis.NewClient(&redis.Options{Addr: a.addr, DB: db, DisableIdentity: true, PoolSize: 1})
	defer c.Close()
	if err := c.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("flush redis database %d at %s: %w", db, a.addr, err)
	}
	return nil
}
