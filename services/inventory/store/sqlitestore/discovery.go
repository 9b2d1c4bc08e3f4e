package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// Discovery profiles live in two tables of their own (migration 5):
// discovery_profiles holds a class's largest answered batch, its
// whole-tree GetParameterNames flag and time, discovery_failures every
// failed batch size. The writes are upserts that only ever raise the OK,
// set the flag and add sizes, which is the store's merge; the smallest
// failure above the OK is chosen when the profile is read. They are rare
// (a discovery that taught something new), so their statements are
// prepared per write rather than kept by the writer.

const (
	upsertProfileSQL = `INSERT INTO discovery_profiles (tenant, oui, product_class, gpv_ok, subtree_gpn_failed, updated)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant, oui, product_class) DO UPDATE SET
	gpv_ok = MAX(gpv_ok, excluded.gpv_ok),
	subtree_gpn_failed = MAX(subtree_gpn_failed, excluded.subtree_gpn_failed),
	updated = MAX(updated, excluded.updated)`
	insertFailureSQL = `INSERT OR IGNORE INTO discovery_failures (tenant, oui, product_class, size) VALUES (?, ?, ?, ?)`
	readProfileSQL   = `SELECT p.gpv_ok, p.subtree_gpn_failed, p.updated,
	COALESCE((SELECT MIN(f.size) FROM discovery_failures f
		WHERE f.tenant = p.tenant AND f.oui = p.oui AND f.product_class = p.product_class AND f.size > p.gpv_ok), 0)
FROM discovery_profiles p WHERE p.tenant = ? AND p.oui = ? AND p.product_class = ?`
)

// DiscoveryProfile implements store.Store.
func (s *Store) DiscoveryProfile(ctx context.Context, c store.ProductClass) (store.DiscoveryProfile, error) {
	c, err := store.NormalizeProductClass(c)
	if err != nil {
		return store.DiscoveryProfile{}, fmt.Errorf("read discovery profile: %w", err)
	}
	st, err := s.state()
	if err != nil {
		return store.DiscoveryProfile{}, fmt.Errorf("read discovery profile: %w", err)
	}
	var (
		p       store.DiscoveryProfile
		subtree int64
		updated sql.NullInt64
	)
	err = st.r.QueryRowContext(ctx, readProfileSQL, c.Tenant, c.OUI, c.ProductClass).Scan(&p.GPVBatchOK, &subtree, &updated, &p.GPVBatchFailed)
	if errors.Is(err, sql.ErrNoRows) {
		return store.DiscoveryProfile{}, nil
	}
	if err != nil {
		return store.DiscoveryProfile{}, fmt.Errorf("read discovery profile of %s/%s: %w", c.OUI, c.ProductClass, err)
	}
	p.SubtreeGPNFailed, p.Updated = subtree != 0, fromMS(updated)
	return p, nil
}

// RecordDiscovery implements store.Store.
func (s *Store) RecordDiscovery(ctx context.Context, c store.ProductClass, o store.DiscoveryObservation, at time.Time) error {
	c, err := store.NormalizeProductClass(c)
	if err == nil {
		err = store.ValidateObservation(o)
	}
	if err != nil {
		return fmt.Errorf("record discovery: %w", err)
	}
	subtree := 0
	if o.SubtreeGPNFailed {
		subtree = 1
	}
	updated := storekit.Time(at).UnixMilli()
	err = s.submit(ctx, func(w *writer) error {
		if _, err := w.exec(upsertProfileSQL, c.Tenant, c.OUI, c.ProductClass, int64(o.GPVBatchOK), int64(subtree), updated); err != nil {
			return err
		}
		if o.GPVBatchFailed > 0 {
			_, err := w.exec(insertFailureSQL, c.Tenant, c.OUI, c.ProductClass, int64(o.GPVBatchFailed))
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record discovery of %s/%s: %w", c.OUI, c.ProductClass, err)
	}
	return nil
}
