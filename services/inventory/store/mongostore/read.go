package mongostore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// deviceDoc is the stored device.
type deviceDoc struct {
	Tenant           string          `bson:"tenant"`
	DeviceID         string          `bson:"device_id"`
	Manufacturer     string          `bson:"manufacturer"`
	OUIRaw           string          `bson:"oui_raw"`
	OUI              string          `bson:"oui"`
	ProductClass     string          `bson:"product_class"`
	Serial           string          `bson:"serial"`
	SoftwareVersion  string          `bson:"software_version"`
	HardwareVersion  string          `bson:"hardware_version"`
	ProvisioningCode string          `bson:"provisioning_code"`
	Root             string          `bson:"root"`
	CR               crDoc           `bson:"cr"`
	CRCredentials    *credentialsDoc `bson:"crc"`
	CPECredentials   *credentialsDoc `bson:"cpec"`
	// CRPending are an operator's connection-request credentials not yet
	// set (crp), given at CRPendingTime (crpt); CRRefused when a CPE last
	// refused credentials (crr).
	CRPending     *credentialsDoc `bson:"crp"`
	CRPendingTime time.Time       `bson:"crpt"`
	CRRefused     time.Time       `bson:"crr"`
	LastInform    time.Time       `bson:"last_inform"`
	RemoteIP      string          `bson:"remote_ip"`
	Events        []eventDoc      `bson:"events"`
	Registered    time.Time       `bson:"registered"`
	LastBoot      time.Time       `bson:"last_boot"`
	LastBootstrap time.Time       `bson:"last_bootstrap"`
	FullDiscovery time.Time       `bson:"full_discovery"`
	Takeovers     int64           `bson:"takeovers"`
	LastTakeover  time.Time       `bson:"last_takeover"`
	Updated       time.Time       `bson:"updated"`
	Tags          []string        `bson:"tags"`
	Fence         int64           `bson:"fence"`
	Presets       string          `bson:"presets"`
	Params        bson.Raw        `bson:"params"`
}

type crDoc struct {
	URL      string `bson:"url"`
	UDP      string `bson:"udp"`
	JabberID string `bson:"jid"`
}

type eventDoc struct {
	Code       string `bson:"code"`
	CommandKey string `bson:"command_key"`
}

// topFields are the fields a projection keeps besides the tree.
var topFields = []string{"tenant", "device_id", "manufacturer", "oui_raw", "oui", "product_class", "serial",
	"software_version", "hardware_version", "provisioning_code", "root", "cr", "crc", "cpec", "last_inform",
	"remote_ip", "events", "registered", "last_boot", "last_bootstrap", "full_discovery", "takeovers",
	"last_takeover", "updated", "tags", "fence", "presets"}

// projection selects the device fields and the part of the tree opts asks
// for: none, all, or the smallest subtrees holding every path with one of
// the prefixes.
func projection(opts store.ReadOptions) any {
	if !opts.WantParams() {
		return bson.D{{Key: "params", Value: 0}}
	}
	fields := make([]string, 0, len(opts.ParamPrefixes))
	for _, pre := range opts.ParamPrefixes {
		// The complete segments of a prefix name the node to fetch; a
		// partial last segment ("Device.WiFi.SS") is matched after
		// decoding.
		complete := pre[:strings.LastIndexByte(pre, '.')+1]
		if complete == "" || store.ValidatePath(complete) != nil {
			fields = nil
			break
		}
		fields = append(fields, nodeField(segments(complete)))
	}
	if len(fields) == 0 {
		return bson.D{}
	}
	// MongoDB refuses a projection of a field and of a field inside it.
	slices.Sort(fields)
	kept := fields[:0]
	for _, f := range fields {
		if len(kept) > 0 && (f == kept[len(kept)-1] || strings.HasPrefix(f, kept[len(kept)-1]+".")) {
			continue
		}
		kept = append(kept, f)
	}
	d := make(bson.D, 0, len(topFields)+len(kept))
	for _, f := range topFields {
		d = append(d, bson.E{Key: f, Value: 1})
	}
	for _, f := range kept {
		d = append(d, bson.E{Key: f, Value: 1})
	}
	return d
}

