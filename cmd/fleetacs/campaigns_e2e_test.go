package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// runSim runs a simulator until the test ends and returns a function that
// stops it and gives its summary.
func runSim(t *testing.T, cfg sim.Config) func() sim.Summary {
	t.Helper()
	sm, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		sum sim.Summary
		err error
	}
	done := make(chan result, 1)
	go func() { sum, err := sm.Run(ctx); done <- result{sum, err} }()
	var once sync.Once
	var sum sim.Summary
	stopSim := func() sim.Summary {
		once.Do(func() {
			cancel()
			r := <-done
			if r.err != nil && ctx.Err() == nil {
				t.Errorf("cpesim: %v", r.err)
			}
			sum = r.sum
		})
		return sum
	}
	t.Cleanup(func() { stopSim() })
	return stopSim
}

// uploadFirmware uploads name with the gRPC stream, as fleetctl does.
func uploadFirmware(t *testing.T, s *secured, name, version string, body []byte, productClasses ...string) *filesv1.File {
	t.Helper()
	fc := filesv1.NewFilesServiceClient(s.publicConn)
	stream, err := fc.UploadFile(withToken(ctx10(t), s.admin))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if err := stream.Send(&filesv1.UploadFileRequest{Tenant: "default", Part: &filesv1.UploadFileRequest_Header{Header: &filesv1.UploadFileHeader{
		Name: name, FileType: "1 Firmware Upgrade Image", Version: version, ExpectedSha256: hex.EncodeToString(sum[:]),
		ProductClasses: productClasses}}}); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(body); off += 1 << 18 {
		if err := stream.Send(&filesv1.UploadFileRequest{Part: &filesv1.UploadFileRequest_Chunk{Chunk: body[off:min(off+1<<18, len(body))]}}); err != nil {
			t.Fatal(err)
		}
	}
	up, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	return up.GetFile()
}

// campaignEvents collects the tenant's campaign events from the events
// API.
type campaignEvents struct {
	mu     sync.Mutex
	events []*eventsv1.Event
}

func watchCampaigns(t *testing.T, s *secured) *campaignEvents {
	t.Helper()
	return watchKinds(t, s, "campaign")
}

// watchKinds collects the tenant's events of these kinds (or prefixes).
func watchKinds(t *testing.T, s *secured, kinds ...string) *campaignEvents {
	t.Helper()
	ctx, cancel := context.WithCancel(withToken(context.Background(), s.admin))
	t.Cleanup(cancel)
	stream, err := eventsv1.NewEventsServiceClient(s.publicConn).WatchEvents(ctx, &eventsv1.WatchEventsRequest{Tenant: "default", StartRevision: 1, Kinds: kinds})
	if err != nil {
		t.Fatal(err)
	}
	ce := &campaignEvents{}
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			ce.mu.Lock()
			ce.events = append(ce.events, m.GetEvent())
			ce.mu.Unlock()
		}
	}()
	return ce
}

func (ce *campaignEvents) of(campaign string) []*eventsv1.Event {
	ce.mu.Lock()
	defer ce.mu.Unlock()
	var out []*eventsv1.Event
	for _, e := range ce.events {
		if e.GetCampaign().GetCampaign().GetId() == campaign {
			out = append(out, e)
		}
	}
	return out
}

