package storetest

import (
	"errors"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

func testStartIdempotent(t *testing.T, s store.Store) {
	if err := s.Start(ctxT(t)); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	tenant := newTenant()
	apply(t, s, tenant, inform(devID("00AABB", "Router", "S1"), base), 1)
}

func testCreateAndGet(t *testing.T, s store.Store) {
	tenant := newTenant()
	dev := cwmp.DeviceID{Manufacturer: "Acme Corp", OUI: "00aabb", ProductClass: "HGW-1", SerialNumber: "SN:001"}
	d := inform(dev, base, "0 BOOTSTRAP", "1 BOOT")
	d.Inform.Events[1].CommandKey = "ck 1"
	d.Inform.RemoteIP = netip.MustParseAddr("2001:db8::7")
	d.Inform.Time = base.Add(-time.Second) // arrival, before the observation
	d.Fields.HardwareVersion = store.Ptr("hw-2")
	d.Fields.ProvisioningCode = store.Ptr("ABC")
	d.Fields.UDPConnectionRequestAddress = store.Ptr("198.51.100.1:30000")
	d.Fields.JabberID = store.Ptr("cpe@xmpp.example/x")
	d.FullDiscovery = base
	d.AddTags = []string{"zeta", "alpha"}
	d.Params = []store.ParamUpdate{store.SetValue("Device.DeviceInfo.SoftwareVersion", "1.0.0", "xsd:string")}
	id := store.MakeID(dev)
	if id != "00AABB-HGW%2D1-SN%3A001" {
		t.Fatalf("MakeID = %q", id)
	}
	created, err := s.ApplySessionDiff(ctxT(t), tenant, id, d, 3)
	if err != nil || !created {
		t.Fatalf("first diff: created %v, %v", created, err)
	}

	got := get(t, s, tenant, id, store.ReadOptions{})
	want := store.Device{
		Tenant:           tenant,
		ID:               id,
		DeviceID:         dev,
		OUI:              "00AABB",
		SoftwareVersion:  "1.0.0",
		HardwareVersion:  "hw-2",
		ProvisioningCode: "ABC",
		DataModelRoot:    "Device.",
		ConnectionRequest: store.ConnectionRequest{URL: "http://192.0.2.10:7547/cr",
			UDPAddress: "198.51.100.1:30000", JabberID: "cpe@xmpp.example/x"},
		LastInform:    ms(base.Add(-time.Second)),
		RemoteIP:      netip.MustParseAddr("2001:db8::7"),
		LastEvents:    []cwmp.Event{{Code: "0 BOOTSTRAP"}, {Code: "1 BOOT", CommandKey: "ck 1"}},
		Registered:    ms(base),
		LastBoot:      ms(base.Add(-time.Second)),
		LastBootstrap: ms(base.Add(-time.Second)),
		FullDiscovery: ms(base),
		Updated:       ms(base),
		Tags:          []string{"alpha", "zeta"},
		FencingToken:  3,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Get without params:\n got  %+v\n want %+v", got, want)
	}
	withParams := get(t, s, tenant, id, allParams)
	wantParams := map[string]store.Parameter{
		"Device.DeviceInfo.SoftwareVersion": {Value: "1.0.0", Type: "xsd:string", HasValue: true, Updated: ms(base)},
	}
	if !reflect.DeepEqual(withParams.Params, wantParams) {
		t.Fatalf("params = %+v, want %+v", withParams.Params, wantParams)
	}
	// The same diff again changes nothing and creates nothing.
	created, err = s.ApplySessionDiff(ctxT(t), tenant, id, d, 3)
	if err != nil || created {
		t.Fatalf("repeated diff: created %v, %v", created, err)
	}
	if again := get(t, s, tenant, id, allParams); !reflect.DeepEqual(again, withParams) {
		t.Fatalf("repeating a diff changed the device:\n %+v\n %+v", again, withParams)
	}
}

func testInformUpdates(t *testing.T, s store.Store) {
	tenant := newTenant()
	d := inform(devID("00AABB", "Router", "S1"), base, "1 BOOT")
	id := apply(t, s, tenant, d, 1)

	// A periodic Inform later: new time, IP and events; unset fields keep
	// their values, fields set to "" are cleared; no BOOT keeps the last
	// boot time.
	later := base.Add(time.Hour)
	d2 := inform(devID("00aabb", "Router", "S1"), later, "2 PERIODIC")
	d2.Fields = store.Fields{ConnectionRequestURL: store.Ptr("")}
	d2.Inform.RemoteIP = netip.Addr{}
	d2.DeviceID.Manufacturer = "Acme Renamed"
	applyID(t, s, tenant, id, d2, 1)

	got := get(t, s, tenant, id, store.ReadOptions{})
	if !got.Registered.Equal(ms(base)) || !got.LastInform.Equal(ms(later)) || !got.LastBoot.Equal(ms(base)) ||
		!got.Updated.Equal(ms(later)) || !got.LastBootstrap.IsZero() {
		t.Fatalf("times: %+v", got)
	}
	if got.SoftwareVersion != "1.0.0" || got.DataModelRoot != "Device." {
		t.Fatalf("unset fields overwritten: %q %q", got.SoftwareVersion, got.DataModelRoot)
	}
	if got.RemoteIP.IsValid() || got.ConnectionRequest.URL != "" {
		t.Fatalf("remote IP %v and CR URL %q should be cleared", got.RemoteIP, got.ConnectionRequest.URL)
	}
	if got.DeviceID.OUI != "00aabb" || got.OUI != "00AABB" || got.DeviceID.Manufacturer != "Acme Renamed" {
		t.Fatalf("DeviceId not the last reported: %+v (OUI %q)", got.DeviceID, got.OUI)
	}
	if !reflect.DeepEqual(got.LastEvents, []cwmp.Event{{Code: "2 PERIODIC"}}) {
		t.Fatalf("events = %+v", got.LastEvents)
	}

	// A new software version and a reboot; event codes match by number.
	d3 := inform(devID("00AABB", "Router", "S1"), later.Add(time.Hour), " 1 BOOT", "M Reboot")
	d3.Fields.SoftwareVersion = store.Ptr("2.0.0")
	applyID(t, s, tenant, id, d3, 2)
	got = get(t, s, tenant, id, store.ReadOptions{})
	if got.SoftwareVersion != "2.0.0" || !got.LastBoot.Equal(ms(later.Add(time.Hour))) || got.FencingToken != 2 {
		t.Fatalf("after reboot: %+v", got)
	}

	// A later write of the session, without Inform or DeviceId, leaves
	// Inform facts and identity alone.
	applyID(t, s, tenant, id, store.Diff{Time: later.Add(2 * time.Hour),
		Params: []store.ParamUpdate{store.SetValue("Device.X", "1", "xsd:int")}}, 2)
	got2 := get(t, s, tenant, id, store.ReadOptions{})
	if !got2.LastInform.Equal(got.LastInform) || !reflect.DeepEqual(got2.LastEvents, got.LastEvents) ||
		got2.DeviceID != got.DeviceID || !got2.Updated.Equal(ms(later.Add(2*time.Hour))) {
		t.Fatalf("diff without Inform changed Inform facts: %+v", got2)
	}
}

func testCredentials(t *testing.T, s store.Store) {
	tenant := newTenant()
	id := apply(t, s, tenant, inform(devID("00AABB", "", "S1"), base), 1)
	got := get(t, s, tenant, id, store.ReadOptions{})
	if got.ConnectionRequestCredentials != nil || got.CPECredentials != nil {
		t.Fatalf("new device has credentials: %+v %+v", got.ConnectionRequestCredentials, got.CPECredentials)
	}
	d := store.Diff{Time: base,
		ConnectionRequestCredentials: &store.Credentials{Username: "cpe", Password: "sec ret"},
		CPECredentials:               &store.Credentials{Username: "acs-user", Password: ""},
	}
	applyID(t, s, tenant, id, d, 1)
	// The next Inform carries only the URL; credentials stay.
	d2 := inform(devID("00AABB", "", "S1"), base.Add(time.Minute))
	d2.Fields.ConnectionRequestURL = store.Ptr("http://[2001:db8::1]:30005/")
	applyID(t, s, tenant, id, d2, 1)
	got = get(t, s, tenant, id, store.ReadOptions{})
	if got.ConnectionRequest.URL != "http://[2001:db8::1]:30005/" ||
		!reflect.DeepEqual(got.ConnectionRequestCredentials, &store.Credentials{Username: "cpe", Password: "sec ret"}) ||
		!reflect.DeepEqual(got.CPECredentials, &store.Credentials{Username: "acs-user"}) {
		t.Fatalf("connection request %+v, credentials %+v, CPE credentials %+v",
			got.ConnectionRequest, got.ConnectionRequestCredentials, got.CPECredentials)
	}
}

func testTakeover(t *testing.T, s store.Store) {
	tenant := newTenant()
	d := inform(devID("00AABB", "R", "S1"), base)
	d.SessionTakeover, d.SessionID = true, "s1"
	id := apply(t, s, tenant, d, 1)
	// The same session's writes (retries or later batches) count once.
	applyID(t, s, tenant, id, d, 1)
	applyID(t, s, tenant, id, store.Diff{Time: base.Add(time.Second), SessionID: "s1", SessionTakeover: true}, 1)
	got := get(t, s, tenant, id, store.ReadOptions{})
	if got.TakeoverCount != 1 || !got.LastTakeover.Equal(ms(base)) {
		t.Fatalf("after one takeover: count %d at %v", got.TakeoverCount, got.LastTakeover)
	}
	// Sessions without takeover do not count; new takeovers do.
	applyID(t, s, tenant, id, store.Diff{Time: base.Add(time.Minute), SessionID: "s2"}, 2)
	applyID(t, s, tenant, id, store.Diff{Time: base.Add(2 * time.Minute), SessionID: "s3", SessionTakeover: true}, 3)
	applyID(t, s, tenant, id, store.Diff{Time: base.Add(3 * time.Minute), SessionID: "s4", SessionTakeover: true, AddTags: []string{"x"}, RemoveTags: []string{"y"}}, 4)
	got = get(t, s, tenant, id, store.ReadOptions{})
	if got.TakeoverCount != 3 || !got.LastTakeover.Equal(ms(base.Add(3*time.Minute))) || !slices.Equal(got.Tags, []string{"x"}) {
		t.Fatalf("after three takeovers: count %d at %v, tags %q", got.TakeoverCount, got.LastTakeover, got.Tags)
	}
	// A stale session's takeover is not counted either.
	if _, err := s.ApplySessionDiff(ctxT(t), tenant, id, store.Diff{Time: base, SessionID: "s0", SessionTakeover: true}, 1); !errors.Is(err, store.ErrStaleFencingToken) {
		t.Fatalf("stale takeover: %v", err)
	}
	if n := get(t, s, tenant, id, store.ReadOptions{}).TakeoverCount; n != 3 {
		t.Fatalf("stale takeover counted: %d", n)
	}
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	if _, err := s.Get(ctx, tenant, "NOPE-1", store.ReadOptions{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get missing: %v, want ErrNotFound", err)
	}
	_, err := s.ApplySessionDiff(ctx, tenant, "NOPE-1", store.Diff{Time: base, Inform: &store.Inform{},
		Params: []store.ParamUpdate{store.SetValue("Device.X", "1", "")}}, 1)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("diff without DeviceId on a missing device: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, tenant, "NOPE-1", store.ReadOptions{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a failed diff created the device: %v", err)
	}
	if err := s.AddTags(ctx, tenant, "NOPE-1", "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("AddTags missing: %v", err)
	}
	if err := s.RemoveTags(ctx, tenant, "NOPE-1", "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RemoveTags missing: %v", err)
	}
	if err := s.Delete(ctx, tenant, "NOPE-1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete missing: %v", err)
	}
	p, err := s.List(ctx, store.Filter{Tenant: tenant}, store.PageRequest{}, store.ReadOptions{})
	if err != nil || len(p.Devices) != 0 || p.Next != "" {
		t.Fatalf("List of an empty tenant = %+v, %v", p, err)
	}
}

