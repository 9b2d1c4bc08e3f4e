package campaigns

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fleetacs/fleetacs/pkg/provisioning"
	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/campaigns/store"
)

func (h *harness) create(spec *campaignsv1.CampaignSpec) *campaignsv1.Campaign {
	h.t.Helper()
	resp, err := (&publicServer{s: h.svc}).CreateCampaign(h.t.Context(), &campaignsv1.CreateCampaignRequest{Name: "test", Spec: spec})
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.GetCampaign()
}

func (h *harness) get(id string) *campaignsv1.Campaign {
	h.t.Helper()
	resp, err := (&publicServer{s: h.svc}).GetCampaign(h.t.Context(), &campaignsv1.GetCampaignRequest{Id: id})
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.GetCampaign()
}

// upgrade ends every open task done and reports the new version for
// those devices, as the devices would after their reboot.
func (h *harness) upgrade(version string) []string {
	ds := h.tasks.endAll(tasksv1.TaskState_TASK_STATE_DONE, nil)
	for _, d := range ds {
		h.inv.setVersion(d, version)
	}
	return ds
}

func firmwareSpec() *campaignsv1.CampaignSpec {
	return &campaignsv1.CampaignSpec{
		Action:      &campaignsv1.CampaignSpec_Firmware{Firmware: &campaignsv1.FirmwareAction{Version: "2.0"}},
		Waves:       []*campaignsv1.Wave{{Size: &campaignsv1.Wave_Count{Count: 5}}, {Size: &campaignsv1.Wave_Percent{Percent: 100}}},
		MaxInFlight: 3,
	}
}

// TestWavesCapAndVerification: 25 devices in a wave of 5 then the rest,
// at most 3 in flight; the second wave starts only once every device of
// the first has an outcome; a device whose version does not change fails
// verification after the timeout.
func TestWavesCapAndVerification(t *testing.T) {
	h := newHarness(t, 25)
	c := h.create(firmwareSpec())
	h.pass()
	got := h.get(c.GetId())
	if got.GetPlannedDevices() != 25 || len(got.GetWaves()) != 2 || got.GetWaves()[0].GetDevices() != 5 || got.GetWaves()[1].GetDevices() != 20 {
		t.Fatalf("planned: %d, waves %v", got.GetPlannedDevices(), got.GetWaves())
	}
	if n := h.tasks.open(); n != 3 {
		t.Fatalf("%d tasks in flight after the first pass, want the cap of 3", n)
	}
	// Two devices upgrade; the third's task ends but its version stays.
	ds := h.tasks.endAll(tasksv1.TaskState_TASK_STATE_DONE, nil)
	for _, d := range ds[:2] {
		h.inv.setVersion(d, "2.0")
	}
	h.pass()
	got = h.get(c.GetId())
	if w := got.GetWaves()[0].GetOutcomes(); w.GetSucceeded() != 2 || w.GetVerifying() != 1 || w.GetInFlight() != 2 {
		t.Fatalf("wave 0 after a pass: %v", w)
	}
	// The rest of wave 0 done; wave 1 waits for the one being verified.
	h.upgrade("2.0")
	h.pass()
	if w1 := h.get(c.GetId()).GetWaves()[1].GetOutcomes(); w1.GetPending() != 20 {
		t.Fatalf("wave 1 began while wave 0 verified a device: %v", w1)
	}
	h.advance(defaultVerify*time.Second + time.Second)
	h.pass()
	got = h.get(c.GetId())
	if w := got.GetWaves()[0].GetOutcomes(); w.GetSucceeded() != 4 || w.GetFailed() != 1 {
		t.Fatalf("wave 0 after the verify timeout: %v", w)
	}
	if w1 := got.GetWaves()[1].GetOutcomes(); w1.GetInFlight() != 3 || got.GetWaves()[1].GetStartTime() == nil {
		t.Fatalf("wave 1: %v", got.GetWaves()[1])
	}
	for range 20 {
		h.upgrade("2.0")
		h.pass()
	}
	got = h.get(c.GetId())
	if got.GetState() != campaignsv1.CampaignState_CAMPAIGN_STATE_COMPLETED || got.GetTotals().GetSucceeded() != 24 || got.GetTotals().GetFailed() != 1 || got.GetEndTime() == nil {
		t.Fatalf("end: %s %v", got.GetState(), got.GetTotals())
	}
	resp, err := (&publicServer{s: h.svc}).GetCampaign(t.Context(), &campaignsv1.GetCampaignRequest{Id: c.GetId(), FailedDevices: 10})
	if err != nil || len(resp.GetFailedDevices()) != 1 || !strings.Contains(resp.GetFailedDevices()[0].GetDetail(), `SoftwareVersion "1.0", expected "2.0"`) {
		t.Fatalf("failed devices: %v %v", err, resp.GetFailedDevices())
	}
	for d, n := range h.tasks.perDevice() {
		if n != 1 {
			t.Errorf("device %s got %d tasks", d, n)
		}
	}
	// Every Download carries the campaign as its command key and a URL
	// signed for its own device; the campaign is the task's requester.
	for _, task := range h.tasks.byID {
		dl := task.GetOperation().GetDownload()
		if dl.GetCommandKey() != c.GetId() || !strings.Contains(dl.GetUrl(), "d="+task.GetDeviceId()+"&") || task.GetOptions().GetAwaitTimeoutSeconds() != defaultTransfer ||
			task.GetRequester() != "campaign:"+c.GetId() {
			t.Fatalf("task %v", task)
		}
	}
}

