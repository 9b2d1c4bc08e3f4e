package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
)

// maxPresetFile bounds a file fleetctl presets apply reads.
const maxPresetFile = 4 << 20

func presetsCommand() *Command {
	return &Command{
		Name:  "presets",
		Short: "apply, read, delete and dry-run presets",
		Long: "Manage the presets that keep devices in their desired state (fleetacs.provisioning.v1.PresetsService,\n" +
			"docs/provisioning.md). Viewers read presets, operators dry-run them, admins change them.\n" +
			"Every presets command takes the connection flags -addr, -token, -tls, -ca-file, -cert-file,\n" +
			"-key-file and -timeout, and -tenant (default \"default\"; \"\": the only tenant the credentials\n" +
			"cover). -o json prints the API's JSON of each preset.",
		Commands: []*Command{
			{
				Name: "apply", Args: "FILE", Short: "Create or replace presets from a YAML or JSON file",
				Long: "Create or replace the presets of FILE (\"-\": standard input): one preset, or a list of\n" +
					"presets, in YAML or JSON, with the fields of fleetacs.provisioning.v1.Preset (name,\n" +
					"precedence, enabled, description, match, desired; snake_case or camelCase; enums by\n" +
					"name, e.g. notification: NOTIFICATION_ACTIVE). Unknown fields are errors. Prints each\n" +
					"preset's new revision. -expect-revision N (one preset only) writes only when the preset\n" +
					"is at revision N (0: when it does not exist yet).\n" +
					"Example: fleetctl presets apply wifi.yaml",
				Setup: setupPresetsApply,
			},
			{Name: "list", Short: "List presets by name", Long: "List the tenant's presets. Output (-o): table (default) or json (an array).", Setup: setupPresetsList},
			{
				Name: "get", Args: "NAME", Short: "Show a preset",
				Long:  "Show a preset, its current revision or, with -revision N, an older one, as JSON.",
				Setup: setupPresetsGet,
			},
			{Name: "delete", Args: "NAME...", Short: "Delete presets", Long: "Delete presets and their history.", Setup: setupPresetsDelete},
			{
				Name: "dry-run", Args: "NAME|--all DEVICE_ID", Short: "Show what presets would do to a device",
				Long: "Show what one preset, or with --all the tenant's whole enabled set, would send to DEVICE_ID\n" +
					"in its next session, judged from what the inventory holds. -event E (repeatable) sets the\n" +
					"session's Inform events (default: those of the device's last Inform).\n" +
					"Exit status 0 when the device is converged (nothing to send), 1 otherwise.",
				Setup: setupPresetsDryRun,
			},
		},
	}
}

type presetFlags struct{ taskFlags }

