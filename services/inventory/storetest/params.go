package storetest

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/services/inventory/store"
)

func paramsEqual(t *testing.T, what string, got, want map[string]store.Parameter) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	keys := slices.Sorted(maps.Keys(got))
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		if gok != wok || g != w {
			t.Errorf("%s: %q: got %+v (present %v), want %+v (present %v)", what, k, g, gok, w, wok)
		}
	}
	t.FailNow()
}

func testParamsMerge(t *testing.T, s store.Store) {
	tenant := newTenant()
	t1, t2, t3 := base, base.Add(time.Minute), base.Add(2*time.Minute)
	d := inform(devID("00AABB", "R", "S1"), t1)
	d.Params = []store.ParamUpdate{
		store.SetValue("Device.ManagementServer.PeriodicInformInterval", "300", "xsd:unsignedInt"),
		store.SetValue("Device.DeviceInfo.UpTime", "10", "xsd:unsignedInt"),
		store.SetWritable("Device.WiFi.SSID.1.SSID", true), // known from GPN only
		store.SetWritable("Device.WiFi.SSID.1.", true),     // object instance
		{Path: "Device.LAN.Addr", HasValue: true, Value: "", Type: ""},
	}
	id := apply(t, s, tenant, d, 1)
	paramsEqual(t, "after first diff", get(t, s, tenant, id, allParams).Params, map[string]store.Parameter{
		"Device.ManagementServer.PeriodicInformInterval": {Value: "300", Type: "xsd:unsignedInt", HasValue: true, Updated: ms(t1)},
		"Device.DeviceInfo.UpTime":                       {Value: "10", Type: "xsd:unsignedInt", HasValue: true, Updated: ms(t1)},
		"Device.WiFi.SSID.1.SSID":                        {Writable: store.TriTrue, Updated: ms(t1)},
		"Device.WiFi.SSID.1.":                            {Writable: store.TriTrue, Updated: ms(t1)},
		"Device.LAN.Addr":                                {HasValue: true, Updated: ms(t1)},
	})

	// Values and attributes arrive separately and merge field by field.
	applyID(t, s, tenant, id, store.Diff{Time: t2, Params: []store.ParamUpdate{
		store.SetValue("Device.WiFi.SSID.1.SSID", "home", "xsd:string"),
		store.SetNotification("Device.ManagementServer.PeriodicInformInterval", 0),
		store.SetWritable("Device.ManagementServer.PeriodicInformInterval", true),
		store.SetNotification("Device.DeviceInfo.UpTime", 2),
	}}, 1)
	// Later: a new value keeps attributes; a type change is stored; a
	// path twice in one diff merges with the later fields winning.
	applyID(t, s, tenant, id, store.Diff{Time: t3, Params: []store.ParamUpdate{
		store.SetValue("Device.ManagementServer.PeriodicInformInterval", "600", "xsd:unsignedInt"),
		store.SetValue("Device.DeviceInfo.UpTime", "abc", "xsd:string"),
		store.SetWritable("Device.DeviceInfo.UpTime", false),
		store.SetValue("Device.DeviceInfo.UpTime", "70", "xsd:int"),
	}}, 1)
	paramsEqual(t, "after merges", get(t, s, tenant, id, allParams).Params, map[string]store.Parameter{
		"Device.ManagementServer.PeriodicInformInterval": {Value: "600", Type: "xsd:unsignedInt", HasValue: true,
			Writable: store.TriTrue, Notification: store.NotificationOf(0), Updated: ms(t3)},
		"Device.DeviceInfo.UpTime": {Value: "70", Type: "xsd:int", HasValue: true,
			Writable: store.TriFalse, Notification: store.NotificationOf(2), Updated: ms(t3)},
		"Device.WiFi.SSID.1.SSID": {Value: "home", Type: "xsd:string", HasValue: true, Writable: store.TriTrue, Updated: ms(t2)},
		"Device.WiFi.SSID.1.":     {Writable: store.TriTrue, Updated: ms(t1)},
		"Device.LAN.Addr":         {HasValue: true, Updated: ms(t1)},
	})
	// Notification 0 (off) is a known value, distinct from unknown.
	n := get(t, s, tenant, id, allParams).Params["Device.ManagementServer.PeriodicInformInterval"].Notification
	if v, known := n.Value(); !known || v != 0 {
		t.Fatalf("notification 0 read back as %d known=%v", v, known)
	}
	// The comparison follows the value's current type: 70 as xsd:int is
	// below 100, "70" as xsd:string sorts after "100".
	gt100 := store.Filter{Tenant: tenant, Params: []store.ParamCondition{
		{Path: "Device.DeviceInfo.UpTime", Op: store.OpGt, Value: "100"}}}
	if ids := listAll(t, s, gt100, 10); len(ids) != 0 {
		t.Fatalf("70 as xsd:int compared as a string: %v", ids)
	}
	applyID(t, s, tenant, id, store.Diff{Time: t3, Params: []store.ParamUpdate{
		store.SetValue("Device.DeviceInfo.UpTime", "70", "xsd:string")}}, 1)
	if ids := listAll(t, s, gt100, 10); len(ids) != 1 {
		t.Fatalf("\"70\" as xsd:string compared as a number: %v", ids)
	}
}

