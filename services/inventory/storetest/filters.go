package storetest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// fixture is what the suite wrote for one device, so filters can be
// checked against a reference evaluation instead of hand-listed answers.
type fixture struct {
	id      string
	dev     cwmp.DeviceID
	sw, hw  string
	tags    []string
	inform  time.Time
	values  map[string]typed // parameters with a value
	attrs   map[string]bool  // entries known without a value (objects too)
	tenant  string
	deleted bool
}

type typed struct{ v, t string }

var (
	fxOUIs    = []string{"00AABB", "00CCDD", "a1b2c3"}
	fxClasses = []string{"HGW", "ONT", "", "STB"}
	fxMakers  = []string{"Acme", "Zyx"}
	fxSW      = []string{"1.0", "1.1", "2.0"}
	fxHW      = []string{"hwA", "hwB", ""}
	fxTags    = []string{"red", "green", "blue"}
	fxNames   = []string{"alpha", "beta", "alp(ha)", "gamma ", "", "a.b*c", "Alpha", "al"}
	fxNums    = []string{"9", "10", "-3", " 100 ", "abc", "0", "010", "9223372036854775807", "18446744073709551615"}
	fxTimes   = []string{"2024-01-01T00:00:00Z", "2024-06-01T12:00:00+02:00", "2024-06-01T10:00:00.5Z",
		"0001-01-01T00:00:00Z", "not a time", "2025-01-01T00:00:00", "2024-06-01T10:00:00.0004Z"}
)

// fleet writes n devices with attributes spread deterministically.
func fleet(t *testing.T, s store.Store, tenant string, n int) []fixture {
	t.Helper()
	out := make([]fixture, 0, n)
	for i := range n {
		f := fixture{
			tenant: tenant,
			dev: cwmp.DeviceID{Manufacturer: fxMakers[i%2], OUI: fxOUIs[i%3], ProductClass: fxClasses[i%4],
				SerialNumber: fmt.Sprintf("S%03d", i)},
			sw:     fxSW[i%3],
			hw:     fxHW[i%3],
			inform: base.Add(time.Duration(i) * time.Minute),
			values: map[string]typed{},
			attrs:  map[string]bool{},
		}
		for b, tag := range fxTags {
			if i>>b&1 == 1 {
				f.tags = append(f.tags, tag)
			}
		}
		d := inform(f.dev, f.inform)
		d.Fields.SoftwareVersion = &f.sw
		d.Fields.HardwareVersion = &f.hw
		d.AddTags = f.tags
		set := func(p, v, typ string) {
			f.values[p] = typed{v, typ}
			d.Params = append(d.Params, store.SetValue(p, v, typ))
		}
		if i%5 != 4 {
			set("Device.DeviceInfo.UpTime", fmt.Sprint(i*7), "xsd:unsignedInt")
		}
		set("Device.X.Name", fxNames[i%len(fxNames)], "xsd:string")
		if i%3 != 2 {
			typ := "xsd:int"
			if i%2 == 1 {
				typ = "xsd:string"
			} else if i%4 == 0 {
				typ = "xsd:unsignedLong"
			}
			set("Device.X.Num", fxNums[i%len(fxNums)], typ)
		}
		if i%4 != 3 {
			typ := store.DateTimeType
			if i%7 == 0 {
				typ = "xsd:string"
			}
			set("Device.X.When", fxTimes[i%len(fxTimes)], typ)
		}
		if i%4 == 1 {
			f.attrs["Device.X.Attr"] = true
			d.Params = append(d.Params, store.SetWritable("Device.X.Attr", true))
		}
		if i%3 == 0 {
			f.attrs["Device.X.Obj."] = true
			d.Params = append(d.Params, store.SetWritable("Device.X.Obj.", true))
		}
		f.id = apply(t, s, tenant, d, 1)
		out = append(out, f)
	}
	return out
}

func (f *fixture) matches(flt store.Filter) bool {
	if f.deleted || f.tenant != flt.Tenant {
		return false
	}
	if len(flt.IDs) > 0 && !slices.Contains(flt.IDs, f.id) {
		return false
	}
	if flt.Manufacturer != nil && *flt.Manufacturer != f.dev.Manufacturer ||
		flt.OUI != nil && store.NormalizeOUI(*flt.OUI) != store.NormalizeOUI(f.dev.OUI) ||
		flt.ProductClass != nil && *flt.ProductClass != f.dev.ProductClass ||
		flt.SerialNumber != nil && *flt.SerialNumber != f.dev.SerialNumber ||
		flt.SoftwareVersion != nil && *flt.SoftwareVersion != f.sw ||
		flt.HardwareVersion != nil && *flt.HardwareVersion != f.hw {
		return false
	}
	for _, tag := range flt.Tags {
		if !slices.Contains(f.tags, tag) {
			return false
		}
	}
	li := ms(f.inform)
	if !flt.InformedSince.IsZero() && li.Before(ms(flt.InformedSince)) {
		return false
	}
	if !flt.InformedBefore.IsZero() && !li.Before(ms(flt.InformedBefore)) {
		return false
	}
	for _, c := range flt.Params {
		if !f.matchesCondition(c) {
			return false
		}
	}
	return true
}

