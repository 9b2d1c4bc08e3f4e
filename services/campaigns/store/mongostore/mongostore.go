// Package mongostore is the MongoDB campaigns store: one document per
// campaign in "campaigns" (_id "tenant:id"; the API record as protobuf
// bytes, the runner's state as a subdocument), one per idempotency key in
// "campaign_keys" (_id "tenant:key", so that a repeated create finds its
// campaign without a partial index), and one per device in
// "campaign_devices" (_id "tenant:campaign:device"), indexed by plan order
// and by outcome, and the runners' leases in "campaign_leases" (_id
// "tenant:id", owner and end). It passes the contract suite of package storetest, on
// MongoDB and on FerretDB.
package mongostore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"google.golang.org/protobuf/proto"

	"github.com/fleetacs/fleetacs/pkg/mongoindex"
	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	"github.com/fleetacs/fleetacs/services/campaigns/store"
)

// Collections of the store.
const (
	Campaigns = "campaigns"
	Keys      = "campaign_keys"
	Devices   = "campaign_devices"
	Leases    = "campaign_leases"
)

// Store is the MongoDB campaigns store, on a database whose client the
// caller owns.
type Store struct {
	db      *mongo.Database
	mu      sync.RWMutex
	started bool
}

var _ store.Store = (*Store)(nil)

// New returns a store on db. It does no I/O.
func New(db *mongo.Database) *Store { return &Store{db: db} }

// Start checks that the server answers and creates the indexes.
func (s *Store) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return nil
	}
	if err := s.db.Client().Ping(ctx, nil); err != nil {
		return fmt.Errorf("start mongodb campaigns store: %w", mapErr(ctx, err))
	}
	// Safe when several processes start at once, and again at every
	// start on FerretDB (package mongoindex).
	if err := mongoindex.Ensure(ctx, s.db.Collection(Campaigns), []mongo.IndexModel{
		{Keys: bson.D{{Key: "tenant", Value: 1}, {Key: "create_time", Value: -1}, {Key: "cid", Value: -1}}, Options: options.Index().SetName("tenant_created")},
		{Keys: bson.D{{Key: "settled", Value: 1}}, Options: options.Index().SetName("settled")},
	}...); err != nil {
		return fmt.Errorf("start mongodb campaigns store: indexes: %w", mapErr(ctx, err))
	}
	if err := mongoindex.Ensure(ctx, s.db.Collection(Devices), []mongo.IndexModel{
		{Keys: bson.D{{Key: "tenant", Value: 1}, {Key: "campaign", Value: 1}, {Key: "seq", Value: 1}}, Options: options.Index().SetName("campaign_seq")},
		{Keys: bson.D{{Key: "tenant", Value: 1}, {Key: "campaign", Value: 1}, {Key: "outcome", Value: 1}, {Key: "seq", Value: 1}}, Options: options.Index().SetName("campaign_outcome")},
	}...); err != nil {
		return fmt.Errorf("start mongodb campaigns store: indexes: %w", mapErr(ctx, err))
	}
	s.started = true
	return nil
}

// Close forgets the database; the caller disconnects the client.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started = false
	return nil
}

