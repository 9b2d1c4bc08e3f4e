package testenv_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func redisClient(t *testing.T, addr string, db int) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, DB: db, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRedisRoundTrip(t *testing.T) {
	ctx := ctxT(t)
	addr, db := testenv.RedisDB(t)
	if db == 0 {
		t.Fatalf("RedisDB handed out database 0, where claims live")
	}
	c := redisClient(t, addr, db)
	if err := c.Set(ctx, "device:1", "online", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	got, err := c.Get(ctx, "device:1").Result()
	if err != nil || got != "online" {
		t.Fatalf("get = %q, %v; want online", got, err)
	}

	// Another test's database is separate and starts empty.
	addr2, db2 := testenv.RedisDB(t)
	if db2 == db {
		t.Fatalf("two RedisDB calls both got database %d", db)
	}
	if n, err := redisClient(t, addr2, db2).Exists(ctx, "device:1").Result(); err != nil || n != 0 {
		t.Fatalf("key visible in database %d: exists = %d, %v", db2, n, err)
	}
}

func TestRedisDBFlushedAtCleanup(t *testing.T) {
	ctx := ctxT(t)
	var addr string
	var db int
	t.Run("writer", func(t *testing.T) {
		addr, db = testenv.RedisDB(t)
		if err := redisClient(t, addr, db).Set(ctx, "left", "over", 0).Err(); err != nil {
			t.Fatalf("set: %v", err)
		}
	})
	n, err := redisClient(t, addr, db).DBSize(ctx).Result()
	if err != nil || n != 0 {
		t.Fatalf("database %d after its test ended: %d keys, %v; want empty", db, n, err)
	}
	claimed, err := redisClient(t, addr, 0).Exists(ctx, "fleetacs:testenv:db:"+strconv.Itoa(db)).Result()
	if err != nil || claimed != 0 {
		t.Fatalf("database %d still claimed after its test ended: %d, %v", db, claimed, err)
	}
}

func TestRedisEnvVar(t *testing.T) {
	ctx := ctxT(t)
	private := testenv.RedisAddr(t)
	_, port, _ := net.SplitHostPort(private)
	// Another spelling of the same server shows that the variable is read on
	// every call, not frozen by the first start.
	alias := net.JoinHostPort("localhost", port)
	t.Setenv(testenv.EnvRedisAddr, alias)
	if got := testenv.RedisAddr(t); got != alias {
		t.Fatalf("RedisAddr with %s=%s = %s", testenv.EnvRedisAddr, alias, got)
	}
	addr, db := testenv.RedisDB(t)
	if addr != alias {
		t.Fatalf("RedisDB addr = %s, want %s", addr, alias)
	}
	c := redisClient(t, addr, db)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set through %s: %v", addr, err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("get = %q, %v", got, err)
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends the
// goroutine, as the real one does, so that failures can be tested.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalOf runs fn with a fatalRecorder and returns what it failed with.
func fatalOf(t *testing.T, fn func(tb testing.TB)) string {
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(rec)
	}()
	<-done
	return rec.msg
}

func TestRedisEnvVarUnreachable(t *testing.T) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	t.Setenv(testenv.EnvRedisAddr, addr)
	msg := fatalOf(t, func(tb testing.TB) { testenv.RedisAddr(tb) })
	if !strings.Contains(msg, "ping redis at "+addr) {
		t.Fatalf("RedisAddr with nothing at %s failed with %q; want a ping error naming the address", addr, msg)
	}
}

func TestNATSJetStream(t *testing.T) {
	natsRoundTrip(t, testenv.NATS(t))
}

func TestNATSEnvVar(t *testing.T) {
	_, port, _ := strings.Cut(strings.TrimPrefix(testenv.NATS(t), "nats://"), ":")
	alias := "nats://localhost:" + port
	t.Setenv(testenv.EnvNATSURL, alias)
	if got := testenv.NATS(t); got != alias {
		t.Fatalf("NATS with %s=%s = %s", testenv.EnvNATSURL, alias, got)
	}
	natsRoundTrip(t, alias)
}

