package sqlitestore_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/services/inventory/store"
	"github.com/fleetacs/fleetacs/services/inventory/store/sqlitestore"
	"github.com/fleetacs/fleetacs/services/inventory/storetest"
)

// columns of each credentials field.
var credColumns = map[string][3]string{
	storetest.FieldConnectionRequest:        {"cr_username", "cr_password", "cr_password_key"},
	storetest.FieldCPE:                      {"cpe_username", "cpe_password", "cpe_password_key"},
	storetest.FieldConnectionRequestPending: {"crp_username", "crp_password", "crp_password_key"},
}

// rawDB opens the file without the adapter.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func secretsHarness(t *testing.T) storetest.SecretsHarness {
	path := filepath.Join(t.TempDir(), "inventory.db")
	return storetest.SecretsHarness{
		Open: func(t *testing.T, keys *secretbox.Keyring) (store.Store, error) {
			s := sqlitestore.New(sqlitestore.Config{Path: path, Secrets: keys})
			if err := s.Start(t.Context()); err != nil {
				return nil, err
			}
			t.Cleanup(func() { s.Close(context.Background()) })
			return s, nil
		},
		Raw: func(t *testing.T, tenant, id, field string) ([]byte, string) {
			c := credColumns[field]
			var pass, key sql.NullString
			err := rawDB(t, path).QueryRow(`SELECT `+c[1]+`, `+c[2]+` FROM devices WHERE tenant = ? AND id = ?`, tenant, id).Scan(&pass, &key)
			if err != nil {
				t.Fatalf("read raw row: %v", err)
			}
			if !key.Valid {
				return []byte(pass.String), ""
			}
			// The column holds base64 text; what matters is that neither
			// the text nor the bytes it encodes are the password.
			b, err := base64.StdEncoding.DecodeString(pass.String)
			if err != nil {
				t.Fatalf("stored password %q is not base64: %v", pass.String, err)
			}
			return append([]byte(pass.String+"|"), b...), key.String
		},
		WriteClear: func(t *testing.T, tenant, id, field, user, password string) {
			c := credColumns[field]
			_, err := rawDB(t, path).Exec(`UPDATE devices SET `+c[0]+` = ?, `+c[1]+` = ?, `+c[2]+` = NULL WHERE tenant = ? AND id = ?`,
				user, password, tenant, id)
			if err != nil {
				t.Fatalf("write clear credentials: %v", err)
			}
			// An older release had no secrets_state either.
			if _, err := rawDB(t, path).Exec(`DELETE FROM secrets_state`); err != nil {
				t.Fatalf("forget secrets state: %v", err)
			}
		},
	}
}

func TestSecretsContract(t *testing.T) {
	storetest.RunSecrets(t, secretsHarness)
}

// TestUpgradeSealsClearPasswords opens a database as the release before
// migration 3 left it (migrations 3 and on undone), passwords in clear, and
// finds them sealed.
func TestUpgradeSealsClearPasswords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	s := sqlitestore.New(sqlitestore.Config{Path: path})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	tenant, id := storetest.SeedOne(t, s)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	for _, q := range []string{
		`UPDATE devices SET cpe_password = 'old-clear-pass', cr_username = 'cr', cr_password = 'old-cr-pass'`,
		`ALTER TABLE devices DROP COLUMN cr_password_key`,
		`ALTER TABLE devices DROP COLUMN cpe_password_key`,
		`ALTER TABLE devices DROP COLUMN crp_username`,
		`ALTER TABLE devices DROP COLUMN crp_password`,
		`ALTER TABLE devices DROP COLUMN crp_password_key`,
		`ALTER TABLE devices DROP COLUMN crp_time`,
		`ALTER TABLE devices DROP COLUMN cr_refused`,
		`ALTER TABLE devices DROP COLUMN presets`,
		`ALTER TABLE devices DROP COLUMN tree_delta`,
		`ALTER TABLE devices DROP COLUMN tree_bytes`,
		`DROP TABLE secrets_state`,
		`DROP TABLE api_tokens`,
		`DROP TABLE api_token_tenants`,
		`DROP TABLE discovery_profiles`,
		`DROP TABLE discovery_failures`,
		`DROP TABLE device_trees`,
		`DROP TABLE store_meta`,
		`DELETE FROM schema_migrations WHERE version >= 3`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s = sqlitestore.New(sqlitestore.Config{Path: path})
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("start on an old database: %v", err)
	}
	defer s.Close(context.Background())
	var cpe, cr string
	if err := rawDB(t, path).QueryRow(`SELECT cpe_password, cr_password FROM devices`).Scan(&cpe, &cr); err != nil {
		t.Fatal(err)
	}
	if cpe == "old-clear-pass" || cr == "old-cr-pass" {
		t.Fatalf("passwords still in clear after the upgrade: %q %q", cpe, cr)
	}
	d, err := s.Get(t.Context(), tenant, id, store.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.CPECredentials.Password != "old-clear-pass" || d.ConnectionRequestCredentials.Password != "old-cr-pass" {
		t.Fatalf("after the upgrade: %+v %+v", d.CPECredentials, d.ConnectionRequestCredentials)
	}
}

// TestFilesArePrivate checks that the database, its WAL and shared-memory
// files and the generated key are readable by their owner only, also when
// an older release left the database world-readable.
func TestFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "inventory.db")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s := sqlitestore.New(sqlitestore.Config{Path: path})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	storetest.SeedOne(t, s)
	for _, name := range []string{"inventory.db", "inventory.db-wal", "inventory.db-shm", "secrets.key"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s has mode %o, want 600", name, got)
		}
	}

	// A directory the store creates is private too.
	fresh := filepath.Join(t.TempDir(), "new", "inventory.db")
	s2 := sqlitestore.New(sqlitestore.Config{Path: fresh})
	if err := s2.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s2.Close(context.Background())
	fi, err := os.Stat(filepath.Dir(fresh))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("created directory has mode %o, want 700", got)
	}
}
