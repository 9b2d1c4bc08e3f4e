package files

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/fleetacs/fleetacs/pkg/recordid"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	"github.com/fleetacs/fleetacs/services/files/blob"
	"github.com/fleetacs/fleetacs/services/files/blob/disk"
)

func TestUploadGetListDelete(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	data := content(3<<20+17, 1)
	hdr := firmware("hgw-2.1.bin", "2.1", "HGW", "HGW2")
	hdr.Oui, hdr.ExpectedSha256, hdr.ExpectedSize = "00d09e", sum(data), uint64(len(data))
	f := h.mustUpload(t, hdr, data)
	if f.GetSize() != uint64(len(data)) || f.GetSha256() != sum(data) || f.GetTenant() != "default" || !recordid.Valid(f.GetId()) ||
		f.GetOui() != "00D09E" || f.GetVersion() != "2.1" || !reflect.DeepEqual(f.GetProductClasses(), []string{"HGW", "HGW2"}) ||
		f.GetUploader() == "" || f.GetCreateTime() == nil {
		t.Fatalf("uploaded record: %v", f)
	}
	got, err := h.public.GetFile(as(t.Context(), h.viewer), &filesv1.GetFileRequest{Id: f.GetId()})
	if err != nil || got.GetFile().GetSha256() != f.GetSha256() || got.GetFile().GetName() != "hgw-2.1.bin" {
		t.Fatalf("GetFile: %v, %v", got, err)
	}
	// The bytes on disk are the file's.
	b, err := os.ReadFile(filepath.Join(h.blobDir, "default", f.GetId()))
	if err != nil || sum(b) != sum(data) {
		t.Fatalf("blob on disk: %d bytes, %v", len(b), err)
	}

	h.clock.Advance(time.Second)
	cfg := h.mustUpload(t, &filesv1.UploadFileHeader{Name: "ont.cfg", FileType: "3 Vendor Configuration File", ProductClasses: []string{"ONT"}}, []byte("cfg"))
	h.clock.Advance(time.Second)
	anyfw := h.mustUpload(t, firmware("any-2.1.bin", "2.1"), []byte("fw"))

	list := func(req *filesv1.ListFilesRequest) []string {
		t.Helper()
		resp, err := h.public.ListFiles(as(t.Context(), h.viewer), req)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range resp.GetFiles() {
			names = append(names, f.GetName())
		}
		return names
	}
	if got := list(&filesv1.ListFilesRequest{}); !reflect.DeepEqual(got, []string{"any-2.1.bin", "ont.cfg", "hgw-2.1.bin"}) {
		t.Errorf("all: %v", got)
	}
	if got := list(&filesv1.ListFilesRequest{FileType: "1 Firmware Upgrade Image", ProductClass: "HGW"}); !reflect.DeepEqual(got, []string{"any-2.1.bin", "hgw-2.1.bin"}) {
		t.Errorf("firmware for HGW: %v", got)
	}
	// Pages of one.
	var names []string
	tok := ""
	for range 5 {
		resp, err := h.public.ListFiles(as(t.Context(), h.viewer), &filesv1.ListFilesRequest{PageSize: 1, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range resp.GetFiles() {
			names = append(names, f.GetName())
		}
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	if !reflect.DeepEqual(names, []string{"any-2.1.bin", "ont.cfg", "hgw-2.1.bin"}) {
		t.Errorf("paged: %v", names)
	}
	first, err := h.public.ListFiles(as(t.Context(), h.viewer), &filesv1.ListFilesRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.public.ListFiles(as(t.Context(), h.viewer), &filesv1.ListFilesRequest{PageSize: 1, Version: "2.1", PageToken: first.GetNextPageToken()})
	wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_PAGE_TOKEN)

	// Resolve, for presets and campaigns.
	r, err := h.svc.Resolve(t.Context(), "default", "HGW", "1 Firmware Upgrade Image", "2.1")
	if err != nil || r.GetId() != f.GetId() {
		t.Errorf("Resolve(HGW) = %v, %v; want the file naming HGW, not the newer one for any class", r, err)
	}
	r, err = h.svc.Resolve(t.Context(), "default", "CPE9", "1 Firmware Upgrade Image", "2.1")
	if err != nil || r.GetId() != anyfw.GetId() {
		t.Errorf("Resolve(CPE9) = %v, %v; want the file for any class", r, err)
	}
	if _, err := h.svc.Resolve(t.Context(), "default", "HGW", "1 Firmware Upgrade Image", "9.9"); !errors.Is(err, ErrNoFile) {
		t.Errorf("Resolve of a missing version: %v", err)
	}
	if _, err := h.svc.Resolve(t.Context(), "other", "HGW", "1 Firmware Upgrade Image", "2.1"); !errors.Is(err, ErrNoFile) {
		t.Errorf("Resolve in another tenant: %v", err)
	}

	if _, err := h.public.DeleteFile(as(t.Context(), h.operator), &filesv1.DeleteFileRequest{Id: cfg.GetId()}); err != nil {
		t.Fatal(err)
	}
	_, err = h.public.GetFile(as(t.Context(), h.viewer), &filesv1.GetFileRequest{Id: cfg.GetId()})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_FILE_NOT_FOUND)
	_, err = h.public.DeleteFile(as(t.Context(), h.operator), &filesv1.DeleteFileRequest{Id: cfg.GetId()})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_FILE_NOT_FOUND)
	if _, err := os.Stat(filepath.Join(h.blobDir, "default", cfg.GetId())); !os.IsNotExist(err) {
		t.Fatalf("bytes of a deleted file: %v", err)
	}
}

// leftovers fails when the blob directory holds anything but f's ids.
func leftovers(t *testing.T, h *harness, keep ...string) {
	t.Helper()
	tmp, _ := os.ReadDir(filepath.Join(h.blobDir, ".tmp"))
	if len(tmp) != 0 {
		t.Errorf("%d temporary files left", len(tmp))
	}
	blobs, _ := os.ReadDir(filepath.Join(h.blobDir, "default"))
	if len(blobs) != len(keep) {
		t.Errorf("%d blobs stored, want %d", len(blobs), len(keep))
	}
	resp, err := h.public.ListFiles(as(t.Context(), h.viewer), &filesv1.ListFilesRequest{})
	if err != nil || len(resp.GetFiles()) != len(keep) {
		t.Errorf("records: %v, %v; want %d", resp.GetFiles(), err, len(keep))
	}
}

func TestUploadRefusedKeepsNothing(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *Config) { c.MaxUploadBytes = 1 << 20 }})
	data := content(300_000, 2)
	bad := func(mod func(*filesv1.UploadFileHeader)) *filesv1.UploadFileHeader {
		hdr := firmware("fw.bin", "1")
		mod(hdr)
		return hdr
	}
	for _, tc := range []struct {
		name   string
		hdr    *filesv1.UploadFileHeader
		data   []byte
		code   codes.Code
		reason errorsv1.ErrorReason
	}{
		{"wrong sha256", bad(func(h *filesv1.UploadFileHeader) { h.ExpectedSha256 = sum([]byte("x")) }), data, codes.InvalidArgument, errorsv1.ErrorReason_FILE_CHECKSUM_MISMATCH},
		{"fewer bytes", bad(func(h *filesv1.UploadFileHeader) { h.ExpectedSize = 300_001 }), data, codes.InvalidArgument, errorsv1.ErrorReason_FILE_CHECKSUM_MISMATCH},
		{"more bytes", bad(func(h *filesv1.UploadFileHeader) { h.ExpectedSize = 299_999 }), data, codes.InvalidArgument, errorsv1.ErrorReason_FILE_CHECKSUM_MISMATCH},
		{"over the size limit", firmware("big.bin", "1"), content(1<<20+1, 3), codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD},
		{"expected over the limit", bad(func(h *filesv1.UploadFileHeader) { h.ExpectedSize = 1<<20 + 1 }), data, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD},
		{"empty file", firmware("empty.bin", "1"), nil, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD},
		{"name with a slash", bad(func(h *filesv1.UploadFileHeader) { h.Name = "../etc/passwd" }), data, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD},
		{"hidden name", bad(func(h *filesv1.UploadFileHeader) { h.Name = ".x" }), data, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD},
		{"no file type", bad(func(h *filesv1.UploadFileHeader) { h.FileType = "" }), data, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD},
		{"firmware without version", bad(func(h *filesv1.UploadFileHeader) { h.Version = "" }), data, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD},
		{"bad oui", bad(func(h *filesv1.UploadFileHeader) { h.Oui = "XYZ" }), data, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD},
		{"bad sha256", bad(func(h *filesv1.UploadFileHeader) { h.ExpectedSha256 = "abc" }), data, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD},
		{"control characters", bad(func(h *filesv1.UploadFileHeader) { h.ProductClasses = []string{"a\nb"} }), data, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.upload(t, h.operator, "", tc.hdr, tc.data, 64<<10)
			wantError(t, err, tc.code, tc.reason)
			leftovers(t, h)
		})
	}
	// A chunk over 1 MiB, a second header, no header.
	t.Run("protocol", func(t *testing.T) {
		stream, err := h.public.UploadFile(as(t.Context(), h.operator))
		if err != nil {
			t.Fatal(err)
		}
		_ = stream.Send(&filesv1.UploadFileRequest{Part: &filesv1.UploadFileRequest_Chunk{Chunk: []byte("x")}})
		_, err = stream.CloseAndRecv()
		wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
		stream, _ = h.public.UploadFile(as(t.Context(), h.operator))
		_ = stream.Send(&filesv1.UploadFileRequest{Part: &filesv1.UploadFileRequest_Header{Header: firmware("a", "1")}})
		_ = stream.Send(&filesv1.UploadFileRequest{Part: &filesv1.UploadFileRequest_Header{Header: firmware("a", "1")}})
		_, err = stream.CloseAndRecv()
		wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
		_, err = h.upload(t, h.operator, "", firmware("b", "1"), content(1<<20+1, 4), 1<<20+1)
		wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
		leftovers(t, h)
	})
	t.Run("name taken", func(t *testing.T) {
		f := h.mustUpload(t, firmware("taken.bin", "1"), data)
		_, err := h.upload(t, h.operator, "", firmware("taken.bin", "2"), data, 64<<10)
		wantError(t, err, codes.AlreadyExists, errorsv1.ErrorReason_FILE_ALREADY_EXISTS)
		leftovers(t, h, f.GetId())
		// Another tenant may use the name.
		if _, err := h.upload(t, h.other, "", firmware("taken.bin", "1"), data, 64<<10); err != nil {
			t.Fatalf("same name in another tenant: %v", err)
		}
	})
}

