package files

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
)

// TestResolveFile: the internal lookup the session workers use for a
// preset's firmware finds the file of the device's product class (or one
// for any class), signs a URL for that device that downloads it, answers
// "not found" for a version or class without a file, and refuses bad
// input naming the field.
func TestResolveFile(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	data := content(3000, 7)
	hgw := h.mustUpload(t, firmware("hgw-2.1.bin", "2.1", "HGW"), data)
	h.mustUpload(t, firmware("any-3.0.bin", "3.0"), content(100, 8))
	srv := grpc.NewServer()
	h.svc.RegisterInternal(srv)
	c := filesv1.NewFilesInternalServiceClient(testenv.GRPCConn(t, srv))
	ask := func(class, version string) *filesv1.ResolveFileResponse {
		t.Helper()
		resp, err := c.ResolveFile(t.Context(), &filesv1.ResolveFileRequest{Tenant: "default", DeviceId: "dev-1", ProductClass: class,
			FileType: "1 Firmware Upgrade Image", Version: version})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	r := ask("HGW", "2.1")
	if !r.GetFound() || r.GetFile().GetId() != hgw.GetId() || r.GetFile().GetSize() != 3000 || !strings.Contains(r.GetUrl(), "d=dev-1") {
		t.Fatalf("HGW 2.1: %v", r)
	}
	// The URL downloads the file, for that device.
	resp, body := h.get(t, http.MethodGet, strings.TrimPrefix(r.GetUrl(), "http://acs.example.net:7547"))
	if resp.StatusCode != http.StatusOK || string(body) != string(data) {
		t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(body))
	}
	if r := ask("ONT", "2.1"); r.GetFound() || r.GetUrl() != "" {
		t.Fatalf("another product class: %v", r)
	}
	if r := ask("ONT", "3.0"); !r.GetFound() {
		t.Fatalf("a file for any class: %v", r)
	}
	if r := ask("HGW", "9.9"); r.GetFound() {
		t.Fatalf("no such version: %v", r)
	}
	for field, req := range map[string]*filesv1.ResolveFileRequest{
		"tenant":      {Tenant: "", DeviceId: "d", FileType: "1 Firmware Upgrade Image", Version: "1"},
		"device_id":   {Tenant: "default", DeviceId: strings.Repeat("d", 300), FileType: "1 Firmware Upgrade Image", Version: "1"},
		"file_type":   {Tenant: "default", DeviceId: "d", Version: "1"},
		"version":     {Tenant: "default", DeviceId: "d", FileType: "1 Firmware Upgrade Image", Version: strings.Repeat("v", 129)},
		"ttl_seconds": {Tenant: "default", DeviceId: "d", FileType: "1 Firmware Upgrade Image", Version: "1", TtlSeconds: 1 << 31},
	} {
		_, err := c.ResolveFile(t.Context(), req)
		wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
		if err != nil && !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
}
