package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var update = flag.Bool("update", false, "rewrite the golden files under cmd/fleetctl/testdata/")

type cliResult struct {
	code           int
	stdout, stderr string
}

// fleetctl runs the real command tree in-process.
func fleetctl(t *testing.T, args ...string) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr}
	code := run(context.Background(), Root(), args, env)
	return cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// cleanEnv keeps the caller's FLEETACS_ADDR and FLEETACS_TOKEN out of a
// test.
func cleanEnv(t *testing.T) {
	t.Setenv(envAddr, "")
	t.Setenv(envToken, "")
}

func wantOK(t *testing.T, r cliResult) {
	t.Helper()
	if r.code != ExitOK || r.stderr != "" {
		t.Fatalf("exit status %d, stderr %q", r.code, r.stderr)
	}
}

// wantFail checks a failure: status 1, nothing on stdout, exactly the one
// line want on stderr.
func wantFail(t *testing.T, r cliResult, want string) {
	t.Helper()
	if r.code != ExitFailure {
		t.Errorf("exit status %d, want 1 (stderr %q)", r.code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing", r.stdout)
	}
	if r.stderr != want+"\n" {
		t.Errorf("stderr\n got %q\nwant %q", r.stderr, want+"\n")
	}
}

// wantUsage checks a usage error: status 2, nothing on stdout, the message
// line and where the command's usage is.
func wantUsage(t *testing.T, r cliResult, wantLine, wantUsageOf string) {
	t.Helper()
	if r.code != ExitUsage {
		t.Errorf("exit status %d, want 2 (stderr %q)", r.code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing", r.stdout)
	}
	first, rest, _ := strings.Cut(r.stderr, "\n")
	if first != wantLine {
		t.Errorf("first line of stderr\n got %q\nwant %q", first, wantLine)
	}
	if want := "Run '" + wantUsageOf + " -help' for usage.\n"; rest != want {
		t.Errorf("after the message %q, want %q", rest, want)
	}
}

func sp(s string) *string { return &s }

// fixtures: five devices of tenant "default", sorted by id, and one of
// another tenant. The first has a parameter tree; the third has a serial
// number that would put a terminal escape on the screen if printed raw.
func fixtures() []*inventoryv1.Device {
	return []*inventoryv1.Device{
		{
			Tenant: "default", Id: "00D09E-HGW%2D2000-ACME0001",
			DeviceId:         &inventoryv1.DeviceId{Manufacturer: "Acme Networks", Oui: "00D09E", ProductClass: "HGW-2000", SerialNumber: "ACME0001"},
			DataModelRoot:    "Device.",
			SoftwareVersion:  "2.1.7",
			HardwareVersion:  "rev B",
			RemoteIp:         "192.0.2.10",
			Tags:             []string{"lab", "north"},
			RegisteredTime:   timestamppb.New(ts("2024-04-01T08:00:00Z")),
			LastInformTime:   timestamppb.New(ts("2024-05-01T12:34:56.789+02:00")),
			LastBootTime:     timestamppb.New(ts("2024-05-01T10:00:00Z")),
			LastInformEvents: []*inventoryv1.InformEvent{{Code: "1 BOOT"}, {Code: "M Reboot", CommandKey: "reboot-42"}},
			ConnectionRequest: &inventoryv1.ConnectionRequest{
				Url: "http://192.0.2.10:7547/cr", Username: "acs", PasswordSet: true,
			},
			SessionTakeoverCount:    2,
			LastSessionTakeoverTime: timestamppb.New(ts("2024-04-30T23:00:00Z")),
			UpdateTime:              timestamppb.New(ts("2024-05-01T10:34:57Z")),
			Parameters: []*inventoryv1.Parameter{
				{Path: "Device."},
				{Path: "Device.DeviceInfo.Description", Value: sp(" padded "), Type: "xsd:string"},
				{Path: "Device.DeviceInfo.SoftwareVersion", Value: sp("2.1.7"), Type: "xsd:string"},
				{Path: "Device.DeviceInfo.UpTime", Value: sp("3600"), Type: "xsd:unsignedInt"},
				{Path: "Device.WiFi.SSID.1."},
				{Path: "Device.WiFi.SSID.1.Enable"},
				{Path: "Device.WiFi.SSID.1.SSID", Value: sp(""), Type: "xsd:string"},
				{Path: "Device.WiFi.SSID.1.X_ACME_Note", Value: sp("two\nlines"), Type: "string"},
			},
		},
		{
			Tenant: "default", Id: "00D09E-HGW%2D2000-ACME0002",
			DeviceId:        &inventoryv1.DeviceId{Manufacturer: "Acme Networks", Oui: "00D09E", ProductClass: "HGW-2000", SerialNumber: "ACME0002"},
			SoftwareVersion: "2.1.8",
		},
		{
			Tenant: "default", Id: "4C5E0C-SN%1B%5B31m9",
			DeviceId:        &inventoryv1.DeviceId{Manufacturer: "MikroTik", Oui: "4C5E0C", SerialNumber: "SN\x1b[31m9"},
			SoftwareVersion: "7.14",
			RemoteIp:        "2001:db8::7",
			LastInformTime:  timestamppb.New(ts("2024-05-02T00:00:00Z")),
			Tags:            []string{"core"},
		},
		{Tenant: "default", Id: "A0B1C2-ONT-0004", DeviceId: &inventoryv1.DeviceId{Oui: "A0B1C2", ProductClass: "ONT", SerialNumber: "0004"}},
		{Tenant: "default", Id: "A0B1C2-ONT-0005", DeviceId: &inventoryv1.DeviceId{Oui: "A0B1C2", ProductClass: "ONT", SerialNumber: "0005"}},
		{Tenant: "other", Id: "A0B1C2-ONT-0006", DeviceId: &inventoryv1.DeviceId{Oui: "A0B1C2", ProductClass: "ONT", SerialNumber: "0006"}},
	}
}

func ids(devs []*inventoryv1.Device, tenant string) []string {
	var out []string
	for _, d := range devs {
		if d.GetTenant() == tenant {
			out = append(out, d.GetId())
		}
	}
	return out
}

func TestDevicesListTable(t *testing.T) {
	cleanEnv(t)
	srv := &fakeInventory{devices: fixtures()}
	addr := serve(t, srv)
	r := fleetctl(t, "devices", "list", "-addr", addr)
	wantOK(t, r)
	want := "" +
		"ID                          OUI     PRODUCT CLASS  SERIAL         SOFTWARE  LAST INFORM           IP           TAGS\n" +
		"00D09E-HGW%2D2000-ACME0001  00D09E  HGW-2000       ACME0001       2.1.7     2024-05-01T10:34:56Z  192.0.2.10   lab,north\n" +
		"00D09E-HGW%2D2000-ACME0002  00D09E  HGW-2000       ACME0002       2.1.8     -                     -            -\n" +
		"4C5E0C-SN%1B%5B31m9         4C5E0C  -              \"SN\\x1b[31m9\"  7.14      2024-05-02T00:00:00Z  2001:db8::7  core\n" +
		"A0B1C2-ONT-0004             A0B1C2  ONT            0004           -         -                     -            -\n" +
		"A0B1C2-ONT-0005             A0B1C2  ONT            0005           -         -                     -            -\n"
	if r.stdout != want {
		t.Errorf("table\n got:\n%s\nwant:\n%s", r.stdout, want)
	}
	reqs := srv.listRequests(t)
	if len(reqs) != 1 {
		t.Fatalf("%d calls, want 1", len(reqs))
	}
	// No filter flags: no filter, the default tenant, the server's page size.
	if want := (&inventoryv1.ListDevicesRequest{Tenant: "default"}); !proto.Equal(reqs[0], want) {
		t.Errorf("request %v, want %v", reqs[0], want)
	}
}

func TestDevicesListEmpty(t *testing.T) {
	cleanEnv(t)
	addr := serve(t, &fakeInventory{})
	for format, want := range map[string]string{
		"table": "ID  OUI  PRODUCT CLASS  SERIAL  SOFTWARE  LAST INFORM  IP  TAGS\n",
		"json":  "[]\n",
		"ids":   "",
	} {
		r := fleetctl(t, "devices", "list", "-addr", addr, "-o", format)
		wantOK(t, r)
		if r.stdout != want {
			t.Errorf("-o %s: got %q, want %q", format, r.stdout, want)
		}
	}
}

// TestDevicesListPaging lists five devices two at a time: three calls,
// each continuing from the previous page's token with the same page size.
func TestDevicesListPaging(t *testing.T) {
	cleanEnv(t)
	srv := &fakeInventory{devices: fixtures()}
	addr := serve(t, srv)
	r := fleetctl(t, "devices", "list", "-addr", addr, "-page-size", "2", "-o", "ids")
	wantOK(t, r)
	if want := strings.Join(ids(fixtures(), "default"), "\n") + "\n"; r.stdout != want {
		t.Errorf("ids\n got %q\nwant %q", r.stdout, want)
	}
	reqs := srv.listRequests(t)
	var tokens []string
	for _, req := range reqs {
		tokens = append(tokens, req.GetPageToken())
		if req.GetPageSize() != 2 {
			t.Errorf("page size %d, want 2 on every page", req.GetPageSize())
		}
	}
	if want := []string{"", "2/2", "4/2"}; !slices.Equal(tokens, want) {
		t.Errorf("page tokens %q, want %q", tokens, want)
	}
	for i, c := range srv.seen() {
		if !c.hasDeadline {
			t.Errorf("call %d had no deadline", i)
		}
	}
}

// TestDevicesListJSON checks that -o json is one array across pages, in
// protojson's names, and that it parses back into the very devices.
func TestDevicesListJSON(t *testing.T) {
	cleanEnv(t)
	srv := &fakeInventory{devices: fixtures()}
	addr := serve(t, srv)
	r := fleetctl(t, "devices", "list", "-addr", addr, "-page-size", "2", "-o", "json")
	wantOK(t, r)
	if n := len(srv.seen()); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatalf("output is not one JSON array: %v\n%s", err, r.stdout)
	}
	var want []*inventoryv1.Device
	for _, d := range fixtures() {
		if d.GetTenant() == "default" {
			d.Parameters = nil // a listing asks for none
			want = append(want, d)
		}
	}
	if len(raw) != len(want) {
		t.Fatalf("%d devices, want %d", len(raw), len(want))
	}
	for i, js := range raw {
		got := &inventoryv1.Device{}
		if err := protojson.Unmarshal(js, got); err != nil {
			t.Fatalf("device %d: %v", i, err)
		}
		if !proto.Equal(got, want[i]) {
			t.Errorf("device %d\n got %v\nwant %v", i, got, want[i])
		}
	}
	// The API's JSON names, and the indentation scripts and diffs rely on.
	for _, s := range []string{
		"[\n  {\n    \"tenant\": \"default\",\n    \"id\": \"00D09E-HGW%2D2000-ACME0001\",\n    \"deviceId\": {\n",
		`"lastInformTime": "2024-05-01T10:34:56.789Z"`,
		`"productClass": "HGW-2000"`,
		`"sessionTakeoverCount": "2"`,
		"\n  },\n  {\n",
	} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("output lacks %q:\n%s", s, r.stdout)
		}
	}
	if !strings.HasSuffix(r.stdout, "\n  }\n]\n") {
		t.Errorf("output does not end the array: %q", r.stdout[max(0, len(r.stdout)-20):])
	}
}

