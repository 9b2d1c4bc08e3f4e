// Package apiauth authenticates and authorises calls to FleetACS gRPC
// services (docs/design.md §5, docs/security.md).
//
// Public APIs (InventoryService, TokenService, the tasks API to come) answer
// only callers with credentials: a bearer token, or a client certificate on
// a listener with mutual TLS. Each credential names a principal with one role
// (viewer, operator or admin) and the tenants it covers. Authenticator holds
// the server interceptors that check them; the least role of each method is
// declared in the API itself (the fleetacs.auth.v1.required_role method
// option), so a method without one is refused rather than open. Errors map to
// the public catalogue (proto/errors.md).
//
// Tokens are stored hashed (TokenStore; the inventory's SQLite and MongoDB
// stores implement it, apiauthtest is the conformance suite), verified in
// constant time and cached briefly, so a revocation takes effect within the
// cache's lifetime. Invalid credentials are rate-limited per source address.
//
// Internal services (InventoryInternalService, SessionService) are served on
// a listener of their own and need the internal credential instead (mutual
// TLS, a shared token file, or both), configured once per process by
// InternalConfig; see internal.go.
package apiauth

import (
	"context"
	"slices"
	"strings"

	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
)

// Principal is who a call acts for.
type Principal struct {
	// ID names the credential in logs and in Token.creator: "token:<id>"
	// for a bearer token, "cert:<subject>" for a client certificate.
	ID string
	// Role is what the principal may do.
	Role authv1.Role
	// Tenants the principal covers, sorted; ignored when AllTenants.
	Tenants    []string
	AllTenants bool
}

// Covers reports whether the principal may act on tenant.
func (p Principal) Covers(tenant string) bool {
	if p.AllTenants {
		return true
	}
	_, found := slices.BinarySearch(p.Tenants, tenant)
	return found
}

// CoversAll reports whether the principal covers every tenant of another
// scope (tenants, or every tenant when all).
func (p Principal) CoversAll(tenants []string, all bool) bool {
	if p.AllTenants {
		return true
	}
	if all {
		return false
	}
	for _, t := range tenants {
		if !p.Covers(t) {
			return false
		}
	}
	return true
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal of an authenticated call.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// CallerTenants returns the tenants the caller covers, for a request that
// names none: nil when it covers every tenant (the request must then name
// one) or when the call is not authenticated.
func CallerTenants(ctx context.Context) []string {
	p, ok := FromContext(ctx)
	if !ok || p.AllTenants {
		return nil
	}
	return p.Tenants
}

// RoleName is the lower-case name of a role ("viewer"), as fleetctl and the
// documentation write it.
func RoleName(r authv1.Role) string {
	switch r {
	case authv1.Role_ROLE_VIEWER:
		return "viewer"
	case authv1.Role_ROLE_OPERATOR:
		return "operator"
	case authv1.Role_ROLE_ADMIN:
		return "admin"
	}
	return "none"
}

// ParseRole reads a role name ("viewer", "operator", "admin", or the enum
// value's name).
func ParseRole(s string) (authv1.Role, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for _, r := range []authv1.Role{authv1.Role_ROLE_VIEWER, authv1.Role_ROLE_OPERATOR, authv1.Role_ROLE_ADMIN} {
		if s == RoleName(r) || s == strings.ToLower(r.String()) {
			return r, true
		}
	}
	return authv1.Role_ROLE_UNSPECIFIED, false
}

// MaxTenantLength is the longest tenant name (as the inventory's).
const MaxTenantLength = 64

// ValidTenant reports whether s is a tenant name: 1 to 64 characters from
// [A-Za-z0-9_.-], the inventory's rule.
func ValidTenant(s string) bool {
	if s == "" || len(s) > MaxTenantLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
