// Package mongostore is the production task store: one MongoDB collection,
// tasks, one document per task record. It passes the contract suite of
// package storetest against a real MongoDB-wire server.
//
// # Document
//
//	_id          "<tenant>:<id>" (tenant names cannot hold ":", see
//	             apiauth.ValidTenant; the store refuses one that does)
//	tenant, task_id, device_id, state, kind
//	ukey         "k:<idempotency key>", or "i:<id>" when the record has none
//	create_time, update_time   dates (milliseconds)
//	due_time     date; absent when zero
//	queue_seq, version         int64
//	body         binary; secret binary, absent when nil
//
// No arrays at all, and no TTL index: retention is DeleteEnded's
// (docs/design.md §7 lists what FerretDB rejects).
//
// # Idempotency keys
//
// A key must be unique per tenant when it is set, and absent keys must not
// collide. MongoDB does that with a unique index restricted by
// partialFilterExpression, but FerretDB 1.24 refuses that option ("not
// implemented yet") and silently ignores "sparse", which would leave a
// unique index on an optional field that MongoDB enforces on the missing
// value too. So every document carries ukey, unique with tenant in a plain
// unique index that both servers enforce the same way: the key behind a
// "k:" prefix, or the record's own id behind "i:", which no key can equal.
// Concurrent creates with one key then insert exactly one document; the
// others get a duplicate-key error and read the winner.
//
// # Compare-and-swap
//
// Update is an updateOne filtered on _id and version. On MongoDB a
// single-document update is atomic, so of concurrent updaters from one
// version exactly one matches. FerretDB 1.24 (PostgreSQL backend) runs an
// update as a read, a match in its own process and a write by _id, without
// a lock between them, so two updates of one document can both match the
// same version. The store therefore also serialises its own updates of one
// record (a keyed mutex, no contention between records): within one process
// the compare-and-swap holds on both servers. Across processes it holds on
// MongoDB only; running more than one tasks replica on FerretDB can lose an
// update.
//
// # Errors
//
// A server that cannot be reached (network errors, server selection and
// socket timeouts) is store.ErrUnavailable; an operation cut short by its
// context returns the context's error.
package mongostore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/pkg/mongoindex"
	"github.com/fleetacs/fleetacs/services/tasks/store"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// Collection is the default collection name.
const Collection = "tasks"

// Config configures the store.
type Config struct {
	// URI and Database select the server and database. Ignored by
	// NewWithDatabase.
	URI      string
	Database string
	// Collection defaults to "tasks".
	Collection string
	// ConnectTimeout bounds connecting and server selection; 0 means 10s.
	ConnectTimeout time.Duration
	// OpTimeout bounds every operation that has no earlier deadline; 0
	// means 30s.
	OpTimeout time.Duration
	// Metrics, if set, records the latency and errors of every MongoDB
	// command (telemetry.ClientMetrics).
	Metrics *telemetry.ClientMetrics
}

// Store is the MongoDB task store. Create it with New or NewWithDatabase and
// call Start before use.
type Store struct {
	cfg Config

	mu     sync.Mutex // guards the fields below during Start and Close
	client *mongo.Client
	db     *mongo.Database
	coll   *mongo.Collection
	owned  bool // Close disconnects client

	locks keyedMutex
}

var _ store.Store = (*Store)(nil)

// New returns a store that connects to cfg.URI on Start. It does no I/O.
func New(cfg Config) *Store {
	if cfg.Collection == "" {
		cfg.Collection = Collection
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 30 * time.Second
	}
	return &Store{cfg: cfg, owned: true}
}

// NewWithDatabase returns a store on a database whose client the caller
// owns (and disconnects). It does no I/O.
func NewWithDatabase(db *mongo.Database, cfg Config) *Store {
	s := New(cfg)
	s.db, s.owned = db, false
	return s
}

