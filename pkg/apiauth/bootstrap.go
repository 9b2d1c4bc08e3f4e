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
// does not exist, it issues an admin token for every tenant and writes it
// there, alone on one line, readable by the owner only (0600). An existing
// file is never read nor overwritten, whatever it holds: delete it to get
// a new token at the next start (and revoke the old one). created reports
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
