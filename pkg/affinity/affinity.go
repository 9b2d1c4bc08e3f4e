package affinity

import (
	"context"
	"errors"
	"time"
)

// Outcomes callers branch on. They are returned bare (not wrapped), so both
// errors.Is and == work; failures of the store itself are wrapped errors.
var (
	// ErrNoRecord: Affinity has no open session record for the lookup.
	ErrNoRecord = errors.New("no open session record")
	// ErrAmbiguous: more than one session is open from one client address
	// (CPEs behind one NAT address); the gateway must not guess.
	ErrAmbiguous = errors.New("several sessions open from one address")
	// ErrLeaseLost: the caller no longer holds the device lease (another
	// session took it over, or it expired), or a newer writer already saved
	// a checkpoint. The session must stop writing at once.
	ErrLeaseLost = errors.New("device lease lost")
	// ErrNoCheckpoint: no live checkpoint exists for the session.
	ErrNoCheckpoint = errors.New("no session checkpoint")
	// ErrJournalGap: a checkpoint save appends to a journal that does not
	// reach where the save writes (Checkpoint.JournalAt): a save in
	// between was lost, or the checkpoint expired. The caller saves again
	// with the whole journal.
	ErrJournalGap = errors.New("checkpoint journal does not reach the append")
)

// AuthMethod is how a CPE authenticated one request (sessions.v1
// CpeAuthMethod). It mirrors the gateway's type of the same name.
type AuthMethod int

// Authentication methods, numbered as in sessions.v1.
const (
	AuthNone              AuthMethod = 1
	AuthBasic             AuthMethod = 2
	AuthDigest            AuthMethod = 3
	AuthClientCertificate AuthMethod = 4
	// AuthSession: the request carried no credentials; the session it
	// belongs to (cookie or connection) stands for them.
	AuthSession AuthMethod = 5
)

func (m AuthMethod) String() string {
	switch m {
	case AuthNone:
		return "none"
	case AuthBasic:
		return "basic"
	case AuthDigest:
		return "digest"
	case AuthClientCertificate:
		return "client_certificate"
	case AuthSession:
		return "session"
	}
	return "unspecified"
}

// CredentialScope tells per-device credentials from shared onboarding ones
// (sessions.v1 CredentialScope).
type CredentialScope int

// Credential scopes, numbered as in sessions.v1.
const (
	ScopeUnspecified CredentialScope = 0
	ScopeDevice      CredentialScope = 1
	ScopeShared      CredentialScope = 2
)

func (s CredentialScope) String() string {
	switch s {
	case ScopeDevice:
		return "device"
	case ScopeShared:
		return "shared"
	}
	return "unspecified"
}

// Auth says how the CPE proved its identity (sessions.v1 CpeAuthentication).
type Auth struct {
	Method AuthMethod
	// Principal is the Basic or Digest user name or the client
	// certificate's subject; for AuthSession, the principal the session
	// started with.
	Principal string
	Scope     CredentialScope
}

// SessionRecord is an open session as the gateways know it: where it lives
// and who it is.
type SessionRecord struct {
	SessionID string
	// Worker holds the session; empty when the Forwarder did not say.
	Worker string
	// ClientIP is the CPE's address (no port) when the session started.
	ClientIP  string
	Tenant    string
	DeviceKey string
	// Auth is how the session's first request authenticated.
	Auth Auth
}

// Affinity remembers where open sessions live, so that a session's next
// request finds its worker whichever gateway replica or TCP connection it
// arrives on (docs/design.md §2 step 4). Records are hints: losing one degrades
// routing, never data.
//
// An open session record is one that Put stored and neither Delete nor its
// TTL removed. Implementations are safe for concurrent use.
type Affinity interface {
	// Lookup returns the open session record of sessionID, or ErrNoRecord.
	Lookup(ctx context.Context, sessionID string) (SessionRecord, error)
	// OpenSessionAt returns the open session record whose ClientIP is ip,
	// for CPEs that send no cookie and open a new connection per request:
	// ErrNoRecord when there is none, ErrAmbiguous when more than one is
	// open from ip.
	OpenSessionAt(ctx context.Context, ip string) (SessionRecord, error)
	// Put stores or refreshes rec (keyed by SessionID, indexed by ClientIP
	// when it is not empty) for ttl, which must be positive.
	Put(ctx context.Context, rec SessionRecord, ttl time.Duration) error
	// Delete removes the record of rec.SessionID and its ClientIP index
	// entry. Deleting a missing record is not an error.
	Delete(ctx context.Context, rec SessionRecord) error
}

// Lease is a device lease (sessions.v1 DeviceLease).
type Lease struct {
	// FencingToken is greater than every token issued for the device
	// before. Every write the session makes carries it.
	FencingToken uint64
	// Expires is when the lease ends unless renewed.
	Expires time.Time
	// Superseded is the session whose live lease this one took over; empty
	// when the lease was free (or already held by the same session).
	Superseded string
}

// LeaseHolder is the live lease of a device, for tests and operations.
type LeaseHolder struct {
	SessionID    string
	FencingToken uint64
	Expires      time.Time
}