func testDelete(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	d := inform(devID("00AABB", "R", "S1"), base)
	d.Params = []store.ParamUpdate{store.SetValue("Device.A", "1", "")}
	d.AddTags = []string{"x"}
	id := apply(t, s, tenant, d, 7)
	other := apply(t, s, tenant, inform(devID("00AABB", "R", "S2"), base), 1)
	if err := s.Delete(ctx, tenant, id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctx, tenant, id, store.ReadOptions{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if ids := listAll(t, s, store.Filter{Tenant: tenant, Tags: []string{"x"}}, 10); len(ids) != 0 {
		t.Fatalf("deleted device still listed by tag: %v", ids)
	}
	get(t, s, tenant, other, store.ReadOptions{})
	// Re-created, it starts afresh: no parameters, no tags, fencing reset.
	id2 := apply(t, s, tenant, inform(devID("00AABB", "R", "S1"), base.Add(time.Hour)), 1)
	got := get(t, s, tenant, id2, allParams)
	if len(got.Params) != 0 || len(got.Tags) != 0 || got.FencingToken != 1 || !got.Registered.Equal(ms(base.Add(time.Hour))) {
		t.Fatalf("re-created device kept old state: %+v", got)
	}
}

func testInvalidArguments(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	good := inform(devID("00AABB", "R", "S1"), base)
	id := apply(t, s, tenant, good, 1)
	long := strings.Repeat("x", store.MaxPathLength+1)
	deep := strings.Repeat("A.", store.MaxPathSegments) + "B"
	huge := strings.Repeat("x", store.MaxValueLength+1)

	diffs := map[string]struct {
		tenant, id string
		d          store.Diff
		token      uint64
	}{
		"empty tenant":      {"", id, good, 1},
		"bad tenant":        {"a:b", id, good, 1},
		"empty id":          {tenant, "", good, 1},
		"id not from DevId": {tenant, "00AABB-R-OTHER", good, 1},
		"bad delete entry":  {tenant, id, store.Diff{Time: base, DeletePaths: []string{"Device..X"}}, 1},
		"zero time":         {tenant, id, store.Diff{Params: []store.ParamUpdate{store.SetValue("Device.A", "", "")}}, 1},
		"token too large":   {tenant, id, good, math.MaxInt64 + 1},
		"empty path":        {tenant, id, store.Diff{Time: base, Params: []store.ParamUpdate{store.SetValue("", "", "")}}, 1},
		"empty segment":     {tenant, id, store.Diff{Time: base, Params: []store.ParamUpdate{store.SetValue("Device..A", "", "")}}, 1},
		"leading dot":       {tenant, id, store.Diff{Time: base, Params: []store.ParamUpdate{store.SetValue(".Device", "", "")}}, 1},
		"long path":         {tenant, id, store.Diff{Time: base, Params: []store.ParamUpdate{store.SetValue(long, "", "")}}, 1},
		"deep path":         {tenant, id, store.Diff{Time: base, Params: []store.ParamUpdate{store.SetValue(deep, "", "")}}, 1},
		"NUL in path":       {tenant, id, store.Diff{Time: base, Params: []store.ParamUpdate{store.SetValue("Device.\x00", "", "")}}, 1},
		"bad UTF-8 value":   {tenant, id, store.Diff{Time: base, Params: []store.ParamUpdate{store.SetValue("Device.A", "\xff", "")}}, 1},
		"long value":        {tenant, id, store.Diff{Time: base, Params: []store.ParamUpdate{store.SetValue("Device.A", huge, "")}}, 1},
		"long type":         {tenant, id, store.Diff{Time: base, Params: []store.ParamUpdate{store.SetValue("Device.A", "1", long)}}, 1},
		"long delete path":  {tenant, id, store.Diff{Time: base, DeletePaths: []string{long}}, 1},
		"long password":     {tenant, id, store.Diff{Time: base, CPECredentials: &store.Credentials{Username: "u", Password: huge}}, 1},
		"object value":      {tenant, id, store.Diff{Time: base, Params: []store.ParamUpdate{store.SetValue("Device.A.", "1", "")}}, 1},
		"bad writable":      {tenant, id, store.Diff{Time: base, Params: []store.ParamUpdate{{Path: "Device.A", Writable: 7}}}, 1},
		"bad delete path":   {tenant, id, store.Diff{Time: base, DeletePaths: []string{"Device..A."}}, 1},
		"bad field text":    {tenant, id, store.Diff{Time: base, Fields: store.Fields{JabberID: store.Ptr("a\x00b")}}, 1},
		"empty tag":         {tenant, id, store.Diff{Time: base, AddTags: []string{""}}, 1},
		"spaced tag":        {tenant, id, store.Diff{Time: base, AddTags: []string{"a b"}}, 1},
		"unicode tag":       {tenant, id, store.Diff{Time: base, AddTags: []string{"ü"}}, 1},
		"tag add+remove":    {tenant, id, store.Diff{Time: base, AddTags: []string{"a"}, RemoveTags: []string{"a"}}, 1},
	}
	for name, c := range diffs {
		if _, err := s.ApplySessionDiff(ctx, c.tenant, c.id, c.d, c.token); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("%s: ApplySessionDiff = %v, want ErrInvalidArgument", name, err)
		}
	}
	if err := s.AddTags(ctx, tenant, id, "ok", "bad\ttag"); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("AddTags with a control character: %v", err)
	}
	if _, err := s.Get(ctx, "", id, store.ReadOptions{}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("Get with empty tenant: %v", err)
	}
	badFilters := map[string]store.Filter{
		"no tenant":     {},
		"bad op":        {Tenant: tenant, Params: []store.ParamCondition{{Path: "Device.A", Op: 0}}},
		"bad path":      {Tenant: tenant, Params: []store.ParamCondition{{Path: "Device..A", Op: store.OpEq}}},
		"object eq":     {Tenant: tenant, Params: []store.ParamCondition{{Path: "Device.A.", Op: store.OpEq}}},
		"bad tag":       {Tenant: tenant, Tags: []string{""}},
		"bad value UTF": {Tenant: tenant, Params: []store.ParamCondition{{Path: "Device.A", Op: store.OpEq, Value: "\xfe"}}},
		"bad id":        {Tenant: tenant, IDs: []string{""}},
		"too many ids":  {Tenant: tenant, IDs: make([]string, store.MaxFilterIDs+1)},
		"too many conditions": {Tenant: tenant, Params: slices.Repeat([]store.ParamCondition{{Path: "Device.A", Op: store.OpExists}},
			store.MaxFilterConditions+1)},
	}
	for name, f := range badFilters {
		if _, err := s.List(ctx, f, store.PageRequest{}, store.ReadOptions{}); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("%s: List = %v, want ErrInvalidArgument", name, err)
		}
	}
	for _, c := range []string{"garbage", "d1.!!!", "d1."} {
		if _, err := s.List(ctx, store.Filter{Tenant: tenant}, store.PageRequest{Cursor: c}, store.ReadOptions{}); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("cursor %q: List = %v, want ErrInvalidArgument", c, err)
		}
	}
	// Nothing above wrote anything.
	got := get(t, s, tenant, id, allParams)
	if len(got.Params) != 0 || len(got.Tags) != 0 || got.FencingToken != 1 {
		t.Fatalf("rejected requests wrote: %+v", got)
	}
}

