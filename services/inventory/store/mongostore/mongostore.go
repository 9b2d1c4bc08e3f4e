// Package mongostore is the production inventory store: one MongoDB
// collection, devices, one document per device (docs/design.md §3).
//
// # Document
//
//	_id               "<tenant>:<device id>" (tenants cannot contain ":")
//	tenant, device_id the key again as plain fields, for the indexes below
//	manufacturer, oui_raw, product_class, serial   DeviceId as reported
//	oui               normalised OUI
//	software_version, hardware_version, provisioning_code, root
//	cr{url,udp,jid}   connection-request targets
//	crc{u,s,k}, cpec{u,s,k}  connection-request and CPE credentials (absent:
//	                  none): user name, sealed password, key ID (secrets.go)
//	last_inform, remote_ip, events[{code,command_key}], registered,
//	last_boot, last_bootstrap, full_discovery, updated
//	takeovers, last_takeover, takeover_session
//	tags              array of strings
//	fence             highest fencing token applied
//	params            the parameter tree, below
//
// Hot fields are top level and indexed with tenant first and device_id
// last, so equality filters on them come back in pagination order straight
// from the index.
//
// # Parameter tree
//
// Parameter paths contain dots, which MongoDB reads as nesting. The tree is
// therefore stored nested by path segment, each node holding its own entries
// apart from its children:
//
//	params: {"Device": {"c": {"WiFi": {"o": entry,      <- object "Device.WiFi."
//	                                   "p": entry,      <- parameter "Device.WiFi"
//	                                   "c": {"SSID": ...}}}}}
//	entry:  {d: {v: value, t: type, x: integer, i: instant, u: time},
//	         w: {b: writable, u: time},
//	         n: {i: notification, u: time}}        (absent group = unknown)
//
// Segments are escaped ("%" and "$" as %25 and %24) to be valid field names.
// Each kind of report (values, GetParameterNames, GetParameterAttributes)
// owns one group of an entry, so a report is one field to set.
//
// This shape was chosen over an array of {path, value} subdocuments because
// every part of a diff is then a plain $set or $unset of known fields,
// applied in one update with the fencing check in the same filter, without
// reading the tree first:
//
//   - a new value for a parameter is one $set of
//     "params.Device.c.DeviceInfo.c.SoftwareVersion.p.d", keeping the
//     attributes stored beside it;
//   - deleting everything under "Device.WiFi.SSID.3." is one $unset of that
//     node's "c" (and "o"), however large the subtree; a subtree deleted and
//     re-reported in the same diff is one $set of the rebuilt subtree.
//
// With an array, merging fields into existing elements and inserting new ones
// in one update needs arrayFilters or an aggregation-pipeline update, which
// MongoDB-compatible servers (FerretDB 1.x among them) do not implement, and
// prefix deletes need the array scanned. The document stays free of arrays
// nested in arrays, and no TTL index is used (docs/design.md §4). A device seen for
// the first time is inserted whole, as one built document.
//
// x holds the value of an integer-typed entry and i that of a dateTime-typed
// one, so that Lt and Gt compare by type (see store.OpLt) with plain range
// queries.
//
// The price is indexing: a value condition addresses a fixed field per path
// ("...SoftwareVersion.p.d.v"), so it is indexed per path.
// Config.IndexedParams lists the paths operators query (Start creates
// {tenant, ...d.v}, {tenant, ...d.x} and {tenant, ...d.i} for each); other
// conditions still narrow by tenant and hot fields first and scan only what
// remains. On real MongoDB a wildcard index on params could cover every
// path, at a large write and storage cost; it is deliberately not created.
//
// # Concurrency
//
// On MongoDB a single-document update is atomic, which is all the adapter
// needs. Some MongoDB-compatible servers (FerretDB 1.x) apply an update as
// an unlocked read-then-write, so two concurrent updates of one document can
// lose one of them. The adapter therefore serialises its own writes per
// device (a keyed mutex, no cross-device contention); across processes the
// session lease of docs/design.md §2 step 5 already makes one writer per device the rule.
package mongostore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/mongoindex"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// Collection is the default collection name.
const Collection = "devices"

// ProfilesCollection is the default name of the discovery profiles'
// collection.
const ProfilesCollection = "discovery_profiles"

