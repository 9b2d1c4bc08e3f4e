package cwmp

import (
	"fmt"
	"strings"
)

// ParseBool parses an xsd:boolean leniently (docs/protocol.md §9): "true" and "false"
// in any case, "1" and "0", with surrounding white space trimmed. MikroTik
// sends 0/1; other CPEs send "True".
func ParseBool(s string) (bool, error) {
	t := trimXMLSpace(s)
	switch {
	case t == "1" || strings.EqualFold(t, "true"):
		return true, nil
	case t == "0" || strings.EqualFold(t, "false"):
		return false, nil
	}
	return false, fmt.Errorf("cwmp: parse boolean %q: want true, false, 1 or 0", s)
}
