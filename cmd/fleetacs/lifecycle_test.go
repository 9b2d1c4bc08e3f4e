package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	_ "modernc.org/sqlite" // the test locks the inventory database

	"github.com/redis/go-redis/v9"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// syncBuffer is a bytes.Buffer that run may write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// process is `fleetacs` run in this test process.
type process struct {
	stdout, stderr syncBuffer
	cancel         context.CancelFunc
	exited         chan int
}

func startProcess(t testing.TB, args ...string) *process {
	t.Helper()
	// The sessions a test leaves open do not hold up its end.
	// The HTTP API on any free port unless a test names one: the default
	// :9380 is shared by every test process on the machine; so would the
	// STUN server's :3478 be.
	args = append([]string{"-gateway.drain-grace=0s", "-sessions.drain-timeout=1ms", "-server.api-http-addr=127.0.0.1:0", "-notifier.stun-addr=127.0.0.1:0"}, args...)
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{cancel: cancel, exited: make(chan int, 1)}
	go func() { p.exited <- run(ctx, args, &p.stdout, &p.stderr, noEnv) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.exited:
		case <-time.After(60 * time.Second):
			t.Error("fleetacs did not stop")
		}
	})
	return p
}

// alive fails the test when the process has exited.
func (p *process) alive(t testing.TB) {
	t.Helper()
	select {
	case code := <-p.exited:
		t.Fatalf("fleetacs exited with %d:\n%s", code, p.stderr.String())
	default:
	}
}

