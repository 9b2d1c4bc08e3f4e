package campaigns

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	"github.com/fleetacs/fleetacs/services/campaigns/store"
)

// publicServer implements CampaignsService; authentication and role
// checks belong to the interceptors in front of it.
type publicServer struct {
	campaignsv1.UnimplementedCampaignsServiceServer
	s *Service
}

// newID returns a campaign id: 21 characters (the time in seconds and
// random bits, hex), short enough to be a CWMP CommandKey (32).
func newID(now time.Time) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("c%08x%s", uint32(now.Unix()), hex.EncodeToString(b[:]))
}

func validID(id string) bool {
	if len(id) != 21 || id[0] != 'c' {
		return false
	}
	_, err := hex.DecodeString(id[1:])
	return err == nil
}

func stateName(st campaignsv1.CampaignState) string {
	switch st {
	case campaignsv1.CampaignState_CAMPAIGN_STATE_RUNNING:
		return "running"
	case campaignsv1.CampaignState_CAMPAIGN_STATE_PAUSED:
		return "paused"
	case campaignsv1.CampaignState_CAMPAIGN_STATE_STOPPED:
		return "stopped"
	case campaignsv1.CampaignState_CAMPAIGN_STATE_COMPLETED:
		return "completed"
	case campaignsv1.CampaignState_CAMPAIGN_STATE_ABORTED:
		return "aborted"
	}
	return "unspecified"
}

func ended(st campaignsv1.CampaignState) bool {
	return st == campaignsv1.CampaignState_CAMPAIGN_STATE_COMPLETED || st == campaignsv1.CampaignState_CAMPAIGN_STATE_ABORTED
}

// CreateCampaign implements CampaignsService.
func (p *publicServer) CreateCampaign(ctx context.Context, req *campaignsv1.CreateCampaignRequest) (*campaignsv1.CreateCampaignResponse, error) {
	s := p.s
	tenant, err := s.tenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	if err := checkText("name", req.GetName(), maxName, true); err != nil {
		return nil, err
	}
	if err := checkText("idempotency_key", req.GetIdempotencyKey(), maxIdempotencyKey, false); err != nil {
		return nil, err
	}
	if err := checkSpec(req.GetSpec()); err != nil {
		return nil, err
	}
	if err := s.checkFilter(ctx, tenant, req.GetSpec().GetFilter()); err != nil {
		return nil, s.statusOf(ctx, "create campaign", err)
	}
	version, err := s.checkAction(ctx, tenant, req.GetSpec())
	if err != nil {
		return nil, s.statusOf(ctx, "create campaign", err)
	}
	now := s.deps.Now().UTC().Truncate(time.Millisecond)
	id := newID(now)
	state := campaignsv1.CampaignState_CAMPAIGN_STATE_RUNNING
	detail := "created"
	if req.GetStartPaused() {
		state, detail = campaignsv1.CampaignState_CAMPAIGN_STATE_PAUSED, "created paused"
	}
	c := &campaignsv1.Campaign{
		Id: id, Tenant: tenant, Name: req.GetName(), Spec: proto.Clone(req.GetSpec()).(*campaignsv1.CampaignSpec),
		State: state, StateDetail: detail, Creator: s.deps.Requester(ctx),
		CreateTime: timestamppb.New(now), UpdateTime: timestamppb.New(now),
	}
	r := store.Record{Tenant: tenant, ID: id, State: state, IdempotencyKey: req.GetIdempotencyKey(), CreateTime: now, Campaign: c,
		Run: store.RunState{Version: version, RequestHash: requestHash(req)}}
	stored, existing, err := s.store.Create(ctx, r)
	if err != nil {
		return nil, s.statusOf(ctx, "create campaign", err)
	}
	if existing && stored.Run.RequestHash != r.Run.RequestHash {
		return nil, apiError(codes.AlreadyExists, errorsv1.ErrorReason_IDEMPOTENCY_CONFLICT,
			"the idempotency key was used for another campaign request", map[string]string{"idempotency_key": req.GetIdempotencyKey(), "campaign_id": stored.ID})
	}
	out, err := s.view(ctx, stored)
	if err != nil {
		return nil, s.statusOf(ctx, "create campaign", err)
	}
	if !existing {
		s.logger.InfoContext(ctx, "campaign created", "tenant", tenant, "campaign", id, "name", req.GetName(), "state", stateName(state))
		s.event(ctx, out, "created", 0)
		s.wake()
	}
	return &campaignsv1.CreateCampaignResponse{Campaign: out, Existing: existing}, nil
}