// Config configures the store.
type Config struct {
	// URI and Database select the server and database. Ignored by
	// NewWithDatabase.
	URI      string
	Database string
	// Collection defaults to "devices".
	Collection string
	// TokensCollection holds API tokens (tokens.go); it defaults to
	// "api_tokens".
	TokensCollection string
	// ProfilesCollection holds the discovery profiles of product classes
	// (discovery.go); it defaults to "discovery_profiles".
	ProfilesCollection string
	// IndexedParams are parameter paths whose values get an index, for
	// the parameter conditions operators use most.
	IndexedParams []string
	// ConnectTimeout bounds connecting and server selection; 0 means 10s.
	ConnectTimeout time.Duration
	// Metrics, if set, records the latency and errors of every MongoDB
	// command (telemetry.ClientMetrics).
	Metrics *telemetry.ClientMetrics
	// Now is the clock that stamps tag changes (Device.Updated); nil
	// means time.Now. Session diffs carry their own time.
	Now func() time.Time
	// Secrets seals the passwords the store keeps (storekit, "Passwords
	// at rest"); required. Start loads it.
	Secrets *secretbox.Keyring
}

// Store is the MongoDB store. Create it with New or NewWithDatabase and call
// Start before use.
type Store struct {
	cfg  Config
	keys *secretbox.Keyring

	mu      sync.Mutex // guards client, coll and owned during Start and Close
	client  *mongo.Client
	db      *mongo.Database
	coll    *mongo.Collection
	owned   bool // Close disconnects client
	started bool

	locks keyedMutex
}

var _ store.Store = (*Store)(nil)

// New returns a store that connects to cfg.URI on Start. It does no I/O.
func New(cfg Config) *Store {
	if cfg.Collection == "" {
		cfg.Collection = Collection
	}
	if cfg.TokensCollection == "" {
		cfg.TokensCollection = TokensCollection
	}
	if cfg.ProfilesCollection == "" {
		cfg.ProfilesCollection = ProfilesCollection
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Store{cfg: cfg, keys: cfg.Secrets, owned: true}
}

// NewWithDatabase returns a store on a database whose client the caller
// owns (and disconnects). It does no I/O.
func NewWithDatabase(db *mongo.Database, cfg Config) *Store {
	s := New(cfg)
	s.db, s.owned = db, false
	return s
}

// Start loads the secrets keyring, connects (for New), checks the server
// answers, creates indexes and seals passwords stored in clear or under a
// retired key.
func (s *Store) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return nil
	}
	for _, p := range s.cfg.IndexedParams {
		if err := store.ValidatePath(p); err != nil || store.IsObjectPath(p) {
			return fmt.Errorf("start mongodb store: indexed parameter %q: %w", p, store.ErrInvalidArgument)
		}
	}
	if s.keys == nil {
		return fmt.Errorf("start mongodb store: %w", errNoKeyring)
	}
	if _, err := s.keys.Load(); err != nil {
		return fmt.Errorf("start mongodb store: %w", err)
	}
	db := s.db
	if db == nil {
		if s.cfg.URI == "" || s.cfg.Database == "" {
			return fmt.Errorf("start mongodb store: URI and database are required: %w", store.ErrInvalidArgument)
		}
		client, err := mongo.Connect(options.Client().ApplyURI(s.cfg.URI).
			SetConnectTimeout(s.cfg.ConnectTimeout).SetServerSelectionTimeout(s.cfg.ConnectTimeout).
			SetMonitor(s.cfg.Metrics.MongoMonitor()))
		if err != nil {
			return fmt.Errorf("start mongodb store: connect: %w", err)
		}
		s.client, db = client, client.Database(s.cfg.Database)
	}
	coll := db.Collection(s.cfg.Collection, collectionOptions())
	if err := db.Client().Ping(ctx, nil); err != nil {
		s.disconnect(ctx)
		return fmt.Errorf("start mongodb store: ping: %w", err)
	}
	if err := ensureIndexes(ctx, coll, s.cfg.IndexedParams); err != nil {
		s.disconnect(ctx)
		return fmt.Errorf("start mongodb store: %w", err)
	}
	if err := ensureTokenIndexes(ctx, db.Collection(s.cfg.TokensCollection, collectionOptions())); err != nil {
		s.disconnect(ctx)
		return fmt.Errorf("start mongodb store: %w", err)
	}
	if _, err := s.reseal(ctx, coll); err != nil {
		s.disconnect(ctx)
		return fmt.Errorf("start mongodb store: %w", err)
	}
	s.db, s.coll, s.started = db, coll, true
	return nil
}

