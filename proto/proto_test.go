package proto_test

import (
	"bufio"
	"context"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"

	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"

	// Linked for their descriptors (TestEverySourceHasGeneratedCode).
	_ "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	_ "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	_ "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	_ "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
)

// TestEverySourceHasGeneratedCode catches a .proto file whose generated Go
// code is missing or not linked in: its descriptor would not be registered.
// A new package needs an import in this file.
func TestEverySourceHasGeneratedCode(t *testing.T) {
	var sources []string
	err := filepath.WalkDir("fleetacs", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".proto") {
			sources = append(sources, filepath.ToSlash(path))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk proto sources: %v", err)
	}
	if len(sources) == 0 {
		t.Fatal("no .proto files under fleetacs/")
	}
	for _, src := range sources {
		if _, err := protoregistry.GlobalFiles.FindFileByPath(src); err != nil {
			t.Errorf("%s: no registered descriptor (%v); run make proto and import its package in proto_test.go", src, err)
		}
	}
}

// rpc is the part of a method other services code against.
type rpc struct{ name, input, output string }

// TestServiceShapes pins the services' methods and message types, in the
// descriptors and in the grpc-go service descriptions, so that an edit that
// drops or retypes a method fails here as well as in buf breaking.
func TestServiceShapes(t *testing.T) {
	tests := []struct {
		desc grpc.ServiceDesc
		rpcs []rpc
	}{
		{sessionsv1.SessionService_ServiceDesc, []rpc{
			{"Exchange", "fleetacs.sessions.v1.ExchangeRequest", "fleetacs.sessions.v1.ExchangeResponse"},
			{"Abandon", "fleetacs.sessions.v1.AbandonRequest", "fleetacs.sessions.v1.AbandonResponse"},
		}},
		{inventoryv1.InventoryService_ServiceDesc, []rpc{
			{"GetDevice", "fleetacs.inventory.v1.GetDeviceRequest", "fleetacs.inventory.v1.GetDeviceResponse"},
			{"ListDevices", "fleetacs.inventory.v1.ListDevicesRequest", "fleetacs.inventory.v1.ListDevicesResponse"},
			{"AddTags", "fleetacs.inventory.v1.AddTagsRequest", "fleetacs.inventory.v1.AddTagsResponse"},
			{"RemoveTags", "fleetacs.inventory.v1.RemoveTagsRequest", "fleetacs.inventory.v1.RemoveTagsResponse"},
			{"DeleteDevice", "fleetacs.inventory.v1.DeleteDeviceRequest", "fleetacs.inventory.v1.DeleteDeviceResponse"},
			{"SetCpeCredentials", "fleetacs.inventory.v1.SetCpeCredentialsRequest", "fleetacs.inventory.v1.SetCpeCredentialsResponse"},
			{"SetConnectionRequestCredentials", "fleetacs.inventory.v1.SetConnectionRequestCredentialsRequest", "fleetacs.inventory.v1.SetConnectionRequestCredentialsResponse"},
		}},
		{authv1.TokenService_ServiceDesc, []rpc{
			{"CreateToken", "fleetacs.auth.v1.CreateTokenRequest", "fleetacs.auth.v1.CreateTokenResponse"},
			{"ListTokens", "fleetacs.auth.v1.ListTokensRequest", "fleetacs.auth.v1.ListTokensResponse"},
			{"RevokeToken", "fleetacs.auth.v1.RevokeTokenRequest", "fleetacs.auth.v1.RevokeTokenResponse"},
		}},
		{inventoryv1.InventoryInternalService_ServiceDesc, []rpc{
			{"GetDeviceForSession", "fleetacs.inventory.v1.GetDeviceForSessionRequest", "fleetacs.inventory.v1.GetDeviceForSessionResponse"},
			{"RecordSession", "fleetacs.inventory.v1.RecordSessionRequest", "fleetacs.inventory.v1.RecordSessionResponse"},
			{"GetCpeCredentials", "fleetacs.inventory.v1.GetCpeCredentialsRequest", "fleetacs.inventory.v1.GetCpeCredentialsResponse"},
			{"GetConnectionRequestTarget", "fleetacs.inventory.v1.GetConnectionRequestTargetRequest", "fleetacs.inventory.v1.GetConnectionRequestTargetResponse"},
			{"GetDiscoveryProfile", "fleetacs.inventory.v1.GetDiscoveryProfileRequest", "fleetacs.inventory.v1.GetDiscoveryProfileResponse"},
			{"RecordDiscovery", "fleetacs.inventory.v1.RecordDiscoveryRequest", "fleetacs.inventory.v1.RecordDiscoveryResponse"},
			{"GetToken", "fleetacs.inventory.v1.GetTokenRequest", "fleetacs.inventory.v1.GetTokenResponse"},
		}},
		{tasksv1.TasksInternalService_ServiceDesc, []rpc{
			{"ClaimTasks", "fleetacs.tasks.v1.ClaimTasksRequest", "fleetacs.tasks.v1.ClaimTasksResponse"},
			{"ReportTasks", "fleetacs.tasks.v1.ReportTasksRequest", "fleetacs.tasks.v1.ReportTasksResponse"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.desc.ServiceName, func(t *testing.T) {
			d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(tt.desc.ServiceName))
			if err != nil {
				t.Fatalf("find service: %v", err)
			}
			sd, ok := d.(protoreflect.ServiceDescriptor)
			if !ok {
				t.Fatalf("%s is a %T, not a service", tt.desc.ServiceName, d)
			}
			if got := sd.Methods().Len(); got != len(tt.rpcs) {
				t.Errorf("descriptor has %d methods, want %d", got, len(tt.rpcs))
			}
			if len(tt.desc.Streams) != 0 {
				t.Errorf("grpc service description has %d streams, want none", len(tt.desc.Streams))
			}
			var unary []string
			for _, m := range tt.desc.Methods {
				unary = append(unary, m.MethodName)
			}
			for _, want := range tt.rpcs {
				md := sd.Methods().ByName(protoreflect.Name(want.name))
				if md == nil {
					t.Errorf("method %s missing from the descriptor", want.name)
					continue
				}
				if got := string(md.Input().FullName()); got != want.input {
					t.Errorf("%s input = %s, want %s", want.name, got, want.input)
				}
				if got := string(md.Output().FullName()); got != want.output {
					t.Errorf("%s output = %s, want %s", want.name, got, want.output)
				}
				if md.IsStreamingClient() || md.IsStreamingServer() {
					t.Errorf("%s is streaming, want unary", want.name)
				}
				if !slices.Contains(unary, want.name) {
					t.Errorf("method %s missing from the grpc service description", want.name)
				}
			}
		})
	}
}

// TestPublicMethodRoles pins the least role of every public method: the
// server refuses methods without one, and a role quietly lowered would open
// a method to callers who could not call it before.
func TestPublicMethodRoles(t *testing.T) {
	want := map[string]authv1.Role{
		"/fleetacs.inventory.v1.InventoryService/GetDevice":                       authv1.Role_ROLE_VIEWER,
		"/fleetacs.inventory.v1.InventoryService/ListDevices":                     authv1.Role_ROLE_VIEWER,
		"/fleetacs.inventory.v1.InventoryService/AddTags":                         authv1.Role_ROLE_OPERATOR,
		"/fleetacs.inventory.v1.InventoryService/RemoveTags":                      authv1.Role_ROLE_OPERATOR,
		"/fleetacs.inventory.v1.InventoryService/DeleteDevice":                    authv1.Role_ROLE_ADMIN,
		"/fleetacs.inventory.v1.InventoryService/SetCpeCredentials":               authv1.Role_ROLE_ADMIN,
		"/fleetacs.inventory.v1.InventoryService/SetConnectionRequestCredentials": authv1.Role_ROLE_ADMIN,
		"/fleetacs.auth.v1.TokenService/CreateToken":                              authv1.Role_ROLE_ADMIN,
		"/fleetacs.auth.v1.TokenService/ListTokens":                               authv1.Role_ROLE_ADMIN,
		"/fleetacs.auth.v1.TokenService/RevokeToken":                              authv1.Role_ROLE_ADMIN,
		"/fleetacs.tasks.v1.TasksService/CreateTask":                              authv1.Role_ROLE_OPERATOR,
		"/fleetacs.tasks.v1.TasksService/CreateTasks":                             authv1.Role_ROLE_OPERATOR,
		"/fleetacs.tasks.v1.TasksService/GetTask":                                 authv1.Role_ROLE_VIEWER,
		"/fleetacs.tasks.v1.TasksService/ListTasks":                               authv1.Role_ROLE_VIEWER,
		"/fleetacs.tasks.v1.TasksService/CancelTask":                              authv1.Role_ROLE_OPERATOR,
		"/fleetacs.tasks.v1.TasksService/WatchTasks":                              authv1.Role_ROLE_VIEWER,
		"/fleetacs.files.v1.FilesService/UploadFile":                              authv1.Role_ROLE_OPERATOR,
		"/fleetacs.files.v1.FilesService/GetFile":                                 authv1.Role_ROLE_VIEWER,
		"/fleetacs.files.v1.FilesService/ListFiles":                               authv1.Role_ROLE_VIEWER,
		"/fleetacs.files.v1.FilesService/DeleteFile":                              authv1.Role_ROLE_OPERATOR,
		"/fleetacs.files.v1.FilesService/CreateDownloadUrl":                       authv1.Role_ROLE_OPERATOR,
		"/fleetacs.campaigns.v1.CampaignsService/CreateCampaign":                  authv1.Role_ROLE_OPERATOR,
		"/fleetacs.campaigns.v1.CampaignsService/GetCampaign":                     authv1.Role_ROLE_VIEWER,
		"/fleetacs.campaigns.v1.CampaignsService/ListCampaigns":                   authv1.Role_ROLE_VIEWER,
		"/fleetacs.campaigns.v1.CampaignsService/PauseCampaign":                   authv1.Role_ROLE_OPERATOR,
		"/fleetacs.campaigns.v1.CampaignsService/ResumeCampaign":                  authv1.Role_ROLE_OPERATOR,
		"/fleetacs.campaigns.v1.CampaignsService/AbortCampaign":                   authv1.Role_ROLE_OPERATOR,
		"/fleetacs.events.v1.EventsService/WatchEvents":                           authv1.Role_ROLE_VIEWER,
		"/fleetacs.provisioning.v1.PresetsService/PutPreset":                      authv1.Role_ROLE_ADMIN,
		"/fleetacs.provisioning.v1.PresetsService/GetPreset":                      authv1.Role_ROLE_VIEWER,
		"/fleetacs.provisioning.v1.PresetsService/ListPresets":                    authv1.Role_ROLE_VIEWER,
		"/fleetacs.provisioning.v1.PresetsService/DeletePreset":                   authv1.Role_ROLE_ADMIN,
		"/fleetacs.provisioning.v1.PresetsService/DryRunPreset":                   authv1.Role_ROLE_OPERATOR,
	}
	internal := []string{"fleetacs.inventory.v1.InventoryInternalService", "fleetacs.sessions.v1.SessionService", "fleetacs.tasks.v1.TasksInternalService", "fleetacs.provisioning.v1.PresetsInternalService", "fleetacs.files.v1.FilesInternalService"}
	got := map[string]authv1.Role{}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				role := proto.GetExtension(md.Options(), authv1.E_RequiredRole).(authv1.Role)
				full := "/" + string(sd.FullName()) + "/" + string(md.Name())
				if slices.Contains(internal, string(sd.FullName())) {
					if role != authv1.Role_ROLE_UNSPECIFIED {
						t.Errorf("%s: internal method declares role %v", full, role)
					}
					continue
				}
				if strings.HasPrefix(full, "/fleetacs.") {
					got[full] = role
				}
			}
		}
		return true
	})
	for m, r := range want {
		if got[m] != r {
			t.Errorf("%s: required_role %v, want %v", m, got[m], r)
		}
	}
	for m, r := range got {
		if _, ok := want[m]; !ok {
			t.Errorf("public method %s (role %v) is not pinned here: add it", m, r)
		}
	}
}

