package sessions

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/taskspec"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

// Task stages (taskOp.Stage).
const (
	// stagePending: the request is still to send.
	stagePending = "pending"
	// stageNames and stageValues: a refresh's GetParameterNames, then its
	// GetParameterValues batch by batch.
	stageNames  = "names"
	stageValues = "values"
	// stageDone and stageFault: the task ended in this session (Result or
	// Fault is set).
	stageDone  = "done"
	stageFault = "fault"
	// stageAwait: the CPE accepted it in this session; what ends it comes
	// in a later one (reported AWAIT).
	stageAwait = "await"
	// stageWaiting: claimed with CLAIM_ACTION_AWAIT and not completed (yet)
	// in this session: nothing to report.
	stageWaiting = "waiting"
	// stageRetry: the session ended before the CPE answered.
	stageRetry = "retry"
)

// refreshBatch is the number of names per GetParameterValues of a refresh.
const refreshBatch = 100

// taskOp is one task of the tasks service run as a session operation
// (docs/sessions.md, "Tasks"): every ACS method of pkg/cwmp, and
// refresh. It is data, checkpointed as JSON with its session. Spec holds
// the task's operation (protobuf) until its request has been answered,
// without its passwords (a Download's, ...): those are in Sealed, sealed
// with the worker's keys, and the request as checkpointed goes without
// them (engine.SecretCaller), so that no checkpoint holds them in clear
// (docs/security.md).
type taskOp struct {
	ID string `json:"id"`
	// Mark is the claim's mark (ClaimedTask.claim_mark), which the report
	// names.
	Mark uint32 `json:"mark,omitempty"`
	// Kind is the name of the Operation's oneof field ("reboot", ...).
	Kind string `json:"kind"`
	// Key is the CommandKey or ParameterKey the request carries: the
	// operation's own when it names one, else Task.command_key.
	Key  string `json:"key"`
	Spec []byte `json:"spec,omitempty"`
	// AwaitSeconds is how long an accepted task waits for its completion.
	AwaitSeconds uint32 `json:"awaitSeconds"`
	Stage        string `json:"stage"`
	Detail       string `json:"detail,omitempty"`
	// Result and Fault are protobuf TaskResult and TaskFault.
	Result []byte `json:"result,omitempty"`
	Fault  []byte `json:"fault,omitempty"`

	// A refresh's names and values: Path its GetParameterNames, Cursor
	// the index in Learned's parameters of the next name to read.
	Path   string `json:"path,omitempty"`
	Cursor int    `json:"cursor,omitempty"`

	// Learned is what the task read or changed, for the session's diff;
	// Removed an object it deleted. Confirmed: the CPE changed it, so
	// even an incomplete session writes it (engine.Outcome).
	Learned   []engine.Parameter `json:"learned,omitempty"`
	Removed   string             `json:"removed,omitempty"`
	Confirmed bool               `json:"confirmed,omitempty"`

	// A diagnostic's test (the name of Diagnostic's oneof field) and the
	// object it sets and reads (diagnostic.go).
	Test   string `json:"test,omitempty"`
	Object string `json:"object,omitempty"`
	// Awaited: claimed with CLAIM_ACTION_AWAIT, so the task already has
	// its deadline.
	Awaited bool `json:"awaited,omitempty"`

	// Secret says the operation has passwords (taskspec.Passwords).
	// SealedKeyID and Sealed are they, as a JSON array of strings, sealed
	// with the worker's keys; empty when it has no keys (the passwords
	// are then in this worker's memory only).
	Secret      bool   `json:"secret,omitempty"`
	SealedKeyID string `json:"sealedKeyId,omitempty"`
	Sealed      []byte `json:"sealed,omitempty"`

	// spec is Spec decoded, passwords put back; keys open Sealed;
	// passwords are the passwords in clear, in memory only.
	spec      *tasksv1.Operation
	keys      *secretbox.Keyring
	passwords []string
}

var (
	_ engine.Operation    = (*taskOp)(nil)
	_ engine.SecretCaller = (*taskOp)(nil)
)

// taskSecretAAD binds a task's sealed passwords to the task.
func taskSecretAAD(id string) []byte { return secretbox.AAD("task-operation", id) }

// kindOf names an Operation's kind as its oneof field does.
func kindOf(op *tasksv1.Operation) string {
	k := op.ProtoReflect().WhichOneof(op.ProtoReflect().Descriptor().Oneofs().ByName("kind"))
	if k == nil {
		return ""
	}
	return string(k.Name())
}

