package check

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func dashboardFile(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "grafana", "fleetacs.json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The dashboard is well formed and every query selects metrics the code
// exports.
func TestGrafanaDashboard(t *testing.T) {
	metrics, err := MetricNames(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	data := dashboardFile(t)
	for _, e := range CheckDashboard(data, metrics) {
		t.Error(e)
	}
	// One row per service, and the panels the runbook names.
	var rows, titles []string
	var d Dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Panels {
		if p.Type == "row" {
			rows = append(rows, p.Title)
		} else {
			titles = append(titles, p.Title)
		}
	}
	for _, want := range []string{"Overview", "Gateway", "Sessions", "Inventory", "Tasks", "Notifier", "Dependencies", "Go runtime"} {
		if !slices.Contains(rows, want) {
			t.Errorf("no row %q (rows %v)", want, rows)
		}
	}
	for _, want := range []string{"Session funnel", "Task flow", "Admission shed", "Exchange duration", "Connection requests by outcome",
		"Task queue depth", "Oldest queued task age", "Dependency latency p99 by system", "Dependency error rate by system",
		"CPU per service", "Goroutines", "Heap in use", "GC pause"} {
		if !slices.Contains(titles, want) {
			t.Errorf("no panel %q", want)
		}
	}
}

func TestPromQLMetrics(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`sum by (outcome) (rate(fleetacs_sessions_ended_total{job=~"$job", outcome!="x{y}"}[$__rate_interval]))`, []string{"fleetacs_sessions_ended_total"}},
		{`histogram_quantile(0.99, sum by (le, rpc_method) (rate(rpc_server_call_duration_seconds_bucket[5m])))`, []string{"rpc_server_call_duration_seconds_bucket"}},
		{`sum(rate(a_total[1m])) / sum(rate(b_total{x="1"}[1m])) > 1e3 and on (job) up == 0`, []string{"a_total", "b_total", "up"}},
		{`sum(rate(a_total[1m] offset 5m)) without (pod) or vector(0)`, []string{"a_total"}},
		{`label_values(up{namespace=~"$namespace"}, job)`, []string{"up"}},
		{`fleetacs_gateway_connections_open`, []string{"fleetacs_gateway_connections_open"}},
	} {
		if got := PromQLMetrics(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("PromQLMetrics(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

// The check fails on a broken dashboard.
func TestGrafanaDashboardCheckCatches(t *testing.T) {
	metrics, err := MetricNames(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	data := string(dashboardFile(t))
	for _, c := range []struct {
		name, old, new, want string
	}{
		{"unknown metric", "fleetacs_sessions_takeovers_total{", "fleetacs_sessions_takeover_count{", "no metric fleetacs_sessions_takeover_count"},
		{"bare unknown metric", `sum by (instance) (fleetacs_sessions_active{namespace=~\"$namespace\", job=~\"$job\"})`, `sum by (instance) (fleetacs_sessions_idle) + 0 * up{namespace=~\"$namespace\", job=~\"$job\"}`, "no metric fleetacs_sessions_idle"},
		{"duplicate id", `"id": 3,`, `"id": 2,`, "share id 2"},
		{"no data source", `"datasource": {
        "type": "prometheus",
        "uid": "${datasource}"
      },
      "gridPos"`, `"gridPos"`, "want prometheus ${datasource}"},
		{"no query", `"targets": [`, `"targets": [], "unused": [`, "no query"},
		{"no job filter", `rate(fleetacs_sessions_started_total{namespace=~\"$namespace\", job=~\"$job\"}`, `rate(fleetacs_sessions_started_total{namespace=~\"$namespace\"}`, "does not select $namespace and $job"},
		{"no job variable", `"name": "job"`, `"name": "jobs"`, "variable job"},
		{"overlap", `"x": 8,`, `"x": 4,`, "overlap"},
		{"too wide", `"w": 8,`, `"w": 28,`, "inside the 24 columns"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(data, c.old) {
				t.Fatalf("the dashboard no longer holds %q: update the case", c.old)
			}
			errs := CheckDashboard([]byte(strings.Replace(data, c.old, c.new, 1)), metrics)
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			if !strings.Contains(strings.Join(msgs, "\n"), c.want) {
				t.Errorf("errors %q, want one with %q", msgs, c.want)
			}
		})
	}
}

// dashboardKey is the dashboard's key in the chart's ConfigMap.
const dashboardKey = "fleetacs.json"

// The chart ships the dashboard of deploy/grafana as it is (helm reads
// no file outside the chart, so the chart holds a copy).
func TestChartDashboardIsTheDashboard(t *testing.T) {
	chartCopy, err := os.ReadFile(filepath.Join(chartDir(t), "dashboards", "fleetacs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(chartCopy) != string(dashboardFile(t)) {
		t.Errorf("deploy/helm/fleetacs/dashboards/fleetacs.json differs from deploy/grafana/fleetacs.json: cp deploy/grafana/fleetacs.json deploy/helm/fleetacs/dashboards/")
	}
}

// MetricNames knows the services' instruments and the Go runtime's and
// process's metrics pkg/telemetry registers, and nothing it was not told.
func TestMetricNamesKnowsCollectors(t *testing.T) {
	metrics, err := MetricNames(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes",
		"process_cpu_seconds_total", "fleetacs_sessions_exchange_duration_seconds_bucket",
		"fleetacs_client_request_duration_seconds_bucket", "fleetacs_client_request_errors_total",
		"fleetacs_tasks_queue_depth", "fleetacs_tasks_queue_oldest_age_seconds"} {
		if !metrics[want] {
			t.Errorf("MetricNames lacks %s", want)
		}
	}
	if metrics["go_no_such_metric"] || metrics["process_no_such_metric"] {
		t.Error("MetricNames invents names")
	}
}
