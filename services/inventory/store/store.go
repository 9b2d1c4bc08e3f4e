// Package store is the inventory's storage port: the device document of
// DESIGN §3 (identity, Inform facts, tags and the parameter tree) and the
// narrow interface every inventory backend implements (STYLE rule 3).
//
// Two adapters implement it: store/mongostore (production, MongoDB) and
// store/sqlitestore (the embedded default of DESIGN §4). Both pass the one
// contract suite in services/inventory/storetest, so callers can rely on the
// semantics written here rather than on either backend.
//
// Semantics every adapter keeps:
//
//   - Devices are keyed by (tenant, device id). A device in one tenant is
//     invisible to every other tenant.
//   - Sessions write through ApplySessionDiff, which applies only what the
//     session learned, atomically per device: either the whole diff is visible
//     or none of it is. Inside one diff, parameter deletions (DeletePrefixes)
//     are applied before parameter updates, so "forget this subtree, here is
//     what it holds now" is one diff.
//   - Fencing (DESIGN §2 step 5): every device remembers the highest fencing
//     token a diff was applied with. A diff carrying a lower token is rejected
//     with ErrStaleFencingToken and writes nothing. An equal token is accepted,
//     because one session, holding one lease, may write several diffs.
//     AddTags, RemoveTags and Delete are operator actions outside sessions and
//     are not fenced.
//   - Times are stored in UTC with millisecond precision (MongoDB's date
//     precision); what is read back is the written time truncated that way.
//   - Tags are returned sorted and without duplicates.
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
	// List returns the devices of f.Tenant matching f, ordered by id, one
	// page at a time.
	List(ctx context.Context, f Filter, page PageRequest, opts ReadOptions) (Page, error)
	// ApplySessionDiff applies d to the device atomically, creating the
	// device when d carries an Inform and the device does not exist yet. A
	// diff without Inform on a missing device is ErrNotFound.
	ApplySessionDiff(ctx context.Context, tenant, id string, d Diff, fencingToken uint64) error
	// AddTags adds tags to an existing device; tags it already has are kept.
	AddTags(ctx context.Context, tenant, id string, tags ...string) error
	// RemoveTags removes tags from an existing device; absent tags are
	// ignored.
	RemoveTags(ctx context.Context, tenant, id string, tags ...string) error
	// Delete removes the device and its parameters.
	Delete(ctx context.Context, tenant, id string) error
}

// Device is the inventory's document for one CPE.
type Device struct {
	Tenant string
	// ID is the device id, see MakeID.
	ID string
	// DeviceID is the DeviceIdStruct exactly as the CPE last reported it.
	DeviceID cwmp.DeviceID
	// OUI is DeviceID.OUI normalised (trimmed, upper case); filters on OUI
	// compare against this form.
	OUI string
	// SoftwareVersion is DeviceInfo.SoftwareVersion as of the last Inform
	// that carried it.
	SoftwareVersion string
	// DataModelRoot is "Device." or "InternetGatewayDevice.".
	DataModelRoot string
	// ConnectionRequest is where and how to send Connection Requests.
	ConnectionRequest ConnectionRequest
	// LastInform is when the last Inform was recorded; RemoteIP and
	// LastEvents belong to that Inform.
	LastInform time.Time
	RemoteIP   netip.Addr
	LastEvents []cwmp.Event
	// Registered is when the device was first recorded.
	Registered time.Time
	// LastBoot is the time of the last Inform carrying "1 BOOT"; zero when
	// none was seen.
	LastBoot time.Time
	// Tags, sorted.
	Tags []string
	// FencingToken is the highest fencing token applied to the device.
	FencingToken uint64
	// Params is the parameter tree, keyed by full path. It is nil unless
	// ReadOptions asked for parameters. Object paths end with ".".
	Params map[string]Parameter
}

// ConnectionRequest holds ManagementServer.ConnectionRequestURL and the
// credentials the ACS uses against it.
type ConnectionRequest struct {
	URL      string
	Username string
	Password string
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

// Notification is a parameter's notification attribute (notes §11: 0 off, 1
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
	// Time is when the session learned it: it becomes LastInform (with an
	// Inform), Registered (on creation), LastBoot (on "1 BOOT") and the
	// Updated time of every parameter entry the diff touches. Required.
	Time time.Time
	// Inform, when set, records identity and Inform facts.
	Inform *Inform
	// ConnectionRequestCredentials, when set, replaces the credentials the
	// ACS uses for Connection Requests.
	ConnectionRequestCredentials *Credentials
	// DeletePrefixes removes every entry whose path starts with one of
	// them, before Params are applied. Each ends with "."; "" removes the
	// whole tree.
	DeletePrefixes []string
	// Params sets or updates entries; unknown fields of an update keep the
	// stored value. When a path appears twice, the later update wins field
	// by field.
	Params []ParamUpdate
	// AddTags and RemoveTags change tags; a tag may not be in both.
	AddTags    []string
	RemoveTags []string
}

// Inform carries the facts of one Inform.
type Inform struct {
	DeviceID cwmp.DeviceID
	// DataModelRoot is "Device." or "InternetGatewayDevice."; "" keeps the
	// stored one.
	DataModelRoot string
	// SoftwareVersion is DeviceInfo.SoftwareVersion; "" keeps the stored
	// one (older CPEs do not always send it).
	SoftwareVersion string
	// ConnectionRequestURL is a forced Inform parameter, so it is always
	// written, empty included (HTTPConnectionRequestEnable=false empties
	// it).
	ConnectionRequestURL string
	RemoteIP             netip.Addr
	Events               []cwmp.Event
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
	// ParamPrefix, when not empty, limits the tree to paths starting with
	// it (and implies Params).
	ParamPrefix string
}

// WantParams reports whether any parameters are requested.
func (o ReadOptions) WantParams() bool { return o.Params || o.ParamPrefix != "" }

// Filter selects devices of one tenant. Every set field must match (AND).
type Filter struct {
	// Tenant is required.
	Tenant string
	// DeviceId fields; nil matches anything, a pointer to "" matches the
	// empty value. OUI is compared in normalised (upper-case) form.
	Manufacturer *string
	OUI          *string
	ProductClass *string
	SerialNumber *string
	// SoftwareVersion; nil matches anything.
	SoftwareVersion *string
	// Tags the device must all have.
	Tags []string
	// LastInform range: InformedSince <= LastInform < InformedBefore; a
	// zero bound is open.
	InformedSince  time.Time
	InformedBefore time.Time
	// Params are conditions on parameter entries.
	Params []ParamCondition
}

// Ptr returns a pointer to s, for Filter fields.
func Ptr(s string) *string { return &s }

// Op is a parameter condition operator.
type Op uint8

// Parameter condition operators.
//
// Eq, Ne, Lt, Gt and Prefix only match entries with a known value (Ne means
// "has a value, and it differs"). Lt and Gt compare numerically when the
// condition's Value is a decimal number (see ParseNumber), against entries
// whose value is one; otherwise they compare strings byte by byte. Exists
// matches any entry at Path, with or without a value; on a path ending in
// "." it matches the object entry.
const (
	OpEq Op = iota + 1
	OpNe
	OpLt
	OpGt
	OpExists
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
