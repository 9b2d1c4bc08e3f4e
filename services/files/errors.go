package files

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/apierror"
	errorsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/errors/v1"
	"github.com/fleetacs/fleetacs/services/files/blob"
	"github.com/fleetacs/fleetacs/services/files/store"
)

// This file is the gRPC edge of the service's errors (proto/errors.md).

var (
	apiError     = apierror.New
	invalidField = apierror.InvalidField
)

var errNotReady = errors.New("files store not started")

// statusOf maps an error to a status; unexpected ones are logged and shown
// without internals.
func (s *Service) statusOf(ctx context.Context, action string, md map[string]string, err error) error {
	if _, ok := status.FromError(err); ok && err != nil {
		return err
	}
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, blob.ErrNotFound):
		return apiError(codes.NotFound, errorsv1.ErrorReason_FILE_NOT_FOUND, "file not found", pick(md, "file_id"))
	case errors.Is(err, store.ErrNameExists):
		return apiError(codes.AlreadyExists, errorsv1.ErrorReason_FILE_ALREADY_EXISTS, "the tenant has a file with this name", pick(md, "name", "file_id"))
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.Is(err, errNotReady), errors.Is(err, store.ErrUnavailable):
		s.logger.WarnContext(ctx, "files call failed", "action", action, "error", err)
		return apiError(codes.Unavailable, errorsv1.ErrorReason_STORE_UNAVAILABLE, "file store unavailable", nil)
	}
	s.logger.ErrorContext(ctx, "files call failed", "action", action, "error", err)
	var tmd map[string]string
	if tid := trace.SpanContextFromContext(ctx).TraceID(); tid.IsValid() {
		tmd = map[string]string{"trace_id": tid.String()}
	}
	return apiError(codes.Internal, errorsv1.ErrorReason_INTERNAL_ERROR, "internal error", tmd)
}

func pick(md map[string]string, keys ...string) map[string]string {
	out := map[string]string{}
	for _, k := range keys {
		if v, ok := md[k]; ok {
			out[k] = v
		}
	}
	return out
}

func (s *Service) checkReady() error {
	if !s.ready.Load() {
		return apiError(codes.Unavailable, errorsv1.ErrorReason_STORE_UNAVAILABLE, errNotReady.Error(), nil)
	}
	return nil
}

// tenant resolves a request's tenant: the one named, else the caller's
// only one.
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
	if !apiauth.ValidTenant(t) {
		return "", invalidField("tenant", "1 to 64 characters from [A-Za-z0-9_.-]")
	}
	return t, s.checkReady()
}

func notFound(id string) error {
	if len(id) > 64 {
		id = id[:64]
	}
	return apiError(codes.NotFound, errorsv1.ErrorReason_FILE_NOT_FOUND, "file not found", map[string]string{"file_id": id})
}
