// Package testenv gives FleetACS tests the real servers they talk to: Redis,
// NATS with JetStream and a MongoDB-wire server (docs/design.md §7: mocks are for
// units, never for the adapters).
//
// Each helper returns the address of a server named by an environment
// variable when one is set, and otherwise starts a private server on a free
// 127.0.0.1 port, once per test binary, that every test in the binary shares:
//
//	RedisAddr, RedisDB        FLEETACS_TEST_REDIS_ADDR   else redis-server
//	NATS                      FLEETACS_TEST_NATS_URL     else an in-process nats-server with JetStream
//	MongoURI, MongoDatabase   FLEETACS_TEST_MONGODB_URI  else FerretDB on a private PostgreSQL
//
// The servers already running on the machine's standard ports are never used
// unless a variable names them: tests must not depend on leftovers.
//
// Tests of failures start servers of their own, which they may break:
// RedisCluster (three masters with a replica each), RedisSentinel (a
// master, its replica and a sentinel) and NATSCluster (three nats-server
// processes with JetStream), each stopped at the end of the test that
// started it. No variable replaces them.
//
// A package that uses these helpers calls Main from its TestMain; Main stops
// every server the binary started and removes their files. Child processes
// also carry a parent-death signal (Linux), so a test binary that crashes or
// is killed takes its servers with it, and the next binary removes the
// temporary directories that a dead one left behind. Main deliberately does
// not trap SIGINT or SIGTERM: tests of graceful shutdown send those to their
// own process.
//
// Isolation between tests sharing a server: RedisDB hands each test its own
// Redis database number (claimed in DB 0, so it holds across test binaries
// sharing one external Redis, and flushed before and after use); MongoDatabase
// hands each test its own database, dropped at cleanup; UniqueName gives
// names for NATS streams and subjects that no other test uses.
//
// Server files go to a directory per test binary under $FLEETACS_TEST_TMPDIR,
// else /dev/shm when it is a roomy tmpfs, else $TMPDIR. Beside those
// directories a template PostgreSQL cluster (fleetacs-pgtemplate-*, about
// 30 MB) is kept for later binaries to copy instead of running initdb.
// Missing server binaries fail the test with a pointer to
// scripts/ensure-test-deps.sh, which installs them.
//
// The package keeps package-level state on purpose: a server per test binary
// is the point. Every piece of it is guarded by a sync.Once or by state.mu.
package testenv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Environment variables that name servers to use instead of private ones.
const (
	EnvRedisAddr = "FLEETACS_TEST_REDIS_ADDR"  // host:port of a Redis server
	EnvNATSURL   = "FLEETACS_TEST_NATS_URL"    // URL of a NATS server with JetStream
	EnvMongoURI  = "FLEETACS_TEST_MONGODB_URI" // URI of a real MongoDB (or compatible) server
	EnvFerretDB  = "FLEETACS_TEST_FERRETDB"    // path of the ferretdb binary, default <repo>/bin/ferretdb
	EnvTmpDir    = "FLEETACS_TEST_TMPDIR"      // where server files go, default /dev/shm (if roomy) or TMPDIR
)

// installHint ends every error about a missing server binary.
const installHint = "run scripts/ensure-test-deps.sh (make test does)"

// tempPrefix starts the name of the directory that holds one test binary's
// server files; the PID follows so that a later binary can tell whether the
// owner is still alive.
const tempPrefix = "fleetacs-testenv-"

// state is what this test binary has started. Lock order: state.mu is a leaf
// lock; no other lock is taken while holding it.
var state struct {
	mu    sync.Mutex
	root  string   // directory holding every server's files; "" until first needed
	stops []func() // undo actions, run in reverse order by stopAll
}

var mainCalled atomic.Bool

// Main runs the tests of a package and then stops every server that they
// started and removes the files those servers wrote. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// It exits the process with the tests' exit code.
func Main(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	mainCalled.Store(true)
	// A panic in TestMain's own goroutine still unwinds through here. A panic
	// in a test goroutine kills the process without running this; the
	// parent-death signal stops the children and sweepStale the files.
	defer stopAll()
	return m.Run()
}

// requireMain fails the test when the package has no TestMain calling Main:
// without it nothing would stop the servers at the end.
func requireMain(t testing.TB) {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatalf("testenv: call testenv.Main(m) from this package's TestMain, so the servers it starts stop with the test binary")
	}
}

// onStop registers f to run when Main ends; later registrations run first.
func onStop(f func()) {
	state.mu.Lock()
	defer state.mu.Unlock()
	state.stops = append(state.stops, f)
}

// stopAll runs the registered stops in reverse order. A stop that panics does
// not keep the others from running.
func stopAll() {
	state.mu.Lock()
	stops := state.stops
	state.stops = nil
	state.mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if r := recover(); r != nil {
					fmt.Fprintf(os.Stderr, "testenv: stop: %v\n", r)
				}
			}()
			stops[i]()
		}()
	}
}

