// Package store is the inventory's storage port: the device document of
// docs/design.md §3 (identity, Inform facts, tags and the parameter tree) and the
// narrow interface every inventory backend implements (docs/style.md rule 3).
//
// Two adapters implement it: store/mongostore (production, MongoDB) and
// store/sqlitestore (the embedded default of docs/design.md §4). Both pass the one
// contract suite in services/inventory/storetest, so callers can rely on the
// semantics written here rather than on either backend.
//
// Semantics every adapter keeps:
//
//   - Devices are keyed by (tenant, device id). A device in one tenant is
//     invisible to every other tenant.
//   - Sessions write through ApplySessionDiff, which applies only what the
//     session learned, atomically per device: either the whole diff is visible
//     or none of it is. Inside one diff, deletions (DeletePaths) are applied
//     before parameter updates, so "forget this subtree, here is what it
//     holds now" is one diff.
//   - Fencing (docs/design.md §2 step 5): every device remembers the highest fencing
//     token a diff was applied with. A diff carrying a lower token is rejected
//     with ErrStaleFencingToken and writes nothing. An equal token is accepted,
//     because one session, holding one lease, may write several diffs.
//     AddTags, RemoveTags and Delete are operator actions outside sessions and
//     are not fenced.
//   - Times are stored in UTC with millisecond precision (MongoDB's date
//     precision); what is read back is the written time truncated that way.
//   - Tags are returned sorted and without duplicates.
//   - Passwords (Credentials.Password) are stored encrypted with the
//     inventory's keyring and returned in clear; nothing else is secret.
package store

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// Sentinel errors callers branch on. Adapters wrap them with the action that
// failed, so test with errors.Is.
var (
	// ErrNotFound: the device does not exist in that tenant.
	ErrNotFound = errors.New("device not found")
	// ErrStaleFencingToken: the diff's fencing token is lower than one
	// already applied to the device; the writer has lost its lease.
	ErrStaleFencingToken = errors.New("stale fencing token")
	// ErrInvalidArgument: the request is malformed (bad tenant, id, path,
	// tag, filter or cursor); retrying it unchanged cannot succeed.
	ErrInvalidArgument = errors.New("invalid argument")
)

// Store is the inventory storage port.
type Store interface {
	// Start connects (where the backend needs to) and applies migrations
	// and indexes. It is idempotent. Constructors do no I/O; Start does.
	Start(ctx context.Context) error
	// Close releases connections. The store is unusable afterwards.
	Close(ctx context.Context) error

	// Get returns one device, with parameters as opts asks.
	Get(ctx context.Context, tenant, id string, opts ReadOptions) (Device, error)
	// SessionState returns the few fields a session needs of a device when
	// it starts, as of the last diff applied; ErrNotFound for an unknown
	// device. Every session asks for it, so stores answer it cheaper than
	// Get.
	SessionState(ctx context.Context, tenant, id string) (SessionState, error)
	// List returns the devices of f.Tenant matching f, ordered by id, one
	// page at a time.
	List(ctx context.Context, f Filter, page PageRequest, opts ReadOptions) (Page, error)
	// ApplySessionDiff applies d to the device atomically, creating the
	// device when d carries a DeviceID and the device does not exist yet
	// (created reports that). A diff without DeviceID on a missing device
	// is ErrNotFound.
	ApplySessionDiff(ctx context.Context, tenant, id string, d Diff, fencingToken uint64) (created bool, err error)
	// AddTags adds tags to an existing device; tags it already has are kept.
	AddTags(ctx context.Context, tenant, id string, tags ...string) error
	// RemoveTags removes tags from an existing device; absent tags are
	// ignored.
	RemoveTags(ctx context.Context, tenant, id string, tags ...string) error
	// Delete removes the device and its parameters.
	Delete(ctx context.Context, tenant, id string) error
	// SetCPECredentials replaces the per-device credentials of an
	// existing device (an operator's action, not fenced). User name and
	// password are 1 to MaxCredentialLength bytes.
	SetCPECredentials(ctx context.Context, tenant, id string, c Credentials) error
	// SetConnectionRequestCredentials records an operator's
	// connection-request credentials for an existing device (not fenced):
	// with pending, as PendingConnectionRequestCredentials for a session
	// to set on the CPE, stamped with a PendingConnectionRequestTime later
	// than the one before; without, as ConnectionRequestCredentials (the
	// CPE has them), forgetting pending ones. Either way it clears
	// ConnectionRequestRefused. User name and password are 1 to
	// MaxCredentialLength bytes.
	SetConnectionRequestCredentials(ctx context.Context, tenant, id string, c Credentials, pending bool) error

	// DiscoveryProfile returns what sessions learned about discovering the
	// devices of a product class (see discovery.go); the zero profile when
	// nothing was.
	DiscoveryProfile(ctx context.Context, c ProductClass) (DiscoveryProfile, error)
	// RecordDiscovery merges what one discovery showed into its class's
	// profile. Merging is commutative and idempotent.
	RecordDiscovery(ctx context.Context, c ProductClass, o DiscoveryObservation, at time.Time) error
}