// postInform sends one Inform as a new session and returns the HTTP status
// and the decoded answer.
func postInform(t *testing.T, url, serial string) (int, *cwmp.Envelope) {
	t.Helper()
	body, err := cwmp.Encode(&cwmp.Envelope{Namespace: cwmp.NS1_0, Header: cwmp.Header{ID: "1", HasID: true}, Body: &cwmp.Inform{
		DeviceID:     cwmp.DeviceID{Manufacturer: "Acme", OUI: "00D09E", ProductClass: "Router", SerialNumber: serial},
		Events:       []cwmp.Event{{Code: "1 BOOT"}},
		MaxEnvelopes: 1,
		CurrentTime:  "2026-03-01T12:00:00Z",
		ParameterList: []cwmp.ParameterValue{
			{Name: "Device.ManagementServer.ConnectionRequestURL", Value: "http://192.0.2.1:7547/cr", Type: "xsd:string"},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "text/xml; charset=utf-8", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("post Inform: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return resp.StatusCode, nil
	}
	env, err := cwmp.Decode(b)
	if err != nil {
		t.Fatalf("decode answer %q: %v", b, err)
	}
	return resp.StatusCode, env
}

func grpcHealth(t *testing.T, addr, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("gRPC health of %q at %s: %v", service, addr, err)
	}
	return resp.GetStatus()
}

var (
	bannerACS      = regexp.MustCompile(`ACS URL for CPEs \(ManagementServer\.URL\): (http://\S+)`)
	bannerHealth   = regexp.MustCompile(`Health: (http://\S+/readyz)`)
	bannerFleetctl = regexp.MustCompile(`fleetctl -addr (\S+) devices list`)
)

// Every listener on port 0: the banner comes once they are bound and tells
// the addresses really bound, which answer: the CWMP URL, the probes and
// the gRPC address in the fleetctl command line.
func TestBannerTellsBoundAddresses(t *testing.T) {
	dataDir := t.TempDir()
	p := startProcess(t, "-log.level=warn", "-data-dir="+dataDir, "-gateway.auth-anonymous",
		"-gateway.listen-addr=127.0.0.1:0", "-server.http-addr=127.0.0.1:0", "-server.grpc-addr=127.0.0.1:0", "-server.internal-grpc-addr=127.0.0.1:0", "all")
	var banner string
	testenv.WaitFor(t, 30*time.Second, func() error {
		p.alive(t)
		banner = p.stdout.String()
		if !strings.Contains(banner, "fleetctl") {
			return fmt.Errorf("no banner yet")
		}
		return nil
	})
	match := func(re *regexp.Regexp) string {
		m := re.FindStringSubmatch(banner)
		if m == nil {
			t.Fatalf("banner lacks %s:\n%s", re, banner)
		}
		if strings.HasSuffix(strings.TrimSuffix(m[1], "/readyz"), ":0") || strings.Contains(m[1], ":0/") {
			t.Fatalf("banner tells port 0, not the bound port:\n%s", banner)
		}
		return m[1]
	}
	acs, health, grpcAddr := match(bannerACS), match(bannerHealth), match(bannerFleetctl)
	// The data directory is no ./data of the working directory: fleetctl
	// would not find the admin token there by itself.
	if !strings.Contains(banner, "fleetctl does not find it by itself: export FLEETACS_TOKEN=$(cat "+filepath.Join(dataDir, "admin.token")+")") {
		t.Errorf("banner misleads about how fleetctl finds the admin token:\n%s", banner)
	}

	// Printed once everything has started: ready at once.
	if err := httpReady(health); err != nil {
		t.Fatalf("banner printed before the process is ready: %v", err)
	}
	if st := grpcHealth(t, grpcAddr, ""); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health at the banner's address: %s", st)
	}
	for _, svc := range []string{"fleetacs.inventory.v1.InventoryService", "fleetacs.sessions.v1.SessionService", "fleetacs.gateway"} {
		if st := grpcHealth(t, grpcAddr, svc); st != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("gRPC health of %s: %s", svc, st)
		}
	}
	code, env := postInform(t, acs, "BANNER1")
	if code != http.StatusOK || env == nil {
		t.Fatalf("Inform at the banner's URL: HTTP %d", code)
	}
	if _, ok := env.Body.(*cwmp.InformResponse); !ok {
		t.Fatalf("Inform answered with %T", env.Body)
	}
}

func TestAdminTokenHint(t *testing.T) {
	for _, tc := range []struct{ cwd, dataDir, token, want string }{
		{"/srv/acs", "data", "data/admin.token", "fleetctl run from this directory uses it; elsewhere: export FLEETACS_TOKEN=$(cat $PWD/data/admin.token)"},
		{"/srv/acs", "/srv/acs/data", "/srv/acs/data/admin.token", "fleetctl run from this directory uses it; elsewhere: export FLEETACS_TOKEN=$(cat /srv/acs/data/admin.token)"},
		{"/home/op", "/srv/acs/data", "/srv/acs/data/admin.token", "fleetctl run from /srv/acs uses it; elsewhere: export FLEETACS_TOKEN=$(cat /srv/acs/data/admin.token)"},
		{"/srv/acs", "/var/lib/fleetacs", "/var/lib/fleetacs/admin.token", "fleetctl does not find it by itself: export FLEETACS_TOKEN=$(cat /var/lib/fleetacs/admin.token)"},
		{"/srv/acs", "/srv/acs/data", "/etc/fleetacs/admin.token", "fleetctl does not find it by itself: export FLEETACS_TOKEN=$(cat /etc/fleetacs/admin.token)"},
	} {
		if tc.cwd == "/srv/acs" && !filepath.IsAbs(tc.dataDir) {
			// Relative paths resolve against the test's own directory.
			wd, _ := os.Getwd()
			tc.cwd = wd
			tc.want = strings.ReplaceAll(tc.want, "$PWD", wd)
		}
		if got := adminTokenHint(tc.cwd, tc.dataDir, tc.token); got != tc.want {
			t.Errorf("adminTokenHint(%q, %q, %q) = %q, want %q", tc.cwd, tc.dataDir, tc.token, got, tc.want)
		}
	}
}

// A port already taken ends the start with one line naming the flag and
// the address, and no banner.
func TestPortClashIsOneClearError(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().String()
	for _, flag := range []string{"gateway.listen-addr", "server.http-addr", "server.grpc-addr", "server.internal-grpc-addr", "server.api-http-addr"} {
		t.Run(flag, func(t *testing.T) {
			addrs := map[string]string{"gateway.listen-addr": "127.0.0.1:0", "server.http-addr": "127.0.0.1:0",
				"server.grpc-addr": "127.0.0.1:0", "server.internal-grpc-addr": "127.0.0.1:0", "server.api-http-addr": "127.0.0.1:0"}
			addrs[flag] = busy
			args := []string{"-log.level=error", "-data-dir=" + t.TempDir(), "-gateway.auth-anonymous", "-notifier.stun-addr=127.0.0.1:0"}
			for f, a := range addrs {
				args = append(args, "-"+f+"="+a)
			}
			var out, errb syncBuffer
			if code := run(context.Background(), append(args, "all"), &out, &errb, noEnv); code != 1 {
				t.Fatalf("exit %d, want 1", code)
			}
			lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
			last := lines[len(lines)-1]
			want := fmt.Sprintf("listen on %s (-%s): address already in use", busy, flag)
			if !strings.HasPrefix(last, "fleetacs: start ") || !strings.HasSuffix(last, want) {
				t.Fatalf("last line of stderr %q, want \"fleetacs: start <module>: %s\"; stderr:\n%s", last, want, errb.String())
			}
			if strings.Count(errb.String(), "\n") > 3 {
				t.Errorf("more than the error (and its log line) on stderr:\n%s", errb.String())
			}
			if s := out.String(); s != "" {
				t.Errorf("banner printed for a process that did not start:\n%s", s)
			}
		})
	}
}

// The CWMP listener opens only once the session path behind it is ready:
// while the inventory store cannot start (its database locked by another
// process), CPEs cannot connect; the first Inform once it opens is
// answered, not faulted (issue 8 item 10: fault 8005 right after start).
func TestCWMPOpensWhenSessionPathReady(t *testing.T) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "inventory.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	lock, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{"CREATE TABLE held (x)", "BEGIN EXCLUSIVE", "INSERT INTO held VALUES (1)"} {
		if _, err := lock.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}

	gw, adm := testenv.FreePort(t), testenv.FreePort(t)
	p := startProcess(t, "-log.level=warn", "-data-dir="+dir, "-gateway.auth-anonymous",
		fmt.Sprintf("-gateway.listen-addr=127.0.0.1:%d", gw), fmt.Sprintf("-server.http-addr=127.0.0.1:%d", adm),
		"-server.grpc-addr=127.0.0.1:0", "-server.internal-grpc-addr=127.0.0.1:0", "all")
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", adm)

	// The admin server answers from the start and says what is not ready.
	var body string
	testenv.WaitFor(t, 30*time.Second, func() error {
		p.alive(t)
		resp, err := http.Get(readyz)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "inventory") {
			return fmt.Errorf("readyz %d %q", resp.StatusCode, body)
		}
		// The parts before the inventory have started.
		if strings.Contains(body, "grpc-server") {
			return fmt.Errorf("grpc-server not started yet: %q", body)
		}
		return nil
	})
	for _, part := range []string{"gateway", "sessions"} {
		if !strings.Contains(body, part) {
			t.Errorf("readyz %q: %s ready while the inventory store cannot start", body, part)
		}
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", gw), time.Second); err == nil {
		c.Close()
		t.Fatal("the CWMP listener accepts connections while the inventory store cannot start")
	}

	if _, err := lock.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := lock.Close(); err != nil {
		t.Fatal(err)
	}
	acs := fmt.Sprintf("http://127.0.0.1:%d/", gw)
	testenv.WaitFor(t, 30*time.Second, func() error {
		p.alive(t)
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", gw))
		if err != nil {
			return err
		}
		return c.Close()
	})
	code, env := postInform(t, acs, "FIRST1")
	if code != http.StatusOK || env == nil {
		t.Fatalf("first Inform: HTTP %d", code)
	}
	if f, ok := env.Body.(*cwmp.Fault); ok {
		t.Fatalf("first Inform answered with a fault: %+v", f)
	}
	if _, ok := env.Body.(*cwmp.InformResponse); !ok {
		t.Fatalf("first Inform answered with %T", env.Body)
	}
}

