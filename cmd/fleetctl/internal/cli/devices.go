package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// maxConditions is the most parameter conditions ListDevices accepts
// (DeviceFilter.parameter_conditions); checking it here gives a usage error
// instead of a round trip.
const maxConditions = 16

func devicesCommand() *Command {
	return &Command{
		Name:  "devices",
		Short: "list and inspect devices in the inventory, set their credentials",
		Long: "List and inspect the devices the inventory knows, and set their credentials,\n" +
			"over the public gRPC API (fleetacs.inventory.v1.InventoryService). Every\n" +
			"devices command takes the connection flags -addr, -token, -tls, -ca-file,\n" +
			"-cert-file, -key-file and -timeout.",
		Commands: []*Command{
			{
				Name:  "list",
				Short: "List the devices that match filters",
				Long: "List the devices of a tenant that match every filter given, ordered by id,\n" +
					"following page tokens until -limit rows are printed or the listing ends.\n" +
					"Output (-o): table (default; LAST INFORM in RFC 3339 UTC), json (one JSON\n" +
					"array of devices in the API's JSON form, whatever the number of pages) or\n" +
					"ids (one device id a line, for scripts).",
				Setup: setupDevicesList,
			},
			{
				Name:  "get",
				Args:  "ID",
				Short: "Show one device, optionally with its parameters",
				Long: "Show the device with id ID: its fields, then with -params or -prefix its\n" +
					"parameters as PATH = VALUE (type), sorted by path. A value that is empty or\n" +
					"has surrounding white space or control characters is printed quoted.\n" +
					"-o json prints the device in the API's JSON form.\n" +
					"Flags may also follow ID.",
				Setup: setupDevicesGet,
			},
			{
				Name:  "set-credentials",
				Args:  "ID",
				Short: "Set the credentials a CPE must present (admin)",
				Long: "Set the per-device credentials the CPE with id ID must present to the ACS from\n" +
					"now on (its ManagementServer.Username and Password). Once set, the shared\n" +
					"onboarding credentials no longer open sessions for this device. The password\n" +
					"is read from -password-file, or from standard input, never from the command\n" +
					"line (it would show in the process list); one trailing newline is dropped.\n" +
					"It cannot be read back. Set the same values on the CPE (or let a preset do\n" +
					"it), or it can no longer reach the ACS. Needs an admin token.",
				Setup: setupDevicesSetCredentials,
			},
		},
	}
}

type setCredentialsOptions struct {
	conn         connFlags
	tenant       string
	username     string
	passwordFile string
}

func setupDevicesSetCredentials(fs *flag.FlagSet) RunFunc {
	o := &setCredentialsOptions{}
	o.conn.register(fs)
	fs.StringVar(&o.tenant, "tenant", "default", "`tenant` of the device (\"\": the only tenant the credentials cover)")
	fs.StringVar(&o.username, "username", "", "user `name` the CPE presents (required)")
	fs.StringVar(&o.passwordFile, "password-file", "-", "`file` holding the password; - reads standard input")
	return func(ctx context.Context, env *Env, args []string) error {
		pos, err := interspersedArgs(fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return Usagef("want one device ID, got %d arguments", len(pos))
		}
		return devicesSetCredentials(ctx, env, o, pos[0])
	}
}

// maxPassword bounds what is read as a password; the server allows 256.
const maxPassword = 4 << 10

func devicesSetCredentials(ctx context.Context, env *Env, o *setCredentialsOptions, id string) error {
	what := "devices set-credentials " + quoteIfNeeded(id)
	if o.username == "" {
		return Usagef("-username is required")
	}
	in := env.Stdin
	if o.passwordFile != "-" {
		f, err := os.Open(o.passwordFile)
		if err != nil {
			return fmt.Errorf("%s: read password: %w", what, err)
		}
		defer f.Close()
		in = f
	}
	b, err := io.ReadAll(io.LimitReader(in, maxPassword+1))
	if err != nil {
		return fmt.Errorf("%s: read password: %w", what, err)
	}
	if len(b) > maxPassword {
		return fmt.Errorf("%s: read password: longer than %d bytes", what, maxPassword)
	}
	password := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if password == "" {
		return Usagef("the password is empty: give it on standard input or in -password-file")
	}
	c, err := o.conn.dial(env)
	if err != nil {
		return wrapNonUsage(what, err)
	}
	defer c.cc.Close()
	client := inventoryv1.NewInventoryServiceClient(c.cc)
	req := &inventoryv1.SetCpeCredentialsRequest{Tenant: o.tenant, Id: id, Username: o.username, Password: password}
	if _, err := call(ctx, c, client.SetCpeCredentials, req); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	_, err = fmt.Fprintf(env.Stdout, "set the credentials of %s: user %s\n", quoteIfNeeded(id), quoteIfNeeded(o.username))
	return err
}

