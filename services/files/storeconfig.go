package files

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/services/files/blob"
	"github.com/fleetacs/fleetacs/services/files/blob/disk"
	"github.com/fleetacs/fleetacs/services/files/blob/gridfs"
	s3blob "github.com/fleetacs/fleetacs/services/files/blob/s3"
	"github.com/fleetacs/fleetacs/services/files/store"
	"github.com/fleetacs/fleetacs/services/files/store/mongostore"
	"github.com/fleetacs/fleetacs/services/files/store/sqlitestore"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// Store backends StoreConfig.Store names.
const (
	StoreSQLite  = "sqlite"
	StoreMongoDB = "mongodb"
)

// Blob stores StoreConfig.Blob names.
const (
	BlobDisk   = "disk"
	BlobGridFS = "gridfs"
	BlobS3     = "s3"
)

// StoreConfig chooses where records and bytes are kept (docs/files.md):
// Store says where the records are, "sqlite" in an SQLite file (the
// embedded default) or "mongodb" in the collection "files" of a database;
// Blob where the bytes are: "disk" in a directory, "gridfs" in a GridFS
// bucket of that database, "s3" in a bucket of an S3-compatible object
// store. Blob defaults to disk with sqlite, gridfs with mongodb.
type StoreConfig struct {
	Store           string
	Blob            string
	SQLitePath      string
	BlobDir         string
	MongoDBURI      string
	MongoDBDatabase string
	GridFSBucket    string
	S3              S3Config
	// Metrics, if set, records the latency and errors of every MongoDB
	// command (telemetry.ClientMetrics). Not a flag.
	Metrics *telemetry.ClientMetrics
}

// S3Config is where the bytes are with files.blob=s3. The credentials
// come from files, or else from the environment (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN): never from a flag's value,
// which any user sees in the process list.
type S3Config struct {
	Endpoint      string
	Bucket        string
	Prefix        string
	Region        string
	PathStyle     bool
	Insecure      bool
	CAFile        string
	AccessKeyFile string
	SecretKeyFile string
}

// Environment variables of the S3 credentials when no files are given.
const (
	EnvS3AccessKey    = "AWS_ACCESS_KEY_ID"
	EnvS3SecretKey    = "AWS_SECRET_ACCESS_KEY"
	EnvS3SessionToken = "AWS_SESSION_TOKEN"
)

// BlobStore is the blob store in use: Blob, or its default for Store.
func (c *StoreConfig) BlobStore() string {
	switch {
	case c.Blob != "":
		return c.Blob
	case c.Store == StoreMongoDB:
		return BlobGridFS
	default:
		return BlobDisk
	}
}

// DefaultStoreConfig returns the defaults RegisterFlags registers.
func DefaultStoreConfig() StoreConfig {
	var c StoreConfig
	c.RegisterFlags(flag.NewFlagSet("defaults", flag.ContinueOnError))
	return c
}

