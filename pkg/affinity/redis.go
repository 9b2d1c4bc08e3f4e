package affinity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// tokenCounterTTL is how long a device's token counter outlives its last
// lease. The counter only has to bridge clock differences between gateways
// (see tokenFloor); a week keeps idle devices from holding memory forever.
const tokenCounterTTL = 7 * 24 * time.Hour

// Redis is the cluster affinity store on Redis (docs/design.md §3). Every operation
// is one round trip (a command, a Lua script or a pipeline) except
// OpenSessionAt (two: the address index, then the record) and the rare
// repairs named where they happen. Callers bound each call with their
// context's deadline.
type Redis struct {
	c      redis.UniversalClient
	prefix string
	now    func() time.Time
}

// NewRedis returns the store on client with every key under prefix (a
// deployment's namespace, or a test's own). The prefix must not contain
// '{' or '}', which would change the keys' Redis Cluster hash tags. It reads
// time from now (time.Now when nil); expiry follows that clock, so gateways
// and workers should run NTP (a skew of a few milliseconds is harmless next
// to TTLs of seconds). It does not talk to Redis.
func NewRedis(client redis.UniversalClient, prefix string, now func() time.Time) *Redis {
	if now == nil {
		now = time.Now
	}
	return &Redis{c: client, prefix: prefix, now: now}
}

// Leases returns the store's device leases.
func (r *Redis) Leases() *RedisLeases { return &RedisLeases{r} }

// Affinity returns the store's session records.
func (r *Redis) Affinity() *RedisAffinity { return &RedisAffinity{r} }

// Checkpoints returns the store's session checkpoints.
func (r *Redis) Checkpoints() *RedisCheckpoints { return &RedisCheckpoints{r} }

// Sessions returns the store's combined writes of session workers.
func (r *Redis) Sessions() *RedisSessions { return &RedisSessions{r} }

// Registry returns the store's worker registry.
func (r *Redis) Registry() *RedisRegistry { return &RedisRegistry{r} }

// Store returns every part as the port interfaces.
func (r *Redis) Store() Store {
	return Store{Leases: r.Leases(), Affinity: r.Affinity(), Checkpoints: r.Checkpoints(), Registry: r.Registry(), Sessions: r.Sessions()}
}

// Keys. Every key of one device carries the hash tag deviceTag, so the
// scripts that touch several of them run on Redis Cluster; the registry's
// two keys share the tag {workers}. Session records and address indexes are
// single-key operations and need no tag.

// deviceTag is "{<len>:<tenant>:<len>:<device>}". The lengths make it
// unambiguous whatever the names contain (tenant "a:b" with device "c" and
// tenant "a" with device "b:c" must not share a lease).
func deviceTag(tenant, deviceKey string) string {
	var b strings.Builder
	b.Grow(len(tenant) + len(deviceKey) + 12)
	b.WriteByte('{')
	b.WriteString(strconv.Itoa(len(tenant)))
	b.WriteByte(':')
	b.WriteString(tenant)
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(len(deviceKey)))
	b.WriteByte(':')
	b.WriteString(deviceKey)
	b.WriteByte('}')
	return b.String()
}

func (r *Redis) leaseKey(tenant, deviceKey string) string {
	return r.prefix + "lease:" + deviceTag(tenant, deviceKey)
}

func (r *Redis) tokenKey(tenant, deviceKey string) string {
	return r.prefix + "token:" + deviceTag(tenant, deviceKey)
}

func (r *Redis) checkpointKey(tenant, deviceKey, sessionID string) string {
	return r.prefix + "ckpt:" + deviceTag(tenant, deviceKey) + ":" + sessionID
}

// journalKey is the checkpoint's journal (Checkpoint.Journal), a string
// beside its hash.
func (r *Redis) journalKey(tenant, deviceKey, sessionID string) string {
	return r.checkpointKey(tenant, deviceKey, sessionID) + ":j"
}

func (r *Redis) fenceKey(tenant, deviceKey string) string {
	return r.prefix + "ckfence:" + deviceTag(tenant, deviceKey)
}

