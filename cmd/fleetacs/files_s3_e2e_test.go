package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	s3blob "github.com/fleetacs/fleetacs/services/files/blob/s3"
	"github.com/fleetacs/fleetacs/services/files/blob/s3/s3test"
)

// s3Flags are the flags of the bytes in the S3 server c, under prefix,
// the keys in files of dir.
func s3Flags(t *testing.T, c s3blob.Config, prefix, dir string) []string {
	t.Helper()
	ak, sk := filepath.Join(dir, "s3-access-key"), filepath.Join(dir, "s3-secret-key")
	for f, v := range map[string]string{ak: c.AccessKey, sk: c.SecretKey} {
		if err := os.WriteFile(f, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	region := c.Region
	if region == "" {
		region = "us-east-1"
	}
	flags := []string{"-files.blob=s3", "-files.s3-endpoint=" + c.Endpoint, "-files.s3-bucket=" + c.Bucket,
		"-files.s3-prefix=" + c.Prefix + prefix, "-files.s3-region=" + region, "-files.s3-path-style",
		"-files.s3-access-key-file=" + ak, "-files.s3-secret-key-file=" + sk}
	if c.Insecure {
		flags = append(flags, "-files.s3-insecure")
	}
	return flags
}

// TestFilesOnS3EndToEnd: `fleetacs all` with -files.blob=s3 keeps an
// upload of its HTTP API in the bucket, under the prefix, and serves it
// to a device's signed URL on the CWMP listener, whole and by range; a
// delete removes the object.
func TestFilesOnS3EndToEnd(t *testing.T) {
	target := s3test.Target(t)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s := startSecured(t, append(s3Flags(t, target, "acs/", t.TempDir()), "-server.api-http-addr="+httpAddr)...)
	fw := bytes.Repeat([]byte("S3-FIRMWARE-"), 150_000)
	sum := sha256.Sum256(fw)
	q := url.Values{"type": {"1 Firmware Upgrade Image"}, "version": {"6.0"}, "sha256": {hex.EncodeToString(sum[:])}, "tenant": {"default"}}
	putFile(t, "http://"+httpAddr+"/v1/files/fw-6.0.bin?"+q.Encode(), s.admin, fw)
	code, m := httpCall(t, "GET", "http://"+httpAddr+"/v1/tenants/default/files", s.admin, nil)
	list, _ := m["files"].([]any)
	if code != 200 || len(list) != 1 {
		t.Fatalf("list: %d %v", code, m)
	}
	id := list[0].(map[string]any)["id"].(string)

	mc, err := minio.New(target.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(target.AccessKey, target.SecretKey, ""),
		Secure: !target.Insecure, Region: target.Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	key := target.Prefix + "acs/default/" + id
	info, err := mc.StatObject(ctx10(t), target.Bucket, key, minio.StatObjectOptions{})
	if err != nil || info.Size != int64(len(fw)) {
		t.Fatalf("object %s: %d bytes, %v", key, info.Size, err)
	}

	path, err := signerFor(t, s.dir).SignPath("default", id, "00D09E-HGW-S3E2E", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	gw := "http://" + s.cwmp
	if resp, body := fetch(t, "GET", gw+path); resp.StatusCode != 200 || !bytes.Equal(body, fw) {
		t.Fatalf("download through the gateway: %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp, body := fetch(t, "GET", gw+path, "Range", "bytes=1000000-"); resp.StatusCode != 206 || !bytes.Equal(body, fw[1000000:]) {
		t.Fatalf("resume through the gateway: %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp, body := fetch(t, "GET", gw+path, "Range", "bytes=13-25"); resp.StatusCode != 206 || !bytes.Equal(body, fw[13:26]) {
		t.Fatalf("range through the gateway: %d, %q", resp.StatusCode, body)
	}
	if code, m := httpCall(t, "DELETE", "http://"+httpAddr+"/v1/tenants/default/files/"+id, s.admin, nil); code != 200 {
		t.Fatalf("delete: %d %v", code, m)
	}
	if _, err := mc.StatObject(ctx10(t), target.Bucket, key, minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != "NoSuchKey" {
		t.Fatalf("object after the delete: %v", err)
	}
}

// TestFilesS3StartErrors: fleetacs does not start on wrong S3 credentials
// or a missing bucket; it says which, never shows the secret, and a
// secret given as a flag's value is no flag at all.
func TestFilesS3StartErrors(t *testing.T) {
	target := s3test.Target(t)
	for _, tc := range []struct {
		name string
		edit func(*s3blob.Config)
		code int
		want string
	}{
		{"wrong secret", func(c *s3blob.Config) { c.SecretKey = "wrong-secret-wrong-secret" }, 1, "the server refused the credentials (SignatureDoesNotMatch"},
		{"missing bucket", func(c *s3blob.Config) { c.Bucket = "fleetacs-no-such-bucket" }, 1, `bucket "fleetacs-no-such-bucket" does not exist`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := target
			tc.edit(&c)
			dir := t.TempDir()
			args := append([]string{"-log.level=error", "-data-dir=" + dir, "-gateway.auth-anonymous", "-gateway.listen-addr=127.0.0.1:0",
				"-server.http-addr=127.0.0.1:0", "-server.grpc-addr=127.0.0.1:0", "-server.internal-grpc-addr=127.0.0.1:0",
				"-server.api-http-addr=127.0.0.1:0", "-notifier.stun-addr=127.0.0.1:0"}, s3Flags(t, c, "", dir)...)
			var out, errb syncBuffer
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if code := run(ctx, append(args, "all"), &out, &errb, noEnv); code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) || strings.Contains(errb.String(), c.SecretKey) {
				t.Fatalf("stderr does not say %q (or shows the secret):\n%s", tc.want, errb.String())
			}
		})
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"-files.s3-secret-key=x", "all"}, &out, &errb, noEnv); code != 2 || !strings.Contains(errb.String(), "-files.s3-secret-key") {
		t.Fatalf("a secret key flag: exit %d, %s", code, errb.String())
	}
}
