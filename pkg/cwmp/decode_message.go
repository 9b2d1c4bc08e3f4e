package cwmp

import (
	"strconv"
	"strings"
)

// The mapper turns a node table into an Envelope. It is shared by both
// front ends, so everything CWMP-specific is decided here, once:
//   - SOAP elements (Envelope, Header, Body, Fault) match by namespace URI
//     and local name (docs/protocol.md §1.1); RPC argument elements match by local
//     name in any namespace, in any order, missing ones left zero (§2.1);
//   - every child element of an array is an item, whatever its name, and
//     arrayType is ignored (§2.2);
//   - xsi:type of a Value resolves against the namespaces in scope (§2.3).

// mapper carries the table and the first error met; after an error the
// remaining fields decode to zero values and the error is returned.
type mapper struct {
	t   *xmlTree
	err *xmlError
}

func (m *mapper) fail(i int32, detail string) {
	if m.err == nil {
		m.err = &xmlError{err: ErrNotEnvelope, off: int(m.t.nodes[i].off), detail: detail}
	}
}

func notEnvelope(t *xmlTree, i int32, detail string) *xmlError {
	return &xmlError{err: ErrNotEnvelope, off: int(t.nodes[i].off), detail: detail}
}

// isCWMPNamespace reports whether ns is one of the cwmp-1-0..1-4 URIs, as
// cwmpNamespace reads them.
func isCWMPNamespace(ns string) bool {
	_, ok := cwmpNamespace(ns)
	return ok
}

// cwmpNamespace returns the standard spelling of a cwmp namespace URI as a
// CPE wrote it: exactly, in another letter case (URNs compare without
// regard to case, RFC 8141) or with one trailing slash, as some stacks write
// every namespace. The decoded Envelope carries the standard spelling, so
// replies use it (docs/protocol.md §1.2 step 1). ok is false for anything else.
func cwmpNamespace(ns string) (string, bool) {
	if _, ok := VersionOfNamespace(ns); ok {
		return ns, true
	}
	s := strings.ToLower(strings.TrimSuffix(ns, "/"))
	if _, ok := VersionOfNamespace(s); ok {
		return s, true
	}
	return "", false
}

// buildEnvelope maps a node table to an Envelope (XMLDeclaration is the
// caller's to set).
func buildEnvelope(t *xmlTree) (*Envelope, *xmlError) {
	root := &t.nodes[0]
	if root.local != "Envelope" || root.ns != NSSOAPEnv {
		return nil, notEnvelope(t, 0, "root element is "+describe(root)+", want Envelope in namespace "+NSSOAPEnv)
	}
	header, body := int32(-1), int32(-1)
	for c := root.first; c >= 0; c = t.nodes[c].next {
		n := &t.nodes[c]
		if n.ns != NSSOAPEnv {
			continue
		}
		switch n.local {
		case "Header":
			if header < 0 {
				header = c
			}
		case "Body":
			if body >= 0 {
				return nil, notEnvelope(t, c, "more than one SOAP Body")
			}
			body = c
		}
	}
	if body < 0 {
		return nil, notEnvelope(t, 0, "no SOAP Body")
	}
	rpc := t.nodes[body].first
	if rpc < 0 {
		return nil, notEnvelope(t, body, "empty SOAP Body: a CWMP message carries one RPC element")
	}
	if second := t.nodes[rpc].next; second >= 0 {
		return nil, notEnvelope(t, second, "SOAP Body holds "+strconv.Itoa(t.countChildren(body))+" elements: a CWMP message carries one RPC element")
	}

	m := mapper{t: t}
	env := &Envelope{}
	hasSessionTimeout := false
	if header >= 0 {
		hasSessionTimeout = m.header(header, &env.Header)
	}
	env.Namespace, _ = cwmpNamespace(cwmpNamespaceOf(t, rpc, body))
	env.Version, _ = VersionOfNamespace(env.Namespace)
	if env.Version == V1_2 && hasSessionTimeout {
		// SessionTimeout came with 1.3, which kept the 1.2 namespace
		// (docs/protocol.md §1.2 step 3).
		env.Version = V1_3
	}
	if (env.Version == V1_2 || env.Version == V1_3) &&
		(env.Header.SupportedCWMPVersions != "" || env.Header.UseCWMPVersion != "") {
		// The version headers exist only in the 1.4 schema (same
		// namespace): the message is written in 1.4 whatever version it
		// negotiates (docs/protocol.md §1.2).
		env.Version = V1_4
	}
	env.Body = m.message(rpc)
	if m.err != nil {
		return nil, m.err
	}
	return env, nil
}