// newTaskOp makes the operation of a claimed task in stage; keys (nil:
// none) seal its passwords.
func newTaskOp(t *tasksv1.Task, stage string, defaultAwait time.Duration, keys *secretbox.Keyring) (*taskOp, error) {
	spec := t.GetOperation()
	kind := kindOf(spec)
	if kind == "" {
		return nil, errors.New("task has no operation")
	}
	// The checkpoint's copy of the operation goes without its
	// passwords; an operation with no password field (most: every
	// parameter operation) is encoded as it is, not copied first.
	bare := spec
	var passwords []string
	anySet := false
	if len(taskspec.Passwords(spec)) > 0 {
		bare = proto.Clone(spec).(*tasksv1.Operation)
		for _, f := range taskspec.Passwords(bare) {
			passwords = append(passwords, *f)
			anySet = anySet || *f != ""
			*f = ""
		}
	}
	b, err := proto.Marshal(bare)
	if err != nil {
		return nil, fmt.Errorf("encode operation of task %s: %w", t.GetId(), err)
	}
	await := t.GetOptions().GetAwaitTimeoutSeconds()
	if await == 0 {
		if kind == kindDiagnostic {
			defaultAwait = min(defaultAwait, defaultDiagnosticAwait)
		}
		await = uint32(defaultAwait / time.Second)
	}
	o := &taskOp{ID: t.GetId(), Kind: kind, Key: effectiveKey(spec, t.GetCommandKey()), Spec: b, AwaitSeconds: await, Stage: stage,
		spec: spec, keys: keys}
	if anySet {
		o.Secret, o.passwords = true, passwords
		if keys != nil {
			plain, err := json.Marshal(passwords)
			if err != nil {
				return nil, fmt.Errorf("encode the credentials of task %s: %w", t.GetId(), err)
			}
			if o.SealedKeyID, o.Sealed, err = keys.Seal(plain, taskSecretAAD(t.GetId())); err != nil {
				return nil, fmt.Errorf("seal the credentials of task %s: %w", t.GetId(), err)
			}
		}
	}
	if r := spec.GetRefresh(); r != nil && stage == stagePending {
		o.Stage, o.Path = stageNames, r.GetPath()
	}
	return o, nil
}

// effectiveKey is the key a task's request carries: the one its operation
// names, else the task's command_key (docs/sessions.md, "Tasks").
func effectiveKey(op *tasksv1.Operation, commandKey string) string {
	var own string
	switch k := op.GetKind().(type) {
	case *tasksv1.Operation_SetParameterValues:
		own = k.SetParameterValues.GetParameterKey()
	case *tasksv1.Operation_AddObject:
		own = k.AddObject.GetParameterKey()
	case *tasksv1.Operation_DeleteObject:
		own = k.DeleteObject.GetParameterKey()
	case *tasksv1.Operation_Reboot:
		own = k.Reboot.GetCommandKey()
	case *tasksv1.Operation_Download:
		own = k.Download.GetCommandKey()
	case *tasksv1.Operation_Upload:
		own = k.Upload.GetCommandKey()
	case *tasksv1.Operation_ScheduleInform:
		own = k.ScheduleInform.GetCommandKey()
	case *tasksv1.Operation_ScheduleDownload:
		own = k.ScheduleDownload.GetCommandKey()
	case *tasksv1.Operation_ChangeDuState:
		own = k.ChangeDuState.GetCommandKey()
	case *tasksv1.Operation_CancelTransfer:
		// Its key names the transfer to cancel, never the task's.
		return k.CancelTransfer.GetCommandKey()
	}
	if own != "" {
		return own
	}
	return commandKey
}

// operation decodes Spec once, and puts its passwords back; nil when
// Spec is gone, or holds passwords this worker cannot open (sealed with
// keys it does not have: Detail says so).
func (o *taskOp) operation() *tasksv1.Operation {
	if o.spec != nil || len(o.Spec) == 0 {
		return o.spec
	}
	var op tasksv1.Operation
	if proto.Unmarshal(o.Spec, &op) != nil {
		return nil
	}
	if o.Secret {
		pw, ok := o.openPasswords()
		fields := taskspec.Passwords(&op)
		if !ok || len(pw) != len(fields) {
			o.Detail = "the task's credentials were sealed with keys this worker does not hold (-sessions.secrets-key-file must be the same on every worker)"
			return nil
		}
		for i, f := range fields {
			*f = pw[i]
		}
	}
	o.spec = &op
	return o.spec
}

