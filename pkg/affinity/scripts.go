package affinity

import "github.com/redis/go-redis/v9"

// The Lua scripts that make the Redis operations atomic. Each touches only
// keys of one hash tag (see keys in redis.go), so it runs on Redis Cluster.
//
// Conventions: times are microseconds since the epoch, from the caller's
// injected clock (ARGV "now"), so expiry follows the same clock as the
// in-process store; Redis's own PEXPIRE (milliseconds) only collects the
// garbage. Fencing tokens and sequence numbers are compared as decimal
// strings (decLess), exactly for every uint64, because Lua 5.1 numbers are
// doubles; times are compared as numbers, exact below 2^53.

// luaDecLess compares canonical decimal strings (no sign, no leading zeros).
const luaDecLess = `
local function decLess(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
`

// acquireScript takes a device lease, superseding a live one.
//
// KEYS[1] lease hash {s: session, t: token, e: expires}
// KEYS[2] token counter of the device
// ARGV: session, token floor - 1, lease ttl ms, expires, now, counter ttl ms
// Returns {token, superseded session or ""}.
var acquireScript = redis.NewScript(luaDecLess + `
local prev = redis.call('HMGET', KEYS[1], 's', 'e')
local c = redis.call('GET', KEYS[2])
if not c or decLess(c, ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2])
end
redis.call('INCR', KEYS[2])
local tok = redis.call('GET', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('HSET', KEYS[1], 's', ARGV[1], 't', tok, 'e', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local sup = ''
if prev[1] and prev[1] ~= ARGV[1] and tonumber(prev[2]) > tonumber(ARGV[5]) then
  sup = prev[1]
end
return {tok, sup}
`)

// renewScript extends a lease still held by session with token.
//
// KEYS[1] lease hash
// ARGV: session, token, now, new expires, ttl ms
// Returns 1 when renewed, 0 when the lease is lost.
var renewScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 's', 't', 'e')
if v[1] ~= ARGV[1] or v[2] ~= ARGV[2] or tonumber(v[3]) <= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], 'e', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`)

// releaseScript deletes a lease only if session holds it.
//
// KEYS[1] lease hash
// ARGV: session
var releaseScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 's') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// saveScript stores a checkpoint under the fencing rule of Checkpoints,
// and writes its journal at the offset given.
//
// KEYS[1] checkpoint hash {t: token, q: seq, d: data, e: expires, j: journal length}
// KEYS[2] device fence hash {t: highest token saved, e: expires}
// KEYS[3] checkpoint journal (a string)
// ARGV: token, seq, data, now, expires, ttl ms, journal, journal offset
// Returns 1 when saved, 0 when fenced off, 2 when the journal offset lies
// beyond the live checkpoint's journal (ErrJournalGap).
var saveScript = redis.NewScript(luaDecLess + `
local now = tonumber(ARGV[4])
local f = redis.call('HMGET', KEYS[2], 't', 'e')
local flive = f[1] and tonumber(f[2]) > now
if flive and decLess(ARGV[1], f[1]) then return 0 end
local c = redis.call('HMGET', KEYS[1], 't', 'q', 'e', 'j')
local clive = c[1] and tonumber(c[3]) > now
if clive then
  if decLess(ARGV[1], c[1]) or (ARGV[1] == c[1] and decLess(ARGV[2], c[2])) then
    return 0
  end
end
local at = tonumber(ARGV[8])
if at > 0 then
  if not clive or tonumber(c[4] or '0') < at then return 2 end
  if #ARGV[7] > 0 then redis.call('SETRANGE', KEYS[3], at, ARGV[7]) end
elseif #ARGV[7] > 0 then
  redis.call('SET', KEYS[3], ARGV[7])
else
  redis.call('DEL', KEYS[3])
end
redis.call('HSET', KEYS[1], 't', ARGV[1], 'q', ARGV[2], 'd', ARGV[3], 'e', ARGV[5], 'j', at + #ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
if at + #ARGV[7] > 0 then redis.call('PEXPIRE', KEYS[3], ARGV[6]) end
if not flive then
  redis.call('HSET', KEYS[2], 't', ARGV[1], 'e', ARGV[5])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
  return 1
end
if decLess(f[1], ARGV[1]) then redis.call('HSET', KEYS[2], 't', ARGV[1]) end
if tonumber(f[2]) < tonumber(ARGV[5]) then redis.call('HSET', KEYS[2], 'e', ARGV[5]) end
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[6]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return 1
`)

// loadScript reads a checkpoint and its journal in one atomic step, so
// that a save between the two reads cannot tear them.
//
// KEYS[1] checkpoint hash, KEYS[2] its journal
// Returns {token, seq, data, expires, journal}, or nil when there is none.
var loadScript = redis.NewScript(`
local c = redis.call('HMGET', KEYS[1], 't', 'q', 'd', 'e', 'j')
if not c[1] then return false end
local n = tonumber(c[5] or '0')
local j = ''
if n > 0 then j = redis.call('GETRANGE', KEYS[2], 0, n - 1) end
return {c[1], c[2], c[3] or '', c[4], j}
`)

// registerScript adds or refreshes a worker, dropping lapsed ones.
//
// KEYS[1] sorted set, member worker id, score expires
// KEYS[2] hash, worker id -> encoded Worker
// ARGV: worker id, encoded worker, expires, now, ttl ms
var registerScript = redis.NewScript(`
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
for _, id in ipairs(dead) do
  redis.call('HDEL', KEYS[2], id)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
for i = 1, 2 do
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[5]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[5])
  end
end
return 1
`)

// scripts lists every script, for tests that flush the script cache.
var scripts = []*redis.Script{acquireScript, renewScript, releaseScript, saveScript, loadScript, registerScript}
