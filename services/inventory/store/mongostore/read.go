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
	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// deviceDoc is the stored device without its tree.
type deviceDoc struct {
	Tenant          string     `bson:"tenant"`
	DeviceID        string     `bson:"device_id"`
	Manufacturer    string     `bson:"manufacturer"`
	OUIRaw          string     `bson:"oui_raw"`
	OUI             string     `bson:"oui"`
	ProductClass    string     `bson:"product_class"`
	Serial          string     `bson:"serial"`
	SoftwareVersion string     `bson:"software_version"`
	Root            string     `bson:"root"`
	CR              crDoc      `bson:"cr"`
	LastInform      time.Time  `bson:"last_inform"`
	RemoteIP        string     `bson:"remote_ip"`
	Events          []eventDoc `bson:"events"`
	Registered      time.Time  `bson:"registered"`
	LastBoot        time.Time  `bson:"last_boot"`
	Tags            []string   `bson:"tags"`
	Fence           int64      `bson:"fence"`
	Params          bson.Raw   `bson:"params"`
}

type crDoc struct {
	URL      string `bson:"url"`
	Username string `bson:"username"`
	Password string `bson:"password"`
}

type eventDoc struct {
	Code       string `bson:"code"`
	CommandKey string `bson:"command_key"`
}

// topFields are the fields a projection keeps besides the tree.
var topFields = []string{"tenant", "device_id", "manufacturer", "oui_raw", "oui", "product_class", "serial",
	"software_version", "root", "cr", "last_inform", "remote_ip", "events", "registered", "last_boot", "tags", "fence"}

// projection selects the device fields and the part of the tree opts asks
// for: none, all, or the smallest subtree holding every path with the
// prefix.
func projection(opts store.ReadOptions) any {
	if !opts.WantParams() {
		return bson.D{{Key: "params", Value: 0}}
	}
	if opts.ParamPrefix == "" {
		return bson.D{}
	}
	// The complete segments of the prefix name the node to fetch; a
	// partial last segment ("Device.WiFi.SS") is matched after decoding.
	complete := opts.ParamPrefix[:strings.LastIndexByte(opts.ParamPrefix, '.')+1]
	field := "params"
	if complete != "" && store.ValidatePath(complete) == nil {
		field = nodeField(segments(complete))
	}
	d := make(bson.D, 0, len(topFields)+1)
	for _, f := range topFields {
		d = append(d, bson.E{Key: f, Value: 1})
	}
	return append(d, bson.E{Key: field, Value: 1})
}

func (doc *deviceDoc) device(opts store.ReadOptions) (store.Device, error) {
	dev := store.Device{
		Tenant: doc.Tenant,
		ID:     doc.DeviceID,
		DeviceID: cwmp.DeviceID{
			Manufacturer: doc.Manufacturer, OUI: doc.OUIRaw,
			ProductClass: doc.ProductClass, SerialNumber: doc.Serial,
		},
		OUI:             doc.OUI,
		SoftwareVersion: doc.SoftwareVersion,
		DataModelRoot:   doc.Root,
		ConnectionRequest: store.ConnectionRequest{
			URL: doc.CR.URL, Username: doc.CR.Username, Password: doc.CR.Password,
		},
		LastInform:   utc(doc.LastInform),
		LastEvents:   eventsOf(doc.Events),
		Registered:   utc(doc.Registered),
		LastBoot:     utc(doc.LastBoot),
		FencingToken: uint64(doc.Fence),
	}
	if doc.RemoteIP != "" {
		var err error
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
			if err := decodeChildren(doc.Params, "", opts.ParamPrefix, dev.Params); err != nil {
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

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, tenant, id string, opts store.ReadOptions) (store.Device, error) {
	dev, err := func() (store.Device, error) {
		if err := storekit.Key(tenant, id); err != nil {
			return store.Device{}, err
		}
		coll, err := s.collection()
		if err != nil {
			return store.Device{}, err
		}
		var doc deviceDoc
		err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: docID(tenant, id)}},
			options.FindOne().SetProjection(projection(opts))).Decode(&doc)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return store.Device{}, store.ErrNotFound
		}
		if err != nil {
			return store.Device{}, fmt.Errorf("read device: %w", err)
		}
		return doc.device(opts)
	}()
	if err != nil {
		return store.Device{}, fmt.Errorf("get device %s/%s: %w", tenant, id, err)
	}
	return dev, nil
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
		dev, err := doc.device(opts)
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
	if after != "" {
		q = append(q, bson.E{Key: "device_id", Value: bson.D{{Key: "$gt", Value: after}}})
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
	if c.Op == store.OpExists {
		return bson.D{{Key: entryField(c.Path), Value: bson.D{{Key: "$exists", Value: true}}}}
	}
	v := valueField(c.Path)
	switch c.Op {
	case store.OpEq:
		return bson.D{{Key: v, Value: c.Value}}
	case store.OpNe:
		return bson.D{{Key: v, Value: bson.D{{Key: "$exists", Value: true}, {Key: "$ne", Value: c.Value}}}}
	case store.OpLt, store.OpGt:
		op := "$lt"
		if c.Op == store.OpGt {
			op = "$gt"
		}
		if c.IsNumber {
			return bson.D{{Key: numberField(c.Path), Value: bson.D{{Key: op, Value: c.Number}}}}
		}
		return bson.D{{Key: v, Value: bson.D{{Key: op, Value: c.Value}}}}
	default: // store.OpPrefix
		return bson.D{{Key: v, Value: bson.D{{Key: "$regex", Value: "^" + regexp.QuoteMeta(c.Value)}}}}
	}
}

// valueField and numberField are where an entry keeps its value as text and
// as a number: what conditions and IndexedParams indexes address.
func valueField(path string) string {
	return entryField(path) + "." + groupValue + "." + fieldValue
}

func numberField(path string) string {
	return entryField(path) + "." + groupValue + "." + fieldNumber
}
