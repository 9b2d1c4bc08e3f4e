package notifier

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisBindings is the BindingStore on Redis, shared by every notifier
// replica: the replica that takes a wake request uses the binding another
// one's STUN server learnt.
//
// Keys, under the deployment's prefix P (-redis.prefix):
//
//	P stun:{<id>}   string: the binding's address ("203.0.113.5:4000",
//	                "[2001:db8::5]:4000"), at most 64 bytes   PX its life
//
// where <id> is bindingID (a digest of the STUN user name and the public
// IP address). Every command touches one key, so the store runs on Redis
// Cluster; the hash tag keeps a binding's key in one slot whatever the
// prefix. A read fetches at most 65 bytes (GETRANGE), whatever the key
// holds.
type RedisBindings struct {
	c      redis.UniversalClient
	prefix string
}

var _ BindingStore = (*RedisBindings)(nil)

// NewRedisBindings returns the store on client under prefix. It does not
// talk to Redis.
func NewRedisBindings(client redis.UniversalClient, prefix string) *RedisBindings {
	return &RedisBindings{c: client, prefix: prefix}
}

func (r *RedisBindings) key(id string) string { return r.prefix + "stun:{" + id + "}" }

// Put implements BindingStore: one pipeline of SET PX.
func (r *RedisBindings) Put(ctx context.Context, batch []StoredBinding, ttl time.Duration) error {
	if len(batch) == 0 {
		return nil
	}
	pipe := r.c.Pipeline()
	for _, b := range batch {
		v := b.Addr.String()
		if len(v) > maxBindingValue || !b.Addr.IsValid() {
			return fmt.Errorf("store STUN binding %s: %w", v, ErrBadBinding)
		}
		pipe.Set(ctx, r.key(b.ID), v, ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store %d STUN bindings: %w", len(batch), err)
	}
	return nil
}

// Get implements BindingStore: GETRANGE and PTTL in one round trip.
func (r *RedisBindings) Get(ctx context.Context, id string) (netip.AddrPort, time.Duration, bool, error) {
	k := r.key(id)
	pipe := r.c.Pipeline()
	val := pipe.GetRange(ctx, k, 0, maxBindingValue)
	pttl := pipe.PTTL(ctx, k)
	if _, err := pipe.Exec(ctx); err != nil {
		return netip.AddrPort{}, 0, false, fmt.Errorf("read STUN binding: %w", err)
	}
	v, left := val.Val(), pttl.Val()
	if v == "" || left == -2 {
		return netip.AddrPort{}, 0, false, nil
	}
	if len(v) > maxBindingValue {
		return netip.AddrPort{}, 0, false, fmt.Errorf("read STUN binding: over %d bytes: %w", maxBindingValue, ErrBadBinding)
	}
	if left <= 0 {
		// A notifier always sets an expiry.
		return netip.AddrPort{}, 0, false, fmt.Errorf("read STUN binding: no expiry: %w", ErrBadBinding)
	}
	ap, err := netip.ParseAddrPort(v)
	if err != nil || ap.Port() == 0 || !ap.Addr().IsValid() {
		return netip.AddrPort{}, 0, false, fmt.Errorf("read STUN binding: not an address and port: %w", ErrBadBinding)
	}
	return ap, left, true, nil
}
