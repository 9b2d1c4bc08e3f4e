package campaigns

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/provisioning"
	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/campaigns/store"
)

// The runner (docs/campaigns.md, "How a campaign runs"). Each pass takes
// every unsettled campaign in turn: it plans (pages of the inventory's
// devices into the store), follows the tasks in flight and the devices
// being verified, applies the stop rule, starts waves in order and
// creates tasks within the window and the cap, and ends the campaign once
// every device has an outcome. All of it reads and writes the store in
// pages, so that a campaign of any size costs the runner the same memory,
// and a restarted runner carries on from what the store holds.

// Calls per pass and campaign, and parallel calls to the tasks service.
const (
	planPagesPerPass = 20
	callParallelism  = 8
	callTimeout      = 30 * time.Second
)

// pass runs every unsettled campaign once.
func (s *Service) pass(ctx context.Context) {
	defer s.ticks.Add(1)
	rs, err := s.store.Unsettled(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.WarnContext(ctx, "campaign runner: list campaigns", "error", err)
		}
		return
	}
	for _, r := range rs {
		if ctx.Err() != nil {
			return
		}
		// One runner per campaign: the one holding its lease
		// (docs/campaigns.md, "Several replicas").
		now := s.deps.Now()
		held, err := s.store.Lease(ctx, r.Tenant, r.ID, s.owner, now, now.Add(s.cfg.LeaseTTL))
		if err != nil {
			if ctx.Err() == nil {
				s.logger.WarnContext(ctx, "campaign runner: lease", "tenant", r.Tenant, "campaign", r.ID, "error", err)
			}
			continue
		}
		if !held {
			s.leases.Delete(leaseKey{r.Tenant, r.ID})
			continue
		}
		s.leases.Store(leaseKey{r.Tenant, r.ID}, struct{}{})
		settled, err := s.step(ctx, r)
		if err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "campaign runner", "tenant", r.Tenant, "campaign", r.ID, "error", err)
		}
		if settled {
			s.release(ctx, r.Tenant, r.ID)
		}
	}
}

// leaseKey is a campaign whose lease this runner holds.
type leaseKey struct{ tenant, id string }

// release gives a campaign's lease up.
func (s *Service) release(ctx context.Context, tenant, id string) {
	s.leases.Delete(leaseKey{tenant, id})
	if err := s.store.Release(ctx, tenant, id, s.owner); err != nil {
		s.logger.WarnContext(ctx, "campaign runner: release the lease", "tenant", tenant, "campaign", id, "error", err)
	}
}

// releaseAll gives up every lease this runner holds, so that another
// replica takes its campaigns at its next pass rather than after the
// leases' end.
func (s *Service) releaseAll(ctx context.Context) {
	s.leases.Range(func(k, _ any) bool {
		key := k.(leaseKey)
		s.release(ctx, key.tenant, key.id)
		return true
	})
}

// Requester is the requester of the tasks a campaign creates.
func Requester(campaign string) string { return "campaign:" + campaign }

// run is one campaign's pass: its record (changed in place) and what was
// learnt of its devices.
type run struct {
	s   *Service
	r   store.Record
	now time.Time
	// events to publish once the record is stored: kind and wave.
	events []pendingEvent
	dirty  bool
	// tags are the preset's tags, read once per pass (presetTags).
	mu   sync.Mutex
	tags []string
}

type pendingEvent struct {
	kind string
	wave int
}

// step runs one campaign's pass; settled: the campaign has nothing left
// to do.
func (s *Service) step(ctx context.Context, r store.Record) (settled bool, err error) {
	x := &run{s: s, r: r, now: s.deps.Now().UTC().Truncate(time.Millisecond)}
	err = x.step(ctx)
	if x.dirty {
		x.r.Campaign.State = x.r.State
		x.r.Campaign.UpdateTime = timestamppb.New(x.now)
		u, uerr := s.store.Update(ctx, x.r)
		if errors.Is(uerr, store.ErrConflict) {
			// An operator changed it meanwhile: the next pass starts from
			// theirs (devices already written stay written).
			return false, err
		}
		if uerr != nil {
			return false, errors.Join(err, uerr)
		}
		x.r, settled = u, u.Settled
		if len(x.events) > 0 {
			counts, cerr := s.store.Count(ctx, u.Tenant, u.ID)
			if cerr != nil {
				return false, errors.Join(err, cerr)
			}
			view := viewOf(u, counts)
			for _, e := range x.events {
				s.event(ctx, view, e.kind, e.wave)
			}
		}
	}
	return settled, err
}

