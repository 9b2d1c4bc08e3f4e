// Package storekit holds what the inventory store adapters share: argument
// validation, the normalised plan of a session diff, cursors and time
// rounding. Keeping it in one place is what makes the adapters agree on
// every edge the contract suite does not spell out.
package storekit

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// Time rounds t the way every adapter stores it: UTC, millisecond precision.
func Time(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Millisecond)
}

// Key validates a tenant and device id pair.
func Key(tenant, id string) error {
	if err := store.ValidateTenant(tenant); err != nil {
		return err
	}
	return store.ValidateID(id)
}

// Tags validates, de-duplicates and sorts tags.
func Tags(tags []string) ([]string, error) {
	for _, t := range tags {
		if err := store.ValidateTag(t); err != nil {
			return nil, err
		}
	}
	out := slices.Clone(tags)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Update is one merged parameter update of a Plan.
type Update struct {
	store.ParamUpdate
	// Number is the value of an integer-typed entry (int64 or float64),
	// Instant that of a dateTime-typed one, kept beside the text for Lt
	// and Gt; at most one of them is set.
	Number    any
	Instant   time.Time
	IsInstant bool
}

// Plan is a validated, normalised diff.
type Plan struct {
	Time      time.Time
	SessionID string
	// DeviceID and OUI (normalised) when the diff carries a DeviceID.
	DeviceID *cwmp.DeviceID
	OUI      string
	// Inform, with InformTime resolved; Boot and Bootstrap when its
	// events say so.
	Inform     *store.Inform
	InformTime time.Time
	Boot       bool
	Bootstrap  bool
	Fields     store.Fields
	// Credentials to replace, when set, and their sealed forms (SealPlan),
	// which is what adapters write.
	ConnectionRequestCredentials *store.Credentials
	CPECredentials               *store.Credentials
	SealedConnectionRequest      *Sealed
	SealedCPE                    *Sealed
	// CRPendingTime and CRRefused are the diff's
	// ConnectionRequestPendingTime and ConnectionRequestRefused.
	CRPendingTime time.Time
	CRRefused     time.Time
	FullDiscovery time.Time
	Takeover      bool
	// Token is the fencing token as stored (int64 in both backends).
	Token int64
	// Deletes are the subtree deletions (paths ending with "."), sorted,
	// without duplicates and without prefixes covered by a shorter one.
	// DeleteAll replaces them when "" was given. DeleteEntries are the
	// single-entry deletions not covered by Deletes, sorted.
	Deletes       []string
	DeleteAll     bool
	DeleteEntries []string
	// Updates are merged per path (later fields win) and sorted by path.
	Updates    []Update
	AddTags    []string
	RemoveTags []string
	// Presets is the diff's PresetsFingerprint.
	Presets *string
}

// PlanDiff validates d for the device (tenant, id) and normalises it.
func PlanDiff(tenant, id string, d store.Diff, token uint64) (Plan, error) {
	if err := Key(tenant, id); err != nil {
		return Plan{}, err
	}
	if token > math.MaxInt64 {
		return Plan{}, fmt.Errorf("fencing token %d above 2^63-1: %w", token, store.ErrInvalidArgument)
	}
	if d.Time.IsZero() {
		return Plan{}, fmt.Errorf("diff time is zero: %w", store.ErrInvalidArgument)
	}
	p := Plan{
		Time: Time(d.Time), SessionID: d.SessionID, Token: int64(token), Fields: d.Fields,
		ConnectionRequestCredentials: d.ConnectionRequestCredentials, CPECredentials: d.CPECredentials,
		FullDiscovery: Time(d.FullDiscovery), Takeover: d.SessionTakeover,
		CRPendingTime: Time(d.ConnectionRequestPendingTime), CRRefused: Time(d.ConnectionRequestRefused),
		Presets: d.PresetsFingerprint,
	}
	if f := d.PresetsFingerprint; f != nil {
		if err := store.ValidateText("presets fingerprint", *f); err != nil || len(*f) > 4096 {
			return Plan{}, fmt.Errorf("presets fingerprint: want valid text of at most 4096 bytes: %w", store.ErrInvalidArgument)
		}
	}
	if err := store.ValidateText("session id", d.SessionID); err != nil {
		return Plan{}, err
	}
	if dev := d.DeviceID; dev != nil {
		if want := store.MakeID(*dev); want != id {
			return Plan{}, fmt.Errorf("DeviceId makes id %q, not %q: %w", want, id, store.ErrInvalidArgument)
		}
		for _, f := range []struct{ name, v string }{
			{"manufacturer", dev.Manufacturer}, {"oui", dev.OUI},
			{"product class", dev.ProductClass}, {"serial number", dev.SerialNumber},
		} {
			if err := store.ValidateText(f.name, f.v); err != nil {
				return Plan{}, err
			}
		}
		p.DeviceID, p.OUI = dev, store.NormalizeOUI(dev.OUI)
	}
	if in := d.Inform; in != nil {
		p.Inform, p.InformTime = in, Time(in.Time)
		if p.InformTime.IsZero() {
			p.InformTime = p.Time
		}
		for _, e := range in.Events {
			if err := store.ValidateText("event code", e.Code); err != nil {
				return Plan{}, err
			}
			if err := store.ValidateText("command key", e.CommandKey); err != nil {
				return Plan{}, err
			}
			code := strings.TrimSpace(e.Code)
			p.Boot = p.Boot || strings.HasPrefix(code, "1 ")
			p.Bootstrap = p.Bootstrap || strings.HasPrefix(code, "0 ")
		}
	}
	for _, f := range []struct {
		name string
		v    *string
	}{
		{"data model root", d.Fields.DataModelRoot}, {"software version", d.Fields.SoftwareVersion},
		{"hardware version", d.Fields.HardwareVersion}, {"provisioning code", d.Fields.ProvisioningCode},
		{"connection request URL", d.Fields.ConnectionRequestURL},
		{"UDP connection request address", d.Fields.UDPConnectionRequestAddress}, {"jabber id", d.Fields.JabberID},
	} {
		if f.v != nil {
			if err := store.ValidateText(f.name, *f.v); err != nil {
				return Plan{}, err
			}
		}
	}
	for _, c := range []*store.Credentials{d.ConnectionRequestCredentials, d.CPECredentials} {
		if c == nil {
			continue
		}
		if err := store.ValidateText("username", c.Username); err != nil {
			return Plan{}, err
		}
		if err := store.ValidateText("password", c.Password); err != nil {
			return Plan{}, err
		}
	}
	var err error
	if p.Deletes, p.DeleteEntries, p.DeleteAll, err = deletes(d.DeletePaths); err != nil {
		return Plan{}, err
	}
	if p.Updates, err = updates(d.Params); err != nil {
		return Plan{}, err
	}
	if p.AddTags, err = Tags(d.AddTags); err != nil {
		return Plan{}, err
	}
	if p.RemoveTags, err = Tags(d.RemoveTags); err != nil {
		return Plan{}, err
	}
	for _, t := range p.AddTags {
		if _, found := slices.BinarySearch(p.RemoveTags, t); found {
			return Plan{}, fmt.Errorf("tag %q both added and removed: %w", t, store.ErrInvalidArgument)
		}
	}
	return p, nil
}

func deletes(paths []string) (prefixes, entries []string, all bool, err error) {
	for _, path := range paths {
		if path == "" {
			return nil, nil, true, nil
		}
		if err := store.ValidatePath(path); err != nil {
			return nil, nil, false, fmt.Errorf("delete path: %w", err)
		}
		if store.IsObjectPath(path) {
			prefixes = append(prefixes, path)
		} else {
			entries = append(entries, path)
		}
	}
	slices.Sort(prefixes)
	prefixes = slices.Compact(prefixes)
	// Sorted, a covered prefix follows the prefix that covers it.
	kept := prefixes[:0]
	for _, pre := range prefixes {
		if len(kept) > 0 && strings.HasPrefix(pre, kept[len(kept)-1]) {
			continue
		}
		kept = append(kept, pre)
	}
	slices.Sort(entries)
	entries = slices.Compact(entries)
	single := entries[:0]
	for _, e := range entries {
		if _, covered := Covered(kept, e); !covered {
			single = append(single, e)
		}
	}
	return kept, single, false, nil
}

// updates validates params and merges them per path (later fields win),
// sorted by path. It sorts positions rather than the updates themselves:
// a discovery reports thousands, and moving each update (over a hundred
// bytes) through a sort cost more than the rest of planning.
func updates(params []store.ParamUpdate) ([]Update, error) {
	order := make([]int32, len(params))
	for i := range order {
		order[i] = int32(i)
	}
	if !slices.IsSortedFunc(params, func(a, b store.ParamUpdate) int { return strings.Compare(a.Path, b.Path) }) {
		// Of two updates of one path, the later merges last: ties are
		// ordered by position (as a stable sort would, in less time).
		slices.SortFunc(order, func(a, b int32) int {
			if c := strings.Compare(params[a].Path, params[b].Path); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
	}
	out := make([]Update, 0, len(params))
	for _, i := range order {
		u := params[i]
		if err := store.ValidatePath(u.Path); err != nil {
			return nil, err
		}
		if u.HasValue {
			if store.IsObjectPath(u.Path) {
				return nil, fmt.Errorf("object %q cannot have a value: %w", u.Path, store.ErrInvalidArgument)
			}
			if err := store.ValidateValue(u.Value, u.Type); err != nil {
				return nil, fmt.Errorf("parameter %q: %w", u.Path, err)
			}
		}
		if u.Writable < store.TriUnknown || u.Writable > store.TriTrue {
			return nil, fmt.Errorf("parameter %q: writable %d: %w", u.Path, u.Writable, store.ErrInvalidArgument)
		}
		if u.Notification < 0 || u.Notification > store.NotificationOf(store.MaxNotification) {
			return nil, fmt.Errorf("parameter %q: notification %d: %w", u.Path, u.Notification, store.ErrInvalidArgument)
		}
		if n := len(out); n == 0 || out[n-1].Path != u.Path {
			out = append(out, Update{ParamUpdate: u})
			continue
		}
		m := &out[len(out)-1].ParamUpdate
		if u.HasValue {
			m.HasValue, m.Value, m.Type = true, u.Value, u.Type
		}
		if u.Writable != store.TriUnknown {
			m.Writable = u.Writable
		}
		if u.Notification != store.NotificationUnknown {
			m.Notification = u.Notification
		}
	}
	for i := range out {
		u := &out[i]
		if !u.HasValue {
			continue
		}
		switch {
		case slices.Contains(store.IntegerTypes, u.Type):
			u.Number, _ = store.ParseInteger(u.Value)
		case u.Type == store.DateTimeType:
			u.Instant, u.IsInstant = store.ParseInstant(u.Value)
		}
	}
	return out, nil
}

// Covered reports whether path lies under one of the sorted, non-overlapping
// prefixes, and which.
func Covered(prefixes []string, path string) (string, bool) {
	// The covering prefix, if any, is the greatest prefix <= path.
	i, found := slices.BinarySearch(prefixes, path)
	if found {
		return prefixes[i], true
	}
	if i > 0 && strings.HasPrefix(path, prefixes[i-1]) {
		return prefixes[i-1], true
	}
	return "", false
}

// Filter is a validated filter with normalised fields.
type Filter struct {
	store.Filter
	IDs        []string
	Tags       []string
	Conditions []Condition
	Since      time.Time
	Before     time.Time
}

// Condition is a validated parameter condition. For Lt and Gt, Number and
// Instant hold the operand as an integer and as an instant when it is one.
type Condition struct {
	store.ParamCondition
	Number    any
	Instant   time.Time
	IsInstant bool
}

// CheckFilter validates f.
func CheckFilter(f store.Filter) (Filter, error) {
	if err := store.ValidateTenant(f.Tenant); err != nil {
		return Filter{}, err
	}
	out := Filter{Filter: f, Since: Time(f.InformedSince), Before: Time(f.InformedBefore)}
	if f.OUI != nil {
		out.OUI = store.Ptr(store.NormalizeOUI(*f.OUI))
	}
	if len(f.IDs) > store.MaxFilterIDs {
		return Filter{}, fmt.Errorf("filter names %d ids, more than %d: %w", len(f.IDs), store.MaxFilterIDs, store.ErrInvalidArgument)
	}
	for _, id := range f.IDs {
		if err := store.ValidateID(id); err != nil {
			return Filter{}, fmt.Errorf("filter: %w", err)
		}
	}
	out.IDs = slices.Compact(slices.Sorted(slices.Values(f.IDs)))
	var err error
	if out.Tags, err = Tags(f.Tags); err != nil {
		return Filter{}, err
	}
	if len(f.Params) > store.MaxFilterConditions {
		return Filter{}, fmt.Errorf("filter has %d conditions, more than %d: %w", len(f.Params), store.MaxFilterConditions, store.ErrInvalidArgument)
	}
	for _, c := range f.Params {
		if err := store.ValidatePath(c.Path); err != nil {
			return Filter{}, fmt.Errorf("condition: %w", err)
		}
		if c.Op < store.OpEq || c.Op > store.OpPrefix {
			return Filter{}, fmt.Errorf("condition on %q: operator %d: %w", c.Path, c.Op, store.ErrInvalidArgument)
		}
		if c.Op != store.OpExists && c.Op != store.OpNotExists && store.IsObjectPath(c.Path) {
			return Filter{}, fmt.Errorf("condition %s on object %q: %w", c.Op, c.Path, store.ErrInvalidArgument)
		}
		if err := store.ValidateValue(c.Value, ""); err != nil {
			return Filter{}, fmt.Errorf("condition on %q: %w", c.Path, err)
		}
		cond := Condition{ParamCondition: c}
		if c.Op == store.OpLt || c.Op == store.OpGt {
			cond.Number, _ = store.ParseInteger(c.Value)
			cond.Instant, cond.IsInstant = store.ParseOperandInstant(c.Value)
		}
		out.Conditions = append(out.Conditions, cond)
	}
	return out, nil
}

// ParamsWanted tells whether path is selected by opts (which want params).
func ParamsWanted(opts store.ReadOptions, path string) bool {
	if len(opts.ParamPrefixes) == 0 {
		return true
	}
	for _, pre := range opts.ParamPrefixes {
		if strings.HasPrefix(path, pre) {
			return true
		}
	}
	return false
}

// PageSize is the effective page size of a request.
func PageSize(p store.PageRequest) int {
	switch {
	case p.Limit <= 0:
		return store.DefaultPageSize
	case p.Limit > store.MaxPageSize:
		return store.MaxPageSize
	}
	return p.Limit
}

// cursorPrefix versions the cursor format so it can change without
// misreading old cursors.
const cursorPrefix = "d1."

// EncodeCursor makes the opaque cursor that resumes after device id.
func EncodeCursor(id string) string {
	return cursorPrefix + base64.RawURLEncoding.EncodeToString([]byte(id))
}

// DecodeCursor returns the id a cursor resumes after ("" for "").
func DecodeCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	rest, ok := strings.CutPrefix(c, cursorPrefix)
	if !ok {
		return "", fmt.Errorf("cursor %q: %w", c, store.ErrInvalidArgument)
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) == 0 {
		return "", fmt.Errorf("cursor %q: %w", c, store.ErrInvalidArgument)
	}
	return string(b), nil
}

// UpperBound returns the smallest string greater than every string that
// starts with prefix, for a range scan "prefix <= s < UpperBound(prefix)";
// ok is false when no such bound exists (prefix is empty or all 0xFF).
func UpperBound(prefix string) (string, bool) {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xFF {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}
