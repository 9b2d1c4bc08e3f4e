package authstate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// MaxNonceCount is the largest nonce count the stores take: Digest sends
// eight hex digits, and the Redis scripts compare counts as Lua numbers,
// exact below 2^53.
const MaxNonceCount = 1<<53 - 1

// NonceCounts remembers, per Digest nonce, the highest nonce count (nc)
// that authenticated a request, so that a captured Authorization header
// cannot be replayed: a request must carry a count greater than every one
// used with its nonce before (RFC 7616 section 3.4).
type NonceCounts interface {
	// Advance records nc as the highest count of nonce and returns true
	// when nc is greater than every count recorded for nonce; otherwise it
	// records nothing and returns false. nc must be between 1 and
	// MaxNonceCount. The record lives until expires, which callers set at
	// or after the moment the nonce stops being accepted.
	Advance(ctx context.Context, nonce string, nc uint64, expires time.Time) (bool, error)
}

// Limit is the back-off of one kind of key.
type Limit struct {
	// Free is how many failures a key may have before back-off starts; 0
	// turns the limit off.
	Free int
	// Base is the block that the first failure beyond Free causes; each
	// further failure doubles it, up to Max.
	Base time.Duration
	Max  time.Duration
}

// on reports whether the limit applies at all.
func (l Limit) on() bool { return l.Free > 0 }

// Policy is how failures of CPE authentication slow further attempts down.
// It is passed with every call, so that the stores hold no configuration.
type Policy struct {
	// Pair limits failures per (source address, user name): one address
	// guessing one user's password.
	Pair Limit
	// Source limits failures per source address, whatever the user names:
	// one address trying many users. Many CPEs can share an address (NAT),
	// so a source known for a user (see KnownFor) is exempt from it.
	Source Limit
	// User limits failures per user name, whatever the addresses: many
	// addresses guessing one user's password. A source known for the user
	// is exempt from it, so that failures elsewhere cannot lock the CPE
	// out where it usually connects from.
	User Limit
	// Forget is how long a key remembers its failures after the last one
	// (or after the end of the block it caused).
	Forget time.Duration
	// KnownFor is how long a source from which a user authenticated stays
	// known for that user.
	KnownFor time.Duration
}

// Validate reports a policy the stores cannot apply.
func (p Policy) Validate() error {
	var errs []error
	for _, l := range []struct {
		name string
		l    Limit
	}{{"pair", p.Pair}, {"source", p.Source}, {"user", p.User}} {
		if l.l.Free < 0 {
			errs = append(errs, fmt.Errorf("%s limit: free failures must not be negative, got %d", l.name, l.l.Free))
		}
		if l.l.on() && (l.l.Base <= 0 || l.l.Max < l.l.Base) {
			errs = append(errs, fmt.Errorf("%s limit: back-off must have 0 < base <= max, got %s and %s", l.name, l.l.Base, l.l.Max))
		}
	}
	if p.Forget <= 0 {
		errs = append(errs, fmt.Errorf("forget must be positive, got %s", p.Forget))
	}
	if p.KnownFor <= 0 {
		errs = append(errs, fmt.Errorf("known-for must be positive, got %s", p.KnownFor))
	}
	return errors.Join(errs...)
}

// Kind names the limit that blocks an attempt.
type Kind int

// Kinds of limit.
const (
	KindNone Kind = iota
	KindPair
	KindSource
	KindUser
)

func (k Kind) String() string {
	switch k {
	case KindPair:
		return "source_user"
	case KindSource:
		return "source"
	case KindUser:
		return "user"
	}
	return "none"
}

// Attempt is one authentication attempt: the CPE's address and the user
// name it presented (possibly empty).
type Attempt struct {
	Source string
	User   string
}

// Status is what a Guard knows about an attempt.
type Status struct {
	// Wait is how long the attempt must wait before its password may be
	// checked; zero when it may be checked now. Limit is the limit that
	// imposes the longest wait.
	Wait  time.Duration
	Limit Kind
	// Settled is set when a success of the attempt would change nothing a
	// Guard stores (the pair has no failures and the source has been known
	// for the user recently): the caller may skip Succeed.
	Settled bool
}

// Guard slows down password guessing: it counts failed authentications per
// key (see Policy) and blocks a key for a time that doubles with each
// failure beyond the limit's free ones. Callers check an attempt before
// looking at its password and check no password while it is blocked;
// attempts refused while blocked are not failures (a CPE retrying during a
// block does not lengthen it).
type Guard interface {
	// Check returns the attempt's status under p.
	Check(ctx context.Context, p Policy, a Attempt) (Status, error)
	// Fail records a failed attempt and returns the status it leaves.
	Fail(ctx context.Context, p Policy, a Attempt) (Status, error)
	// Succeed records a successful attempt: it forgets the failures of the
	// (source, user) pair and makes the source known for the user for
	// p.KnownFor. The failures of the source and of the user stay, so
	// that an attacker cannot clear them with an account of its own.
	Succeed(ctx context.Context, p Policy, a Attempt) error
}

// Store is what a backend provides: both ports, over one key space.
type Store interface {
	NonceCounts
	Guard
}

var errNonceCount = errors.New("nonce count out of range")

func checkAdvance(nonce string, nc uint64) error {
	if nonce == "" {
		return errors.New("advance nonce count: empty nonce")
	}
	if nc == 0 || nc > MaxNonceCount {
		return fmt.Errorf("advance nonce count: %w: %d", errNonceCount, nc)
	}
	return nil
}

// keyHash names a user name or a (source, user) pair in store keys: user
// names come from CPEs (any bytes, up to the header limit), so keys carry a
// fixed-size digest of them. The lengths keep ("a:b", "c") and ("a", "b:c")
// apart.
func keyHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(strconv.Itoa(len(p))))
		h.Write([]byte{':'})
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// backoff returns the block (until, a time) that the n-th failure of a key
// under l causes at now; zero when n is within l.Free.
func backoff(l Limit, n int64, now time.Time) time.Time {
	if n <= int64(l.Free) {
		return time.Time{}
	}
	d := l.Base
	for i := int64(l.Free) + 1; i < n && d < l.Max; i++ {
		d *= 2
	}
	return now.Add(min(d, l.Max))
}

// status computes an attempt's Status from its counters (in guardKeys
// order) and the expiry of its known mark (zero: not known), however the
// store reads them.
func status(p Policy, keys []guardKey, counters []counter, known, now time.Time) Status {
	var st Status
	isKnown := !known.IsZero()
	pairClean := true
	for i, k := range keys {
		c := counters[i]
		if k.kind == KindPair {
			pairClean = c.n == 0
		}
		if isKnown && k.kind != KindPair {
			continue
		}
		if w := c.blocked.Sub(now); !c.blocked.IsZero() && w > st.Wait {
			st.Wait, st.Limit = w, k.kind
		}
	}
	st.Settled = pairClean && isKnown && known.Sub(now) > p.KnownFor/2
	return st
}
