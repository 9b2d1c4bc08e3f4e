package cwmp

import "strconv"

// Schema limits that apply across methods (docs/protocol.md §5, §2.2).
const (
	maxEvents    = 64
	maxTransfers = 16
	maxFileArgs  = 16
	maxWindows   = 2
	maxNameLen   = 256
	maxKeyLen    = 32 // CommandKey, ParameterKey
)

// body writes the one RPC element of the SOAP Body, with its arguments in
// the XSD's sequence order.
func (e *encoder) body(msg Message) {
	switch m := msg.(type) {
	case *VendorRequest:
		if m == nil {
			e.failf("nil vendor request body")
			return
		}
		e.method = m.Name
		e.vendorBody(m.Name, m.Namespace, m.Arguments, CheckVendorRequest(m))
		return
	case *VendorResponse:
		if m == nil {
			e.failf("nil vendor response body")
			return
		}
		e.method = m.Name
		e.vendorBody(m.Name, m.Namespace, m.InnerXML, checkVendorResponse(m))
		return
	}
	if u, ok := msg.(*Unknown); ok {
		name := "<nil>"
		if u != nil {
			name = u.Name
		}
		e.failf("cannot encode unknown method %q", name)
		return
	}
	e.method = msg.Method()
	if since := Since(e.method); since > e.v {
		e.failf("method needs CWMP %s, message is %s", since, e.v)
		return
	}
	switch m := msg.(type) {
	case *Fault:
		if m == nil {
			e.nilBody()
			return
		}
		e.fault(m)
		return

	// Messages without arguments: a nil pointer is as good as an empty
	// struct.
	case *GetRPCMethods, *SetParameterAttributesResponse, *RebootResponse,
		*FactoryReset, *FactoryResetResponse, *GetQueuedTransfers,
		*GetAllQueuedTransfers, *ScheduleInformResponse, *SetVouchersResponse,
		*ScheduleDownloadResponse, *CancelTransferResponse, *ChangeDUStateResponse,
		*TransferCompleteResponse, *AutonomousTransferCompleteResponse,
		*DUStateChangeCompleteResponse, *AutonomousDUStateChangeCompleteResponse,
		*RequestDownloadResponse:
		e.rpcOpen(e.method)

	case *GetRPCMethodsResponse:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.stringArray("MethodList", m.MethodList, 1, 64)
	case *SetParameterValues:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.parameterValues(m.ParameterList)
		e.str("ParameterKey", m.ParameterKey, maxKeyLen)
	case *SetParameterValuesResponse:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.intIn("Status", m.Status, 0, 1)
	case *GetParameterValues:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.stringArray("ParameterNames", m.ParameterNames, 1, maxNameLen)
	case *GetParameterValuesResponse:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.parameterValues(m.ParameterList)
	case *GetParameterNames:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.str("ParameterPath", m.ParameterPath, maxNameLen)
		e.bool("NextLevel", m.NextLevel)
	case *GetParameterNamesResponse:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.parameterInfos(m.ParameterList)
	case *SetParameterAttributes:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.setAttributes(m.ParameterList)
	case *GetParameterAttributes:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.stringArray("ParameterNames", m.ParameterNames, 1, maxNameLen)
	case *GetParameterAttributesResponse:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.attributes(m.ParameterList)
	case *AddObject:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.objectName(m.ObjectName)
		e.str("ParameterKey", m.ParameterKey, maxKeyLen)
	case *AddObjectResponse:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		if m.InstanceNumber == 0 {
			e.failf("InstanceNumber must be at least 1")
		}
		e.uint32("InstanceNumber", m.InstanceNumber)
		e.intIn("Status", m.Status, 0, 1)
	case *DeleteObject:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.objectName(m.ObjectName)
		e.str("ParameterKey", m.ParameterKey, maxKeyLen)
	case *DeleteObjectResponse:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.intIn("Status", m.Status, 0, 1)
	case *Reboot:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.str("CommandKey", m.CommandKey, maxKeyLen)
	case *Download:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.str("CommandKey", m.CommandKey, maxKeyLen)
		e.fileType(m.FileType, downloadFile)
		e.url(m.URL, 256)
		e.str("Username", m.Username, 256)
		e.str("Password", m.Password, 256)
		e.uint32("FileSize", m.FileSize)
		e.str("TargetFileName", m.TargetFileName, 256)
		e.uint32("DelaySeconds", m.DelaySeconds)
		e.str("SuccessURL", m.SuccessURL, 256)
		e.str("FailureURL", m.FailureURL, 256)
	case *DownloadResponse:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.intIn("Status", m.Status, 0, 1)
		e.dateTime("StartTime", m.StartTime)
		e.dateTime("CompleteTime", m.CompleteTime)
	case *Upload:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.str("CommandKey", m.CommandKey, maxKeyLen)
		e.fileType(m.FileType, uploadFile)
		e.url(m.URL, 256)
		e.str("Username", m.Username, 256)
		e.str("Password", m.Password, 256)
		e.uint32("DelaySeconds", m.DelaySeconds)
	case *UploadResponse:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.intIn("Status", m.Status, 0, 1)
		e.dateTime("StartTime", m.StartTime)
		e.dateTime("CompleteTime", m.CompleteTime)
	case *GetQueuedTransfersResponse:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.queuedTransfers(m.TransferList)
	case *GetAllQueuedTransfersResponse:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.allQueuedTransfers(m.TransferList)
	case *ScheduleInform:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.uint32("DelaySeconds", m.DelaySeconds)
		e.str("CommandKey", m.CommandKey, maxKeyLen)
	case *SetVouchers:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.vouchers(m.VoucherList)
	case *GetOptions:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.str("OptionName", m.OptionName, 64)
	case *GetOptionsResponse:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.options(m.OptionList)
	case *ScheduleDownload:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.str("CommandKey", m.CommandKey, maxKeyLen)
		e.fileType(m.FileType, downloadFile)
		e.url(m.URL, 256)
		e.str("Username", m.Username, 256)
		e.str("Password", m.Password, 256)
		e.uint32("FileSize", m.FileSize)
		e.str("TargetFileName", m.TargetFileName, 256)
		e.timeWindows(m.TimeWindowList)
	case *CancelTransfer:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.str("CommandKey", m.CommandKey, maxKeyLen)
	case *ChangeDUState:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.duOperations(m.Operations)
		// CommandKey is optional in the schema; an empty one carries no
		// information, so it is left out.
		if m.CommandKey != "" {
			e.str("CommandKey", m.CommandKey, maxKeyLen)
		}
	case *Inform:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.deviceID(&m.DeviceID)
		e.events(m.Events)
		e.uint32("MaxEnvelopes", m.MaxEnvelopes)
		e.dateTime("CurrentTime", m.CurrentTime)
		e.uint32("RetryCount", m.RetryCount)
		e.parameterValues(m.ParameterList)
	case *InformResponse:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.uint32("MaxEnvelopes", m.MaxEnvelopes)
	case *TransferComplete:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.str("CommandKey", m.CommandKey, maxKeyLen)
		e.transferFault(&m.FaultStruct)
		e.dateTime("StartTime", m.StartTime)
		e.dateTime("CompleteTime", m.CompleteTime)
	case *AutonomousTransferComplete:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.str("AnnounceURL", m.AnnounceURL, 1024)
		e.str("TransferURL", m.TransferURL, 1024)
		e.bool("IsDownload", m.IsDownload)
		e.fileType(m.FileType, transferFile)
		e.uint32("FileSize", m.FileSize)
		e.str("TargetFileName", m.TargetFileName, 256)
		e.transferFault(&m.FaultStruct)
		e.dateTime("StartTime", m.StartTime)
		e.dateTime("CompleteTime", m.CompleteTime)
	case *DUStateChangeComplete:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		if len(m.Results) == 0 {
			e.failf("Results needs at least 1 item")
		}
		for i := range m.Results {
			e.open("Results")
			e.opResult(&m.Results[i])
			e.close("Results")
		}
		if m.CommandKey != "" {
			e.str("CommandKey", m.CommandKey, maxKeyLen)
		}
	case *AutonomousDUStateChangeComplete:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		if len(m.Results) == 0 {
			e.failf("Results needs at least 1 item")
		}
		for i := range m.Results {
			r := &m.Results[i]
			e.open("Results")
			e.opResult(&r.OpResult)
			e.str("OperationPerformed", r.OperationPerformed, 0)
			e.close("Results")
		}
	case *RequestDownload:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.fileType(m.FileType, downloadFile)
		e.fileTypeArgs(m.FileTypeArg)
	case *Kicked:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.str("Command", m.Command, 32)
		e.str("Referer", m.Referer, 64)
		e.str("Arg", m.Arg, 256)
		e.str("Next", m.Next, 1024)
	case *KickedResponse:
		if m == nil {
			e.nilBody()
			return
		}
		e.rpcOpen(e.method)
		e.str("NextURL", m.NextURL, 1024)
	default:
		e.failf("no encoder for body type %T", msg)
		return
	}
	e.rpcClose(e.method)
}

