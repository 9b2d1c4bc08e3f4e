package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/fleetacs/fleetacs/services/files/blob"
	"github.com/fleetacs/fleetacs/services/files/blob/blobtest"
	s3blob "github.com/fleetacs/fleetacs/services/files/blob/s3"
	"github.com/fleetacs/fleetacs/services/files/blob/s3/s3test"
)

func open(t *testing.T, c s3blob.Config) *s3blob.Store {
	t.Helper()
	s, err := s3blob.New(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContract(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store { return open(t, s3test.Target(t)) })
}

func data(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// client is a plain S3 client on the test's bucket, to look at what the
// store left there.
func client(t *testing.T, c s3blob.Config) minio.Core {
	t.Helper()
	region := c.Region
	if region == "" {
		region = "us-east-1"
	}
	mc, err := minio.New(c.Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(c.AccessKey, c.SecretKey, ""), Secure: !c.Insecure,
		Region: region, BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	return minio.Core{Client: mc}
}

func keys(t *testing.T, c s3blob.Config) []string {
	t.Helper()
	var out []string
	for o := range client(t, c).Client.ListObjects(t.Context(), c.Bucket, minio.ListObjectsOptions{Prefix: c.Prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		out = append(out, o.Key)
	}
	return out
}

func uploads(t *testing.T, c s3blob.Config) int {
	t.Helper()
	r, err := client(t, c).ListMultipartUploads(t.Context(), c.Bucket, c.Prefix, "", "", "", 1000)
	if minio.ToErrorResponse(err).Code == "NoSuchUpload" {
		return 0 // gofakes3, in a bucket that never had one
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(r.Uploads)
}

// TestMultipart writes blobs of several parts (5 MiB, the least S3
// takes), reads ranges across the parts' boundaries, and aborts one
// midway: no object, no multipart upload is left of it.
func TestMultipart(t *testing.T) {
	c := s3test.Target(t)
	c.PartSize = s3blob.MinPartSize
	s := open(t, c)
	want := data(2*s3blob.MinPartSize+12345, 1)
	w, err := s.Create(t.Context(), "acme", "BIG")
	if err != nil {
		t.Fatal(err)
	}
	// In pieces that straddle the part boundaries.
	for p := want; len(p) > 0; {
		n := min(len(p), 1<<20+17)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if _, err := s.Open(t.Context(), "acme", "BIG"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Open before Commit: %v", err)
	}
	if n := uploads(t, c); n != 1 {
		t.Fatalf("%d multipart uploads in progress, want 1 (the test must see the parts sent before Commit)", n)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	b, err := s.Open(t.Context(), "acme", "BIG")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Size() != int64(len(want)) {
		t.Fatalf("Size %d, want %d", b.Size(), len(want))
	}
	for _, r := range [][2]int64{{0, int64(len(want))}, {s3blob.MinPartSize - 3, 7}, {2*s3blob.MinPartSize - 1, 12345 + 1}, {100, 10}} {
		if _, err := b.Content().Seek(r[0], io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(io.LimitReader(b.Content(), r[1]))
		if err != nil || !bytes.Equal(got, want[r[0]:r[0]+r[1]]) {
			t.Fatalf("range %d+%d: %d bytes, %v", r[0], r[1], len(got), err)
		}
	}

	w, err = s.Create(t.Context(), "acme", "ABORTED")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(want[:s3blob.MinPartSize+1]); err != nil {
		t.Fatal(err)
	}
	if n := uploads(t, c); n != 1 {
		t.Fatalf("%d multipart uploads in progress, want 1", n)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if n := uploads(t, c); n != 0 {
		t.Fatalf("%d multipart uploads left after Abort", n)
	}
	if got := keys(t, c); len(got) != 1 || !strings.HasSuffix(got[0], "acme/BIG") {
		t.Fatalf("objects: %q, want the committed one only", got)
	}
}

// TestCorruptedInTransit: a body changed on its way fails the upload (the
// payload hash is signed), and nothing is stored.
func TestCorruptedInTransit(t *testing.T) {
	srv := s3test.Start(t)
	c := srv.Config
	c.PartSize = s3blob.MinPartSize
	s := open(t, c)
	for _, size := range []int{1000, 2*s3blob.MinPartSize + 1} {
		w, err := s.Create(t.Context(), "acme", "F")
		if err != nil {
			t.Fatal(err)
		}
		srv.CorruptNextPut()
		_, err = w.Write(data(size, 2))
		if err == nil {
			err = w.Commit()
		} else {
			_ = w.Abort()
		}
		if err == nil || !strings.Contains(err.Error(), "XAmzContentSHA256Mismatch") && !strings.Contains(err.Error(), "sha256") {
			t.Fatalf("size %d: corrupted upload: %v, want a checksum error", size, err)
		}
		if got := keys(t, c); len(got) != 0 {
			t.Fatalf("size %d: objects after a failed upload: %q", size, got)
		}
		if n := uploads(t, c); n != 0 {
			t.Fatalf("size %d: %d multipart uploads left", size, n)
		}
	}
}

// TestKeysStayUnderPrefix: whatever the tenant and id, a store writes,
// reads and deletes only under its prefix. Hostile names are refused; the
// valid ones land at <prefix><tenant>/<id>.
func TestKeysStayUnderPrefix(t *testing.T) {
	srv := s3test.Start(t)
	c := srv.Config
	c.Prefix = "files/acs1"
	s := open(t, c)
	// A blob of another application beside the prefix.
	other := "files/other/acme/F"
	if _, err := client(t, c).PutObject(t.Context(), c.Bucket, other, bytes.NewReader([]byte("theirs")), 6, "", sha256Hex("theirs"), minio.PutObjectOptions{DisableContentSha256: true}); err != nil {
		t.Fatal(err)
	}
	hostile := []string{"..", "../other", "../../files/other/acme/F", "%2e%2e", "a/b", "/abs", "x\x00y", ".hidden",
		"acme\\..\\F", "ac me", "é", strings.Repeat("a", 65), "a?b", "a#b", ""}
	for _, tenant := range append(hostile, "acme") {
		for _, id := range append(hostile, "F") {
			if tenant == "acme" && id == "F" {
				continue
			}
			if w, err := s.Create(t.Context(), tenant, id); err == nil {
				_ = w.Abort()
				t.Errorf("Create(%q, %q) succeeded", tenant, id)
			}
			if _, err := s.Open(t.Context(), tenant, id); !errors.Is(err, blob.ErrNotFound) {
				t.Errorf("Open(%q, %q): %v", tenant, id, err)
			}
			if err := s.Delete(t.Context(), tenant, id); err != nil {
				t.Errorf("Delete(%q, %q): %v", tenant, id, err)
			}
		}
	}
	for _, n := range [][2]string{{"acme", "F"}, {"acme", "a..b"}, {"-", "_"}, {"t.1", "F-2"}} {
		w, err := s.Create(t.Context(), n[0], n[1])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("ours")); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	all := keys(t, s3blob.Config{Endpoint: c.Endpoint, Insecure: true, Region: c.Region, Bucket: c.Bucket, AccessKey: c.AccessKey, SecretKey: c.SecretKey})
	want := []string{"files/acs1/-/_", "files/acs1/acme/F", "files/acs1/acme/a..b", "files/acs1/t.1/F-2", other}
	if strings.Join(all, " ") != strings.Join(want, " ") {
		t.Fatalf("bucket keys %q, want %q", all, want)
	}
	if err := s.Delete(t.Context(), "acme", "F"); err != nil {
		t.Fatal(err)
	}
	body, _, _, err := client(t, c).GetObject(t.Context(), c.Bucket, other, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("the other application's object: %v", err)
	}
	defer body.Close()
	if b, _ := io.ReadAll(body); string(b) != "theirs" {
		t.Fatalf("the other application's object: %q", b)
	}

	for _, p := range []string{"../x", "a//b", "/a", "a/./b", "a b", "a/..", "ü"} {
		c := c
		c.Prefix = p
		if _, err := s3blob.New(c); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
}

// TestStartErrors: a wrong key, a wrong secret, a missing bucket and a
// server that is not there fail Start with an error that says so, and
// never shows the secret.
func TestStartErrors(t *testing.T) {
	good := s3test.Target(t)
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().String()
	missing := fmt.Sprintf("fleetacs-missing-%d", rand.Uint64())
	_ = gone.Close()
	for _, tc := range []struct {
		name string
		edit func(*s3blob.Config)
		want string
	}{
		{"wrong access key", func(c *s3blob.Config) { c.AccessKey = "NOTAKEY" }, "refused the credentials (InvalidAccessKeyId"},
		{"wrong secret", func(c *s3blob.Config) { c.SecretKey = "wrong-secret-wrong-secret" }, "refused the credentials (SignatureDoesNotMatch"},
		{"missing bucket", func(c *s3blob.Config) { c.Bucket = missing }, `bucket "` + missing + `" does not exist`},
		{"no server", func(c *s3blob.Config) { c.Endpoint = goneAddr }, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			c.Timeout = 5 * time.Second
			s, err := s3blob.New(c)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Start(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start: %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), c.SecretKey) || strings.Contains(err.Error(), good.SecretKey) {
				t.Fatalf("the error shows the secret: %v", err)
			}
		})
	}
}

// TestStalledServer: a server that accepts and never answers fails each
// call within the timeout.
func TestStalledServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case conns <- c: // held open, silent
			default:
				_ = c.Close()
			}
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		close(conns)
		for c := range conns {
			_ = c.Close()
		}
	})
	c := s3test.Start(t).Config
	c.Endpoint = ln.Addr().String()
	c.Timeout = 300 * time.Millisecond
	s, err := s3blob.New(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.WithoutCancel(t.Context())
	start := time.Now()
	err = s.Start(ctx)
	if err == nil {
		t.Fatal("Start on a silent server succeeded")
	}
	if _, err := s.Open(ctx, "a", "F"); err == nil || errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Open on a silent server: %v", err)
	}
	w, err := s.Create(ctx, "a", "F")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err == nil {
		t.Fatal("Commit on a silent server succeeded")
	}
	// Retries included, far less than the default minute per call.
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("the calls took %s", d)
	}
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