// openPasswords returns the operation's passwords, opening Sealed.
func (o *taskOp) openPasswords() ([]string, bool) {
	if o.passwords != nil {
		return o.passwords, true
	}
	if o.keys == nil || len(o.Sealed) == 0 {
		return nil, false
	}
	plain, err := o.keys.Open(o.SealedKeyID, o.Sealed, taskSecretAAD(o.ID))
	if err != nil {
		return nil, false
	}
	var pw []string
	if json.Unmarshal(plain, &pw) != nil {
		return nil, false
	}
	o.passwords = pw
	return pw, true
}

// Redact implements engine.SecretCaller: the request as checkpointed, its
// passwords left out.
func (o *taskOp) Redact(key string, m cwmp.Message) cwmp.Message {
	if key != keyRequest {
		return m
	}
	switch r := m.(type) {
	case *cwmp.Download:
		c := *r
		c.Password = ""
		return &c
	case *cwmp.Upload:
		c := *r
		c.Password = ""
		return &c
	case *cwmp.ScheduleDownload:
		c := *r
		c.Password = ""
		return &c
	case *cwmp.ChangeDUState:
		c := *r
		c.Operations = slices.Clone(r.Operations)
		for i := range c.Operations {
			c.Operations[i].Password = ""
		}
		return &c
	}
	return m
}

// Rebuild implements engine.SecretCaller: the request again, passwords
// included, from Spec and Sealed.
func (o *taskOp) Rebuild(_ *engine.Context, key string) (cwmp.Message, bool) {
	if key != keyRequest || !o.Secret {
		return nil, true
	}
	m, err := o.request()
	return m, err == nil
}

// Call keys.
const (
	keyRequest = "req"
	keyGPN     = "gpn"
	keyGPV     = "gpv"
)

// Next implements engine.Operation.
func (o *taskOp) Next(*engine.Context) (engine.Call, bool) {
	switch o.Stage {
	case stagePending:
		m, err := o.request()
		if err != nil {
			return engine.Call{}, false
		}
		return engine.Call{Message: m, Key: keyRequest}, true
	case stageResults:
		return engine.Call{Message: &cwmp.GetParameterValues{ParameterNames: []string{o.Object}}, Key: keyDiagResults}, true
	case stageNames:
		return engine.Call{Message: &cwmp.GetParameterNames{ParameterPath: o.Path}, Key: keyGPN}, true
	case stageValues:
		names := o.leafNames(o.Cursor, refreshBatch)
		if len(names) == 0 {
			return engine.Call{}, false
		}
		return engine.Call{Message: &cwmp.GetParameterValues{ParameterNames: names}, Key: keyGPV + " " + strconv.Itoa(o.Cursor)}, true
	}
	return engine.Call{}, false
}

// request builds the task's CWMP request.
func (o *taskOp) request() (cwmp.Message, error) {
	spec := o.operation()
	if spec == nil {
		if o.Detail != "" {
			return nil, errors.New(o.Detail)
		}
		return nil, errors.New("the task's operation is gone")
	}
	if o.Kind == kindDiagnostic {
		return diagnosticRequest(spec.GetDiagnostic(), rootOf(o.Object), o.Object, o.Key)
	}
	return requestOf(spec, o.Key)
}

// rootOf returns the data-model root a path starts with.
func rootOf(path string) string {
	root, _, _ := strings.Cut(path, ".")
	return root + "."
}

// leafNames returns up to n parameter (non-object) names of Learned from
// index from.
func (o *taskOp) leafNames(from, n int) []string {
	var names []string
	for i := from; i < len(o.Learned) && len(names) < n; i++ {
		if !strings.HasSuffix(o.Learned[i].Path, ".") {
			names = append(names, o.Learned[i].Path)
		}
	}
	return names
}