// describe names an element for error details: "<local>" and its namespace.
func describe(n *xmlNode) string {
	if n.ns == "" {
		return "<" + n.local + "> in no namespace"
	}
	return "<" + n.local + "> in namespace " + n.ns
}

// cwmpNamespaceOf finds the cwmp namespace of a message (docs/protocol.md §1.2 step
// 1): the RPC element's own, else one declared on the RPC element, the Body
// or the Envelope, else any cwmp declaration in the document (a SOAP Fault
// has it only on its detail); "" if none.
func cwmpNamespaceOf(t *xmlTree, rpc, body int32) string {
	if ns := t.nodes[rpc].ns; isCWMPNamespace(ns) {
		return ns
	}
	for _, i := range [...]int32{rpc, body, 0} {
		n := &t.nodes[i]
		for _, a := range t.attrs[n.attr : n.attr+n.nattr] {
			if a.ns == nsXMLNS && isCWMPNamespace(a.value) {
				return a.value
			}
		}
	}
	for _, a := range t.attrs {
		if a.ns == nsXMLNS && isCWMPNamespace(a.value) {
			return a.value
		}
	}
	return ""
}

// header reads the cwmp header elements (docs/protocol.md §3), qualified with any
// cwmp namespace or unqualified; others, and mustUnderstand, are ignored.
// Header values are hints, so one that does not parse is ignored rather
// than failing the session. It reports whether SessionTimeout was present.
func (m *mapper) header(h int32, out *Header) (sessionTimeout bool) {
	t := m.t
	for c := t.nodes[h].first; c >= 0; c = t.nodes[c].next {
		n := &t.nodes[c]
		if n.ns != "" && !isCWMPNamespace(n.ns) {
			continue
		}
		switch n.local {
		case "ID":
			out.ID, out.HasID = trimXMLSpace(n.text), true
		case "HoldRequests":
			out.HoldRequests, _ = ParseBool(n.text)
		case "NoMoreRequests":
			out.NoMoreRequests, _ = ParseBool(n.text)
		case "SupportedCWMPVersions":
			out.SupportedCWMPVersions = trimXMLSpace(n.text)
		case "UseCWMPVersion":
			out.UseCWMPVersion = trimXMLSpace(n.text)
		default:
			// GenieACS looks for "sessionTimeout": accept any case.
			if strings.EqualFold(n.local, "SessionTimeout") {
				sessionTimeout = true
				if v, err := strconv.ParseUint(trimPlus(trimXMLSpace(n.text)), 10, 32); err == nil {
					out.SessionTimeout = uint32(v)
				}
			}
		}
	}
	return sessionTimeout
}