// natsRoundTrip publishes to a stream and consumes the message back.
func natsRoundTrip(t *testing.T, url string) {
	ctx := ctxT(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	name := testenv.UniqueName(t)
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}})
	if err != nil {
		t.Fatalf("create stream: %v", err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
	if _, err := js.Publish(ctx, name+".device1", []byte("reboot")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "worker", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("create consumer: %v", err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	var got []string
	for msg := range batch.Messages() {
		got = append(got, msg.Subject()+"="+string(msg.Data()))
		if err := msg.DoubleAck(ctx); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}
	if err := batch.Error(); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if want := []string{name + ".device1=reboot"}; !slices.Equal(got, want) {
		t.Fatalf("consumed %q, want %q", got, want)
	}
}

func mongoClient(t *testing.T, uri string) *mongo.Client {
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatalf("connect %s: %v", uri, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

type device struct {
	ID     string `bson:"_id"`
	Serial string `bson:"serial"`
	Tags   []string
}

func TestMongoRoundTrip(t *testing.T) {
	start := time.Now()
	uri := testenv.MongoURI(t)
	t.Logf("MongoURI ready after %s (includes start-up if this test came first)", time.Since(start))
	mongoRoundTrip(t, uri, testenv.MongoDatabase(t))
}

// mongoRoundTrip inserts, finds and checks that a unique index is enforced.
func mongoRoundTrip(t *testing.T, uri, db string) {
	ctx := ctxT(t)
	coll := mongoClient(t, uri).Database(db).Collection("devices")
	if _, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys:    bson.D{{Key: "serial", Value: 1}},
		Options: options.Index().SetUnique(true),
	}); err != nil {
		t.Fatalf("create index: %v", err)
	}
	want := device{ID: "00D09E-IGD-1", Serial: "SN1", Tags: []string{"lab"}}
	if _, err := coll.InsertOne(ctx, want); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var got device
	if err := coll.FindOne(ctx, bson.D{{Key: "serial", Value: "SN1"}}).Decode(&got); err != nil {
		t.Fatalf("find: %v", err)
	}
	if got.ID != want.ID || !slices.Equal(got.Tags, want.Tags) {
		t.Fatalf("found %+v, want %+v", got, want)
	}
	_, err := coll.InsertOne(ctx, device{ID: "00D09E-IGD-2", Serial: "SN1"})
	if !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("second insert with the same serial: err = %v, want a duplicate key error", err)
	}
}

func TestMongoDatabaseDroppedAtCleanup(t *testing.T) {
	ctx := ctxT(t)
	uri := testenv.MongoURI(t)
	var db string
	t.Run("user", func(t *testing.T) {
		db = testenv.MongoDatabase(t)
		if _, err := mongoClient(t, uri).Database(db).Collection("c").InsertOne(ctx, bson.D{{Key: "x", Value: 1}}); err != nil {
			t.Fatalf("insert: %v", err)
		}
	})
	names, err := mongoClient(t, uri).ListDatabaseNames(ctx, bson.D{})
	if err != nil {
		t.Fatalf("list databases: %v", err)
	}
	if slices.Contains(names, db) {
		t.Fatalf("database %s still exists after its test ended", db)
	}
}

func TestMongoEnvVar(t *testing.T) {
	private := testenv.MongoURI(t)
	alias := strings.Replace(private, "127.0.0.1", "localhost", 1)
	t.Setenv(testenv.EnvMongoURI, alias)
	if got := testenv.MongoURI(t); got != alias {
		t.Fatalf("MongoURI with %s=%s = %s", testenv.EnvMongoURI, alias, got)
	}
	mongoRoundTrip(t, alias, testenv.MongoDatabase(t))
}

// TestConcurrentUse has tests share the servers at once, as parallel tests
// and -race will.
func TestConcurrentUse(t *testing.T) {
	var mu sync.Mutex
	dbs := map[int]bool{}
	names := map[string]bool{}
	for i := range 6 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			addr, db := testenv.RedisDB(t)
			name := testenv.MongoDatabase(t)
			mu.Lock()
			if dbs[db] || names[name] {
				mu.Unlock()
				t.Fatalf("database %d or %s handed out twice", db, name)
			}
			dbs[db], names[name] = true, true
			mu.Unlock()
			if err := redisClient(t, addr, db).Set(ctx, "i", i, 0).Err(); err != nil {
				t.Fatalf("redis set: %v", err)
			}
			coll := mongoClient(t, testenv.MongoURI(t)).Database(name).Collection("c")
			if _, err := coll.InsertOne(ctx, bson.D{{Key: "i", Value: i}}); err != nil {
				t.Fatalf("mongo insert: %v", err)
			}
			if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
				t.Fatalf("mongo count = %d, %v; want 1 (another test's writes leaked in?)", n, err)
			}
			if n, err := redisClient(t, addr, db).DBSize(ctx).Result(); err != nil || n != 1 {
				t.Fatalf("redis dbsize = %d, %v; want 1", n, err)
			}
		})
	}
}