func (r *Redis) sessionKey(sessionID string) string { return r.prefix + "sess:" + sessionID }

func (r *Redis) ipKey(ip string) string { return r.prefix + "ip:" + ip }

func (r *Redis) workersExpKey() string  { return r.prefix + "workers:{workers}:exp" }
func (r *Redis) workersInfoKey() string { return r.prefix + "workers:{workers}:info" }

// micros formats a time for the scripts.
func micros(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }

// millis is a TTL for PEXPIRE, rounded up: never 0, which Redis refuses.
func millis(d time.Duration) int64 { return int64(max((d+time.Millisecond-1)/time.Millisecond, 1)) }

// RedisLeases is Leases on Redis: one Lua script per operation.
type RedisLeases struct{ r *Redis }

var _ Leases = (*RedisLeases)(nil)

// Acquire implements Leases.
func (l *RedisLeases) Acquire(ctx context.Context, tenant, deviceKey, sessionID string, ttl time.Duration) (Lease, error) {
	if err := checkLeaseArgs("acquire lease", tenant, deviceKey, sessionID, ttl, true); err != nil {
		return Lease{}, err
	}
	now := l.r.now()
	expires := now.Add(ttl)
	floor := max(tokenFloor(now), 1) - 1
	res, err := acquireScript.Run(ctx, l.r.c,
		[]string{l.r.leaseKey(tenant, deviceKey), l.r.tokenKey(tenant, deviceKey)},
		sessionID, strconv.FormatUint(floor, 10), millis(ttl), micros(expires), micros(now),
		millis(max(tokenCounterTTL, ttl))).Slice()
	if err != nil {
		return Lease{}, fmt.Errorf("acquire lease of %s/%s: %w", tenant, deviceKey, err)
	}
	tok, sup, err := parseAcquire(res)
	if err != nil {
		return Lease{}, fmt.Errorf("acquire lease of %s/%s: %w", tenant, deviceKey, err)
	}
	return Lease{FencingToken: tok, Expires: time.UnixMicro(expires.UnixMicro()), Superseded: sup}, nil
}

func parseAcquire(res []any) (uint64, string, error) {
	if len(res) != 2 {
		return 0, "", fmt.Errorf("unexpected script reply %v", res)
	}
	ts, _ := res[0].(string)
	sup, _ := res[1].(string)
	tok, err := strconv.ParseUint(ts, 10, 64)
	if err != nil || tok == 0 {
		return 0, "", fmt.Errorf("unexpected fencing token %q", ts)
	}
	return tok, sup, nil
}

// Renew implements Leases.
func (l *RedisLeases) Renew(ctx context.Context, tenant, deviceKey, sessionID string, token uint64, ttl time.Duration) error {
	if err := checkLeaseArgs("renew lease", tenant, deviceKey, sessionID, ttl, true); err != nil {
		return err
	}
	now := l.r.now()
	n, err := renewScript.Run(ctx, l.r.c, []string{l.r.leaseKey(tenant, deviceKey)},
		sessionID, strconv.FormatUint(token, 10), micros(now), micros(now.Add(ttl)), millis(ttl)).Int()
	if err != nil {
		return fmt.Errorf("renew lease of %s/%s: %w", tenant, deviceKey, err)
	}
	if n == 1 {
		return nil
	}
	return ErrLeaseLost
}

// Release implements Leases.
func (l *RedisLeases) Release(ctx context.Context, tenant, deviceKey, sessionID string) error {
	if err := checkLeaseArgs("release lease", tenant, deviceKey, sessionID, 0, false); err != nil {
		return err
	}
	if err := releaseScript.Run(ctx, l.r.c, []string{l.r.leaseKey(tenant, deviceKey)}, sessionID).Err(); err != nil {
		return fmt.Errorf("release lease of %s/%s: %w", tenant, deviceKey, err)
	}
	return nil
}

