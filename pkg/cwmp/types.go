package cwmp

import (
	"fmt"
	"strings"
)

// Version is a CWMP protocol version, 1.0 to 1.4. The zero value is 1.0.
type Version uint8

// The CWMP versions FleetACS speaks (docs/protocol.md §1.1).
const (
	V1_0 Version = iota
	V1_1
	V1_2
	V1_3
	V1_4
)

// MaxVersion is the newest version FleetACS implements.
const MaxVersion = V1_4

// Namespace URIs (docs/protocol.md §1.1). CWMP 1.3 and 1.4 keep the 1.2 namespace; some
// stacks send cwmp-1-3 or cwmp-1-4 anyway, which decoding accepts.
const (
	NS1_0 = "urn:dslforum-org:cwmp-1-0"
	NS1_1 = "urn:dslforum-org:cwmp-1-1"
	NS1_2 = "urn:dslforum-org:cwmp-1-2"
	NS1_3 = "urn:dslforum-org:cwmp-1-3"
	NS1_4 = "urn:dslforum-org:cwmp-1-4"

	NSSOAPEnv = "http://schemas.xmlsoap.org/soap/envelope/"
	NSSOAPEnc = "http://schemas.xmlsoap.org/soap/encoding/"
	NSXSD     = "http://www.w3.org/2001/XMLSchema"
	NSXSI     = "http://www.w3.org/2001/XMLSchema-instance"
)

// String returns "1.0" .. "1.4".
func (v Version) String() string { return fmt.Sprintf("1.%d", uint8(v)) }

// ParseVersion parses "1.0" .. "1.4" (surrounding white space allowed).
func ParseVersion(s string) (Version, error) {
	s = strings.TrimSpace(s)
	if len(s) == 3 && s[0] == '1' && s[1] == '.' && s[2] >= '0' && s[2] <= '0'+byte(MaxVersion) {
		return Version(s[2] - '0'), nil
	}
	return 0, fmt.Errorf("cwmp: unsupported CWMP version %q", s)
}

// Namespace is the standard namespace URI of version v: cwmp-1-0, cwmp-1-1,
// or cwmp-1-2 for 1.2 and later.
func (v Version) Namespace() string {
	switch v {
	case V1_0:
		return NS1_0
	case V1_1:
		return NS1_1
	default:
		return NS1_2
	}
}

// VersionOfNamespace maps a cwmp namespace URI to the version it implies
// (docs/protocol.md §1.2 step 3): -1-2 means 1.2, non-standard -1-3/-1-4 mean 1.4.
func VersionOfNamespace(ns string) (Version, bool) {
	switch ns {
	case NS1_0:
		return V1_0, true
	case NS1_1:
		return V1_1, true
	case NS1_2:
		return V1_2, true
	case NS1_3, NS1_4:
		return V1_4, true
	}
	return 0, false
}

// Envelope is one decoded or to-be-encoded CWMP SOAP message. An empty HTTP
// body (the CPE's empty POST, the ACS's 204) is not an Envelope: code that
// handles sessions represents it as a nil *Envelope.
type Envelope struct {
	// Namespace is the exact cwmp namespace URI the message uses. When
	// encoding, an empty Namespace means Version.Namespace().
	Namespace string
	// Version is the CWMP version implied by Namespace (and, on an Inform,
	// by the headers); when encoding it picks the default namespace.
	Version Version
	// XMLDeclaration records whether the message started with an XML
	// declaration; when encoding it asks for one (docs/protocol.md §13, output 1).
	XMLDeclaration bool
	Header         Header
	// Body is the one RPC element of the SOAP Body: a request, a response,
	// a *Fault, or an *Unknown method.
	Body Message
}

