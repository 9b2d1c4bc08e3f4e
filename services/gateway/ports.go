package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/authstate"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// The gateway's ports (docs/style.md rule 3): small interfaces it owns. Adapters:
// GRPCForwarder (grpcforwarder.go) for Forwarder; pkg/affinity's Redis and
// in-memory stores for Affinity and Leases; pkg/authstate's for NonceCounts
// and AuthGuard; InventoryCredentials (inventorycreds.go) and
// StaticCredentials (memory.go) for Credentials. Their fields mirror
// fleetacs.sessions.v1 (proto/fleetacs/sessions/v1/sessions.proto) so that a
// gRPC adapter is a field-by-field mapping.

// Forwarder hands CPE requests to session workers.
type Forwarder interface {
	// Exchange sends one CPE HTTP request to the worker that holds (or, for
	// a new session, is to hold) the session and returns the HTTP response
	// to send. CWMP outcomes, faults included, are Replies; an error means
	// the worker did not answer. ErrWorkersBusy makes the gateway answer 503
	// with a jittered Retry-After; any other error 500. Adapters retry on
	// another worker themselves where the worker did not start the exchange.
	// The Reply is the caller's from then on.
	Exchange(ctx context.Context, ex *Exchange) (*Reply, error)
	// Abandon tells the worker holding a session that the gateway gave up
	// on it. It is advisory: correctness never depends on it.
	Abandon(ctx context.Context, ab *Abandonment) error
}

// ErrWorkersBusy is returned by a Forwarder when no worker has room for the
// request (gRPC RESOURCE_EXHAUSTED from every worker tried).
var ErrWorkersBusy = errors.New("session workers at capacity")

// Exchange is one CPE HTTP request after limits, authentication and
// decompression (sessions.v1 ExchangeRequest, plus routing hints).
type Exchange struct {
	// SessionID is the CPE's session (from its cookie, its connection or its
	// address), or a fresh unguessable value the gateway minted when
	// NewSession is set. Never empty.
	SessionID  string
	NewSession bool
	// Tenant of the device; never empty.
	Tenant string
	// DeviceKey is the canonical device key (inventory Device.id); set on
	// the Inform and whenever the gateway knows it.
	DeviceKey string
	// DeviceID and Events are the Inform's, set when the body is an Inform
	// the gateway could decode. Events does not cross the gRPC API (the
	// worker decodes the body); in-process workers may use it.
	DeviceID *cwmp.DeviceID
	Events   []cwmp.Event
	// Lease is the device lease taken for a new session's Inform.
	Lease *Lease
	// Body is the decompressed request body; empty for the empty POST. The
	// Forwarder must not keep it after Exchange returns.
	Body []byte
	// Charset is the charset parameter of the request's Content-Type.
	Charset string
	// RemoteAddr is the CPE's "ip:port".
	RemoteAddr string
	// TLS is set when the CPE connection used TLS.
	TLS  bool
	Auth Auth
	// Worker is where the affinity record says the session lives; empty when
	// unknown, and the Forwarder picks a worker.
	Worker string
}

// Reply is a worker's answer (sessions.v1 ExchangeResponse).
type Reply struct {
	// Status is 200 (Body holds an envelope), 204 (session over), 400, 500
	// or 503; anything else is sent as 500.
	Status int
	Body   []byte
	// SessionEnded is set when the worker ended the session.
	SessionEnded bool
	// RetryAfter goes out as Retry-After (whole seconds, rounded up) with
	// 503.
	RetryAfter time.Duration
	// SetSessionCookie, when not empty, is sent as the session cookie.
	SetSessionCookie string
	// Worker is the worker that answered, recorded in the affinity record;
	// adapters that know it set it.
	Worker string
}

// AbandonReason says why the gateway gave up on a session
// (sessions.v1 AbandonReason).
type AbandonReason int

// Abandon reasons, numbered as in sessions.v1.
const (
	AbandonConnectionTimeout    AbandonReason = 1
	AbandonResponseNotDelivered AbandonReason = 2
	AbandonSuperseded           AbandonReason = 3
)

func (r AbandonReason) String() string {
	switch r {
	case AbandonConnectionTimeout:
		return "connection_timeout"
	case AbandonResponseNotDelivered:
		return "response_not_delivered"
	case AbandonSuperseded:
		return "superseded"
	}
	return "unspecified"
}

// Abandonment names a session the gateway gave up on.
type Abandonment struct {
	SessionID string
	Tenant    string
	DeviceKey string
	Reason    AbandonReason
	// Worker is where the affinity record says the session lives, if known.
	Worker string
}

// The session record types are shared with the session workers and the
// affinity stores (pkg/affinity), so that its Redis and in-memory backends
// satisfy the Affinity and Leases ports below as they are.
type (
	// AuthMethod is how a CPE authenticated one request (sessions.v1
	// CpeAuthMethod).
	AuthMethod = affinity.AuthMethod
	// CredentialScope tells per-device credentials from shared onboarding
	// ones (sessions.v1 CredentialScope).
	CredentialScope = affinity.CredentialScope
	// Auth says how the CPE proved its identity (sessions.v1
	// CpeAuthentication).
	Auth = affinity.Auth
	// SessionRecord is an open session as the gateways know it. Its Worker
	// is the worker's registry ID (the address for a StaticWorkers list).
	SessionRecord = affinity.SessionRecord
	// Lease is a device lease (sessions.v1 DeviceLease).
	Lease = affinity.Lease
)