func (s *Store) coll(name string) (*mongo.Collection, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.started {
		return nil, fmt.Errorf("%w: not started", store.ErrUnavailable)
	}
	return s.db.Collection(name), nil
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

type campaignDoc struct {
	ID         string `bson:"_id"`
	Tenant     string `bson:"tenant"`
	CID        string `bson:"cid"`
	State      int32  `bson:"state"`
	Idem       string `bson:"idem"`
	CreateTime int64  `bson:"create_time"`
	Settled    bool   `bson:"settled"`
	Campaign   []byte `bson:"campaign"`
	Run        string `bson:"run"`
	Version    int64  `bson:"version"`
}

type deviceDoc struct {
	ID         string `bson:"_id"`
	Tenant     string `bson:"tenant"`
	Campaign   string `bson:"campaign"`
	Device     string `bson:"device"`
	Seq        int64  `bson:"seq"`
	Wave       int32  `bson:"wave"`
	TaskID     string `bson:"task_id"`
	Outcome    int32  `bson:"outcome"`
	Detail     string `bson:"detail"`
	TaskEnd    int64  `bson:"task_end"`
	UpdateTime int64  `bson:"update_time"`
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

func toDoc(r store.Record) (campaignDoc, error) {
	c, err := proto.Marshal(r.Campaign)
	if err != nil {
		return campaignDoc{}, err
	}
	run, err := json.Marshal(r.Run)
	if err != nil {
		return campaignDoc{}, err
	}
	return campaignDoc{ID: r.Tenant + ":" + r.ID, Tenant: r.Tenant, CID: r.ID, State: int32(r.State), Idem: r.IdempotencyKey,
		CreateTime: ms(r.CreateTime), Settled: r.Settled, Campaign: c, Run: string(run), Version: int64(r.Version)}, nil
}

func fromDoc(d campaignDoc) (store.Record, error) {
	r := store.Record{Tenant: d.Tenant, ID: d.CID, State: campaignsv1.CampaignState(d.State), IdempotencyKey: d.Idem,
		CreateTime: fromMS(d.CreateTime), Settled: d.Settled, Version: uint64(d.Version), Campaign: &campaignsv1.Campaign{}}
	if err := proto.Unmarshal(d.Campaign, r.Campaign); err != nil {
		return r, fmt.Errorf("decode campaign %s: %w", d.CID, err)
	}
	if err := json.Unmarshal([]byte(d.Run), &r.Run); err != nil {
		return r, fmt.Errorf("decode campaign %s run state: %w", d.CID, err)
	}
	return r, nil
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, r store.Record) (store.Record, bool, error) {
	cs, err := s.coll(Campaigns)
	if err != nil {
		return r, false, err
	}
	r.Version = 1
	r.CreateTime = fromMS(ms(r.CreateTime))
	if r.IdempotencyKey != "" {
		keys := s.db.Collection(Keys)
		_, err := keys.InsertOne(ctx, bson.D{{Key: "_id", Value: r.Tenant + ":" + r.IdempotencyKey}, {Key: "campaign", Value: r.ID}, {Key: "t", Value: time.Now().UnixMilli()}})
		if mongo.IsDuplicateKeyError(err) {
			var k struct {
				Campaign string `bson:"campaign"`
				T        int64  `bson:"t"`
			}
			if err := keys.FindOne(ctx, bson.D{{Key: "_id", Value: r.Tenant + ":" + r.IdempotencyKey}}).Decode(&k); err != nil {
				return r, false, fmt.Errorf("create campaign: %w", mapErr(ctx, err))
			}
			got, err := s.Get(ctx, r.Tenant, k.Campaign)
			if errors.Is(err, store.ErrNotFound) && time.Since(time.UnixMilli(k.T)) < time.Minute {
				// A concurrent create with the key has not stored its
				// campaign yet: the caller retries.
				return r, false, fmt.Errorf("%w: a create with this idempotency key is in progress", store.ErrUnavailable)
			}
			if errors.Is(err, store.ErrNotFound) {
				// The key of a create that failed after taking it: the
				// key is free again.
				if _, err := keys.DeleteOne(ctx, bson.D{{Key: "_id", Value: r.Tenant + ":" + r.IdempotencyKey}, {Key: "campaign", Value: k.Campaign}}); err != nil {
					return r, false, fmt.Errorf("create campaign: %w", mapErr(ctx, err))
				}
				return s.Create(ctx, r)
			}
			return got, err == nil, err
		}
		if err != nil {
			return r, false, fmt.Errorf("create campaign: %w", mapErr(ctx, err))
		}
	}
	d, err := toDoc(r)
	if err != nil {
		return r, false, err
	}
	if _, err := cs.InsertOne(ctx, d); err != nil {
		if r.IdempotencyKey != "" {
			_, _ = s.db.Collection(Keys).DeleteOne(context.WithoutCancel(ctx), bson.D{{Key: "_id", Value: r.Tenant + ":" + r.IdempotencyKey}, {Key: "campaign", Value: r.ID}})
		}
		return r, false, fmt.Errorf("create campaign: %w", mapErr(ctx, err))
	}
	return r, false, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, tenant, id string) (store.Record, error) {
	cs, err := s.coll(Campaigns)
	if err != nil {
		return store.Record{}, err
	}
	var d campaignDoc
	err = cs.FindOne(ctx, bson.D{{Key: "_id", Value: tenant + ":" + id}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Record{}, store.ErrNotFound
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("get campaign: %w", mapErr(ctx, err))
	}
	return fromDoc(d)
}

func (s *Store) find(ctx context.Context, filter bson.D, opts *options.FindOptionsBuilder) ([]store.Record, error) {
	cs, err := s.coll(Campaigns)
	if err != nil {
		return nil, err
	}
	cur, err := cs.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", mapErr(ctx, err))
	}
	defer cur.Close(ctx)
	var out []store.Record
	for cur.Next(ctx) {
		var d campaignDoc
		if err := cur.Decode(&d); err != nil {
			return nil, fmt.Errorf("list campaigns: %w", err)
		}
		r, err := fromDoc(d)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, mapErr(ctx, cur.Err())
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, tenant string, state campaignsv1.CampaignState, after *store.Cursor, limit int) ([]store.Record, error) {
	if limit <= 0 {
		limit = 50
	}
	f := bson.D{{Key: "tenant", Value: tenant}}
	if state != campaignsv1.CampaignState_CAMPAIGN_STATE_UNSPECIFIED {
		f = append(f, bson.E{Key: "state", Value: int32(state)})
	}
	if after != nil {
		t := ms(after.CreateTime)
		f = append(f, bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "create_time", Value: bson.D{{Key: "$lt", Value: t}}}},
			bson.D{{Key: "create_time", Value: t}, {Key: "cid", Value: bson.D{{Key: "$lt", Value: after.ID}}}},
		}})
	}
	return s.find(ctx, f, options.Find().SetSort(bson.D{{Key: "create_time", Value: -1}, {Key: "cid", Value: -1}}).SetLimit(int64(limit)))
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, r store.Record) (store.Record, error) {
	cs, err := s.coll(Campaigns)
	if err != nil {
		return r, err
	}
	d, err := toDoc(r)
	if err != nil {
		return r, err
	}
	res, err := cs.UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}, {Key: "version", Value: int64(r.Version)}}, bson.D{{Key: "$set", Value: bson.D{
		{Key: "state", Value: d.State}, {Key: "settled", Value: d.Settled}, {Key: "campaign", Value: d.Campaign},
		{Key: "run", Value: d.Run}, {Key: "version", Value: int64(r.Version) + 1},
	}}})
	if err != nil {
		return r, fmt.Errorf("update campaign: %w", mapErr(ctx, err))
	}
	if res.MatchedCount == 0 {
		if _, err := s.Get(ctx, r.Tenant, r.ID); err != nil {
			return r, err
		}
		return r, store.ErrConflict
	}
	r.Version++
	return r, nil
}