func (e *encoder) nilBody() { e.failf("nil %s body", e.method) }

// ---- SOAP Fault (docs/protocol.md §2.4).

func (e *encoder) fault(f *Fault) {
	if !validFaultCode(f.Code, e.v) {
		e.failf("FaultCode %d is not a CWMP %s fault code", int(f.Code), e.v)
	}
	e.b = append(e.b, "<soap-env:Fault><faultcode>"...)
	e.soapFaultCode(f)
	e.b = append(e.b, "</faultcode><faultstring>"...)
	if f.SOAPString == "" {
		e.b = append(e.b, "CWMP fault"...)
	} else {
		e.text("faultstring", f.SOAPString)
	}
	e.b = append(e.b, "</faultstring><detail><cwmp:Fault><FaultCode>"...)
	e.b = strconv.AppendInt(e.b, int64(f.Code), 10)
	e.b = append(e.b, "</FaultCode>"...)
	// FaultString is optional in the schema: an empty one is left out
	// rather than invented, so that what was given is what is sent.
	if f.String != "" {
		e.str("FaultString", f.String, 0)
	}
	for i := range f.SetParameterValuesFaults {
		p := &f.SetParameterValuesFaults[i]
		if !validSPVFaultCode(p.FaultCode, e.v) {
			e.failf("SetParameterValuesFault[%d] FaultCode %d is not a CWMP %s CPE fault code", i, int(p.FaultCode), e.v)
		}
		e.b = append(e.b, "<SetParameterValuesFault>"...)
		e.str("ParameterName", p.ParameterName, 0)
		e.int("FaultCode", int(p.FaultCode))
		if p.FaultString != "" {
			e.str("FaultString", p.FaultString, 0)
		}
		e.b = append(e.b, "</SetParameterValuesFault>"...)
	}
	e.b = append(e.b, "</cwmp:Fault></detail></soap-env:Fault>"...)
}