func (x *run) setState(st campaignsv1.CampaignState, kind, detail string) {
	x.r.State = st
	x.r.Campaign.StateDetail = detail
	x.dirty = true
	x.events = append(x.events, pendingEvent{kind: kind})
	x.s.logger.Info("campaign "+kind, "tenant", x.r.Tenant, "campaign", x.r.ID, "detail", detail)
}

func (x *run) step(ctx context.Context) error {
	st := x.r.State
	if st == campaignsv1.CampaignState_CAMPAIGN_STATE_ABORTED {
		return x.abort(ctx)
	}
	if ended(st) {
		x.r.Settled, x.dirty = true, true
		return nil
	}
	if !x.r.Run.PlanDone && st == campaignsv1.CampaignState_CAMPAIGN_STATE_RUNNING {
		if err := x.plan(ctx); err != nil {
			return err
		}
	}
	if err := x.follow(ctx); err != nil {
		return err
	}
	counts, err := x.s.store.Count(ctx, x.r.Tenant, x.r.ID)
	if err != nil {
		return err
	}
	if x.r.State != campaignsv1.CampaignState_CAMPAIGN_STATE_RUNNING || !x.r.Run.PlanDone {
		return nil
	}
	if x.stopRule(counts) {
		return nil
	}
	t := totals(counts)
	if t.GetPending()+t.GetInFlight()+t.GetVerifying() == 0 {
		x.advanceWaves(counts)
		x.r.Campaign.EndTime = timestamppb.New(x.now)
		x.r.Settled = true
		x.setState(campaignsv1.CampaignState_CAMPAIGN_STATE_COMPLETED, "completed",
			fmt.Sprintf("%d succeeded, %d failed, %d skipped", t.GetSucceeded(), t.GetFailed(), t.GetSkipped()))
		return nil
	}
	wave, ok := x.advanceWaves(counts)
	if !ok || !windowOpen(x.r.Campaign.GetSpec().GetWindows(), x.now) {
		return nil
	}
	limit := int(x.r.Campaign.GetSpec().GetMaxInFlight())
	if limit == 0 {
		limit = defaultInFlight
	}
	room := limit - int(t.GetInFlight())
	if room <= 0 || counts[int32(wave)][campaignsv1.Outcome_OUTCOME_PENDING] == 0 {
		return nil
	}
	return x.dispatch(ctx, wave, room)
}

// stopRule pauses the campaign when the failure ratio since the last
// resume is above the rule's.
func (x *run) stopRule(counts store.Counts) bool {
	rule := x.r.Campaign.GetSpec().GetStopRule()
	if rule == nil {
		return false
	}
	t := totals(counts)
	failed := t.GetFailed() - min(t.GetFailed(), x.r.Run.BaseFailed)
	done := failed + t.GetSucceeded() - min(t.GetSucceeded(), x.r.Run.BaseSucceeded)
	sample := uint64(rule.GetMinSample())
	if sample == 0 {
		sample = defaultMinSample
	}
	if done < sample || float64(failed)/float64(done) <= rule.GetMaxFailureRatio() {
		return false
	}
	x.setState(campaignsv1.CampaignState_CAMPAIGN_STATE_STOPPED, "stopped",
		fmt.Sprintf("stop rule: %d of %d finished devices failed (%.3f > %.3f)", failed, done, float64(failed)/float64(done), rule.GetMaxFailureRatio()))
	return true
}

// advanceWaves moves past the waves whose devices all have outcomes,
// starts the next one when its pause is over, and returns the wave tasks
// may be created for (ok false: none now).
func (x *run) advanceWaves(counts store.Counts) (int, bool) {
	rs := &x.r.Run
	n := len(rs.WaveEnds)
	for len(rs.WaveStart) < n {
		rs.WaveStart = append(rs.WaveStart, time.Time{})
		rs.WaveDone = append(rs.WaveDone, time.Time{})
	}
	for rs.Wave < n {
		w := rs.Wave
		c := counts[int32(w)]
		open := c[campaignsv1.Outcome_OUTCOME_PENDING] + c[campaignsv1.Outcome_OUTCOME_IN_FLIGHT] + c[campaignsv1.Outcome_OUTCOME_VERIFYING]
		if rs.WaveStart[w].IsZero() {
			if w > 0 {
				pause := time.Duration(x.r.Campaign.GetSpec().GetWavePauseSeconds()) * time.Second
				if x.now.Before(rs.WaveDone[w-1].Add(pause)) {
					return w, false
				}
			}
			rs.WaveStart[w] = x.now
			x.dirty = true
			x.events = append(x.events, pendingEvent{kind: "wave_started", wave: w})
		}
		if open > 0 {
			return w, true
		}
		rs.WaveDone[w] = x.now
		rs.Wave++
		x.dirty = true
		x.events = append(x.events, pendingEvent{kind: "wave_completed", wave: w})
	}
	return n, false
}