// Unsettled implements store.Store.
func (s *Store) Unsettled(ctx context.Context) ([]store.Record, error) {
	return s.find(ctx, bson.D{{Key: "settled", Value: false}}, options.Find().SetSort(bson.D{{Key: "create_time", Value: 1}, {Key: "cid", Value: 1}}))
}

func deviceKey(tenant, campaign, device string) string { return tenant + ":" + campaign + ":" + device }

// AddDevices implements store.Store.
func (s *Store) AddDevices(ctx context.Context, ds []store.Device) error {
	c, err := s.coll(Devices)
	if err != nil {
		return err
	}
	if len(ds) == 0 {
		return nil
	}
	models := make([]mongo.WriteModel, len(ds))
	for i, d := range ds {
		doc := deviceDoc{ID: deviceKey(d.Tenant, d.Campaign, d.DeviceID), Tenant: d.Tenant, Campaign: d.Campaign, Device: d.DeviceID,
			Seq: int64(d.Seq), Wave: d.Wave, TaskID: d.TaskID, Outcome: int32(d.Outcome), Detail: d.Detail, TaskEnd: ms(d.TaskEnd), UpdateTime: ms(d.UpdateTime)}
		models[i] = mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: doc.ID}}).
			SetUpdate(bson.D{{Key: "$setOnInsert", Value: doc}}).SetUpsert(true)
	}
	if _, err := c.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false)); err != nil {
		return fmt.Errorf("add campaign devices: %w", mapErr(ctx, err))
	}
	return nil
}

