package sessions

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
)

// fakeInventory is InventoryInternalService at the gRPC boundary, kept in
// memory: it applies diffs and fences them by token the way the API's
// comments specify, and remembers every write for assertions.
type fakeInventory struct {
	inventoryv1.UnimplementedInventoryInternalServiceServer

	mu      sync.Mutex
	devices map[string]*fakeDevice
	// accepted and refused list RecordSession requests in arrival order.
	accepted []*inventoryv1.RecordSessionRequest
	refused  []*inventoryv1.RecordSessionRequest
	gets     int
	// failGets makes GetDeviceForSession fail while positive (decremented).
	failGets int
	// failRecords makes RecordSession fail while positive (decremented).
	failRecords int
	// profiles are the discovery profiles by tenant/OUI/product class.
	profiles      map[string]DiscoveryProfile
	profileWrites int
	// recordEntered and recordRelease, when set, hold the next
	// RecordSession: it closes recordEntered, then waits for
	// recordRelease to close.
	recordEntered, recordRelease chan struct{}
}

// holdRecord makes the next RecordSession wait (see recordEntered).
func (f *fakeInventory) holdRecord() (entered, release chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recordEntered, f.recordRelease = make(chan struct{}), make(chan struct{})
	return f.recordEntered, f.recordRelease
}

type fakeDevice struct {
	root          string
	fullDiscovery time.Time
	lastToken     uint64
	params        map[string]*inventoryv1.Parameter
	takeovers     map[string]bool
	lastInform    *inventoryv1.InformRecord
	fields        *inventoryv1.DeviceFields
}

func newFakeInventory() *fakeInventory {
	return &fakeInventory{devices: map[string]*fakeDevice{}, profiles: map[string]DiscoveryProfile{}}
}

func devKey(tenant, key string) string { return tenant + "/" + key }

// seed stores a known device with the given paths (values "v").
func (f *fakeInventory) seed(tenant, key, root string, discovered time.Time, paths ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := &fakeDevice{root: root, fullDiscovery: discovered, params: map[string]*inventoryv1.Parameter{}, takeovers: map[string]bool{}}
	for _, p := range paths {
		d.params[p] = &inventoryv1.Parameter{Path: p}
	}
	f.devices[devKey(tenant, key)] = d
}

func (f *fakeInventory) GetDeviceForSession(_ context.Context, req *inventoryv1.GetDeviceForSessionRequest) (*inventoryv1.GetDeviceForSessionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	if f.failGets > 0 {
		f.failGets--
		return nil, status.Error(codes.Unavailable, "store unavailable")
	}
	d := f.devices[devKey(req.Tenant, req.DeviceKey)]
	if d == nil {
		return &inventoryv1.GetDeviceForSessionResponse{}, nil
	}
	dev := &inventoryv1.Device{Tenant: req.Tenant, Id: req.DeviceKey, DataModelRoot: d.root}
	if !d.fullDiscovery.IsZero() {
		dev.FullDiscoveryTime = timestamppb.New(d.fullDiscovery)
	}
	if sel := req.Parameters; sel != nil {
		for _, p := range d.sortedParams() {
			if len(sel.PathPrefixes) == 0 || slices.ContainsFunc(sel.PathPrefixes, func(pre string) bool { return strings.HasPrefix(p.Path, pre) }) {
				dev.Parameters = append(dev.Parameters, proto.Clone(p).(*inventoryv1.Parameter))
			}
		}
	}
	return &inventoryv1.GetDeviceForSessionResponse{Device: dev, LastFencingToken: d.lastToken}, nil
}

func (d *fakeDevice) sortedParams() []*inventoryv1.Parameter {
	out := make([]*inventoryv1.Parameter, 0, len(d.params))
	for _, p := range d.params {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *inventoryv1.Parameter) int { return strings.Compare(a.Path, b.Path) })
	return out
}

