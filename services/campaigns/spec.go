package campaigns

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	provisioningv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	filestore "github.com/fleetacs/fleetacs/services/files/store"
)

// Limits of a campaign (docs/campaigns.md, "Validation").
const (
	maxName           = 128
	maxIdempotencyKey = 128
	maxWaves          = 20
	maxWindows        = 16
	maxInFlight       = 10_000
	defaultInFlight   = 100
	maxTransferSecs   = 7 * 24 * 3600
	defaultTransfer   = 3600
	maxVerifySecs     = 24 * 3600
	defaultVerify     = 600
	maxWavePause      = 7 * 24 * 3600
	defaultMinSample  = 10
	maxMinSample      = 1_000_000
	firmwareFileType  = "1 Firmware Upgrade Image"
)

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func checkText(field, s string, max int, required bool) error {
	switch {
	case s == "" && required:
		return invalidField(field, "required")
	case len(s) > max:
		return invalidField(field, fmt.Sprintf("at most %d bytes", max))
	case !printable(s):
		return invalidField(field, "printable characters only")
	}
	return nil
}

// parseClock parses "HH:MM" into minutes after midnight.
func parseClock(s string) (int, bool) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, false
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 {
		return 0, false
	}
	return hh*60 + mm, true
}

// checkSpec validates a campaign's spec, as far as it can be without
// other services; the caller checks the filter and the action's file.
func checkSpec(sp *campaignsv1.CampaignSpec) error {
	if sp == nil {
		return invalidField("spec", "required")
	}
	switch a := sp.GetAction().(type) {
	case nil:
		return invalidField("spec.action", "one of firmware, operation or preset is required")
	case *campaignsv1.CampaignSpec_Firmware:
		fw := a.Firmware
		if (fw.GetFileId() == "") == (fw.GetVersion() == "") {
			return invalidField("spec.firmware", "exactly one of file_id and version")
		}
		if err := checkText("spec.firmware.file_id", fw.GetFileId(), 64, false); err != nil {
			return err
		}
		if err := checkText("spec.firmware.version", fw.GetVersion(), 64, false); err != nil {
			return err
		}
		if err := checkText("spec.firmware.file_type", fw.GetFileType(), 64, false); err != nil {
			return err
		}
	case *campaignsv1.CampaignSpec_Operation:
		if a.Operation.GetKind() == nil {
			return invalidField("spec.operation", "an operation kind is required")
		}
	case *campaignsv1.CampaignSpec_Preset:
		if err := checkText("spec.preset.name", a.Preset.GetName(), 128, true); err != nil {
			return err
		}
	}
	if len(sp.GetWaves()) > maxWaves {
		return invalidField("spec.waves", fmt.Sprintf("at most %d waves", maxWaves))
	}
	var lastCount uint64
	lastPct := 0.0
	for i, w := range sp.GetWaves() {
		f := fmt.Sprintf("spec.waves[%d]", i)
		switch s := w.GetSize().(type) {
		case *campaignsv1.Wave_Count:
			if s.Count == 0 || s.Count <= lastCount {
				return invalidField(f+".count", "must be above 0 and above the previous wave's count (waves are cumulative)")
			}
			lastCount = s.Count
		case *campaignsv1.Wave_Percent:
			if math.IsNaN(s.Percent) || s.Percent <= 0 || s.Percent > 100 || s.Percent <= lastPct {
				return invalidField(f+".percent", "must be in (0, 100] and above the previous wave's percentage (waves are cumulative)")
			}
			lastPct = s.Percent
		default:
			return invalidField(f, "count or percent is required")
		}
	}
	if len(sp.GetWindows()) > maxWindows {
		return invalidField("spec.windows", fmt.Sprintf("at most %d windows", maxWindows))
	}
	for i, w := range sp.GetWindows() {
		f := fmt.Sprintf("spec.windows[%d]", i)
		if _, ok := parseClock(w.GetStart()); !ok {
			return invalidField(f+".start", "HH:MM, 00:00 to 23:59")
		}
		if _, ok := parseClock(w.GetEnd()); !ok {
			return invalidField(f+".end", "HH:MM, 00:00 to 23:59")
		}
		if len(w.GetTimeZone()) > 64 {
			return invalidField(f+".time_zone", "at most 64 bytes")
		}
		if _, err := time.LoadLocation(w.GetTimeZone()); err != nil || strings.EqualFold(w.GetTimeZone(), "local") {
			return invalidField(f+".time_zone", "an IANA time zone such as Europe/Paris")
		}
		for j, d := range w.GetWeekdays() {
			if d > 6 {
				return invalidField(fmt.Sprintf("%s.weekdays[%d]", f, j), "0 (Sunday) to 6 (Saturday)")
			}
		}
	}
	if sp.GetMaxInFlight() > maxInFlight {
		return invalidField("spec.max_in_flight", fmt.Sprintf("at most %d", maxInFlight))
	}
	if sp.GetTransferTimeoutSeconds() > maxTransferSecs {
		return invalidField("spec.transfer_timeout_seconds", fmt.Sprintf("at most %d", maxTransferSecs))
	}
	if sp.GetVerifyTimeoutSeconds() > maxVerifySecs {
		return invalidField("spec.verify_timeout_seconds", fmt.Sprintf("at most %d", maxVerifySecs))
	}
	if sp.GetWavePauseSeconds() > maxWavePause {
		return invalidField("spec.wave_pause_seconds", fmt.Sprintf("at most %d", maxWavePause))
	}
	if r := sp.GetStopRule(); r != nil {
		if math.IsNaN(r.GetMaxFailureRatio()) || r.GetMaxFailureRatio() <= 0 || r.GetMaxFailureRatio() > 1 {
			return invalidField("spec.stop_rule.max_failure_ratio", "must be in (0, 1]")
		}
		if r.GetMinSample() > maxMinSample {
			return invalidField("spec.stop_rule.min_sample", fmt.Sprintf("at most %d", maxMinSample))
		}
	}
	return nil
}