func (f *fixture) matchesCondition(c store.ParamCondition) bool {
	tv, has := f.values[c.Path]
	v := tv.v
	switch c.Op {
	case store.OpExists:
		return has || f.attrs[c.Path]
	case store.OpNotExists:
		return !has && !f.attrs[c.Path]
	case store.OpEq:
		return has && v == c.Value
	case store.OpNe:
		return has && v != c.Value
	case store.OpPrefix:
		return has && strings.HasPrefix(v, c.Value)
	case store.OpLt, store.OpGt:
		if !has {
			return false
		}
		want := -1
		if c.Op == store.OpGt {
			want = 1
		}
		return compareTyped(tv, c.Value) == want
	}
	return false
}

// compareTyped is the reference for typed Lt and Gt: -1, 0 or 1, or 2 when
// the operand does not fit the value's type.
func compareTyped(tv typed, operand string) int {
	if slices.Contains(store.IntegerTypes, tv.t) {
		if vn, ok := store.ParseInteger(tv.v); ok {
			on, ok := store.ParseInteger(operand)
			if !ok {
				return 2
			}
			return cmpNumbers(vn, on)
		}
	}
	if tv.t == store.DateTimeType {
		if vt, ok := store.ParseInstant(tv.v); ok {
			ot, ok := store.ParseOperandInstant(operand)
			if !ok {
				return 2
			}
			return vt.Compare(ot)
		}
	}
	return strings.Compare(tv.v, operand)
}

func cmpNumbers(a, b any) int {
	if ai, ok := a.(int64); ok {
		if bi, ok := b.(int64); ok {
			switch {
			case ai < bi:
				return -1
			case ai > bi:
				return 1
			}
			return 0
		}
	}
	af, bf := toFloat(a), toFloat(b)
	switch {
	case af < bf:
		return -1
	case af > bf:
		return 1
	}
	return 0
}

func toFloat(x any) float64 {
	if i, ok := x.(int64); ok {
		return float64(i)
	}
	return x.(float64)
}

func expected(fx []fixture, f store.Filter) []string {
	var ids []string
	for i := range fx {
		if fx[i].matches(f) {
			ids = append(ids, fx[i].id)
		}
	}
	slices.Sort(ids)
	return ids
}

func checkFilter(t *testing.T, s store.Store, fx []fixture, f store.Filter, limit int) {
	t.Helper()
	got := listAll(t, s, f, limit)
	want := expected(fx, f)
	if !slices.Equal(got, want) {
		t.Errorf("filter %s:\n got  %d %q\n want %d %q", describe(f), len(got), got, len(want), want)
	}
}

func describe(f store.Filter) string {
	var b strings.Builder
	opt := func(name string, v *string) {
		if v != nil {
			fmt.Fprintf(&b, "%s=%q ", name, *v)
		}
	}
	opt("manufacturer", f.Manufacturer)
	opt("oui", f.OUI)
	opt("productClass", f.ProductClass)
	opt("serial", f.SerialNumber)
	opt("sw", f.SoftwareVersion)
	opt("hw", f.HardwareVersion)
	if len(f.IDs) > 0 {
		fmt.Fprintf(&b, "ids=%q ", f.IDs)
	}
	if len(f.Tags) > 0 {
		fmt.Fprintf(&b, "tags=%q ", f.Tags)
	}
	if !f.InformedSince.IsZero() {
		fmt.Fprintf(&b, "since=%s ", f.InformedSince.Format(time.RFC3339Nano))
	}
	if !f.InformedBefore.IsZero() {
		fmt.Fprintf(&b, "before=%s ", f.InformedBefore.Format(time.RFC3339Nano))
	}
	for _, c := range f.Params {
		fmt.Fprintf(&b, "%s %s %q ", c.Path, c.Op, c.Value)
	}
	return b.String()
}

