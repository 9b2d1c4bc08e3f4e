package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
)

// ferretPoolMaxConns is FerretDB's PostgreSQL pool size. At FerretDB's
// default (50) it deadlocked under concurrent load here; 150 worked
// (docs/design.md §7). PostgreSQL's max_connections leaves room above it.
const ferretPoolMaxConns = 150

var mongoServer struct {
	once sync.Once
	uri  string
	err  error
}

// MongoURI returns the URI of a MongoDB-wire server: $FLEETACS_TEST_MONGODB_URI
// (a real MongoDB) when set, else FerretDB v1.24.2 from <repo>/bin/ferretdb
// on a private PostgreSQL cluster, both started by this test binary. The
// server is shared by every test in the binary; use MongoDatabase for a
// database of the test's own.
//
// FerretDB is a functional stand-in, not a performance one: it rejects TTL
// index options and arrays nested directly in arrays (docs/design.md §7), and is
// slow; benchmark against a real MongoDB.
func MongoURI(t testing.TB) string {
	t.Helper()
	requireMain(t)
	if uri := os.Getenv(EnvMongoURI); uri != "" {
		return uri
	}
	mongoServer.once.Do(func() { mongoServer.uri, mongoServer.err = startMongo() })
	if mongoServer.err != nil {
		t.Fatalf("testenv: %v", mongoServer.err)
	}
	return mongoServer.uri
}

// MongoDatabase returns the name of a database that no other test uses, on
// the server MongoURI returns. The database is dropped when the test ends.
func MongoDatabase(t testing.TB) string {
	t.Helper()
	uri := MongoURI(t)
	c, err := mongoAdmin(uri)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	name := UniqueName(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Database(name).Drop(ctx); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	return name
}

var mongoAdmins struct {
	mu sync.Mutex // leaf lock
	m  map[string]*mongo.Client
}

// mongoAdmin returns testenv's own client for uri (to drop databases),
// connecting and pinging on first use.
func mongoAdmin(uri string) (*mongo.Client, error) {
	mongoAdmins.mu.Lock()
	defer mongoAdmins.mu.Unlock()
	if c, ok := mongoAdmins.m[uri]; ok {
		return c, nil
	}
	c, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(10 * time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to mongodb at %s: %w", redactURI(uri), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := c.Ping(ctx, readpref.Primary()); err != nil {
		_ = c.Disconnect(ctx)
		return nil, fmt.Errorf("ping mongodb at %s: %w", redactURI(uri), err)
	}
	if mongoAdmins.m == nil {
		mongoAdmins.m = map[string]*mongo.Client{}
	}
	mongoAdmins.m[uri] = c
	onStop(func() {
		mongoAdmins.mu.Lock()
		delete(mongoAdmins.m, uri)
		mongoAdmins.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Disconnect(ctx)
	})
	return c, nil
}

// redactURI hides a password in uri for messages.
func redactURI(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "(unparsable URI)"
	}
	return u.Redacted()
}

func startMongo() (string, error) {
	// Look for FerretDB before spending seconds on PostgreSQL.
	ferret, err := ferretDBBinary()
	if err != nil {
		return "", err
	}
	root, err := tempRoot()
	if err != nil {
		return "", fmt.Errorf("start mongodb stand-in: %w", err)
	}
	pg, err := startPostgres(filepath.Join(root, "pg"))
	if err != nil {
		return "", err
	}
	return startFerretDB(ferret, filepath.Join(root, "ferretdb"), pg)
}

func ferretDBBinary() (string, error) {
	bin := os.Getenv(EnvFerretDB)
	if bin == "" {
		root, err := repoRoot()
		if err != nil {
			return "", fmt.Errorf("find ferretdb: %w", err)
		}
		bin = filepath.Join(root, "bin", "ferretdb")
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("start ferretdb: no executable %s: %s", bin, installHint)
	}
	return bin, nil
}

// pgCluster is a running private PostgreSQL server.
type pgCluster struct {
	port    int
	sockDir string
}

