package mongostore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/apiauth/apiauthtest"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/services/inventory/store"
	"github.com/fleetacs/fleetacs/services/inventory/store/mongostore"
	"github.com/fleetacs/fleetacs/services/inventory/storetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// indexed are parameters the contract suite queries, declared so that
// index creation on tree paths is exercised too.
var indexed = []string{"Device.DeviceInfo.UpTime", "Device.X.Name", "Device.%Odd.$Path"}

// testKeys seal the passwords of the contract suite's stores, which share
// one collection.
var testKeys = func() *secretbox.Keyring {
	k, err := secretbox.GenerateKey()
	if err != nil {
		panic(err)
	}
	kr, err := secretbox.New(k)
	if err != nil {
		panic(err)
	}
	return kr
}()

func newStore(t *testing.T) store.Store {
	t.Helper()
	s := mongostore.New(mongostore.Config{
		URI:           testenv.MongoURI(t),
		Database:      testenv.MongoDatabase(t),
		IndexedParams: indexed,
		Secrets:       testKeys,
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
		ConnectTimeout: 300_000_000, Secrets: testKeys})
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
	s := mongostore.New(mongostore.Config{URI: "mongodb://127.0.0.1:1", Database: "x", IndexedParams: []string{"Device..X"}, Secrets: testKeys})
	if err := s.Start(t.Context()); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("Start with a bad indexed parameter: %v", err)
	}
}

// TestRestart starts a store twice over one database, as an inventory
// restart does: the second Start finds the indexes there (FerretDB 1.24
// dropped the connection when asked to create them again).
func TestRestart(t *testing.T) {
	db := testenv.MongoDatabase(t)
	var tenant, id string
	for i := range 2 {
		s := mongostore.New(mongostore.Config{URI: testenv.MongoURI(t), Database: db, IndexedParams: indexed, Secrets: testKeys})
		if err := s.Start(t.Context()); err != nil {
			t.Fatalf("start %d: %v", i+1, err)
		}
		if i == 0 {
			tenant, id = storetest.SeedOne(t, s)
		} else if _, err := s.Get(t.Context(), tenant, id, store.ReadOptions{}); err != nil {
			t.Fatalf("get after restart: %v", err)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTokenStoreContract(t *testing.T) {
	apiauthtest.Run(t, func(t *testing.T) apiauth.TokenStore { return newStore(t).(*mongostore.Store) })
}