func TestDevicesListLimit(t *testing.T) {
	cleanEnv(t)
	for _, tc := range []struct {
		name      string
		args      []string
		wantIDs   int
		wantSizes []int32
	}{
		// The limit cuts the second page short and stops the listing.
		{"limit across pages", []string{"-limit", "3", "-page-size", "2"}, 3, []int32{2, 2}},
		// A small limit sets the page size, once.
		{"limit sets page size", []string{"-limit", "2"}, 2, []int32{2}},
		{"limit above the fleet", []string{"-limit", "50"}, 5, []int32{50}},
		{"no limit", nil, 5, []int32{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &fakeInventory{devices: fixtures()}
			addr := serve(t, srv)
			r := fleetctl(t, append([]string{"devices", "list", "-addr", addr, "-o", "ids"}, tc.args...)...)
			wantOK(t, r)
			if got := strings.Count(r.stdout, "\n"); got != tc.wantIDs {
				t.Errorf("%d ids, want %d:\n%s", got, tc.wantIDs, r.stdout)
			}
			var sizes []int32
			for _, req := range srv.listRequests(t) {
				sizes = append(sizes, req.GetPageSize())
			}
			if !slices.Equal(sizes, tc.wantSizes) {
				t.Errorf("page sizes %v, want %v", sizes, tc.wantSizes)
			}
		})
	}
}

