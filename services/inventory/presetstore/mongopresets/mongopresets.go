// Package mongopresets is the MongoDB preset store: the current revision
// of each preset in the collection presets, its history in
// preset_revisions and each tenant's set revision in preset_sets.
//
// Without multi-document transactions, a put writes in this order: the
// preset (a compare-and-swap on its revision), its history entry, then the
// set revision. A reader of the set reads the set revision first, so it
// never caches a set older than the revision it holds. A put that fails
// after its compare-and-swap (the server lost) has changed the preset but
// maybe not raised the set revision: it returns the error, and its retry
// raises it; session workers also re-read their cached set at least every
// few minutes (docs/provisioning.md, "Caching").
//
// The compare-and-swap is the filter on the revision, atomic in MongoDB.
// FerretDB's updates are not atomic, so writes of one process also take
// the store's write lock (presets change rarely): concurrent puts through
// one inventory process never lose a revision on either server.
package mongopresets

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
	"github.com/fleetacs/fleetacs/services/inventory/presetstore"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// Config locates the database.
type Config struct {
	URI      string
	Database string
	// ConnectTimeout bounds connecting and server selection; 0: 10s.
	ConnectTimeout time.Duration
	// OpTimeout bounds each operation; 0: 30s.
	OpTimeout time.Duration
	// Metrics, if set, records the latency and errors of every MongoDB
	// command (telemetry.ClientMetrics).
	Metrics *telemetry.ClientMetrics
}

// Store is the MongoDB preset store.
type Store struct {
	cfg Config

	// wmu serialises the store's writes (see the package comment).
	wmu sync.Mutex

	mu                   sync.Mutex
	client               *mongo.Client
	presets, revs, tsets *mongo.Collection
	secrets              *mongo.Collection
}

var _ presetstore.Store = (*Store)(nil)

// New returns a store for cfg; it does no I/O.
func New(cfg Config) *Store {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 30 * time.Second
	}
	return &Store{cfg: cfg}
}

// Start connects and creates the indexes; idempotent.
func (s *Store) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.presets != nil {
		return nil
	}
	if s.cfg.URI == "" || s.cfg.Database == "" {
		return errors.New("start mongodb preset store: URI and database are required")
	}
	client, err := mongo.Connect(options.Client().ApplyURI(s.cfg.URI).
		SetConnectTimeout(s.cfg.ConnectTimeout).SetServerSelectionTimeout(s.cfg.ConnectTimeout).
		SetTimeout(s.cfg.OpTimeout).SetMonitor(s.cfg.Metrics.MongoMonitor()))
	if err != nil {
		return fmt.Errorf("start mongodb preset store: connect: %w", err)
	}
	db := client.Database(s.cfg.Database, databaseOptions())
	presets := db.Collection("presets")
	// Unnamed: the server's name, tenant_1_name_1, as before. Safe when
	// several inventories start at once (package mongoindex).
	if err := mongoindex.Ensure(ctx, presets, mongo.IndexModel{Keys: bson.D{{Key: "tenant", Value: 1}, {Key: "name", Value: 1}}}); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return fmt.Errorf("start mongodb preset store: %w", mapErr(ctx, err))
	}
	s.client, s.presets, s.revs, s.tsets = client, presets, db.Collection("preset_revisions"), db.Collection("preset_sets")
	s.secrets = db.Collection("preset_secrets")
	return nil
}

// Close implements presetstore.Store.
func (s *Store) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		return nil
	}
	err := s.client.Disconnect(ctx)
	s.client, s.presets, s.revs, s.tsets, s.secrets = nil, nil, nil, nil, nil
	if err != nil {
		return fmt.Errorf("close mongodb preset store: %w", err)
	}
	return nil
}

type colls struct{ presets, revs, sets, secrets *mongo.Collection }

func (s *Store) colls() (colls, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.presets == nil {
		return colls{}, fmt.Errorf("mongodb preset store not started: %w", presetstore.ErrUnavailable)
	}
	return colls{s.presets, s.revs, s.tsets, s.secrets}, nil
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
		return fmt.Errorf("%w: %w", presetstore.ErrUnavailable, err)
	}
	return err
}