// SessionState is the part of a device a session starts from.
type SessionState struct {
	// DataModelRoot and FullDiscovery as in Device.
	DataModelRoot string
	FullDiscovery time.Time
	// FencingToken is the newest token a diff of the device carried.
	FencingToken uint64
	// ConnectionRequestCredentials as in Device; nil when none.
	ConnectionRequestCredentials *Credentials
	// PendingConnectionRequestCredentials, PendingConnectionRequestTime
	// and ConnectionRequestRefused as in Device.
	PendingConnectionRequestCredentials *Credentials
	PendingConnectionRequestTime        time.Time
	ConnectionRequestRefused            time.Time
	// PresetsFingerprint as in Device.
	PresetsFingerprint string
	// Tags as in Device (sorted): which presets match a device depends
	// on them, so the fingerprint is checked against them.
	Tags []string
}

// Device is the inventory's document for one CPE.
type Device struct {
	Tenant string
	// ID is the device id, see MakeID.
	ID string
	// DeviceID is the DeviceIdStruct as the CPE last reported it.
	DeviceID cwmp.DeviceID
	// OUI is DeviceID.OUI normalised (trimmed, upper case); filters on OUI
	// compare against this form.
	OUI string
	// Forced Inform parameters kept as top-level fields.
	SoftwareVersion  string
	HardwareVersion  string
	ProvisioningCode string
	// DataModelRoot is "Device." or "InternetGatewayDevice.", "" until
	// known.
	DataModelRoot string
	// ConnectionRequest is where to send Connection Requests.
	ConnectionRequest ConnectionRequest
	// ConnectionRequestCredentials are what the ACS provisioned as the
	// CPE's ConnectionRequestUsername and Password; nil when none were.
	ConnectionRequestCredentials *Credentials
	// PendingConnectionRequestCredentials are an operator's that no
	// session has set on the CPE yet (SetConnectionRequestCredentials);
	// nil when none. PendingConnectionRequestTime is when the operator
	// gave them.
	PendingConnectionRequestCredentials *Credentials
	PendingConnectionRequestTime        time.Time
	// ConnectionRequestRefused is when the CPE last refused to take
	// connection-request credentials; zero when it did not since they
	// last changed.
	ConnectionRequestRefused time.Time
	// CPECredentials are the per-device credentials the CPE authenticates
	// to the ACS with (ManagementServer.Username and Password); nil when
	// the device still uses shared onboarding credentials.
	CPECredentials *Credentials
	// LastInform is when the last Inform arrived; RemoteIP and LastEvents
	// belong to that Inform.
	LastInform time.Time
	RemoteIP   netip.Addr
	LastEvents []cwmp.Event
	// Registered is when the device was first recorded.
	Registered time.Time
	// LastBoot and LastBootstrap are the times of the last Informs carrying
	// "1 BOOT" and "0 BOOTSTRAP"; zero when none was seen.
	LastBoot      time.Time
	LastBootstrap time.Time
	// FullDiscovery is when a session last discovered the whole tree.
	FullDiscovery time.Time
	// TakeoverCount counts sessions that took over the device lease from a
	// session that still looked live, once per session; LastTakeover is
	// the time of the last one.
	TakeoverCount uint64
	LastTakeover  time.Time
	// Updated is when the device record last changed.
	Updated time.Time
	// Tags, sorted.
	Tags []string
	// FencingToken is the highest fencing token applied to the device.
	FencingToken uint64
	// PresetsFingerprint says which preset set the device last converged
	// to (docs/provisioning.md, "Convergence"), as sessions recorded it;
	// "" when none. AddTags and RemoveTags clear it: the presets that
	// match the device may have changed.
	PresetsFingerprint string
	// Params is the parameter tree, keyed by full path. It is nil unless
	// ReadOptions asked for parameters. Object paths end with ".".
	Params map[string]Parameter
}

// ConnectionRequest is how to wake the device (docs/protocol.md §8), as it last
// reported it.
type ConnectionRequest struct {
	// URL is ManagementServer.ConnectionRequestURL.
	URL string
	// UDPAddress is ManagementServer.UDPConnectionRequestAddress.
	UDPAddress string
	// JabberID is ManagementServer.ConnReqJabberID.
	JabberID string
}

// Credentials are a username and password pair.
type Credentials struct {
	Username string
	Password string
}