func (doc *deviceDoc) device(opts store.ReadOptions, keys *secretbox.Keyring) (store.Device, error) {
	dev := store.Device{
		Tenant: doc.Tenant,
		ID:     doc.DeviceID,
		DeviceID: cwmp.DeviceID{
			Manufacturer: doc.Manufacturer, OUI: doc.OUIRaw,
			ProductClass: doc.ProductClass, SerialNumber: doc.Serial,
		},
		OUI:                doc.OUI,
		SoftwareVersion:    doc.SoftwareVersion,
		HardwareVersion:    doc.HardwareVersion,
		ProvisioningCode:   doc.ProvisioningCode,
		DataModelRoot:      doc.Root,
		ConnectionRequest:  store.ConnectionRequest{URL: doc.CR.URL, UDPAddress: doc.CR.UDP, JabberID: doc.CR.JabberID},
		LastInform:         utc(doc.LastInform),
		LastEvents:         eventsOf(doc.Events),
		Registered:         utc(doc.Registered),
		LastBoot:           utc(doc.LastBoot),
		LastBootstrap:      utc(doc.LastBootstrap),
		FullDiscovery:      utc(doc.FullDiscovery),
		PresetsFingerprint: doc.Presets,
		TakeoverCount:      uint64(doc.Takeovers),
		LastTakeover:       utc(doc.LastTakeover),
		Updated:            utc(doc.Updated),
		FencingToken:       uint64(doc.Fence),
	}
	var err error
	if dev.ConnectionRequestCredentials, err = doc.CRCredentials.open(keys, doc.Tenant, doc.DeviceID, storekit.FieldConnectionRequest); err != nil {
		return store.Device{}, err
	}
	if dev.PendingConnectionRequestCredentials, err = doc.CRPending.open(keys, doc.Tenant, doc.DeviceID, storekit.FieldConnectionRequestPending); err != nil {
		return store.Device{}, err
	}
	if dev.PendingConnectionRequestCredentials != nil {
		dev.PendingConnectionRequestTime = utc(doc.CRPendingTime)
	}
	dev.ConnectionRequestRefused = utc(doc.CRRefused)
	if dev.CPECredentials, err = doc.CPECredentials.open(keys, doc.Tenant, doc.DeviceID, storekit.FieldCPE); err != nil {
		return store.Device{}, err
	}
	if doc.RemoteIP != "" {
		if dev.RemoteIP, err = netip.ParseAddr(doc.RemoteIP); err != nil {
			return store.Device{}, fmt.Errorf("decode remote IP: %w", err)
		}
	}
	if len(doc.Tags) > 0 {
		dev.Tags = slices.Clone(doc.Tags)
		slices.Sort(dev.Tags)
		dev.Tags = slices.Compact(dev.Tags)
	}
	if opts.WantParams() {
		dev.Params = make(map[string]store.Parameter)
		if len(doc.Params) > 0 {
			want := func(path string) bool { return storekit.ParamsWanted(opts, path) }
			if err := decodeChildren(doc.Params, "", want, dev.Params); err != nil {
				return store.Device{}, err
			}
		}
	}
	return dev, nil
}

// utc keeps an absent date zero and shows a stored one in UTC.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// findDevice reads the fields projection names of one device.
func (s *Store) findDevice(ctx context.Context, tenant, id string, projection any) (deviceDoc, error) {
	if err := storekit.Key(tenant, id); err != nil {
		return deviceDoc{}, err
	}
	coll, err := s.collection()
	if err != nil {
		return deviceDoc{}, err
	}
	var doc deviceDoc
	err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: docID(tenant, id)}},
		options.FindOne().SetProjection(projection)).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return deviceDoc{}, store.ErrNotFound
	}
	if err != nil {
		return deviceDoc{}, fmt.Errorf("read device: %w", err)
	}
	return doc, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, tenant, id string, opts store.ReadOptions) (store.Device, error) {
	doc, err := s.findDevice(ctx, tenant, id, projection(opts))
	var dev store.Device
	if err == nil {
		dev, err = doc.device(opts, s.keys)
	}
	if err != nil {
		return store.Device{}, fmt.Errorf("get device %s/%s: %w", tenant, id, err)
	}
	return dev, nil
}