// listOptions are the flags of devices list.
type listOptions struct {
	conn            connFlags
	tenant          string
	manufacturer    string
	oui             string
	productClass    string
	serial          string
	softwareVersion string
	tags            stringList
	informedAfter   timeFlag
	informedBefore  timeFlag
	where           conditionList
	limit           int
	pageSize        int
	output          string
}

func setupDevicesList(fs *flag.FlagSet) RunFunc {
	o := &listOptions{}
	o.conn.register(fs)
	fs.StringVar(&o.tenant, "tenant", "default", "`tenant` to list (\"\": the only tenant the credentials cover)")
	fs.StringVar(&o.manufacturer, "manufacturer", "", "only devices whose DeviceId manufacturer is `name`")
	fs.StringVar(&o.oui, "oui", "", "only devices whose DeviceId OUI is `hex` (compared case-insensitively)")
	fs.StringVar(&o.productClass, "product-class", "", "only devices whose DeviceId product class is `class`")
	fs.StringVar(&o.serial, "serial", "", "only the device(s) whose DeviceId serial number is `serial`")
	fs.StringVar(&o.softwareVersion, "software-version", "", "only devices running software `version`")
	fs.Var(&o.tags, "tag", "only devices that have `tag` (repeatable: all of them)")
	fs.Var(&o.informedAfter, "informed-after", "only devices whose last Inform is at or after `time`: RFC 3339\n"+
		"(2024-05-01T12:00:00Z) or a duration ago (90m, 24h, 7d)")
	fs.Var(&o.informedBefore, "informed-before", "only devices whose last Inform is before `time` (as -informed-after)")
	fs.Var(&o.where, "where", "only devices whose parameter meets `'PATH OP VALUE'` (repeatable, at most 16;\n"+
		"all must hold). OP: eq, ne, lt, gt, prefix, or exists and not_exists without\n"+
		"VALUE. VALUE is the rest of the text, trimmed; write it as \"...\" to keep\n"+
		"white space or to give the empty string.\n"+
		"Example: -where 'Device.DeviceInfo.SoftwareVersion eq 1.2.3'")
	fs.IntVar(&o.limit, "limit", 0, "print at most `n` devices (0: all)")
	fs.IntVar(&o.pageSize, "page-size", 0, "ask for `n` devices per call, 1 to 1000 (default: -limit when below 1000,\nelse the server's default, 100)")
	fs.StringVar(&o.output, "o", "table", "output `format`: table, json or ids")
	return func(ctx context.Context, env *Env, args []string) error {
		if err := interspersed(fs, args, 0); err != nil {
			return err
		}
		return devicesList(ctx, env, o)
	}
}

// getOptions are the flags of devices get.
type getOptions struct {
	conn     connFlags
	tenant   string
	params   bool
	prefixes stringList
	output   string
}

func setupDevicesGet(fs *flag.FlagSet) RunFunc {
	o := &getOptions{}
	o.conn.register(fs)
	fs.StringVar(&o.tenant, "tenant", "default", "`tenant` of the device (\"\": the only tenant the credentials cover)")
	fs.BoolVar(&o.params, "params", false, "include the device's parameter tree")
	fs.Var(&o.prefixes, "prefix", "include only parameters and objects whose path starts with `PATH`,\n"+
		"e.g. Device.WiFi. (repeatable; implies -params)")
	fs.StringVar(&o.output, "o", "text", "output `format`: text or json")
	return func(ctx context.Context, env *Env, args []string) error {
		pos, err := interspersedArgs(fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return Usagef("want one device ID, got %d arguments", len(pos))
		}
		return devicesGet(ctx, env, o, pos[0])
	}
}

