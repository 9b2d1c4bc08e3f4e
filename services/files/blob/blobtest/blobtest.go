// Package blobtest is the contract every blob store passes (package blob):
// the disk store and GridFS (on FerretDB in tests) run it.
package blobtest

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/fleetacs/fleetacs/services/files/blob"
)

// Open returns a started, empty store of the test's own. chunk is the
// largest chunk a store that splits blobs should use, so that the tests
// cross chunk boundaries with small blobs.
type Open func(t *testing.T) blob.Store

func data(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t *testing.T, s blob.Store, tenant, id string, b []byte) {
	t.Helper()
	w, err := s.Create(t.Context(), tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	// Written in odd pieces, as uploads arrive.
	for len(b) > 0 {
		n := min(len(b), 7777)
		if _, err := w.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

func readAt(t *testing.T, s blob.Store, tenant, id string, off, n int64) []byte {
	t.Helper()
	b, err := s.Open(t.Context(), tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	c := b.Content()
	if _, err := c.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(io.LimitReader(c, n))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Run runs the contract.
func Run(t *testing.T, open Open) {
	t.Run("RoundTripAndRanges", func(t *testing.T) {
		s := open(t)
		want := data(300_001, 1)
		put(t, s, "acme", "F1", want)
		b, err := s.Open(t.Context(), "acme", "F1")
		if err != nil {
			t.Fatal(err)
		}
		if b.Size() != int64(len(want)) {
			t.Fatalf("Size = %d, want %d", b.Size(), len(want))
		}
		got, err := io.ReadAll(b.Content())
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("whole read: %d bytes, equal %v, err %v", len(got), bytes.Equal(got, want), err)
		}
		// Seek back, as net/http does after learning the size.
		end, err := b.Content().Seek(0, io.SeekEnd)
		if err != nil || end != int64(len(want)) {
			t.Fatalf("SeekEnd = %d, %v", end, err)
		}
		if _, err := b.Content().Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 10)
		if _, err := io.ReadFull(b.Content(), head); err != nil || !bytes.Equal(head, want[:10]) {
			t.Fatalf("read after seek back: %v", err)
		}
		_ = b.Close()
		for _, r := range [][2]int64{{0, 1}, {1, 10}, {65535, 2}, {65536, 65536}, {131071, 100_000}, {299_990, 11}, {299_990, 1000}, {300_000, 1}} {
			got := readAt(t, s, "acme", "F1", r[0], r[1])
			end := min(r[0]+r[1], int64(len(want)))
			if !bytes.Equal(got, want[r[0]:end]) {
				t.Errorf("range %d+%d: %d bytes, not the blob's", r[0], r[1], len(got))
			}
		}
		if got := readAt(t, s, "acme", "F1", 300_001, 10); len(got) != 0 {
			t.Errorf("read at the end: %d bytes", len(got))
		}
	})
	t.Run("NothingBeforeCommitNothingAfterAbort", func(t *testing.T) {
		s := open(t)
		w, err := s.Create(t.Context(), "acme", "F2")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data(200_000, 2)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Open(t.Context(), "acme", "F2"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Open before Commit: %v, want ErrNotFound", err)
		}
		if err := w.Abort(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Open(t.Context(), "acme", "F2"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Open after Abort: %v, want ErrNotFound", err)
		}
		if err := w.Commit(); err == nil {
			t.Fatal("Commit after Abort succeeded")
		}
		// The id can be written afresh.
		put(t, s, "acme", "F2", []byte("second"))
		if got := readAt(t, s, "acme", "F2", 0, 100); string(got) != "second" {
			t.Fatalf("after abort and rewrite: %q", got)
		}
	})
	t.Run("TenantsAndDelete", func(t *testing.T) {
		s := open(t)
		put(t, s, "a", "F3", []byte("of a"))
		if _, err := s.Open(t.Context(), "b", "F3"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Open of another tenant: %v", err)
		}
		if err := s.Delete(t.Context(), "b", "F3"); err != nil {
			t.Fatalf("Delete of a missing blob: %v", err)
		}
		if got := readAt(t, s, "a", "F3", 0, 100); string(got) != "of a" {
			t.Fatalf("deleting another tenant's id touched this one: %q", got)
		}
		if err := s.Delete(t.Context(), "a", "F3"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Open(t.Context(), "a", "F3"); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Open after Delete: %v", err)
		}
	})
	t.Run("BadNames", func(t *testing.T) {
		s := open(t)
		for _, n := range [][2]string{{"..", "x"}, {"a", "../x"}, {"a/b", "x"}, {"", "x"}, {"a", ""}, {"a", ".hidden"}} {
			if _, err := s.Create(t.Context(), n[0], n[1]); err == nil {
				t.Errorf("Create(%q, %q) succeeded", n[0], n[1])
			}
			if _, err := s.Open(t.Context(), n[0], n[1]); !errors.Is(err, blob.ErrNotFound) {
				t.Errorf("Open(%q, %q): %v, want ErrNotFound", n[0], n[1], err)
			}
		}
	})
}