// message maps the RPC element i.
func (m *mapper) message(i int32) Message {
	n := &m.t.nodes[i]
	if n.local == "Fault" && (n.ns == NSSOAPEnv || n.ns == "" || isCWMPNamespace(n.ns)) {
		return m.fault(i)
	}
	if isVendorMethod(n.local) || isVendorResponse(n.local) {
		return m.vendorMessage(i)
	}
	if n.ns != "" && !isCWMPNamespace(n.ns) {
		return &Unknown{Name: n.local, Namespace: n.ns}
	}
	switch n.local {
	case "Inform":
		return m.inform(i)
	case "InformResponse":
		v := &InformResponse{}
		m.fields(i, func(c int32, name string) {
			if name == "MaxEnvelopes" {
				v.MaxEnvelopes = m.u32(c)
			}
		})
		return v
	case "GetRPCMethods":
		return &GetRPCMethods{}
	case "GetRPCMethodsResponse":
		v := &GetRPCMethodsResponse{}
		m.fields(i, func(c int32, name string) {
			if name == "MethodList" {
				v.MethodList = m.stringList(c)
			}
		})
		return v
	case "SetParameterValues":
		v := &SetParameterValues{}
		m.fields(i, func(c int32, name string) {
			switch name {
			case "ParameterList":
				v.ParameterList = m.parameterValues(c)
			case "ParameterKey":
				v.ParameterKey = m.str(c)
			}
		})
		return v
	case "SetParameterValuesResponse":
		v := &SetParameterValuesResponse{}
		m.fields(i, func(c int32, name string) {
			if name == "Status" {
				v.Status = m.integer(c)
			}
		})
		return v
	case "GetParameterValues":
		v := &GetParameterValues{}
		m.fields(i, func(c int32, name string) {
			if name == "ParameterNames" {
				v.ParameterNames = m.stringList(c)
			}
		})
		return v
	case "GetParameterValuesResponse":
		v := &GetParameterValuesResponse{}
		m.fields(i, func(c int32, name string) {
			if name == "ParameterList" {
				v.ParameterList = m.parameterValues(c)
			}
		})
		return v
	case "GetParameterNames":
		v := &GetParameterNames{}
		m.fields(i, func(c int32, name string) {
			switch name {
			case "ParameterPath":
				v.ParameterPath = m.str(c)
			case "NextLevel":
				v.NextLevel = m.boolean(c)
			}
		})
		return v
	case "GetParameterNamesResponse":
		v := &GetParameterNamesResponse{}
		m.fields(i, func(c int32, name string) {
			if name == "ParameterList" {
				v.ParameterList = m.parameterInfos(c)
			}
		})
		return v
	case "SetParameterAttributes":
		v := &SetParameterAttributes{}
		m.fields(i, func(c int32, name string) {
			if name == "ParameterList" {
				v.ParameterList = m.setAttributes(c)
			}
		})
		return v
	case "SetParameterAttributesResponse":
		return &SetParameterAttributesResponse{}
	case "GetParameterAttributes":
		v := &GetParameterAttributes{}
		m.fields(i, func(c int32, name string) {
			if name == "ParameterNames" {
				v.ParameterNames = m.stringList(c)
			}
		})
		return v
	case "GetParameterAttributesResponse":
		v := &GetParameterAttributesResponse{}
		m.fields(i, func(c int32, name string) {
			if name == "ParameterList" {
				v.ParameterList = m.attributes(c)
			}
		})
		return v
	case "AddObject":
		v := &AddObject{}
		m.fields(i, func(c int32, name string) {
			switch name {
			case "ObjectName":
				v.ObjectName = m.str(c)
			case "ParameterKey":
				v.ParameterKey = m.str(c)
			}
		})
		return v
	case "AddObjectResponse":
		v := &AddObjectResponse{}
		m.fields(i, func(c int32, name string) {
			switch name {
			case "InstanceNumber":
				v.InstanceNumber = m.u32(c)
			case "Status":
				v.Status = m.integer(c)
			}
		})
		return v
	case "DeleteObject":
		v := &DeleteObject{}
		m.fields(i, func(c int32, name string) {
			switch name {
			case "ObjectName":
				v.ObjectName = m.str(c)
			case "ParameterKey":
				v.ParameterKey = m.str(c)
			}
		})
		return v
	case "DeleteObjectResponse":
		v := &DeleteObjectResponse{}
		m.fields(i, func(c int32, name string) {
			if name == "Status" {
				v.Status = m.integer(c)
			}
		})
		return v
	case "Reboot":
		v := &Reboot{}
		m.fields(i, func(c int32, name string) {
			if name == "CommandKey" {
				v.CommandKey = m.str(c)
			}
		})
		return v
	case "RebootResponse":
		return &RebootResponse{}
	case "Download":
		v := &Download{}
		m.fields(i, func(c int32, name string) {
			switch name {
			case "CommandKey":
				v.CommandKey = m.str(c)
			case "FileType":
				v.FileType = m.str(c)
			case "URL":
				v.URL = m.str(c)
			case "Username":
				v.Username = m.t.nodes[c].text
			case "Password":
				v.Password = m.t.nodes[c].text
			case "FileSize":
				v.FileSize = m.u32(c)
			case "TargetFileName":
				v.TargetFileName = m.str(c)
			case "DelaySeconds":
				v.DelaySeconds = m.u32(c)
			case "SuccessURL":
				v.SuccessURL = m.str(c)
			case "FailureURL":
				v.FailureURL = m.str(c)
			}
		})
		return v
	case "DownloadResponse":
		v := &DownloadResponse{}
		m.fields(i, func(c int32, name string) {
			m.transferResult(c, name, &v.Status, &v.StartTime, &v.CompleteTime)
		})
		return v
	case "Upload":
		v := &Upload{}
		m.fields(i, func(c int32, name string) {
			switch name {
			case "CommandKey":
				v.CommandKey = m.str(c)
			case "FileType":
				v.FileType = m.str(c)
			case "URL":
				v.URL = m.str(c)
			case "Username":
				v.Username = m.t.nodes[c].text
			case "Password":
				v.Password = m.t.nodes[c].text
			case "DelaySeconds":
				v.DelaySeconds = m.u32(c)
			}
		})
		return v
	case "UploadResponse":
		v := &UploadResponse{}
		m.fields(i, func(c int32, name string) {
			m.transferResult(c, name, &v.Status, &v.StartTime, &v.CompleteTime)
		})
		return v
	case "FactoryReset":
		return &FactoryReset{}
	case "FactoryResetResponse":
		return &FactoryResetResponse{}
	case "GetQueuedTransfers":
		return &GetQueuedTransfers{}
	case "GetQueuedTransfersResponse":
		v := &GetQueuedTransfersResponse{}
		m.fields(i, func(c int32, name string) {
			if name == "TransferList" {
				v.TransferList = m.queuedTransfers(c)
			}
		})
		return v
	case "GetAllQueuedTransfers":
		return &GetAllQueuedTransfers{}
	case "GetAllQueuedTransfersResponse":
		v := &GetAllQueuedTransfersResponse{}
		m.fields(i, func(c int32, name string) {
			if name == "TransferList" {
				v.TransferList = m.allQueuedTransfers(c)
			}
		})
		return v
	case "ScheduleInform":
		v := &ScheduleInform{}
		m.fields(i, func(c int32, name string) {
			switch name {
			case "DelaySeconds":
				v.DelaySeconds = m.u32(c)
			case "CommandKey":
				v.CommandKey = m.str(c)
			}
		})
		return v
	case "ScheduleInformResponse":
		return &ScheduleInformResponse{}
	case "SetVouchers":
		v := &SetVouchers{}
		m.fields(i, func(c int32, name string) {
			if name == "VoucherList" {
				v.VoucherList = m.stringList(c)
			}
		})
		return v
	case "SetVouchersResponse":
		return &SetVouchersResponse{}
	case "GetOptions":
		v := &GetOptions{}
		m.fields(i, func(c int32, name string) {
			if name == "OptionName" {
				v.OptionName = m.str(c)
			}
		})
		return v
	case "GetOptionsResponse":
		v := &GetOptionsResponse{}
		m.fields(i, func(c int32, name string) {
			if name == "OptionList" {
				v.OptionList = m.options(c)
			}
		})
		return v
	case "ScheduleDownload":
		v := &ScheduleDownload{}
		m.fields(i, func(c int32, name string) {
			switch name {
			case "CommandKey":
				v.CommandKey = m.str(c)
			case "FileType":
				v.FileType = m.str(c)
			case "URL":
				v.URL = m.str(c)
			case "Username":
				v.Username = m.t.nodes[c].text
			case "Password":
				v.Password = m.t.nodes[c].text
			case "FileSize":
				v.FileSize = m.u32(c)
			case "TargetFileName":
				v.TargetFileName = m.str(c)
			case "TimeWindowList":
				v.TimeWindowList = m.timeWindows(c)
			}
		})
		return v
	case "ScheduleDownloadResponse":
		return &ScheduleDownloadResponse{}
	case "CancelTransfer":
		v := &CancelTransfer{}
		m.fields(i, func(c int32, name string) {
			if name == "CommandKey" {
				v.CommandKey = m.str(c)
			}
		})
		return v
	case "CancelTransferResponse":
		return &CancelTransferResponse{}
	case "ChangeDUState":
		v := &ChangeDUState{}
		m.fields(i, func(c int32, name string) {
			switch name {
			case "Operations":
				v.Operations = append(v.Operations, m.duOperation(c))
			case "CommandKey":
				v.CommandKey = m.str(c)
			}
		})
		return v
	case "ChangeDUStateResponse":
		return &ChangeDUStateResponse{}
	case "TransferComplete":
		v := &TransferComplete{}
		m.fields(i, func(c int32, name string) {
			switch name {
			case "CommandKey":
				v.CommandKey = m.str(c)
			case "FaultStruct":
				v.FaultStruct = m.faultStruct(c)
			case "StartTime":
				v.StartTime = m.dateTime(c)
			case "CompleteTime":
				v.CompleteTime = m.dateTime(c)
			}
		})
		return v
	case "TransferCompleteResponse":
		return &TransferCompleteResponse{}
	case "AutonomousTransferComplete":
		v := &AutonomousTransferComplete{}
		m.fields(i, func(c int32, name string) {
			switch name {
			case "AnnounceURL":
				v.AnnounceURL = m.str(c)
			case "TransferURL":
				v.TransferURL = m.str(c)
			case "IsDownload":
				v.IsDownload = m.boolean(c)
			case "FileType":
				v.FileType = m.str(c)
			case "FileSize":
				v.FileSize = m.u32(c)
			case "TargetFileName":
				v.TargetFileName = m.str(c)
			case "FaultStruct":
				v.FaultStruct = m.faultStruct(c)
			case "StartTime":
				v.StartTime = m.dateTime(c)
			case "CompleteTime":
				v.CompleteTime = m.dateTime(c)
			}
		})
		return v
	case "AutonomousTransferCompleteResponse":
		return &AutonomousTransferCompleteResponse{}
	case "DUStateChangeComplete":
		v := &DUStateChangeComplete{}
		m.fields(i, func(c int32, name string) {
			switch name {
			case "Results":
				var r OpResult
				m.fields(c, func(f int32, name string) { m.opResult(f, name, &r) })
				v.Results = append(v.Results, r)
			case "CommandKey":
				v.CommandKey = m.str(c)
			}
		})
		return v
	case "DUStateChangeCompleteResponse":
		return &DUStateChangeCompleteResponse{}
	case "AutonomousDUStateChangeComplete":
		v := &AutonomousDUStateChangeComplete{}
		m.fields(i, func(c int32, name string) {
			if name == "Results" {
				var r AutonOpResult
				m.fields(c, func(f int32, name string) {
					if name == "OperationPerformed" {
						r.OperationPerformed = m.str(f)
						return
					}
					m.opResult(f, name, &r.OpResult)
				})
				v.Results = append(v.Results, r)
			}
		})
		return v
	case "AutonomousDUStateChangeCompleteResponse":
		return &AutonomousDUStateChangeCompleteResponse{}
	case "RequestDownload":
		v := &RequestDownload{}
		m.fields(i, func(c int32, name string) {
			switch name {
			case "FileType":
				v.FileType = m.str(c)
			case "FileTypeArg":
				v.FileTypeArg = m.args(c)
			}
		})
		return v
	case "RequestDownloadResponse":
		return &RequestDownloadResponse{}
	case "Kicked":
		v := &Kicked{}
		m.fields(i, func(c int32, name string) {
			switch name {
			case "Command":
				v.Command = m.str(c)
			case "Referer":
				v.Referer = m.str(c)
			case "Arg":
				v.Arg = m.t.nodes[c].text
			case "Next":
				v.Next = m.str(c)
			}
		})
		return v
	case "KickedResponse":
		v := &KickedResponse{}
		m.fields(i, func(c int32, name string) {
			if name == "NextURL" {
				v.NextURL = m.str(c)
			}
		})
		return v
	}
	return &Unknown{Name: n.local, Namespace: n.ns}
}

