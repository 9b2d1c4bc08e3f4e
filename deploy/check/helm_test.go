package check

import (
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// helmBin is the helm scripts/ensure-test-deps.sh installs, pinned there.
func helm(t *testing.T) Helm {
	t.Helper()
	bin := filepath.Join(repoRoot(t), "bin", "helm")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%v: run scripts/ensure-test-deps.sh, which installs the pinned helm", err)
	}
	return Helm{Bin: bin, Home: t.TempDir()}
}

func chartDir(t *testing.T) string {
	return filepath.Join(repoRoot(t), "deploy", "helm", "fleetacs")
}

var components = []string{"gateway", "sessions", "inventory", "tasks", "notifier"}

func TestChartDefaultValues(t *testing.T) {
	objs := checkChart(t, chartDir(t))
	checkFilesAddr(t, objs, false)
}

// checkFilesAddr: the session workers resolve preset firmware through the
// gateways' internal listener (the files module's FilesInternalService)
// when the gateways run files, and are given no address otherwise; the
// gateways' NetworkPolicy admits that port from FleetACS pods only then.
func checkFilesAddr(t *testing.T, objs []runtime.Object, files bool) {
	t.Helper()
	var gwSvc string
	gwInternal := false
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Service:
			if o.Spec.Selector["app.kubernetes.io/component"] == "gateway" && o.Spec.Type == corev1.ServiceTypeClusterIP {
				for _, p := range o.Spec.Ports {
					if p.Port == 9301 && p.TargetPort.String() == "internal-grpc" {
						gwSvc = o.Name
					}
				}
			}
		case *networkingv1.NetworkPolicy:
			if o.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"] != "gateway" {
				continue
			}
			for _, r := range o.Spec.Ingress {
				for _, p := range r.Ports {
					if p.Port.IntValue() == 9301 {
						gwInternal = true
						if len(r.From) != 1 || r.From[0].PodSelector == nil || r.From[0].PodSelector.MatchLabels["app.kubernetes.io/component"] != "" ||
							r.From[0].PodSelector.MatchLabels["app.kubernetes.io/instance"] == "" {
							t.Errorf("gateway NetworkPolicy: port 9301 from %+v, want the release's FleetACS pods", r.From)
						}
					}
				}
			}
		}
	}
	for _, o := range objs {
		d, ok := o.(*appsv1.Deployment)
		if !ok {
			continue
		}
		env := envOf(d)
		switch d.Labels["app.kubernetes.io/component"] {
		case "sessions":
			addr, has := env["FLEETACS_CLIENT_FILES_ADDR"]
			if want := gwSvc + ":9301"; files && (!has || gwSvc == "" || addr.Value != want) {
				t.Errorf("sessions: FLEETACS_CLIENT_FILES_ADDR %q (set %v), want %q", addr.Value, has, want)
			}
			if !files && has {
				t.Errorf("sessions: FLEETACS_CLIENT_FILES_ADDR %q without the files module", addr.Value)
			}
		case "gateway":
			if want := map[bool]string{true: ":9301", false: "127.0.0.1:9301"}[files]; env["FLEETACS_SERVER_INTERNAL_GRPC_ADDR"].Value != want {
				t.Errorf("gateway: internal listener %q, want %q", env["FLEETACS_SERVER_INTERNAL_GRPC_ADDR"].Value, want)
			}
		}
	}
	if files != gwInternal || files != (gwSvc != "") {
		t.Errorf("files %v: the gateways' internal port in a Service %q, admitted by their NetworkPolicy %v", files, gwSvc, gwInternal)
	}
}