// plan reads pages of the filter's devices into the store; once the last
// page is in, it assigns the waves.
func (x *run) plan(ctx context.Context) error {
	rs := &x.r.Run
	for range planPagesPerPass {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		page, err := x.s.deps.Inventory.ListDevices(cctx, &inventoryv1.ListDevicesRequest{
			Tenant: x.r.Tenant, Filter: x.r.Campaign.GetSpec().GetFilter(), PageSize: int32(x.s.cfg.PageSize), PageToken: rs.PlanToken})
		cancel()
		if err != nil {
			return fmt.Errorf("plan: list devices: %w", err)
		}
		ds := make([]store.Device, len(page.GetDevices()))
		for i, d := range page.GetDevices() {
			ds[i] = store.Device{Tenant: x.r.Tenant, Campaign: x.r.ID, DeviceID: d.GetId(), Seq: rs.Planned + uint64(i), Wave: -1,
				Outcome: campaignsv1.Outcome_OUTCOME_PENDING, UpdateTime: x.now}
		}
		if err := x.s.store.AddDevices(ctx, ds); err != nil {
			return fmt.Errorf("plan: %w", err)
		}
		rs.Planned += uint64(len(ds))
		rs.PlanToken = page.GetNextPageToken()
		x.dirty = true
		if rs.PlanToken == "" {
			break
		}
	}
	if rs.PlanToken != "" {
		return nil
	}
	rs.WaveEnds = waveEnds(x.r.Campaign.GetSpec().GetWaves(), rs.Planned)
	var from uint64
	for i, end := range rs.WaveEnds {
		if end > from {
			if err := x.s.store.SetWave(ctx, x.r.Tenant, x.r.ID, from, end, int32(i)); err != nil {
				return fmt.Errorf("plan: %w", err)
			}
		}
		from = end
	}
	rs.PlanDone = true
	x.r.Campaign.PlannedDevices = rs.Planned
	x.s.logger.Info("campaign planned", "tenant", x.r.Tenant, "campaign", x.r.ID, "devices", rs.Planned, "waves", rs.WaveEnds)
	return nil
}

// forEach pages through the campaign's devices with outcome and calls fn
// for each, callParallelism at a time.
func (x *run) forEach(ctx context.Context, outcome campaignsv1.Outcome, fn func(ctx context.Context, d store.Device) error) error {
	after := int64(-1)
	for {
		ds, err := x.s.store.Devices(ctx, store.DeviceQuery{Tenant: x.r.Tenant, Campaign: x.r.ID, Wave: -1, Outcome: outcome, AfterSeq: after, Limit: x.s.cfg.PageSize})
		if err != nil {
			return err
		}
		if len(ds) == 0 {
			return nil
		}
		if err := parallel(ctx, ds, fn); err != nil {
			return err
		}
		after = int64(ds[len(ds)-1].Seq)
	}
}