// Holder implements Leases.
func (l *RedisLeases) Holder(ctx context.Context, tenant, deviceKey string) (LeaseHolder, bool, error) {
	v, err := l.r.c.HMGet(ctx, l.r.leaseKey(tenant, deviceKey), "s", "t", "e").Result()
	if err != nil {
		return LeaseHolder{}, false, fmt.Errorf("read lease of %s/%s: %w", tenant, deviceKey, err)
	}
	s, _ := v[0].(string)
	ts, _ := v[1].(string)
	es, _ := v[2].(string)
	if s == "" {
		return LeaseHolder{}, false, nil
	}
	tok, err1 := strconv.ParseUint(ts, 10, 64)
	e, err2 := strconv.ParseInt(es, 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return LeaseHolder{}, false, fmt.Errorf("read lease of %s/%s: %w", tenant, deviceKey, err)
	}
	if e <= l.r.now().UnixMicro() {
		return LeaseHolder{}, false, nil
	}
	return LeaseHolder{SessionID: s, FencingToken: tok, Expires: time.UnixMicro(e)}, true, nil
}

// RedisAffinity is Affinity on Redis. A record is a string key per session
// holding the encoded record and its expiry; the client-address index is a
// sorted set per address, member the session, score the record's expiry,
// pruned of expired members on every Put and expiring (PEXPIRE) with its
// longest-lived member. The record is the truth: the index only finds
// candidates, and OpenSessionAt checks the record before returning it.
type RedisAffinity struct{ r *Redis }

var _ Affinity = (*RedisAffinity)(nil)

// recordWire is the stored form of a SessionRecord. Short names: it is
// written on every exchange.
type recordWire struct {
	SessionID string `json:"s"`
	Worker    string `json:"w,omitempty"`
	ClientIP  string `json:"ip,omitempty"`
	Tenant    string `json:"t,omitempty"`
	DeviceKey string `json:"d,omitempty"`
	Method    int    `json:"am,omitempty"`
	Principal string `json:"ap,omitempty"`
	Scope     int    `json:"as,omitempty"`
	Expires   int64  `json:"e"` // microseconds since the epoch
}

// encodeRecord writes recordWire's JSON by hand: a session worker writes a
// record with every checkpoint, and encoding/json's reflection cost more
// than the rest of the write. decodeRecord reads it with encoding/json.
func encodeRecord(rec *SessionRecord, expires time.Time) ([]byte, error) {
	b := make([]byte, 0, 64+len(rec.SessionID)+len(rec.Worker)+len(rec.ClientIP)+len(rec.Tenant)+len(rec.DeviceKey)+len(rec.Auth.Principal))
	b = append(b, `{"s":`...)
	b = appendJSONString(b, rec.SessionID)
	field := func(name, v string) {
		if v != "" {
			b = append(b, `,"`...)
			b = append(b, name...)
			b = append(b, `":`...)
			b = appendJSONString(b, v)
		}
	}
	number := func(name string, v int64) {
		if v != 0 {
			b = append(b, `,"`...)
			b = append(b, name...)
			b = append(b, `":`...)
			b = strconv.AppendInt(b, v, 10)
		}
	}
	field("w", rec.Worker)
	field("ip", rec.ClientIP)
	field("t", rec.Tenant)
	field("d", rec.DeviceKey)
	number("am", int64(rec.Auth.Method))
	field("ap", rec.Auth.Principal)
	number("as", int64(rec.Auth.Scope))
	b = append(b, `,"e":`...)
	b = strconv.AppendInt(b, expires.UnixMicro(), 10)
	return append(b, '}'), nil
}

// appendJSONString appends s as a JSON string: as is when it is printable
// ASCII without quotes or backslashes (session ids, addresses, device
// keys), else as encoding/json writes it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func decodeRecord(b string) (SessionRecord, int64, error) {
	var w recordWire
	if err := json.Unmarshal([]byte(b), &w); err != nil {
		return SessionRecord{}, 0, err
	}
	return SessionRecord{
		SessionID: w.SessionID, Worker: w.Worker, ClientIP: w.ClientIP,
		Tenant: w.Tenant, DeviceKey: w.DeviceKey,
		Auth: Auth{Method: AuthMethod(w.Method), Principal: w.Principal, Scope: CredentialScope(w.Scope)},
	}, w.Expires, nil
}

