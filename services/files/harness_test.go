package files

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/apiauth/apiauthtest"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	"github.com/fleetacs/fleetacs/services/files/blob"
	"github.com/fleetacs/fleetacs/services/files/blob/disk"
	"github.com/fleetacs/fleetacs/services/files/store"
	"github.com/fleetacs/fleetacs/services/files/store/sqlitestore"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type harness struct {
	svc    *Service
	clock  *clock
	public filesv1.FilesServiceClient
	// files is the download endpoint on loopback TCP; api the HTTP PUT
	// upload in front of the public gRPC server.
	files, api              *httptest.Server
	tokens                  *apiauthtest.MemoryStore
	blobDir                 string
	operator, viewer, other string
}

type harnessOpts struct {
	cfg   func(*Config)
	meta  store.Store
	blobs blob.Store
	// uploadIdle is the HTTP upload handler's idle timeout.
	uploadIdle time.Duration
}

func newHarness(t testing.TB, o harnessOpts) *harness {
	t.Helper()
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.BaseURL = "http://acs.example.net:7547"
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	meta, blobs := o.meta, o.blobs
	if meta == nil {
		meta = sqlitestore.New(sqlitestore.Config{Path: filepath.Join(dir, "files.db")})
	}
	blobDir := filepath.Join(dir, "blobs")
	if blobs == nil {
		blobs = disk.New(blobDir)
	}
	key, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := NewURLKeys(key)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Now().UTC().Truncate(time.Millisecond)}
	svc, err := New(cfg, Deps{
		Store: meta, Blobs: blobs, URLKeys: keys, CallerTenants: apiauth.CallerTenants,
		Requester: func(ctx context.Context) string { p, _ := apiauth.FromContext(ctx); return p.ID },
		Now:       clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	tokens := apiauthtest.NewMemoryStore()
	auth := apiauth.NewAuthenticator(apiauth.Config{}, apiauth.Options{Tokens: tokens})
	pub := grpc.NewServer(append(auth.ServerOptions(), grpc.MaxRecvMsgSize(4<<20))...)
	svc.RegisterPublic(pub)
	conn := testenv.GRPCConn(t, pub)
	rctx, cancel := context.WithCancel(context.Background())
	if err := svc.Start(rctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	idle := o.uploadIdle
	if idle == 0 {
		idle = 5 * time.Second
	}
	client := filesv1.NewFilesServiceClient(conn)
	mux := http.NewServeMux()
	mux.Handle(DownloadPrefix, svc.DownloadHandler())
	files := httptest.NewServer(mux)
	t.Cleanup(files.Close)
	api := httptest.NewServer(UploadHandler(client, UploadHandlerOptions{MaxBytes: cfg.MaxUploadBytes, IdleTimeout: idle}))
	t.Cleanup(api.Close)
	h := &harness{svc: svc, clock: clk, public: client, files: files, api: api, tokens: tokens, blobDir: blobDir}
	h.operator = h.token(t, authv1.Role_ROLE_OPERATOR, "default")
	h.viewer = h.token(t, authv1.Role_ROLE_VIEWER, "default")
	h.other = h.token(t, authv1.Role_ROLE_OPERATOR, "other")
	return h
}

func (h *harness) token(t testing.TB, role authv1.Role, tenants ...string) string {
	t.Helper()
	tok, _, err := apiauth.IssueToken(t.Context(), h.tokens, apiauth.TokenRecord{Name: "test", Role: role, Tenants: tenants, Creator: "test", Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func as(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func wantError(t *testing.T, err error, code codes.Code, reason errorsv1.ErrorReason) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("error = %v, want code %s", err, code)
	}
	if reason == errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if info.GetReason() != reason.String() {
				t.Fatalf("reason = %s, want %s (%v)", info.GetReason(), reason, err)
			}
			return
		}
	}
	t.Fatalf("error %v carries no ErrorInfo", err)
}

// content is n bytes of a seeded pattern, different per seed.
func content(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func firmware(name, version string, pcs ...string) *filesv1.UploadFileHeader {
	return &filesv1.UploadFileHeader{Name: name, FileType: "1 Firmware Upgrade Image", Version: version, ProductClasses: pcs}
}

// upload sends h then data in chunks of chunk bytes.
func (h *harness) upload(t testing.TB, token, tenant string, hdr *filesv1.UploadFileHeader, data []byte, chunk int) (*filesv1.File, error) {
	t.Helper()
	stream, err := h.public.UploadFile(as(t.Context(), token))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&filesv1.UploadFileRequest{Tenant: tenant, Part: &filesv1.UploadFileRequest_Header{Header: hdr}}); err != nil {
		_, err = stream.CloseAndRecv()
		return nil, err
	}
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		if err := stream.Send(&filesv1.UploadFileRequest{Part: &filesv1.UploadFileRequest_Chunk{Chunk: data[off:end]}}); err != nil {
			break
		}
	}
	resp, err := stream.CloseAndRecv()
	return resp.GetFile(), err
}

func (h *harness) mustUpload(t *testing.T, hdr *filesv1.UploadFileHeader, data []byte) *filesv1.File {
	t.Helper()
	f, err := h.upload(t, h.operator, "", hdr, data, 100_000)
	if err != nil {
		t.Fatalf("upload %s: %v", hdr.GetName(), err)
	}
	return f
}

// get fetches a path of the download endpoint with extra headers.
func (h *harness) get(t *testing.T, method, path string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, h.files.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.files.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp, buf.Bytes()
}

var osStat = os.Stat