// regexpFind returns the first submatch of re in s, or "".
func regexpFind(re, s string) string {
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		return ""
	}
	return m[1]
}

// A session worker whose inventory runs in another process starts, and
// registers where gateways find it, only once that inventory serves; until
// then its readiness says what it waits for (issue 8 item 10, across
// processes: gateways answer 503 with Retry-After while no worker is
// registered, rather than sessions getting fault 8005).
func TestWorkerWaitsForRemoteInventory(t *testing.T) {
	redisAddr, redisDB := testenv.RedisDB(t)
	prefix := testenv.UniqueName(t)
	inv, adm := testenv.FreePort(t), testenv.FreePort(t)
	invAddr := fmt.Sprintf("127.0.0.1:%d", inv)
	// The two processes share the internal credential (docs/security.md).
	token := filepath.Join(t.TempDir(), "internal.token")
	if err := secretbox.WriteFileExclusive(token, []byte("lifecycle-internal-token-0123456789abcdef\n")); err != nil {
		t.Fatal(err)
	}
	w := startProcess(t, "-log.level=error", "-internal.token-file="+token,
		"-redis.addr="+redisAddr, fmt.Sprintf("-redis.db=%d", redisDB), "-redis.prefix="+prefix,
		fmt.Sprintf("-server.http-addr=127.0.0.1:%d", adm), "-server.internal-grpc-addr=127.0.0.1:0",
		"-client.inventory-addr="+invAddr, "-sessions.worker-id=w1", "sessions")
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", adm)

	rc := redis.NewClient(&redis.Options{Addr: redisAddr, DB: redisDB})
	defer rc.Close()
	registry := affinity.NewRedis(rc, prefix, nil).Store().Registry
	live := func() []affinity.Worker {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ws, err := registry.Live(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ws
	}

	// Redis answers, the inventory does not: the worker waits, not ready
	// and not registered.
	testenv.WaitFor(t, 30*time.Second, func() error {
		w.alive(t)
		resp, err := http.Get(readyz)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(string(b), "affinity") || !strings.Contains(string(b), "inventory-client") {
			return fmt.Errorf("readyz %d %q", resp.StatusCode, b)
		}
		return nil
	})
	if ws := live(); len(ws) != 0 {
		t.Fatalf("worker registered while its inventory is unreachable: %v", ws)
	}

	startProcess(t, "-log.level=error", "-data-dir="+t.TempDir(), "-internal.token-file="+token,
		"-server.internal-grpc-addr="+invAddr, "-server.grpc-addr=127.0.0.1:0", "-server.http-addr=127.0.0.1:0", "inventory")
	testenv.WaitFor(t, 60*time.Second, func() error {
		w.alive(t)
		if err := httpReady(readyz); err != nil {
			return err
		}
		if ws := live(); len(ws) != 1 || ws[0].ID != "w1" {
			return fmt.Errorf("registry: %v", ws)
		}
		return nil
	})
}