// fields calls fn with each child element of i and its local name. The
// closures above inline well enough; the Inform, the hot path, does not use
// them.
func (m *mapper) fields(i int32, fn func(c int32, name string)) {
	t := m.t
	for c := t.nodes[i].first; c >= 0; c = t.nodes[c].next {
		fn(c, t.nodes[c].local)
	}
}

func (m *mapper) inform(i int32) *Inform {
	t := m.t
	v := &Inform{}
	for c := t.nodes[i].first; c >= 0; c = t.nodes[c].next {
		switch t.nodes[c].local {
		case "DeviceId":
			for f := t.nodes[c].first; f >= 0; f = t.nodes[f].next {
				switch t.nodes[f].local {
				case "Manufacturer":
					v.DeviceID.Manufacturer = m.str(f)
				case "OUI":
					v.DeviceID.OUI = normalizeOUI(m.str(f))
				case "ProductClass":
					v.DeviceID.ProductClass = m.str(f)
				case "SerialNumber":
					v.DeviceID.SerialNumber = m.str(f)
				}
			}
		case "Event":
			v.Events = m.events(c)
		case "MaxEnvelopes":
			v.MaxEnvelopes = m.hintU32(c)
		case "CurrentTime":
			v.CurrentTime = m.dateTime(c)
		case "RetryCount":
			v.RetryCount = m.hintU32(c)
		case "ParameterList":
			v.ParameterList = m.parameterValues(c)
		}
	}
	return v
}

