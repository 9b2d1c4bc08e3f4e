package cwmp

import (
	"strconv"
	"strings"
)

// Lexical checks for the values whose form the CWMP schemas restrict. They
// are hand-written instead of regexps so that the encoder stays
// allocation-free; each names the XSD pattern it implements. In XSD
// patterns \s is [ \t\n\r], \S its complement, and "." any character but
// \n and \r; a pattern must match the whole value.

func isDigit(c byte) bool    { return c >= '0' && c <= '9' }
func isXSDSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
func isUpperHex(c byte) bool { return isDigit(c) || (c >= 'A' && c <= 'F') }
func isHex(c byte) bool      { return isUpperHex(c) || (c >= 'a' && c <= 'f') }

// matchWords matches `( \S+)+`: one or more words, each after one space.
func matchWords(s string) bool {
	if s == "" {
		return false
	}
	for s != "" {
		if s[0] != ' ' {
			return false
		}
		s = s[1:]
		n := 0
		for n < len(s) && !isXSDSpace(s[n]) {
			n++
		}
		if n == 0 {
			return false
		}
		s = s[n:]
	}
	return true
}

// matchNumbered matches `\d+( \S+)+`, or `[1-9]\d*( \S+)+` when !zeroOK.
func matchNumbered(s string, zeroOK bool) bool {
	n := 0
	for n < len(s) && isDigit(s[n]) {
		n++
	}
	if n == 0 || (!zeroOK && s[0] == '0') {
		return false
	}
	return matchWords(s[n:])
}

// matchNoBreaks matches `.+` (or `.*` when emptyOK).
func matchNoBreaks(s string, emptyOK bool) bool {
	if s == "" {
		return emptyOK
	}
	return strings.IndexAny(s, "\n\r") < 0
}

// matchVendor matches `X \S+ .+` (CWMP 1.2 and later).
func matchVendor(s string) bool {
	s, ok := strings.CutPrefix(s, "X ")
	if !ok {
		return false
	}
	n := 0
	for n < len(s) && !isXSDSpace(s[n]) {
		n++
	}
	if n == 0 || n == len(s) || s[n] != ' ' {
		return false
	}
	return matchNoBreaks(s[n+1:], false)
}

// matchVendorOUI matches `X [0-9A-F]{6} .*` (CWMP 1.0 and 1.1).
func matchVendorOUI(s string) bool {
	if len(s) < 9 || s[0] != 'X' || s[1] != ' ' || s[8] != ' ' {
		return false
	}
	for i := 2; i < 8; i++ {
		if !isUpperHex(s[i]) {
			return false
		}
	}
	return matchNoBreaks(s[9:], true)
}

// matchMethodEvent matches `M \S+`.
func matchMethodEvent(s string) bool {
	s, ok := strings.CutPrefix(s, "M ")
	if !ok || s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if isXSDSpace(s[i]) {
			return false
		}
	}
	return true
}

// events10 are the event codes cwmp-1-0.xsd lists one by one.
var events10 = [...]string{
	"0 BOOTSTRAP", "1 BOOT", "2 PERIODIC", "3 SCHEDULED", "4 VALUE CHANGE",
	"5 KICKED", "6 CONNECTION REQUEST", "7 TRANSFER COMPLETE",
	"8 DIAGNOSTICS COMPLETE", "9 REQUEST DOWNLOAD",
	"M Reboot", "M ScheduleInform", "M Download", "M Upload",
}

// validEventCode checks an EventCode against the EventCodeType of v.
func validEventCode(s string, v Version) bool {
	switch v {
	case V1_0:
		for _, c := range events10 {
			if s == c {
				return true
			}
		}
		return (strings.HasPrefix(s, "M X_") && matchMethodEvent(s)) || matchVendorOUI(s)
	case V1_1:
		return matchNumbered(s, true) || matchMethodEvent(s) || matchVendorOUI(s)
	default:
		return matchNumbered(s, true) || matchMethodEvent(s) || matchVendor(s)
	}
}

// File-type lists of the 1.0 and 1.1 schemas, which name each type; 1.2 and
// later accept any `[1-9]\d*( \S+)+` (docs/protocol.md §10).
var (
	downloadTypes11 = [...]string{"1 Firmware Upgrade Image", "2 Web Content", "3 Vendor Configuration File"}
	uploadTypes11   = [...]string{"1 Vendor Configuration File", "2 Vendor Log File"}
	transferTypes11 = [...]string{"1 Firmware Upgrade Image", "2 Web Content", "3 Vendor Configuration File", "4 Vendor Log File"}
)

