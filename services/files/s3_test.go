package files

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/fleetacs/fleetacs/pkg/secretbox"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	s3blob "github.com/fleetacs/fleetacs/services/files/blob/s3"
	"github.com/fleetacs/fleetacs/services/files/blob/s3/s3test"
)

// s3StoreConfig is the configuration of records in SQLite and bytes in
// the S3 server c, its keys in files as an operator would give them.
func s3StoreConfig(t *testing.T, c s3blob.Config) StoreConfig {
	t.Helper()
	dir := t.TempDir()
	ak, sk := filepath.Join(dir, "access-key"), filepath.Join(dir, "secret-key")
	if err := os.WriteFile(ak, []byte(c.AccessKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sk, []byte(c.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultStoreConfig()
	cfg.SQLitePath = filepath.Join(dir, "files.db")
	cfg.Blob = BlobS3
	cfg.S3 = S3Config{
		Endpoint: c.Endpoint, Bucket: c.Bucket, Prefix: c.Prefix + "files/", Region: c.Region,
		PathStyle: true, Insecure: c.Insecure, AccessKeyFile: ak, SecretKeyFile: sk,
	}
	if cfg.S3.Region == "" {
		cfg.S3.Region = "us-east-1"
	}
	return cfg
}

func bucketKeys(t *testing.T, c S3Config, access, secret string) []string {
	t.Helper()
	mc, err := minio.New(c.Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(access, secret, ""), Secure: !c.Insecure, Region: c.Region, BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for o := range mc.ListObjects(t.Context(), c.Bucket, minio.ListObjectsOptions{Prefix: c.Prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}

// TestOnS3 runs uploads by the HTTP API, whole and ranged downloads on
// the /files/ endpoint, a refused upload and a delete with the records in
// SQLite and the bytes in an S3 server over HTTP, configured as the flags
// do.
func TestOnS3(t *testing.T) {
	target := s3test.Target(t)
	cfg := s3StoreConfig(t, target)
	meta, blobs, closer, err := cfg.Open()
	if err != nil {
		t.Fatal(err)
	}
	if closer != nil {
		t.Fatal("a closer with sqlite records")
	}
	h := newHarness(t, harnessOpts{meta: meta, blobs: blobs})
	data := content(1<<20+777, 41)
	q := url.Values{"type": {"1 Firmware Upgrade Image"}, "version": {"7.0"}, "sha256": {sum(data)}}
	code, out := h.put(t, h.operator, "fw-7.0.bin", q, bytes.NewReader(data), int64(len(data)))
	if code != 201 {
		t.Fatalf("PUT: %d %v", code, out)
	}
	id := out["file"].(map[string]any)["id"].(string)
	p := h.signed(t, "default", id, device, time.Hour)
	if resp, body := h.get(t, "GET", p); resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("GET: %d, %d bytes", resp.StatusCode, len(body))
	}
	for _, r := range [][3]any{{"bytes=1000000-", 1000000, len(data)}, {"bytes=10-19", 10, 20}, {"bytes=-5", len(data) - 5, len(data)}} {
		resp, body := h.get(t, "GET", p, "Range", r[0].(string))
		if resp.StatusCode != 206 || !bytes.Equal(body, data[r[1].(int):r[2].(int)]) {
			t.Fatalf("Range %s: %d, %d bytes", r[0], resp.StatusCode, len(body))
		}
	}
	if resp, body := h.get(t, "GET", p, "Range", "bytes=0-9,500000-500009"); resp.StatusCode != 206 || !bytes.Contains(body, data[500000:500010]) {
		t.Fatalf("two ranges: %d", resp.StatusCode)
	}

	hdr := firmware("mismatch.bin", "1")
	hdr.ExpectedSha256 = sum([]byte("x"))
	if _, err := h.upload(t, h.operator, "", hdr, data, 1<<16); err == nil {
		t.Fatal("mismatching upload accepted")
	}
	if keys := bucketKeys(t, cfg.S3, target.AccessKey, target.SecretKey); len(keys) != 1 || keys[0] != cfg.S3.Prefix+"default/"+id {
		t.Fatalf("bucket keys %q, want the one file's", keys)
	}
	if _, err := h.public.DeleteFile(as(t.Context(), h.operator), &filesv1.DeleteFileRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := h.get(t, "GET", p); resp.StatusCode != 404 {
		t.Fatalf("deleted: %d", resp.StatusCode)
	}
	if keys := bucketKeys(t, cfg.S3, target.AccessKey, target.SecretKey); len(keys) != 0 {
		t.Fatalf("bucket keys after the delete: %q", keys)
	}
}

// TestS3StartErrors: the files service does not start on wrong S3
// credentials or a missing bucket, and says which.
func TestS3StartErrors(t *testing.T) {
	target := s3test.Target(t)
	key, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := NewURLKeys(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*s3blob.Config)
		want string
	}{
		{"wrong secret", func(c *s3blob.Config) { c.SecretKey = "not-the-secret-not-the-secret" }, "refused the credentials (SignatureDoesNotMatch"},
		{"wrong access key", func(c *s3blob.Config) { c.AccessKey = "NOTTHEKEY" }, "refused the credentials (InvalidAccessKeyId"},
		{"missing bucket", func(c *s3blob.Config) { c.Bucket = "no-such-fleetacs-bucket" }, `bucket "no-such-fleetacs-bucket" does not exist`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := target
			tc.edit(&c)
			cfg := s3StoreConfig(t, c)
			meta, blobs, _, err := cfg.Open()
			if err != nil {
				t.Fatal(err)
			}
			svc, err := New(DefaultConfig(), Deps{Store: meta, Blobs: blobs, URLKeys: keys})
			if err != nil {
				t.Fatal(err)
			}
			err = svc.Start(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), c.SecretKey) {
				t.Fatalf("Start: %v, want %q (and never the secret)", err, tc.want)
			}
		})
	}
}

func TestStoreConfigValidate(t *testing.T) {
	dir := t.TempDir()
	ak, sk := filepath.Join(dir, "ak"), filepath.Join(dir, "sk")
	good := func() StoreConfig {
		c := DefaultStoreConfig()
		c.Blob = BlobS3
		c.S3.Endpoint, c.S3.Bucket, c.S3.AccessKeyFile, c.S3.SecretKeyFile = "minio.internal:9000", "fleetacs-files", ak, sk
		return c
	}
	t.Setenv(EnvS3AccessKey, "")
	t.Setenv(EnvS3SecretKey, "")
	for _, tc := range []struct {
		name string
		edit func(*StoreConfig)
		want []string // each in the error; none: valid
	}{
		{"defaults", func(c *StoreConfig) { *c = DefaultStoreConfig() }, nil},
		{"s3 with sqlite", func(*StoreConfig) {}, nil},
		{"s3 with mongodb", func(c *StoreConfig) { c.Store, c.MongoDBURI = StoreMongoDB, "mongodb://db" }, nil},
		{"disk with mongodb", func(c *StoreConfig) { c.Store, c.MongoDBURI, c.Blob = StoreMongoDB, "mongodb://db", BlobDisk }, nil},
		{"gridfs by default with mongodb", func(c *StoreConfig) { c.Store, c.MongoDBURI, c.Blob = StoreMongoDB, "mongodb://db", "" }, nil},
		{"gridfs with sqlite", func(c *StoreConfig) { c.Blob = BlobGridFS }, []string{"files.blob=gridfs needs files.store=mongodb"}},
		{"unknown blob", func(c *StoreConfig) { c.Blob = "ftp" }, []string{`files.blob must be "disk", "gridfs" or "s3", got "ftp"`}},
		{"no endpoint, no bucket", func(c *StoreConfig) { c.S3.Endpoint, c.S3.Bucket = "", "" },
			[]string{`files.s3-endpoint "": empty (required with files.blob=s3)`, `files.s3-bucket "":`}},
		{"endpoint a URL", func(c *StoreConfig) { c.S3.Endpoint = "https://minio:9000" }, []string{"without scheme"}},
		{"endpoint with a path", func(c *StoreConfig) { c.S3.Endpoint = "minio:9000/bucket" }, []string{"without scheme, path"}},
		{"bad bucket", func(c *StoreConfig) { c.S3.Bucket = "Files_Bucket" }, []string{`files.s3-bucket "Files_Bucket"`}},
		{"escaping prefix", func(c *StoreConfig) { c.S3.Prefix = "a/../../b" }, []string{`files.s3-prefix "a/../../b"`}},
		{"bad region", func(c *StoreConfig) { c.S3.Region = "eu west" }, []string{`files.s3-region "eu west"`}},
		{"ca file over http", func(c *StoreConfig) { c.S3.Insecure, c.S3.CAFile = true, "/ca.pem" }, []string{"files.s3-ca-file is for HTTPS"}},
		{"one key file", func(c *StoreConfig) { c.S3.SecretKeyFile = "" }, []string{"go together"}},
		{"no credentials", func(c *StoreConfig) { c.S3.AccessKeyFile, c.S3.SecretKeyFile = "", "" }, []string{"files.blob=s3 needs credentials"}},
		{"everything wrong at once", func(c *StoreConfig) {
			c.Store, c.Blob, c.S3.Endpoint, c.S3.Bucket, c.S3.Prefix = "redis", BlobS3, "http://x", "B", "/"
		}, []string{"files.store must be", "files.s3-endpoint", "files.s3-bucket", "files.s3-prefix"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.edit(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted it; want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %v\nwant %q in it", err, w)
				}
			}
		})
	}
	t.Run("credentials from the environment", func(t *testing.T) {
		t.Setenv(EnvS3AccessKey, "AK")
		t.Setenv(EnvS3SecretKey, "SK")
		c := good()
		c.S3.AccessKeyFile, c.S3.SecretKeyFile = "", ""
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		got, err := c.S3.config()
		if err != nil || got.AccessKey != "AK" || got.SecretKey != "SK" {
			t.Fatalf("config from the environment: %v, %v", got, err)
		}
	})
	t.Run("bad key files", func(t *testing.T) {
		for name, content := range map[string]string{"empty": "\n", "two lines": "AK\nmore\n", "huge": strings.Repeat("k", 5000)} {
			if err := os.WriteFile(ak, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(sk, []byte("the-secret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			c := good()
			_, _, _, err := c.Open()
			if err == nil || !strings.Contains(err.Error(), "files.s3-access-key-file") || strings.Contains(err.Error(), "the-secret") {
				t.Errorf("%s key file: %v", name, err)
			}
		}
		if err := os.WriteFile(ak, []byte("AK\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c := good()
		if _, _, _, err := c.Open(); err != nil {
			t.Fatalf("good key files: %v", err)
		}
		c.S3.SecretKeyFile = filepath.Join(dir, "missing")
		if _, _, _, err := c.Open(); err == nil || !strings.Contains(err.Error(), "files.s3-secret-key-file") {
			t.Errorf("missing secret key file: %v", err)
		}
	})
}