// Start connects (for New), checks that the server answers and creates the
// missing indexes. Starting a started store does nothing.
func (s *Store) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.coll != nil {
		return nil
	}
	if err := s.start(ctx); err != nil {
		s.disconnect()
		return fmt.Errorf("start mongodb task store: %w", err)
	}
	return nil
}

func (s *Store) start(ctx context.Context) error {
	db := s.db
	if db == nil {
		if s.cfg.URI == "" || s.cfg.Database == "" {
			return errors.New("URI and database are required")
		}
		client, err := mongo.Connect(options.Client().ApplyURI(s.cfg.URI).
			SetConnectTimeout(s.cfg.ConnectTimeout).SetServerSelectionTimeout(s.cfg.ConnectTimeout).
			SetTimeout(s.cfg.OpTimeout).SetMonitor(s.cfg.Metrics.MongoMonitor()))
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		s.client, db = client, client.Database(s.cfg.Database)
	}
	if err := db.Client().Ping(ctx, nil); err != nil {
		return fmt.Errorf("ping: %w", mapErr(ctx, err))
	}
	coll := db.Collection(s.cfg.Collection, collectionOptions())
	if err := ensureIndexes(ctx, coll); err != nil {
		return mapErr(ctx, err)
	}
	s.db, s.coll = db, coll
	return nil
}

func (s *Store) disconnect() {
	if s.client != nil && s.owned {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.client.Disconnect(ctx)
		s.client, s.db = nil, nil
	}
}

// Close disconnects a client the store created. Later operations fail with
// store.ErrUnavailable.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.coll = nil
	if s.client == nil || !s.owned {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.client.Disconnect(ctx)
	s.client, s.db = nil, nil
	if err != nil {
		return fmt.Errorf("close mongodb task store: %w", err)
	}
	return nil
}

var errNotStarted = fmt.Errorf("mongodb task store not started: %w", store.ErrUnavailable)

func (s *Store) collection() (*mongo.Collection, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.coll == nil {
		return nil, errNotStarted
	}
	return s.coll, nil
}

// indexes are declared here and created by Start when missing:
//   - tenant_ukey (unique): idempotency keys, see the package comment;
//   - tenant_created, tenant_device, tenant_state: List, newest first,
//     unfiltered, by device and by state;
//   - due: Due (a range of due_time, in its order) and DeleteEnded
//     (due_time missing, a range of update_time).
//
// _id serves Get, GetMany and Update.
var indexes = []struct {
	name   string
	keys   bson.D
	unique bool
}{
	{"tenant_ukey", bson.D{{Key: "tenant", Value: 1}, {Key: "ukey", Value: 1}}, true},
	{"tenant_created", bson.D{{Key: "tenant", Value: 1}, {Key: "create_time", Value: -1}, {Key: "task_id", Value: -1}}, false},
	{"tenant_device", bson.D{{Key: "tenant", Value: 1}, {Key: "device_id", Value: 1}, {Key: "create_time", Value: -1}, {Key: "task_id", Value: -1}}, false},
	{"tenant_state", bson.D{{Key: "tenant", Value: 1}, {Key: "state", Value: 1}, {Key: "create_time", Value: -1}, {Key: "task_id", Value: -1}}, false},
	{"due", bson.D{{Key: "due_time", Value: 1}, {Key: "update_time", Value: 1}}, false},
}

// ensureIndexes creates the indexes the collection lacks, safely when
// several tasks processes start at once (package mongoindex: FerretDB
// drops the connection when asked again for an index that exists).
func ensureIndexes(ctx context.Context, coll *mongo.Collection) error {
	models := make([]mongo.IndexModel, 0, len(indexes))
	for _, ix := range indexes {
		o := options.Index().SetName(ix.name)
		if ix.unique {
			o.SetUnique(true)
		}
		models = append(models, mongo.IndexModel{Keys: ix.keys, Options: o})
	}
	return mongoindex.Ensure(ctx, coll, models...)
}