// readPresets parses a file of one preset or a list of them.
func readPresets(r io.Reader) ([]*pv1.Preset, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxPresetFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxPresetFile {
		return nil, fmt.Errorf("larger than %d bytes", maxPresetFile)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	var items []any
	switch v := doc.(type) {
	case []any:
		items = v
	case map[string]any:
		items = []any{v}
	default:
		return nil, fmt.Errorf("want a preset (a mapping) or a list of presets")
	}
	out := make([]*pv1.Preset, 0, len(items))
	for i, it := range items {
		b, err := json.Marshal(it)
		if err != nil {
			return nil, fmt.Errorf("preset %d: %w (mapping keys must be strings)", i+1, err)
		}
		var p pv1.Preset
		if err := protojson.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("preset %d: %w", i+1, err)
		}
		out = append(out, &p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no preset")
	}
	return out, nil
}

func setupPresetsApply(fs *flag.FlagSet) RunFunc {
	o := &presetFlags{}
	o.register(fs, "text,json")
	expect := fs.Int64("expect-revision", -1, "write only when the preset is at `revision` (0: does not exist yet); one preset only")
	return func(ctx context.Context, env *Env, args []string) error {
		pos, err := interspersedArgs(fs, args)
		if err != nil {
			return err
		}
		if err := o.checkOutput("text,json"); err != nil {
			return err
		}
		if len(pos) != 1 {
			return Usagef("want one FILE")
		}
		r, done, err := openInput(env, pos[0])
		if err != nil {
			return Usagef("%v", err)
		}
		defer done()
		presets, err := readPresets(r)
		if err != nil {
			return Usagef("%s: %v", pos[0], err)
		}
		if *expect >= 0 && len(presets) != 1 {
			return Usagef("-expect-revision takes a file of one preset")
		}
		c, err := o.conn.dial(env)
		if err != nil {
			return wrapNonUsage("presets apply", err)
		}
		defer c.cc.Close()
		client := pv1.NewPresetsServiceClient(c.cc)
		for _, p := range presets {
			req := &pv1.PutPresetRequest{Tenant: o.tenant, Preset: p}
			if *expect >= 0 {
				req.ExpectedRevision = proto.Uint64(uint64(*expect))
			}
			resp, err := call(ctx, c, client.PutPreset, req)
			if err != nil {
				return fmt.Errorf("presets apply %s: %w", quoteIfNeeded(p.GetName()), err)
			}
			if err := writePreset(env.Stdout, o.output, resp.GetPreset(), true); err != nil {
				return err
			}
		}
		return nil
	}
}

func writePreset(w io.Writer, output string, p *pv1.Preset, short bool) error {
	if output == "json" {
		return writeProtoJSON(w, p)
	}
	if short {
		_, err := fmt.Fprintf(w, "%s revision %d\n", p.GetName(), p.GetRevision())
		return err
	}
	return writeProtoJSON(w, p)
}

// writeProtoJSON prints a message as the API's JSON, indented the same way
// every time (protojson's own spacing varies on purpose).
func writeProtoJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", out.Bytes())
	return err
}

