// Package s3test gives tests an S3-compatible server over real HTTP on
// loopback: gofakes3 behind a check of every request's SigV4 signature
// and payload hash, as AWS S3 and MinIO check them. Target uses a real
// server instead when $FLEETACS_TEST_S3_ENDPOINT is set, so that a MinIO
// (or any S3) can be plugged in:
//
//	FLEETACS_TEST_S3_ENDPOINT    host:port
//	FLEETACS_TEST_S3_INSECURE    1: plain HTTP
//	FLEETACS_TEST_S3_ACCESS_KEY  FLEETACS_TEST_S3_SECRET_KEY
//	FLEETACS_TEST_S3_BUCKET      an existing bucket (tests write under
//	                             a prefix of their own)
//	FLEETACS_TEST_S3_REGION      default us-east-1
package s3test

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	s3blob "github.com/fleetacs/fleetacs/services/files/blob/s3"
)

// Environment of an external server.
const (
	EnvEndpoint  = "FLEETACS_TEST_S3_ENDPOINT"
	EnvInsecure  = "FLEETACS_TEST_S3_INSECURE"
	EnvAccessKey = "FLEETACS_TEST_S3_ACCESS_KEY"
	EnvSecretKey = "FLEETACS_TEST_S3_SECRET_KEY"
	EnvBucket    = "FLEETACS_TEST_S3_BUCKET"
	EnvRegion    = "FLEETACS_TEST_S3_REGION"
)

// The in-process server's bucket, region and keys.
const (
	Bucket    = "fleetacs-test"
	Region    = "eu-test-1"
	AccessKey = "FLEETACSTESTKEY"
	SecretKey = "fleetacs-test-secret-0123456789abcdef"
)

// Server is an in-process S3 server.
type Server struct {
	// Config reaches the server's bucket with good credentials.
	Config s3blob.Config
	// Requests counts the requests that passed the checks.
	Requests atomic.Int64
	corrupt  atomic.Bool
}

// CorruptNextPut flips a bit of the next PUT's body as it arrives, as a
// bad network path would: its payload hash no longer matches.
func (s *Server) CorruptNextPut() { s.corrupt.Store(true) }

// Start starts an in-process server with the bucket Bucket, stopped at the
// test's end.
func Start(t testing.TB) *Server {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(Bucket); err != nil {
		t.Fatal(err)
	}
	fake := gofakes3.New(backend, gofakes3.WithAutoBucket(false))
	s := &Server{}
	hs := httptest.NewUnstartedServer(s.check(fake.Server()))
	// gofakes3 answers an error to a client gone mid-body (a reader
	// that seeks away), which net/http logs: noise.
	hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	hs.Start()
	t.Cleanup(hs.Close)
	s.Config = s3blob.Config{
		Endpoint: strings.TrimPrefix(hs.URL, "http://"), Insecure: true, PathStyle: true, Region: Region,
		Bucket: Bucket, AccessKey: AccessKey, SecretKey: SecretKey,
	}
	return s
}

// Target returns the configuration of the external server if
// $FLEETACS_TEST_S3_ENDPOINT is set, with a prefix of the test's own; else
// that of a new in-process server.
func Target(t testing.TB) s3blob.Config {
	t.Helper()
	ep := os.Getenv(EnvEndpoint)
	if ep == "" {
		return Start(t).Config
	}
	c := s3blob.Config{
		Endpoint: ep, Insecure: os.Getenv(EnvInsecure) == "1", PathStyle: true,
		Region: os.Getenv(EnvRegion), Bucket: os.Getenv(EnvBucket),
		AccessKey: os.Getenv(EnvAccessKey), SecretKey: os.Getenv(EnvSecretKey),
	}
	if c.Bucket == "" || c.AccessKey == "" || c.SecretKey == "" {
		t.Fatalf("%s is set: %s, %s and %s must be too", EnvEndpoint, EnvBucket, EnvAccessKey, EnvSecretKey)
	}
	c.Prefix = "fleetacs-test/" + rand.Text() + "/"
	return c
}

