package affinity_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/affinity/affinitytest"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// redisClient returns a client on a Redis database of the test's own.
func redisClient(t testing.TB) *redis.Client {
	t.Helper()
	addr, db := testenv.RedisDB(t)
	c := redis.NewClient(&redis.Options{Addr: addr, DB: db, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newRedis returns a store on a database of the test's own, under a prefix
// of the test's own as well: what a deployment sharing one Redis does.
func newRedis(t testing.TB, now func() time.Time) (*affinity.Redis, *redis.Client) {
	t.Helper()
	c := redisClient(t)
	return affinity.NewRedis(c, "fleetacs:"+testenv.UniqueName(t)+":", now), c
}

func TestRedisConformance(t *testing.T) {
	affinitytest.Run(t, func(t *testing.T, now func() time.Time) affinity.Store {
		r, _ := newRedis(t, now)
		return r.Store()
	})
}

func rctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestRedisTTLs checks the Redis-side expiry that collects every key, with
// PTTL instead of waiting for it.
func TestRedisTTLs(t *testing.T) {
	t.Parallel()
	clk := affinitytest.NewClock(affinitytest.Start)
	r, c := newRedis(t, clk.Now)
	ctx := rctx(t)
	const tn, dev = "default", "DEV1"
	wantPTTL := func(key string, want time.Duration) {
		t.Helper()
		got, err := c.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		// Within a second below want: the command ran a moment ago.
		if got > want || got < want-time.Second {
			t.Errorf("PTTL %s = %s, want about %s", key, got, want)
		}
	}
	if _, err := r.Leases().Acquire(ctx, tn, dev, "s1", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	wantPTTL(r.LeaseKey(tn, dev), 30*time.Second)
	wantPTTL(r.TokenKey(tn, dev), 7*24*time.Hour)
	if err := r.Leases().Renew(ctx, tn, dev, "s1", mustHolder(t, r, tn, dev).FencingToken, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	wantPTTL(r.LeaseKey(tn, dev), 90*time.Second)

	a := r.Affinity()
	if err := a.Put(ctx, affinity.SessionRecord{SessionID: "s1", ClientIP: "192.0.2.1"}, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, affinity.SessionRecord{SessionID: "s2", ClientIP: "192.0.2.1"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	wantPTTL(r.SessionKey("s1"), 2*time.Minute)
	wantPTTL(r.SessionKey("s2"), time.Minute)
	// The index lives as long as its longest-lived member.
	wantPTTL(r.IPKey("192.0.2.1"), 2*time.Minute)

	cp := affinity.Checkpoint{Tenant: tn, DeviceKey: dev, SessionID: "s1", FencingToken: 5}
	if err := r.Checkpoints().Save(ctx, cp, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	cp.SessionID = "s2"
	if err := r.Checkpoints().Save(ctx, cp, time.Minute); err != nil {
		t.Fatal(err)
	}
	wantPTTL(r.CheckpointKey(tn, dev, "s1"), 3*time.Minute)
	wantPTTL(r.CheckpointKey(tn, dev, "s2"), time.Minute)
	wantPTTL(r.FenceKey(tn, dev), 3*time.Minute)

	if err := r.Registry().Register(ctx, affinity.Worker{ID: "w1"}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := r.Registry().Register(ctx, affinity.Worker{ID: "w2"}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, k := range r.WorkerKeys() {
		wantPTTL(k, 20*time.Second)
	}
}

func mustHolder(t *testing.T, r *affinity.Redis, tn, dev string) affinity.LeaseHolder {
	t.Helper()
	h, ok, err := r.Leases().Holder(rctx(t), tn, dev)
	if err != nil || !ok {
		t.Fatalf("Holder = %v, %v", ok, err)
	}
	return h
}

// TestRedisOwnExpiry is the one test that lets Redis's own clock expire the
// keys, with the real clock and short TTLs, waiting on the condition.
func TestRedisOwnExpiry(t *testing.T) {
	t.Parallel()
	r, c := newRedis(t, time.Now)
	ctx := rctx(t)
	const tn, dev, d = "default", "DEV1", 80 * time.Millisecond
	l, err := r.Leases().Acquire(ctx, tn, dev, "s1", d)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Affinity().Put(ctx, affinity.SessionRecord{SessionID: "s1", ClientIP: "192.0.2.1"}, d); err != nil {
		t.Fatal(err)
	}
	if err := r.Checkpoints().Save(ctx, affinity.Checkpoint{Tenant: tn, DeviceKey: dev, SessionID: "s1", FencingToken: l.FencingToken}, d); err != nil {
		t.Fatal(err)
	}
	if err := r.Registry().Register(ctx, affinity.Worker{ID: "w1"}, d); err != nil {
		t.Fatal(err)
	}
	keys := append([]string{
		r.LeaseKey(tn, dev), r.SessionKey("s1"), r.IPKey("192.0.2.1"),
		r.CheckpointKey(tn, dev, "s1"), r.FenceKey(tn, dev),
	}, r.WorkerKeys()...)
	if n, err := c.Exists(ctx, keys...).Result(); err != nil || n != int64(len(keys)) {
		t.Fatalf("%d of %d keys exist (%v)", n, len(keys), err)
	}
	testenv.WaitFor(t, 5*time.Second, func() error {
		n, err := c.Exists(ctx, keys...).Result()
		if err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("%d keys left", n)
		}
		return nil
	})
	if _, ok, err := r.Leases().Holder(ctx, tn, dev); ok || err != nil {
		t.Fatalf("Holder after expiry = %v, %v", ok, err)
	}
	if _, err := r.Affinity().OpenSessionAt(ctx, "192.0.2.1"); !errors.Is(err, affinity.ErrNoRecord) {
		t.Fatalf("OpenSessionAt after expiry = %v", err)
	}
	// The token counter outlives the lease.
	l2, err := r.Leases().Acquire(ctx, tn, dev, "s2", d)
	if err != nil || l2.FencingToken <= l.FencingToken || l2.Superseded != "" {
		t.Fatalf("Acquire after expiry = %+v, %v; want a token above %d", l2, err, l.FencingToken)
	}
}

// TestRedisTokensSurviveCounterLoss: when Redis loses the counter (a flush,
// a failover that lost writes), tokens still grow, because they never fall
// below the clock.
func TestRedisTokensSurviveCounterLoss(t *testing.T) {
	t.Parallel()
	clk := affinitytest.NewClock(affinitytest.Start)
	r, c := newRedis(t, clk.Now)
	ctx := rctx(t)
	var last uint64
	for i := range 3 {
		l, err := r.Leases().Acquire(ctx, "default", "DEV1", fmt.Sprintf("s%d", i), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if l.FencingToken <= last {
			t.Fatalf("token %d after %d", l.FencingToken, last)
		}
		last = l.FencingToken
	}
	if err := c.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Millisecond) // the next session comes later
	l, err := r.Leases().Acquire(ctx, "default", "DEV1", "s9", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if l.FencingToken <= last {
		t.Fatalf("token %d after losing the counter, not above the last issued %d", l.FencingToken, last)
	}
}

// TestRedisScriptCacheLoss: after SCRIPT FLUSH (a restart or failover),
// every operation still works, the pipelined EVALSHA of Sessions included.
func TestRedisScriptCacheLoss(t *testing.T) {
	t.Parallel()
	clk := affinitytest.NewClock(affinitytest.Start)
	r, c := newRedis(t, clk.Now)
	ctx := rctx(t)
	flush := func() {
		t.Helper()
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	flush()
	l, err := r.Leases().Acquire(ctx, "default", "DEV1", "s1", time.Minute)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	flush()
	if err := r.Leases().Renew(ctx, "default", "DEV1", "s1", l.FencingToken, time.Minute); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	flush()
	rec := affinity.SessionRecord{SessionID: "s1", ClientIP: "192.0.2.1"}
	if err := r.Affinity().Put(ctx, rec, time.Minute); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if got, err := r.Affinity().OpenSessionAt(ctx, "192.0.2.1"); err != nil || got != rec {
		t.Fatalf("OpenSessionAt after a Put whose EVALSHA met an empty cache = %+v, %v", got, err)
	}
	flush()
	if err := r.Checkpoints().Save(ctx, affinity.Checkpoint{Tenant: "default", DeviceKey: "DEV1", SessionID: "s1", FencingToken: l.FencingToken}, time.Minute); err != nil {
		t.Fatalf("Save: %v", err)
	}
	flush()
	ss := affinity.SessionSave{
		Checkpoint:    affinity.Checkpoint{Tenant: "default", DeviceKey: "DEV1", SessionID: "s1", FencingToken: l.FencingToken, Seq: 1, Data: []byte("x")},
		CheckpointTTL: time.Minute, Record: &rec, RecordTTL: time.Minute,
	}
	if err := r.Sessions().Save(ctx, ss); err != nil {
		t.Fatalf("Sessions.Save: %v", err)
	}
	flush()
	if cp, err := r.Checkpoints().Load(ctx, "default", "DEV1", "s1"); err != nil || string(cp.Data) != "x" {
		t.Fatalf("Load after a Sessions.Save whose EVALSHA met an empty cache, itself meeting one = %+v, %v", cp, err)
	}
	flush()
	if err := r.Registry().Register(ctx, affinity.Worker{ID: "w1"}, time.Minute); err != nil {
		t.Fatalf("Register: %v", err)
	}
	flush()
	if err := r.Leases().Release(ctx, "default", "DEV1", "s1"); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if _, ok, _ := r.Leases().Holder(ctx, "default", "DEV1"); ok {
		t.Fatal("Release after a script flush left the lease")
	}
	l, err = r.Leases().Acquire(ctx, "default", "DEV1", "s2", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	flush()
	if err := r.Sessions().End(ctx, affinity.SessionEnd{Tenant: "default", DeviceKey: "DEV1", SessionID: "s2", Release: true}); err != nil {
		t.Fatalf("Sessions.End: %v", err)
	}
	if _, ok, _ := r.Leases().Holder(ctx, "default", "DEV1"); ok {
		t.Fatal("Sessions.End after a script flush left the lease")
	}
	if len(affinity.Scripts) != 6 {
		t.Fatalf("%d scripts; this test covers 6: extend it", len(affinity.Scripts))
	}
}

// hashTag returns the part of key that Redis Cluster hashes: the first
// "{...}" with something inside, else the whole key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// TestRedisKeysShareHashTag: the keys one script touches must hash to one
// Redis Cluster slot, whatever the names contain.
func TestRedisKeysShareHashTag(t *testing.T) {
	r := affinity.NewRedis(nil, "fleetacs:", nil)
	names := [][3]string{
		{"default", "00259E-HG8245H-1", "c2Vzc2lvbg"},
		{"a:b", "c", "s"},
		{"t}", "{d", "}{"},
		{"tenant", "dev}ice", "sess{ion}"},
	}
	for _, n := range names {
		for script, keys := range r.KeyGroups(n[0], n[1], n[2], "2001:db8::1") {
			for _, k := range keys[1:] {
				if hashTag(k) != hashTag(keys[0]) {
					t.Errorf("%s with %q: keys %q and %q hash differently", script, n, keys[0], k)
				}
			}
		}
	}
	// Different devices get different keys, even where a naive join of
	// tenant and device would collide.
	a := r.KeyGroups("a:b", "c", "s", "")["save"]
	b := r.KeyGroups("a", "b:c", "s", "")["save"]
	if slices.Equal(a, b) {
		t.Fatalf("devices (a:b, c) and (a, b:c) share keys %q", a)
	}
	a = r.KeyGroups("t", "a}:b", "c", "")["save"]
	b = r.KeyGroups("t", "a", "b}:c", "")["save"]
	if slices.Equal(a, b) {
		t.Fatalf("checkpoints (a}:b, c) and (a, b}:c) share keys %q", a)
	}
}

// TestRedisErrors: a failing Redis is an error that says what was being done,
// never a lease-lost or no-record outcome that callers would act on.
func TestRedisErrors(t *testing.T) {
	t.Parallel()
	r, _ := newRedis(t, time.Now)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	checks := map[string]error{}
	_, checks["Acquire"] = r.Leases().Acquire(ctx, "default", "DEV1", "s1", time.Minute)
	checks["Renew"] = r.Leases().Renew(ctx, "default", "DEV1", "s1", 1, time.Minute)
	checks["Release"] = r.Leases().Release(ctx, "default", "DEV1", "s1")
	_, _, checks["Holder"] = r.Leases().Holder(ctx, "default", "DEV1")
	_, checks["Lookup"] = r.Affinity().Lookup(ctx, "s1")
	_, checks["OpenSessionAt"] = r.Affinity().OpenSessionAt(ctx, "192.0.2.1")
	checks["Put"] = r.Affinity().Put(ctx, affinity.SessionRecord{SessionID: "s1", ClientIP: "192.0.2.1"}, time.Minute)
	checks["Delete"] = r.Affinity().Delete(ctx, affinity.SessionRecord{SessionID: "s1", ClientIP: "192.0.2.1"})
	checks["Save"] = r.Checkpoints().Save(ctx, affinity.Checkpoint{Tenant: "default", DeviceKey: "DEV1", SessionID: "s1", FencingToken: 1}, time.Minute)
	_, checks["Load"] = r.Checkpoints().Load(ctx, "default", "DEV1", "s1")
	checks["Register"] = r.Registry().Register(ctx, affinity.Worker{ID: "w1"}, time.Minute)
	checks["Deregister"] = r.Registry().Deregister(ctx, "w1")
	_, checks["Live"] = r.Registry().Live(ctx)
	rec := affinity.SessionRecord{SessionID: "s1", ClientIP: "192.0.2.1"}
	checks["Sessions.Save"] = r.Sessions().Save(ctx, affinity.SessionSave{
		Checkpoint:    affinity.Checkpoint{Tenant: "default", DeviceKey: "DEV1", SessionID: "s1", FencingToken: 1},
		CheckpointTTL: time.Minute, Record: &rec, RecordTTL: time.Minute,
	})
	checks["Sessions.End"] = r.Sessions().End(ctx, affinity.SessionEnd{Tenant: "default", DeviceKey: "DEV1", SessionID: "s1", Release: true, Record: &rec})
	for op, err := range checks {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want context.Canceled", op, err)
		}
	}
}
