package mongostore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/services/inventory/store"
	"github.com/fleetacs/fleetacs/services/inventory/store/mongostore"
	"github.com/fleetacs/fleetacs/services/inventory/storetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// indexed are parameters the contract suite queries, declared so that
// index creation on tree paths is exercised too.
var indexed = []string{"Device.DeviceInfo.UpTime", "Device.X.Name", "Device.%Odd.$Path"}

func newStore(t *testing.T) store.Store {
	t.Helper()
	s := mongostore.New(mongostore.Config{
		URI:           testenv.MongoURI(t),
		Database:      testenv.MongoDatabase(t),
		IndexedParams: indexed,
	})
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, newStore)
}

func TestNewDoesNoIO(t *testing.T) {
	// An unreachable address: New must not try it, Start must fail.
	s := mongostore.New(mongostore.Config{URI: "mongodb://127.0.0.1:1/?connectTimeoutMS=200", Database: "x",
		ConnectTimeout: 300_000_000})
	if _, err := s.Get(t.Context(), "default", "X-1", store.ReadOptions{}); err == nil {
		t.Fatal("Get before Start succeeded")
	}
	if err := s.Start(t.Context()); err == nil {
		t.Fatal("Start against a closed port succeeded")
	}
	if err := mongostore.New(mongostore.Config{}).Start(t.Context()); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("Start without URI: %v", err)
	}
}

func TestStartRejectsBadIndexedParam(t *testing.T) {
	s := mongostore.New(mongostore.Config{URI: "mongodb://127.0.0.1:1", Database: "x", IndexedParams: []string{"Device..X"}})
	if err := s.Start(t.Context()); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("Start with a bad indexed parameter: %v", err)
	}
}