// fileTypeKind picks the list of the 1.0/1.1 schemas a FileType is checked
// against.
type fileTypeKind int

const (
	downloadFile fileTypeKind = iota
	uploadFile
	transferFile
)

// validFileType checks a FileType against the Download/Upload/Transfer
// file type of v.
func validFileType(s string, kind fileTypeKind, v Version) bool {
	if v >= V1_2 {
		return matchNumbered(s, false) || matchVendor(s)
	}
	var list []string
	switch kind {
	case downloadFile:
		list = downloadTypes11[:]
	case uploadFile:
		list = uploadTypes11[:]
	default:
		list = transferTypes11[:]
	}
	for _, t := range list {
		if s == t {
			return true
		}
	}
	return matchVendorOUI(s)
}

// validOUI matches DeviceIdStruct/OUI: exactly `[0-9A-F]{6}`.
func validOUI(s string) bool {
	if len(s) != 6 {
		return false
	}
	for i := 0; i < 6; i++ {
		if !isUpperHex(s[i]) {
			return false
		}
	}
	return true
}

// validUUID matches DeploymentUnitUUID: 8-4-4-4-12 hex digits.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHex(s[i]) {
				return false
			}
		}
	}
	return true
}

// validDateTime checks the xsd:dateTime lexical form:
// -?YYYY-MM-DDThh:mm:ss(.s+)?(Z|(+|-)hh:mm)? with field ranges, allowing
// 24:00:00 as XML Schema 1.0 does, and the day checked against the month's
// length (29 February only in leap years), as the schema's value space
// requires.
func validDateTime(s string) bool {
	s = strings.TrimPrefix(s, "-")
	y := 0
	for y < len(s) && isDigit(s[y]) {
		y++
	}
	if y < 4 || (y > 4 && s[0] == '0') || strings.Trim(s[:y], "0") == "" {
		return false // year 0000 does not exist in XML Schema 1.0
	}
	year := 0
	if y <= 9 {
		year, _ = strconv.Atoi(s[:y])
	}
	s = s[y:]
	// -MM-DDThh:mm:ss is 15 bytes.
	if len(s) < 15 || s[0] != '-' || s[3] != '-' || s[6] != 'T' || s[9] != ':' || s[12] != ':' {
		return false
	}
	mo, ok1 := twoDigits(s[1:3])
	d, ok2 := twoDigits(s[4:6])
	h, ok3 := twoDigits(s[7:9])
	mi, ok4 := twoDigits(s[10:12])
	sec, ok5 := twoDigits(s[13:15])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || mo < 1 || mo > 12 || d < 1 || d > daysIn(mo, year) || mi > 59 || sec > 59 {
		return false
	}
	s = s[15:]
	frac := false
	if s != "" && s[0] == '.' {
		n := 1
		for n < len(s) && isDigit(s[n]) {
			n++
		}
		if n == 1 {
			return false
		}
		for _, c := range []byte(s[1:n]) {
			if c != '0' {
				frac = true
			}
		}
		s = s[n:]
	}
	if h > 24 || (h == 24 && (mi != 0 || sec != 0 || frac)) {
		return false
	}
	switch {
	case s == "" || s == "Z":
		return true
	case len(s) == 6 && (s[0] == '+' || s[0] == '-') && s[3] == ':':
		zh, ok1 := twoDigits(s[1:3])
		zm, ok2 := twoDigits(s[4:6])
		return ok1 && ok2 && zm <= 59 && (zh < 14 || (zh == 14 && zm == 0))
	}
	return false
}

func twoDigits(s string) (int, bool) {
	if len(s) != 2 || !isDigit(s[0]) || !isDigit(s[1]) {
		return 0, false
	}
	return int(s[0]-'0')*10 + int(s[1]-'0'), true
}

// validBase64 checks the xsd:base64Binary lexical form: white space
// allowed anywhere, a multiple of 4 alphabet characters, at most two "="
// at the end, and zero bits under the padding (as XML Schema requires).
// It does not allocate, since Inform values run through it.
func validBase64(s string) bool {
	n, pad := 0, 0
	var prev byte // the last alphabet character before the padding
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isXSDSpace(c):
			continue
		case c == '=':
			pad++
			if pad > 2 {
				return false
			}
		case pad > 0:
			return false // data after padding
		case (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || isDigit(c) || c == '+' || c == '/':
			prev = c
		default:
			return false
		}
		n++
	}
	if n%4 != 0 {
		return false
	}
	switch pad {
	case 1:
		return strings.IndexByte("AEIMQUYcgkosw048", prev) >= 0
	case 2:
		return strings.IndexByte("AQgw", prev) >= 0
	}
	return true
}