func (m *mapper) events(i int32) []Event {
	t := m.t
	n := t.countChildren(i)
	if n == 0 {
		return nil
	}
	out := make([]Event, 0, n)
	for c := t.nodes[i].first; c >= 0; c = t.nodes[c].next {
		var e Event
		for f := t.nodes[c].first; f >= 0; f = t.nodes[f].next {
			switch t.nodes[f].local {
			case "EventCode":
				e.Code = normalizeEventCode(m.str(f))
			case "CommandKey":
				e.CommandKey = m.str(f)
			}
		}
		out = append(out, e)
	}
	return out
}

func (m *mapper) parameterValues(i int32) []ParameterValue {
	t := m.t
	n := t.countChildren(i)
	if n == 0 {
		return nil
	}
	out := make([]ParameterValue, 0, n)
	for c := t.nodes[i].first; c >= 0; c = t.nodes[c].next {
		var pv ParameterValue
		for f := t.nodes[c].first; f >= 0; f = t.nodes[f].next {
			switch t.nodes[f].local {
			case "Name":
				pv.Name = m.str(f)
			case "Value":
				typ := ""
				if a, ok := t.xsiType(f); ok {
					typ = decodedValueType(a)
				}
				pv.Type, pv.Value = normalizeValue(typ, t.nodes[f].text)
			}
		}
		if pv.Type == "" {
			pv.Type = untyped // no Value element at all (Cisco SPA122)
		}
		out = append(out, pv)
	}
	return out
}