// mapErr turns driver errors into the port's: the context's own error when
// it ended, store.ErrUnavailable when the server cannot be reached.
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

func docID(tenant, id string) string { return tenant + ":" + id }

// doc is a record as stored.
type doc struct {
	ID         string    `bson:"_id"`
	Tenant     string    `bson:"tenant"`
	TaskID     string    `bson:"task_id"`
	DeviceID   string    `bson:"device_id"`
	State      int32     `bson:"state"`
	Kind       string    `bson:"kind"`
	UKey       string    `bson:"ukey"`
	CreateTime time.Time `bson:"create_time"`
	UpdateTime time.Time `bson:"update_time"`
	DueTime    time.Time `bson:"due_time,omitempty"`
	QueueSeq   int64     `bson:"queue_seq"`
	Version    int64     `bson:"version"`
	Body       []byte    `bson:"body"`
	Secret     []byte    `bson:"secret,omitempty"`
}

func ukey(r *store.Record) string {
	if r.IdempotencyKey != "" {
		return "k:" + r.IdempotencyKey
	}
	return "i:" + r.ID
}

func msTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

func (d *doc) record() store.Record {
	r := store.Record{
		Tenant:     d.Tenant,
		ID:         d.TaskID,
		DeviceID:   d.DeviceID,
		State:      d.State,
		Kind:       d.Kind,
		CreateTime: msTime(d.CreateTime),
		UpdateTime: msTime(d.UpdateTime),
		DueTime:    msTime(d.DueTime),
		QueueSeq:   uint64(d.QueueSeq),
		Version:    uint64(d.Version),
	}
	if k, ok := strings.CutPrefix(d.UKey, "k:"); ok {
		r.IdempotencyKey = k
	}
	if len(d.Body) > 0 {
		r.Body = d.Body
	}
	if len(d.Secret) > 0 {
		r.Secret = d.Secret
	}
	return r
}

// normal is r as the store keeps and returns it.
func normal(r store.Record) store.Record {
	r.CreateTime, r.UpdateTime, r.DueTime = msTime(r.CreateTime), msTime(r.UpdateTime), msTime(r.DueTime)
	if len(r.Body) == 0 {
		r.Body = nil
	}
	if len(r.Secret) == 0 {
		r.Secret = nil
	}
	return r
}

// check reports what makes r unfit to store.
func check(r *store.Record) error {
	switch {
	case r.Tenant == "" || r.ID == "":
		return errors.New("tenant and id must not be empty")
	case strings.Contains(r.Tenant, ":"):
		return errors.New("tenant must not contain ':'")
	case r.CreateTime.IsZero() || r.UpdateTime.IsZero():
		return errors.New("create and update times must be set")
	case r.QueueSeq > math.MaxInt64 || r.Version > math.MaxInt64:
		return errors.New("queue sequence and version must not exceed 2^63-1")
	}
	return nil
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, r store.Record) (store.Record, bool, error) {
	stored, existing, err := s.create(ctx, r)
	if err != nil {
		return store.Record{}, false, fmt.Errorf("create task %s/%s: %w", r.Tenant, r.ID, err)
	}
	return stored, existing, nil
}