// flakyStore loses the device updates that record a created task while
// lose is set: a runner that crashed between creating a task and
// recording it.
type flakyStore struct {
	store.Store
	lose atomic.Bool
	lost atomic.Int64
}

func (f *flakyStore) UpdateDevice(ctx context.Context, d store.Device) error {
	if f.lose.Load() && d.Outcome == campaignsv1.Outcome_OUTCOME_IN_FLIGHT {
		f.lost.Add(1)
		return errors.New("crash")
	}
	return f.Store.UpdateDevice(ctx, d)
}

// TestRestartCreatesNoSecondTask: tasks created by a runner that died
// before recording them are found again by a restarted runner through
// their idempotency keys (the firmware URLs it signs anew differ), so no
// device gets a second task; planning resumes from the stored page token.
func TestRestartCreatesNoSecondTask(t *testing.T) {
	h := newHarness(t, 30)
	fs := &flakyStore{Store: h.store}
	h.store = fs
	h.svc = h.restart()
	spec := firmwareSpec()
	spec.MaxInFlight = 10
	c := h.create(spec)
	fs.lose.Store(true)
	h.pass()
	if fs.lost.Load() != 5 || h.tasks.open() != 5 {
		t.Fatalf("lost %d records, %d tasks open; want 5 and 5", fs.lost.Load(), h.tasks.open())
	}
	fs.lose.Store(false)
	h.svc = h.restart()
	h.pass()
	got := h.get(c.GetId())
	if w := got.GetWaves()[0].GetOutcomes(); w.GetInFlight() != 5 || w.GetPending() != 0 {
		t.Fatalf("wave 0 after the restart: %v", w)
	}
	if n := len(h.tasks.byID); n != 5 {
		t.Fatalf("%d tasks after the restart, want the same 5", n)
	}
	for range 10 {
		h.upgrade("2.0")
		h.svc = h.restart()
		h.pass()
	}
	got = h.get(c.GetId())
	if got.GetState() != campaignsv1.CampaignState_CAMPAIGN_STATE_COMPLETED || got.GetTotals().GetSucceeded() != 30 {
		t.Fatalf("end: %s %v", got.GetState(), got.GetTotals())
	}
	if n := len(h.tasks.byID); n != 30 {
		t.Fatalf("%d tasks for 30 devices", n)
	}
}

// TestPlanInPages: a campaign over more devices than a pass plans reads
// them page by page over several passes, creating tasks only once the
// plan is complete.
func TestPlanInPages(t *testing.T) {
	h := newHarness(t, planPagesPerPass*10+15)
	spec := firmwareSpec()
	spec.Waves = nil
	c := h.create(spec)
	h.pass()
	got := h.get(c.GetId())
	if got.GetPlannedDevices() != planPagesPerPass*10 || h.tasks.open() != 0 || len(got.GetWaves()) != 0 {
		t.Fatalf("after one pass: %d planned, %d tasks, waves %v", got.GetPlannedDevices(), h.tasks.open(), got.GetWaves())
	}
	h.svc = h.restart()
	h.pass()
	got = h.get(c.GetId())
	if got.GetPlannedDevices() != planPagesPerPass*10+15 || h.tasks.open() != 3 {
		t.Fatalf("after two passes: %d planned, %d tasks", got.GetPlannedDevices(), h.tasks.open())
	}
}

// TestStopRuleAndResume: failures above the ratio over the minimum sample
// stop the campaign; resumed, the rule counts only what fails after.
func TestStopRuleAndResume(t *testing.T) {
	h := newHarness(t, 40)
	c := h.create(&campaignsv1.CampaignSpec{
		Action:      &campaignsv1.CampaignSpec_Operation{Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_Reboot{Reboot: &tasksv1.Reboot{}}}},
		MaxInFlight: 10, StopRule: &campaignsv1.StopRule{MaxFailureRatio: 0.25, MinSample: 10},
	})
	h.pass()
	// 4 of 10 fail.
	n := 0
	h.tasks.endAll(tasksv1.TaskState_TASK_STATE_FAULT, func(string) bool { n++; return n <= 4 })
	h.tasks.endAll(tasksv1.TaskState_TASK_STATE_DONE, nil)
	h.pass()
	got := h.get(c.GetId())
	if got.GetState() != campaignsv1.CampaignState_CAMPAIGN_STATE_STOPPED || !strings.Contains(got.GetStateDetail(), "4 of 10") {
		t.Fatalf("after 4 of 10 failed: %s %q", got.GetState(), got.GetStateDetail())
	}
	if h.tasks.open() != 0 {
		t.Fatalf("the stopped campaign created tasks")
	}
	h.pass()
	if h.tasks.open() != 0 {
		t.Fatalf("a pass of the stopped campaign created tasks")
	}
	ps := &publicServer{s: h.svc}
	if _, err := ps.ResumeCampaign(t.Context(), &campaignsv1.ResumeCampaignRequest{Id: c.GetId()}); err != nil {
		t.Fatal(err)
	}
	h.pass()
	if h.tasks.open() != 10 {
		t.Fatalf("%d tasks after the resume", h.tasks.open())
	}
	// 2 of the next 10 fail: 20%, under the rule (6 of 20 overall is not).
	n = 0
	h.tasks.endAll(tasksv1.TaskState_TASK_STATE_FAULT, func(string) bool { n++; return n <= 2 })
	h.tasks.endAll(tasksv1.TaskState_TASK_STATE_DONE, nil)
	h.pass()
	if got := h.get(c.GetId()); got.GetState() != campaignsv1.CampaignState_CAMPAIGN_STATE_RUNNING {
		t.Fatalf("after the resume, 2 of 10 failed: %s %q", got.GetState(), got.GetStateDetail())
	}
	// A reboot ends with the boot: it carries the default await timeout.
	for _, task := range h.tasks.byID {
		if task.GetOptions().GetAwaitTimeoutSeconds() != defaultTransfer {
			t.Fatalf("reboot task options %v", task.GetOptions())
		}
	}
}