// Header holds the cwmp SOAP header elements (docs/protocol.md §3).
type Header struct {
	// ID correlates a request with its response. HasID distinguishes an
	// absent ID from an empty one.
	ID    string
	HasID bool
	// HoldRequests (ACS to CPE) asks the CPE not to send requests.
	HoldRequests bool
	// NoMoreRequests (CPE to ACS, deprecated since Amd 1) is parsed, never sent.
	NoMoreRequests bool
	// SessionTimeout (CPE to ACS, 1.3+) in seconds; 0 when absent.
	SessionTimeout uint32
	// SupportedCWMPVersions (CPE to ACS in Inform, 1.4), e.g. "1.0,1.1,1.2,1.3,1.4".
	SupportedCWMPVersions string
	// UseCWMPVersion (ACS to CPE in InformResponse, 1.4), e.g. "1.4".
	UseCWMPVersion string
}

// Message is the body of an envelope. Method returns the local name of its
// element (e.g. "Inform", "GetParameterValuesResponse", "Fault").
type Message interface {
	Method() string
}

// DateTime is an xsd:dateTime kept as the text that was on the wire, because
// CPEs send every variant (no zone, +0000, unpadded fields, 1970 before NTP
// sync; docs/protocol.md §9). Parse it with Time; build one with NewDateTime.
type DateTime string

// UnknownTime is TR-069's "Unknown Time" (docs/protocol.md §9).
const UnknownTime DateTime = "0001-01-01T00:00:00Z"

// ParameterValue is a ParameterValueStruct. Type is the xsi:type of Value as
// "xsd:<name>" (e.g. "xsd:unsignedInt") when the namespace resolved to XML
// Schema or SOAP-ENC, the raw attribute text when it did not, and "" when the
// CPE sent none.
type ParameterValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Type  string `json:"type"`
}

// DeviceID is the DeviceIdStruct of an Inform.
type DeviceID struct {
	Manufacturer string `json:"manufacturer"`
	OUI          string `json:"oui"`
	ProductClass string `json:"productClass"`
	SerialNumber string `json:"serialNumber"`
}

// Event is an EventStruct.
type Event struct {
	Code       string `json:"code"`
	CommandKey string `json:"commandKey"`
}

// ParameterInfo is a ParameterInfoStruct (GetParameterNamesResponse).
type ParameterInfo struct {
	Name     string `json:"name"`
	Writable bool   `json:"writable"`
}

// SetParameterAttributesStruct is one entry of SetParameterAttributes.
type SetParameterAttributesStruct struct {
	Name               string   `json:"name"`
	NotificationChange bool     `json:"notificationChange"`
	Notification       int      `json:"notification"`
	AccessListChange   bool     `json:"accessListChange"`
	AccessList         []string `json:"accessList"`
}

// ParameterAttribute is a ParameterAttributeStruct.
type ParameterAttribute struct {
	Name         string   `json:"name"`
	Notification int      `json:"notification"`
	AccessList   []string `json:"accessList"`
}

// QueuedTransfer is a QueuedTransferStruct.
type QueuedTransfer struct {
	CommandKey string `json:"commandKey"`
	State      int    `json:"state"`
}

// AllQueuedTransfer is an AllQueuedTransferStruct (1.1+).
type AllQueuedTransfer struct {
	CommandKey     string `json:"commandKey"`
	State          int    `json:"state"`
	IsDownload     bool   `json:"isDownload"`
	FileType       string `json:"fileType"`
	FileSize       uint32 `json:"fileSize"`
	TargetFileName string `json:"targetFileName"`
}

// TimeWindow is a TimeWindowStruct of ScheduleDownload (1.2+).
type TimeWindow struct {
	WindowStart uint32 `json:"windowStart"`
	WindowEnd   uint32 `json:"windowEnd"`
	WindowMode  string `json:"windowMode"`
	UserMessage string `json:"userMessage"`
	MaxRetries  int    `json:"maxRetries"`
}