// checkAction checks what the action needs of other services and returns
// the version a firmware campaign verifies ("" when none).
func (s *Service) checkAction(ctx context.Context, tenant string, sp *campaignsv1.CampaignSpec) (string, error) {
	switch a := sp.GetAction().(type) {
	case *campaignsv1.CampaignSpec_Preset:
		_, err := s.presetTags(ctx, tenant, a.Preset.GetName())
		return "", err
	case *campaignsv1.CampaignSpec_Firmware:
		if s.deps.Files == nil {
			return "", unavailableAction("spec.firmware", "the files service does not run in the campaigns process")
		}
		fw := a.Firmware
		if fw.GetFileId() != "" {
			f, err := s.deps.Files.Get(ctx, tenant, fw.GetFileId())
			if errors.Is(err, filestore.ErrNotFound) {
				return "", unavailableAction("spec.firmware.file_id", "the tenant has no file with this id")
			}
			if err != nil {
				return "", err
			}
			if fw.GetSkipVerify() {
				return "", nil
			}
			return f.GetVersion(), nil
		}
		ok, err := s.deps.Files.HasVersion(ctx, tenant, fileType(fw), fw.GetVersion())
		if err != nil {
			return "", err
		}
		if !ok {
			return "", unavailableAction("spec.firmware.version", "the tenant has no file of this type and version: upload it first")
		}
		if fw.GetSkipVerify() {
			return "", nil
		}
		return fw.GetVersion(), nil
	case *campaignsv1.CampaignSpec_Operation:
		if a.Operation.GetDownload() != nil || a.Operation.GetUpload() != nil {
			// Fine: the tasks service validates the rest per task.
			return "", nil
		}
	}
	return "", nil
}

// checkFilter has the inventory check the filter (one device read).
func (s *Service) checkFilter(ctx context.Context, tenant string, f *inventoryv1.DeviceFilter) error {
	_, err := s.deps.Inventory.ListDevices(ctx, &inventoryv1.ListDevicesRequest{Tenant: tenant, Filter: f, PageSize: 1})
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.InvalidArgument {
		return invalidField("spec.filter", st.Message())
	}
	return fmt.Errorf("check the filter with the inventory: %w", err)
}

