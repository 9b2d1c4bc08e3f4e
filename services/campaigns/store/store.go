// Package store is the campaigns service's persistence port
// (docs/campaigns.md, "Records"): each campaign's record and one progress
// record per device it selected, kept in MongoDB (mongostore) or the
// embedded SQLite (sqlitestore). Both pass the contract suite in package
// storetest. A campaign's devices are read and written in pages: nothing
// here loads them all.
package store

import (
	"context"
	"errors"
	"time"

	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
)

// Errors a store returns; wrap them (errors.Is).
var (
	// ErrNotFound: no campaign with this tenant and id.
	ErrNotFound = errors.New("campaign not found")
	// ErrConflict: the record changed since it was read (Update).
	ErrConflict = errors.New("campaign changed concurrently")
	// ErrUnavailable: the backing database cannot be reached.
	ErrUnavailable = errors.New("campaign store unavailable")
)

// Record is one campaign. Campaign holds what the API shows but the
// progress (computed from the devices' records); Run the runner's state.
// Times are kept to the millisecond.
type Record struct {
	Tenant string
	ID     string
	// State mirrors Campaign.State, for queries.
	State campaignsv1.CampaignState
	// IdempotencyKey is the create request's, unique per tenant when set.
	IdempotencyKey string
	CreateTime     time.Time
	// Settled: the runner has nothing left to do or follow.
	Settled  bool
	Campaign *campaignsv1.Campaign
	Run      RunState
	// Version counts updates; Update compares and increments it.
	Version uint64
}

// RunState is what the runner keeps between restarts.
type RunState struct {
	// PlanToken is the inventory page token to continue planning from.
	PlanToken string `json:"plan_token,omitempty"`
	// Planned counts the devices recorded so far (the next one's Seq).
	Planned uint64 `json:"planned"`
	// PlanDone: every page was read and the waves were assigned.
	PlanDone bool `json:"plan_done"`
	// WaveEnds are the waves' ends (exclusive Seq), once planned.
	WaveEnds []uint64 `json:"wave_ends,omitempty"`
	// Wave is the wave in progress.
	Wave int `json:"wave"`
	// WaveStart and WaveDone are when each wave started and completed
	// (zero: not yet), indexed by wave.
	WaveStart []time.Time `json:"wave_start,omitempty"`
	WaveDone  []time.Time `json:"wave_done,omitempty"`
	// Version is the SoftwareVersion a firmware campaign verifies; empty:
	// no verification.
	Version string `json:"version,omitempty"`
	// RequestHash identifies the create request (idempotency).
	RequestHash string `json:"request_hash,omitempty"`
	// BaseSucceeded and BaseFailed are the totals at the last resume: the
	// stop rule counts only devices that finish after it.
	BaseSucceeded uint64 `json:"base_succeeded,omitempty"`
	BaseFailed    uint64 `json:"base_failed,omitempty"`
	// CancelDone: an aborted campaign's queued tasks were cancelled.
	CancelDone bool `json:"cancel_done,omitempty"`
}

// Device is one device's progress in a campaign.
type Device struct {
	Tenant   string
	Campaign string
	DeviceID string
	// Seq is the device's position in the plan (0, 1, ...).
	Seq uint64
	// Wave is its wave; -1 until the plan is complete.
	Wave    int32
	TaskID  string
	Outcome campaignsv1.Outcome
	Detail  string
	// TaskEnd is when its task was seen ended (verification deadline).
	TaskEnd    time.Time
	UpdateTime time.Time
}

// DeviceQuery selects devices of one campaign, by Seq ascending.
type DeviceQuery struct {
	Tenant, Campaign string
	// Wave: only this wave; -1: all.
	Wave int32
	// Outcome: only this one; unspecified: all.
	Outcome campaignsv1.Outcome
	// AfterSeq: only devices with a larger Seq; -1: from the start.
	AfterSeq int64
	// Limit; 0 means 100.
	Limit int
}

// Counts are a campaign's devices by wave (-1: not yet assigned) and
// outcome.
type Counts map[int32]map[campaignsv1.Outcome]uint64

// Cursor is a position in a listing (CreateTime then ID, descending).
type Cursor struct {
	CreateTime time.Time
	ID         string
}

// Store keeps campaigns and their devices.
type Store interface {
	// Start opens the database and creates its schema or indexes.
	Start(ctx context.Context) error
	// Close releases it.
	Close() error
	// Create inserts r with Version 1. When r.IdempotencyKey is set and
	// the tenant has a record with it, that record is returned with
	// existing true and nothing is written.
	Create(ctx context.Context, r Record) (stored Record, existing bool, err error)
	// Get returns one record or ErrNotFound.
	Get(ctx context.Context, tenant, id string) (Record, error)
	// List returns a tenant's records, newest first, in state when state
	// is set, after the cursor when set, at most limit (0: 50).
	List(ctx context.Context, tenant string, state campaignsv1.CampaignState, after *Cursor, limit int) ([]Record, error)
	// Update replaces r if its stored Version is r.Version (else
	// ErrConflict; ErrNotFound if gone) and returns it with the next
	// Version.
	Update(ctx context.Context, r Record) (Record, error)
	// Unsettled returns every campaign of every tenant not settled.
	Unsettled(ctx context.Context) ([]Record, error)
	// AddDevices records devices; a device the campaign already has is
	// left as it is.
	AddDevices(ctx context.Context, ds []Device) error
	// SetWave assigns wave to the campaign's devices with from <= Seq < to.
	SetWave(ctx context.Context, tenant, campaign string, from, to uint64, wave int32) error
	// Devices returns devices matching q.
	Devices(ctx context.Context, q DeviceQuery) ([]Device, error)
	// UpdateDevice writes d's TaskID, Outcome, Detail, TaskEnd and
	// UpdateTime (ErrNotFound if the campaign has no such device).
	UpdateDevice(ctx context.Context, d Device) error
	// SetOutcomes changes every device of the campaign with outcome from
	// to outcome to, with detail, and returns how many.
	SetOutcomes(ctx context.Context, tenant, campaign string, from, to campaignsv1.Outcome, detail string) (int64, error)
	// Count returns the campaign's devices by wave and outcome.
	Count(ctx context.Context, tenant, campaign string) (Counts, error)
	// Lease takes or renews the runner lease of a campaign for owner
	// until until, in one compare-and-set: true when owner holds it now
	// (no lease yet, owner's own, or another owner's that ended at or
	// before now), false when another owner's is still running. Leases
	// are kept apart from the records, so that taking one never
	// conflicts with an Update.
	Lease(ctx context.Context, tenant, campaign, owner string, now, until time.Time) (bool, error)
	// Release ends owner's lease of the campaign, so that another runner
	// takes it at once; another owner's lease is left alone.
	Release(ctx context.Context, tenant, campaign, owner string) error
}
