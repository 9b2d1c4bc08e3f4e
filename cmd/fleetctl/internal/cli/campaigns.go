package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	campaignsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/campaigns/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
)

func campaignsCommand() *Command {
	return &Command{
		Name:  "campaigns",
		Short: "create, follow, pause, resume and abort campaigns",
		Long: "Manage campaigns (fleetacs.campaigns.v1.CampaignsService, docs/campaigns.md): a firmware\n" +
			"version or a task operation applied to every device a filter selects, in waves,\n" +
			"inside maintenance windows, with a cap on the devices in flight and a stop rule.\n" +
			"Viewers list and show them, operators create, pause, resume and abort them. Every\n" +
			"campaigns command takes the connection flags -addr, -token, -tls, -ca-file,\n" +
			"-cert-file, -key-file and -timeout.",
		Commands: []*Command{
			{
				Name:  "create",
				Short: "Create a campaign from flags or a YAML or JSON file",
				Long: "Create a campaign. -f reads a CreateCampaignRequest in YAML or JSON (the API's JSON\n" +
					"names: name, spec.filter, spec.firmware, spec.operation, spec.preset, spec.waves, spec.windows,\n" +
					"spec.maxInFlight, spec.stopRule, ...; - for stdin); flags given beside it override\n" +
					"its fields. -wave is a count (10) or a percentage (10%) of the devices, cumulative;\n" +
					"-window is HH:MM-HH:MM, optionally @TIME_ZONE. Output (-o): text, json or id.\n" +
					"Example: fleetctl campaigns create -name hgw-2.1 -firmware-version 2.1 -product-class HGW\n" +
					"  -software-version 2.0 -wave 1% -wave 10% -wave 100% -window 01:00-05:00@Europe/Paris\n" +
					"  -max-in-flight 200 -max-failure-ratio 0.05",
				Setup: setupCampaignsCreate,
			},
			{
				Name:  "list",
				Short: "List campaigns, newest first",
				Long:  "List the tenant's campaigns with their totals. Output (-o): table (default) or json.",
				Setup: setupCampaignsList,
			},
			{
				Name:  "get",
				Args:  "ID",
				Short: "Show a campaign with its progress per wave",
				Long:  "Show one campaign, its progress per wave and outcome, and (-failed N) up to N failed devices. Output (-o): text or json.",
				Setup: setupCampaignsGet,
			},
			{Name: "pause", Args: "ID", Short: "Pause a campaign (tasks in flight run on)", Long: "Pause a campaign: no new task; tasks in flight run to their end. Output (-o): text or json.", Setup: setupCampaignsChange("pause")},
			{Name: "resume", Args: "ID", Short: "Resume a paused or stopped campaign", Long: "Resume a campaign paused by an operator or stopped by its stop rule. Output (-o): text or json.", Setup: setupCampaignsChange("resume")},
			{Name: "abort", Args: "ID", Short: "Abort a campaign for good", Long: "Abort a campaign: its queued tasks are cancelled, its pending devices skipped. Output (-o): text or json.", Setup: setupCampaignsChange("abort")},
		},
	}
}

type campaignsCreateOptions struct {
	conn                                  connFlags
	tenant, name, file, key, output       string
	fwVersion, fwFile, fileType           string
	preset                                string
	productClass, softwareVersion, oui    string
	tags, waves, windows                  stringList
	maxInFlight                           uint
	transferTimeout, verifyTimeout        time.Duration
	maxFailureRatio                       float64
	minSample                             uint
	connectionRequest, paused, skipVerify bool
	set                                   map[string]bool
}