// postgresBinDir returns the directory of the newest PostgreSQL server that
// has both initdb and postgres: Debian's /usr/lib/postgresql/<major>/bin,
// else wherever initdb is on PATH.
func postgresBinDir() (string, error) {
	complete := func(dir string) bool {
		for _, b := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	major := func(dir string) int {
		n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		return n
	}
	slices.SortFunc(dirs, func(a, b string) int { return major(b) - major(a) })
	for _, d := range dirs {
		if complete(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && complete(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
	}
	return "", fmt.Errorf("start postgresql: no initdb and postgres in /usr/lib/postgresql/*/bin or PATH: %s", installHint)
}

// postgresCredential returns the user to run PostgreSQL as: nil (ourselves)
// unless we are root, which PostgreSQL refuses to run as.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("start postgresql: running as root, which PostgreSQL refuses, and no postgres user to run it as (%w): %s", err, installHint)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("start postgresql: user postgres has non-numeric uid %q or gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// startPostgres creates a throwaway cluster in dir and runs it on 127.0.0.1
// and a unix socket in dir, tuned for tests: durability off, room for
// FerretDB's pool.
func startPostgres(dir string) (*pgCluster, error) {
	binDir, err := postgresBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	sock := filepath.Join(dir, "sock")
	for _, d := range []string{dir, sock} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("start postgresql: %w", err)
		}
		if cred != nil {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, fmt.Errorf("start postgresql: %w", err)
			}
		}
	}
	env := childEnv("PG", "LC_", "LANG")
	if err := initCluster(binDir, dir, data, cred, env); err != nil {
		return nil, err
	}

	port, err := startOnFreePort("postgresql", func(port int) (*proc, error) {
		p, err := startProc(procSpec{
			name: "postgres",
			bin:  filepath.Join(binDir, "postgres"),
			args: []string{
				"-D", data,
				"-p", strconv.Itoa(port),
				"-c", "listen_addresses=127.0.0.1",
				"-c", "unix_socket_directories=" + sock,
				"-c", "max_connections=300",
				"-c", "shared_buffers=32MB",
				"-c", "fsync=off",
				"-c", "synchronous_commit=off",
				"-c", "full_page_writes=off",
			},
			dir:  dir,
			log:  filepath.Join(dir, "postgres.log"),
			cred: cred,
			env:  env,
		})
		if err != nil {
			return nil, fmt.Errorf("start postgresql: %w", err)
		}
		// The postmaster writes "ready" into line 8 of postmaster.pid once
		// it accepts connections (what pg_ctl -w waits for); no client
		// library needed.
		err = poll(60*time.Second, p.done, func() error {
			b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
			if err != nil {
				return err
			}
			lines := strings.Split(string(b), "\n")
			if len(lines) < 8 || strings.TrimSpace(lines[7]) != "ready" {
				return fmt.Errorf("postmaster.pid does not say ready yet")
			}
			return nil
		})
		if err != nil {
			p.stop(syscall.SIGKILL, 0)
			return p, fmt.Errorf("start postgresql: %w; output:\n%s", err, p.logTail())
		}
		// SIGINT is PostgreSQL's fast shutdown: it does not wait for
		// clients to disconnect.
		onStop(func() { p.stop(syscall.SIGINT, 15*time.Second) })
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return &pgCluster{port: port, sockDir: sock}, nil
}

// initdbArgs are initdb's options apart from the data directory; they are
// part of the template's key. 1 MB WAL segments instead of 16 leave a third
// less to write.
var initdbArgs = []string{
	"--username=postgres", "--auth=trust",
	"--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions",
	"--wal-segsize=1",
}

// initCluster fills data with a new cluster. initdb takes seconds, the
// largest part of the stand-in's start-up, so the first test binary keeps its
// result as a template beside the server directories (fleetacs-pgtemplate-*,
// about 30 MB, never removed) and later binaries copy it (cp -a keeps the
// postgres user's ownership).
func initCluster(binDir, dir, data string, cred *syscall.Credential, env []string) error {
	tmpl := pgTemplatePath(filepath.Dir(filepath.Dir(dir)), binDir, cred)
	if tmpl != "" {
		if _, err := os.Stat(filepath.Join(tmpl, "PG_VERSION")); err == nil {
			if err := copyTree(tmpl, data); err == nil {
				return nil
			}
			// A broken template: fall back to initdb.
			_ = os.RemoveAll(data)
		}
	}
	initdb, err := startProc(procSpec{
		name: "initdb",
		bin:  filepath.Join(binDir, "initdb"),
		args: append([]string{"--pgdata=" + data}, initdbArgs...),
		dir:  dir,
		log:  filepath.Join(dir, "initdb.log"),
		cred: cred,
		env:  env,
	})
	if err != nil {
		return fmt.Errorf("start postgresql: %w", err)
	}
	if err := initdb.wait(2 * time.Minute); err != nil {
		if cred != nil {
			err = fmt.Errorf("%w\n(it runs as user postgres: every directory above %s must be searchable by that user; %s chooses where)", err, dir, EnvTmpDir)
		}
		return fmt.Errorf("start postgresql: %w", err)
	}
	if tmpl != "" {
		saveTemplate(data, tmpl)
	}
	return nil
}

// pgTemplatePath names the template cluster in base for this PostgreSQL
// build, these initdb options and this owner.
func pgTemplatePath(base, binDir string, cred *syscall.Credential) string {
	fi, err := os.Stat(filepath.Join(binDir, "initdb"))
	if err != nil {
		return ""
	}
	owner := os.Geteuid()
	if cred != nil {
		owner = int(cred.Uid)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%d\n%d\n%d\n%s", binDir, fi.Size(), fi.ModTime().UnixNano(), owner, strings.Join(initdbArgs, "\x00"))
	return filepath.Join(base, "fleetacs-pgtemplate-"+hex.EncodeToString(h.Sum(nil))[:16])
}

// saveTemplate copies a fresh cluster to tmpl, best effort: a binary that
// cannot save one just runs initdb next time. The rename makes a template
// appear whole or not at all, and the first of several racing binaries wins.
func saveTemplate(data, tmpl string) {
	tmp := fmt.Sprintf("%s.tmp-%d-%d", tmpl, os.Getpid(), time.Now().UnixNano())
	if err := copyTree(data, tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return
	}
	if err := os.Rename(tmp, tmpl); err != nil {
		_ = os.RemoveAll(tmp)
	}
}

// copyTree copies the directory src to dst (which must not exist) with
// owners, modes and times.
func copyTree(src, dst string) error {
	out, err := exec.Command("cp", "-a", src, dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w: %s", src, dst, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// startFerretDB runs FerretDB on the PostgreSQL cluster, with its state and
// log in dir, and returns its MongoDB URI once it answers a ping.
func startFerretDB(bin, dir string, pg *pgCluster) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("start ferretdb: %w", err)
	}
	// Over the unix socket: cheaper than TCP for FerretDB's many queries.
	pgURL := (&url.URL{
		Scheme: "postgres",
		User:   url.User("postgres"),
		Path:   "/postgres",
		RawQuery: url.Values{
			"host":           {pg.sockDir},
			"port":           {strconv.Itoa(pg.port)},
			"pool_max_conns": {strconv.Itoa(ferretPoolMaxConns)},
		}.Encode(),
	}).String()
	var uri string
	_, err := startOnFreePort("ferretdb", func(port int) (*proc, error) {
		listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p, err := startProc(procSpec{
			name: "ferretdb",
			bin:  bin,
			args: []string{
				"--handler=postgresql",
				"--postgresql-url=" + pgURL,
				"--listen-addr=" + listen,
				"--state-dir=" + dir,
				// Its default debug address is a fixed port that parallel
				// test binaries would fight over.
				"--debug-addr=-",
				"--telemetry=disable",
				"--log-level=warn",
				"--log-format=text",
			},
			dir: dir,
			log: filepath.Join(dir, "ferretdb.log"),
			// Its FERRETDB_* variables would override what we did not pass.
			env: childEnv("FERRETDB_"),
		})
		if err != nil {
			return nil, fmt.Errorf("start ferretdb: %w", err)
		}
		uri = "mongodb://" + listen + "/"
		c, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(time.Second))
		if err != nil {
			p.stop(syscall.SIGKILL, 0)
			return p, fmt.Errorf("start ferretdb: %w", err)
		}
		defer func() { _ = c.Disconnect(context.Background()) }()
		err = poll(60*time.Second, p.done, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return c.Ping(ctx, readpref.Primary())
		})
		if err != nil {
			p.stop(syscall.SIGKILL, 0)
			return p, fmt.Errorf("start ferretdb: %w; output:\n%s", err, p.logTail())
		}
		onStop(func() { p.stop(syscall.SIGTERM, 10*time.Second) })
		return p, nil
	})
	if err != nil {
		return "", err
	}
	return uri, nil
}
