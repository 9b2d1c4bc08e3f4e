package apiauthtest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
)

// ReaderFactory returns an empty, started store and a TokenReader that
// reads it another way (through an API), and registers their cleanup.
type ReaderFactory func(t *testing.T) (apiauth.TokenStore, apiauth.TokenReader)

// RunReader is the suite of apiauth.TokenReader adapters: tokens written
// to the store read back through the reader with every field verification
// uses, unknown ids are ErrTokenNotFound, and a revocation shows on the
// next read.
func RunReader(t *testing.T, newReader ReaderFactory) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, apiauth.TokenStore, apiauth.TokenReader)
	}{
		{"Get", testReaderGet},
		{"NotFound", testReaderNotFound},
		{"Revoked", testReaderRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, r := newReader(t)
			tc.fn(t, s, r)
		})
	}
}

// verification keeps the fields verification uses.
func verification(r apiauth.TokenRecord) apiauth.TokenRecord {
	r = normal(r)
	return apiauth.TokenRecord{
		ID: r.ID, Hash: r.Hash, Role: r.Role, Tenants: r.Tenants, AllTenants: r.AllTenants,
		Expires: r.Expires, Revoked: r.Revoked,
	}
}

func testReaderGet(t *testing.T, s apiauth.TokenStore, rd apiauth.TokenReader) {
	some := record(1, "alpha", "beta")
	some.Expires = base.Add(90 * 24 * time.Hour)
	some.Role = authv1.Role_ROLE_ADMIN
	all := record(2)
	all.Role = authv1.Role_ROLE_VIEWER
	for _, r := range []apiauth.TokenRecord{some, all} {
		create(t, s, r)
		got, err := rd.GetToken(ctxT(t), r.ID)
		if err != nil {
			t.Fatalf("GetToken(%s): %v", r.ID, err)
		}
		if want := verification(r); !reflect.DeepEqual(verification(got), want) {
			t.Fatalf("GetToken = %+v\nwant       %+v", got, want)
		}
		if got.Principal().ID != r.Principal().ID {
			t.Fatalf("principal %q, want %q", got.Principal().ID, r.Principal().ID)
		}
	}
}

func testReaderNotFound(t *testing.T, _ apiauth.TokenStore, rd apiauth.TokenReader) {
	if _, err := rd.GetToken(ctxT(t), "0123456789abcdef"); !errors.Is(err, apiauth.ErrTokenNotFound) {
		t.Fatalf("GetToken of an unknown id: %v, want ErrTokenNotFound", err)
	}
}

func testReaderRevoked(t *testing.T, s apiauth.TokenStore, rd apiauth.TokenReader) {
	r := record(3, "alpha")
	create(t, s, r)
	if got, err := rd.GetToken(ctxT(t), r.ID); err != nil || !got.Active(base) {
		t.Fatalf("GetToken before revocation: %+v, %v", got, err)
	}
	at := base.Add(time.Minute)
	if _, err := s.RevokeToken(ctxT(t), r.ID, at); err != nil {
		t.Fatal(err)
	}
	got, err := rd.GetToken(ctxT(t), r.ID)
	if err != nil || !got.Revoked.Equal(ms(at)) || got.Active(at.Add(time.Second)) {
		t.Fatalf("GetToken after revocation: %+v, %v", got, err)
	}
}
