package authstate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the Store on Redis, shared by every gateway replica: a replayed
// Digest header must be refused whichever replica it reaches, and a
// password guesser spreading its attempts over replicas must meet one
// count.
//
// Keys, under the deployment's prefix P:
//
//	P nc:<nonce>   hash n (highest nonce count), e (expiry)   PX to expiry
//	P af:p:<h>     hash n (failures), b (blocked until), e    PX to e
//	P af:s:<h>     same, per source address
//	P af:u:<h>     same, per user name
//	P af:k:<h>     string, expiry of a known (user, source)   PX known-for
//
// where <h> is a digest of the user name, the source or both (keyHash).
// Times are microseconds since the epoch from the injected clock, stored
// beside the data as in package affinity; Redis's own expiry only collects
// the keys. Every script touches one key, so the store runs on Redis
// Cluster; a call is one round trip (a script or a pipeline).
type Redis struct {
	c      redis.UniversalClient
	prefix string
	now    func() time.Time
}

var _ Store = (*Redis)(nil)

// NewRedis returns the store on client under prefix, reading time from now
// (time.Now when nil). It does not talk to Redis.
func NewRedis(client redis.UniversalClient, prefix string, now func() time.Time) *Redis {
	if now == nil {
		now = time.Now
	}
	return &Redis{c: client, prefix: prefix, now: now}
}

func micros(t time.Time) int64 { return t.UnixMicro() }

// millis is a TTL for PEXPIRE, rounded up: never 0, which Redis refuses.
func millis(d time.Duration) int64 { return int64(max((d+time.Millisecond-1)/time.Millisecond, 1)) }

// advanceScript raises a nonce's count.
//
// KEYS[1] nonce hash {n: highest count, e: expiry}
// ARGV: nc, expiry, now (microseconds)
// Returns 1 when nc was greater than the live count (or there was none).
var advanceScript = redis.NewScript(`
local now = tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'n', 'e')
local e = tonumber(ARGV[2])
if v[1] and tonumber(v[2]) > now then
  if tonumber(v[1]) >= tonumber(ARGV[1]) then return 0 end
  if tonumber(v[2]) > e then e = tonumber(v[2]) end
end
if e <= now then return 1 end
redis.call('HSET', KEYS[1], 'n', ARGV[1], 'e', string.format('%.0f', e))
redis.call('PEXPIRE', KEYS[1], math.ceil((e - now) / 1000))
return 1
`)

// failScript counts a failure of one key and sets its block.
//
// KEYS[1] counter hash {n: failures, b: blocked until, e: expiry}
// ARGV: now, free, base, max, forget (microseconds but free)
// Returns the block's end (0: none).
var failScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local v = redis.call('HMGET', KEYS[1], 'n', 'e')
local n = 0
if v[1] and tonumber(v[2]) > now then n = tonumber(v[1]) end
n = n + 1
local b = 0
local free = tonumber(ARGV[2])
if n > free then
  local d = tonumber(ARGV[3]) * 2 ^ (n - free - 1)
  local mx = tonumber(ARGV[4])
  if d > mx then d = mx end
  b = now + d