func testValuesExact(t *testing.T, s store.Store) {
	tenant := newTenant()
	values := map[string]string{
		"Device.A.Lead":     "  leading",
		"Device.A.Trail":    "trailing  ",
		"Device.A.Both":     " \t both \n",
		"Device.A.Spaces":   "   ",
		"Device.A.Empty":    "",
		"Device.A.Unicode":  "Grüße 日本 🚀",
		"Device.A.Quote":    `it's "quoted" \ back`,
		"Device.A.Dollar":   "$set {\"a\": 1}",
		"Device.A.Percent":  "100%25",
		"Device.A.Newlines": "line1\r\nline2\n",
		"Device.A.Numeric":  "007",
		"Device.A.Float":    "1.50",
	}
	d := inform(devID("00AABB", "R", "S1"), base)
	want := map[string]store.Parameter{}
	for p, v := range values {
		d.Params = append(d.Params, store.SetValue(p, v, "xsd:string"))
		want[p] = store.Parameter{Value: v, Type: "xsd:string", HasValue: true, Updated: ms(base)}
	}
	// Path segments with characters that mean something to backends.
	odd := []string{"Device.X_VENDOR-Ext.$Key", "Device.%Pct.a%25b", "Device.Ünï.Cödé", "Device.Sp ace.x",
		"Device.c.p", "Device.o.v", "Device._id.u", "Device.1.2.3"}
	for i, p := range odd {
		v := fmt.Sprint(i)
		d.Params = append(d.Params, store.SetValue(p, v, "xsd:int"))
		want[p] = store.Parameter{Value: v, Type: "xsd:int", HasValue: true, Updated: ms(base)}
	}
	id := apply(t, s, tenant, d, 1)
	paramsEqual(t, "exact values", get(t, s, tenant, id, allParams).Params, want)
	for p, v := range values {
		ids := listAll(t, s, store.Filter{Tenant: tenant, Params: []store.ParamCondition{{Path: p, Op: store.OpEq, Value: v}}}, 10)
		if len(ids) != 1 {
			t.Errorf("eq condition on %q = %q found %v", p, v, ids)
		}
	}
	if ids := listAll(t, s, store.Filter{Tenant: tenant, Params: []store.ParamCondition{
		{Path: "Device.A.Lead", Op: store.OpEq, Value: "leading"}}}, 10); len(ids) != 0 {
		t.Errorf("eq on a trimmed value matched: %v", ids)
	}
}

