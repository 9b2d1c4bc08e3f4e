package mongostore

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

// TestCollectionConcerns: the tasks collection sends its writes with write
// concern majority and its reads with read concern majority, as seen on
// the wire, and the server takes them (FerretDB here: a single node, where
// majority is the node itself; a replica set is what they are for, see
// docs/operations.md). The contract suite runs under them too.
func TestCollectionConcerns(t *testing.T) {
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
		return nil
	}
	s := NewWithDatabase(client.Database(testenv.MongoDatabase(t)), Config{})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	c, err := s.collection()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "concerns-probe"}}); err != nil {
		t.Fatalf("insert under the concerns: %v", err)
	}
	if wc := last("insert").Lookup("writeConcern", "w"); !isMajority(wc) {
		t.Errorf("insert sent with writeConcern.w %v, want majority", wc)
	}
	if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: "concerns-probe"}}).Err(); err != nil {
		t.Fatalf("read under the concerns: %v", err)
	}
	if rc := last("find").Lookup("readConcern", "level"); !isMajority(rc) {
		t.Errorf("find sent with readConcern.level %v, want majority", rc)
	}
}

// isMajority tells whether v is the string "majority" (not missing, not
// another type).
func isMajority(v bson.RawValue) bool {
	s, ok := v.StringValueOK()
	return ok && s == "majority"
}