func countDevices(t *testing.T, s *secured, f *inventoryv1.DeviceFilter) int {
	t.Helper()
	inv := inventoryv1.NewInventoryServiceClient(s.publicConn)
	n, tok := 0, ""
	for {
		resp, err := inv.ListDevices(withToken(ctx10(t), s.admin), &inventoryv1.ListDevicesRequest{Tenant: "default", Filter: f, PageSize: 1000, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		n += len(resp.GetDevices())
		if tok = resp.GetNextPageToken(); tok == "" {
			return n
		}
	}
}

// downloadTasks counts the tenant's Download tasks by device, and checks
// that each has its campaign as its requester.
func downloadTasks(t *testing.T, s *secured) map[string]int {
	t.Helper()
	tc := tasksv1.NewTasksServiceClient(s.publicConn)
	out := map[string]int{}
	tok := ""
	for {
		resp, err := tc.ListTasks(withToken(ctx10(t), s.admin), &tasksv1.ListTasksRequest{Tenant: "default", Kinds: []string{"download"}, PageSize: 1000, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range resp.GetTasks() {
			out[task.GetDeviceId()]++
			// A campaign's Download: its CommandKey is the campaign,
			// and so is its requester.
			if want := "campaign:" + task.GetOperation().GetDownload().GetCommandKey(); task.GetRequester() != want {
				t.Errorf("task %s: requester %q, want %q", task.GetId(), task.GetRequester(), want)
			}
		}
		if tok = resp.GetNextPageToken(); tok == "" {
			return out
		}
	}
}

func getCampaign(t *testing.T, cc campaignsv1.CampaignsServiceClient, token, id string) *campaignsv1.Campaign {
	t.Helper()
	resp, err := cc.GetCampaign(withToken(ctx10(t), token), &campaignsv1.GetCampaignRequest{Tenant: "default", Id: id, FailedDevices: 100})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetCampaign()
}

// TestCampaignEndToEnd: `fleetacs all` upgrades 200 cpesim devices to a
// firmware uploaded through the files API, in three waves (10 devices,
// 50%, 100%) with at most 40 in flight; the devices really fetch it
// through /files/ on the CWMP listener (each first attempt cut and resumed
// with a Range request), the campaign verifies the new SoftwareVersion and
// completes, and its events show the waves in order, each starting only
// once the previous one had every outcome. A second campaign, over 40
// devices of another product class half of which fail every download,
// stops itself by its stop rule with devices left pending; resumed, then
// aborted, it skips what is left and creates no task afterwards.
func TestCampaignEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("200 simulated devices")
	}
	s := startSecured(t, "-notifier.allow-loopback=true", "-tasks.sweep-interval=100ms", "-campaigns.interval=100ms")
	events := watchCampaigns(t, s)
	base := sim.Config{URL: "http://" + s.cwmp + "/", Model: sim.TR181, BootStorm: true, Concurrency: 50,
		Timeout: 30 * time.Second, ConnReq: sim.ConnReqPerDevice, OUI: "00D09E",
		TimeScale: 0.01, RebootTime: 20 * time.Millisecond, TransferTime: 20 * time.Millisecond,
		FetchTransfers: true, FetchInterruptAfter: 20_000}
	fleetA := base
	fleetA.Devices, fleetA.Seed, fleetA.SerialPrefix, fleetA.ProductClass = 200, 31, "CA", "HGWA"
	stopA := runSim(t, fleetA)
	fleetB := base
	fleetB.Devices, fleetB.Seed, fleetB.SerialPrefix, fleetB.ProductClass, fleetB.FailTransfers = 40, 32, "CB", "HGWB", 0.5
	stopB := runSim(t, fleetB)
	waitFor(t, 60*time.Second, func() error {
		if n := countDevices(t, s, &inventoryv1.DeviceFilter{SoftwareVersion: sim.DefaultSoftwareVersion}); n != 240 {
			return fmt.Errorf("%d devices of 240 registered", n)
		}
		return nil
	})
	fw := bytes.Repeat([]byte("FW-2.0.0 "), 10_000)
	uploadFirmware(t, s, "2.0.0.bin", "2.0.0", fw)

	cc := campaignsv1.NewCampaignsServiceClient(s.publicConn)
	create := func(name string, spec *campaignsv1.CampaignSpec) *campaignsv1.Campaign {
		resp, err := cc.CreateCampaign(withToken(ctx10(t), s.admin), &campaignsv1.CreateCampaignRequest{Tenant: "default", Name: name, Spec: spec})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetCampaign()
	}
	firmware := &campaignsv1.CampaignSpec_Firmware{Firmware: &campaignsv1.FirmwareAction{Version: "2.0.0"}}
	a := create("upgrade HGWA", &campaignsv1.CampaignSpec{
		Filter: &inventoryv1.DeviceFilter{ProductClass: "HGWA", SoftwareVersion: sim.DefaultSoftwareVersion},
		Action: firmware,
		Waves: []*campaignsv1.Wave{{Size: &campaignsv1.Wave_Count{Count: 10}}, {Size: &campaignsv1.Wave_Percent{Percent: 50}},
			{Size: &campaignsv1.Wave_Percent{Percent: 100}}},
		MaxInFlight: 40, ConnectionRequest: true, TransferTimeoutSeconds: 120,
		StopRule: &campaignsv1.StopRule{MaxFailureRatio: 0.1, MinSample: 20},
	})
	b := create("upgrade HGWB", &campaignsv1.CampaignSpec{
		Filter: &inventoryv1.DeviceFilter{ProductClass: "HGWB"}, Action: firmware,
		MaxInFlight: 8, ConnectionRequest: true, TransferTimeoutSeconds: 120,
		StopRule: &campaignsv1.StopRule{MaxFailureRatio: 0.2, MinSample: 10},
	})

	// Campaign B stops itself.
	waitFor(t, 90*time.Second, func() error {
		if c := getCampaign(t, cc, s.admin, b.GetId()); c.GetState() != campaignsv1.CampaignState_CAMPAIGN_STATE_STOPPED {
			return fmt.Errorf("campaign B %s: %v", c.GetState(), c.GetTotals())
		}
		return nil
	})
	resp, err := cc.GetCampaign(withToken(ctx10(t), s.admin), &campaignsv1.GetCampaignRequest{Tenant: "default", Id: b.GetId(), FailedDevices: 100})
	if err != nil {
		t.Fatal(err)
	}
	cb := resp.GetCampaign()
	if tot := cb.GetTotals(); tot.GetFailed() < 2 || tot.GetPending() == 0 || !strings.Contains(cb.GetStateDetail(), "stop rule") {
		t.Fatalf("campaign B stopped with %v (%s)", tot, cb.GetStateDetail())
	}
	for _, d := range resp.GetFailedDevices() {
		if !strings.Contains(d.GetDetail(), "9010") {
			t.Errorf("failed device %s: %q, want the CPE's 9010", d.GetDeviceId(), d.GetDetail())
		}
	}
	// Resumed, it runs again; aborted, its pending devices are skipped.
	r, err := cc.ResumeCampaign(withToken(ctx10(t), s.admin), &campaignsv1.ResumeCampaignRequest{Tenant: "default", Id: b.GetId()})
	if err != nil || r.GetCampaign().GetState() != campaignsv1.CampaignState_CAMPAIGN_STATE_RUNNING {
		t.Fatalf("resume: %v %v", err, r.GetCampaign().GetState())
	}
	ab, err := cc.AbortCampaign(withToken(ctx10(t), s.admin), &campaignsv1.AbortCampaignRequest{Tenant: "default", Id: b.GetId()})
	if err != nil || ab.GetCampaign().GetState() != campaignsv1.CampaignState_CAMPAIGN_STATE_ABORTED || ab.GetCampaign().GetEndTime() == nil {
		t.Fatalf("abort: %v %v", err, ab.GetCampaign())
	}
	waitFor(t, 60*time.Second, func() error {
		c := getCampaign(t, cc, s.admin, b.GetId())
		if tot := c.GetTotals(); tot.GetPending()+tot.GetInFlight()+tot.GetVerifying() != 0 || tot.GetSkipped() == 0 {
			return fmt.Errorf("aborted campaign B: %v", tot)
		}
		return nil
	})
	if _, err := cc.ResumeCampaign(withToken(ctx10(t), s.admin), &campaignsv1.ResumeCampaignRequest{Tenant: "default", Id: b.GetId()}); !isReason(err, "CAMPAIGN_STATE") {
		t.Errorf("resume of an aborted campaign: %v", err)
	}

	// Campaign A completes.
	waitFor(t, 120*time.Second, func() error {
		c := getCampaign(t, cc, s.admin, a.GetId())
		if c.GetState() != campaignsv1.CampaignState_CAMPAIGN_STATE_COMPLETED {
			return fmt.Errorf("campaign A %s: %v", c.GetState(), c.GetTotals())
		}
		return nil
	})
	ca := getCampaign(t, cc, s.admin, a.GetId())
	if tot := ca.GetTotals(); tot.GetSucceeded() != 200 || tot.GetFailed() != 0 || ca.GetPlannedDevices() != 200 {
		t.Fatalf("campaign A: %v, %d planned", tot, ca.GetPlannedDevices())
	}
	wantSizes := []uint64{10, 90, 100}
	if len(ca.GetWaves()) != 3 {
		t.Fatalf("waves: %v", ca.GetWaves())
	}
	for i, w := range ca.GetWaves() {
		if w.GetDevices() != wantSizes[i] || w.GetOutcomes().GetSucceeded() != wantSizes[i] {
			t.Errorf("wave %d: %v", i, w)
		}
	}
	if n := countDevices(t, s, &inventoryv1.DeviceFilter{ProductClass: "HGWA", SoftwareVersion: "2.0.0"}); n != 200 {
		t.Errorf("%d HGW-A devices on 2.0.0, want 200", n)
	}
	// Each device of A got exactly one Download, and every one of them
	// really fetched it through /files/, resuming the cut.
	var sentA, sentB int
	for id, n := range downloadTasks(t, s) {
		if n != 1 {
			t.Errorf("device %s got %d Download tasks", id, n)
		}
		if strings.Contains(id, "-HGWA-") {
			sentA++
		} else {
			sentB++
		}
	}
	if sentA != 200 || sentB == 0 || sentB >= 40 {
		t.Errorf("downloads: %d to HGW-A, %d to HGW-B", sentA, sentB)
	}
	if sum := stopA(); sum.DownloadsResumed != 200 || sum.TransfersCompleted != 200 {
		t.Errorf("fleet A: %d downloads resumed, %d transfers; want 200 and 200", sum.DownloadsResumed, sum.TransfersCompleted)
	}
	stopB()

	// The events show the waves in order: a wave starts only once the
	// previous one has every outcome, with nothing of later waves begun.
	want := "created wave_started:0 wave_completed:0 wave_started:1 wave_completed:1 wave_started:2 wave_completed:2 completed"
	var evA []*eventsv1.Event
	waitFor(t, 10*time.Second, func() error {
		evA = events.of(a.GetId())
		var kinds []string
		for _, e := range evA {
			k := strings.TrimPrefix(e.GetKind(), "campaign.")
			if strings.HasPrefix(k, "wave_") {
				k = fmt.Sprintf("%s:%d", k, e.GetCampaign().GetWave())
			}
			kinds = append(kinds, k)
		}
		if got := strings.Join(kinds, " "); got != want {
			return fmt.Errorf("campaign A events %q, want %q", got, want)
		}
		return nil
	})
	for _, e := range evA {
		p := e.GetCampaign()
		if e.GetKind() != "campaign.wave_started" {
			continue
		}
		for j, w := range p.GetCampaign().GetWaves() {
			o := w.GetOutcomes()
			if j < int(p.GetWave()) && o.GetPending()+o.GetInFlight()+o.GetVerifying() != 0 {
				t.Errorf("wave %d started with wave %d not finished: %v", p.GetWave(), j, o)
			}
			if j > int(p.GetWave()) && o.GetInFlight()+o.GetVerifying()+o.GetSucceeded()+o.GetFailed() != 0 {
				t.Errorf("wave %d started with wave %d already begun: %v", p.GetWave(), j, o)
			}
		}
	}
	var bKinds []string
	for _, e := range events.of(b.GetId()) {
		bKinds = append(bKinds, strings.TrimPrefix(e.GetKind(), "campaign."))
	}
	if got := strings.Join(bKinds, " "); !strings.Contains(got, "stopped resumed aborted") {
		t.Errorf("campaign B events: %q", got)
	}
}

// isReason reports whether err carries the ErrorInfo reason.
func isReason(err error, want string) bool {
	_, r := reason(err)
	return r == want
}
