package mongostore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/services/tasks/store"
	"github.com/fleetacs/fleetacs/services/tasks/store/mongostore"
	"github.com/fleetacs/fleetacs/services/tasks/storetest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// open starts a store on a database of the test's own.
func open(t *testing.T, db string) *mongostore.Store {
	t.Helper()
	s := mongostore.New(mongostore.Config{URI: testenv.MongoURI(t), Database: db})
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, testenv.MongoDatabase(t)) })
}

var created = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func record(tenant, id string) store.Record {
	return store.Record{Tenant: tenant, ID: id, DeviceID: "dev", State: 1, Kind: "reboot",
		CreateTime: created, UpdateTime: created, Version: 1, Body: []byte("b")}
}

func TestNewDoesNoIOAndUnreachableIsUnavailable(t *testing.T) {
	s := mongostore.New(mongostore.Config{URI: "mongodb://127.0.0.1:1/?connectTimeoutMS=200", Database: "x",
		ConnectTimeout: 300 * time.Millisecond})
	if _, err := s.Get(t.Context(), "default", "x"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Get before Start: %v, want ErrUnavailable", err)
	}
	if err := s.Start(t.Context()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Start against a closed port: %v, want ErrUnavailable", err)
	}
	if err := mongostore.New(mongostore.Config{}).Start(t.Context()); err == nil || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Start without URI: %v, want a configuration error", err)
	}
}

func TestClosedIsUnavailable(t *testing.T) {
	s := open(t, testenv.MongoDatabase(t))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create(t.Context(), record("default", "a")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Create after Close: %v, want ErrUnavailable", err)
	}
}

// TestRestart starts a store twice over one database, as a restart of the
// tasks service does: the second Start finds the indexes there.
func TestRestart(t *testing.T) {
	db := testenv.MongoDatabase(t)
	for i := range 2 {
		s := mongostore.New(mongostore.Config{URI: testenv.MongoURI(t), Database: db})
		if err := s.Start(t.Context()); err != nil {
			t.Fatalf("start %d: %v", i+1, err)
		}
		if i == 0 {
			if _, _, err := s.Create(t.Context(), record("default", "a")); err != nil {
				t.Fatal(err)
			}
		} else if _, err := s.Get(t.Context(), "default", "a"); err != nil {
			t.Fatalf("get after restart: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTenantWithColonRefused(t *testing.T) {
	s := open(t, testenv.MongoDatabase(t))
	if _, _, err := s.Create(t.Context(), record("a:b", "c")); err == nil {
		t.Fatal("Create with a tenant holding ':' succeeded")
	}
}