// doc is a preset revision as stored.
type doc struct {
	ID         string    `bson:"_id"`
	Tenant     string    `bson:"tenant"`
	Name       string    `bson:"name"`
	Revision   int64     `bson:"revision"`
	Enabled    bool      `bson:"enabled"`
	Body       []byte    `bson:"body"`
	UpdateTime time.Time `bson:"update_time"`
	UpdatedBy  string    `bson:"updated_by"`
}

func (d *doc) record() presetstore.Record {
	r := presetstore.Record{Tenant: d.Tenant, Name: d.Name, Revision: uint64(d.Revision), Enabled: d.Enabled,
		Body: d.Body, UpdateTime: d.UpdateTime.UTC(), UpdatedBy: d.UpdatedBy}
	if len(r.Body) == 0 {
		r.Body = nil
	}
	return r
}

func presetID(tenant, name string) string { return tenant + ":" + name }

func revisionID(tenant, name string, rev uint64) string {
	return fmt.Sprintf("%s:%s:%d", tenant, name, rev)
}

// maxCASRetries bounds the compare-and-swap loop of a put without an
// expected revision, which only concurrent puts of one preset make retry.
const maxCASRetries = 16

// Put implements presetstore.Store.
func (s *Store) Put(ctx context.Context, p presetstore.Put) (presetstore.Record, error) {
	c, err := s.colls()
	if err != nil {
		return presetstore.Record{}, err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	id := presetID(p.Tenant, p.Name)
	for range maxCASRetries {
		var cur uint64
		var d doc
		err := c.presets.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
		case err != nil:
			return presetstore.Record{}, fmt.Errorf("put preset: %w", mapErr(ctx, err))
		default:
			cur = uint64(d.Revision)
		}
		if p.Expected != nil && *p.Expected != cur {
			return presetstore.Record{}, fmt.Errorf("put preset %q at revision %d, expected %d: %w", p.Name, cur, *p.Expected, presetstore.ErrRevisionMismatch)
		}
		nd := doc{ID: id, Tenant: p.Tenant, Name: p.Name, Revision: int64(cur + 1), Enabled: p.Enabled,
			Body: p.Body, UpdateTime: p.Time.UTC().Truncate(time.Millisecond), UpdatedBy: p.By}
		if nd.Body == nil {
			nd.Body = []byte{}
		}
		if cur == 0 {
			n, err := c.presets.CountDocuments(ctx, bson.D{{Key: "tenant", Value: p.Tenant}})
			if err != nil {
				return presetstore.Record{}, fmt.Errorf("put preset: %w", mapErr(ctx, err))
			}
			if n >= presetstore.MaxPerTenant {
				return presetstore.Record{}, fmt.Errorf("put preset %q: %w", p.Name, presetstore.ErrLimit)
			}
			if _, err := c.presets.InsertOne(ctx, nd); mongo.IsDuplicateKeyError(err) {
				continue // created meanwhile
			} else if err != nil {
				return presetstore.Record{}, fmt.Errorf("put preset: %w", mapErr(ctx, err))
			}
		} else {
			res, err := c.presets.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "revision", Value: int64(cur)}}, nd)
			if err != nil {
				return presetstore.Record{}, fmt.Errorf("put preset: %w", mapErr(ctx, err))
			}
			if res.MatchedCount == 0 {
				continue // changed or deleted meanwhile
			}
		}
		rd := nd
		rd.ID = revisionID(p.Tenant, p.Name, cur+1)
		if _, err := c.revs.ReplaceOne(ctx, bson.D{{Key: "_id", Value: rd.ID}}, rd, options.Replace().SetUpsert(true)); err != nil {
			return presetstore.Record{}, fmt.Errorf("put preset: history: %w", mapErr(ctx, err))
		}
		if cur+1 > presetstore.MaxHistory {
			if _, err := c.revs.DeleteMany(ctx, bson.D{{Key: "tenant", Value: p.Tenant}, {Key: "name", Value: p.Name},
				{Key: "revision", Value: bson.D{{Key: "$lte", Value: int64(cur + 1 - presetstore.MaxHistory)}}}}); err != nil {
				return presetstore.Record{}, fmt.Errorf("put preset: history: %w", mapErr(ctx, err))
			}
		}
		if err := bump(ctx, c.sets, p.Tenant); err != nil {
			return presetstore.Record{}, err
		}
		return nd.record(), nil
	}
	return presetstore.Record{}, fmt.Errorf("put preset %q: changed by others %d times in a row: %w", p.Name, maxCASRetries, presetstore.ErrRevisionMismatch)
}