// TestDevicesListFilters checks that each filter flag reaches the request
// the server sees.
func TestDevicesListFilters(t *testing.T) {
	cleanEnv(t)
	srv := &fakeInventory{}
	addr := serve(t, srv)
	before := time.Now()
	r := fleetctl(t, "devices", "list", "-addr", addr,
		"-tenant", "isp-north",
		"-oui", "00d09e",
		"-product-class", "HGW-2000",
		"-serial", "ACME0001",
		"-manufacturer", "Acme Networks",
		"-software-version", "2.1.7",
		"-tag", "lab", "-tag", "north",
		"-informed-after", "2024-05-01T12:00:00+02:00",
		"-informed-before", "90m",
		"-where", "Device.DeviceInfo.SoftwareVersion eq 1.2.3",
		"-where", "  Device.DeviceInfo.UpTime   GT 3600 ",
		"-where", "Device.DeviceInfo.ProvisioningCode ne two words",
		"-where", `Device.DeviceInfo.Description eq " padded "`,
		"-where", `Device.WiFi.SSID.1.SSID eq ""`,
		"-where", "Device.Hosts.Host.1. exists",
		"-where", "Device.X_ACME_Debug. not_exists",
		"-where", "Device.DeviceInfo.ModelName prefix HGW",
		"-where", "Device.DeviceInfo.FirstUseDate lt 2024-01-01T00:00:00Z",
	)
	after := time.Now()
	wantOK(t, r)
	reqs := srv.listRequests(t)
	if len(reqs) != 1 {
		t.Fatalf("%d calls, want 1", len(reqs))
	}
	got := reqs[0]

	// "90m" is 90 minutes before the command ran.
	b := got.GetFilter().GetLastInformBefore().AsTime()
	if lo, hi := before.Add(-90*time.Minute), after.Add(-90*time.Minute); b.Before(lo) || b.After(hi) {
		t.Errorf("last_inform_before %s, want between %s and %s", b, lo, hi)
	}
	got.Filter.LastInformBefore = nil

	cond := func(path string, op inventoryv1.ConditionOperator, v string) *inventoryv1.ParameterCondition {
		return &inventoryv1.ParameterCondition{Path: path, Operator: op, Value: v}
	}
	want := &inventoryv1.ListDevicesRequest{
		Tenant: "isp-north",
		Filter: &inventoryv1.DeviceFilter{
			Manufacturer:    "Acme Networks",
			Oui:             "00d09e",
			ProductClass:    "HGW-2000",
			SerialNumber:    "ACME0001",
			SoftwareVersion: "2.1.7",
			Tags:            []string{"lab", "north"},
			LastInformAfter: timestamppb.New(ts("2024-05-01T10:00:00Z")),
			ParameterConditions: []*inventoryv1.ParameterCondition{
				cond("Device.DeviceInfo.SoftwareVersion", inventoryv1.ConditionOperator_CONDITION_OPERATOR_EQ, "1.2.3"),
				cond("Device.DeviceInfo.UpTime", inventoryv1.ConditionOperator_CONDITION_OPERATOR_GT, "3600"),
				cond("Device.DeviceInfo.ProvisioningCode", inventoryv1.ConditionOperator_CONDITION_OPERATOR_NE, "two words"),
				cond("Device.DeviceInfo.Description", inventoryv1.ConditionOperator_CONDITION_OPERATOR_EQ, " padded "),
				cond("Device.WiFi.SSID.1.SSID", inventoryv1.ConditionOperator_CONDITION_OPERATOR_EQ, ""),
				cond("Device.Hosts.Host.1.", inventoryv1.ConditionOperator_CONDITION_OPERATOR_EXISTS, ""),
				cond("Device.X_ACME_Debug.", inventoryv1.ConditionOperator_CONDITION_OPERATOR_NOT_EXISTS, ""),
				cond("Device.DeviceInfo.ModelName", inventoryv1.ConditionOperator_CONDITION_OPERATOR_PREFIX, "HGW"),
				cond("Device.DeviceInfo.FirstUseDate", inventoryv1.ConditionOperator_CONDITION_OPERATOR_LT, "2024-01-01T00:00:00Z"),
			},
		},
	}
	if !proto.Equal(got, want) {
		t.Errorf("request\n got %v\nwant %v", got, want)
	}
}

