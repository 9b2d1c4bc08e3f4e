// Package inventory is the inventory service (docs/design.md §1, §3): devices, their
// parameter trees and tags, behind the storage port of package store, kept
// in MongoDB in production and in an embedded SQLite file by default.
package inventory

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/services/inventory/presetstore"
	"github.com/fleetacs/fleetacs/services/inventory/presetstore/mongopresets"
	"github.com/fleetacs/fleetacs/services/inventory/presetstore/sqlitepresets"
	"github.com/fleetacs/fleetacs/services/inventory/store"
	"github.com/fleetacs/fleetacs/services/inventory/store/mongostore"
	"github.com/fleetacs/fleetacs/services/inventory/store/sqlitestore"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// Store backends Config.Store names.
const (
	StoreSQLite  = "sqlite"
	StoreMongoDB = "mongodb"
)

// Config is the inventory service's configuration (docs/style.md rule 2). Flags are
// "inventory.<kebab-name>"; DefaultConfig holds the defaults.
type Config struct {
	// Store selects the backend: "sqlite" (embedded, the default of `make
	// run`) or "mongodb" (production).
	Store string
	// SQLitePath is the database file of the sqlite backend.
	SQLitePath string
	// Metrics, if set, records the latency and errors of the store's
	// calls (telemetry.ClientMetrics). Not a flag.
	Metrics *telemetry.ClientMetrics
	// SQLiteSessionCache is how many devices' session start states the
	// sqlite store keeps in memory (sqlitestore.Config.SessionCache).
	SQLiteSessionCache int
	// SQLiteIndexedParams are the patterns of the parameter paths the
	// sqlite store indexes for filters (sqlitestore.Config.IndexedParams:
	// "*" one segment, a trailing "." a subtree, "all" every path, "none"
	// no path).
	SQLiteIndexedParams stringList
	// MongoDBURI and MongoDBDatabase locate the mongodb backend.
	MongoDBURI      string
	MongoDBDatabase string
	// MongoDBIndexedParams are parameter paths whose values get an index
	// in MongoDB, for the parameter conditions operators query most.
	MongoDBIndexedParams stringList
	// SecretsKeyFile is the key file that seals the device passwords the
	// store keeps (package secretbox). Empty with the sqlite store:
	// "secrets.key" beside the database file, created with a fresh key at
	// first start. The mongodb store needs it set: every inventory process
	// on one database must use the same keys.
	SecretsKeyFile string
}

// DefaultConfig returns the defaults RegisterFlags registers.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("defaults", flag.ContinueOnError))
	return c
}

// RegisterFlags registers the service's flags, named "inventory.<name>",
// with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Store, "inventory.store", StoreSQLite, "device store: sqlite (embedded file) or mongodb")
	fs.StringVar(&c.SQLitePath, "inventory.sqlite-path", "data/inventory.db", "database file of the sqlite store")
	fs.IntVar(&c.SQLiteSessionCache, "inventory.sqlite-session-cache", 100_000, "devices whose session start state and device row the sqlite store keeps in memory, about 1 KB each (0: none)")
	c.SQLiteIndexedParams = slices.Clone(sqlitestore.DefaultIndexedParams)
	fs.Var(&c.SQLiteIndexedParams, "inventory.sqlite-indexed-params", "comma-separated patterns of the parameter paths the sqlite store indexes for filters (\"*\" one path segment, a trailing \".\" a subtree; \"all\": every path, first contacts several times slower; \"none\"); a filter on any other path reads every device's tree; a change rebuilds the index at start")
	fs.StringVar(&c.MongoDBURI, "inventory.mongodb-uri", "", "MongoDB connection URI of the mongodb store (mongodb:// or mongodb+srv://)")
	fs.StringVar(&c.MongoDBDatabase, "inventory.mongodb-database", "fleetacs", "MongoDB database of the mongodb store")
	c.MongoDBIndexedParams = nil
	fs.Var(&c.MongoDBIndexedParams, "inventory.mongodb-indexed-params", "comma-separated parameter paths whose values the mongodb store indexes, for frequent parameter conditions")
	fs.StringVar(&c.SecretsKeyFile, "inventory.secrets-key-file", "", "file of the keys that encrypt device passwords at rest, one \"[ID ]BASE64\" line per 32-byte key, the first encrypting (empty: secrets.key beside the sqlite database, created at first start; required with mongodb)")
}

