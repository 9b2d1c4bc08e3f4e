// Package deviceid derives the canonical device key from an Inform's
// DeviceIdStruct. Gateways lock and route on it, session workers and
// inventory store under it, so every service must build it the same way:
// this package is that one way.
package deviceid

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// Key derives a device id from an Inform's DeviceIdStruct:
// OUI-ProductClass-SerialNumber, or OUI-SerialNumber when ProductClass is
// empty (docs/protocol.md §5.3: MikroTik and others send none). Every part is trimmed
// and the OUI upper-cased, so one CPE keeps one id however it pads or spells
// them.
//
// Each part is escaped with EscapeIDPart, so the only bare "-" characters
// are the separators and the id is safe in URLs, file names, MongoDB keys,
// Redis keys and log lines. The layout is the familiar OUI-class-serial one;
// the escaping is stricter than GenieACS's, so ids of devices whose parts
// hold punctuation differ from GenieACS's.
func Key(d cwmp.DeviceID) string {
	oui := NormalizeOUI(d.OUI)
	pc := strings.TrimSpace(d.ProductClass)
	sn := strings.TrimSpace(d.SerialNumber)
	var b strings.Builder
	b.Grow(len(oui) + len(pc) + len(sn) + 2)
	escapeIDPart(&b, oui)
	b.WriteByte('-')
	if pc != "" {
		escapeIDPart(&b, pc)
		b.WriteByte('-')
	}
	escapeIDPart(&b, sn)
	return b.String()
}

// NormalizeOUI is the form of an OUI that Key and Device.OUI use.
func NormalizeOUI(oui string) string { return strings.ToUpper(strings.TrimSpace(oui)) }

// EscapeIDPart escapes one part of a device id: ASCII letters, digits and
// "_" stay as they are; every other byte of the UTF-8 text, "-" and "%"
// included, becomes %XX with two upper-case hex digits.
func EscapeIDPart(s string) string {
	var b strings.Builder
	escapeIDPart(&b, s)
	return b.String()
}

// ErrInvalidKey reports a string that Key cannot have produced.
var ErrInvalidKey = errors.New("invalid device key")

const upperHex = "0123456789ABCDEF"

func escapeIDPart(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isIDSafe(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&0xF])
	}
}

func isIDSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// Parse splits an id made by Key into its unescaped OUI, ProductClass
// and SerialNumber. It is the inverse of Key for normalised OUIs.
func Parse(id string) (oui, productClass, serialNumber string, err error) {
	// Cut rather than Split, and parts that need no unescaping returned
	// as they are: the tasks service parses the device key of every
	// claim and report, and this allocates nothing for a plain key.
	var parts [3]string
	first, rest, ok := strings.Cut(id, "-")
	second, third, two := strings.Cut(rest, "-")
	switch {
	case !ok || two && strings.Contains(third, "-"):
		return "", "", "", fmt.Errorf("parse device id %q: want 2 or 3 parts separated by '-': %w", id, ErrInvalidKey)
	case !two:
		parts = [3]string{first, "", rest}
	case second == "":
		// Key never writes an empty ProductClass part.
		return "", "", "", fmt.Errorf("parse device id %q: empty product class part: %w", id, ErrInvalidKey)
	default:
		parts = [3]string{first, second, third}
	}
	for i, p := range parts {
		u, err := unescapeIDPart(p)
		if err != nil {
			return "", "", "", fmt.Errorf("parse device id %q: %w", id, err)
		}
		parts[i] = u
	}
	return parts[0], parts[1], parts[2], nil
}

func unescapeIDPart(s string) (string, error) {
	i := 0
	for i < len(s) && isIDSafe(s[i]) {
		i++
	}
	if i == len(s) {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case isIDSafe(c):
			b.WriteByte(c)
		case c == '%' && i+2 < len(s) && isUpperHex(s[i+1]) && isUpperHex(s[i+2]):
			b.WriteByte(byte(unhex(s[i+1])<<4 | unhex(s[i+2])))
			i += 2
		default:
			return "", fmt.Errorf("bad escape at byte %d: %w", i, ErrInvalidKey)
		}
	}
	return b.String(), nil
}

func isUpperHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

// unhex decodes an upper-case hex digit (checked by isUpperHex).
func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}