// Answer implements engine.Operation.
func (o *taskOp) Answer(c *engine.Context, a engine.Answer) {
	kind, rest, _ := strings.Cut(a.Call.Key, " ")
	switch {
	case kind == keyRequest && o.Stage == stagePending:
	case kind == keyGPN && o.Stage == stageNames:
	case kind == keyGPV && o.Stage == stageValues && rest == strconv.Itoa(o.Cursor):
	case kind == keyDiagResults && o.Stage == stageResults:
	default:
		return // an answer the task no longer waits for
	}
	switch {
	case a.NotSent != nil:
		detail := "the session cannot send " + a.Call.Message.Method()
		if errors.Is(a.NotSent, cwmp.ErrMethodTooNew) {
			detail = fmt.Sprintf("%s is not part of the CPE's CWMP version %s", a.Call.Message.Method(), c.Version)
		}
		o.fail(&tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_ACS, FaultString: detail})
	case a.Lost != 0 && kind == keyDiagResults:
		// The session failed, so the CPE informs its 8 DIAGNOSTICS
		// COMPLETE again in the next: the task waits for it there.
		o.Stage = stageWaiting
	case a.Lost != 0:
		o.Stage, o.Detail = stageRetry, "the session ended before the CPE answered: "+a.Lost.String()
	case a.Fault != nil && a.Fault.Code == cwmp.FaultRetryRequest:
		// 8005 asks for the same request again (docs/protocol.md §7.1).
		// It is an ACS fault code, outside what a CPE should send, but its
		// one meaning is that the request was not carried out and should
		// come again. cwmp.Session already sent it again in this session,
		// as often as its resend bound allows; an 8005 reaches the task
		// only when that bound is spent, and the task is retried in a
		// later session, after the tasks service's back-off and within its
		// max_attempts (docs/tasks.md, "Retries"), rather than faulted.
		o.Stage, o.Detail = stageRetry, "the CPE asked for the request again (fault 8005 "+strconv.Quote(a.Fault.String)+")"
	case a.Fault != nil:
		o.fail(cpeFault(a.Fault))
	case kind == keyGPN:
		o.takeNames(c, a.Response)
	case kind == keyGPV:
		o.takeValues(c, a.Response)
	case kind == keyDiagResults:
		o.takeDiagnosticResults(c, a.Response)
	case o.Kind == kindDiagnostic:
		o.diagnosticAnswered(a.Response)
	default:
		o.took(c, a.Response)
	}
	if o.Stage != stagePending {
		o.Spec, o.spec = nil, nil
	}
}

func cpeFault(f *cwmp.Fault) *tasksv1.TaskFault {
	tf := &tasksv1.TaskFault{Code: uint32(f.Code), FaultString: f.String, Source: tasksv1.FaultSource_FAULT_SOURCE_CPE}
	if f.Code == 0 && f.String == "" {
		// A bare SOAP Fault, without the cwmp:Fault detail
		// (docs/protocol.md §2.4): code 0, and the SOAP faultstring is
		// all the CPE said.
		tf.FaultString = f.SOAPString
		if f.SOAPCode != "" {
			tf.FaultString = strings.TrimSpace("SOAP fault " + f.SOAPCode + ": " + f.SOAPString)
		}
	}
	for _, p := range f.SetParameterValuesFaults {
		tf.ParameterFaults = append(tf.ParameterFaults, &tasksv1.ParameterFault{Name: p.ParameterName, Code: uint32(p.FaultCode), FaultString: p.FaultString})
	}
	return tf
}

func (o *taskOp) fail(f *tasksv1.TaskFault) {
	o.Stage, o.Result, o.Learned, o.Removed, o.Confirmed = stageFault, nil, nil, "", false
	o.Fault, _ = proto.Marshal(f)
	o.Detail = f.GetFaultString()
}

func (o *taskOp) done(r *tasksv1.TaskResult) {
	o.Stage = stageDone
	if r != nil {
		o.Result, _ = proto.Marshal(r)
	}
}

// unexpected fails a task answered with the wrong response (the state
// machine matches responses to requests, so this is a CPE bug).
func (o *taskOp) unexpected(m cwmp.Message) {
	o.fail(&tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_ACS, FaultString: "unexpected response " + m.Method()})
}

// charge accounts for what the task keeps to record; false fails it.
func (o *taskOp) charge(c *engine.Context, ps []engine.Parameter) bool {
	bytes := 0
	for _, p := range ps {
		bytes += engine.ParameterCost(p.Path, p.Value, p.Type)
	}
	if c.Charge(len(ps), bytes) {
		return true
	}
	o.fail(&tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_ACS, FaultString: "the answer exceeds the session's limits (-sessions.max-session-parameters, -sessions.max-session-bytes)"})
	return false
}