// TestFieldPresence pins the fields whose "unset" means something different
// from their zero value (unknown, or keep the stored value), because
// dropping `optional` would silently change the meaning of "" and false.
func TestFieldPresence(t *testing.T) {
	fields := []string{
		"fleetacs.inventory.v1.Parameter.value",
		"fleetacs.inventory.v1.Parameter.writable",
		"fleetacs.inventory.v1.Parameter.notification",
		"fleetacs.inventory.v1.DeviceFields.data_model_root",
		"fleetacs.inventory.v1.DeviceFields.software_version",
		"fleetacs.inventory.v1.DeviceFields.hardware_version",
		"fleetacs.inventory.v1.DeviceFields.provisioning_code",
		"fleetacs.inventory.v1.DeviceFields.connection_request_url",
		"fleetacs.inventory.v1.DeviceFields.udp_connection_request_address",
		"fleetacs.inventory.v1.DeviceFields.jabber_id",
		"fleetacs.sessions.v1.ExchangeResponse.retry_after",
		"fleetacs.sessions.v1.ExchangeRequest.lease",
	}
	for _, name := range fields {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			t.Errorf("find %s: %v", name, err)
			continue
		}
		fd, ok := d.(protoreflect.FieldDescriptor)
		if !ok {
			t.Errorf("%s is a %T, not a field", name, d)
			continue
		}
		if !fd.HasPresence() {
			t.Errorf("%s lost field presence", name)
		}
	}

	// The generated Go API shows it too: an explicitly empty value survives a
	// round trip and stays distinct from an unknown one.
	in := &inventoryv1.Parameter{Path: "Device.X.", Value: proto.String(""), Writable: proto.Bool(false)}
	b, err := proto.Marshal(in)
	if err != nil {
		t.Fatalf("marshal parameter: %v", err)
	}
	var out inventoryv1.Parameter
	if err := proto.Unmarshal(b, &out); err != nil {
		t.Fatalf("unmarshal parameter: %v", err)
	}
	if out.Value == nil || out.Writable == nil || out.Notification != nil {
		t.Errorf("presence after round trip: value %v, writable %v, notification %v; want set, set, unset",
			out.Value != nil, out.Writable != nil, out.Notification != nil)
	}
}

