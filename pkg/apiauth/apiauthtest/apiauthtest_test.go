package apiauthtest_test

import (
	"testing"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/apiauth/apiauthtest"
)

func TestMemoryStore(t *testing.T) {
	apiauthtest.Run(t, func(*testing.T) apiauth.TokenStore { return apiauthtest.NewMemoryStore() })
}

func TestMemoryStoreAsReader(t *testing.T) {
	apiauthtest.RunReader(t, func(*testing.T) (apiauth.TokenStore, apiauth.TokenReader) {
		s := apiauthtest.NewMemoryStore()
		return s, s
	})
}
