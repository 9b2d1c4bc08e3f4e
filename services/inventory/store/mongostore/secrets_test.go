package mongostore_test

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	"github.com/fleetacs/fleetacs/services/inventory/store"
	"github.com/fleetacs/fleetacs/services/inventory/store/mongostore"
	"github.com/fleetacs/fleetacs/services/inventory/storetest"
)

// rawCollection reads and writes documents without the adapter.
func rawCollection(t *testing.T, db, name string) *mongo.Collection {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(testenv.MongoURI(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Disconnect(context.Background()) })
	return client.Database(db).Collection(name)
}

func secretsHarness(t *testing.T) storetest.SecretsHarness {
	db := testenv.MongoDatabase(t)
	coll := mongostore.Collection
	raw := rawCollection(t, db, coll)
	field := map[string]string{storetest.FieldConnectionRequest: "crc", storetest.FieldCPE: "cpec", storetest.FieldConnectionRequestPending: "crp"}
	return storetest.SecretsHarness{
		Open: func(t *testing.T, keys *secretbox.Keyring) (store.Store, error) {
			s := mongostore.New(mongostore.Config{
				URI: testenv.MongoURI(t), Database: db, Collection: coll, Secrets: keys,
			})
			if err := s.Start(t.Context()); err != nil {
				return nil, err
			}
			t.Cleanup(func() { s.Close(context.Background()) })
			return s, nil
		},
		Raw: func(t *testing.T, tenant, id, f string) ([]byte, string) {
			var doc bson.Raw
			if err := raw.FindOne(t.Context(), bson.D{{Key: "_id", Value: tenant + ":" + id}}).Decode(&doc); err != nil {
				t.Fatalf("read raw document: %v", err)
			}
			c, ok := doc.Lookup(field[f]).DocumentOK()
			if !ok {
				t.Fatalf("document has no %s: %v", field[f], doc)
			}
			// Everything stored about the password, whatever its field
			// and type: it must not be the password.
			key, _ := c.Lookup("k").StringValueOK()
			if p, ok := c.Lookup("p").StringValueOK(); ok && key == "" {
				return []byte(p), ""
			}
			return []byte(c), key
		},
		WriteClear: func(t *testing.T, tenant, id, f, user, password string) {
			_, err := raw.UpdateOne(t.Context(), bson.D{{Key: "_id", Value: tenant + ":" + id}},
				bson.D{{Key: "$set", Value: bson.D{{Key: field[f], Value: bson.D{{Key: "u", Value: user}, {Key: "p", Value: password}}}}}})
			if err != nil {
				t.Fatalf("write clear credentials: %v", err)
			}
		},
	}
}

func TestSecretsContract(t *testing.T) {
	storetest.RunSecrets(t, secretsHarness)
}