func TestChartProductionValues(t *testing.T) {
	c := chartDir(t)
	objs := checkChart(t, c, filepath.Join(c, "ci", "production-values.yaml"))
	checkFilesAddr(t, objs, true)
	// What the production values turn on is there.
	var sm, pr, dash int
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.ConfigMap:
			if _, ok := o.Data[dashboardKey]; ok && o.Labels["grafana_dashboard"] == "1" {
				dash++
			}
		case *monitoringv1.ServiceMonitor:
			sm++
		case *monitoringv1.PrometheusRule:
			pr++
			var alerts []string
			for _, g := range o.Spec.Groups {
				for _, r := range g.Rules {
					alerts = append(alerts, r.Alert)
				}
			}
			for _, want := range []string{"FleetACSSessionsFailing", "FleetACSAdmissionShedding", "FleetACSTaskReportsFailing", "FleetACSConnectionRequestsFailing", "FleetACSDependencyErrors", "FleetACSDown",
				"FleetACSTaskQueueStale", "FleetACSDependencyCallsFailing"} {
				if !slices.Contains(alerts, want) {
					t.Errorf("alert %s missing (have %v)", want, alerts)
				}
			}
			for _, e := range CheckRunbooks(o, runbooks(t)) {
				t.Error(e)
			}
			for _, g := range o.Spec.Groups {
				for _, r := range g.Rules {
					if u := r.Annotations["runbook_url"]; !strings.Contains(u, "/docs/"+runbookDoc+"#") {
						t.Errorf("%s: runbook_url %q is not in docs/%s", r.Alert, u, runbookDoc)
					}
				}
			}
		case *appsv1.Deployment:
			env := envOf(o)
			if _, ok := env["FLEETACS_INTERNAL_TLS_CERT_FILE"]; !ok {
				t.Errorf("%s: internal TLS on, but no FLEETACS_INTERNAL_TLS_CERT_FILE", o.Name)
			}
			if o.Spec.Template.Spec.Containers[0].Image != "registry.example.net/acs/fleetacs@sha256:1190895bf88317d6bb25ce220a463066421f53c2c405fd39a92725ae7ed9b11d" {
				t.Errorf("%s: image %s, want the digest", o.Name, o.Spec.Template.Spec.Containers[0].Image)
			}
		case *corev1.Secret:
			t.Errorf("secret %s rendered though every secret is an existing one", o.Name)
		}
		if d, ok := o.(*appsv1.Deployment); ok && d.Labels["app.kubernetes.io/component"] == "gateway" {
			checkS3Files(t, d)
		}
	}
	if sm != 1 || pr != 1 || dash != 1 {
		t.Errorf("%d ServiceMonitors, %d PrometheusRules, %d dashboard ConfigMaps, want 1 each", sm, pr, dash)
	}
}

// checkS3Files: the production values keep the files' bytes in S3; the
// gateways get its settings, and its keys and CA as files of the Secrets
// the values name.
func checkS3Files(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	env := envOf(d)
	for k, want := range map[string]string{
		"FLEETACS_FILES_STORE": "mongodb", "FLEETACS_FILES_BLOB": "s3", "FLEETACS_FILES_S3_ENDPOINT": "minio.storage.svc:9000",
		"FLEETACS_FILES_S3_BUCKET": "acme-acs-files", "FLEETACS_FILES_S3_PREFIX": "fleetacs/", "FLEETACS_FILES_S3_PATH_STYLE": "true",
		"FLEETACS_FILES_S3_INSECURE": "false", "FLEETACS_FILES_S3_ACCESS_KEY_FILE": "/run/fleetacs/files-s3/access-key",
		"FLEETACS_FILES_S3_SECRET_KEY_FILE": "/run/fleetacs/files-s3/secret-key", "FLEETACS_FILES_S3_CA_FILE": "/run/fleetacs/files-s3-ca/ca.crt",
	} {
		if env[k].Value != want {
			t.Errorf("gateway: %s=%q, want %q", k, env[k].Value, want)
		}
	}
	if _, ok := env["FLEETACS_FILES_GRIDFS_BUCKET"]; ok {
		t.Error("gateway: FLEETACS_FILES_GRIDFS_BUCKET with files.blob=s3")
	}
	secrets := map[string]string{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secrets[v.Name] = v.Secret.SecretName
		}
	}
	if secrets["files-s3"] != "fleetacs-files-s3" || secrets["files-s3-ca"] != "fleetacs-files-s3-ca" {
		t.Errorf("gateway: S3 secret volumes %v", secrets)
	}
}

// The Redis modes reach the processes that use Redis: the mode, the
// sentinels or the cluster's seeds as -redis.addr, the master's name.
func TestChartRedisModes(t *testing.T) {
	c := chartDir(t)
	for _, tc := range []struct {
		values         string
		mode, addr     string
		sentinelMaster string
	}{
		{"redis: {mode: sentinel, sentinel: {masterName: acs, addrs: [\"s1:26379\", \"s2:26379\"]}}\n", "sentinel", "s1:26379,s2:26379", "acs"},
		{"redis: {mode: cluster, cluster: {addrs: [\"r1:6379\", \"r2:6379\", \"r3:6379\"]}}\n", "cluster", "r1:6379,r2:6379,r3:6379", ""},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			v := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(v, []byte(tc.values), 0o644); err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, o := range checkChart(t, c, v) {
				d, ok := o.(*appsv1.Deployment)
				if !ok {
					continue
				}
				env := envOf(d)
				if _, uses := env["FLEETACS_REDIS_ADDR"]; !uses {
					continue
				}
				n++
				if env["FLEETACS_REDIS_MODE"].Value != tc.mode || env["FLEETACS_REDIS_ADDR"].Value != tc.addr ||
					env["FLEETACS_REDIS_SENTINEL_MASTER"].Value != tc.sentinelMaster {
					t.Errorf("%s: mode %q, addr %q, master %q", d.Name, env["FLEETACS_REDIS_MODE"].Value, env["FLEETACS_REDIS_ADDR"].Value,
						env["FLEETACS_REDIS_SENTINEL_MASTER"].Value)
				}
			}
			if n != 3 {
				t.Errorf("%d Deployments use Redis, want 3 (gateway, sessions, notifier)", n)
			}
		})
	}
}