// Option is an OptionStruct of GetOptionsResponse. ExpirationDate is optional
// ("" when absent).
type Option struct {
	OptionName     string   `json:"optionName"`
	VoucherSN      string   `json:"voucherSN"`
	State          int      `json:"state"`
	Mode           int      `json:"mode"`
	StartDate      DateTime `json:"startDate"`
	ExpirationDate DateTime `json:"expirationDate,omitempty"`
	IsTransferable bool     `json:"isTransferable"`
}

// Operation kinds of ChangeDUState, the local names of the xsi:type that
// selects each OperationStruct subtype.
const (
	OpInstall   = "InstallOpStruct"
	OpUpdate    = "UpdateOpStruct"
	OpUninstall = "UninstallOpStruct"
)

// DUOperation is one ChangeDUState operation. Kind is OpInstall, OpUpdate or
// OpUninstall; the fields that kind does not carry stay empty.
type DUOperation struct {
	Kind            string `json:"kind"`
	URL             string `json:"url,omitempty"`
	UUID            string `json:"uuid,omitempty"`
	Username        string `json:"username,omitempty"`
	Password        string `json:"password,omitempty"`
	ExecutionEnvRef string `json:"executionEnvRef,omitempty"`
	Version         string `json:"version,omitempty"`
}

// FaultStruct is the FaultStruct of TransferComplete and the Fault of a DU
// operation result. Code 0 means success.
type FaultStruct struct {
	FaultCode   FaultCode `json:"faultCode"`
	FaultString string    `json:"faultString"`
}

// OpResult is an OpResultStruct of DUStateChangeComplete.
type OpResult struct {
	UUID                 string      `json:"uuid"`
	DeploymentUnitRef    string      `json:"deploymentUnitRef"`
	Version              string      `json:"version"`
	CurrentState         string      `json:"currentState"`
	Resolved             bool        `json:"resolved"`
	ExecutionUnitRefList string      `json:"executionUnitRefList"`
	StartTime            DateTime    `json:"startTime"`
	CompleteTime         DateTime    `json:"completeTime"`
	Fault                FaultStruct `json:"fault"`
}

// AutonOpResult is an AutonOpResultStruct of AutonomousDUStateChangeComplete.
type AutonOpResult struct {
	OpResult
	OperationPerformed string `json:"operationPerformed"`
}

// Arg is an ArgStruct of RequestDownload.
type Arg struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ---- Methods the ACS calls on the CPE, and their responses (docs/protocol.md §5.1).

// GetRPCMethods is sent in both directions.
type GetRPCMethods struct{}

type GetRPCMethodsResponse struct {
	MethodList []string `json:"methodList"`
}

type SetParameterValues struct {
	ParameterList []ParameterValue `json:"parameterList"`
	ParameterKey  string           `json:"parameterKey"`
}

type SetParameterValuesResponse struct {
	Status int `json:"status"`
}

type GetParameterValues struct {
	ParameterNames []string `json:"parameterNames"`
}

type GetParameterValuesResponse struct {
	ParameterList []ParameterValue `json:"parameterList"`
}

type GetParameterNames struct {
	ParameterPath string `json:"parameterPath"`
	NextLevel     bool   `json:"nextLevel"`
}

type GetParameterNamesResponse struct {
	ParameterList []ParameterInfo `json:"parameterList"`
}

type SetParameterAttributes struct {
	ParameterList []SetParameterAttributesStruct `json:"parameterList"`
}

type SetParameterAttributesResponse struct{}

type GetParameterAttributes struct {
	ParameterNames []string `json:"parameterNames"`
}

type GetParameterAttributesResponse struct {
	ParameterList []ParameterAttribute `json:"parameterList"`
}

type AddObject struct {
	ObjectName   string `json:"objectName"`
	ParameterKey string `json:"parameterKey"`
}

type AddObjectResponse struct {
	InstanceNumber uint32 `json:"instanceNumber"`
	Status         int    `json:"status"`
}

type DeleteObject struct {
	ObjectName   string `json:"objectName"`
	ParameterKey string `json:"parameterKey"`
}

