package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// Passwords at rest (storekit, "Passwords at rest"): a credentials
// subdocument holds the user name (u), the sealed password (s, binary) and
// the ID of the key that sealed it (k). A subdocument written before
// passwords were sealed holds the password in clear (p) and no k.
//
// Several inventory processes may share the database, each possibly
// started with another keyring during a rotation, so Start cannot rely on
// a marker to know that nothing needs re-sealing: it asks the database for
// every credentials subdocument without the active key, which on MongoDB is
// a collection scan returning only those (a few seconds per ten million
// devices, once per start).

// credentialsDoc is stored credentials; an absent document means none.
type credentialsDoc struct {
	Username string `bson:"u"`
	Sealed   []byte `bson:"s,omitempty"`
	KeyID    string `bson:"k,omitempty"`
	// Password is the clear password of a document from before sealing.
	Password string `bson:"p,omitempty"`
}

func sealedDoc(c *storekit.Sealed) credentialsDoc {
	return credentialsDoc{Username: c.Username, Sealed: c.Password, KeyID: c.KeyID}
}

// open returns the credentials of a stored document; nil for none.
func (c *credentialsDoc) open(keys *secretbox.Keyring, tenant, id, field string) (*store.Credentials, error) {
	if c == nil {
		return nil, nil
	}
	s := storekit.Sealed{Username: c.Username, Password: c.Sealed, KeyID: c.KeyID}
	if c.KeyID == "" {
		s.Password = []byte(c.Password)
	}
	return storekit.Open(keys, tenant, id, field, s)
}

// reseal seals the passwords stored in clear and re-seals those of other
// keys than the active one; it returns how many it wrote.
func (s *Store) reseal(ctx context.Context, coll *mongo.Collection) (int, error) {
	active := s.keys.ActiveID()
	fields := []struct{ key, field string }{
		{"crc", storekit.FieldConnectionRequest}, {"cpec", storekit.FieldCPE}, {"crp", storekit.FieldConnectionRequestPending},
	}
	var or bson.A
	for _, f := range fields {
		or = append(or, bson.D{
			{Key: f.key, Value: bson.D{{Key: "$type", Value: "object"}}},
			{Key: f.key + ".k", Value: bson.D{{Key: "$ne", Value: active}}},
		})
	}
	cur, err := coll.Find(ctx, bson.D{{Key: "$or", Value: or}},
		options.Find().SetProjection(bson.D{{Key: "tenant", Value: 1}, {Key: "device_id", Value: 1}, {Key: "crc", Value: 1}, {Key: "cpec", Value: 1}, {Key: "crp", Value: 1}}))
	if err != nil {
		return 0, fmt.Errorf("find passwords to seal: %w", err)
	}
	defer cur.Close(ctx)
	n := 0
	for cur.Next(ctx) {
		var doc struct {
			ID       string          `bson:"_id"`
			Tenant   string          `bson:"tenant"`
			DeviceID string          `bson:"device_id"`
			CRC      *credentialsDoc `bson:"crc"`
			CPEC     *credentialsDoc `bson:"cpec"`
			CRP      *credentialsDoc `bson:"crp"`
		}
		if err := cur.Decode(&doc); err != nil {
			return n, fmt.Errorf("read device credentials: %w", err)
		}
		set := bson.D{}
		filter := bson.D{{Key: "_id", Value: doc.ID}}
		for _, f := range fields {
			c := map[string]*credentialsDoc{"crc": doc.CRC, "cpec": doc.CPEC, "crp": doc.CRP}[f.key]
			if c == nil || c.KeyID == active {
				continue
			}
			plain, err := c.open(s.keys, doc.Tenant, doc.DeviceID, f.field)
			if err != nil {
				return n, err
			}
			sealed, err := storekit.Seal(s.keys, doc.Tenant, doc.DeviceID, f.field, plain)
			if err != nil {
				return n, err
			}
			set = append(set, bson.E{Key: f.key, Value: sealedDoc(sealed)})
			// Only if nobody replaced the credentials meanwhile.
			filter = append(filter, bson.E{Key: f.key, Value: *c})
		}
		if len(set) == 0 {
			continue
		}
		unlock := s.locks.lock(doc.ID)
		_, err := coll.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: set}})
		unlock()
		if err != nil {
			return n, fmt.Errorf("seal passwords of %s/%s: %w", doc.Tenant, doc.DeviceID, err)
		}
		n++
	}
	if err := cur.Err(); err != nil {
		return n, fmt.Errorf("find passwords to seal: %w", err)
	}
	return n, nil
}