func bump(ctx context.Context, sets *mongo.Collection, tenant string) error {
	_, err := sets.UpdateOne(ctx, bson.D{{Key: "_id", Value: tenant}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "revision", Value: int64(1)}}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("raise the preset set revision: %w", mapErr(ctx, err))
	}
	return nil
}

// Get implements presetstore.Store.
func (s *Store) Get(ctx context.Context, tenant, name string, revision uint64) (presetstore.Record, error) {
	c, err := s.colls()
	if err != nil {
		return presetstore.Record{}, err
	}
	coll, id := c.presets, presetID(tenant, name)
	if revision != 0 {
		coll, id = c.revs, revisionID(tenant, name, revision)
	}
	var d doc
	err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return presetstore.Record{}, fmt.Errorf("get preset %q: %w", name, presetstore.ErrNotFound)
	}
	if err != nil {
		return presetstore.Record{}, fmt.Errorf("get preset %q: %w", name, mapErr(ctx, err))
	}
	return d.record(), nil
}

// List implements presetstore.Store.
func (s *Store) List(ctx context.Context, tenant, after string, limit int) ([]presetstore.Record, error) {
	c, err := s.colls()
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("list presets: limit %d", limit)
	}
	return find(ctx, c.presets, bson.D{{Key: "tenant", Value: tenant}, {Key: "name", Value: bson.D{{Key: "$gt", Value: after}}}}, int64(limit))
}

func find(ctx context.Context, coll *mongo.Collection, filter bson.D, limit int64) ([]presetstore.Record, error) {
	opts := options.Find().SetSort(bson.D{{Key: "name", Value: 1}})
	if limit > 0 {
		opts.SetLimit(limit)
	}
	cur, err := coll.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("list presets: %w", mapErr(ctx, err))
	}
	var docs []doc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("list presets: %w", mapErr(ctx, err))
	}
	out := make([]presetstore.Record, len(docs))
	for i := range docs {
		out[i] = docs[i].record()
	}
	return out, nil
}

// Delete implements presetstore.Store.
func (s *Store) Delete(ctx context.Context, tenant, name string, expected *uint64) error {
	c, err := s.colls()
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	filter := bson.D{{Key: "_id", Value: presetID(tenant, name)}}
	if expected != nil {
		filter = append(filter, bson.E{Key: "revision", Value: int64(*expected)})
	}
	res, err := c.presets.DeleteOne(ctx, filter)
	if err != nil {
		return fmt.Errorf("delete preset: %w", mapErr(ctx, err))
	}
	if res.DeletedCount == 0 {
		if expected == nil {
			return fmt.Errorf("delete preset %q: %w", name, presetstore.ErrNotFound)
		}
		if _, err := s.Get(ctx, tenant, name, 0); err != nil {
			return err
		}
		return fmt.Errorf("delete preset %q: not at revision %d: %w", name, *expected, presetstore.ErrRevisionMismatch)
	}
	if _, err := c.revs.DeleteMany(ctx, bson.D{{Key: "tenant", Value: tenant}, {Key: "name", Value: name}}); err != nil {
		return fmt.Errorf("delete preset: history: %w", mapErr(ctx, err))
	}
	return bump(ctx, c.sets, tenant)
}

