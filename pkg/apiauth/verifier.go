package apiauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"time"
)

// verifier checks bearer tokens against a TokenReader, keeping the records
// it read for ttl: every call of an API client presents the same token, and
// a store read per call would cost more than the call. A token revoked in
// another process is therefore refused at most ttl later; forget drops a
// record at once (the process that revoked it), and a read that was in
// flight meanwhile is not cached, since it may predate the revocation.
//
// Only the record is cached, never a verdict: the hash of the presented
// token is compared with the record's on every call, in constant time, and
// expiry is checked against the clock every time.
type verifier struct {
	store TokenReader
	ttl   time.Duration
	max   int
	now   func() time.Time

	mu    sync.Mutex // leaf lock
	cache map[string]cached
	// forgets counts forget calls: a record read while one ran may
	// predate the revocation it announces, and is not cached.
	forgets uint64
}

type cached struct {
	rec     TokenRecord
	fetched time.Time
}

// errBadToken: malformed, unknown, revoked, expired or not matching.
var errBadToken = errors.New("invalid token")

func newVerifier(store TokenReader, ttl time.Duration, max int, now func() time.Time) *verifier {
	return &verifier{store: store, ttl: ttl, max: max, now: now, cache: make(map[string]cached)}
}

// verify returns the principal of token, errBadToken, or an error of the
// store (which says nothing about the token).
func (v *verifier) verify(ctx context.Context, token string) (Principal, error) {
	id, hash, ok := ParseToken(token)
	if !ok {
		return Principal{}, errBadToken
	}
	rec, err := v.record(ctx, id)
	if errors.Is(err, ErrTokenNotFound) {
		return Principal{}, errBadToken
	}
	if err != nil {
		return Principal{}, err
	}
	if subtle.ConstantTimeCompare(hash[:], rec.Hash[:]) != 1 || !rec.Active(v.now()) {
		return Principal{}, errBadToken
	}
	return rec.Principal(), nil
}

func (v *verifier) record(ctx context.Context, id string) (TokenRecord, error) {
	now := v.now()
	v.mu.Lock()
	c, ok := v.cache[id]
	forgets := v.forgets
	v.mu.Unlock()
	if ok && now.Sub(c.fetched) < v.ttl {
		return c.rec, nil
	}
	if v.store == nil {
		// This process verifies no tokens: every one is unknown.
		return TokenRecord{}, ErrTokenNotFound
	}
	rec, err := v.store.GetToken(ctx, id)
	if err != nil {
		return TokenRecord{}, fmt.Errorf("read token %s: %w", id, err)
	}
	if v.ttl > 0 {
		v.mu.Lock()
		defer v.mu.Unlock()
		if v.forgets != forgets {
			return rec, nil
		}
		if _, present := v.cache[id]; !present && len(v.cache) >= v.max {
			for old := range v.cache {
				delete(v.cache, old)
				break
			}
		}
		v.cache[id] = cached{rec: rec, fetched: now}
	}
	return rec, nil
}

// forget drops a cached record.
func (v *verifier) forget(id string) {
	v.mu.Lock()
	delete(v.cache, id)
	v.forgets++
	v.mu.Unlock()
}