func parallel(ctx context.Context, ds []store.Device, fn func(ctx context.Context, d store.Device) error) error {
	sem := make(chan struct{}, callParallelism)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, d := range ds {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(ctx, d); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// follow reads the tasks in flight and the versions being verified.
func (x *run) follow(ctx context.Context) error {
	err := x.forEach(ctx, campaignsv1.Outcome_OUTCOME_IN_FLIGHT, func(ctx context.Context, d store.Device) error {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := x.s.deps.Tasks.GetTask(cctx, &tasksv1.GetTaskRequest{Tenant: x.r.Tenant, Id: d.TaskID})
		cancel()
		if status.Code(err) == codes.NotFound {
			return x.finish(ctx, d, campaignsv1.Outcome_OUTCOME_FAILED, "its task no longer exists")
		}
		if err != nil {
			return fmt.Errorf("follow task %s: %w", d.TaskID, err)
		}
		t := resp.GetTask()
		switch t.GetState() {
		case tasksv1.TaskState_TASK_STATE_DONE:
			if x.verifies() {
				d.Outcome, d.TaskEnd, d.UpdateTime = campaignsv1.Outcome_OUTCOME_VERIFYING, x.now, x.now
				if err := x.s.store.UpdateDevice(ctx, d); err != nil {
					return err
				}
				return x.verify(ctx, d)
			}
			return x.finish(ctx, d, campaignsv1.Outcome_OUTCOME_SUCCEEDED, "")
		case tasksv1.TaskState_TASK_STATE_FAULT:
			f := t.GetFault()
			return x.failed(ctx, d, fmt.Sprintf("task fault %d: %s", f.GetCode(), truncate(f.GetFaultString(), 200)))
		case tasksv1.TaskState_TASK_STATE_EXPIRED:
			return x.failed(ctx, d, "task expired")
		case tasksv1.TaskState_TASK_STATE_CANCELLED:
			return x.failed(ctx, d, "task cancelled")
		}
		return nil
	})
	if err != nil {
		return err
	}
	return x.forEach(ctx, campaignsv1.Outcome_OUTCOME_VERIFYING, x.verify)
}

// failed ends a device whose task did not succeed. For firmware the
// version the device reports decides: a device that upgraded although its
// task ended otherwise (its TransferComplete came after the deadline, or
// was lost with a session) succeeded.
func (x *run) failed(ctx context.Context, d store.Device, detail string) error {
	if x.verifies() {
		ok, _, err := x.converged(ctx, d)
		if err != nil && status.Code(err) != codes.NotFound {
			return fmt.Errorf("verify device %s: %w", d.DeviceID, err)
		}
		if err == nil && ok {
			what := "upgraded"
			if x.r.Run.Version == "" {
				what = "converged"
			}
			return x.finish(ctx, d, campaignsv1.Outcome_OUTCOME_SUCCEEDED, what+", though its task ended otherwise: "+detail)
		}
	}
	return x.finish(ctx, d, campaignsv1.Outcome_OUTCOME_FAILED, detail)
}

// verify checks a device after its task: its SoftwareVersion, or its
// convergence to the presets.
func (x *run) verify(ctx context.Context, d store.Device) error {
	ok, got, err := x.converged(ctx, d)
	if status.Code(err) == codes.NotFound {
		return x.finish(ctx, d, campaignsv1.Outcome_OUTCOME_FAILED, "the device no longer exists")
	}
	if err != nil {
		return fmt.Errorf("verify device %s: %w", d.DeviceID, err)
	}
	if ok {
		return x.finish(ctx, d, campaignsv1.Outcome_OUTCOME_SUCCEEDED, "")
	}
	timeout := time.Duration(x.r.Campaign.GetSpec().GetVerifyTimeoutSeconds()) * time.Second
	if timeout == 0 {
		timeout = defaultVerify * time.Second
	}
	if deadline := d.TaskEnd.Add(timeout); x.now.Before(deadline) {
		if half := d.TaskEnd.Add(timeout / 2); x.r.Campaign.GetSpec().GetConnectionRequest() && !x.now.Before(half) && d.UpdateTime.Before(half) {
			return x.nudge(ctx, d, deadline)
		}
		return nil
	}
	return x.finish(ctx, d, campaignsv1.Outcome_OUTCOME_FAILED, "verification: "+got)
}

// nudge wakes a device that has not shown the change halfway through its
// verify time: the session that reported its task's outcome may have
// started before the change could show (a preset's tags added while it
// ran, docs/provisioning.md), and the next one would otherwise wait for
// the device's periodic Inform, which can come after the verify timeout.
// A GetRPCMethods task with a connection request opens a session at once;
// it expires with the verify time and has a key of its own, so a device
// gets one such task per campaign however often the runner passes. The
// device record's update time marks the nudge (it is then past half),
// and only campaigns that may wake devices (spec.connection_request)
// nudge.
func (x *run) nudge(ctx context.Context, d store.Device, deadline time.Time) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	cctx = apiauth.OnBehalfOf(cctx, Requester(x.r.ID))
	_, err := x.s.deps.Tasks.CreateTask(cctx, &tasksv1.CreateTaskRequest{Tenant: x.r.Tenant, DeviceId: d.DeviceID,
		Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_GetRpcMethods{GetRpcMethods: &tasksv1.GetRPCMethods{}}},
		Options: &tasksv1.TaskOptions{IdempotencyKey: idempotencyKey(x.r.ID, d.DeviceID) + ":verify", ConnectionRequest: true,
			ExpireTime: timestamppb.New(deadline)}})
	cancel()
	switch r := reason(status.Convert(err)); {
	case err == nil, r == errorsv1.ErrorReason_IDEMPOTENCY_CONFLICT:
	case r == errorsv1.ErrorReason_QUEUE_FULL, r == errorsv1.ErrorReason_DEVICE_NOT_FOUND:
		// Not now (verify finds a device that is gone on its own).
		return nil
	default:
		return fmt.Errorf("wake device %s for its verification: %w", d.DeviceID, err)
	}
	d.Detail, d.UpdateTime = "verifying: woke the device for a session that shows the change", x.now
	return x.s.store.UpdateDevice(ctx, d)
}

