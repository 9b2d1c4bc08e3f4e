// Package authstate holds the state that CPE authentication at the gateways
// shares (docs/design.md §2 step 2, §5; docs/protocol.md §4.2): the Digest
// nonce counts that make a captured Authorization header useless, and the
// failure counters that slow password guessing down with exponential
// back-off.
//
// Gateway replicas behind one load balancer must share both: a header
// replayed at another replica is still a replay, and an attacker spreading
// guesses over replicas must still meet one count. Two backends implement
// the ports: Redis (NewRedis) for a cluster and an in-process store
// (NewMemory, bounded in size) for a single gateway process. Both pass one
// conformance suite (package authstatetest).
//
// Nothing here is durable data: losing the store forgets nonce counts (a
// header captured before the loss could be replayed until its nonce goes
// stale, a few minutes) and failure counts. Callers refuse to authenticate
// while the store does not answer rather than skip the checks.
//
// Every call is one round trip and has no deadline of its own: callers
// bound it with their context.
package authstate