// Authentication methods and credential scopes, numbered as in sessions.v1.
const (
	AuthNone              = affinity.AuthNone
	AuthBasic             = affinity.AuthBasic
	AuthDigest            = affinity.AuthDigest
	AuthClientCertificate = affinity.AuthClientCertificate
	// AuthSession: the request carried no credentials; the session it
	// belongs to (cookie or connection) stands for them.
	AuthSession = affinity.AuthSession

	ScopeUnspecified = affinity.ScopeUnspecified
	ScopeDevice      = affinity.ScopeDevice
	ScopeShared      = affinity.ScopeShared
)

// Affinity remembers where open sessions live, so that a session's next
// request finds its worker whichever gateway replica or TCP connection it
// arrives on (docs/design.md §2 step 4). Records are hints: losing one degrades
// routing (the Forwarder picks a worker, which resumes from the session's
// checkpoint), never data.
//
// An "open session record" is a SessionRecord that Put stored and neither
// Delete nor its TTL removed: the session answered at least one request and
// has not ended. The gateway Puts it after every exchange of an open session
// (a keep-alive connection refreshes it at most every third of the TTL) with
// the TTL gateway.session-idle-timeout, and Deletes it when the session
// ends. Implementations must be safe for concurrent use.
type Affinity interface {
	// Lookup returns the open session record of sessionID, or ErrNoRecord.
	Lookup(ctx context.Context, sessionID string) (SessionRecord, error)
	// OpenSessionAt returns the open session record whose ClientIP is ip,
	// for CPEs that send no cookie and open a new connection per request.
	// It returns ErrNoRecord when there is none and ErrAmbiguous when more
	// than one session is open from ip (CPEs behind one NAT address): the
	// gateway then does not guess.
	OpenSessionAt(ctx context.Context, ip string) (SessionRecord, error)
	// Put stores or refreshes rec (keyed by SessionID, and indexed by
	// ClientIP) for ttl.
	Put(ctx context.Context, rec SessionRecord, ttl time.Duration) error
	// Delete removes the record of rec.SessionID and its ClientIP index
	// entry. Deleting a missing record is not an error.
	Delete(ctx context.Context, rec SessionRecord) error
}

// ErrNoRecord and ErrAmbiguous are Affinity's lookup outcomes.
var (
	ErrNoRecord  = affinity.ErrNoRecord
	ErrAmbiguous = affinity.ErrAmbiguous
)

// Leases holds the cluster-wide device locks (docs/design.md §2 steps 2 and 5). The
// gateway takes the lease for a new session's Inform; the worker renews and
// releases it.
type Leases interface {
	// Acquire takes the device's lease for sessionID for ttl. A lease still
	// held by another session is taken over (the CPE abandoned that
	// session), never refused: the returned Lease names the superseded
	// session and carries a fencing token greater than every token issued
	// for the device before.
	Acquire(ctx context.Context, tenant, deviceKey, sessionID string, ttl time.Duration) (Lease, error)
	// Release frees the lease if sessionID still holds it; the gateway
	// calls it when no worker took the session.
	Release(ctx context.Context, tenant, deviceKey, sessionID string) error
}

// Credentials looks up per-device CPE credentials (the inventory's
// GetCpeCredentials).
type Credentials interface {
	// CPECredentials returns what the gateway knows of the device's
	// credentials: its own (its ManagementServer.Username and Password),
	// when it has them, and whether and since when the inventory knows the
	// device. A device with no credentials of its own falls back to the
	// shared onboarding credentials, as gateway.auth-shared-scope allows.
	CPECredentials(ctx context.Context, tenant, deviceKey string) (DeviceCredentials, error)
}

// DeviceCredentials is a device's answer of Credentials.
type DeviceCredentials struct {
	// Own are the credentials the device must present; nil when it has
	// none of its own.
	Own *Credential
	// Known is set when the inventory has the device; Registered is when
	// it first recorded it (zero when unknown).
	Known      bool
	Registered time.Time
}

// Credential is a user name and a password in clear text: Digest needs it.
type Credential struct {
	Username string
	Password string
}

// NonceCounts tracks the highest Digest nonce count used per nonce, shared
// by the replicas (pkg/authstate): Advance returns true only for a count
// greater than every one used with the nonce before.
type NonceCounts interface {
	Advance(ctx context.Context, nonce string, nc uint64, expires time.Time) (bool, error)
}

// AuthGuard counts authentication failures per source address, user name
// and both, shared by the replicas, and says how long an attempt must wait
// before its password may be checked (pkg/authstate).
type AuthGuard interface {
	Check(ctx context.Context, p authstate.Policy, a authstate.Attempt) (authstate.Status, error)
	Fail(ctx context.Context, p authstate.Policy, a authstate.Attempt) (authstate.Status, error)
	Succeed(ctx context.Context, p authstate.Policy, a authstate.Attempt) error
}