// TestDevicesListInformedDays checks the "d" suffix and that an RFC 3339
// -informed-before passes through as given.
func TestDevicesListInformedDays(t *testing.T) {
	cleanEnv(t)
	srv := &fakeInventory{}
	addr := serve(t, srv)
	before := time.Now()
	r := fleetctl(t, "devices", "list", "-addr", addr, "-informed-after", "7d", "-informed-before", "2099-01-01T00:00:00.5Z")
	after := time.Now()
	wantOK(t, r)
	f := srv.listRequests(t)[0].GetFilter()
	a := f.GetLastInformAfter().AsTime()
	if lo, hi := before.Add(-7*24*time.Hour), after.Add(-7*24*time.Hour); a.Before(lo) || a.After(hi) {
		t.Errorf("last_inform_after %s, want between %s and %s", a, lo, hi)
	}
	if got, want := f.GetLastInformBefore().AsTime(), ts("2099-01-01T00:00:00.5Z"); !got.Equal(want) {
		t.Errorf("last_inform_before %s, want %s", got, want)
	}
}

// TestDevicesListUsageErrors checks that bad flags are usage errors (status
// 2, the message, then the usage) and never reach the server.
func TestDevicesListUsageErrors(t *testing.T) {
	cleanEnv(t)
	srv := &fakeInventory{}
	addr := serve(t, srv)
	const ops = "want eq, ne, lt, gt, prefix, exists or not_exists"
	seventeen := []string{}
	for range maxConditions + 1 {
		seventeen = append(seventeen, "-where", "Device.A exists")
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"where empty", []string{"-where", "  "},
			`fleetctl: invalid value "  " for flag -where: want 'PATH OP VALUE', e.g. 'Device.DeviceInfo.SoftwareVersion eq 1.2.3'`},
		{"where no operator", []string{"-where", "Device.DeviceInfo.UpTime"},
			`fleetctl: invalid value "Device.DeviceInfo.UpTime" for flag -where: no operator after Device.DeviceInfo.UpTime: want 'PATH OP VALUE' with OP one of eq, ne, lt, gt, prefix, exists or not_exists`},
		{"where unknown operator", []string{"-where", "Device.DeviceInfo.UpTime >= 5"},
			`fleetctl: invalid value "Device.DeviceInfo.UpTime >= 5" for flag -where: unknown operator ">=": ` + ops},
		{"where missing value", []string{"-where", "Device.DeviceInfo.UpTime gt"},
			`fleetctl: invalid value "Device.DeviceInfo.UpTime gt" for flag -where: operator gt needs a VALUE (write "" for the empty string)`},
		{"where value on exists", []string{"-where", "Device.WiFi. exists yes"},
			`fleetctl: invalid value "Device.WiFi. exists yes" for flag -where: operator exists takes no VALUE, got "yes"`},
		{"where bad quoting", []string{"-where", `Device.X eq "open`},
			`fleetctl: invalid value "Device.X eq \"open" for flag -where: VALUE "open starts with a quote but is not a quoted string`},
		{"where too many", seventeen,
			`fleetctl: invalid value "Device.A exists" for flag -where: at most 16 -where conditions`},
		{"informed-after garbage", []string{"-informed-after", "yesterday"},
			`fleetctl: invalid value "yesterday" for flag -informed-after: want an RFC 3339 time (2024-05-01T12:00:00Z) or a duration ago (90m, 24h, 7d)`},
		{"informed-after negative", []string{"-informed-after", "-1h"},
			`fleetctl: invalid value "-1h" for flag -informed-after: want an RFC 3339 time (2024-05-01T12:00:00Z) or a duration ago (90m, 24h, 7d)`},
		{"empty window", []string{"-informed-after", "1h", "-informed-before", "2h"},
			`fleetctl: fleetctl devices list: -informed-after ... is not before -informed-before ...: no device can match`},
		{"empty tag", []string{"-tag", ""}, `fleetctl: invalid value "" for flag -tag: empty value`},
		{"bad output", []string{"-o", "yaml"}, `fleetctl: fleetctl devices list: unknown output format "yaml": want table, json or ids`},
		{"negative limit", []string{"-limit", "-1"}, `fleetctl: fleetctl devices list: -limit must not be negative, got -1`},
		{"page size too big", []string{"-page-size", "1001"}, `fleetctl: fleetctl devices list: -page-size must be 1 to 1000, got 1001`},
		{"argument", []string{"lab"}, `fleetctl: fleetctl devices list: unexpected argument "lab"`},
		{"flag after argument", []string{"lab", "-bogus"}, `fleetctl: fleetctl devices list: flag provided but not defined: -bogus`},
		{"timeout", []string{"-timeout", "0s"}, `fleetctl: fleetctl devices list: -timeout must be positive, got 0s`},
		{"ca without tls", []string{"-tls=false", "-ca-file", "ca.pem"}, `fleetctl: fleetctl devices list: -ca-file and -cert-file need TLS, but -tls=false was given`},
		{"cert without key", []string{"-cert-file", "c.pem"}, `fleetctl: fleetctl devices list: -cert-file and -key-file go together`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := fleetctl(t, append([]string{"devices", "list", "-addr", addr}, tc.args...)...)
			if pre, post, ok := strings.Cut(tc.want, "..."); ok {
				// The window's instants depend on the clock: check the
				// words around them.
				first, _, _ := strings.Cut(r.stderr, "\n")
				_, post, _ = strings.Cut(post, "...")
				if strings.HasPrefix(first, pre) && strings.HasSuffix(first, post) {
					tc.want = first
				}
			}
			wantUsage(t, r, tc.want, "fleetctl devices list")
		})
	}
	if n := len(srv.seen()); n != 0 {
		t.Errorf("usage errors made %d calls", n)
	}
}

