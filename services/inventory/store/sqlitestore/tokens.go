package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
)

// API tokens (package apiauth): the embedded default keeps them in the
// inventory's database, so that `fleetacs all` needs nothing else. A token
// is a row of api_tokens (hash in hex, tenants space-separated) and one row
// of api_token_tenants per tenant, which ListTokens by tenant reads through
// its primary key. Writes go through the writer like every other write.

var _ apiauth.TokenStore = (*Store)(nil)

const tokenColumns = `id, hash, name, role, all_tenants, tenants, creator, created, expires, revoked`

func scanToken(sc interface{ Scan(...any) error }) (apiauth.TokenRecord, error) {
	var (
		r                apiauth.TokenRecord
		hash, tenants    string
		role             int64
		all              bool
		created          int64
		expires, revoked sql.NullInt64
	)
	if err := sc.Scan(&r.ID, &hash, &r.Name, &role, &all, &tenants, &r.Creator, &created, &expires, &revoked); err != nil {
		return apiauth.TokenRecord{}, err
	}
	b, err := hex.DecodeString(hash)
	if err != nil || len(b) != len(r.Hash) {
		return apiauth.TokenRecord{}, fmt.Errorf("token %s: stored hash is malformed", r.ID)
	}
	copy(r.Hash[:], b)
	r.Role, r.AllTenants = authv1.Role(role), all
	if tenants != "" {
		r.Tenants = strings.Split(tenants, " ")
	}
	r.Created, r.Expires, r.Revoked = fromMS(sql.NullInt64{Int64: created, Valid: true}), fromMS(expires), fromMS(revoked)
	return r, nil
}

func msOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// CreateToken implements apiauth.TokenStore.
func (s *Store) CreateToken(ctx context.Context, r apiauth.TokenRecord) error {
	err := s.submit(ctx, func(w *writer) error {
		n, err := w.exec(`INSERT INTO api_tokens (`+tokenColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`,
			r.ID, hex.EncodeToString(r.Hash[:]), r.Name, int64(r.Role), r.AllTenants, strings.Join(r.Tenants, " "),
			r.Creator, r.Created.UnixMilli(), msOrNil(r.Expires), msOrNil(r.Revoked))
		if err != nil {
			return err
		}
		if n == 0 {
			return refuse(apiauth.ErrTokenExists)
		}
		for _, t := range r.Tenants {
			if _, err := w.exec(`INSERT OR IGNORE INTO api_token_tenants (tenant, token_id) VALUES (?, ?)`, t, r.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create token %s: %w", r.ID, err)
	}
	return nil
}

// GetToken implements apiauth.TokenStore.
func (s *Store) GetToken(ctx context.Context, id string) (apiauth.TokenRecord, error) {
	r, err := s.getToken(ctx, id)
	if err != nil {
		return apiauth.TokenRecord{}, fmt.Errorf("get token %s: %w", id, err)
	}
	return r, nil
}

func (s *Store) getToken(ctx context.Context, id string) (apiauth.TokenRecord, error) {
	st, err := s.state()
	if err != nil {
		return apiauth.TokenRecord{}, err
	}
	r, err := scanToken(st.r.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return apiauth.TokenRecord{}, apiauth.ErrTokenNotFound
	}
	return r, err
}

// ListTokens implements apiauth.TokenStore.
func (s *Store) ListTokens(ctx context.Context, q apiauth.TokenQuery) ([]apiauth.TokenRecord, bool, error) {
	out, more, err := s.listTokens(ctx, q)
	if err != nil {
		return nil, false, fmt.Errorf("list tokens: %w", err)
	}
	return out, more, nil
}

func (s *Store) listTokens(ctx context.Context, q apiauth.TokenQuery) ([]apiauth.TokenRecord, bool, error) {
	st, err := s.state()
	if err != nil {
		return nil, false, err
	}
	query := `SELECT ` + tokenColumns + ` FROM api_tokens WHERE id > ?`
	args := []any{q.After}
	if q.Tenant != "" {
		query += ` AND (all_tenants = 1 OR id IN (SELECT token_id FROM api_token_tenants WHERE tenant = ?))`
		args = append(args, q.Tenant)
	}
	if !q.ActiveAt.IsZero() {
		query += ` AND revoked IS NULL AND (expires IS NULL OR expires > ?)`
		args = append(args, q.ActiveAt.UnixMilli())
	}
	query += ` ORDER BY id LIMIT ?`
	args = append(args, q.Limit+1)
	rows, err := st.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	var out []apiauth.TokenRecord
	for rows.Next() {
		r, err := scanToken(rows)
		if err != nil {
			return nil, false, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	if len(out) > q.Limit {
		return out[:q.Limit], true, nil
	}
	return out, false, nil
}

// RevokeToken implements apiauth.TokenStore.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) (apiauth.TokenRecord, error) {
	err := s.submit(ctx, func(w *writer) error {
		_, err := w.exec(`UPDATE api_tokens SET revoked = ? WHERE id = ? AND revoked IS NULL`, at.UnixMilli(), id)
		return err
	})
	var r apiauth.TokenRecord
	if err == nil {
		r, err = s.getToken(ctx, id)
	}
	if err != nil {
		return apiauth.TokenRecord{}, fmt.Errorf("revoke token %s: %w", id, err)
	}
	return r, nil
}

// exec runs a statement the writer does not keep prepared, for rare writes.
func (w *writer) exec(query string, args ...any) (int64, error) {
	s, err := w.rc.prepare(query)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	n, err := w.rc.exec(s, args...)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", strings.Fields(query)[0], err)
	}
	return n, nil
}
