package provisioning

import (
	"fmt"
	"slices"
	"strings"
	"time"

	provisioningv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
)

// Preset is a compiled, valid preset.
type Preset struct {
	Name       string
	Revision   uint64
	Precedence int32
	Enabled    bool

	events                          []string // event numbers or codes
	tags, withoutTags               []string
	oui, productClass, manu, serial string // globs; "" any
	root                            string
	conds                           []condition
	sched                           *schedule

	Params     []ParamSpec
	Objects    []ObjectSpec
	Attributes []AttributeSpec
	AddTags    []string
	RemoveTags []string
	Firmware   string
}

type condition struct {
	path  string
	op    provisioningv1.ConditionOp
	value string
}

type schedule struct {
	start, end int // minutes of the day
	loc        *time.Location
	days       uint8 // bit per weekday; 0 every day
}

// ParamSpec is one desired parameter value.
type ParamSpec struct {
	Path  string
	Value Template
	Type  string
	// Raw is the template as written.
	Raw string
}

// ObjectSpec is one desired object instance.
type ObjectSpec struct {
	// Table is the table path ending with "." ("Device.WiFi.SSID.").
	Table  string
	Keys   []RelSpec
	Values []RelSpec
	Absent bool
}

// RelSpec is a parameter relative to an object instance.
type RelSpec struct {
	Name  string
	Value Template
	Type  string
	Raw   string
}

// AttributeSpec is one desired set of attributes.
type AttributeSpec struct {
	Path string
	// Notification is the CWMP value (0, 1, 2) or -1 to leave it.
	Notification  int
	SetAccessList bool
	AccessList    []string
}

// Compile validates a preset and compiles it. Errors are *FieldError.
func Compile(p *provisioningv1.Preset) (*Preset, error) {
	if p == nil {
		return nil, bad("preset", "required")
	}
	if err := ValidName(p.GetName()); err != nil {
		return nil, bad("preset.name", "%v", err)
	}
	if p.GetPrecedence() < -MaxPrecedence || p.GetPrecedence() > MaxPrecedence {
		return nil, bad("preset.precedence", "want -%d to %d", MaxPrecedence, MaxPrecedence)
	}
	if err := validText(p.GetDescription(), MaxDescription); err != nil {
		return nil, bad("preset.description", "%v", err)
	}
	c := &Preset{Name: p.GetName(), Revision: p.GetRevision(), Precedence: p.GetPrecedence(), Enabled: p.Enabled == nil || p.GetEnabled()}
	if err := c.compileMatch(p.GetMatch()); err != nil {
		return nil, err
	}
	if err := c.compileDesired(p.GetDesired()); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Preset) compileMatch(m *provisioningv1.PresetMatch) error {
	if m == nil {
		return nil
	}
	const f = "preset.match."
	if len(m.GetEvents()) > MaxEvents {
		return bad(f+"events", "at most %d", MaxEvents)
	}
	for i, e := range m.GetEvents() {
		e = strings.TrimSpace(e)
		if e == "" || len(e) > maxEventCodeLength || validText(e, maxEventCodeLength) != nil {
			return bad(fmt.Sprintf("%sevents[%d]", f, i), "want an event code of 1 to %d bytes (\"0 BOOTSTRAP\", \"2 PERIODIC\")", maxEventCodeLength)
		}
		c.events = append(c.events, EventNumber(e))
	}
	for name, tags := range map[string][]string{"tags": m.GetTags(), "without_tags": m.GetWithoutTags()} {
		if len(tags) > MaxTags {
			return bad(f+name, "at most %d", MaxTags)
		}
		for i, t := range tags {
			if err := validTag(t); err != nil {
				return bad(fmt.Sprintf("%s%s[%d]", f, name, i), "%v", err)
			}
		}
	}
	c.tags, c.withoutTags = slices.Clone(m.GetTags()), slices.Clone(m.GetWithoutTags())
	for _, g := range []struct {
		name string
		v    string
		dst  *string
	}{{"oui", strings.ToUpper(m.GetOui()), &c.oui}, {"product_class", m.GetProductClass(), &c.productClass},
		{"manufacturer", m.GetManufacturer(), &c.manu}, {"serial_number", m.GetSerialNumber(), &c.serial}} {
		if err := validText(g.v, MaxGlobLength); err != nil {
			return bad(f+g.name, "%v", err)
		}
		*g.dst = g.v
	}
	switch m.GetDataModelRoot() {
	case "", "Device.", "InternetGatewayDevice.":
		c.root = m.GetDataModelRoot()
	default:
		return bad(f+"data_model_root", "want \"Device.\", \"InternetGatewayDevice.\" or empty")
	}
	if len(m.GetParameters()) > MaxConditions {
		return bad(f+"parameters", "at most %d conditions", MaxConditions)
	}
	for i, pc := range m.GetParameters() {
		field := fmt.Sprintf("%sparameters[%d]", f, i)
		if err := validPath(pc.GetPath(), false); err != nil {
			return bad(field+".path", "%v", err)
		}
		switch pc.GetOp() {
		case provisioningv1.ConditionOp_CONDITION_OP_EQUALS, provisioningv1.ConditionOp_CONDITION_OP_NOT_EQUALS:
			if err := validText(pc.GetValue(), MaxValueLength); err != nil {
				return bad(field+".value", "%v", err)
			}
		case provisioningv1.ConditionOp_CONDITION_OP_EXISTS, provisioningv1.ConditionOp_CONDITION_OP_NOT_EXISTS:
			if pc.GetValue() != "" {
				return bad(field+".value", "EXISTS and NOT_EXISTS take no value")
			}
		default:
			return bad(field+".op", "want EQUALS, NOT_EQUALS, EXISTS or NOT_EXISTS")
		}
		c.conds = append(c.conds, condition{path: pc.GetPath(), op: pc.GetOp(), value: pc.GetValue()})
	}
	if s := m.GetSchedule(); s != nil {
		sc, err := compileSchedule(s)
		if err != nil {
			return err
		}
		c.sched = sc
	}
	return nil
}