// decodedValueType is the Type of a ParameterValue whose Value carries the
// xsi:type attribute a: "xsd:"+local when the QName's prefix resolved to XML
// Schema or SOAP-ENC, else "" (a type FleetACS cannot use,
// docs/protocol.md §2.3; normalizeValue then makes the value a string).
func decodedValueType(a xmlAttr) string {
	v := trimXMLSpace(a.value)
	prefix, local := qnameParts(v)
	if local == "" || !isXSDNamespace(a.valueNS) {
		return ""
	}
	if prefix == "xsd" {
		return v // already in the canonical form: no allocation
	}
	switch local {
	case "string":
		return "xsd:string"
	case "int":
		return "xsd:int"
	case "unsignedInt":
		return "xsd:unsignedInt"
	case "long":
		return "xsd:long"
	case "unsignedLong":
		return "xsd:unsignedLong"
	case "boolean":
		return "xsd:boolean"
	case "dateTime":
		return "xsd:dateTime"
	case "base64":
		return "xsd:base64"
	case "base64Binary":
		return "xsd:base64Binary"
	case "hexBinary":
		return "xsd:hexBinary"
	}
	return "xsd:" + local
}

func (m *mapper) parameterInfos(i int32) []ParameterInfo {
	t := m.t
	n := t.countChildren(i)
	if n == 0 {
		return nil
	}
	out := make([]ParameterInfo, 0, n)
	for c := t.nodes[i].first; c >= 0; c = t.nodes[c].next {
		var pi ParameterInfo
		for f := t.nodes[c].first; f >= 0; f = t.nodes[f].next {
			switch t.nodes[f].local {
			case "Name":
				pi.Name = m.str(f)
			case "Writable":
				pi.Writable = m.boolean(f)
			}
		}
		out = append(out, pi)
	}
	return out
}

// stringList reads an array of strings (ParameterNames, MethodList,
// AccessList, VoucherList), trimming each: they are names and tokens.
func (m *mapper) stringList(i int32) []string {
	t := m.t
	n := t.countChildren(i)
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for c := t.nodes[i].first; c >= 0; c = t.nodes[c].next {
		out = append(out, m.str(c))
	}
	return out
}

func (m *mapper) setAttributes(i int32) []SetParameterAttributesStruct {
	var out []SetParameterAttributesStruct
	m.fields(i, func(c int32, _ string) {
		var s SetParameterAttributesStruct
		m.fields(c, func(f int32, name string) {
			switch name {
			case "Name":
				s.Name = m.str(f)
			case "NotificationChange":
				s.NotificationChange = m.boolean(f)
			case "Notification":
				s.Notification = m.integer(f)
			case "AccessListChange":
				s.AccessListChange = m.boolean(f)
			case "AccessList":
				s.AccessList = m.stringList(f)
			}
		})
		out = append(out, s)
	})
	return out
}

func (m *mapper) attributes(i int32) []ParameterAttribute {
	var out []ParameterAttribute
	m.fields(i, func(c int32, _ string) {
		var a ParameterAttribute
		m.fields(c, func(f int32, name string) {
			switch name {
			case "Name":
				a.Name = m.str(f)
			case "Notification":
				a.Notification = m.integer(f)
			case "AccessList":
				a.AccessList = m.stringList(f)
			}
		})
		out = append(out, a)
	})
	return out
}

func (m *mapper) queuedTransfers(i int32) []QueuedTransfer {
	var out []QueuedTransfer
	m.fields(i, func(c int32, _ string) {
		var q QueuedTransfer
		m.fields(c, func(f int32, name string) {
			switch name {
			case "CommandKey":
				q.CommandKey = m.str(f)
			case "State":
				q.State = m.integer(f)
			}
		})
		out = append(out, q)
	})
	return out
}

func (m *mapper) allQueuedTransfers(i int32) []AllQueuedTransfer {
	var out []AllQueuedTransfer
	m.fields(i, func(c int32, _ string) {
		var q AllQueuedTransfer
		m.fields(c, func(f int32, name string) {
			switch name {
			case "CommandKey":
				q.CommandKey = m.str(f)
			case "State":
				q.State = m.integer(f)
			case "IsDownload":
				q.IsDownload = m.boolean(f)
			case "FileType":
				q.FileType = m.str(f)
			case "FileSize":
				q.FileSize = m.u32(f)
			case "TargetFileName":
				q.TargetFileName = m.str(f)
			}
		})
		out = append(out, q)
	})
	return out
}