func (f *fakeInventory) RecordSession(_ context.Context, req *inventoryv1.RecordSessionRequest) (*inventoryv1.RecordSessionResponse, error) {
	f.mu.Lock()
	entered, release := f.recordEntered, f.recordRelease
	f.recordEntered, f.recordRelease = nil, nil
	f.mu.Unlock()
	if entered != nil {
		close(entered)
		<-release
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.FencingToken == 0 || req.Tenant == "" || req.DeviceKey == "" || req.SessionId == "" {
		return nil, status.Error(codes.InvalidArgument, "record session: missing field")
	}
	if f.failRecords > 0 {
		f.failRecords--
		return nil, status.Error(codes.DeadlineExceeded, "store too slow")
	}
	k := devKey(req.Tenant, req.DeviceKey)
	d := f.devices[k]
	created := d == nil
	if created {
		d = &fakeDevice{params: map[string]*inventoryv1.Parameter{}, takeovers: map[string]bool{}}
	}
	if req.FencingToken < d.lastToken {
		f.refused = append(f.refused, proto.Clone(req).(*inventoryv1.RecordSessionRequest))
		st, _ := status.New(codes.FailedPrecondition, "lease lost").WithDetails(&errdetails.ErrorInfo{
			Domain: "fleetacs", Reason: errorsv1.ErrorReason_LEASE_LOST.String(),
			Metadata: map[string]string{"device_id": req.DeviceKey},
		})
		return nil, st.Err()
	}
	f.devices[k] = d
	f.accepted = append(f.accepted, proto.Clone(req).(*inventoryv1.RecordSessionRequest))
	d.lastToken = req.FencingToken
	for _, rp := range req.RemovedPaths {
		for path := range d.params {
			if path == rp || (strings.HasSuffix(rp, ".") && strings.HasPrefix(path, rp)) {
				delete(d.params, path)
			}
		}
	}
	for _, p := range req.Parameters {
		cur := d.params[p.Path]
		if cur == nil {
			cur = &inventoryv1.Parameter{Path: p.Path}
			d.params[p.Path] = cur
		}
		if p.Value != nil {
			cur.Value, cur.Type = proto.String(p.GetValue()), p.Type
		}
		if p.Writable != nil {
			cur.Writable = proto.Bool(p.GetWritable())
		}
	}
	if r := req.GetFields().DataModelRoot; r != nil {
		d.root = *r
	}
	d.fields = req.Fields
	if t := req.FullDiscoveryTime; t != nil {
		d.fullDiscovery = t.AsTime()
	}
	if req.Inform != nil {
		d.lastInform = req.Inform
	}
	if req.SessionTakeover {
		d.takeovers[req.SessionId] = true
	}
	return &inventoryv1.RecordSessionResponse{Created: created}, nil
}

// GetDiscoveryProfile and RecordDiscovery keep profiles as the stores'
// contract says: the largest OK, the smallest failure above it.
func (f *fakeInventory) GetDiscoveryProfile(_ context.Context, req *inventoryv1.GetDiscoveryProfileRequest) (*inventoryv1.GetDiscoveryProfileResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &inventoryv1.GetDiscoveryProfileResponse{Profile: profileProto(f.profiles[profileKey(req.Tenant, req.Oui, req.ProductClass)])}, nil
}

func (f *fakeInventory) RecordDiscovery(_ context.Context, req *inventoryv1.RecordDiscoveryRequest) (*inventoryv1.RecordDiscoveryResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := profileKey(req.Tenant, req.Oui, req.ProductClass)
	p := f.profiles[k].Merge(DiscoveryObservation{GPVBatchOK: int(req.GpvBatchOk), GPVBatchFailed: int(req.GpvBatchFailed), SubtreeGPNFailed: req.SubtreeGpnFailed})
	f.profiles[k] = p
	f.profileWrites++
	return &inventoryv1.RecordDiscoveryResponse{Profile: profileProto(p)}, nil
}

func profileKey(tenant, oui, pc string) string { return tenant + "/" + oui + "/" + pc }

func profileProto(p DiscoveryProfile) *inventoryv1.DiscoveryProfile {
	return &inventoryv1.DiscoveryProfile{GpvBatchOk: uint32(p.GPVBatchOK), GpvBatchFailed: uint32(p.GPVBatchFailed), SubtreeGpnFailed: p.SubtreeGPNFailed}
}

// profile returns the stored discovery profile of a class.
func (f *fakeInventory) profile(tenant, oui, pc string) DiscoveryProfile {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.profiles[profileKey(tenant, oui, pc)]
}

// records returns copies of the accepted and refused writes.
func (f *fakeInventory) records() (accepted, refused []*inventoryv1.RecordSessionRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.accepted), slices.Clone(f.refused)
}

// device returns the stored device (a snapshot of its parameters by path).
func (f *fakeInventory) device(tenant, key string) (*fakeDevice, map[string]*inventoryv1.Parameter) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.devices[devKey(tenant, key)]
	if d == nil {
		return nil, nil
	}
	ps := make(map[string]*inventoryv1.Parameter, len(d.params))
	for k, p := range d.params {
		ps[k] = proto.Clone(p).(*inventoryv1.Parameter)
	}
	return d, ps
}
