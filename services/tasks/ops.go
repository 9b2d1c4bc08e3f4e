package tasks

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// Limits of an operation's fields, from the CWMP schema's string lengths
// and array bounds (docs/protocol.md §5; docs/tasks.md, "Validation").
const (
	maxNames        = 1000     // parameters, values, attribute changes
	maxPath         = 256      // a parameter name
	maxValue        = 64 << 10 // a parameter value
	maxKey          = 32       // CommandKey, ParameterKey
	maxURL          = 1024     // URL of a transfer or a deployment unit
	maxShort        = 256      // usernames, passwords, file names, messages
	maxFileType     = 64
	maxType         = 64 // xsd type of a value
	maxAccessList   = 64 // entries of an access list, each maxAccessEntry long
	maxAccessEntry  = 64
	maxDUOperations = 16
	maxArgumentsXML = 64 << 10
	maxVendorName   = 256
)

// kindOf is the name of the operation's field ("reboot"), "" when none is
// set.
func kindOf(op *tasksv1.Operation) string {
	if op == nil {
		return ""
	}
	m := op.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("kind"))
	if fd == nil {
		return ""
	}
	return string(fd.Name())
}

// validKind reports whether name is the name of an Operation field.
func validKind(name string) bool {
	return (&tasksv1.Operation{}).ProtoReflect().Descriptor().Oneofs().ByName("kind").Fields().ByName(protoreflect.Name(name)) != nil
}

// opKey returns the CommandKey or ParameterKey the operation names; ""
// when it names none (the task's id is used).
func opKey(op *tasksv1.Operation) string {
	switch k := op.GetKind().(type) {
	case *tasksv1.Operation_SetParameterValues:
		return k.SetParameterValues.GetParameterKey()
	case *tasksv1.Operation_AddObject:
		return k.AddObject.GetParameterKey()
	case *tasksv1.Operation_DeleteObject:
		return k.DeleteObject.GetParameterKey()
	case *tasksv1.Operation_Reboot:
		return k.Reboot.GetCommandKey()
	case *tasksv1.Operation_Download:
		return k.Download.GetCommandKey()
	case *tasksv1.Operation_Upload:
		return k.Upload.GetCommandKey()
	case *tasksv1.Operation_ScheduleInform:
		return k.ScheduleInform.GetCommandKey()
	case *tasksv1.Operation_ScheduleDownload:
		return k.ScheduleDownload.GetCommandKey()
	case *tasksv1.Operation_ChangeDuState:
		return k.ChangeDuState.GetCommandKey()
	}
	return ""
}

// setPasswordFlags sets the password_set output fields of op.
func setPasswordFlags(op *tasksv1.Operation) {
	switch k := op.GetKind().(type) {
	case *tasksv1.Operation_Download:
		if k.Download != nil {
			k.Download.PasswordSet = k.Download.Password != ""
		}
	case *tasksv1.Operation_Upload:
		if k.Upload != nil {
			k.Upload.PasswordSet = k.Upload.Password != ""
		}
	case *tasksv1.Operation_ScheduleDownload:
		if k.ScheduleDownload != nil {
			k.ScheduleDownload.PasswordSet = k.ScheduleDownload.Password != ""
		}
	}
}

// awaits reports whether an operation of this kind ends in a later session
// (a TransferComplete, a boot), so that AWAIT reports fit it.
func awaits(kind string) bool {
	switch kind {
	case "reboot", "factory_reset", "download", "upload", "schedule_inform", "schedule_download", "change_du_state", "diagnostic":
		return true
	}
	return false
}

// readOnly reports whether an operation of this kind only reads the CPE,
// so that running it twice, or for a task that ended meanwhile, harms
// nothing: its claim writes nothing (docs/tasks.md, "Read-only tasks").
func readOnly(kind string) bool {
	switch kind {
	case "get_rpc_methods", "get_parameter_names", "get_parameter_values", "get_parameter_attributes",
		"get_queued_transfers", "get_all_queued_transfers", "refresh":
		return true
	}
	return false
}

