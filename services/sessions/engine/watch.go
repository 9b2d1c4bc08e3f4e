package engine

import (
	"context"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// Watcher learns how each session that accepted an Inform ended, for the
// device events package sessions publishes (docs/sessions.md, "Device
// events"). SessionEnded is called on the session's path, with its lock
// held: it must not block (publish asynchronously, drop under pressure).
type Watcher interface {
	SessionEnded(ctx context.Context, r SessionReport)
}

// SessionReport is what a Watcher learns of a session.
type SessionReport struct {
	Tenant    string
	DeviceKey string
	SessionID string
	DeviceID  cwmp.DeviceID
	// Outcome is "completed", "expired", "abandoned", "replaced",
	// "superseded" or "failed".
	Outcome string
	// Recorded is set when the session's diff reached the inventory.
	Recorded bool
	Inform   InformRecord
	// Params are the Inform's parameters the session kept. Shared: do not
	// modify.
	Params []cwmp.ParameterValue
	// Completions are the TransferComplete, AutonomousTransferComplete
	// and DUStateChangeComplete requests the CPE sent in the session.
	Completions []Completion
	Now         time.Time
}

// Completion is a request of the CPE that reports the end of something it
// did (a transfer, a deployment-unit change).
type Completion struct {
	// Method is the request's method name.
	Method       string        `json:"method"`
	CommandKey   string        `json:"commandKey,omitempty"`
	FaultCode    uint32        `json:"faultCode,omitempty"`
	FaultString  string        `json:"faultString,omitempty"`
	StartTime    cwmp.DateTime `json:"startTime,omitempty"`
	CompleteTime cwmp.DateTime `json:"completeTime,omitempty"`
}

// maxCompletions bounds the completions a session keeps: the CPE sends
// one per transfer it reports, at most a handful.
const maxCompletions = 16

// completionOf returns the completion m reports, ok false when m reports
// none.
func completionOf(m cwmp.Message) (Completion, bool) {
	switch m := m.(type) {
	case *cwmp.TransferComplete:
		return Completion{Method: m.Method(), CommandKey: m.CommandKey, FaultCode: uint32(m.FaultStruct.FaultCode),
			FaultString: m.FaultStruct.FaultString, StartTime: m.StartTime, CompleteTime: m.CompleteTime}, true
	case *cwmp.AutonomousTransferComplete:
		return Completion{Method: m.Method(), FaultCode: uint32(m.FaultStruct.FaultCode),
			FaultString: m.FaultStruct.FaultString, StartTime: m.StartTime, CompleteTime: m.CompleteTime}, true
	case *cwmp.DUStateChangeComplete:
		return Completion{Method: m.Method(), CommandKey: m.CommandKey}, true
	}
	return Completion{}, false
}

// noteCompletion keeps what a CPE request reports ending, for the
// session's Watcher.
func (s *session) noteCompletion(m cwmp.Message) {
	if s.inform == nil || len(s.inform.Completions) >= maxCompletions {
		return
	}
	if c, ok := completionOf(m); ok {
		s.inform.Completions = append(s.inform.Completions, c)
	}
}

// watch tells the Watcher how a session ended; sessions that accepted no
// Inform are not reported.
func (e *Engine) watch(ctx context.Context, s *session, outcome string, recorded bool) {
	if e.watcher == nil || s.inform == nil {
		return
	}
	inf := s.inform
	e.watcher.SessionEnded(ctx, SessionReport{
		Tenant: s.tenant, DeviceKey: s.deviceKey, SessionID: s.id, DeviceID: inf.DeviceID,
		Outcome: outcome, Recorded: recorded,
		Inform: InformRecord{Time: inf.Time, Events: inf.Events, RemoteIP: inf.RemoteIP, RetryCount: inf.RetryCount},
		Params: inf.Params, Completions: inf.Completions, Now: e.now(),
	})
}