type DeleteObjectResponse struct {
	Status int `json:"status"`
}

type Reboot struct {
	CommandKey string `json:"commandKey"`
}

type RebootResponse struct{}

type Download struct {
	CommandKey     string `json:"commandKey"`
	FileType       string `json:"fileType"`
	URL            string `json:"url"`
	Username       string `json:"username"`
	Password       string `json:"password"`
	FileSize       uint32 `json:"fileSize"`
	TargetFileName string `json:"targetFileName"`
	DelaySeconds   uint32 `json:"delaySeconds"`
	SuccessURL     string `json:"successURL"`
	FailureURL     string `json:"failureURL"`
}

type DownloadResponse struct {
	Status       int      `json:"status"`
	StartTime    DateTime `json:"startTime"`
	CompleteTime DateTime `json:"completeTime"`
}

type Upload struct {
	CommandKey   string `json:"commandKey"`
	FileType     string `json:"fileType"`
	URL          string `json:"url"`
	Username     string `json:"username"`
	Password     string `json:"password"`
	DelaySeconds uint32 `json:"delaySeconds"`
}

type UploadResponse struct {
	Status       int      `json:"status"`
	StartTime    DateTime `json:"startTime"`
	CompleteTime DateTime `json:"completeTime"`
}

type FactoryReset struct{}

type FactoryResetResponse struct{}

type GetQueuedTransfers struct{}

type GetQueuedTransfersResponse struct {
	TransferList []QueuedTransfer `json:"transferList"`
}

type GetAllQueuedTransfers struct{}

type GetAllQueuedTransfersResponse struct {
	TransferList []AllQueuedTransfer `json:"transferList"`
}

type ScheduleInform struct {
	DelaySeconds uint32 `json:"delaySeconds"`
	CommandKey   string `json:"commandKey"`
}

type ScheduleInformResponse struct{}

// SetVouchers carries base64-encoded vouchers as text.
type SetVouchers struct {
	VoucherList []string `json:"voucherList"`
}

type SetVouchersResponse struct{}

type GetOptions struct {
	OptionName string `json:"optionName"`
}

type GetOptionsResponse struct {
	OptionList []Option `json:"optionList"`
}

type ScheduleDownload struct {
	CommandKey     string       `json:"commandKey"`
	FileType       string       `json:"fileType"`
	URL            string       `json:"url"`
	Username       string       `json:"username"`
	Password       string       `json:"password"`
	FileSize       uint32       `json:"fileSize"`
	TargetFileName string       `json:"targetFileName"`
	TimeWindowList []TimeWindow `json:"timeWindowList"`
}

type ScheduleDownloadResponse struct{}

type CancelTransfer struct {
	CommandKey string `json:"commandKey"`
}

type CancelTransferResponse struct{}

type ChangeDUState struct {
	Operations []DUOperation `json:"operations"`
	CommandKey string        `json:"commandKey"`
}

type ChangeDUStateResponse struct{}

// ---- Methods the CPE calls on the ACS, and their responses (docs/protocol.md §5.2).

type Inform struct {
	DeviceID      DeviceID         `json:"deviceId"`
	Events        []Event          `json:"events"`
	MaxEnvelopes  uint32           `json:"maxEnvelopes"`
	CurrentTime   DateTime         `json:"currentTime"`
	RetryCount    uint32           `json:"retryCount"`
	ParameterList []ParameterValue `json:"parameterList"`
}

type InformResponse struct {
	MaxEnvelopes uint32 `json:"maxEnvelopes"`
}

type TransferComplete struct {
	CommandKey   string      `json:"commandKey"`
	FaultStruct  FaultStruct `json:"faultStruct"`
	StartTime    DateTime    `json:"startTime"`
	CompleteTime DateTime    `json:"completeTime"`
}

type TransferCompleteResponse struct{}