func setupCampaignsCreate(fs *flag.FlagSet) RunFunc {
	o := &campaignsCreateOptions{}
	o.conn.register(fs)
	registerTenant(fs, &o.tenant, "the campaign")
	fs.StringVar(&o.name, "name", "", "campaign `name` (required here or in the file)")
	fs.StringVar(&o.file, "f", "", "YAML or JSON `file` of the request (- for stdin)")
	fs.StringVar(&o.fwVersion, "firmware-version", "", "upgrade to this firmware `version` (the file of this version matching each device's product class)")
	fs.StringVar(&o.fwFile, "firmware-file", "", "upgrade to this file `id`")
	fs.StringVar(&o.fileType, "file-type", "", "CWMP file `type` of the firmware (default \"1 Firmware Upgrade Image\")")
	fs.StringVar(&o.preset, "preset", "", "apply this preset (`name`): each device of a wave gets the tags its match requires")
	fs.BoolVar(&o.skipVerify, "skip-verify", false, "do not check the SoftwareVersion the devices report after the upgrade")
	fs.StringVar(&o.productClass, "product-class", "", "only devices of this product `class`")
	fs.StringVar(&o.softwareVersion, "software-version", "", "only devices on this software `version`")
	fs.StringVar(&o.oui, "oui", "", "only devices of this `OUI`")
	fs.Var(&o.tags, "tag", "only devices with this `tag` (repeatable: all of them)")
	fs.Var(&o.waves, "wave", "a wave: device `count` or percentage (10%), cumulative (repeatable, in order)")
	fs.Var(&o.windows, "window", "maintenance `window` HH:MM-HH:MM[@TIME_ZONE] (repeatable; default: always)")
	fs.UintVar(&o.maxInFlight, "max-in-flight", 0, "devices in flight at most (default 100)")
	fs.DurationVar(&o.transferTimeout, "transfer-timeout", 0, "time a device has for its TransferComplete (default 1h)")
	fs.DurationVar(&o.verifyTimeout, "verify-timeout", 0, "time a device has to report the new version (default 10m)")
	fs.Float64Var(&o.maxFailureRatio, "max-failure-ratio", 0, "stop rule: pause when more than this `ratio` of finished devices failed (0: no rule)")
	fs.UintVar(&o.minSample, "min-sample", 0, "stop rule: finished devices needed before it applies (default 10)")
	fs.BoolVar(&o.connectionRequest, "connection-request", true, "wake each device with a connection request when its task is created")
	fs.BoolVar(&o.paused, "paused", false, "create the campaign paused")
	fs.StringVar(&o.key, "idempotency-key", "", "`key` making a repeated create return the first campaign")
	fs.StringVar(&o.output, "o", "text", "output `format`: text, json or id")
	return func(ctx context.Context, env *Env, args []string) error {
		if err := interspersed(fs, args, 0); err != nil {
			return err
		}
		o.set = map[string]bool{}
		fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
		return campaignsCreate(ctx, env, o)
	}
}

// readRequest reads a CreateCampaignRequest in YAML or JSON (YAML is
// turned into JSON, which protojson reads strictly: a misspelt field is an
// error, not ignored).
func readRequest(env *Env, name string) (*campaignsv1.CreateCampaignRequest, error) {
	r, done, err := openInput(env, name)
	if err != nil {
		return nil, err
	}
	defer done()
	b, err := io.ReadAll(io.LimitReader(r, 1<<20+1))
	if err != nil {
		return nil, err
	}
	if len(b) > 1<<20 {
		return nil, fmt.Errorf("%s: larger than 1 MiB", name)
	}
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	req := &campaignsv1.CreateCampaignRequest{}
	if err := protojson.Unmarshal(js, req); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return req, nil
}

func parseWave(s string) (*campaignsv1.Wave, error) {
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return nil, fmt.Errorf("-wave %q: want a count or a percentage such as 10%%", s)
		}
		return &campaignsv1.Wave{Size: &campaignsv1.Wave_Percent{Percent: v}}, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("-wave %q: want a count or a percentage such as 10%%", s)
	}
	return &campaignsv1.Wave{Size: &campaignsv1.Wave_Count{Count: n}}, nil
}

func parseWindow(s string) (*campaignsv1.MaintenanceWindow, error) {
	span, tz, _ := strings.Cut(s, "@")
	start, end, ok := strings.Cut(span, "-")
	if !ok {
		return nil, fmt.Errorf("-window %q: want HH:MM-HH:MM[@TIME_ZONE]", s)
	}
	return &campaignsv1.MaintenanceWindow{Start: start, End: end, TimeZone: tz}, nil
}

