// Package s3 is the blob store on an S3-compatible object store (AWS S3,
// MinIO, Ceph RGW, SeaweedFS...; docs/files.md, "Where the bytes are"). A
// blob is the object <prefix><tenant>/<id> of one bucket: its key is made
// of the tenant and the file id alone, both checked by blob.ValidName, so
// that no name given by a user reaches a key and no key leaves the prefix.
//
// Writes stream: a blob up to one part (PartSize, 16 MiB by default) is
// sent in one PUT at Commit; a larger one as a multipart upload, a part
// each time the buffer fills, completed at Commit. An S3 object is visible
// only once its PUT or its CompleteMultipartUpload succeeds, so a reader
// never sees a partial blob; Abort aborts the multipart upload. Every
// request carries the SHA-256 of its body in its SigV4 signature and the
// Content-MD5, which the server checks; Commit then checks the stored size.
//
// Reads ask for the bytes from the position read to the end of the object
// (a Range request from the offset, pinned to the ETag seen at Open), so a
// Range request of a CPE costs what it returns and a seek costs nothing
// until the next read.
//
// Every request has a deadline, and the connections one for each read and
// write (Config.Timeout): a store that stops answering fails the call
// instead of holding it. Credentials are never logged nor put in errors.
package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/fleetacs/fleetacs/services/files/blob"
)

const (
	// DefaultPartSize is the part size of multipart uploads, and so the
	// memory one upload in progress holds.
	DefaultPartSize = 16 << 20
	// MinPartSize is the smallest part S3 accepts but for the last.
	MinPartSize = 5 << 20
	// maxParts is S3's limit of parts in one upload.
	maxParts = 10_000
	// DefaultTimeout bounds each request without a body to send and each
	// read or write on a connection.
	DefaultTimeout = time.Minute
	// minPartRate is the slowest upload of a part allowed before it is
	// given up: a part's deadline is Timeout + PartSize/minPartRate.
	minPartRate = 64 << 10
	// maxMetaBody bounds the bodies of answers other than object bytes
	// (XML errors and results).
	maxMetaBody = 1 << 20
	// probeKey is read by Start, under the prefix, to check the bucket
	// and the credentials; it need not exist.
	probeKey = ".fleetacs-probe"
)

// Config says where the bucket is and how to reach it.
type Config struct {
	// Endpoint is host[:port], without scheme or path.
	Endpoint string
	// Insecure talks plain HTTP instead of HTTPS.
	Insecure bool
	// CAFile, if set, is a PEM file of CA certificates trusted besides
	// the system's.
	CAFile string
	// Region signs requests (SigV4); empty: us-east-1.
	Region string
	// PathStyle addresses the bucket in the path (https://host/bucket/key)
	// rather than in the host name (https://bucket.host/key), as MinIO,
	// Ceph RGW and most self-hosted stores need.
	PathStyle bool
	Bucket    string
	// Prefix is put before every key; empty, or ending in "/" (one is
	// added otherwise). See ValidPrefix.
	Prefix string
	// AccessKey and SecretKey sign requests; SessionToken goes with
	// temporary credentials.
	AccessKey, SecretKey, SessionToken string
	// PartSize of multipart uploads; 0: DefaultPartSize; at least
	// MinPartSize.
	PartSize int
	// Timeout; 0: DefaultTimeout.
	Timeout time.Duration
}

// String describes the configuration without its credentials.
func (c Config) String() string {
	return fmt.Sprintf("s3 bucket %q prefix %q at %s", c.Bucket, c.Prefix, c.Endpoint)
}

// ValidPrefix reports why p cannot be a key prefix: it may be empty, or
// segments of [A-Za-z0-9_.-] separated by "/" (a last "/" is optional),
// none empty, "." or "..", at most 256 characters.
func ValidPrefix(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > 256 {
		return errors.New("longer than 256 characters")
	}
	for _, seg := range strings.Split(strings.TrimSuffix(p, "/"), "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("segment %q: segments must not be empty, \".\" or \"..\"", seg)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
				return fmt.Errorf("character %q: only [A-Za-z0-9_.-] and \"/\" are allowed", c)
			}
		}
	}
	return nil
}

