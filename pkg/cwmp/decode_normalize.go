package cwmp

import (
	"strconv"
	"strings"
	"time"
)

// Normalisation at decoding time (docs/protocol.md §13 input 6). The decoder
// accepts the variants real CPEs send; what it returns is in the form the
// encoder writes, so that anything it decoded can be encoded again as a
// message that validates against the CWMP schema (fleetctl cwmp decode piped
// into fleetctl cwmp encode), and so that every service sees one spelling of
// a value however the CPE wrote it. Values are rewritten only into an
// equivalent form: a value that fits no form of its type is kept as it came
// (a typed Value then loses its type instead), never altered into another
// value.

// canonicalDateTime returns s (already trimmed) in XML Schema's lexical
// dateTime form. s itself when it is in that form already (a zero offset
// apart, always written "Z", so that a time has one spelling whether the CPE
// wrote "Z", "+00:00", "+0000" or "+00"); otherwise the time it denotes,
// rewritten: every field zero-padded, "T" between date and time, the zone
// as "Z" or "+hh:mm" (a zone-less time stays zone-less, which the schema
// allows), a leap second carried into the next minute. ok is false when s
// is not a dateTime at all.
func canonicalDateTime(s string) (string, bool) {
	if validDateTime(s) && !strings.HasSuffix(s, "+00:00") && !strings.HasSuffix(s, "-00:00") {
		return s, true
	}
	t, zone, ok := parseDateTimeZone(s)
	if !ok || t.Year() < 1 {
		// Year 0000 does not exist in XML Schema 1.0.
		return "", false
	}
	const layout = "2006-01-02T15:04:05.999999999"
	switch {
	case !zone:
		return t.Format(layout), true
	case t.Location() != time.UTC:
		if c := t.Format(layout + "-07:00"); validDateTime(c) {
			return c, true
		}
		// An offset beyond the schema's ±14:00: the same instant in UTC.
	}
	c := t.UTC().Format(layout + "Z")
	// In UTC a time early on 1 January of year 1 falls into year 0,
	// which the schema does not have.
	return c, validDateTime(c)
}

// normalizeDateTimeField is the value of a dateTime argument of an RPC
// (CurrentTime, StartTime, ...): its canonical form, or the Unknown Time when
// the CPE sent something that is not a time (CPEs send garbage before their
// clock is set, docs/protocol.md §5.3), which is what the protocol's Unknown
// Time means. Empty stays empty (encoded as the Unknown Time too).
func normalizeDateTimeField(s string) DateTime {
	if s == "" {
		return ""
	}
	c, ok := canonicalDateTime(s)
	if !ok {
		return UnknownTime
	}
	return DateTime(c)
}

// valueTypes are the xsi:types a decoded ParameterValue keeps
// (docs/protocol.md §9), by local name, with the Type they are written as.
var valueTypes = map[string]string{
	"string":       "xsd:string",
	"int":          "xsd:int",
	"unsignedInt":  "xsd:unsignedInt",
	"long":         "xsd:long",
	"unsignedLong": "xsd:unsignedLong",
	"boolean":      "xsd:boolean",
	"dateTime":     "xsd:dateTime",
	"base64":       "xsd:base64",
	"base64Binary": "xsd:base64Binary",
	"hexBinary":    "xsd:hexBinary",
}

// untyped is the Type of a decoded value whose xsi:type is missing or
// unusable: docs/protocol.md §2.3 says to treat such a value as a string.
const untyped = "xsd:string"