// RegisterFlags registers the flags with their defaults.
func (c *StoreConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Store, "files.store", StoreSQLite, "where file records are: sqlite (an SQLite file) or mongodb (the collection \"files\" of -files.mongodb-database)")
	fs.StringVar(&c.Blob, "files.blob", "", "where the files' bytes are: disk (-files.blob-dir), gridfs (a GridFS bucket of the mongodb file store) or s3 (a bucket of an S3-compatible store, -files.s3-*) (default: disk with files.store=sqlite, gridfs with mongodb)")
	fs.StringVar(&c.SQLitePath, "files.sqlite-path", "data/files.db", "database file of the sqlite file store (default: files.db in -data-dir)")
	fs.StringVar(&c.BlobDir, "files.blob-dir", "data/files", "directory of the files' bytes with files.blob=disk (default: files in -data-dir)")
	fs.StringVar(&c.MongoDBURI, "files.mongodb-uri", "", "MongoDB connection URI of the mongodb file store (mongodb:// or mongodb+srv://)")
	fs.StringVar(&c.MongoDBDatabase, "files.mongodb-database", "fleetacs", "MongoDB database of the mongodb file store (collection \"files\" and the GridFS bucket)")
	fs.StringVar(&c.GridFSBucket, "files.gridfs-bucket", gridfs.DefaultBucket, "GridFS bucket of the files' bytes with files.blob=gridfs")
	fs.StringVar(&c.S3.Endpoint, "files.s3-endpoint", "", "host[:port] of the S3-compatible store with files.blob=s3 (AWS: s3.<region>.amazonaws.com)")
	fs.StringVar(&c.S3.Bucket, "files.s3-bucket", "", "bucket of the files' bytes with files.blob=s3; it must exist")
	fs.StringVar(&c.S3.Prefix, "files.s3-prefix", "", "key prefix of the files' bytes in -files.s3-bucket, e.g. fleetacs/files/ (objects are <prefix><tenant>/<file id>)")
	fs.StringVar(&c.S3.Region, "files.s3-region", "us-east-1", "region of -files.s3-bucket, which requests are signed for")
	fs.BoolVar(&c.S3.PathStyle, "files.s3-path-style", false, "address the bucket in the URL path (https://host/bucket/key), as MinIO, Ceph RGW and SeaweedFS need, instead of the host name (https://bucket.host/key)")
	fs.BoolVar(&c.S3.Insecure, "files.s3-insecure", false, "talk plain HTTP to -files.s3-endpoint instead of HTTPS (a store on a trusted network only)")
	fs.StringVar(&c.S3.CAFile, "files.s3-ca-file", "", "PEM file of CA certificates trusted for -files.s3-endpoint besides the system's")
	fs.StringVar(&c.S3.AccessKeyFile, "files.s3-access-key-file", "", "file holding the S3 access key id (default: $"+EnvS3AccessKey+")")
	fs.StringVar(&c.S3.SecretKeyFile, "files.s3-secret-key-file", "", "file holding the S3 secret access key (default: $"+EnvS3SecretKey+")")
}

// Validate reports every setting that cannot work.
func (c *StoreConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.Store {
	case StoreSQLite:
		if c.SQLitePath == "" || strings.ContainsAny(c.SQLitePath, "?#") {
			bad("files.sqlite-path %q must be a file name without '?' or '#'", c.SQLitePath)
		}
	case StoreMongoDB:
		if !strings.HasPrefix(c.MongoDBURI, "mongodb://") && !strings.HasPrefix(c.MongoDBURI, "mongodb+srv://") {
			bad("files.mongodb-uri must start with mongodb:// or mongodb+srv:// with files.store=mongodb")
		}
		if c.MongoDBDatabase == "" || len(c.MongoDBDatabase) > 63 || strings.ContainsAny(c.MongoDBDatabase, "/\\. \"$*<>:|?\x00") {
			bad("files.mongodb-database %q is not a valid MongoDB database name", c.MongoDBDatabase)
		}
	default:
		bad("files.store must be %q or %q, got %q", StoreSQLite, StoreMongoDB, c.Store)
	}
	switch c.BlobStore() {
	case BlobDisk:
		if c.BlobDir == "" {
			bad("files.blob-dir must not be empty with files.blob=disk")
		}
	case BlobGridFS:
		if c.Store != StoreMongoDB {
			bad("files.blob=gridfs needs files.store=mongodb: the GridFS bucket is in the file store's database")
		}
		if c.GridFSBucket == "" || strings.ContainsAny(c.GridFSBucket, "$\x00 ") {
			bad("files.gridfs-bucket %q is not a valid bucket name", c.GridFSBucket)
		}
	case BlobS3:
		errs = append(errs, c.S3.validate()...)
	default:
		bad("files.blob must be %q, %q or %q, got %q", BlobDisk, BlobGridFS, BlobS3, c.Blob)
	}
	return errors.Join(errs...)
}