func testDeletePrefix(t *testing.T, s store.Store) {
	tenant := newTenant()
	d := inform(devID("00AABB", "R", "S1"), base)
	all := []string{
		"Device.WiFi.SSID.", "Device.WiFi.SSID.1.", "Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.1.Enable",
		"Device.WiFi.SSID.1.Stats.BytesSent", "Device.WiFi.SSID.10.", "Device.WiFi.SSID.10.SSID",
		"Device.WiFi.SSID.2.", "Device.WiFi.SSID.2.SSID", "Device.WiFi.SSIDCount", "Device.WiFi.Radio.1.Channel",
	}
	for _, p := range all {
		if store.IsObjectPath(p) {
			d.Params = append(d.Params, store.SetWritable(p, true))
		} else {
			d.Params = append(d.Params, store.SetValue(p, "v", "xsd:string"))
		}
	}
	id := apply(t, s, tenant, d, 1)

	// DeleteObject of instance 1: its entry and everything under it go,
	// instance 10 (same leading characters) stays.
	applyID(t, s, tenant, id, store.Diff{Time: base, DeletePaths: []string{"Device.WiFi.SSID.1."}}, 1)
	got := slices.Sorted(maps.Keys(get(t, s, tenant, id, allParams).Params))
	want := []string{"Device.WiFi.Radio.1.Channel", "Device.WiFi.SSID.", "Device.WiFi.SSID.10.", "Device.WiFi.SSID.10.SSID",
		"Device.WiFi.SSID.2.", "Device.WiFi.SSID.2.SSID", "Device.WiFi.SSIDCount"}
	if !slices.Equal(got, want) {
		t.Fatalf("after deleting instance 1:\n got  %q\n want %q", got, want)
	}
	// A single parameter: that entry only, not its namesakes.
	applyID(t, s, tenant, id, store.Diff{Time: base, DeletePaths: []string{"Device.WiFi.SSID.10.SSID", "Device.WiFi.SSID.2"}}, 1)
	got = slices.Sorted(maps.Keys(get(t, s, tenant, id, allParams).Params))
	want = []string{"Device.WiFi.Radio.1.Channel", "Device.WiFi.SSID.", "Device.WiFi.SSID.10.",
		"Device.WiFi.SSID.2.", "Device.WiFi.SSID.2.SSID", "Device.WiFi.SSIDCount"}
	if !slices.Equal(got, want) {
		t.Fatalf("after deleting one parameter:\n got  %q\n want %q", got, want)
	}
	// Several prefixes, nested and repeated, one matching nothing, and a
	// parameter under one of them.
	applyID(t, s, tenant, id, store.Diff{Time: base, DeletePaths: []string{
		"Device.WiFi.SSID.2.", "Device.WiFi.SSID.", "Device.WiFi.SSID.2.", "Device.Nothing.Here.", "Device.WiFi.SSID.2.SSID"}}, 1)
	got = slices.Sorted(maps.Keys(get(t, s, tenant, id, allParams).Params))
	want = []string{"Device.WiFi.Radio.1.Channel", "Device.WiFi.SSIDCount"}
	if !slices.Equal(got, want) {
		t.Fatalf("after deleting the table:\n got  %q\n want %q", got, want)
	}
	// A parameter deleted and reported again in one diff keeps only what
	// the diff says (its old attributes are gone).
	applyID(t, s, tenant, id, store.Diff{Time: base, Params: []store.ParamUpdate{store.SetNotification("Device.WiFi.SSIDCount", 2)}}, 1)
	applyID(t, s, tenant, id, store.Diff{Time: base.Add(time.Minute), DeletePaths: []string{"Device.WiFi.SSIDCount"},
		Params: []store.ParamUpdate{store.SetValue("Device.WiFi.SSIDCount", "0", "xsd:unsignedInt")}}, 1)
	if p := get(t, s, tenant, id, allParams).Params["Device.WiFi.SSIDCount"]; p != (store.Parameter{Value: "0",
		Type: "xsd:unsignedInt", HasValue: true, Updated: ms(base.Add(time.Minute))}) {
		t.Fatalf("re-created parameter = %+v", p)
	}
}