// soapFaultCode writes faultcode as a QName in the envelope namespace
// ("soap-env:Client"), which SOAP 1.1 §4.4.1 requires: an unprefixed
// "Client" would name a no-namespace element. The local part is taken from
// SOAPCode whatever prefix it came with ("Client", "SOAP-ENV:Server",
// "Client.Authentication"), or derived from Code when SOAPCode is empty.
func (e *encoder) soapFaultCode(f *Fault) {
	local := f.SOAPCode
	if local == "" {
		local = f.Code.SOAPFaultCode()
	}
	for i := len(local) - 1; i >= 0; i-- {
		if local[i] == ':' {
			local = local[i+1:]
			break
		}
	}
	if !isNCName(local) {
		e.failf("faultcode %q is not a SOAP fault code", f.SOAPCode)
	}
	e.b = append(e.b, "soap-env:"...)
	e.b = append(e.b, local...)
}

// ---- argument structures.

// stringArray writes an xsd:string array with at least min items of at
// most maxLen characters each.
func (e *encoder) stringArray(name string, items []string, min, maxLen int) {
	if len(items) < min {
		e.failf("%s needs at least %d item", name, min)
	}
	e.arrayOpen(name, "xsd:string", len(items))
	for i, s := range items {
		if len(s) > maxLen {
			e.maxLen(name+"["+strconv.Itoa(i)+"]", s, maxLen)
		}
		e.b = append(e.b, "<string>"...)
		e.text(name, s)
		e.b = append(e.b, "</string>"...)
	}
	e.close(name)
}

