package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// taskKind is one operation of `tasks create`: its word, the arguments it
// takes, the kind-specific flags it accepts, and how it builds the
// Operation.
type taskKind struct {
	name, args, short string
	// flags are the kind-specific flags of createOptions it accepts.
	flags []string
	build func(o *createOptions, args []string) (*tasksv1.Operation, error)
}

// xsdTypes are the TYPE shorthands of `set NAME=VALUE:TYPE`.
var xsdTypes = map[string]bool{
	"string": true, "int": true, "unsignedInt": true, "boolean": true, "dateTime": true,
	"base64": true, "hexBinary": true, "long": true, "unsignedLong": true,
}

// parseSetValue parses NAME=VALUE[:TYPE]. The value is everything after the
// first '='; a type is split off at the LAST ':' only when what follows is
// a known shorthand (xsdTypes: string, int, unsignedInt, boolean, dateTime,
// base64, hexBinary, long, unsignedLong), also written "xsd:int". So values
// holding ':' (URLs, times, MAC addresses) need no quoting:
// "X=http://a:80" is a string value, "X=12:00:int" is "12:00" as xsd:int,
// and a value that itself ends in ":int" takes an explicit type,
// "X=a:int:string". Without a type the server uses the type the inventory
// knows for the parameter, else xsd:string.
func parseSetValue(s string) (*tasksv1.ParameterValue, error) {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return nil, fmt.Errorf("%q: want NAME=VALUE[:TYPE]", s)
	}
	pv := &tasksv1.ParameterValue{Name: name, Value: value}
	i := strings.LastIndexByte(value, ':')
	if i < 0 || !xsdTypes[value[i+1:]] {
		return pv, nil
	}
	pv.Value, pv.Type = value[:i], "xsd:"+value[i+1:]
	if v, ok := strings.CutSuffix(pv.Value, ":xsd"); ok {
		pv.Value = v
	}
	return pv, nil
}

// parseAttribute parses NAME=NOTIFICATION (0 to 6).
func parseAttribute(s string) (*tasksv1.ParameterAttributeChange, error) {
	name, v, ok := strings.Cut(s, "=")
	n, err := strconv.ParseUint(v, 10, 32)
	if !ok || name == "" || err != nil || n > 6 {
		return nil, fmt.Errorf("%q: want NAME=NOTIFICATION, NOTIFICATION 0 (off) to 6", s)
	}
	return &tasksv1.ParameterAttributeChange{Name: name, NotificationChange: true, Notification: uint32(n)}, nil
}

// seconds parses a delay: a Go duration (90s, 5m) or whole seconds.
func seconds(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > time.Duration(1<<32-1)*time.Second {
		return 0, fmt.Errorf("%q: want seconds or a duration such as 90s or 5m", s)
	}
	return uint32(d / time.Second), nil
}

func exactly(n int, args []string, what string) error {
	if len(args) != n {
		if n == 0 {
			return fmt.Errorf("takes no arguments, got %q", strings.Join(args, " "))
		}
		return fmt.Errorf("want %s", what)
	}
	return nil
}