// Lookup implements Affinity.
func (a *RedisAffinity) Lookup(ctx context.Context, sessionID string) (SessionRecord, error) {
	rec, err := a.get(ctx, sessionID)
	if err != nil {
		return SessionRecord{}, fmt.Errorf("look up session %s: %w", sessionID, err)
	}
	if rec == nil {
		return SessionRecord{}, ErrNoRecord
	}
	return *rec, nil
}

// get returns the live record of sessionID, or nil.
func (a *RedisAffinity) get(ctx context.Context, sessionID string) (*SessionRecord, error) {
	b, err := a.r.c.Get(ctx, a.r.sessionKey(sessionID)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rec, exp, err := decodeRecord(b)
	if err != nil {
		return nil, fmt.Errorf("decode session record: %w", err)
	}
	if exp <= a.r.now().UnixMicro() {
		return nil, nil
	}
	return &rec, nil
}

// OpenSessionAt implements Affinity.
func (a *RedisAffinity) OpenSessionAt(ctx context.Context, ip string) (SessionRecord, error) {
	ids, err := a.r.c.ZRangeByScore(ctx, a.r.ipKey(ip), &redis.ZRangeBy{
		Min: "(" + micros(a.r.now()), Max: "+inf", Count: 2,
	}).Result()
	if err != nil {
		return SessionRecord{}, fmt.Errorf("find session open at %s: %w", ip, err)
	}
	switch len(ids) {
	case 0:
		return SessionRecord{}, ErrNoRecord
	case 1:
	default:
		return SessionRecord{}, ErrAmbiguous
	}
	rec, err := a.get(ctx, ids[0])
	if err != nil {
		return SessionRecord{}, fmt.Errorf("find session open at %s: %w", ip, err)
	}
	if rec == nil || rec.ClientIP != ip {
		// The index outlived the record (a Delete that failed half-way).
		return SessionRecord{}, ErrNoRecord
	}
	return *rec, nil
}

// Put implements Affinity. One round trip: the record is written with SET
// ... GET, which returns the record it replaced, and the index update is
// pipelined with it. Only when the session's address changed does a second
// one remove the old index entry.
func (a *RedisAffinity) Put(ctx context.Context, rec SessionRecord, ttl time.Duration) error {
	if err := checkPut(rec, ttl); err != nil {
		return err
	}
	pipe := a.r.c.Pipeline()
	q, err := a.queuePut(ctx, pipe, rec, ttl)
	if err != nil {
		return err
	}
	_, _ = pipe.Exec(ctx) // errors are read per command
	return q.result(ctx)
}

// queuedPut is a Put queued on a pipeline, so that other writes can share
// its round trip; result completes it once the pipeline ran.
//
// The address index is kept with plain commands rather than a script (a
// script costs Redis several times their CPU): drop the expired members,
// add the session scored by its expiry, and make the index live as long as
// its longest-lived member (PEXPIRE NX sets a TTL on a new index, PEXPIRE
// GT only lengthens one; Redis 7.0 or later). Not atomic, and need not be:
// the index only finds candidates, OpenSessionAt checks the record.
type queuedPut struct {
	a   *RedisAffinity
	rec SessionRecord
	set *redis.Cmd
	idx []redis.Cmder
}

func (a *RedisAffinity) queuePut(ctx context.Context, pipe redis.Pipeliner, rec SessionRecord, ttl time.Duration) (*queuedPut, error) {
	now := a.r.now()
	expires := now.Add(ttl)
	b, err := encodeRecord(&rec, expires)
	if err != nil {
		return nil, fmt.Errorf("put session record %s: %w", rec.SessionID, err)
	}
	q := &queuedPut{a: a, rec: rec}
	q.set = pipe.Do(ctx, "set", a.r.sessionKey(rec.SessionID), b, "px", millis(ttl), "get")
	if rec.ClientIP != "" {
		k := a.r.ipKey(rec.ClientIP)
		q.idx = []redis.Cmder{
			pipe.ZRemRangeByScore(ctx, k, "-inf", micros(now)),
			pipe.ZAdd(ctx, k, redis.Z{Score: float64(expires.UnixMicro()), Member: rec.SessionID}),
			pipe.Do(ctx, "pexpire", k, millis(ttl), "nx"),
			pipe.Do(ctx, "pexpire", k, millis(ttl), "gt"),
		}
	}
	return q, nil
}

func (q *queuedPut) result(ctx context.Context) error {
	a, rec := q.a, &q.rec
	old, err := q.set.Text()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("put session record %s: %w", rec.SessionID, err)
	}
	for _, c := range q.idx {
		if err := c.Err(); err != nil {
			return fmt.Errorf("put session record %s: index address: %w", rec.SessionID, err)
		}
	}
	if err := a.unindexOld(ctx, old, rec); err != nil {
		return fmt.Errorf("put %w", err)
	}
	return nil
}

