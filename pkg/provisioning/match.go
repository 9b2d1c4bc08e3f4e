package provisioning

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	provisioningv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
)

// Device is what matching and planning know of a device.
type Device struct {
	Fields Fields
	// Root is "Device." or "InternetGatewayDevice.", "" if unknown.
	Root string
	Tags []string
	// Events are the session's Inform events.
	Events []string
	// SoftwareVersion is DeviceInfo.SoftwareVersion as last reported.
	SoftwareVersion string
	// Params are the parameters and objects known of the device, by
	// path (objects end with ".").
	Params map[string]Param
}

// Param is one known node of the device's tree.
type Param struct {
	Value    string
	Type     string
	HasValue bool
	// Notification is the CWMP value, -1 when unknown.
	Notification int
}

// EventNumber is the part of an event code events are matched by: the
// number of a standard code ("0 BOOTSTRAP" -> "0"), the whole code of a
// vendor or "M " one.
func EventNumber(code string) string {
	code = strings.TrimSpace(code)
	num, _, _ := strings.Cut(code, " ")
	if num != "" && strings.Trim(num, "0123456789") == "" {
		return num
	}
	return code
}

// Match reports whether the preset applies to the device's session at now,
// and why not. unknown lists parameters of its conditions the device view
// does not hold: the preset does not match until they are read.
func (p *Preset) Match(d *Device, now time.Time) (ok bool, why string, unknown []string) {
	if !p.Enabled {
		return false, "disabled", nil
	}
	if len(p.events) > 0 && !slices.ContainsFunc(d.Events, func(e string) bool { return slices.Contains(p.events, EventNumber(e)) }) {
		return false, "the Inform carries none of its events", nil
	}
	for _, t := range p.tags {
		if !slices.Contains(d.Tags, t) {
			return false, fmt.Sprintf("no tag %q", t), nil
		}
	}
	for _, t := range p.withoutTags {
		if slices.Contains(d.Tags, t) {
			return false, fmt.Sprintf("tag %q", t), nil
		}
	}
	for _, g := range []struct{ name, glob, v string }{{"OUI", p.oui, strings.ToUpper(d.Fields.OUI)}, {"ProductClass", p.productClass, d.Fields.ProductClass},
		{"Manufacturer", p.manu, d.Fields.Manufacturer}, {"SerialNumber", p.serial, d.Fields.SerialNumber}} {
		if g.glob != "" && !Glob(g.glob, g.v) {
			return false, fmt.Sprintf("%s %q does not match %q", g.name, g.v, g.glob), nil
		}
	}
	if p.root != "" && d.Root != p.root {
		return false, fmt.Sprintf("data-model root %q", d.Root), nil
	}
	if p.sched != nil && !p.sched.open(now) {
		return false, "outside its schedule", nil
	}
	for _, c := range p.conds {
		v, known := d.Params[c.path]
		if !known && c.op != provisioningv1.ConditionOp_CONDITION_OP_NOT_EXISTS {
			unknown = append(unknown, c.path)
			continue
		}
		switch c.op {
		case provisioningv1.ConditionOp_CONDITION_OP_EQUALS:
			if !v.HasValue || v.Value != c.value {
				return false, fmt.Sprintf("%s is not %q", c.path, c.value), nil
			}
		case provisioningv1.ConditionOp_CONDITION_OP_NOT_EQUALS:
			if !v.HasValue || v.Value == c.value {
				return false, fmt.Sprintf("%s is %q", c.path, c.value), nil
			}
		case provisioningv1.ConditionOp_CONDITION_OP_NOT_EXISTS:
			if known {
				return false, fmt.Sprintf("%s exists", c.path), nil
			}
		}
	}
	if len(unknown) > 0 {
		return false, "its conditions name parameters not known yet: " + strings.Join(unknown, ", "), unknown
	}
	return true, "", nil
}

func (s *schedule) open(now time.Time) bool {
	t := now.In(s.loc)
	m := t.Hour()*60 + t.Minute()
	day := t.Weekday()
	var in bool
	if s.start < s.end {
		in = m >= s.start && m < s.end
	} else {
		// Across midnight: the part after midnight belongs to the window
		// that opened the day before.
		switch {
		case m >= s.start:
			in = true
		case m < s.end:
			in = true
			day = (day + 6) % 7
		}
	}
	return in && (s.days == 0 || s.days&(1<<day) != 0)
}