// startServer serves the given registrations on an in-memory listener and
// returns a client connection to it.
func startServer(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	register(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// echoWorker answers an Exchange with the request body and reports the
// trace context it received in a response header. Abandon is left
// unimplemented on purpose.
type echoWorker struct {
	sessionsv1.UnimplementedSessionServiceServer
}

func (echoWorker) Exchange(ctx context.Context, req *sessionsv1.ExchangeRequest) (*sessionsv1.ExchangeResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if err := grpc.SetHeader(ctx, metadata.Pairs("seen-traceparent", strings.Join(md.Get("traceparent"), ","))); err != nil {
		return nil, err
	}
	return &sessionsv1.ExchangeResponse{
		HttpStatus:       200,
		Body:             req.GetBody(),
		SetSessionCookie: req.GetSessionId(),
		RetryAfter:       durationpb.New(time.Duration(req.GetLease().GetFencingToken()) * time.Second),
	}, nil
}

// TestSessionServiceOverGRPC runs the generated client and server stubs
// against each other: bodies travel as raw bytes, trace context as metadata.
func TestSessionServiceOverGRPC(t *testing.T) {
	conn := startServer(t, func(s *grpc.Server) { sessionsv1.RegisterSessionServiceServer(s, echoWorker{}) })
	client := sessionsv1.NewSessionServiceClient(conn)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", traceparent)

	// Not valid UTF-8 on purpose: a CPE's body must reach the worker as is.
	body := []byte("<soap-env:Envelope>\xff\xfe</soap-env:Envelope>")
	var header metadata.MD
	resp, err := client.Exchange(ctx, &sessionsv1.ExchangeRequest{
		SessionId:  "s-1",
		NewSession: true,
		Tenant:     "default",
		DeviceKey:  "00D09E-IGD-SN1",
		DeviceId:   &sessionsv1.DeviceId{Oui: "00D09E", ProductClass: "IGD", SerialNumber: "SN1"},
		Lease:      &sessionsv1.DeviceLease{FencingToken: 7},
		Body:       body,
		Auth:       &sessionsv1.CpeAuthentication{Method: sessionsv1.CpeAuthMethod_CPE_AUTH_METHOD_DIGEST, Principal: "cpe"},
	}, grpc.Header(&header))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if string(resp.GetBody()) != string(body) {
		t.Errorf("body = %q, want %q", resp.GetBody(), body)
	}
	if resp.GetHttpStatus() != 200 || resp.GetSetSessionCookie() != "s-1" || resp.GetRetryAfter().AsDuration() != 7*time.Second {
		t.Errorf("response = %v, want status 200, cookie s-1, retry_after 7s", resp)
	}
	if got := header.Get("seen-traceparent"); len(got) != 1 || got[0] != traceparent {
		t.Errorf("worker saw traceparent %q, want %q", got, traceparent)
	}

	_, err = client.Abandon(ctx, &sessionsv1.AbandonRequest{SessionId: "s-1", Reason: sessionsv1.AbandonReason_ABANDON_REASON_SUPERSEDED})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("abandon on a server without it: %v, want Unimplemented", err)
	}
}

// missingDevices answers every GetDevice with the catalogue's not-found error.
type missingDevices struct {
	inventoryv1.UnimplementedInventoryServiceServer
}

func (missingDevices) GetDevice(_ context.Context, req *inventoryv1.GetDeviceRequest) (*inventoryv1.GetDeviceResponse, error) {
	st, err := status.New(codes.NotFound, "device not found").WithDetails(&errdetails.ErrorInfo{
		Reason:   errorsv1.ErrorReason_DEVICE_NOT_FOUND.String(),
		Domain:   "fleetacs",
		Metadata: map[string]string{"tenant": req.GetTenant(), "device_id": req.GetId()},
	})
	if err != nil {
		return nil, err
	}
	return nil, st.Err()
}

// TestErrorReasonReachesClient shows the catalogue's wire form: the reason
// string is the enum value's name and survives the trip in ErrorInfo.
func TestErrorReasonReachesClient(t *testing.T) {
	conn := startServer(t, func(s *grpc.Server) { inventoryv1.RegisterInventoryServiceServer(s, missingDevices{}) })
	client := inventoryv1.NewInventoryServiceClient(conn)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := client.GetDevice(ctx, &inventoryv1.GetDeviceRequest{Tenant: "default", Id: "nope"})
	st := status.Convert(err)
	if st.Code() != codes.NotFound {
		t.Fatalf("code = %v, want NotFound", st.Code())
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info == nil {
		t.Fatalf("no ErrorInfo in %v", st.Details())
	}
	if info.GetReason() != "DEVICE_NOT_FOUND" || info.GetDomain() != "fleetacs" || info.GetMetadata()["device_id"] != "nope" {
		t.Errorf("ErrorInfo = %v, want reason DEVICE_NOT_FOUND, domain fleetacs, device_id nope", info)
	}
}

// TestErrorCatalogueInStep checks that errors.md lists exactly the
// ErrorReason values, each with a real gRPC code, and that the code matches
// the one the value's comment in errors.proto names.
func TestErrorCatalogueInStep(t *testing.T) {
	docCodes := tableCodes(t, "errors.md", regexp.MustCompile("^\\| `([A-Z_]+)` \\| `([A-Z_]+)` \\|"))
	protoCodes := enumCommentCodes(t, "fleetacs/errors/v1/errors.proto")

	for num, name := range errorsv1.ErrorReason_name {
		if num == 0 {
			continue
		}
		doc, ok := docCodes[name]
		if !ok {
			t.Errorf("%s is not in errors.md", name)
			continue
		}
		var c codes.Code
		if err := c.UnmarshalJSON([]byte(`"` + doc + `"`)); err != nil {
			t.Errorf("errors.md: %s has code %s, not a gRPC code", name, doc)
		}
		if protoCodes[name] != doc {
			t.Errorf("%s: errors.md says %s, errors.proto says %q", name, doc, protoCodes[name])
		}
	}
	for name := range docCodes {
		if _, ok := errorsv1.ErrorReason_value[name]; !ok {
			t.Errorf("errors.md lists %s, which ErrorReason lacks", name)
		}
	}
}

// tableCodes reads reason -> code from the catalogue table of a Markdown file.
func tableCodes(t *testing.T, path string, row *regexp.Regexp) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open catalogue: %v", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			out[m[1]] = m[2]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return out
}

// enumCommentCodes reads, for each enum value of a .proto file, the gRPC
// code its comment starts with ("// NOT_FOUND: ...").
func enumCommentCodes(t *testing.T, path string) map[string]string {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	codeLine := regexp.MustCompile(`^\s*// ([A-Z_]+)\b`)
	valueLine := regexp.MustCompile(`^\s*([A-Z_]+) = \d+;`)
	out := map[string]string{}
	first := "" // code named by the first line of the current comment block
	inComment := false
	for line := range strings.Lines(string(src)) {
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), "//"):
			if !inComment {
				first = ""
				if m := codeLine.FindStringSubmatch(line); m != nil {
					first = m[1]
				}
			}
			inComment = true
		case valueLine.MatchString(line):
			out[valueLine.FindStringSubmatch(line)[1]] = first
			inComment = false
		default:
			inComment = false
		}
	}
	return out
}