// interspersedArgs lets flags follow the positional arguments, as in
// `fleetctl devices get ID -params`: the flag package stops at the first
// argument that is not a flag, so parsing resumes after each one.
func interspersedArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		pos = append(pos, args[0])
		if err := fs.Parse(args[1:]); err != nil {
			return nil, Usagef("%v", err)
		}
		args = fs.Args()
	}
	return pos, nil
}

// interspersed is interspersedArgs for a command that takes at most max
// positional arguments.
func interspersed(fs *flag.FlagSet, args []string, max int) error {
	pos, err := interspersedArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > max {
		return Usagef("unexpected argument %q", pos[max])
	}
	return nil
}

func devicesList(ctx context.Context, env *Env, o *listOptions) error {
	const what = "devices list"
	var out deviceWriter
	switch o.output {
	case "table":
		out = newTableWriter(env.Stdout)
	case "json":
		out = &jsonArrayWriter{w: bufio.NewWriter(env.Stdout)}
	case "ids":
		out = &idWriter{w: bufio.NewWriter(env.Stdout)}
	default:
		return Usagef("unknown output format %q: want table, json or ids", o.output)
	}
	if o.limit < 0 {
		return Usagef("-limit must not be negative, got %d", o.limit)
	}
	if o.pageSize < 0 || o.pageSize > 1000 {
		return Usagef("-page-size must be 1 to 1000, got %d", o.pageSize)
	}
	now := time.Now()
	filter := &inventoryv1.DeviceFilter{
		Manufacturer:        o.manufacturer,
		Oui:                 o.oui,
		ProductClass:        o.productClass,
		SerialNumber:        o.serial,
		SoftwareVersion:     o.softwareVersion,
		Tags:                o.tags,
		LastInformAfter:     o.informedAfter.timestamp(now),
		LastInformBefore:    o.informedBefore.timestamp(now),
		ParameterConditions: o.where,
	}
	if a, b := filter.LastInformAfter, filter.LastInformBefore; a != nil && b != nil && !a.AsTime().Before(b.AsTime()) {
		return Usagef("-informed-after %s is not before -informed-before %s: no device can match",
			formatTime(a), formatTime(b))
	}
	req := &inventoryv1.ListDevicesRequest{Tenant: o.tenant, Filter: filter, PageSize: int32(o.pageSize)}
	if proto.Size(filter) == 0 {
		req.Filter = nil
	}
	if req.PageSize == 0 && o.limit > 0 && o.limit < 1000 {
		// The page size stays the same on every page (a page token is only
		// good for the request that produced it), so a small limit sets it
		// once rather than trimming the last page.
		req.PageSize = int32(o.limit)
	}

	c, err := o.conn.dial(env)
	if err != nil {
		return wrapNonUsage(what, err)
	}
	defer c.cc.Close()
	client := inventoryv1.NewInventoryServiceClient(c.cc)

	printed := 0
	for {
		resp, err := call(ctx, c, client.ListDevices, req)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		for _, d := range resp.GetDevices() {
			if o.limit > 0 && printed == o.limit {
				break
			}
			if err := out.device(d); err != nil {
				return fmt.Errorf("%s: write output: %w", what, err)
			}
			printed++
		}
		next := resp.GetNextPageToken()
		if next == "" || (o.limit > 0 && printed == o.limit) {
			break
		}
		if next == req.PageToken {
			return fmt.Errorf("%s: the server at %s returned the page token it was given: stopping a listing that would not end", what, c.addr)
		}
		req.PageToken = next
		if err := out.flush(); err != nil {
			return fmt.Errorf("%s: write output: %w", what, err)
		}
	}
	if err := out.finish(); err != nil {
		return fmt.Errorf("%s: write output: %w", what, err)
	}
	return nil
}

