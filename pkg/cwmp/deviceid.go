package cwmp

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrInvalidDeviceID is wrapped by CheckDeviceID's errors.
var ErrInvalidDeviceID = errors.New("cwmp: DeviceId identifies no device")

// maxDeviceIDField is the schema's limit on Manufacturer, ProductClass and
// SerialNumber (docs/protocol.md §5.2).
const maxDeviceIDField = 64

// CheckDeviceID reports whether an Inform's DeviceId can identify a device
// (docs/protocol.md §5.3). The OUI, trimmed and upper-cased, must be six
// hexadecimal digits: a missing DeviceId element, an empty or white-space
// OUI, or one that is not an OUI at all is refused. Manufacturer,
// ProductClass and SerialNumber may be empty (MikroTik CHR sends no serial
// number) but not longer than the schema allows, since they end up in keys,
// lock names and logs. The session answers an Inform that fails this with
// fault 8003; the gateway takes no device lease for it.
func CheckDeviceID(d DeviceID) error {
	oui := strings.ToUpper(strings.TrimSpace(d.OUI))
	switch {
	case oui == "":
		return fmt.Errorf("DeviceId has no OUI (missing or empty DeviceId): %w", ErrInvalidDeviceID)
	case len(oui) != 6 || strings.Trim(oui, "0123456789ABCDEF") != "":
		return fmt.Errorf("DeviceId OUI %q is not six hexadecimal digits: %w", d.OUI, ErrInvalidDeviceID)
	}
	for _, f := range [...]struct{ name, v string }{
		{"Manufacturer", d.Manufacturer}, {"ProductClass", d.ProductClass}, {"SerialNumber", d.SerialNumber},
	} {
		if utf8.RuneCountInString(strings.TrimSpace(f.v)) > maxDeviceIDField {
			return fmt.Errorf("DeviceId %s longer than %d characters: %w", f.name, maxDeviceIDField, ErrInvalidDeviceID)
		}
	}
	return nil
}