func (x *run) finish(ctx context.Context, d store.Device, o campaignsv1.Outcome, detail string) error {
	d.Outcome, d.Detail, d.UpdateTime = o, detail, x.now
	return x.s.store.UpdateDevice(ctx, d)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// idempotencyKey is the key of the task a campaign creates for a device:
// the same for every attempt, so that the tasks service never creates a
// second one (docs/tasks.md, "Idempotency").
func idempotencyKey(campaign, device string) string {
	h := sha256.Sum256([]byte(device))
	return "campaign:" + campaign + ":" + hex.EncodeToString(h[:12])
}

// dispatch creates tasks for up to room pending devices of wave.
func (x *run) dispatch(ctx context.Context, wave, room int) error {
	ds, err := x.s.store.Devices(ctx, store.DeviceQuery{Tenant: x.r.Tenant, Campaign: x.r.ID, Wave: int32(wave),
		Outcome: campaignsv1.Outcome_OUTCOME_PENDING, AfterSeq: -1, Limit: min(room, x.s.cfg.PageSize)})
	if err != nil {
		return err
	}
	files := &fileCache{byClass: map[string]*filesv1.File{}}
	return parallel(ctx, ds, func(ctx context.Context, d store.Device) error { return x.create(ctx, d, files) })
}

// fileCache keeps a pass's resolved firmware files, by product class.
type fileCache struct {
	mu      sync.Mutex
	byClass map[string]*filesv1.File
}

// operation is the task for one device.
func (x *run) operation(ctx context.Context, d store.Device, files *fileCache) (*tasksv1.Operation, string, error) {
	sp := x.r.Campaign.GetSpec()
	switch a := sp.GetAction().(type) {
	case *campaignsv1.CampaignSpec_Operation:
		return a.Operation, "", nil
	case *campaignsv1.CampaignSpec_Firmware:
		if x.s.deps.Files == nil {
			return nil, "the files service does not run in the campaigns process", nil
		}
		fw := a.Firmware
		class := ""
		if fw.GetFileId() == "" {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			resp, err := x.s.deps.Inventory.GetDevice(cctx, &inventoryv1.GetDeviceRequest{Tenant: x.r.Tenant, Id: d.DeviceID})
			cancel()
			if status.Code(err) == codes.NotFound {
				return nil, "the device no longer exists", nil
			}
			if err != nil {
				return nil, "", err
			}
			class = resp.GetDevice().GetDeviceId().GetProductClass()
		}
		files.mu.Lock()
		f := files.byClass[class]
		files.mu.Unlock()
		if f == nil {
			var err error
			if fw.GetFileId() != "" {
				f, err = x.s.deps.Files.Get(ctx, x.r.Tenant, fw.GetFileId())
			} else {
				f, err = x.s.deps.Files.Resolve(ctx, x.r.Tenant, class, fileType(fw), fw.GetVersion())
			}
			if err != nil {
				return nil, "firmware file: " + truncate(err.Error(), 200), nil
			}
			files.mu.Lock()
			files.byClass[class] = f
			files.mu.Unlock()
		}
		u, err := x.s.deps.Files.SignFileURL(f, d.DeviceID, x.s.cfg.URLTTL)
		if err != nil {
			return nil, "", fmt.Errorf("sign the firmware URL: %w", err)
		}
		return &tasksv1.Operation{Kind: &tasksv1.Operation_Download{Download: &tasksv1.Download{
			CommandKey: x.r.ID, FileType: f.GetFileType(), Url: u, FileSize: uint64(f.GetSize())}}}, "", nil
	case *campaignsv1.CampaignSpec_Preset:
		// The preset applies to the device once it has the tags the
		// preset's match requires; a task that asks nothing of note
		// (GetRPCMethods, with the campaign's connection request) brings
		// the session in which it converges.
		tags, err := x.presetTags(ctx, a.Preset.GetName())
		if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
			// The preset was deleted, disabled or lost its tags since.
			return nil, "preset: " + truncate(st.Message(), 200), nil
		}
		if err != nil {
			return nil, "", err
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err = x.s.deps.Inventory.AddTags(cctx, &inventoryv1.AddTagsRequest{Tenant: x.r.Tenant, Id: d.DeviceID, Tags: tags})
		cancel()
		if status.Code(err) == codes.NotFound {
			return nil, "the device no longer exists", nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("tag device %s: %w", d.DeviceID, err)
		}
		return &tasksv1.Operation{Kind: &tasksv1.Operation_GetRpcMethods{GetRpcMethods: &tasksv1.GetRPCMethods{}}}, "", nil
	}
	return nil, "the campaign's action is not available", nil
}

// presetTags reads the tags of the campaign's preset once per pass.
func (x *run) presetTags(ctx context.Context, name string) ([]string, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.tags == nil {
		tags, err := x.s.presetTags(ctx, x.r.Tenant, name)
		if err != nil {
			return nil, err
		}
		x.tags = tags
	}
	return x.tags, nil
}

// verifies reports whether the campaign verifies its devices after their
// task: the firmware version, or the preset's convergence.
func (x *run) verifies() bool {
	return x.r.Run.Version != "" || x.r.Campaign.GetSpec().GetPreset() != nil
}

// converged reads whether a device verifies: it reports the firmware
// version, or its sessions recorded that it converged to the presets;
// what it reports instead, in words.
func (x *run) converged(ctx context.Context, d store.Device) (bool, string, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	resp, err := x.s.deps.Inventory.GetDevice(cctx, &inventoryv1.GetDeviceRequest{Tenant: x.r.Tenant, Id: d.DeviceID})
	cancel()
	if err != nil {
		return false, "", err
	}
	dev := resp.GetDevice()
	if a := x.r.Campaign.GetSpec().GetPreset(); a != nil {
		return x.presetConverged(ctx, dev, a.GetName())
	}
	got := dev.GetSoftwareVersion()
	if got == x.r.Run.Version {
		return true, "", nil
	}
	return false, fmt.Sprintf("SoftwareVersion %q, expected %q", truncate(got, 64), x.r.Run.Version), nil
}

// presetConverged reads whether a device converged to the presets with
// the campaign's preset's tags: its fingerprint must cover its current
// tags (a session that matched the presets with the tags it had before
// the campaign added the preset's records one that does not, see
// docs/campaigns.md), and these must hold the preset's.
func (x *run) presetConverged(ctx context.Context, dev *inventoryv1.Device, preset string) (bool, string, error) {
	want, err := x.presetTags(ctx, preset)
	if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
		return false, "preset: " + truncate(st.Message(), 200), nil
	}
	if err != nil {
		return false, "", err
	}
	fp, tags := dev.GetPresetsFingerprint(), dev.GetTags()
	for _, t := range want {
		if !slices.Contains(tags, t) {
			return false, fmt.Sprintf("presets: the device no longer has the preset's tag %q", truncate(t, 64)), nil
		}
	}
	switch {
	case provisioning.FingerprintCovers(fp, tags):
		return true, "", nil
	case fp == "":
		return false, "presets: no session converged the device yet", nil
	case strings.Contains(fp, provisioning.FingerprintRefused):
		return false, "presets: the CPE refused part of what they ask (see the worker's log, or a dry run)", nil
	case strings.Contains(fp, provisioning.FingerprintFirmwareWait):
		return false, "presets: a preset's firmware version is awaited", nil
	}
	return false, "presets: the last session matched them with other tags than the device has; its next session applies them", nil
}