// ValidEndpoint reports why e cannot be an endpoint: it must be host or
// host:port, without a scheme or a path.
func ValidEndpoint(e string) error {
	if e == "" {
		return errors.New("empty")
	}
	if strings.Contains(e, "://") || strings.ContainsAny(e, "/?#@ ") {
		return errors.New("must be host or host:port, without scheme, path or user")
	}
	host := e
	if h, port, err := net.SplitHostPort(e); err == nil {
		host = h
		if port == "" {
			return errors.New("empty port")
		}
	}
	if host == "" {
		return errors.New("empty host")
	}
	return nil
}

// ValidBucket reports why b cannot name a bucket (S3's rules).
func ValidBucket(b string) error { return s3utils.CheckValidBucketNameStrict(b) }

// Store is the S3 blob store.
type Store struct {
	core      minio.Core
	transport *http.Transport
	bucket    string
	prefix    string
	partSize  int
	timeout   time.Duration
}

var _ blob.Store = (*Store)(nil)

// New returns a store for c. It reads c.CAFile but does no network I/O;
// Start checks the bucket and the credentials.
func New(c Config) (*Store, error) {
	if err := ValidEndpoint(c.Endpoint); err != nil {
		return nil, fmt.Errorf("s3 endpoint %q: %w", c.Endpoint, err)
	}
	if err := ValidBucket(c.Bucket); err != nil {
		return nil, fmt.Errorf("s3 bucket %q: %w", c.Bucket, err)
	}
	if err := ValidPrefix(c.Prefix); err != nil {
		return nil, fmt.Errorf("s3 prefix %q: %w", c.Prefix, err)
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		return nil, errors.New("s3: access key and secret key are required")
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.PartSize < MinPartSize || c.PartSize > 1<<30 {
		return nil, fmt.Errorf("s3 part size %d: must be between %d and %d", c.PartSize, MinPartSize, 1<<30)
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Insecure && c.CAFile != "" {
		return nil, errors.New("s3: a CA file makes no sense over plain HTTP")
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("s3 CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s3 CA file %s: no PEM certificate in it", c.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	dialer := &net.Dialer{Timeout: min(c.Timeout, 30*time.Second), KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: conn, timeout: c.Timeout}, nil
		},
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   min(c.Timeout, 30*time.Second),
		ResponseHeaderTimeout: c.Timeout,
		ExpectContinueTimeout: time.Second,
		MaxIdleConnsPerHost:   16,
		// Below the connections' idle deadline, so that the pool drops
		// an idle connection before its deadline does.
		IdleConnTimeout: min(c.Timeout/2, 30*time.Second),
		// Object bytes are compressed already, if at all; and a gzip
		// answer would not have the length asked for.
		DisableCompression: true,
	}
	lookup := minio.BucketLookupDNS
	if c.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(c.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(c.AccessKey, c.SecretKey, c.SessionToken),
		Secure:       !c.Insecure,
		Transport:    limitedTransport{tr},
		Region:       c.Region,
		BucketLookup: lookup,
		MaxRetries:   3,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client: %w", err)
	}
	prefix := c.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &Store{core: minio.Core{Client: client}, transport: tr, bucket: c.Bucket, prefix: prefix, partSize: c.PartSize, timeout: c.Timeout}, nil
}

// Start checks that the bucket exists and that the credentials are good
// by reading an object under the prefix that need not exist.
func (s *Store) Start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	body, _, _, err := s.core.GetObject(ctx, s.bucket, s.prefix+probeKey, minio.GetObjectOptions{})
	if err == nil {
		_ = body.Close()
		return nil
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "NoSuchKey":
			return nil
		case "NoSuchBucket":
			return fmt.Errorf("start s3 blob store: bucket %q does not exist at %s", s.bucket, s.core.EndpointURL().Host)
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed":
			return fmt.Errorf("start s3 blob store: the server refused the credentials (%s: %s)", er.Code, er.Message)
		case "AccessDenied":
			return fmt.Errorf("start s3 blob store: access denied to bucket %q (the credentials need s3:GetObject and s3:ListBucket on it; docs/files.md): %s", s.bucket, er.Message)
		}
	}
	return fmt.Errorf("start s3 blob store (bucket %q at %s): %w", s.bucket, s.core.EndpointURL().Host, err)
}

