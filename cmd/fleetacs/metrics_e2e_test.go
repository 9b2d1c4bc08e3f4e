package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// scrapeHandler serves what url serves, for testenv.Metric.
func scrapeHandler(url string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(url)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
}

// The /metrics of `fleetacs all` after a few sessions has the client
// metrics of its embedded stores and NATS, the task queue's gauges and the
// Go runtime's metrics.
func TestAllInOneMetrics(t *testing.T) {
	a := startAllInOne(t, t.TempDir())
	s, err := sim.New(sim.Config{URL: a.url(), Model: sim.TR181, Devices: 3, Seed: 7, SerialPrefix: "MET", BootStorm: true,
		Concurrency: 3, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if sum, err := s.Run(context.Background()); err != nil || sum.SessionsOK < 3 {
		t.Fatalf("cpesim: %+v, %v", sum, err)
	}
	h := scrapeHandler(fmt.Sprintf("http://127.0.0.1:%d/metrics", a.admin))
	for _, system := range []string{"sqlite", "nats"} {
		if n, _ := testenv.Metric(t, h, "fleetacs_client_request_duration_seconds_count", "system", system); n == 0 {
			t.Errorf("no %s calls recorded", system)
		}
	}
	for _, name := range []string{"fleetacs_tasks_queue_depth", "fleetacs_tasks_queue_oldest_age_seconds", "go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := testenv.Metric(t, h, name); !ok {
			t.Errorf("no %s", name)
		}
	}
	a.stopClean(t)
}