// singleFilters are one filter of each kind and each operator edge.
func singleFilters(tenant string) []store.Filter {
	fs := []store.Filter{
		{Tenant: tenant},
		{Tenant: tenant, Manufacturer: store.Ptr("Zyx")},
		{Tenant: tenant, OUI: store.Ptr("00CCDD")},
		{Tenant: tenant, OUI: store.Ptr("A1B2C3")}, // stored raw in lower case, filtered normalised
		{Tenant: tenant, OUI: store.Ptr("a1b2c3")},
		{Tenant: tenant, ProductClass: store.Ptr("ONT")},
		{Tenant: tenant, ProductClass: store.Ptr("")},
		{Tenant: tenant, SerialNumber: store.Ptr("S007")},
		{Tenant: tenant, SerialNumber: store.Ptr("nope")},
		{Tenant: tenant, SoftwareVersion: store.Ptr("1.1")},
		{Tenant: tenant, HardwareVersion: store.Ptr("hwB")},
		{Tenant: tenant, HardwareVersion: store.Ptr("")},
		{Tenant: tenant, IDs: []string{store.MakeID(devID("00AABB", "HGW", "S000")), store.MakeID(devID("00CCDD", "STB", "S007")), "00AABB-NOPE"}},
		{Tenant: tenant, Tags: []string{"red"}},
		{Tenant: tenant, Tags: []string{"red", "blue"}},
		{Tenant: tenant, Tags: []string{"red", "green", "blue"}},
		{Tenant: tenant, Tags: []string{"purple"}},
		{Tenant: tenant, InformedSince: base.Add(10 * time.Minute)},
		{Tenant: tenant, InformedBefore: base.Add(10 * time.Minute)},
		{Tenant: tenant, InformedSince: base.Add(5 * time.Minute), InformedBefore: base.Add(6 * time.Minute)},
		{Tenant: tenant, InformedSince: base.Add(5*time.Minute + 500*time.Microsecond)}, // sub-ms bound
		{Tenant: tenant, InformedSince: base.Add(time.Hour), InformedBefore: base},
	}
	conds := []store.ParamCondition{
		{Path: "Device.DeviceInfo.UpTime", Op: store.OpExists},
		{Path: "Device.DeviceInfo.UpTime", Op: store.OpNotExists},
		{Path: "Device.DeviceInfo.UpTime", Op: store.OpEq, Value: "21"},
		{Path: "Device.DeviceInfo.UpTime", Op: store.OpNe, Value: "21"},
		{Path: "Device.DeviceInfo.UpTime", Op: store.OpGt, Value: "100"}, // numbers: 105 > 100 although "105" < "2"
		{Path: "Device.DeviceInfo.UpTime", Op: store.OpLt, Value: "35"},
		{Path: "Device.DeviceInfo.UpTime", Op: store.OpLt, Value: "35.5"}, // not an integer: no integer value matches
		{Path: "Device.DeviceInfo.UpTime", Op: store.OpGt, Value: "-10"},
		{Path: "Device.X.Num", Op: store.OpLt, Value: "10"}, // integers by number, strings by bytes
		{Path: "Device.X.Num", Op: store.OpGt, Value: "9"},  // " 100 " and "010" are integers when typed so
		{Path: "Device.X.Num", Op: store.OpLt, Value: "b"},  // integer values never match a non-integer operand
		{Path: "Device.X.Num", Op: store.OpGt, Value: "9223372036854775806"},
		{Path: "Device.X.Num", Op: store.OpLt, Value: "18446744073709551615"},
		{Path: "Device.X.Num", Op: store.OpEq, Value: "10"},
		{Path: "Device.X.Num", Op: store.OpEq, Value: "010"},
		{Path: "Device.X.When", Op: store.OpLt, Value: "2024-06-01T10:00:00Z"}, // +02:00 is the same instant
		{Path: "Device.X.When", Op: store.OpGt, Value: "2024-06-01T10:00:00Z"},
		{Path: "Device.X.When", Op: store.OpGt, Value: "2024-06-01T12:00:00+02:00"},
		{Path: "Device.X.When", Op: store.OpLt, Value: "2024"}, // strings only
		{Path: "Device.X.When", Op: store.OpGt, Value: "0001-01-01T00:00:00.001Z"},
		{Path: "Device.X.Name", Op: store.OpEq, Value: ""},
		{Path: "Device.X.Name", Op: store.OpNe, Value: ""},
		{Path: "Device.X.Name", Op: store.OpEq, Value: "gamma "},
		{Path: "Device.X.Name", Op: store.OpPrefix, Value: "al"},
		{Path: "Device.X.Name", Op: store.OpPrefix, Value: "alp("},
		{Path: "Device.X.Name", Op: store.OpPrefix, Value: "a.b*"},
		{Path: "Device.X.Name", Op: store.OpPrefix, Value: "a."},
		{Path: "Device.X.Name", Op: store.OpPrefix, Value: ""},
		{Path: "Device.X.Name", Op: store.OpPrefix, Value: "A"},
		{Path: "Device.X.Name", Op: store.OpLt, Value: "alpha"},
		{Path: "Device.X.Name", Op: store.OpGt, Value: "alpha"},
		{Path: "Device.X.Name", Op: store.OpGt, Value: "1"}, // a string value with an integer operand compares bytes
		{Path: "Device.X.Attr", Op: store.OpExists},
		{Path: "Device.X.Attr", Op: store.OpNotExists},
		{Path: "Device.X.Attr", Op: store.OpEq, Value: ""}, // attribute-only: no value to compare
		{Path: "Device.X.Attr", Op: store.OpNe, Value: "x"},
		{Path: "Device.X.Obj.", Op: store.OpExists},
		{Path: "Device.X.Obj.", Op: store.OpNotExists},
		{Path: "Device.X.Missing", Op: store.OpExists},
		{Path: "Device.X.Missing", Op: store.OpNotExists},
		{Path: "Device.X.Missing", Op: store.OpNe, Value: "x"},
		{Path: "Device.X", Op: store.OpExists}, // an object's name without "." is not the object
	}
	for _, c := range conds {
		fs = append(fs, store.Filter{Tenant: tenant, Params: []store.ParamCondition{c}})
	}
	return fs
}

