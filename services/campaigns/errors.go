package campaigns

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fleetacs/fleetacs/pkg/apierror"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	"github.com/fleetacs/fleetacs/services/campaigns/store"
)

// This file is the gRPC edge of the service's errors (proto/errors.md).

var (
	apiError     = apierror.New
	invalidField = apierror.InvalidField
)

// statusOf maps an error to a status; unexpected ones are logged and shown
// without internals.
func (s *Service) statusOf(ctx context.Context, action string, err error) error {
	if _, ok := status.FromError(err); ok && err != nil {
		return err
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return apiError(codes.NotFound, errorsv1.ErrorReason_CAMPAIGN_NOT_FOUND, "campaign not found", nil)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrConflict):
		s.logger.WarnContext(ctx, "campaigns call failed", "action", action, "error", err)
		return apiError(codes.Unavailable, errorsv1.ErrorReason_STORE_UNAVAILABLE, "campaign store unavailable", nil)
	}
	s.logger.ErrorContext(ctx, "campaigns call failed", "action", action, "error", err)
	var tmd map[string]string
	if tid := trace.SpanContextFromContext(ctx).TraceID(); tid.IsValid() {
		tmd = map[string]string{"trace_id": tid.String()}
	}
	return apiError(codes.Internal, errorsv1.ErrorReason_INTERNAL_ERROR, "internal error", tmd)
}

func (s *Service) checkReady() error {
	if !s.ready.Load() {
		return apiError(codes.Unavailable, errorsv1.ErrorReason_STORE_UNAVAILABLE, "campaign store not started", nil)
	}
	return nil
}

// tenant resolves a request's tenant: the one named, else the caller's
// only one. The authentication layer has checked that the caller covers
// a named one.
func (s *Service) tenant(ctx context.Context, named string) (string, error) {
	t := named
	if t == "" {
		ts := s.deps.CallerTenants(ctx)
		if len(ts) != 1 {
			return "", apiError(codes.InvalidArgument, errorsv1.ErrorReason_TENANT_REQUIRED,
				"the request names no tenant and the credentials cover several", nil)
		}
		t = ts[0]
	}
	if !validTenant(t) {
		return "", invalidField("tenant", "1 to 64 characters from [A-Za-z0-9_.-]")
	}
	return t, s.checkReady()
}

func validTenant(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func stateError(st string) error {
	return apiError(codes.FailedPrecondition, errorsv1.ErrorReason_CAMPAIGN_STATE, "the campaign is "+st, map[string]string{"state": st})
}

func unavailableAction(field, msg string) error {
	return apiError(codes.FailedPrecondition, errorsv1.ErrorReason_CAMPAIGN_ACTION_UNAVAILABLE, msg, map[string]string{"field": field})
}

// fieldOf is the field a BadRequest or an ErrorInfo's metadata names.
func fieldOf(st *status.Status) string {
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	if ei := errorInfo(st); ei != nil {
		return ei.GetMetadata()["field"]
	}
	return ""
}