// checkChart lints and renders the chart with the values files, decodes
// every manifest strictly and checks what the chart promises. It returns
// the objects.
func checkChart(t *testing.T, chart string, values ...string) []runtime.Object {
	t.Helper()
	h := helm(t)
	if err := h.Lint(chart, values...); err != nil {
		t.Fatal(err)
	}
	out, err := h.Template(chart, values...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := MetricNames(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range checkObjects(objs, help(t), metrics) {
		t.Error(e)
	}
	return objs
}

func envOf(d *appsv1.Deployment) map[string]corev1.EnvVar {
	m := map[string]corev1.EnvVar{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		m[e.Name] = e
	}
	return m
}

// checkObjects returns every way the rendered chart departs from what it
// must be.
func checkObjects(objs []runtime.Object, h *Fleetacs, metrics map[string]bool) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	deps := map[string]*appsv1.Deployment{}
	services := map[string]*corev1.Service{}
	secrets := map[string]*corev1.Secret{}
	var hpas []*autoscalingv2.HorizontalPodAutoscaler
	var pdbs []*policyv1.PodDisruptionBudget
	var netpols []*networkingv1.NetworkPolicy
	var sms []*monitoringv1.ServiceMonitor
	var rules []*monitoringv1.PrometheusRule
	var configMaps []*corev1.ConfigMap
	sas := map[string]bool{}
	for _, o := range objs {
		switch o := o.(type) {
		case *appsv1.Deployment:
			deps[o.Labels["app.kubernetes.io/component"]] = o
		case *corev1.Service:
			services[o.Name] = o
		case *corev1.Secret:
			secrets[o.Name] = o
		case *corev1.ServiceAccount:
			sas[o.Name] = true
		case *autoscalingv2.HorizontalPodAutoscaler:
			hpas = append(hpas, o)
		case *policyv1.PodDisruptionBudget:
			pdbs = append(pdbs, o)
		case *networkingv1.NetworkPolicy:
			netpols = append(netpols, o)
		case *monitoringv1.ServiceMonitor:
			sms = append(sms, o)
		case *monitoringv1.PrometheusRule:
			rules = append(rules, o)
		case *corev1.ConfigMap:
			configMaps = append(configMaps, o)
		default:
			bad("unexpected kind %T", o)
		}
	}

	podLabels := func(d *appsv1.Deployment) labels.Set { return d.Spec.Template.Labels }
	selects := func(sel map[string]string) []string {
		var out []string
		for n, d := range deps {
			if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(podLabels(d)) {
				out = append(out, n)
			}
		}
		sort.Strings(out)
		return out
	}

	for _, name := range components {
		d, ok := deps[name]
		if !ok {
			bad("no Deployment for %s", name)
			continue
		}
		spec := d.Spec.Template.Spec
		if len(spec.Containers) != 1 {
			bad("%s: %d containers", name, len(spec.Containers))
			continue
		}
		c := spec.Containers[0]
		if err := h.CheckArgs(c.Args); err != nil || !slices.Contains(c.Args, name) {
			bad("%s: args %q: %v (want the component among the targets)", name, c.Args, err)
		}
		if len(c.Command) > 0 {
			bad("%s overrides the image's entry point", name)
		}
		for _, e := range c.Env {
			if err := h.CheckEnv(e.Name); err != nil {
				bad("%s: %v", name, err)
			}
			up := strings.ToUpper(e.Name)
			if strings.HasSuffix(up, "_FILE") && strings.HasPrefix(e.Value, "/") && !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
				return strings.HasPrefix(e.Value, strings.TrimSuffix(m.MountPath, "/")+"/")
			}) {
				bad("%s: %s=%q is in no mounted volume", name, e.Name, e.Value)
			}
			if e.Value != "" && !strings.HasSuffix(up, "_FILE") && (strings.Contains(up, "PASSWORD") || strings.Contains(up, "SECRET") ||
				strings.Contains(up, "TOKEN") || strings.Contains(up, "MONGODB_URI") || up == "FLEETACS_NATS_URL") {
				bad("%s: %s holds a value in clear, want a Secret reference", name, e.Name)
			}
			// A pod IP may be IPv6: "$(POD_IP):port" is then no host:port
			// (it needs brackets), so the address is passed as a bare
			// host and fleetacs joins the port.
			if strings.Contains(e.Value, "$(POD_IP)") && e.Value != "$(POD_IP)" {
				bad("%s: %s=%q builds an address from $(POD_IP), wrong for an IPv6 pod IP; pass the bare host (-sessions.advertise-host)", name, e.Name, e.Value)
			}
			if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil {
				if _, ok := secrets[r.SecretKeyRef.Name]; !ok && !strings.HasPrefix(r.SecretKeyRef.Name, "fleetacs-") {
					bad("%s: %s refers to Secret %s, neither rendered nor an existing fleetacs-* one", name, e.Name, r.SecretKeyRef.Name)
				}
			}
		}
		if name == "sessions" {
			// Gateways dial the worker at what it registers: its pod IP.
			if v := envOf(d)["FLEETACS_SESSIONS_ADVERTISE_HOST"].Value; v != "$(POD_IP)" {
				bad("sessions: FLEETACS_SESSIONS_ADVERTISE_HOST=%q, want $(POD_IP)", v)
			}
		}
		for _, p := range []struct {
			what  string
			probe *corev1.Probe
			path  string
		}{{"startup", c.StartupProbe, "/healthz"}, {"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
			if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "admin" {
				bad("%s: %s probe %+v, want GET %s on the admin port", name, p.what, p.probe, p.path)
			}
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			bad("%s: resources %+v: want CPU and memory requests and a memory limit", name, c.Resources)
		}
		psc, sc := spec.SecurityContext, c.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
			bad("%s: pod security context %+v: want non-root 65532", name, psc)
		}
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad("%s: container security context: want a read-only root and no privilege escalation", name)
		}
		if len(spec.TopologySpreadConstraints) == 0 {
			bad("%s: no topology spread", name)
		}
		for _, tsc := range spec.TopologySpreadConstraints {
			if tsc.LabelSelector == nil || !slices.Equal(selects(tsc.LabelSelector.MatchLabels), []string{name}) {
				bad("%s: topology spread selects %v", name, tsc.LabelSelector)
			}
		}
		if !sas[spec.ServiceAccountName] {
			bad("%s: service account %q not rendered", name, spec.ServiceAccountName)
		}
		if !slices.Equal(selects(d.Spec.Selector.MatchLabels), []string{name}) {
			bad("%s: Deployment selector %v selects %v", name, d.Spec.Selector.MatchLabels, selects(d.Spec.Selector.MatchLabels))
		}
		// Mounted secrets exist (rendered, or existing ones the values name).
		mounts := map[string]bool{}
		for _, m := range c.VolumeMounts {
			mounts[m.Name] = true
		}
		for _, v := range spec.Volumes {
			if !mounts[v.Name] {
				bad("%s: volume %s not mounted", name, v.Name)
			}
			if v.Secret != nil {
				if _, ok := secrets[v.Secret.SecretName]; !ok && !strings.HasPrefix(v.Secret.SecretName, "fleetacs-") {
					bad("%s: volume %s names Secret %s, neither rendered nor an existing fleetacs-* one", name, v.Name, v.Secret.SecretName)
				}
			}
		}
	}

	// Services: each selects one component, and its ports name the pod's.
	for _, s := range services {
		sel := selects(s.Spec.Selector)
		if len(sel) != 1 {
			bad("Service %s selects %v", s.Name, sel)
			continue
		}
		ports := map[string]corev1.Protocol{}
		for _, p := range deps[sel[0]].Spec.Template.Spec.Containers[0].Ports {
			ports[p.Name] = p.Protocol
		}
		for _, p := range s.Spec.Ports {
			if proto, ok := ports[p.TargetPort.String()]; !ok || proto != p.Protocol {
				bad("Service %s port %s targets %s/%s, which %s does not expose", s.Name, p.Name, p.TargetPort.String(), p.Protocol, sel[0])
			}
		}
	}
	// Internal listeners: on the pod network (":9301") exactly where
	// another component calls them, through a Service port that targets
	// them; everywhere else on loopback. The gateways' is called when
	// they run the files module: the workers resolve the firmware files
	// presets ask for there (-client.files-addr).
	filesOn := false
	if g, ok := deps["gateway"]; ok && len(g.Spec.Template.Spec.Containers) == 1 {
		filesOn = slices.Contains(g.Spec.Template.Spec.Containers[0].Args, "files")
	}
	// Gateways call the session workers at the pod IP each registers.
	called := map[string]bool{}
	if s, ok := deps["sessions"]; ok && envOf(s)["FLEETACS_SESSIONS_ADVERTISE_HOST"].Value != "" {
		called["sessions"] = true
	}
	for _, name := range slices.Sorted(maps.Keys(deps)) {
		for _, e := range deps[name].Spec.Template.Spec.Containers[0].Env {
			if !strings.HasPrefix(e.Name, "FLEETACS_CLIENT_") || !strings.HasSuffix(e.Name, "_ADDR") {
				continue
			}
			host, port, err := net.SplitHostPort(e.Value)
			s, ok := services[host]
			if err != nil || !ok {
				bad("%s: %s=%q names no rendered Service", name, e.Name, e.Value)
				continue
			}
			var sp *corev1.ServicePort
			for i := range s.Spec.Ports {
				if strconv.Itoa(int(s.Spec.Ports[i].Port)) == port {
					sp = &s.Spec.Ports[i]
				}
			}
			sel := selects(s.Spec.Selector)
			if sp == nil || len(sel) != 1 {
				bad("%s: %s=%q: Service %s has no such port or selects %v", name, e.Name, e.Value, s.Name, sel)
				continue
			}
			called[sel[0]] = true
			if listen := envOf(deps[sel[0]])["FLEETACS_SERVER_INTERNAL_GRPC_ADDR"].Value; sp.TargetPort.String() != "internal-grpc" || listen != ":9301" {
				bad("%s: %s=%q reaches %s's port %s, not its internal listener on the pod network (it listens on %q)", name, e.Name, e.Value, sel[0], sp.TargetPort.String(), listen)
			}
		}
	}
	for name, d := range deps {
		if listen := envOf(d)["FLEETACS_SERVER_INTERNAL_GRPC_ADDR"].Value; !called[name] && !strings.HasPrefix(listen, "127.0.0.1:") {
			bad("%s: internal listener on %q though no component calls it: want loopback", name, listen)
		}
	}
	if s, ok := deps["sessions"]; ok {
		if addr, has := envOf(s)["FLEETACS_CLIENT_FILES_ADDR"]; has != filesOn {
			bad("sessions: FLEETACS_CLIENT_FILES_ADDR %q with the files module %v in the gateways: want it exactly when files run", addr.Value, filesOn)
		}
	}

	var cwmp *corev1.Service
	for _, s := range services {
		for _, p := range s.Spec.Ports {
			if p.Name == "cwmp" {
				cwmp = s
			}
		}
	}
	if cwmp == nil {
		bad("no Service with the cwmp port")
	} else if cwmp.Spec.Type == corev1.ServiceTypeLoadBalancer && cwmp.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		bad("CWMP Service %s: externalTrafficPolicy %q, want Local", cwmp.Name, cwmp.Spec.ExternalTrafficPolicy)
	}

	// HPAs for gateway and sessions only, on their Deployments.
	var scaled []string
	for _, a := range hpas {
		ref := a.Spec.ScaleTargetRef
		found := false
		for n, d := range deps {
			if d.Name == ref.Name && ref.Kind == "Deployment" {
				scaled, found = append(scaled, n), true
				if d.Spec.Replicas != nil {
					bad("%s: replicas set though an HPA scales it", n)
				}
			}
		}
		if !found {
			bad("HPA %s scales %s %s, not rendered", a.Name, ref.Kind, ref.Name)
		}
	}
	sort.Strings(scaled)
	if len(hpas) > 0 && !slices.Equal(scaled, []string{"gateway", "sessions"}) {
		bad("HPAs scale %v, want gateway and sessions", scaled)
	}
	// A PDB per component.
	var guarded []string
	for _, p := range pdbs {
		guarded = append(guarded, selects(p.Spec.Selector.MatchLabels)...)
	}
	sort.Strings(guarded)
	if want := slices.Sorted(slices.Values(components)); !slices.Equal(guarded, want) {
		bad("PDBs guard %v, want %v", guarded, want)
	}

	// NetworkPolicies: the internal port only from FleetACS pods; rules
	// open to every source only for CPE traffic to gateways (CWMP) and
	// the notifier (STUN).
	if len(netpols) > 0 {
		covered := map[string]bool{}
		internalOpen := map[string]bool{}
		for _, np := range netpols {
			sel := selects(np.Spec.PodSelector.MatchLabels)
			if len(sel) != 1 {
				bad("NetworkPolicy %s selects %v", np.Name, sel)
				continue
			}
			covered[sel[0]] = true
			for _, r := range np.Spec.Ingress {
				var ports []string
				for _, p := range r.Ports {
					ports = append(ports, fmt.Sprintf("%s/%s", p.Port.String(), *p.Protocol))
				}
				if len(r.From) == 0 {
					ok := (sel[0] == "gateway" && allIn(ports, "7547/TCP", "7548/TCP")) || (sel[0] == "notifier" && allIn(ports, "3478/UDP"))
					if !ok || len(ports) == 0 {
						bad("NetworkPolicy %s lets anyone reach %v", np.Name, ports)
					}
				}
				if slices.Contains(ports, "9301/TCP") {
					internalOpen[sel[0]] = true
					if len(ports) != 1 || len(r.From) != 1 || r.From[0].PodSelector == nil || r.From[0].NamespaceSelector != nil ||
						!slices.Equal(selects(r.From[0].PodSelector.MatchLabels), slices.Sorted(slices.Values(components))) {
						bad("NetworkPolicy %s: the internal port is open to %+v, want the FleetACS pods only", np.Name, r.From)
					}
				}
			}
		}
		for _, n := range components {
			if !covered[n] {
				bad("no NetworkPolicy for %s", n)
			}
			// The callers of an internal listener get through, and
			// nobody reaches a loopback one anyway.
			if internalOpen[n] != called[n] {
				bad("NetworkPolicy of %s: internal port admitted %v, but other components call it: %v", n, internalOpen[n], called[n])
			}
		}
	}

	// ServiceMonitor: selects the components' Services, on their admin port.
	for _, sm := range sms {
		var monitored []string
		for _, s := range services {
			if labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(s.Labels)) {
				monitored = append(monitored, selects(s.Spec.Selector)...)
				if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == "admin" }) {
					bad("ServiceMonitor selects Service %s, which has no admin port", s.Name)
				}
			}
		}
		sort.Strings(monitored)
		if !slices.Equal(monitored, slices.Sorted(slices.Values(components))) {
			bad("ServiceMonitor reaches %v, want every component once", monitored)
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "admin" || sm.Spec.Endpoints[0].Path != "/metrics" {
			bad("ServiceMonitor endpoints %+v", sm.Spec.Endpoints)
		}
	}
	// ConfigMaps: the Grafana dashboard only, and it passes the
	// dashboard's checks.
	for _, cm := range configMaps {
		data, ok := cm.Data[dashboardKey]
		if !ok || len(cm.Data)+len(cm.BinaryData) != 1 {
			bad("ConfigMap %s: keys %v, want %s alone", cm.Name, slices.Sorted(maps.Keys(cm.Data)), dashboardKey)
			continue
		}
		for _, e := range CheckDashboard([]byte(data), metrics) {
			bad("ConfigMap %s: %v", cm.Name, e)
		}
	}

	// PrometheusRule: every alert selects metrics FleetACS exports.
	for _, pr := range rules {
		for _, g := range pr.Spec.Groups {
			for _, r := range g.Rules {
				names := ExprMetrics(r.Expr.String())
				if len(names) == 0 {
					bad("alert %s: no metric in %q", r.Alert, r.Expr.String())
				}
				for _, n := range names {
					if n != "up" && !metrics[n] {
						bad("alert %s: FleetACS exports no metric %s", r.Alert, n)
					}
				}
				if r.Annotations["runbook_url"] == "" || r.Labels["severity"] == "" {
					bad("alert %s: want a runbook_url and a severity", r.Alert)
				}
			}
		}
	}
	return errs
}