type AutonomousTransferComplete struct {
	AnnounceURL    string      `json:"announceURL"`
	TransferURL    string      `json:"transferURL"`
	IsDownload     bool        `json:"isDownload"`
	FileType       string      `json:"fileType"`
	FileSize       uint32      `json:"fileSize"`
	TargetFileName string      `json:"targetFileName"`
	FaultStruct    FaultStruct `json:"faultStruct"`
	StartTime      DateTime    `json:"startTime"`
	CompleteTime   DateTime    `json:"completeTime"`
}

type AutonomousTransferCompleteResponse struct{}

type DUStateChangeComplete struct {
	Results    []OpResult `json:"results"`
	CommandKey string     `json:"commandKey"`
}

type DUStateChangeCompleteResponse struct{}

type AutonomousDUStateChangeComplete struct {
	Results []AutonOpResult `json:"results"`
}

type AutonomousDUStateChangeCompleteResponse struct{}

type RequestDownload struct {
	FileType    string `json:"fileType"`
	FileTypeArg []Arg  `json:"fileTypeArg"`
}

type RequestDownloadResponse struct{}

type Kicked struct {
	Command string `json:"command"`
	Referer string `json:"referer"`
	Arg     string `json:"arg"`
	Next    string `json:"next"`
}

type KickedResponse struct {
	NextURL string `json:"nextURL"`
}

// Unknown is an RPC element FleetACS does not implement (a vendor method, a
// typo, a method from a newer amendment). Decoding keeps the envelope so the
// session can answer it with fault 8000 (or 9000) and the request's cwmp:ID.
type Unknown struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

func (m *Unknown) Method() string { return m.Name }

// method names, one per concrete Message type.
func (*GetRPCMethods) Method() string                  { return "GetRPCMethods" }
func (*GetRPCMethodsResponse) Method() string          { return "GetRPCMethodsResponse" }
func (*SetParameterValues) Method() string             { return "SetParameterValues" }
func (*SetParameterValuesResponse) Method() string     { return "SetParameterValuesResponse" }
func (*GetParameterValues) Method() string             { return "GetParameterValues" }
func (*GetParameterValuesResponse) Method() string     { return "GetParameterValuesResponse" }
func (*GetParameterNames) Method() string              { return "GetParameterNames" }
func (*GetParameterNamesResponse) Method() string      { return "GetParameterNamesResponse" }
func (*SetParameterAttributes) Method() string         { return "SetParameterAttributes" }
func (*SetParameterAttributesResponse) Method() string { return "SetParameterAttributesResponse" }
func (*GetParameterAttributes) Method() string         { return "GetParameterAttributes" }
func (*GetParameterAttributesResponse) Method() string { return "GetParameterAttributesResponse" }
func (*AddObject) Method() string                      { return "AddObject" }
func (*AddObjectResponse) Method() string              { return "AddObjectResponse" }
func (*DeleteObject) Method() string                   { return "DeleteObject" }
func (*DeleteObjectResponse) Method() string           { return "DeleteObjectResponse" }
func (*Reboot) Method() string                         { return "Reboot" }
func (*RebootResponse) Method() string                 { return "RebootResponse" }
func (*Download) Method() string                       { return "Download" }
func (*DownloadResponse) Method() string               { return "DownloadResponse" }
func (*Upload) Method() string                         { return "Upload" }
func (*UploadResponse) Method() string                 { return "UploadResponse" }
func (*FactoryReset) Method() string                   { return "FactoryReset" }
func (*FactoryResetResponse) Method() string           { return "FactoryResetResponse" }
func (*GetQueuedTransfers) Method() string             { return "GetQueuedTransfers" }
func (*GetQueuedTransfersResponse) Method() string     { return "GetQueuedTransfersResponse" }
func (*GetAllQueuedTransfers) Method() string          { return "GetAllQueuedTransfers" }
func (*GetAllQueuedTransfersResponse) Method() string  { return "GetAllQueuedTransfersResponse" }
func (*ScheduleInform) Method() string                 { return "ScheduleInform" }
func (*ScheduleInformResponse) Method() string         { return "ScheduleInformResponse" }
func (*SetVouchers) Method() string                    { return "SetVouchers" }
func (*SetVouchersResponse) Method() string            { return "SetVouchersResponse" }
func (*GetOptions) Method() string                     { return "GetOptions" }
func (*GetOptionsResponse) Method() string             { return "GetOptionsResponse" }
func (*ScheduleDownload) Method() string               { return "ScheduleDownload" }
func (*ScheduleDownloadResponse) Method() string       { return "ScheduleDownloadResponse" }
func (*CancelTransfer) Method() string                 { return "CancelTransfer" }
func (*CancelTransferResponse) Method() string         { return "CancelTransferResponse" }
func (*ChangeDUState) Method() string                  { return "ChangeDUState" }
func (*ChangeDUStateResponse) Method() string          { return "ChangeDUStateResponse" }
func (*Inform) Method() string                         { return "Inform" }
func (*InformResponse) Method() string                 { return "InformResponse" }
func (*TransferComplete) Method() string               { return "TransferComplete" }
func (*TransferCompleteResponse) Method() string       { return "TransferCompleteResponse" }
func (*AutonomousTransferComplete) Method() string     { return "AutonomousTransferComplete" }
func (*AutonomousTransferCompleteResponse) Method() string {
	return "AutonomousTransferCompleteResponse"
}
func (*DUStateChangeComplete) Method() string         { return "DUStateChangeComplete" }
func (*DUStateChangeCompleteResponse) Method() string { return "DUStateChangeCompleteResponse" }
func (*AutonomousDUStateChangeComplete) Method() string {
	return "AutonomousDUStateChangeComplete"
}
func (*AutonomousDUStateChangeCompleteResponse) Method() string {
	return "AutonomousDUStateChangeCompleteResponse"
}
func (*RequestDownload) Method() string         { return "RequestDownload" }
func (*RequestDownloadResponse) Method() string { return "RequestDownloadResponse" }
func (*Kicked) Method() string                  { return "Kicked" }
func (*KickedResponse) Method() string          { return "KickedResponse" }