func (s *Store) create(ctx context.Context, r store.Record) (store.Record, bool, error) {
	if err := check(&r); err != nil {
		return store.Record{}, false, err
	}
	if r.Version != 1 {
		return store.Record{}, false, fmt.Errorf("version %d, want 1", r.Version)
	}
	coll, err := s.collection()
	if err != nil {
		return store.Record{}, false, err
	}
	r = normal(r)
	d := doc{ID: docID(r.Tenant, r.ID), Tenant: r.Tenant, TaskID: r.ID, DeviceID: r.DeviceID, State: r.State,
		Kind: r.Kind, UKey: ukey(&r), CreateTime: r.CreateTime, UpdateTime: r.UpdateTime, DueTime: r.DueTime,
		QueueSeq: int64(r.QueueSeq), Version: int64(r.Version), Body: r.Body, Secret: r.Secret}
	if d.Body == nil {
		d.Body = []byte{}
	}
	// Twice at most: the record holding the key may be deleted between
	// the insert that collided with it and the read of it.
	for range 2 {
		_, err = coll.InsertOne(ctx, d)
		if err == nil {
			return r, false, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return store.Record{}, false, mapErr(ctx, err)
		}
		if r.IdempotencyKey != "" {
			var got doc
			err := coll.FindOne(ctx, bson.D{{Key: "tenant", Value: r.Tenant}, {Key: "ukey", Value: d.UKey}}).Decode(&got)
			if err == nil {
				return got.record(), true, nil
			}
			if !errors.Is(err, mongo.ErrNoDocuments) {
				return store.Record{}, false, mapErr(ctx, err)
			}
		}
		n, err := coll.CountDocuments(ctx, bson.D{{Key: "_id", Value: d.ID}})
		if err != nil {
			return store.Record{}, false, mapErr(ctx, err)
		}
		if n > 0 {
			return store.Record{}, false, errors.New("a task with this id exists")
		}
	}
	return store.Record{}, false, errors.New("insert collided with a record deleted meanwhile, twice")
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, tenant, id string) (store.Record, error) {
	r, err := func() (store.Record, error) {
		coll, err := s.collection()
		if err != nil {
			return store.Record{}, err
		}
		var d doc
		err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: docID(tenant, id)}}).Decode(&d)
		if errors.Is(err, mongo.ErrNoDocuments) || err == nil && d.Tenant != tenant {
			return store.Record{}, store.ErrNotFound
		}
		if err != nil {
			return store.Record{}, mapErr(ctx, err)
		}
		return d.record(), nil
	}()
	if err != nil {
		return store.Record{}, fmt.Errorf("get task %s/%s: %w", tenant, id, err)
	}
	return r, nil
}

// getManyBatch bounds the ids of one query.
const getManyBatch = 500

// GetMany implements store.Store.
func (s *Store) GetMany(ctx context.Context, tenant string, ids []string) ([]store.Record, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	out, err := func() ([]store.Record, error) {
		coll, err := s.collection()
		if err != nil {
			return nil, err
		}
		out := make([]store.Record, 0, min(len(ids), getManyBatch))
		for start := 0; start < len(ids); start += getManyBatch {
			chunk := ids[start:min(start+getManyBatch, len(ids))]
			keys := make(bson.A, len(chunk))
			for i, id := range chunk {
				keys[i] = docID(tenant, id)
			}
			// tenant too: "a:b" + "c" and "a" + "b:c" are one _id.
			if out, err = s.find(ctx, coll, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: keys}}},
				{Key: "tenant", Value: tenant}}, nil, out); err != nil {
				return nil, err
			}
		}
		return out, nil
	}()
	if err != nil {
		return nil, fmt.Errorf("get %d tasks of %s: %w", len(ids), tenant, err)
	}
	return out, nil
}

