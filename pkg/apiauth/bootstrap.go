package apiauth

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/fleetacs/fleetacs/pkg/secretbox"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
)

// BootstrapCreator is the creator of the admin token EnsureAdminToken
// makes.
const BootstrapCreator = "bootstrap"

// EnsureAdminToken gives a fresh install its first credential: when path
// does not exist and the store holds no active admin token for every
// tenant, it issues one and writes it to path, alone on one line, readable
// by the owner only (0600). An existing file is never read nor overwritten,
// whatever it holds. A file deleted after use is not made again while such
// a token exists; with none left (all revoked), the next start makes one,
// which is how someone with access to the host recovers. created reports
// that a token was written.
//
// The token is stored before the file is written: a crash in between
// leaves an unused token (listed, revocable), never a file holding a token
// the store does not know.
func EnsureAdminToken(ctx context.Context, store TokenStore, path string, now time.Time) (created bool, err error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("check admin token file: %w", err)
	}
	if have, err := hasSuperAdmin(ctx, store, now); err != nil || have {
		return false, err
	}
	token, rec, err := IssueToken(ctx, store, TokenRecord{
		Name: "admin token created at first start", Role: authv1.Role_ROLE_ADMIN, AllTenants: true,
		Creator: BootstrapCreator, Created: now,
	})
	if err != nil {
		return false, fmt.Errorf("create admin token: %w", err)
	}
	if err := secretbox.WriteFileExclusive(path, []byte(token+"\n")); err != nil {
		// Another process wrote it meanwhile, or the directory is not
		// writable: the token just made is of no use to anyone.
		_, rerr := store.RevokeToken(ctx, rec.ID, now)
		return false, fmt.Errorf("write admin token file: %w", errors.Join(err, rerr))
	}
	return true, nil
}

// hasSuperAdmin reports whether an active admin token for every tenant
// exists. Installs hold few tokens; the listing is paged all the same.
func hasSuperAdmin(ctx context.Context, store TokenStore, now time.Time) (bool, error) {
	q := TokenQuery{ActiveAt: now, Limit: 1000}
	for {
		recs, more, err := store.ListTokens(ctx, q)
		if err != nil {
			return false, fmt.Errorf("look for an admin token: %w", err)
		}
		for _, r := range recs {
			if r.AllTenants && r.Role == authv1.Role_ROLE_ADMIN {
				return true, nil
			}
		}
		if !more || len(recs) == 0 {
			return false, nil
		}
		q.After = recs[len(recs)-1].ID
	}
}