func TestParseCondition(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want *inventoryv1.ParameterCondition
	}{
		{"A eq b", &inventoryv1.ParameterCondition{Path: "A", Operator: inventoryv1.ConditionOperator_CONDITION_OPERATOR_EQ, Value: "b"}},
		{"A\tPREFIX\t x y \t", &inventoryv1.ParameterCondition{Path: "A", Operator: inventoryv1.ConditionOperator_CONDITION_OPERATOR_PREFIX, Value: "x y"}},
		{`A ne "tab\there"`, &inventoryv1.ParameterCondition{Path: "A", Operator: inventoryv1.ConditionOperator_CONDITION_OPERATOR_NE, Value: "tab\there"}},
		{"A.B. Not_Exists", &inventoryv1.ParameterCondition{Path: "A.B.", Operator: inventoryv1.ConditionOperator_CONDITION_OPERATOR_NOT_EXISTS}},
	} {
		got, err := parseCondition(tc.in)
		if err != nil || !proto.Equal(got, tc.want) {
			t.Errorf("parseCondition(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestDevicesGetText(t *testing.T) {
	cleanEnv(t)
	srv := &fakeInventory{devices: fixtures()}
	addr := serve(t, srv)
	const id = "00D09E-HGW%2D2000-ACME0001"
	fields := "" +
		"ID:                      00D09E-HGW%2D2000-ACME0001\n" +
		"Tenant:                  default\n" +
		"Manufacturer:            Acme Networks\n" +
		"OUI:                     00D09E\n" +
		"Product class:           HGW-2000\n" +
		"Serial number:           ACME0001\n" +
		"Software version:        2.1.7\n" +
		"Hardware version:        rev B\n" +
		"Provisioning code:       -\n" +
		"Data model root:         Device.\n" +
		"Remote IP:               192.0.2.10\n" +
		"Connection request URL:  http://192.0.2.10:7547/cr\n" +
		"UDP connection request:  -\n" +
		"XMPP JID:                -\n" +
		"Connection request user: acs (password set)\n" +
		"Tags:                    lab, north\n" +
		"Registered:              2024-04-01T08:00:00Z\n" +
		"Last inform:             2024-05-01T10:34:56Z\n" +
		"Last inform events:      1 BOOT, M Reboot (reboot-42)\n" +
		"Last boot:               2024-05-01T10:00:00Z\n" +
		"Last bootstrap:          -\n" +
		"Full discovery:          -\n" +
		"Session takeovers:       2 (last 2024-04-30T23:00:00Z)\n" +
		"Updated:                 2024-05-01T10:34:57Z\n"

	for _, tc := range []struct {
		name    string
		args    []string
		wantSel *inventoryv1.ParameterSelector
		want    string
	}{
		{"fields only", []string{id}, nil, fields},
		{"params", []string{"-params", id}, &inventoryv1.ParameterSelector{}, fields + "\n" +
			"Parameters (8):\n" +
			"Device.\n" +
			"Device.DeviceInfo.Description = \" padded \" (xsd:string)\n" +
			"Device.DeviceInfo.SoftwareVersion = 2.1.7 (xsd:string)\n" +
			"Device.DeviceInfo.UpTime = 3600 (xsd:unsignedInt)\n" +
			"Device.WiFi.SSID.1.\n" +
			"Device.WiFi.SSID.1.Enable (value not fetched)\n" +
			"Device.WiFi.SSID.1.SSID = \"\" (xsd:string)\n" +
			"Device.WiFi.SSID.1.X_ACME_Note = \"two\\nlines\" (string)\n"},
		// Flags may follow the ID; -prefix implies -params.
		{"prefixes", []string{id, "-prefix", "Device.DeviceInfo.S", "-prefix", "Device.WiFi.SSID.1.SSID"},
			&inventoryv1.ParameterSelector{PathPrefixes: []string{"Device.DeviceInfo.S", "Device.WiFi.SSID.1.SSID"}}, fields + "\n" +
				"Parameters (2):\n" +
				"Device.DeviceInfo.SoftwareVersion = 2.1.7 (xsd:string)\n" +
				"Device.WiFi.SSID.1.SSID = \"\" (xsd:string)\n"},
		{"prefix matching nothing", []string{"-prefix", "Device.Hosts.", id}, &inventoryv1.ParameterSelector{PathPrefixes: []string{"Device.Hosts."}},
			fields + "\nParameters: none\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.reset()
			r := fleetctl(t, append([]string{"devices", "get", "-addr", addr}, tc.args...)...)
			wantOK(t, r)
			if r.stdout != tc.want {
				t.Errorf("output\n got:\n%s\nwant:\n%s", r.stdout, tc.want)
			}
			calls := srv.seen()
			if len(calls) != 1 {
				t.Fatalf("%d calls, want 1", len(calls))
			}
			want := &inventoryv1.GetDeviceRequest{Tenant: "default", Id: id, Parameters: tc.wantSel}
			if !proto.Equal(calls[0].req, want) {
				t.Errorf("request %v, want %v", calls[0].req, want)
			}
			if !calls[0].hasDeadline {
				t.Error("call had no deadline")
			}
		})
	}
}

func TestDevicesGetJSON(t *testing.T) {
	cleanEnv(t)
	srv := &fakeInventory{devices: fixtures()}
	addr := serve(t, srv)
	r := fleetctl(t, "devices", "get", "-addr", addr, "-o", "json", "-prefix", "Device.DeviceInfo.UpTime", "00D09E-HGW%2D2000-ACME0001")
	wantOK(t, r)
	got := &inventoryv1.Device{}
	if err := protojson.Unmarshal([]byte(r.stdout), got); err != nil {
		t.Fatalf("output is not a device in JSON: %v\n%s", err, r.stdout)
	}
	want := fixtures()[0]
	want.Parameters = want.Parameters[3:4]
	if !proto.Equal(got, want) {
		t.Errorf("device\n got %v\nwant %v", got, want)
	}
	if !strings.HasPrefix(r.stdout, "{\n  \"tenant\": \"default\",\n") || !strings.HasSuffix(r.stdout, "\n}\n") {
		t.Errorf("not indented JSON ending in a newline:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, `"parameters": [`) || !strings.Contains(r.stdout, `"path": "Device.DeviceInfo.UpTime"`) {
		t.Errorf("parameters missing:\n%s", r.stdout)
	}
}

func TestDevicesGetUsageErrors(t *testing.T) {
	cleanEnv(t)
	srv := &fakeInventory{}
	addr := serve(t, srv)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no id", nil, "fleetctl: fleetctl devices get: want one device ID, got 0 arguments"},
		{"two ids", []string{"A", "B"}, "fleetctl: fleetctl devices get: want one device ID, got 2 arguments"},
		{"bad output", []string{"-o", "table", "A"}, `fleetctl: fleetctl devices get: unknown output format "table": want text or json`},
		{"bad flag after id", []string{"A", "-parms"}, "fleetctl: fleetctl devices get: flag provided but not defined: -parms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantUsage(t, fleetctl(t, append([]string{"devices", "get", "-addr", addr}, tc.args...)...), tc.want, "fleetctl devices get")
		})
	}
	if n := len(srv.seen()); n != 0 {
		t.Errorf("usage errors made %d calls", n)
	}
}