func (m *mapper) options(i int32) []Option {
	var out []Option
	m.fields(i, func(c int32, _ string) {
		var o Option
		m.fields(c, func(f int32, name string) {
			switch name {
			case "OptionName":
				o.OptionName = m.str(f)
			case "VoucherSN":
				// An xsd:unsignedInt held as text: read like the other
				// numbers, kept in canonical form.
				o.VoucherSN = strconv.FormatUint(uint64(m.u32(f)), 10)
			case "State":
				o.State = m.integer(f)
			case "Mode":
				o.Mode = m.integer(f)
			case "StartDate":
				o.StartDate = m.dateTime(f)
			case "ExpirationDate":
				o.ExpirationDate = m.dateTime(f)
			case "IsTransferable":
				o.IsTransferable = m.boolean(f)
			}
		})
		out = append(out, o)
	})
	return out
}

func (m *mapper) timeWindows(i int32) []TimeWindow {
	var out []TimeWindow
	m.fields(i, func(c int32, _ string) {
		var w TimeWindow
		m.fields(c, func(f int32, name string) {
			switch name {
			case "WindowStart":
				w.WindowStart = m.u32(f)
			case "WindowEnd":
				w.WindowEnd = m.u32(f)
			case "WindowMode":
				w.WindowMode = m.str(f)
			case "UserMessage":
				w.UserMessage = m.t.nodes[f].text
			case "MaxRetries":
				w.MaxRetries = m.integer(f)
			}
		})
		out = append(out, w)
	})
	return out
}

func (m *mapper) args(i int32) []Arg {
	var out []Arg
	m.fields(i, func(c int32, _ string) {
		var a Arg
		m.fields(c, func(f int32, name string) {
			switch name {
			case "Name":
				a.Name = m.str(f)
			case "Value":
				a.Value = m.t.nodes[f].text
			}
		})
		out = append(out, a)
	})
	return out
}

// transferResult reads the fields DownloadResponse and UploadResponse share.
func (m *mapper) transferResult(c int32, name string, status *int, start, complete *DateTime) {
	switch name {
	case "Status":
		*status = m.integer(c)
	case "StartTime":
		*start = m.dateTime(c)
	case "CompleteTime":
		*complete = m.dateTime(c)
	}
}

func (m *mapper) faultStruct(i int32) FaultStruct {
	var f FaultStruct
	m.fields(i, func(c int32, name string) {
		switch name {
		case "FaultCode":
			f.FaultCode = m.faultCode(c)
		case "FaultString":
			f.FaultString = m.str(c)
		}
	})
	return f
}

func (m *mapper) opResult(f int32, name string, r *OpResult) {
	switch name {
	case "UUID":
		r.UUID = m.str(f)
	case "DeploymentUnitRef":
		r.DeploymentUnitRef = m.str(f)
	case "Version":
		r.Version = m.str(f)
	case "CurrentState":
		r.CurrentState = m.str(f)
	case "Resolved":
		r.Resolved = m.boolean(f)
	case "ExecutionUnitRefList":
		r.ExecutionUnitRefList = m.str(f)
	case "StartTime":
		r.StartTime = m.dateTime(f)
	case "CompleteTime":
		r.CompleteTime = m.dateTime(f)
	case "Fault":
		r.Fault = m.faultStruct(f)
	}
}

// duOperation reads one ChangeDUState Operations element. Its kind is the
// local name of its xsi:type when that is one of the three operation
// structs, whatever the prefix. Without a usable xsi:type the kind is
// inferred from the fields, because each kind has a distinct shape:
//   - no URL, Username or Password: only Uninstall carries none of them;
//   - else a Version: Update (Install has no Version);
//   - else an ExecutionEnvRef: Install (Update has none);
//   - else a UUID: Update, the usual "this unit, from this URL" request;
//   - else (URL without UUID): Install.
//
// Fields a kind does not define are kept as sent, so nothing is lost.
func (m *mapper) duOperation(i int32) DUOperation {
	var op DUOperation
	m.fields(i, func(c int32, name string) {
		switch name {
		case "URL":
			op.URL = m.str(c)
		case "UUID":
			op.UUID = m.str(c)
		case "Username":
			op.Username = m.t.nodes[c].text
		case "Password":
			op.Password = m.t.nodes[c].text
		case "ExecutionEnvRef":
			op.ExecutionEnvRef = m.str(c)
		case "Version":
			op.Version = m.str(c)
		}
	})
	if a, ok := m.t.xsiType(i); ok {
		switch _, local := qnameParts(a.value); local {
		case OpInstall, OpUpdate, OpUninstall:
			op.Kind = local
			return op
		}
	}
	hasURL := m.hasChild(i, "URL") || m.hasChild(i, "Username") || m.hasChild(i, "Password")
	switch {
	case !hasURL:
		op.Kind = OpUninstall
	case m.hasChild(i, "Version"):
		op.Kind = OpUpdate
	case m.hasChild(i, "ExecutionEnvRef"):
		op.Kind = OpInstall
	case m.hasChild(i, "UUID"):
		op.Kind = OpUpdate
	default:
		op.Kind = OpInstall
	}
	return op
}