// unindexOld removes rec's session from the index of the address of old,
// the stored record a write replaced or deleted, when it is not rec's: a
// second round trip, only when a session's address changed.
func (a *RedisAffinity) unindexOld(ctx context.Context, old string, rec *SessionRecord) error {
	if old == "" {
		return nil
	}
	prev, _, err := decodeRecord(old)
	if err != nil || prev.ClientIP == "" || prev.ClientIP == rec.ClientIP {
		return nil
	}
	if err := a.r.c.ZRem(ctx, a.r.ipKey(prev.ClientIP), rec.SessionID).Err(); err != nil {
		return fmt.Errorf("session record %s: unindex old address: %w", rec.SessionID, err)
	}
	return nil
}

// Delete implements Affinity. One round trip (GETDEL and ZREM pipelined),
// plus one when the stored record's address differs from rec's.
func (a *RedisAffinity) Delete(ctx context.Context, rec SessionRecord) error {
	pipe := a.r.c.Pipeline()
	q := a.queueDelete(ctx, pipe, rec)
	_, _ = pipe.Exec(ctx)
	return q.result(ctx)
}

// queuedDelete is a Delete queued on a pipeline.
type queuedDelete struct {
	a    *RedisAffinity
	rec  SessionRecord
	del  *redis.StringCmd
	zrem *redis.IntCmd
}

func (a *RedisAffinity) queueDelete(ctx context.Context, pipe redis.Pipeliner, rec SessionRecord) *queuedDelete {
	q := &queuedDelete{a: a, rec: rec, del: pipe.GetDel(ctx, a.r.sessionKey(rec.SessionID))}
	if rec.ClientIP != "" {
		q.zrem = pipe.ZRem(ctx, a.r.ipKey(rec.ClientIP), rec.SessionID)
	}
	return q
}

func (q *queuedDelete) result(ctx context.Context) error {
	old, err := q.del.Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("delete session record %s: %w", q.rec.SessionID, err)
	}
	if q.zrem != nil && q.zrem.Err() != nil {
		return fmt.Errorf("delete session record %s: unindex address: %w", q.rec.SessionID, q.zrem.Err())
	}
	if err := q.a.unindexOld(ctx, old, &q.rec); err != nil {
		return fmt.Errorf("delete %w", err)
	}
	return nil
}

// isNoScript reports Redis's answer to EVALSHA of a script it does not have
// cached (after a restart, a failover or SCRIPT FLUSH). Script.Run handles
// it itself; pipelined EVALSHA needs this.
func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}

// RedisCheckpoints is Checkpoints on Redis: a hash per session checkpoint and
// a fence hash per device, both under the device's hash tag, and one Lua
// script for Save.
type RedisCheckpoints struct{ r *Redis }

var _ Checkpoints = (*RedisCheckpoints)(nil)

// Save implements Checkpoints.
func (c *RedisCheckpoints) Save(ctx context.Context, cp Checkpoint, ttl time.Duration) error {
	if err := checkSave(&cp, ttl); err != nil {
		return err
	}
	keys, args := c.saveArgs(&cp, ttl)
	return saveResult(&cp, saveScript.Run(ctx, c.r.c, keys, args...))
}

