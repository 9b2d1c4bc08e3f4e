// Package provisioning is the logic of presets (docs/provisioning.md) that
// the API and the session workers share: validating a preset, compiling it
// (globs, templates, schedule), matching it against a device, merging the
// desired states of the presets that match, and planning the requests that
// converge a device to them. It does no I/O.
package provisioning

import (
	"fmt"
	"strings"
	"unicode/utf8"

	provisioningv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
)

// Limits of a preset.
const (
	MaxNameLength        = 64
	MaxDescription       = 1024
	MaxEvents            = 16
	MaxTags              = 32
	MaxTagLength         = 64
	MaxGlobLength        = 256
	MaxConditions        = 16
	MaxParameters        = 256
	MaxObjects           = 64
	MaxObjectParameters  = 64
	MaxAttributes        = 256
	MaxAccessList        = 8
	MaxPathLength        = 1024
	MaxValueLength       = 4096
	MaxFirmwareVersion   = 128
	MaxPrecedence        = 1000
	maxEventCodeLength   = 64
	maxAccessEntryLength = 64
)

// FieldError is a preset field that breaks a rule; Field names it as the
// API does ("desired.parameters[2].value").
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func bad(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ValidName checks a preset or secret name: 1 to 64 characters of
// [a-z0-9._-], starting with a letter or digit.
func ValidName(name string) error {
	if name == "" || len(name) > MaxNameLength {
		return fmt.Errorf("want 1 to %d characters", MaxNameLength)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
		if !ok {
			return fmt.Errorf("character %q not allowed (want [a-z0-9._-], starting with a letter or digit)", c)
		}
	}
	return nil
}

func validTag(tag string) error {
	if tag == "" || len(tag) > MaxTagLength {
		return fmt.Errorf("tag %q: want 1 to %d characters", tag, MaxTagLength)
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:/-_", c) >= 0) {
			return fmt.Errorf("tag %q: character %q not allowed", tag, c)
		}
	}
	return nil
}

// validPath checks a parameter path (object when it ends with ".").
func validPath(p string, object bool) error {
	if p == "" || len(p) > MaxPathLength {
		return fmt.Errorf("want 1 to %d bytes", MaxPathLength)
	}
	if !strings.HasPrefix(p, "Device.") && !strings.HasPrefix(p, "InternetGatewayDevice.") {
		return fmt.Errorf("%q: must start with Device. or InternetGatewayDevice.", p)
	}
	if object != strings.HasSuffix(p, ".") {
		if object {
			return fmt.Errorf("%q: an object path ends with \".\"", p)
		}
		return fmt.Errorf("%q: a parameter path does not end with \".\"", p)
	}
	return validSegments(strings.TrimSuffix(p, "."))
}

func validSegments(p string) error {
	for seg := range strings.SplitSeq(p, ".") {
		if seg == "" {
			return fmt.Errorf("%q: empty segment", p)
		}
		for _, r := range seg {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				return fmt.Errorf("%q: character %q not allowed in a path", p, r)
			}
		}
	}
	return nil
}

// validRelative checks a parameter name relative to an object instance.
func validRelative(name string) error {
	if name == "" || len(name) > 256 || strings.HasSuffix(name, ".") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("%q: want a relative parameter name (\"SSID\", \"Security.KeyPassphrase\")", name)
	}
	return validSegments(name)
}

var xsdTypes = map[string]bool{
	"xsd:string": true, "xsd:int": true, "xsd:unsignedInt": true, "xsd:long": true, "xsd:unsignedLong": true,
	"xsd:boolean": true, "xsd:dateTime": true, "xsd:base64": true, "xsd:hexBinary": true,
}

func validType(t string) error {
	if t == "" || xsdTypes[t] {
		return nil
	}
	return fmt.Errorf("%q: want one of xsd:string, xsd:int, xsd:unsignedInt, xsd:long, xsd:unsignedLong, xsd:boolean, xsd:dateTime, xsd:base64, xsd:hexBinary", t)
}

func validText(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("longer than %d bytes", max)
	}
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("invalid UTF-8 or NUL")
	}
	return nil
}

// Validate checks a preset as an API caller gave it and returns the first
// broken rule as a *FieldError. Output-only fields are not checked.
func Validate(p *provisioningv1.Preset) error {
	_, err := Compile(p)
	return err
}