// Close drops the idle connections.
func (s *Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

func (s *Store) key(tenant, id string) (string, error) {
	if !blob.ValidName(tenant) || !blob.ValidName(id) {
		return "", fmt.Errorf("blob name %q/%q: %w", tenant, id, blob.ErrNotFound)
	}
	return s.prefix + tenant + "/" + id, nil
}

func notFound(err error) bool {
	var er minio.ErrorResponse
	return errors.As(err, &er) && (er.Code == "NoSuchKey" || er.StatusCode == http.StatusNotFound)
}

// Create implements blob.Store. Nothing is sent before the first part is
// full, or Commit.
func (s *Store) Create(ctx context.Context, tenant, id string) (blob.Writer, error) {
	k, err := s.key(tenant, id)
	if err != nil {
		return nil, err
	}
	return &writer{s: s, ctx: ctx, key: k, buf: make([]byte, 0, s.partSize)}, nil
}

type writer struct {
	s        *Store
	ctx      context.Context
	key      string
	buf      []byte
	uploadID string
	parts    []minio.CompletePart
	written  int64
	err      error // the first failure: the writer is done for
	done     bool
}

func (w *writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("s3 blob: write after commit or abort")
	}
	if w.err != nil {
		return 0, w.err
	}
	n := 0
	for len(p) > 0 {
		c := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+c]
		p = p[c:]
		n += c
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				w.err = err
				return n, err
			}
		}
	}
	return n, nil
}

// sums returns the Content-MD5 and the hex SHA-256 of b.
func sums(b []byte) (string, string) {
	m := md5.Sum(b)
	h := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(m[:]), hex.EncodeToString(h[:])
}

// flush sends the buffer as the next part, starting the multipart upload
// if need be.
func (w *writer) flush() error {
	if w.uploadID == "" {
		ctx, cancel := context.WithTimeout(w.ctx, w.s.timeout)
		id, err := w.s.core.NewMultipartUpload(ctx, w.s.bucket, w.key, minio.PutObjectOptions{ContentType: "application/octet-stream"})
		cancel()
		if err != nil {
			return fmt.Errorf("s3 blob: start multipart upload: %w", err)
		}
		w.uploadID = id
	}
	n := len(w.parts) + 1
	if n > maxParts {
		return fmt.Errorf("s3 blob: more than %d parts of %d bytes", maxParts, w.s.partSize)
	}
	md5b64, sha := sums(w.buf)
	ctx, cancel := context.WithTimeout(w.ctx, w.s.partTimeout())
	defer cancel()
	part, err := w.s.core.PutObjectPart(ctx, w.s.bucket, w.key, w.uploadID, n, bytes.NewReader(w.buf), int64(len(w.buf)),
		minio.PutObjectPartOptions{Md5Base64: md5b64, Sha256Hex: sha, DisableContentSha256: true})
	if err != nil {
		return fmt.Errorf("s3 blob: upload part %d: %w", n, err)
	}
	w.parts = append(w.parts, minio.CompletePart{PartNumber: n, ETag: part.ETag})
	w.written += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

func (s *Store) partTimeout() time.Duration {
	return s.timeout + time.Duration(s.partSize/minPartRate)*time.Second
}

func (w *writer) Commit() error {
	if w.done {
		return errors.New("blob writer already finished")
	}
	if w.err != nil {
		_ = w.Abort()
		return fmt.Errorf("commit s3 blob: %w", w.err)
	}
	w.done = true
	err := w.commit()
	if err != nil {
		w.cleanUp()
		return fmt.Errorf("commit s3 blob: %w", err)
	}
	return nil
}

func (w *writer) commit() error {
	if w.uploadID == "" {
		md5b64, sha := sums(w.buf)
		ctx, cancel := context.WithTimeout(w.ctx, w.s.partTimeout())
		defer cancel()
		if _, err := w.s.core.PutObject(ctx, w.s.bucket, w.key, bytes.NewReader(w.buf), int64(len(w.buf)), md5b64, sha,
			minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true}); err != nil {
			return err
		}
		w.written = int64(len(w.buf))
	} else {
		if len(w.buf) > 0 {
			if err := w.flush(); err != nil {
				return err
			}
		}
		ctx, cancel := context.WithTimeout(w.ctx, w.s.timeout)
		defer cancel()
		if _, err := w.s.core.CompleteMultipartUpload(ctx, w.s.bucket, w.key, w.uploadID, w.parts, minio.PutObjectOptions{}); err != nil {
			return fmt.Errorf("complete multipart upload: %w", err)
		}
		w.uploadID = ""
	}
	w.buf = nil
	ctx, cancel := context.WithTimeout(w.ctx, w.s.timeout)
	defer cancel()
	info, err := w.s.core.StatObject(ctx, w.s.bucket, w.key, minio.StatObjectOptions{})
	if err != nil {
		return fmt.Errorf("check the stored object: %w", err)
	}
	if info.Size != w.written {
		return fmt.Errorf("the stored object has %d bytes, %d were sent", info.Size, w.written)
	}
	return nil
}