end
local e = math.max(now, b) + tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'n', string.format('%.0f', n), 'b', string.format('%.0f', b), 'e', string.format('%.0f', e))
redis.call('PEXPIRE', KEYS[1], math.ceil((e - now) / 1000))
return b
`)

func (r *Redis) nonceKey(nonce string) string { return r.prefix + "nc:" + nonce }
func (r *Redis) guardKey(k string) string     { return r.prefix + "af:" + k }

// Advance implements NonceCounts.
func (r *Redis) Advance(ctx context.Context, nonce string, nc uint64, expires time.Time) (bool, error) {
	if err := checkAdvance(nonce, nc); err != nil {
		return false, err
	}
	n, err := advanceScript.Run(ctx, r.c, []string{r.nonceKey(nonce)},
		strconv.FormatUint(nc, 10), micros(expires), micros(r.now())).Int()
	if err != nil {
		return false, fmt.Errorf("advance nonce count: %w", err)
	}
	return n == 1, nil
}

// Check implements Guard: one pipeline reading every counter and the known
// mark.
func (r *Redis) Check(ctx context.Context, p Policy, a Attempt) (Status, error) {
	keys := guardKeys(p, a)
	pipe := r.c.Pipeline()
	reads := make([]*redis.SliceCmd, len(keys))
	for i, k := range keys {
		reads[i] = pipe.HMGet(ctx, r.guardKey(k.key), "n", "b", "e")
	}
	known := pipe.Get(ctx, r.guardKey(knownKey(a)))
	_, _ = pipe.Exec(ctx) // errors are read per command
	now := r.now()
	kn, err := knownUntil(known, now)
	if err != nil {
		return Status{}, fmt.Errorf("check authentication attempt: %w", err)
	}
	counters := make([]counter, len(keys))
	for i, c := range reads {
		v, err := c.Result()
		if err != nil {
			return Status{}, fmt.Errorf("check authentication attempt: %w", err)
		}
		counters[i], err = parseCounter(v, now)
		if err != nil {
			return Status{}, fmt.Errorf("check authentication attempt: %w", err)
		}
	}
	return status(p, keys, counters, kn, now), nil
}

// Fail implements Guard: one pipeline of a script per counter and a read of
// the known mark.
func (r *Redis) Fail(ctx context.Context, p Policy, a Attempt) (Status, error) {
	keys := guardKeys(p, a)
	now := r.now()
	args := func(k guardKey) []any {
		return []any{micros(now), k.limit.Free, k.limit.Base.Microseconds(), k.limit.Max.Microseconds(), p.Forget.Microseconds()}
	}
	pipe := r.c.Pipeline()
	runs := make([]*redis.Cmd, len(keys))
	for i, k := range keys {
		runs[i] = failScript.EvalSha(ctx, pipe, []string{r.guardKey(k.key)}, args(k)...)
	}
	known := pipe.Get(ctx, r.guardKey(knownKey(a)))
	_, _ = pipe.Exec(ctx) // errors are read per command
	kn, err := knownUntil(known, now)
	if err != nil {
		return Status{}, fmt.Errorf("record authentication failure: %w", err)
	}
	counters := make([]counter, len(keys))
	for i, k := range keys {
		cmd := runs[i]
		if isNoScript(cmd.Err()) {
			cmd = failScript.Run(ctx, r.c, []string{r.guardKey(k.key)}, args(k)...)
		}
		b, err := cmd.Int64()
		if err != nil {
			return Status{}, fmt.Errorf("record authentication failure: %w", err)
		}
		// The pair counts as failed: Settled is false after a failure.
		counters[i] = counter{n: 1}
		if b > 0 {
			counters[i].blocked = time.UnixMicro(b)
		}
	}
	return status(p, keys, counters, kn, now), nil
}

// Succeed implements Guard.
func (r *Redis) Succeed(ctx context.Context, p Policy, a Attempt) error {
	until := r.now().Add(p.KnownFor)
	pipe := r.c.Pipeline()
	pipe.Del(ctx, r.guardKey(pairKey(a)))
	pipe.Set(ctx, r.guardKey(knownKey(a)), micros(until), time.Duration(millis(p.KnownFor))*time.Millisecond)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("record authentication success: %w", err)
	}
	return nil
}

// knownUntil reads a known mark: its expiry, zero when there is none.
func knownUntil(cmd *redis.StringCmd, now time.Time) (time.Time, error) {
	s, err := cmd.Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	us, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("decode known source mark: %w", err)
	}
	t := time.UnixMicro(us)
	if !t.After(now) {
		return time.Time{}, nil
	}
	return t, nil
}

// parseCounter reads a counter hash (n, b, e); a missing or expired one is
// the zero counter.
func parseCounter(v []any, now time.Time) (counter, error) {
	ns, _ := v[0].(string)
	bs, _ := v[1].(string)
	es, _ := v[2].(string)
	if ns == "" {
		return counter{}, nil
	}
	n, err1 := strconv.ParseInt(ns, 10, 64)
	b, err2 := strconv.ParseInt(bs, 10, 64)
	e, err3 := strconv.ParseInt(es, 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return counter{}, fmt.Errorf("decode failure counter: %w", err)
	}
	if e <= micros(now) {
		return counter{}, nil
	}
	c := counter{n: n}
	if b > 0 {
		c.blocked = time.UnixMicro(b)
	}
	return c, nil
}

// isNoScript reports Redis's answer to EVALSHA of a script it has not
// cached (after a restart, a failover or SCRIPT FLUSH).
func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}
