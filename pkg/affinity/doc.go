// Package affinity is FleetACS's cluster coordination (docs/design.md §2 steps 2, 4
// and 5; §3 "Redis"): device leases with fencing tokens, session records
// that route a session's requests to its worker, the registry of live
// session workers with rendezvous hashing over it, and session checkpoints
// from which another worker resumes a session whose worker died.
//
// Gateways and session workers share the types and the key schema defined
// here. Two backends implement every port: Redis (NewRedis) for a cluster and
// an in-process store (NewMemory) for the single-process embedded default.
// Both pass one conformance suite (package affinitytest). Nothing here is
// the only copy of anything that must survive: losing the store degrades
// routing, never data.
//
// # Time
//
// Expiry follows a clock injected at construction, in both backends: the
// Redis backend stores each entry's expiry (microseconds since the epoch)
// beside it and ignores entries past it, and uses Redis's own key expiry
// only to collect them. Tests therefore drive expiry with a fake clock on
// either backend.
//
// # Fencing tokens
//
// Acquire never refuses: the newest session of a device takes the lease over
// (the CPE abandoned the old one) and gets a token greater than every one
// issued for the device before. Tokens come from a per-device counter that
// outlives leases, raised to the wall clock in microseconds, so they keep
// growing even after the store lost the counter (see tokenFloor). The old
// holder learns it lost the lease from Renew (ErrLeaseLost), from a fenced
// checkpoint save, or from inventory rejecting its token.
//
// # Redis keys
//
// Under the deployment's prefix P (no braces), with T the device's hash tag
// "{len(tenant):tenant:len(device):device}":
//
//	P lease:T            hash s (session), t (token), e (expiry)    PX lease TTL
//	P token:T            string, the device's last fencing token    PX 7 days
//	P ckpt:T:<session>   hash t (token), q (seq), d (data), e       PX checkpoint TTL
//	P ckfence:T          hash t (highest token saved), e            PX longest checkpoint TTL
//	P sess:<session>     string, the encoded SessionRecord with e   PX record TTL
//	P ip:<address>       sorted set, session -> expiry               PX longest record TTL
//	P workers:{workers}:exp   sorted set, worker id -> expiry        PX longest registration TTL
//	P workers:{workers}:info  hash, worker id -> address, capacity   same
//
// Keys read or written by one Lua script share a hash tag, so the store runs
// on Redis Cluster as on a single server. The scripts run with EVALSHA and
// fall back to EVAL when the server lost its script cache. Redis 6.2 or
// newer is required (SET ... GET, GETDEL).
//
// # Latency
//
// Every operation is one round trip to Redis (a command, a script or a
// pipeline), except OpenSessionAt, which reads the address index and then
// the record (two), and repairs that happen only when a session's recorded
// address changes. On the hot path a session costs one Acquire at its
// Inform, one Put and one Save per exchange, a Renew every third of the
// lease TTL, and one Release, Delete and checkpoint Delete at its end. The
// package sets no deadlines of its own: every call is bounded by its
// context, which callers must give a deadline (a few hundred milliseconds
// is ample; measured figures are in the benchmarks of redis_test.go).
package affinity
