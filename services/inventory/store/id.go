package store

import (
	"errors"
	"fmt"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/deviceid"
)

// MakeID derives a device id from an Inform's DeviceIdStruct with the one
// function every service shares (pkg/deviceid).
func MakeID(d cwmp.DeviceID) string { return deviceid.Key(d) }

// NormalizeOUI is the form of an OUI that MakeID and Device.OUI use.
func NormalizeOUI(oui string) string { return deviceid.NormalizeOUI(oui) }

// EscapeIDPart escapes one part of a device id (see deviceid.EscapeIDPart).
func EscapeIDPart(s string) string { return deviceid.EscapeIDPart(s) }

// ParseID splits an id made by MakeID into its unescaped OUI, ProductClass
// and SerialNumber.
func ParseID(id string) (oui, productClass, serialNumber string, err error) {
	oui, productClass, serialNumber, err = deviceid.Parse(id)
	if errors.Is(err, deviceid.ErrInvalidKey) {
		return "", "", "", fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	return oui, productClass, serialNumber, err
}