// took applies the response to the task's request.
func (o *taskOp) took(c *engine.Context, resp cwmp.Message) {
	spec := o.operation()
	switch r := resp.(type) {
	case *cwmp.GetRPCMethodsResponse:
		o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_GetRpcMethods{GetRpcMethods: &tasksv1.GetRPCMethodsResult{Methods: r.MethodList}}})
	case *cwmp.GetParameterNamesResponse:
		res := &tasksv1.GetParameterNamesResult{}
		learned := make([]engine.Parameter, 0, len(r.ParameterList))
		for _, p := range r.ParameterList {
			res.Parameters = append(res.Parameters, &tasksv1.ParameterInfo{Name: p.Name, Writable: p.Writable})
			learned = append(learned, engine.Parameter{Path: p.Name, Writable: p.Writable, HasWritable: true})
		}
		if o.charge(c, learned) {
			o.Learned = learned
			o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_GetParameterNames{GetParameterNames: res}})
		}
	case *cwmp.GetParameterValuesResponse:
		res := &tasksv1.GetParameterValuesResult{}
		learned := make([]engine.Parameter, 0, len(r.ParameterList))
		for _, p := range r.ParameterList {
			res.Values = append(res.Values, &tasksv1.ParameterValue{Name: p.Name, Value: p.Value, Type: p.Type})
			learned = append(learned, engine.Parameter{Path: p.Name, Value: p.Value, Type: p.Type, HasValue: true})
		}
		if o.charge(c, learned) {
			o.Learned = learned
			o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_GetParameterValues{GetParameterValues: res}})
		}
	case *cwmp.SetParameterValuesResponse:
		// The CPE applied the values (status 1: once it commits them):
		// they go to inventory however the session ends.
		o.Learned, o.Confirmed = spvParameters(spec.GetSetParameterValues()), true
		o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_SetParameterValues{SetParameterValues: &tasksv1.SetParameterValuesResult{Status: int32(r.Status)}}})
	case *cwmp.GetParameterAttributesResponse:
		res := &tasksv1.GetParameterAttributesResult{}
		for _, p := range r.ParameterList {
			res.Attributes = append(res.Attributes, &tasksv1.ParameterAttribute{Name: p.Name, Notification: uint32(max(p.Notification, 0)), AccessList: p.AccessList})
		}
		o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_GetParameterAttributes{GetParameterAttributes: res}})
	case *cwmp.SetParameterAttributesResponse, *cwmp.CancelTransferResponse:
		o.done(nil)
	case *cwmp.AddObjectResponse:
		if r.InstanceNumber == 0 {
			// Instance numbers start at 1 (docs/protocol.md §5.1): a CPE
			// that left it out created an object whose number the ACS
			// does not know, and never computes (§5.3). Done, as the CPE
			// says, with no path and nothing written to inventory; the
			// next refresh or discovery finds the instance.
			o.Detail = "the CPE created the object without saying its instance number"
			o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_AddObject{AddObject: &tasksv1.AddObjectResult{Status: int32(r.Status)}}})
			break
		}
		path := spec.GetAddObject().GetObjectName() + strconv.FormatUint(uint64(r.InstanceNumber), 10) + "."
		o.Learned, o.Confirmed = []engine.Parameter{{Path: path}}, true
		o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_AddObject{AddObject: &tasksv1.AddObjectResult{
			InstanceNumber: r.InstanceNumber, Status: int32(r.Status), ObjectPath: path}}})
	case *cwmp.DeleteObjectResponse:
		o.Removed, o.Confirmed = spec.GetDeleteObject().GetObjectName(), true
		o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_DeleteObject{DeleteObject: &tasksv1.DeleteObjectResult{Status: int32(r.Status)}}})
	case *cwmp.RebootResponse, *cwmp.FactoryResetResponse, *cwmp.ScheduleInformResponse,
		*cwmp.ScheduleDownloadResponse, *cwmp.ChangeDUStateResponse:
		o.Stage = stageAwait
	case *cwmp.DownloadResponse:
		o.transferAnswered(r.Status, r.StartTime, r.CompleteTime)
	case *cwmp.UploadResponse:
		o.transferAnswered(r.Status, r.StartTime, r.CompleteTime)
	case *cwmp.GetQueuedTransfersResponse:
		res := &tasksv1.QueuedTransfersResult{}
		for _, t := range r.TransferList {
			res.Transfers = append(res.Transfers, &tasksv1.QueuedTransfer{CommandKey: t.CommandKey, State: int32(t.State)})
		}
		o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_QueuedTransfers{QueuedTransfers: res}})
	case *cwmp.GetAllQueuedTransfersResponse:
		res := &tasksv1.QueuedTransfersResult{}
		for _, t := range r.TransferList {
			res.Transfers = append(res.Transfers, &tasksv1.QueuedTransfer{CommandKey: t.CommandKey, State: int32(t.State),
				IsDownload: t.IsDownload, FileType: t.FileType, FileSize: uint64(t.FileSize), TargetFileName: t.TargetFileName})
		}
		o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_QueuedTransfers{QueuedTransfers: res}})
	case *cwmp.VendorResponse:
		// The session matched it to the request by name (docs/protocol.md §5.4).
		o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_VendorMethod{VendorMethod: &tasksv1.VendorMethodResult{ResponseXml: r.InnerXML}}})
	default:
		o.unexpected(resp)
	}
}