func testReplaceSubtree(t *testing.T, s store.Store) {
	tenant := newTenant()
	t1, t2 := base, base.Add(time.Minute)
	d := inform(devID("00AABB", "R", "S1"), t1)
	d.Params = []store.ParamUpdate{
		store.SetWritable("Device.Hosts.Host.", false),
		store.SetNotification("Device.Hosts.Host.", 0),
		store.SetWritable("Device.Hosts.Host.1.", false),
		store.SetValue("Device.Hosts.Host.1.IPAddress", "192.168.1.10", "xsd:string"),
		store.SetValue("Device.Hosts.Host.2.IPAddress", "192.168.1.11", "xsd:string"),
		store.SetValue("Device.Hosts.HostNumberOfEntries", "2", "xsd:unsignedInt"),
	}
	id := apply(t, s, tenant, d, 1)
	// A refresh of the Hosts table: forget it, then record what is there
	// now, in one diff. Attributes not re-reported are gone with the rest.
	applyID(t, s, tenant, id, store.Diff{Time: t2,
		DeletePaths: []string{"Device.Hosts.Host."},
		Params: []store.ParamUpdate{
			store.SetWritable("Device.Hosts.Host.", false),
			store.SetWritable("Device.Hosts.Host.3.", false),
			store.SetValue("Device.Hosts.Host.3.IPAddress", "192.168.1.12", "xsd:string"),
			store.SetValue("Device.Hosts.Host.3.IPAddress", "192.168.1.13", "xsd:string"),
			store.SetNotification("Device.Hosts.Host.3.IPAddress", 1),
			store.SetValue("Device.Hosts.HostNumberOfEntries", "1", "xsd:unsignedInt"),
		}}, 1)
	paramsEqual(t, "after refresh", get(t, s, tenant, id, allParams).Params, map[string]store.Parameter{
		"Device.Hosts.Host.":   {Writable: store.TriFalse, Updated: ms(t2)},
		"Device.Hosts.Host.3.": {Writable: store.TriFalse, Updated: ms(t2)},
		"Device.Hosts.Host.3.IPAddress": {Value: "192.168.1.13", Type: "xsd:string", HasValue: true,
			Notification: store.NotificationOf(1), Updated: ms(t2)},
		"Device.Hosts.HostNumberOfEntries": {Value: "1", Type: "xsd:unsignedInt", HasValue: true, Updated: ms(t2)},
	})
}

func testDeleteAll(t *testing.T, s store.Store) {
	tenant := newTenant()
	d := inform(devID("00AABB", "R", "S1"), base)
	d.Params = []store.ParamUpdate{store.SetValue("Device.A", "1", ""), store.SetValue("InternetGatewayDevice.B", "2", "")}
	id := apply(t, s, tenant, d, 1)
	applyID(t, s, tenant, id, store.Diff{Time: base, DeletePaths: []string{"Device.", ""},
		Params: []store.ParamUpdate{store.SetValue("Device.C", "3", "")}}, 1)
	paramsEqual(t, "after delete all", get(t, s, tenant, id, allParams).Params, map[string]store.Parameter{
		"Device.C": {Value: "3", HasValue: true, Updated: ms(base)},
	})
	applyID(t, s, tenant, id, store.Diff{Time: base, DeletePaths: []string{""}}, 1)
	if p := get(t, s, tenant, id, allParams).Params; len(p) != 0 {
		t.Fatalf("tree not empty: %v", p)
	}
}