func clock(s string) (int, bool) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, false
	}
	return t.Hour()*60 + t.Minute(), true
}

func compileSchedule(s *provisioningv1.Schedule) (*schedule, error) {
	const f = "preset.match.schedule."
	var sc schedule
	var ok bool
	if sc.start, ok = clock(s.GetStart()); !ok {
		return nil, bad(f+"start", "want HH:MM")
	}
	if sc.end, ok = clock(s.GetEnd()); !ok {
		return nil, bad(f+"end", "want HH:MM")
	}
	if sc.start == sc.end {
		return nil, bad(f+"end", "equals start: the window would be empty")
	}
	sc.loc = time.UTC
	if tz := s.GetTimeZone(); tz != "" {
		if len(tz) > 64 || strings.Contains(tz, "..") {
			return nil, bad(f+"time_zone", "want an IANA time zone (\"Europe/Paris\")")
		}
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return nil, bad(f+"time_zone", "unknown time zone %q", tz)
		}
		sc.loc = loc
	}
	for i, d := range s.GetWeekdays() {
		if d < 0 || d > 6 {
			return nil, bad(fmt.Sprintf("%sweekdays[%d]", f, i), "want 0 (Sunday) to 6 (Saturday)")
		}
		sc.days |= 1 << d
	}
	return &sc, nil
}

