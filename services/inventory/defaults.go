package inventory

import (
	provisioningv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
)

// DefaultPresetName is the preset every tenant gets when it has never had
// one (docs/provisioning.md, "Bootstrap provisioning out of the box"):
// editable and deletable like any other; a tenant that deletes it does
// not get it back.
const DefaultPresetName = "fleetacs-bootstrap"

// DefaultPeriodicInformInterval is the interval, in seconds, the default
// preset sets.
const DefaultPeriodicInformInterval = "3600"

// DefaultPresets returns the default preset set. It does not set the
// connection-request credentials: the session engine generates them per
// device and sets them on first contact and after a factory reset
// (docs/sessions.md, "Connection-request credentials"), keeping them
// sealed; a preset that set them too would fight it.
func DefaultPresets() []*provisioningv1.Preset {
	var params []*provisioningv1.ParameterValue
	var attrs []*provisioningv1.ParameterAttribute
	for _, root := range []string{"Device.", "InternetGatewayDevice."} {
		params = append(params,
			&provisioningv1.ParameterValue{Path: root + "ManagementServer.PeriodicInformEnable", Value: "true", Type: "xsd:boolean"},
			&provisioningv1.ParameterValue{Path: root + "ManagementServer.PeriodicInformInterval", Value: DefaultPeriodicInformInterval, Type: "xsd:unsignedInt"})
		attrs = append(attrs,
			&provisioningv1.ParameterAttribute{Path: root + "DeviceInfo.SoftwareVersion", Notification: provisioningv1.Notification_NOTIFICATION_ACTIVE},
			&provisioningv1.ParameterAttribute{Path: root + "ManagementServer.ConnectionRequestURL", Notification: provisioningv1.Notification_NOTIFICATION_ACTIVE})
	}
	return []*provisioningv1.Preset{{
		Name:       DefaultPresetName,
		Precedence: -100,
		Description: "Created by FleetACS. On 0 BOOTSTRAP: periodic informs every hour, and active notification of the software version " +
			"and the connection-request URL. Connection-request credentials are generated per device by the session engine " +
			"(-sessions.cr-credentials), not by this preset.",
		Match:   &provisioningv1.PresetMatch{Events: []string{"0 BOOTSTRAP"}},
		Desired: &provisioningv1.DesiredState{Parameters: params, Attributes: attrs},
	}}
}