// factories maps each method name to a constructor of its zero value. It is
// read-only after package initialisation.
var factories = map[string]func() Message{
	"GetRPCMethods":                           func() Message { return new(GetRPCMethods) },
	"GetRPCMethodsResponse":                   func() Message { return new(GetRPCMethodsResponse) },
	"SetParameterValues":                      func() Message { return new(SetParameterValues) },
	"SetParameterValuesResponse":              func() Message { return new(SetParameterValuesResponse) },
	"GetParameterValues":                      func() Message { return new(GetParameterValues) },
	"GetParameterValuesResponse":              func() Message { return new(GetParameterValuesResponse) },
	"GetParameterNames":                       func() Message { return new(GetParameterNames) },
	"GetParameterNamesResponse":               func() Message { return new(GetParameterNamesResponse) },
	"SetParameterAttributes":                  func() Message { return new(SetParameterAttributes) },
	"SetParameterAttributesResponse":          func() Message { return new(SetParameterAttributesResponse) },
	"GetParameterAttributes":                  func() Message { return new(GetParameterAttributes) },
	"GetParameterAttributesResponse":          func() Message { return new(GetParameterAttributesResponse) },
	"AddObject":                               func() Message { return new(AddObject) },
	"AddObjectResponse":                       func() Message { return new(AddObjectResponse) },
	"DeleteObject":                            func() Message { return new(DeleteObject) },
	"DeleteObjectResponse":                    func() Message { return new(DeleteObjectResponse) },
	"Reboot":                                  func() Message { return new(Reboot) },
	"RebootResponse":                          func() Message { return new(RebootResponse) },
	"Download":                                func() Message { return new(Download) },
	"DownloadResponse":                        func() Message { return new(DownloadResponse) },
	"Upload":                                  func() Message { return new(Upload) },
	"UploadResponse":                          func() Message { return new(UploadResponse) },
	"FactoryReset":                            func() Message { return new(FactoryReset) },
	"FactoryResetResponse":                    func() Message { return new(FactoryResetResponse) },
	"GetQueuedTransfers":                      func() Message { return new(GetQueuedTransfers) },
	"GetQueuedTransfersResponse":              func() Message { return new(GetQueuedTransfersResponse) },
	"GetAllQueuedTransfers":                   func() Message { return new(GetAllQueuedTransfers) },
	"GetAllQueuedTransfersResponse":           func() Message { return new(GetAllQueuedTransfersResponse) },
	"ScheduleInform":                          func() Message { return new(ScheduleInform) },
	"ScheduleInformResponse":                  func() Message { return new(ScheduleInformResponse) },
	"SetVouchers":                             func() Message { return new(SetVouchers) },
	"SetVouchersResponse":                     func() Message { return new(SetVouchersResponse) },
	"GetOptions":                              func() Message { return new(GetOptions) },
	"GetOptionsResponse":                      func() Message { return new(GetOptionsResponse) },
	"ScheduleDownload":                        func() Message { return new(ScheduleDownload) },
	"ScheduleDownloadResponse":                func() Message { return new(ScheduleDownloadResponse) },
	"CancelTransfer":                          func() Message { return new(CancelTransfer) },
	"CancelTransferResponse":                  func() Message { return new(CancelTransferResponse) },
	"ChangeDUState":                           func() Message { return new(ChangeDUState) },
	"ChangeDUStateResponse":                   func() Message { return new(ChangeDUStateResponse) },
	"Inform":                                  func() Message { return new(Inform) },
	"InformResponse":                          func() Message { return new(InformResponse) },
	"TransferComplete":                        func() Message { return new(TransferComplete) },
	"TransferCompleteResponse":                func() Message { return new(TransferCompleteResponse) },
	"AutonomousTransferComplete":              func() Message { return new(AutonomousTransferComplete) },
	"AutonomousTransferCompleteResponse":      func() Message { return new(AutonomousTransferCompleteResponse) },
	"DUStateChangeComplete":                   func() Message { return new(DUStateChangeComplete) },
	"DUStateChangeCompleteResponse":           func() Message { return new(DUStateChangeCompleteResponse) },
	"AutonomousDUStateChangeComplete":         func() Message { return new(AutonomousDUStateChangeComplete) },
	"AutonomousDUStateChangeCompleteResponse": func() Message { return new(AutonomousDUStateChangeCompleteResponse) },
	"RequestDownload":                         func() Message { return new(RequestDownload) },
	"RequestDownloadResponse":                 func() Message { return new(RequestDownloadResponse) },
	"Kicked":                                  func() Message { return new(Kicked) },
	"KickedResponse":                          func() Message { return new(KickedResponse) },
	"Fault":                                   func() Message { return new(Fault) },
}

// NewMessage returns a new zero Message for a method name ("Inform",
// "Fault", ...), or false when the name is not a CWMP method.
func NewMessage(method string) (Message, bool) {
	f, ok := factories[method]
	if !ok {
		return nil, false
	}
	return f(), true
}

// Methods lists every method name NewMessage knows, requests and responses.
func Methods() []string {
	out := make([]string, 0, len(factories))
	for name := range factories {
		out = append(out, name)
	}
	return out
}

// Since is the first CWMP version whose schema defines the method (docs/protocol.md
// §5): messages of newer methods cannot be sent in an older session.
func Since(method string) Version {
	switch strings.TrimSuffix(method, "Response") {
	case "GetAllQueuedTransfers", "AutonomousTransferComplete":
		return V1_1
	case "ScheduleDownload", "CancelTransfer", "ChangeDUState",
		"DUStateChangeComplete", "AutonomousDUStateChangeComplete":
		return V1_2
	}
	return V1_0
}