// transferAnswered takes a Download's or Upload's response: status 0, the
// transfer is over; 1, its TransferComplete comes later.
func (o *taskOp) transferAnswered(status int, start, complete cwmp.DateTime) {
	if status != 0 {
		o.Stage = stageAwait
		return
	}
	o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_Transfer{Transfer: &tasksv1.TransferResult{
		Status: 0, StartTime: timestampOf(start), CompleteTime: timestampOf(complete)}}})
}

// timestampOf converts a CWMP time; nil for the Unknown Time or garbage.
func timestampOf(d cwmp.DateTime) *timestamppb.Timestamp {
	if d == "" || d == cwmp.UnknownTime {
		return nil
	}
	t, err := d.Time()
	if err != nil {
		return nil
	}
	return timestamppb.New(t)
}

func spvParameters(spv *tasksv1.SetParameterValues) []engine.Parameter {
	ps := make([]engine.Parameter, 0, len(spv.GetValues()))
	for _, v := range spv.GetValues() {
		ps = append(ps, engine.Parameter{Path: v.GetName(), Value: v.GetValue(), Type: valueType(v.GetType()), HasValue: true})
	}
	return ps
}

// valueType is the type a value is sent with: xsd:string when the task
// names none.
func valueType(t string) string {
	if t == "" {
		return "xsd:string"
	}
	return t
}

// takeNames starts a refresh's values from its GetParameterNames.
func (o *taskOp) takeNames(c *engine.Context, resp cwmp.Message) {
	r, ok := resp.(*cwmp.GetParameterNamesResponse)
	if !ok {
		o.unexpected(resp)
		return
	}
	seen := make(map[string]bool, len(r.ParameterList))
	learned := make([]engine.Parameter, 0, len(r.ParameterList))
	for _, p := range r.ParameterList {
		// Only names under the path: the refresh replaces that subtree.
		if seen[p.Name] || !strings.HasPrefix(p.Name, o.Path) {
			continue
		}
		seen[p.Name] = true
		learned = append(learned, engine.Parameter{Path: p.Name, Writable: p.Writable, HasWritable: true})
	}
	if !o.charge(c, learned) {
		return
	}
	o.Learned, o.Stage, o.Cursor = learned, stageValues, 0
	o.nextLeaf()
}

// nextLeaf moves Cursor to the next parameter name, and ends the refresh
// when there is none.
func (o *taskOp) nextLeaf() {
	for o.Cursor < len(o.Learned) && strings.HasSuffix(o.Learned[o.Cursor].Path, ".") {
		o.Cursor++
	}
	if o.Cursor >= len(o.Learned) {
		res := &tasksv1.GetParameterValuesResult{}
		for _, p := range o.Learned {
			if p.HasValue {
				res.Values = append(res.Values, &tasksv1.ParameterValue{Name: p.Path, Value: p.Value, Type: p.Type})
			}
		}
		o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_GetParameterValues{GetParameterValues: res}})
	}
}

// takeValues takes one batch of a refresh's values.
func (o *taskOp) takeValues(c *engine.Context, resp cwmp.Message) {
	r, ok := resp.(*cwmp.GetParameterValuesResponse)
	if !ok {
		o.unexpected(resp)
		return
	}
	index := make(map[string]int, refreshBatch)
	asked := 0
	i := o.Cursor
	for ; i < len(o.Learned) && asked < refreshBatch; i++ {
		if !strings.HasSuffix(o.Learned[i].Path, ".") {
			index[o.Learned[i].Path] = i
			asked++
		}
	}
	bytes := 0
	for _, p := range r.ParameterList {
		bytes += len(p.Value) + len(p.Type)
	}
	if !c.Charge(0, bytes) {
		o.fail(&tasksv1.TaskFault{Source: tasksv1.FaultSource_FAULT_SOURCE_ACS, FaultString: "the subtree exceeds the session's limits"})
		return
	}
	for _, p := range r.ParameterList {
		if j, ok := index[p.Name]; ok && !o.Learned[j].HasValue {
			o.Learned[j].Value, o.Learned[j].Type, o.Learned[j].HasValue = p.Value, p.Type, true
		}
	}
	o.Cursor = i
	o.nextLeaf()
}