// parameterValues writes a ParameterList of ParameterValueStructs. Every
// Value carries xsi:type (docs/protocol.md §2.3, §13 output 3), and its text must be
// valid for that type, or the CPE (and the schema) would reject it.
func (e *encoder) parameterValues(list []ParameterValue) {
	e.arrayOpen("ParameterList", "cwmp:ParameterValueStruct", len(list))
	for i := range list {
		p := &list[i]
		e.b = append(e.b, "<ParameterValueStruct><Name>"...)
		if len(p.Name) > maxNameLen {
			e.maxLen("ParameterList["+strconv.Itoa(i)+"] Name", p.Name, maxNameLen)
		}
		if problem := e.escape(p.Name); problem != "" {
			e.failf("ParameterList[%d] Name %q %s", i, p.Name, problem)
		}
		e.b = append(e.b, `</Name><Value xsi:type="`...)
		qname, local, ok := valueType(p.Type)
		switch {
		case !ok:
			e.failf("ParameterList[%d] (%q): xsi:type %q is not xsd:name or soap-enc:name", i, p.Name, p.Type)
		case local == "base64":
			// TR-069's base64 type is often spelt xsd:base64, a name XML
			// Schema does not define; the SOAP encoding namespace does
			// define base64, so that is the spelling that validates
			// (docs/protocol.md §9).
			e.b = append(e.b, "soap-enc:base64"...)
		case qname != "":
			e.b = append(e.b, qname...)
		case len(p.Type) > len(local): // a SOAP-ENC type under another prefix
			e.b = append(e.b, "soap-enc:"...)
			e.b = append(e.b, local...)
		default:
			e.b = append(e.b, "xsd:"...)
			e.b = append(e.b, local...)
		}
		e.b = append(e.b, `">`...)
		if local != "string" && !validTypedValue(local, p.Value) {
			e.failf("ParameterList[%d] (%q): value %q is not a valid %s", i, p.Name, p.Value, local)
		}
		if problem := e.escape(p.Value); problem != "" {
			e.failf("ParameterList[%d] (%q) Value %s", i, p.Name, problem)
		}
		e.b = append(e.b, "</Value></ParameterValueStruct>"...)
	}
	e.close("ParameterList")
}

func (e *encoder) parameterInfos(list []ParameterInfo) {
	e.arrayOpen("ParameterList", "cwmp:ParameterInfoStruct", len(list))
	for i := range list {
		e.open("ParameterInfoStruct")
		e.str("Name", list[i].Name, maxNameLen)
		e.bool("Writable", list[i].Writable)
		e.close("ParameterInfoStruct")
	}
	e.close("ParameterList")
}

// notification checks a Notification value: 0..2 in the 1.0 and 1.1
// schemas, 0..6 from 1.2 on (docs/protocol.md §11).
func (e *encoder) notification(i, n int) {
	hi := 6
	if e.v < V1_2 {
		hi = 2
	}
	if n < 0 || n > hi {
		e.failf("ParameterList[%d] Notification %d is outside 0..%d for CWMP %s", i, n, hi, e.v)
	}
	e.int("Notification", n)
}

// accessList writes an AccessList; "Subscriber" is the only value the
// schema defines (docs/protocol.md §11).
func (e *encoder) accessList(i int, list []string) {
	e.arrayOpen("AccessList", "xsd:string", len(list))
	for _, s := range list {
		if s != "Subscriber" {
			e.failf("ParameterList[%d] AccessList entry %q is not Subscriber", i, s)
		}
		e.b = append(e.b, "<string>"...)
		e.text("AccessList", s)
		e.b = append(e.b, "</string>"...)
	}
	e.close("AccessList")
}

