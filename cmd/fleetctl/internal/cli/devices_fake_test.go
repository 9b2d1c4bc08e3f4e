package cli

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
)

// fakeInventory is InventoryService over an in-memory slice: the unit
// boundary for fleetctl, which only builds requests and prints answers.
// It records every request with its metadata so tests can assert on what
// reached the server, and applies just enough of the API's semantics
// (tenants, paging with the same-request rule, parameter prefixes) for the
// client's handling of them to be tested.
type fakeInventory struct {
	inventoryv1.UnimplementedInventoryServiceServer

	devices []*inventoryv1.Device // sorted by id

	// err, when set, is returned by every call instead of an answer.
	err error
	// hang makes every call wait for its context to end.
	hang bool
	// sameToken makes ListDevices hand back the token it was given.
	sameToken bool

	mu    sync.Mutex
	calls []fakeCall
}

// fakeCall is one request as the server saw it.
type fakeCall struct {
	req         proto.Message
	auth        []string // authorization metadata
	hasDeadline bool
}

func (f *fakeInventory) record(ctx context.Context, req proto.Message) {
	md, _ := metadata.FromIncomingContext(ctx)
	_, ok := ctx.Deadline()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fakeCall{req: proto.Clone(req), auth: md.Get("authorization"), hasDeadline: ok})
}

func (f *fakeInventory) seen() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeInventory) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

func (f *fakeInventory) listRequests(t *testing.T) []*inventoryv1.ListDevicesRequest {
	t.Helper()
	var out []*inventoryv1.ListDevicesRequest
	for _, c := range f.seen() {
		r, ok := c.req.(*inventoryv1.ListDevicesRequest)
		if !ok {
			t.Fatalf("server saw %T, want only ListDevicesRequest", c.req)
		}
		out = append(out, r)
	}
	return out
}

func (f *fakeInventory) answer(ctx context.Context) error {
	if f.hang {
		<-ctx.Done()
		return status.FromContextError(ctx.Err()).Err()
	}
	return f.err
}

func (f *fakeInventory) GetDevice(ctx context.Context, req *inventoryv1.GetDeviceRequest) (*inventoryv1.GetDeviceResponse, error) {
	f.record(ctx, req)
	if err := f.answer(ctx); err != nil {
		return nil, err
	}
	for _, d := range f.devices {
		if d.GetTenant() != req.GetTenant() || d.GetId() != req.GetId() {
			continue
		}
		return &inventoryv1.GetDeviceResponse{Device: selectParameters(d, req.GetParameters())}, nil
	}
	return nil, apiStatus(codes.NotFound, "device not found", "DEVICE_NOT_FOUND",
		map[string]string{"tenant": req.GetTenant(), "device_id": req.GetId()})
}

// SetCpeCredentials records the request; the device must exist.
func (f *fakeInventory) SetCpeCredentials(ctx context.Context, req *inventoryv1.SetCpeCredentialsRequest) (*inventoryv1.SetCpeCredentialsResponse, error) {
	f.record(ctx, req)
	if err := f.answer(ctx); err != nil {
		return nil, err
	}
	for _, d := range f.devices {
		if d.GetTenant() == req.GetTenant() && d.GetId() == req.GetId() {
			return &inventoryv1.SetCpeCredentialsResponse{}, nil
		}
	}
	return nil, apiStatus(codes.NotFound, "device not found", "DEVICE_NOT_FOUND", nil)
}

// ListDevices pages over the tenant's devices. Its token is
// "offset/pageSize", so a page size that changes between pages is refused
// as the real server refuses any request that differs from the token's.
func (f *fakeInventory) ListDevices(ctx context.Context, req *inventoryv1.ListDevicesRequest) (*inventoryv1.ListDevicesResponse, error) {
	f.record(ctx, req)
	if err := f.answer(ctx); err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = 100
	}
	offset := 0
	if tok := req.GetPageToken(); tok != "" && !f.sameToken {
		o, s, _ := strings.Cut(tok, "/")
		var err error
		offset, err = strconv.Atoi(o)
		if err != nil || s != strconv.Itoa(size) {
			return nil, apiStatus(codes.InvalidArgument, "bad page token", "INVALID_PAGE_TOKEN", nil)
		}
	}
	var match []*inventoryv1.Device
	for _, d := range f.devices {
		if d.GetTenant() == req.GetTenant() {
			match = append(match, d)
		}
	}
	end := min(offset+size, len(match))
	resp := &inventoryv1.ListDevicesResponse{}
	for _, d := range match[min(offset, end):end] {
		resp.Devices = append(resp.Devices, selectParameters(d, req.GetParameters()))
	}
	if end < len(match) {
		resp.NextPageToken = strconv.Itoa(end) + "/" + strconv.Itoa(size)
	}
	if f.sameToken {
		resp.NextPageToken = req.GetPageToken()
		if resp.NextPageToken == "" {
			resp.NextPageToken = "again"
		}
	}
	return resp, nil
}

// selectParameters is a copy of d with the parameters sel asks for.
func selectParameters(d *inventoryv1.Device, sel *inventoryv1.ParameterSelector) *inventoryv1.Device {
	d = proto.Clone(d).(*inventoryv1.Device)
	if sel == nil {
		d.Parameters = nil
	} else if pp := sel.GetPathPrefixes(); len(pp) > 0 {
		d.Parameters = slices.DeleteFunc(d.Parameters, func(p *inventoryv1.Parameter) bool {
			return !slices.ContainsFunc(pp, func(pre string) bool { return strings.HasPrefix(p.GetPath(), pre) })
		})
	}
	return d
}

// apiStatus is an error as the catalogue (proto/errors.md) shapes it.
func apiStatus(code codes.Code, msg, reason string, md map[string]string, more ...protoadapt.MessageV1) error {
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Domain: "fleetacs", Reason: reason, Metadata: md}}
	st, err := status.New(code, msg).WithDetails(append(details, more...)...)
	if err != nil {
		panic(err)
	}
	return st.Err()
}

// serve runs srv on 127.0.0.1:0 and returns its address; the server stops
// when the test ends.
func serve(t *testing.T, srv inventoryv1.InventoryServiceServer, opts ...grpc.ServerOption) string {
	t.Helper()
	return serveWith(t, func(s *grpc.Server) {
		if srv != nil {
			inventoryv1.RegisterInventoryServiceServer(s, srv)
		}
	}, opts...)
}

// serveWith runs a server with what register registers on 127.0.0.1:0.
func serveWith(t *testing.T, register func(*grpc.Server), opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	register(s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(lis)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return lis.Addr().String()
}

// ts is an instant for fixtures.
func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}