// Observe implements engine.Operation: a waiting transfer or
// deployment-unit change ends with the CPE's request carrying its key.
func (o *taskOp) Observe(_ *engine.Context, m cwmp.Message) bool {
	if o.Stage != stageAwait && o.Stage != stageWaiting {
		return false
	}
	switch m := m.(type) {
	case *cwmp.TransferComplete:
		if !isTransfer(o.Kind) || m.CommandKey != o.Key {
			return false
		}
		if m.FaultStruct.FaultCode != 0 {
			o.fail(&tasksv1.TaskFault{Code: uint32(m.FaultStruct.FaultCode), FaultString: m.FaultStruct.FaultString, Source: tasksv1.FaultSource_FAULT_SOURCE_TRANSFER})
			return true
		}
		o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_Transfer{Transfer: &tasksv1.TransferResult{
			StartTime: timestampOf(m.StartTime), CompleteTime: timestampOf(m.CompleteTime)}}})
		return true
	case *cwmp.DUStateChangeComplete:
		if o.Kind != kindChangeDUState || m.CommandKey != o.Key {
			return false
		}
		res := &tasksv1.ChangeDUStateResult{}
		for _, r := range m.Results {
			dr := &tasksv1.DeploymentUnitResult{Uuid: r.UUID, DeploymentUnitRef: r.DeploymentUnitRef, Version: r.Version,
				CurrentState: r.CurrentState, Resolved: r.Resolved}
			if r.Fault.FaultCode != 0 {
				dr.Fault = &tasksv1.TaskFault{Code: uint32(r.Fault.FaultCode), FaultString: r.Fault.FaultString, Source: tasksv1.FaultSource_FAULT_SOURCE_CPE}
			}
			res.Results = append(res.Results, dr)
		}
		o.done(&tasksv1.TaskResult{Kind: &tasksv1.TaskResult_ChangeDuState{ChangeDuState: res}})
		return true
	}
	return false
}

// Operation kinds that wait for a completion.
const (
	kindReboot           = "reboot"
	kindFactoryReset     = "factory_reset"
	kindScheduleInform   = "schedule_inform"
	kindDownload         = "download"
	kindUpload           = "upload"
	kindScheduleDownload = "schedule_download"
	kindChangeDUState    = "change_du_state"
	kindSPV              = "set_parameter_values"
	kindAddObject        = "add_object"
	kindDeleteObject     = "delete_object"
	kindVendor           = "vendor_method"
)

func isTransfer(kind string) bool {
	return kind == kindDownload || kind == kindUpload || kind == kindScheduleDownload
}

// Contribute implements engine.Operation: what a task read is written by
// a completed session; what it changed on the CPE (Confirmed) by any.
func (o *taskOp) Contribute(_ *engine.Context, b *engine.DiffBuilder, out engine.Outcome) {
	if o.Stage != stageDone || (!o.Confirmed && out != engine.Completed) {
		return
	}
	if o.Removed != "" {
		b.Remove(o.Removed)
	}
	b.Grow(len(o.Learned))
	for _, p := range o.Learned {
		b.Set(p)
	}
}

// contributes reports whether the task has something for the diff.
func (o *taskOp) contributes() bool { return len(o.Learned) > 0 || o.Removed != "" }