func (e *encoder) setAttributes(list []SetParameterAttributesStruct) {
	if len(list) == 0 {
		e.failf("ParameterList needs at least 1 item")
	}
	e.arrayOpen("ParameterList", "cwmp:SetParameterAttributesStruct", len(list))
	for i := range list {
		a := &list[i]
		e.open("SetParameterAttributesStruct")
		e.str("Name", a.Name, maxNameLen)
		e.bool("NotificationChange", a.NotificationChange)
		e.notification(i, a.Notification)
		e.bool("AccessListChange", a.AccessListChange)
		e.accessList(i, a.AccessList)
		e.close("SetParameterAttributesStruct")
	}
	e.close("ParameterList")
}

func (e *encoder) attributes(list []ParameterAttribute) {
	e.arrayOpen("ParameterList", "cwmp:ParameterAttributeStruct", len(list))
	for i := range list {
		a := &list[i]
		e.open("ParameterAttributeStruct")
		e.str("Name", a.Name, maxNameLen)
		e.notification(i, a.Notification)
		e.accessList(i, a.AccessList)
		e.close("ParameterAttributeStruct")
	}
	e.close("ParameterList")
}

// objectName writes the ObjectName of AddObject/DeleteObject: a path
// ending in "." (ObjectNameType).
func (e *encoder) objectName(name string) {
	if name == "" || name[len(name)-1] != '.' || !matchNoBreaks(name, false) {
		e.failf("ObjectName %q must be a path ending in \".\"", name)
	}
	e.str("ObjectName", name, maxNameLen)
}

// url writes the URL of a transfer, which must be given.
func (e *encoder) url(u string, maxLen int) {
	if u == "" {
		e.failf("URL is required")
	}
	e.str("URL", u, maxLen)
}

func (e *encoder) fileType(t string, kind fileTypeKind) {
	if !validFileType(t, kind, e.v) {
		e.failf("FileType %q is not a CWMP %s file type", t, e.v)
	}
	e.str("FileType", t, 64)
}

func (e *encoder) deviceID(d *DeviceID) {
	e.open("DeviceId")
	e.str("Manufacturer", d.Manufacturer, 64)
	if !validOUI(d.OUI) {
		e.failf("DeviceId/OUI %q is not 6 upper-case hex digits", d.OUI)
	}
	e.str("OUI", d.OUI, 0)
	e.str("ProductClass", d.ProductClass, 64)
	e.str("SerialNumber", d.SerialNumber, 64)
	e.close("DeviceId")
}

func (e *encoder) events(list []Event) {
	if len(list) > maxEvents {
		e.failf("Event has %d items, at most %d allowed", len(list), maxEvents)
	}
	e.arrayOpen("Event", "cwmp:EventStruct", len(list))
	for i := range list {
		ev := &list[i]
		if !validEventCode(ev.Code, e.v) {
			e.failf("Event[%d] EventCode %q is not a CWMP %s event code", i, ev.Code, e.v)
		}
		e.open("EventStruct")
		e.str("EventCode", ev.Code, 64)
		e.str("CommandKey", ev.CommandKey, maxKeyLen)
		e.close("EventStruct")
	}
	e.close("Event")
}

func (e *encoder) transferFault(f *FaultStruct) {
	if !validTransferFaultCode(f.FaultCode, e.v) {
		e.failf("FaultStruct/FaultCode %d is not allowed in a CWMP %s transfer result", int(f.FaultCode), e.v)
	}
	e.open("FaultStruct")
	e.int("FaultCode", int(f.FaultCode))
	e.str("FaultString", f.FaultString, 256)
	e.close("FaultStruct")
}

func (e *encoder) queuedTransfers(list []QueuedTransfer) {
	if len(list) > maxTransfers {
		e.failf("TransferList has %d items, at most %d allowed", len(list), maxTransfers)
	}
	e.arrayOpen("TransferList", "cwmp:QueuedTransferStruct", len(list))
	for i := range list {
		t := &list[i]
		e.open("QueuedTransferStruct")
		e.str("CommandKey", t.CommandKey, maxKeyLen)
		e.intIn("State", t.State, 1, 3)
		e.close("QueuedTransferStruct")
	}
	e.close("TransferList")
}

