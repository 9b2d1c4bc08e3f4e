package provisioning

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Request is one request planned for a device.
type Request struct {
	// Method is the CWMP method.
	Method string
	// Paths are the parameters or objects it names.
	Paths []string
	// Values and Types go with Paths, for SetParameterValues.
	Values []string
	Types  []string
	// Attributes are what a SetParameterAttributes sets, one per path
	// (Paths lists the same paths).
	Attributes []AttributeSpec
	// Sets are what an AddObject's new instance gets, relative to it:
	// its keys, then its values.
	Sets []Set
	// Table and Keys say which instance an AddObject makes (its
	// ParameterKey is derived from them, see AddKey).
	Table string
	Keys  []Set
	// Reason says why, naming the preset.
	Reason string
}

// Set is a value to set, relative to an object instance.
type Set struct {
	Name, Value, Type string
}

// AddKey is the ParameterKey of the AddObject that makes the instance of
// table with keys: a later session that finds it in the Inform knows the
// CPE made the instance even if the answer never arrived, and adopts an
// instance of the table whose keys are still empty instead of adding
// another (docs/provisioning.md, "Object instances").
func AddKey(table string, keys []Set) string {
	h := fnv.New64a()
	h.Write([]byte(table))
	for _, k := range keys {
		h.Write([]byte{0})
		h.Write([]byte(k.Name))
		h.Write([]byte{0})
		h.Write([]byte(k.Value))
	}
	return fmt.Sprintf("fleetacs-add-%016x", h.Sum64())
}

// Verdict is whether one preset matched.
type Verdict struct {
	Name     string
	Revision uint64
	Matched  bool
	Reason   string
}

// Plan is what converging a device to a set of presets takes, judged from
// what is known of it.
type Plan struct {
	Verdicts []Verdict
	// Requests are the reads first (what is not known), then the writes.
	Requests []Request
	// AddTags and RemoveTags change the device's tags (no request: the
	// inventory keeps tags).
	AddTags, RemoveTags []string
	// Notes say what the plan could not do or decide, in words.
	Notes []string
}

// Converged reports whether the plan has nothing to do.
func (p *Plan) Converged() bool {
	return len(p.Requests) == 0 && len(p.AddTags) == 0 && len(p.RemoveTags) == 0
}

// Firmware finds the file of a firmware version for a device; the files
// service implements it. FileURL returns the URL a CPE downloads the file
// from, its size and its file type ("1 Firmware Upgrade Image").
type Firmware interface {
	FileURL(tenant string, d *Device, version string) (url string, size uint64, fileType string, err error)
}

// NoFirmwareNote is the note of a preset with a firmware version where no
// files service is there to find the file.
const NoFirmwareNote = "firmware needs the files service"

// Options are how a plan is made.
type Options struct {
	// Secret returns a per-device secret's value; nil shows secrets as
	// "(secret NAME)" (a dry run).
	Secret func(name string) (string, error)
	// Firmware finds firmware files; nil: a firmware version is noted
	// (NoFirmwareNote), nothing is done about it.
	Firmware Firmware
	Tenant   string
	// ParameterKey is the device's ParameterKey as its Inform reported it
	// (see AddKey).
	ParameterKey string
}