func setupPresetsList(fs *flag.FlagSet) RunFunc {
	o := &presetFlags{}
	o.register(fs, "table,json")
	return func(ctx context.Context, env *Env, args []string) error {
		if err := interspersed(fs, args, 0); err != nil {
			return err
		}
		if err := o.checkOutput("table,json"); err != nil {
			return err
		}
		c, err := o.conn.dial(env)
		if err != nil {
			return wrapNonUsage("presets list", err)
		}
		defer c.cc.Close()
		client := pv1.NewPresetsServiceClient(c.cc)
		req := &pv1.ListPresetsRequest{Tenant: o.tenant, PageSize: 1000}
		var all []*pv1.Preset
		for {
			resp, err := call(ctx, c, client.ListPresets, req)
			if err != nil {
				return fmt.Errorf("presets list: %w", err)
			}
			all = append(all, resp.GetPresets()...)
			if resp.GetNextPageToken() == "" || resp.GetNextPageToken() == req.PageToken {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		if o.output == "json" {
			var b bytes.Buffer
			b.WriteString("[")
			for i, p := range all {
				if i > 0 {
					b.WriteString(",")
				}
				j, err := protojson.Marshal(p)
				if err != nil {
					return err
				}
				b.Write(j)
			}
			b.WriteString("]")
			var out bytes.Buffer
			if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
				return err
			}
			_, err := fmt.Fprintf(env.Stdout, "%s\n", out.Bytes())
			return err
		}
		tw := newTable(env.Stdout)
		fmt.Fprintln(tw, "NAME\tREVISION\tENABLED\tPRECEDENCE\tUPDATED\tBY")
		for _, p := range all {
			fmt.Fprintf(tw, "%s\t%d\t%t\t%d\t%s\t%s\n", p.GetName(), p.GetRevision(), p.GetEnabled(), p.GetPrecedence(), formatTime(p.GetUpdateTime()), quoteIfNeeded(p.GetUpdatedBy()))
		}
		return tw.Flush()
	}
}

func setupPresetsGet(fs *flag.FlagSet) RunFunc {
	o := &presetFlags{}
	o.register(fs, "json")
	rev := fs.Uint64("revision", 0, "an older `revision` (0: the current one)")
	return func(ctx context.Context, env *Env, args []string) error {
		pos, err := interspersedArgs(fs, args)
		if err != nil {
			return err
		}
		if err := o.checkOutput("json"); err != nil {
			return err
		}
		if len(pos) != 1 {
			return Usagef("want one NAME")
		}
		c, err := o.conn.dial(env)
		if err != nil {
			return wrapNonUsage("presets get", err)
		}
		defer c.cc.Close()
		resp, err := call(ctx, c, pv1.NewPresetsServiceClient(c.cc).GetPreset, &pv1.GetPresetRequest{Tenant: o.tenant, Name: pos[0], Revision: *rev})
		if err != nil {
			return fmt.Errorf("presets get %s: %w", quoteIfNeeded(pos[0]), err)
		}
		return writePreset(env.Stdout, "json", resp.GetPreset(), false)
	}
}

func setupPresetsDelete(fs *flag.FlagSet) RunFunc {
	o := &presetFlags{}
	o.register(fs, "text")
	return func(ctx context.Context, env *Env, args []string) error {
		names, err := interspersedArgs(fs, args)
		if err != nil {
			return err
		}
		if len(names) == 0 {
			return Usagef("want at least one NAME")
		}
		c, err := o.conn.dial(env)
		if err != nil {
			return wrapNonUsage("presets delete", err)
		}
		defer c.cc.Close()
		client := pv1.NewPresetsServiceClient(c.cc)
		for _, n := range names {
			if _, err := call(ctx, c, client.DeletePreset, &pv1.DeletePresetRequest{Tenant: o.tenant, Name: n}); err != nil {
				return fmt.Errorf("presets delete %s: %w", quoteIfNeeded(n), err)
			}
			fmt.Fprintf(env.Stdout, "deleted %s\n", n)
		}
		return nil
	}
}

func setupPresetsDryRun(fs *flag.FlagSet) RunFunc {
	o := &presetFlags{}
	o.register(fs, "text,json")
	all := fs.Bool("all", false, "the tenant's whole enabled set instead of one preset")
	var events stringList
	fs.Var(&events, "event", "an `event` of the session's Inform (\"2 PERIODIC\"; repeatable)")
	return func(ctx context.Context, env *Env, args []string) error {
		pos, err := interspersedArgs(fs, args)
		if err != nil {
			return err
		}
		if err := o.checkOutput("text,json"); err != nil {
			return err
		}
		req := &pv1.DryRunPresetRequest{Tenant: o.tenant, Events: events}
		switch {
		case *all && len(pos) == 1:
			req.DeviceId = pos[0]
		case !*all && len(pos) == 2:
			req.Name, req.DeviceId = pos[0], pos[1]
		default:
			return Usagef("want NAME DEVICE_ID, or --all DEVICE_ID")
		}
		c, err := o.conn.dial(env)
		if err != nil {
			return wrapNonUsage("presets dry-run", err)
		}
		defer c.cc.Close()
		resp, err := call(ctx, c, pv1.NewPresetsServiceClient(c.cc).DryRunPreset, req)
		if err != nil {
			return fmt.Errorf("presets dry-run: %w", err)
		}
		if o.output == "json" {
			if err := writeProtoJSON(env.Stdout, resp); err != nil {
				return err
			}
		} else {
			writeDryRun(env.Stdout, resp)
		}
		if !resp.GetConverged() {
			return fmt.Errorf("presets dry-run: device %s is not converged", quoteIfNeeded(req.DeviceId))
		}
		return nil
	}
}

func writeDryRun(w io.Writer, r *pv1.DryRunPresetResponse) {
	for _, v := range r.GetPresets() {
		if v.GetMatched() {
			fmt.Fprintf(w, "preset %s (revision %d): matches\n", v.GetName(), v.GetRevision())
		} else {
			fmt.Fprintf(w, "preset %s (revision %d): does not match: %s\n", v.GetName(), v.GetRevision(), v.GetReason())
		}
	}
	for i, q := range r.GetRequests() {
		fmt.Fprintf(w, "%d. %s %s\n", i+1, q.GetMethod(), strings.Join(q.GetPaths(), " "))
		for _, v := range q.GetValues() {
			fmt.Fprintf(w, "     %s\n", v)
		}
		if q.GetReason() != "" {
			fmt.Fprintf(w, "     (%s)\n", q.GetReason())
		}
	}
	for _, n := range r.GetNotes() {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if r.GetConverged() {
		fmt.Fprintln(w, "converged: nothing to send")
	}
}