func devicesGet(ctx context.Context, env *Env, o *getOptions, id string) error {
	what := "devices get " + quoteIfNeeded(id)
	if o.output != "text" && o.output != "json" {
		return Usagef("unknown output format %q: want text or json", o.output)
	}
	req := &inventoryv1.GetDeviceRequest{Tenant: o.tenant, Id: id}
	if o.params || len(o.prefixes) > 0 {
		req.Parameters = &inventoryv1.ParameterSelector{PathPrefixes: o.prefixes}
	}
	c, err := o.conn.dial(env)
	if err != nil {
		return wrapNonUsage(what, err)
	}
	defer c.cc.Close()
	client := inventoryv1.NewInventoryServiceClient(c.cc)
	resp, err := call(ctx, c, client.GetDevice, req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	d := resp.GetDevice()
	if d == nil {
		return fmt.Errorf("%s: the server at %s answered without a device", what, c.addr)
	}
	var b strings.Builder
	if o.output == "json" {
		js, err := deviceJSON(d, "")
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		b.Write(js)
		b.WriteByte('\n')
	} else {
		writeDeviceText(&b, d, req.Parameters)
	}
	if _, err := io.WriteString(env.Stdout, b.String()); err != nil {
		return fmt.Errorf("%s: write output: %w", what, err)
	}
	return nil
}

// wrapNonUsage prefixes err with what, leaving usage errors as they are so
// that Main still answers them with status 2.
func wrapNonUsage(what string, err error) error {
	var ue *UsageError
	if errors.As(err, &ue) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// deviceWriter prints the devices of a listing as they arrive.
type deviceWriter interface {
	device(d *inventoryv1.Device) error
	// flush writes what is buffered between pages, so that a long listing
	// shows progress and holds one page in memory.
	flush() error
	finish() error
}

// tableWriter aligns columns over the whole listing, so it holds every row
// until the end; -o ids and -o json stream instead.
type tableWriter struct {
	w  io.Writer
	tw *tabwriter.Writer
}

func newTableWriter(w io.Writer) *tableWriter {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOUI\tPRODUCT CLASS\tSERIAL\tSOFTWARE\tLAST INFORM\tIP\tTAGS")
	return &tableWriter{w: w, tw: tw}
}

func (t *tableWriter) device(d *inventoryv1.Device) error {
	id := d.GetDeviceId()
	tags := make([]string, len(d.GetTags()))
	for i, tag := range d.GetTags() {
		tags[i] = quoteIfNeeded(tag)
	}
	_, err := fmt.Fprintf(t.tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
		cell(d.GetId()), cell(id.GetOui()), cell(id.GetProductClass()), cell(id.GetSerialNumber()),
		cell(d.GetSoftwareVersion()), formatTime(d.GetLastInformTime()), cell(d.GetRemoteIp()),
		cell(strings.Join(tags, ",")))
	return err
}

func (t *tableWriter) flush() error  { return nil }
func (t *tableWriter) finish() error { return t.tw.Flush() }

type idWriter struct{ w *bufio.Writer }

func (i *idWriter) device(d *inventoryv1.Device) error {
	i.w.WriteString(d.GetId())
	return i.w.WriteByte('\n')
}

func (i *idWriter) flush() error  { return i.w.Flush() }
func (i *idWriter) finish() error { return i.w.Flush() }

// jsonArrayWriter prints one JSON array whatever the number of pages.
type jsonArrayWriter struct {
	w *bufio.Writer
	n int
}

func (j *jsonArrayWriter) device(d *inventoryv1.Device) error {
	js, err := deviceJSON(d, "  ")
	if err != nil {
		return err
	}
	if j.n == 0 {
		j.w.WriteString("[\n  ")
	} else {
		j.w.WriteString(",\n  ")
	}
	j.n++
	_, err = j.w.Write(js)
	return err
}

func (j *jsonArrayWriter) flush() error { return j.w.Flush() }

func (j *jsonArrayWriter) finish() error {
	if j.n == 0 {
		j.w.WriteString("[]\n")
	} else {
		j.w.WriteString("\n]\n")
	}
	return j.w.Flush()
}

// deviceJSON is the device in protojson form (the API's JSON mapping:
// lowerCamelCase names, RFC 3339 times), indented by two spaces after
// prefix. protojson deliberately varies its white space between builds;
// re-indenting with encoding/json makes the output byte-stable.
func deviceJSON(d *inventoryv1.Device, prefix string) ([]byte, error) {
	raw, err := protojson.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode device %s as JSON: %w", d.GetId(), err)
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, prefix, "  "); err != nil {
		return nil, fmt.Errorf("indent JSON of device %s: %w", d.GetId(), err)
	}
	return b.Bytes(), nil
}

// writeDeviceText writes the human form of devices get: aligned fields,
// then the parameters when sel asked for them.
func writeDeviceText(w io.Writer, d *inventoryv1.Device, sel *inventoryv1.ParameterSelector) {
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	field := func(name, value string) { fmt.Fprintf(tw, "%s:\t%s\n", name, value) }
	id := d.GetDeviceId()
	cr := d.GetConnectionRequest()
	field("ID", cell(d.GetId()))
	field("Tenant", cell(d.GetTenant()))
	field("Manufacturer", cell(id.GetManufacturer()))
	field("OUI", cell(id.GetOui()))
	field("Product class", cell(id.GetProductClass()))
	field("Serial number", cell(id.GetSerialNumber()))
	field("Software version", cell(d.GetSoftwareVersion()))
	field("Hardware version", cell(d.GetHardwareVersion()))
	field("Provisioning code", cell(d.GetProvisioningCode()))
	field("Data model root", cell(d.GetDataModelRoot()))
	field("Remote IP", cell(d.GetRemoteIp()))
	field("Connection request URL", cell(cr.GetUrl()))
	field("UDP connection request", cell(cr.GetUdpAddress()))
	field("XMPP JID", cell(cr.GetJabberId()))
	pw := "no password"
	if cr.GetPasswordSet() {
		pw = "password set"
	}
	field("Connection request user", cell(cr.GetUsername())+" ("+pw+")")
	tags := make([]string, len(d.GetTags()))
	for i, t := range d.GetTags() {
		tags[i] = quoteIfNeeded(t)
	}
	field("Tags", cell(strings.Join(tags, ", ")))
	field("Registered", formatTime(d.GetRegisteredTime()))
	field("Last inform", formatTime(d.GetLastInformTime()))
	events := make([]string, len(d.GetLastInformEvents()))
	for i, e := range d.GetLastInformEvents() {
		events[i] = quoteIfNeeded(e.GetCode())
		if e.GetCommandKey() != "" {
			events[i] += " (" + quoteIfNeeded(e.GetCommandKey()) + ")"
		}
	}
	field("Last inform events", cell(strings.Join(events, ", ")))
	field("Last boot", formatTime(d.GetLastBootTime()))
	field("Last bootstrap", formatTime(d.GetLastBootstrapTime()))
	field("Full discovery", formatTime(d.GetFullDiscoveryTime()))
	takeovers := strconv.FormatUint(d.GetSessionTakeoverCount(), 10)
	if t := d.GetLastSessionTakeoverTime(); t != nil {
		takeovers += " (last " + formatTime(t) + ")"
	}
	field("Session takeovers", takeovers)
	field("Updated", formatTime(d.GetUpdateTime()))
	tw.Flush()
	if sel == nil {
		return
	}
	params := d.GetParameters()
	if len(params) == 0 {
		fmt.Fprintln(w, "\nParameters: none")
		return
	}
	fmt.Fprintf(w, "\nParameters (%d):\n", len(params))
	for _, p := range params {
		fmt.Fprintln(w, parameterLine(p))
	}
}

// parameterLine is PATH = VALUE (type); an object is its path alone, a
// parameter whose value was never fetched says so.
func parameterLine(p *inventoryv1.Parameter) string {
	line := quoteIfNeeded(p.GetPath())
	switch {
	case p.Value != nil:
		line += " = " + quoteValue(p.GetValue())
	case !strings.HasSuffix(p.GetPath(), "."):
		line += " (value not fetched)"
	}
	if p.GetType() != "" {
		line += " (" + quoteIfNeeded(p.GetType()) + ")"
	}
	return line
}

// cell is a value for a table or field: "-" when empty. Values come from
// CPEs, so control characters are escaped rather than sent to the terminal.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return quoteIfNeeded(s)
}

// quoteIfNeeded quotes s when it holds characters that are not printable,
// tabs and line breaks included.
func quoteIfNeeded(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}

// quoteValue quotes a parameter value whenever printing it bare would hide
// something: empty, surrounding white space, control characters, or a
// leading quote that would read as quoting.
func quoteValue(s string) string {
	if s == "" || strings.TrimSpace(s) != s || strings.HasPrefix(s, `"`) {
		return strconv.Quote(s)
	}
	return quoteIfNeeded(s)
}

// formatTime is an instant in RFC 3339 UTC to the second, "-" when unset.
func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}
