package inventory

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fleetacs/fleetacs/services/inventory/store/mongostore"
	"github.com/fleetacs/fleetacs/services/inventory/store/sqlitestore"
)

func TestDefaultsAreValid(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	s, err := c.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*sqlitestore.Store); !ok {
		t.Fatalf("default store is %T", s)
	}
}

func TestFlags(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	want := []string{"inventory.mongodb-database", "inventory.mongodb-indexed-params", "inventory.mongodb-uri",
		"inventory.secrets-key-file", "inventory.sqlite-indexed-params", "inventory.sqlite-path", "inventory.sqlite-session-cache", "inventory.store"}
	if !slices.Equal(names, want) {
		t.Fatalf("flags = %q, want %q", names, want)
	}
	err := fs.Parse([]string{"-inventory.store=mongodb", "-inventory.mongodb-uri=mongodb://db:27017/?replicaSet=rs0",
		"-inventory.mongodb-indexed-params=Device.DeviceInfo.ModelName, InternetGatewayDevice.DeviceInfo.ModelName,",
		"-inventory.secrets-key-file=/etc/fleetacs/secrets.key"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid mongodb config: %v", err)
	}
	if !slices.Equal(c.MongoDBIndexedParams, []string{"Device.DeviceInfo.ModelName", "InternetGatewayDevice.DeviceInfo.ModelName"}) {
		t.Fatalf("indexed params = %q", c.MongoDBIndexedParams)
	}
	s, err := c.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*mongostore.Store); !ok {
		t.Fatalf("mongodb store is %T", s)
	}
}

func TestValidateRejects(t *testing.T) {
	cases := map[string]func(*Config){
		"unknown store":     func(c *Config) { c.Store = "redis" },
		"empty sqlite path": func(c *Config) { c.SQLitePath = "" },
		"query in path":     func(c *Config) { c.SQLitePath = "x.db?mode=ro" },
		"negative cache":    func(c *Config) { c.SQLiteSessionCache = -1 },
		"none and paths":    func(c *Config) { c.SQLiteIndexedParams = stringList{"none", "Device.X"} },
		"all and paths":     func(c *Config) { c.SQLiteIndexedParams = stringList{"Device.X", "all"} },
		"bad pattern":       func(c *Config) { c.SQLiteIndexedParams = stringList{"Device..X"} },
		"mongodb no uri":    func(c *Config) { c.Store = StoreMongoDB },
		"mongodb no key": func(c *Config) {
			c.Store, c.MongoDBURI = StoreMongoDB, "mongodb://x"
		},
		"mongodb bad uri": func(c *Config) { c.Store, c.MongoDBURI = StoreMongoDB, "http://x" },
		"mongodb bad db": func(c *Config) {
			c.Store, c.MongoDBURI, c.MongoDBDatabase = StoreMongoDB, "mongodb://x", "a.b"
		},
		"mongodb bad param": func(c *Config) {
			c.Store, c.MongoDBURI, c.MongoDBIndexedParams = StoreMongoDB, "mongodb://x", stringList{"Device.X."}
		},
	}
	for name, mutate := range cases {
		c := DefaultConfig()
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "inventory.") {
			t.Errorf("%s: Validate = %v, want an error naming the flag", name, err)
		}
		if _, err := c.NewStore(); err == nil {
			t.Errorf("%s: NewStore accepted an invalid config", name)
		}
	}
}

func TestKeyringLocation(t *testing.T) {
	c := DefaultConfig()
	c.SQLitePath = filepath.Join(t.TempDir(), "data", "inventory.db")
	k := c.Keyring()
	if want := filepath.Join(filepath.Dir(c.SQLitePath), "secrets.key"); k.Path() != want {
		t.Fatalf("default key file %s, want %s", k.Path(), want)
	}
	if created, err := k.Load(); err != nil || !created {
		t.Fatalf("default key file not created: %v, %v", created, err)
	}
	// A file named explicitly is never made up: a typo must not start a
	// new key.
	c.SecretsKeyFile = filepath.Join(t.TempDir(), "typo.key")
	if _, err := c.Keyring().Load(); err == nil {
		t.Fatal("a missing explicit key file was accepted")
	}
	if _, err := os.Stat(c.SecretsKeyFile); err == nil {
		t.Fatal("a missing explicit key file was created")
	}
}
