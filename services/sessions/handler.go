package sessions

import (
	"context"
	"errors"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

// Exchange implements SessionService.Exchange.
func (w *Worker) Exchange(ctx context.Context, req *sessionsv1.ExchangeRequest) (_ *sessionsv1.ExchangeResponse, err error) {
	// One span per CWMP exchange, a child of the gateway's request span
	// (the trace context comes in the gRPC metadata); its attributes are
	// listed in docs/operations.md, "Traces".
	ctx, span := w.tracer.Start(ctx, "cwmp.exchange")
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("fleetacs.session_id", req.GetSessionId()),
			attribute.String("fleetacs.device_id", req.GetDeviceKey()),
			attribute.String("fleetacs.tenant", req.GetTenant()),
			attribute.Bool("fleetacs.new_session", req.GetNewSession()),
		)
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(otelcodes.Error, status.Code(err).String())
			}
		}()
	}
	r := &engine.Request{
		SessionID: req.GetSessionId(), NewSession: req.GetNewSession(), Tenant: req.GetTenant(), DeviceKey: req.GetDeviceKey(),
		Body: req.GetBody(), Charset: req.GetCharset(), RemoteAddr: req.GetRemoteAddr(),
		Auth: affinity.Auth{
			Method:    affinity.AuthMethod(req.GetAuth().GetMethod()),
			Principal: req.GetAuth().GetPrincipal(),
			Scope:     affinity.CredentialScope(req.GetAuth().GetScope()),
		},
	}
	if l := req.GetLease(); l != nil {
		r.Lease = &engine.Lease{FencingToken: l.GetFencingToken(), Superseded: l.GetSupersededSessionId()}
	}
	reply, err := w.e.Exchange(ctx, r)
	if err != nil {
		return nil, statusOf(err)
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.String("cwmp.rpc", reply.RPC), attribute.Int("http.response.status_code", reply.Status))
		if reply.ACSRPC != "" {
			span.SetAttributes(attribute.String("cwmp.acs_rpc", reply.ACSRPC))
		}
		if reply.FaultCode != 0 {
			span.SetAttributes(attribute.Int("cwmp.fault_code", reply.FaultCode))
		}
		if reply.Status >= 500 {
			span.SetStatus(otelcodes.Error, "exchange answered with HTTP "+strconv.Itoa(reply.Status))
		}
	}
	resp := &sessionsv1.ExchangeResponse{
		HttpStatus: uint32(reply.Status), Body: reply.Body, SessionEnded: reply.SessionEnded,
		SetSessionCookie: reply.SetSessionCookie,
	}
	if reply.RetryAfter > 0 {
		resp.RetryAfter = durationpb.New(reply.RetryAfter)
	}
	return resp, nil
}

// statusOf maps the engine's refusals to the codes the SessionService
// contract gives them (fleetacs.sessions.v1 Exchange).
func statusOf(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return status.FromContextError(err).Err()
	case errors.Is(err, engine.ErrInvalidRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, engine.ErrAtCapacity):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, engine.ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// Abandon implements SessionService.Abandon.
func (w *Worker) Abandon(ctx context.Context, req *sessionsv1.AbandonRequest) (*sessionsv1.AbandonResponse, error) {
	if req.GetSessionId() == "" {
		return nil, status.Error(codes.InvalidArgument, "abandon: session_id is required")
	}
	reason := engine.AbandonConnection
	if req.GetReason() == sessionsv1.AbandonReason_ABANDON_REASON_SUPERSEDED {
		reason = engine.AbandonSuperseded
	}
	w.e.Abandon(ctx, req.GetSessionId(), reason)
	return &sessionsv1.AbandonResponse{}, nil
}