// Sort orders presets as they take precedence: higher precedence first,
// then by name.
func Sort(ps []*Preset) {
	slices.SortFunc(ps, func(a, b *Preset) int {
		if c := cmp.Compare(b.Precedence, a.Precedence); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// Matching returns the presets of set that match the device at now, in
// precedence order, with a verdict for each preset, and the parameters
// that conditions need read.
func Matching(set []*Preset, d *Device, now time.Time) (matched []*Preset, verdicts []Verdict, unknown []string) {
	sorted := slices.Clone(set)
	Sort(sorted)
	for _, p := range sorted {
		ok, why, unk := p.Match(d, now)
		verdicts = append(verdicts, Verdict{Name: p.Name, Revision: p.Revision, Matched: ok, Reason: why})
		if ok {
			matched = append(matched, p)
		}
		for _, u := range unk {
			if !slices.Contains(unknown, u) {
				unknown = append(unknown, u)
			}
		}
	}
	return matched, verdicts, unknown
}

// TagChanges returns the tags that the presets matched (in precedence
// order) add to and remove from a device of these tags: the first preset
// to name a tag decides.
func TagChanges(matched []*Preset, tags []string) (add, remove []string) {
	for _, p := range matched {
		for _, t := range p.AddTags {
			if !slices.Contains(tags, t) && !slices.Contains(add, t) && !slices.Contains(remove, t) {
				add = append(add, t)
			}
		}
		for _, t := range p.RemoveTags {
			if slices.Contains(tags, t) && !slices.Contains(add, t) && !slices.Contains(remove, t) {
				remove = append(remove, t)
			}
		}
	}
	return add, remove
}

// Converge plans the requests that bring the device to the presets that
// match it (matched, in precedence order, as Matching returns them).
func Converge(matched []*Preset, d *Device, o Options) (*Plan, error) {
	pl := &Plan{}
	var reads, attrReads []string
	var readTables []string
	spa := Request{Method: "SetParameterAttributes"}
	var spaBy []string
	spv := Request{Method: "SetParameterValues"}
	set := map[string]string{} // path -> preset that set it
	add := func(path, value, typ, by string) {
		if prev, ok := set[path]; ok {
			if prev != by {
				pl.Notes = append(pl.Notes, fmt.Sprintf("%s: preset %s yields to preset %s", path, by, prev))
			}
			return
		}
		set[path] = by
		spv.Paths = append(spv.Paths, path)
		spv.Values = append(spv.Values, value)
		spv.Types = append(spv.Types, typ)
	}
	var writes []Request
	pl.AddTags, pl.RemoveTags = TagChanges(matched, d.Tags)
	for _, p := range matched {
		for _, ps := range p.Params {
			if !d.rootOK(ps.Path) {
				continue
			}
			v, err := ps.Value.Render(&d.Fields, o.Secret)
			if err != nil {
				return nil, fmt.Errorf("preset %s: %s: %w", p.Name, ps.Path, err)
			}
			cur, known := d.Params[ps.Path]
			secret := len(ps.Value.Secrets()) > 0
			_, taken := set[ps.Path]
			switch {
			case taken:
				add(ps.Path, v, ps.Type, p.Name) // notes the conflict
			case !known && !secret:
				if !slices.Contains(reads, ps.Path) {
					reads = append(reads, ps.Path)
				}
			case secret || !cur.HasValue || !SameValue(cur.Value, v, ps.Type):
				add(ps.Path, v, ps.Type, p.Name)
			default:
				set[ps.Path] = p.Name
			}
		}
		for _, ob := range p.Objects {
			if !d.rootOK(ob.Table) {
				continue
			}
			insts, known := d.instances(ob.Table)
			if !known {
				if !slices.Contains(readTables, ob.Table) {
					readTables = append(readTables, ob.Table)
				}
				continue
			}
			keys := make([]string, len(ob.Keys))
			for i, k := range ob.Keys {
				v, err := k.Value.Render(&d.Fields, nil)
				if err != nil {
					return nil, err
				}
				keys[i] = v
			}
			var found []string
			for _, inst := range insts {
				if d.hasKeys(inst, ob.Keys, keys) {
					found = append(found, inst)
				}
			}
			keySets := make([]Set, len(ob.Keys))
			for i, k := range ob.Keys {
				keySets[i] = Set{Name: k.Name, Value: keys[i], Type: k.Type}
			}
			adopt := ""
			if len(found) == 0 && !ob.Absent && o.ParameterKey != "" && o.ParameterKey == AddKey(ob.Table, keySets) {
				// The last change the CPE confirmed was this AddObject: the
				// newest instance whose keys are empty is the one it made.
				for i := len(insts) - 1; i >= 0 && adopt == ""; i-- {
					empty := make([]string, len(keys))
					if d.hasKeys(insts[i], ob.Keys, empty) {
						adopt = insts[i]
					}
				}
			}
			reason := fmt.Sprintf("preset %s: %s instance %s", p.Name, ob.Table, keyText(ob.Keys, keys))
			switch {
			case ob.Absent:
				for _, inst := range found {
					writes = append(writes, Request{Method: "DeleteObject", Paths: []string{inst}, Reason: reason + " must not exist"})
				}
			case adopt != "":
				for _, k := range keySets {
					add(adopt+k.Name, k.Value, k.Type, p.Name)
				}
				for _, vs := range ob.Values {
					v, err := vs.Value.Render(&d.Fields, o.Secret)
					if err != nil {
						return nil, fmt.Errorf("preset %s: %s%s: %w", p.Name, ob.Table, vs.Name, err)
					}
					add(adopt+vs.Name, v, vs.Type, p.Name)
				}
			case len(found) == 0:
				r := Request{Method: "AddObject", Paths: []string{ob.Table}, Reason: reason + " must exist", Table: ob.Table, Keys: keySets}
				for _, k := range keySets {
					r.Values = append(r.Values, k.Name+"="+k.Value)
					r.Sets = append(r.Sets, k)
				}
				for _, vs := range ob.Values {
					v, err := vs.Value.Render(&d.Fields, o.Secret)
					if err != nil {
						return nil, fmt.Errorf("preset %s: %s%s: %w", p.Name, ob.Table, vs.Name, err)
					}
					r.Values = append(r.Values, vs.Name+"="+v)
					r.Sets = append(r.Sets, Set{Name: vs.Name, Value: v, Type: vs.Type})
				}
				writes = append(writes, r)
			default:
				for _, vs := range ob.Values {
					v, err := vs.Value.Render(&d.Fields, o.Secret)
					if err != nil {
						return nil, fmt.Errorf("preset %s: %s%s: %w", p.Name, ob.Table, vs.Name, err)
					}
					path := found[0] + vs.Name
					cur, ok := d.Params[path]
					if len(vs.Value.Secrets()) > 0 || !ok || !cur.HasValue || !SameValue(cur.Value, v, vs.Type) {
						add(path, v, vs.Type, p.Name)
					}
				}
			}
		}
		for _, a := range p.Attributes {
			if !d.rootOK(a.Path) {
				continue
			}
			if _, taken := set["attr:"+a.Path]; taken {
				continue
			}
			set["attr:"+a.Path] = p.Name
			cur, known := d.Params[a.Path]
			// A notification alone, on one parameter, is compared with
			// what the CPE reports (read first when unknown); an access
			// list (which GetParameterAttributes reports too, but CPEs
			// differ on) and a partial path are set.
			if a.Notification >= 0 && !a.SetAccessList && !strings.HasSuffix(a.Path, ".") {
				if !known || cur.Notification < 0 {
					if !slices.Contains(attrReads, a.Path) {
						attrReads = append(attrReads, a.Path)
					}
					continue
				}
				if cur.Notification == a.Notification {
					continue
				}
			}
			spa.Paths = append(spa.Paths, a.Path)
			spa.Attributes = append(spa.Attributes, a)
			if !slices.Contains(spaBy, p.Name) {
				spaBy = append(spaBy, p.Name)
			}
		}
		if p.Firmware != "" && p.Firmware != d.SoftwareVersion {
			if _, taken := set["firmware"]; taken {
				continue
			}
			set["firmware"] = p.Name
			if o.Firmware == nil {
				pl.Notes = append(pl.Notes, fmt.Sprintf("preset %s: firmware %s: %s; nothing is done about it", p.Name, p.Firmware, NoFirmwareNote))
				continue
			}
			url, size, ft, err := o.Firmware.FileURL(o.Tenant, d, p.Firmware)
			if err != nil {
				pl.Notes = append(pl.Notes, fmt.Sprintf("preset %s: firmware %s: %v", p.Name, p.Firmware, err))
				continue
			}
			writes = append(writes, Request{Method: "Download", Paths: []string{url}, Values: []string{ft, strconv.FormatUint(size, 10)},
				Reason: fmt.Sprintf("preset %s: firmware %s (runs %q)", p.Name, p.Firmware, d.SoftwareVersion)})
		}
	}
	if len(reads) > 0 {
		pl.Requests = append(pl.Requests, Request{Method: "GetParameterValues", Paths: reads, Reason: "not known yet: read before deciding"})
	}
	for _, t := range readTables {
		pl.Requests = append(pl.Requests, Request{Method: "GetParameterNames", Paths: []string{t}, Reason: "instances not known yet: read before adding"})
	}
	if len(attrReads) > 0 {
		pl.Requests = append(pl.Requests, Request{Method: "GetParameterAttributes", Paths: attrReads, Reason: "attributes not known yet: read before deciding"})
	}
	if len(spv.Paths) > 0 {
		spv.Reason = "parameter values the presets set: " + presetNames(set, spv.Paths)
		pl.Requests = append(pl.Requests, spv)
	}
	pl.Requests = append(pl.Requests, writes...)
	if len(spa.Paths) > 0 {
		spa.Reason = "attributes the presets set: " + strings.Join(spaBy, ", ")
		pl.Requests = append(pl.Requests, spa)
	}
	return pl, nil
}

func presetNames(set map[string]string, paths []string) string {
	var names []string
	for _, p := range paths {
		if n := set[p]; !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

func keyText(specs []RelSpec, vals []string) string {
	parts := make([]string, len(specs))
	for i, k := range specs {
		parts[i] = fmt.Sprintf("%s=%q", k.Name, vals[i])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// rootOK reports whether path belongs to the device's data model (when
// known): a preset may set paths of both roots.
func (d *Device) rootOK(path string) bool {
	return d.Root == "" || strings.HasPrefix(path, d.Root)
}

// instances returns the instance paths ("Device.WiFi.SSID.3.") of a table,
// sorted by number, and whether the table is known at all.
func (d *Device) instances(table string) ([]string, bool) {
	_, known := d.Params[table]
	var nums []int
	for path := range d.Params {
		rest, ok := strings.CutPrefix(path, table)
		if !ok || rest == "" {
			continue
		}
		known = true
		seg, _, _ := strings.Cut(rest, ".")
		n, err := strconv.Atoi(seg)
		if err != nil || n <= 0 || slices.Contains(nums, n) {
			continue
		}
		nums = append(nums, n)
	}
	slices.Sort(nums)
	out := make([]string, len(nums))
	for i, n := range nums {
		out[i] = table + strconv.Itoa(n) + "."
	}
	return out, known
}

func (d *Device) hasKeys(inst string, keys []RelSpec, vals []string) bool {
	for i, k := range keys {
		v, ok := d.Params[inst+k.Name]
		if !ok || !v.HasValue || !SameValue(v.Value, vals[i], k.Type) {
			return false
		}
	}
	return true
}

// SameValue compares a reported value with a desired one of type typ:
// booleans by truth ("1" is "true"), integers by number, the rest byte for
// byte.
func SameValue(have, want, typ string) bool {
	if have == want {
		return true
	}
	switch typ {
	case "xsd:boolean":
		hb, ok1 := parseBool(have)
		wb, ok2 := parseBool(want)
		return ok1 && ok2 && hb == wb
	case "xsd:int", "xsd:long", "xsd:unsignedInt", "xsd:unsignedLong":
		h, err1 := strconv.ParseInt(strings.TrimSpace(have), 10, 64)
		w, err2 := strconv.ParseInt(strings.TrimSpace(want), 10, 64)
		return err1 == nil && err2 == nil && h == w
	}
	return false
}

func parseBool(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true":
		return true, true
	case "0", "false":
		return false, true
	}
	return false, false
}
