package testenv

import (
	"testing"

	"github.com/fleetacs/fleetacs/pkg/secretbox"
)

// Keyring returns a keyring of one new random key, for stores and services
// that seal secrets in a test.
func Keyring(t testing.TB) *secretbox.Keyring {
	t.Helper()
	k, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := secretbox.New(k)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}