func (e *encoder) allQueuedTransfers(list []AllQueuedTransfer) {
	if len(list) > maxTransfers {
		e.failf("TransferList has %d items, at most %d allowed", len(list), maxTransfers)
	}
	e.arrayOpen("TransferList", "cwmp:AllQueuedTransferStruct", len(list))
	for i := range list {
		t := &list[i]
		e.open("AllQueuedTransferStruct")
		e.str("CommandKey", t.CommandKey, maxKeyLen)
		e.intIn("State", t.State, 1, 3)
		e.bool("IsDownload", t.IsDownload)
		e.fileType(t.FileType, transferFile)
		e.uint32("FileSize", t.FileSize)
		e.str("TargetFileName", t.TargetFileName, 256)
		e.close("AllQueuedTransferStruct")
	}
	e.close("TransferList")
}

// vouchers writes a VoucherList of soap-enc:base64 items.
func (e *encoder) vouchers(list []string) {
	if len(list) == 0 {
		e.failf("VoucherList needs at least 1 item")
	}
	e.arrayOpen("VoucherList", "soap-enc:base64", len(list))
	for i, v := range list {
		if !validBase64(v) {
			e.failf("VoucherList[%d] is not base64", i)
		}
		e.b = append(e.b, "<base64>"...)
		e.text("VoucherList", v)
		e.b = append(e.b, "</base64>"...)
	}
	e.close("VoucherList")
}

func (e *encoder) options(list []Option) {
	e.arrayOpen("OptionList", "cwmp:OptionStruct", len(list))
	for i := range list {
		o := &list[i]
		e.open("OptionStruct")
		e.str("OptionName", o.OptionName, 64)
		// VoucherSN is an xsd:unsignedInt held as text.
		if _, err := strconv.ParseUint(o.VoucherSN, 10, 32); err != nil {
			e.failf("OptionList[%d] VoucherSN %q is not an unsignedInt", i, o.VoucherSN)
		}
		e.str("VoucherSN", o.VoucherSN, 0)
		e.intIn("State", o.State, 0, 3)
		e.intIn("Mode", o.Mode, 0, 2)
		e.dateTime("StartDate", o.StartDate)
		if o.ExpirationDate != "" {
			e.dateTime("ExpirationDate", o.ExpirationDate)
		}
		// IsTransferable is an xsd:int restricted to 0 and 1, not a boolean.
		if o.IsTransferable {
			e.int("IsTransferable", 1)
		} else {
			e.int("IsTransferable", 0)
		}
		e.close("OptionStruct")
	}
	e.close("OptionList")
}

func (e *encoder) timeWindows(list []TimeWindow) {
	if len(list) < 1 || len(list) > maxWindows {
		e.failf("TimeWindowList has %d items, 1..%d allowed", len(list), maxWindows)
	}
	e.arrayOpen("TimeWindowList", "cwmp:TimeWindowStruct", len(list))
	for i := range list {
		w := &list[i]
		e.open("TimeWindowStruct")
		e.uint32("WindowStart", w.WindowStart)
		e.uint32("WindowEnd", w.WindowEnd)
		if !matchNumbered(w.WindowMode, false) && !matchVendor(w.WindowMode) {
			e.failf("TimeWindowList[%d] WindowMode %q is not a window mode", i, w.WindowMode)
		}
		e.str("WindowMode", w.WindowMode, 64)
		e.str("UserMessage", w.UserMessage, 256)
		e.int("MaxRetries", w.MaxRetries)
		e.close("TimeWindowStruct")
	}
	e.close("TimeWindowList")
}

