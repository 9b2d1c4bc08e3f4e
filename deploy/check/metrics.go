package check

import (
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