// Glob matches s against a pattern where "*" is any run of characters and
// "?" one byte; everything else is literal.
func Glob(pattern, s string) bool {
	// Iterative matching with one backtrack point: linear in practice,
	// never exponential.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// Markers of a presets fingerprint as sessions record it
// (docs/provisioning.md, "Convergence"): Fingerprint's "s<set
// revision>t<tags digest>", then FingerprintRefused when the CPE refused
// part of what the presets ask, then FingerprintFirmwareWait and "<unix
// time>.<attempt>" while a preset's firmware version is awaited.
const (
	FingerprintRefused      = "!"
	FingerprintFirmwareWait = "~fw"
)

// Fingerprint is what a session records when the device converged to the
// preset set of revision rev, matched with these tags (the device's tags
// after the session's own tag changes): which presets match depends on
// both, so a fingerprint is the device's only while its tags are the ones
// it names. A session that matched with tags an operator changed while it
// ran thus records a fingerprint that is not the device's (see
// FingerprintCovers).
func Fingerprint(rev uint64, tags []string) string {
	return SetFingerprint(rev) + TagsDigest(tags)
}

// SetFingerprint is the set part of Fingerprint: "s<rev>".
func SetFingerprint(rev uint64) string { return "s" + strconv.FormatUint(rev, 10) }

// TagsDigest is the tags part of Fingerprint: "t" and 16 hex digits of a
// SHA-256 of the tags as a set (order and duplicates do not count).
func TagsDigest(tags []string) string {
	d := tagsDigest(tags)
	return "t" + string(d[:])
}

// tagsDigest is TagsDigest's hex digits, without allocating for the tags
// of most devices.
func tagsDigest(tags []string) [16]byte {
	if !slices.IsSorted(tags) {
		tags = slices.Sorted(slices.Values(tags))
	}
	var b [256]byte
	buf := b[:0]
	for i, t := range tags {
		if i > 0 && t == tags[i-1] {
			continue
		}
		// Length-prefixed: no two sets hash the same input.
		buf = binary.AppendUvarint(buf, uint64(len(t)))
		buf = append(buf, t...)
	}
	sum := sha256.Sum256(buf)
	var out [16]byte
	hex.Encode(out[:], sum[:8])
	return out
}

// IsFingerprint reports whether fp (without its markers) is Fingerprint
// of the set whose SetFingerprint is set, and of these tags; it allocates
// nothing, for the start of every session.
func IsFingerprint(fp, set string, tags []string) bool {
	if len(fp) != len(set)+17 || fp[:len(set)] != set || fp[len(set)] != 't' {
		return false
	}
	d := tagsDigest(tags)
	return fp[len(set)+1:] == string(d[:])
}

// FingerprintConverged reports whether a recorded presets fingerprint
// says that the device converged to its preset set: recorded, nothing
// refused, no firmware awaited. It does not say with which tags: see
// FingerprintCovers.
func FingerprintConverged(fp string) bool {
	return strings.HasPrefix(fp, "s") && len(fp) > 1 &&
		!strings.Contains(fp, FingerprintRefused) && !strings.Contains(fp, FingerprintFirmwareWait)
}

// FingerprintCovers reports whether a recorded fingerprint says that the
// device converged to its preset set with exactly these tags, its current
// ones: FingerprintConverged, and a tags digest of these tags. A
// fingerprint without a digest (recorded before digests were) covers no
// tags.
func FingerprintCovers(fp string, tags []string) bool {
	if !FingerprintConverged(fp) {
		return false
	}
	i := strings.IndexByte(fp, 't')
	return i > 1 && IsFingerprint(fp, fp[:i], tags)
}

// TagsAfter returns tags with add added and remove removed, sorted and
// without duplicates: a device's tags after a session's changes.
func TagsAfter(tags, add, remove []string) []string {
	out := make([]string, 0, len(tags)+len(add))
	for _, t := range tags {
		if !slices.Contains(remove, t) {
			out = append(out, t)
		}
	}
	for _, t := range add {
		if !slices.Contains(remove, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