// TestUploadAbandoned: a client that stops sending, or hangs up, leaves
// nothing behind.
func TestUploadAbandoned(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *Config) { c.UploadIdleTimeout = time.Second }})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// The stream stays open and sends nothing more: the server gives up
	// after the idle timeout.
	stream, err := h.public.UploadFile(as(ctx, h.operator))
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&filesv1.UploadFileRequest{Part: &filesv1.UploadFileRequest_Header{Header: firmware("idle.bin", "1")}})
	_ = stream.Send(&filesv1.UploadFileRequest{Part: &filesv1.UploadFileRequest_Chunk{Chunk: content(1000, 6)}})
	var resp filesv1.UploadFileResponse
	err = stream.RecvMsg(&resp)
	wantError(t, err, codes.DeadlineExceeded, errorsv1.ErrorReason_INVALID_FIELD)
	resp2, err := h.public.ListFiles(as(t.Context(), h.viewer), &filesv1.ListFilesRequest{Name: "idle.bin"})
	if err != nil || len(resp2.GetFiles()) != 0 {
		t.Fatalf("idle upload kept: %v, %v", resp2, err)
	}
	// A client that hangs up mid-way.
	ctx2, cancel2 := context.WithCancel(t.Context())
	stream, err = h.public.UploadFile(as(ctx2, h.operator))
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&filesv1.UploadFileRequest{Part: &filesv1.UploadFileRequest_Header{Header: firmware("gone.bin", "1")}})
	_ = stream.Send(&filesv1.UploadFileRequest{Part: &filesv1.UploadFileRequest_Chunk{Chunk: content(1000, 7)}})
	cancel2()
	// The upload's abort runs as its handler returns; wait for the
	// temporary file to go (bounded by the idle timeout).
	deadline := time.Now().Add(5 * time.Second)
	for {
		tmp, _ := os.ReadDir(filepath.Join(h.blobDir, ".tmp"))
		if len(tmp) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d temporary files remain after the client hung up", len(tmp))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRolesAndTenants(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	f := h.mustUpload(t, firmware("fw.bin", "1"), []byte("firmware"))
	// A viewer reads, never writes.
	_, err := h.upload(t, h.viewer, "", firmware("v.bin", "1"), []byte("x"), 10)
	wantError(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ROLE_FORBIDDEN)
	_, err = h.public.DeleteFile(as(t.Context(), h.viewer), &filesv1.DeleteFileRequest{Id: f.GetId()})
	wantError(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ROLE_FORBIDDEN)
	// No credentials, a bad token.
	_, err = h.public.GetFile(t.Context(), &filesv1.GetFileRequest{Id: f.GetId()})
	wantError(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	_, err = h.upload(t, "fa_bogus", "", firmware("n.bin", "1"), []byte("x"), 10)
	wantError(t, err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED)
	// Another tenant's token: its own tenant has no such file; naming
	// this tenant is refused.
	_, err = h.public.GetFile(as(t.Context(), h.other), &filesv1.GetFileRequest{Id: f.GetId()})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_FILE_NOT_FOUND)
	_, err = h.public.GetFile(as(t.Context(), h.other), &filesv1.GetFileRequest{Tenant: "default", Id: f.GetId()})
	wantError(t, err, codes.PermissionDenied, errorsv1.ErrorReason_TENANT_FORBIDDEN)
	_, err = h.public.DeleteFile(as(t.Context(), h.other), &filesv1.DeleteFileRequest{Id: f.GetId()})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_FILE_NOT_FOUND)
	_, err = h.upload(t, h.other, "default", firmware("o.bin", "1"), []byte("x"), 10)
	wantError(t, err, codes.PermissionDenied, errorsv1.ErrorReason_TENANT_FORBIDDEN)
	resp, err := h.public.ListFiles(as(t.Context(), h.other), &filesv1.ListFilesRequest{})
	if err != nil || len(resp.GetFiles()) != 0 {
		t.Fatalf("another tenant's listing: %v, %v", resp, err)
	}
	// Ids of another form are not found; an empty id is invalid.
	_, err = h.public.GetFile(as(t.Context(), h.viewer), &filesv1.GetFileRequest{Id: "../../etc"})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_FILE_NOT_FOUND)
	_, err = h.public.GetFile(as(t.Context(), h.viewer), &filesv1.GetFileRequest{})
	wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
	if _, err := h.public.GetFile(as(t.Context(), h.viewer), &filesv1.GetFileRequest{Id: f.GetId()}); err != nil {
		t.Fatalf("the file is still there: %v", err)
	}
}

