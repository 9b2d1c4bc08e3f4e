package sqlitestore_test

import (
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

var (
	storetestTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	devID         = cwmp.DeviceID{Manufacturer: "Acme", OUI: "00AABB", ProductClass: "R", SerialNumber: "S1"}
)