// sessionProjection reads the fields of store.SessionState.
var sessionProjection = bson.D{{Key: "root", Value: 1}, {Key: "full_discovery", Value: 1}, {Key: "fence", Value: 1}, {Key: "crc", Value: 1},
	{Key: "crp", Value: 1}, {Key: "crpt", Value: 1}, {Key: "crr", Value: 1}, {Key: "presets", Value: 1}, {Key: "tags", Value: 1}}

// SessionState implements store.Store.
func (s *Store) SessionState(ctx context.Context, tenant, id string) (store.SessionState, error) {
	doc, err := s.findDevice(ctx, tenant, id, sessionProjection)
	if err != nil {
		return store.SessionState{}, fmt.Errorf("get session state of device %s/%s: %w", tenant, id, err)
	}
	st := store.SessionState{DataModelRoot: doc.Root, FullDiscovery: utc(doc.FullDiscovery), FencingToken: uint64(doc.Fence),
		PresetsFingerprint: doc.Presets, Tags: doc.Tags}
	if len(st.Tags) == 0 {
		st.Tags = nil
	}
	slices.Sort(st.Tags)
	st.Tags = slices.Compact(st.Tags)
	if st.ConnectionRequestCredentials, err = doc.CRCredentials.open(s.keys, tenant, id, storekit.FieldConnectionRequest); err != nil {
		return store.SessionState{}, fmt.Errorf("get session state of device %s/%s: %w", tenant, id, err)
	}
	if st.PendingConnectionRequestCredentials, err = doc.CRPending.open(s.keys, tenant, id, storekit.FieldConnectionRequestPending); err != nil {
		return store.SessionState{}, fmt.Errorf("get session state of device %s/%s: %w", tenant, id, err)
	}
	if st.PendingConnectionRequestCredentials != nil {
		st.PendingConnectionRequestTime = utc(doc.CRPendingTime)
	}
	st.ConnectionRequestRefused = utc(doc.CRRefused)
	return st, nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, f store.Filter, page store.PageRequest, opts store.ReadOptions) (store.Page, error) {
	out, err := s.list(ctx, f, page, opts)
	if err != nil {
		return store.Page{}, fmt.Errorf("list devices of %q: %w", f.Tenant, err)
	}
	return out, nil
}

func (s *Store) list(ctx context.Context, f store.Filter, page store.PageRequest, opts store.ReadOptions) (store.Page, error) {
	cf, err := storekit.CheckFilter(f)
	if err != nil {
		return store.Page{}, err
	}
	after, err := storekit.DecodeCursor(page.Cursor)
	if err != nil {
		return store.Page{}, err
	}
	coll, err := s.collection()
	if err != nil {
		return store.Page{}, err
	}
	limit := storekit.PageSize(page)
	cur, err := coll.Find(ctx, listFilter(cf, after), options.Find().
		SetSort(bson.D{{Key: "tenant", Value: 1}, {Key: "device_id", Value: 1}}).
		SetLimit(int64(limit+1)).
		SetProjection(projection(opts)))
	if err != nil {
		return store.Page{}, fmt.Errorf("query devices: %w", err)
	}
	defer cur.Close(ctx)
	var out store.Page
	for cur.Next(ctx) {
		var doc deviceDoc
		if err := cur.Decode(&doc); err != nil {
			return store.Page{}, fmt.Errorf("read device: %w", err)
		}
		dev, err := doc.device(opts, s.keys)
		if err != nil {
			return store.Page{}, fmt.Errorf("read device %s: %w", doc.DeviceID, err)
		}
		out.Devices = append(out.Devices, dev)
	}
	if err := cur.Err(); err != nil {
		return store.Page{}, fmt.Errorf("query devices: %w", err)
	}
	if len(out.Devices) > limit {
		out.Devices = out.Devices[:limit]
		out.Next = storekit.EncodeCursor(out.Devices[limit-1].ID)
	}
	return out, nil
}

