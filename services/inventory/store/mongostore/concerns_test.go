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

// TestCollectionConcerns: every collection the store reads and writes
// (devices, tokens, discovery profiles) sends its writes with write concern
// majority and its reads with read concern majority, as seen on the wire,
// and the server takes them (FerretDB here: a single node, where majority
// is the node itself; a replica set is what they are for, see
// docs/operations.md).
func TestCollectionConcerns(t *testing.T) {
	kr := testenv.Keyring(t)
	w := watchCommands(t)
	s := NewWithDatabase(w.client.Database(testenv.MongoDatabase(t)), Config{Secrets: kr})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	devices, err := s.collection()
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := s.tokens()
	if err != nil {
		t.Fatal(err)
	}
	profiles, err := s.profiles()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*mongo.Collection{devices, tokens, profiles} {
		w.checkConcerns(t, c)
	}
}

// commandWatcher is a client that records the commands it sends.
type commandWatcher struct {
	client *mongo.Client
	mu     sync.Mutex
	sent   []bson.Raw
}

func watchCommands(t *testing.T) *commandWatcher {
	t.Helper()
	w := &commandWatcher{}
	mon := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.sent = append(w.sent, append(bson.Raw(nil), e.Command...))
	}}
	c, err := mongo.Connect(options.Client().ApplyURI(testenv.MongoURI(t)).SetMonitor(mon))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	w.client = c
	return w
}

// last returns the last command sent named name.
func (w *commandWatcher) last(name string) bson.Raw {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.sent) - 1; i >= 0; i-- {
		if _, err := w.sent[i].LookupErr(name); err == nil {
			return w.sent[i]
		}
	}
	return nil
}

// checkConcerns writes and reads a probe document in c and checks the
// concerns the commands carried.
func (w *commandWatcher) checkConcerns(t *testing.T, c *mongo.Collection) {
	t.Helper()
	ctx := t.Context()
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "concerns-probe"}}); err != nil {
		t.Fatalf("%s: insert under the concerns: %v", c.Name(), err)
	}
	if wc := w.last("insert").Lookup("writeConcern", "w"); !isMajority(wc) {
		t.Errorf("%s: insert sent with writeConcern.w %v, want majority", c.Name(), wc)
	}
	if err := c.FindOne(ctx, bson.D{{Key: "_id", Value: "concerns-probe"}}).Err(); err != nil {
		t.Fatalf("%s: read under the concerns: %v", c.Name(), err)
	}
	if rc := w.last("find").Lookup("readConcern", "level"); !isMajority(rc) {
		t.Errorf("%s: find sent with readConcern.level %v, want majority", c.Name(), rc)
	}
	if _, err := c.DeleteOne(ctx, bson.D{{Key: "_id", Value: "concerns-probe"}}); err != nil {
		t.Fatalf("%s: delete under the concerns: %v", c.Name(), err)
	}
}

// isMajority tells whether v is the string "majority" (not missing, not
// another type).
func isMajority(v bson.RawValue) bool {
	s, ok := v.StringValueOK()
	return ok && s == "majority"
}