// create creates one device's task and records it.
func (x *run) create(ctx context.Context, d store.Device, files *fileCache) error {
	op, failure, err := x.operation(ctx, d, files)
	if err != nil {
		return err
	}
	if failure != "" {
		return x.finish(ctx, d, campaignsv1.Outcome_OUTCOME_FAILED, failure)
	}
	sp := x.r.Campaign.GetSpec()
	opts := &tasksv1.TaskOptions{IdempotencyKey: idempotencyKey(x.r.ID, d.DeviceID), ConnectionRequest: sp.GetConnectionRequest()}
	if awaitsKind(op) {
		opts.AwaitTimeoutSeconds = sp.GetTransferTimeoutSeconds()
		if opts.AwaitTimeoutSeconds == 0 {
			opts.AwaitTimeoutSeconds = defaultTransfer
		}
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	// The task's requester is the campaign (docs/campaigns.md).
	cctx = apiauth.OnBehalfOf(cctx, Requester(x.r.ID))
	resp, err := x.s.deps.Tasks.CreateTask(cctx, &tasksv1.CreateTaskRequest{Tenant: x.r.Tenant, DeviceId: d.DeviceID, Operation: op, Options: opts})
	cancel()
	taskID := resp.GetTask().GetId()
	if err != nil {
		st := status.Convert(err)
		switch reason(st) {
		case errorsv1.ErrorReason_IDEMPOTENCY_CONFLICT:
			// A task was created for this device by an earlier pass
			// (firmware URLs are signed anew each time): it is the one.
			taskID = metadata(st, "task_id")
			if taskID == "" {
				return fmt.Errorf("create task for %s: %w", d.DeviceID, err)
			}
		case errorsv1.ErrorReason_DEVICE_NOT_FOUND:
			return x.finish(ctx, d, campaignsv1.Outcome_OUTCOME_SKIPPED, "the device no longer exists")
		case errorsv1.ErrorReason_QUEUE_FULL:
			return nil // tried again next pass
		default:
			if st.Code() == codes.InvalidArgument || st.Code() == codes.FailedPrecondition {
				return x.finish(ctx, d, campaignsv1.Outcome_OUTCOME_FAILED, "task refused: "+truncate(st.Message(), 200))
			}
			return fmt.Errorf("create task for %s: %w", d.DeviceID, err)
		}
	}
	d.TaskID, d.Outcome, d.UpdateTime = taskID, campaignsv1.Outcome_OUTCOME_IN_FLIGHT, x.now
	return x.s.store.UpdateDevice(ctx, d)
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei
		}
	}
	return nil
}

