package files

import (
	"context"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// TestDatabaseConcerns: a database opened with mongoDatabaseOptions, as the store's
// is, sends writes with write concern majority and reads with read concern
// majority, as seen on the wire, and the server takes them (FerretDB here:
// a single node; a replica set is what they are for, see
// docs/operations.md).
func TestDatabaseConcerns(t *testing.T) {
	var mu sync.Mutex
	var sent []bson.Raw
	mon := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, append(bson.Raw(nil), e.Command...))
	}}
	client, err := mongo.Connect(options.Client().ApplyURI(testenv.MongoURI(t)).SetMonitor(mon))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	last := func(name string) bson.Raw {
		mu.Lock()
		defer mu.Unlock()
		for i := len(sent) - 1; i >= 0; i-- {
			if _, err := sent[i].LookupErr(name); err == nil {
				return sent[i]
			}
		}
		return bson.Raw{}
	}
	majority := func(v bson.RawValue) bool {
		s, ok := v.StringValueOK()
		return ok && s == "majority"
	}
	c := client.Database(testenv.MongoDatabase(t), mongoDatabaseOptions()).Collection("concerns_probe")
	ctx := t.Context()
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "probe"}}); err != nil {
		t.Fatalf("insert under the concerns: %v", err)
	}
	if wc, err := last("insert").LookupErr("writeConcern", "w"); err != nil || !majority(wc) {
		t.Errorf("insert sent with writeConcern.w %v (%v), want majority", wc, err)
	}
	if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: "probe"}}).Err(); err != nil {
		t.Fatalf("read under the concerns: %v", err)
	}
	if rc, err := last("find").LookupErr("readConcern", "level"); err != nil || !majority(rc) {
		t.Errorf("find sent with readConcern.level %v (%v), want majority", rc, err)
	}
}