// duOperations writes the Operations of ChangeDUState: plain repeated
// elements (not a SOAP array) whose xsi:type picks the OperationStruct
// subtype (docs/protocol.md §5.1). Optional fields are written only when set; a field
// the kind does not carry is refused rather than silently dropped.
func (e *encoder) duOperations(ops []DUOperation) {
	if len(ops) == 0 {
		e.failf("Operations needs at least 1 item")
	}
	for i := range ops {
		op := &ops[i]
		e.b = append(e.b, `<Operations xsi:type="cwmp:`...)
		switch op.Kind {
		case OpInstall:
			e.b = append(e.b, OpInstall+`">`...)
			if op.Version != "" {
				e.failf("Operations[%d]: %s has no Version", i, op.Kind)
			}
			if op.URL == "" {
				e.failf("Operations[%d]: %s needs a URL", i, op.Kind)
			}
			e.str("URL", op.URL, 1024)
			e.optUUID(i, op.UUID)
			e.optStr("Username", op.Username, 256)
			e.optStr("Password", op.Password, 256)
			e.optStr("ExecutionEnvRef", op.ExecutionEnvRef, 256)
		case OpUpdate:
			e.b = append(e.b, OpUpdate+`">`...)
			if op.ExecutionEnvRef != "" {
				e.failf("Operations[%d]: %s has no ExecutionEnvRef", i, op.Kind)
			}
			e.optUUID(i, op.UUID)
			e.optStr("Version", op.Version, 32)
			e.optStr("URL", op.URL, 1024)
			e.optStr("Username", op.Username, 256)
			e.optStr("Password", op.Password, 256)
		case OpUninstall:
			e.b = append(e.b, OpUninstall+`">`...)
			if op.URL != "" || op.Username != "" || op.Password != "" {
				e.failf("Operations[%d]: %s has no URL, Username or Password", i, op.Kind)
			}
			if !validUUID(op.UUID) {
				e.failf("Operations[%d]: %s needs a UUID, got %q", i, op.Kind, op.UUID)
			}
			e.str("UUID", op.UUID, 0)
			e.optStr("Version", op.Version, 32)
			e.optStr("ExecutionEnvRef", op.ExecutionEnvRef, 256)
		default:
			e.failf("Operations[%d]: unknown kind %q", i, op.Kind)
		}
		e.close("Operations")
	}
}

func (e *encoder) optStr(name, s string, maxLen int) {
	if s != "" {
		e.str(name, s, maxLen)
	}
}

func (e *encoder) optUUID(i int, u string) {
	if u == "" {
		return
	}
	if !validUUID(u) {
		e.failf("Operations[%d] UUID %q is not a UUID", i, u)
	}
	e.str("UUID", u, 0)
}

// opResult writes the fields of an OpResultStruct (the caller writes the
// enclosing Results element).
func (e *encoder) opResult(r *OpResult) {
	if !validUUID(r.UUID) {
		e.failf("Results UUID %q is not a UUID", r.UUID)
	}
	e.str("UUID", r.UUID, 0)
	e.str("DeploymentUnitRef", r.DeploymentUnitRef, 0)
	e.str("Version", r.Version, 32)
	switch r.CurrentState {
	case "Installed", "Uninstalled", "Failed":
	default:
		e.failf("Results CurrentState %q is not Installed, Uninstalled or Failed", r.CurrentState)
	}
	e.str("CurrentState", r.CurrentState, 0)
	e.bool("Resolved", r.Resolved)
	e.str("ExecutionUnitRefList", r.ExecutionUnitRefList, 0)
	e.dateTime("StartTime", r.StartTime)
	e.dateTime("CompleteTime", r.CompleteTime)
	if !validDUFaultCode(r.Fault.FaultCode) {
		e.failf("Results Fault/FaultCode %d is not allowed in a DU result", int(r.Fault.FaultCode))
	}
	e.open("Fault")
	e.int("FaultCode", int(r.Fault.FaultCode))
	e.str("FaultString", r.Fault.FaultString, 0)
	e.close("Fault")
}

func (e *encoder) fileTypeArgs(list []Arg) {
	if len(list) > maxFileArgs {
		e.failf("FileTypeArg has %d items, at most %d allowed", len(list), maxFileArgs)
	}
	e.arrayOpen("FileTypeArg", "cwmp:ArgStruct", len(list))
	for i := range list {
		e.open("ArgStruct")
		e.str("Name", list[i].Name, 64)
		e.str("Value", list[i].Value, 256)
		e.close("ArgStruct")
	}
	e.close("FileTypeArg")
}