// requestOf builds the CWMP request of an operation carrying key.
func requestOf(op *tasksv1.Operation, key string) (cwmp.Message, error) {
	switch k := op.GetKind().(type) {
	case *tasksv1.Operation_GetRpcMethods:
		return &cwmp.GetRPCMethods{}, nil
	case *tasksv1.Operation_GetParameterNames:
		return &cwmp.GetParameterNames{ParameterPath: k.GetParameterNames.GetParameterPath(), NextLevel: k.GetParameterNames.GetNextLevel()}, nil
	case *tasksv1.Operation_GetParameterValues:
		return &cwmp.GetParameterValues{ParameterNames: k.GetParameterValues.GetNames()}, nil
	case *tasksv1.Operation_SetParameterValues:
		m := &cwmp.SetParameterValues{ParameterKey: key}
		for _, v := range k.SetParameterValues.GetValues() {
			m.ParameterList = append(m.ParameterList, cwmp.ParameterValue{Name: v.GetName(), Value: v.GetValue(), Type: valueType(v.GetType())})
		}
		return m, nil
	case *tasksv1.Operation_GetParameterAttributes:
		return &cwmp.GetParameterAttributes{ParameterNames: k.GetParameterAttributes.GetNames()}, nil
	case *tasksv1.Operation_SetParameterAttributes:
		m := &cwmp.SetParameterAttributes{}
		for _, c := range k.SetParameterAttributes.GetChanges() {
			m.ParameterList = append(m.ParameterList, cwmp.SetParameterAttributesStruct{
				Name: c.GetName(), NotificationChange: c.GetNotificationChange(), Notification: int(c.GetNotification()),
				AccessListChange: c.GetAccessListChange(), AccessList: c.GetAccessList()})
		}
		return m, nil
	case *tasksv1.Operation_AddObject:
		return &cwmp.AddObject{ObjectName: k.AddObject.GetObjectName(), ParameterKey: key}, nil
	case *tasksv1.Operation_DeleteObject:
		return &cwmp.DeleteObject{ObjectName: k.DeleteObject.GetObjectName(), ParameterKey: key}, nil
	case *tasksv1.Operation_Reboot:
		return &cwmp.Reboot{CommandKey: key}, nil
	case *tasksv1.Operation_FactoryReset:
		return &cwmp.FactoryReset{}, nil
	case *tasksv1.Operation_Download:
		d := k.Download
		return &cwmp.Download{CommandKey: key, FileType: d.GetFileType(), URL: d.GetUrl(), Username: d.GetUsername(), Password: d.GetPassword(),
			FileSize: clampSize(d.GetFileSize()), TargetFileName: d.GetTargetFileName(), DelaySeconds: d.GetDelaySeconds(),
			SuccessURL: d.GetSuccessUrl(), FailureURL: d.GetFailureUrl()}, nil
	case *tasksv1.Operation_Upload:
		u := k.Upload
		return &cwmp.Upload{CommandKey: key, FileType: u.GetFileType(), URL: u.GetUrl(), Username: u.GetUsername(), Password: u.GetPassword(),
			DelaySeconds: u.GetDelaySeconds()}, nil
	case *tasksv1.Operation_ScheduleInform:
		return &cwmp.ScheduleInform{DelaySeconds: k.ScheduleInform.GetDelaySeconds(), CommandKey: key}, nil
	case *tasksv1.Operation_ScheduleDownload:
		d := k.ScheduleDownload
		m := &cwmp.ScheduleDownload{CommandKey: key, FileType: d.GetFileType(), URL: d.GetUrl(), Username: d.GetUsername(), Password: d.GetPassword(),
			FileSize: clampSize(d.GetFileSize()), TargetFileName: d.GetTargetFileName()}
		for _, w := range d.GetTimeWindows() {
			m.TimeWindowList = append(m.TimeWindowList, cwmp.TimeWindow{WindowStart: w.GetWindowStart(), WindowEnd: w.GetWindowEnd(),
				WindowMode: w.GetWindowMode(), UserMessage: w.GetUserMessage(), MaxRetries: int(w.GetMaxRetries())})
		}
		return m, nil
	case *tasksv1.Operation_CancelTransfer:
		return &cwmp.CancelTransfer{CommandKey: key}, nil
	case *tasksv1.Operation_ChangeDuState:
		m := &cwmp.ChangeDUState{CommandKey: key}
		for _, du := range k.ChangeDuState.GetOperations() {
			switch d := du.GetKind().(type) {
			case *tasksv1.DeploymentUnitOperation_Install:
				m.Operations = append(m.Operations, cwmp.DUOperation{Kind: cwmp.OpInstall, URL: d.Install.GetUrl(), UUID: d.Install.GetUuid(),
					Username: d.Install.GetUsername(), Password: d.Install.GetPassword(), ExecutionEnvRef: d.Install.GetExecutionEnvRef()})
			case *tasksv1.DeploymentUnitOperation_Update:
				m.Operations = append(m.Operations, cwmp.DUOperation{Kind: cwmp.OpUpdate, URL: d.Update.GetUrl(), UUID: d.Update.GetUuid(),
					Username: d.Update.GetUsername(), Password: d.Update.GetPassword(), Version: d.Update.GetVersion()})
			case *tasksv1.DeploymentUnitOperation_Uninstall:
				m.Operations = append(m.Operations, cwmp.DUOperation{Kind: cwmp.OpUninstall, UUID: d.Uninstall.GetUuid(),
					Version: d.Uninstall.GetVersion(), ExecutionEnvRef: d.Uninstall.GetExecutionEnvRef()})
			}
		}
		return m, nil
	case *tasksv1.Operation_GetQueuedTransfers:
		return &cwmp.GetQueuedTransfers{}, nil
	case *tasksv1.Operation_GetAllQueuedTransfers:
		return &cwmp.GetAllQueuedTransfers{}, nil
	case *tasksv1.Operation_VendorMethod:
		// Checked (name, well-formed arguments) when the planner encodes it.
		return &cwmp.VendorRequest{Name: k.VendorMethod.GetMethod(), Namespace: k.VendorMethod.GetNamespace(),
			Arguments: k.VendorMethod.GetArgumentsXml()}, nil
	}
	return nil, fmt.Errorf("operation %q has no CWMP request", kindOf(op))
}

// clampSize fits a file size into CWMP's unsignedInt.
func clampSize(n uint64) uint32 { return uint32(min(n, 1<<32-1)) }