// SetConnectionRequestCredentials implements store.Store.
func (s *Store) SetConnectionRequestCredentials(ctx context.Context, tenant, id string, c store.Credentials, pending bool) error {
	err := func() error {
		if err := storekit.Key(tenant, id); err != nil {
			return err
		}
		if err := storekit.CheckCredentials(c); err != nil {
			return err
		}
		field := storekit.FieldConnectionRequest
		if pending {
			field = storekit.FieldConnectionRequestPending
		}
		sealed, err := storekit.Seal(s.keys, tenant, id, field, &c)
		if err != nil {
			return err
		}
		coll, err := s.collection()
		if err != nil {
			return err
		}
		key := docID(tenant, id)
		unlock := s.locks.lock(key)
		defer unlock()
		now := storekit.Time(s.cfg.Now())
		update := bson.D{
			{Key: "$set", Value: bson.D{{Key: "crc", Value: sealedDoc(sealed)}, {Key: "updated", Value: now}}},
			{Key: "$unset", Value: bson.D{{Key: "crp", Value: ""}, {Key: "crpt", Value: ""}, {Key: "crr", Value: ""}}},
		}
		if pending {
			// crpt grows with every set, so that a session echoing an
			// older one forgets nothing newer.
			var doc struct {
				CRPendingTime time.Time `bson:"crpt"`
			}
			err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: key}}, options.FindOne().SetProjection(bson.D{{Key: "crpt", Value: 1}})).Decode(&doc)
			if errors.Is(err, mongo.ErrNoDocuments) {
				return store.ErrNotFound
			}
			if err != nil {
				return err
			}
			at := now
			if last := utc(doc.CRPendingTime); !last.IsZero() && !at.After(last) {
				at = last.Add(time.Millisecond)
			}
			update = bson.D{
				{Key: "$set", Value: bson.D{{Key: "crp", Value: sealedDoc(sealed)}, {Key: "crpt", Value: at}, {Key: "updated", Value: now}}},
				{Key: "$unset", Value: bson.D{{Key: "crr", Value: ""}}},
			}
		}
		res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}}, update)
		if err != nil {
			return err
		}
		if res.MatchedCount == 0 {
			return store.ErrNotFound
		}
		return nil
	}()
	if err != nil {
		return fmt.Errorf("set connection-request credentials of %s/%s: %w", tenant, id, err)
	}
	return nil
}

// SetCPECredentials implements store.Store.
func (s *Store) SetCPECredentials(ctx context.Context, tenant, id string, c store.Credentials) error {
	err := func() error {
		if err := storekit.Key(tenant, id); err != nil {
			return err
		}
		if err := storekit.CheckCredentials(c); err != nil {
			return err
		}
		sealed, err := storekit.Seal(s.keys, tenant, id, storekit.FieldCPE, &c)
		if err != nil {
			return err
		}
		coll, err := s.collection()
		if err != nil {
			return err
		}
		key := docID(tenant, id)
		unlock := s.locks.lock(key)
		defer unlock()
		res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}}, bson.D{{Key: "$set", Value: bson.D{
			{Key: "cpec", Value: sealedDoc(sealed)},
			{Key: "updated", Value: storekit.Time(s.cfg.Now())},
		}}})
		if err != nil {
			return err
		}
		if res.MatchedCount == 0 {
			return store.ErrNotFound
		}
		return nil
	}()
	if err != nil {
		return fmt.Errorf("set CPE credentials of %s/%s: %w", tenant, id, err)
	}
	return nil
}

var errNoKeyring = fmt.Errorf("a secrets keyring is required (Config.Secrets): %w", store.ErrInvalidArgument)