// Leases holds the cluster-wide device locks (docs/design.md §2 steps 2 and 5): one
// live session per device, taken by the gateway for a new session's Inform,
// renewed and released by the worker running the session.
//
// A fencing token is what makes the lock safe: a worker that was paused or
// partitioned past its lease keeps its old token, and every store it writes
// to (inventory, checkpoints) rejects tokens older than the newest it saw.
type Leases interface {
	// Acquire takes the device's lease for sessionID for ttl (positive). A
	// live lease of another session is taken over, never refused: the CPE
	// holds one session at a time, so a new Inform means it abandoned the
	// old one. The returned token is greater than every token issued for
	// the device before, also across lease expiry.
	Acquire(ctx context.Context, tenant, deviceKey, sessionID string, ttl time.Duration) (Lease, error)
	// Renew extends the lease to now+ttl if sessionID still holds it with
	// token and it has not expired; otherwise it returns ErrLeaseLost and
	// changes nothing. An expired lease is lost even if no one took it:
	// the caller cannot know that no write was fenced meanwhile.
	Renew(ctx context.Context, tenant, deviceKey, sessionID string, token uint64, ttl time.Duration) error
	// Release frees the lease if sessionID holds it (expired or not); a
	// release by any other session is a no-op, not an error. Tokens are
	// not reset by a release.
	Release(ctx context.Context, tenant, deviceKey, sessionID string) error
	// Holder returns the device's live lease; ok is false when it is free.
	Holder(ctx context.Context, tenant, deviceKey string) (h LeaseHolder, ok bool, err error)
}

// Checkpoint is a session's resumable state (docs/design.md §2 step 4): what a
// worker saved after an exchange so another worker can continue the session
// if it dies. Data is opaque here.
type Checkpoint struct {
	Tenant    string
	DeviceKey string
	SessionID string
	// FencingToken is the token of the session's device lease.
	FencingToken uint64
	// Seq orders the saves of one session (the exchange number, say): a
	// save with the same token and a lower Seq than the stored one is
	// stale. Callers that do not need it leave it 0.
	Seq  uint64
	Data []byte
	// Journal is the checkpoint's append-only part, for state that grows
	// during a session and would cost a quadratic amount to save whole
	// after every exchange (docs/sessions.md, "Checkpoints"). Save writes
	// it at byte JournalAt of the stored journal, which then ends after
	// it; JournalAt 0 replaces the stored journal. A JournalAt beyond the
	// end of the live checkpoint's journal is refused with ErrJournalGap
	// and changes nothing. Load returns the whole journal in Journal.
	Journal   []byte
	JournalAt int
	// Expires is set by Load.
	Expires time.Time
}

// Checkpoints stores session checkpoints, fenced by lease tokens.
//
// The fencing rule, applied atomically by Save:
//
//  1. Per device, the store remembers the highest token that saved a
//     checkpoint (for as long as the longest-lived checkpoint saved under
//     it). A save with a lower token is refused with ErrLeaseLost: a newer
//     session of the device exists and has written, so this one was
//     superseded.
//  2. Per session, a save is refused with ErrLeaseLost when the stored
//     checkpoint has a greater (FencingToken, Seq) pair, compared in that
//     order: a paused worker must not overwrite what the worker that
//     resumed the session saved since.
//
// Equal (token, seq) pairs are accepted, so a save whose reply was lost may
// be retried (with its journal at the same JournalAt, it writes the same
// bytes again). Load and Delete are not fenced.
type Checkpoints interface {
	// Save stores cp for ttl (positive) under the fencing rule above.
	Save(ctx context.Context, cp Checkpoint, ttl time.Duration) error
	// Load returns the session's live checkpoint, or ErrNoCheckpoint.
	Load(ctx context.Context, tenant, deviceKey, sessionID string) (Checkpoint, error)
	// Delete removes the session's checkpoint (at session end); deleting a
	// missing one is not an error. The device's fence stays.
	Delete(ctx context.Context, tenant, deviceKey, sessionID string) error
}

// Worker is a session worker as registered for routing.
type Worker struct {
	// ID is stable for the life of the worker process and unique in the
	// cluster (the pod name, say). Rendezvous hashes it.
	ID string
	// Addr is the worker's gRPC address (host:port).
	Addr string
	// Capacity is the number of concurrent sessions the worker takes; it
	// weights Rendezvous. Zero or less counts as 1.
	Capacity int
	// Expires is when the registration lapses without a heartbeat; set by
	// Live.
	Expires time.Time
}

// Registry is the set of live session workers (docs/design.md §2 step 2). A worker
// calls Register at start and then as its heartbeat (every third of the TTL,
// say), and Deregister when it starts draining.
type Registry interface {
	// Register adds or refreshes w for ttl (positive).
	Register(ctx context.Context, w Worker, ttl time.Duration) error
	// Deregister removes the worker; a missing one is not an error.
	Deregister(ctx context.Context, workerID string) error
	// Live returns the workers whose registration has not lapsed, sorted by
	// ID. It reads the store every time: callers on a hot path use a
	// LiveCache.
	Live(ctx context.Context) ([]Worker, error)
}

// Store bundles one backend's implementations of every port, sharing one
// key space.
type Store struct {
	Leases      Leases
	Affinity    Affinity
	Checkpoints Checkpoints
	Registry    Registry
	// Sessions combines writes of Leases, Affinity and Checkpoints for
	// session workers.
	Sessions Sessions
}