// SetRevision implements presetstore.Store.
func (s *Store) SetRevision(ctx context.Context, tenant string) (uint64, error) {
	c, err := s.colls()
	if err != nil {
		return 0, err
	}
	var d struct {
		Revision int64 `bson:"revision"`
	}
	err = c.sets.FindOne(ctx, bson.D{{Key: "_id", Value: tenant}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the preset set revision: %w", mapErr(ctx, err))
	}
	return uint64(d.Revision), nil
}

// Set implements presetstore.Store: the revision first, then the presets.
func (s *Store) Set(ctx context.Context, tenant string) (uint64, []presetstore.Record, error) {
	rev, err := s.SetRevision(ctx, tenant)
	if err != nil {
		return 0, nil, err
	}
	c, err := s.colls()
	if err != nil {
		return 0, nil, err
	}
	recs, err := find(ctx, c.presets, bson.D{{Key: "tenant", Value: tenant}, {Key: "enabled", Value: true}}, 0)
	if err != nil {
		return 0, nil, err
	}
	return rev, recs, nil
}

type secretDoc struct {
	ID     string `bson:"_id"`
	Tenant string `bson:"tenant"`
	Device string `bson:"device"`
	Name   string `bson:"name"`
	KeyID  string `bson:"key_id"`
	Sealed []byte `bson:"sealed"`
}

// EnsureSecrets implements presetstore.Store: an insert per missing name
// (a duplicate key means another session stored one first), then a read.
func (s *Store) EnsureSecrets(ctx context.Context, tenant, device string, want map[string]presetstore.Sealed) (map[string]presetstore.Sealed, error) {
	c, err := s.colls()
	if err != nil {
		return nil, err
	}
	out := make(map[string]presetstore.Sealed, len(want))
	for name, sv := range want {
		// Tenants, device ids and names hold no control character.
		id := tenant + "\x1f" + device + "\x1f" + name
		var d secretDoc
		err := c.secrets.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
		if errors.Is(err, mongo.ErrNoDocuments) {
			d = secretDoc{ID: id, Tenant: tenant, Device: device, Name: name, KeyID: sv.KeyID, Sealed: sv.Data}
			if _, err := c.secrets.InsertOne(ctx, d); mongo.IsDuplicateKeyError(err) {
				err = c.secrets.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&d)
				if err != nil {
					return nil, fmt.Errorf("ensure device secrets: %w", mapErr(ctx, err))
				}
			} else if err != nil {
				return nil, fmt.Errorf("ensure device secrets: %w", mapErr(ctx, err))
			}
		} else if err != nil {
			return nil, fmt.Errorf("ensure device secrets: %w", mapErr(ctx, err))
		}
		out[name] = presetstore.Sealed{KeyID: d.KeyID, Data: d.Sealed}
	}
	return out, nil
}

// ResealSecrets implements presetstore.Store.
func (s *Store) ResealSecrets(ctx context.Context, activeKey string, reseal func(tenant, device, name string, s presetstore.Sealed) (presetstore.Sealed, error)) (int, error) {
	c, err := s.colls()
	if err != nil {
		return 0, err
	}
	cur, err := c.secrets.Find(ctx, bson.D{{Key: "key_id", Value: bson.D{{Key: "$ne", Value: activeKey}}}})
	if err != nil {
		return 0, fmt.Errorf("reseal device secrets: %w", mapErr(ctx, err))
	}
	var docs []secretDoc
	if err := cur.All(ctx, &docs); err != nil {
		return 0, fmt.Errorf("reseal device secrets: %w", mapErr(ctx, err))
	}
	n := 0
	for _, d := range docs {
		next, err := reseal(d.Tenant, d.Device, d.Name, presetstore.Sealed{KeyID: d.KeyID, Data: d.Sealed})
		if err != nil {
			return n, err
		}
		if _, err := c.secrets.UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}, {Key: "key_id", Value: d.KeyID}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "key_id", Value: next.KeyID}, {Key: "sealed", Value: next.Data}}}}); err != nil {
			return n, fmt.Errorf("reseal device secrets: %w", mapErr(ctx, err))
		}
		n++
	}
	return n, nil
}

// DeleteSecrets implements presetstore.Store.
func (s *Store) DeleteSecrets(ctx context.Context, tenant, device string) error {
	c, err := s.colls()
	if err != nil {
		return err
	}
	if _, err := c.secrets.DeleteMany(ctx, bson.D{{Key: "tenant", Value: tenant}, {Key: "device", Value: device}}); err != nil {
		return fmt.Errorf("delete device secrets: %w", mapErr(ctx, err))
	}
	return nil
}
