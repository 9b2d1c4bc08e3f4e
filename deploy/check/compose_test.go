package check

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository, two levels up from deploy/check.
func repoRoot(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func help(t *testing.T) *Fleetacs {
	t.Helper()
	h, err := ReadHelp(filepath.Join(repoRoot(t), "cmd", "fleetacs", "testdata", "help.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// loadCompose loads a compose file with the specification's schema
// validation and consistency checks on, and no environment from the host,
// so that the result is the same on every machine.
func loadCompose(path string) (*types.Project, error) {
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  filepath.Dir(path),
		ConfigFiles: []types.ConfigFile{{Filename: path}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) {
		o.SetProjectName("fleetacs", true)
	})
}

// The FleetACS services of docker-compose.yml and the port each publishes
// (host:container), the others it must hold, and those without a
// health check because their images have no tool to run one.
var (
	composeFleetacs = map[string][]string{
		"gateway-1": {"7547:7547", "9320:9300", "9382:9380"}, "gateway-2": {"7557:7547"},
		"sessions-1": nil, "sessions-2": nil,
		"inventory": {"9300:9300", "9380:9380"}, "tasks": {"9310:9300", "9381:9380"},
		"notifier": {"3478:3478/udp"},
	}
	composeOthers = map[string][]string{
		"secrets-init": nil, "mongodb": nil, "redis": nil, "nats": nil,
		"otel-collector": nil, "jaeger": {"16686:16686"}, "prometheus": {"9090:9090"},
	}
	// The collector and Jaeger images are distroless: no shell, no
	// wget. secrets-init runs once and exits.
	composeNoHealthcheck = []string{"secrets-init", "otel-collector", "jaeger"}
)

func TestComposeFile(t *testing.T) {
	root := repoRoot(t)
	p, err := loadCompose(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if errs := checkCompose(p, help(t), root); len(errs) > 0 {
		for _, e := range errs {
			t.Error(e)
		}
	}
}

// checkCompose returns every way the project departs from what FleetACS's
// compose setup must be.
func checkCompose(p *types.Project, h *Fleetacs, root string) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	want := map[string][]string{}
	for n, ports := range composeFleetacs {
		want[n] = ports
	}
	for n, ports := range composeOthers {
		want[n] = ports
	}
	for n := range want {
		if _, ok := p.Services[n]; !ok {
			bad("service %s missing", n)
		}
	}
	for n := range p.Services {
		if _, ok := want[n]; !ok {
			bad("service %s is not one the check knows: add it to the check", n)
		}
	}

	for n, s := range p.Services {
		// Published ports.
		var got []string
		for _, pc := range s.Ports {
			proto := ""
			if pc.Protocol != "" && pc.Protocol != "tcp" {
				proto = "/" + pc.Protocol
			}
			got = append(got, fmt.Sprintf("%s:%d%s", pc.Published, pc.Target, proto))
		}
		sort.Strings(got)
		w := slices.Clone(want[n])
		sort.Strings(w)
		if strings.Join(got, " ") != strings.Join(w, " ") {
			bad("%s publishes %v, want %v", n, got, w)
		}

		// Health checks, and dependencies that wait for them.
		hc := s.HealthCheck != nil && !s.HealthCheck.Disable && len(s.HealthCheck.Test) > 0
		if hc == slices.Contains(composeNoHealthcheck, n) {
			bad("%s: health check %v, want %v", n, hc, !hc)
		}
		for dep, d := range s.DependsOn {
			ds, ok := p.Services[dep]
			if !ok {
				bad("%s depends on unknown %s", n, dep)
				continue
			}
			wantCond := types.ServiceConditionStarted
			switch {
			case dep == "secrets-init":
				wantCond = types.ServiceConditionCompletedSuccessfully
			case ds.HealthCheck != nil && !ds.HealthCheck.Disable:
				wantCond = types.ServiceConditionHealthy
			}
			if d.Condition != wantCond {
				bad("%s waits for %s to be %s, want %s", n, dep, d.Condition, wantCond)
			}
		}

		// Nothing secret in clear: variables naming a password, token,
		// secret or key hold a file path, never the value.
		for k, v := range s.Environment {
			up := strings.ToUpper(k)
			if v == nil || strings.HasSuffix(up, "_FILE") {
				continue
			}
			for _, word := range []string{"PASSWORD", "TOKEN", "SECRET", "KEY"} {
				if strings.Contains(up, word) {
					bad("%s: %s holds a value in clear; give a file (…_FILE) from the secrets volume", n, k)
				}
			}
		}

		// Bind-mounted configuration files exist.
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					bad("%s mounts %s: %v", n, v.Source, err)
				}
			}
		}

		if _, ok := composeFleetacs[n]; !ok {
			continue
		}
		// FleetACS services: the command line and variables fleetacs has,
		// the shared secrets, a health check by fleetacs itself.
		if len(s.Entrypoint) > 0 {
			bad("%s overrides the image's entry point", n)
		}
		if err := h.CheckArgs(s.Command); err != nil {
			bad("%s command %q: %v", n, s.Command, err)
		}
		for k := range s.Environment {
			if err := h.CheckEnv(k); err != nil {
				bad("%s: %v", n, err)
			}
		}
		if s.HealthCheck != nil && len(s.HealthCheck.Test) > 1 {
			if err := h.CheckArgs(s.HealthCheck.Test[2:]); s.HealthCheck.Test[1] != "/usr/local/bin/fleetacs" || err != nil {
				bad("%s health check %q: want fleetacs healthcheck (%v)", n, s.HealthCheck.Test, err)
			}
		}
		if tf := s.Environment["FLEETACS_INTERNAL_TOKEN_FILE"]; tf == nil || !strings.HasPrefix(*tf, "/run/fleetacs/") {
			bad("%s: the internal token must come from the secrets volume", n)
		}
		if s.Image == "" || s.Build == nil {
			bad("%s: want the image built from the repository's Dockerfile", n)
		}
	}

	errs = append(errs, checkComposeFiles(p, root)...)

	// Prometheus scrapes every FleetACS service's admin listener.
	if errs2 := checkPrometheus(filepath.Join(root, "deploy", "compose", "prometheus.yml")); errs2 != nil {
		errs = append(errs, errs2...)
	}
	// The collector sends traces to Jaeger.
	otel, err := os.ReadFile(filepath.Join(root, "deploy", "compose", "otel-collector.yaml"))
	if err != nil {
		bad("%v", err)
	} else {
		var c struct {
			Receivers map[string]any `json:"receivers"`
			Exporters map[string]struct {
				Endpoint string `json:"endpoint"`
			} `json:"exporters"`
			Service struct {
				Pipelines map[string]struct {
					Receivers []string `json:"receivers"`
					Exporters []string `json:"exporters"`
				} `json:"pipelines"`
			} `json:"service"`
		}
		if err := yaml.Unmarshal(otel, &c); err != nil {
			bad("otel-collector.yaml: %v", err)
		}
		tr := c.Service.Pipelines["traces"]
		if _, ok := c.Receivers["otlp"]; !ok || !slices.Contains(tr.Receivers, "otlp") {
			bad("otel-collector.yaml: no otlp receiver in the traces pipeline")
		}
		if len(tr.Exporters) == 0 || c.Exporters[tr.Exporters[0]].Endpoint != "jaeger:4317" {
			bad("otel-collector.yaml: the traces pipeline does not export to jaeger:4317")
		}
	}
	return errs
}