func (s *Store) disconnect(ctx context.Context) {
	if s.client != nil && s.owned {
		_ = s.client.Disconnect(ctx)
		s.client = nil
		s.db = nil
	}
}

// Close disconnects a client the store created.
func (s *Store) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started, s.coll = false, nil
	if s.client == nil || !s.owned {
		return nil
	}
	err := s.client.Disconnect(ctx)
	s.client, s.db = nil, nil
	if err != nil {
		return fmt.Errorf("close mongodb store: %w", err)
	}
	return nil
}

func (s *Store) collection() (*mongo.Collection, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return nil, errors.New("mongodb store not started")
	}
	return s.coll, nil
}

// ensureIndexes declares the indexes in code (docs/design.md §3) and
// creates those missing.
func ensureIndexes(ctx context.Context, coll *mongo.Collection, params []string) error {
	byTenant := func(name string, keys ...string) mongo.IndexModel {
		d := bson.D{{Key: "tenant", Value: 1}}
		for _, k := range keys {
			d = append(d, bson.E{Key: k, Value: 1})
		}
		return mongo.IndexModel{Keys: d, Options: options.Index().SetName(name)}
	}
	models := []mongo.IndexModel{
		byTenant("tenant_device_id", "device_id"),
		byTenant("tenant_last_inform", "last_inform"),
		byTenant("tenant_oui", "oui", "device_id"),
		byTenant("tenant_product_class", "product_class", "device_id"),
		byTenant("tenant_serial", "serial", "device_id"),
		byTenant("tenant_software_version", "software_version", "device_id"),
		byTenant("tenant_hardware_version", "hardware_version", "device_id"),
		byTenant("tenant_tags", "tags", "device_id"),
	}
	for _, p := range params {
		// Paths can be long and hold any character; index names are
		// better short and plain (older servers cap namespace plus name
		// at 127 bytes), so they carry a hash of the path.
		sum := sha256.Sum256([]byte(p))
		h := hex.EncodeToString(sum[:8])
		models = append(models,
			byTenant("param_v_"+h, valueField(p)),
			byTenant("param_x_"+h, typedField(p, fieldNumber)),
			byTenant("param_i_"+h, typedField(p, fieldInstant)))
	}
	// Several inventories may start at once, and FerretDB drops the
	// connection when asked again for an index that exists: mongoindex
	// creates only the missing ones, and retries when another process
	// was creating them.
	return mongoindex.Ensure(ctx, coll, models...)
}

func docID(tenant, id string) string { return tenant + ":" + id }

// ApplySessionDiff implements store.Store.
func (s *Store) ApplySessionDiff(ctx context.Context, tenant, id string, d store.Diff, fencingToken uint64) (bool, error) {
	created, err := s.applyDiff(ctx, tenant, id, d, fencingToken)
	if err != nil {
		return false, fmt.Errorf("apply diff to %s/%s: %w", tenant, id, err)
	}
	return created, nil
}

// maxAttempts bounds the retries of an update that lost a race: a
// concurrent insert of the same new device, or tags or the takeover session
// changed between read and compare-and-set by a writer in another process.
const maxAttempts = 8

func (s *Store) applyDiff(ctx context.Context, tenant, id string, d store.Diff, token uint64) (bool, error) {
	p, err := storekit.PlanDiff(tenant, id, d, token)
	if err != nil {
		return false, err
	}
	if err := p.SealPlan(s.keys, tenant, id); err != nil {
		return false, err
	}
	coll, err := s.collection()
	if err != nil {
		return false, err
	}
	key := docID(tenant, id)
	unlock := s.locks.lock(key)
	defer unlock()
	ops := treeOps(&p)
	if p.SealedConnectionRequest != nil && p.CRRefused.IsZero() {
		ops = append(ops, op{key: "crr"}) // set: no longer refused
	}
	created, err := s.update(ctx, coll, key, tenant, id, &p, headFields(&p), ops)
	if err != nil || p.SealedConnectionRequest == nil || p.CRPendingTime.IsZero() {
		return created, err
	}
	// The pending credentials the session set are forgotten, unless an
	// operator gave others since (a later crpt).
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}, {Key: "crpt", Value: p.CRPendingTime}},
		bson.D{{Key: "$unset", Value: bson.D{{Key: "crp", Value: ""}, {Key: "crpt", Value: ""}}}})
	if err != nil {
		return created, fmt.Errorf("forget pending connection-request credentials: %w", err)
	}
	return created, nil
}