// requestHash identifies a create request, so that a repeated key with
// another request is told apart.
func requestHash(req *campaignsv1.CreateCampaignRequest) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&campaignsv1.CreateCampaignRequest{
		Name: req.GetName(), Spec: req.GetSpec(), StartPaused: req.GetStartPaused()})
	return base64.RawStdEncoding.EncodeToString(b)
}

func (s *Service) get(ctx context.Context, tenant, id string) (store.Record, error) {
	if !validID(id) {
		return store.Record{}, apiErrorNotFound()
	}
	r, err := s.store.Get(ctx, tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return r, apiErrorNotFound()
	}
	return r, err
}

// GetCampaign implements CampaignsService.
func (p *publicServer) GetCampaign(ctx context.Context, req *campaignsv1.GetCampaignRequest) (*campaignsv1.GetCampaignResponse, error) {
	s := p.s
	tenant, err := s.tenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	if req.GetFailedDevices() > 1000 {
		return nil, invalidField("failed_devices", "at most 1000")
	}
	r, err := s.get(ctx, tenant, req.GetId())
	if err != nil {
		return nil, s.statusOf(ctx, "get campaign", err)
	}
	out, err := s.view(ctx, r)
	if err != nil {
		return nil, s.statusOf(ctx, "get campaign", err)
	}
	resp := &campaignsv1.GetCampaignResponse{Campaign: out}
	if n := req.GetFailedDevices(); n > 0 {
		ds, err := s.store.Devices(ctx, store.DeviceQuery{Tenant: tenant, Campaign: r.ID, Wave: -1, Outcome: campaignsv1.Outcome_OUTCOME_FAILED, AfterSeq: -1, Limit: int(n)})
		if err != nil {
			return nil, s.statusOf(ctx, "get campaign", err)
		}
		for _, d := range ds {
			resp.FailedDevices = append(resp.FailedDevices, &campaignsv1.DeviceProgress{DeviceId: d.DeviceID, Wave: uint32(max(d.Wave, 0)), TaskId: d.TaskID, Outcome: d.Outcome, Detail: d.Detail})
		}
	}
	return resp, nil
}

type listToken struct {
	T     int64  `json:"t"`
	ID    string `json:"i"`
	State int32  `json:"s"`
}

// ListCampaigns implements CampaignsService.
func (p *publicServer) ListCampaigns(ctx context.Context, req *campaignsv1.ListCampaignsRequest) (*campaignsv1.ListCampaignsResponse, error) {
	s := p.s
	tenant, err := s.tenant(ctx, req.GetTenant())
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, invalidField("page_size", "must not be negative")
	case size == 0:
		size = 50
	case size > 500:
		size = 500
	}
	var after *store.Cursor
	if tok := req.GetPageToken(); tok != "" {
		var lt listToken
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(tok) > 256 || json.Unmarshal(b, &lt) != nil || lt.State != int32(req.GetState()) {
			return nil, invalidField("page_token", "not a token of this listing")
		}
		after = &store.Cursor{CreateTime: time.UnixMilli(lt.T).UTC(), ID: lt.ID}
	}
	rs, err := s.store.List(ctx, tenant, req.GetState(), after, size)
	if err != nil {
		return nil, s.statusOf(ctx, "list campaigns", err)
	}
	out := &campaignsv1.ListCampaignsResponse{}
	for _, r := range rs {
		v, err := s.view(ctx, r)
		if err != nil {
			return nil, s.statusOf(ctx, "list campaigns", err)
		}
		out.Campaigns = append(out.Campaigns, v)
	}
	if len(rs) == size {
		last := rs[len(rs)-1]
		b, _ := json.Marshal(listToken{T: last.CreateTime.UnixMilli(), ID: last.ID, State: int32(req.GetState())})
		out.NextPageToken = base64.RawURLEncoding.EncodeToString(b)
	}
	return out, nil
}

