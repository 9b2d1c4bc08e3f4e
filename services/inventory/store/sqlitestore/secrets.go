package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// Passwords at rest (storekit, "Passwords at rest"): the password columns
// hold the sealed password in base64 and the *_password_key columns the ID
// of the key that sealed it; a NULL key marks a clear password written
// before migration 3. secrets_state records the key every password was
// sealed with when Start last re-sealed them: this store's writer is the
// only writer of the file, so while the active key stays the same nothing
// can need re-sealing and Start skips the scan.

// sealedText is the password column of sealed credentials.
func sealedText(c *storekit.Sealed) string {
	return base64.StdEncoding.EncodeToString(c.Password)
}

// openStored opens a password as the columns hold it.
func openStored(keys *secretbox.Keyring, tenant, id, field, user, pass, keyID string) (*store.Credentials, error) {
	s := storekit.Sealed{Username: user, KeyID: keyID}
	if keyID == "" {
		s.Password = []byte(pass)
	} else {
		b, err := base64.StdEncoding.DecodeString(pass)
		if err != nil {
			return nil, fmt.Errorf("decode %s password of %s/%s: %w", field, tenant, id, secretbox.ErrOpen)
		}
		s.Password = b
	}
	return storekit.Open(keys, tenant, id, field, s)
}

// reseal seals the passwords stored in clear and re-seals those sealed
// with another key than the active one, in one transaction, before the
// writer starts; it returns how many it wrote.
func reseal(ctx context.Context, db *sql.DB, keys *secretbox.Keyring) (n int, err error) {
	active := keys.ActiveID()
	err = inTx(ctx, db, func(tx *sql.Tx) error {
		var done string
		err := tx.QueryRowContext(ctx, `SELECT key_id FROM secrets_state WHERE id = 1`).Scan(&done)
		if err == nil && done == active {
			return nil
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read secrets state: %w", err)
		}
		for _, f := range []struct{ field, user, pass, key string }{
			{storekit.FieldConnectionRequest, "cr_username", "cr_password", "cr_password_key"},
			{storekit.FieldCPE, "cpe_username", "cpe_password", "cpe_password_key"},
			{storekit.FieldConnectionRequestPending, "crp_username", "crp_password", "crp_password_key"},
		} {
			m, err := resealColumn(ctx, tx, keys, f.field, f.user, f.pass, f.key)
			if err != nil {
				return err
			}
			n += m
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO secrets_state (id, key_id) VALUES (1, ?)
			ON CONFLICT (id) DO UPDATE SET key_id = excluded.key_id`, active)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("seal stored passwords: %w", err)
	}
	return n, nil
}

func resealColumn(ctx context.Context, tx *sql.Tx, keys *secretbox.Keyring, field, user, pass, key string) (int, error) {
	type row struct{ tenant, id, user, pass, key string }
	var todo []row
	rows, err := tx.QueryContext(ctx, `SELECT tenant, id, `+user+`, coalesce(`+pass+`, ''), coalesce(`+key+`, '')
		FROM devices WHERE `+user+` IS NOT NULL AND (`+key+` IS NULL OR `+key+` != ?)`, keys.ActiveID())
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.tenant, &r.id, &r.user, &r.pass, &r.key); err != nil {
			rows.Close()
			return 0, err
		}
		todo = append(todo, r)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, err
	}
	stmt, err := tx.PrepareContext(ctx, `UPDATE devices SET `+pass+` = ?, `+key+` = ? WHERE tenant = ? AND id = ?`)
	if err != nil {
		return 0, err
	}
	defer stmt.Close()
	for _, r := range todo {
		c, err := openStored(keys, r.tenant, r.id, field, r.user, r.pass, r.key)
		if err != nil {
			return 0, err
		}
		s, err := storekit.Seal(keys, r.tenant, r.id, field, c)
		if err != nil {
			return 0, err
		}
		if _, err := stmt.ExecContext(ctx, sealedText(s), s.KeyID, r.tenant, r.id); err != nil {
			return 0, err
		}
	}
	return len(todo), nil
}

// privateFiles makes the database file and its WAL and shared-memory files
// readable by their owner only, creating the database file so that SQLite,
// which gives the WAL and shared-memory files the mode of the database
// file, never creates them more open. It also closes up files an older
// release left with the process's umask.
func privateFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
