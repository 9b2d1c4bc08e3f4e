package campaigns

import (
	"testing"
	"time"

	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// BenchmarkRunnerFirmware10k measures the runner's own cost: a firmware
// campaign over 10,000 devices (waves 1%, 10%, 100%; 1,000 in flight) on
// the SQLite store, with stand-ins for the inventory, the tasks service
// and the files service whose tasks end, and whose devices report the new
// version, at once. devices/s is how many devices a runner takes from
// PENDING to SUCCEEDED per second when nothing else is the limit (passes
// run back to back: the -campaigns.interval wait is left out).
func BenchmarkRunnerFirmware10k(b *testing.B) {
	const devices = 10_000
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		h := newHarness(b, devices)
		h.pageSize = 500
		h.svc = h.restart()
		spec := firmwareSpec()
		spec.MaxInFlight = 1000
		spec.Waves = []*campaignsv1.Wave{{Size: &campaignsv1.Wave_Percent{Percent: 1}}, {Size: &campaignsv1.Wave_Percent{Percent: 10}}, {Size: &campaignsv1.Wave_Percent{Percent: 100}}}
		c := h.create(spec)
		b.StartTimer()
		start := time.Now()
		for passes := 0; ; passes++ {
			h.pass()
			r, err := h.store.Get(b.Context(), "default", c.GetId())
			if err != nil {
				b.Fatal(err)
			}
			if r.State == campaignsv1.CampaignState_CAMPAIGN_STATE_COMPLETED {
				break
			}
			if passes > 200 {
				b.Fatalf("not completed after %d passes: %v", passes, h.get(c.GetId()).GetTotals())
			}
			for _, d := range h.tasks.endAll(tasksv1.TaskState_TASK_STATE_DONE, nil) {
				h.inv.setVersion(d, "2.0")
			}
		}
		total += time.Since(start)
		b.StopTimer()
		if got := h.get(c.GetId()).GetTotals().GetSucceeded(); got != devices {
			b.Fatalf("%d succeeded", got)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(devices)*float64(b.N)/total.Seconds(), "devices/s")
}