// headFields are the top-level fields a plan sets, as $set keys ("cr.url"
// dotted).
func headFields(p *storekit.Plan) bson.D {
	head := bson.D{{Key: "fence", Value: p.Token}, {Key: "updated", Value: p.Time}}
	if dev := p.DeviceID; dev != nil {
		head = append(head,
			bson.E{Key: "manufacturer", Value: dev.Manufacturer},
			bson.E{Key: "oui_raw", Value: dev.OUI},
			bson.E{Key: "oui", Value: p.OUI},
			bson.E{Key: "product_class", Value: dev.ProductClass},
			bson.E{Key: "serial", Value: dev.SerialNumber})
	}
	if in := p.Inform; in != nil {
		events := make(bson.A, 0, len(in.Events))
		for _, e := range in.Events {
			events = append(events, bson.D{{Key: "code", Value: e.Code}, {Key: "command_key", Value: e.CommandKey}})
		}
		head = append(head,
			bson.E{Key: "last_inform", Value: p.InformTime},
			bson.E{Key: "remote_ip", Value: addrText(in.RemoteIP)},
			bson.E{Key: "events", Value: events})
		if p.Boot {
			head = append(head, bson.E{Key: "last_boot", Value: p.InformTime})
		}
		if p.Bootstrap {
			head = append(head, bson.E{Key: "last_bootstrap", Value: p.InformTime})
		}
	}
	for _, f := range []struct {
		key string
		v   *string
	}{
		{"root", p.Fields.DataModelRoot}, {"software_version", p.Fields.SoftwareVersion},
		{"hardware_version", p.Fields.HardwareVersion}, {"provisioning_code", p.Fields.ProvisioningCode},
		{"cr.url", p.Fields.ConnectionRequestURL}, {"cr.udp", p.Fields.UDPConnectionRequestAddress},
		{"cr.jid", p.Fields.JabberID},
	} {
		if f.v != nil {
			head = append(head, bson.E{Key: f.key, Value: *f.v})
		}
	}
	if c := p.SealedConnectionRequest; c != nil {
		head = append(head, bson.E{Key: "crc", Value: sealedDoc(c)})
	}
	if c := p.SealedCPE; c != nil {
		head = append(head, bson.E{Key: "cpec", Value: sealedDoc(c)})
	}
	if !p.CRRefused.IsZero() {
		head = append(head, bson.E{Key: "crr", Value: p.CRRefused})
	}
	if !p.FullDiscovery.IsZero() {
		head = append(head, bson.E{Key: "full_discovery", Value: p.FullDiscovery})
	}
	if p.Presets != nil {
		head = append(head, bson.E{Key: "presets", Value: *p.Presets})
	}
	return head
}

func fenced(key string, token int64) bson.D {
	return bson.D{{Key: "_id", Value: key}, {Key: "fence", Value: bson.D{{Key: "$lte", Value: token}}}}
}

// setUnset renders set fields and ops as an update document.
func setUnset(set bson.D, ops []op) bson.D {
	var unset bson.D
	for _, o := range ops {
		if o.value == nil {
			unset = append(unset, bson.E{Key: o.key, Value: ""})
		} else {
			set = append(set, bson.E{Key: o.key, Value: o.value})
		}
	}
	update := bson.D{{Key: "$set", Value: set}}
	if len(unset) > 0 {
		update = append(update, bson.E{Key: "$unset", Value: unset})
	}
	return update
}

// casState is what a compare-and-set update read first.
type casState struct {
	found            bool
	tags             []string
	tagsPresent      bool
	takeoverSession  string
	takeoverRecorded bool
}

