package check

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// TestComposeRuns runs docker-compose.yml's FleetACS services as processes
// on loopback, as compose would run them but without containers: each with
// the command line and environment the file gives it, the secrets that
// secrets-init's own script makes, started once the services it depends on
// pass the health check the file names (itself run as written, `fleetacs
// healthcheck`). MongoDB, Redis and NATS are the tests' private servers
// (FerretDB for MongoDB); the collector is left out. The two gateways,
// each with the files module on that database, start at once. CPEs then
// complete sessions through both gateways.
func TestComposeRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MongoDB-wire, Redis, NATS and seven fleetacs processes")
	}
	root := repoRoot(t)
	p, err := loadCompose(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}

	// The secrets, by secrets-init's script (ownership aside: the test
	// may not run as root).
	secretsDir := t.TempDir()
	init := p.Services["secrets-init"]
	if len(init.Command) != 3 || init.Command[0] != "sh" {
		t.Fatalf("secrets-init command %q: want sh -ec SCRIPT", init.Command)
	}
	script := "chown() { :; }\n" + strings.ReplaceAll(init.Command[2], "/secrets", secretsDir)
	if out, err := exec.Command("sh", "-ec", script).CombinedOutput(); err != nil {
		t.Fatalf("secrets-init: %v\n%s", err, out)
	}
	// Twice: the second run keeps what the first made.
	before, _ := os.ReadFile(filepath.Join(secretsDir, "internal.token"))
	if out, err := exec.Command("sh", "-ec", script).CombinedOutput(); err != nil {
		t.Fatalf("secrets-init again: %v\n%s", err, out)
	}
	after, _ := os.ReadFile(filepath.Join(secretsDir, "internal.token"))
	if len(before) < 32 || string(before) != string(after) {
		t.Fatalf("internal token %q then %q: want one of at least 32 bytes, kept", before, after)
	}

	redisAddr, redisDB := testenv.RedisDB(t)
	natsURL, mongoURI, mongoDB := testenv.NATS(t), testenv.MongoURI(t), testenv.MongoDatabase(t)
	prefix := testenv.UniqueName(t)

	ports := map[string]int{} // "service:port" -> loopback port
	portOf := func(svc, port string) string {
		k := svc + ":" + port
		if _, ok := ports[k]; !ok {
			if port == "3478" { // STUN, over UDP
				ports[k] = listenPort(t, "udp")
			} else {
				ports[k] = listenPort(t, "tcp")
			}
		}
		return fmt.Sprintf("127.0.0.1:%d", ports[k])
	}
	// A name several services answer to on the compose network (the
	// gateways' "files") reaches the first of them here.
	alias := map[string]string{}
	for _, n := range slices.Sorted(maps.Keys(p.Services)) {
		for _, nc := range p.Services[n].Networks {
			if nc == nil {
				continue
			}
			for _, a := range nc.Aliases {
				if _, ok := alias[a]; !ok {
					alias[a] = n
				}
			}
		}
	}
	listen := regexp.MustCompile(`^:(\d+)$`)
	svcPort := regexp.MustCompile(`^([a-z0-9-]+):(\d+)$`)
	// envOf gives a service's environment on this host.
	envOf := func(name string, s types.ServiceConfig) []string {
		var env []string
		keys := make([]string, 0, len(s.Environment))
		for k := range s.Environment {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := s.Environment[k]
			if v == nil || strings.HasPrefix(k, "OTEL_") {
				continue
			}
			val := *v
			switch {
			case k == "FLEETACS_REDIS_ADDR":
				val = redisAddr
			case k == "FLEETACS_NATS_URL":
				val = natsURL
			case k == "FLEETACS_FILES_BASE_URL":
				// Where CPEs reach /files/ here: gateway-1's port.
				val = "http://" + portOf("gateway-1", "7547")
			case strings.HasSuffix(k, "_MONGODB_URI"):
				val = mongoURI
				db := strings.TrimSuffix(k, "_URI") + "_DATABASE"
				env = append(env, db+"="+mongoDB)
			case listen.MatchString(val):
				val = portOf(name, listen.FindStringSubmatch(val)[1])
			case svcPort.MatchString(val):
				m := svcPort.FindStringSubmatch(val)
				if a, ok := alias[m[1]]; ok {
					m[1] = a
				}
				if _, ok := composeFleetacs[m[1]]; ok {
					val = portOf(m[1], m[2])
				}
			case strings.HasPrefix(val, "/run/fleetacs/"):
				val = filepath.Join(secretsDir, strings.TrimPrefix(val, "/run/fleetacs/"))
			}
			env = append(env, k+"="+val)
		}
		env = append(env, "FLEETACS_REDIS_DB="+strconv.Itoa(redisDB), "FLEETACS_REDIS_PREFIX="+prefix)
		for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
			if v, ok := os.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
		return env
	}

	bin := buildFleetacs(t)
	ctx, cancel := context.WithCancel(context.Background())
	procs := map[string]*supervised{}
	defer func() {
		cancel()
		for _, p := range procs {
			<-p.done
		}
	}()
	dumpLogs := func() {
		for _, p := range procs {
			t.Logf("%s log (tail):\n%s", p.name, p.tail(10))
		}
	}
	healthy := func(name string) error {
		pr := procs[name]
		if err := pr.failed(); err != nil {
			return err
		}
		return composeHealthy(bin, pr.env, pr.dir, p.Services[name])
	}
	started := map[string]bool{}
	// Start in dependency order, each once its FleetACS dependencies are
	// healthy (the others are the tests' servers, up already).
	for len(started) < len(composeFleetacs) {
		progress := false
		for name := range composeFleetacs {
			if started[name] {
				continue
			}
			s := p.Services[name]
			waiting := false
			for dep := range s.DependsOn {
				if _, ok := composeFleetacs[dep]; ok && !started[dep] {
					waiting = true
				}
			}
			if waiting {
				continue
			}
			for dep, d := range s.DependsOn {
				if _, ok := composeFleetacs[dep]; !ok {
					continue
				}
				if d.Condition != types.ServiceConditionHealthy {
					t.Fatalf("%s waits for %s with %s", name, dep, d.Condition)
				}
				deadline := time.Now().Add(2 * time.Minute)
				for err := healthy(dep); err != nil; err = healthy(dep) {
					if time.Now().After(deadline) {
						dumpLogs()
						t.Fatalf("%s not healthy for %s after 2 minutes: %v", dep, name, err)
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
			dir := t.TempDir() // the working directory, /var/lib/fleetacs
			procs[name] = supervise(ctx, t, name, bin, s.Command, envOf(name, s), dir, filepath.Join(dir, "log"))
			started[name] = true
			progress = true
		}
		if !progress {
			t.Fatalf("depends_on has a cycle among %v", composeFleetacs)
		}
	}
	for name := range composeFleetacs {
		deadline := time.Now().Add(2 * time.Minute)
		for err := healthy(name); err != nil; err = healthy(name) {
			if time.Now().After(deadline) {
				dumpLogs()
				t.Fatalf("%s not healthy after 2 minutes: %v", name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// The workers resolve preset firmware at the files address and with
	// the internal token the file gives them.
	for _, w := range []string{"sessions-1", "sessions-2"} {
		if err := resolveAsWorker(ctx, procs[w].env); err != nil {
			dumpLogs()
			t.Errorf("%s: %v", w, err)
		}
	}

	// CPEs through both gateways, on the ports the file publishes.
	for _, gw := range []string{"gateway-1", "gateway-2"} {
		s, err := sim.New(sim.Config{
			URL: "http://" + portOf(gw, "7547") + "/", Model: sim.TR098,
			Devices: 3, Seed: 11, SerialPrefix: strings.ToUpper(strings.ReplaceAll(gw, "-", "")),
			BootStorm: true, Concurrency: 2, TimeScale: 0.01, Timeout: 30 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		simCtx, simCancel := context.WithTimeout(ctx, 2*time.Minute)
		sum, err := s.Run(simCtx)
		simCancel()
		if err != nil {
			dumpLogs()
			t.Fatal(err)
		}
		t.Logf("%s: %d sessions ok, %d failed, HTTP %v", gw, sum.SessionsOK, sum.SessionsFailed, sum.HTTPStatus)
		for _, p := range procs {
			if n := p.restartCount(); n > 0 {
				t.Logf("%s was started again %d times (restart: unless-stopped): %s", p.name, n, p.tail(3))
			}
		}
		if sum.SessionsOK < 3 || sum.SessionsFailed > 0 {
			dumpLogs()
			t.Fatalf("%s: %d sessions ok, %d failed: want 3 ok", gw, sum.SessionsOK, sum.SessionsFailed)
		}
	}
	// Both gateways started at once with the files module on one
	// database, creating its indexes together: neither may have needed a
	// restart for it (FerretDB drops the connection of a createIndexes
	// that meets an index another connection made).
	for _, gw := range composeGateways {
		if n := procs[gw].restartCount(); n > 0 {
			t.Errorf("%s was started %d more times: %s", gw, n, procs[gw].tail(5))
		}
	}
}

// composeHealthy runs a service's health check as docker-compose.yml
// writes it (CMD /usr/local/bin/fleetacs healthcheck ...), with the
// service's environment.
func composeHealthy(bin string, env []string, dir string, s types.ServiceConfig) error {
	test := s.HealthCheck.Test
	if len(test) < 3 || test[0] != "CMD" || test[1] != "/usr/local/bin/fleetacs" {
		return fmt.Errorf("%s: health check %q", s.Name, test)
	}
	hc := exec.Command(bin, test[2:]...)
	hc.Env, hc.Dir = env, dir
	if out, err := hc.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", s.Name, err, out)
	}
	return nil
}
