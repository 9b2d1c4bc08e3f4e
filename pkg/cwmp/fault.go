package cwmp

import (
	"fmt"
	"strconv"
)

// FaultCode is a CWMP fault code: 8000-series from the ACS, 9000-series from
// the CPE (docs/protocol.md §7), 0 for success inside result structures.
type FaultCode int

// ACS fault codes (docs/protocol.md §7.1).
const (
	FaultMethodNotSupported     FaultCode = 8000
	FaultRequestDenied          FaultCode = 8001
	FaultInternalError          FaultCode = 8002
	FaultInvalidArguments       FaultCode = 8003
	FaultResourcesExceeded      FaultCode = 8004
	FaultRetryRequest           FaultCode = 8005
	FaultACSVersionIncompatible FaultCode = 8006
)

// CPE fault codes (docs/protocol.md §7.2).
const (
	FaultCPEMethodNotSupported       FaultCode = 9000
	FaultCPERequestDenied            FaultCode = 9001
	FaultCPEInternalError            FaultCode = 9002
	FaultCPEInvalidArguments         FaultCode = 9003
	FaultCPEResourcesExceeded        FaultCode = 9004
	FaultInvalidParameterName        FaultCode = 9005
	FaultInvalidParameterType        FaultCode = 9006
	FaultInvalidParameterValue       FaultCode = 9007
	FaultNonWritableParameter        FaultCode = 9008
	FaultNotificationRejected        FaultCode = 9009
	FaultDownloadFailure             FaultCode = 9010
	FaultUploadFailure               FaultCode = 9011
	FaultTransferAuthFailure         FaultCode = 9012
	FaultUnsupportedTransferProtocol FaultCode = 9013
	FaultMulticastJoin               FaultCode = 9014
	FaultFileServerUnreachable       FaultCode = 9015
	FaultFileAccess                  FaultCode = 9016
	FaultDownloadIncomplete          FaultCode = 9017
	FaultFileCorrupted               FaultCode = 9018
	FaultFileAuthentication          FaultCode = 9019
	FaultTimeWindowsExceeded         FaultCode = 9020
	FaultCancelNotPermitted          FaultCode = 9021
	FaultInvalidUUID                 FaultCode = 9022
	FaultUnknownExecutionEnv         FaultCode = 9023
	FaultDisabledExecutionEnv        FaultCode = 9024
	FaultDUEnvMismatch               FaultCode = 9025
	FaultDuplicateDU                 FaultCode = 9026
	FaultSystemResourcesExceeded     FaultCode = 9027
	FaultUnknownDU                   FaultCode = 9028
	FaultInvalidDUState              FaultCode = 9029
	FaultDUDowngradeNotPermitted     FaultCode = 9030
	FaultDUVersionNotSpecified       FaultCode = 9031
	FaultDUVersionExists             FaultCode = 9032
)

var faultText = map[FaultCode]string{
	8000: "Method not supported",
	8001: "Request denied",
	8002: "Internal error",
	8003: "Invalid arguments",
	8004: "Resources exceeded",
	8005: "Retry request",
	8006: "ACS version incompatible with CPE",
	9000: "Method not supported",
	9001: "Request denied",
	9002: "Internal error",
	9003: "Invalid arguments",
	9004: "Resources exceeded",
	9005: "Invalid parameter name",
	9006: "Invalid parameter type",
	9007: "Invalid parameter value",
	9008: "Attempt to set a non-writable parameter",
	9009: "Notification request rejected",
	9010: "Download failure",
	9011: "Upload failure",
	9012: "File transfer server authentication failure",
	9013: "Unsupported protocol for file transfer",
	9014: "File transfer failure: unable to join multicast group",
	9015: "File transfer failure: unable to contact file server",
	9016: "File transfer failure: unable to access file",
	9017: "File transfer failure: unable to complete download",
	9018: "File transfer failure: file corrupted",
	9019: "File transfer failure: file authentication failure",
	9020: "File transfer failure: unable to complete download within specified time windows",
	9021: "Cancelation of file transfer not permitted in current transfer state",
	9022: "Invalid UUID format",
	9023: "Unknown Execution Environment",
	9024: "Disabled Execution Environment",
	9025: "Deployment Unit to Execution Environment mismatch",
	9026: "Duplicate Deployment Unit",
	9027: "System resources exceeded",
	9028: "Unknown Deployment Unit",
	9029: "Invalid Deployment Unit state",
	9030: "Invalid Deployment Unit update: downgrade not permitted",
	9031: "Invalid Deployment Unit update: version not specified",
	9032: "Invalid Deployment Unit update: version already exists",
}

// String returns the standard short text of the code, "Vendor fault" for
// the vendor ranges, or the number.
func (c FaultCode) String() string {
	if s, ok := faultText[c]; ok {
		return s
	}
	if (c >= 8800 && c <= 8899) || (c >= 9800 && c <= 9899) {
		return "Vendor fault " + strconv.Itoa(int(c))
	}
	return "Fault " + strconv.Itoa(int(c))
}

// SOAPFaultCode is the SOAP faultcode for a CWMP fault code: "Client" when
// the request was at fault, "Server" otherwise (docs/protocol.md §7).
func (c FaultCode) SOAPFaultCode() string {
	switch c {
	case 8003, 9003, 9005, 9006, 9007, 9008:
		return "Client"
	}
	return "Server"
}

// SetParameterValuesFault is one per-parameter entry of a SetParameterValues
// fault (docs/protocol.md §2.4).
type SetParameterValuesFault struct {
	ParameterName string    `json:"parameterName"`
	FaultCode     FaultCode `json:"faultCode"`
	FaultString   string    `json:"faultString"`
}

// Fault is a SOAP Fault carrying a cwmp:Fault detail. It is a Message (the
// body of an envelope) and an error.
type Fault struct {
	// SOAPCode is the SOAP faultcode ("Client" or "Server"); when empty,
	// encoding derives it from Code.
	SOAPCode string `json:"soapCode"`
	// SOAPString is the SOAP faultstring; when empty, encoding writes the
	// conventional "CWMP fault".
	SOAPString               string                    `json:"soapString"`
	Code                     FaultCode                 `json:"faultCode"`
	String                   string                    `json:"faultString"`
	SetParameterValuesFaults []SetParameterValuesFault `json:"setParameterValuesFault,omitempty"`
}

// NewFault builds a fault with the standard texts of code.
func NewFault(code FaultCode) *Fault {
	return &Fault{SOAPCode: code.SOAPFaultCode(), SOAPString: "CWMP fault", Code: code, String: code.String()}
}

// Method implements Message.
func (*Fault) Method() string { return "Fault" }

// Error implements error.
func (f *Fault) Error() string {
	if f.String != "" {
		return fmt.Sprintf("cwmp fault %d: %s", int(f.Code), f.String)
	}
	return fmt.Sprintf("cwmp fault %d: %s", int(f.Code), f.Code)
}