func campaignsCreate(ctx context.Context, env *Env, o *campaignsCreateOptions) error {
	const what = "campaigns create"
	if err := checkFormat(o.output, "text", "json", "id"); err != nil {
		return err
	}
	req := &campaignsv1.CreateCampaignRequest{}
	if o.file != "" {
		var err error
		if req, err = readRequest(env, o.file); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if req.Spec == nil {
		req.Spec = &campaignsv1.CampaignSpec{}
	}
	sp := req.Spec
	if o.set["tenant"] || req.Tenant == "" {
		req.Tenant = o.tenant
	}
	if o.set["name"] {
		req.Name = o.name
	}
	if o.set["idempotency-key"] {
		req.IdempotencyKey = o.key
	}
	if o.set["paused"] {
		req.StartPaused = o.paused
	}
	if o.set["firmware-version"] && o.set["firmware-file"] {
		return Usagef("-firmware-version and -firmware-file exclude each other")
	}
	if o.set["preset"] && (o.set["firmware-version"] || o.set["firmware-file"]) {
		return Usagef("-preset and -firmware-version or -firmware-file exclude each other")
	}
	if o.set["preset"] {
		sp.Action = &campaignsv1.CampaignSpec_Preset{Preset: &campaignsv1.PresetAction{Name: o.preset}}
	}
	if o.set["firmware-version"] || o.set["firmware-file"] {
		sp.Action = &campaignsv1.CampaignSpec_Firmware{Firmware: &campaignsv1.FirmwareAction{
			Version: o.fwVersion, FileId: o.fwFile, FileType: fileType(o.fileType), SkipVerify: o.skipVerify}}
	} else if fw := sp.GetFirmware(); fw != nil {
		if o.set["file-type"] {
			fw.FileType = fileType(o.fileType)
		}
		if o.set["skip-verify"] {
			fw.SkipVerify = o.skipVerify
		}
	}
	if o.set["product-class"] || o.set["software-version"] || o.set["oui"] || o.set["tag"] {
		if sp.Filter == nil {
			sp.Filter = &inventoryv1.DeviceFilter{}
		}
		if o.set["product-class"] {
			sp.Filter.ProductClass = o.productClass
		}
		if o.set["software-version"] {
			sp.Filter.SoftwareVersion = o.softwareVersion
		}
		if o.set["oui"] {
			sp.Filter.Oui = o.oui
		}
		if o.set["tag"] {
			sp.Filter.Tags = o.tags
		}
	}
	if o.set["wave"] {
		sp.Waves = nil
		for _, w := range o.waves {
			wave, err := parseWave(w)
			if err != nil {
				return Usagef("%v", err)
			}
			sp.Waves = append(sp.Waves, wave)
		}
	}
	if o.set["window"] {
		sp.Windows = nil
		for _, w := range o.windows {
			win, err := parseWindow(w)
			if err != nil {
				return Usagef("%v", err)
			}
			sp.Windows = append(sp.Windows, win)
		}
	}
	if o.set["max-in-flight"] {
		sp.MaxInFlight = uint32(min(o.maxInFlight, 1<<31))
	}
	if o.set["transfer-timeout"] {
		sp.TransferTimeoutSeconds = uint32(min(o.transferTimeout/time.Second, 1<<31))
	}
	if o.set["verify-timeout"] {
		sp.VerifyTimeoutSeconds = uint32(min(o.verifyTimeout/time.Second, 1<<31))
	}
	if o.set["max-failure-ratio"] || o.set["min-sample"] {
		if sp.StopRule == nil {
			sp.StopRule = &campaignsv1.StopRule{}
		}
		if o.set["max-failure-ratio"] {
			sp.StopRule.MaxFailureRatio = o.maxFailureRatio
		}
		if o.set["min-sample"] {
			sp.StopRule.MinSample = uint32(min(o.minSample, 1<<31))
		}
	}
	if o.set["connection-request"] || o.file == "" {
		sp.ConnectionRequest = o.connectionRequest
	}
	if req.Name == "" {
		return Usagef("-name is required (or name in the file)")
	}
	if sp.Action == nil {
		return Usagef("an action is required: -firmware-version, -firmware-file, -preset, or spec.operation in the file")
	}
	c, err := o.conn.dial(env)
	if err != nil {
		return wrapNonUsage(what, err)
	}
	defer c.cc.Close()
	resp, err := call(ctx, c, campaignsv1.NewCampaignsServiceClient(c.cc).CreateCampaign, req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if o.output == "id" {
		_, err := fmt.Fprintln(env.Stdout, resp.GetCampaign().GetId())
		return err
	}
	return writeCampaign(env, o.output, resp.GetCampaign(), nil)
}

func campaignStateName(s campaignsv1.CampaignState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "CAMPAIGN_STATE_"))
}

func outcomesLine(o *campaignsv1.Outcomes) string {
	return fmt.Sprintf("pending %d, in flight %d, verifying %d, succeeded %d, failed %d, skipped %d",
		o.GetPending(), o.GetInFlight(), o.GetVerifying(), o.GetSucceeded(), o.GetFailed(), o.GetSkipped())
}