// baseDir is where test binaries put their server directories:
// $FLEETACS_TEST_TMPDIR, else a memory file system when there is a roomy one
// (see memDir), else the system's temporary directory.
func baseDir() string {
	if d := os.Getenv(EnvTmpDir); d != "" {
		return d
	}
	if d := memDir(); d != "" {
		return d
	}
	return os.TempDir()
}

// tempRoot returns this binary's directory for server files, making it on
// first use. It is traversable by other users (0711) because PostgreSQL runs
// as the postgres user when tests run as root.
func tempRoot() (string, error) {
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.root != "" {
		return state.root, nil
	}
	base := baseDir()
	sweepStale(base)
	dir, err := os.MkdirTemp(base, tempPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil && os.Getenv(EnvTmpDir) == "" && base != os.TempDir() {
		// The memory file system would not have us: use the disk.
		base = os.TempDir()
		sweepStale(base)
		dir, err = os.MkdirTemp(base, tempPrefix+strconv.Itoa(os.Getpid())+"-")
	}
	if err != nil {
		return "", fmt.Errorf("make temporary directory: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return "", fmt.Errorf("make temporary directory: %w", err)
	}
	state.root = dir
	// Registered first, so it runs last, after every server has stopped.
	state.stops = append(state.stops, func() {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: remove %s: %v\n", dir, err)
		}
	})
	return dir, nil
}

// sweepStale removes the server directories of test binaries that died
// without running Main's cleanup. A directory whose PID is alive is left
// alone, even if the PID was reused: leaking a directory is better than
// deleting a live one.
func sweepStale(tmp string) {
	matches, _ := filepath.Glob(filepath.Join(tmp, tempPrefix+"*-*"))
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), tempPrefix)
		pidText, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue // alive, or not ours to judge (EPERM)
		}
		_ = os.RemoveAll(m)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago,
// below the kernel's ephemeral range: the processes a test starts open
// many outgoing connections, whose local ports come from that range and
// could take a port handed out there before its server binds it. Another
// process may still take it; the server starters here retry with a new
// port when that happens. It never hands out the same port twice in one
// test binary: a test that takes several ports before starting the servers
// that bind them (a chart's components) would otherwise, now and then, give
// two servers one port.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

// givenPorts are the ports FreePort handed out in this process.
var givenPorts struct {
	sync.Mutex
	set map[int]bool
}

// handOut reports whether p was not handed out before, and marks it.
func handOut(p int) bool {
	givenPorts.Lock()
	defer givenPorts.Unlock()
	if givenPorts.set[p] {
		return false
	}
	if givenPorts.set == nil {
		givenPorts.set = map[int]bool{}
	}
	givenPorts.set[p] = true
	return true
}

func freePort() (int, error) {
	low := 32768
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(data)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 12000 {
				low = n
			}
		}
	}
	for range 200 {
		p := 10000 + rand.IntN(low-10000)
		if !handOut(p) {
			continue
		}
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			l.Close()
			return p, nil
		}
	}
	return 0, fmt.Errorf("find free port: none free below %d", low)
}

// WaitFor calls cond until it returns nil and fails the test with cond's last
// error if that has not happened within timeout. It polls with a short,
// growing interval: use it to wait for a condition, never a fixed sleep.
func WaitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := poll(timeout, nil, cond); err != nil {
		t.Fatalf("testenv: wait: %v", err)
	}
}

// errExited reports that a server process ended while we waited for it.
var errExited = errors.New("process exited")

// poll calls cond until it returns nil, the timeout passes, or quit closes.
func poll(timeout time.Duration, quit <-chan struct{}, cond func() error) error {
	deadline := time.Now().Add(timeout)
	interval := time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("not done after %s: %w", timeout, err)
		}
		timer := time.NewTimer(min(interval, time.Until(deadline)))
		select {
		case <-quit:
			timer.Stop()
			return fmt.Errorf("%w (last check: %v)", errExited, err)
		case <-timer.C:
		}
		interval = min(interval*2, 50*time.Millisecond)
	}
}

var uniqueSeq atomic.Uint64

// UniqueName returns a name that no other test, in this binary or another one
// running now, gets: the test's name, this process's PID and a counter. It
// uses only [a-z0-9_] and has at most 50 bytes, so it is valid as a MongoDB
// database name, a NATS stream name or subject token, a Redis key prefix and
// a PostgreSQL identifier.
func UniqueName(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() == 24 {
			break
		}
	}
	return fmt.Sprintf("t_%s_%s_%s", b.String(),
		strconv.FormatInt(int64(os.Getpid()), 36), strconv.FormatUint(uniqueSeq.Add(1), 36))
}

// RepoRoot returns the repository root: the nearest directory at or above the
// working directory (a test's package directory) that holds go.work.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return root
}

func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find repository root: no go.work in %s or any parent", wd)
		}
		dir = parent
	}
}