func (c *Preset) compileDesired(d *provisioningv1.DesiredState) error {
	if d == nil {
		return nil
	}
	const f = "preset.desired."
	if len(d.GetParameters()) > MaxParameters {
		return bad(f+"parameters", "at most %d", MaxParameters)
	}
	seen := map[string]bool{}
	for i, pv := range d.GetParameters() {
		field := fmt.Sprintf("%sparameters[%d]", f, i)
		if err := validPath(pv.GetPath(), false); err != nil {
			return bad(field+".path", "%v", err)
		}
		if seen[pv.GetPath()] {
			return bad(field+".path", "%q is set twice", pv.GetPath())
		}
		seen[pv.GetPath()] = true
		t, err := compileValue(pv.GetValue(), pv.GetType())
		if err != nil {
			return bad(field+err.(*FieldError).Field, "%s", err.(*FieldError).Msg)
		}
		c.Params = append(c.Params, ParamSpec{Path: pv.GetPath(), Value: t, Type: typeOr(pv.GetType()), Raw: pv.GetValue()})
	}
	if len(d.GetObjects()) > MaxObjects {
		return bad(f+"objects", "at most %d", MaxObjects)
	}
	for i, o := range d.GetObjects() {
		field := fmt.Sprintf("%sobjects[%d]", f, i)
		if err := validPath(o.GetTable(), true); err != nil {
			return bad(field+".table", "%v", err)
		}
		if len(o.GetKeys()) == 0 {
			return bad(field+".keys", "at least one key parameter identifies the instance")
		}
		if len(o.GetKeys())+len(o.GetValues()) > MaxObjectParameters {
			return bad(field, "at most %d keys and values", MaxObjectParameters)
		}
		if o.GetAbsent() && len(o.GetValues()) > 0 {
			return bad(field+".values", "an absent instance has no values")
		}
		spec := ObjectSpec{Table: o.GetTable(), Absent: o.GetAbsent()}
		names := map[string]bool{}
		for kind, list := range map[string][]*provisioningv1.ObjectParameter{"keys": o.GetKeys(), "values": o.GetValues()} {
			for j, op := range list {
				ff := fmt.Sprintf("%s.%s[%d]", field, kind, j)
				if err := validRelative(op.GetName()); err != nil {
					return bad(ff+".name", "%v", err)
				}
				if names[op.GetName()] {
					return bad(ff+".name", "%q is named twice", op.GetName())
				}
				names[op.GetName()] = true
				t, err := compileValue(op.GetValue(), op.GetType())
				if err != nil {
					return bad(ff+err.(*FieldError).Field, "%s", err.(*FieldError).Msg)
				}
				if kind == "keys" && len(t.Secrets()) > 0 {
					return bad(ff+".value", "a key cannot be a secret: FleetACS could not read it back")
				}
				r := RelSpec{Name: op.GetName(), Value: t, Type: typeOr(op.GetType()), Raw: op.GetValue()}
				if kind == "keys" {
					spec.Keys = append(spec.Keys, r)
				} else {
					spec.Values = append(spec.Values, r)
				}
			}
		}
		// Map iteration order is random: keep keys and values by name.
		slices.SortFunc(spec.Keys, func(a, b RelSpec) int { return strings.Compare(a.Name, b.Name) })
		slices.SortFunc(spec.Values, func(a, b RelSpec) int { return strings.Compare(a.Name, b.Name) })
		c.Objects = append(c.Objects, spec)
	}
	if len(d.GetAttributes()) > MaxAttributes {
		return bad(f+"attributes", "at most %d", MaxAttributes)
	}
	for i, a := range d.GetAttributes() {
		field := fmt.Sprintf("%sattributes[%d]", f, i)
		if err := validPath(a.GetPath(), strings.HasSuffix(a.GetPath(), ".")); err != nil {
			return bad(field+".path", "%v", err)
		}
		spec := AttributeSpec{Path: a.GetPath(), Notification: -1, SetAccessList: a.GetSetAccessList()}
		switch a.GetNotification() {
		case provisioningv1.Notification_NOTIFICATION_UNSPECIFIED:
		case provisioningv1.Notification_NOTIFICATION_OFF:
			spec.Notification = 0
		case provisioningv1.Notification_NOTIFICATION_PASSIVE:
			spec.Notification = 1
		case provisioningv1.Notification_NOTIFICATION_ACTIVE:
			spec.Notification = 2
		default:
			return bad(field+".notification", "unknown value %d", a.GetNotification())
		}
		if len(a.GetAccessList()) > MaxAccessList {
			return bad(field+".access_list", "at most %d entries", MaxAccessList)
		}
		if !spec.SetAccessList && len(a.GetAccessList()) > 0 {
			return bad(field+".set_access_list", "access_list is given: set set_access_list too")
		}
		for j, e := range a.GetAccessList() {
			if e == "" || validText(e, maxAccessEntryLength) != nil {
				return bad(fmt.Sprintf("%s.access_list[%d]", field, j), "want 1 to %d bytes", maxAccessEntryLength)
			}
		}
		if spec.Notification < 0 && !spec.SetAccessList {
			return bad(field, "sets nothing: give a notification or an access list")
		}
		spec.AccessList = slices.Clone(a.GetAccessList())
		c.Attributes = append(c.Attributes, spec)
	}
	for name, tags := range map[string][]string{"add_tags": d.GetAddTags(), "remove_tags": d.GetRemoveTags()} {
		if len(tags) > MaxTags {
			return bad(f+name, "at most %d", MaxTags)
		}
		for i, t := range tags {
			if err := validTag(t); err != nil {
				return bad(fmt.Sprintf("%s%s[%d]", f, name, i), "%v", err)
			}
		}
	}
	for _, t := range d.GetAddTags() {
		if slices.Contains(d.GetRemoveTags(), t) {
			return bad(f+"remove_tags", "tag %q is also added", t)
		}
	}
	c.AddTags, c.RemoveTags = slices.Clone(d.GetAddTags()), slices.Clone(d.GetRemoveTags())
	if v := d.GetFirmwareVersion(); v != "" {
		if err := validText(v, MaxFirmwareVersion); err != nil || strings.TrimSpace(v) != v {
			return bad(f+"firmware_version", "want 1 to %d bytes without surrounding spaces", MaxFirmwareVersion)
		}
		c.Firmware = v
	}
	return nil
}