func TestDevicesGetNotFound(t *testing.T) {
	cleanEnv(t)
	addr := serve(t, &fakeInventory{devices: fixtures()})
	wantFail(t, fleetctl(t, "devices", "get", "-addr", addr, "00259E-X-1"),
		"fleetctl: devices get 00259E-X-1: not found (DEVICE_NOT_FOUND)")
	// A device of another tenant is not found either.
	wantFail(t, fleetctl(t, "devices", "get", "-addr", addr, "A0B1C2-ONT-0006"),
		"fleetctl: devices get A0B1C2-ONT-0006: not found (DEVICE_NOT_FOUND)")
	// An id that would break the line is quoted.
	wantFail(t, fleetctl(t, "devices", "get", "-addr", addr, "X\nY"),
		`fleetctl: devices get "X\nY": not found (DEVICE_NOT_FOUND)`)
}

// TestDevicesServerDown points fleetctl at a port nothing listens on.
func TestDevicesServerDown(t *testing.T) {
	cleanEnv(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	for _, args := range [][]string{
		{"devices", "list", "-addr", addr},
		{"devices", "get", "-addr", addr, "A0B1C2-ONT-0004"},
	} {
		r := fleetctl(t, args...)
		what := strings.Join(args[:2], " ")
		if args[1] == "get" {
			what += " A0B1C2-ONT-0004"
		}
		wantFail(t, r, "fleetctl: "+what+": cannot reach the server at "+addr+": dial tcp "+addr+": connect: connection refused")
	}
}

// TestDevicesTimeout checks that a server that never answers is cut off by
// -timeout, and the message names the address and the deadline.
func TestDevicesTimeout(t *testing.T) {
	cleanEnv(t)
	srv := &fakeInventory{hang: true}
	addr := serve(t, srv)
	wantFail(t, fleetctl(t, "devices", "list", "-addr", addr, "-timeout", "50ms"),
		"fleetctl: devices list: no answer from the server at "+addr+" within 50ms (-timeout)")
	if c := srv.seen(); len(c) != 1 || !c[0].hasDeadline {
		t.Errorf("calls %v, want one with a deadline", c)
	}
}

// TestDevicesErrors maps the catalogue's reasons and gRPC's own codes to
// one line each.
func TestDevicesErrors(t *testing.T) {
	cleanEnv(t)
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"credentials missing", apiStatus(codes.Unauthenticated, "no credentials", "CREDENTIALS_MISSING", nil),
			"no credentials: give -token or set FLEETACS_TOKEN (an admin can create one with \"fleetctl tokens create\"), " +
				"or run fleetctl in the directory holding data/admin.token, which fleetacs writes at its first start (CREDENTIALS_MISSING)"},
		{"credentials invalid", apiStatus(codes.Unauthenticated, "bad token", "CREDENTIALS_INVALID", nil),
			"credentials rejected (malformed, unknown, revoked or expired) (CREDENTIALS_INVALID)"},
		{"role", apiStatus(codes.PermissionDenied, "denied", "ROLE_FORBIDDEN", map[string]string{"role": "viewer", "method": "ListDevices"}),
			"permission denied: role viewer may not call ListDevices (ROLE_FORBIDDEN)"},
		{"tenant forbidden", apiStatus(codes.PermissionDenied, "denied", "TENANT_FORBIDDEN", map[string]string{"tenant": "isp-south"}),
			`permission denied: the credentials do not cover tenant "isp-south" (TENANT_FORBIDDEN)`},
		{"tenant required", apiStatus(codes.InvalidArgument, "tenant", "TENANT_REQUIRED", nil),
			"tenant required: give -tenant (TENANT_REQUIRED)"},
		{"invalid filter", apiStatus(codes.InvalidArgument, "bad filter", "INVALID_FILTER", nil, &errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{
				{Field: "filter.parameter_conditions[0].value", Description: "not an integer"},
				{Field: "filter.ids"},
			}}),
			"invalid filter: filter.parameter_conditions[0].value: not an integer; filter.ids (INVALID_FILTER)"},
		{"invalid field without details", apiStatus(codes.InvalidArgument, "tenant too long", "INVALID_FIELD", nil),
			"invalid request: tenant too long (INVALID_FIELD)"},
		{"page token", apiStatus(codes.InvalidArgument, "bad token", "INVALID_PAGE_TOKEN", nil),
			"page token rejected (expired, or the listing changed): run the command again (INVALID_PAGE_TOKEN)"},
		{"rate limited", apiStatus(codes.ResourceExhausted, "slow down", "RATE_LIMITED", nil, &errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)}),
			"rate limited: retry in 1.5s (RATE_LIMITED)"},
		{"store down", apiStatus(codes.Unavailable, "mongo", "STORE_UNAVAILABLE", nil),
			"the server's store is unavailable: retry later (STORE_UNAVAILABLE)"},
		{"internal", apiStatus(codes.Internal, "oops", "INTERNAL_ERROR", map[string]string{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}),
			"internal server error, trace_id 4bf92f3577b34da6a3ce929d0e0e4736 (INTERNAL_ERROR)"},
		{"reason from a newer server", apiStatus(codes.FailedPrecondition, "tenant suspended", "TENANT_SUSPENDED", nil),
			"failed precondition: tenant suspended (TENANT_SUSPENDED)"},
		{"no reason", status.Error(codes.PermissionDenied, "go away\nnow"),
			`permission denied: go away\nnow`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serve(t, &fakeInventory{err: tc.err})
			wantFail(t, fleetctl(t, "devices", "list", "-addr", addr), "fleetctl: devices list: "+tc.want)
		})
	}

	t.Run("unimplemented", func(t *testing.T) {
		addr := serve(t, nil) // a gRPC server without InventoryService
		wantFail(t, fleetctl(t, "devices", "get", "-addr", addr, "A"),
			"fleetctl: devices get A: not implemented by the server at "+addr+": unknown service fleetacs.inventory.v1.InventoryService")
	})
	t.Run("page token that never ends", func(t *testing.T) {
		addr := serve(t, &fakeInventory{devices: fixtures(), sameToken: true})
		r := fleetctl(t, "devices", "list", "-addr", addr, "-o", "ids")
		if r.code != ExitFailure || r.stderr != "fleetctl: devices list: the server at "+addr+" returned the page token it was given: stopping a listing that would not end\n" {
			t.Errorf("exit status %d, stderr %q", r.code, r.stderr)
		}
	})
}

