// Package store is the task store's port (docs/tasks.md, "Records"): what the
// tasks service needs from MongoDB (mongostore) or the embedded SQLite
// (sqlitestore). Both pass the contract suite in package storetest.
//
// A store keeps records; it knows nothing of task semantics. The tasks
// service decides every state change and writes it with a compare-and-swap
// on Version, so that two replicas (or a sweeper and a session report)
// never overwrite each other.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors a store returns; wrap them (errors.Is).
var (
	// ErrNotFound: no record with this tenant and id.
	ErrNotFound = errors.New("task not found")
	// ErrVersionConflict: Update's expected version is not the stored one.
	ErrVersionConflict = errors.New("task record changed since it was read")
	// ErrUnavailable: the backing database cannot be reached.
	ErrUnavailable = errors.New("task store unavailable")
)

// Record is one task as stored. Body is the task itself, encoded by the
// tasks service (a tasks.v1.Task in protobuf binary, history included,
// credentials removed); the other fields are copies of what the store must
// index or compare.
//
// What every store does alike (package storetest checks it):
//   - times are kept to the millisecond (MongoDB's precision): a store
//     truncates them (time.UnixMilli(t.UnixMilli())) and returns them in
//     UTC, on writes and in filters and cursors alike;
//   - Body and Secret come back byte for byte; an empty slice comes back
//     nil;
//   - Tenant and ID must not be empty, CreateTime and UpdateTime not zero,
//     QueueSeq, Version and State fit their signed 64- and 32-bit columns
//     (at most math.MaxInt64); a record breaking these is refused with an
//     error that is none of the sentinels below.
type Record struct {
	Tenant   string
	ID       string
	DeviceID string
	// State is the tasks.v1.TaskState number.
	State int32
	// Kind is the operation's field name ("reboot", ...).
	Kind string
	// IdempotencyKey is unique per tenant when not empty.
	IdempotencyKey string
	CreateTime     time.Time
	UpdateTime     time.Time
	// DueTime is when the service's sweeper must look at the record
	// (expiry of a queued task, deadline of a dispatched one, republishing
	// one whose queue message was never confirmed); zero: never (ended).
	DueTime time.Time
	// QueueSeq is the stream sequence of the task's message in its
	// device's NATS queue; 0 until published.
	QueueSeq uint64
	// Version is 1 at creation and one more at every Update.
	Version uint64
	// Body is the encoded task.
	Body []byte
	// Secret holds the operation's credentials sealed by the service
	// (pkg/secretbox); nil when none.
	Secret []byte
}

// Query selects records of one tenant. Zero fields do not filter.
type Query struct {
	Tenant        string
	DeviceID      string
	States        []int32
	Kinds         []string
	CreatedAfter  time.Time // inclusive
	CreatedBefore time.Time // exclusive
	// After continues a listing after this record (by CreateTime then ID,
	// both descending): the last record of the previous page.
	After *Cursor
	// Limit bounds the records returned; 0 means 100, negative is an
	// error.
	Limit int
}

// Cursor is a position in a listing.
type Cursor struct {
	CreateTime time.Time
	ID         string
}

// Store keeps task records.
type Store interface {
	// Start opens the database and creates its schema or indexes.
	Start(ctx context.Context) error
	// Close releases it.
	Close() error
	// Create inserts r (Version must be 1). When r.IdempotencyKey is set
	// and the tenant already has a record with that key, it inserts
	// nothing and returns that record with existing true; concurrent
	// creates with one key insert exactly one record. An existing ID
	// without a matching key is an error. stored is r as the store keeps
	// it (times truncated).
	Create(ctx context.Context, r Record) (stored Record, existing bool, err error)
	// Get returns one record or ErrNotFound.
	Get(ctx context.Context, tenant, id string) (Record, error)
	// GetMany returns the records of ids that exist, in any order, each
	// once (ids may repeat).
	GetMany(ctx context.Context, tenant string, ids []string) ([]Record, error)
	// List returns records matching q, newest first (CreateTime, then ID,
	// descending), at most q.Limit.
	List(ctx context.Context, q Query) ([]Record, error)
	// Update replaces the record with r if its stored Version is
	// expectVersion; r.Version must be expectVersion+1 (else an error).
	// Tenant, ID, DeviceID, CreateTime and IdempotencyKey never change:
	// Tenant and ID find the record, the others in r are ignored.
	// ErrVersionConflict otherwise, ErrNotFound when it is gone. Of
	// concurrent updates from one version exactly one succeeds.
	Update(ctx context.Context, r Record, expectVersion uint64) error
	// Due returns records of any tenant whose DueTime is set and at or
	// before t, oldest DueTime first (ties in any order), at most limit
	// (which must be positive).
	Due(ctx context.Context, t time.Time, limit int) ([]Record, error)
	// DeleteEnded removes records whose DueTime is zero and UpdateTime is
	// before t (ended tasks past their retention), at most limit (which
	// must be positive); it returns how many it removed. A removed
	// record's idempotency key is free again.
	DeleteEnded(ctx context.Context, t time.Time, limit int) (int, error)
	// ChangedSince returns records of any tenant whose UpdateTime is at or
	// after t, in no particular order, at most limit (which must be
	// positive; when more match, which of them is not said).
	ChangedSince(ctx context.Context, t time.Time, limit int) ([]Record, error)
}