// Validate reports every setting that cannot work.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.Store {
	case StoreSQLite:
		if c.SQLitePath == "" {
			bad("inventory.sqlite-path must not be empty with inventory.store=sqlite")
		} else if strings.ContainsAny(c.SQLitePath, "?#") {
			bad("inventory.sqlite-path %q must not contain '?' or '#'", c.SQLitePath)
		}
		if len(c.SQLiteIndexedParams) > 1 && (slices.Contains(c.SQLiteIndexedParams, "none") || slices.Contains(c.SQLiteIndexedParams, sqlitestore.IndexAll)) {
			bad("inventory.sqlite-indexed-params: %q and %q stand alone, got %q", "none", sqlitestore.IndexAll, c.SQLiteIndexedParams.String())
		}
		for _, p := range c.SQLiteIndexedParams {
			if p == sqlitestore.IndexAll || p == "none" {
				continue
			}
			if err := store.ValidatePath(strings.ReplaceAll(p, "*", "x")); err != nil {
				bad("inventory.sqlite-indexed-params: %q is not a path pattern", p)
			}
		}
		if c.SQLiteSessionCache < 0 {
			bad("inventory.sqlite-session-cache must not be negative, got %d", c.SQLiteSessionCache)
		}
	case StoreMongoDB:
		if !strings.HasPrefix(c.MongoDBURI, "mongodb://") && !strings.HasPrefix(c.MongoDBURI, "mongodb+srv://") {
			bad("inventory.mongodb-uri must start with mongodb:// or mongodb+srv:// with inventory.store=mongodb")
		}
		// MongoDB's own rules for database names.
		if c.MongoDBDatabase == "" || len(c.MongoDBDatabase) > 63 || strings.ContainsAny(c.MongoDBDatabase, "/\\. \"$*<>:|?\x00") {
			bad("inventory.mongodb-database %q is not a valid MongoDB database name", c.MongoDBDatabase)
		}
		for _, p := range c.MongoDBIndexedParams {
			if err := store.ValidatePath(p); err != nil || store.IsObjectPath(p) {
				bad("inventory.mongodb-indexed-params: %q is not a parameter path", p)
			}
		}
		if c.SecretsKeyFile == "" {
			bad("inventory.secrets-key-file is required with inventory.store=mongodb (every inventory process on the database needs the same file; create it with: head -c 32 /dev/urandom | base64 > secrets.key; chmod 600 secrets.key)")
		}
	default:
		bad("inventory.store must be %q or %q, got %q", StoreSQLite, StoreMongoDB, c.Store)
	}
	return errors.Join(errs...)
}

// Keyring returns the keyring of SecretsKeyFile, not yet loaded: the
// store loads it when it starts. Only the default file of the sqlite store
// is created when missing; a file named explicitly must exist, so that a
// mistyped path is an error rather than a new key.
func (c *Config) Keyring() *secretbox.Keyring {
	if c.SecretsKeyFile != "" {
		return secretbox.File(c.SecretsKeyFile, false)
	}
	return sqlitestore.DefaultSecrets(c.SQLitePath)
}

// NewStore returns the configured store, not yet started: it does no I/O
// until its Start.
func (c *Config) NewStore() (store.Store, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Store == StoreMongoDB {
		return mongostore.New(mongostore.Config{
			URI:           c.MongoDBURI,
			Database:      c.MongoDBDatabase,
			IndexedParams: c.MongoDBIndexedParams,
			Secrets:       c.Keyring(),
			Metrics:       c.Metrics,
		}), nil
	}
	cache := c.SQLiteSessionCache
	if cache == 0 {
		cache = -1 // sqlitestore: 0 means its default, negative none
	}
	indexed := []string(c.SQLiteIndexedParams)
	if slices.Contains(indexed, "none") || indexed == nil {
		indexed = []string{}
	}
	return sqlitestore.New(sqlitestore.Config{Path: c.SQLitePath, SessionCache: cache, Secrets: c.Keyring(),
		IndexedParams: indexed, Metrics: c.Metrics}), nil
}

// stringList is a comma-separated flag value.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	*l = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// NewPresetStore returns the preset store (docs/provisioning.md) beside
// the device store, not yet started: with sqlite, presets.db in the
// directory of SQLitePath; with mongodb, collections of the same database.
func (c *Config) NewPresetStore() (presetstore.Store, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Store == StoreMongoDB {
		return mongopresets.New(mongopresets.Config{URI: c.MongoDBURI, Database: c.MongoDBDatabase, Metrics: c.Metrics}), nil
	}
	return sqlitepresets.New(filepath.Join(filepath.Dir(c.SQLitePath), "presets.db")).WithMetrics(c.Metrics), nil
}