// TestDevicesCredentials checks the bearer token from -token and from the
// environment, and the address from the environment.
func TestDevicesCredentials(t *testing.T) {
	cleanEnv(t)
	srv := &fakeInventory{devices: fixtures()}
	addr := serve(t, srv)

	wantOK(t, fleetctl(t, "devices", "list", "-addr", addr, "-o", "ids"))
	t.Setenv(envToken, " from-env\n")
	t.Setenv(envAddr, addr)
	wantOK(t, fleetctl(t, "devices", "list", "-o", "ids"))
	wantOK(t, fleetctl(t, "devices", "get", "-token", "from-flag", "A0B1C2-ONT-0004"))

	var got [][]string
	for _, c := range srv.seen() {
		got = append(got, c.auth)
	}
	want := [][]string{nil, {"Bearer from-env"}, {"Bearer from-flag"}}
	if len(got) != len(want) {
		t.Fatalf("authorization per call %q, want %q", got, want)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("call %d: authorization %q, want %q", i, got[i], want[i])
		}
	}
}

func TestDevicesTLS(t *testing.T) {
	cleanEnv(t)
	certPEM, cert := selfSigned(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := &fakeInventory{devices: fixtures()}
	addr := serve(t, srv, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))

	r := fleetctl(t, "devices", "list", "-addr", addr, "-ca-file", caFile, "-token", "t0k", "-o", "ids")
	wantOK(t, r)
	if c := srv.seen(); len(c) != 1 || !slices.Equal(c[0].auth, []string{"Bearer t0k"}) {
		t.Errorf("calls %v, want one with the token", c)
	}

	// The system's roots do not trust the test CA.
	r = fleetctl(t, "devices", "list", "-addr", addr, "-tls")
	if r.code != ExitFailure || !strings.HasPrefix(r.stderr, "fleetctl: devices list: cannot reach the server at "+addr+": ") ||
		!strings.Contains(r.stderr, "certificate") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("exit status %d, stderr %q", r.code, r.stderr)
	}

	missing := filepath.Join(filepath.Dir(caFile), "none.pem")
	wantFail(t, fleetctl(t, "devices", "list", "-addr", addr, "-ca-file", missing),
		"fleetctl: devices list: read CA file: open "+missing+": no such file or directory")
}

