package mongopresets_test

import (
	"errors"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/services/inventory/presetstore"
	"github.com/fleetacs/fleetacs/services/inventory/presetstore/mongopresets"
	"github.com/fleetacs/fleetacs/services/inventory/presetstore/presetstoretest"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestContract(t *testing.T) {
	presetstoretest.Run(t, func(t *testing.T) presetstore.Store {
		s := mongopresets.New(mongopresets.Config{URI: testenv.MongoURI(t), Database: testenv.MongoDatabase(t)})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := s.Close(t.Context()); err != nil {
				t.Error(err)
			}
		})
		return s
	})
}

func TestUnreachableIsUnavailable(t *testing.T) {
	s := mongopresets.New(mongopresets.Config{URI: "mongodb://127.0.0.1:1/", Database: "x", ConnectTimeout: 300 * time.Millisecond})
	if err := s.Start(t.Context()); !errors.Is(err, presetstore.ErrUnavailable) {
		t.Fatalf("start against a closed port: %v", err)
	}
	if _, err := s.Get(t.Context(), "t", "a", 0); !errors.Is(err, presetstore.ErrUnavailable) {
		t.Fatalf("get before start: %v", err)
	}
}
