// Package disk is the embedded default blob store: one file per blob under
// a directory, <dir>/<tenant>/<id>. A blob is written to a temporary file
// in <dir>/.tmp, synced, then renamed into place, so that a reader finds
// either nothing or the whole file; the temporary files a crash leaves are
// removed at the next start.
package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fleetacs/fleetacs/services/files/blob"
)

// Store is the disk blob store.
type Store struct{ dir string }

var _ blob.Store = (*Store)(nil)

// New returns a store under dir. It does no I/O.
func New(dir string) *Store { return &Store{dir: dir} }

func (s *Store) tmpDir() string { return filepath.Join(s.dir, ".tmp") }

// Start creates the directory (owner only) and empties the temporary one.
func (s *Store) Start(context.Context) error {
	if err := os.RemoveAll(s.tmpDir()); err != nil {
		return fmt.Errorf("start disk blob store: %w", err)
	}
	if err := os.MkdirAll(s.tmpDir(), 0o700); err != nil {
		return fmt.Errorf("start disk blob store: %w", err)
	}
	return nil
}

// Close does nothing.
func (s *Store) Close() error { return nil }

func (s *Store) path(tenant, id string) (string, error) {
	if !blob.ValidName(tenant) || !blob.ValidName(id) {
		return "", fmt.Errorf("blob name %q/%q: %w", tenant, id, blob.ErrNotFound)
	}
	return filepath.Join(s.dir, tenant, id), nil
}

// Create implements blob.Store.
func (s *Store) Create(_ context.Context, tenant, id string) (blob.Writer, error) {
	final, err := s.path(tenant, id)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(s.tmpDir(), "upload-*")
	if err != nil {
		return nil, fmt.Errorf("create blob: %w", err)
	}
	return &writer{f: f, final: final}, nil
}

type writer struct {
	f     *os.File
	final string
	done  bool
}

func (w *writer) Write(p []byte) (int, error) { return w.f.Write(p) }

func (w *writer) Commit() error {
	if w.done {
		return errors.New("blob writer already finished")
	}
	w.done = true
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.MkdirAll(filepath.Dir(w.final), 0o700)
	}
	if err == nil {
		// Never over an existing blob: ids are unique, and a blob never
		// changes once committed.
		if _, serr := os.Lstat(w.final); serr == nil {
			err = fs.ErrExist
		}
	}
	if err == nil {
		err = os.Rename(w.f.Name(), w.final)
	}
	if err != nil {
		_ = os.Remove(w.f.Name())
		return fmt.Errorf("commit blob: %w", err)
	}
	return nil
}

func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	_ = w.f.Close()
	return os.Remove(w.f.Name())
}

// Open implements blob.Store.
func (s *Store) Open(_ context.Context, tenant, id string) (blob.Blob, error) {
	p, err := s.path(tenant, id)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, blob.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("open blob %s: not a regular file (%v)", p, err)
	}
	return diskBlob{f: f, size: fi.Size()}, nil
}

type diskBlob struct {
	f    *os.File
	size int64
}

func (b diskBlob) Size() int64            { return b.size }
func (b diskBlob) Content() io.ReadSeeker { return b.f }
func (b diskBlob) Close() error           { return b.f.Close() }

// Delete implements blob.Store.
func (s *Store) Delete(_ context.Context, tenant, id string) error {
	p, err := s.path(tenant, id)
	if err != nil {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob: %w", err)
	}
	return nil
}
