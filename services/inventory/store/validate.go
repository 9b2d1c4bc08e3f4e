package store

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
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
	MaxTagLength   = 128
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

// ValidateTag checks a tag: 1 to MaxTagLength bytes of valid UTF-8, no
// control characters, no leading or trailing white space.
func ValidateTag(tag string) error {
	if tag == "" || len(tag) > MaxTagLength {
		return fmt.Errorf("tag %q: want 1 to %d bytes: %w", tag, MaxTagLength, ErrInvalidArgument)
	}
	if !utf8.ValidString(tag) || strings.IndexFunc(tag, unicode.IsControl) >= 0 || strings.TrimSpace(tag) != tag {
		return fmt.Errorf("tag %q: invalid UTF-8, control character or surrounding space: %w", tag, ErrInvalidArgument)
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

// ParseNumber reports whether s is a plain decimal number ("42", "-1.5",
// "1e3") and its value. Lt and Gt conditions compare numerically exactly when
// both sides parse. Hex, "Inf", "NaN", spaces and digit separators are not
// numbers here, so the rule does not depend on a backend's parser. Values
// above 2^53 lose precision, as they would as MongoDB doubles.
func ParseNumber(s string) (float64, bool) {
	if s == "" || len(s) > 64 {
		return 0, false
	}
	digits := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits = true
		case c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E':
		default:
			return 0, false
		}
	}
	if !digits {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// isIDSafe reports the bytes a tenant id may hold besides '-' and '.'.
func isIDSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}