// Parameter is one entry of the parameter tree: a parameter or, for paths
// ending with ".", an object instance or table.
type Parameter struct {
	// Value and Type (the xsi:type as reported, e.g. "xsd:unsignedInt")
	// are meaningful when HasValue; values are stored byte for byte,
	// leading and trailing spaces included.
	Value    string
	Type     string
	HasValue bool
	// Writable and Notification are attributes learned from
	// GetParameterNames and GetParameterAttributes.
	Writable     Tri
	Notification Notification
	// Updated is when a session last reported anything about this entry.
	Updated time.Time
}

// Tri is a tri-state boolean. The zero value is TriUnknown.
type Tri int8

// Tri values.
const (
	TriUnknown Tri = iota
	TriFalse
	TriTrue
)

// TriOf converts a known boolean.
func TriOf(b bool) Tri {
	if b {
		return TriTrue
	}
	return TriFalse
}

// Bool returns the value and whether it is known.
func (t Tri) Bool() (value, known bool) { return t == TriTrue, t != TriUnknown }

// String returns "unknown", "false" or "true".
func (t Tri) String() string {
	switch t {
	case TriFalse:
		return "false"
	case TriTrue:
		return "true"
	}
	return "unknown"
}

// Notification is a parameter's notification attribute (docs/protocol.md §11: 0 off, 1
// passive, 2 active, 3-6 lightweight variants) or unknown. The zero value is
// unknown, so a zero ParamUpdate never overwrites a known attribute.
type Notification int8

// NotificationUnknown is the zero Notification.
const NotificationUnknown Notification = 0

// MaxNotification is the largest notification value the store accepts.
// CWMP 1.4 defines 0..6; a few more leave room for vendors without letting
// junk in.
const MaxNotification = 15

// NotificationOf converts a CWMP notification value (0..MaxNotification).
func NotificationOf(n int) Notification {
	if n < 0 || n > MaxNotification {
		return NotificationUnknown
	}
	return Notification(n + 1)
}

// Value returns the CWMP value and whether it is known.
func (n Notification) Value() (value int, known bool) {
	if n <= 0 {
		return 0, false
	}
	return int(n) - 1, true
}

// Diff is what one session learned about one device.
type Diff struct {
	// Time is when the session observed it: it becomes the Updated time
	// of the device and of every parameter entry the diff touches, and
	// Registered when the diff creates the device. Required.
	Time time.Time
	// SessionID names the session; it makes SessionTakeover count once
	// when the same diff is applied twice.
	SessionID string
	// DeviceID, when set, is the device's DeviceIdStruct: required to
	// create the device, and it replaces the stored one otherwise.
	// MakeID(*DeviceID) must be the device's id.
	DeviceID *cwmp.DeviceID
	// Inform, when set, records the Inform that started the session.
	Inform *Inform
	// Fields sets top-level fields; nil ones keep the stored value.
	Fields Fields
	// ConnectionRequestCredentials and CPECredentials, when set, replace
	// the stored credentials.
	ConnectionRequestCredentials *Credentials
	CPECredentials               *Credentials
	// ConnectionRequestPendingTime, when not zero with
	// ConnectionRequestCredentials, says they are the pending ones of that
	// PendingConnectionRequestTime: those are forgotten (not newer ones).
	// ConnectionRequestCredentials also clear ConnectionRequestRefused;
	// ConnectionRequestRefused, when not zero, sets it.
	ConnectionRequestPendingTime time.Time
	ConnectionRequestRefused     time.Time
	// FullDiscovery, when not zero, records that the session discovered
	// the whole tree at that time.
	FullDiscovery time.Time
	// SessionTakeover is set when the session took over the device lease
	// from a session that still looked live.
	SessionTakeover bool
	// DeletePaths remove entries before Params are applied: a path ending
	// with "." removes that object and everything under it, any other path
	// removes that one entry, and "" removes the whole tree.
	DeletePaths []string
	// Params sets or updates entries; unknown fields of an update keep the
	// stored value. When a path appears twice, the later update wins field
	// by field.
	Params []ParamUpdate
	// AddTags and RemoveTags change tags; a tag may not be in both.
	AddTags    []string
	RemoveTags []string
	// PresetsFingerprint, when set, replaces the device's.
	PresetsFingerprint *string
}

// Inform carries the facts of one Inform.
type Inform struct {
	// Time is when the Inform arrived; zero means Diff.Time. It becomes
	// LastInform, and LastBoot or LastBootstrap when Events hold an event
	// whose code starts with "1 " or "0 " (docs/protocol.md §6: match the number).
	Time     time.Time
	RemoteIP netip.Addr
	Events   []cwmp.Event
}

