package apiauth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
)

// TokenService implements fleetacs.auth.v1.TokenService over a TokenStore.
// The Authenticator in front of it has checked the admin role; the service
// checks scopes: an admin manages tokens within its own tenants only.
type TokenService struct {
	authv1.UnimplementedTokenServiceServer
	store  TokenStore
	auth   *Authenticator
	logger *slog.Logger
	now    func() time.Time
}

// Token limits.
const (
	maxTokenName    = 200
	maxTokenTenants = 100
)

// NewTokenService returns the service; auth (may be nil) hears of
// revocations at once.
func NewTokenService(store TokenStore, auth *Authenticator, logger *slog.Logger, now func() time.Time) *TokenService {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &TokenService{store: store, auth: auth, logger: logger, now: now}
}

// Register registers the service on g.
func (s *TokenService) Register(g grpc.ServiceRegistrar) { authv1.RegisterTokenServiceServer(g, s) }

func caller(ctx context.Context) (Principal, error) {
	p, ok := FromContext(ctx)
	if !ok {
		// The interceptors did not run: a wiring bug, never served.
		return Principal{}, errMissing()
	}
	return p, nil
}

func (s *TokenService) storeError(ctx context.Context, action string, err error) error {
	switch {
	case errors.Is(err, ErrTokenNotFound):
		return apiError(codes.NotFound, errorsv1.ErrorReason_TOKEN_NOT_FOUND, "token not found", nil)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return statusFromContext(err)
	}
	s.logger.ErrorContext(ctx, "token store call failed", "action", action, "error", err)
	return errUnavailable()
}

// CreateToken implements TokenService.
func (s *TokenService) CreateToken(ctx context.Context, req *authv1.CreateTokenRequest) (*authv1.CreateTokenResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if !validText(req.GetName(), maxTokenName) {
		return nil, invalidField("name", fmt.Sprintf("at most %d characters of text", maxTokenName))
	}
	switch req.GetRole() {
	case authv1.Role_ROLE_VIEWER, authv1.Role_ROLE_OPERATOR, authv1.Role_ROLE_ADMIN:
	default:
		return nil, invalidField("role", "required: viewer, operator or admin")
	}
	tenants := slices.Clone(req.GetTenants())
	slices.Sort(tenants)
	tenants = slices.Compact(tenants)
	if len(tenants) > maxTokenTenants {
		return nil, invalidField("tenants", fmt.Sprintf("at most %d", maxTokenTenants))
	}
	for _, t := range tenants {
		if !ValidTenant(t) {
			return nil, invalidField("tenants", fmt.Sprintf("%q is not a tenant name", t))
		}
	}
	all := req.GetAllTenants()
	switch {
	case all && len(tenants) > 0:
		return nil, invalidField("tenants", "must be empty with all_tenants")
	case !all && len(tenants) == 0:
		if p.AllTenants || len(p.Tenants) != 1 {
			return nil, apiError(codes.InvalidArgument, errorsv1.ErrorReason_TENANT_REQUIRED,
				"name the token's tenants: the caller's credentials cover several", nil)
		}
		tenants = slices.Clone(p.Tenants)
	}
	if !p.CoversAll(tenants, all) {
		for _, t := range tenants {
			if !p.Covers(t) {
				return nil, errTenant(t)
			}
		}
		return nil, errTenant("*")
	}
	now := s.now()
	var expires time.Time
	if e := req.GetExpireTime(); e != nil {
		if err := e.CheckValid(); err != nil {
			return nil, invalidField("expire_time", "not a valid time")
		}
		expires = e.AsTime()
		if !expires.After(now) {
			return nil, invalidField("expire_time", "must be in the future")
		}
	}
	token, rec, err := IssueToken(ctx, s.store, TokenRecord{
		Name: req.GetName(), Role: req.GetRole(), Tenants: tenants, AllTenants: all,
		Creator: p.ID, Created: now, Expires: expires,
	})
	if err != nil {
		return nil, s.storeError(ctx, "create token", err)
	}
	s.logger.InfoContext(ctx, "API token created", "token_id", rec.ID, "role", RoleName(rec.Role), "creator", p.ID)
	return &authv1.CreateTokenResponse{Token: tokenProto(&rec), Secret: token}, nil
}