func (m *mapper) hasChild(i int32, local string) bool {
	t := m.t
	for c := t.nodes[i].first; c >= 0; c = t.nodes[c].next {
		if t.nodes[c].local == local {
			return true
		}
	}
	return false
}

// fault reads a SOAP Fault (faultcode, faultstring, detail/cwmp:Fault,
// docs/protocol.md §2.4). A CPE that puts the cwmp:Fault straight into the Body is
// understood too: its FaultCode and friends are read in place.
func (m *mapper) fault(i int32) *Fault {
	f := &Fault{}
	m.fields(i, func(c int32, name string) {
		switch name {
		case "faultcode":
			// A QName such as SOAP-ENV:Client: keep the local part.
			code := m.str(c)
			if k := strings.LastIndexByte(code, ':'); k >= 0 {
				code = code[k+1:]
			}
			f.SOAPCode = code
		case "faultstring":
			f.SOAPString = m.str(c)
		case "detail":
			m.fields(c, func(d int32, name string) {
				if name == "Fault" {
					m.cwmpFault(d, f)
				}
			})
		default:
			m.cwmpFaultField(c, name, f)
		}
	})
	return f
}

func (m *mapper) cwmpFault(i int32, f *Fault) {
	m.fields(i, func(c int32, name string) { m.cwmpFaultField(c, name, f) })
}

func (m *mapper) cwmpFaultField(c int32, name string, f *Fault) {
	switch name {
	case "FaultCode":
		f.Code = m.faultCode(c)
	case "FaultString":
		f.String = m.str(c)
	case "SetParameterValuesFault":
		var s SetParameterValuesFault
		m.fields(c, func(e int32, name string) {
			switch name {
			case "ParameterName":
				s.ParameterName = m.str(e)
			case "FaultCode":
				s.FaultCode = m.faultCode(e)
			case "FaultString":
				s.FaultString = m.str(e)
			}
		})
		f.SetParameterValuesFaults = append(f.SetParameterValuesFaults, s)
	}
}

// ---- scalar fields

// str is the trimmed text of node i.
func (m *mapper) str(i int32) string { return trimXMLSpace(m.t.nodes[i].text) }

func (m *mapper) dateTime(i int32) DateTime { return normalizeDateTimeField(m.str(i)) }

func (m *mapper) u32(i int32) uint32 {
	s := m.str(i)
	if s == "" {
		return 0
	}
	v, err := strconv.ParseUint(trimPlus(s), 10, 32)
	if err != nil {
		m.fail(i, "invalid unsignedInt "+strconv.Quote(s)+" in <"+m.t.nodes[i].local+">")
		return 0
	}
	return uint32(v)
}

// hintU32 reads an Inform's MaxEnvelopes or RetryCount: numbers the ACS
// only notes (docs/protocol.md §5.3), so one that is not an unsignedInt
// ("-1", "n/a") reads as 0 instead of refusing the whole Inform, and the
// session goes on, as it does for a header hint that does not parse.
func (m *mapper) hintU32(i int32) uint32 {
	v, err := strconv.ParseUint(trimPlus(m.str(i)), 10, 32)
	if err != nil {
		return 0
	}
	return uint32(v)
}

func (m *mapper) integer(i int32) int {
	s := m.str(i)
	if s == "" {
		return 0
	}
	v, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		m.fail(i, "invalid int "+strconv.Quote(s)+" in <"+m.t.nodes[i].local+">")
		return 0
	}
	return int(v)
}

func (m *mapper) faultCode(i int32) FaultCode {
	s := m.str(i)
	if s == "" {
		return 0
	}
	v, err := strconv.ParseUint(trimPlus(s), 10, 31)
	if err != nil {
		m.fail(i, "invalid fault code "+strconv.Quote(s)+" in <"+m.t.nodes[i].local+">")
		return 0
	}
	return FaultCode(v)
}

func (m *mapper) boolean(i int32) bool {
	s := m.str(i)
	if s == "" {
		return false
	}
	v, err := ParseBool(s)
	if err != nil {
		m.fail(i, "invalid boolean "+strconv.Quote(s)+" in <"+m.t.nodes[i].local+">")
	}
	return v
}

// trimPlus drops the leading '+' xsd numbers may carry and strconv's
// unsigned parser refuses.
func trimPlus(s string) string {
	if len(s) > 1 && s[0] == '+' {
		return s[1:]
	}
	return s
}
