package apiauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
)

// Token format.
//
// A token reads "fat_<id>_<secret>": id is 16 hex digits (8 random bytes),
// public, the key the store finds the token by and the name operators see in
// listings; secret is 32 random bytes in unpadded base64url. The store keeps
// the SHA-256 of the whole token, never the token: 256 random bits cannot be
// guessed from their hash, so no slow password hash is needed, and
// verification compares hashes in constant time. The "fat_" prefix lets
// secret scanners recognise a leaked token.
const (
	tokenPrefix  = "fat_"
	idHexLen     = 16
	secretB64Len = 43 // 32 bytes, base64url without padding
	// TokenLength is the length of every token.
	TokenLength = len(tokenPrefix) + idHexLen + 1 + secretB64Len
)

// Hash is the SHA-256 of a whole token.
type Hash [sha256.Size]byte

// NewToken returns a fresh token, its id and its hash.
func NewToken() (token, id string, hash Hash, err error) {
	var raw [8 + 32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", Hash{}, fmt.Errorf("generate token: %w", err)
	}
	id = hex.EncodeToString(raw[:8])
	token = tokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(raw[8:])
	return token, id, sha256.Sum256([]byte(token)), nil
}

// ParseToken checks a token's shape and returns its id and hash. It says
// nothing about whether the token is known.
func ParseToken(token string) (id string, hash Hash, ok bool) {
	if len(token) != TokenLength || !strings.HasPrefix(token, tokenPrefix) || token[len(tokenPrefix)+idHexLen] != '_' {
		return "", Hash{}, false
	}
	id = token[len(tokenPrefix) : len(tokenPrefix)+idHexLen]
	if !ValidTokenID(id) {
		return "", Hash{}, false
	}
	if _, err := base64.RawURLEncoding.DecodeString(token[len(tokenPrefix)+idHexLen+1:]); err != nil {
		return "", Hash{}, false
	}
	return id, sha256.Sum256([]byte(token)), true
}

// ValidTokenID reports whether s has the shape of a token id.
func ValidTokenID(s string) bool {
	if len(s) != idHexLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// TokenRecord is what a TokenStore keeps of a token.
type TokenRecord struct {
	ID   string
	Hash Hash
	Name string
	Role authv1.Role
	// Tenants, sorted and unique; empty when AllTenants.
	Tenants    []string
	AllTenants bool
	// Creator is the Principal.ID that created it, or "bootstrap".
	Creator string
	// Created; Expires and Revoked are zero when not set. Stores keep
	// millisecond precision.
	Created, Expires, Revoked time.Time
}

// Active reports whether the token is neither revoked nor expired at now.
func (r *TokenRecord) Active(now time.Time) bool {
	return r.Revoked.IsZero() && (r.Expires.IsZero() || now.Before(r.Expires))
}

// Principal is the principal a token authenticates.
func (r *TokenRecord) Principal() Principal {
	return Principal{ID: "token:" + r.ID, Role: r.Role, Tenants: r.Tenants, AllTenants: r.AllTenants}
}

// Token store errors callers branch on; adapters wrap them.
var (
	ErrTokenNotFound = errors.New("token not found")
	ErrTokenExists   = errors.New("token id already exists")
)

// TokenQuery selects tokens for ListTokens.
type TokenQuery struct {
	// Tenant, when set, selects tokens covering it (those for all tenants
	// included).
	Tenant string
	// ActiveAt, when set, leaves out tokens revoked, or expired at or
	// before it.
	ActiveAt time.Time
	// After continues a listing: only ids greater than it.
	After string
	// Limit is the page size, 1 to 1000.
	Limit int
}

// TokenReader is what verifying tokens needs of their store: a process
// that serves a public API without holding the store (one without the
// inventory) reads tokens through the inventory's internal API. Every
// adapter passes apiauthtest.RunReader.
type TokenReader interface {
	// GetToken returns a token by id; ErrTokenNotFound when unknown. A
	// reader may leave out what verification does not use (Name, Creator,
	// Created) and says so.
	GetToken(ctx context.Context, id string) (TokenRecord, error)
}

// TokenStore is the storage port of API tokens. Every adapter passes the
// suite in package apiauthtest.
type TokenStore interface {
	// CreateToken stores a new token; ErrTokenExists when its id is taken.
	CreateToken(ctx context.Context, r TokenRecord) error
	// TokenReader's GetToken returns every field.
	TokenReader
	// ListTokens returns the tokens q selects ordered by id, at most
	// q.Limit, and whether more may follow.
	ListTokens(ctx context.Context, q TokenQuery) (tokens []TokenRecord, more bool, err error)
	// RevokeToken marks a token revoked at at and returns it. A token
	// revoked before keeps its first revocation time. ErrTokenNotFound
	// when unknown.
	RevokeToken(ctx context.Context, id string, at time.Time) (TokenRecord, error)
}
