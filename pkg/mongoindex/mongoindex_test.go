package mongoindex_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/pkg/mongoindex"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var models = []mongo.IndexModel{
	{Keys: bson.D{{Key: "tenant", Value: 1}, {Key: "name", Value: 1}}, Options: options.Index().SetName("tenant_name").SetUnique(true)},
	{Keys: bson.D{{Key: "tenant", Value: 1}, {Key: "create_time", Value: -1}}, Options: options.Index().SetName("tenant_created")},
	{Keys: bson.D{{Key: "due", Value: 1}}}, // named by the server's rule: due_1
}

func connect(t *testing.T, uri string) *mongo.Client {
	t.Helper()
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

// EnsureAll runs Ensure on n clients of their own (as n processes would)
// at once, and returns their errors.
func ensureAll(t *testing.T, uri, db string, n int) []error {
	t.Helper()
	clients := make([]*mongo.Client, n)
	for i := range clients {
		clients[i] = connect(t, uri)
	}
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			<-start
			errs[i] = mongoindex.Ensure(t.Context(), c.Database(db).Collection("things"), models...)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// TestEnsureConcurrent: several processes starting at once on one
// database all succeed, and so do they at their next start, with the
// indexes made once each.
func TestEnsureConcurrent(t *testing.T) {
	uri, db := testenv.MongoURI(t), testenv.MongoDatabase(t)
	for round, n := range []int{8, 4} {
		for i, err := range ensureAll(t, uri, db, n) {
			if err != nil {
				t.Errorf("round %d, process %d: %v", round, i, err)
			}
		}
	}
	have, err := mongoindex.List(t.Context(), connect(t, uri).Database(db).Collection("things"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]mongoindex.Spec{}
	for _, s := range have {
		if _, dup := got[s.Name]; dup {
			t.Errorf("index %s listed twice", s.Name)
		}
		got[s.Name] = s
	}
	for _, name := range []string{"_id_", "tenant_name", "tenant_created", "due_1"} {
		if _, ok := got[name]; !ok {
			t.Errorf("index %s missing; have %v", name, have)
		}
	}
	if !got["tenant_name"].Unique || got["tenant_created"].Unique {
		t.Errorf("uniqueness: %v", have)
	}
	if len(got) != 4 {
		t.Errorf("%d indexes, want 4: %v", len(got), have)
	}
}

// TestEnsureConflict: an index of the same name with other keys is a
// clear error, at once (no retry mends it), and leaves the index alone.
func TestEnsureConflict(t *testing.T) {
	uri, db := testenv.MongoURI(t), testenv.MongoDatabase(t)
	coll := connect(t, uri).Database(db).Collection("things")
	if _, err := coll.Indexes().CreateOne(t.Context(), mongo.IndexModel{
		Keys: bson.D{{Key: "tenant", Value: 1}}, Options: options.Index().SetName("tenant_name"),
	}); err != nil {
		t.Fatal(err)
	}
	err := mongoindex.Ensure(t.Context(), coll, models...)
	if err == nil || !strings.Contains(err.Error(), "index tenant_name exists as {tenant: 1}, want {tenant: 1, name: 1} unique") {
		t.Fatalf("Ensure over a conflicting index: %v", err)
	}
	have, err := mongoindex.List(t.Context(), coll)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range have {
		if s.Name == "tenant_name" && len(s.Keys) != 1 {
			t.Errorf("the conflicting index was changed: %v", s)
		}
	}
}

// TestEnsureEnded: a context that ended is an error that says so, with
// no attempts.
func TestEnsureEnded(t *testing.T) {
	uri, db := testenv.MongoURI(t), testenv.MongoDatabase(t)
	coll := connect(t, uri).Database(db).Collection("things")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := mongoindex.Ensure(ctx, coll, models...); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("Ensure with an ended context: %v", err)
	}
}

func TestEnsureBadModel(t *testing.T) {
	uri, db := testenv.MongoURI(t), testenv.MongoDatabase(t)
	c := connect(t, uri).Database(db).Collection("things")
	err := mongoindex.Ensure(t.Context(), c, mongo.IndexModel{Keys: bson.M{"a": 1}})
	if err == nil || !strings.Contains(err.Error(), "want a non-empty bson.D") {
		t.Fatalf("Ensure with map keys: %v", err)
	}
}

func TestMissing(t *testing.T) {
	want := []mongoindex.Spec{
		{Name: "a", Keys: bson.D{{Key: "a", Value: 1}}},
		{Name: "b", Keys: bson.D{{Key: "b", Value: -1}, {Key: "c", Value: 1}}, Unique: true},
		{Name: "t", Keys: bson.D{{Key: "t", Value: "text"}}},
	}
	// The server answers numbers in its own types.
	have := []mongoindex.Spec{
		{Name: "_id_", Keys: bson.D{{Key: "_id", Value: int32(1)}}},
		{Name: "b", Keys: bson.D{{Key: "b", Value: float64(-1)}, {Key: "c", Value: int64(1)}}, Unique: true},
		{Name: "t", Keys: bson.D{{Key: "t", Value: "text"}}},
	}
	missing, err := mongoindex.Missing(want, have)
	if err != nil || len(missing) != 1 || missing[0].Name != "a" {
		t.Fatalf("Missing = %v, %v; want [a], nil", missing, err)
	}
	for _, c := range []struct {
		name string
		have mongoindex.Spec
	}{
		{"order", mongoindex.Spec{Name: "b", Keys: bson.D{{Key: "c", Value: 1}, {Key: "b", Value: -1}}, Unique: true}},
		{"direction", mongoindex.Spec{Name: "b", Keys: bson.D{{Key: "b", Value: 1}, {Key: "c", Value: 1}}, Unique: true}},
		{"unique", mongoindex.Spec{Name: "b", Keys: bson.D{{Key: "b", Value: -1}, {Key: "c", Value: 1}}}},
		{"fewer keys", mongoindex.Spec{Name: "b", Keys: bson.D{{Key: "b", Value: -1}}, Unique: true}},
		{"kind", mongoindex.Spec{Name: "t", Keys: bson.D{{Key: "t", Value: 1}}}},
	} {
		if _, err := mongoindex.Missing(want, []mongoindex.Spec{c.have}); err == nil {
			t.Errorf("%s: no conflict reported", c.name)
		}
	}
}

func TestDefaultName(t *testing.T) {
	if got := mongoindex.DefaultName(bson.D{{Key: "tenant", Value: 1}, {Key: "t", Value: int32(-1)}}); got != "tenant_1_t_-1" {
		t.Errorf("DefaultName = %q", got)
	}
}
