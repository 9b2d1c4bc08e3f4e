// Package mongostore is the MongoDB files metadata store: one document per
// file in the collection "files" (its _id "tenant:id", a unique index on
// tenant and name), never in the devices' collections. It passes the
// contract suite of package storetest, on MongoDB and on FerretDB.
package mongostore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/pkg/mongoindex"
	"github.com/fleetacs/fleetacs/services/files/store"
)

// Collection is the collection of the records.
const Collection = "files"

// Store is the MongoDB files store, on a database whose client the caller
// owns.
type Store struct {
	db   *mongo.Database
	mu   sync.RWMutex
	coll *mongo.Collection
}

var _ store.Store = (*Store)(nil)

// New returns a store on db. It does no I/O.
func New(db *mongo.Database) *Store { return &Store{db: db} }

// Start checks that the server answers and creates the indexes.
func (s *Store) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.coll != nil {
		return nil
	}
	coll := s.db.Collection(Collection)
	if err := s.db.Client().Ping(ctx, nil); err != nil {
		return fmt.Errorf("start mongodb files store: %w", mapErr(ctx, err))
	}
	// Every gateway with the files module starts this at once; FerretDB
	// drops the connection when asked again for an index that exists
	// (package mongoindex).
	err := mongoindex.Ensure(ctx, coll, []mongo.IndexModel{
		{Keys: bson.D{{Key: "tenant", Value: 1}, {Key: "name", Value: 1}}, Options: options.Index().SetName("tenant_name").SetUnique(true)},
		{Keys: bson.D{{Key: "tenant", Value: 1}, {Key: "create_time", Value: -1}, {Key: "file_id", Value: -1}}, Options: options.Index().SetName("tenant_created")},
	}...)
	if err != nil {
		return fmt.Errorf("start mongodb files store: indexes: %w", mapErr(ctx, err))
	}
	s.coll = coll
	return nil
}

// Close forgets the collection; the caller disconnects the client.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.coll = nil
	return nil
}

func (s *Store) collection() (*mongo.Collection, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.coll == nil {
		return nil, fmt.Errorf("%w: not started", store.ErrUnavailable)
	}
	return s.coll, nil
}

func mapErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	if mongo.IsNetworkError(err) || mongo.IsTimeout(err) || errors.Is(err, mongo.ErrClientDisconnected) ||
		strings.Contains(err.Error(), "server selection") {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

type doc struct {
	ID             string   `bson:"_id"`
	Tenant         string   `bson:"tenant"`
	FileID         string   `bson:"file_id"`
	Name           string   `bson:"name"`
	FileType       string   `bson:"file_type"`
	ProductClasses []string `bson:"product_classes"`
	// AnyClass is set when ProductClasses is empty, so that a product
	// class filter finds files for any class with an equality.
	AnyClass   bool      `bson:"any_class"`
	OUI        string    `bson:"oui"`
	Version    string    `bson:"version"`
	Size       int64     `bson:"size"`
	SHA256     string    `bson:"sha256"`
	CreateTime time.Time `bson:"create_time"`
	Uploader   string    `bson:"uploader"`
}

func docID(tenant, id string) string { return tenant + ":" + id }

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, r store.Record) error {
	if r.Tenant == "" || r.ID == "" || r.Name == "" {
		return errors.New("create file record: tenant, id and name are required")
	}
	coll, err := s.collection()
	if err != nil {
		return err
	}
	pcs := r.ProductClasses
	if pcs == nil {
		pcs = []string{}
	}
	_, err = coll.InsertOne(ctx, doc{ID: docID(r.Tenant, r.ID), Tenant: r.Tenant, FileID: r.ID, Name: r.Name, FileType: r.FileType,
		ProductClasses: pcs, AnyClass: len(pcs) == 0, OUI: r.OUI, Version: r.Version, Size: r.Size, SHA256: r.SHA256,
		CreateTime: store.Truncate(r.CreateTime), Uploader: r.Uploader})
	if mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("create file %q: %w", r.Name, store.ErrNameExists)
	}
	if err != nil {
		return fmt.Errorf("create file record: %w", mapErr(ctx, err))
	}
	return nil
}

func (d doc) record() store.Record {
	r := store.Record{Tenant: d.Tenant, ID: d.FileID, Name: d.Name, FileType: d.FileType, ProductClasses: d.ProductClasses,
		OUI: d.OUI, Version: d.Version, Size: d.Size, SHA256: d.SHA256, CreateTime: d.CreateTime.UTC(), Uploader: d.Uploader}
	if len(r.ProductClasses) == 0 {
		r.ProductClasses = nil
	}
	return r
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, tenant, id string) (store.Record, error) {
	coll, err := s.collection()
	if err != nil {
		return store.Record{}, err
	}
	var d doc
	err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: docID(tenant, id)}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Record{}, store.ErrNotFound
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("get file record: %w", mapErr(ctx, err))
	}
	return d.record(), nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, q store.Query) ([]store.Record, error) {
	if q.Limit < 0 {
		return nil, errors.New("list files: negative limit")
	}
	if q.Limit == 0 {
		q.Limit = 100
	}
	coll, err := s.collection()
	if err != nil {
		return nil, err
	}
	filter := bson.D{{Key: "tenant", Value: q.Tenant}}
	if q.FileType != "" {
		filter = append(filter, bson.E{Key: "file_type", Value: q.FileType})
	}
	if q.Version != "" {
		filter = append(filter, bson.E{Key: "version", Value: q.Version})
	}
	if q.Name != "" {
		filter = append(filter, bson.E{Key: "name", Value: q.Name})
	}
	var and bson.A
	if q.ProductClass != "" {
		and = append(and, bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "product_classes", Value: q.ProductClass}},
			bson.D{{Key: "any_class", Value: true}},
		}}})
	}
	if q.After != nil {
		at := store.Truncate(q.After.CreateTime)
		and = append(and, bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "create_time", Value: bson.D{{Key: "$lt", Value: at}}}},
			bson.D{{Key: "create_time", Value: at}, {Key: "file_id", Value: bson.D{{Key: "$lt", Value: q.After.ID}}}},
		}}})
	}
	if len(and) > 0 {
		filter = append(filter, bson.E{Key: "$and", Value: and})
	}
	cur, err := coll.Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: "create_time", Value: -1}, {Key: "file_id", Value: -1}}).SetLimit(int64(q.Limit)))
	if err != nil {
		return nil, fmt.Errorf("list files: %w", mapErr(ctx, err))
	}
	defer func() { _ = cur.Close(context.WithoutCancel(ctx)) }()
	var out []store.Record
	for cur.Next(ctx) {
		var d doc
		if err := cur.Decode(&d); err != nil {
			return nil, fmt.Errorf("list files: %w", err)
		}
		out = append(out, d.record())
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("list files: %w", mapErr(ctx, err))
	}
	return out, nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, tenant, id string) error {
	coll, err := s.collection()
	if err != nil {
		return err
	}
	res, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: docID(tenant, id)}})
	if err != nil {
		return fmt.Errorf("delete file record: %w", mapErr(ctx, err))
	}
	if res.DeletedCount == 0 {
		return store.ErrNotFound
	}
	return nil
}
