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
// (docs/protocol.md §5.3): a missing DeviceId element, or an empty or
// white-space OUI, is refused. An OUI that is not the six hexadecimal
// digits the schema asks for is accepted all the same: the device is still
// identified, and refusing it would leave a real CPE unmanageable for a
// cosmetic fault of its firmware (re-encoding such an Inform then fails with
// an error naming the field). Manufacturer, ProductClass and SerialNumber
// may be empty (MikroTik CHR sends no serial number); no field may be
// longer than the schema's 64 characters, since they end up in keys, lock
// names and logs. The session answers an Inform that fails this with fault
// 8003; the gateway takes no device lease for it.
func CheckDeviceID(d DeviceID) error {
	if strings.TrimSpace(d.OUI) == "" {
		return fmt.Errorf("DeviceId has no OUI (missing or empty DeviceId): %w", ErrInvalidDeviceID)
	}
	for _, f := range [...]struct{ name, v string }{
		{"OUI", d.OUI}, {"Manufacturer", d.Manufacturer}, {"ProductClass", d.ProductClass}, {"SerialNumber", d.SerialNumber},
	} {
		if utf8.RuneCountInString(strings.TrimSpace(f.v)) > maxDeviceIDField {
			return fmt.Errorf("DeviceId %s longer than %d characters: %w", f.name, maxDeviceIDField, ErrInvalidDeviceID)
		}
	}
	return nil
}