func (c *S3Config) validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if err := s3blob.ValidEndpoint(c.Endpoint); err != nil {
		bad("files.s3-endpoint %q: %v (required with files.blob=s3)", c.Endpoint, err)
	}
	if err := s3blob.ValidBucket(c.Bucket); err != nil {
		bad("files.s3-bucket %q: %v (required with files.blob=s3)", c.Bucket, err)
	}
	if err := s3blob.ValidPrefix(c.Prefix); err != nil {
		bad("files.s3-prefix %q: %v", c.Prefix, err)
	}
	if c.Region == "" || len(c.Region) > 64 || strings.ContainsFunc(c.Region, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_')
	}) {
		bad("files.s3-region %q must be a region name such as us-east-1", c.Region)
	}
	if c.Insecure && c.CAFile != "" {
		bad("files.s3-ca-file is for HTTPS: it makes no sense with files.s3-insecure")
	}
	switch {
	case (c.AccessKeyFile == "") != (c.SecretKeyFile == ""):
		bad("files.s3-access-key-file and files.s3-secret-key-file go together: set both, or neither to use $%s and $%s", EnvS3AccessKey, EnvS3SecretKey)
	case c.AccessKeyFile == "" && (os.Getenv(EnvS3AccessKey) == "" || os.Getenv(EnvS3SecretKey) == ""):
		bad("files.blob=s3 needs credentials: files.s3-access-key-file and files.s3-secret-key-file, or $%s and $%s", EnvS3AccessKey, EnvS3SecretKey)
	}
	return errs
}

// config reads the credentials and returns the S3 blob store's
// configuration.
func (c *S3Config) config() (s3blob.Config, error) {
	cfg := s3blob.Config{
		Endpoint: c.Endpoint, Insecure: c.Insecure, CAFile: c.CAFile, Region: c.Region, PathStyle: c.PathStyle,
		Bucket: c.Bucket, Prefix: c.Prefix,
	}
	if c.AccessKeyFile == "" {
		cfg.AccessKey, cfg.SecretKey, cfg.SessionToken = os.Getenv(EnvS3AccessKey), os.Getenv(EnvS3SecretKey), os.Getenv(EnvS3SessionToken)
		return cfg, nil
	}
	var err error
	if cfg.AccessKey, err = readSecret("files.s3-access-key-file", c.AccessKeyFile); err != nil {
		return cfg, err
	}
	cfg.SecretKey, err = readSecret("files.s3-secret-key-file", c.SecretKeyFile)
	return cfg, err
}

// readSecret reads a one-line secret file (a Kubernetes secret mounted
// as a file, say). Its content never goes into an error.
func readSecret(flag, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, 4097))
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	if len(b) > 4096 {
		return "", fmt.Errorf("%s %s: larger than 4 KiB, not a key", flag, path)
	}
	s := strings.TrimSpace(string(b))
	if s == "" || strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("%s %s: must hold the key alone on one line", flag, path)
	}
	return s, nil
}

// Open returns the configured stores, not yet started, and what closes
// their shared client (nil without MongoDB). It does no network I/O; it
// reads the S3 credential and CA files.
func (c *StoreConfig) Open() (store.Store, blob.Store, func() error, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, nil, err
	}
	var blobs blob.Store
	switch c.BlobStore() {
	case BlobDisk:
		blobs = disk.New(c.BlobDir)
	case BlobS3:
		cfg, err := c.S3.config()
		if err != nil {
			return nil, nil, nil, err
		}
		if blobs, err = s3blob.New(cfg); err != nil {
			return nil, nil, nil, err
		}
	}
	if c.Store == StoreSQLite {
		return sqlitestore.New(sqlitestore.Config{Path: c.SQLitePath, Metrics: c.Metrics}), blobs, nil, nil
	}
	client, err := mongo.Connect(options.Client().ApplyURI(c.MongoDBURI).
		SetConnectTimeout(10 * time.Second).SetServerSelectionTimeout(10 * time.Second).
		SetMonitor(c.Metrics.MongoMonitor()))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("files.mongodb-uri: %w", err)
	}
	db := client.Database(c.MongoDBDatabase, mongoDatabaseOptions())
	closer := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return client.Disconnect(ctx)
	}
	if blobs == nil {
		blobs = gridfs.New(db, c.GridFSBucket, 0)
	}
	return mongostore.New(db), blobs, closer, nil
}