func TestIsLoopback(t *testing.T) {
	for target, want := range map[string]bool{
		"localhost:9300":             true,
		"LOCALHOST:9300":             true,
		"api.localhost:9300":         true,
		"127.0.0.1:9300":             true,
		"127.8.9.10:1":               true,
		"[::1]:9300":                 true,
		"dns:///localhost:9300":      true,
		"unix:///run/fleetacs.sock":  true,
		"acs.example.net:9300":       false,
		"192.0.2.1:9300":             false,
		"[2001:db8::1]:9300":         false,
		"dns:///acs.example.net:443": false,
		"localhost.example.net:9300": false,
	} {
		if got := isLoopback(target); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", target, got, want)
		}
	}
}

// TestDevicesHelpGolden keeps the help of the devices commands in one
// reviewed file beside fleetctl's testdata/help.txt.
func TestDevicesHelpGolden(t *testing.T) {
	helpGolden(t, "DevicesHelpGolden", "../../testdata/help-devices.txt", "devices", "list", "get", "set-credentials")
}

// helpGolden compares the help of a command group and of its leaves with
// a golden file (test is the test's name, for the -update hint).
func helpGolden(t *testing.T, test, path, group string, leaves ...string) {
	t.Helper()
	var all strings.Builder
	for _, leaf := range append([]string{""}, leaves...) {
		args := []string{"help", group}
		if leaf != "" {
			args = append(args, leaf)
		}
		r := fleetctl(t, args...)
		wantOK(t, r)
		all.WriteString("$ fleetctl " + strings.Join(args, " ") + "\n" + r.stdout + "\n")
	}
	if *update {
		if err := os.WriteFile(path, []byte(all.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file: %v (run `go test -run %s -update ./internal/cli` in cmd/fleetctl, then review it)", err, test)
	}
	if all.String() != string(want) {
		t.Errorf("help differs from %s (run with -update to accept, then review the diff):\n got:\n%s", path, all.String())
	}
}

// selfSigned makes a certificate for 127.0.0.1, its own CA.
func selfSigned(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fleetctl test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	cert, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, cert
}

// TestConnectionFlagsBeforeCommand: the connection flags work before the
// command words too, as the banner of fleetacs and the README write them
// ("fleetctl -addr HOST:PORT devices list"); other flags do not.
func TestConnectionFlagsBeforeCommand(t *testing.T) {
	cleanEnv(t)
	srv := &fakeInventory{devices: fixtures()}
	addr := serve(t, srv)
	after := fleetctl(t, "devices", "list", "-addr", addr, "-o", "ids")
	wantOK(t, after)
	for _, args := range [][]string{
		{"-addr", addr, "devices", "list", "-o", "ids"},
		{"--addr=" + addr, "-tls=false", "devices", "list", "-o", "ids"},
		{"-tls=false", "-timeout", "5s", "devices", "-addr", addr, "list", "-o", "ids"},
	} {
		r := fleetctl(t, args...)
		wantOK(t, r)
		if r.stdout != after.stdout {
			t.Errorf("fleetctl %q: %q, want %q", args, r.stdout, after.stdout)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "ids", "devices", "list"}, "fleetctl: unknown flag -o\n"},
		{[]string{"-addr"}, "fleetctl: flag needs an argument: -addr\n"},
		{[]string{"-addr", addr, "cwmp", "decode"}, "fleetctl: flag provided but not defined: -addr\n"},
	} {
		r := fleetctl(t, tc.args...)
		if r.code != ExitUsage || !strings.HasPrefix(r.stderr, tc.want) {
			t.Errorf("fleetctl %q: status %d, stderr %q, want 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}