// find appends the records filter matches to out.
func (s *Store) find(ctx context.Context, coll *mongo.Collection, filter bson.D, opts *options.FindOptionsBuilder, out []store.Record) ([]store.Record, error) {
	if opts == nil {
		opts = options.Find()
	}
	cur, err := coll.Find(ctx, filter, opts)
	if err != nil {
		return out, mapErr(ctx, err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var d doc
		if err := cur.Decode(&d); err != nil {
			return out, fmt.Errorf("decode task: %w", err)
		}
		out = append(out, d.record())
	}
	return out, mapErr(ctx, cur.Err())
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, q store.Query) ([]store.Record, error) {
	out, err := func() ([]store.Record, error) {
		if q.Tenant == "" {
			return nil, errors.New("tenant must not be empty")
		}
		if q.Limit < 0 {
			return nil, fmt.Errorf("limit %d is negative", q.Limit)
		}
		limit := q.Limit
		if limit == 0 {
			limit = 100
		}
		coll, err := s.collection()
		if err != nil {
			return nil, err
		}
		filter := bson.D{{Key: "tenant", Value: q.Tenant}}
		if q.DeviceID != "" {
			filter = append(filter, bson.E{Key: "device_id", Value: q.DeviceID})
		}
		if len(q.States) > 0 {
			filter = append(filter, bson.E{Key: "state", Value: bson.D{{Key: "$in", Value: q.States}}})
		}
		if len(q.Kinds) > 0 {
			filter = append(filter, bson.E{Key: "kind", Value: bson.D{{Key: "$in", Value: q.Kinds}}})
		}
		var created bson.D
		if !q.CreatedAfter.IsZero() {
			created = append(created, bson.E{Key: "$gte", Value: msTime(q.CreatedAfter)})
		}
		if !q.CreatedBefore.IsZero() {
			created = append(created, bson.E{Key: "$lt", Value: msTime(q.CreatedBefore)})
		}
		if len(created) > 0 {
			filter = append(filter, bson.E{Key: "create_time", Value: created})
		}
		if c := q.After; c != nil {
			at := msTime(c.CreateTime)
			filter = append(filter, bson.E{Key: "$or", Value: bson.A{
				bson.D{{Key: "create_time", Value: bson.D{{Key: "$lt", Value: at}}}},
				bson.D{{Key: "create_time", Value: at}, {Key: "task_id", Value: bson.D{{Key: "$lt", Value: c.ID}}}},
			}})
		}
		opts := options.Find().SetSort(bson.D{{Key: "create_time", Value: -1}, {Key: "task_id", Value: -1}}).
			SetLimit(int64(limit))
		return s.find(ctx, coll, filter, opts, make([]store.Record, 0, min(limit, 100)))
	}()
	if err != nil {
		return nil, fmt.Errorf("list tasks of %s: %w", q.Tenant, err)
	}
	return out, nil
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, r store.Record, expectVersion uint64) error {
	if err := s.update(ctx, r, expectVersion); err != nil {
		return fmt.Errorf("update task %s/%s to version %d: %w", r.Tenant, r.ID, r.Version, err)
	}
	return nil
}

func (s *Store) update(ctx context.Context, r store.Record, expectVersion uint64) error {
	if err := check(&r); err != nil {
		return err
	}
	if expectVersion >= math.MaxInt64 || r.Version != expectVersion+1 {
		return fmt.Errorf("version %d does not follow %d", r.Version, expectVersion)
	}
	coll, err := s.collection()
	if err != nil {
		return err
	}
	r = normal(r)
	body := r.Body
	if body == nil {
		body = []byte{}
	}
	set := bson.D{
		{Key: "state", Value: r.State},
		{Key: "kind", Value: r.Kind},
		{Key: "update_time", Value: r.UpdateTime},
		{Key: "queue_seq", Value: int64(r.QueueSeq)},
		{Key: "version", Value: int64(r.Version)},
		{Key: "body", Value: body},
	}
	var unset bson.D
	if r.DueTime.IsZero() {
		unset = append(unset, bson.E{Key: "due_time", Value: ""})
	} else {
		set = append(set, bson.E{Key: "due_time", Value: r.DueTime})
	}
	if r.Secret == nil {
		unset = append(unset, bson.E{Key: "secret", Value: ""})
	} else {
		set = append(set, bson.E{Key: "secret", Value: r.Secret})
	}
	update := bson.D{{Key: "$set", Value: set}}
	if len(unset) > 0 {
		update = append(update, bson.E{Key: "$unset", Value: unset})
	}
	id := docID(r.Tenant, r.ID)
	// See the package comment: FerretDB's updates are not atomic.
	unlock := s.locks.lock(id)
	defer unlock()
	res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "version", Value: int64(expectVersion)}}, update)
	if err != nil {
		return mapErr(ctx, err)
	}
	if res.MatchedCount > 0 {
		return nil
	}
	n, err := coll.CountDocuments(ctx, bson.D{{Key: "_id", Value: id}})
	switch {
	case err != nil:
		return mapErr(ctx, err)
	case n == 0:
		return store.ErrNotFound
	}
	return store.ErrVersionConflict
}

