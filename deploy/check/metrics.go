package check

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// instrumentCall finds the OpenTelemetry instruments the code creates: the
// meter's constructors, and the sessions engine's counter("name", ...)
// helper.
var instrumentCall = regexp.MustCompile(`(?:(?:Int64|Float64)(?:Observable)?(?:Counter|UpDownCounter|Histogram|Gauge)|\bcounter)\(\s*"([a-z][a-z0-9_.]*)"`)

// MetricNames returns the Prometheus series names FleetACS can export,
// from the instruments created in the Go sources under root (tests and
// generated code aside): each instrument's name with dots as underscores,
// with the suffixes the Prometheus exporter may add (_total for counters;
// _seconds or _bytes for a unit; _bucket, _count and _sum for
// histograms). Generous on suffixes, it still refuses a name no
// instrument has.
func MetricNames(root string) (map[string]bool, error) {
	names := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == root {
				return nil
			}
			switch d.Name() {
			case ".git", "bin", "data", "third_party", "node_modules", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || strings.HasSuffix(path, ".pb.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for call, list := range collectorMetrics {
			if bytes.Contains(src, []byte(call)) {
				for _, n := range list {
					names[n] = true
				}
			}
		}
		for _, m := range instrumentCall.FindAllSubmatch(src, -1) {
			base := strings.ReplaceAll(string(m[1]), ".", "_")
			for _, unit := range []string{"", "_seconds", "_bytes"} {
				for _, suffix := range []string{"", "_total", "_bucket", "_count", "_sum"} {
					names[base+unit+suffix] = true
				}
			}
		}
		return nil
	})
	return names, err
}

// collectorMetrics are the names client_golang's collectors export, by
// the call that registers them (pkg/telemetry).
var collectorMetrics = map[string][]string{
	"collectors.NewGoCollector(": {
		"go_goroutines", "go_threads", "go_info", "go_gc_duration_seconds", "go_gc_duration_seconds_count", "go_gc_duration_seconds_sum",
		"go_memstats_alloc_bytes", "go_memstats_alloc_bytes_total", "go_memstats_heap_alloc_bytes", "go_memstats_heap_inuse_bytes",
		"go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes", "go_memstats_heap_objects", "go_memstats_sys_bytes",
		"go_memstats_mallocs_total", "go_memstats_frees_total", "go_memstats_next_gc_bytes", "go_memstats_stack_inuse_bytes",
		"go_memstats_last_gc_time_seconds", "go_gc_gogc_percent", "go_gc_gomemlimit_bytes", "go_sched_gomaxprocs_threads",
	},
	"collectors.NewProcessCollector(": {
		"process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes", "process_virtual_memory_max_bytes",
		"process_open_fds", "process_max_fds", "process_start_time_seconds", "process_network_receive_bytes_total",
		"process_network_transmit_bytes_total",
	},
}

// promName finds the metric names of a PromQL expression: identifiers
// followed by a label matcher or a range, the form every FleetACS alert
// uses (rate(x{...}[5m]), x{...} == 0).
var promName = regexp.MustCompile(`\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{`)

// ExprMetrics returns the metric names expr selects.
func ExprMetrics(expr string) []string {
	var out []string
	for _, m := range promName.FindAllStringSubmatch(expr, -1) {
		out = append(out, m[1])
	}
	return out
}