func testSpecialIDs(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	cases := []cwmp.DeviceID{
		devID("00AABB", "Prod-Class", "SN-1"),
		devID("00AABB", "", "SN:2:3"),
		devID("00aabb", "", ""),
		devID("00AABB", "P C", "S N 100%"),
		devID("00AABB", "Router", "Zürich-€-日本"),
		devID("FFFFFF", "a/b?c#d&e=f", "x.y_z~"),
		devID("00AABB", "-", "-"),
		devID("00AABB", "%41", "%"),
	}
	seen := map[string]bool{}
	for i, d := range cases {
		id := store.MakeID(d)
		if seen[id] {
			t.Fatalf("two DeviceIds map to %q", id)
		}
		seen[id] = true
		for _, c := range id {
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '%') {
				t.Fatalf("id %q has unsafe character %q", id, c)
			}
		}
		oui, pc, sn, err := store.ParseID(id)
		if err != nil || oui != store.NormalizeOUI(d.OUI) || pc != d.ProductClass || sn != d.SerialNumber {
			t.Fatalf("ParseID(%q) = %q %q %q %v", id, oui, pc, sn, err)
		}
		diff := inform(d, base)
		diff.Params = []store.ParamUpdate{store.SetValue("Device.N", string(rune('a'+i)), "")}
		apply(t, s, tenant, diff, 1)
		got := get(t, s, tenant, id, allParams)
		if got.DeviceID != d || got.Params["Device.N"].Value != string(rune('a'+i)) {
			t.Fatalf("device %q read back as %+v", id, got)
		}
	}
	ids := listAll(t, s, store.Filter{Tenant: tenant}, 3)
	if len(ids) != len(cases) {
		t.Fatalf("listed %d devices, want %d", len(ids), len(cases))
	}
	for i := 1; i < len(ids); i++ {
		if ids[i-1] >= ids[i] {
			t.Fatalf("ids not in byte order: %q before %q", ids[i-1], ids[i])
		}
	}
	emptyPC := listAll(t, s, store.Filter{Tenant: tenant, ProductClass: store.Ptr("")}, 100)
	if len(emptyPC) != 2 {
		t.Fatalf("filter on empty product class = %v", emptyPC)
	}
	emptySN := listAll(t, s, store.Filter{Tenant: tenant, SerialNumber: store.Ptr("")}, 100)
	if len(emptySN) != 1 || emptySN[0] != "00AABB-" {
		t.Fatalf("filter on empty serial = %v", emptySN)
	}
	unicodeSN := listAll(t, s, store.Filter{Tenant: tenant, SerialNumber: store.Ptr("Zürich-€-日本")}, 100)
	if len(unicodeSN) != 1 {
		t.Fatalf("filter on unicode serial = %v", unicodeSN)
	}
	// An id that MakeID never produces is still a valid key for operator
	// tools; Get on it is a plain miss.
	if _, err := s.Get(ctx, tenant, "weird id: with spaces/ü", store.ReadOptions{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of a free-form id: %v", err)
	}
}
