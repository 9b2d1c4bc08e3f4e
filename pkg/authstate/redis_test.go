package authstate_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetacs/fleetacs/pkg/authstate"
	"github.com/fleetacs/fleetacs/pkg/authstate/authstatetest"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newRedis(t testing.TB, now func() time.Time) (*authstate.Redis, *redis.Client) {
	t.Helper()
	addr, db := testenv.RedisDB(t)
	c := redis.NewClient(&redis.Options{Addr: addr, DB: db, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return authstate.NewRedis(c, "fleetacs:"+testenv.UniqueName(t)+":", now), c
}

func TestRedisConformance(t *testing.T) {
	authstatetest.Run(t, func(t *testing.T, now func() time.Time) authstate.Store {
		r, _ := newRedis(t, now)
		return r
	})
}

// TestRedisKeysExpire: every key the store writes carries a Redis expiry,
// so that the store's memory follows the live nonces and failures, and is
// short whatever the user name (a CPE sends any bytes, up to the gateway's
// header limit).
func TestRedisKeysExpire(t *testing.T) {
	clk := authstatetest.NewClock(authstatetest.Start)
	r, c := newRedis(t, clk.Now)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	p := authstate.Policy{
		Pair:     authstate.Limit{Free: 1, Base: time.Second, Max: time.Minute},
		Source:   authstate.Limit{Free: 1, Base: time.Second, Max: time.Minute},
		User:     authstate.Limit{Free: 1, Base: time.Second, Max: time.Minute},
		Forget:   time.Hour,
		KnownFor: 2 * time.Hour,
	}
	if _, err := r.Advance(ctx, "nonce", 1, clk.Now().Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	user := strings.Repeat("u", 16<<10)
	a := authstate.Attempt{Source: "192.0.2.1", User: user}
	for range 3 {
		if _, err := r.Fail(ctx, p, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Succeed(ctx, p, authstate.Attempt{Source: "192.0.2.2", User: user}); err != nil {
		t.Fatal(err)
	}
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	// nonce, pair, source, user of the failures; pair deletion and known
	// mark of the success.
	if len(keys) != 5 {
		t.Fatalf("keys %v, want 5", keys)
	}
	for _, k := range keys {
		if len(k) > 128 {
			t.Errorf("key of %d bytes: user names must not make keys long", len(k))
		}
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 || ttl > 2*time.Hour+time.Second {
			t.Errorf("key %s has PTTL %s, want a positive one within the longest life", k, ttl)
		}
	}
}

// TestRedisScriptCacheLost: the failure script still runs after Redis lost
// its script cache (a restart or failover).
func TestRedisScriptCacheLost(t *testing.T) {
	clk := authstatetest.NewClock(authstatetest.Start)
	r, c := newRedis(t, clk.Now)
	p := authstate.Policy{Pair: authstate.Limit{Free: 1, Base: time.Second, Max: time.Minute}, Forget: time.Hour, KnownFor: time.Hour}
	a := authstate.Attempt{Source: "192.0.2.1", User: "u"}
	if _, err := r.Fail(t.Context(), p, a); err != nil {
		t.Fatal(err)
	}
	if err := c.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	st, err := r.Fail(t.Context(), p, a)
	if err != nil {
		t.Fatalf("Fail after SCRIPT FLUSH: %v", err)
	}
	if st.Wait != time.Second {
		t.Fatalf("status after SCRIPT FLUSH %+v, want a 1s block", st)
	}
}