// change applies fn to a campaign, retrying when the runner changed it
// meanwhile; fn returns false to leave it as it is.
func (s *Service) change(ctx context.Context, tenant, id string, fn func(r *store.Record, now time.Time) (bool, error)) (store.Record, bool, error) {
	for attempt := 0; ; attempt++ {
		r, err := s.get(ctx, tenant, id)
		if err != nil {
			return r, false, err
		}
		now := s.deps.Now().UTC().Truncate(time.Millisecond)
		ok, err := fn(&r, now)
		if err != nil || !ok {
			return r, false, err
		}
		r.Campaign.State = r.State
		r.Campaign.UpdateTime = timestamppb.New(now)
		u, err := s.store.Update(ctx, r)
		if errors.Is(err, store.ErrConflict) && attempt < 20 {
			continue
		}
		return u, err == nil, err
	}
}

func (s *Service) apiChange(ctx context.Context, action, tenantName, id, kind string, fn func(r *store.Record, now time.Time) (bool, error)) (*campaignsv1.Campaign, error) {
	tenant, err := s.tenant(ctx, tenantName)
	if err != nil {
		return nil, err
	}
	r, changed, err := s.change(ctx, tenant, id, fn)
	if err != nil {
		return nil, s.statusOf(ctx, action, err)
	}
	out, err := s.view(ctx, r)
	if err != nil {
		return nil, s.statusOf(ctx, action, err)
	}
	if changed {
		s.logger.InfoContext(ctx, "campaign "+kind, "tenant", tenant, "campaign", id, "by", s.deps.Requester(ctx))
		s.event(ctx, out, kind, 0)
		s.wake()
	}
	return out, nil
}