// saveArgs returns the keys and arguments of saveScript for cp.
func (c *RedisCheckpoints) saveArgs(cp *Checkpoint, ttl time.Duration) ([]string, []any) {
	now := c.r.now()
	return []string{c.r.checkpointKey(cp.Tenant, cp.DeviceKey, cp.SessionID), c.r.fenceKey(cp.Tenant, cp.DeviceKey),
			c.r.journalKey(cp.Tenant, cp.DeviceKey, cp.SessionID)},
		[]any{strconv.FormatUint(cp.FencingToken, 10), strconv.FormatUint(cp.Seq, 10), cp.Data,
			micros(now), micros(now.Add(ttl)), millis(ttl), cp.Journal, cp.JournalAt}
}

func saveResult(cp *Checkpoint, cmd *redis.Cmd) error {
	n, err := cmd.Int()
	if err != nil {
		return fmt.Errorf("save checkpoint of session %s: %w", cp.SessionID, err)
	}
	switch n {
	case 1:
		return nil
	case 2:
		return ErrJournalGap
	}
	return ErrLeaseLost
}

// Load implements Checkpoints.
func (c *RedisCheckpoints) Load(ctx context.Context, tenant, deviceKey, sessionID string) (Checkpoint, error) {
	keys := []string{c.r.checkpointKey(tenant, deviceKey, sessionID), c.r.journalKey(tenant, deviceKey, sessionID)}
	v, err := loadScript.Run(ctx, c.r.c, keys).StringSlice()
	if errors.Is(err, redis.Nil) {
		return Checkpoint{}, ErrNoCheckpoint
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("load checkpoint of session %s: %w", sessionID, err)
	}
	if len(v) != 5 {
		return Checkpoint{}, fmt.Errorf("load checkpoint of session %s: %d fields", sessionID, len(v))
	}
	tok, err1 := strconv.ParseUint(v[0], 10, 64)
	seq, err2 := strconv.ParseUint(v[1], 10, 64)
	e, err3 := strconv.ParseInt(v[3], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return Checkpoint{}, fmt.Errorf("load checkpoint of session %s: %w", sessionID, err)
	}
	if e <= c.r.now().UnixMicro() {
		return Checkpoint{}, ErrNoCheckpoint
	}
	cp := Checkpoint{
		Tenant: tenant, DeviceKey: deviceKey, SessionID: sessionID,
		FencingToken: tok, Seq: seq, Data: []byte(v[2]), Expires: time.UnixMicro(e),
	}
	if v[4] != "" {
		cp.Journal = []byte(v[4])
	}
	return cp, nil
}

// Delete implements Checkpoints.
func (c *RedisCheckpoints) Delete(ctx context.Context, tenant, deviceKey, sessionID string) error {
	if err := c.r.c.Del(ctx, c.r.checkpointKey(tenant, deviceKey, sessionID), c.r.journalKey(tenant, deviceKey, sessionID)).Err(); err != nil {
		return fmt.Errorf("delete checkpoint of session %s: %w", sessionID, err)
	}
	return nil
}

// RedisSessions is Sessions on Redis: each operation is one pipeline, so one
// round trip (plus the rare repairs of Put and Delete). Redis Cluster
// clients split the pipeline by slot; every script in it still touches one
// slot.
type RedisSessions struct{ r *Redis }

var _ Sessions = (*RedisSessions)(nil)

// Save implements Sessions.
func (s *RedisSessions) Save(ctx context.Context, ss SessionSave) error {
	if err := checkSessionSave(&ss, s.r.Affinity()); err != nil {
		return err
	}
	cps := s.r.Checkpoints()
	keys, args := cps.saveArgs(&ss.Checkpoint, ss.CheckpointTTL)
	pipe := s.r.c.Pipeline()
	save := saveScript.EvalSha(ctx, pipe, keys, args...)
	var put *queuedPut
	if ss.Record != nil {
		var err error
		if put, err = s.r.Affinity().queuePut(ctx, pipe, *ss.Record, ss.RecordTTL); err != nil {
			return err
		}
	}
	_, _ = pipe.Exec(ctx) // errors are read per command
	if isNoScript(save.Err()) {
		save = saveScript.Run(ctx, s.r.c, keys, args...)
	}
	saveErr := saveResult(&ss.Checkpoint, save)
	if put == nil {
		return saveErr
	}
	return errors.Join(saveErr, put.result(ctx))
}

