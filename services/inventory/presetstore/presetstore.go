// Package presetstore is the storage port of presets (docs/provisioning.md):
// per tenant, each preset a versioned record whose every put bumps its
// revision and keeps the one before in its history, and per tenant a set
// revision that every put and delete raises, so that session workers can
// cache a tenant's set and check it with one small read.
//
// Two adapters implement it: sqlitepresets (the embedded default, a file
// beside the inventory's) and mongopresets (collections presets,
// preset_revisions and preset_sets). Both pass the contract suite in
// presetstoretest.
//
// The store holds a preset as an opaque body (the marshalled
// fleetacs.provisioning.v1.Preset) plus the few fields it indexes; the
// service validates presets before they reach it.
package presetstore

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors; adapters wrap them, so test with errors.Is.
var (
	// ErrNotFound: no preset of that name (or revision) in the tenant.
	ErrNotFound = errors.New("preset not found")
	// ErrRevisionMismatch: the preset is not at the expected revision.
	ErrRevisionMismatch = errors.New("preset revision mismatch")
	// ErrLimit: the tenant has MaxPerTenant presets already.
	ErrLimit = errors.New("too many presets in the tenant")
	// ErrUnavailable: the backend cannot be reached.
	ErrUnavailable = errors.New("preset store unavailable")
)

// MaxPerTenant is how many presets one tenant may hold.
const MaxPerTenant = 1000

// MaxHistory is how many revisions of a preset the store keeps (the
// current one included); older ones are forgotten.
const MaxHistory = 50

// Record is one revision of a preset.
type Record struct {
	Tenant string
	Name   string
	// Revision is 1 for a new preset, one more at every put.
	Revision uint64
	// Enabled presets are in the tenant's set (Set).
	Enabled bool
	// Body is the marshalled preset.
	Body []byte
	// UpdateTime (UTC, millisecond precision) and UpdatedBy describe the
	// put that wrote this revision.
	UpdateTime time.Time
	UpdatedBy  string
}

// Put is a write of a preset.
type Put struct {
	Tenant, Name string
	Enabled      bool
	Body         []byte
	Time         time.Time
	By           string
	// Expected, when not nil, is the revision the preset must be at (0:
	// it must not exist).
	Expected *uint64
}

// Sealed is a secret sealed with a secretbox key.
type Sealed struct {
	KeyID string
	Data  []byte
}

// Store is the presets storage port.
type Store interface {
	// Start connects and creates the schema; idempotent.
	Start(ctx context.Context) error
	// Close releases connections.
	Close(ctx context.Context) error
	// Put writes a new revision of a preset (creating it at revision 1),
	// keeps the previous one in the history and raises the tenant's set
	// revision. ErrRevisionMismatch when Expected does not hold, ErrLimit
	// when a new preset would exceed MaxPerTenant.
	Put(ctx context.Context, p Put) (Record, error)
	// Get returns the current revision of a preset, or revision when not 0.
	Get(ctx context.Context, tenant, name string, revision uint64) (Record, error)
	// List returns up to limit presets of the tenant whose names sort
	// after after, by name.
	List(ctx context.Context, tenant, after string, limit int) ([]Record, error)
	// Delete removes a preset and its history and raises the tenant's set
	// revision. ErrNotFound when there is none; ErrRevisionMismatch when
	// expected is not nil and does not hold.
	Delete(ctx context.Context, tenant, name string, expected *uint64) error
	// SetRevision returns the tenant's set revision: 0 when the tenant
	// never had a preset.
	SetRevision(ctx context.Context, tenant string) (uint64, error)
	// EnsureSecrets keeps the per-device secrets of presets
	// ({{secret "NAME"}}): for each name of want the device has no secret
	// of, it stores want's; it returns the device's secrets of those
	// names, the ones it already had winning. Secrets are sealed by the
	// caller; the store keeps them as given.
	EnsureSecrets(ctx context.Context, tenant, device string, want map[string]Sealed) (map[string]Sealed, error)
	// DeleteSecrets forgets a device's secrets (the device was deleted).
	DeleteSecrets(ctx context.Context, tenant, device string) error
	// ResealSecrets passes every secret not sealed under activeKey to
	// reseal and stores what it returns (key rotation); it returns how
	// many it changed. An error of reseal stops it.
	ResealSecrets(ctx context.Context, activeKey string, reseal func(tenant, device, name string, s Sealed) (Sealed, error)) (int, error)
	// Set returns the tenant's set revision and then its enabled presets
	// by name. The revision is read first: a put that lands between the
	// two reads raises the revision past the one returned, so a cache
	// keyed by it sees the change at its next check.
	Set(ctx context.Context, tenant string) (uint64, []Record, error)
}
