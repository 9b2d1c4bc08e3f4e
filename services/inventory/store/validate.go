package store

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// Limits every adapter enforces, so that a document that one backend accepts
// the other accepts too.
const (
	MaxTenantLength = 64
	MaxIDLength     = 512
	// MaxPathLength is generous: TR-069 caps names at 256 characters, but
	// some CPEs exceed it and losing the whole diff over one name is worse.
	MaxPathLength = 1024
	// MaxPathSegments bounds nesting: the MongoDB adapter stores the tree
	// nested by segment, and MongoDB documents nest at most 100 levels.
	MaxPathSegments = 32
	MaxTypeLength   = 256
	// MaxValueLength keeps one device document well below MongoDB's 16 MiB.
	MaxValueLength = 1 << 20
	MaxTagLength   = 64
	// MaxCredentialLength bounds the user name and the password an
	// operator sets for a CPE (SetCPECredentials). TR-181 gives
	// ManagementServer.Username and Password 256 characters.
	MaxCredentialLength = 256
)

// ValidateTenant checks a tenant id: 1 to MaxTenantLength characters from
// [A-Za-z0-9_.-].
func ValidateTenant(tenant string) error {
	if tenant == "" || len(tenant) > MaxTenantLength {
		return fmt.Errorf("tenant %q: want 1 to %d characters: %w", tenant, MaxTenantLength, ErrInvalidArgument)
	}
	for i := 0; i < len(tenant); i++ {
		c := tenant[i]
		if !isIDSafe(c) && c != '-' && c != '.' {
			return fmt.Errorf("tenant %q: character %q not allowed: %w", tenant, c, ErrInvalidArgument)
		}
	}
	return nil
}

// ValidateID checks a device id: 1 to MaxIDLength bytes of valid UTF-8
// without control characters. Ids made by MakeID always pass.
func ValidateID(id string) error {
	if id == "" || len(id) > MaxIDLength {
		return fmt.Errorf("device id: want 1 to %d bytes: %w", MaxIDLength, ErrInvalidArgument)
	}
	if !utf8.ValidString(id) || strings.IndexFunc(id, unicode.IsControl) >= 0 {
		return fmt.Errorf("device id %q: invalid UTF-8 or control character: %w", id, ErrInvalidArgument)
	}
	return nil
}

// ValidatePath checks a parameter or object path: valid UTF-8, no NUL, no
// empty segment ("A..B", ".A"), at most MaxPathLength bytes and
// MaxPathSegments segments. A trailing "." marks an object. Session code
// uses it to drop a hostile CPE's junk names before they reach a diff.
func ValidatePath(path string) error {
	if path == "" || len(path) > MaxPathLength {
		return fmt.Errorf("path: want 1 to %d bytes: %w", MaxPathLength, ErrInvalidArgument)
	}
	if !utf8.ValidString(path) || strings.IndexByte(path, 0) >= 0 {
		return fmt.Errorf("path %q: invalid UTF-8 or NUL: %w", path, ErrInvalidArgument)
	}
	segments := 0
	start := 0
	for i := 0; i <= len(path); i++ {
		if i < len(path) && path[i] != '.' {
			continue
		}
		if i == start {
			if i == len(path) && i > 0 {
				break // trailing "." of an object path
			}
			return fmt.Errorf("path %q: empty segment: %w", path, ErrInvalidArgument)
		}
		segments++
		start = i + 1
	}
	if segments > MaxPathSegments {
		return fmt.Errorf("path %q: more than %d segments: %w", path, MaxPathSegments, ErrInvalidArgument)
	}
	return nil
}

// IsObjectPath reports whether path names an object (ends with ".").
func IsObjectPath(path string) bool { return strings.HasSuffix(path, ".") }

// ValidateTag checks a tag: 1 to MaxTagLength characters from
// [A-Za-z0-9._:/-] (the public API's rule, proto/errors.md INVALID_TAG).
func ValidateTag(tag string) error {
	if tag == "" || len(tag) > MaxTagLength {
		return fmt.Errorf("tag %q: want 1 to %d characters: %w", tag, MaxTagLength, ErrInvalidArgument)
	}
	for i := 0; i < len(tag); i++ {
		if c := tag[i]; !isIDSafe(c) && !strings.ContainsRune("._:/-", rune(c)) {
			return fmt.Errorf("tag %q: character %q not allowed: %w", tag, c, ErrInvalidArgument)
		}
	}
	return nil
}

// validText checks a stored string value: valid UTF-8 without NUL, which
// every backend (PostgreSQL-backed MongoDB-compatible servers included)
// stores faithfully. XML cannot carry NUL and the codec repairs invalid
// UTF-8, so CPE data always passes.
func validText(s string, max int) bool {
	return len(s) <= max && utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// ValidateValue checks a parameter value and type.
func ValidateValue(value, typ string) error {
	if !validText(value, MaxValueLength) {
		return fmt.Errorf("value: invalid UTF-8, NUL or longer than %d bytes: %w", MaxValueLength, ErrInvalidArgument)
	}
	if !validText(typ, MaxTypeLength) {
		return fmt.Errorf("type %q: invalid UTF-8, NUL or too long: %w", typ, ErrInvalidArgument)
	}
	return nil
}

// ValidateText checks a free-form string field (identity, URL, credentials).
func ValidateText(field, s string) error {
	if !validText(s, 64<<10) {
		return fmt.Errorf("%s: invalid UTF-8, NUL or too long: %w", field, ErrInvalidArgument)
	}
	return nil
}

// IntegerTypes are the xsi:types whose values Lt and Gt compare as numbers.
var IntegerTypes = []string{"xsd:int", "xsd:unsignedInt", "xsd:long", "xsd:unsignedLong"}

// DateTimeType is the xsi:type whose values Lt and Gt compare as instants.
const DateTimeType = "xsd:dateTime"

// ParseInteger parses an integer value or operand: decimal digits with an
// optional sign, surrounding white space ignored (docs/protocol.md §2.3: CPEs pad
// numbers). Values above 2^63-1 (unsignedLong counters) come back as
// float64, which keeps their order but not every digit past 2^53; others as
// int64.
func ParseInteger(s string) (any, bool) {
	s = strings.TrimSpace(s)
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, true
	}
	if u, err := strconv.ParseUint(strings.TrimPrefix(s, "+"), 10, 64); err == nil {
		return float64(u), true
	}
	return nil, false
}

// ParseInstant parses a dateTime value leniently (as the CWMP codec does)
// and rounds it to the millisecond, the precision instants are compared at.
func ParseInstant(s string) (time.Time, bool) {
	t, err := cwmp.DateTime(s).Time()
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC().Truncate(time.Millisecond), true
}

// ParseOperandInstant parses an Lt/Gt operand as an RFC 3339 time.
func ParseOperandInstant(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC().Truncate(time.Millisecond), true
}

// isIDSafe reports the bytes a tenant id may hold besides '-' and '.'.
func isIDSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}