// isNCName reports whether s is a non-colonised XML name, restricted to
// ASCII, which is all an XML Schema type name needs.
func isNCName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case i > 0 && (isDigit(c) || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// valueType resolves ParameterValue.Type to the xsi:type to write: "" means
// xsd:string; a bare name ("unsignedInt") means xsd:name; "xsd:name" is
// kept; a SOAP-ENC type under any of its usual prefixes is written with the
// soap-enc prefix this encoder declares. Any other prefix could not be
// resolved by the receiver, so it is refused (ok false).
func valueType(t string) (qname, local string, ok bool) {
	if t == "" {
		return "xsd:string", "string", true
	}
	prefix, local, found := strings.Cut(t, ":")
	if !found {
		if !isNCName(t) {
			return "", "", false
		}
		return "", t, true // caller writes "xsd:" + local
	}
	if !isNCName(local) {
		return "", "", false
	}
	switch prefix {
	case "xsd":
		return t, local, true
	case "soap-enc", "SOAP-ENC", "soapenc", "soap_enc", "SOAPENC":
		if prefix == "soap-enc" {
			return t, local, true
		}
		return "", local, true // caller writes "soap-enc:" + local
	}
	return "", "", false
}

// validTypedValue checks a Value against the XML Schema type its xsi:type
// names, for the types TR-069 uses (docs/protocol.md §9) whose lexical form is
// restricted; string and unlisted types pass. XML Schema collapses white
// space around these values, so it is trimmed first.
func validTypedValue(local, v string) bool {
	switch local {
	case "string", "anySimpleType":
		return true
	}
	v = strings.Trim(v, " \t\n\r")
	switch local {
	case "boolean":
		return v == "true" || v == "false" || v == "1" || v == "0"
	case "int":
		_, err := strconv.ParseInt(v, 10, 32)
		return err == nil
	case "long":
		_, err := strconv.ParseInt(v, 10, 64)
		return err == nil
	case "unsignedInt":
		_, err := strconv.ParseUint(strings.TrimPrefix(v, "+"), 10, 32)
		return err == nil
	case "unsignedLong":
		_, err := strconv.ParseUint(strings.TrimPrefix(v, "+"), 10, 64)
		return err == nil
	case "dateTime":
		return validDateTime(v)
	case "hexBinary":
		if len(v)%2 != 0 {
			return false
		}
		for i := 0; i < len(v); i++ {
			if !isHex(v[i]) {
				return false
			}
		}
		return true
	case "base64Binary", "base64":
		return validBase64(v)
	}
	return true
}

// Fault code sets of the schemas (docs/protocol.md §7).

// validFaultCode checks the FaultCode of a SOAP Fault's cwmp:Fault detail.
func validFaultCode(c FaultCode, v Version) bool {
	if v == V1_0 {
		return (c >= 9000 && c <= 9013) || (c >= 9800 && c <= 9899) ||
			(c >= 8000 && c <= 8005) || (c >= 8800 && c <= 8899)
	}
	return (c >= 8000 && c <= 8899) || (c >= 9000 && c <= 9899)
}

// validSPVFaultCode checks a SetParameterValuesFault FaultCode: the 1.0
// and 1.1 schemas reuse the fault's code type, 1.2 allows CPE codes only.
func validSPVFaultCode(c FaultCode, v Version) bool {
	if v < V1_2 {
		return validFaultCode(c, v)
	}
	return c >= 9000 && c <= 9899
}

// validTransferFaultCode checks the FaultStruct code of TransferComplete
// and AutonomousTransferComplete (0 is success).
func validTransferFaultCode(c FaultCode, v Version) bool {
	switch c {
	case 0, 9001, 9002, 9010, 9011, 9012:
		return true
	}
	switch v {
	case V1_0:
		return false
	case V1_1:
		return (c >= 9014 && c <= 9799) || (c >= 9800 && c <= 9899)
	}
	return (c >= 9014 && c <= 9020) || (c >= 9033 && c <= 9899)
}

// validDUFaultCode checks the Fault code of a DU operation result (1.2+).
func validDUFaultCode(c FaultCode) bool {
	switch c {
	case 0, 9001, 9003, 9012, 9013:
		return true
	}
	return (c >= 9015 && c <= 9018) || (c >= 9022 && c <= 9899)
}