func testGetParamPrefix(t *testing.T, s store.Store) {
	tenant := newTenant()
	d := inform(devID("00AABB", "R", "S1"), base)
	paths := []string{"Device.WiFi.", "Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.10.SSID", "Device.WiFi.SSID.2.SSID",
		"Device.WiFi.SSIDNumberOfEntries", "Device.WiFiX", "Device.DeviceInfo.UpTime", "Device.WiFi"}
	for _, p := range paths {
		if store.IsObjectPath(p) {
			d.Params = append(d.Params, store.SetWritable(p, false))
		} else {
			d.Params = append(d.Params, store.SetValue(p, p, ""))
		}
	}
	id := apply(t, s, tenant, d, 1)
	cases := map[string][]string{
		"Device.WiFi.":       {"Device.WiFi.", "Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.10.SSID", "Device.WiFi.SSID.2.SSID", "Device.WiFi.SSIDNumberOfEntries"},
		"Device.WiFi.SSID.1": {"Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.10.SSID"},
		"Device.WiFi.SSID":   {"Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.10.SSID", "Device.WiFi.SSID.2.SSID", "Device.WiFi.SSIDNumberOfEntries"},
		"Device.WiFi":        {"Device.WiFi", "Device.WiFi.", "Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.10.SSID", "Device.WiFi.SSID.2.SSID", "Device.WiFi.SSIDNumberOfEntries", "Device.WiFiX"},
		"Device.DeviceInfo.": {"Device.DeviceInfo.UpTime"},
		"Dev":                paths,
		"Device.Nothing.":    {},
		"Other":              {},
	}
	cases["Device.DeviceInfo.|Device.WiFi.SSID.1"] = []string{"Device.DeviceInfo.UpTime", "Device.WiFi.SSID.1.SSID", "Device.WiFi.SSID.10.SSID"}
	cases["Device.WiFi.|Device.WiFi.SSID.2."] = cases["Device.WiFi."]
	cases["Device.WiFi.SSID.2.|Dev"] = paths
	for prefix, want := range cases {
		got := get(t, s, tenant, id, store.ReadOptions{ParamPrefixes: strings.Split(prefix, "|")})
		keys := slices.Sorted(maps.Keys(got.Params))
		if got.Params == nil {
			t.Errorf("prefix %q: Params is nil, want a (possibly empty) map", prefix)
		}
		want = slices.Sorted(slices.Values(want))
		if !slices.Equal(keys, want) {
			t.Errorf("prefix %q:\n got  %q\n want %q", prefix, keys, want)
		}
		for _, k := range keys {
			if p := got.Params[k]; !store.IsObjectPath(k) && p.Value != k {
				t.Errorf("prefix %q: %q has value %q", prefix, k, p.Value)
			}
		}
		if got.Tags != nil || got.ID != id || got.Tenant != tenant || !got.LastInform.Equal(ms(base)) {
			t.Errorf("prefix %q: device fields lost: %+v", prefix, got)
		}
	}
}

func testLargeTree(t *testing.T, s store.Store) {
	tenant := newTenant()
	const n = 5000
	d := inform(devID("00AABB", "R", "BIG"), base)
	want := make(map[string]store.Parameter, n)
	for i := range n {
		p := fmt.Sprintf("Device.Big.Table.%d.Entry%d.Value", i%250+1, i/250)
		v := fmt.Sprintf(" value %d ", i)
		d.Params = append(d.Params, store.SetValue(p, v, "xsd:string"))
		want[p] = store.Parameter{Value: v, Type: "xsd:string", HasValue: true, Updated: ms(base)}
	}
	id := apply(t, s, tenant, d, 1)
	paramsEqual(t, "large tree", get(t, s, tenant, id, allParams).Params, want)

	// A second session updates every entry and drops half the table.
	t2 := base.Add(time.Hour)
	d2 := store.Diff{Time: t2}
	for i := 126; i <= 250; i++ {
		d2.DeletePaths = append(d2.DeletePaths, fmt.Sprintf("Device.Big.Table.%d.", i))
	}
	want2 := map[string]store.Parameter{}
	for i := range n {
		p := fmt.Sprintf("Device.Big.Table.%d.Entry%d.Value", i%250+1, i/250)
		d2.Params = append(d2.Params, store.SetNotification(p, 1))
		if i%250+1 <= 125 {
			w := want[p]
			w.Notification, w.Updated = store.NotificationOf(1), ms(t2)
			want2[p] = w
		} else {
			// Re-created after the delete with only what this diff says.
			want2[p] = store.Parameter{Notification: store.NotificationOf(1), Updated: ms(t2)}
		}
	}
	applyID(t, s, tenant, id, d2, 1)
	paramsEqual(t, "large tree after update", get(t, s, tenant, id, allParams).Params, want2)
	ids := listAll(t, s, store.Filter{Tenant: tenant, Params: []store.ParamCondition{
		{Path: "Device.Big.Table.77.Entry3.Value", Op: store.OpEq, Value: fmt.Sprintf(" value %d ", 3*250+76)}}}, 10)
	if len(ids) != 1 {
		t.Fatalf("condition in a large tree found %v", ids)
	}
}

