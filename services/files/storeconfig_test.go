package files

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// TestMongoStoresStartTogether starts the mongodb file stores of several
// processes (gateways with the files module) on one database at once,
// then once more each (their next start): every start succeeds, on
// FerretDB too, which drops the connection of a createIndexes that meets
// an index that exists or is being made. The blob store then takes a
// file, its indexes already made by Start.
func TestMongoStoresStartTogether(t *testing.T) {
	cfg := StoreConfig{
		Store: StoreMongoDB, MongoDBURI: testenv.MongoURI(t), MongoDBDatabase: testenv.MongoDatabase(t),
		GridFSBucket: "fleetacs_files",
	}
	const processes = 6
	for round := range 2 {
		start := make(chan struct{})
		errs := make([]error, processes)
		var wg sync.WaitGroup
		for i := range processes {
			meta, blobs, closer, err := cfg.Open()
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				<-start
				if errs[i] = meta.Start(t.Context()); errs[i] == nil {
					errs[i] = blobs.Start(t.Context())
				}
			})
			t.Cleanup(func() { _ = closer() })
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d, process %d: %v", round, i, err)
			}
		}
	}

	_, blobs, closer, err := cfg.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer closer()
	ctx := context.WithoutCancel(t.Context())
	if err := blobs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := blobs.Create(ctx, "t1", "f1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("firmware")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	r, err := blobs.Open(ctx, "t1", "f1")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r.Content())
	if err != nil || !bytes.Equal(got, []byte("firmware")) {
		t.Fatalf("read back %q, %v", got, err)
	}
}