// composeGateways are the services that run the files module, as the
// Helm chart's gateways do with files.enabled.
var composeGateways = []string{"gateway-1", "gateway-2"}

// checkComposeFiles checks the files module's setup against the Helm
// chart's: in every gateway, on MongoDB (the inventory's server) with
// GridFS in the chart's bucket, the public API listeners on, one URL key
// file from the secrets volume that secrets-init makes, a base URL, and
// the gateways waiting for MongoDB.
func checkComposeFiles(p *types.Project, root string) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var values struct {
		Files struct {
			GridfsBucket string `json:"gridfsBucket"`
			DeviceAuth   string `json:"deviceAuth"`
		} `json:"files"`
	}
	data, err := os.ReadFile(filepath.Join(root, "deploy", "helm", "fleetacs", "values.yaml"))
	if err == nil {
		err = yaml.Unmarshal(data, &values)
	}
	if err != nil || values.Files.GridfsBucket == "" {
		return []error{fmt.Errorf("helm values: files.gridfsBucket: %v", err)}
	}
	env := func(s types.ServiceConfig, k string) string {
		if v := s.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
	mongoURI := env(p.Services["inventory"], "FLEETACS_INVENTORY_MONGODB_URI")
	keyFiles := map[string]bool{}
	for _, n := range composeGateways {
		s, ok := p.Services[n]
		if !ok {
			continue
		}
		var targets []string
		for _, a := range s.Command {
			if !strings.HasPrefix(a, "-") {
				targets = append(targets, a)
			}
		}
		if !slices.Contains(targets, "gateway") || !slices.Contains(targets, "files") {
			bad("%s runs %v, want gateway and files", n, targets)
		}
		for k, want := range map[string]string{
			"FLEETACS_FILES_STORE":          "mongodb",
			"FLEETACS_FILES_MONGODB_URI":    mongoURI,
			"FLEETACS_FILES_GRIDFS_BUCKET":  values.Files.GridfsBucket,
			"FLEETACS_FILES_DEVICE_AUTH":    values.Files.DeviceAuth,
			"FLEETACS_SERVER_GRPC_ADDR":     ":9300",
			"FLEETACS_SERVER_API_HTTP_ADDR": ":9380",
		} {
			if got := env(s, k); got != want || want == "" {
				bad("%s: %s is %q, want %q (the Helm chart's files setup)", n, k, got, want)
			}
		}
		if u := env(s, "FLEETACS_FILES_BASE_URL"); !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			bad("%s: FLEETACS_FILES_BASE_URL %q: want the URL CPEs reach /files/ at", n, u)
		}
		kf := env(s, "FLEETACS_FILES_URL_KEY_FILE")
		if !strings.HasPrefix(kf, "/run/fleetacs/") {
			bad("%s: FLEETACS_FILES_URL_KEY_FILE %q: want a file of the secrets volume", n, kf)
		}
		keyFiles[kf] = true
		if d, ok := s.DependsOn["mongodb"]; !ok || d.Condition != types.ServiceConditionHealthy {
			bad("%s: the files store is on MongoDB: want it to wait for mongodb to be healthy", n)
		}
	}
	// The workers resolve preset firmware through the files module's
	// internal API: a gateway's internal listener on the compose network,
	// by the gateway's name or a name every files gateway answers to, and
	// the token the gateways check.
	names := map[string][]string{} // host -> the services it reaches
	for n, s := range p.Services {
		names[n] = append(names[n], n)
		for _, nc := range s.Networks {
			if nc != nil {
				for _, a := range nc.Aliases {
					names[a] = append(names[a], n)
				}
			}
		}
	}
	for _, w := range []string{"sessions-1", "sessions-2"} {
		s, ok := p.Services[w]
		if !ok {
			continue
		}
		addr := env(s, "FLEETACS_CLIENT_FILES_ADDR")
		host, port, err := net.SplitHostPort(addr)
		targets := slices.Sorted(slices.Values(names[host]))
		if err != nil || len(targets) == 0 || !allIn(targets, composeGateways...) {
			bad("%s: FLEETACS_CLIENT_FILES_ADDR %q: want a gateway's name, or a name of the files gateways alone (reaches %v)", w, addr, targets)
			continue
		}
		for _, g := range targets {
			gs := p.Services[g]
			if l := env(gs, "FLEETACS_SERVER_INTERNAL_GRPC_ADDR"); l != ":"+port {
				bad("%s: FLEETACS_CLIENT_FILES_ADDR %q, but %s's internal listener is %q: want \":%s\" (all interfaces)", w, addr, g, l, port)
			}
			if env(gs, "FLEETACS_INTERNAL_TOKEN_FILE") != env(s, "FLEETACS_INTERNAL_TOKEN_FILE") {
				bad("%s and %s: different internal token files", w, g)
			}
		}
	}
	if len(keyFiles) != 1 {
		bad("the gateways' files URL key files %v: want one, shared (a URL one signs, the other serves)", keyFiles)
	}
	init := p.Services["secrets-init"]
	for kf := range keyFiles {
		base := strings.TrimPrefix(kf, "/run/fleetacs/")
		if script := strings.Join(init.Command, " "); !strings.Contains(script, "> "+base) || !strings.Contains(script, "chmod 0400") {
			bad("secrets-init does not make %s", base)
		}
	}
	return errs
}