func reason(st *status.Status) errorsv1.ErrorReason {
	ei := errorInfo(st)
	if ei == nil {
		return errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED
	}
	return errorsv1.ErrorReason(errorsv1.ErrorReason_value[ei.GetReason()])
}

func metadata(st *status.Status, key string) string {
	if ei := errorInfo(st); ei != nil {
		return ei.GetMetadata()[key]
	}
	return ""
}

// abort cancels the campaign's queued tasks, skips its pending devices
// and follows what could not be cancelled; then the campaign is settled.
func (x *run) abort(ctx context.Context) error {
	if _, err := x.s.store.SetOutcomes(ctx, x.r.Tenant, x.r.ID, campaignsv1.Outcome_OUTCOME_PENDING, campaignsv1.Outcome_OUTCOME_SKIPPED, "campaign aborted"); err != nil {
		return err
	}
	if !x.r.Run.CancelDone {
		err := x.forEach(ctx, campaignsv1.Outcome_OUTCOME_IN_FLIGHT, func(ctx context.Context, d store.Device) error {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			_, err := x.s.deps.Tasks.CancelTask(cctx, &tasksv1.CancelTaskRequest{Tenant: x.r.Tenant, Id: d.TaskID})
			cancel()
			switch status.Code(err) {
			case codes.OK:
				return x.finish(ctx, d, campaignsv1.Outcome_OUTCOME_SKIPPED, "campaign aborted: task cancelled")
			case codes.FailedPrecondition, codes.NotFound:
				return nil // dispatched or ended: followed below
			}
			return fmt.Errorf("cancel task %s: %w", d.TaskID, err)
		})
		if err != nil {
			return err
		}
		x.r.Run.CancelDone, x.dirty = true, true
	}
	if err := x.follow(ctx); err != nil {
		return err
	}
	counts, err := x.s.store.Count(ctx, x.r.Tenant, x.r.ID)
	if err != nil {
		return err
	}
	if t := totals(counts); t.GetInFlight()+t.GetVerifying()+t.GetPending() == 0 {
		x.r.Settled, x.dirty = true, true
	}
	return nil
}
