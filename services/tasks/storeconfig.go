package tasks

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/fleetacs/fleetacs/services/tasks/store"
	"github.com/fleetacs/fleetacs/services/tasks/store/mongostore"
	"github.com/fleetacs/fleetacs/services/tasks/store/sqlitestore"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// Task store backends StoreConfig.Store names.
const (
	StoreSQLite  = "sqlite"
	StoreMongoDB = "mongodb"
)

// StoreConfig chooses and locates the task store (docs/style.md rule 2):
// flags "tasks.store", "tasks.sqlite-path", "tasks.mongodb-uri" and
// "tasks.mongodb-database", their defaults registered by RegisterFlags only.
type StoreConfig struct {
	// Store selects the backend: "sqlite" (embedded, one process) or
	// "mongodb" (production, several replicas).
	Store string
	// SQLitePath is the database file of the sqlite backend.
	SQLitePath string
	// MongoDBURI and MongoDBDatabase locate the mongodb backend; the
	// records are in its collection "tasks".
	MongoDBURI      string
	MongoDBDatabase string
	// Metrics, if set, records the latency and errors of the store's
	// calls (telemetry.ClientMetrics). Not a flag.
	Metrics *telemetry.ClientMetrics
}

// DefaultStoreConfig returns the defaults RegisterFlags registers.
func DefaultStoreConfig() StoreConfig {
	var c StoreConfig
	c.RegisterFlags(flag.NewFlagSet("defaults", flag.ContinueOnError))
	return c
}

// RegisterFlags registers the store's flags with their defaults.
func (c *StoreConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Store, "tasks.store", StoreSQLite, "task store: sqlite (embedded file) or mongodb")
	fs.StringVar(&c.SQLitePath, "tasks.sqlite-path", "data/tasks.db", "database file of the sqlite task store")
	fs.StringVar(&c.MongoDBURI, "tasks.mongodb-uri", "", "MongoDB connection URI of the mongodb task store (mongodb:// or mongodb+srv://)")
	fs.StringVar(&c.MongoDBDatabase, "tasks.mongodb-database", "fleetacs", "MongoDB database of the mongodb task store (collection \"tasks\")")
}

// Validate reports every setting that cannot work.
func (c *StoreConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.Store {
	case StoreSQLite:
		if c.SQLitePath == "" {
			bad("tasks.sqlite-path must not be empty with tasks.store=sqlite")
		} else if strings.ContainsAny(c.SQLitePath, "?#") {
			bad("tasks.sqlite-path %q must not contain '?' or '#'", c.SQLitePath)
		}
	case StoreMongoDB:
		if !strings.HasPrefix(c.MongoDBURI, "mongodb://") && !strings.HasPrefix(c.MongoDBURI, "mongodb+srv://") {
			bad("tasks.mongodb-uri must start with mongodb:// or mongodb+srv:// with tasks.store=mongodb")
		}
		// MongoDB's own rules for database names.
		if c.MongoDBDatabase == "" || len(c.MongoDBDatabase) > 63 || strings.ContainsAny(c.MongoDBDatabase, "/\\. \"$*<>:|?\x00") {
			bad("tasks.mongodb-database %q is not a valid MongoDB database name", c.MongoDBDatabase)
		}
	default:
		bad("tasks.store must be %q or %q, got %q", StoreSQLite, StoreMongoDB, c.Store)
	}
	return errors.Join(errs...)
}

// Open returns the configured store, not yet started: it does no I/O until
// its Start.
func (c *StoreConfig) Open() (store.Store, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Store == StoreMongoDB {
		return mongostore.New(mongostore.Config{URI: c.MongoDBURI, Database: c.MongoDBDatabase, Metrics: c.Metrics}), nil
	}
	return sqlitestore.New(sqlitestore.Config{Path: c.SQLitePath, Metrics: c.Metrics}), nil
}