func taskKinds() []*taskKind {
	op := func(o *tasksv1.Operation) (*tasksv1.Operation, error) { return o, nil }
	return []*taskKind{
		{name: "set", args: "NAME=VALUE[:TYPE]...", short: "SetParameterValues", flags: []string{"parameter-key"},
			build: func(o *createOptions, args []string) (*tasksv1.Operation, error) {
				if len(args) == 0 {
					return nil, errors.New("want at least one NAME=VALUE[:TYPE]")
				}
				spv := &tasksv1.SetParameterValues{ParameterKey: o.parameterKey}
				for _, a := range args {
					pv, err := parseSetValue(a)
					if err != nil {
						return nil, err
					}
					spv.Values = append(spv.Values, pv)
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_SetParameterValues{SetParameterValues: spv}})
			}},
		{name: "get", args: "NAME...", short: "GetParameterValues (partial paths end with a dot)",
			build: func(_ *createOptions, args []string) (*tasksv1.Operation, error) {
				if len(args) == 0 {
					return nil, errors.New("want at least one NAME")
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterValues{GetParameterValues: &tasksv1.GetParameterValues{Names: args}}})
			}},
		{name: "refresh", args: "[PATH]", short: "re-read a subtree into inventory (default: the whole tree)",
			build: func(_ *createOptions, args []string) (*tasksv1.Operation, error) {
				if len(args) > 1 {
					return nil, errors.New("want at most one PATH")
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_Refresh{Refresh: &tasksv1.Refresh{Path: strings.Join(args, "")}}})
			}},
		{name: "get-names", args: "[PATH]", short: "GetParameterNames", flags: []string{"next-level"},
			build: func(o *createOptions, args []string) (*tasksv1.Operation, error) {
				if len(args) > 1 {
					return nil, errors.New("want at most one PATH")
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterNames{GetParameterNames: &tasksv1.GetParameterNames{ParameterPath: strings.Join(args, ""), NextLevel: o.nextLevel}}})
			}},
		{name: "get-attributes", args: "NAME...", short: "GetParameterAttributes",
			build: func(_ *createOptions, args []string) (*tasksv1.Operation, error) {
				if len(args) == 0 {
					return nil, errors.New("want at least one NAME")
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterAttributes{GetParameterAttributes: &tasksv1.GetParameterAttributes{Names: args}}})
			}},
		{name: "set-attributes", args: "NAME=NOTIFICATION...", short: "SetParameterAttributes (notification only)",
			build: func(_ *createOptions, args []string) (*tasksv1.Operation, error) {
				if len(args) == 0 {
					return nil, errors.New("want at least one NAME=NOTIFICATION")
				}
				spa := &tasksv1.SetParameterAttributes{}
				for _, a := range args {
					c, err := parseAttribute(a)
					if err != nil {
						return nil, err
					}
					spa.Changes = append(spa.Changes, c)
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_SetParameterAttributes{SetParameterAttributes: spa}})
			}},
		{name: "add-object", args: "PATH", short: "AddObject (the table's path, ending with a dot)", flags: []string{"parameter-key"},
			build: func(o *createOptions, args []string) (*tasksv1.Operation, error) {
				if err := exactly(1, args, "one PATH"); err != nil {
					return nil, err
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_AddObject{AddObject: &tasksv1.AddObject{ObjectName: args[0], ParameterKey: o.parameterKey}}})
			}},
		{name: "delete-object", args: "PATH", short: "DeleteObject (the instance's path, ending with a dot)", flags: []string{"parameter-key"},
			build: func(o *createOptions, args []string) (*tasksv1.Operation, error) {
				if err := exactly(1, args, "one PATH"); err != nil {
					return nil, err
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_DeleteObject{DeleteObject: &tasksv1.DeleteObject{ObjectName: args[0], ParameterKey: o.parameterKey}}})
			}},
		{name: "reboot", short: "Reboot (done once the device boots with \"M Reboot\")", flags: []string{"command-key"},
			build: func(o *createOptions, args []string) (*tasksv1.Operation, error) {
				if err := exactly(0, args, ""); err != nil {
					return nil, err
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_Reboot{Reboot: &tasksv1.Reboot{CommandKey: o.commandKey}}})
			}},
		{name: "factory-reset", short: "FactoryReset",
			build: func(_ *createOptions, args []string) (*tasksv1.Operation, error) {
				if err := exactly(0, args, ""); err != nil {
					return nil, err
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_FactoryReset{FactoryReset: &tasksv1.FactoryReset{}}})
			}},
		{name: "download", args: "URL", short: "Download (-file-type required)", flags: []string{"file-type", "username", "password-file", "target-file-name", "file-size", "delay", "command-key"},
			build: func(o *createOptions, args []string) (*tasksv1.Operation, error) {
				if err := exactly(1, args, "one URL"); err != nil {
					return nil, err
				}
				if o.fileType == "" {
					return nil, errors.New("-file-type is required, e.g. \"1 Firmware Upgrade Image\"")
				}
				delay, err := seconds(o.delay)
				if err != nil {
					return nil, err
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_Download{Download: &tasksv1.Download{CommandKey: o.commandKey, FileType: o.fileType, Url: args[0],
					Username: o.username, Password: o.password, FileSize: o.fileSize, TargetFileName: o.targetFile, DelaySeconds: delay}}})
			}},
		{name: "upload", args: "URL", short: "Upload (-file-type required)", flags: []string{"file-type", "username", "password-file", "delay", "command-key"},
			build: func(o *createOptions, args []string) (*tasksv1.Operation, error) {
				if err := exactly(1, args, "one URL"); err != nil {
					return nil, err
				}
				if o.fileType == "" {
					return nil, errors.New("-file-type is required, e.g. \"1 Vendor Configuration File\"")
				}
				delay, err := seconds(o.delay)
				if err != nil {
					return nil, err
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_Upload{Upload: &tasksv1.Upload{CommandKey: o.commandKey, FileType: o.fileType, Url: args[0],
					Username: o.username, Password: o.password, DelaySeconds: delay}}})
			}},
		{name: "schedule-inform", args: "DELAY", short: "ScheduleInform in DELAY (seconds or 90s, 5m)", flags: []string{"command-key"},
			build: func(o *createOptions, args []string) (*tasksv1.Operation, error) {
				if err := exactly(1, args, "one DELAY"); err != nil {
					return nil, err
				}
				d, err := seconds(args[0])
				if err != nil {
					return nil, err
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_ScheduleInform{ScheduleInform: &tasksv1.ScheduleInform{DelaySeconds: d, CommandKey: o.commandKey}}})
			}},
		{name: "rpc-methods", short: "GetRPCMethods",
			build: func(_ *createOptions, args []string) (*tasksv1.Operation, error) {
				if err := exactly(0, args, ""); err != nil {
					return nil, err
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_GetRpcMethods{GetRpcMethods: &tasksv1.GetRPCMethods{}}})
			}},
		{name: "cancel-transfer", args: "KEY", short: "CancelTransfer of the transfer with CommandKey KEY",
			build: func(_ *createOptions, args []string) (*tasksv1.Operation, error) {
				if err := exactly(1, args, "one KEY"); err != nil {
					return nil, err
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_CancelTransfer{CancelTransfer: &tasksv1.CancelTransfer{CommandKey: args[0]}}})
			}},
		{name: "queued-transfers", short: "GetQueuedTransfers (-all: GetAllQueuedTransfers)", flags: []string{"all"},
			build: func(o *createOptions, args []string) (*tasksv1.Operation, error) {
				if err := exactly(0, args, ""); err != nil {
					return nil, err
				}
				if o.allTransfers {
					return op(&tasksv1.Operation{Kind: &tasksv1.Operation_GetAllQueuedTransfers{GetAllQueuedTransfers: &tasksv1.GetAllQueuedTransfers{}}})
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_GetQueuedTransfers{GetQueuedTransfers: &tasksv1.GetQueuedTransfers{}}})
			}},
		{name: "vendor", args: "METHOD", short: "a vendor method; -xml holds its arguments", flags: []string{"xml", "namespace"},
			build: func(o *createOptions, args []string) (*tasksv1.Operation, error) {
				if err := exactly(1, args, "one METHOD"); err != nil {
					return nil, err
				}
				return op(&tasksv1.Operation{Kind: &tasksv1.Operation_VendorMethod{VendorMethod: &tasksv1.VendorMethod{Method: args[0], Namespace: o.namespace, ArgumentsXml: o.xml}}})
			}},
	}
}

func findKind(name string) *taskKind {
	for _, k := range taskKinds() {
		if k.name == name {
			return k
		}
	}
	return nil
}