// SetWave implements store.Store.
func (s *Store) SetWave(ctx context.Context, tenant, campaign string, from, to uint64, wave int32) error {
	c, err := s.coll(Devices)
	if err != nil {
		return err
	}
	_, err = c.UpdateMany(ctx, bson.D{{Key: "tenant", Value: tenant}, {Key: "campaign", Value: campaign},
		{Key: "seq", Value: bson.D{{Key: "$gte", Value: int64(from)}, {Key: "$lt", Value: int64(to)}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "wave", Value: wave}}}})
	if err != nil {
		return fmt.Errorf("set campaign wave: %w", mapErr(ctx, err))
	}
	return nil
}

// Devices implements store.Store.
func (s *Store) Devices(ctx context.Context, q store.DeviceQuery) ([]store.Device, error) {
	c, err := s.coll(Devices)
	if err != nil {
		return nil, err
	}
	if q.Limit <= 0 {
		q.Limit = 100
	}
	f := bson.D{{Key: "tenant", Value: q.Tenant}, {Key: "campaign", Value: q.Campaign}}
	if q.Outcome != campaignsv1.Outcome_OUTCOME_UNSPECIFIED {
		f = append(f, bson.E{Key: "outcome", Value: int32(q.Outcome)})
	}
	f = append(f, bson.E{Key: "seq", Value: bson.D{{Key: "$gt", Value: q.AfterSeq}}})
	if q.Wave >= 0 {
		f = append(f, bson.E{Key: "wave", Value: q.Wave})
	}
	cur, err := c.Find(ctx, f, options.Find().SetSort(bson.D{{Key: "seq", Value: 1}}).SetLimit(int64(q.Limit)))
	if err != nil {
		return nil, fmt.Errorf("list campaign devices: %w", mapErr(ctx, err))
	}
	defer cur.Close(ctx)
	var out []store.Device
	for cur.Next(ctx) {
		var d deviceDoc
		if err := cur.Decode(&d); err != nil {
			return nil, fmt.Errorf("list campaign devices: %w", err)
		}
		out = append(out, store.Device{Tenant: d.Tenant, Campaign: d.Campaign, DeviceID: d.Device, Seq: uint64(d.Seq), Wave: d.Wave,
			TaskID: d.TaskID, Outcome: campaignsv1.Outcome(d.Outcome), Detail: d.Detail, TaskEnd: fromMS(d.TaskEnd), UpdateTime: fromMS(d.UpdateTime)})
	}
	return out, mapErr(ctx, cur.Err())
}

// UpdateDevice implements store.Store.
func (s *Store) UpdateDevice(ctx context.Context, d store.Device) error {
	c, err := s.coll(Devices)
	if err != nil {
		return err
	}
	res, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: deviceKey(d.Tenant, d.Campaign, d.DeviceID)}}, bson.D{{Key: "$set", Value: bson.D{
		{Key: "task_id", Value: d.TaskID}, {Key: "outcome", Value: int32(d.Outcome)}, {Key: "detail", Value: d.Detail},
		{Key: "task_end", Value: ms(d.TaskEnd)}, {Key: "update_time", Value: ms(d.UpdateTime)},
	}}})
	if err != nil {
		return fmt.Errorf("update campaign device: %w", mapErr(ctx, err))
	}
	if res.MatchedCount == 0 {
		return store.ErrNotFound
	}
	return nil
}

