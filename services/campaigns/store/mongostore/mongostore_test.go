package mongostore_test

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/services/campaigns/store"
	"github.com/fleetacs/fleetacs/services/campaigns/store/mongostore"
	"github.com/fleetacs/fleetacs/services/campaigns/storetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestContract(t *testing.T) {
	client, err := mongo.Connect(options.Client().ApplyURI(testenv.MongoURI(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	storetest.Run(t, func(t *testing.T) store.Store {
		s := mongostore.New(client.Database(testenv.MongoDatabase(t)))
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// TestStartTwice: a second replica, or a restarted one, starts on a
// database whose indexes exist (FerretDB drops the connection when an
// existing index is created again).
func TestStartTwice(t *testing.T) {
	client, err := mongo.Connect(options.Client().ApplyURI(testenv.MongoURI(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	db := testenv.MongoDatabase(t)
	for i := range 2 {
		if err := mongostore.New(client.Database(db)).Start(t.Context()); err != nil {
			t.Fatalf("start %d: %v", i+1, err)
		}
	}
}
