package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/mongoindex"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
)

// API tokens (package apiauth) live in their own collection of the
// inventory's database, one document per token:
//
//	_id          token id
//	hash         SHA-256 of the token (binary)
//	name, role (int), all_tenants, tenants (array), creator
//	created, expires, revoked   (the last two absent when unset)
//
// An index on {tenants, _id} serves listings by tenant; tokens for all
// tenants are found by all_tenants in the same query.

// TokensCollection is the default collection of API tokens.
const TokensCollection = "api_tokens"

var _ apiauth.TokenStore = (*Store)(nil)

type tokenDoc struct {
	ID         string    `bson:"_id"`
	Hash       []byte    `bson:"hash"`
	Name       string    `bson:"name"`
	Role       int32     `bson:"role"`
	AllTenants bool      `bson:"all_tenants"`
	Tenants    []string  `bson:"tenants"`
	Creator    string    `bson:"creator"`
	Created    time.Time `bson:"created"`
	Expires    time.Time `bson:"expires,omitempty"`
	Revoked    time.Time `bson:"revoked,omitempty"`
}

func (d *tokenDoc) record() (apiauth.TokenRecord, error) {
	r := apiauth.TokenRecord{
		ID: d.ID, Name: d.Name, Role: authv1.Role(d.Role), AllTenants: d.AllTenants, Tenants: d.Tenants,
		Creator: d.Creator, Created: utc(d.Created), Expires: utc(d.Expires), Revoked: utc(d.Revoked),
	}
	if len(d.Hash) != len(r.Hash) {
		return apiauth.TokenRecord{}, fmt.Errorf("token %s: stored hash is malformed", d.ID)
	}
	copy(r.Hash[:], d.Hash)
	if len(r.Tenants) == 0 {
		r.Tenants = nil
	}
	return r, nil
}

func (s *Store) tokens() (*mongo.Collection, error) {
	coll, err := s.collection()
	if err != nil {
		return nil, err
	}
	return coll.Database().Collection(s.cfg.TokensCollection, collectionOptions()), nil
}

// ensureTokenIndexes creates the tokens' index when missing (package
// mongoindex: safe when several inventories start at once).
func ensureTokenIndexes(ctx context.Context, coll *mongo.Collection) error {
	return mongoindex.Ensure(ctx, coll, mongo.IndexModel{
		Keys:    bson.D{{Key: "tenants", Value: 1}, {Key: "_id", Value: 1}},
		Options: options.Index().SetName("tenants_id"),
	})
}

// CreateToken implements apiauth.TokenStore.
func (s *Store) CreateToken(ctx context.Context, r apiauth.TokenRecord) error {
	err := func() error {
		coll, err := s.tokens()
		if err != nil {
			return err
		}
		tenants := r.Tenants
		if tenants == nil {
			tenants = []string{}
		}
		_, err = coll.InsertOne(ctx, tokenDoc{
			ID: r.ID, Hash: r.Hash[:], Name: r.Name, Role: int32(r.Role), AllTenants: r.AllTenants, Tenants: tenants,
			Creator: r.Creator, Created: r.Created.UTC(), Expires: r.Expires.UTC(), Revoked: r.Revoked.UTC(),
		})
		if mongo.IsDuplicateKeyError(err) {
			return apiauth.ErrTokenExists
		}
		return err
	}()
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
	coll, err := s.tokens()
	if err != nil {
		return apiauth.TokenRecord{}, err
	}
	var d tokenDoc
	err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return apiauth.TokenRecord{}, apiauth.ErrTokenNotFound
	}
	if err != nil {
		return apiauth.TokenRecord{}, err
	}
	return d.record()
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
	coll, err := s.tokens()
	if err != nil {
		return nil, false, err
	}
	and := bson.A{bson.D{{Key: "_id", Value: bson.D{{Key: "$gt", Value: q.After}}}}}
	if q.Tenant != "" {
		and = append(and, bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "tenants", Value: q.Tenant}},
			bson.D{{Key: "all_tenants", Value: true}},
		}}})
	}
	if !q.ActiveAt.IsZero() {
		and = append(and,
			bson.D{{Key: "revoked", Value: bson.D{{Key: "$exists", Value: false}}}},
			bson.D{{Key: "$or", Value: bson.A{
				bson.D{{Key: "expires", Value: bson.D{{Key: "$exists", Value: false}}}},
				bson.D{{Key: "expires", Value: bson.D{{Key: "$gt", Value: q.ActiveAt.UTC()}}}},
			}}})
	}
	cur, err := coll.Find(ctx, bson.D{{Key: "$and", Value: and}},
		options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(q.Limit+1)))
	if err != nil {
		return nil, false, err
	}
	defer cur.Close(ctx)
	var out []apiauth.TokenRecord
	for cur.Next(ctx) {
		var d tokenDoc
		if err := cur.Decode(&d); err != nil {
			return nil, false, err
		}
		r, err := d.record()
		if err != nil {
			return nil, false, err
		}
		out = append(out, r)
	}
	if err := cur.Err(); err != nil {
		return nil, false, err
	}
	if len(out) > q.Limit {
		return out[:q.Limit], true, nil
	}
	return out, false, nil
}

// RevokeToken implements apiauth.TokenStore.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) (apiauth.TokenRecord, error) {
	r, err := func() (apiauth.TokenRecord, error) {
		coll, err := s.tokens()
		if err != nil {
			return apiauth.TokenRecord{}, err
		}
		_, err = coll.UpdateOne(ctx,
			bson.D{{Key: "_id", Value: id}, {Key: "revoked", Value: bson.D{{Key: "$exists", Value: false}}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "revoked", Value: at.UTC().Truncate(time.Millisecond)}}}})
		if err != nil {
			return apiauth.TokenRecord{}, err
		}
		return s.getToken(ctx, id)
	}()
	if err != nil {
		return apiauth.TokenRecord{}, fmt.Errorf("revoke token %s: %w", id, err)
	}
	return r, nil
}