// cleanUp removes what a failed commit may have left: the multipart
// upload, or the object whose check failed.
func (w *writer) cleanUp() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), w.s.timeout)
	defer cancel()
	if w.uploadID != "" {
		_ = w.s.core.AbortMultipartUpload(ctx, w.s.bucket, w.key, w.uploadID)
		return
	}
	_ = w.s.core.RemoveObject(ctx, w.s.bucket, w.key, minio.RemoveObjectOptions{})
}

func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.buf = nil
	if w.uploadID == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), w.s.timeout)
	defer cancel()
	if err := w.s.core.AbortMultipartUpload(ctx, w.s.bucket, w.key, w.uploadID); err != nil && !notFound(err) {
		return fmt.Errorf("abort s3 multipart upload: %w", err)
	}
	return nil
}

// Open implements blob.Store.
func (s *Store) Open(ctx context.Context, tenant, id string) (blob.Blob, error) {
	k, err := s.key(tenant, id)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	info, err := s.core.StatObject(sctx, s.bucket, k, minio.StatObjectOptions{})
	if notFound(err) {
		return nil, blob.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("open s3 blob: %w", err)
	}
	if info.Size < 0 {
		return nil, fmt.Errorf("open s3 blob %s: size %d", k, info.Size)
	}
	return &reader{s: s, ctx: ctx, key: k, etag: info.ETag, size: info.Size}, nil
}

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, tenant, id string) error {
	k, err := s.key(tenant, id)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.core.RemoveObject(ctx, s.bucket, k, minio.RemoveObjectOptions{}); err != nil && !notFound(err) {
		return fmt.Errorf("delete s3 blob: %w", err)
	}
	return nil
}

// reader reads a blob from any offset: a Seek only moves the position;
// the next Read asks for the object from there to its end.
type reader struct {
	s      *Store
	ctx    context.Context
	key    string
	etag   string
	size   int64
	pos    int64
	body   io.ReadCloser
	closed bool
}

func (r *reader) Size() int64            { return r.size }
func (r *reader) Content() io.ReadSeeker { return r }

func (r *reader) Close() error {
	r.closed = true
	r.drop()
	return nil
}

func (r *reader) drop() {
	if r.body != nil {
		_ = r.body.Close()
		r.body = nil
	}
}

func (r *reader) Seek(offset int64, whence int) (int64, error) {
	abs, err := blob.Position(r.pos, r.size, offset, whence)
	if err != nil {
		return 0, err
	}
	if abs != r.pos {
		r.drop()
		r.pos = abs
	}
	return abs, nil
}

func (r *reader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, errors.New("s3 blob: read after close")
	}
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if r.body == nil {
		var o minio.GetObjectOptions
		if r.etag != "" {
			_ = o.SetMatchETag(r.etag)
		}
		if r.pos > 0 {
			_ = o.SetRange(r.pos, 0)
		}
		body, _, _, err := r.s.core.GetObject(r.ctx, r.s.bucket, r.key, o)
		if err != nil {
			return 0, fmt.Errorf("read s3 blob %s at %d: %w", r.key, r.pos, err)
		}
		r.body = body
	}
	if rest := r.size - r.pos; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := r.body.Read(p)
	r.pos += int64(n)
	if errors.Is(err, io.EOF) {
		r.drop()
		if r.pos < r.size {
			return n, fmt.Errorf("read s3 blob %s: the object ended at %d of %d bytes: %w", r.key, r.pos, r.size, io.ErrUnexpectedEOF)
		}
		err = nil
	}
	if err != nil {
		r.drop()
		return n, fmt.Errorf("read s3 blob %s: %w", r.key, err)
	}
	return n, nil
}

// idleConn gives each read and write on a connection a deadline, so that
// a server that stops sending or receiving mid-body fails the request.
type idleConn struct {
	net.Conn
	timeout time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(p)
}

// limitedTransport bounds the bodies of answers other than object bytes:
// errors and XML results are small.
type limitedTransport struct{ rt http.RoundTripper }

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	if req.Method == http.MethodGet && (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent) {
		return resp, nil
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxMetaBody}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("s3: answer larger than %d bytes", maxMetaBody)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