// update applies the head fields, tags and tree operations in one update,
// the fencing check in its filter. When the device does not exist and the
// diff carries a DeviceID, it inserts the whole device instead.
func (s *Store) update(ctx context.Context, coll *mongo.Collection, key, tenant, id string, p *storekit.Plan, head bson.D, ops []op) (created bool, err error) {
	bothTags := len(p.AddTags) > 0 && len(p.RemoveTags) > 0
	for attempt := 0; attempt < maxAttempts; attempt++ {
		filter := fenced(key, p.Token)
		set := slices.Clip(head)
		var extra bson.D // update operators besides $set and $unset
		var st casState
		if bothTags || p.Takeover && p.SessionID != "" {
			// Both need the stored value: $addToSet and $pullAll on one
			// field conflict in one update, and a takeover counts once
			// per session. The filter then checks nothing changed.
			if st, err = s.readCAS(ctx, coll, key); err != nil {
				return false, err
			}
		}
		switch {
		case bothTags:
			if st.tagsPresent {
				filter = append(filter, bson.E{Key: "tags", Value: st.tags})
			} else {
				filter = append(filter, bson.E{Key: "tags", Value: bson.D{{Key: "$exists", Value: false}}})
			}
			set = append(set, bson.E{Key: "tags", Value: mergeTags(st.tags, p.AddTags, p.RemoveTags)})
		case len(p.AddTags) > 0:
			extra = append(extra, bson.E{Key: "$addToSet", Value: bson.D{{Key: "tags", Value: bson.D{{Key: "$each", Value: p.AddTags}}}}})
		case len(p.RemoveTags) > 0:
			extra = append(extra, bson.E{Key: "$pullAll", Value: bson.D{{Key: "tags", Value: p.RemoveTags}}})
		}
		if p.Takeover {
			count := p.SessionID == "" || p.SessionID != st.takeoverSession
			if p.SessionID != "" {
				if st.takeoverRecorded {
					filter = append(filter, bson.E{Key: "takeover_session", Value: st.takeoverSession})
				} else {
					filter = append(filter, bson.E{Key: "takeover_session", Value: bson.D{{Key: "$exists", Value: false}}})
				}
			}
			if count {
				set = append(set, bson.E{Key: "last_takeover", Value: p.Time}, bson.E{Key: "takeover_session", Value: p.SessionID})
				extra = append(extra, bson.E{Key: "$inc", Value: bson.D{{Key: "takeovers", Value: int64(1)}}})
			}
		}
		res, err := coll.UpdateOne(ctx, filter, append(setUnset(set, ops), extra...))
		if err != nil {
			return false, fmt.Errorf("update device: %w", err)
		}
		if res.MatchedCount > 0 {
			return false, nil
		}
		// No match: the device is missing, fenced off, or a compared
		// field changed under the compare-and-set.
		missing, err := s.whyNoMatch(ctx, coll, key, p.Token)
		switch {
		case err != nil:
			return false, err
		case !missing:
			continue
		case p.DeviceID == nil:
			return false, store.ErrNotFound
		}
		_, err = coll.InsertOne(ctx, newDeviceDoc(key, tenant, id, p, head))
		if err == nil {
			return true, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return false, fmt.Errorf("insert device: %w", err)
		}
		// Created meanwhile by another writer: update it instead.
	}
	return false, fmt.Errorf("update device: gave up after %d conflicting attempts", maxAttempts)
}

// readCAS reads the fields a compare-and-set update compares.
func (s *Store) readCAS(ctx context.Context, coll *mongo.Collection, key string) (casState, error) {
	var raw bson.Raw
	err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: key}},
		options.FindOne().SetProjection(bson.D{{Key: "tags", Value: 1}, {Key: "takeover_session", Value: 1}})).Decode(&raw)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return casState{}, nil
	}
	if err != nil {
		return casState{}, fmt.Errorf("read device: %w", err)
	}
	st := casState{found: true, tags: []string{}}
	if v, err := raw.LookupErr("tags"); err == nil {
		st.tagsPresent = true
		if err := v.Unmarshal(&st.tags); err != nil {
			return casState{}, fmt.Errorf("read tags: %w", err)
		}
		if st.tags == nil {
			st.tags = []string{} // matches the stored empty array, where nil would match null
		}
	}
	if v, err := raw.LookupErr("takeover_session"); err == nil {
		st.takeoverSession, st.takeoverRecorded = v.StringValue(), true
	}
	return st, nil
}