// SetOutcomes implements store.Store.
func (s *Store) SetOutcomes(ctx context.Context, tenant, campaign string, from, to campaignsv1.Outcome, detail string) (int64, error) {
	c, err := s.coll(Devices)
	if err != nil {
		return 0, err
	}
	res, err := c.UpdateMany(ctx, bson.D{{Key: "tenant", Value: tenant}, {Key: "campaign", Value: campaign}, {Key: "outcome", Value: int32(from)}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "outcome", Value: int32(to)}, {Key: "detail", Value: detail}, {Key: "update_time", Value: time.Now().UnixMilli()}}}})
	if err != nil {
		return 0, fmt.Errorf("set campaign outcomes: %w", mapErr(ctx, err))
	}
	return res.ModifiedCount, nil
}

// Count implements store.Store.
func (s *Store) Count(ctx context.Context, tenant, campaign string) (store.Counts, error) {
	c, err := s.coll(Devices)
	if err != nil {
		return nil, err
	}
	cur, err := c.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: bson.D{{Key: "tenant", Value: tenant}, {Key: "campaign", Value: campaign}}}},
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: bson.D{{Key: "w", Value: "$wave"}, {Key: "o", Value: "$outcome"}}}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
	})
	if err != nil {
		return nil, fmt.Errorf("count campaign devices: %w", mapErr(ctx, err))
	}
	defer cur.Close(ctx)
	out := store.Counts{}
	for cur.Next(ctx) {
		var g struct {
			ID struct {
				W int32 `bson:"w"`
				O int32 `bson:"o"`
			} `bson:"_id"`
			N int64 `bson:"n"`
		}
		if err := cur.Decode(&g); err != nil {
			return nil, fmt.Errorf("count campaign devices: %w", err)
		}
		if out[g.ID.W] == nil {
			out[g.ID.W] = map[campaignsv1.Outcome]uint64{}
		}
		out[g.ID.W][campaignsv1.Outcome(g.ID.O)] = uint64(g.N)
	}
	return out, mapErr(ctx, cur.Err())
}

// Lease implements store.Store: an upsert filtered on the owner or an
// ended lease; when another owner's lease runs, the filter matches
// nothing and the insert the upsert tries collides with its _id.
func (s *Store) Lease(ctx context.Context, tenant, campaign, owner string, now, until time.Time) (bool, error) {
	ls, err := s.coll(Leases)
	if err != nil {
		return false, err
	}
	filter := bson.D{{Key: "_id", Value: tenant + ":" + campaign}, {Key: "$or", Value: bson.A{
		bson.D{{Key: "owner", Value: owner}},
		bson.D{{Key: "until", Value: bson.D{{Key: "$lte", Value: now.UnixMilli()}}}},
	}}}
	update := bson.D{{Key: "$set", Value: bson.D{{Key: "owner", Value: owner}, {Key: "until", Value: until.UnixMilli()}}}}
	_, err = ls.UpdateOne(ctx, filter, update, options.UpdateOne().SetUpsert(true))
	if mongo.IsDuplicateKeyError(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lease campaign: %w", mapErr(ctx, err))
	}
	return true, nil
}

// Release implements store.Store.
func (s *Store) Release(ctx context.Context, tenant, campaign, owner string) error {
	ls, err := s.coll(Leases)
	if err != nil {
		return err
	}
	if _, err := ls.DeleteOne(ctx, bson.D{{Key: "_id", Value: tenant + ":" + campaign}, {Key: "owner", Value: owner}}); err != nil {
		return fmt.Errorf("release campaign lease: %w", mapErr(ctx, err))
	}
	return nil
}