// Due implements store.Store.
func (s *Store) Due(ctx context.Context, t time.Time, limit int) ([]store.Record, error) {
	out, err := s.findLimited(ctx, bson.D{{Key: "due_time", Value: bson.D{{Key: "$lte", Value: msTime(t)}}}},
		options.Find().SetSort(bson.D{{Key: "due_time", Value: 1}}), limit)
	if err != nil {
		return nil, fmt.Errorf("list tasks due at %v: %w", t, err)
	}
	return out, nil
}

// ChangedSince implements store.Store: ended records (no due_time) by a
// range of the due index, running ones by its scan, filtered in the index
// (the $or of the two is {update_time >= t}, said so that the due index
// serves it).
func (s *Store) ChangedSince(ctx context.Context, t time.Time, limit int) ([]store.Record, error) {
	since := bson.D{{Key: "$gte", Value: msTime(t)}}
	out, err := s.findLimited(ctx, bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "due_time", Value: nil}, {Key: "update_time", Value: since}},
		bson.D{{Key: "due_time", Value: bson.D{{Key: "$ne", Value: nil}}}, {Key: "update_time", Value: since}},
	}}}, options.Find(), limit)
	if err != nil {
		return nil, fmt.Errorf("list tasks changed since %v: %w", t, err)
	}
	return out, nil
}

// findLimited finds at most limit records of any tenant, which must be
// positive.
func (s *Store) findLimited(ctx context.Context, filter bson.D, opts *options.FindOptionsBuilder, limit int) ([]store.Record, error) {
	if limit < 1 {
		return nil, fmt.Errorf("limit %d is not positive", limit)
	}
	coll, err := s.collection()
	if err != nil {
		return nil, err
	}
	return s.find(ctx, coll, filter, opts.SetLimit(int64(limit)), nil)
}

// DeleteEnded implements store.Store. MongoDB's deletes take no limit, so it
// reads the ids of at most limit ended records and deletes those that are
// still ended.
func (s *Store) DeleteEnded(ctx context.Context, t time.Time, limit int) (int, error) {
	n, err := func() (int, error) {
		if limit < 1 {
			return 0, fmt.Errorf("limit %d is not positive", limit)
		}
		coll, err := s.collection()
		if err != nil {
			return 0, err
		}
		ended := bson.D{{Key: "due_time", Value: nil}, {Key: "update_time", Value: bson.D{{Key: "$lt", Value: msTime(t)}}}}
		cur, err := coll.Find(ctx, ended, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit)))
		if err != nil {
			return 0, mapErr(ctx, err)
		}
		var ids bson.A
		for cur.Next(ctx) {
			var d struct {
				ID string `bson:"_id"`
			}
			if err := cur.Decode(&d); err != nil {
				_ = cur.Close(ctx)
				return 0, fmt.Errorf("decode id: %w", err)
			}
			ids = append(ids, d.ID)
		}
		err = cur.Err()
		_ = cur.Close(ctx)
		if err != nil {
			return 0, mapErr(ctx, err)
		}
		if len(ids) == 0 {
			return 0, nil
		}
		res, err := coll.DeleteMany(ctx, append(bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}, ended...))
		if err != nil {
			return 0, mapErr(ctx, err)
		}
		return int(res.DeletedCount), nil
	}()
	if err != nil {
		return 0, fmt.Errorf("delete tasks ended before %v: %w", t, err)
	}
	return n, nil
}

// keyedMutex is a set of mutexes created on demand, one per key, dropped
// when no one holds or waits for them.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = make(map[string]*keyedLock)
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()

	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