func TestCreateDownloadUrl(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *Config) { c.MaxURLTTL = 48 * time.Hour }})
	data := content(5000, 41)
	f := h.mustUpload(t, firmware("fw.bin", "1"), data)
	resp, err := h.public.CreateDownloadUrl(as(t.Context(), h.operator), &filesv1.CreateDownloadUrlRequest{Id: f.GetId(), DeviceId: "OUI-PC-SN1"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetFile().GetSha256() != sum(data) || !resp.GetExpireTime().AsTime().After(h.clock.Now().Add(23*time.Hour)) {
		t.Fatalf("response: %v", resp)
	}
	// The URL downloads, from the download endpoint; it ends with the
	// file's name.
	path := strings.TrimPrefix(resp.GetUrl(), "http://acs.example.net:7547")
	if !strings.HasPrefix(path, "/files/default/"+f.GetId()+"/fw.bin?") {
		t.Fatalf("URL %s", resp.GetUrl())
	}
	if r, body := h.get(t, "GET", path); r.StatusCode != 200 || sum(body) != sum(data) {
		t.Fatalf("the URL: %d", r.StatusCode)
	}
	_, err = h.public.CreateDownloadUrl(as(t.Context(), h.viewer), &filesv1.CreateDownloadUrlRequest{Id: f.GetId(), DeviceId: "OUI-PC-SN1"})
	wantError(t, err, codes.PermissionDenied, errorsv1.ErrorReason_ROLE_FORBIDDEN)
	_, err = h.public.CreateDownloadUrl(as(t.Context(), h.other), &filesv1.CreateDownloadUrlRequest{Id: f.GetId(), DeviceId: "OUI-PC-SN1"})
	wantError(t, err, codes.NotFound, errorsv1.ErrorReason_FILE_NOT_FOUND)
	_, err = h.public.CreateDownloadUrl(as(t.Context(), h.operator), &filesv1.CreateDownloadUrlRequest{Id: f.GetId()})
	wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
	_, err = h.public.CreateDownloadUrl(as(t.Context(), h.operator), &filesv1.CreateDownloadUrlRequest{Id: f.GetId(), DeviceId: "d", TtlSeconds: 49 * 3600})
	wantError(t, err, codes.InvalidArgument, errorsv1.ErrorReason_INVALID_FIELD)
}

// slowBlobs is a blob store whose writes each take longer than the
// upload's idle timeout.
type slowBlobs struct {
	blob.Store
	delay time.Duration
}

func (s slowBlobs) Create(ctx context.Context, tenant, id string) (blob.Writer, error) {
	w, err := s.Store.Create(ctx, tenant, id)
	return slowWriter{w, s.delay}, err
}

type slowWriter struct {
	blob.Writer
	delay time.Duration
}

func (w slowWriter) Write(b []byte) (int, error) {
	time.Sleep(w.delay)
	return w.Writer.Write(b)
}

// TestUploadSlowStore: the idle timeout counts the client's silence, not
// the time the blob store takes to write a part. A client that sends all
// its parts at once to a store slower than the timeout succeeds; before,
// each part raced the timer that had expired during the previous write,
// and the upload failed half the time at each part.
func TestUploadSlowStore(t *testing.T) {
	const idle = 100 * time.Millisecond
	h := newHarness(t, harnessOpts{blobs: slowBlobs{disk.New(t.TempDir()), 3 * idle}})
	h.svc.cfg.UploadIdleTimeout = idle // under the configurable 1s, to keep the test short
	data := content(6*1000, 11)
	f, err := h.upload(t, h.operator, "", firmware("slow.bin", "1"), data, 1000)
	if err != nil {
		t.Fatalf("an upload to a slow store failed: %v", err)
	}
	if f.GetSize() != uint64(len(data)) {
		t.Fatalf("stored %d bytes of %d", f.GetSize(), len(data))
	}
}
