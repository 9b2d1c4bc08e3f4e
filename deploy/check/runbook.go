package check

import (
	"fmt"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)

// CheckRunbooks returns every alert of pr whose runbook is missing: its
// runbook_url must end in the anchor of its name (#fleetacsdown for
// FleetACSDown) and the runbook document (docs/operations.md, "Alerts") must
// have a "#### <alert>" section for it.
func CheckRunbooks(pr *monitoringv1.PrometheusRule, doc string) []error {
	var errs []error
	headings := map[string]bool{}
	for _, line := range strings.Split(doc, "\n") {
		if name, ok := strings.CutPrefix(line, "#### "); ok {
			headings[strings.TrimSpace(name)] = true
		}
	}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if url := r.Annotations["runbook_url"]; !strings.HasSuffix(url, "#"+strings.ToLower(r.Alert)) {
				errs = append(errs, fmt.Errorf("alert %s: runbook_url %q, want it to end in #%s", r.Alert, url, strings.ToLower(r.Alert)))
			}
			if !headings[r.Alert] {
				errs = append(errs, fmt.Errorf("alert %s: the runbook has no section \"#### %s\"", r.Alert, r.Alert))
			}
		}
	}
	return errs
}
