package check

import (
	"context"
	"fmt"
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
		"gateway-1": {"7547:7547"}, "gateway-2": {"7557:7547"},
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
		{"unknown flag", `command: ["-gateway.auth-anonymous", "gateway"]`, `command: ["-gateway.auth-anonymus", "gateway"]`, "no flag -gateway.auth-anonymus", false},
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
			// The bind-mounted files, where the copy expects them.
			if err := os.MkdirAll(filepath.Join(dir, "deploy", "compose"), 0o755); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"prometheus.yml", "otel-collector.yaml"} {
				data, err := os.ReadFile(filepath.Join(root, "deploy", "compose", f))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "deploy", "compose", f), data, 0o644); err != nil {
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