// normalizeValue returns the Type and Value a decoded ParameterValue keeps:
// typ is what decodedValueType made of the xsi:type attribute ("" without
// one). A missing type, or one that is not one of valueTypes, becomes
// xsd:string; a value is rewritten into its type's canonical form; a value
// that does not fit its type at all keeps its text and becomes a string.
func normalizeValue(typ, raw string) (string, string) {
	local := strings.TrimPrefix(typ, "xsd:")
	canon, known := valueTypes[local]
	if !known || len(local) == len(typ) {
		return untyped, raw
	}
	switch local {
	case "string":
		return canon, raw
	case "boolean":
		b, err := ParseBool(raw)
		if err != nil {
			return untyped, raw
		}
		if b {
			return canon, "true"
		}
		return canon, "false"
	case "int", "long":
		bits := 32
		if local == "long" {
			bits = 64
		}
		t := trimXMLSpace(raw)
		v, err := strconv.ParseInt(t, 10, bits)
		if err != nil {
			return untyped, raw
		}
		if t == raw && canonicalInteger(t) {
			return canon, raw
		}
		return canon, strconv.FormatInt(v, 10)
	case "unsignedInt", "unsignedLong":
		bits := 32
		if local == "unsignedLong" {
			bits = 64
		}
		t := trimXMLSpace(raw)
		v, err := strconv.ParseUint(trimPlus(t), 10, bits)
		if err != nil {
			return untyped, raw
		}
		if t == raw && canonicalInteger(t) {
			return canon, raw
		}
		return canon, strconv.FormatUint(v, 10)
	case "dateTime":
		c, ok := canonicalDateTime(trimXMLSpace(raw))
		if !ok {
			return untyped, raw
		}
		return canon, c
	case "hexBinary":
		t := trimXMLSpace(raw)
		if !validTypedValue("hexBinary", t) {
			return untyped, raw
		}
		return canon, t
	default: // base64, base64Binary
		t := trimXMLSpace(raw)
		if !validBase64(t) {
			return untyped, raw
		}
		return canon, t
	}
}

// canonicalInteger reports a decimal integer without sign "+", leading zeros
// or white space ("-0" is not canonical either).
func canonicalInteger(s string) bool {
	d := strings.TrimPrefix(s, "-")
	if d == "" || (len(d) > 1 && d[0] == '0') || (d == "0" && len(s) > 1) {
		return false
	}
	for i := 0; i < len(d); i++ {
		if !isDigit(d[i]) {
			return false
		}
	}
	return true
}

// normalizeOUI upper-cases an OUI: it is hexadecimal, and the schema
// spells it in upper case (docs/protocol.md §5.3).
func normalizeOUI(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'a' && c <= 'z' {
			return strings.ToUpper(s)
		}
	}
	return s
}

// standardEvents are the spellings of the numbered event codes
// (docs/protocol.md §6.1), by number.
var standardEvents = map[string]string{
	"0": "0 BOOTSTRAP", "1": "1 BOOT", "2": "2 PERIODIC", "3": "3 SCHEDULED",
	"4": "4 VALUE CHANGE", "5": "5 KICKED", "6": "6 CONNECTION REQUEST",
	"7": "7 TRANSFER COMPLETE", "8": "8 DIAGNOSTICS COMPLETE", "9": "9 REQUEST DOWNLOAD",
	"10": "10 AUTONOMOUS TRANSFER COMPLETE", "11": "11 DU STATE CHANGE COMPLETE",
	"12": "12 AUTONOMOUS DU STATE CHANGE COMPLETE", "13": "13 WAKEUP", "14": "14 HEARTBEAT",
}

// methodEvents are the standard "M <method>" event codes, by lower-case
// method name.
var methodEvents = map[string]string{
	"reboot": "M Reboot", "scheduleinform": "M ScheduleInform", "download": "M Download",
	"upload": "M Upload", "scheduledownload": "M ScheduleDownload", "changedustate": "M ChangeDUState",
}

// normalizeEventCode gives a standard event its standard spelling: the
// session matches numbered events by their number (docs/protocol.md §6.1),
// so "6 Connection Request" is that event and is written as the schema
// spells it; "M reboot" is "M Reboot". Vendor events and codes FleetACS does
// not know are left as they came (trimmed).
func normalizeEventCode(code string) string {
	num, rest, found := strings.Cut(code, " ")
	if canon, ok := standardEvents[num]; ok {
		return canon
	}
	if num == "M" && found {
		if canon, ok := methodEvents[strings.ToLower(trimXMLSpace(rest))]; ok {
			return canon
		}
	}
	return code
}

// IsStandardEvent reports whether code is a standard event code as the
// schema spells it ("0 BOOTSTRAP" to "14 HEARTBEAT", and the "M <method>"
// codes); vendor codes ("X ...", "M X_...") are not.
func IsStandardEvent(code string) bool { return standardEventSet[code] }

var standardEventSet = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range standardEvents {
		m[c] = true
	}
	for _, c := range methodEvents {
		m[c] = true
	}
	return m
}()
