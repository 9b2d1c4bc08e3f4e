package check

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestChartRuns renders the chart for real Redis, NATS JetStream and a
// MongoDB-wire server (FerretDB), and runs every Deployment's container as
// a process on loopback, with the environment, arguments and mounted
// Secrets the rendered manifests give it: Kubernetes' part (Secret
// references, the downward API, $(VAR) expansion, Service names) is done
// here, the rest is the chart's. Every service must become ready and CPEs
// must complete sessions through the gateway: the chart's configuration
// is one fleetacs accepts and that works, not only one that decodes.
func TestChartRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MongoDB-wire, Redis, NATS and five fleetacs processes")
	}
	redisAddr, redisDB := testenv.RedisDB(t)
	// The gateway's CWMP port is chosen now: the files module's base URL names it.
	cwmpPort := listenPort(t, "tcp")
	values := fmt.Sprintf(`
mongodb: {uri: %q, database: %q}
redis: {addr: %q, db: %d, prefix: %q}
nats: {url: %q}
gateway:
  auth: {anonymous: true}
  drainGrace: 1s
sessions: {drainTimeout: 1s}
notifier:
  allowedNetworks: ["127.0.0.0/8"]
  extraArgs: ["-notifier.allow-loopback"]
files: {enabled: true, baseURL: "http://127.0.0.1:%d"}
`, testenv.MongoURI(t), testenv.MongoDatabase(t), redisAddr, redisDB, testenv.UniqueName(t), testenv.NATS(t), cwmpPort)
	vf := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(vf, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := helm(t).Template(chartDir(t), vf)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]*corev1.Secret{}
	services := map[string]*corev1.Service{}
	deps := map[string]*appsv1.Deployment{}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Secret:
			secrets[o.Name] = o
		case *corev1.Service:
			services[o.Name] = o
		case *appsv1.Deployment:
			deps[o.Labels["app.kubernetes.io/component"]] = o
		}
	}

	// Every container port of every component gets a loopback port; a
	// Service name resolves to its component's ports.
	hostPort := map[string]map[int32]int{} // component -> container port -> loopback port
	for name, d := range deps {
		hostPort[name] = map[int32]int{}
		for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
			if p.Protocol == corev1.ProtocolUDP {
				hostPort[name][p.ContainerPort] = listenPort(t, "udp")
			} else {
				hostPort[name][p.ContainerPort] = listenPort(t, "tcp")
			}
		}
		if name == "gateway" {
			hostPort[name][7547] = cwmpPort
		}
		// The loopback-only internal listener of gateways and notifiers.
		if _, ok := hostPort[name][9301]; !ok {
			hostPort[name][9301] = listenPort(t, "tcp")
		}
	}
	svcAddr := map[string]string{} // "name:port" -> loopback address
	for _, s := range services {
		comp := s.Spec.Selector["app.kubernetes.io/component"]
		for _, p := range s.Spec.Ports {
			for _, cp := range deps[comp].Spec.Template.Spec.Containers[0].Ports {
				if cp.Name == p.TargetPort.String() {
					svcAddr[fmt.Sprintf("%s:%d", s.Name, p.Port)] = fmt.Sprintf("127.0.0.1:%d", hostPort[comp][cp.ContainerPort])
				}
			}
		}
	}

	bin := buildFleetacs(t)
	ctx, cancel := context.WithCancel(context.Background())
	var procs []*supervised
	// The processes are killed when ctx ends; the test waits for each.
	defer func() {
		cancel()
		for _, p := range procs {
			<-p.done
		}
	}()
	dumpLogs := func() {
		for _, p := range procs {
			t.Logf("%s log (tail):\n%s", p.name, p.tail(15))
		}
	}
	for _, name := range []string{"inventory", "tasks", "sessions", "gateway", "notifier"} {
		d := deps[name]
		env, err := containerEnv(d, secrets, svcAddr, hostPort[name], t.TempDir())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		dir := t.TempDir()
		procs = append(procs, supervise(ctx, t, name, bin, d.Spec.Template.Spec.Containers[0].Args, env, dir, filepath.Join(dir, "log")))
	}

	// Every process ready, on the admin port its readiness probe names.
	client := &http.Client{Timeout: 2 * time.Second}
	ready := func() error {
		for _, p := range procs {
			if err := p.failed(); err != nil {
				return err
			}
			url := fmt.Sprintf("http://127.0.0.1:%d/readyz", hostPort[p.name][9100])
			resp, err := client.Get(url)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: /readyz %s", p.name, resp.Status)
			}
		}
		return nil
	}
	deadline := time.Now().Add(2 * time.Minute)
	for err := ready(); err != nil; err = ready() {
		if time.Now().After(deadline) {
			dumpLogs()
			t.Fatalf("not ready after 2 minutes: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The worker resolves preset firmware through the gateway's
	// internal listener (the files module), at the Service address and
	// with the credential (mutual TLS, token) the chart gives it.
	for _, p := range procs {
		if p.name != "sessions" {
			continue
		}
		if err := resolveAsWorker(ctx, p.env); err != nil {
			dumpLogs()
			t.Errorf("sessions: %v", err)
		}
	}

	// The gateway runs the files module: /files/ is its handler (an
	// unsigned URL is refused), not the CWMP handler's 405.
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/files/nosuch", cwmpPort))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode < 400 {
		t.Errorf("GET /files/nosuch without a signature: %s, want the files handler's refusal", resp.Status)
	}
	t.Logf("GET /files/nosuch: %s", resp.Status)

	// CPEs complete sessions through the CWMP port of the gateway.
	s, err := sim.New(sim.Config{
		URL:     fmt.Sprintf("http://127.0.0.1:%d/", hostPort["gateway"][7547]),
		Model:   sim.TR181,
		Devices: 5, Seed: 7, SerialPrefix: "HELM",
		BootStorm: true, Concurrency: 2, TimeScale: 0.01, Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	simCtx, simCancel := context.WithTimeout(ctx, 2*time.Minute)
	defer simCancel()
	sum, err := s.Run(simCtx)
	if err != nil {
		dumpLogs()
		t.Fatal(err)
	}
	t.Logf("%d sessions ok, %d failed, HTTP %v", sum.SessionsOK, sum.SessionsFailed, sum.HTTPStatus)
	for _, p := range procs {
		if n := p.restartCount(); n > 0 {
			t.Logf("%s was started again %d times (as Kubernetes would): %s", p.name, n, p.tail(3))
		}
	}
	// The default values secure internal calls with the chart's own CA.
	for _, p := range procs {
		data, err := os.ReadFile(p.log)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), `"mode":"mutual TLS and shared token"`) {
			t.Errorf("%s: internal calls not under mutual TLS and the shared token:\n%s", p.name, p.tail(20))
		}
	}
	if sum.SessionsOK < 5 || sum.SessionsFailed > 0 {
		dumpLogs()
		t.Fatalf("sessions: %d ok, %d failed, want 5 ok and none failed (HTTP %v)", sum.SessionsOK, sum.SessionsFailed, sum.HTTPStatus)
	}
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// containerEnv gives a Deployment's container the environment Kubernetes
// would, on this host: Secret references resolved, the downward API
// answered for a pod on 127.0.0.1, $(VAR) references expanded, mounted
// Secrets written under dir (and their paths rewritten there), listen
// addresses on the loopback ports of ports, and Service addresses on the
// loopback ports of their pods.
func containerEnv(d *appsv1.Deployment, secrets map[string]*corev1.Secret, svcAddr map[string]string, ports map[int32]int, dir string) ([]string, error) {
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	// Mounts first: their paths appear in the variables.
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]string{} // mount path -> local dir
	for _, m := range c.VolumeMounts {
		local := filepath.Join(dir, strings.TrimPrefix(m.MountPath, "/"))
		if err := os.MkdirAll(local, 0o700); err != nil {
			return nil, err
		}
		mounts[m.MountPath] = local
		v, ok := vols[m.Name]
		if !ok {
			return nil, fmt.Errorf("mount %s of no volume", m.Name)
		}
		if v.Secret == nil {
			continue
		}
		sec, ok := secrets[v.Secret.SecretName]
		if !ok {
			return nil, fmt.Errorf("volume %s: Secret %s not rendered", m.Name, v.Secret.SecretName)
		}
		items := v.Secret.Items
		if len(items) == 0 {
			for k := range sec.Data {
				items = append(items, corev1.KeyToPath{Key: k, Path: k})
			}
		}
		for _, it := range items {
			data, ok := sec.Data[it.Key]
			if !ok {
				return nil, fmt.Errorf("volume %s: Secret %s has no key %s", m.Name, sec.Name, it.Key)
			}
			if err := os.WriteFile(filepath.Join(local, it.Path), data, 0o400); err != nil {
				return nil, err
			}
		}
	}
	// Longest mount paths first, so that /a/b wins over /a.
	var mountPaths []string
	for p := range mounts {
		mountPaths = append(mountPaths, p)
	}
	sort.Slice(mountPaths, func(i, j int) bool { return len(mountPaths[i]) > len(mountPaths[j]) })

	vars := map[string]string{}
	var env []string
	for _, e := range c.Env {
		val := e.Value
		if r := e.ValueFrom; r != nil {
			switch {
			case r.SecretKeyRef != nil:
				sec, ok := secrets[r.SecretKeyRef.Name]
				data, has := []byte(nil), false
				if ok {
					data, has = sec.Data[r.SecretKeyRef.Key]
				}
				if !has {
					if r.SecretKeyRef.Optional != nil && *r.SecretKeyRef.Optional {
						continue
					}
					return nil, fmt.Errorf("%s: Secret %s key %s not rendered", e.Name, r.SecretKeyRef.Name, r.SecretKeyRef.Key)
				}
				val = string(data)
			case r.FieldRef != nil && r.FieldRef.FieldPath == "metadata.name":
				val = d.Name + "-0"
			case r.FieldRef != nil && r.FieldRef.FieldPath == "status.podIP":
				val = "127.0.0.1"
			case r.ResourceFieldRef != nil:
				q := c.Resources.Limits[corev1.ResourceName(strings.TrimPrefix(r.ResourceFieldRef.Resource, "limits."))]
				val = strconv.FormatInt(q.Value(), 10)
			default:
				return nil, fmt.Errorf("%s: value source %+v", e.Name, r)
			}
		}
		val = varRef.ReplaceAllStringFunc(val, func(ref string) string {
			if v, ok := vars[varRef.FindStringSubmatch(ref)[1]]; ok {
				return v
			}
			return ref
		})
		for _, p := range mountPaths {
			if rest, ok := strings.CutPrefix(val, p); ok && (rest == "" || rest[0] == '/') {
				val = mounts[p] + rest
				break
			}
		}
		// A listen address (":port", "127.0.0.1:port") or the pod's own
		// address on one of its container ports; else a Service address.
		if host, port, err := net.SplitHostPort(val); err == nil && (host == "" || host == "127.0.0.1") && strings.HasSuffix(e.Name, "_ADDR") {
			if n, err := strconv.Atoi(port); err == nil {
				if hp, ok := ports[int32(n)]; ok {
					val = fmt.Sprintf("127.0.0.1:%d", hp)
				}
			}
		} else if a, ok := svcAddr[val]; ok {
			val = a
		}
		vars[e.Name] = val
		env = append(env, e.Name+"="+val)
	}
	// Only what the manifest gives, and what a Go program needs to run.
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env, nil
}

// buildFleetacs builds fleetacs as cmd/fleetacs's end-to-end tests do, so
// that the build cache serves both.
func buildFleetacs(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fleetacs")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(repoRoot(t), "cmd", "fleetacs")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build fleetacs: %v\n%s", err, out)
	}
	return bin
}
