package check

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Dashboard is the part of a Grafana dashboard's JSON model the checks
// read.
type Dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []Panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *DataSourceRef  `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

// Panel is a dashboard panel; a row holds its panels when collapsed.
type Panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *DataSourceRef `json:"datasource"`
	Targets    []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *DataSourceRef `json:"datasource"`
	} `json:"targets"`
	Panels  []Panel  `json:"panels"`
	GridPos *GridPos `json:"gridPos"`
}

// GridPos is a panel's place on the dashboard's grid of 24 columns.
type GridPos struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

func (g GridPos) overlaps(o GridPos) bool {
	return g.X < o.X+o.W && o.X < g.X+g.W && g.Y < o.Y+o.H && o.Y < g.Y+g.H
}

// DataSourceRef names a panel's or a target's data source.
type DataSourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// The dashboard's data source is the variable every panel and query names.
const dashboardDatasource = "${datasource}"

// CheckDashboard returns every way the dashboard JSON departs from what
// FleetACS's dashboard must be: a Prometheus data source variable and
// namespace and job variables; unique panel IDs; every panel other than a
// row on the data source variable with at least one query; every query a
// PromQL expression whose metrics FleetACS exports (metrics, from
// MetricNames; "up" is Prometheus's own).
func CheckDashboard(data []byte, metrics map[string]bool) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var d Dashboard
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		return []error{fmt.Errorf("dashboard JSON: %w", err)}
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 36 {
		bad("dashboard title %q, uid %q, schemaVersion %d: want a title, a uid and schemaVersion 36 or later", d.Title, d.UID, d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "query" {
			if v.Datasource == nil || v.Datasource.UID != dashboardDatasource {
				bad("variable %s: data source %+v, want %s", v.Name, v.Datasource, dashboardDatasource)
			}
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil {
				bad("variable %s: query %s: %v", v.Name, v.Query, err)
			}
			for _, n := range PromQLMetrics(q.Query) {
				if n != "up" && !metrics[n] {
					bad("variable %s: FleetACS exports no metric %s", v.Name, n)
				}
			}
		}
	}
	for name, typ := range map[string]string{"datasource": "datasource", "namespace": "query", "job": "query"} {
		if vars[name] != typ {
			bad("variable %s is %q, want a %s variable", name, vars[name], typ)
		}
	}

	ids := map[int]string{}
	var placed []Panel
	var walk func(ps []Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			if g := p.GridPos; g == nil || g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				bad("panel %q: grid position %+v, want one inside the 24 columns", p.Title, g)
			} else {
				for _, o := range placed {
					if g.overlaps(*o.GridPos) {
						bad("panels %q and %q overlap", o.Title, p.Title)
					}
				}
				placed = append(placed, p)
			}
			if p.ID <= 0 {
				bad("panel %q: no id", p.Title)
			} else if other, dup := ids[p.ID]; dup {
				bad("panels %q and %q share id %d", other, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Title == "" {
				bad("panel %d: no title", p.ID)
			}
			if p.Datasource == nil || p.Datasource.UID != dashboardDatasource || p.Datasource.Type != "prometheus" {
				bad("panel %q: data source %+v, want prometheus %s", p.Title, p.Datasource, dashboardDatasource)
			}
			if len(p.Targets) == 0 {
				bad("panel %q: no query", p.Title)
			}
			refs := map[string]bool{}
			for _, t := range p.Targets {
				if t.RefID == "" || refs[t.RefID] {
					bad("panel %q: query refId %q missing or repeated", p.Title, t.RefID)
				}
				refs[t.RefID] = true
				if t.Datasource != nil && t.Datasource.UID != dashboardDatasource {
					bad("panel %q, query %s: data source %+v, want %s", p.Title, t.RefID, t.Datasource, dashboardDatasource)
				}
				names := PromQLMetrics(t.Expr)
				if len(names) == 0 {
					bad("panel %q, query %s: no metric in %q", p.Title, t.RefID, t.Expr)
				}
				for _, n := range names {
					if n != "up" && !metrics[n] {
						bad("panel %q, query %s: FleetACS exports no metric %s", p.Title, t.RefID, n)
					}
				}
				if !strings.Contains(t.Expr, `namespace=~"$namespace"`) || !strings.Contains(t.Expr, `job=~"$job"`) {
					bad("panel %q, query %s: %q does not select $namespace and $job", p.Title, t.RefID, t.Expr)
				}
			}
		}
	}
	walk(d.Panels)
	return errs
}

var (
	promString  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promMatcher = regexp.MustCompile(`\{[^{}]*\}|\[[^\[\]]*\]`)
	// The label lists of aggregations and vector matching.
	promLabels = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promIdent  = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// promKeywords are PromQL's words that are not metric names where they
// stand without a parenthesis after them.
var promKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true, "start": true, "end": true,
}

// PromQLMetrics returns the metric names a PromQL expression (or a
// Grafana label_values(...) query) selects, bare or with matchers:
// identifiers that are neither a function called, a keyword, a label
// (inside matchers and by/without lists), a string, a range or a number.
// Grafana variables ($job, $__rate_interval) stand in strings or ranges.
func PromQLMetrics(expr string) []string {
	s := promString.ReplaceAllString(expr, `""`)
	s = promMatcher.ReplaceAllString(s, " ")
	s = promLabels.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		word := s[loc[0]:loc[1]]
		if loc[0] > 0 && (s[loc[0]-1] == '$' || (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9') || s[loc[0]-1] == '.') {
			continue // a variable, or a number's exponent or fraction
		}
		if promKeywords[strings.ToLower(word)] {
			continue
		}
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") {
			continue // a function or an aggregation
		}
		// label_values(metric, label): the label after the comma.
		if strings.HasPrefix(strings.TrimSpace(s[:loc[0]]), "label_values(") && strings.HasSuffix(strings.TrimSpace(s[:loc[0]]), ",") {
			continue
		}
		out = append(out, word)
	}
	return out
}