// PauseCampaign implements CampaignsService.
func (p *publicServer) PauseCampaign(ctx context.Context, req *campaignsv1.PauseCampaignRequest) (*campaignsv1.PauseCampaignResponse, error) {
	by := p.s.deps.Requester(ctx)
	c, err := p.s.apiChange(ctx, "pause campaign", req.GetTenant(), req.GetId(), "paused", func(r *store.Record, now time.Time) (bool, error) {
		switch {
		case ended(r.State):
			return false, stateError(stateName(r.State))
		case r.State == campaignsv1.CampaignState_CAMPAIGN_STATE_PAUSED:
			return false, nil
		}
		r.State = campaignsv1.CampaignState_CAMPAIGN_STATE_PAUSED
		r.Campaign.StateDetail = "paused by " + orOperator(by)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return &campaignsv1.PauseCampaignResponse{Campaign: c}, nil
}

// ResumeCampaign implements CampaignsService.
func (p *publicServer) ResumeCampaign(ctx context.Context, req *campaignsv1.ResumeCampaignRequest) (*campaignsv1.ResumeCampaignResponse, error) {
	s := p.s
	by := s.deps.Requester(ctx)
	c, err := s.apiChange(ctx, "resume campaign", req.GetTenant(), req.GetId(), "resumed", func(r *store.Record, now time.Time) (bool, error) {
		switch {
		case ended(r.State):
			return false, stateError(stateName(r.State))
		case r.State == campaignsv1.CampaignState_CAMPAIGN_STATE_RUNNING:
			return false, nil
		}
		// The stop rule counts only what finishes from now on.
		counts, err := s.store.Count(ctx, r.Tenant, r.ID)
		if err != nil {
			return false, err
		}
		t := totals(counts)
		r.Run.BaseSucceeded, r.Run.BaseFailed = t.GetSucceeded(), t.GetFailed()
		r.State = campaignsv1.CampaignState_CAMPAIGN_STATE_RUNNING
		r.Campaign.StateDetail = "resumed by " + orOperator(by)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return &campaignsv1.ResumeCampaignResponse{Campaign: c}, nil
}

// AbortCampaign implements CampaignsService.
func (p *publicServer) AbortCampaign(ctx context.Context, req *campaignsv1.AbortCampaignRequest) (*campaignsv1.AbortCampaignResponse, error) {
	by := p.s.deps.Requester(ctx)
	c, err := p.s.apiChange(ctx, "abort campaign", req.GetTenant(), req.GetId(), "aborted", func(r *store.Record, now time.Time) (bool, error) {
		switch {
		case r.State == campaignsv1.CampaignState_CAMPAIGN_STATE_ABORTED:
			return false, nil
		case ended(r.State):
			return false, stateError(stateName(r.State))
		}
		r.State = campaignsv1.CampaignState_CAMPAIGN_STATE_ABORTED
		r.Campaign.StateDetail = "aborted by " + orOperator(by)
		r.Campaign.EndTime = timestamppb.New(now)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return &campaignsv1.AbortCampaignResponse{Campaign: c}, nil
}

func orOperator(by string) string {
	if by == "" {
		return "an operator"
	}
	return by
}

// totals sums counts over the waves.
func totals(c store.Counts) *campaignsv1.Outcomes {
	out := &campaignsv1.Outcomes{}
	for _, byOutcome := range c {
		add(out, byOutcome)
	}
	return out
}

func add(o *campaignsv1.Outcomes, byOutcome map[campaignsv1.Outcome]uint64) {
	o.Pending += byOutcome[campaignsv1.Outcome_OUTCOME_PENDING]
	o.InFlight += byOutcome[campaignsv1.Outcome_OUTCOME_IN_FLIGHT]
	o.Verifying += byOutcome[campaignsv1.Outcome_OUTCOME_VERIFYING]
	o.Succeeded += byOutcome[campaignsv1.Outcome_OUTCOME_SUCCEEDED]
	o.Failed += byOutcome[campaignsv1.Outcome_OUTCOME_FAILED]
	o.Skipped += byOutcome[campaignsv1.Outcome_OUTCOME_SKIPPED]
}

// view is the campaign as the API shows it, with its progress.
func (s *Service) view(ctx context.Context, r store.Record) (*campaignsv1.Campaign, error) {
	counts, err := s.store.Count(ctx, r.Tenant, r.ID)
	if err != nil {
		return nil, err
	}
	return viewOf(r, counts), nil
}

func viewOf(r store.Record, counts store.Counts) *campaignsv1.Campaign {
	c := proto.Clone(r.Campaign).(*campaignsv1.Campaign)
	c.State = r.State
	c.Totals = totals(counts)
	c.PlannedDevices = r.Run.Planned
	var prev uint64
	for i, end := range r.Run.WaveEnds {
		w := &campaignsv1.WaveProgress{Index: uint32(i), Devices: end - prev, Outcomes: &campaignsv1.Outcomes{}}
		prev = end
		add(w.Outcomes, counts[int32(i)])
		if i < len(r.Run.WaveStart) && !r.Run.WaveStart[i].IsZero() {
			w.StartTime = timestamppb.New(r.Run.WaveStart[i])
		}
		c.Waves = append(c.Waves, w)
	}
	return c
}

// event publishes a campaign event (docs/events.md); failures are logged.
func (s *Service) event(ctx context.Context, c *campaignsv1.Campaign, kind string, wave int) {
	if s.deps.Publish == nil || s.deps.Subject == nil {
		return
	}
	full := "campaign." + kind
	now := s.deps.Now().UTC()
	id := fmt.Sprintf("%s.%s.%d.%d", c.GetId(), kind, wave, c.GetUpdateTime().AsTime().UnixMilli())
	ev := newEvent(id, c.GetTenant(), full, now, &campaignsv1.CampaignEvent{Campaign: c, Wave: uint32(wave)})
	data, err := proto.Marshal(ev)
	if err == nil {
		err = s.deps.Publish(ctx, s.deps.Subject(c.GetTenant(), full, c.GetId()), id, data)
	}
	if err != nil {
		s.logger.WarnContext(ctx, "campaign event not published", "tenant", c.GetTenant(), "campaign", c.GetId(), "kind", full, "error", err)
	}
}

func apiErrorNotFound() error {
	return apiError(codes.NotFound, errorsv1.ErrorReason_CAMPAIGN_NOT_FOUND, "campaign not found", nil)
}

func newEvent(id, tenant, kind string, now time.Time, ev *campaignsv1.CampaignEvent) *eventsv1.Event {
	return &eventsv1.Event{Id: id, Tenant: tenant, Time: timestamppb.New(now), Kind: kind, Payload: &eventsv1.Event_Campaign{Campaign: ev}}
}