// IssueToken stores a fresh token made from r, whose ID and Hash it fills
// in, and returns the token.
func IssueToken(ctx context.Context, store TokenStore, r TokenRecord) (string, TokenRecord, error) {
	for attempt := 0; ; attempt++ {
		token, id, hash, err := NewToken()
		if err != nil {
			return "", TokenRecord{}, err
		}
		r.ID, r.Hash = id, hash
		err = store.CreateToken(ctx, r)
		if errors.Is(err, ErrTokenExists) && attempt < 3 {
			continue // 64 random bits collided: only by chance
		}
		if err != nil {
			return "", TokenRecord{}, err
		}
		return token, r, nil
	}
}

// ListTokens implements TokenService.
func (s *TokenService) ListTokens(ctx context.Context, req *authv1.ListTokensRequest) (*authv1.ListTokensResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if t := req.GetTenant(); t != "" && !ValidTenant(t) {
		return nil, invalidField("tenant", "not a tenant name")
	}
	if req.GetPageSize() < 0 {
		return nil, invalidField("page_size", "must not be negative")
	}
	limit := int(req.GetPageSize())
	switch {
	case limit == 0:
		limit = 100
	case limit > 1000:
		limit = 1000
	}
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || !ValidTokenID(string(b)) {
			return nil, apiError(codes.InvalidArgument, errorsv1.ErrorReason_INVALID_PAGE_TOKEN, "page token is malformed", nil)
		}
		after = string(b)
	}
	q := TokenQuery{Tenant: req.GetTenant(), After: after, Limit: limit}
	if !req.GetShowInactive() {
		q.ActiveAt = s.now()
	}
	recs, more, err := s.store.ListTokens(ctx, q)
	if err != nil {
		return nil, s.storeError(ctx, "list tokens", err)
	}
	out := &authv1.ListTokensResponse{}
	for i := range recs {
		if p.CoversAll(recs[i].Tenants, recs[i].AllTenants) {
			out.Tokens = append(out.Tokens, tokenProto(&recs[i]))
		}
	}
	if more && len(recs) > 0 {
		out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(recs[len(recs)-1].ID))
	}
	return out, nil
}

// RevokeToken implements TokenService.
func (s *TokenService) RevokeToken(ctx context.Context, req *authv1.RevokeTokenRequest) (*authv1.RevokeTokenResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if !ValidTokenID(req.GetId()) {
		return nil, invalidField("id", "want the 16 hex digits of a token id")
	}
	rec, err := s.store.GetToken(ctx, req.GetId())
	if err != nil {
		return nil, s.storeError(ctx, "revoke token", err)
	}
	if !p.CoversAll(rec.Tenants, rec.AllTenants) {
		// As for a device of another tenant: its existence does not leak.
		return nil, s.storeError(ctx, "revoke token", ErrTokenNotFound)
	}
	if rec, err = s.store.RevokeToken(ctx, req.GetId(), s.now()); err != nil {
		return nil, s.storeError(ctx, "revoke token", err)
	}
	if s.auth != nil {
		s.auth.Forget(rec.ID)
	}
	s.logger.InfoContext(ctx, "API token revoked", "token_id", rec.ID, "by", p.ID)
	return &authv1.RevokeTokenResponse{Token: tokenProto(&rec)}, nil
}

func tokenProto(r *TokenRecord) *authv1.Token {
	t := &authv1.Token{
		Id: r.ID, Name: r.Name, Role: r.Role, Tenants: r.Tenants, AllTenants: r.AllTenants,
		CreateTime: timestamppb.New(r.Created), Creator: r.Creator,
	}
	if !r.Expires.IsZero() {
		t.ExpireTime = timestamppb.New(r.Expires)
	}
	if !r.Revoked.IsZero() {
		t.RevokeTime = timestamppb.New(r.Revoked)
	}
	return t
}

// validText is valid UTF-8 without control characters, at most max bytes.
func validText(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