// End implements Sessions.
func (s *RedisSessions) End(ctx context.Context, e SessionEnd) error {
	if err := checkSessionEnd(&e, s.r.Affinity()); err != nil {
		return err
	}
	pipe := s.r.c.Pipeline()
	cmds := []redis.Cmder{pipe.Del(ctx, s.r.checkpointKey(e.Tenant, e.DeviceKey, e.SessionID), s.r.journalKey(e.Tenant, e.DeviceKey, e.SessionID))}
	leaseKey := []string{s.r.leaseKey(e.Tenant, e.DeviceKey)}
	if e.Release {
		cmds = append(cmds, releaseScript.EvalSha(ctx, pipe, leaseKey, e.SessionID))
	}
	var rec *queuedDelete
	if e.Record != nil {
		rec = s.r.Affinity().queueDelete(ctx, pipe, *e.Record)
	}
	_, _ = pipe.Exec(ctx) // errors are read per command
	var errs []error
	for _, c := range cmds {
		err := c.Err()
		if isNoScript(err) {
			err = releaseScript.Run(ctx, s.r.c, leaseKey, e.SessionID).Err()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("end session %s: %w", e.SessionID, err))
		}
	}
	if rec != nil {
		errs = append(errs, rec.result(ctx))
	}
	return errors.Join(errs...)
}

// RedisRegistry is Registry on Redis: a sorted set of worker ids scored by
// registration expiry and a hash of their details, under one hash tag.
type RedisRegistry struct{ r *Redis }

var _ Registry = (*RedisRegistry)(nil)

type workerWire struct {
	Addr     string `json:"a"`
	Capacity int    `json:"c,omitempty"`
}

// Register implements Registry.
func (g *RedisRegistry) Register(ctx context.Context, w Worker, ttl time.Duration) error {
	if err := checkRegister(&w, ttl); err != nil {
		return err
	}
	b, err := json.Marshal(workerWire{Addr: w.Addr, Capacity: w.Capacity})
	if err != nil {
		return fmt.Errorf("register worker %s: %w", w.ID, err)
	}
	now := g.r.now()
	err = registerScript.Run(ctx, g.r.c, []string{g.r.workersExpKey(), g.r.workersInfoKey()},
		w.ID, b, micros(now.Add(ttl)), micros(now), millis(ttl)).Err()
	if err != nil {
		return fmt.Errorf("register worker %s: %w", w.ID, err)
	}
	return nil
}

// Deregister implements Registry.
func (g *RedisRegistry) Deregister(ctx context.Context, workerID string) error {
	pipe := g.r.c.Pipeline()
	pipe.ZRem(ctx, g.r.workersExpKey(), workerID)
	pipe.HDel(ctx, g.r.workersInfoKey(), workerID)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("deregister worker %s: %w", workerID, err)
	}
	return nil
}

// Live implements Registry. One round trip: the live ids and all details,
// pipelined. A worker whose details are missing (deregistered between the
// two reads) is left out.
func (g *RedisRegistry) Live(ctx context.Context) ([]Worker, error) {
	pipe := g.r.c.Pipeline()
	ids := pipe.ZRangeByScoreWithScores(ctx, g.r.workersExpKey(), &redis.ZRangeBy{Min: "(" + micros(g.r.now()), Max: "+inf"})
	infos := pipe.HGetAll(ctx, g.r.workersInfoKey())
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("list live workers: %w", err)
	}
	out := make([]Worker, 0, len(ids.Val()))
	for _, z := range ids.Val() {
		id, _ := z.Member.(string)
		info, ok := infos.Val()[id]
		if !ok {
			continue
		}
		var ww workerWire
		if err := json.Unmarshal([]byte(info), &ww); err != nil {
			return nil, fmt.Errorf("list live workers: decode worker %s: %w", id, err)
		}
		out = append(out, Worker{ID: id, Addr: ww.Addr, Capacity: ww.Capacity, Expires: time.UnixMicro(int64(z.Score))})
	}
	slices.SortFunc(out, func(a, b Worker) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