func listFilter(f storekit.Filter, after string) bson.D {
	q := bson.D{{Key: "tenant", Value: f.Tenant}}
	var byID bson.D
	if after != "" {
		byID = append(byID, bson.E{Key: "$gt", Value: after})
	}
	if len(f.IDs) > 0 {
		byID = append(byID, bson.E{Key: "$in", Value: f.IDs})
	}
	if len(byID) > 0 {
		q = append(q, bson.E{Key: "device_id", Value: byID})
	}
	eq := func(field string, v *string) {
		if v != nil {
			q = append(q, bson.E{Key: field, Value: *v})
		}
	}
	eq("manufacturer", f.Manufacturer)
	eq("oui", f.OUI)
	eq("product_class", f.ProductClass)
	eq("serial", f.SerialNumber)
	eq("software_version", f.SoftwareVersion)
	eq("hardware_version", f.HardwareVersion)
	if len(f.Tags) > 0 {
		q = append(q, bson.E{Key: "tags", Value: bson.D{{Key: "$all", Value: f.Tags}}})
	}
	if !f.Since.IsZero() || !f.Before.IsZero() {
		r := bson.D{}
		if !f.Since.IsZero() {
			r = append(r, bson.E{Key: "$gte", Value: f.Since})
		}
		if !f.Before.IsZero() {
			r = append(r, bson.E{Key: "$lt", Value: f.Before})
		}
		q = append(q, bson.E{Key: "last_inform", Value: r})
	}
	var and bson.A
	for _, c := range f.Conditions {
		and = append(and, condition(c))
	}
	if len(and) > 0 {
		q = append(q, bson.E{Key: "$and", Value: and})
	}
	return q
}

func condition(c storekit.Condition) bson.D {
	switch c.Op {
	case store.OpExists:
		return bson.D{{Key: entryField(c.Path), Value: bson.D{{Key: "$exists", Value: true}}}}
	case store.OpNotExists:
		return bson.D{{Key: entryField(c.Path), Value: bson.D{{Key: "$exists", Value: false}}}}
	}
	v := valueField(c.Path)
	switch c.Op {
	case store.OpEq:
		return bson.D{{Key: v, Value: c.Value}}
	case store.OpNe:
		return bson.D{{Key: v, Value: bson.D{{Key: "$exists", Value: true}, {Key: "$ne", Value: c.Value}}}}
	case store.OpLt, store.OpGt:
		// Each value compares by its type (see store.OpLt).
		op := "$lt"
		if c.Op == store.OpGt {
			op = "$gt"
		}
		x, i := typedField(c.Path, fieldNumber), typedField(c.Path, fieldInstant)
		or := bson.A{bson.D{
			{Key: x, Value: bson.D{{Key: "$exists", Value: false}}},
			{Key: i, Value: bson.D{{Key: "$exists", Value: false}}},
			{Key: v, Value: bson.D{{Key: op, Value: c.Value}}},
		}}
		if c.Number != nil {
			or = append(or, bson.D{{Key: x, Value: bson.D{{Key: op, Value: c.Number}}}})
		}
		if c.IsInstant {
			or = append(or, bson.D{{Key: i, Value: bson.D{{Key: op, Value: c.Instant}}}})
		}
		return bson.D{{Key: "$or", Value: or}}
	default: // store.OpPrefix
		return bson.D{{Key: v, Value: bson.D{{Key: "$regex", Value: "^" + regexp.QuoteMeta(c.Value)}}}}
	}
}

// valueField is where an entry keeps its value: what conditions and
// IndexedParams indexes address; typedField is where it keeps the value as
// an integer (fieldNumber) or an instant (fieldInstant).
func valueField(path string) string {
	return entryField(path) + "." + groupValue + "." + fieldValue
}

func typedField(path, field string) string {
	return entryField(path) + "." + groupValue + "." + field
}