func typeOr(t string) string {
	if t == "" {
		return "xsd:string"
	}
	return t
}

// compileValue checks a value template and its type; the FieldError's
// Field is the suffix (".value", ".type").
func compileValue(v, typ string) (Template, error) {
	if err := validType(typ); err != nil {
		return Template{}, &FieldError{Field: ".type", Msg: err.Error()}
	}
	if err := validText(v, MaxValueLength); err != nil {
		return Template{}, &FieldError{Field: ".value", Msg: err.Error()}
	}
	t, err := ParseTemplate(v)
	if err != nil {
		return Template{}, &FieldError{Field: ".value", Msg: err.Error()}
	}
	return t, nil
}

// NeedsTags reports whether matching or applying the preset needs the
// device's tags.
func (c *Preset) NeedsTags() bool {
	return len(c.tags) > 0 || len(c.withoutTags) > 0 || len(c.AddTags) > 0 || len(c.RemoveTags) > 0
}

// Session reports whether the preset depends on the session (its Inform
// events or a schedule) rather than on the device alone.
func (c *Preset) Session() bool { return len(c.events) > 0 || c.sched != nil }

// ConditionPaths are the parameters the preset's conditions read.
func (c *Preset) ConditionPaths() []string {
	out := make([]string, len(c.conds))
	for i, cd := range c.conds {
		out[i] = cd.path
	}
	return out
}

// ReadPaths are what a session reads of a device before it converges it
// to the preset, for a data-model root ("" both): its parameters, its
// tables (partial paths) and its attributes' paths.
func (c *Preset) ReadPaths(root string) (values, attributes []string) {
	ok := func(p string) bool { return root == "" || strings.HasPrefix(p, root) }
	for _, p := range c.Params {
		if ok(p.Path) && !slices.Contains(values, p.Path) {
			values = append(values, p.Path)
		}
	}
	for _, o := range c.Objects {
		if ok(o.Table) && !slices.Contains(values, o.Table) {
			values = append(values, o.Table)
		}
	}
	for _, a := range c.Attributes {
		if ok(a.Path) && !slices.Contains(attributes, a.Path) {
			attributes = append(attributes, a.Path)
		}
	}
	return values, attributes
}

// SessionOpen reports whether the preset depends on the session and the
// session opens it: the Inform carries one of its events (when it names
// any) and its schedule's window is open (when it has one).
func (c *Preset) SessionOpen(events []string, now time.Time) bool {
	if !c.Enabled || !c.Session() {
		return false
	}
	if len(c.events) > 0 && !slices.ContainsFunc(events, func(e string) bool { return slices.Contains(c.events, EventNumber(e)) }) {
		return false
	}
	return c.sched == nil || c.sched.open(now)
}

// SecretNames are the per-device secrets the preset's values use.
func (c *Preset) SecretNames() []string {
	var out []string
	add := func(t Template) {
		for _, n := range t.Secrets() {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	for _, p := range c.Params {
		add(p.Value)
	}
	for _, o := range c.Objects {
		for _, v := range o.Values {
			add(v.Value)
		}
	}
	return out
}
