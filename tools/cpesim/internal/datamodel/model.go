// Package datamodel holds what the CPE simulator knows about the Broadband
// Forum data models (TR-181 Device:2, TR-098 InternetGatewayDevice:1): the
// objects, the parameters, their wire types, access, notification flags,
// defaults and value constraints, and nothing else (no descriptions).
//
// The facts come from the BBF's machine-readable data-model XML. Reading
// that XML (ParseBBF) is the job of the generator (tools/cpesim/internal/dmgen),
// which writes each model as a compact table (MarshalTable) that the
// simulator embeds and reads at start-up (UnmarshalTable): the simulator then
// needs no file outside the repository, and starts in milliseconds instead of
// parsing 4 MB of XML.
package datamodel

import "sort"

// Model is one data model of a Broadband Forum "full" data-model document
// (the <model> element of tr-181-2-17-0-cwmp-full.xml or
// tr-098-1-8-0-full.xml), reduced to what a simulated CPE needs: objects,
// their parameters, the parameters' wire types, access and notification
// flags, defaults and value constraints.
type Model struct {
	// Name is the model's name attribute, e.g. "Device:2.17".
	Name string
	// Root is the top-level object, "Device." or "InternetGatewayDevice.".
	Root string
	// objects by their model path ("Device.NAT.PortMapping.{i}.").
	objects map[string]*ObjectDef
}

// ObjectDef is an object of the model. A path ending in ".{i}." is a
// multi-instance object (a table row).
type ObjectDef struct {
	// Path is the model path, e.g. "Device.WiFi.SSID.{i}.".
	Path string
	// Table reports a multi-instance object.
	Table bool
	// Writable is access="readWrite": for a table, the ACS may add and
	// delete its instances.
	Writable bool
	// NumEntries names the parent's parameter that counts the instances.
	NumEntries string
	// Params in document order.
	Params []*ParamDef
}

// ParamDef is a parameter of the model.
type ParamDef struct {
	Name string
	// Type is the wire type: "xsd:string", "xsd:unsignedInt", ...
	Type string
	// DataType is the named data type the syntax refers to ("MACAddress",
	// "IPAddress", "StatsCounter64", ...), "" for a plain primitive. It
	// guides value generation.
	DataType     string
	Writable     bool
	ForcedInform bool
	// ActiveNotify is "", "canDeny", "forceEnabled" or "forceDefaultEnabled".
	ActiveNotify string
	// Default is the model's default value when HasDefault.
	Default    string
	HasDefault bool
	// Enum lists the allowed values of a string enumeration.
	Enum []string
	// List reports a comma-separated list of values.
	List bool
	// MaxLen is the maximum length of a string (0: none).
	MaxLen int
	// Min, Max bound an integer when HasMin, HasMax.
	Min, Max       int64
	HasMin, HasMax bool
	// Hidden and Secured parameters read as an empty string (passwords).
	Hidden, Secured bool
}

// Object returns the object at a model path ("Device.Hosts.Host.{i}.").
func (m *Model) Object(path string) (*ObjectDef, bool) {
	o, ok := m.objects[path]
	return o, ok
}

// NumObjects is the number of objects the model defines.
func (m *Model) NumObjects() int { return len(m.objects) }

// Paths returns the model paths of every object, sorted.
func (m *Model) Paths() []string {
	out := make([]string, 0, len(m.objects))
	for p := range m.objects {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
