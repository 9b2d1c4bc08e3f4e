package files

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	"github.com/fleetacs/fleetacs/services/files/blob/gridfs"
	"github.com/fleetacs/fleetacs/services/files/store/mongostore"
)

func (h *harness) put(t *testing.T, token, name string, q url.Values, body io.Reader, size int64) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "PUT", h.api.URL+UploadPath+url.PathEscape(name)+"?"+q.Encode(), body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := h.api.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestHTTPPut(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: func(c *Config) { c.MaxUploadBytes = 4 << 20 }, uploadIdle: 300 * time.Millisecond})
	data := content(2<<20+5, 21)
	q := url.Values{"type": {"1 Firmware Upgrade Image"}, "version": {"4.0"}, "product_class": {"HGW", "ONT"}, "sha256": {sum(data)}}
	code, out := h.put(t, h.operator, "fw-4.0.bin", q, bytes.NewReader(data), int64(len(data)))
	if code != 201 {
		t.Fatalf("PUT: %d %v", code, out)
	}
	f, _ := out["file"].(map[string]any)
	if f["sha256"] != sum(data) || f["name"] != "fw-4.0.bin" || f["size"] != "2097157" {
		t.Fatalf("PUT answer: %v", out)
	}
	// The uploaded file downloads byte for byte.
	resp, body := h.get(t, "GET", h.signed(t, "default", f["id"].(string), device, time.Hour))
	if resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("download of the PUT file: %d, %d bytes", resp.StatusCode, len(body))
	}
	// Streamed without a length (chunked) works as well.
	code, out = h.put(t, h.operator, "fw-4.0b.bin", q, io.MultiReader(bytes.NewReader(data)), -1)
	if code != 201 {
		t.Fatalf("chunked PUT: %d %v", code, out)
	}

	for _, tc := range []struct {
		name, token, file string
		q                 url.Values
		body              []byte
		code              int
	}{
		{"no credentials", "", "a.bin", q, data, 401},
		{"viewer", h.viewer, "a.bin", q, data, 403},
		{"another tenant", h.other, "a.bin", url.Values{"type": q["type"], "version": {"1"}, "tenant": {"default"}}, data, 403},
		{"wrong checksum", h.operator, "b.bin", url.Values{"type": q["type"], "version": {"1"}, "sha256": {sum([]byte("x"))}}, data, 400},
		{"too large", h.operator, "c.bin", url.Values{"type": q["type"], "version": {"1"}}, content(4<<20+1, 22), 413},
		{"name taken", h.operator, "fw-4.0.bin", q, data, 409},
		{"bad name", h.operator, "..", url.Values{"type": q["type"], "version": {"1"}}, data, 400},
		{"unknown parameter", h.operator, "d.bin", url.Values{"type": q["type"], "version": {"1"}, "typo": {"x"}}, data, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := h.put(t, tc.token, tc.file, tc.q, bytes.NewReader(tc.body), int64(len(tc.body)))
			if code != tc.code {
				t.Fatalf("%d %v, want %d", code, out, tc.code)
			}
		})
	}
	// A body larger than its Content-Length says is cut by net/http; one
	// larger than the limit without a length is refused part way.
	code, _ = h.put(t, h.operator, "e.bin", url.Values{"type": q["type"], "version": {"1"}}, io.MultiReader(bytes.NewReader(content(4<<20+1, 23))), -1)
	if code != 413 {
		t.Fatalf("chunked body over the limit: %d", code)
	}
	// A slow body: the handler gives up after its idle timeout.
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte("start"))
		<-t.Context().Done()
		_ = pw.Close()
	}()
	code, _ = h.put(t, h.operator, "slow.bin", url.Values{"type": q["type"], "version": {"1"}}, pr, -1)
	if code != 408 {
		t.Fatalf("slow body: %d", code)
	}
	// Only the two good uploads were kept.
	ls, err := h.public.ListFiles(as(t.Context(), h.viewer), &filesv1.ListFilesRequest{})
	if err != nil || len(ls.GetFiles()) != 2 {
		t.Fatalf("files kept: %v, %v", ls, err)
	}
}

// TestOnMongoDB runs an upload, a ranged download and a delete with the
// records in MongoDB and the bytes in GridFS (FerretDB in tests).
func TestOnMongoDB(t *testing.T) {
	client, err := mongo.Connect(options.Client().ApplyURI(testenv.MongoURI(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	db := client.Database(testenv.MongoDatabase(t))
	h := newHarness(t, harnessOpts{meta: mongostore.New(db), blobs: gridfs.New(db, "", 64<<10)})
	data := content(500_000, 31)
	f := h.mustUpload(t, firmware("fw.bin", "1", "HGW"), data)
	p := h.signed(t, "default", f.GetId(), device, time.Hour)
	if resp, body := h.get(t, "GET", p); resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("GET: %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp, body := h.get(t, "GET", p, "Range", "bytes=131000-262200"); resp.StatusCode != 206 || !bytes.Equal(body, data[131000:262201]) {
		t.Fatalf("Range across chunks: %d, %d bytes", resp.StatusCode, len(body))
	}
	_, err = h.upload(t, h.operator, "", firmware("bad.bin", "1"), data, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	hdr := firmware("mismatch.bin", "1")
	hdr.ExpectedSha256 = sum([]byte("x"))
	if _, err := h.upload(t, h.operator, "", hdr, data, 1<<16); err == nil {
		t.Fatal("mismatching upload accepted")
	}
	// Nothing of the refused upload in GridFS: two files, their chunks only.
	n, err := db.Collection(gridfs.DefaultBucket+".files").CountDocuments(t.Context(), map[string]any{})
	if err != nil || n != 2 {
		t.Fatalf("GridFS files: %d, %v", n, err)
	}
	n, err = db.Collection(gridfs.DefaultBucket+".chunks").CountDocuments(t.Context(), map[string]any{})
	if err != nil || n != 2*8 {
		t.Fatalf("GridFS chunks: %d, %v; want 16", n, err)
	}
	if _, err := h.public.DeleteFile(as(t.Context(), h.operator), &filesv1.DeleteFileRequest{Id: f.GetId()}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := h.get(t, "GET", p); resp.StatusCode != 404 {
		t.Fatalf("deleted: %d", resp.StatusCode)
	}
}
