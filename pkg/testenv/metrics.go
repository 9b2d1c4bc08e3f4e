package testenv

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// Metric scrapes h (a Prometheus /metrics handler) and returns the sum of
// the samples of the series name whose labels include every name=value
// pair of labels (given as name, value, name, value, ...), and whether
// any sample matched.
func Metric(t testing.TB, h http.Handler, name string, labels ...string) (float64, bool) {
	t.Helper()
	if len(labels)%2 != 0 {
		t.Fatalf("Metric(%s): odd label list %q", name, labels)
	}
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rr.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rr.Code, rr.Body.String())
	}
	var sum float64
	found := false
	sc := bufio.NewScanner(rr.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		n, lbls, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		match := true
		for i := 0; i < len(labels); i += 2 {
			if !strings.Contains(","+lbls, ","+labels[i]+"=\""+labels[i+1]+"\"") {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		if sp := strings.IndexByte(value, ' '); sp >= 0 {
			value = value[:sp] // a timestamp follows
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("scrape: sample %q: %v", line, err)
		}
		sum += v
		found = true
	}
	return sum, found
}
