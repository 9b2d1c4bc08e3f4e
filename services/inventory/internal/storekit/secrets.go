package storekit

import (
	"errors"
	"fmt"

	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// Passwords at rest.
//
// Both adapters store the passwords of store.Credentials sealed with the
// inventory's keyring (package secretbox), the key ID beside each one, and
// bound to the device and the field they belong to, so that a sealed
// password copied onto another device's record does not open. User names
// stay in clear: they are not secret in Digest authentication (they travel
// in clear in every Authorization header) and may be looked up.
//
// A record written before passwords were sealed holds its password in
// clear and no key ID. Reads accept it; each adapter's Start seals such
// passwords, and re-seals those of keys other than the active one, so that
// a key taken out of rotation leaves nothing behind it cannot open.

// Credential fields, part of what a sealed password is bound to.
const (
	FieldConnectionRequest        = "connection_request"
	FieldConnectionRequestPending = "connection_request_pending"
	FieldCPE                      = "cpe"
)

// Sealed is a credentials pair whose password is sealed. KeyID "" marks a
// password stored in clear by an older release (Password holds its bytes).
type Sealed struct {
	Username string
	Password []byte
	KeyID    string
}

// ErrNoKeyring is returned by adapters started without a keyring.
var ErrNoKeyring = errors.New("no secrets keyring configured")

func aad(tenant, id, field string) []byte {
	return secretbox.AAD("fleetacs.inventory.v1", tenant, id, field)
}

// Seal seals c's password for (tenant, id, field); nil stays nil.
func Seal(k *secretbox.Keyring, tenant, id, field string, c *store.Credentials) (*Sealed, error) {
	if c == nil {
		return nil, nil
	}
	if k == nil {
		return nil, ErrNoKeyring
	}
	keyID, b, err := k.Seal([]byte(c.Password), aad(tenant, id, field))
	if err != nil {
		return nil, fmt.Errorf("seal %s password: %w", field, err)
	}
	return &Sealed{Username: c.Username, Password: b, KeyID: keyID}, nil
}

// Open opens what Seal returned (or a clear password of an older release).
func Open(k *secretbox.Keyring, tenant, id, field string, s Sealed) (*store.Credentials, error) {
	if s.KeyID == "" {
		return &store.Credentials{Username: s.Username, Password: string(s.Password)}, nil
	}
	if k == nil {
		return nil, ErrNoKeyring
	}
	pw, err := k.Open(s.KeyID, s.Password, aad(tenant, id, field))
	if err != nil {
		return nil, fmt.Errorf("open %s password of %s/%s: %w", field, tenant, id, err)
	}
	return &store.Credentials{Username: s.Username, Password: string(pw)}, nil
}

// SealPlan seals the credentials a plan writes, into SealedConnectionRequest
// and SealedCPE.
func (p *Plan) SealPlan(k *secretbox.Keyring, tenant, id string) error {
	var err error
	if p.SealedConnectionRequest, err = Seal(k, tenant, id, FieldConnectionRequest, p.ConnectionRequestCredentials); err != nil {
		return err
	}
	p.SealedCPE, err = Seal(k, tenant, id, FieldCPE, p.CPECredentials)
	return err
}

// CheckCredentials validates credentials an operator sets: a user name and
// a password of 1 to MaxCredentialLength characters of text.
func CheckCredentials(c store.Credentials) error {
	for _, f := range []struct{ name, v string }{{"username", c.Username}, {"password", c.Password}} {
		if f.v == "" || len(f.v) > store.MaxCredentialLength {
			return fmt.Errorf("%s: want 1 to %d bytes: %w", f.name, store.MaxCredentialLength, store.ErrInvalidArgument)
		}
		if err := store.ValidateText(f.name, f.v); err != nil {
			return err
		}
	}
	return nil
}
