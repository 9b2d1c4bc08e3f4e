package gridfs_test

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/services/files/blob"
	"github.com/fleetacs/fleetacs/services/files/blob/blobtest"
	"github.com/fleetacs/fleetacs/services/files/blob/gridfs"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func client(t *testing.T) *mongo.Client {
	c, err := mongo.Connect(options.Client().ApplyURI(testenv.MongoURI(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

// TestContract runs the contract with 64 KiB chunks, so that its blobs of
// a few hundred kilobytes span several chunks and ranges cross them.
func TestContract(t *testing.T) {
	c := client(t)
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s := gridfs.New(c.Database(testenv.MongoDatabase(t)), "", 64<<10)
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestAbortLeavesNoChunks: chunks written before an abort are removed. The
// driver sends chunks once it has buffered 16 MiB, so the test writes more.
func TestAbortLeavesNoChunks(t *testing.T) {
	db := client(t).Database(testenv.MongoDatabase(t))
	s := gridfs.New(db, "bucket", 1<<20)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	w, err := s.Create(t.Context(), "a", "F")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 16<<20+1024)); err != nil {
		t.Fatal(err)
	}
	chunks := db.Collection("bucket.chunks")
	n, err := chunks.CountDocuments(t.Context(), bson.D{})
	if err != nil || n == 0 {
		t.Fatalf("chunks during the write: %d, %v (want some: the test must see them go)", n, err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if n, err := chunks.CountDocuments(t.Context(), bson.D{}); err != nil || n != 0 {
		t.Fatalf("chunks after Abort: %d, %v", n, err)
	}
}