func actionLine(sp *campaignsv1.CampaignSpec) string {
	switch {
	case sp.GetFirmware() != nil:
		fw := sp.GetFirmware()
		if fw.GetFileId() != "" {
			return "firmware file " + fw.GetFileId()
		}
		return "firmware " + fw.GetVersion()
	case sp.GetOperation() != nil:
		return "task " + kindName(sp.GetOperation())
	case sp.GetPreset() != nil:
		return "preset " + sp.GetPreset().GetName()
	}
	return "-"
}

func writeCampaign(env *Env, output string, c *campaignsv1.Campaign, failed []*campaignsv1.DeviceProgress) error {
	if output == "json" {
		v := map[string]json.RawMessage{"campaign": protoJSON(c)}
		if failed != nil {
			items := make([]json.RawMessage, len(failed))
			for i, d := range failed {
				items[i] = protoJSON(d)
			}
			v["failedDevices"], _ = json.Marshal(items)
		}
		return writeIndented(env.Stdout, v)
	}
	tw := newTable(env.Stdout)
	for _, kv := range [][2]string{
		{"ID", c.GetId()}, {"Tenant", c.GetTenant()}, {"Name", c.GetName()}, {"Action", actionLine(c.GetSpec())},
		{"State", campaignStateName(c.GetState())}, {"Detail", c.GetStateDetail()},
		{"Devices", fmt.Sprint(c.GetPlannedDevices())}, {"Totals", outcomesLine(c.GetTotals())},
		{"Created", formatTime(c.GetCreateTime())}, {"Updated", formatTime(c.GetUpdateTime())},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], quoteIfNeeded(kv[1]))
	}
	if c.GetEndTime() != nil {
		fmt.Fprintf(tw, "Ended:\t%s\n", formatTime(c.GetEndTime()))
	}
	for _, w := range c.GetWaves() {
		start := "not started"
		if w.GetStartTime() != nil {
			start = "started " + formatTime(w.GetStartTime())
		}
		fmt.Fprintf(tw, "Wave %d:\t%d devices, %s; %s\n", w.GetIndex(), w.GetDevices(), start, outcomesLine(w.GetOutcomes()))
	}
	for _, d := range failed {
		fmt.Fprintf(tw, "Failed:\t%s (wave %d, task %s): %s\n", d.GetDeviceId(), d.GetWave(), orDash(d.GetTaskId()), quoteIfNeeded(d.GetDetail()))
	}
	return tw.Flush()
}

type campaignsListOptions struct {
	conn                  connFlags
	tenant, state, output string
}

func setupCampaignsList(fs *flag.FlagSet) RunFunc {
	o := &campaignsListOptions{}
	o.conn.register(fs)
	registerTenant(fs, &o.tenant, "the campaigns")
	fs.StringVar(&o.state, "state", "", "only campaigns in this `state`: running, paused, stopped, completed or aborted")
	fs.StringVar(&o.output, "o", "table", "output `format`: table or json")
	return func(ctx context.Context, env *Env, args []string) error {
		if err := interspersed(fs, args, 0); err != nil {
			return err
		}
		return campaignsList(ctx, env, o)
	}
}