// s3Error answers as S3 does.
func s3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_ = xml.NewEncoder(w).Encode(struct {
		XMLName xml.Name `xml:"Error"`
		Code    string
		Message string
	}{Code: code, Message: msg})
}

const maxBody = 64 << 20

// check refuses every request whose SigV4 signature (header form) is not
// that of AccessKey and SecretKey in Region, or whose body does not have
// the SHA-256 it was signed with.
func (s *Server) check(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
		if !ok {
			s3Error(w, 403, "AccessDenied", "requests must be signed with SigV4")
			return
		}
		fields := map[string]string{}
		for f := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
			fields[k] = v
		}
		scope := strings.Split(fields["Credential"], "/")
		if len(scope) != 5 || scope[3] != "s3" || scope[4] != "aws4_request" {
			s3Error(w, 400, "AuthorizationHeaderMalformed", "bad credential scope")
			return
		}
		if scope[0] != AccessKey {
			s3Error(w, 403, "InvalidAccessKeyId", "The access key ID you provided does not exist in our records.")
			return
		}
		if scope[2] != Region {
			s3Error(w, 400, "AuthorizationHeaderMalformed", "the region "+scope[2]+" is wrong; expecting "+Region)
			return
		}
		payload := r.Header.Get("X-Amz-Content-Sha256")
		var body []byte
		if payload != "UNSIGNED-PAYLOAD" {
			if strings.HasPrefix(payload, "STREAMING-") {
				s3Error(w, 501, "NotImplemented", "streaming payloads are not supported by this test server")
				return
			}
			var err error
			body, err = io.ReadAll(io.LimitReader(r.Body, maxBody+1))
			if err != nil || len(body) > maxBody {
				s3Error(w, 400, "IncompleteBody", "body unreadable or too large")
				return
			}
			if r.Method == http.MethodPut && len(body) > 0 && s.corrupt.CompareAndSwap(true, false) {
				body[len(body)/2] ^= 1
			}
			sum := sha256.Sum256(body)
			if hex.EncodeToString(sum[:]) != payload {
				s3Error(w, 400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		signed := strings.Split(fields["SignedHeaders"], ";")
		var canon strings.Builder
		for _, h := range signed {
			v := strings.Join(r.Header.Values(h), ",")
			switch {
			case h == "host":
				v = r.Host
			case h == "content-length" && v == "":
				v = strconv.FormatInt(r.ContentLength, 10)
			}
			canon.WriteString(h + ":" + strings.Join(strings.Fields(v), " ") + "\n")
		}
		q := r.URL.Query()
		for _, vs := range q {
			slices.Sort(vs)
		}
		creq := strings.Join([]string{
			r.Method, r.URL.EscapedPath(), strings.ReplaceAll(q.Encode(), "+", "%20"),
			canon.String(), fields["SignedHeaders"], payload,
		}, "\n")
		creqSum := sha256.Sum256([]byte(creq))
		date := r.Header.Get("X-Amz-Date")
		sts := "AWS4-HMAC-SHA256\n" + date + "\n" + strings.Join(scope[1:], "/") + "\n" + hex.EncodeToString(creqSum[:])
		key := []byte("AWS4" + SecretKey)
		for _, p := range []string{scope[1], scope[2], "s3", "aws4_request"} {
			key = mac(key, p)
		}
		if !hmac.Equal([]byte(hex.EncodeToString(mac(key, sts))), []byte(fields["Signature"])) {
			s3Error(w, 403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
			return
		}
		s.Requests.Add(1)
		next.ServeHTTP(w, r)
	})
}

func mac(key []byte, s string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(s))
	return h.Sum(nil)
}

// String describes the server.
func (s *Server) String() string { return fmt.Sprintf("s3test server at %s", s.Config.Endpoint) }
