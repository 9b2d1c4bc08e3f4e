// Package blob is the files service's port for the bytes of files
// (docs/files.md, "Where the bytes are"): on disk in the embedded default
// (package disk), in GridFS with MongoDB (package gridfs). Both pass the
// contract suite in package blobtest.
//
// A blob is written once and never changed: nothing of it is readable
// until its writer commits, and a writer that aborts (or fails) leaves
// nothing behind, so that a reader never sees a partial file.
package blob

import (
	"context"
	"errors"
	"io"
)

// ErrNotFound: no committed blob under this tenant and id.
var ErrNotFound = errors.New("blob not found")

// Store keeps blobs under a tenant and a file id.
type Store interface {
	// Start opens the store.
	Start(ctx context.Context) error
	// Close releases it.
	Close() error
	// Create begins a blob. ctx bounds the whole write.
	Create(ctx context.Context, tenant, id string) (Writer, error)
	// Open returns a committed blob, or ErrNotFound. ctx bounds the
	// reads of the returned blob.
	Open(ctx context.Context, tenant, id string) (Blob, error)
	// Delete removes a blob; a missing blob is no error.
	Delete(ctx context.Context, tenant, id string) error
}

// Writer writes one blob.
type Writer interface {
	io.Writer
	// Commit makes the blob readable, whole.
	Commit() error
	// Abort discards what was written; after Commit it does nothing.
	Abort() error
}

// Blob is one committed blob being read.
type Blob interface {
	// Size is its length in bytes.
	Size() int64
	// Content reads it from any offset. The disk store returns the
	// *os.File itself, so that net/http can send it with sendfile.
	Content() io.ReadSeeker
	// Close releases it.
	Close() error
}

// ValidName reports whether s can name a tenant or a file id in a store:
// 1 to 64 characters of [A-Za-z0-9_.-], not starting with a dot. The
// service checks its inputs before; the stores check again.
func ValidName(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Position returns where a Seek of offset from whence leads a reader at pos
// in a blob of size bytes: the stores' readers share it.
func Position(pos, size, offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = pos + offset
	case io.SeekEnd:
		abs = size + offset
	default:
		return 0, errors.New("blob: bad whence")
	}
	if abs < 0 {
		return 0, errors.New("blob: negative position")
	}
	return abs, nil
}