func allIn(list []string, allowed ...string) bool {
	for _, x := range list {
		if !slices.Contains(allowed, x) {
			return false
		}
	}
	return true
}

// copyChart copies the chart to a temporary directory for a test to break.
func copyChart(t *testing.T) string {
	t.Helper()
	src := chartDir(t)
	dst := filepath.Join(t.TempDir(), "fleetacs")
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func edit(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s no longer holds %q: update the case", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The checks fail on a broken chart: a field the API type lacks, a value of
// the wrong type, a flag fleetacs lacks, an alert on a metric nobody
// exports, a values typo the schema refuses, a secret in clear.
// s3Values turn the files module on with its bytes in S3.
const s3Values = "files:\n  enabled: true\n  baseURL: \"http://acs.example.net:7547\"\n  blob: s3\n  s3:\n    endpoint: minio:9000\n    bucket: files\n    existingSecret: fleetacs-files-s3\n"

func TestChartCheckCatches(t *testing.T) {
	h := helm(t)
	hf := help(t)
	metrics, err := MetricNames(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		file       string // in the chart; "" for values only
		old, new   string
		values     string // extra values file content
		want       string // in the error
		atTemplate bool   // helm itself refuses (lint, template or schema)
	}{
		{name: "unknown field", file: "templates/workloads.yaml", old: "  revisionHistoryLimit: 5\n", new: "  revisionHistoryLimit: 5\n  replica: 2\n", want: `unknown field "spec.replica"`},
		{name: "wrong case", file: "templates/workloads.yaml", old: "  revisionHistoryLimit: 5\n", new: "  RevisionHistoryLimit: 5\n", want: `unknown field "spec.RevisionHistoryLimit"`},
		{name: "wrong type", file: "templates/workloads.yaml", old: "terminationGracePeriodSeconds: {{ if", new: "terminationGracePeriodSeconds: soon{{ if", want: "terminationGracePeriodSeconds"},
		{name: "misplaced probe", file: "templates/workloads.yaml", old: "          startupProbe:\n            httpGet:", new: "          startupProbe:\n            httpGett:", want: `unknown field "spec.template.spec.containers[0].startupProbe.httpGett"`},
		{name: "unknown flag", values: "gateway:\n  extraArgs: [\"-gateway.no-such-flag=1\"]\n", want: "no flag -gateway.no-such-flag"},
		{name: "unknown variable", values: "sessions:\n  extraEnv: [{name: FLEETACS_SESSIONS_MAX_SESION, value: \"1\"}]\n", want: "no variable FLEETACS_SESSIONS_MAX_SESION"},
		{name: "secret in clear", values: "sessions:\n  extraEnv: [{name: FLEETACS_REDIS_PASSWORD, value: hunter2}]\n", want: "FLEETACS_REDIS_PASSWORD holds a value in clear"},
		{name: "unknown metric", file: "templates/prometheusrule.yaml", old: "fleetacs_sessions_takeovers_total", new: "fleetacs_sessions_takeover_count", values: "metrics: {prometheusRule: {enabled: true}}\n", want: "no metric fleetacs_sessions_takeover_count"},
		{name: "dashboard metric", file: "dashboards/fleetacs.json", old: "fleetacs_sessions_takeovers_total{", new: "fleetacs_sessions_takeover_count{", values: "metrics: {grafanaDashboard: {enabled: true}}\n", want: "no metric fleetacs_sessions_takeover_count"},
		{name: "dashboard values typo", values: "metrics: {grafanaDashboard: {enable: true}}\n", atTemplate: true, want: "enable"},
		{name: "internal port open", file: "templates/networkpolicy.yaml", old: "        - podSelector:\n            matchLabels:", new: "        - namespaceSelector: {}\n          podSelector:\n            matchLabels:", want: "the internal port is open"},
		{name: "pod IP host:port", file: "templates/_component.tpl", old: "- name: FLEETACS_SESSIONS_ADVERTISE_HOST\n  value: \"$(POD_IP)\"", new: "- name: FLEETACS_SESSIONS_ADVERTISE_ADDR\n  value: \"$(POD_IP):9301\"", want: "builds an address from $(POD_IP)"},
		{name: "files address unset", file: "templates/_component.tpl", old: "- name: FLEETACS_CLIENT_FILES_ADDR\n  value: \"{{ $full }}-gateway:9301\"", new: "", values: "files: {enabled: true, baseURL: \"http://acs.example.net:7547\"}\n", want: "want it exactly when files run"},
		{name: "gateway internal on loopback", file: "templates/_helpers.tpl", old: "(list \"inventory\" \"tasks\" \"sessions\")) (and (eq .name \"gateway\") .root.Values.files.enabled)", new: "(list \"inventory\" \"tasks\" \"sessions\")) false", values: "files: {enabled: true, baseURL: \"http://acs.example.net:7547\"}\n", want: "has no such port"},
		{name: "gateway internal closed", file: "templates/networkpolicy.yaml", old: "{{- if include \"fleetacs.internalOnNetwork\" (dict \"root\" $root \"name\" $name) }}", new: "{{- if has $name (list \"inventory\" \"tasks\" \"sessions\") }}", values: "files: {enabled: true, baseURL: \"http://acs.example.net:7547\"}\n", want: "NetworkPolicy of gateway: internal port admitted false"},
		{name: "s3 key file not mounted", file: "templates/workloads.yaml", old: "- {name: files-s3, mountPath: /run/fleetacs/files-s3, readOnly: true}", new: "- {name: files-s3, mountPath: /run/fleetacs/s3, readOnly: true}", values: s3Values, want: "FLEETACS_FILES_S3_SECRET_KEY_FILE=\"/run/fleetacs/files-s3/secret-key\" is in no mounted volume"},
		{name: "s3 without its secret", values: strings.Replace(s3Values, "existingSecret: fleetacs-files-s3", "existingSecret: \"\"", 1), atTemplate: true, want: "files.s3.existingSecret is required"},
		{name: "s3 without a bucket", values: strings.Replace(s3Values, "bucket: files", "bucket: \"\"", 1), atTemplate: true, want: "files.s3.bucket is required"},
		{name: "s3 endpoint a URL", values: strings.Replace(s3Values, "endpoint: minio:9000", "endpoint: \"https://minio:9000\"", 1), atTemplate: true, want: "endpoint"},
		{name: "blob typo", values: "files: {blob: S3}\n", atTemplate: true, want: "blob"},
		{name: "cluster policy", file: "templates/workloads.yaml", old: "externalTrafficPolicy: {{ $g.externalTrafficPolicy }}", new: "externalTrafficPolicy: Cluster", want: "want Local"},
		{name: "values typo", values: "gateway:\n  replica: 3\n", atTemplate: true, want: "replica"},
		{name: "values type", values: "nats:\n  streamReplicas: three\n", atTemplate: true, want: "streamReplicas"},
		{name: "redis cluster without seeds", values: "redis:\n  mode: cluster\n", atTemplate: true, want: "redis.cluster.addrs"},
		{name: "redis cluster db", values: "redis:\n  mode: cluster\n  db: 3\n  cluster: {addrs: [\"r1:6379\"]}\n", atTemplate: true, want: "redis.db must be 0"},
		{name: "redis sentinel without master", values: "redis:\n  mode: sentinel\n  sentinel: {masterName: \"\", addrs: [\"s1:26379\"]}\n", atTemplate: true, want: "redis.sentinel.masterName"},
	} {
		t.Run(c.name, func(t *testing.T) {
			chart := copyChart(t)
			if c.file != "" {
				edit(t, filepath.Join(chart, c.file), c.old, c.new)
			}
			var vals []string
			if c.values != "" {
				v := filepath.Join(t.TempDir(), "values.yaml")
				if err := os.WriteFile(v, []byte(c.values), 0o644); err != nil {
					t.Fatal(err)
				}
				vals = append(vals, v)
			}
			out, err := h.Template(chart, vals...)
			if c.atTemplate {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("helm template: %v, want an error with %q", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var msgs []string
			objs, err := Decode(out)
			if err != nil {
				msgs = append(msgs, err.Error())
			} else {
				for _, e := range checkObjects(objs, hf, metrics) {
					msgs = append(msgs, e.Error())
				}
			}
			if !strings.Contains(strings.Join(msgs, "\n"), c.want) {
				t.Fatalf("errors %q, want one with %q", msgs, c.want)
			}
		})
	}
}

// runbookDoc is the document under docs/ that holds the alerts'
// runbooks.
const runbookDoc = "operations.md"

// runbooks is the runbook document the alerts' runbook_url points at.
func runbooks(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", runbookDoc))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// The runbook check fails on an alert without its section or with a
// runbook_url to another one.
func TestCheckRunbooksCatches(t *testing.T) {
	pr := &monitoringv1.PrometheusRule{Spec: monitoringv1.PrometheusRuleSpec{Groups: []monitoringv1.RuleGroup{{Name: "g", Rules: []monitoringv1.Rule{
		{Alert: "FleetACSDown", Annotations: map[string]string{"runbook_url": "https://x/docs/operations.md#fleetacsdown"}},
		{Alert: "FleetACSNoSection", Annotations: map[string]string{"runbook_url": "https://x/docs/operations.md#fleetacsnosection"}},
		{Alert: "FleetACSWrongAnchor", Annotations: map[string]string{"runbook_url": "https://x/docs/operations.md#fleetacsdown"}},
	}}}}}
	doc := "## Alerts\n\n#### FleetACSDown\n\ntext\n\n#### FleetACSWrongAnchor\n"
	var msgs []string
	for _, e := range CheckRunbooks(pr, doc) {
		msgs = append(msgs, e.Error())
	}
	got := strings.Join(msgs, "\n")
	if len(msgs) != 2 || !strings.Contains(got, "FleetACSNoSection: the runbook has no section") || !strings.Contains(got, "FleetACSWrongAnchor: runbook_url") {
		t.Fatalf("errors %q, want the missing section and the wrong anchor only", msgs)
	}
}
