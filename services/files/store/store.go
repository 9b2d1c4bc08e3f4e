// Package store is the files service's metadata port (docs/files.md,
// "Records"): the record of each uploaded file, kept in MongoDB (mongostore)
// or the embedded SQLite (sqlitestore). Both pass the contract suite in
// package storetest. The bytes are elsewhere (package blob).
package store

import (
	"context"
	"errors"
	"time"
)

// Errors a store returns; wrap them (errors.Is).
var (
	// ErrNotFound: no record with this tenant and id.
	ErrNotFound = errors.New("file not found")
	// ErrNameExists: the tenant has a record with this name (or this id).
	ErrNameExists = errors.New("file name already used")
	// ErrUnavailable: the backing database cannot be reached.
	ErrUnavailable = errors.New("file store unavailable")
)

// Record is one file's metadata. Times are kept to the millisecond and
// returned in UTC; an empty ProductClasses comes back nil.
type Record struct {
	Tenant   string
	ID       string
	Name     string
	FileType string
	// ProductClasses the file is for; empty: any.
	ProductClasses []string
	OUI            string
	Version        string
	Size           int64
	// SHA256 is lower-case hexadecimal.
	SHA256     string
	CreateTime time.Time
	Uploader   string
}

// Query selects records of one tenant. Zero fields do not filter.
type Query struct {
	Tenant   string
	FileType string
	// ProductClass matches records listing it and records for any class.
	ProductClass string
	Version      string
	Name         string
	// After continues a listing after this record (CreateTime then ID,
	// both descending).
	After *Cursor
	// Limit bounds the records returned; 0 means 100.
	Limit int
}

// Cursor is a position in a listing.
type Cursor struct {
	CreateTime time.Time
	ID         string
}

// Store keeps file records.
type Store interface {
	// Start opens the database and creates its schema or indexes.
	Start(ctx context.Context) error
	// Close releases it.
	Close() error
	// Create inserts r: ErrNameExists when the tenant has a record with
	// r.Name or r.ID; of concurrent creates with one name exactly one
	// succeeds.
	Create(ctx context.Context, r Record) error
	// Get returns one record or ErrNotFound.
	Get(ctx context.Context, tenant, id string) (Record, error)
	// List returns records matching q, newest first (CreateTime, then ID,
	// descending), at most q.Limit.
	List(ctx context.Context, q Query) ([]Record, error)
	// Delete removes one record, or returns ErrNotFound.
	Delete(ctx context.Context, tenant, id string) error
}

// Truncate is t as a store keeps it: milliseconds, UTC.
func Truncate(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }
