package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// Discovery profiles are one document per product class in
// Config.ProfilesCollection:
//
//	_id             "<tenant>:<oui>:<product class>" (tenants and OUIs hold no ":")
//	tenant, oui, product_class
//	ok              largest batch answered ($max)
//	failed          every failed batch size ($addToSet)
//	subtree         a whole-tree GetParameterNames died ($set true only)
//	updated         last observation ($max)
//
// Every write is one upsert of operators that only raise, add or set, so
// concurrent workers merge without reading first (on MongoDB; a server
// that applies updates as unlocked read-then-write, FerretDB 1.x, may lose
// one of two concurrent observations, which the next failing session
// repeats). The smallest failure above ok is picked when reading.

type profileDoc struct {
	OK      int64     `bson:"ok"`
	Failed  []int64   `bson:"failed"`
	Subtree bool      `bson:"subtree"`
	Updated time.Time `bson:"updated"`
}

func profileID(c store.ProductClass) string { return c.Tenant + ":" + c.OUI + ":" + c.ProductClass }

func (s *Store) profiles() (*mongo.Collection, error) {
	coll, err := s.collection()
	if err != nil {
		return nil, err
	}
	return coll.Database().Collection(s.cfg.ProfilesCollection, collectionOptions()), nil
}

// DiscoveryProfile implements store.Store.
func (s *Store) DiscoveryProfile(ctx context.Context, c store.ProductClass) (store.DiscoveryProfile, error) {
	c, err := store.NormalizeProductClass(c)
	if err != nil {
		return store.DiscoveryProfile{}, fmt.Errorf("read discovery profile: %w", err)
	}
	coll, err := s.profiles()
	if err != nil {
		return store.DiscoveryProfile{}, fmt.Errorf("read discovery profile: %w", err)
	}
	var doc profileDoc
	err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: profileID(c)}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.DiscoveryProfile{}, nil
	}
	if err != nil {
		return store.DiscoveryProfile{}, fmt.Errorf("read discovery profile of %s/%s: %w", c.OUI, c.ProductClass, err)
	}
	failed := make([]int, len(doc.Failed))
	for i, f := range doc.Failed {
		failed[i] = int(f)
	}
	return store.DiscoveryProfile{
		GPVBatchOK: int(doc.OK), GPVBatchFailed: store.SmallestFailedAbove(int(doc.OK), failed),
		SubtreeGPNFailed: doc.Subtree, Updated: doc.Updated.UTC(),
	}, nil
}

// RecordDiscovery implements store.Store.
func (s *Store) RecordDiscovery(ctx context.Context, c store.ProductClass, o store.DiscoveryObservation, at time.Time) error {
	c, err := store.NormalizeProductClass(c)
	if err == nil {
		err = store.ValidateObservation(o)
	}
	if err != nil {
		return fmt.Errorf("record discovery: %w", err)
	}
	coll, err := s.profiles()
	if err != nil {
		return fmt.Errorf("record discovery: %w", err)
	}
	update := bson.D{
		{Key: "$setOnInsert", Value: bson.D{{Key: "tenant", Value: c.Tenant}, {Key: "oui", Value: c.OUI}, {Key: "product_class", Value: c.ProductClass}}},
		{Key: "$max", Value: bson.D{{Key: "ok", Value: int64(o.GPVBatchOK)}, {Key: "updated", Value: storekit.Time(at)}}},
	}
	if o.GPVBatchFailed > 0 {
		update = append(update, bson.E{Key: "$addToSet", Value: bson.D{{Key: "failed", Value: int64(o.GPVBatchFailed)}}})
	}
	if o.SubtreeGPNFailed {
		update = append(update, bson.E{Key: "$set", Value: bson.D{{Key: "subtree", Value: true}}})
	}
	// Within the process, one write per class at a time (see above).
	unlock := s.locks.lock("profile:" + profileID(c))
	defer unlock()
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: profileID(c)}}, update, options.UpdateOne().SetUpsert(true)); err != nil {
		return fmt.Errorf("record discovery of %s/%s: %w", c.OUI, c.ProductClass, err)
	}
	return nil
}
