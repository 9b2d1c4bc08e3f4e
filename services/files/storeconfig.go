package files

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/services/files/blob"
	"github.com/fleetacs/fleetacs/services/files/blob/disk"
	"github.com/fleetacs/fleetacs/services/files/blob/gridfs"
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

// StoreConfig chooses where records and bytes are kept: "sqlite" keeps
// records in an SQLite file and bytes in a directory (the embedded
// default); "mongodb" keeps records in the collection "files" and bytes in
// a GridFS bucket of one database.
type StoreConfig struct {
	Store           string
	SQLitePath      string
	BlobDir         string
	MongoDBURI      string
	MongoDBDatabase string
	GridFSBucket    string
	// Metrics, if set, records the latency and errors of every MongoDB
	// command (telemetry.ClientMetrics). Not a flag.
	Metrics *telemetry.ClientMetrics
}

// DefaultStoreConfig returns the defaults RegisterFlags registers.
func DefaultStoreConfig() StoreConfig {
	var c StoreConfig
	c.RegisterFlags(flag.NewFlagSet("defaults", flag.ContinueOnError))
	return c
}

// RegisterFlags registers the flags with their defaults.
func (c *StoreConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Store, "files.store", StoreSQLite, "file store: sqlite (records in an SQLite file, bytes in -files.blob-dir) or mongodb (records and GridFS bytes in one database)")
	fs.StringVar(&c.SQLitePath, "files.sqlite-path", "data/files.db", "database file of the sqlite file store (default: files.db in -data-dir)")
	fs.StringVar(&c.BlobDir, "files.blob-dir", "data/files", "directory of the files' bytes with files.store=sqlite (default: files in -data-dir)")
	fs.StringVar(&c.MongoDBURI, "files.mongodb-uri", "", "MongoDB connection URI of the mongodb file store (mongodb:// or mongodb+srv://)")
	fs.StringVar(&c.MongoDBDatabase, "files.mongodb-database", "fleetacs", "MongoDB database of the mongodb file store (collection \"files\" and the GridFS bucket)")
	fs.StringVar(&c.GridFSBucket, "files.gridfs-bucket", gridfs.DefaultBucket, "GridFS bucket of the files' bytes with files.store=mongodb")
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
		if c.BlobDir == "" {
			bad("files.blob-dir must not be empty with files.store=sqlite")
		}
	case StoreMongoDB:
		if !strings.HasPrefix(c.MongoDBURI, "mongodb://") && !strings.HasPrefix(c.MongoDBURI, "mongodb+srv://") {
			bad("files.mongodb-uri must start with mongodb:// or mongodb+srv:// with files.store=mongodb")
		}
		if c.MongoDBDatabase == "" || len(c.MongoDBDatabase) > 63 || strings.ContainsAny(c.MongoDBDatabase, "/\\. \"$*<>:|?\x00") {
			bad("files.mongodb-database %q is not a valid MongoDB database name", c.MongoDBDatabase)
		}
		if c.GridFSBucket == "" || strings.ContainsAny(c.GridFSBucket, "$\x00 ") {
			bad("files.gridfs-bucket %q is not a valid bucket name", c.GridFSBucket)
		}
	default:
		bad("files.store must be %q or %q, got %q", StoreSQLite, StoreMongoDB, c.Store)
	}
	return errors.Join(errs...)
}

// Open returns the configured stores, not yet started, and what closes
// their shared client (nil for sqlite). It does no I/O.
func (c *StoreConfig) Open() (store.Store, blob.Store, func() error, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, nil, err
	}
	if c.Store == StoreSQLite {
		return sqlitestore.New(sqlitestore.Config{Path: c.SQLitePath, Metrics: c.Metrics}), disk.New(c.BlobDir), nil, nil
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
	return mongostore.New(db), gridfs.New(db, c.GridFSBucket, 0), closer, nil
}