func fileType(fw *campaignsv1.FirmwareAction) string {
	if fw.GetFileType() == "" {
		return firmwareFileType
	}
	return fw.GetFileType()
}

// awaitsKind: task operations that end in a later session, which take an
// await timeout (docs/tasks.md).
func awaitsKind(op *tasksv1.Operation) bool {
	switch op.GetKind().(type) {
	case *tasksv1.Operation_Reboot, *tasksv1.Operation_FactoryReset, *tasksv1.Operation_Download, *tasksv1.Operation_Upload,
		*tasksv1.Operation_ScheduleInform, *tasksv1.Operation_ScheduleDownload, *tasksv1.Operation_ChangeDuState, *tasksv1.Operation_Diagnostic:
		return true
	}
	return false
}

// windowOpen reports whether now is inside one of the windows (none:
// always).
func windowOpen(windows []*campaignsv1.MaintenanceWindow, now time.Time) bool {
	if len(windows) == 0 {
		return true
	}
	for _, w := range windows {
		loc, err := time.LoadLocation(w.GetTimeZone())
		if err != nil {
			continue
		}
		t := now.In(loc)
		start, _ := parseClock(w.GetStart())
		end, _ := parseClock(w.GetEnd())
		m := t.Hour()*60 + t.Minute()
		day := int(t.Weekday())
		in := false
		switch {
		case start == end:
			in = true
		case start < end:
			in = m >= start && m < end
		default: // spans midnight
			if m >= start {
				in = true
			} else if m < end {
				in = true
				day = (day + 6) % 7 // the window opened the day before
			}
		}
		if !in {
			continue
		}
		if len(w.GetWeekdays()) == 0 {
			return true
		}
		for _, d := range w.GetWeekdays() {
			if int(d) == day {
				return true
			}
		}
	}
	return false
}

// waveEnds returns the waves' ends (exclusive plan positions) for planned
// devices: cumulative, non-decreasing, the last one planned.
func waveEnds(waves []*campaignsv1.Wave, planned uint64) []uint64 {
	var out []uint64
	var prev uint64
	for _, w := range waves {
		var end uint64
		switch s := w.GetSize().(type) {
		case *campaignsv1.Wave_Count:
			end = s.Count
		case *campaignsv1.Wave_Percent:
			end = uint64(math.Ceil(s.Percent * float64(planned) / 100))
		}
		end = min(max(end, prev), planned)
		out = append(out, end)
		prev = end
	}
	if len(out) == 0 || out[len(out)-1] < planned {
		out = append(out, planned)
	}
	return out
}

// presetTags returns the tags a preset's match requires, which a campaign
// applying it adds to each device of a wave (docs/campaigns.md, "Applying
// a preset"): the preset must exist, be enabled and require tags.
func (s *Service) presetTags(ctx context.Context, tenant, name string) ([]string, error) {
	if s.deps.Presets == nil {
		return nil, unavailableAction("spec.preset", "the presets API is not reachable from the campaigns process")
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	resp, err := s.deps.Presets.GetPreset(cctx, &provisioningv1.GetPresetRequest{Tenant: tenant, Name: name})
	cancel()
	if status.Code(err) == codes.NotFound {
		return nil, unavailableAction("spec.preset.name", "the tenant has no preset of this name")
	}
	if err != nil {
		return nil, fmt.Errorf("read the preset: %w", err)
	}
	p := resp.GetPreset()
	if p.Enabled != nil && !p.GetEnabled() {
		return nil, unavailableAction("spec.preset.name", "the preset is disabled")
	}
	tags := p.GetMatch().GetTags()
	if len(tags) == 0 {
		return nil, unavailableAction("spec.preset.name",
			"the preset's match requires no tag: a campaign rolls a preset out by adding the tags its match requires to each device of a wave")
	}
	return tags, nil
}
