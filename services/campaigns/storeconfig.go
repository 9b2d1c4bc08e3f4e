package campaigns

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/services/campaigns/store"
	"github.com/fleetacs/fleetacs/services/campaigns/store/mongostore"
	"github.com/fleetacs/fleetacs/services/campaigns/store/sqlitestore"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// Store backends StoreConfig.Store names.
const (
	StoreSQLite  = "sqlite"
	StoreMongoDB = "mongodb"
)

// StoreConfig chooses where campaigns and their devices' progress are
// kept: an SQLite file (the embedded default) or MongoDB (collections
// "campaigns", "campaign_keys" and "campaign_devices").
type StoreConfig struct {
	Store           string
	SQLitePath      string
	MongoDBURI      string
	MongoDBDatabase string
	// Metrics, if set, records the latency and errors of every MongoDB
	// command (telemetry.ClientMetrics). Not a flag.
	Metrics *telemetry.ClientMetrics
}

// RegisterFlags registers the flags with their defaults.
func (c *StoreConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Store, "campaigns.store", StoreSQLite, "campaign store: sqlite or mongodb")
	fs.StringVar(&c.SQLitePath, "campaigns.sqlite-path", "data/campaigns.db", "database file of the sqlite campaign store (default: campaigns.db in -data-dir)")
	fs.StringVar(&c.MongoDBURI, "campaigns.mongodb-uri", "", "MongoDB connection URI of the mongodb campaign store (mongodb:// or mongodb+srv://)")
	fs.StringVar(&c.MongoDBDatabase, "campaigns.mongodb-database", "fleetacs", "MongoDB database of the mongodb campaign store")
}

// Validate reports every setting that cannot work.
func (c *StoreConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.Store {
	case StoreSQLite:
		if c.SQLitePath == "" || strings.ContainsAny(c.SQLitePath, "?#") {
			bad("campaigns.sqlite-path %q must be a file name without '?' or '#'", c.SQLitePath)
		}
	case StoreMongoDB:
		if !strings.HasPrefix(c.MongoDBURI, "mongodb://") && !strings.HasPrefix(c.MongoDBURI, "mongodb+srv://") {
			bad("campaigns.mongodb-uri must start with mongodb:// or mongodb+srv:// with campaigns.store=mongodb")
		}
		if c.MongoDBDatabase == "" || len(c.MongoDBDatabase) > 63 || strings.ContainsAny(c.MongoDBDatabase, "/\\. \"$*<>:|?\x00") {
			bad("campaigns.mongodb-database %q is not a valid MongoDB database name", c.MongoDBDatabase)
		}
	default:
		bad("campaigns.store must be %q or %q, got %q", StoreSQLite, StoreMongoDB, c.Store)
	}
	return errors.Join(errs...)
}

// Open returns the configured store, not yet started, and what closes its
// client (nil for sqlite). It does no I/O.
func (c *StoreConfig) Open() (store.Store, func() error, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	if c.Store == StoreSQLite {
		return sqlitestore.New(sqlitestore.Config{Path: c.SQLitePath, Metrics: c.Metrics}), nil, nil
	}
	client, err := mongo.Connect(options.Client().ApplyURI(c.MongoDBURI).
		SetConnectTimeout(10 * time.Second).SetServerSelectionTimeout(10 * time.Second).
		SetMonitor(c.Metrics.MongoMonitor()))
	if err != nil {
		return nil, nil, fmt.Errorf("campaigns.mongodb-uri: %w", err)
	}
	closer := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return client.Disconnect(ctx)
	}
	return mongostore.New(client.Database(c.MongoDBDatabase)), closer, nil
}
