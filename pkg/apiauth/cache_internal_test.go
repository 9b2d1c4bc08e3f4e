package apiauth

import (
	"context"
	"fmt"
	"testing"
	"time"

	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
)

// pausedStore answers GetToken with the record it holds when the read
// started, after the test lets it go: a read in flight while the token is
// revoked.
type pausedStore struct {
	TokenStore // only GetToken is called
	rec        TokenRecord
	started    chan struct{}
	release    chan struct{}
}

func (s *pausedStore) GetToken(ctx context.Context, id string) (TokenRecord, error) {
	rec := s.rec
	if s.started != nil {
		s.started <- struct{}{}
		<-s.release
	}
	return rec, nil
}

// TestForgetDuringRead: a record read before a revocation and returned
// after Forget must not be cached, or the revoking process would accept
// the revoked token for a whole TTL (docs/security.md says "at once").
func TestForgetDuringRead(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	token, id, hash, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	st := &pausedStore{
		rec:     TokenRecord{ID: id, Hash: hash, Role: authv1.Role_ROLE_VIEWER, AllTenants: true, Created: now},
		started: make(chan struct{}), release: make(chan struct{}),
	}
	v := newVerifier(st, time.Hour, 10, func() time.Time { return now })

	done := make(chan error, 1)
	go func() {
		_, err := v.verify(t.Context(), token)
		done <- err
	}()
	<-st.started
	// The revocation lands in the store and Forget runs while the read
	// is in flight.
	st.rec.Revoked = now
	v.forget(id)
	close(st.release)
	if err := <-done; err != nil {
		t.Fatalf("the call that raced the revocation: %v", err)
	}

	st.started = nil
	if _, err := v.verify(t.Context(), token); err != errBadToken {
		t.Fatalf("after Forget: %v, want errBadToken (a stale record was cached)", err)
	}
}

// TestUnknownMethodsNotCached: the method names a caller makes up (any
// authenticated caller, a viewer included, reaches the role lookup with
// whatever path it sends) must not grow the role cache.
func TestUnknownMethodsNotCached(t *testing.T) {
	a := NewAuthenticator(Config{}, Options{})
	for i := range 100 {
		if mr := a.methodRole(fmt.Sprintf("/fleetacs.inventory.v1.InventoryService/Made%d", i)); mr.known {
			t.Fatalf("made-up method %d known", i)
		}
		a.methodRole(fmt.Sprintf("/made.up.Service%d/M", i))
	}
	if mr := a.methodRole("/fleetacs.auth.v1.TokenService/CreateToken"); !mr.known || mr.role != authv1.Role_ROLE_ADMIN {
		t.Fatalf("CreateToken: %+v", mr)
	}
	n := 0
	a.roles.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Fatalf("%d methods cached, want 1 (the known one)", n)
	}
}

// TestNoTokenStore: a process without a token store refuses every token
// as invalid (counted by the failure limiter), not as a store failure.
func TestNoTokenStore(t *testing.T) {
	token, _, _, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(nil, time.Second, 10, time.Now)
	if _, err := v.verify(t.Context(), token); err != errBadToken {
		t.Fatalf("verify without a store: %v, want errBadToken", err)
	}
}
