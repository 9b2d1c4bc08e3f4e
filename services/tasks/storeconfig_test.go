package tasks

import (
	"flag"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetacs/fleetacs/services/tasks/store/mongostore"
	"github.com/fleetacs/fleetacs/services/tasks/store/sqlitestore"
)

func TestStoreConfigDefaults(t *testing.T) {
	c := DefaultStoreConfig()
	if c.Store != StoreSQLite || c.SQLitePath == "" || c.MongoDBDatabase == "" {
		t.Fatalf("defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestStoreConfigFlags(t *testing.T) {
	var c StoreConfig
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-tasks.store=mongodb", "-tasks.mongodb-uri=mongodb://h:27017", "-tasks.mongodb-database=acs"}); err != nil {
		t.Fatal(err)
	}
	s, err := c.Open()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*mongostore.Store); !ok {
		t.Fatalf("Open returned %T, want a mongostore", s)
	}
}

func TestStoreConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  StoreConfig
		want string
	}{
		{StoreConfig{Store: "redis"}, "tasks.store must be"},
		{StoreConfig{Store: StoreSQLite}, "tasks.sqlite-path must not be empty"},
		{StoreConfig{Store: StoreSQLite, SQLitePath: "x.db?mode=ro"}, "must not contain"},
		{StoreConfig{Store: StoreMongoDB, MongoDBURI: "http://h", MongoDBDatabase: "a"}, "tasks.mongodb-uri must start"},
		{StoreConfig{Store: StoreMongoDB, MongoDBURI: "mongodb://h", MongoDBDatabase: "a.b"}, "tasks.mongodb-database"},
		{StoreConfig{Store: StoreMongoDB, MongoDBURI: "mongodb://h"}, "tasks.mongodb-database"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want %q", c.cfg, err, c.want)
		}
		if _, err := c.cfg.Open(); err == nil {
			t.Errorf("Open(%+v) succeeded", c.cfg)
		}
	}
}

func TestStoreConfigOpenSQLiteDoesNoIO(t *testing.T) {
	dir := t.TempDir()
	c := StoreConfig{Store: StoreSQLite, SQLitePath: filepath.Join(dir, "sub", "tasks.db")}
	s, err := c.Open()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*sqlitestore.Store); !ok {
		t.Fatalf("Open returned %T, want a sqlitestore", s)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Fatalf("Open created files: %v", m)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