// newDeviceDoc builds the whole document of a device the plan creates: the
// head fields (dotted "cr.x" keys nested), the tags and the tree.
func newDeviceDoc(key, tenant, id string, p *storekit.Plan, head bson.D) bson.D {
	doc := bson.D{
		{Key: "_id", Value: key},
		{Key: "tenant", Value: tenant},
		{Key: "device_id", Value: id},
		{Key: "registered", Value: p.Time},
	}
	var cr bson.D
	for _, e := range head {
		if sub, ok := strings.CutPrefix(e.Key, "cr."); ok {
			cr = append(cr, bson.E{Key: sub, Value: e.Value})
			continue
		}
		doc = append(doc, e)
	}
	if len(cr) > 0 {
		doc = append(doc, bson.E{Key: "cr", Value: cr})
	}
	if p.Takeover {
		doc = append(doc, bson.E{Key: "takeovers", Value: int64(1)}, bson.E{Key: "last_takeover", Value: p.Time},
			bson.E{Key: "takeover_session", Value: p.SessionID})
	}
	tags := p.AddTags
	if tags == nil {
		// Every document has a tags array, so that a compare-and-set
		// can always name its old value.
		tags = []string{}
	}
	root := &node{}
	for i := range p.Updates {
		u := &p.Updates[i]
		root.put(segments(u.Path), store.IsObjectPath(u.Path), groups(u, p.Time))
	}
	return append(doc, bson.E{Key: "tags", Value: tags}, bson.E{Key: "params", Value: root.childrenDoc()})
}

// whyNoMatch explains an update that matched nothing: the device is
// missing, or fenced off (ErrStaleFencingToken), or neither, when a retry
// may succeed.
func (s *Store) whyNoMatch(ctx context.Context, coll *mongo.Collection, key string, token int64) (missing bool, err error) {
	var cur struct {
		Fence int64 `bson:"fence"`
	}
	err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: key}}, options.FindOne().SetProjection(bson.D{{Key: "fence", Value: 1}})).Decode(&cur)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("read fencing token: %w", err)
	case cur.Fence > token:
		return false, store.ErrStaleFencingToken
	}
	return false, nil
}

func mergeTags(cur, add, remove []string) []string {
	out := make([]string, 0, len(cur)+len(add))
	for _, t := range cur {
		if _, found := slices.BinarySearch(remove, t); !found {
			out = append(out, t)
		}
	}
	for _, t := range add {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// AddTags implements store.Store.
func (s *Store) AddTags(ctx context.Context, tenant, id string, tags ...string) error {
	err := s.tagOp(ctx, tenant, id, tags, func(t []string) bson.E {
		return bson.E{Key: "$addToSet", Value: bson.D{{Key: "tags", Value: bson.D{{Key: "$each", Value: t}}}}}
	})
	if err != nil {
		return fmt.Errorf("add tags to %s/%s: %w", tenant, id, err)
	}
	return nil
}

// RemoveTags implements store.Store.
func (s *Store) RemoveTags(ctx context.Context, tenant, id string, tags ...string) error {
	err := s.tagOp(ctx, tenant, id, tags, func(t []string) bson.E {
		return bson.E{Key: "$pullAll", Value: bson.D{{Key: "tags", Value: t}}}
	})
	if err != nil {
		return fmt.Errorf("remove tags from %s/%s: %w", tenant, id, err)
	}
	return nil
}

func (s *Store) tagOp(ctx context.Context, tenant, id string, tags []string, op func([]string) bson.E) error {
	if err := storekit.Key(tenant, id); err != nil {
		return err
	}
	tags, err := storekit.Tags(tags)
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
	// The presets that match the device may change with its tags: its
	// presets fingerprint is forgotten.
	update := bson.D{{Key: "$set", Value: bson.D{{Key: "updated", Value: storekit.Time(s.cfg.Now())}, {Key: "presets", Value: ""}}}}
	if len(tags) > 0 {
		update = append(update, op(tags))
	}
	res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}}, update)
	if err != nil {
		return fmt.Errorf("update tags: %w", err)
	}
	if res.MatchedCount == 0 {
		return store.ErrNotFound
	}
	return nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, tenant, id string) error {
	err := func() error {
		if err := storekit.Key(tenant, id); err != nil {
			return err
		}
		coll, err := s.collection()
		if err != nil {
			return err
		}
		key := docID(tenant, id)
		unlock := s.locks.lock(key)
		defer unlock()
		res, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: key}})
		if err != nil {
			return err
		}
		if res.DeletedCount == 0 {
			return store.ErrNotFound
		}
		return nil
	}()
	if err != nil {
		return fmt.Errorf("delete device %s/%s: %w", tenant, id, err)
	}
	return nil
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

// eventsOf converts stored events.
func eventsOf(docs []eventDoc) []cwmp.Event {
	if len(docs) == 0 {
		return nil
	}
	out := make([]cwmp.Event, len(docs))
	for i, e := range docs {
		out[i] = cwmp.Event{Code: e.Code, CommandKey: e.CommandKey}
	}
	return out
}