// testRereadTimes: a value a session reports again unchanged (a periodic
// Inform's parameters, a refresh) is a fact recorded at that session's
// time, whether or not the store rewrites the entry; an entry the later
// sessions stop reporting keeps the time it was last reported. Every read
// path (Get, Get under a prefix, List) shows the same times.
func testRereadTimes(t *testing.T, s store.Store) {
	tenant := newTenant()
	t1, t2, t3, t4, t5 := base, base.Add(time.Minute), base.Add(2*time.Minute), base.Add(3*time.Minute), base.Add(4*time.Minute)
	const sw, url, ip = "Device.DeviceInfo.SoftwareVersion", "Device.ManagementServer.ConnectionRequestURL", "Device.IP.Interface.1.IPv4Address.1.IPAddress"
	periodic := func(at time.Time, params ...store.ParamUpdate) store.Diff {
		d := inform(devID("00AABB", "R", "RR1"), at, "2 PERIODIC")
		d.Params = params
		return d
	}
	d := periodic(t1, store.SetValue(sw, "1.0", "xsd:string"), store.SetValue(url, "http://a", "xsd:string"),
		store.SetValue(ip, "10.0.0.1", "xsd:string"))
	d.Params = append(d.Params, store.SetWritable("Device.WiFi.SSID.1.SSID", true))
	id := apply(t, s, tenant, d, 1)

	check := func(what string, want map[string]time.Time) {
		t.Helper()
		views := map[string]map[string]store.Parameter{
			"Get":        get(t, s, tenant, id, allParams).Params,
			"Get prefix": get(t, s, tenant, id, store.ReadOptions{ParamPrefixes: []string{"Device.DeviceInfo.", "Device.ManagementServer.", "Device.IP.", "Device.WiFi."}}).Params,
		}
		p, err := s.List(ctxT(t), store.Filter{Tenant: tenant}, store.PageRequest{}, allParams)
		if err != nil || len(p.Devices) != 1 {
			t.Fatalf("%s: List: %d devices, %v", what, len(p.Devices), err)
		}
		views["List"] = p.Devices[0].Params
		for view, got := range views {
			for path, at := range want {
				if u := got[path].Updated; !u.Equal(ms(at)) {
					t.Errorf("%s, %s: %s updated %v, want %v", what, view, path, u, ms(at))
				}
			}
		}
	}
	check("first contact", map[string]time.Time{sw: t1, url: t1, ip: t1, "Device.WiFi.SSID.1.SSID": t1})

	// The next Inform reports the same values and one new one.
	applyID(t, s, tenant, id, periodic(t2, store.SetValue(sw, "1.0", "xsd:string"), store.SetValue(url, "http://a", "xsd:string"),
		store.SetValue(ip, "10.0.0.2", "xsd:string")), 2)
	check("same values again", map[string]time.Time{sw: t2, url: t2, ip: t2, "Device.WiFi.SSID.1.SSID": t1})
	if v := get(t, s, tenant, id, allParams).Params[ip].Value; v != "10.0.0.2" {
		t.Errorf("changed value: %q", v)
	}

	// An Inform without ip: ip keeps t2.
	applyID(t, s, tenant, id, periodic(t3, store.SetValue(sw, "1.0", "xsd:string"), store.SetValue(url, "http://a", "xsd:string")), 3)
	check("one parameter no longer reported", map[string]time.Time{sw: t3, url: t3, ip: t2})

	// A session that only learns attributes reports no value: every
	// value keeps the time it was last reported.
	applyID(t, s, tenant, id, store.Diff{Time: t4, Params: []store.ParamUpdate{store.SetWritable(sw, false)}}, 4)
	check("attributes only", map[string]time.Time{sw: t4, url: t3, ip: t2})

	// The same diff applied twice changes nothing more.
	again := periodic(t5, store.SetValue(url, "http://a", "xsd:string"))
	applyID(t, s, tenant, id, again, 5)
	applyID(t, s, tenant, id, again, 5)
	check("same diff twice", map[string]time.Time{sw: t4, url: t5, ip: t2})
	// Deleted entries stay deleted, whatever was reported before.
	applyID(t, s, tenant, id, store.Diff{Time: t5, DeletePaths: []string{url}}, 5)
	if _, ok := get(t, s, tenant, id, allParams).Params[url]; ok {
		t.Error("deleted entry still read")
	}
}