func testFilters(t *testing.T, s store.Store) {
	tenant := newTenant()
	fx := fleet(t, s, tenant, 40)
	// Another tenant with the same fleet must never leak in.
	fleet(t, s, newTenant(), 10)
	for _, f := range singleFilters(tenant) {
		checkFilter(t, s, fx, f, 1000)
	}
	// Sanity of the reference itself: typed filters are not vacuous.
	for _, c := range []store.ParamCondition{
		{Path: "Device.X.Num", Op: store.OpLt, Value: "10"},
		{Path: "Device.X.When", Op: store.OpLt, Value: "2024-06-01T10:00:00Z"},
		{Path: "Device.DeviceInfo.UpTime", Op: store.OpGt, Value: "100"},
	} {
		if n := len(expected(fx, store.Filter{Tenant: tenant, Params: []store.ParamCondition{c}})); n == 0 || n == len(fx) {
			t.Fatalf("reference filter %+v matches %d of %d", c, n, len(fx))
		}
	}
}

func testFilterCombinations(t *testing.T, s store.Store) {
	tenant := newTenant()
	fx := fleet(t, s, tenant, 48)
	singles := singleFilters(tenant)[1:]
	rng := rand.New(rand.NewPCG(1, 2)) // fixed seed: the same combinations every run
	nonEmpty := 0
	for range 150 {
		f := store.Filter{Tenant: tenant}
		for range 1 + rng.IntN(3) {
			g := singles[rng.IntN(len(singles))]
			f = merge(f, g)
		}
		if len(expected(fx, f)) > 0 {
			nonEmpty++
		}
		checkFilter(t, s, fx, f, 1+rng.IntN(8))
	}
	if nonEmpty < 30 {
		t.Fatalf("only %d of 150 combinations match anything; the test lost its teeth", nonEmpty)
	}
}

// merge ANDs g into f; a field set in both keeps g's value.
func merge(f, g store.Filter) store.Filter {
	pick := func(a, b *string) *string {
		if b != nil {
			return b
		}
		return a
	}
	f.Manufacturer = pick(f.Manufacturer, g.Manufacturer)
	f.OUI = pick(f.OUI, g.OUI)
	f.ProductClass = pick(f.ProductClass, g.ProductClass)
	f.SerialNumber = pick(f.SerialNumber, g.SerialNumber)
	f.SoftwareVersion = pick(f.SoftwareVersion, g.SoftwareVersion)
	f.HardwareVersion = pick(f.HardwareVersion, g.HardwareVersion)
	if len(g.IDs) > 0 {
		f.IDs = g.IDs
	}
	f.Tags = append(slices.Clone(f.Tags), g.Tags...)
	if !g.InformedSince.IsZero() {
		f.InformedSince = g.InformedSince
	}
	if !g.InformedBefore.IsZero() {
		f.InformedBefore = g.InformedBefore
	}
	f.Params = append(slices.Clone(f.Params), g.Params...)
	return f
}