// validateOperation checks op against the CWMP limits; the error is a
// fieldError naming the first field that cannot be sent.
func validateOperation(op *tasksv1.Operation) error {
	const f = "operation."
	switch k := op.GetKind().(type) {
	case nil:
		return badField("operation", "exactly one operation must be set")
	case *tasksv1.Operation_GetRpcMethods, *tasksv1.Operation_FactoryReset,
		*tasksv1.Operation_GetQueuedTransfers, *tasksv1.Operation_GetAllQueuedTransfers:
		return nil
	case *tasksv1.Operation_GetParameterNames:
		return checkPath(f+"get_parameter_names.parameter_path", k.GetParameterNames.GetParameterPath(), true)
	case *tasksv1.Operation_GetParameterValues:
		return checkNames(f+"get_parameter_values.names", k.GetParameterValues.GetNames())
	case *tasksv1.Operation_GetParameterAttributes:
		return checkNames(f+"get_parameter_attributes.names", k.GetParameterAttributes.GetNames())
	case *tasksv1.Operation_SetParameterValues:
		p := k.SetParameterValues
		vs := p.GetValues()
		if len(vs) == 0 || len(vs) > maxNames {
			return badField(f+"set_parameter_values.values", fmt.Sprintf("1 to %d values", maxNames))
		}
		seen := make(map[string]bool, len(vs))
		for i, v := range vs {
			field := fmt.Sprintf("%sset_parameter_values.values[%d]", f, i)
			if err := checkPath(field+".name", v.GetName(), false); err != nil {
				return err
			}
			if strings.HasSuffix(v.GetName(), ".") {
				return badField(field+".name", "a parameter, not a partial path")
			}
			if seen[v.GetName()] {
				return badField(field+".name", "set twice")
			}
			seen[v.GetName()] = true
			if err := checkText(field+".value", v.GetValue(), maxValue, false); err != nil {
				return err
			}
			if t := v.GetType(); t != "" && (!strings.HasPrefix(t, "xsd:") && !strings.Contains(t, ":") || len(t) > maxType || !printable(t)) {
				return badField(field+".type", "an XML Schema type such as xsd:string")
			}
		}
		return checkText(f+"set_parameter_values.parameter_key", p.GetParameterKey(), maxKey, false)
	case *tasksv1.Operation_SetParameterAttributes:
		cs := k.SetParameterAttributes.GetChanges()
		if len(cs) == 0 || len(cs) > maxNames {
			return badField(f+"set_parameter_attributes.changes", fmt.Sprintf("1 to %d changes", maxNames))
		}
		for i, c := range cs {
			field := fmt.Sprintf("%sset_parameter_attributes.changes[%d]", f, i)
			if err := checkPath(field+".name", c.GetName(), true); err != nil {
				return err
			}
			if c.GetNotification() > 6 {
				return badField(field+".notification", "0 to 6")
			}
			if len(c.GetAccessList()) > maxAccessList {
				return badField(field+".access_list", fmt.Sprintf("at most %d entries", maxAccessList))
			}
			for j, a := range c.GetAccessList() {
				if err := checkText(fmt.Sprintf("%s.access_list[%d]", field, j), a, maxAccessEntry, true); err != nil {
					return err
				}
			}
		}
		return nil
	case *tasksv1.Operation_AddObject:
		return checkObject(f+"add_object", k.AddObject.GetObjectName(), k.AddObject.GetParameterKey())
	case *tasksv1.Operation_DeleteObject:
		return checkObject(f+"delete_object", k.DeleteObject.GetObjectName(), k.DeleteObject.GetParameterKey())
	case *tasksv1.Operation_Reboot:
		return checkText(f+"reboot.command_key", k.Reboot.GetCommandKey(), maxKey, false)
	case *tasksv1.Operation_Download:
		d := k.Download
		return firstErr(
			checkText(f+"download.command_key", d.GetCommandKey(), maxKey, false),
			checkText(f+"download.file_type", d.GetFileType(), maxFileType, true),
			checkURL(f+"download.url", d.GetUrl(), true),
			checkText(f+"download.username", d.GetUsername(), maxShort, false),
			checkText(f+"download.password", d.GetPassword(), maxShort, false),
			checkText(f+"download.target_file_name", d.GetTargetFileName(), maxShort, false),
			checkURL(f+"download.success_url", d.GetSuccessUrl(), false),
			checkURL(f+"download.failure_url", d.GetFailureUrl(), false),
		)
	case *tasksv1.Operation_Upload:
		u := k.Upload
		return firstErr(
			checkText(f+"upload.command_key", u.GetCommandKey(), maxKey, false),
			checkText(f+"upload.file_type", u.GetFileType(), maxFileType, true),
			checkURL(f+"upload.url", u.GetUrl(), true),
			checkText(f+"upload.username", u.GetUsername(), maxShort, false),
			checkText(f+"upload.password", u.GetPassword(), maxShort, false),
		)
	case *tasksv1.Operation_ScheduleInform:
		if k.ScheduleInform.GetDelaySeconds() == 0 {
			return badField(f+"schedule_inform.delay_seconds", "must be at least 1")
		}
		return checkText(f+"schedule_inform.command_key", k.ScheduleInform.GetCommandKey(), maxKey, false)
	case *tasksv1.Operation_ScheduleDownload:
		d := k.ScheduleDownload
		if err := firstErr(
			checkText(f+"schedule_download.command_key", d.GetCommandKey(), maxKey, false),
			checkText(f+"schedule_download.file_type", d.GetFileType(), maxFileType, true),
			checkURL(f+"schedule_download.url", d.GetUrl(), true),
			checkText(f+"schedule_download.username", d.GetUsername(), maxShort, false),
			checkText(f+"schedule_download.password", d.GetPassword(), maxShort, false),
			checkText(f+"schedule_download.target_file_name", d.GetTargetFileName(), maxShort, false),
		); err != nil {
			return err
		}
		ws := d.GetTimeWindows()
		if len(ws) == 0 || len(ws) > 2 {
			return badField(f+"schedule_download.time_windows", "1 or 2 windows")
		}
		for i, w := range ws {
			field := fmt.Sprintf("%sschedule_download.time_windows[%d]", f, i)
			switch {
			case w.GetWindowEnd() < w.GetWindowStart():
				return badField(field+".window_end", "before window_start")
			case i == 1 && w.GetWindowStart() < ws[0].GetWindowEnd():
				return badField(field+".window_start", "before the first window's end")
			case w.GetMaxRetries() < -1:
				return badField(field+".max_retries", "-1 or more")
			}
			if err := firstErr(
				checkText(field+".window_mode", w.GetWindowMode(), maxFileType, true),
				checkText(field+".user_message", w.GetUserMessage(), maxShort, false),
			); err != nil {
				return err
			}
		}
		return nil
	case *tasksv1.Operation_CancelTransfer:
		return checkText(f+"cancel_transfer.command_key", k.CancelTransfer.GetCommandKey(), maxKey, false)
	case *tasksv1.Operation_ChangeDuState:
		c := k.ChangeDuState
		if err := checkText(f+"change_du_state.command_key", c.GetCommandKey(), maxKey, false); err != nil {
			return err
		}
		ops := c.GetOperations()
		if len(ops) == 0 || len(ops) > maxDUOperations {
			return badField(f+"change_du_state.operations", fmt.Sprintf("1 to %d operations", maxDUOperations))
		}
		for i, o := range ops {
			field := fmt.Sprintf("%schange_du_state.operations[%d]", f, i)
			var err error
			switch d := o.GetKind().(type) {
			case *tasksv1.DeploymentUnitOperation_Install:
				err = firstErr(checkURL(field+".install.url", d.Install.GetUrl(), true),
					checkText(field+".install.uuid", d.Install.GetUuid(), 36, false),
					checkText(field+".install.username", d.Install.GetUsername(), maxShort, false),
					checkText(field+".install.password", d.Install.GetPassword(), maxShort, false),
					checkText(field+".install.execution_env_ref", d.Install.GetExecutionEnvRef(), maxShort, false))
			case *tasksv1.DeploymentUnitOperation_Update:
				err = firstErr(checkURL(field+".update.url", d.Update.GetUrl(), false),
					checkText(field+".update.uuid", d.Update.GetUuid(), 36, false),
					checkText(field+".update.version", d.Update.GetVersion(), 32, false),
					checkText(field+".update.username", d.Update.GetUsername(), maxShort, false),
					checkText(field+".update.password", d.Update.GetPassword(), maxShort, false))
			case *tasksv1.DeploymentUnitOperation_Uninstall:
				err = firstErr(checkText(field+".uninstall.uuid", d.Uninstall.GetUuid(), 36, true),
					checkText(field+".uninstall.version", d.Uninstall.GetVersion(), 32, false),
					checkText(field+".uninstall.execution_env_ref", d.Uninstall.GetExecutionEnvRef(), maxShort, false))
			default:
				err = badField(field, "exactly one of install, update and uninstall must be set")
			}
			if err != nil {
				return err
			}
		}
		return nil
	case *tasksv1.Operation_VendorMethod:
		v := k.VendorMethod
		if !validXMLName(v.GetMethod()) {
			return badField(f+"vendor_method.method", fmt.Sprintf("an element name of at most %d letters, digits, '_', '-' and '.', starting with a letter or '_'", maxVendorName))
		}
		if err := checkText(f+"vendor_method.namespace", v.GetNamespace(), maxShort, false); err != nil {
			return err
		}
		if len(v.GetArgumentsXml()) > maxArgumentsXML {
			return badField(f+"vendor_method.arguments_xml", "longer than 64 KiB")
		}
		if err := wellFormed(v.GetArgumentsXml()); err != nil {
			return badField(f+"vendor_method.arguments_xml", "not well-formed XML: "+err.Error())
		}
		// What the session worker will send: refused here rather than as a
		// fault of the task once it reaches a session.
		if err := cwmp.CheckVendorMethod(v.GetMethod()); err != nil {
			return badField(f+"vendor_method.method", err.Error())
		}
		if err := cwmp.CheckVendorRequest(&cwmp.VendorRequest{Name: v.GetMethod(), Namespace: v.GetNamespace(), Arguments: v.GetArgumentsXml()}); err != nil {
			return badField(f+"vendor_method", err.Error())
		}
		return nil
	case *tasksv1.Operation_Refresh:
		return checkPath(f+"refresh.path", k.Refresh.GetPath(), true)
	case *tasksv1.Operation_Diagnostic:
		return validateDiagnostic(f+"diagnostic", k.Diagnostic)
	}
	return badField("operation", "unknown operation")
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func checkNames(field string, names []string) error {
	if len(names) == 0 || len(names) > maxNames {
		return badField(field, fmt.Sprintf("1 to %d names", maxNames))
	}
	for i, n := range names {
		if err := checkPath(fmt.Sprintf("%s[%d]", field, i), n, false); err != nil {
			return err
		}
	}
	return nil
}

// checkPath checks a parameter name or partial path: at most 256 printable
// characters without spaces; empty only when allowEmpty (the root).
func checkPath(field, p string, allowEmpty bool) error {
	switch {
	case p == "" && !allowEmpty:
		return badField(field, "must not be empty")
	case len(p) > maxPath:
		return badField(field, fmt.Sprintf("longer than %d characters", maxPath))
	case strings.ContainsAny(p, " \t") || !printable(p):
		return badField(field, "not a parameter path")
	}
	return nil
}

func checkObject(field, name, key string) error {
	if err := checkPath(field+".object_name", name, false); err != nil {
		return err
	}
	if !strings.HasSuffix(name, ".") {
		return badField(field+".object_name", "an object path ends with a dot")
	}
	return checkText(field+".parameter_key", key, maxKey, false)
}

// checkText checks a string field: valid UTF-8 without control characters,
// at most max bytes, not empty when required.
func checkText(field, s string, max int, required bool) error {
	switch {
	case s == "" && required:
		return badField(field, "must not be empty")
	case len(s) > max:
		return badField(field, fmt.Sprintf("longer than %d bytes", max))
	case !utf8.ValidString(s):
		return badField(field, "not valid UTF-8")
	}
	for _, r := range s {
		if r < ' ' && r != '\t' && r != '\n' && r != '\r' || r == 0x7f {
			return badField(field, "holds control characters")
		}
	}
	return nil
}

func checkURL(field, u string, required bool) error {
	if err := checkText(field, u, maxURL, required); err != nil {
		return err
	}
	if u == "" {
		return nil
	}
	if !strings.Contains(u, "://") || strings.ContainsAny(u, " \t\r\n") {
		return badField(field, "not an absolute URL")
	}
	return nil
}

// printable reports whether s is printable ASCII.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func validXMLName(s string) bool {
	if s == "" || len(s) > maxVendorName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_'
		if i == 0 && !letter || !letter && !('0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// wellFormed checks that s is a sequence of well-formed XML content (child
// elements and text), decoding it inside a wrapper element, without
// directives or processing instructions.
func wellFormed(s string) error {
	if s == "" {
		return nil
	}
	d := xml.NewDecoder(io.MultiReader(strings.NewReader("<a>"), strings.NewReader(s), strings.NewReader("</a>")))
	d.Strict = true
	depth := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			if depth != 0 {
				return fmt.Errorf("unclosed element")
			}
			return nil
		}
		if err != nil {
			return err
		}
		switch tok.(type) {
		case xml.StartElement:
			depth++
			if depth > 64 {
				return fmt.Errorf("nested deeper than 63 elements")
			}
		case xml.EndElement:
			depth--
			if depth == 0 {
				// The wrapper closed: anything after it came from s.
				if _, err := d.Token(); err != io.EOF {
					return fmt.Errorf("unbalanced end element")
				}
				return nil
			}
		case xml.ProcInst, xml.Directive:
			return fmt.Errorf("processing instructions and directives are not allowed")
		}
	}
}
