package engine

import (
	"context"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// The engine's ports (docs/style.md rule 3): small interfaces it owns. The
// affinity ones are met by pkg/affinity's Redis and memory stores;
// Inventory by the gRPC adapter of package sessions.

// ErrLeaseLost means a newer session holds the device: a store refused a
// write fenced by an older token. It is affinity.ErrLeaseLost itself, so
// errors.Is matches whichever port reported it.
var ErrLeaseLost = affinity.ErrLeaseLost

// Leases renews and releases the device lease a gateway took for a session.
type Leases interface {
	// Renew extends the lease to now+ttl while sessionID still holds it
	// with token; otherwise ErrLeaseLost.
	Renew(ctx context.Context, tenant, deviceKey, sessionID string, token uint64, ttl time.Duration) error
	// Release frees the lease if sessionID holds it; otherwise a no-op.
	Release(ctx context.Context, tenant, deviceKey, sessionID string) error
}

// Checkpoints stores resumable session state, fenced by lease tokens (see
// affinity.Checkpoints for the fencing rule).
type Checkpoints interface {
	Save(ctx context.Context, cp affinity.Checkpoint, ttl time.Duration) error
	// Load returns the session's checkpoint or affinity.ErrNoCheckpoint.
	Load(ctx context.Context, tenant, deviceKey, sessionID string) (affinity.Checkpoint, error)
	Delete(ctx context.Context, tenant, deviceKey, sessionID string) error
}

// Registry announces the worker to gateways.
type Registry interface {
	Register(ctx context.Context, w affinity.Worker, ttl time.Duration) error
	Deregister(ctx context.Context, workerID string) error
}

// Interface guards: pkg/affinity's ports satisfy the worker's.
var (
	_ Leases      = affinity.Leases(nil)
	_ Checkpoints = affinity.Checkpoints(nil)
	_ Registry    = affinity.Registry(nil)
)

// Inventory is what sessions need from the inventory service
// (fleetacs.inventory.v1.InventoryInternalService).
type Inventory interface {
	// GetDeviceForSession returns what the inventory knows of a device; an
	// unknown device is not an error (Known false).
	GetDeviceForSession(ctx context.Context, q DeviceQuery) (DeviceState, error)
	// RecordSession applies one session's diff atomically. It returns
	// ErrLeaseLost when the diff's fencing token is older than the newest
	// the device has recorded. Applying the same diff twice is harmless.
	RecordSession(ctx context.Context, d *Diff) error
	// DiscoveryProfile returns what sessions learned about discovering
	// the devices of a product class; the zero profile when nothing.
	DiscoveryProfile(ctx context.Context, c ProductClass) (DiscoveryProfile, error)
	// RecordDiscovery merges what one discovery showed into its class's
	// profile (see DiscoveryProfile.Merge). Not fenced: it is about the
	// class, not the device.
	RecordDiscovery(ctx context.Context, c ProductClass, o DiscoveryObservation) error
}

// DeviceQuery asks for a device at the start of a session.
type DeviceQuery struct {
	Tenant    string
	DeviceKey string
	// WithParameters asks for stored parameters: those under Prefixes, or
	// the whole tree when Prefixes is empty.
	WithParameters bool
	Prefixes       []string
}

// DeviceState is the part of a device record a session starts from.
type DeviceState struct {
	// Known is false on a first contact; the other fields are then zero.
	Known bool
	// DataModelRoot is "Device." or "InternetGatewayDevice.", "" if unknown.
	DataModelRoot string
	// FullDiscoveryTime is when a session last discovered the whole tree;
	// zero if never.
	FullDiscoveryTime time.Time
	// LastFencingToken is the newest token recorded for the device.
	LastFencingToken uint64
	// Parameters are the stored parameters and objects the query asked for.
	Parameters []Parameter
	// ConnectionRequest is what the inventory knows of the CPE's
	// connection-request credentials (crcreds.go).
	ConnectionRequest CRState
	// PresetsFingerprint is which preset set the device last converged to
	// (docs/provisioning.md); "" when none.
	PresetsFingerprint string
	// Tags are the device's tags, sorted: which presets match a device
	// depends on them (docs/provisioning.md, "Convergence").
	Tags []string
}

// Parameter is one node of a device's tree: a parameter, or an object when
// Path ends with a dot. Unset attributes keep what the inventory has.
type Parameter struct {
	Path string `json:"path"`
	// Value and Type are set when HasValue.
	Value    string `json:"value,omitempty"`
	Type     string `json:"type,omitempty"`
	HasValue bool   `json:"hasValue,omitempty"`
	// Writable is set when HasWritable (from GetParameterNames).
	Writable    bool `json:"writable,omitempty"`
	HasWritable bool `json:"hasWritable,omitempty"`
}

// Diff is what one session learned about a device: the body of one
// RecordSession.
type Diff struct {
	Tenant       string
	DeviceKey    string
	SessionID    string
	FencingToken uint64
	// ObserveTime is when the facts were observed (worker clock).
	ObserveTime time.Time
	DeviceID    cwmp.DeviceID
	// Inform is the Inform that started the session.
	Inform *InformRecord
	Fields DeviceFields
	// RemovedPaths apply before Parameters: an object path (ending with a
	// dot) removes the object and everything under it.
	RemovedPaths []string
	Parameters   []Parameter
	// FullDiscoveryTime is set when the session discovered the whole tree.
	FullDiscoveryTime time.Time
	// SessionTakeover is set when the session's lease took over a live one.
	SessionTakeover bool
	// ConnectionRequest is what the session did with the CPE's
	// connection-request credentials (crcreds.go); nil when nothing.
	ConnectionRequest *CRUpdate
	// PresetsFingerprint, when set, is the preset set the device
	// converged to in the session.
	PresetsFingerprint *string
	// AddTags and RemoveTags change the device's tags.
	AddTags, RemoveTags []string
}

// InformRecord is what the inventory keeps of an Inform.
type InformRecord struct {
	// Time is when the Inform arrived (worker clock).
	Time       time.Time
	Events     []cwmp.Event
	RemoteIP   string
	RetryCount uint32
}

// DeviceFields are top-level device fields; nil leaves the stored value.
type DeviceFields struct {
	DataModelRoot               *string
	SoftwareVersion             *string
	HardwareVersion             *string
	ProvisioningCode            *string
	ConnectionRequestURL        *string
	UDPConnectionRequestAddress *string
	JabberID                    *string
}