// Fields are top-level device fields a diff may set; nil keeps the stored
// value and a pointer to "" clears it.
type Fields struct {
	DataModelRoot               *string
	SoftwareVersion             *string
	HardwareVersion             *string
	ProvisioningCode            *string
	ConnectionRequestURL        *string
	UDPConnectionRequestAddress *string
	JabberID                    *string
}

// ParamUpdate changes one entry of the parameter tree. Fields left unknown
// (HasValue false, TriUnknown, NotificationUnknown) keep what is stored.
type ParamUpdate struct {
	Path         string
	HasValue     bool
	Value        string
	Type         string
	Writable     Tri
	Notification Notification
}

// SetValue is a ParamUpdate carrying a value, as from an Inform or a
// GetParameterValuesResponse.
func SetValue(path, value, typ string) ParamUpdate {
	return ParamUpdate{Path: path, HasValue: true, Value: value, Type: typ}
}

// SetWritable is a ParamUpdate carrying the writable attribute, as from a
// GetParameterNamesResponse.
func SetWritable(path string, writable bool) ParamUpdate {
	return ParamUpdate{Path: path, Writable: TriOf(writable)}
}

// SetNotification is a ParamUpdate carrying the notification attribute, as
// from a GetParameterAttributesResponse.
func SetNotification(path string, notification int) ParamUpdate {
	return ParamUpdate{Path: path, Notification: NotificationOf(notification)}
}

// ReadOptions selects what Get and List return besides the device fields.
type ReadOptions struct {
	// Params asks for the parameter tree.
	Params bool
	// ParamPrefixes, when not empty, limit the tree to paths starting with
	// one of them (and imply Params).
	ParamPrefixes []string
}

// WantParams reports whether any parameters are requested.
func (o ReadOptions) WantParams() bool { return o.Params || len(o.ParamPrefixes) > 0 }

// Filter selects devices of one tenant. Every set field must match (AND).
type Filter struct {
	// Tenant is required.
	Tenant string
	// IDs, when not empty, limits the result to these devices; at most
	// MaxFilterIDs.
	IDs []string
	// DeviceId fields; nil matches anything, a pointer to "" matches the
	// empty value. OUI is compared in normalised (upper-case) form.
	Manufacturer *string
	OUI          *string
	ProductClass *string
	SerialNumber *string
	// SoftwareVersion and HardwareVersion; nil matches anything.
	SoftwareVersion *string
	HardwareVersion *string
	// Tags the device must all have.
	Tags []string
	// LastInform range: InformedSince <= LastInform < InformedBefore; a
	// zero bound is open.
	InformedSince  time.Time
	InformedBefore time.Time
	// Params are conditions on parameter entries; at most
	// MaxFilterConditions.
	Params []ParamCondition
}

// Filter limits.
const (
	MaxFilterIDs        = 1000
	MaxFilterConditions = 16
)

// Ptr returns a pointer to s, for Filter fields.
func Ptr(s string) *string { return &s }

// Op is a parameter condition operator.
type Op uint8

// Parameter condition operators.
//
// Eq, Ne, Lt, Gt and Prefix only match entries with a known value (Ne means
// "has a value, and it differs"). Lt and Gt compare each value by its type:
// values of the xsd integer types (int, unsignedInt, long, unsignedLong)
// as numbers, against an operand that is an integer; xsd:dateTime values as
// instants (millisecond precision), against an RFC 3339 operand; all other
// values as byte strings. A value whose operand does not fit its type does
// not match. Exists matches any entry at Path, with or without a value (on a
// path ending in "." the object entry); NotExists matches devices without
// one.
const (
	OpEq Op = iota + 1
	OpNe
	OpLt
	OpGt
	OpExists
	OpNotExists
	OpPrefix
)

// String names the operator.
func (o Op) String() string {
	switch o {
	case OpEq:
		return "eq"
	case OpNe:
		return "ne"
	case OpLt:
		return "lt"
	case OpGt:
		return "gt"
	case OpExists:
		return "exists"
	case OpNotExists:
		return "not-exists"
	case OpPrefix:
		return "prefix"
	}
	return "invalid"
}

// ParamCondition is one condition on a parameter entry.
type ParamCondition struct {
	Path  string
	Op    Op
	Value string
}

// PageRequest asks for one page of List.
type PageRequest struct {
	// Limit is the page size; 0 means DefaultPageSize, more than
	// MaxPageSize is capped.
	Limit int
	// Cursor is Page.Next of the previous page; "" starts at the beginning.
	Cursor string
}

// Page sizes.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Page is one page of List results.
type Page struct {
	Devices []Device
	// Next is the cursor of the following page; "" when this page is the
	// last. Pages are keyset-ordered by id, so devices inserted or deleted
	// between pages never cause duplicates or skip devices that exist
	// throughout.
	Next string
}
