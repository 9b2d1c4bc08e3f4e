package inventory

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
)

// API tokens for processes without the inventory (docs/security.md,
// "Processes without the inventory"): the inventory's store keeps the
// tokens, and a process that serves a public API without the inventory
// verifies bearer tokens with the records GetToken hands out, through
// TokenClient. Only what verification needs crosses: the hash, never a
// secret (none is stored), and no name or creator. TokenService, which
// creates, lists and revokes, is served by the inventory's process alone.

// GetToken implements InventoryInternalService.
func (i *internalServer) GetToken(ctx context.Context, req *inventoryv1.GetTokenRequest) (*inventoryv1.GetTokenResponse, error) {
	if !apiauth.ValidTokenID(req.GetId()) {
		return nil, invalidField("id", "must be 16 lower-case hex digits")
	}
	if i.s.tokens == nil {
		return nil, status.Error(codes.Unimplemented, "this inventory keeps no API tokens")
	}
	if err := i.s.checkReady(); err != nil {
		return nil, err
	}
	r, err := i.s.tokens.GetToken(ctx, req.GetId())
	switch {
	case errors.Is(err, apiauth.ErrTokenNotFound):
		return nil, apiError(codes.NotFound, errorsv1.ErrorReason_TOKEN_NOT_FOUND, "token not found", map[string]string{"token_id": req.GetId()})
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil, status.FromContextError(err).Err()
	case err != nil:
		i.s.logger.ErrorContext(ctx, "inventory store call failed", "action", "get token", "token_id", req.GetId(), "error", err)
		return nil, apiError(codes.Unavailable, errorsv1.ErrorReason_STORE_UNAVAILABLE, "token store unavailable", nil)
	}
	return &inventoryv1.GetTokenResponse{Token: &inventoryv1.TokenRecord{
		Id: r.ID, Hash: r.Hash[:], Role: r.Role, Tenants: r.Tenants, AllTenants: r.AllTenants,
		ExpireTime: ts(r.Expires), RevokeTime: ts(r.Revoked),
	}}, nil
}

// TokenClient reads API tokens through InventoryInternalService.GetToken:
// the apiauth.TokenReader of a process that serves a public API without
// the inventory. Records carry what verification uses; Name, Creator and
// Created are zero. The authenticator caches them for
// -auth.token-cache-ttl, as it does the store's.
type TokenClient struct {
	c inventoryv1.InventoryInternalServiceClient
}

var _ apiauth.TokenReader = (*TokenClient)(nil)

// NewTokenClient returns a reader over cc, a connection to the inventory's
// internal API (which carries the internal credential). It does no I/O.
func NewTokenClient(cc grpc.ClientConnInterface) *TokenClient {
	return &TokenClient{c: inventoryv1.NewInventoryInternalServiceClient(cc)}
}

// tokenCallTimeout bounds one GetToken call: a caller waits for its
// verification, so an inventory that does not answer fails the call
// (UNAVAILABLE) rather than hold it.
const tokenCallTimeout = 5 * time.Second

// GetToken implements apiauth.TokenReader.
func (c *TokenClient) GetToken(ctx context.Context, id string) (apiauth.TokenRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, tokenCallTimeout)
	defer cancel()
	resp, err := c.c.GetToken(ctx, &inventoryv1.GetTokenRequest{Id: id})
	if err != nil {
		if isTokenNotFound(err) {
			return apiauth.TokenRecord{}, apiauth.ErrTokenNotFound
		}
		return apiauth.TokenRecord{}, fmt.Errorf("get token %s from the inventory: %w", id, err)
	}
	t := resp.GetToken()
	r := apiauth.TokenRecord{ID: t.GetId(), Role: t.GetRole(), Tenants: t.GetTenants(), AllTenants: t.GetAllTenants()}
	if r.ID != id || len(t.GetHash()) != len(r.Hash) {
		return apiauth.TokenRecord{}, fmt.Errorf("get token %s from the inventory: malformed record (id %q, %d-byte hash)", id, r.ID, len(t.GetHash()))
	}
	copy(r.Hash[:], t.GetHash())
	if e := t.GetExpireTime(); e != nil {
		r.Expires = e.AsTime()
	}
	if v := t.GetRevokeTime(); v != nil {
		r.Revoked = v.AsTime()
	}
	return r, nil
}

// isTokenNotFound reports whether err is GetToken's NOT_FOUND /
// TOKEN_NOT_FOUND, and not some other NOT_FOUND on the way.
func isTokenNotFound(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.NotFound {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == errorsv1.ErrorReason_TOKEN_NOT_FOUND.String() {
			return true
		}
	}
	return false
}
