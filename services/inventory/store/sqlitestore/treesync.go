package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// syncTrees brings the database in line with the tree layout and the
// configured index, at Start, before the writer runs:
//
//   - a database from before trees (no "trees" in store_meta) has its
//     parameter rows gathered into one tree per device;
//   - when the indexed patterns differ from those the rows of parameters
//     follow ("indexed_params"), the rows are rebuilt from the trees.
//
// Each step is one transaction, so a crash leaves the step to be done
// again. Both read every tree: on a large fleet they make Start take a
// while (rebuilding 31 index rows for each of 20,000 devices took 13 s on
// the loaded development machine), and the process reports ready only
// after.
func syncTrees(ctx context.Context, db *sql.DB, idx *indexSet) error {
	meta := func(tx *sql.Tx, key string) (string, bool, error) {
		var v string
		err := tx.QueryRowContext(ctx, `SELECT value FROM store_meta WHERE key = ?`, key).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			return "", false, nil
		}
		return v, err == nil, err
	}
	setMeta := func(tx *sql.Tx, key, value string) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO store_meta (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
		return err
	}
	err := inTx(ctx, db, func(tx *sql.Tx) error {
		_, done, err := meta(tx, "trees")
		if err != nil || done {
			return err
		}
		if err := rowsToTrees(ctx, tx); err != nil {
			return err
		}
		// The rows are now every entry: whatever the patterns, the index
		// step below must rebuild them. (Not by recording "": that is
		// what no patterns at all record.)
		if _, err := tx.ExecContext(ctx, `DELETE FROM store_meta WHERE key = 'indexed_params'`); err != nil {
			return err
		}
		return setMeta(tx, "trees", "1")
	})
	if err != nil {
		return fmt.Errorf("gather parameter rows into trees: %w", err)
	}
	err = inTx(ctx, db, func(tx *sql.Tx) error {
		have, found, err := meta(tx, "indexed_params")
		if err != nil || found && have == idx.String() {
			return err
		}
		if err := rebuildIndex(ctx, tx, idx); err != nil {
			return err
		}
		return setMeta(tx, "indexed_params", idx.String())
	})
	if err != nil {
		return fmt.Errorf("rebuild the parameter index: %w", err)
	}
	return nil
}

// rowsToTrees writes the tree of every device that has parameter rows.
func rowsToTrees(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT tenant, device_id, path, value, type, writable, notification, updated
		FROM parameters ORDER BY tenant, device_id, path`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		tenant, id string
		entries    []treeEntry
		buf        []byte
	)
	flush := func() error {
		if len(entries) == 0 {
			return nil
		}
		buf = encodeTree(buf[:0], entries)
		entries = entries[:0]
		_, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO device_trees (tenant, device_id, tree) VALUES (?, ?, ?)`, tenant, id, buf)
		return err
	}
	for rows.Next() {
		var (
			t, d, path             string
			value, typ             sql.NullString
			writable, notification sql.NullInt64
			updated                sql.NullInt64
		)
		if err := rows.Scan(&t, &d, &path, &value, &typ, &writable, &notification, &updated); err != nil {
			return err
		}
		if t != tenant || d != id {
			if err := flush(); err != nil {
				return err
			}
			tenant, id = t, d
		}
		p := store.Parameter{Value: value.String, Type: typ.String, HasValue: value.Valid, Updated: fromMS(updated)}
		if writable.Valid {
			p.Writable = store.TriOf(writable.Int64 != 0)
		}
		if notification.Valid {
			p.Notification = store.NotificationOf(int(notification.Int64))
		}
		entries = append(entries, treeEntry{path: path, Parameter: p})
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return flush()
}

// rebuildIndex replaces the rows of parameters with the indexed entries
// of every tree.
func rebuildIndex(ctx context.Context, tx *sql.Tx, idx *indexSet) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM parameters`); err != nil {
		return err
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO parameters (tenant, device_id, path, value, type, number, instant, writable, notification, updated)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer ins.Close()
	// Every device with a tree or a delta (treedelta.go); a tree without
	// its device row (none should be left: Delete removes both) has no
	// entries a filter could reach.
	rows, err := tx.QueryContext(ctx, `SELECT d.tenant, d.id, t.tree, d.tree_delta
		FROM devices d LEFT JOIN device_trees t ON t.tenant = d.tenant AND t.device_id = d.id
		WHERE t.tree IS NOT NULL OR d.tree_delta IS NOT NULL`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var entries []treeEntry
	for rows.Next() {
		var (
			tenant, id string
			tree       []byte
			delta      []byte
		)
		if err := rows.Scan(&tenant, &id, &tree, &delta); err != nil {
			return err
		}
		if entries, err = decodeMerged(tree, delta, nil); err != nil {
			return fmt.Errorf("device %s/%s: %w", tenant, id, err)
		}
		for i := range entries {
			e := &entries[i]
			if !idx.has(e.path) {
				continue
			}
			value, typ, number, instant := rowValue(&e.Parameter)
			writable, notification := attributeColumns(e.Writable, e.Notification)
			if _, err := ins.ExecContext(ctx, tenant, id, e.path, value, typ, number, instant, writable, notification,
				msOrZero(e.Updated)); err != nil {
				return err
			}
		}
	}
	return rows.Err()
}

// rowValue is the value columns of an entry's row in parameters: NULL
// where unknown.
func rowValue(p *store.Parameter) (value, typ, number, instant any) {
	if !p.HasValue {
		return nil, nil, nil, nil
	}
	value, typ = p.Value, p.Type
	switch {
	case slices.Contains(store.IntegerTypes, p.Type):
		if n, ok := store.ParseInteger(p.Value); ok {
			number = n
		}
	case p.Type == store.DateTimeType:
		if t, ok := store.ParseInstant(p.Value); ok {
			instant = t.UnixMilli()
		}
	}
	return value, typ, number, instant
}

func msOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