func TestFreePort(t *testing.T) {
	p := testenv.FreePort(t)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatalf("listen on the free port %d: %v", p, err)
	}
	_ = l.Close()
}

// FreePort never hands out a port twice: a test that takes the ports of
// many servers before starting them gets distinct ones. 2,000 draws from
// its range of about 22,000 ports would repeat one almost surely.
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 2000 {
		p := testenv.FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}

func TestWaitFor(t *testing.T) {
	calls := 0
	testenv.WaitFor(t, 10*time.Second, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3", calls)
	}

	msg := fatalOf(t, func(tb testing.TB) {
		testenv.WaitFor(tb, 20*time.Millisecond, func() error { return errors.New("never") })
	})
	if !strings.Contains(msg, "never") {
		t.Fatalf("WaitFor timeout failed with %q; want the condition's last error", msg)
	}
}

func TestUniqueName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9_]{1,50}$`)
	a, b := testenv.UniqueName(t), testenv.UniqueName(t)
	if a == b {
		t.Fatalf("UniqueName returned %s twice", a)
	}
	t.Run("A very long Subtest name / with.odd*chars>and more than enough", func(t *testing.T) {
		for _, n := range []string{a, testenv.UniqueName(t)} {
			if !valid.MatchString(n) {
				t.Fatalf("UniqueName = %q, not [a-z0-9_]{1,50}", n)
			}
		}
	})
}

// crashChildEnv makes TestServersDieWithBinary, run again in a child test
// binary, start the servers, print their PIDs and kill its own process.
const crashChildEnv = "FLEETACS_TESTENV_CRASH_CHILD"

// crashChild is the child's side: no cleanup of any kind, as if it crashed.
func crashChild(t *testing.T) {
	testenv.RedisAddr(t)
	testenv.MongoURI(t)
	fmt.Printf("CHILDREN %s\n", strings.Trim(fmt.Sprint(childPIDs(os.Getpid())), "[]"))
	_ = os.Stdout.Sync()
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// childPIDs lists the processes whose parent is ppid.
func childPIDs(ppid int) []int {
	var pids []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces.
		_, rest, ok := bytes.Cut(b, []byte(") "))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(s)))
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive tells whether pid runs; a zombie waiting for a reaper does not.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := bytes.Cut(b, []byte(") "))
	return !bytes.HasPrefix(rest, []byte("Z")) && !bytes.HasPrefix(rest, []byte("X"))
}

func TestServersDieWithBinary(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		crashChild(t)
	}
	if runtime.GOOS != "linux" {
		t.Fatalf("the parent-death signal is Linux-only; this project's tests run on Linux")
	}
	// A base directory of its own, so that no other test binary sweeps the
	// child's directory before we look at it; searchable, for PostgreSQL's
	// user.
	tmp, err := os.MkdirTemp(testenv.BaseDir(), "testenv-crash-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o711); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServersDieWithBinary$")
	cmd.Env = append(os.Environ(), crashChildEnv+"=1", testenv.EnvTmpDir+"="+tmp,
		testenv.EnvRedisAddr+"=", testenv.EnvMongoURI+"=")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("crash child: %v, want killed by SIGKILL; output:\n%s", err, out)
	}
	var pids []int
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "CHILDREN "); ok {
			for _, f := range strings.Fields(rest) {
				pid, _ := strconv.Atoi(f)
				pids = append(pids, pid)
			}
		}
	}
	// redis-server, postgres, ferretdb.
	if len(pids) < 3 {
		t.Fatalf("crash child reported %d server processes, want 3; output:\n%s", len(pids), out)
	}
	testenv.WaitFor(t, 20*time.Second, func() error {
		for _, pid := range pids {
			if alive(pid) {
				return fmt.Errorf("server process %d outlived its test binary", pid)
			}
		}
		return nil
	})

	// The child's directory is left behind; the next binary to start a
	// server removes it.
	stale, _ := filepath.Glob(filepath.Join(tmp, fmt.Sprintf("fleetacs-testenv-%d-*", cmd.Process.Pid)))
	if len(stale) != 1 {
		t.Fatalf("crash child left %d directories %q, want 1", len(stale), stale)
	}
	testenv.SweepStale(tmp)
	if _, err := os.Stat(stale[0]); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("sweep left %s of a dead binary: %v", stale[0], err)
	}
}