// TestPauseAndAbort: a paused campaign creates no task but follows those
// in flight; an aborted one cancels its queued tasks, skips its pending
// devices, follows what could not be cancelled, and settles.
func TestPauseAndAbort(t *testing.T) {
	h := newHarness(t, 20)
	spec := firmwareSpec()
	spec.Waves = nil
	spec.MaxInFlight = 4
	c := h.create(spec)
	h.pass()
	ps := &publicServer{s: h.svc}
	p, err := ps.PauseCampaign(t.Context(), &campaignsv1.PauseCampaignRequest{Id: c.GetId()})
	if err != nil || p.GetCampaign().GetState() != campaignsv1.CampaignState_CAMPAIGN_STATE_PAUSED {
		t.Fatalf("pause: %v %v", err, p.GetCampaign().GetState())
	}
	h.upgrade("2.0")
	h.pass()
	got := h.get(c.GetId())
	if got.GetTotals().GetSucceeded() != 4 || h.tasks.open() != 0 {
		t.Fatalf("paused: %v, %d tasks open", got.GetTotals(), h.tasks.open())
	}
	// Pausing twice is harmless.
	if _, err := ps.PauseCampaign(t.Context(), &campaignsv1.PauseCampaignRequest{Id: c.GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.ResumeCampaign(t.Context(), &campaignsv1.ResumeCampaignRequest{Id: c.GetId()}); err != nil {
		t.Fatal(err)
	}
	h.pass()
	// One of the four new tasks is dispatched (not cancellable).
	var dispatched string
	for _, task := range h.tasks.byID {
		if task.State == tasksv1.TaskState_TASK_STATE_QUEUED {
			task.State, dispatched = tasksv1.TaskState_TASK_STATE_DISPATCHED, task.DeviceId
			break
		}
	}
	a, err := ps.AbortCampaign(t.Context(), &campaignsv1.AbortCampaignRequest{Id: c.GetId()})
	if err != nil || a.GetCampaign().GetState() != campaignsv1.CampaignState_CAMPAIGN_STATE_ABORTED {
		t.Fatalf("abort: %v", err)
	}
	h.pass()
	got = h.get(c.GetId())
	if tot := got.GetTotals(); tot.GetSkipped() != 15 || tot.GetInFlight() != 1 || tot.GetSucceeded() != 4 {
		t.Fatalf("aborted: %v", tot)
	}
	h.tasks.mu.Lock()
	for _, task := range h.tasks.byID {
		if task.DeviceId == dispatched {
			task.State = tasksv1.TaskState_TASK_STATE_DONE
		}
	}
	h.tasks.mu.Unlock()
	h.inv.setVersion(dispatched, "2.0")
	h.pass()
	r, err := h.store.Get(t.Context(), "default", c.GetId())
	if err != nil || !r.Settled || h.get(c.GetId()).GetTotals().GetSucceeded() != 5 {
		t.Fatalf("after the dispatched task ended: settled %v, %v", r.Settled, err)
	}
	if n := len(h.tasks.byID); n != 8 {
		t.Fatalf("%d tasks created, want 8", n)
	}
	for _, call := range []func() error{
		func() error {
			_, err := ps.ResumeCampaign(t.Context(), &campaignsv1.ResumeCampaignRequest{Id: c.GetId()})
			return err
		},
		func() error {
			_, err := ps.PauseCampaign(t.Context(), &campaignsv1.PauseCampaignRequest{Id: c.GetId()})
			return err
		},
	} {
		if err := call(); !hasReason(err, "CAMPAIGN_STATE") {
			t.Errorf("change of an aborted campaign: %v", err)
		}
	}
	if _, err := ps.AbortCampaign(t.Context(), &campaignsv1.AbortCampaignRequest{Id: c.GetId()}); err != nil {
		t.Errorf("second abort: %v", err)
	}
}

// TestWindowClosed: outside its maintenance window a campaign plans but
// creates no task; inside, it does.
func TestWindowClosed(t *testing.T) {
	h := newHarness(t, 5)
	spec := firmwareSpec()
	spec.Windows = []*campaignsv1.MaintenanceWindow{{Start: "22:00", End: "04:00", TimeZone: "Europe/Paris"}}
	c := h.create(spec) // 12:00 UTC: 13:00 in Paris
	h.pass()
	if got := h.get(c.GetId()); got.GetPlannedDevices() != 5 || h.tasks.open() != 0 {
		t.Fatalf("outside the window: %d planned, %d tasks", got.GetPlannedDevices(), h.tasks.open())
	}
	h.advance(10 * time.Hour) // 23:00 in Paris
	h.pass()
	if h.tasks.open() != 3 {
		t.Fatalf("inside the window: %d tasks", h.tasks.open())
	}
}

func TestWindowOpen(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	w := func(start, end, tz string, days ...uint32) []*campaignsv1.MaintenanceWindow {
		return []*campaignsv1.MaintenanceWindow{{Start: start, End: end, TimeZone: tz, Weekdays: days}}
	}
	for _, c := range []struct {
		name    string
		windows []*campaignsv1.MaintenanceWindow
		at      string
		want    bool
	}{
		{"none", nil, "2026-03-02T12:00:00Z", true},
		{"inside", w("01:00", "05:00", ""), "2026-03-02T03:00:00Z", true},
		{"end excluded", w("01:00", "05:00", ""), "2026-03-02T05:00:00Z", false},
		{"zone", w("01:00", "05:00", "America/New_York"), "2026-03-02T03:00:00Z", false},
		{"zone inside", w("01:00", "05:00", "America/New_York"), "2026-03-02T08:00:00Z", true},
		{"over midnight, evening", w("22:00", "02:00", ""), "2026-03-02T23:30:00Z", true},
		{"over midnight, morning", w("22:00", "02:00", ""), "2026-03-03T01:30:00Z", true},
		{"over midnight, day", w("22:00", "02:00", ""), "2026-03-03T12:00:00Z", false},
		// 2026-03-02 is a Monday (1).
		{"weekday", w("00:00", "00:00", "", 1), "2026-03-02T12:00:00Z", true},
		{"other weekday", w("00:00", "00:00", "", 2), "2026-03-02T12:00:00Z", false},
		// Tuesday 01:30 belongs to Monday's window.
		{"over midnight keeps its day", w("22:00", "02:00", "", 1), "2026-03-03T01:30:00Z", true},
		{"over midnight keeps its day 2", w("22:00", "02:00", "", 2), "2026-03-03T01:30:00Z", false},
	} {
		if got := windowOpen(c.windows, at(c.at)); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestWaveEnds(t *testing.T) {
	pct := func(p float64) *campaignsv1.Wave {
		return &campaignsv1.Wave{Size: &campaignsv1.Wave_Percent{Percent: p}}
	}
	cnt := func(n uint64) *campaignsv1.Wave { return &campaignsv1.Wave{Size: &campaignsv1.Wave_Count{Count: n}} }
	for _, c := range []struct {
		waves   []*campaignsv1.Wave
		planned uint64
		want    []uint64
	}{
		{nil, 7, []uint64{7}},
		{[]*campaignsv1.Wave{pct(1), pct(10), pct(100)}, 1000, []uint64{10, 100, 1000}},
		{[]*campaignsv1.Wave{pct(1), pct(10)}, 150, []uint64{2, 15, 150}},
		{[]*campaignsv1.Wave{cnt(10), pct(50)}, 8, []uint64{8, 8}},
		{[]*campaignsv1.Wave{cnt(50), pct(10), pct(100)}, 200, []uint64{50, 50, 200}},
		{[]*campaignsv1.Wave{pct(100)}, 0, []uint64{0}},
	} {
		got := waveEnds(c.waves, c.planned)
		if len(got) != len(c.want) {
			t.Errorf("%v of %d: %v, want %v", c.waves, c.planned, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%v of %d: %v, want %v", c.waves, c.planned, got, c.want)
				break
			}
		}
	}
}

func hasReason(err error, want string) bool {
	return reason(status.Convert(err)).String() == want
}

// TestValidation: each invalid request names its field.
func TestValidation(t *testing.T) {
	h := newHarness(t, 1)
	ps := &publicServer{s: h.svc}
	ok := firmwareSpec
	for _, c := range []struct {
		name   string
		req    *campaignsv1.CreateCampaignRequest
		code   codes.Code
		reason string
		field  string
	}{
		{"no name", &campaignsv1.CreateCampaignRequest{Spec: ok()}, codes.InvalidArgument, "INVALID_FIELD", "name"},
		{"long name", &campaignsv1.CreateCampaignRequest{Name: strings.Repeat("n", 129), Spec: ok()}, codes.InvalidArgument, "INVALID_FIELD", "name"},
		{"control name", &campaignsv1.CreateCampaignRequest{Name: "a\x00b", Spec: ok()}, codes.InvalidArgument, "INVALID_FIELD", "name"},
		{"no spec", &campaignsv1.CreateCampaignRequest{Name: "n"}, codes.InvalidArgument, "INVALID_FIELD", "spec"},
		{"no action", &campaignsv1.CreateCampaignRequest{Name: "n", Spec: &campaignsv1.CampaignSpec{}}, codes.InvalidArgument, "INVALID_FIELD", "spec.action"},
		{"firmware both", &campaignsv1.CreateCampaignRequest{Name: "n", Spec: &campaignsv1.CampaignSpec{Action: &campaignsv1.CampaignSpec_Firmware{Firmware: &campaignsv1.FirmwareAction{FileId: "f1", Version: "2.0"}}}}, codes.InvalidArgument, "INVALID_FIELD", "spec.firmware"},
		{"empty operation", &campaignsv1.CreateCampaignRequest{Name: "n", Spec: &campaignsv1.CampaignSpec{Action: &campaignsv1.CampaignSpec_Operation{Operation: &tasksv1.Operation{}}}}, codes.InvalidArgument, "INVALID_FIELD", "spec.operation"},
		{"wave 0", &campaignsv1.CreateCampaignRequest{Name: "n", Spec: withSpec(func(s *campaignsv1.CampaignSpec) {
			s.Waves = []*campaignsv1.Wave{{Size: &campaignsv1.Wave_Count{Count: 0}}}
		})}, codes.InvalidArgument, "INVALID_FIELD", "spec.waves[0].count"},
		{"waves not increasing", &campaignsv1.CreateCampaignRequest{Name: "n", Spec: withSpec(func(s *campaignsv1.CampaignSpec) {
			s.Waves = []*campaignsv1.Wave{{Size: &campaignsv1.Wave_Percent{Percent: 10}}, {Size: &campaignsv1.Wave_Percent{Percent: 5}}}
		})}, codes.InvalidArgument, "INVALID_FIELD", "spec.waves[1].percent"},
		{"percent above 100", &campaignsv1.CreateCampaignRequest{Name: "n", Spec: withSpec(func(s *campaignsv1.CampaignSpec) {
			s.Waves = []*campaignsv1.Wave{{Size: &campaignsv1.Wave_Percent{Percent: 150}}}
		})}, codes.InvalidArgument, "INVALID_FIELD", "spec.waves[0].percent"},
		{"window clock", &campaignsv1.CreateCampaignRequest{Name: "n", Spec: withSpec(func(s *campaignsv1.CampaignSpec) {
			s.Windows = []*campaignsv1.MaintenanceWindow{{Start: "25:00", End: "01:00"}}
		})}, codes.InvalidArgument, "INVALID_FIELD", "spec.windows[0].start"},
		{"window zone", &campaignsv1.CreateCampaignRequest{Name: "n", Spec: withSpec(func(s *campaignsv1.CampaignSpec) {
			s.Windows = []*campaignsv1.MaintenanceWindow{{Start: "01:00", End: "02:00", TimeZone: "Mars/Olympus"}}
		})}, codes.InvalidArgument, "INVALID_FIELD", "spec.windows[0].time_zone"},
		{"window day", &campaignsv1.CreateCampaignRequest{Name: "n", Spec: withSpec(func(s *campaignsv1.CampaignSpec) {
			s.Windows = []*campaignsv1.MaintenanceWindow{{Start: "01:00", End: "02:00", Weekdays: []uint32{7}}}
		})}, codes.InvalidArgument, "INVALID_FIELD", "spec.windows[0].weekdays[0]"},
		{"cap", &campaignsv1.CreateCampaignRequest{Name: "n", Spec: withSpec(func(s *campaignsv1.CampaignSpec) { s.MaxInFlight = 10_001 })}, codes.InvalidArgument, "INVALID_FIELD", "spec.max_in_flight"},
		{"transfer timeout", &campaignsv1.CreateCampaignRequest{Name: "n", Spec: withSpec(func(s *campaignsv1.CampaignSpec) { s.TransferTimeoutSeconds = 8 * 24 * 3600 })}, codes.InvalidArgument, "INVALID_FIELD", "spec.transfer_timeout_seconds"},
		{"ratio", &campaignsv1.CreateCampaignRequest{Name: "n", Spec: withSpec(func(s *campaignsv1.CampaignSpec) {
			s.StopRule = &campaignsv1.StopRule{MaxFailureRatio: 0}
		})}, codes.InvalidArgument, "INVALID_FIELD", "spec.stop_rule.max_failure_ratio"},
		{"filter", &campaignsv1.CreateCampaignRequest{Name: "n", Spec: withSpec(func(s *campaignsv1.CampaignSpec) {
			s.Filter = &inventoryv1.DeviceFilter{Manufacturer: "bad"}
		})}, codes.InvalidArgument, "INVALID_FIELD", "spec.filter"},
		{"no such preset", presetReq("bootstrap"), codes.FailedPrecondition, "CAMPAIGN_ACTION_UNAVAILABLE", "spec.preset.name"},
		{"preset without tags", presetReq("untagged"), codes.FailedPrecondition, "CAMPAIGN_ACTION_UNAVAILABLE", "spec.preset.name"},
		{"disabled preset", presetReq("off"), codes.FailedPrecondition, "CAMPAIGN_ACTION_UNAVAILABLE", "spec.preset.name"},
		{"unknown version", &campaignsv1.CreateCampaignRequest{Name: "n", Spec: withSpec(func(s *campaignsv1.CampaignSpec) {
			s.Action = &campaignsv1.CampaignSpec_Firmware{Firmware: &campaignsv1.FirmwareAction{Version: "9.9"}}
		})}, codes.FailedPrecondition, "CAMPAIGN_ACTION_UNAVAILABLE", "spec.firmware.version"},
		{"unknown file", &campaignsv1.CreateCampaignRequest{Name: "n", Spec: withSpec(func(s *campaignsv1.CampaignSpec) {
			s.Action = &campaignsv1.CampaignSpec_Firmware{Firmware: &campaignsv1.FirmwareAction{FileId: "nope"}}
		})}, codes.FailedPrecondition, "CAMPAIGN_ACTION_UNAVAILABLE", "spec.firmware.file_id"},
		{"key", &campaignsv1.CreateCampaignRequest{Name: "n", Spec: ok(), IdempotencyKey: strings.Repeat("k", 129)}, codes.InvalidArgument, "INVALID_FIELD", "idempotency_key"},
	} {
		_, err := ps.CreateCampaign(t.Context(), c.req)
		st := status.Convert(err)
		if st.Code() != c.code || reason(st).String() != c.reason || fieldOf(st) != c.field {
			t.Errorf("%s: %v (field %q), want %s %s %s", c.name, err, fieldOf(st), c.code, c.reason, c.field)
		}
	}
	list, err := h.store.List(t.Context(), "default", 0, nil, 10)
	if err != nil || len(list) != 0 {
		t.Fatalf("invalid requests stored campaigns: %v %d", err, len(list))
	}
}

func withSpec(fn func(*campaignsv1.CampaignSpec)) *campaignsv1.CampaignSpec {
	s := firmwareSpec()
	fn(s)
	return s
}

// TestTenantsAndIdempotency: a caller of several tenants must name one;
// a campaign of one tenant is not found from another; a repeated create
// with its key returns the campaign, another request with it is refused.
func TestTenantsAndIdempotency(t *testing.T) {
	h := newHarness(t, 3)
	ps := &publicServer{s: h.svc}
	req := &campaignsv1.CreateCampaignRequest{Name: "n", Spec: firmwareSpec(), IdempotencyKey: "k1"}
	first, err := ps.CreateCampaign(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ps.CreateCampaign(t.Context(), req)
	if err != nil || !again.GetExisting() || again.GetCampaign().GetId() != first.GetCampaign().GetId() {
		t.Fatalf("repeat: %v %v", err, again)
	}
	other := &campaignsv1.CreateCampaignRequest{Name: "other", Spec: firmwareSpec(), IdempotencyKey: "k1"}
	if _, err := ps.CreateCampaign(t.Context(), other); !hasReason(err, "IDEMPOTENCY_CONFLICT") {
		t.Fatalf("another request with the key: %v", err)
	}
	h.tenants = []string{"default", "isp-b"}
	if _, err := ps.GetCampaign(t.Context(), &campaignsv1.GetCampaignRequest{Id: first.GetCampaign().GetId()}); !hasReason(err, "TENANT_REQUIRED") {
		t.Fatalf("no tenant with two: %v", err)
	}
	id := first.GetCampaign().GetId()
	for name, call := range map[string]func() error{
		"get": func() error {
			_, err := ps.GetCampaign(t.Context(), &campaignsv1.GetCampaignRequest{Tenant: "isp-b", Id: id})
			return err
		},
		"pause": func() error {
			_, err := ps.PauseCampaign(t.Context(), &campaignsv1.PauseCampaignRequest{Tenant: "isp-b", Id: id})
			return err
		},
		"abort": func() error {
			_, err := ps.AbortCampaign(t.Context(), &campaignsv1.AbortCampaignRequest{Tenant: "isp-b", Id: id})
			return err
		},
		"malformed id": func() error {
			_, err := ps.GetCampaign(t.Context(), &campaignsv1.GetCampaignRequest{Tenant: "default", Id: "../" + id})
			return err
		},
	} {
		if err := call(); !hasReason(err, "CAMPAIGN_NOT_FOUND") {
			t.Errorf("%s from another tenant: %v", name, err)
		}
	}
	lb, err := ps.ListCampaigns(t.Context(), &campaignsv1.ListCampaignsRequest{Tenant: "isp-b"})
	if err != nil || len(lb.GetCampaigns()) != 0 {
		t.Fatalf("list of isp-b: %v %v", err, lb)
	}
	if got, err := h.store.Get(t.Context(), "default", id); err != nil || got.State != campaignsv1.CampaignState_CAMPAIGN_STATE_RUNNING {
		t.Fatalf("after the other tenant's calls: %v %v", err, got.State)
	}
}

// TestListPages: campaigns list newest first, page by page; a token of
// another listing is refused.
func TestListPages(t *testing.T) {
	h := newHarness(t, 1)
	ps := &publicServer{s: h.svc}
	var ids []string
	for range 5 {
		c := h.create(firmwareSpec())
		ids = append(ids, c.GetId())
		h.advance(time.Second)
	}
	var got []string
	tok := ""
	for {
		resp, err := ps.ListCampaigns(t.Context(), &campaignsv1.ListCampaignsRequest{PageSize: 2, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range resp.GetCampaigns() {
			got = append(got, c.GetId())
		}
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
		if _, err := ps.ListCampaigns(t.Context(), &campaignsv1.ListCampaignsRequest{PageSize: 2, PageToken: tok, State: campaignsv1.CampaignState_CAMPAIGN_STATE_PAUSED}); !hasReason(err, "INVALID_FIELD") {
			t.Fatalf("token of another listing: %v", err)
		}
	}
	if strings.Join(got, ",") != strings.Join([]string{ids[4], ids[3], ids[2], ids[1], ids[0]}, ",") {
		t.Fatalf("listing %v, created %v", got, ids)
	}
}

// TestVersionDecidesFirmware: a device whose firmware task faulted but
// which reports the new version succeeded; one that does not, failed.
func TestVersionDecidesFirmware(t *testing.T) {
	h := newHarness(t, 2)
	spec := firmwareSpec()
	spec.Waves = nil
	c := h.create(spec)
	h.pass()
	ds := h.tasks.endAll(tasksv1.TaskState_TASK_STATE_FAULT, nil)
	if len(ds) != 2 {
		t.Fatalf("%d tasks", len(ds))
	}
	h.inv.setVersion(ds[0], "2.0")
	h.pass()
	resp, err := (&publicServer{s: h.svc}).GetCampaign(t.Context(), &campaignsv1.GetCampaignRequest{Id: c.GetId(), FailedDevices: 10})
	if err != nil {
		t.Fatal(err)
	}
	if tot := resp.GetCampaign().GetTotals(); tot.GetSucceeded() != 1 || tot.GetFailed() != 1 ||
		len(resp.GetFailedDevices()) != 1 || resp.GetFailedDevices()[0].GetDeviceId() != ds[1] || !strings.Contains(resp.GetFailedDevices()[0].GetDetail(), "task fault 9010") {
		t.Fatalf("%v %v", tot, resp.GetFailedDevices())
	}
}

func presetReq(name string) *campaignsv1.CreateCampaignRequest {
	return &campaignsv1.CreateCampaignRequest{Name: "n", Spec: &campaignsv1.CampaignSpec{
		Action: &campaignsv1.CampaignSpec_Preset{Preset: &campaignsv1.PresetAction{Name: name}}}}
}

// TestPresetCampaignStaleSession: the race of docs/campaigns.md,
// "Applying a preset". A session of the device that started before the
// campaign tagged it matched the presets without the preset's tags and
// records its fingerprint after the tagging: the device stays VERIFYING
// (it did not converge to the preset), until its next session records a
// fingerprint of its tags. A fingerprint without a tags digest, or of a
// device that lost the preset's tags since, is not accepted either.
func TestPresetCampaignStaleSession(t *testing.T) {
	h := newHarness(t, 1)
	c := h.create(&campaignsv1.CampaignSpec{Action: &campaignsv1.CampaignSpec_Preset{Preset: &campaignsv1.PresetAction{Name: "rollout"}}})
	id := h.inv.devices[0].GetId()
	before := h.inv.tags(id) // what the running session matched with
	h.pass()
	if got := h.inv.tags(id); !slices.Contains(got, "wave-rollout") || !slices.Contains(got, "hgw") {
		t.Fatalf("tags %v", got)
	}
	h.tasks.endAll(tasksv1.TaskState_TASK_STATE_DONE, nil)
	verifying := func(what string) {
		t.Helper()
		h.pass()
		if o := h.get(c.GetId()).GetTotals(); o.GetVerifying() != 1 || o.GetSucceeded() != 0 {
			t.Fatalf("%s: %v, want the device VERIFYING", what, o)
		}
	}
	// The session that ran across the tagging ends.
	h.inv.setFingerprint(id, provisioning.Fingerprint(7, before))
	verifying("after the stale session")
	// A fingerprint of an older release, without tags.
	h.inv.setFingerprint(id, "s7")
	verifying("after a fingerprint without tags")
	// A fingerprint of the tags, but the device lost one of the preset's.
	h.inv.removeTag(id, "hgw")
	h.inv.setFingerprint(id, provisioning.Fingerprint(7, h.inv.tags(id)))
	verifying("after the preset's tag was removed")
	h.inv.addTag(id, "hgw")
	// The next session converges the device with its tags.
	h.inv.setFingerprint(id, provisioning.Fingerprint(7, h.inv.tags(id)))
	h.pass()
	if got := h.get(c.GetId()); got.GetTotals().GetSucceeded() != 1 || got.GetState() != campaignsv1.CampaignState_CAMPAIGN_STATE_COMPLETED {
		t.Fatalf("after the next session: %s %v", got.GetState(), got.GetTotals())
	}
}

// TestPresetCampaign: a campaign applying a preset adds the tags the
// preset's match requires to the devices of the wave in progress only,
// wakes each with a GetRPCMethods task (the campaign its requester), and
// counts a device succeeded once its sessions recorded that it converged
// to the presets; a device whose CPE refused part of them fails after
// the verify timeout, with the reason, and counts toward the stop rule.
func TestPresetCampaign(t *testing.T) {
	h := newHarness(t, 6)
	c := h.create(&campaignsv1.CampaignSpec{
		Action:      &campaignsv1.CampaignSpec_Preset{Preset: &campaignsv1.PresetAction{Name: "rollout"}},
		Waves:       []*campaignsv1.Wave{{Size: &campaignsv1.Wave_Count{Count: 3}}, {Size: &campaignsv1.Wave_Percent{Percent: 100}}},
		MaxInFlight: 10,
	})
	h.pass()
	ids := make([]string, 6)
	for i, d := range h.inv.devices {
		ids[i] = d.GetId()
	}
	for i, id := range ids {
		tagged := slices.Equal(h.inv.tags(id), []string{"wave-rollout", "hgw"})
		if tagged != (i < 3) {
			t.Fatalf("device %d tags %v after the first pass (wave 0 is the first 3)", i, h.inv.tags(id))
		}
	}
	for _, task := range h.tasks.byID {
		if task.GetOperation().GetGetRpcMethods() == nil || task.GetRequester() != "campaign:"+c.GetId() {
			t.Fatalf("task %v", task)
		}
	}
	// The wave's sessions: two converge, the third's CPE refuses.
	h.tasks.endAll(tasksv1.TaskState_TASK_STATE_DONE, nil)
	converged := func(rev uint64, id string) string { return provisioning.Fingerprint(rev, h.inv.tags(id)) }
	h.inv.setFingerprint(ids[0], converged(7, ids[0]))
	h.inv.setFingerprint(ids[1], converged(7, ids[1]))
	h.inv.setFingerprint(ids[2], converged(7, ids[2])+"!")
	h.pass()
	w := h.get(c.GetId()).GetWaves()[0].GetOutcomes()
	if w.GetSucceeded() != 2 || w.GetVerifying() != 1 {
		t.Fatalf("wave 0: %v", w)
	}
	h.advance(defaultVerify*time.Second + time.Second)
	h.pass()
	resp, err := (&publicServer{s: h.svc}).GetCampaign(t.Context(), &campaignsv1.GetCampaignRequest{Id: c.GetId(), FailedDevices: 10})
	if err != nil || len(resp.GetFailedDevices()) != 1 || resp.GetFailedDevices()[0].GetDeviceId() != ids[2] ||
		!strings.Contains(resp.GetFailedDevices()[0].GetDetail(), "refused") {
		t.Fatalf("failed devices: %v %v", err, resp.GetFailedDevices())
	}
	// Wave 1 started only now; its devices converge.
	for _, id := range ids[3:] {
		if len(h.inv.tags(id)) != 2 {
			t.Fatalf("device %s not tagged in wave 1", id)
		}
	}
	h.tasks.endAll(tasksv1.TaskState_TASK_STATE_DONE, nil)
	for _, id := range ids[3:] {
		h.inv.setFingerprint(id, converged(8, id))
	}
	h.pass()
	got := h.get(c.GetId())
	if got.GetState() != campaignsv1.CampaignState_CAMPAIGN_STATE_COMPLETED || got.GetTotals().GetSucceeded() != 5 || got.GetTotals().GetFailed() != 1 {
		t.Fatalf("end: %s %v", got.GetState(), got.GetTotals())
	}
}

// TestVerifyNudge: a device still verifying halfway through its verify
// time is woken once with a GetRPCMethods task carrying a connection
// request (the session that reported its task may have started before
// the change showed), expiring with the verify time; passes after that
// create no other task, and the session it opens converges the device.
// A campaign that may not wake devices does not nudge.
func TestVerifyNudge(t *testing.T) {
	for _, wake := range []bool{true, false} {
		t.Run(fmt.Sprintf("connection_request=%v", wake), func(t *testing.T) {
			h := newHarness(t, 1)
			c := h.create(&campaignsv1.CampaignSpec{Action: &campaignsv1.CampaignSpec_Preset{Preset: &campaignsv1.PresetAction{Name: "rollout"}},
				ConnectionRequest: wake, VerifyTimeoutSeconds: 600})
			id := h.inv.devices[0].GetId()
			before := h.inv.tags(id)
			h.pass()
			h.tasks.endAll(tasksv1.TaskState_TASK_STATE_DONE, nil)
			taskEnd := h.now
			h.inv.setFingerprint(id, provisioning.Fingerprint(7, before)) // the stale session
			h.pass()
			h.advance(299 * time.Second)
			h.pass()
			if n := len(h.tasks.byID); n != 1 {
				t.Fatalf("%d tasks before half the verify time, want the campaign's one", n)
			}
			h.advance(time.Second)
			for range 3 {
				h.pass()
				h.advance(10 * time.Second)
			}
			want := 1
			if wake {
				want = 2
			}
			if n := len(h.tasks.byID); n != want {
				t.Fatalf("%d tasks after half the verify time and three passes, want %d", n, want)
			}
			if wake {
				nudge := h.tasks.byID["t1"]
				if nudge.GetOperation().GetGetRpcMethods() == nil || !nudge.GetOptions().GetConnectionRequest() || nudge.GetDeviceId() != id ||
					!nudge.GetOptions().GetExpireTime().AsTime().Equal(taskEnd.Add(600*time.Second)) || nudge.GetRequester() != "campaign:"+c.GetId() {
					t.Fatalf("nudge task %v", nudge)
				}
				ds, err := h.store.Devices(t.Context(), store.DeviceQuery{Tenant: "default", Campaign: c.GetId(), Wave: 0,
					Outcome: campaignsv1.Outcome_OUTCOME_VERIFYING, AfterSeq: -1, Limit: 10})
				if err != nil || len(ds) != 1 || !strings.Contains(ds[0].Detail, "woke the device") {
					t.Fatalf("device record after the nudge: %v %+v", err, ds)
				}
			}
			// The session the nudge opened converges the device.
			h.inv.setFingerprint(id, provisioning.Fingerprint(7, h.inv.tags(id)))
			h.pass()
			if got := h.get(c.GetId()); got.GetTotals().GetSucceeded() != 1 || got.GetState() != campaignsv1.CampaignState_CAMPAIGN_STATE_COMPLETED {
				t.Fatalf("after the next session: %s %v", got.GetState(), got.GetTotals())
			}
		})
	}
}