func checkPrometheus(path string) []error {
	data, err := os.ReadFile(path)
	if err != nil {
		return []error{err}
	}
	var c struct {
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		return []error{fmt.Errorf("%s: %w", path, err)}
	}
	targets := map[string]bool{}
	for _, sc := range c.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets[tg] = true
			}
		}
	}
	var errs []error
	for n := range composeFleetacs {
		if !targets[n+":9100"] {
			errs = append(errs, fmt.Errorf("prometheus.yml does not scrape %s:9100", n))
		}
	}
	return errs
}

// The check is not a formality: a compose file that breaks the
// specification, names a flag fleetacs lacks, puts a secret in clear or
// waits for a service without its health check is refused.
func TestComposeCheckCatches(t *testing.T) {
	root := repoRoot(t)
	orig, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	h := help(t)
	for _, c := range []struct {
		name, old, new, want string
		loadErr              bool
	}{
		{"unknown flag", `command: ["-gateway.auth-anonymous", "gateway", "files"]`, `command: ["-gateway.auth-anonymus", "gateway", "files"]`, "no flag -gateway.auth-anonymus", false},
		{"gateway without files", `command: ["-gateway.auth-anonymous", "gateway", "files"]
    environment: *gateway-env`, `command: ["-gateway.auth-anonymous", "gateway"]
    environment: *gateway-env`, "gateway-2 runs [gateway], want gateway and files", false},
		{"files on sqlite", "FLEETACS_FILES_STORE: mongodb", "FLEETACS_FILES_STORE: sqlite", "FLEETACS_FILES_STORE is \"sqlite\"", false},
		{"files in another bucket", "FLEETACS_FILES_GRIDFS_BUCKET: fleetacs_files", "FLEETACS_FILES_GRIDFS_BUCKET: files", "FLEETACS_FILES_GRIDFS_BUCKET is \"files\"", false},
		{"files URL key not made", "> files-url.key", "> files-url.txt", "secrets-init does not make files-url.key", false},
		{"files URL key in clear", "FLEETACS_FILES_URL_KEY_FILE: /run/fleetacs/files-url.key", "FLEETACS_FILES_URL_KEY: c2VjcmV0", "in clear", false},
		{"gateways not waiting for MongoDB", "      secrets-init:\n        condition: service_completed_successfully\n      mongodb:\n        condition: service_healthy\n      redis:\n        condition: service_healthy\n      inventory:", "      secrets-init:\n        condition: service_completed_successfully\n      redis:\n        condition: service_healthy\n      inventory:", "gateway-1: the files store is on MongoDB", false},
		{"workers without the files address", "      FLEETACS_CLIENT_FILES_ADDR: files:9301\n", "", `sessions-1: FLEETACS_CLIENT_FILES_ADDR ""`, false},
		{"files address not a gateway", "FLEETACS_CLIENT_FILES_ADDR: files:9301", "FLEETACS_CLIENT_FILES_ADDR: inventory:9301", "want a gateway's name", false},
		{"gateway internal on loopback", `FLEETACS_GATEWAY_LISTEN_ADDR: ":7547"`, "FLEETACS_GATEWAY_LISTEN_ADDR: \":7547\"\n      FLEETACS_SERVER_INTERNAL_GRPC_ADDR: 127.0.0.1:9301", `internal listener is "127.0.0.1:9301"`, false},
		{"unknown target", `command: ["notifier"]`, `command: ["notifer"]`, `no target "notifer"`, false},
		{"unknown variable", "FLEETACS_REDIS_ADDR: redis:6379", "FLEETACS_REDIS_ADDRESS: redis:6379", "no variable FLEETACS_REDIS_ADDRESS", false},
		{"secret in clear", "FLEETACS_REDIS_ADDR: redis:6379", "FLEETACS_REDIS_ADDR: redis:6379\n  FLEETACS_REDIS_PASSWORD: hunter2", "in clear", false},
		{"started, not healthy", "      mongodb:\n        condition: service_healthy\n\n  tasks:", "      mongodb:\n        condition: service_started\n\n  tasks:", "waits for mongodb", false},
		{"no health check", `    test: ["CMD", "redis-cli", "ping"]`, `    disable: true`, "redis: health check false", false},
		{"port moved", `"7557:7547"`, `"7558:7547"`, "gateway-2 publishes", false},
		{"not the spec", "    image: redis:7.4-alpine\n", "    image: redis:7.4-alpine\n    no_such_key: 1\n", "", true},
		{"bad duration", "interval: 5s\n    timeout: 4s", "interval: five\n    timeout: 4s", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(string(orig), c.old) {
				t.Fatalf("docker-compose.yml no longer holds %q: update the case", c.old)
			}
			mod := strings.Replace(string(orig), c.old, c.new, 1)
			dir := t.TempDir()
			// The bind-mounted files, where the copy expects them, and the
			// chart's values the files setup is checked against.
			for _, f := range []string{"deploy/compose/prometheus.yml", "deploy/compose/otel-collector.yaml", "deploy/helm/fleetacs/values.yaml"} {
				data, err := os.ReadFile(filepath.Join(root, f))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "docker-compose.yml")
			if err := os.WriteFile(path, []byte(mod), 0o644); err != nil {
				t.Fatal(err)
			}
			p, err := loadCompose(path)
			if c.loadErr {
				if err == nil {
					t.Fatal("loaded without an error")
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			errs := checkCompose(p, h, dir)
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			if !strings.Contains(strings.Join(msgs, "\n"), c.want) {
				t.Fatalf("errors %q, want one with %q", msgs, c.want)
			}
		})
	}
}