func campaignsList(ctx context.Context, env *Env, o *campaignsListOptions) error {
	const what = "campaigns list"
	if err := checkFormat(o.output, "table", "json"); err != nil {
		return err
	}
	var state campaignsv1.CampaignState
	if o.state != "" {
		v, ok := campaignsv1.CampaignState_value["CAMPAIGN_STATE_"+strings.ToUpper(o.state)]
		if !ok || v == 0 {
			return Usagef("unknown state %q: want running, paused, stopped, completed or aborted", o.state)
		}
		state = campaignsv1.CampaignState(v)
	}
	c, err := o.conn.dial(env)
	if err != nil {
		return wrapNonUsage(what, err)
	}
	defer c.cc.Close()
	client := campaignsv1.NewCampaignsServiceClient(c.cc)
	req := &campaignsv1.ListCampaignsRequest{Tenant: o.tenant, State: state, PageSize: 500}
	all, err := listAll(what, c.addr, func(token string) ([]*campaignsv1.Campaign, string, error) {
		req.PageToken = token
		resp, err := call(ctx, c, client.ListCampaigns, req)
		return resp.GetCampaigns(), resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if o.output == "json" {
		return writeJSONList(env.Stdout, what, all)
	}
	tw := newTable(env.Stdout)
	fmt.Fprintln(tw, "ID\tNAME\tACTION\tSTATE\tDEVICES\tSUCCEEDED\tFAILED\tIN FLIGHT\tCREATED")
	for _, x := range all {
		t := x.GetTotals()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", x.GetId(), quoteIfNeeded(x.GetName()), quoteIfNeeded(actionLine(x.GetSpec())),
			campaignStateName(x.GetState()), x.GetPlannedDevices(), t.GetSucceeded(), t.GetFailed(), t.GetInFlight()+t.GetVerifying(), formatTime(x.GetCreateTime()))
	}
	return tw.Flush()
}

type campaignsGetOptions struct {
	conn           connFlags
	tenant, output string
	failed         uint
}

func setupCampaignsGet(fs *flag.FlagSet) RunFunc {
	o := &campaignsGetOptions{}
	o.conn.register(fs)
	registerTenant(fs, &o.tenant, "the campaign")
	fs.UintVar(&o.failed, "failed", 0, "also show up to `N` failed devices (at most 1000)")
	fs.StringVar(&o.output, "o", "text", "output `format`: text or json")
	return func(ctx context.Context, env *Env, args []string) error {
		arg, err := oneArg(fs, args, "campaign ID")
		if err != nil {
			return err
		}
		if err := checkFormat(o.output, "text", "json"); err != nil {
			return err
		}
		c, err := o.conn.dial(env)
		if err != nil {
			return wrapNonUsage("campaigns get", err)
		}
		defer c.cc.Close()
		resp, err := call(ctx, c, campaignsv1.NewCampaignsServiceClient(c.cc).GetCampaign,
			&campaignsv1.GetCampaignRequest{Tenant: o.tenant, Id: arg, FailedDevices: uint32(min(o.failed, 1<<31))})
		if err != nil {
			return fmt.Errorf("campaigns get %s: %w", quoteIfNeeded(arg), err)
		}
		var failed []*campaignsv1.DeviceProgress
		if o.failed > 0 {
			failed = append([]*campaignsv1.DeviceProgress{}, resp.GetFailedDevices()...)
		}
		return writeCampaign(env, o.output, resp.GetCampaign(), failed)
	}
}

type campaignsChangeOptions struct {
	conn           connFlags
	tenant, output string
}

func setupCampaignsChange(verb string) func(fs *flag.FlagSet) RunFunc {
	return func(fs *flag.FlagSet) RunFunc {
		o := &campaignsChangeOptions{}
		o.conn.register(fs)
		registerTenant(fs, &o.tenant, "the campaign")
		fs.StringVar(&o.output, "o", "text", "output `format`: text or json")
		return func(ctx context.Context, env *Env, args []string) error {
			what := "campaigns " + verb
			arg, err := oneArg(fs, args, "campaign ID")
			if err != nil {
				return err
			}
			if err := checkFormat(o.output, "text", "json"); err != nil {
				return err
			}
			c, err := o.conn.dial(env)
			if err != nil {
				return wrapNonUsage(what, err)
			}
			defer c.cc.Close()
			client := campaignsv1.NewCampaignsServiceClient(c.cc)
			var got *campaignsv1.Campaign
			switch verb {
			case "pause":
				resp, err := call(ctx, c, client.PauseCampaign, &campaignsv1.PauseCampaignRequest{Tenant: o.tenant, Id: arg})
				if err != nil {
					return fmt.Errorf("%s %s: %w", what, quoteIfNeeded(arg), err)
				}
				got = resp.GetCampaign()
			case "resume":
				resp, err := call(ctx, c, client.ResumeCampaign, &campaignsv1.ResumeCampaignRequest{Tenant: o.tenant, Id: arg})
				if err != nil {
					return fmt.Errorf("%s %s: %w", what, quoteIfNeeded(arg), err)
				}
				got = resp.GetCampaign()
			default:
				resp, err := call(ctx, c, client.AbortCampaign, &campaignsv1.AbortCampaignRequest{Tenant: o.tenant, Id: arg})
				if err != nil {
					return fmt.Errorf("%s %s: %w", what, quoteIfNeeded(arg), err)
				}
				got = resp.GetCampaign()
			}
			return writeCampaign(env, o.output, got, nil)
		}
	}
}
